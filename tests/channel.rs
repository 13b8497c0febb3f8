//! The channel protocol on the wire: exact bytes from a raw TCP client, and
//! bad input closing only the offending connection.

mod common;

use std::time::Duration;

use common::ARRIVES;
use groupcast::channel::{ChannelServer, ChannelServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &str) -> Vec<u8> {
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body.as_bytes());
    out
}

async fn read_frame(stream: &mut TcpStream) -> String {
    let mut header = [0u8; 4];
    tokio::time::timeout(ARRIVES, stream.read_exact(&mut header))
        .await
        .expect("a frame arrives")
        .expect("header");
    let len = u32::from_be_bytes(header) as usize;
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).await.expect("body");
    String::from_utf8(body).expect("utf-8 body")
}

/// Asserts the server closed the connection (EOF or reset).
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(ARRIVES, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
}

async fn server(max_frame: usize) -> ChannelServer {
    let config = ChannelServerConfig {
        max_frame,
        ..ChannelServerConfig::default()
    };
    ChannelServer::bind("127.0.0.1:0", config).await.unwrap()
}

async fn wait_subscribers(server: &ChannelServer, channel: &str, n: usize) {
    common::eventually("subscription", || server.subscriber_count(channel) == n).await;
}

#[tokio::test]
async fn publish_reaches_every_subscriber_with_exact_bytes() {
    let server = server(1 << 20).await;
    let mut sub1 = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut sub2 = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut publisher = TcpStream::connect(server.local_addr()).await.unwrap();
    sub1.write_all(&frame(
        r#"{"type":"subscribe","channels":["send_to_group"]}"#,
    ))
    .await
    .unwrap();
    sub2.write_all(&frame(
        r#"{"type":"subscribe","channels":["send_to_group","other"]}"#,
    ))
    .await
    .unwrap();
    wait_subscribers(&server, "send_to_group", 2).await;

    // A ping (empty body) first, then the publish in the same write.
    let mut bytes = frame("");
    bytes.extend(frame(
        r#"{"type":"publish","channels":["send_to_group"],"data":{"group_id":"123","message":"hi"}}"#,
    ));
    publisher.write_all(&bytes).await.unwrap();
    let expected =
        r#"{"type":"event","channel":"send_to_group","data":{"group_id":"123","message":"hi"}}"#;
    assert_eq!(read_frame(&mut sub1).await, expected);
    assert_eq!(read_frame(&mut sub2).await, expected);

    // After unsubscribing, sub1 gets nothing more; sub2 still does.
    sub1.write_all(&frame(
        r#"{"type":"unsubscribe","channels":["send_to_group"]}"#,
    ))
    .await
    .unwrap();
    wait_subscribers(&server, "send_to_group", 1).await;
    publisher
        .write_all(&frame(
            r#"{"type":"publish","channels":"send_to_group","data":2}"#,
        ))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut sub2).await,
        r#"{"type":"event","channel":"send_to_group","data":2}"#
    );
    let mut buf = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub1.read(&mut buf))
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn the_publisher_hears_its_own_publish_when_subscribed() {
    let server = server(1 << 20).await;
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    client
        .write_all(&frame(r#"{"type":"subscribe","channels":["c"]}"#))
        .await
        .unwrap();
    client
        .write_all(&frame(r#"{"type":"publish","channels":["c"],"data":"x"}"#))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut client).await,
        r#"{"type":"event","channel":"c","data":"x"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn exclude_self_skips_only_the_publisher() {
    let server = server(1 << 20).await;
    let mut a = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut b = TcpStream::connect(server.local_addr()).await.unwrap();
    for c in [&mut a, &mut b] {
        c.write_all(&frame(r#"{"type":"subscribe","channels":["c"]}"#))
            .await
            .unwrap();
    }
    wait_subscribers(&server, "c", 2).await;
    a.write_all(&frame(
        r#"{"type":"publish","channels":["c"],"data":1,"exclude_self":true}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        read_frame(&mut b).await,
        r#"{"type":"event","channel":"c","data":1}"#
    );
    let mut buf = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.read(&mut buf))
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_frames_close_only_that_connection() {
    let server = server(1024).await;
    let mut good = TcpStream::connect(server.local_addr()).await.unwrap();
    good.write_all(&frame(r#"{"type":"subscribe","channels":["c"]}"#))
        .await
        .unwrap();
    wait_subscribers(&server, "c", 1).await;

    let bad_inputs: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 0],
        vec![0, 0, 0, 3, b'x'],
        2000u32.to_be_bytes().to_vec(),
        frame("not json"),
        frame(r#"{"type":"explode"}"#),
        frame(r#"{"type":"publish","channels":["c"]}"#),
    ];
    for bad in bad_inputs {
        let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
        client.write_all(&bad).await.unwrap();
        assert_closed(&mut client).await;
    }
    // A truncated frame followed by a hang-up is just a client leaving.
    let mut truncated = TcpStream::connect(server.local_addr()).await.unwrap();
    truncated.write_all(&[0, 0, 0, 50, b'{']).await.unwrap();
    drop(truncated);

    let mut publisher = TcpStream::connect(server.local_addr()).await.unwrap();
    publisher
        .write_all(&frame(r#"{"type":"publish","channels":["c"],"data":1}"#))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut good).await,
        r#"{"type":"event","channel":"c","data":1}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn a_closed_subscriber_is_forgotten() {
    let server = server(1024).await;
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    client
        .write_all(&frame(r#"{"type":"subscribe","channels":["a","b"]}"#))
        .await
        .unwrap();
    wait_subscribers(&server, "b", 1).await;
    drop(client);
    wait_subscribers(&server, "a", 0).await;
    wait_subscribers(&server, "b", 0).await;
    server.stop().await;
}
