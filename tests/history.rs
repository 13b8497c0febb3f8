//! Group history on one node: positions, `since` recovery with an honest
//! `recovered`, and the bounds (size, TTL, bytes).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, node_with};
use groupcast::{Limits, Node};
use serde_json::{Value, json};

fn history_limits(size: usize) -> Limits {
    Limits {
        history_size: Some(size),
        ..Limits::default()
    }
}

async fn history_node(size: usize) -> Node {
    node_with(history_limits(size)).await
}

/// Joins `group` with `options` (positions, since) and returns the
/// `joined` reply.
async fn join_with(client: &mut Client, group: &str, options: Value) -> Value {
    let mut command = json!({"cmd": "add_group", "group_id": group});
    for (key, value) in options.as_object().expect("options object") {
        command[key] = value.clone();
    }
    client.send(&command.to_string()).await;
    let reply: Value = serde_json::from_str(&client.recv_text().await).expect("JSON reply");
    assert_eq!(reply["type"], "joined", "{reply}");
    assert_eq!(reply["group_id"], group, "{reply}");
    reply
}

/// The next positioned message: (offset, message).
async fn recv_positioned(client: &mut Client, group: &str) -> (u64, Value) {
    let text = client.recv_text().await;
    let message: Value = serde_json::from_str(&text).expect("a message object");
    assert_eq!(message["type"], "message", "{text}");
    assert_eq!(message["group_id"], group, "{text}");
    (
        message["offset"].as_u64().expect("offset"),
        message["message"].clone(),
    )
}

fn position(reply: &Value) -> Value {
    json!({"offset": reply["offset"], "epoch": reply["epoch"]})
}

async fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr).await
}

#[tokio::test]
async fn a_member_recovers_exactly_what_it_missed_then_gets_live_messages() {
    let node = history_node(100).await;
    let addr = node.addresses().websocket;
    let mut sender = connect(addr).await;
    let mut raw = connect(addr).await;
    raw.join("g").await;
    raw.sync().await;
    let mut member = connect(addr).await;
    let joined = join_with(&mut member, "g", json!({"positions": true})).await;
    assert_eq!(joined["offset"], 0);
    assert!(joined.get("recovered").is_none(), "{joined}");
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty());

    sender.send_to_group("g", "m1").await;
    assert_eq!(recv_positioned(&mut member, "g").await, (1, json!("m1")));
    // Members that did not ask get the raw text, unchanged.
    assert_eq!(raw.recv_text().await, "m1");
    drop(member);

    for i in 2..=6 {
        sender.send_to_group("g", &format!("m{i}")).await;
    }
    for i in 2..=6 {
        assert_eq!(raw.recv_text().await, format!("m{i}"));
    }
    let mut member = connect(addr).await;
    let joined = join_with(
        &mut member,
        "g",
        json!({"since": {"offset": 1, "epoch": epoch}}),
    )
    .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["missed"], 5);
    assert_eq!(joined["offset"], 6);
    assert_eq!(joined["epoch"], epoch.as_str());
    for i in 2..=6 {
        assert_eq!(
            recv_positioned(&mut member, "g").await,
            (i, json!(format!("m{i}")))
        );
    }
    sender.send_to_group("g", "live").await;
    assert_eq!(recv_positioned(&mut member, "g").await, (7, json!("live")));
    member.expect_nothing().await;
    let stats = node.handle().stats();
    assert_eq!(stats.history_recovered, 1);
    assert!(stats.history_bytes > 0);
    node.stop().await;
}

