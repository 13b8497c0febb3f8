//! The client protocol over real websocket connections to one node.

mod common;

use common::{Client, eventually, local_node};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_browser_test_back_to_back() {
    // The seed's browser console test: add_group and send_to_group sent back
    // to back on one connection; the page prints the message.
    let node = local_node().await;
    let mut ws = Client::connect(node.addresses().websocket).await;
    ws.send(r#"{"cmd":"add_group", "group_id":"123"}"#).await;
    ws.send(r#"{"cmd":"send_to_group", "group_id":"123", "message":"C'est le message"}"#)
        .await;
    assert_eq!(ws.recv_text().await, "C'est le message");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_receive_non_members_can_send_and_leave_stops_delivery() {
    let node = local_node().await;
    let addr = node.addresses().websocket;
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    let mut outsider = Client::connect(addr).await;
    a.join("g").await;
    b.join("g").await;
    a.sync().await;
    b.sync().await;
    outsider.send_to_group("g", "from outside").await;
    assert_eq!(a.recv_text().await, "from outside");
    assert_eq!(b.recv_text().await, "from outside");
    outsider.expect_nothing().await;

    b.send(r#"{"cmd":"leave_group","group_id":"g"}"#).await;
    b.sync().await;
    a.send_to_group("g", "after leave").await;
    assert_eq!(a.recv_text().await, "after leave");
    b.expect_nothing().await;
    assert_eq!(node.handle().group_size("g"), 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_twice_delivers_once() {
    let node = local_node().await;
    let mut a = Client::connect(node.addresses().websocket).await;
    a.join("g").await;
    a.join("g").await;
    a.send_to_group("g", "once").await;
    assert_eq!(a.recv_text().await, "once");
    a.expect_nothing().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_and_string_ids_are_one_group() {
    let node = local_node().await;
    let addr = node.addresses().websocket;
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.send(r#"{"cmd":"add_group","group_id":123}"#).await;
    a.sync().await;
    b.send(r#"{"cmd":"send_to_group","group_id":"123","message":"x"}"#)
        .await;
    assert_eq!(a.recv_text().await, "x");
    b.send(r#"{"cmd":"send_to_group","group_id":123,"message":"y"}"#)
        .await;
    assert_eq!(a.recv_text().await, "y");
    assert_eq!(node.handle().groups(), vec!["123".to_owned()]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_string_messages_arrive_as_json_text() {
    let node = local_node().await;
    let mut a = Client::connect(node.addresses().websocket).await;
    a.join("g").await;
    for message in ["42", "-1.5e3", "true", "null", r#"{"a":1}"#, r#"[1,"two"]"#] {
        a.send(&format!(
            r#"{{"cmd":"send_to_group","group_id":"g","message":{message}}}"#
        ))
        .await;
        assert_eq!(a.recv_text().await, message);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_error_reply_and_the_connection_stays_usable() {
    let node = local_node().await;
    let addr = node.addresses().websocket;
    let mut bystander = Client::connect(addr).await;
    bystander.join("g").await;
    bystander.sync().await;
    let mut bad = Client::connect(addr).await;
    let cases = [
        ("not json", "not_json"),
        ("[1,2,3]", "not_object"),
        ("17", "not_object"),
        (r#"{"group_id":"g"}"#, "missing_cmd"),
        (r#"{"cmd":"explode","group_id":"g"}"#, "unknown_cmd"),
        (r#"{"cmd":"add_group"}"#, "missing_group_id"),
        (r#"{"cmd":"add_group","group_id":""}"#, "invalid_group_id"),
        (
            r#"{"cmd":"add_group","group_id":{"a":1}}"#,
            "invalid_group_id",
        ),
        (
            r#"{"cmd":"send_to_group","group_id":"g"}"#,
            "missing_message",
        ),
        (r#"{"cmd":7,"group_id":"g"}"#, "invalid_field"),
    ];
    for (frame, code) in cases {
        bad.send(frame).await;
        assert_eq!(bad.recv_error_code().await, code, "for {frame}");
    }
    bad.send_message(Message::binary(vec![0xde, 0xad, 0xbe, 0xef]))
        .await;
    assert_eq!(bad.recv_error_code().await, "binary_not_command");
    let long_group = "x".repeat(257);
    bad.join(&long_group).await;
    assert_eq!(bad.recv_error_code().await, "invalid_group_id");

    // Still usable, and a valid binary command works.
    bad.send_message(Message::binary(
        br#"{"cmd":"send_to_group","group_id":"g","message":"still here"}"#.to_vec(),
    ))
    .await;
    assert_eq!(bystander.recv_text().await, "still here");
    bystander.expect_nothing().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_size_frame_gets_an_error_then_close_1009() {
    let mut config = groupcast::Config::local("127.0.0.1:0");
    config.limits.max_message_size = 1024;
    let node = groupcast::Node::start(config).await.unwrap();
    let addr = node.addresses().websocket;
    let mut other = Client::connect(addr).await;
    other.join("g").await;
    other.sync().await;
    let mut big = Client::connect(addr).await;
    big.send(&"x".repeat(2000)).await;
    assert_eq!(big.recv_error_code().await, "message_too_big");
    let close = big.recv_close().await.expect("close frame");
    assert_eq!(close.code, CloseCode::Size);
    // The other client is unaffected.
    other.send_to_group("g", "fine").await;
    assert_eq!(other.recv_text().await, "fine");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_frame_closes_only_that_connection_with_1007() {
    let node = local_node().await;
    let addr = node.addresses().websocket;
    let mut other = Client::connect(addr).await;
    other.join("g").await;
    other.sync().await;
    let mut bad = Client::connect(addr).await;
    let frame = Frame::message(vec![0xc3, 0x28], OpCode::Data(Data::Text), true);
    bad.send_message(Message::Frame(frame)).await;
    let close = bad.recv_close().await.expect("close frame");
    assert_eq!(close.code, CloseCode::Invalid);
    other.send_to_group("g", "fine").await;
    assert_eq!(other.recv_text().await, "fine");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_frees_groups_after_thousands_of_cycles() {
    let node = local_node().await;
    let addr = node.addresses().websocket;
    let handle = node.handle();
    let mut keeper = Client::connect(addr).await;
    keeper.join("shared").await;
    keeper.sync().await;
    for round in 0..100 {
        let mut clients = Vec::new();
        for i in 0..20 {
            let mut c = Client::connect(addr).await;
            c.join("shared").await;
            c.join(&format!("own-{round}-{i}")).await;
            clients.push(c);
        }
        for c in &mut clients {
            c.sync().await;
        }
        // Some leave politely, the others just vanish.
        for (i, mut c) in clients.into_iter().enumerate() {
            if i % 2 == 0 {
                let _ = c.ws.close(None).await;
            }
        }
    }
    eventually("2000 closed connections to be removed", || {
        handle.connection_count() == 1 && handle.group_count() == 1
    })
    .await;
    assert_eq!(handle.groups(), vec!["shared".to_owned()]);
    assert_eq!(handle.group_size("shared"), 1);
    drop(keeper);
    eventually("the last group to be freed", || handle.group_count() == 0).await;
    assert_eq!(handle.connection_count(), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_clients_with_1001() {
    let node = local_node().await;
    let mut a = Client::connect(node.addresses().websocket).await;
    a.join("g").await;
    a.sync().await;
    let stopping = tokio::spawn(async move {
        node.stop().await;
        node
    });
    let close = a.recv_close().await.expect("close frame");
    assert_eq!(close.code, CloseCode::Away);
    let node = stopping.await.unwrap();
    assert_eq!(node.handle().connection_count(), 0);
    assert!(
        tokio::net::TcpStream::connect(node.addresses().websocket)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_path_does_not_matter() {
    let node = local_node().await;
    let mut a = Client::connect_path(node.addresses().websocket, "/chat?token=abc").await;
    a.join("g").await;
    a.send_to_group("g", "ok").await;
    assert_eq!(a.recv_text().await, "ok");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_commands_is_handled_in_full_and_in_order() {
    // Many frames arrive in one read: the server handles them in batches
    // and must lose none at a batch's edge.
    use futures_util::SinkExt;
    let node = local_node().await;
    let mut client = Client::connect(node.addresses().websocket).await;
    client.join("g").await;
    client.sync().await;
    for i in 0..1000 {
        let frame = format!(r#"{{"cmd":"send_to_group","group_id":"g","message":"m{i}"}}"#);
        client.ws.feed(Message::text(frame)).await.unwrap();
    }
    client.ws.flush().await.unwrap();
    for i in 0..1000 {
        assert_eq!(client.recv_text().await, format!("m{i}"));
    }
    client.expect_nothing().await;
    assert_eq!(node.handle().stats().messages_in, 1000 + 4);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_mixing_groups_and_commands_keeps_every_members_order() {
    // Runs of sends to one group are delivered to the members together;
    // what comes between runs (a send to another group, a bad command) must
    // keep its place in each member's stream.
    use futures_util::SinkExt;
    let node = local_node().await;
    let addr = node.addresses().websocket;
    let mut sender = Client::connect(addr).await;
    let mut only_a = Client::connect(addr).await;
    sender.join("a").await;
    sender.join("b").await;
    only_a.join("a").await;
    sender.sync().await;
    only_a.sync().await;
    let out_before = node.handle().stats().messages_out;
    // What the sender must see, in order; `None` is an error reply.
    let mut expected = Vec::new();
    for i in 0..300 {
        let send = |group: &str, text: &str| {
            Message::text(format!(
                r#"{{"cmd":"send_to_group","group_id":"{group}","message":"{text}"}}"#
            ))
        };
        sender.ws.feed(send("a", &format!("a{i}"))).await.unwrap();
        expected.push(Some(format!("a{i}")));
        if i % 7 == 0 {
            sender.ws.feed(send("b", &format!("b{i}"))).await.unwrap();
            expected.push(Some(format!("b{i}")));
        }
        if i % 50 == 0 {
            sender.ws.feed(Message::text("{")).await.unwrap();
            expected.push(None);
        }
    }
    sender.ws.flush().await.unwrap();
    for want in &expected {
        match want {
            Some(text) => assert_eq!(&sender.recv_text().await, text),
            None => assert_eq!(sender.recv_error_code().await, "not_json"),
        }
    }
    for i in 0..300 {
        assert_eq!(only_a.recv_text().await, format!("a{i}"));
    }
    sender.expect_nothing().await;
    only_a.expect_nothing().await;
    let to_b = (0..300).filter(|i| i % 7 == 0).count() as u64;
    assert_eq!(
        node.handle().stats().messages_out - out_before,
        2 * 300 + to_b,
        "every delivery counted once"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_in_a_burst_take_effect_exactly_where_they_stand() {
    // Sends read in a row are delivered together, but never across a join
    // or a leave: a message sent before a leave still arrives, one sent
    // before a join does not, one sent after a join does.
    use futures_util::SinkExt;
    let node = local_node().await;
    let mut client = Client::connect(node.addresses().websocket).await;
    client.join("g").await;
    client.sync().await;
    let send = |group: &str, text: &str| {
        Message::text(format!(
            r#"{{"cmd":"send_to_group","group_id":"{group}","message":"{text}"}}"#
        ))
    };
    let frames = [
        send("g", "before leave"),
        Message::text(r#"{"cmd":"leave_group","group_id":"g"}"#),
        send("g", "after leave"),
        send("h", "before join"),
        Message::text(r#"{"cmd":"add_group","group_id":"h"}"#),
        send("h", "after join"),
    ];
    for frame in frames {
        client.ws.feed(frame).await.unwrap();
    }
    client.ws.flush().await.unwrap();
    assert_eq!(client.recv_text().await, "before leave");
    assert_eq!(client.recv_text().await, "after join");
    client.expect_nothing().await;
    node.stop().await;
}
