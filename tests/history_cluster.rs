//! Group history in a channel-server cluster: the channel server numbers
//! and keeps, a member recovers on another node than the one it left, and
//! a restarted channel server means a new epoch.

mod common;
#[path = "common/history_support.rs"]
mod history_support;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ARRIVES, Client};
use futures_util::StreamExt;
use groupcast::channel::{ChannelHistoryConfig, ChannelServer, ChannelServerConfig};
use groupcast::{Config, Limits, Node};
use history_support::{
    five_missed_then_live, join_with, recovers_on_the_other_node_while_a_sender_keeps_sending,
    recv_positioned,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn history_hub(addr: &str) -> ChannelServer {
    let config = ChannelServerConfig {
        history: Some(ChannelHistoryConfig {
            size: 1000,
            ttl: Duration::from_secs(300),
            max_bytes: 16 << 20,
        }),
        ..ChannelServerConfig::default()
    };
    ChannelServer::bind(addr, config)
        .await
        .expect("channel server starts")
}

async fn history_node(channel: SocketAddr) -> Node {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        channel: Some(channel.to_string()),
        channel_listen: None,
        limits: Limits {
            history_size: Some(1000),
            ..Limits::default()
        },
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node starts");
    tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
        .await
        .expect("node reaches the channel server");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_recovers_on_the_other_node_while_a_sender_keeps_sending() {
    let hub = history_hub("127.0.0.1:0").await;
    recovers_on_the_other_node_while_a_sender_keeps_sending(
        history_node(hub.local_addr()).await,
        history_node(hub.local_addr()).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_five_missed_messages_then_live_ones() {
    let hub = history_hub("127.0.0.1:0").await;
    let node_a = history_node(hub.local_addr()).await;
    let node_b = history_node(hub.local_addr()).await;
    let (mut member, joined_epoch) = five_missed_then_live(&node_a, &node_b).await;
    // A host reads the cluster's history from the channel server (a
    // blocking call: from a thread of its own).
    let handle = node_b.handle();
    let (epoch, kept) = tokio::task::spawn_blocking(move || handle.history("g", Some(4), 2))
        .await
        .unwrap()
        .expect("the channel server answers");
    assert_eq!(json!(epoch), joined_epoch);
    assert_eq!(kept, vec![(5, "m5".to_owned()), (6, "m6".to_owned())]);
    // The channel server numbers a host's send without answering it: no
    // offset here (Redis's script answers one: history_redis.rs).
    let handle = node_b.handle();
    let sent = tokio::task::spawn_blocking(move || handle.send_to_group_with_offset("g", "h", &[]))
        .await
        .unwrap();
    assert_eq!(sent.expect("sent"), (0, None));
    assert_eq!(recv_positioned(&mut member).await, (8, json!("h")));
    node_a.stop().await;
    node_b.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_channel_server_means_a_new_epoch() {
    let hub = history_hub("127.0.0.1:0").await;
    let hub_addr = hub.local_addr();
    let node = history_node(hub_addr).await;
    let addr = node.addresses().websocket;
    let mut sender = Client::connect(addr).await;
    let mut member = Client::connect(addr).await;
    let joined = join_with(&mut member, "g", json!({"positions": true})).await;
    sender.send_to_group("g", "before").await;
    assert_eq!(recv_positioned(&mut member).await, (1, json!("before")));
    drop(member);

    hub.stop().await;
    drop(hub);
    let hub = history_hub(&hub_addr.to_string()).await;
    common::eventually("the node reconnects", || node.handle().bus_connected()).await;

    let mut member = Client::connect(addr).await;
    let rejoined = join_with(
        &mut member,
        "g",
        json!({"since": {"offset": 1, "epoch": joined["epoch"]}}),
    )
    .await;
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    assert_ne!(rejoined["epoch"], joined["epoch"]);
    assert_eq!(rejoined["offset"], 0);
    sender.send_to_group("g", "after").await;
    assert_eq!(recv_positioned(&mut member).await, (1, json!("after")));
    assert_eq!(node.handle().stats().history_not_recovered, 1);
    node.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_the_channel_server_never_answered_is_asked_again() {
    // A "channel server" that takes requests and never answers, then goes.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_addr = silent.local_addr().unwrap();
    let swallow = tokio::spawn(async move {
        let (mut stream, _) = silent.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_millis(1500),
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink),
        )
        .await;
    });
    let node = history_node(hub_addr).await;
    let mut member = Client::connect(node.addresses().websocket).await;
    member
        .send(r#"{"cmd":"add_group","group_id":"g","positions":true}"#)
        .await;
    swallow.await.unwrap();
    // The real one comes back on the same address: the held member is
    // answered once its request is sent again.
    let hub = history_hub(&hub_addr.to_string()).await;
    let frame = tokio::time::timeout(Duration::from_secs(15), member.ws.next())
        .await
        .expect("joined after the request is sent again");
    let Some(Ok(Message::Text(text))) = frame else {
        panic!("expected the joined reply, got {frame:?}");
    };
    let joined: Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["offset"], 0);
    node.stop().await;
    hub.stop().await;
}