#[tokio::test]
async fn recovery_has_no_gap_and_no_duplicate_while_a_sender_keeps_sending() {
    const TOTAL: u64 = 400;
    let node = history_node(1000).await;
    let addr = node.addresses().websocket;
    let mut raw = connect(addr).await;
    raw.join("busy").await;
    raw.sync().await;
    let mut member = connect(addr).await;
    let joined = join_with(&mut member, "busy", json!({"positions": true})).await;
    let epoch = joined["epoch"].clone();

    let sending = tokio::spawn(async move {
        let mut sender = connect(addr).await;
        for i in 1..=TOTAL {
            sender.send_to_group("busy", &format!("m{i}")).await;
            if i % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        sender.sync().await;
    });

    let mut last = 0;
    while last < 20 {
        let (offset, message) = recv_positioned(&mut member, "busy").await;
        assert_eq!(offset, last + 1);
        assert_eq!(message, json!(format!("m{offset}")));
        last = offset;
    }
    drop(member);
    // At least five more are sent while it is away.
    let mut seen_raw = 0;
    while seen_raw < last + 5 {
        seen_raw += 1;
        assert_eq!(raw.recv_text().await, format!("m{seen_raw}"));
    }
    let mut member = connect(addr).await;
    let joined = join_with(
        &mut member,
        "busy",
        json!({"since": {"offset": last, "epoch": epoch}}),
    )
    .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let missed = joined["missed"].as_u64().unwrap();
    assert!(missed >= 5, "{joined}");
    assert_eq!(joined["offset"].as_u64().unwrap(), last + missed);
    // The replay, then live messages: every offset once, in order.
    while last < TOTAL {
        let (offset, message) = recv_positioned(&mut member, "busy").await;
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
    node.stop().await;
}

#[tokio::test]
async fn positions_that_cannot_be_served_answer_recovered_false() {
    // Kept: 3 messages per group.
    let node = history_node(3).await;
    let addr = node.addresses().websocket;
    let mut sender = connect(addr).await;
    let mut member = connect(addr).await;
    let joined = join_with(&mut member, "g", json!({"positions": true})).await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    drop(member);
    for i in 1..=5 {
        sender.send_to_group("g", &format!("m{i}")).await;
    }
    sender.sync().await;

    let cases = [
        ("too old", json!({"offset": 0, "epoch": epoch})),
        ("wrong epoch", json!({"offset": 4, "epoch": "not-this-one"})),
        ("ahead of the group", json!({"offset": 9, "epoch": epoch})),
    ];
    for (latest, (why, since)) in (5..).zip(cases) {
        let mut member = connect(addr).await;
        let joined = join_with(&mut member, "g", json!({"since": since})).await;
        assert_eq!(joined["recovered"], false, "{why}: {joined}");
        assert_eq!(joined["missed"], 0, "{why}");
        assert_eq!(joined["offset"], latest, "{why}");
        // Nothing replayed; joined live.
        sender.send_to_group("g", why).await;
        assert_eq!(
            recv_positioned(&mut member, "g").await,
            (latest + 1, json!(why))
        );
        member.expect_nothing().await;
    }
    // What is still kept is recovered.
    let mut member = connect(addr).await;
    let joined = join_with(
        &mut member,
        "g",
        json!({"since": {"offset": 6, "epoch": epoch}}),
    )
    .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["missed"], 2);
    assert_eq!(node.handle().stats().history_not_recovered, 3);
    node.stop().await;
}

#[tokio::test]
async fn with_history_off_a_since_join_is_not_recovered_and_messages_stay_raw() {
    let node = common::local_node().await;
    let addr = node.addresses().websocket;
    let mut member = connect(addr).await;
    let joined = join_with(
        &mut member,
        "g",
        json!({"since": {"offset": 3, "epoch": "e"}}),
    )
    .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["epoch"], "");
    let mut sender = connect(addr).await;
    sender.send_to_group("g", "hello").await;
    assert_eq!(member.recv_text().await, "hello");
    assert!(node.handle().history("g", None, 10).is_err());
    assert_eq!(
        node.handle()
            .send_to_group_with_offset("g", "x", &[])
            .unwrap(),
        (1, None)
    );
    node.stop().await;
}

#[tokio::test]
async fn a_quiet_group_loses_its_history_after_the_ttl() {
    let node = node_with(Limits {
        history_ttl: Duration::from_millis(300),
        ..history_limits(10)
    })
    .await;
    let addr = node.addresses().websocket;
    let mut sender = connect(addr).await;
    let mut member = connect(addr).await;
    let joined = join_with(&mut member, "g", json!({"positions": true})).await;
    drop(member);
    sender.send_to_group("g", "before").await;
    sender.sync().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sender.send_to_group("g", "after").await;
    sender.sync().await;
    let mut member = connect(addr).await;
    let rejoined = join_with(&mut member, "g", json!({"since": position(&joined)})).await;
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    assert_ne!(rejoined["epoch"], joined["epoch"], "a new epoch");
    assert_eq!(rejoined["offset"], 1, "offsets restart under the new epoch");
    node.stop().await;
}

