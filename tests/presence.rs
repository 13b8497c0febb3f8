//! Users and presence across a cluster, on both buses: a uid's every device
//! gets `send_to_uid` once and nodes without the uid get no traffic for it;
//! presence and counts agree from every node; join/leave events once per
//! user however many tabs; actions on a connection held by another node;
//! `ungroup` on every node; bad uids refused. The same scenarios run on
//! two and three nodes of a channel server and on two nodes of Redis.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{ARRIVES, Client, Process, eventually, next_event};
use groupcast::channel::{ChannelServer, ChannelServerConfig};
use groupcast::{Config, ConnId, HostConfig, HostEvent, HostEvents, Node};

/// A cluster of nodes that report their connections to the test.
struct Cluster {
    nodes: Vec<Node>,
    events: Vec<Arc<HostEvents>>,
    hub: Option<ChannelServer>,
    redis: Option<RedisServer>,
}

fn node_config(lease: Duration) -> Config {
    Config {
        host: HostConfig {
            connect_events: true,
            ..HostConfig::default()
        },
        presence_lease: lease,
        ..Config::local("127.0.0.1:0")
    }
}

impl Cluster {
    async fn start(configs: Vec<Config>) -> (Vec<Node>, Vec<Arc<HostEvents>>) {
        let mut nodes = Vec::new();
        let mut events = Vec::new();
        for config in configs {
            let node = Node::start(config).await.expect("node starts");
            tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
                .await
                .expect("bus connects");
            events.push(node.handle().events().expect("events").clone());
            nodes.push(node);
        }
        (nodes, events)
    }

    async fn on_channel(n: usize) -> Cluster {
        Self::on_channel_with_lease(n, Duration::from_secs(60)).await
    }

    async fn on_channel_with_lease(n: usize, lease: Duration) -> Cluster {
        let hub = ChannelServer::bind("127.0.0.1:0", ChannelServerConfig::default())
            .await
            .expect("channel server");
        let configs = (0..n)
            .map(|_| Config {
                channel: Some(hub.local_addr().to_string()),
                ..node_config(lease)
            })
            .collect();
        let (nodes, events) = Self::start(configs).await;
        let cluster = Cluster {
            nodes,
            events,
            hub: Some(hub),
            redis: None,
        };
        cluster.until_all_see_each_other().await;
        cluster
    }

    async fn on_redis(n: usize) -> Cluster {
        Self::on_redis_with_lease(n, Duration::from_secs(60)).await
    }

    async fn on_redis_with_lease(n: usize, lease: Duration) -> Cluster {
        let redis = RedisServer::start();
        let configs = (0..n)
            .map(|_| Config {
                bus: Some(redis.url()),
                ..node_config(lease)
            })
            .collect();
        let (nodes, events) = Self::start(configs).await;
        let cluster = Cluster {
            nodes,
            events,
            hub: None,
            redis: Some(redis),
        };
        cluster.until_all_see_each_other().await;
        cluster
    }

    async fn until_all_see_each_other(&self) {
        let n = self.nodes.len() as u64;
        eventually("every node hears every other", || {
            self.nodes
                .iter()
                .all(|node| node.handle().cluster_stats().unwrap().nodes == n)
        })
        .await;
    }

    /// A client of node `i`, bound to `uid` when given, and its id.
    async fn connect(&self, i: usize, uid: Option<&str>) -> (Client, ConnId) {
        let client = Client::connect(self.nodes[i].addresses().websocket).await;
        let conn = match next_event(&self.events[i]).await {
            HostEvent::Connect { conn, .. } => conn,
            other => panic!("expected a connect event, got {other:?}"),
        };
        if let Some(uid) = uid {
            self.nodes[i].handle().bind_uid(conn, uid).unwrap();
        }
        (client, conn)
    }

    /// Subscribers of a uid's channel on the bus (how many nodes get its
    /// traffic).
    fn uid_subscribers(&self, uid: &str) -> usize {
        match (&self.hub, &self.redis) {
            (Some(hub), _) => hub.subscriber_count(&format!(
                "{}\u{1}uid:{uid}",
                groupcast::bus::GROUP_CHANNEL_PREFIX
            )),
            (_, Some(redis)) => redis.numsub(&format!("groupcast:\u{1}uid:{uid}")),
            _ => 0,
        }
    }

    async fn stop(self) {
        for node in &self.nodes {
            node.stop().await;
        }
        if let Some(hub) = &self.hub {
            hub.stop().await;
        }
    }
}

