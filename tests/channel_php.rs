//! The seed's own channel protocol (walkor/channel: PHP `serialize()`
//! bodies): the decoder against its encoder, the channel server with PHP
//! and JSON clients on one channel, and a node in `workerman` mode beside a
//! client that speaks the seed's PHP worker layout. (tests/php/ does the
//! same from PHP itself.)

mod common;

use std::net::SocketAddr;

use common::{ARRIVES, Client, QUIET};
use groupcast::channel::php::{PhpKey, PhpValue, decode};
use groupcast::channel::{ChannelServer, ChannelServerConfig};
use groupcast::config::ChannelProtocol;
use groupcast::{Config, Node};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 4];
    tokio::time::timeout(ARRIVES, stream.read_exact(&mut header))
        .await
        .expect("a frame arrives")
        .expect("header");
    let len = u32::from_be_bytes(header) as usize;
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).await.expect("body");
    body
}

async fn expect_no_frame(stream: &mut TcpStream) {
    let mut buf = [0u8; 1];
    if let Ok(read) = tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
        panic!("expected nothing, got {read:?}");
    }
}

async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(ARRIVES, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
}

/// A PHP request body: `serialize(['type' => kind, 'channels' => [...]])`
/// plus `data` when given, as walkor/channel's Client.php builds it.
fn php_request(kind: &str, channels: &[&str], data: Option<&str>) -> Vec<u8> {
    let mut body = format!(
        "a:{}:{{s:4:\"type\";s:{}:\"{kind}\";s:8:\"channels\";a:{}:{{",
        if data.is_some() { 3 } else { 2 },
        kind.len(),
        channels.len()
    );
    for (i, channel) in channels.iter().enumerate() {
        body += &format!("i:{i};s:{}:\"{channel}\";", channel.len());
    }
    body += "}";
    if let Some(data) = data {
        body += &format!("s:4:\"data\";{data}");
    }
    body += "}";
    body.into_bytes()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

async fn server() -> ChannelServer {
    ChannelServer::bind("127.0.0.1:0", ChannelServerConfig::default())
        .await
        .unwrap()
}

async fn wait_subscribers(server: &ChannelServer, channel: &str, n: usize) {
    common::eventually("subscription", || server.subscriber_count(channel) == n).await;
}

fn value() -> impl Strategy<Value = PhpValue> {
    let key = prop_oneof![
        any::<i64>().prop_map(PhpKey::Int),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| PhpKey::from_bytes(&b)),
        "-?[0-9]{1,3}".prop_map(|s| PhpKey::from_bytes(s.as_bytes())),
    ];
    let leaf = prop_oneof![
        Just(PhpValue::Null),
        any::<bool>().prop_map(PhpValue::Bool),
        any::<i64>().prop_map(PhpValue::Int),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(PhpValue::Float),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(PhpValue::Str),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop::collection::vec((key.clone(), inner), 0..8).prop_map(PhpValue::array)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn encoder_and_decoder_round_trip(value in value()) {
        let bytes = value.encode();
        prop_assert_eq!(decode(&bytes).unwrap(), value);
    }

    #[test]
    fn the_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn mangled_encodings_never_panic(value in value(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = value.encode();
        let at = cut.index(bytes.len());
        bytes[at] = byte;
        let _ = decode(&bytes);
        let _ = decode(&bytes[..at]);
    }
}

#[tokio::test]
async fn php_and_json_subscribers_share_a_channel_and_each_gets_its_own_dialect() {
    let server = server().await;
    let mut php = connect(server.local_addr()).await;
    let mut json = connect(server.local_addr()).await;
    php.write_all(&frame(&php_request("subscribe", &["send_to_group"], None)))
        .await
        .unwrap();
    json.write_all(&frame(
        br#"{"type":"subscribe","channels":["send_to_group"]}"#,
    ))
    .await
    .unwrap();
    wait_subscribers(&server, "send_to_group", 2).await;

    // The issue's publish, from a third PHP client: 149 bytes on the wire.
    let publish = frame(&php_request(
        "publish",
        &["send_to_group"],
        Some(r#"a:2:{s:8:"group_id";s:3:"123";s:7:"message";s:5:"hello";}"#),
    ));
    assert_eq!(&publish[..4], &[0, 0, 0, 0x95]);
    let mut publisher = connect(server.local_addr()).await;
    publisher.write_all(&publish).await.unwrap();
    assert_eq!(
        read_frame(&mut php).await,
        br#"a:3:{s:4:"type";s:5:"event";s:7:"channel";s:13:"send_to_group";s:4:"data";a:2:{s:8:"group_id";s:3:"123";s:7:"message";s:5:"hello";}}"#
    );
    assert_eq!(
        read_frame(&mut json).await,
        br#"{"type":"event","channel":"send_to_group","data":{"group_id":"123","message":"hello"}}"#
    );

    // And the other way: a JSON publish reaches the PHP client in PHP.
    json.write_all(&frame(
        br#"{"type":"publish","channels":["send_to_group"],"data":{"7":[1.5,null,true]}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        read_frame(&mut php).await,
        br#"a:3:{s:4:"type";s:5:"event";s:7:"channel";s:13:"send_to_group";s:4:"data";a:1:{i:7;a:3:{i:0;d:1.5;i:1;N;i:2;b:1;}}}"#
    );
    read_frame(&mut json).await;
    server.stop().await;
}

#[tokio::test]
async fn a_serialized_object_closes_only_its_connection_and_is_counted() {
    let server = server().await;
    let mut good = connect(server.local_addr()).await;
    good.write_all(&frame(&php_request("subscribe", &["c"], None)))
        .await
        .unwrap();
    wait_subscribers(&server, "c", 1).await;
    let mut evil = connect(server.local_addr()).await;
    evil.write_all(&frame(&php_request(
        "publish",
        &["c"],
        Some(r#"O:8:"stdClass":1:{s:1:"x";s:4:"boom";}"#),
    )))
    .await
    .unwrap();
    assert_closed(&mut evil).await;
    assert_eq!(server.stats().channel_refused, 1);
    expect_no_frame(&mut good).await;
    // The good client is still served, with a trailing "\n" accepted.
    let mut body = php_request("publish", &["c"], Some("s:2:\"ok\";"));
    body.push(b'\n');
    let mut publisher = connect(server.local_addr()).await;
    publisher.write_all(&frame(&body)).await.unwrap();
    let event = read_frame(&mut good).await;
    assert!(event.ends_with(b"s:4:\"data\";s:2:\"ok\";}"), "{event:?}");
    assert!(!event.ends_with(b"\n"), "never sends a newline");
    server.stop().await;
}

#[tokio::test]
async fn publish_loop_rotates_and_queues_serve_reserving_watchers_in_turn() {
    let server = server().await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut sub = connect(server.local_addr()).await;
        sub.write_all(&frame(&php_request("subscribe", &["jobs"], None)))
            .await
            .unwrap();
        subs.push(sub);
    }
    wait_subscribers(&server, "jobs", 3).await;
    let mut publisher = connect(server.local_addr()).await;
    for n in 0..6 {
        let data = format!("i:{n};");
        publisher
            .write_all(&frame(&php_request("publishLoop", &["jobs"], Some(&data))))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for sub in &mut subs {
        for _ in 0..2 {
            seen.push(read_frame(sub).await);
        }
        expect_no_frame(sub).await;
    }
    assert_eq!(seen.len(), 6, "each message to exactly one subscriber");

    // Queues: items kept until a watcher reserves, one per reserve.
    publisher
        .write_all(&frame(&php_request("enqueue", &["q"], Some("s:1:\"a\";"))))
        .await
        .unwrap();
    publisher
        .write_all(&frame(&php_request("enqueue", &["q"], Some("s:1:\"b\";"))))
        .await
        .unwrap();
    let mut worker = connect(server.local_addr()).await;
    worker
        .write_all(&frame(&php_request("watch", &["q"], None)))
        .await
        .unwrap();
    worker
        .write_all(&frame(br#"a:1:{s:4:"type";s:7:"reserve";}"#))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut worker).await,
        br#"a:3:{s:4:"type";s:5:"queue";s:7:"channel";s:1:"q";s:4:"data";s:1:"a";}"#
    );
    expect_no_frame(&mut worker).await;
    worker
        .write_all(&frame(br#"a:1:{s:4:"type";s:7:"reserve";}"#))
        .await
        .unwrap();
    assert!(read_frame(&mut worker).await.ends_with(b"s:1:\"b\";}"));
    server.stop().await;
}

#[tokio::test]
async fn queue_items_past_the_bound_are_dropped_and_counted() {
    let config = ChannelServerConfig {
        queue_bytes: 10,
        ..ChannelServerConfig::default()
    };
    let server = ChannelServer::bind("127.0.0.1:0", config).await.unwrap();
    let mut publisher = connect(server.local_addr()).await;
    for _ in 0..3 {
        publisher
            .write_all(&frame(&php_request("enqueue", &["q"], Some("s:1:\"x\";"))))
            .await
            .unwrap();
    }
    common::eventually("the third item dropped", || {
        server.stats().channel_queue_dropped == 2
    })
    .await;
    server.stop().await;
}

/// A node in workerman mode on `channel`.
async fn workerman_node(channel: SocketAddr) -> Node {
    let node = Node::start(Config {
        listen: "127.0.0.1:0".into(),
        channel: Some(channel.to_string()),
        channel_listen: None,
        channel_protocol: ChannelProtocol::Workerman,
        ..Config::default()
    })
    .await
    .expect("node starts");
    tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
        .await
        .expect("node reaches the channel server");
    node
}

#[tokio::test]
async fn a_workerman_node_and_a_seed_worker_deliver_each_other_s_group_messages_once() {
    let server = server().await;
    let node = workerman_node(server.local_addr()).await;
    wait_subscribers(&server, "send_to_group", 1).await;
    let mut member = Client::connect(node.addresses().websocket).await;
    member.join("123").await;
    member.sync().await;
    // The seed's PHP worker: subscribes to send_to_group, publishes there.
    let mut worker = connect(server.local_addr()).await;
    worker
        .write_all(&frame(&php_request("subscribe", &["send_to_group"], None)))
        .await
        .unwrap();
    wait_subscribers(&server, "send_to_group", 2).await;

    // From the worker (an int group id, as a PHP array key may be).
    worker
        .write_all(&frame(&php_request(
            "publish",
            &["send_to_group"],
            Some(r#"a:2:{s:8:"group_id";i:123;s:7:"message";s:16:"C'est le message";}"#),
        )))
        .await
        .unwrap();
    assert_eq!(member.recv_text().await, "C'est le message");
    // The worker hears its own publish (the seed relies on that echo).
    read_frame(&mut worker).await;

    // From the node: its member once, the worker in the seed's layout.
    member.send_to_group("123", "from a node").await;
    assert_eq!(member.recv_text().await, "from a node");
    let event = decode(&read_frame(&mut worker).await).unwrap();
    assert_eq!(event.get("type"), Some(&PhpValue::str("event")));
    assert_eq!(event.get("channel"), Some(&PhpValue::str("send_to_group")));
    let data = event.get("data").unwrap();
    assert_eq!(data.get("group_id"), Some(&PhpValue::str("123")));
    assert_eq!(data.get("message"), Some(&PhpValue::str("from a node")));
    member.expect_nothing().await;
    assert_eq!(
        server.subscriber_count("groupcast:group:123"),
        0,
        "no per-group channels"
    );
    node.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn two_workerman_nodes_form_a_cluster_without_echoes() {
    let server = server().await;
    let a = workerman_node(server.local_addr()).await;
    let b = workerman_node(server.local_addr()).await;
    wait_subscribers(&server, "send_to_group", 2).await;
    let mut on_a = Client::connect(a.addresses().websocket).await;
    let mut on_b = Client::connect(b.addresses().websocket).await;
    on_a.join("g").await;
    on_b.join("g").await;
    on_a.sync().await;
    on_b.sync().await;
    on_a.send_to_group("g", "hello").await;
    assert_eq!(on_a.recv_text().await, "hello");
    assert_eq!(on_b.recv_text().await, "hello");
    on_a.expect_nothing().await;
    on_b.expect_nothing().await;
    a.stop().await;
    b.stop().await;
    server.stop().await;
}

#[test]
fn workerman_mode_needs_a_channel_server() {
    let config = Config {
        channel_protocol: ChannelProtocol::Workerman,
        ..Config::local("127.0.0.1:0")
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("channel_protocol workerman"), "{error}");
}

#[tokio::test]
async fn a_node_s_embedded_channel_server_counts_refusals_on_its_metrics() {
    let node = Node::start(Config {
        listen: "127.0.0.1:0".into(),
        channel_listen: Some("127.0.0.1:0".into()),
        metrics_listen: Some("127.0.0.1:0".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let addresses = node.addresses();
    let mut evil = connect(addresses.channel.unwrap()).await;
    evil.write_all(&frame(br#"a:1:{s:4:"type";r:1;}"#))
        .await
        .unwrap();
    assert_closed(&mut evil).await;
    common::eventually("counted", || node.handle().stats().channel_refused == 1).await;
    let (status, text) = common::http_get(addresses.metrics.unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(common::metric(&text, "channel_refused_total"), 1);
    node.stop().await;
}

#[tokio::test]
async fn with_a_secret_a_php_client_must_send_a_php_auth_first_and_gets_no_reply() {
    let config = ChannelServerConfig {
        secret: Some("s3cret".into()),
        ..ChannelServerConfig::default()
    };
    let server = ChannelServer::bind("127.0.0.1:0", config).await.unwrap();
    // The stock PHP client sends no secret: closed, with no JSON refusal it
    // could not read, and counted.
    let mut stock = connect(server.local_addr()).await;
    stock
        .write_all(&frame(&php_request("subscribe", &["c"], None)))
        .await
        .unwrap();
    assert_closed(&mut stock).await;
    assert_eq!(server.stats().channel_refused, 1);
    // A wrong PHP secret: closed too.
    let mut wrong = connect(server.local_addr()).await;
    wrong
        .write_all(&frame(
            br#"a:2:{s:4:"type";s:4:"auth";s:6:"secret";s:5:"guess";}"#,
        ))
        .await
        .unwrap();
    assert_closed(&mut wrong).await;
    assert_eq!(server.stats().channel_refused, 2);
    // The right one: no reply (the PHP protocol has none), then served.
    let mut client = connect(server.local_addr()).await;
    client
        .write_all(&frame(
            br#"a:2:{s:4:"type";s:4:"auth";s:6:"secret";s:6:"s3cret";}"#,
        ))
        .await
        .unwrap();
    client
        .write_all(&frame(&php_request("subscribe", &["c"], None)))
        .await
        .unwrap();
    wait_subscribers(&server, "c", 1).await;
    client
        .write_all(&frame(&php_request("publish", &["c"], Some("i:1;"))))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut client).await,
        br#"a:3:{s:4:"type";s:5:"event";s:7:"channel";s:1:"c";s:4:"data";i:1;}"#,
        "the first frame it gets is its event, not an auth reply"
    );
    server.stop().await;
}
