//! Group history on the Redis bus: Redis numbers and keeps (one Lua script
//! per publish), a member recovers on another node than the one it left,
//! and a flushed Redis or expired keys mean a new epoch.
//!
//! The same on a Redis Cluster (a group's shard channel and keys on one
//! slot): recovery on the other node, offsets that agree across nodes for
//! groups on every master, and a restarted master's new epoch.
//!
//! Every test starts its own redis-server (or a 3-master cluster) on free
//! loopback ports and stops it (`bash tests/redis/run.sh` installs
//! redis-server and redis-cli when missing).

mod common;
#[path = "common/redis_support.rs"]
mod redis_support;

use std::time::Duration;

use common::{ARRIVES, Client};
use groupcast::{Config, Error, Limits, Node};
use redis_support::{RedisCluster, RedisServer};
use serde_json::{Value, json};

async fn history_node(url: &str, size: usize, ttl: Duration) -> Node {
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

async fn join_with(client: &mut Client, group: &str, options: Value) -> Value {
    let mut command = json!({"cmd": "add_group", "group_id": group});
    for (key, value) in options.as_object().expect("options") {
        command[key] = value.clone();
    }
    client.send(&command.to_string()).await;
    let reply: Value = serde_json::from_str(&client.recv_text().await).expect("JSON");
    assert_eq!(reply["type"], "joined", "{reply}");
    reply
}

async fn recv_positioned(client: &mut Client) -> (u64, Value) {
    let text = client.recv_text().await;
    let message: Value = serde_json::from_str(&text).expect("a message object");
    assert_eq!(message["type"], "message", "{text}");
    (
        message["offset"].as_u64().expect("offset"),
        message["message"].clone(),
    )
}

/// Joins with `since` and returns the reply (checked to be `joined`).
async fn rejoin(client: &mut Client, group: &str, offset: u64, epoch: &Value) -> Value {
    join_with(
        client,
        group,
        json!({"since": {"offset": offset, "epoch": epoch}}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_recovers_on_the_other_node_while_a_sender_keeps_sending() {
    let redis = RedisServer::start().await;
    recovers_on_the_other_node_while_a_sender_keeps_sending(&redis.url()).await;
}

/// A member on node a leaves after 10 messages while a sender on node b
/// keeps sending, misses at least 5, and comes back on node b with `since`:
/// the missed ones in order, then live ones, no gap, no duplicate.
async fn recovers_on_the_other_node_while_a_sender_keeps_sending(url: &str) {
    const TOTAL: u64 = 300;
    let node_a = history_node(url, 1000, Duration::from_secs(300)).await;
    let node_b = history_node(url, 1000, Duration::from_secs(300)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_five_missed_messages_then_live_ones_and_the_host_api() {
    let redis = RedisServer::start().await;
    let node_a = history_node(&redis.url(), 1000, Duration::from_secs(300)).await;
    let node_b = history_node(&redis.url(), 1000, Duration::from_secs(300)).await;
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
    assert_eq!(json!(epoch), joined["epoch"]);
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
    let node = history_node(&redis.url(), 3, Duration::from_millis(800)).await;
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
    let node = history_node(&redis.url(), 100, Duration::from_secs(300)).await;
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
    let node_a = history_node(&redis.url(), 10, Duration::from_secs(300)).await;
    let node_b = history_node(&redis.url(), 10, Duration::from_secs(300)).await;
    let mut raw_a = Client::connect(node_a.addresses().websocket).await;
    raw_a.join("g").await;
    raw_a.sync().await;
    let mut raw_b = Client::connect(node_b.addresses().websocket).await;
    raw_b.join("g").await;
    raw_b.sync().await;
    // Sent from a node with no member of the group (not subscribed).
    let node_c = history_node(&redis.url(), 10, Duration::from_secs(300)).await;
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
    let node = history_node(&redis.url(), 10, Duration::from_secs(300)).await;
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
async fn cluster_actions_on_reserved_channels_still_work_with_history_on() {
    let redis = RedisServer::start().await;
    actions_on_reserved_channels_work_with_history_on(&redis.url()).await;
}

/// `ungroup` travels as a plain (never numbered) message on a reserved
/// channel: with history on it must still act on the other node.
async fn actions_on_reserved_channels_work_with_history_on(url: &str) {
    let node_a = history_node(url, 10, Duration::from_secs(300)).await;
    let node_b = history_node(url, 10, Duration::from_secs(300)).await;
    let mut member = Client::connect(node_b.addresses().websocket).await;
    join_with(&mut member, "g", json!({"positions": true})).await;
    common::eventually("node b has the member", || {
        node_b.handle().group_size("g") == 1
    })
    .await;
    node_a.handle().ungroup("g").expect("ungroup");
    common::eventually("the member left on node b", || {
        node_b.handle().group_size("g") == 0
    })
    .await;
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_means_a_new_epoch_and_sends_resume() {
    let mut redis = RedisServer::start().await;
    let node = history_node(&redis.url(), 100, Duration::from_secs(300)).await;
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

/// A group's shard channel on a Redis Cluster with history: the slot of its
/// keys (`groupcast:{<group>}:offset` ...); a group starting with `}`
/// would have an empty tag, so it goes behind `{\u{1}}`.
fn sharded_channel(group: &str) -> String {
    if group.starts_with('}') {
        format!("groupcast:{{\u{1}}}{group}")
    } else {
        format!("groupcast:{{{group}}}")
    }
}

/// Group ids whose channels (and keys) live on master 0, 1 and 2.
async fn groups_on_every_master(cluster: &RedisCluster) -> Vec<String> {
    let mut groups: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        let group = format!("room{i}");
        let owner = cluster.owner(&sharded_channel(&group)).await;
        groups[owner].get_or_insert(group);
        if groups.iter().all(Option::is_some) {
            break;
        }
    }
    groups.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_member_recovers_on_the_other_node_while_a_sender_keeps_sending() {
    let cluster = RedisCluster::start().await;
    recovers_on_the_other_node_while_a_sender_keeps_sending(&cluster.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_offsets_agree_across_nodes_for_groups_on_every_master() {
    const EACH: usize = 3;
    let cluster = RedisCluster::start().await;
    let mut groups = groups_on_every_master(&cluster).await;
    // Ids that test the hash-tag rules: empty tags, a brace inside.
    groups.extend(["}x", "}", "a{b}c"].map(String::from));
    let node_a = history_node(&cluster.url(), 100, Duration::from_secs(300)).await;
    let node_b = history_node(&cluster.url(), 100, Duration::from_secs(300)).await;
    let (addr_a, addr_b) = (node_a.addresses().websocket, node_b.addresses().websocket);
    let mut members = [Client::connect(addr_a).await, Client::connect(addr_b).await];
    for member in &mut members {
        for group in &groups {
            let joined = join_with(member, group, json!({"positions": true})).await;
            assert_eq!(joined["offset"], 0, "{joined}");
        }
    }
    // Both nodes subscribe each group's channel on the master that owns
    // its keys' slot, and nowhere else.
    for group in &groups {
        let channel = sharded_channel(group);
        let owner = cluster.owner(&channel).await;
        let key_owner = cluster.owner(&format!("{channel}:offset")).await;
        assert_eq!(
            owner, key_owner,
            "{group:?}: channel and keys on one master"
        );
        for (index, master) in cluster.servers.iter().enumerate() {
            let want = if index == owner { 2 } else { 0 };
            redis_support::until("sharded subscriptions", ARRIVES, || async {
                master.subscribers("SHARDNUMSUB", &channel).await == want
            })
            .await;
        }
    }
    let mut senders = [Client::connect(addr_a).await, Client::connect(addr_b).await];
    for i in 1..=EACH {
        for group in &groups {
            for (name, sender) in ["a", "b"].iter().zip(&mut senders) {
                sender.send_to_group(group, &format!("{name}{i}")).await;
            }
        }
    }
    // Each member sees every group's messages numbered 1, 2, ... with no
    // gap, each sender's in the order sent, and both members alike.
    let mut seen = Vec::new();
    for member in &mut members {
        let mut by_group: std::collections::BTreeMap<String, Vec<(u64, String)>> =
            Default::default();
        for _ in 0..groups.len() * 2 * EACH {
            let message: Value = serde_json::from_str(&member.recv_text().await).unwrap();
            by_group
                .entry(message["group_id"].as_str().unwrap().to_owned())
                .or_default()
                .push((
                    message["offset"].as_u64().unwrap(),
                    message["message"].as_str().unwrap().to_owned(),
                ));
        }
        member.expect_nothing().await;
        assert_eq!(by_group.len(), groups.len());
        for (group, messages) in &by_group {
            let offsets: Vec<u64> = messages.iter().map(|m| m.0).collect();
            let want: Vec<u64> = (1..=(2 * EACH) as u64).collect();
            assert_eq!(offsets, want, "{group:?}: {messages:?}");
            for name in ["a", "b"] {
                let order: Vec<&str> = messages
                    .iter()
                    .map(|m| m.1.as_str())
                    .filter(|m| m.starts_with(name))
                    .collect();
                let sent: Vec<String> = (1..=EACH).map(|i| format!("{name}{i}")).collect();
                assert_eq!(order, sent, "{group:?}: each sender's order");
            }
        }
        seen.push(by_group);
    }
    assert_eq!(seen[0], seen[1], "the same offsets on both nodes");
    // A host on either node reads the same history from Redis.
    for node in [&node_a, &node_b] {
        let handle = node.handle();
        let group = groups[3].clone();
        let (_, kept) = tokio::task::spawn_blocking(move || handle.history(&group, Some(0), 100))
            .await
            .unwrap()
            .expect("Redis answers");
        assert_eq!(kept, seen[0][&groups[3]]);
    }
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_restarted_master_means_a_new_epoch_for_its_groups_only() {
    let mut cluster = RedisCluster::start().await;
    let groups = groups_on_every_master(&cluster).await;
    let node_a = history_node(&cluster.url(), 100, Duration::from_secs(300)).await;
    let node_b = history_node(&cluster.url(), 100, Duration::from_secs(300)).await;
    let mut sender = Client::connect(node_a.addresses().websocket).await;
    let mut member = Client::connect(node_b.addresses().websocket).await;
    let mut epochs = Vec::new();
    for group in &groups {
        let joined = join_with(&mut member, group, json!({"positions": true})).await;
        epochs.push(joined["epoch"].clone());
    }
    for group in &groups {
        sender.send_to_group(group, "before").await;
    }
    for _ in &groups {
        assert_eq!(recv_positioned(&mut member).await, (1, json!("before")));
    }
    drop(member);

    // Master 1 goes without persistence and comes back empty, its scripts
    // forgotten (the bus loads them again with EVAL on NOSCRIPT).
    cluster.servers[1].kill();
    cluster.servers[1].spawn().await;
    redis_support::until(
        "the cluster is whole again",
        Duration::from_secs(20),
        || async {
            let mut conn = cluster.servers[1].connection().await.expect("connection");
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            info.contains("cluster_state:ok")
        },
    )
    .await;

    let mut member = Client::connect(node_b.addresses().websocket).await;
    for (index, group) in groups.iter().enumerate() {
        let rejoined = rejoin(&mut member, group, 0, &epochs[index]).await;
        if index == 1 {
            assert_eq!(rejoined["recovered"], false, "{rejoined}");
            assert_ne!(rejoined["epoch"], epochs[index], "a new epoch");
            assert_eq!(rejoined["offset"], 0, "{rejoined}");
        } else {
            assert_eq!(
                (
                    &rejoined["recovered"],
                    &rejoined["epoch"],
                    &rejoined["missed"]
                ),
                (&json!(true), &epochs[index], &json!(1)),
                "{rejoined}"
            );
            assert_eq!(recv_positioned(&mut member).await, (1, json!("before")));
        }
    }
    // Node b holds the restarted master's subscription again before the
    // sends (node a has no member: it does not subscribe).
    redis_support::until("node b resubscribed", ARRIVES, || async {
        cluster.servers[1]
            .subscribers("SHARDNUMSUB", &sharded_channel(&groups[1]))
            .await
            == 1
    })
    .await;
    for group in &groups {
        sender.send_to_group(group, "after").await;
    }
    let mut got = Vec::new();
    for _ in &groups {
        let message: Value = serde_json::from_str(&member.recv_text().await).unwrap();
        got.push((
            message["group_id"].as_str().unwrap().to_owned(),
            message["offset"].as_u64().unwrap(),
        ));
    }
    got.sort();
    let mut want: Vec<(String, u64)> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.clone(), if i == 1 { 1 } else { 2 }))
        .collect();
    want.sort();
    assert_eq!(got, want, "numbering resumes; the restarted one from 1");
    member.expect_nothing().await;
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_actions_on_reserved_channels_still_work_with_history_on() {
    let cluster = RedisCluster::start().await;
    actions_on_reserved_channels_work_with_history_on(&cluster.url()).await;
}

/// `CLUSTER <args>` (or another command, `cmd`) on one master.
async fn on_master<T: redis::FromRedisValue>(master: &RedisServer, cmd: &str, args: &[&str]) -> T {
    let mut conn = master.connection().await.expect("connection");
    redis::cmd(cmd)
        .arg(args)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_history_follows_its_slot_to_another_master() {
    let cluster = RedisCluster::start().await;
    let group = groups_on_every_master(&cluster).await.remove(0);
    let channel = sharded_channel(&group);
    let node_a = history_node(&cluster.url(), 100, Duration::from_secs(300)).await;
    let node_b = history_node(&cluster.url(), 100, Duration::from_secs(300)).await;
    // The sender's node has no member of the group: nothing but its sends
    // tells it the slot moved.
    let mut sender = Client::connect(node_a.addresses().websocket).await;
    let mut members = [
        Client::connect(node_b.addresses().websocket).await,
        Client::connect(node_b.addresses().websocket).await,
    ];
    let mut epoch = Value::Null;
    for member in &mut members {
        epoch = join_with(member, &group, json!({"positions": true})).await["epoch"].clone();
    }
    for i in 1..=3 {
        sender.send_to_group(&group, &format!("m{i}")).await;
    }
    for member in &mut members {
        for i in 1..=3 {
            assert_eq!(recv_positioned(member).await, (i, json!(format!("m{i}"))));
        }
    }

    // Reshard the group's slot from master 0 to master 2, its keys with it
    // (as `redis-cli --cluster reshard` does): Redis unsubscribes the shard
    // channel on the old owner, and the nodes' slot maps are stale.
    let (source, target) = (&cluster.servers[0], &cluster.servers[2]);
    let slot: i64 = on_master(source, "CLUSTER", &["KEYSLOT", &channel]).await;
    let slot = slot.to_string();
    let source_id: String = on_master(source, "CLUSTER", &["MYID"]).await;
    let target_id: String = on_master(target, "CLUSTER", &["MYID"]).await;
    let _: () = on_master(
        target,
        "CLUSTER",
        &["SETSLOT", &slot, "IMPORTING", &source_id],
    )
    .await;
    let _: () = on_master(
        source,
        "CLUSTER",
        &["SETSLOT", &slot, "MIGRATING", &target_id],
    )
    .await;
    let keys: Vec<String> = on_master(source, "CLUSTER", &["GETKEYSINSLOT", &slot, "10"]).await;
    assert_eq!(keys.len(), 3, "offset, epoch, log: {keys:?}");
    let port = target.port.to_string();
    let mut migrate = vec!["127.0.0.1", &port, "", "0", "5000", "KEYS"];
    migrate.extend(keys.iter().map(String::as_str));
    let _: () = on_master(source, "MIGRATE", &migrate).await;
    for master in [target, source, &cluster.servers[1]] {
        let _: () = on_master(master, "CLUSTER", &["SETSLOT", &slot, "NODE", &target_id]).await;
    }
    redis_support::until("node b subscribed on the new owner", ARRIVES, || async {
        target.subscribers("SHARDNUMSUB", &channel).await == 1
    })
    .await;

    // A burst from node a, whose slot map is stale (a pipeline: its calls
    // are redirected one by one): numbered on, in the same epoch.
    for i in 4..=8 {
        sender.send_to_group(&group, &format!("m{i}")).await;
    }
    for member in &mut members {
        for i in 4..=8 {
            assert_eq!(recv_positioned(member).await, (i, json!(format!("m{i}"))));
        }
        member.expect_nothing().await;
    }
    let mut member = Client::connect(node_b.addresses().websocket).await;
    let rejoined = rejoin(&mut member, &group, 6, &epoch).await;
    assert_eq!(
        (&rejoined["recovered"], &rejoined["missed"]),
        (&json!(true), &json!(2)),
        "{rejoined}"
    );
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_under_load_see_no_gap_and_no_duplicate() {
    let redis = RedisServer::start().await;
    joins_under_load_see_no_gap_and_no_duplicate(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_members_joining_under_load_see_no_gap_and_no_duplicate() {
    let cluster = RedisCluster::start().await;
    joins_under_load_see_no_gap_and_no_duplicate(&cluster.url()).await;
}

/// While node a's sender sends, members join on node b one after another,
/// every other one with `since` offset 0 (a replay of all so far): each
/// sees offsets rise by one from where its `joined` says, to the last. The
/// read of each join races the live messages on their way to node b.
async fn joins_under_load_see_no_gap_and_no_duplicate(url: &str) {
    const TOTAL: u64 = 400;
    const MEMBERS: u64 = 10;
    let node_a = history_node(url, 1000, Duration::from_secs(300)).await;
    let node_b = history_node(url, 1000, Duration::from_secs(300)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_history_survives_a_failover_to_a_replica() {
    let mut cluster = RedisCluster::start_with(1, "1000").await;
    let group = groups_on_every_master(&cluster).await.remove(0);
    let channel = sharded_channel(&group);
    let old = cluster.owner(&channel).await;
    let node_a = history_node(&cluster.url(), 100, Duration::from_secs(300)).await;
    let node_b = history_node(&cluster.url(), 100, Duration::from_secs(300)).await;
    let mut sender = Client::connect(node_a.addresses().websocket).await;
    let mut member = Client::connect(node_b.addresses().websocket).await;
    let epoch = join_with(&mut member, &group, json!({"positions": true})).await["epoch"].clone();
    for i in 1..=3 {
        sender.send_to_group(&group, &format!("m{i}")).await;
    }
    for i in 1..=3 {
        assert_eq!(recv_positioned(&mut member).await.0, i);
    }
    // The replica has the keys before its master goes.
    let offset_key = format!("{channel}:offset");
    redis_support::until("the replica has the offset", ARRIVES, || async {
        let mut copies = 0;
        for replica in &cluster.servers[3..] {
            let mut conn = replica.connection().await.expect("connection");
            let _: redis::RedisResult<()> = redis::cmd("READONLY").query_async(&mut conn).await;
            let offset: Option<String> = redis::cmd("GET")
                .arg(&offset_key)
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            copies += usize::from(offset.as_deref() == Some("3"));
        }
        copies == 1
    })
    .await;

    cluster.servers[old].kill();
    redis_support::until(
        "a replica takes the slot over",
        Duration::from_secs(30),
        || async { cluster.owner(&channel).await != old },
    )
    .await;
    let new = cluster.owner(&channel).await;
    redis_support::until("node b subscribed on the new master", ARRIVES, || async {
        cluster.servers[new]
            .subscribers("SHARDNUMSUB", &channel)
            .await
            == 1
    })
    .await;
    // The promoted replica never ran the scripts (NOSCRIPT, then EVAL).
    // Sends made while the client learns the new master may be dropped,
    // never numbered: what comes is numbered on from 4, same epoch.
    let mut next = 4;
    let started = std::time::Instant::now();
    while next < 7 {
        assert!(started.elapsed() < ARRIVES, "numbering did not resume");
        sender.send_to_group(&group, "after").await;
        if let Ok(text) = tokio::time::timeout(Duration::from_millis(200), member.recv_text()).await
        {
            let message: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(message["offset"], next, "{message}");
            next += 1;
        }
    }
    let mut again = Client::connect(node_a.addresses().websocket).await;
    let rejoined = rejoin(&mut again, &group, 3, &epoch).await;
    assert_eq!(rejoined["recovered"], true, "{rejoined}");
    assert_eq!(rejoined["epoch"], epoch);
    node_a.stop().await;
    node_b.stop().await;
}
