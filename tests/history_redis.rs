//! Group history on a standalone Redis bus: Redis numbers and keeps (one
//! Lua script per publish), a member recovers on another node than the one
//! it left, and a flushed Redis or expired keys mean a new epoch. The same
//! on a Redis Cluster: `history_redis_cluster.rs`.
//!
//! Every test starts its own redis-server on free loopback ports and stops
//! it (`bash tests/redis/run.sh` installs redis-server and redis-cli when
//! missing).

mod common;
#[path = "common/history_support.rs"]
mod history_support;
#[path = "common/redis_support.rs"]
mod redis_support;

use std::time::Duration;

use common::Client;
use groupcast::{Config, Error, Limits, Node};
use history_support::*;
use redis_support::RedisServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_recovers_on_the_other_node_while_a_sender_keeps_sending() {
    let redis = RedisServer::start().await;
    let (node_a, node_b) = two_redis_nodes(&redis.url(), 1000).await;
    recovers_on_the_other_node_while_a_sender_keeps_sending(node_a, node_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_five_missed_messages_then_live_ones_and_the_host_api() {
    let redis = RedisServer::start().await;
    let (node_a, node_b) = two_redis_nodes(&redis.url(), 1000).await;
    let (mut member, joined_epoch) = five_missed_then_live(&node_a, &node_b).await;

    // A host reads Redis's history and learns its send's offset (blocking
    // calls: from a thread of its own).
    let handle = node_b.handle();
    let (read, sent) = tokio::task::spawn_blocking(move || {
        let read = handle.history("g", Some(4), 2);
        let sent = handle.send_to_group_with_offset("g", "from the host", &[]);
        (read, sent)
    })
    .await
    .unwrap();
    let (epoch, kept) = read.expect("Redis answers");
    assert_eq!(json!(epoch), joined_epoch);
    assert_eq!(kept, vec![(5, "m5".to_owned()), (6, "m6".to_owned())]);
    assert_eq!(sent.expect("sent"), (0, Some(8)), "Redis's offset");
    assert_eq!(
        recv_positioned(&mut member).await,
        (8, json!("from the host"))
    );
    // On a thread of a multi-threaded runtime it waits in block_in_place.
    let (_, offset) = node_b
        .handle()
        .send_to_group_with_offset("g", "from the runtime", &[])
        .expect("sent");
    assert_eq!(offset, Some(9));
    assert_eq!(
        recv_positioned(&mut member).await,
        (9, json!("from the runtime"))
    );
    member.expect_nothing().await;
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_epoch_too_old_and_expired_keys_are_not_recovered() {
    let redis = RedisServer::start().await;
    let node = redis_history_node(&redis.url(), 3, Duration::from_millis(800)).await;
    let addr = node.addresses().websocket;
    let mut sender = Client::connect(addr).await;
    let mut member = Client::connect(addr).await;
    let joined = join_with(&mut member, "g", json!({"positions": true})).await;
    let epoch = joined["epoch"].clone();
    for i in 1..=5 {
        sender.send_to_group("g", &format!("m{i}")).await;
    }
    for i in 1..=5 {
        assert_eq!(recv_positioned(&mut member).await.0, i);
    }
    drop(member);

    // Wrong epoch: nothing replayed, joins live.
    let mut member = Client::connect(addr).await;
    let rejoined = rejoin(&mut member, "g", 4, &json!("not-the-epoch")).await;
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    assert_eq!(rejoined["epoch"], epoch);
    assert_eq!(rejoined["offset"], 5);
    member.expect_nothing().await;
    drop(member);
    // Too old: offsets 3..=5 are kept, 2 is gone.
    let mut member = Client::connect(addr).await;
    let rejoined = rejoin(&mut member, "g", 1, &epoch).await;
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    member.expect_nothing().await;
    drop(member);
    // Just old enough: 3, 4, 5.
    let mut member = Client::connect(addr).await;
    let rejoined = rejoin(&mut member, "g", 2, &epoch).await;
    assert_eq!(
        (&rejoined["recovered"], &rejoined["missed"]),
        (&json!(true), &json!(3))
    );
    for i in 3..=5 {
        assert_eq!(recv_positioned(&mut member).await.0, i);
    }
    drop(member);
    // Ahead of the group (a position from elsewhere): not recovered.
    let mut member = Client::connect(addr).await;
    let rejoined = rejoin(&mut member, "g", 9, &epoch).await;
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    drop(member);

    // Quiet for longer than history_ttl: Redis expired the keys.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut member = Client::connect(addr).await;
    let rejoined = rejoin(&mut member, "g", 5, &epoch).await;
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    assert_ne!(rejoined["epoch"], epoch, "a new epoch");
    assert_eq!(rejoined["offset"], 0);
    sender.send_to_group("g", "after").await;
    assert_eq!(recv_positioned(&mut member).await, (1, json!("after")));
    assert_eq!(node.handle().stats().history_not_recovered, 4);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_means_a_new_epoch() {
    let redis = RedisServer::start().await;
    let node = redis_history_node(&redis.url(), 100, KEEP).await;
    let addr = node.addresses().websocket;
    let mut sender = Client::connect(addr).await;
    let mut member = Client::connect(addr).await;
    let joined = join_with(&mut member, "g", json!({"positions": true})).await;
    sender.send_to_group("g", "before").await;
    assert_eq!(recv_positioned(&mut member).await, (1, json!("before")));
    drop(member);

    let mut conn = redis.connection().await.expect("redis connection");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("FLUSHALL");
    // The scripts too: the node's calls are refused (NOSCRIPT) and made
    // again, the first by EVAL.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("SCRIPT FLUSH");

    let mut member = Client::connect(addr).await;
    let rejoined = rejoin(&mut member, "g", 1, &joined["epoch"]).await;
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    assert_ne!(rejoined["epoch"], joined["epoch"]);
    assert_eq!(rejoined["offset"], 0);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("SCRIPT FLUSH");
    for i in 1..=5 {
        sender.send_to_group("g", &format!("after {i}")).await;
    }
    for i in 1..=5 {
        assert_eq!(
            recv_positioned(&mut member).await,
            (i, json!(format!("after {i}"))),
            "in order, each once"
        );
    }
    member.expect_nothing().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_did_not_opt_in_get_raw_messages_from_the_other_node() {
    let redis = RedisServer::start().await;
    let (node_a, node_b) = two_redis_nodes(&redis.url(), 10).await;
    let mut raw_a = Client::connect(node_a.addresses().websocket).await;
    raw_a.join("g").await;
    raw_a.sync().await;
    let mut raw_b = Client::connect(node_b.addresses().websocket).await;
    raw_b.join("g").await;
    raw_b.sync().await;
    // Sent from a node with no member of the group (not subscribed).
    let node_c = redis_history_node(&redis.url(), 10, KEEP).await;
    let mut sender = Client::connect(node_c.addresses().websocket).await;
    sender.send_to_group("g", "plain \"text\"").await;
    sender.send_to_group("g", "again").await;
    for raw in [&mut raw_a, &mut raw_b] {
        assert_eq!(raw.recv_text().await, "plain \"text\"");
        assert_eq!(raw.recv_text().await, "again");
        raw.expect_nothing().await;
    }
    for node in [node_a, node_b, node_c] {
        node.stop().await;
    }
}

#[tokio::test]
async fn history_on_a_redis_cluster_bus_with_a_brace_in_its_prefix_is_refused_clearly() {
    // `{` in the prefix would be every name's hash tag: a group's channel
    // and keys could not share a slot.
    let config = Config {
        bus: Some("redis+cluster://127.0.0.1:7000,127.0.0.1:7001?prefix=app%7B1%7D:".into()),
        limits: Limits {
            history_size: Some(10),
            ..Limits::default()
        },
        ..Config::local("127.0.0.1:0")
    };
    match Node::start(config).await {
        Err(Error::Config(why)) => {
            assert!(
                why.contains("Redis Cluster") && why.contains("'{'"),
                "{why}"
            )
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a '{{' in the prefix must be refused"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn on_a_current_thread_runtime_a_host_send_does_not_wait_for_its_offset() {
    let redis = RedisServer::start().await;
    let node = redis_history_node(&redis.url(), 10, KEEP).await;
    let mut member = Client::connect(node.addresses().websocket).await;
    join_with(&mut member, "g", json!({"positions": true})).await;
    let started = std::time::Instant::now();
    let (_, offset) = node
        .handle()
        .send_to_group_with_offset("g", "hello", &[])
        .expect("sent");
    assert_eq!(offset, None, "waiting would stall the runtime");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(recv_positioned(&mut member).await, (1, json!("hello")));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_on_reserved_channels_still_work_with_history_on() {
    let redis = RedisServer::start().await;
    let (node_a, node_b) = two_redis_nodes(&redis.url(), 10).await;
    actions_on_reserved_channels_work_with_history_on(node_a, node_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_means_a_new_epoch_and_sends_resume() {
    let mut redis = RedisServer::start().await;
    let node = redis_history_node(&redis.url(), 100, KEEP).await;
    let addr = node.addresses().websocket;
    let mut sender = Client::connect(addr).await;
    let mut member = Client::connect(addr).await;
    let joined = join_with(&mut member, "g", json!({"positions": true})).await;
    sender.send_to_group("g", "before").await;
    assert_eq!(recv_positioned(&mut member).await, (1, json!("before")));
    drop(member);

    // Gone without persistence, back on the same port.
    redis.kill();
    redis.spawn().await;
    common::eventually("the node reconnects", || node.handle().bus_connected()).await;

    let mut member = Client::connect(addr).await;
    let rejoined = rejoin(&mut member, "g", 1, &joined["epoch"]).await;
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    assert_ne!(rejoined["epoch"], joined["epoch"]);
    sender.send_to_group("g", "after").await;
    assert_eq!(recv_positioned(&mut member).await, (1, json!("after")));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_under_load_see_no_gap_and_no_duplicate() {
    let redis = RedisServer::start().await;
    let (node_a, node_b) = two_redis_nodes(&redis.url(), 1000).await;
    joins_under_load_see_no_gap_and_no_duplicate(node_a, node_b).await;
}
