//! Group history on a Redis Cluster bus: a group's shard channel and its
//! keys on one slot, so the script that numbers a message also publishes
//! it. A member recovers on the other node, offsets agree across nodes for
//! groups on every master, a restarted master means a new epoch for its
//! groups only, history follows a resharded slot and survives a failover,
//! and joins under load see no gap and no duplicate.
//!
//! Every test starts its own 3-master cluster on free loopback ports and
//! stops it (`bash tests/redis/run.sh` installs redis-server and redis-cli
//! when missing).

mod common;
#[path = "common/history_support.rs"]
mod history_support;
#[path = "common/redis_support.rs"]
mod redis_support;

use std::time::Duration;

use common::{ARRIVES, Client};
use history_support::*;
use redis_support::{RedisCluster, RedisServer};
use serde_json::{Value, json};

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
    let (node_a, node_b) = two_redis_nodes(&cluster.url(), 1000).await;
    recovers_on_the_other_node_while_a_sender_keeps_sending(node_a, node_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_offsets_agree_across_nodes_for_groups_on_every_master() {
    const EACH: usize = 3;
    let cluster = RedisCluster::start().await;
    let mut groups = groups_on_every_master(&cluster).await;
    // Ids that test the hash-tag rules: empty tags, a brace inside.
    groups.extend(["}x", "}", "a{b}c"].map(String::from));
    let (node_a, node_b) = two_redis_nodes(&cluster.url(), 100).await;
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
    let (node_a, node_b) = two_redis_nodes(&cluster.url(), 100).await;
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
    // The cluster is whole again.
    cluster.servers[1].wait_cluster_ok().await;

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
    let (node_a, node_b) = two_redis_nodes(&cluster.url(), 10).await;
    actions_on_reserved_channels_work_with_history_on(node_a, node_b).await;
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
    let (node_a, node_b) = two_redis_nodes(&cluster.url(), 100).await;
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
async fn on_a_redis_cluster_members_joining_under_load_see_no_gap_and_no_duplicate() {
    let cluster = RedisCluster::start().await;
    let (node_a, node_b) = two_redis_nodes(&cluster.url(), 1000).await;
    joins_under_load_see_no_gap_and_no_duplicate(node_a, node_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_history_survives_a_failover_to_a_replica() {
    let mut cluster = RedisCluster::start_with(1, "1000").await;
    let group = groups_on_every_master(&cluster).await.remove(0);
    let channel = sharded_channel(&group);
    let old = cluster.owner(&channel).await;
    let (node_a, node_b) = two_redis_nodes(&cluster.url(), 100).await;
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
