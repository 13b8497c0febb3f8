//! What the history tests of every bus share (the channel server's,
//! `history_cluster.rs`; Redis's, `history_redis.rs` and
//! `history_redis_cluster.rs`): joins with positions, positioned messages,
//! and the scenarios every bus must pass with two nodes.
#![allow(dead_code)]

use std::time::Duration;

use groupcast::{Config, Limits, Node};
use serde_json::{Value, json};

use super::common::{ARRIVES, Client};

/// How long history is kept in these tests: longer than any of them.
pub const KEEP: Duration = Duration::from_secs(300);

/// A node on the Redis bus at `url`, history on.
pub async fn redis_history_node(url: &str, size: usize, ttl: Duration) -> Node {
    let config = Config {
        bus: Some(url.to_owned()),
        limits: Limits {
            history_size: Some(size),
            history_ttl: ttl,
            ..Limits::default()
        },
        ..Config::local("127.0.0.1:0")
    };
    let node = Node::start(config).await.expect("node starts");
    tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
        .await
        .expect("node reaches redis");
    node
}

/// Two nodes on the Redis bus at `url`, keeping `size` messages per group.
pub async fn two_redis_nodes(url: &str, size: usize) -> (Node, Node) {
    (
        redis_history_node(url, size, KEEP).await,
        redis_history_node(url, size, KEEP).await,
    )
}

/// Joins `group` with `options` (positions, since) and returns the
/// `joined` reply.
pub async fn join_with(client: &mut Client, group: &str, options: Value) -> Value {
    let mut command = json!({"cmd": "add_group", "group_id": group});
    for (key, value) in options.as_object().expect("options") {
        command[key] = value.clone();
    }
    client.send(&command.to_string()).await;
    let reply: Value = serde_json::from_str(&client.recv_text().await).expect("JSON");
    assert_eq!(reply["type"], "joined", "{reply}");
    assert_eq!(reply["group_id"], group, "{reply}");
    reply
}

/// The next positioned message: (offset, message).
pub async fn recv_positioned(client: &mut Client) -> (u64, Value) {
    let text = client.recv_text().await;
    let message: Value = serde_json::from_str(&text).expect("a message object");
    assert_eq!(message["type"], "message", "{text}");
    (
        message["offset"].as_u64().expect("offset"),
        message["message"].clone(),
    )
}

/// Joins with `since` and returns the reply (checked to be `joined`).
pub async fn rejoin(client: &mut Client, group: &str, offset: u64, epoch: &Value) -> Value {
    join_with(
        client,
        group,
        json!({"since": {"offset": offset, "epoch": epoch}}),
    )
    .await
}

/// A member on node a leaves after 10 messages while a sender on node b
/// keeps sending, misses at least 5, and comes back on node b with `since`:
/// the missed ones in order, then live ones, no gap, no duplicate.
pub async fn recovers_on_the_other_node_while_a_sender_keeps_sending(node_a: Node, node_b: Node) {
    const TOTAL: u64 = 300;
    let (addr_a, addr_b) = (node_a.addresses().websocket, node_b.addresses().websocket);
    let mut raw = Client::connect(addr_b).await;
    raw.join("busy").await;
    raw.sync().await;
    let mut member = Client::connect(addr_a).await;
    let joined = join_with(&mut member, "busy", json!({"positions": true})).await;
    assert_eq!(joined["offset"], 0);
    let epoch = joined["epoch"].clone();
    assert!(!epoch.as_str().unwrap().is_empty());

    let sending = tokio::spawn(async move {
        let mut sender = Client::connect(addr_b).await;
        for i in 1..=TOTAL {
            sender.send_to_group("busy", &format!("m{i}")).await;
            if i % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        sender.sync().await;
    });

    let mut last = 0;
    while last < 10 {
        let (offset, message) = recv_positioned(&mut member).await;
        assert_eq!(offset, last + 1);
        assert_eq!(message, json!(format!("m{offset}")));
        last = offset;
    }
    drop(member);
    // At least 5 more are sent while it is away (the raw member, on the
    // sender's node, sees them in the same order).
    let mut seen_raw = 0;
    while seen_raw < last + 5 {
        seen_raw += 1;
        assert_eq!(
            raw.recv_text().await,
            format!("m{seen_raw}"),
            "raw, in order"
        );
    }
    // Back, on the other node.
    let mut member = Client::connect(addr_b).await;
    let joined = rejoin(&mut member, "busy", last, &epoch).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["epoch"], epoch);
    assert!(joined["missed"].as_u64().unwrap() >= 5, "{joined}");
    while last < TOTAL {
        let (offset, message) = recv_positioned(&mut member).await;
        assert_eq!(offset, last + 1, "no gap, no duplicate");
        assert_eq!(message, json!(format!("m{offset}")));
        last = offset;
    }
    sending.await.unwrap();
    member.expect_nothing().await;
    while seen_raw < TOTAL {
        seen_raw += 1;
        assert_eq!(raw.recv_text().await, format!("m{seen_raw}"));
    }
    raw.expect_nothing().await;
    assert_eq!(node_b.handle().stats().history_recovered, 1);
    node_a.stop().await;
    node_b.stop().await;
}