async fn send_to_uid_reaches_every_device_once_and_only_nodes_holding_it(cluster: Cluster) {
    let (mut phone, _) = cluster.connect(0, Some("bob")).await;
    let (mut laptop, _) = cluster.connect(1, Some("bob")).await;
    let (mut other, _) = cluster.connect(1, Some("carol")).await;
    let last = cluster.nodes.len() - 1;
    eventually("both of bob's nodes subscribed", || {
        cluster.uid_subscribers("bob") == 2
    })
    .await;
    // Sent from the node that holds none of bob's connections (the last
    // one with three nodes, node 1 otherwise).
    let sender = cluster.nodes[last].handle();
    let out_before: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.handle().stats().messages_out)
        .collect();
    sender.send_to_uid("bob", "for bob").unwrap();
    assert_eq!(phone.recv_text().await, "for bob");
    assert_eq!(laptop.recv_text().await, "for bob");
    sender
        .send_to_uids(&["bob", "carol", "bob"], "both")
        .unwrap();
    assert_eq!(phone.recv_text().await, "both");
    assert_eq!(laptop.recv_text().await, "both");
    assert_eq!(other.recv_text().await, "both");
    for c in [&mut phone, &mut laptop, &mut other] {
        c.expect_nothing().await;
    }
    if last == 2 {
        // The third node holds no uid: the bus sent it nothing for bob.
        assert_eq!(cluster.uid_subscribers("bob"), 2);
        assert_eq!(
            cluster.nodes[2].handle().stats().messages_out,
            out_before[2],
            "nothing delivered on the node without bob"
        );
    }
    // Unbound: the node unsubscribes from bob's channel.
    drop(laptop);
    eventually("node 1 dropped bob's channel", || {
        cluster.uid_subscribers("bob") == 1
    })
    .await;
    cluster.stop().await;
}

