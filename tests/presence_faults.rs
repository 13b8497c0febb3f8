//! Presence and routing when the bus misbehaves, in process: a backlog
//! released at once (a thawed channel server) with presence messages
//! inside, and a tag two live nodes share. The drill with a frozen
//! channel server process is in `cluster_faults.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ARRIVES, Client, eventually, next_event};
use groupcast::channel::{ChannelServer, ChannelServerConfig};
use groupcast::{Config, HostConfig, HostEvent, Node};

/// A node of a cluster that reports its connections to the test.
fn node_config() -> Config {
    Config {
        host: HostConfig {
            connect_events: true,
            ..HostConfig::default()
        },
        ..Config::local("127.0.0.1:0")
    }
}

/// Starts the nodes, each once it reached its bus.
async fn start(configs: Vec<Config>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for config in configs {
        let node = Node::start(config).await.expect("node starts");
        tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
            .await
            .expect("bus connects");
        nodes.push(node);
    }
    nodes
}

/// A TCP relay to the channel server whose server-to-node direction can be
/// held: while held, the server queues the node's traffic; released, the
/// node reads it all at once, as after a frozen server's thaw.
async fn holdable_relay(
    hub: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<tokio::sync::Semaphore>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // One permit: held by the test to stop the server-to-node copy.
    let gate = Arc::new(tokio::sync::Semaphore::new(1));
    let copy_gate = gate.clone();
    tokio::spawn(async move {
        let (node, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(hub).await.unwrap();
        let (mut node_read, mut node_write) = node.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut node_read, &mut server_write).await;
        });
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let permit = copy_gate.acquire().await.unwrap();
            drop(permit);
            let Ok(n @ 1..) = server_read.read(&mut buffer).await else {
                return;
            };
            // Held meanwhile: keep what was read until released.
            drop(copy_gate.acquire().await.unwrap());
            if node_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    });
    (addr, gate)
}

/// Messages of 16 KiB in each half of the backlog: 1.5 MiB in all, more
/// than a member's outbound bound (1 MiB) but less than the bound and the
/// socket's buffers together, so a member that reads keeps up unless the
/// node pushes it all at once.
const HALF: usize = 48;

/// Issue 16: a backlog of one group's messages with a presence message
/// inside, read at once by the receiving node (a thawed channel server),
/// reached a member that reads promptly as two pushes of half the backlog
/// each, over its 1 MiB bound together: closed as a slow consumer, and
/// nothing crossed after. Now the node hands it over in small runs and
/// lets the writers drain between them, and presence follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_released_at_once_keeps_a_reading_member_and_presence() {
    let hub = ChannelServer::bind("127.0.0.1:0", ChannelServerConfig::default())
        .await
        .unwrap();
    let (relay, gate) = holdable_relay(hub.local_addr()).await;
    let mut configs = Vec::new();
    for addr in [hub.local_addr(), relay] {
        configs.push(Config {
            channel: Some(addr.to_string()),
            ..node_config()
        });
    }
    let nodes = start(configs).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    eventually("both nodes see each other", || {
        nodes
            .iter()
            .all(|n| n.handle().cluster_stats().unwrap().nodes == 2)
    })
    .await;
    let mut member = Client::connect(b.addresses().websocket).await;
    member.join("g").await;
    member.sync().await;
    let mut sender = Client::connect(a.addresses().websocket).await;
    let mut joiner = Client::connect(a.addresses().websocket).await;
    eventually("node a knows node b's member", || {
        a.handle().presence("g", 10).unwrap().connections == 1
    })
    .await;

    let held = gate.acquire().await.unwrap();
    let payload = "x".repeat(16 * 1024);
    for half in 0..2 {
        for _ in 0..HALF {
            sender.send_to_group("g", &payload).await;
        }
        sender.sync().await;
        if half == 0 {
            // A presence change of node a, in the middle of the backlog.
            joiner.join("x").await;
            joiner.sync().await;
        }
    }
    // What node a published has reached the server (it reads promptly).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(held);

    let mut received = 0;
    while received < 2 * HALF {
        match member.recv().await {
            tokio_tungstenite::tungstenite::Message::Text(text) if text.len() == payload.len() => {
                received += 1
            }
            other => panic!("after {received} messages: {other:?}"),
        }
    }
    assert_eq!(b.handle().stats().slow_consumer_closes, 0);
    eventually("node b sees node a's joiner", || {
        b.handle().presence("x", 10).unwrap().connections == 1
    })
    .await;
    for node in &nodes {
        node.stop().await;
    }
    hub.stop().await;
}

