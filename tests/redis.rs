//! Nodes on Redis instead of a channel server: two nodes on one standalone
//! Redis (the seed scenario across nodes, leave, exactly-once, no traffic
//! for a node without members), Redis restarted mid-stream, and a 3-master
//! Redis Cluster with sharded pub/sub (groups on different shards, one
//! master restarted).
//!
//! Every test starts its own redis-server processes on free loopback ports
//! and stops them. redis-server and redis-cli must be installed:
//! `bash tests/redis/run.sh` installs them (Debian) and runs this file.

mod common;
#[path = "common/redis_support.rs"]
mod redis_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ARRIVES, Client};
use futures_util::StreamExt;
use groupcast::{Config, Error, HostConfig, Node};
use redis_support::{RedisCluster, RedisServer, free_port, until};
use tokio_tungstenite::tungstenite::Message;

/// The Redis channel of a group, with the default prefix.
fn channel(group: &str) -> String {
    format!("{}{group}", groupcast::config::DEFAULT_REDIS_PREFIX)
}

fn redis_config(url: &str) -> Config {
    Config {
        bus: Some(url.to_owned()),
        ..Config::local("127.0.0.1:0")
    }
}

/// A node on the Redis bus at `url`, connected.
async fn redis_node(url: &str) -> Node {
    let node = Node::start(redis_config(url)).await.expect("node starts");
    tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
        .await
        .expect("node reaches redis");
    node
}