/// While node a's sender sends, members join on node b one after another,
/// every other one with `since` offset 0 (a replay of all so far): each
/// sees offsets rise by one from where its `joined` says, to the last. The
/// read of each join races the live messages on their way to node b.
pub async fn joins_under_load_see_no_gap_and_no_duplicate(node_a: Node, node_b: Node) {
    const TOTAL: u64 = 400;
    const MEMBERS: u64 = 10;
    let (addr_a, addr_b) = (node_a.addresses().websocket, node_b.addresses().websocket);
    let mut first = Client::connect(addr_b).await;
    let epoch = join_with(&mut first, "busy", json!({"positions": true})).await["epoch"].clone();
    let sending = tokio::spawn(async move {
        let mut sender = Client::connect(addr_a).await;
        for i in 1..=TOTAL {
            sender.send_to_group("busy", &format!("m{i}")).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sender.sync().await;
    });
    let mut members = Vec::new();
    for k in 0..MEMBERS {
        let epoch = epoch.clone();
        members.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(k * 40)).await;
            let mut member = Client::connect(addr_b).await;
            let mut last = if k % 2 == 0 {
                let joined = join_with(&mut member, "busy", json!({"positions": true})).await;
                joined["offset"].as_u64().unwrap()
            } else {
                let joined = rejoin(&mut member, "busy", 0, &epoch).await;
                assert_eq!(joined["recovered"], true, "{joined}");
                0
            };
            while last < TOTAL {
                let (offset, message) = recv_positioned(&mut member).await;
                assert_eq!(offset, last + 1, "member {k}: no gap, no duplicate");
                assert_eq!(message, json!(format!("m{offset}")));
                last = offset;
            }
            member.expect_nothing().await;
        }));
    }
    sending.await.unwrap();
    for member in members {
        member.await.unwrap();
    }
    node_a.stop().await;
    node_b.stop().await;
}

/// `ungroup` travels as a plain (never numbered) message on a reserved
/// channel: with history on it must still act on the other node.
pub async fn actions_on_reserved_channels_work_with_history_on(node_a: Node, node_b: Node) {
    let mut member = Client::connect(node_b.addresses().websocket).await;
    join_with(&mut member, "g", json!({"positions": true})).await;
    super::common::eventually("node b has the member", || {
        node_b.handle().group_size("g") == 1
    })
    .await;
    node_a.handle().ungroup("g").expect("ungroup");
    super::common::eventually("the member left on node b", || {
        node_b.handle().group_size("g") == 0
    })
    .await;
    node_a.stop().await;
    node_b.stop().await;
}

/// A member of `g` on node a receives one message, leaves, misses five
/// (sent on node a), and comes back on node b with `since`: exactly the
/// five, in order, then a live one (a JSON message). Returns the member,
/// still joined on node b, and the epoch it joined with.
pub async fn five_missed_then_live(node_a: &Node, node_b: &Node) -> (Client, Value) {
    let mut sender = Client::connect(node_a.addresses().websocket).await;
    let mut member = Client::connect(node_a.addresses().websocket).await;
    let joined = join_with(&mut member, "g", json!({"positions": true})).await;
    sender.send_to_group("g", "one").await;
    assert_eq!(recv_positioned(&mut member).await, (1, json!("one")));
    drop(member);
    for i in 2..=6 {
        sender.send_to_group("g", &format!("m{i}")).await;
    }
    sender.sync().await;
    let mut member = Client::connect(node_b.addresses().websocket).await;
    let rejoined = rejoin(&mut member, "g", 1, &joined["epoch"]).await;
    assert_eq!(
        (
            &rejoined["recovered"],
            &rejoined["missed"],
            &rejoined["offset"]
        ),
        (&json!(true), &json!(5), &json!(6)),
        "{rejoined}"
    );
    for i in 2..=6 {
        assert_eq!(
            recv_positioned(&mut member).await,
            (i, json!(format!("m{i}")))
        );
    }
    sender
        .send(r#"{"cmd":"send_to_group","group_id":"g","message":[7]}"#)
        .await;
    assert_eq!(recv_positioned(&mut member).await, (7, json!([7])));
    member.expect_nothing().await;
    (member, joined["epoch"].clone())
}
