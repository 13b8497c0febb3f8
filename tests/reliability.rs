//! Drills: slow consumers, churn, heartbeats, limits, hostile input,
//! graceful stop and metrics. Each is bounded in time and count.

mod common;

use std::time::{Duration, Instant};

use common::{Client, eventually, http_get, local_node, node_with};
use futures_util::StreamExt;
use groupcast::{Config, Limits, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// One ticker marks pings due on every connection (src/node/heartbeat.rs):
/// a client is never pinged before a whole interval, then once per
/// interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_come_once_per_interval_and_never_before_the_first() {
    let interval = Duration::from_millis(200);
    let node = node_with(Limits {
        ping_interval: interval,
        idle_timeout: Duration::from_secs(10),
        ..Limits::default()
    })
    .await;
    let mut client = Client::connect(node.addresses().websocket).await;
    let connected = Instant::now();
    let mut pings = Vec::new();
    while connected.elapsed() < Duration::from_millis(1500) {
        if let Ok(Some(Ok(Message::Ping(_)))) =
            tokio::time::timeout(Duration::from_millis(20), client.ws.next()).await
        {
            pings.push(connected.elapsed());
        }
    }
    // The client's clock starts a little before the server registers the
    // connection: 10% of slack.
    assert!(
        pings
            .first()
            .is_some_and(|first| *first >= interval * 9 / 10),
        "pings at {pings:?}"
    );
    assert!((4..=8).contains(&pings.len()), "pings at {pings:?}");
    for gap in pings.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= interval / 2, "pings at {pings:?}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_closed() {
    let node = node_with(Limits {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(600),
        ..Limits::default()
    })
    .await;
    let addr = node.addresses().websocket;
    let mut silent = Client::connect(addr).await;
    let mut lively = Client::connect(addr).await;
    // The lively client keeps reading, so its library answers pings.
    let lively_task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut pings = 0;
        while Instant::now() < deadline {
            if let Ok(Some(Ok(Message::Ping(_)))) =
                tokio::time::timeout(Duration::from_millis(50), lively.ws.next()).await
            {
                pings += 1;
            }
        }
        (lively, pings)
    });
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // The silent client read nothing for over a second: it was closed.
    let mut saw_close = None;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(2), silent.ws.next()).await
    {
        if let Message::Close(frame) = message {
            saw_close = frame;
            break;
        }
    }
    assert_eq!(saw_close.expect("close frame").code, CloseCode::Away);
    let (mut lively, pings) = lively_task.await.unwrap();
    assert!(pings >= 3, "lively client saw {pings} pings");
    lively.join("still").await;
    lively.send_to_group("still", "here").await;
    assert_eq!(lively.recv_text().await, "here");
    assert_eq!(node.handle().stats().heartbeat_timeouts, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_at_the_handshake() {
    let node = node_with(Limits {
        max_connections: Some(2),
        ..Limits::default()
    })
    .await;
    let addr = node.addresses().websocket;
    let _a = Client::connect(addr).await;
    let _b = Client::connect(addr).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    drop(_a);
    // The slot frees once the closed connection's task has ended, a moment
    // after it left the registry: retry until then.
    let deadline = Instant::now() + common::ARRIVES;
    let _c = loop {
        match tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
            Ok((ws, _)) => break ws,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(error) => panic!("no slot freed: {error}"),
        }
    };
    assert!(node.handle().stats().connections_refused >= 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_browser_origins_connect() {
    let node = node_with(Limits {
        allowed_origins: Some(vec!["https://good.example".into()]),
        ..Limits::default()
    })
    .await;
    let addr = node.addresses().websocket;
    let request = |origin: &str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    assert!(
        tokio_tungstenite::connect_async(request("https://good.example"))
            .await
            .is_ok()
    );
    match tokio_tungstenite::connect_async(request("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    // Non-browser clients send no Origin and are not affected.
    let _plain = Client::connect(addr).await;
    node.stop().await;
}

/// Completes a websocket handshake by hand and returns the raw socket.
async fn raw_websocket(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads until the server closes; returns the close code of its close frame,
/// if it sent one.
async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(common::ARRIVES, stream.read_to_end(&mut all)).await;
    // Server frames are unmasked: 0x88, length, code (2 bytes), reason.
    let at = all.windows(2).position(|w| w[0] == 0x88 && w[1] < 126)?;
    all.get(at + 2..at + 4)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_websocket_frames_close_only_their_connection() {
    let node = local_node().await;
    let addr = node.addresses().websocket;
    let mut bystander = Client::connect(addr).await;
    bystander.join("g").await;
    bystander.sync().await;
    let cases: [(&str, &[u8]); 4] = [
        // A client frame without a mask.
        ("unmasked", &[0x81, 0x02, b'h', b'i']),
        // Reserved opcode 0x3.
        ("reserved opcode", &[0x83, 0x80, 0, 0, 0, 0]),
        // RSV1 set without an extension.
        ("rsv bit", &[0xC1, 0x80, 0, 0, 0, 0]),
        // A fragmented control frame (ping without FIN).
        ("fragmented ping", &[0x09, 0x80, 0, 0, 0, 0]),
    ];
    for (name, bytes) in cases {
        let mut raw = raw_websocket(addr).await;
        raw.write_all(bytes).await.unwrap();
        assert_eq!(close_code(&mut raw).await, Some(1002), "{name}");
    }
    // Truncated frame, then the client hangs up.
    let mut raw = raw_websocket(addr).await;
    raw.write_all(&[0x81, 0xFE, 0x10]).await.unwrap();
    drop(raw);
    bystander.send_to_group("g", "unaffected").await;
    assert_eq!(bystander.recv_text().await, "unaffected");
    eventually("bad connections removed", || {
        node.handle().connection_count() == 1
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_what_is_queued_before_closing_with_1001() {
    let node = local_node().await;
    let mut client = Client::connect(node.addresses().websocket).await;
    client.join("g").await;
    client.sync().await;
    for i in 0..1000 {
        node.handle()
            .send_to_group("g", &format!("m{i}"), &[])
            .unwrap();
    }
    let stopping = tokio::spawn(async move { node.stop().await });
    for i in 0..1000 {
        assert_eq!(client.recv_text().await, format!("m{i}"));
    }
    assert_eq!(client.recv_close().await.unwrap().code, CloseCode::Away);
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let node = Node::start(Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..Config::local("127.0.0.1:0")
    })
    .await
    .unwrap();
    let mut client = Client::connect(node.addresses().websocket).await;
    client.join("g").await;
    client.send_to_group("g", "hi").await;
    assert_eq!(client.recv_text().await, "hi");
    let metrics = node.addresses().metrics.unwrap();
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    for line in [
        "\ngroupcast_connections 1\n",
        "\ngroupcast_groups 1\n",
        "\ngroupcast_messages_in_total 2\n",
        "\ngroupcast_messages_out_total 1\n",
    ] {
        assert!(body.contains(line), "{line:?} in {body}");
    }
    assert_eq!(http_get(metrics, "/other").await.0, 404);
    let (status, health) = http_get(metrics, "/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health,
        "{\"status\":\"ok\",\"bus\":\"none\",\"connections\":1}\n"
    );

    // Clients that hold a request slot and say nothing: past 16 of them,
    // a new connection is closed at once, and scrapes work again once the
    // slots are free.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(metrics).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(metrics).await.unwrap();
    let mut nothing = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), extra.read_to_end(&mut nothing)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed at once: {read:?}"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(http_get(metrics, "/metrics").await.0, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_secret_keeps_out_unauthenticated_clients() {
    let config = |channel_listen: Option<String>, channel: Option<String>, secret: &str| Config {
        listen: "127.0.0.1:0".into(),
        channel_listen,
        channel,
        channel_secret: Some(secret.into()),
        ..Config::default()
    };
    let a = Node::start(config(Some("127.0.0.1:0".into()), None, "s3cret"))
        .await
        .unwrap();
    let hub = a.addresses().channel.unwrap();
    assert!(a.handle().bus_connected(), "the node itself authenticates");

    // No auth frame: told why, then closed, before it can subscribe.
    let mut intruder = TcpStream::connect(hub).await.unwrap();
    let body = br#"{"type":"subscribe","channels":["groupcast:group:g"]}"#;
    let mut frame = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    intruder.write_all(&frame).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(common::ARRIVES, intruder.read_to_end(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "closed: {read:?}");
    let refusal = br#"{"reason":"this channel server requires a secret","type":"auth_failed"}"#;
    let mut expected = ((refusal.len() + 4) as u32).to_be_bytes().to_vec();
    expected.extend_from_slice(refusal);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(&expected)
    );

    // A node with the wrong secret never gets in; the right one does.
    let wrong = Node::start(config(None, Some(hub.to_string()), "guess"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let right = common::cluster_node_with_secret(hub, "s3cret").await;
    let mut member = Client::connect(right.addresses().websocket).await;
    member.join("g").await;
    member.sync().await;
    let channel = format!("{}g", groupcast::bus::GROUP_CHANNEL_PREFIX);
    let server = a.channel_server().unwrap();
    eventually("right node subscribed", || {
        server.subscriber_count(&channel) == 1
    })
    .await;
    let mut wrong_member = Client::connect(wrong.addresses().websocket).await;
    wrong_member.join("g").await;
    wrong_member.sync().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.subscriber_count(&channel),
        1,
        "wrong secret never subscribes"
    );

    let mut sender = Client::connect(a.addresses().websocket).await;
    sender.send_to_group("g", "members only").await;
    assert_eq!(member.recv_text().await, "members only");
    wrong_member.expect_nothing().await;
    for node in [wrong, right, a] {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_channel_server_beyond_loopback_needs_a_secret() {
    let config = groupcast::channel::ChannelServerConfig::default();
    match groupcast::channel::ChannelServer::bind("0.0.0.0:0", config).await {
        Err(groupcast::Error::Config(why)) => assert!(why.contains("needs a secret"), "{why}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("started without a secret on 0.0.0.0"),
    }
}

/// A message sent to one slow client with the drop policy is dropped and
/// counted like a group message; the call does not claim the connection is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_send_to_a_slow_client_with_the_drop_policy_is_dropped_not_an_error() {
    let node = common::node_with(Limits {
        outbound_queue_bytes: 4 * 1024,
        send_buffer_size: Some(4 * 1024),
        slow_consumer: groupcast::SlowConsumerPolicy::Drop,
        ..Limits::default()
    })
    .await;
    let handle = node.handle();
    let _stalled = common::stalled_client(node.addresses().websocket).await;
    eventually("connected", || handle.connection_count() == 1).await;
    let conn = handle.stats().connections_opened; // ids count from 1
    let text = "x".repeat(1024);
    for _ in 0..2000 {
        handle.send_text(conn, &text).expect("an open connection");
    }
    let stats = handle.stats();
    assert!(stats.dropped_messages > 0, "{stats:?}");
    assert_eq!(handle.connection_count(), 1, "still open");
    node.stop().await;
}
