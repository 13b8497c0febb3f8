//! Several nodes on one channel server: exactly-once delivery across nodes,
//! interest-based routing, and surviving a channel server restart.

mod common;

use std::time::Duration;

use common::{ARRIVES, Client, cluster_node, eventually};
use groupcast::channel::{ChannelServer, ChannelServerConfig};

async fn channel_server(addr: &str) -> ChannelServer {
    ChannelServer::bind(addr, ChannelServerConfig::default())
        .await
        .expect("channel server starts")
}

fn group_channel(group: &str) -> String {
    format!("{}{group}", groupcast::bus::GROUP_CHANNEL_PREFIX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_every_node_receive_exactly_once() {
    let hub = channel_server("127.0.0.1:0").await;
    let node_a = cluster_node(hub.local_addr()).await;
    let node_b = cluster_node(hub.local_addr()).await;
    let mut a1 = Client::connect(node_a.addresses().websocket).await;
    let mut a2 = Client::connect(node_a.addresses().websocket).await;
    let mut b1 = Client::connect(node_b.addresses().websocket).await;
    for c in [&mut a1, &mut a2, &mut b1] {
        c.join("123").await;
        c.sync().await;
    }
    eventually("both nodes subscribed to group 123", || {
        hub.subscriber_count(&group_channel("123")) == 2
    })
    .await;

    a1.send_to_group("123", "from a").await;
    b1.send_to_group("123", "from b").await;
    for c in [&mut a1, &mut a2, &mut b1] {
        let mut got = vec![c.recv_text().await, c.recv_text().await];
        got.sort();
        assert_eq!(got, ["from a", "from b"]);
        c.expect_nothing().await;
    }
    node_a.stop().await;
    node_b.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_subscribes_only_while_it_has_members() {
    let hub = channel_server("127.0.0.1:0").await;
    let node_a = cluster_node(hub.local_addr()).await;
    let node_b = cluster_node(hub.local_addr()).await;
    let channel = group_channel("g");
    let mut member = Client::connect(node_a.addresses().websocket).await;
    let mut sender = Client::connect(node_b.addresses().websocket).await;
    member.join("g").await;
    member.sync().await;
    eventually("node a subscribed", || hub.subscriber_count(&channel) == 1).await;

    // Node b has no member: it is not subscribed, yet its clients can send.
    sender.send_to_group("g", "cross").await;
    assert_eq!(member.recv_text().await, "cross");
    sender.expect_nothing().await;

    member.send(r#"{"cmd":"leave_group","group_id":"g"}"#).await;
    eventually("node a unsubscribed", || {
        hub.subscriber_count(&channel) == 0
    })
    .await;
    assert_eq!(node_a.handle().group_count(), 0);
    node_a.stop().await;
    node_b.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_server_restart_resumes_cross_node_delivery() {
    let hub = channel_server("127.0.0.1:0").await;
    let hub_addr = hub.local_addr();
    let node_a = cluster_node(hub_addr).await;
    let node_b = cluster_node(hub_addr).await;
    let mut a = Client::connect(node_a.addresses().websocket).await;
    let mut a_local = Client::connect(node_a.addresses().websocket).await;
    let mut b = Client::connect(node_b.addresses().websocket).await;
    for c in [&mut a, &mut a_local, &mut b] {
        c.join("g").await;
        c.sync().await;
    }
    eventually("both subscribed", || {
        hub.subscriber_count(&group_channel("g")) == 2
    })
    .await;

    hub.stop().await;
    drop(hub);
    eventually("nodes notice the outage", || {
        !node_a.handle().bus_connected() && !node_b.handle().bus_connected()
    })
    .await;
    // Local members are still served during the outage.
    a.send_to_group("g", "during outage").await;
    assert_eq!(a.recv_text().await, "during outage");
    assert_eq!(a_local.recv_text().await, "during outage");

    let hub = channel_server(&hub_addr.to_string()).await;
    let back = tokio::time::Instant::now();
    eventually("both nodes resubscribed", || {
        hub.subscriber_count(&group_channel("g")) == 2
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "resubscribed in {:?}",
        back.elapsed()
    );
    // b may or may not get the message buffered during the outage (it was
    // sent while the bus was down and buffered); drain it if it comes.
    let mut seen_by_b = Vec::new();
    a.send_to_group("g", "after restart").await;
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(ARRIVES, futures_util::StreamExt::next(&mut b.ws)).await
    {
        let text = msg.into_text().unwrap().as_str().to_owned();
        let done = text == "after restart";
        seen_by_b.push(text);
        if done {
            break;
        }
    }
    assert_eq!(seen_by_b.last().map(String::as_str), Some("after restart"));
    assert!(seen_by_b.len() <= 2, "{seen_by_b:?}");
    assert!(node_a.handle().bus_connected());
    node_a.stop().await;
    node_b.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_channel_server_lets_a_second_node_join() {
    let config = groupcast::Config {
        listen: "127.0.0.1:0".into(),
        channel_listen: Some("127.0.0.1:0".into()),
        ..groupcast::Config::default()
    };
    let first = groupcast::Node::start(config).await.unwrap();
    let channel = first.addresses().channel.expect("embedded channel server");
    assert!(first.handle().bus_connected());
    let second = cluster_node(channel).await;
    let mut on_first = Client::connect(first.addresses().websocket).await;
    let mut on_second = Client::connect(second.addresses().websocket).await;
    on_first.join("7").await;
    on_first.sync().await;
    let hub = first.channel_server().unwrap();
    eventually("first node subscribed", || {
        hub.subscriber_count(&group_channel("7")) == 1
    })
    .await;
    on_second
        .send(r#"{"cmd":"send_to_group","group_id":7,"message":{"n":1}}"#)
        .await;
    assert_eq!(on_first.recv_text().await, r#"{"n":1}"#);
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_nodes_arrives_whole_and_in_order_for_every_group() {
    // Node B delivers consecutive messages for one group as one run; runs
    // for interleaved groups must keep each member's order and lose nothing.
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let hub = channel_server("127.0.0.1:0").await;
    let node_a = cluster_node(hub.local_addr()).await;
    let node_b = cluster_node(hub.local_addr()).await;
    let mut sender = Client::connect(node_a.addresses().websocket).await;
    let mut in_both = Client::connect(node_b.addresses().websocket).await;
    let mut in_x = Client::connect(node_b.addresses().websocket).await;
    for group in ["x", "y"] {
        in_both.join(group).await;
    }
    in_x.join("x").await;
    in_both.sync().await;
    in_x.sync().await;
    eventually("node B subscribed to x and y", || {
        hub.subscriber_count(&group_channel("x")) == 1
            && hub.subscriber_count(&group_channel("y")) == 1
    })
    .await;
    let mut expected_both = Vec::new();
    let mut expected_x = Vec::new();
    for i in 0..600 {
        // Runs of 1 to 4 messages per group.
        let group = if (i / (1 + i % 4)) % 2 == 0 { "x" } else { "y" };
        let text = format!("{group}{i}");
        let frame = serde_json::json!({"cmd": "send_to_group", "group_id": group, "message": text});
        sender
            .ws
            .feed(Message::text(frame.to_string()))
            .await
            .unwrap();
        expected_both.push(text.clone());
        if group == "x" {
            expected_x.push(text);
        }
    }
    sender.ws.flush().await.unwrap();
    for text in &expected_both {
        assert_eq!(&in_both.recv_text().await, text);
    }
    for text in &expected_x {
        assert_eq!(&in_x.recv_text().await, text);
    }
    in_both.expect_nothing().await;
    in_x.expect_nothing().await;
    node_a.stop().await;
    node_b.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_nodes_deliveries_count_in_messages_out() {
    let hub = channel_server("127.0.0.1:0").await;
    let sending = cluster_node(hub.local_addr()).await;
    let receiving = cluster_node(hub.local_addr()).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut member = Client::connect(receiving.addresses().websocket).await;
        member.join("g").await;
        member.sync().await;
        members.push(member);
    }
    let channel = group_channel("g");
    eventually("the receiving node subscribed", || {
        hub.subscriber_count(&channel) == 1
    })
    .await;
    let before = receiving.handle().stats();
    let mut sender = Client::connect(sending.addresses().websocket).await;
    for message in ["one", "three"] {
        sender.send_to_group("g", message).await;
        for member in &mut members {
            assert_eq!(member.recv_text().await, message);
        }
    }
    let after = receiving.handle().stats();
    assert_eq!(after.messages_out - before.messages_out, 2 * 3);
    assert_eq!(after.bytes_out - before.bytes_out, (3 + 5) * 3);
}

/// A host that subscribed to a channel and never takes its events fills its
/// queue; the node must keep delivering other nodes' group messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_does_not_delay_cross_node_group_delivery() {
    let hub = channel_server("127.0.0.1:0").await;
    let publisher = cluster_node(hub.local_addr()).await;
    let slow = groupcast::Node::start(groupcast::Config {
        channel: Some(hub.local_addr().to_string()),
        channel_listen: None,
        host: groupcast::HostConfig {
            channel_events: true,
            queue_capacity: 4,
            ..groupcast::HostConfig::default()
        },
        ..groupcast::Config::local("127.0.0.1:0")
    })
    .await
    .unwrap();
    slow.handle().wait_bus_connected().await;
    slow.handle().channel_subscribe("news").unwrap();
    eventually("subscribed to news", || hub.subscriber_count("news") == 1).await;
    let mut member = Client::connect(slow.addresses().websocket).await;
    member.join("g").await;
    member.sync().await;
    let channel = group_channel("g");
    eventually("subscribed to g", || hub.subscriber_count(&channel) == 1).await;
    for i in 0..100 {
        publisher
            .handle()
            .channel_publish("news", &i.to_string())
            .unwrap();
    }
    let mut sender = Client::connect(publisher.addresses().websocket).await;
    sender.send_to_group("g", "still flowing").await;
    assert_eq!(member.recv_text().await, "still flowing");
    let stats = slow.handle().stats();
    assert_eq!(
        slow.handle().events().unwrap().len(),
        4,
        "the host queue is full"
    );
    assert_eq!(stats.host_dropped_events, 96, "{stats:?}");
}