async fn presence_counts_and_events_agree_from_every_node(cluster: Cluster) {
    let (mut watcher, _) = cluster.connect(0, Some("watcher")).await;
    watcher
        .send(r#"{"cmd":"add_group","group_id":"room","presence":true}"#)
        .await;
    watcher.sync().await;
    // Bob with two tabs on two nodes, and one anonymous connection.
    let (_tab1, t1) = cluster.connect(1, Some("bob")).await;
    let (_tab2, t2) = cluster.connect(cluster.nodes.len() - 1, Some("bob")).await;
    let (_anon, anon) = cluster.connect(1, None).await;
    let last = cluster.nodes.len() - 1;
    cluster.nodes[1].handle().join(t1, "room").unwrap();
    let joined: serde_json::Value = serde_json::from_str(&watcher.recv_text().await).unwrap();
    assert_eq!(
        joined,
        serde_json::json!({"type":"join","group_id":"room","uid":"bob"})
    );
    cluster.nodes[last].handle().join(t2, "room").unwrap();
    cluster.nodes[1].handle().join(anon, "room").unwrap();
    eventually(
        "every node counts 4 connections and 2 users in the room",
        || {
            cluster.nodes.iter().all(|n| {
                let p = n.handle().presence("room", 100).unwrap();
                p.connections == 4 && p.users == 2 && p.uids == ["bob", "watcher"] && !p.truncated
            })
        },
    )
    .await;
    for node in &cluster.nodes {
        let h = node.handle();
        assert!(h.is_uid_online("bob").unwrap());
        assert!(!h.is_uid_online("nobody").unwrap());
        let stats = h.cluster_stats().unwrap();
        assert_eq!((stats.connections, stats.users, stats.groups), (4, 2, 1));
        let capped = h.presence("room", 1).unwrap();
        assert_eq!((capped.uids.len(), capped.truncated), (1, true));
    }
    // The client command answers the same.
    watcher
        .send(r#"{"cmd":"presence","group_id":"room"}"#)
        .await;
    let answer: serde_json::Value = serde_json::from_str(&watcher.recv_text().await).unwrap();
    assert_eq!(answer["type"], "presence");
    assert_eq!(answer["connections"], 4);
    assert_eq!(answer["users"], 2);
    assert_eq!(answer["uids"], serde_json::json!(["bob", "watcher"]));
    // Bob's first tab leaves: he is still there, no event.
    cluster.nodes[1].handle().leave(t1, "room").unwrap();
    watcher.expect_nothing().await;
    // His last tab leaves: one leave event.
    cluster.nodes[last].handle().leave(t2, "room").unwrap();
    let left: serde_json::Value = serde_json::from_str(&watcher.recv_text().await).unwrap();
    assert_eq!(
        left,
        serde_json::json!({"type":"leave","group_id":"room","uid":"bob"})
    );
    watcher.expect_nothing().await;
    eventually("every node agrees bob left", || {
        cluster
            .nodes
            .iter()
            .all(|n| n.handle().presence("room", 100).unwrap().users == 1)
    })
    .await;
    cluster.stop().await;
}

async fn actions_reach_a_connection_on_another_node(cluster: Cluster) {
    let (mut far, conn) = cluster.connect(1, Some("dora")).await;
    let near = cluster.nodes[0].handle();
    near.send_text(conn, "hello from node 0").unwrap();
    assert_eq!(far.recv_text().await, "hello from node 0");
    near.send_binary(conn, &[0, 1, 2, 255]).unwrap();
    assert_eq!(far.recv().await.into_data().as_ref(), &[0, 1, 2, 255]);
    assert!(near.join(conn, "remote-room").unwrap());
    eventually("the remote join happened", || {
        cluster.nodes[1].handle().group_size("remote-room") == 1
    })
    .await;
    near.send_to_group("remote-room", "via the group", &[])
        .unwrap();
    assert_eq!(far.recv_text().await, "via the group");
    near.leave(conn, "remote-room").unwrap();
    eventually("the remote leave happened", || {
        cluster.nodes[1].handle().group_size("remote-room") == 0
    })
    .await;
    // Bound from node 0, like GatewayWorker's bindUid for any client_id.
    near.bind_uid(conn, "dora2").unwrap();
    eventually("the remote bind happened", || {
        cluster.nodes[1].handle().uid_of(conn).unwrap().as_deref() == Some("dora2")
    })
    .await;
    assert_eq!(near.unbind_uid(conn).unwrap(), None);
    eventually("the remote unbind happened", || {
        cluster.nodes[1].handle().uid_of(conn).unwrap().is_none()
    })
    .await;
    // An id no node of the cluster has is refused at once.
    let bogus = conn ^ (1 << 40);
    assert!(matches!(
        near.send_text(bogus, "x"),
        Err(groupcast::Error::UnknownConnection(_))
    ));
    near.close(conn, 4001, "bye from node 0").unwrap();
    let frame = far.recv_close().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4001);
    assert_eq!(frame.reason.as_str(), "bye from node 0");
    cluster.stop().await;
}

async fn ungroup_empties_the_group_on_every_node(cluster: Cluster) {
    let mut members = Vec::new();
    for i in 0..cluster.nodes.len() {
        let (mut c, _) = cluster.connect(i, None).await;
        c.join("doomed").await;
        c.sync().await;
        members.push(c);
    }
    let n = cluster.nodes.len() as u64;
    eventually("the group is seen whole", || {
        cluster.nodes[0]
            .handle()
            .presence("doomed", 10)
            .unwrap()
            .connections
            == n
    })
    .await;
    assert_eq!(cluster.nodes[0].handle().ungroup("doomed").unwrap(), 1);
    eventually("every node emptied it", || {
        cluster
            .nodes
            .iter()
            .all(|n| n.handle().group_size("doomed") == 0)
    })
    .await;
    eventually("presence agrees", || {
        cluster
            .nodes
            .iter()
            .all(|n| n.handle().presence("doomed", 10).unwrap().connections == 0)
    })
    .await;
    cluster.nodes[0]
        .handle()
        .send_to_group("doomed", "anyone?", &[])
        .unwrap();
    for c in &mut members {
        c.expect_nothing().await;
    }
    cluster.stop().await;
}

macro_rules! on_every_cluster {
    ($scenario:ident: $channel2:ident, $channel3:ident, $redis2:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $channel2() {
            $scenario(Cluster::on_channel(2).await).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $channel3() {
            $scenario(Cluster::on_channel(3).await).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $redis2() {
            $scenario(Cluster::on_redis(2).await).await;
        }
    };
}

on_every_cluster!(send_to_uid_reaches_every_device_once_and_only_nodes_holding_it:
    send_to_uid_on_two_channel_nodes, send_to_uid_on_three_channel_nodes, send_to_uid_on_two_redis_nodes);
on_every_cluster!(presence_counts_and_events_agree_from_every_node:
    presence_on_two_channel_nodes, presence_on_three_channel_nodes, presence_on_two_redis_nodes);
on_every_cluster!(actions_reach_a_connection_on_another_node:
    remote_actions_on_two_channel_nodes, remote_actions_on_three_channel_nodes, remote_actions_on_two_redis_nodes);
on_every_cluster!(ungroup_empties_the_group_on_every_node:
    ungroup_on_two_channel_nodes, ungroup_on_three_channel_nodes, ungroup_on_two_redis_nodes);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_without_a_bus_answers_the_same_api_and_refuses_bad_uids() {
    let node = Node::start(node_config(Duration::from_secs(60)))
        .await
        .unwrap();
    let events = node.handle().events().unwrap().clone();
    let h = node.handle();
    let mut client = Client::connect(node.addresses().websocket).await;
    let conn = match next_event(&events).await {
        HostEvent::Connect { conn, .. } => conn,
        other => panic!("{other:?}"),
    };
    for bad in ["", &"x".repeat(257)] {
        let error = h.bind_uid(conn, bad).unwrap_err();
        assert!(matches!(error, groupcast::Error::InvalidUid(_)), "{error}");
        assert!(error.to_string().starts_with("invalid uid: "), "{error}");
        assert!(matches!(
            h.send_to_uid(bad, "x"),
            Err(groupcast::Error::InvalidUid(_))
        ));
        assert!(h.is_uid_online(bad).is_err());
    }
    assert_eq!(h.uid_of(conn).unwrap(), None);
    h.bind_uid(conn, "eve").unwrap();
    assert_eq!(h.uid_of(conn).unwrap().as_deref(), Some("eve"));
    h.bind_uid(conn, "eve2").unwrap();
    assert!(!h.is_uid_online("eve").unwrap());
    assert!(h.is_uid_online("eve2").unwrap());
    assert_eq!(h.send_to_uid("eve2", "hi").unwrap(), 1);
    assert_eq!(client.recv_text().await, "hi");
    assert_eq!(h.unbind_uid(conn).unwrap().as_deref(), Some("eve2"));
    assert_eq!(h.send_to_uid("eve2", "gone").unwrap(), 0);
    assert!(!h.is_uid_online("eve2").unwrap());
    // The reserved byte never makes a group.
    client
        .send(r#"{"cmd":"add_group","group_id":"\u0001uid:eve"}"#)
        .await;
    assert_eq!(client.recv_error_code().await, "invalid_group_id");
    assert!(h.join(conn, "\u{1}uid:eve").is_err());
    // Another node's id, with no bus: unknown.
    assert!(matches!(
        h.send_text(conn ^ (1 << 40), "x"),
        Err(groupcast::Error::UnknownConnection(_))
    ));
    h.join(conn, "solo").unwrap();
    let p = h.presence("solo", 10).unwrap();
    assert_eq!((p.connections, p.users), (1, 0));
    assert_eq!(h.ungroup("solo").unwrap(), 1);
    assert_eq!(h.group_size("solo"), 0);
    drop(client);
    eventually("the connection's presence is gone", || {
        h.cluster_stats().unwrap().connections == 0
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_can_turn_presence_and_its_command_off() {
    let mut config = node_config(Duration::from_secs(60));
    config.host.presence_command = false;
    let node = Node::start(config).await.unwrap();
    let mut client = Client::connect(node.addresses().websocket).await;
    client.send(r#"{"cmd":"presence","group_id":"g"}"#).await;
    assert_eq!(client.recv_error_code().await, "presence_off");
    client
        .send(r#"{"cmd":"add_group","group_id":"g","presence":true}"#)
        .await;
    assert_eq!(client.recv_error_code().await, "presence_off");
    assert!(
        node.handle().presence("g", 10).is_ok(),
        "the host still asks"
    );
    node.stop().await;
    let mut config = node_config(Duration::from_secs(60));
    config.presence = false;
    let node = Node::start(config).await.unwrap();
    let why = node.handle().cluster_stats().unwrap_err().to_string();
    assert!(why.contains("presence is off"), "{why}");
    node.stop().await;
}

/// A node process killed with SIGKILL (no goodbye) leaves presence within
/// its 2 s lease: its users go offline, counts drop, and members watching
/// the group hear it; 40 users leaving at once come as one
/// `presence_changed` event, not 40.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_presence_within_its_lease_on_a_channel_server() {
    let hub = ChannelServer::bind("127.0.0.1:0", ChannelServerConfig::default())
        .await
        .unwrap();
    let hub_addr = hub.local_addr().to_string();
    killed_node_leaves_presence(("--channel", hub_addr.clone()), |config| {
        config.channel = Some(hub_addr.clone())
    })
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_presence_within_its_lease_on_redis() {
    let redis = RedisServer::start();
    killed_node_leaves_presence(("--bus", redis.url()), |config| {
        config.bus = Some(redis.url())
    })
    .await;
}

/// The killed node is a `groupcast serve` process started with `bus_arg`;
/// the watching node is configured by `join`.
async fn killed_node_leaves_presence(bus_arg: (&str, String), join: impl FnOnce(&mut Config)) {
    let mut config = node_config(Duration::from_secs(60));
    join(&mut config);
    let near = Node::start(config).await.unwrap();
    tokio::time::timeout(ARRIVES, near.handle().wait_bus_connected())
        .await
        .unwrap();
    let h = near.handle();
    let mut watcher = Client::connect(near.addresses().websocket).await;
    watcher
        .send(r#"{"cmd":"add_group","group_id":"room","presence":true}"#)
        .await;
    watcher.sync().await;
    let doomed = Process::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        bus_arg.0,
        &bus_arg.1,
        "--presence-lease",
        "2",
        "--uid-query-param",
        "uid",
        "--no-demo",
    ]);
    let far = doomed.addr("websocket");
    // The process prints its address before its bus is up (Redis is
    // reached in the background): wait until the nodes know each other.
    eventually("the watching node hears the doomed one", || {
        h.cluster_stats().unwrap().nodes == 2
    })
    .await;
    // One user first: one join event.
    let mut zed = Client::connect_path(far, "/?uid=zed").await;
    zed.join("room").await;
    zed.sync().await;
    let joined: serde_json::Value = serde_json::from_str(&watcher.recv_text().await).unwrap();
    assert_eq!(joined["type"], "join");
    assert_eq!(joined["uid"], "zed");
    let mut crowd = Vec::new();
    for i in 0..40 {
        let mut c = Client::connect_path(far, &format!("/?uid=user{i}")).await;
        c.join("room").await;
        crowd.push(c);
    }
    for c in &mut crowd {
        c.sync().await;
    }
    eventually("the near node sees 41 users of the far node", || {
        h.presence("room", 100).unwrap().users == 41
    })
    .await;
    // The 40 joins: each an event, or coalesced, but all told.
    let mut told = 0;
    while told < 40 {
        let event: serde_json::Value = serde_json::from_str(&watcher.recv_text().await).unwrap();
        told += match event["type"].as_str() {
            Some("join") => 1,
            Some("presence_changed") => event["joined"].as_u64().unwrap(),
            other => panic!("unexpected {other:?}"),
        };
    }
    assert!(h.is_uid_online("zed").unwrap());
    assert_eq!(h.cluster_stats().unwrap().connections, 42);

    doomed.signal(libc::SIGKILL);
    let killed = std::time::Instant::now();
    let gone: serde_json::Value = serde_json::from_str(&watcher.recv_text().await).unwrap();
    let after = killed.elapsed();
    assert!(!h.is_uid_online("zed").unwrap());
    // 41 users at once: one coalesced event, not 41.
    assert_eq!(
        gone,
        serde_json::json!({"type":"presence_changed","group_id":"room","joined":0,"left":41})
    );
    watcher.expect_nothing().await;
    assert!(
        after <= Duration::from_millis(3200),
        "gone {after:?} after the kill, the lease is 2 s (checked every second)"
    );
    let p = h.presence("room", 100).unwrap();
    assert_eq!((p.connections, p.users), (1, 0));
    let stats = h.cluster_stats().unwrap();
    assert_eq!((stats.nodes, stats.connections, stats.users), (1, 1, 0));
    assert_eq!(h.stats().presence_expired_nodes, 1);
    assert_eq!(h.stats().presence_coalesced_events, 41);
    drop(doomed);
    near.stop().await;
}

/// A redis-server on a free loopback port, killed on drop.
struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "groupcast-presence-redis-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (bash tests/redis/run.sh --install-only)");
        let server = RedisServer { port, dir, child };
        let deadline = std::time::Instant::now() + ARRIVES;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server starts");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `PUBSUB NUMSUB channel`.
    fn numsub(&self, channel: &str) -> usize {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let (_, n): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut conn)
            .unwrap();
        n
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Heartbeats keep a live node's share: with a 1 s lease, both nodes still
/// see each other (and each other's users) after three leases.
async fn heartbeats_keep_live_nodes(cluster: Cluster) {
    let (_bob, _) = cluster.connect(0, Some("bob")).await;
    eventually("node 1 sees bob", || {
        cluster.nodes[1].handle().is_uid_online("bob").unwrap()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in &cluster.nodes {
        assert_eq!(node.handle().cluster_stats().unwrap().nodes, 2);
        assert_eq!(node.handle().stats().presence_expired_nodes, 0);
    }
    assert!(cluster.nodes[1].handle().is_uid_online("bob").unwrap());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_live_nodes_on_redis() {
    heartbeats_keep_live_nodes(Cluster::on_redis_with_lease(2, Duration::from_secs(1)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_live_nodes_on_a_channel_server() {
    heartbeats_keep_live_nodes(Cluster::on_channel_with_lease(2, Duration::from_secs(1)).await)
        .await;
}