#[tokio::test]
async fn the_byte_bound_evicts_and_counts() {
    let node = node_with(Limits {
        history_max_bytes: 4096,
        ..history_limits(1000)
    })
    .await;
    let addr = node.addresses().websocket;
    let mut sender = connect(addr).await;
    let mut member = connect(addr).await;
    let joined = join_with(&mut member, "a", json!({"positions": true})).await;
    drop(member);
    let text = "x".repeat(100);
    for _ in 0..30 {
        sender.send_to_group("a", &text).await;
    }
    sender.sync().await;
    let stats = node.handle().stats();
    assert!(stats.history_bytes <= 4096, "{stats:?}");
    assert!(stats.history_evictions > 0, "{stats:?}");
    let (_, kept) = node.handle().history("a", None, 1000).unwrap();
    assert!(kept.len() < 30 && !kept.is_empty(), "{}", kept.len());
    assert_eq!(kept.last().unwrap().0, 30);
    let mut member = connect(addr).await;
    let rejoined = join_with(&mut member, "a", json!({"since": position(&joined)})).await;
    assert_eq!(rejoined["recovered"], false, "evicted: {rejoined}");
    node.stop().await;
}

#[tokio::test]
async fn a_malformed_since_gets_an_error_and_the_connection_stays_usable() {
    let node = history_node(10).await;
    let mut client = connect(node.addresses().websocket).await;
    for bad in [
        r#"{"cmd":"add_group","group_id":"g","since":{"offset":"1","epoch":"e"}}"#,
        r#"{"cmd":"add_group","group_id":"g","since":[1]}"#,
        r#"{"cmd":"add_group","group_id":"g","positions":1}"#,
    ] {
        client.send(bad).await;
        assert_eq!(client.recv_error_code().await, "invalid_field", "{bad}");
    }
    client.sync().await;
    node.stop().await;
}

#[tokio::test]
async fn the_host_sees_offsets_and_reads_history() {
    let node = history_node(10).await;
    let addr = node.addresses().websocket;
    let handle = node.handle();
    let mut member = connect(addr).await;
    join_with(&mut member, "h", json!({"positions": true})).await;
    assert_eq!(
        handle
            .send_to_group_with_offset("h", "from host", &[])
            .unwrap(),
        (1, Some(1))
    );
    assert_eq!(
        recv_positioned(&mut member, "h").await,
        (1, json!("from host"))
    );
    // A client's non-string message keeps its JSON form for positioned
    // members (and in the history the host reads, as its text).
    let mut sender = connect(addr).await;
    sender
        .send(r#"{"cmd":"send_to_group","group_id":"h","message":{"n":[1,2]}}"#)
        .await;
    assert_eq!(
        recv_positioned(&mut member, "h").await,
        (2, json!({"n": [1, 2]}))
    );
    assert_eq!(handle.send_to_group("h", "third", &[]).unwrap(), 1);
    assert_eq!(recv_positioned(&mut member, "h").await, (3, json!("third")));
    let (epoch, all) = handle.history("h", None, 100).unwrap();
    assert!(!epoch.is_empty());
    assert_eq!(
        all,
        vec![
            (1, "from host".to_owned()),
            (2, r#"{"n":[1,2]}"#.to_owned()),
            (3, "third".to_owned())
        ]
    );
    assert_eq!(
        handle.history("h", Some(1), 1).unwrap().1,
        vec![(2, r#"{"n":[1,2]}"#.to_owned())]
    );
    // Leaving ends positioned delivery: a plain rejoin gets raw messages.
    member.send(r#"{"cmd":"leave_group","group_id":"h"}"#).await;
    member.join("h").await;
    member.sync().await;
    handle.send_to_group("h", "raw again", &[]).unwrap();
    assert_eq!(member.recv_text().await, "raw again");
    node.stop().await;
}
