//! The demo page on the websocket port: `GET /` gets it (with its content
//! type, no caching and a policy that allows only its own inline code and
//! websockets), any other plain request 404; off (the library's default)
//! every plain request keeps 426; websocket clients connect as before either
//! way. The command line serves it unless told `--no-demo`. Its behaviour in
//! a browser is tested by tests/browser/run.sh.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ARRIVES, Client, Process, RawUpgrade};
use groupcast::{Config, HostConfig, Node};

async fn demo_node(host: HostConfig) -> Node {
    let config = Config {
        demo_page: true,
        host,
        ..Config::local("127.0.0.1:0")
    };
    Node::start(config).await.expect("node starts")
}

/// Sends `request` as is and returns the whole response: head and body.
async fn exchange(addr: SocketAddr, request: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(ARRIVES, stream.read_to_end(&mut response))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_owned(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(": "))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_slash_answers_the_page_with_its_headers() {
    // With and without a host that approves connections: the plain request
    // is answered before the host is asked.
    for host in [
        HostConfig::default(),
        HostConfig {
            approve_connections: true,
            ..HostConfig::default()
        },
    ] {
        let node = demo_node(host).await;
        let (head, body) = exchange(node.addresses().websocket, &get("/")).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(
            header(&head, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header(&head, "cache-control"), Some("no-store"));
        assert_eq!(
            header(&head, "content-length"),
            Some(body.len().to_string().as_str())
        );
        let csp = header(&head, "content-security-policy").expect("a CSP");
        for directive in [
            "default-src 'none'",
            "script-src 'unsafe-inline'",
            "style-src 'unsafe-inline'",
            "connect-src 'self' ws: wss:",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(body.starts_with("<!doctype html>"), "{body}");
        for id in ["group", "join", "message", "send", "log", "status"] {
            assert!(body.contains(&format!("id=\"{id}\"")), "#{id} in the page");
        }
        for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(!body.contains(external), "no external asset: {external}");
        }
        if let Some(events) = node.handle().events() {
            assert!(events.is_empty(), "the host is not asked about the page");
        }
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_plain_requests_get_404_with_the_page_on() {
    let node = demo_node(HostConfig::default()).await;
    let addr = node.addresses().websocket;
    for request in [
        get("/favicon.ico"),
        get("/index.html"),
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_owned(),
    ] {
        let (head, body) = exchange(addr, &request).await;
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert_eq!(body, "not found\n");
    }
    assert_eq!(node.handle().stats().connections_refused, 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_page_every_plain_request_gets_426() {
    let node = Node::start(Config::local("127.0.0.1:0")).await.unwrap();
    let addr = node.addresses().websocket;
    for path in ["/", "/favicon.ico"] {
        let (head, body) = exchange(addr, &get(path)).await;
        assert!(
            head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{head}"
        );
        assert!(body.starts_with("This is a websocket endpoint"), "{body}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_still_connect_on_slash_with_the_page_on() {
    let node = demo_node(HostConfig::default()).await;
    let addr = node.addresses().websocket;
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect_path(addr, "/").await;
    a.join("demo").await;
    b.join("demo").await;
    a.sync().await;
    b.sync().await;
    a.send_to_group("demo", "hello").await;
    assert_eq!(a.recv_text().await, "hello");
    assert_eq!(b.recv_text().await, "hello");
    // A raw upgrade gets its 101 (the peeked head was not consumed).
    let mut raw = RawUpgrade::send(addr, "/", &[]).await;
    assert!(raw.read_head().await.starts_with("HTTP/1.1 101 "));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ends_its_head_is_dropped_at_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = Config {
        demo_page: true,
        limits: groupcast::Limits {
            handshake_timeout: Duration::from_millis(200),
            ..groupcast::Limits::default()
        },
        ..Config::local("127.0.0.1:0")
    };
    let node = Node::start(config).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(node.addresses().websocket)
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(ARRIVES, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "closed within the handshake timeout");
    assert!(rest.is_empty(), "no answer to half a head: {rest:?}");
    node.stop().await;
}

#[test]
fn the_command_line_serves_the_page_unless_told_no_demo() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (flag, status) in [(None, "200"), (Some("--no-demo"), "426")] {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--no-channel"];
        args.extend(flag);
        let process = Process::start_logged(&args, &[("GROUPCAST_LOG", "info")]);
        let addr = process.addr("websocket");
        let (head, _) = runtime.block_on(exchange(addr, &get("/")));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{flag:?}: {head}"
        );
        runtime.block_on(exchange(addr, &get("/nothing")));
        std::thread::sleep(Duration::from_millis(100));
        let logged = process.stderr();
        assert!(logged.contains("node listening"), "{logged}");
        assert!(
            !logged.contains("WARN") && !logged.contains("ERROR"),
            "plain requests are no warning: {logged}"
        );
    }
}
