//! Helpers shared by the integration tests: nodes on port 0 and real
//! websocket clients over loopback.
#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
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