/// Text messages received within `window`.
async fn drain(client: &mut Client, window: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(window, client.ws.next()).await {
        if let Message::Text(text) = message {
            got.push(text.as_str().to_owned());
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_across_two_nodes_exactly_once() {
    let redis = RedisServer::start().await;
    let node_a = redis_node(&redis.url()).await;
    let node_b = redis_node(&redis.url()).await;
    let mut a1 = Client::connect(node_a.addresses().websocket).await;
    let mut a2 = Client::connect(node_a.addresses().websocket).await;
    let mut b1 = Client::connect(node_b.addresses().websocket).await;
    for c in [&mut a1, &mut a2, &mut b1] {
        c.join("123").await;
        c.sync().await;
    }
    until("both nodes subscribed to group 123", ARRIVES, || async {
        redis.subscribers("NUMSUB", &channel("123")).await == 2
    })
    .await;

    let (before_a, before_b) = (node_a.handle().stats(), node_b.handle().stats());
    a1.send_to_group("123", "from a").await;
    b1.send(r#"{"cmd":"send_to_group","group_id":123,"message":"from b"}"#)
        .await;
    for c in [&mut a1, &mut a2, &mut b1] {
        let mut got = vec![c.recv_text().await, c.recv_text().await];
        got.sort();
        assert_eq!(got, ["from a", "from b"]);
        c.expect_nothing().await;
    }
    // Deliveries of the other node's message count like local ones.
    let (after_a, after_b) = (node_a.handle().stats(), node_b.handle().stats());
    assert_eq!(
        after_a.messages_out - before_a.messages_out,
        4,
        "2 local + 2 remote"
    );
    assert_eq!(after_a.bytes_out - before_a.bytes_out, 4 * 6);
    assert_eq!(
        after_b.messages_out - before_b.messages_out,
        2,
        "1 local + 1 remote"
    );
    assert_eq!(after_b.bytes_out - before_b.bytes_out, 2 * 6);
    node_a.stop().await;
    node_b.stop().await;
}

/// Other nodes' messages are delivered in runs (consecutive messages for a
/// group together): a burst that switches groups every few messages still
/// reaches each group's members complete, in order, and counted once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_groups_arrives_whole_and_in_order_on_the_other_node() {
    const MESSAGES: usize = 600;
    let redis = RedisServer::start().await;
    let node_a = redis_node(&redis.url()).await;
    let node_b = redis_node(&redis.url()).await;
    let mut sender = Client::connect(node_a.addresses().websocket).await;
    let mut members = Vec::new();
    for group in ["g1", "g2"] {
        let mut member = Client::connect(node_b.addresses().websocket).await;
        member.join(group).await;
        member.sync().await;
        members.push(member);
        until("node b subscribed", ARRIVES, || async {
            redis.subscribers("NUMSUB", &channel(group)).await == 1
        })
        .await;
    }
    let before = node_b.handle().stats();
    // Runs of 1 to 7 messages per group, alternating, sent in one go.
    let mut expected = [Vec::new(), Vec::new()];
    let mut group = 0;
    let mut left_in_run = 1;
    for i in 0..MESSAGES {
        let text = format!("m{i}");
        sender
            .send_to_group(if group == 0 { "g1" } else { "g2" }, &text)
            .await;
        expected[group].push(text);
        left_in_run -= 1;
        if left_in_run == 0 {
            group = 1 - group;
            left_in_run = 1 + i % 7;
        }
    }
    for (member, expected) in members.iter_mut().zip(&expected) {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.push(member.recv_text().await);
        }
        assert_eq!(&got, expected);
        member.expect_nothing().await;
    }
    let after = node_b.handle().stats();
    assert_eq!(after.messages_out - before.messages_out, MESSAGES as u64);
    assert_eq!(after.bus_dropped_events, 0);
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_subscribes_only_while_it_has_members() {
    let redis = RedisServer::start().await;
    let node_a = redis_node(&redis.url()).await;
    let node_b = redis_node(&redis.url()).await;
    let mut member = Client::connect(node_a.addresses().websocket).await;
    let mut sender = Client::connect(node_b.addresses().websocket).await;
    // Node b has members elsewhere only: it must not hear group g.
    sender.join("elsewhere").await;
    sender.sync().await;
    member.join("g").await;
    member.sync().await;
    until("node a subscribed", ARRIVES, || async {
        redis.subscribers("NUMSUB", &channel("g")).await == 1
    })
    .await;
    assert_eq!(redis.subscribers("NUMSUB", &channel("elsewhere")).await, 1);

    for i in 0..20 {
        sender.send_to_group("g", &format!("cross {i}")).await;
    }
    for i in 0..20 {
        assert_eq!(member.recv_text().await, format!("cross {i}"), "in order");
    }
    // Node a published nothing on g, node b is not subscribed to g: the
    // sender sees nothing of it.
    sender.expect_nothing().await;
    member.expect_nothing().await;

    member.send(r#"{"cmd":"leave_group","group_id":"g"}"#).await;
    until("node a unsubscribed", ARRIVES, || async {
        redis.subscribers("NUMSUB", &channel("g")).await == 0
    })
    .await;
    assert_eq!(node_a.handle().group_count(), 0);
    sender.send_to_group("g", "after leave").await;
    member.expect_nothing().await;
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_resumes_delivery_within_two_seconds() {
    let mut redis = RedisServer::start().await;
    let node_a = redis_node(&redis.url()).await;
    let node_b = redis_node(&redis.url()).await;
    let mut a = Client::connect(node_a.addresses().websocket).await;
    let mut a_local = Client::connect(node_a.addresses().websocket).await;
    let mut b = Client::connect(node_b.addresses().websocket).await;
    for c in [&mut a, &mut a_local, &mut b] {
        c.join("g").await;
        c.sync().await;
    }
    until("both subscribed", ARRIVES, || async {
        redis.subscribers("NUMSUB", &channel("g")).await == 2
    })
    .await;
    a.send_to_group("g", "before").await;
    assert_eq!(b.recv_text().await, "before");
    assert_eq!(a.recv_text().await, "before");
    assert_eq!(a_local.recv_text().await, "before");

    redis.kill();
    common::eventually("nodes notice the outage", || {
        !node_a.handle().bus_connected() && !node_b.handle().bus_connected()
    })
    .await;
    // Local members are still served; the publication is dropped, counted.
    let dropped = node_a.handle().stats().bus_dropped_publishes;
    a.send_to_group("g", "during outage").await;
    assert_eq!(a.recv_text().await, "during outage");
    assert_eq!(a_local.recv_text().await, "during outage");
    common::eventually("the publication counted as dropped", || {
        node_a.handle().stats().bus_dropped_publishes == dropped + 1
    })
    .await;
    b.expect_nothing().await;

    redis.spawn().await;
    let back = Instant::now();
    // Send a numbered message every 50 ms until b hears one.
    let mut first = None;
    for i in 0..200 {
        a.send_to_group("g", &format!("after {i}")).await;
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(50), b.ws.next()).await
        {
            first = Some(text.as_str().to_owned());
            break;
        }
    }
    let resumed = back.elapsed();
    assert!(first.is_some_and(|t| t.starts_with("after ")));
    assert!(
        resumed < Duration::from_secs(2),
        "delivery resumed {resumed:?} after redis came back"
    );
    assert!(node_a.handle().bus_connected() && node_b.handle().bus_connected());
    assert!(node_a.handle().stats().bus_reconnects >= 1);
    assert_eq!(redis.subscribers("NUMSUB", &channel("g")).await, 2);
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_while_redis_is_down_and_joins_it_later() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let node = Node::start(redis_config(&url)).await.expect("node starts");
    let mut member = Client::connect(node.addresses().websocket).await;
    member.join("g").await;
    member.sync().await;
    assert!(!node.handle().bus_connected());
    let redis = RedisServer::start_with(port, &[]).await;
    tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
        .await
        .expect("node reaches redis once it is up");
    assert_eq!(redis.subscribers("NUMSUB", &channel("g")).await, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bus_configurations_are_refused() {
    for (config, why) in [
        (redis_config("http://127.0.0.1:1"), "expected redis://"),
        (
            Config {
                bus: Some("redis://127.0.0.1:1".into()),
                listen: "127.0.0.1:0".into(),
                ..Config::default()
            },
            "not both",
        ),
    ] {
        match Node::start(config).await {
            Err(Error::Config(message)) => assert!(message.contains(why), "{message}"),
            Err(other) => panic!("expected a configuration error, got {other}"),
            Ok(_) => panic!("expected a configuration error"),
        }
    }
    let mut config = redis_config("redis://127.0.0.1:1");
    config.host = HostConfig {
        message_events: true,
        ..HostConfig::default()
    };
    let node = Node::start(config).await.expect("node starts");
    match node.handle().channel_publish("news", "1") {
        Err(Error::Channel(message)) => assert!(message.contains("Redis"), "{message}"),
        other => panic!("expected a channel error, got {other:?}"),
    }
    node.stop().await;
}

/// Group ids whose channels live on master 0, 1 and 2, in that order.
async fn one_group_per_shard(cluster: &RedisCluster) -> Vec<String> {
    let mut groups: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        let group = format!("room{i}");
        let owner = cluster.owner(&channel(&group)).await;
        groups[owner].get_or_insert(group);
        if groups.iter().all(Option::is_some) {
            break;
        }
    }
    groups.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_sharded_pubsub_spreads_groups_and_survives_a_master_restart() {
    let mut cluster = RedisCluster::start().await;
    let groups = one_group_per_shard(&cluster).await;
    let node_a = redis_node(&cluster.url()).await;
    let node_b = redis_node(&cluster.url()).await;
    let mut on_a = Client::connect(node_a.addresses().websocket).await;
    let mut on_b = Client::connect(node_b.addresses().websocket).await;
    for c in [&mut on_a, &mut on_b] {
        for group in &groups {
            c.join(group).await;
        }
        c.sync().await;
    }
    // Each group's channel is subscribed on its own shard only, by both
    // nodes (sharded pub/sub: no broadcast over the cluster bus).
    for (owner, group) in groups.iter().enumerate() {
        for (index, master) in cluster.servers.iter().enumerate() {
            let want = if index == owner { 2 } else { 0 };
            until(
                "sharded subscriptions on the owning shard",
                ARRIVES,
                || async { master.subscribers("SHARDNUMSUB", &channel(group)).await == want },
            )
            .await;
        }
    }
    for group in &groups {
        on_a.send_to_group(group, &format!("{group} from a")).await;
        on_b.send_to_group(group, &format!("{group} from b")).await;
    }
    for c in [&mut on_a, &mut on_b] {
        let mut got = drain(c, Duration::from_millis(500)).await;
        got.retain(|t| t != "sync");
        got.sort();
        let mut want: Vec<String> = groups
            .iter()
            .flat_map(|g| [format!("{g} from a"), format!("{g} from b")])
            .collect();
        want.sort();
        assert_eq!(got, want, "every message exactly once");
    }

    // No node connection was lost in steady state (a spurious loss would
    // make the bus resubscribe every group).
    assert_eq!(node_a.handle().stats().bus_reconnects, 0);
    assert_eq!(node_b.handle().stats().bus_reconnects, 0);

    // Restart the master of groups[1]: the other shards keep working while
    // it is down, and its group's delivery resumes once it is back.
    cluster.servers[1].kill();
    on_a.send_to_group(&groups[0], "shard 0 during outage")
        .await;
    assert_eq!(on_b.recv_text().await, "shard 0 during outage");
    assert_eq!(on_a.recv_text().await, "shard 0 during outage");
    cluster.servers[1].spawn().await;
    let back = Instant::now();
    let mut heard = false;
    while back.elapsed() < Duration::from_secs(10) && !heard {
        on_a.send_to_group(&groups[1], "shard 1 back").await;
        heard = drain(&mut on_b, Duration::from_millis(100))
            .await
            .iter()
            .any(|t| t == "shard 1 back");
    }
    assert!(heard, "delivery on the restarted shard did not resume");
    eprintln!(
        "shard delivery resumed {:?} after the master came back",
        back.elapsed()
    );
    until(
        "both nodes resubscribed on the restarted master",
        ARRIVES,
        || async {
            cluster.servers[1]
                .subscribers("SHARDNUMSUB", &channel(&groups[1]))
                .await
                == 2
        },
    )
    .await;
    // Both ways: the sender's own subscription came back too.
    on_b.send_to_group(&groups[1], "shard 1 from b").await;
    let heard = drain(&mut on_a, Duration::from_millis(500)).await;
    assert!(
        heard.iter().any(|t| t == "shard 1 from b"),
        "node a hears the restarted shard again: {heard:?}"
    );
    assert!(node_a.handle().stats().bus_reconnects >= 1);
    common::eventually("both nodes back in sync", || {
        node_a.handle().bus_connected() && node_b.handle().bus_connected()
    })
    .await;
    node_a.stop().await;
    node_b.stop().await;
}

/// `CLUSTER <args>` on one master.
async fn cluster_cmd<T: redis::FromRedisValue>(master: &RedisServer, args: &[&str]) -> T {
    let mut conn = master.connection().await.expect("connection");
    redis::cmd("CLUSTER")
        .arg(args)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CLUSTER {args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_subscriptions_follow_a_slot_migration() {
    let cluster = RedisCluster::start().await;
    let groups = one_group_per_shard(&cluster).await;
    let group = &groups[0];
    let node_a = redis_node(&cluster.url()).await;
    let node_b = redis_node(&cluster.url()).await;
    let mut on_a = Client::connect(node_a.addresses().websocket).await;
    let mut on_b = Client::connect(node_b.addresses().websocket).await;
    for c in [&mut on_a, &mut on_b] {
        c.join(group).await;
        c.sync().await;
    }
    let (source, target) = (&cluster.servers[0], &cluster.servers[2]);
    until("both nodes subscribed on the owner", ARRIVES, || async {
        source.subscribers("SHARDNUMSUB", &channel(group)).await == 2
    })
    .await;

    // Move the group's slot from master 0 to master 2 (it holds no keys,
    // so there is nothing to MIGRATE): Redis unsubscribes the shard
    // channel's subscribers on the old owner.
    let slot: i64 = cluster_cmd(source, &["KEYSLOT", &channel(group)]).await;
    let slot = slot.to_string();
    let source_id: String = cluster_cmd(source, &["MYID"]).await;
    let target_id: String = cluster_cmd(target, &["MYID"]).await;
    let _: () = cluster_cmd(target, &["SETSLOT", &slot, "IMPORTING", &source_id]).await;
    let _: () = cluster_cmd(source, &["SETSLOT", &slot, "MIGRATING", &target_id]).await;
    for master in [target, source, &cluster.servers[1]] {
        let _: () = cluster_cmd(master, &["SETSLOT", &slot, "NODE", &target_id]).await;
    }
    until(
        "both nodes subscribed on the new owner",
        ARRIVES,
        || async { target.subscribers("SHARDNUMSUB", &channel(group)).await == 2 },
    )
    .await;
    assert_eq!(source.subscribers("SHARDNUMSUB", &channel(group)).await, 0);
    on_a.send_to_group(group, "after migration").await;
    assert_eq!(on_b.recv_text().await, "after migration");
    assert_eq!(on_a.recv_text().await, "after migration");
    on_b.expect_nothing().await;
    on_a.expect_nothing().await;
    node_a.stop().await;
    node_b.stop().await;
}

/// A `groupcast serve` process; killed on drop.
struct ServeProcess {
    child: Child,
    line: String,
}

impl ServeProcess {
    fn start(args: &[&str]) -> ServeProcess {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_groupcast"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("groupcast starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("address line");
        ServeProcess { child, line }
    }

    fn websocket(&self) -> std::net::SocketAddr {
        self.line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("websocket="))
            .unwrap_or_else(|| panic!("no websocket address in {:?}", self.line))
            .parse()
            .expect("address")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serve_with_bus_runs_nodes_on_redis_without_a_channel_server() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let a = ServeProcess::start(&["--listen", "127.0.0.1:0", "--bus", &url]);
    let b = ServeProcess::start(&["--listen", "127.0.0.1:0", "--bus", &url]);
    assert!(a.line.contains(" bus=redis"), "{:?}", a.line);
    assert!(!a.line.contains("channel="), "no embedded channel server");
    let mut on_a = Client::connect(a.websocket()).await;
    let mut on_b = Client::connect(b.websocket()).await;
    on_b.join("123").await;
    on_b.sync().await;
    until("node b subscribed", ARRIVES, || async {
        redis.subscribers("NUMSUB", &channel("123")).await == 1
    })
    .await;
    on_a.send_to_group("123", "across processes").await;
    assert_eq!(on_b.recv_text().await, "across processes");

    let refused = Command::new(env!("CARGO_BIN_EXE_groupcast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--bus", &url])
        .args(["--channel", "127.0.0.1:2206"])
        .output()
        .expect("groupcast runs");
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--channel"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_subscriptions_follow_a_failover_to_a_replica() {
    let mut cluster = RedisCluster::start_with(1, "1000").await;
    for replica in &cluster.servers[3..] {
        until(
            "replicas in sync with their masters",
            Duration::from_secs(20),
            || async {
                let mut conn = replica.connection().await.expect("connection");
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                info.contains("master_link_status:up")
            },
        )
        .await;
    }
    let groups = one_group_per_shard(&cluster).await;
    let group = &groups[0];
    let old = cluster.owner(&channel(group)).await;
    let node_a = redis_node(&cluster.url()).await;
    let node_b = redis_node(&cluster.url()).await;
    let mut on_a = Client::connect(node_a.addresses().websocket).await;
    let mut on_b = Client::connect(node_b.addresses().websocket).await;
    for c in [&mut on_a, &mut on_b] {
        c.join(group).await;
        c.sync().await;
    }
    until("both nodes subscribed on the master", ARRIVES, || async {
        cluster.servers[old]
            .subscribers("SHARDNUMSUB", &channel(group))
            .await
            == 2
    })
    .await;
    on_a.send_to_group(group, "before failover").await;
    assert_eq!(on_b.recv_text().await, "before failover");
    assert_eq!(on_a.recv_text().await, "before failover");

    cluster.servers[old].kill();
    let killed = Instant::now();
    until(
        "a replica takes the slot over",
        Duration::from_secs(30),
        || async { cluster.owner(&channel(group)).await != old },
    )
    .await;
    let new = cluster.owner(&channel(group)).await;
    eprintln!("failover after {:?}", killed.elapsed());
    until(
        "both nodes subscribed on the new master",
        ARRIVES,
        || async {
            cluster.servers[new]
                .subscribers("SHARDNUMSUB", &channel(group))
                .await
                == 2
        },
    )
    .await;
    let mut heard = false;
    let promoted = Instant::now();
    while promoted.elapsed() < ARRIVES && !heard {
        on_a.send_to_group(group, "after failover").await;
        heard = drain(&mut on_b, Duration::from_millis(100))
            .await
            .iter()
            .any(|t| t == "after failover");
    }
    assert!(heard, "delivery did not resume after the failover");
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_prefix_comes_from_the_url() {
    let redis = RedisServer::start().await;
    let url = format!("{}/?prefix=chat%3Aroom:", redis.url());
    let node_a = redis_node(&url).await;
    let node_b = redis_node(&url).await;
    let mut member = Client::connect(node_a.addresses().websocket).await;
    let mut sender = Client::connect(node_b.addresses().websocket).await;
    member.join("7").await;
    member.sync().await;
    until("subscribed under the prefix", ARRIVES, || async {
        redis.subscribers("NUMSUB", "chat:room:7").await == 1
    })
    .await;
    assert_eq!(redis.subscribers("NUMSUB", &channel("7")).await, 0);
    sender.send_to_group("7", "prefixed").await;
    assert_eq!(member.recv_text().await, "prefixed");
    node_a.stop().await;
    node_b.stop().await;
}