/// Two live nodes with one tag (one chance in about two million per pair;
/// forged here by a channel client speaking for a node whose id carries
/// node 0's tag): their connection ids overlap, so no node routes to the
/// tag and node 0 refuses routed actions, until the impostor leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_two_live_nodes_share_is_refused_not_guessed() {
    use groupcast::channel::{ChannelClient, ChannelClientConfig};
    let hub = ChannelServer::bind("127.0.0.1:0", ChannelServerConfig::default())
        .await
        .unwrap();
    let configs = (0..2)
        .map(|_| Config {
            channel: Some(hub.local_addr().to_string()),
            ..node_config()
        })
        .collect();
    let nodes = start(configs).await;
    eventually("both nodes see each other", || {
        nodes
            .iter()
            .all(|n| n.handle().cluster_stats().unwrap().nodes == 2)
    })
    .await;
    let mut client = Client::connect(nodes[0].addresses().websocket).await;
    let conn = match next_event(nodes[0].handle().events().unwrap()).await {
        HostEvent::Connect { conn, .. } => conn,
        other => panic!("expected a connect event, got {other:?}"),
    };
    let tag = conn >> 32;
    let twin = tag - 1; // node_tag(id) is 1 + id % (2^21 - 1)
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let (forger, _events) = ChannelClient::connect(
        hub.local_addr().to_string(),
        ChannelClientConfig::default(),
        shutdown.clone(),
        &tasks,
    );
    assert!(
        tokio::time::timeout(ARRIVES, forger.wait_connected())
            .await
            .unwrap()
    );
    let prefix = groupcast::bus::GROUP_CHANNEL_PREFIX;
    let say = |group: String, message: String| {
        let envelope = serde_json::json!({"group_id": group, "message": message, "node": twin});
        forger
            .publish(&format!("{prefix}{group}"), &envelope)
            .unwrap();
    };
    let heartbeat = format!(r#"{{"k":"heartbeat","n":{twin},"s":0,"l":60000}}"#);
    say("\u{1}cluster".into(), heartbeat);
    let other = nodes[1].handle();
    eventually("node 1 sees the twin", || {
        other.cluster_stats().unwrap().nodes == 3
    })
    .await;
    assert!(
        matches!(other.send_text(conn, "routed"), Err(groupcast::Error::UnknownConnection(c)) if c == conn),
        "node 1 refuses to route to a shared tag"
    );
    // An action that reaches node 0 anyway is refused and counted.
    let owner = nodes[0].handle();
    let failed = owner.stats().remote_actions_failed;
    say(
        format!("\u{1}node:{tag}"),
        format!(r#"{{"k":"send","c":{conn},"t":"forged"}}"#),
    );
    eventually("node 0 refuses it", || {
        owner.stats().remote_actions_failed == failed + 1
    })
    .await;
    // Node 0's own host still reaches its connection directly.
    owner.send_text(conn, "local").unwrap();
    assert_eq!(client.recv_text().await, "local");

    // The twin leaves: the tag names node 0 alone again.
    say(
        "\u{1}cluster".into(),
        format!(r#"{{"k":"bye","n":{twin}}}"#),
    );
    eventually("node 1 forgets the twin", || {
        other.cluster_stats().unwrap().nodes == 2
    })
    .await;
    other.send_text(conn, "routed").unwrap();
    assert_eq!(client.recv_text().await, "routed");
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    for node in &nodes {
        node.stop().await;
    }
    hub.stop().await;
}
