//! Helpers shared by the integration tests: nodes on port 0 and real
//! websocket clients over loopback.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use groupcast::{Config, Node};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should arrive.
pub const ARRIVES: Duration = Duration::from_secs(5);
/// How long a test listens to make sure nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

/// A single node with no channel server, on a free port.
pub async fn local_node() -> Node {
    Node::start(Config::local("127.0.0.1:0"))
        .await
        .expect("node starts")
}

/// A node joining the channel server at `channel`.
pub async fn cluster_node(channel: SocketAddr) -> Node {
    start_cluster_node(channel, None).await
}

/// A node joining the channel server at `channel` with a shared secret.
pub async fn cluster_node_with_secret(channel: SocketAddr, secret: &str) -> Node {
    start_cluster_node(channel, Some(secret)).await
}

async fn start_cluster_node(channel: SocketAddr, secret: Option<&str>) -> Node {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        channel: Some(channel.to_string()),
        channel_listen: None,
        channel_secret: secret.map(Into::into),
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node starts");
    tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
        .await
        .expect("node reaches the channel server");
    node
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_path(addr, "/").await
    }

    pub async fn connect_path(addr: SocketAddr, path: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .expect("websocket handshake");
        Client { ws }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    pub async fn join(&mut self, group: &str) {
        self.send(&format!(r#"{{"cmd":"add_group","group_id":"{group}"}}"#))
            .await;
    }

    pub async fn send_to_group(&mut self, group: &str, message: &str) {
        let frame =
            serde_json::json!({"cmd": "send_to_group", "group_id": group, "message": message});
        self.send(&frame.to_string()).await;
    }

    /// The next message, which must arrive within [`ARRIVES`].
    pub async fn recv(&mut self) -> Message {
        match tokio::time::timeout(ARRIVES, self.ws.next()).await {
            Ok(Some(Ok(message))) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next text message.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The next message, parsed as a JSON error reply; returns its code.
    pub async fn recv_error_code(&mut self) -> String {
        let text = self.recv_text().await;
        let reply: serde_json::Value = serde_json::from_str(&text).expect("error reply is JSON");
        assert_eq!(reply["type"], "error", "{text}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
        reply["code"].as_str().expect("code").to_owned()
    }

    /// Asserts nothing arrives for [`QUIET`].
    pub async fn expect_nothing(&mut self) {
        if let Ok(message) = tokio::time::timeout(QUIET, self.ws.next()).await {
            panic!("expected nothing, got {message:?}");
        }
    }

    /// Waits for the server's close frame and returns it.
    pub async fn recv_close(&mut self) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(ARRIVES, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Sends a command and then a probe round trip through a private group,
    /// so the server has surely processed the command when this returns.
    pub async fn sync(&mut self) {
        let probe = format!("sync-{:p}", self as *const _);
        self.join(&probe).await;
        self.send_to_group(&probe, "sync").await;
        assert_eq!(self.recv_text().await, "sync");
        self.send(&format!(r#"{{"cmd":"leave_group","group_id":"{probe}"}}"#))
            .await;
    }
}

/// Polls `condition` until it holds or [`ARRIVES`] passes.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + ARRIVES;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A single node on loopback with these client limits.
pub async fn node_with(limits: groupcast::Limits) -> Node {
    Node::start(Config {
        limits,
        ..Config::local("127.0.0.1:0")
    })
    .await
    .expect("node starts")
}

/// A `groupcast` process and the addresses it printed.
pub struct Process {
    pub child: Child,
    line: String,
    /// What it wrote to standard error so far, when captured.
    stderr: Arc<parking_lot::Mutex<String>>,
}

impl Process {
    /// Starts `groupcast ARGS` and waits for its "listening" line; its
    /// standard error goes to the test's.
    pub fn start(args: &[&str]) -> Process {
        Self::spawn(args, &[], false)
    }

    /// As [`Process::start`] with `env` set, keeping standard error for
    /// [`Process::stderr`].
    pub fn start_logged(args: &[&str], env: &[(&str, &str)]) -> Process {
        Self::spawn(args, env, true)
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], capture: bool) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_groupcast"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("groupcast starts");
        let stderr = Arc::new(parking_lot::Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut all = stderr.lock();
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("address line");
        assert!(line.starts_with("groupcast listening "), "{line:?}");
        Process {
            child,
            line,
            stderr,
        }
    }

    /// The "listening" line it printed.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// What the process wrote to standard error so far (with
    /// [`Process::start_logged`]).
    pub fn stderr(&self) -> String {
        self.stderr.lock().clone()
    }

    /// Its resident set, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// CPU time it used so far (user + system), in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// The address printed as `key=ADDR`.
    pub fn addr(&self, key: &str) -> SocketAddr {
        let prefix = format!("{key}=");
        self.line
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.line))
            .parse()
            .unwrap()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the exit and returns its code.
    pub fn wait(mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + ARRIVES;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "groupcast did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on a plain HTTP listener: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A counter's value in Prometheus text (`groupcast_NAME`, with `_total`
/// for counters).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("groupcast_{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no groupcast_{name} in:\n{text}"))
}

/// A websocket upgrade request written by hand, so that a test sees the
/// exact bytes of the server's answer (status line, headers, body, and
/// that no websocket frame follows a refusal).
pub struct RawUpgrade {
    pub stream: TcpStream,
}

impl RawUpgrade {
    /// Sends `GET path` with the upgrade headers and `headers` (names as
    /// given, in order).
    pub async fn send(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawUpgrade {
        use tokio::io::AsyncWriteExt;
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        RawUpgrade { stream }
    }

    /// Everything the server sends until it closes the connection.
    pub async fn read_to_end(mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut response = Vec::new();
        tokio::time::timeout(ARRIVES, self.stream.read_to_end(&mut response))
            .await
            .expect("the server closes the connection")
            .expect("reads");
        String::from_utf8_lossy(&response).into_owned()
    }

    /// The response head, up to and including the blank line.
    pub async fn read_head(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(ARRIVES, self.stream.read_u8())
                .await
                .expect("the response head arrives")
                .expect("reads");
            head.push(byte);
        }
        String::from_utf8(head).expect("a text head")
    }
}

/// A websocket client with a tiny receive buffer that never reads: the
/// slowest consumer there is.
pub async fn stalled_client(addr: SocketAddr) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
        .await
        .unwrap();
    Client {
        ws: tokio_tungstenite::WebSocketStream::from_raw_socket(
            tokio_tungstenite::MaybeTlsStream::Plain(ws.into_inner()),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await,
    }
}

/// The next host event, polled from a blocking thread as a host would.
pub async fn next_event(events: &Arc<groupcast::HostEvents>) -> groupcast::HostEvent {
    let events = events.clone();
    tokio::task::spawn_blocking(move || events.poll(Some(ARRIVES), 1))
        .await
        .unwrap()
        .pop()
        .expect("an event arrives")
}
