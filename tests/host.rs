//! The host bridge from Rust: events by polling and on the dispatcher
//! thread, message routing, approval, and host actions.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::{ARRIVES, Client, RawUpgrade, eventually, next_event};
use groupcast::host::{EventHandler, Hooks, Verdict};
use groupcast::{Config, HostConfig, HostEvent, Node, Payload, Server};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn host_node(host: HostConfig) -> Node {
    let config = Config {
        host,
        ..Config::local("127.0.0.1:0")
    };
    Node::start(config).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_order_and_unknown_messages_go_to_the_host() {
    let node = host_node(HostConfig {
        connect_events: true,
        message_events: true,
        close_events: true,
        ..HostConfig::default()
    })
    .await;
    let handle = node.handle();
    let events = handle.events().unwrap().clone();
    let mut client = Client::connect_path(node.addresses().websocket, "/room?token=abc").await;
    let conn = match next_event(&events).await {
        HostEvent::Connect {
            conn,
            path,
            query,
            peer,
            headers,
            subprotocols,
        } => {
            // Read after the handshake: names lowercased.
            assert!(headers.contains(&("upgrade".into(), "websocket".into())));
            assert!(subprotocols.is_empty());
            assert_eq!(path, "/room");
            assert_eq!(query, "token=abc");
            assert!(peer.ip().is_loopback());
            conn
        }
        other => panic!("{other:?}"),
    };
    // Built-ins still work and do not reach the host.
    client.join("g").await;
    client.send_to_group("g", "built-in").await;
    assert_eq!(client.recv_text().await, "built-in");
    // Not a built-in: to the host, no error reply.
    client.send(r#"{"cmd":"custom","x":1}"#).await;
    client.send("plain text").await;
    client.send_message(Message::binary(vec![1, 2, 3])).await;
    // A malformed built-in still gets the core's error reply.
    client.send(r#"{"cmd":"add_group"}"#).await;
    assert_eq!(client.recv_error_code().await, "missing_group_id");
    let expected = [
        Payload::Text(r#"{"cmd":"custom","x":1}"#.into()),
        Payload::Text("plain text".into()),
        Payload::Binary(vec![1, 2, 3]),
    ];
    for payload in expected {
        assert_eq!(
            next_event(&events).await,
            HostEvent::Message { conn, payload }
        );
    }
    // Host actions reach the client.
    handle.send_text(conn, "hello from host").unwrap();
    assert_eq!(client.recv_text().await, "hello from host");
    assert!(handle.join(conn, "host-group").unwrap());
    assert_eq!(handle.connection_groups(conn).unwrap().len(), 2);
    assert_eq!(
        handle.send_to_group("host-group", "to group", &[]).unwrap(),
        1
    );
    assert_eq!(client.recv_text().await, "to group");
    assert_eq!(
        handle
            .send_to_group("host-group", "excluded", &[conn])
            .unwrap(),
        0
    );
    assert_eq!(handle.broadcast("to all", &[]).unwrap(), 1);
    assert_eq!(client.recv_text().await, "to all");
    handle.close(conn, 4000, "bye").unwrap();
    let close = client.recv_close().await.unwrap();
    assert_eq!(u16::from(close.code), 4000);
    assert_eq!(close.reason.as_str(), "bye");
    assert_eq!(
        next_event(&events).await,
        HostEvent::Close {
            conn,
            code: Some(4000)
        }
    );
    assert!(matches!(
        handle.send_text(conn, "gone"),
        Err(groupcast::Error::UnknownConnection(c)) if c == conn
    ));
    node.stop().await;
    assert!(events.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_builtins_every_message_goes_to_the_host() {
    let node = host_node(HostConfig {
        builtin_commands: false,
        ..HostConfig::default()
    })
    .await;
    let events = node.handle().events().unwrap().clone();
    let mut client = Client::connect(node.addresses().websocket).await;
    client.join("g").await;
    match next_event(&events).await {
        HostEvent::Message { payload, .. } => {
            assert_eq!(
                payload,
                Payload::Text(r#"{"cmd":"add_group","group_id":"g"}"#.into())
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.handle().group_count(), 0, "the core did not join");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_host_unknown_commands_get_an_error_reply() {
    let node = host_node(HostConfig::default()).await;
    assert!(node.handle().events().is_none());
    let mut client = Client::connect(node.addresses().websocket).await;
    client.send(r#"{"cmd":"custom"}"#).await;
    assert_eq!(client.recv_error_code().await, "unknown_cmd");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_holds_the_upgrade_until_admitted_and_the_held_connection_takes_actions() {
    let node = host_node(HostConfig {
        approve_connections: true,
        ..HostConfig::default()
    })
    .await;
    let handle = node.handle();
    let events = handle.events().unwrap().clone();
    let addr = node.addresses().websocket;
    let connecting = tokio::spawn(async move { Client::connect_path(addr, "/?token=good").await });
    let HostEvent::Connect { conn, query, .. } = next_event(&events).await else {
        panic!("connect event expected")
    };
    assert_eq!(query, "token=good");
    // Held before its upgrade, yet open for actions: what is queued now is
    // written once it is admitted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !connecting.is_finished(),
        "the handshake waits for the host"
    );
    assert!(handle.join(conn, "g").unwrap());
    handle.send_text(conn, "welcome").unwrap();
    handle.admit(conn).unwrap();
    let mut admitted = connecting.await.unwrap();
    assert_eq!(admitted.recv_text().await, "welcome");
    admitted.send_to_group("g", "in the group").await;
    assert_eq!(admitted.recv_text().await, "in the group");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_channel_publish_and_subscribe_across_nodes() {
    let config = |channel_listen: Option<String>, channel: Option<String>| Config {
        listen: "127.0.0.1:0".into(),
        channel_listen,
        channel,
        host: HostConfig {
            message_events: true,
            ..HostConfig::default()
        },
        ..Config::default()
    };
    let a = Node::start(config(Some("127.0.0.1:0".into()), None))
        .await
        .unwrap();
    let hub = a.addresses().channel.unwrap();
    let b = Node::start(config(None, Some(hub.to_string())))
        .await
        .unwrap();
    b.handle().wait_bus_connected().await;
    b.handle().channel_subscribe("news").unwrap();
    eventually("b subscribed to news", || {
        a.channel_server().unwrap().subscriber_count("news") == 1
    })
    .await;
    a.handle()
        .channel_publish("news", r#"{"headline":"hi"}"#)
        .unwrap();
    let events = b.handle().events().unwrap().clone();
    assert_eq!(
        next_event(&events).await,
        HostEvent::Channel {
            channel: "news".into(),
            data: r#"{"headline":"hi"}"#.into()
        }
    );
    let bad = a.handle().channel_publish("news", "not json");
    assert!(matches!(bad, Err(groupcast::Error::Channel(_))), "{bad:?}");
    let reserved = a.handle().channel_publish("groupcast:group:1", "1");
    assert!(matches!(reserved, Err(groupcast::Error::Channel(_))));
    b.stop().await;
    a.stop().await;
}

#[test]
fn server_dispatches_on_one_host_thread_and_stop_from_a_callback_returns() {
    let config = Config {
        host: HostConfig {
            message_events: true,
            close_events: true,
            ..HostConfig::default()
        },
        ..Config::local("127.0.0.1:0")
    };
    // No lock around the server: every method takes &self.
    let server = Arc::new(Server::start(config).unwrap());
    let addr = server.addresses().websocket;
    let (seen_tx, seen_rx) = mpsc::channel();
    let for_callback = server.clone();
    server
        .dispatch(move |batch| {
            for event in batch.drain(..) {
                let thread = std::thread::current().name().map(str::to_owned);
                if let HostEvent::Message {
                    payload: Payload::Text(text),
                    ..
                } = &event
                    && text == "stop"
                {
                    // Stopping from inside the callback must not deadlock.
                    assert!(for_callback.stop(), "this call stopped it");
                }
                seen_tx.send((thread, event)).unwrap();
            }
        })
        .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = Client::connect(addr).await;
        client.send("hello").await;
        client.send("stop").await;
        let close = client.recv_close().await.unwrap();
        assert_eq!(close.code, CloseCode::Away);
    });
    let mut events = Vec::new();
    while let Ok(seen) = seen_rx.recv_timeout(ARRIVES) {
        events.push(seen);
    }
    assert!(
        events
            .iter()
            .all(|(thread, _)| thread.as_deref() == Some("groupcast-host"))
    );
    let kinds: Vec<_> = events
        .iter()
        .map(|(_, e)| match e {
            HostEvent::Message {
                payload: Payload::Text(t),
                ..
            } => t.clone(),
            HostEvent::Close { code, .. } => format!("close {code:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["hello", "stop", "close Some(1001)"]);
    assert!(!server.is_running());
    assert!(!server.stop(), "a second stop does nothing");
    let after = server.handle().send_to_group("g", "late", &[]);
    assert!(matches!(after, Err(groupcast::Error::Stopped)), "{after:?}");
    let after = server.handle().broadcast("late", &[]);
    assert!(matches!(after, Err(groupcast::Error::Stopped)), "{after:?}");
}

/// A host's callbacks per kind of event, as the C and Python bindings use
/// them: the core routes each event and carries out the connect verdict.
struct Recorder {
    seen: mpsc::Sender<String>,
}

struct RecorderBatch<'a>(&'a mpsc::Sender<String>);

impl EventHandler for RecorderBatch<'_> {
    fn on_connect(&mut self, event: &mut HostEvent) -> Verdict {
        let HostEvent::Connect { query, .. } = event else {
            unreachable!("only connects reach on_connect")
        };
        self.0.send(format!("connect {query}")).unwrap();
        match query.as_str() {
            "deny" => Verdict::refuse(),
            "teapot" => Verdict::Refuse {
                status: 418,
                body: "short and stout".into(),
            },
            "broken" => Verdict::Failed,
            _ => Verdict::ADMIT,
        }
    }

    fn on_message(&mut self, event: &mut HostEvent) {
        if let HostEvent::Message {
            payload: Payload::Text(text),
            ..
        } = event
        {
            self.0.send(format!("message {text}")).unwrap();
        }
    }

    fn on_close(&mut self, event: &mut HostEvent) {
        if let HostEvent::Close { code, .. } = event {
            self.0.send(format!("close {code:?}")).unwrap();
        }
    }
}

impl Hooks for Recorder {
    fn batch(&mut self, route: &mut dyn FnMut(&mut dyn EventHandler)) {
        route(&mut RecorderBatch(&self.seen));
    }
}

#[test]
fn hooks_get_each_kind_and_the_connect_verdict_admits_or_refuses() {
    let config = Config {
        host: HostConfig {
            approve_connections: true,
            connect_events: true,
            message_events: true,
            close_events: true,
            ..HostConfig::default()
        },
        ..Config::local("127.0.0.1:0")
    };
    let server = Server::start(config).unwrap();
    let addr = server.addresses().websocket;
    let (seen_tx, seen_rx) = mpsc::channel();
    server.run_hooks(Recorder { seen: seen_tx }).unwrap();
    let next = || {
        seen_rx
            .recv_timeout(ARRIVES)
            .expect("an event reaches the hooks")
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The admitted client outlives the block: it is connected at stop.
    let _admitted = runtime.block_on(async {
        let mut admitted = Client::connect_path(addr, "/?ok").await;
        assert_eq!(next(), "connect ok");
        admitted.send("hi").await;
        assert_eq!(next(), "message hi");
        for (query, status) in [
            ("deny", "403 Forbidden"),
            ("teapot", "418 I'm a teapot"),
            ("broken", "500 Internal Server Error"),
        ] {
            let refused = RawUpgrade::send(addr, &format!("/?{query}"), &[]).await;
            let response = refused.read_to_end().await;
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{response:?}"
            );
            assert_eq!(next(), format!("connect {query}"));
            assert_eq!(next(), "close None");
        }
        admitted
    });
    server.stop();
    assert_eq!(next(), "close Some(1001)", "the admitted client, at stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_mixing_host_messages_and_sends_loses_and_reorders_nothing() {
    burst_with_host_messages(HostConfig::default().queue_capacity).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_into_a_full_host_queue_waits_and_loses_nothing() {
    burst_with_host_messages(4).await;
}

/// A client sends 500 messages in one burst, every fifth for the host and
/// the others `send_to_group` to a group it is in. Each stream (deliveries,
/// host events) must arrive whole and in the order the client sent it,
/// whether the host queue has room or fills up and makes the reader wait.
async fn burst_with_host_messages(queue_capacity: usize) {
    use futures_util::SinkExt;
    let node = host_node(HostConfig {
        message_events: true,
        queue_capacity,
        ..HostConfig::default()
    })
    .await;
    let events = node.handle().events().unwrap().clone();
    let mut client = Client::connect(node.addresses().websocket).await;
    client.join("g").await;
    client.sync().await;
    // The host drains its queue as a host thread would, meanwhile.
    let host = tokio::spawn(async move {
        let mut texts = Vec::new();
        while texts.len() < 100 {
            match next_event(&events).await {
                HostEvent::Message {
                    payload: Payload::Text(text),
                    ..
                } => texts.push(text),
                other => panic!("{other:?}"),
            }
        }
        texts
    });
    for i in 0..500 {
        let text = match i % 5 {
            0 => format!("host {i}"),
            _ => format!(r#"{{"cmd":"send_to_group","group_id":"g","message":"m{i}"}}"#),
        };
        client.ws.feed(Message::text(text)).await.unwrap();
    }
    client.ws.flush().await.unwrap();
    for i in (0..500).filter(|i| i % 5 != 0) {
        assert_eq!(client.recv_text().await, format!("m{i}"));
    }
    let expected: Vec<String> = (0..500)
        .filter(|i| i % 5 == 0)
        .map(|i| format!("host {i}"))
        .collect();
    assert_eq!(host.await.unwrap(), expected);
    client.expect_nothing().await;
    node.stop().await;
}

/// A `Server` dropped in async code (here a `#[tokio::test]`'s runtime)
/// stops without the panic tokio raises for blocking inside a runtime.
#[tokio::test]
async fn a_server_dropped_inside_a_runtime_stops_cleanly() {
    let server = Server::start(Config::local("127.0.0.1:0")).unwrap();
    let addr = server.addresses().websocket;
    let mut client = Client::connect(addr).await;
    let handle = server.handle().clone();
    drop(server);
    assert!(matches!(
        handle.send_to_group("g", "late", &[]),
        Err(groupcast::Error::Stopped)
    ));
    let close = client.recv_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port released"
    );
}
