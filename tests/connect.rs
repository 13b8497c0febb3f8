//! The host's decision on a connection before its websocket upgrade: the
//! request's headers and offered subprotocols reach it, a refusal is a
//! plain HTTP response (no websocket frame ever), an admission may choose a
//! subprotocol, silence is a 503; and a plain HTTP request on the websocket
//! port gets 426 whatever the host configuration.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ARRIVES, RawUpgrade, http_get, next_event};
use groupcast::{Config, Error, HostConfig, HostEvent, HostEvents, Node};

async fn approving_node(approval_timeout: Duration) -> Node {
    let config = Config {
        host: HostConfig {
            approve_connections: true,
            close_events: true,
            approval_timeout,
            ..HostConfig::default()
        },
        ..Config::local("127.0.0.1:0")
    };
    Node::start(config).await.expect("node starts")
}

struct Connect {
    conn: u64,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
}

async fn next_connect(events: &Arc<HostEvents>) -> Connect {
    match next_event(events).await {
        HostEvent::Connect {
            conn,
            path,
            query,
            headers,
            subprotocols,
            ..
        } => Connect {
            conn,
            path,
            query,
            headers,
            subprotocols,
        },
        other => panic!("a connect event expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_offered_subprotocols_reach_the_host_before_the_upgrade() {
    let node = approving_node(ARRIVES).await;
    let handle = node.handle();
    let events = handle.events().unwrap().clone();
    let mut client = RawUpgrade::send(
        node.addresses().websocket,
        "/chat?room=1",
        &[
            ("Cookie", "session=abc"),
            ("X-Custom", "one"),
            ("Sec-WebSocket-Protocol", "chat.v1, chat.v2"),
            ("x-custom", "two"),
        ],
    )
    .await;
    let connect = next_connect(&events).await;
    assert_eq!(
        (connect.path.as_str(), connect.query.as_str()),
        ("/chat", "room=1")
    );
    let names: Vec<&str> = connect.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Host",
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Version",
            "Cookie",
            "X-Custom",
            "Sec-WebSocket-Protocol",
            "x-custom"
        ],
        "in request order, names as sent"
    );
    assert!(
        connect
            .headers
            .contains(&("Cookie".into(), "session=abc".into()))
    );
    assert_eq!(connect.subprotocols, ["chat.v1", "chat.v2"]);

    // Not offered: an error, and the connection stays held.
    let wrong = handle.admit_with_subprotocol(connect.conn, "chat.v3");
    assert!(matches!(wrong, Err(Error::Config(_))), "{wrong:?}");
    handle
        .admit_with_subprotocol(connect.conn, "chat.v2")
        .unwrap();
    let head = client.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nsec-websocket-protocol: chat.v2\r\n"),
        "{head}"
    );
    assert_eq!(handle.stats().connections_refused, 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_a_plain_http_response_and_no_websocket_frame() {
    let node = approving_node(ARRIVES).await;
    let handle = node.handle();
    let events = handle.events().unwrap().clone();
    let client = RawUpgrade::send(
        node.addresses().websocket,
        "/",
        &[("Authorization", "Bearer wrong")],
    )
    .await;
    let connect = next_connect(&events).await;
    assert!(
        connect
            .headers
            .contains(&("Authorization".into(), "Bearer wrong".into()))
    );
    let status = handle.refuse(connect.conn, 200, "");
    assert!(matches!(status, Err(Error::Config(_))), "{status:?}");
    handle.refuse(connect.conn, 401, "bad token\n").unwrap();
    let response = client.read_to_end().await;
    assert!(
        response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{response:?}"
    );
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nContent-Length: 10"), "{head:?}");
    assert_eq!(body, "bad token\n", "the body and nothing after it");
    // Decided: a second verdict finds nobody held.
    let again = handle.refuse(connect.conn, 401, "");
    assert!(
        matches!(again, Err(Error::UnknownConnection(_))),
        "{again:?}"
    );
    match next_event(&events).await {
        HostEvent::Close { conn, code: None } => assert_eq!(conn, connect.conn),
        other => panic!("the refused connection's close expected, got {other:?}"),
    }
    assert_eq!(handle.stats().connections_refused, 1);
    assert_eq!(handle.connection_count(), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_on_a_held_connection_refuses_it_with_403() {
    let node = approving_node(ARRIVES).await;
    let handle = node.handle();
    let events = handle.events().unwrap().clone();
    let client = RawUpgrade::send(node.addresses().websocket, "/", &[]).await;
    let connect = next_connect(&events).await;
    handle.close(connect.conn, 1008, "no").unwrap();
    let response = client.read_to_end().await;
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_verdict_in_time_is_a_503() {
    let node = approving_node(Duration::from_millis(200)).await;
    let client = RawUpgrade::send(node.addresses().websocket, "/", &[]).await;
    let response = client.read_to_end().await;
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response:?}"
    );
    assert!(
        response.ends_with("\r\n\r\nnot admitted in time\n"),
        "{response:?}"
    );
    assert_eq!(node.handle().stats().connections_refused, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_request_gets_426_with_or_without_a_host() {
    let plain = Node::start(Config::local("127.0.0.1:0")).await.unwrap();
    let approving = approving_node(ARRIVES).await;
    for node in [&plain, &approving] {
        let (status, body) = http_get(node.addresses().websocket, "/").await;
        assert_eq!(status, 426);
        assert_eq!(
            body,
            "This is a websocket endpoint: connect with a websocket client (Upgrade: websocket).\n"
        );
        assert_eq!(node.handle().stats().connections_refused, 0);
    }
    assert!(
        approving.handle().events().unwrap().is_empty(),
        "the host is not asked about a plain request"
    );
    plain.stop().await;
    approving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_in_pieces_is_awaited_and_an_oversized_one_gets_431() {
    use tokio::io::AsyncWriteExt;
    let node = approving_node(ARRIVES).await;
    let handle = node.handle();
    let events = handle.events().unwrap().clone();
    let addr = node.addresses().websocket;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /slow HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         X-Late: yes\r\n\r\n"
    );
    let (first, rest) = request.split_at(40);
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(events.is_empty(), "no event for half a head");
    stream.write_all(rest.as_bytes()).await.unwrap();
    let connect = next_connect(&events).await;
    assert_eq!(connect.path, "/slow");
    assert!(connect.headers.contains(&("X-Late".into(), "yes".into())));
    handle.admit(connect.conn).unwrap();
    let mut client = RawUpgrade { stream };
    assert!(client.read_head().await.starts_with("HTTP/1.1 101 "));

    let big = "x".repeat(9 * 1024);
    let client = RawUpgrade::send(addr, "/", &[("X-Big", &big)]).await;
    let response = client.read_to_end().await;
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{response:?}"
    );
    assert!(events.is_empty(), "the host is not asked about it");
    node.stop().await;
}
