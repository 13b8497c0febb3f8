//! Faults on the cluster path, tried as an operator would with separate
//! `groupcast` processes: a frozen channel server, a wrong secret, a
//! channel server that dies. The node must stay bounded, say what happened
//! in its log, count what it dropped, and report itself unhealthy.

mod common;

use std::time::{Duration, Instant};

use common::{ARRIVES, Client, Process, eventually, http_get, metric};
use futures_util::{SinkExt, StreamExt};
use groupcast::{Config, Node};
use tokio_tungstenite::tungstenite::Message;

/// How much the node's RSS may grow while its channel server is frozen and
/// clients keep sending: the bound on publishes waiting for the server
/// (4 MiB) plus room for the allocator and the local member's queue
/// (measured: about 5.5 MiB).
const FROZEN_GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// What the drill offers while the server is frozen: four times the bound,
/// so a node that kept everything would fail it.
const FROZEN_OFFERED_KIB: u64 = 4 * FROZEN_GROWTH_BOUND_KIB;

/// A node in this process that joins `channel` and has a member in `group`.
async fn member_elsewhere(channel: &str, group: &str) -> (Node, Client) {
    let node = Node::start(Config {
        channel: Some(channel.to_owned()),
        channel_listen: None,
        ..Config::local("127.0.0.1:0")
    })
    .await
    .unwrap();
    tokio::time::timeout(ARRIVES, node.handle().wait_bus_connected())
        .await
        .expect("reaches the channel server");
    let mut member = Client::connect(node.addresses().websocket).await;
    member.join(group).await;
    member.sync().await;
    (node, member)
}

/// Sends `text` to `group` from `sender` until `member` receives it (the
/// other node subscribes asynchronously; a channel server that was frozen
/// first delivers what it held). Panics after [`ARRIVES`].
async fn until_it_crosses(sender: &mut Client, member: &mut Client, group: &str, text: &str) {
    let deadline = Instant::now() + ARRIVES * 2;
    loop {
        sender.send_to_group(group, text).await;
        let arrived = tokio::time::timeout(Duration::from_millis(200), async {
            loop {
                match member.ws.next().await {
                    Some(Ok(Message::Text(got))) if got.as_str() == text => return true,
                    Some(Ok(_)) => continue,
                    _ => return false,
                }
            }
        })
        .await;
        if arrived == Ok(true) {
            return;
        }
        assert!(Instant::now() < deadline, "{text:?} never crossed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_channel_server_costs_bounded_memory_and_delivery_resumes() {
    let channel = Process::start(&["channel", "--listen", "127.0.0.1:0"]);
    let hub = channel.addr("channel").to_string();
    let node = Process::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--channel",
        &hub,
        "--metrics",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--uid-query-param",
        "uid",
        // A heartbeat every 40 s: none after the first during the drill,
        // so only the repair after drops can bring presence back in time.
        "--presence-lease",
        "120",
    ]);
    let (other, mut far_member) = member_elsewhere(&hub, "g").await;
    let mut sender = Client::connect(node.addr("websocket")).await;
    until_it_crosses(&mut sender, &mut far_member, "g", "warm-up").await;
    let mut local = Client::connect(node.addr("websocket")).await;
    local.join("g").await;
    local.sync().await;
    let alice = Client::connect_path(node.addr("websocket"), "/?uid=alice").await;
    let far = other.handle();
    eventually("the other node sees alice", || {
        far.is_uid_online("alice").unwrap()
    })
    .await;

    channel.signal(libc::SIGSTOP);
    let before = node.rss_kib();
    // 16 KiB messages until four times the bound is offered, paced by the
    // local member (it must get every one of them: local delivery never
    // waits for the bus).
    let payload = "x".repeat(16 * 1024);
    let (mut local_tx, mut local_rx) = local.ws.split();
    let reader = tokio::spawn(async move {
        let mut received = 0u64;
        while let Some(Ok(message)) = local_rx.next().await {
            if message.is_text() {
                received += 1;
            }
        }
        received
    });
    let started = Instant::now();
    let mut sent = 0u64;
    let mut peak = before;
    while sent * 16 < FROZEN_OFFERED_KIB && started.elapsed() < Duration::from_secs(30) {
        for _ in 0..32 {
            let frame =
                serde_json::json!({"cmd": "send_to_group", "group_id": "g", "message": payload});
            sender.send(&frame.to_string()).await;
            sent += 1;
        }
        sender.sync().await;
        peak = peak.max(node.rss_kib());
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "frozen channel server: {sent} messages of 16 KiB ({} MiB) in {:?}, node RSS +{grown} KiB",
        sent * 16 / 1024,
        started.elapsed()
    );
    assert!(
        sent * 16 >= FROZEN_OFFERED_KIB,
        "the drill must offer far more than the bound ({sent} messages)"
    );
    assert!(
        grown < FROZEN_GROWTH_BOUND_KIB,
        "node RSS grew by {grown} KiB while the channel server was frozen"
    );
    let (_, metrics) = http_get(node.addr("metrics"), "/metrics").await;
    assert!(
        metric(&metrics, "bus_dropped_publishes_total") > 0,
        "drops are counted:\n{metrics}"
    );
    // Presence changes while the link is choked: their publications are
    // dropped (the publish bound is full).
    drop(alice);
    let carol = Client::connect_path(node.addr("websocket"), "/?uid=carol").await;

    // Local delivery went on: the local member got every message.
    let _ = local_tx.send(Message::Close(None)).await;
    let received = tokio::time::timeout(ARRIVES, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, sent, "the local member got every message");

    // Thawed, the cluster delivers again, and presence converges: the
    // node sends its whole share again once its publications get through.
    channel.signal(libc::SIGCONT);
    let thawed = Instant::now();
    until_it_crosses(&mut sender, &mut far_member, "g", "after the thaw").await;
    eventually("the other node sees carol and not alice", || {
        far.is_uid_online("carol").unwrap() && !far.is_uid_online("alice").unwrap()
    })
    .await;
    eprintln!("presence converged {:?} after the thaw", thawed.elapsed());
    // And this node still sees the other's member of the group.
    sender.send(r#"{"cmd":"presence","group_id":"g"}"#).await;
    let answer = loop {
        let text = sender.recv_text().await;
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        if value["type"] == "presence" {
            break value;
        }
    };
    assert_eq!(answer["connections"], 1, "{answer}");
    drop(carol);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_logged_retried_slowly_counted_and_unhealthy() {
    let channel = Process::start_logged(
        &["channel", "--listen", "127.0.0.1:0"],
        &[("GROUPCAST_CHANNEL_SECRET", "right")],
    );
    let hub = channel.addr("channel").to_string();
    let node = Process::start_logged(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--channel",
            &hub,
            "--channel-secret",
            "wrong",
            "--metrics",
            "127.0.0.1:0",
        ],
        &[],
    );
    let cpu_before = node.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = node.cpu_ticks() - cpu_before;
    let (_, metrics) = http_get(node.addr("metrics"), "/metrics").await;
    let attempts = metric(&metrics, "bus_connect_attempts_total");
    let failures = metric(&metrics, "bus_auth_failures_total");
    eprintln!("wrong secret for 5 s: {attempts} attempts, {failures} refusals, {cpu} CPU ticks");
    assert!(
        (2..=15).contains(&attempts),
        "retried at the capped backoff, not in a loop: {attempts} attempts"
    );
    assert!(
        failures >= 1 && failures <= attempts,
        "{failures} of {attempts}"
    );
    assert!(cpu < 50, "the node used {cpu} ticks of CPU in 5 s");
    assert_eq!(metric(&metrics, "bus_connected"), 0);

    let (status, body) = http_get(node.addr("metrics"), "/health").await;
    assert_eq!(status, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["bus"], "disconnected");
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("refused the secret"),
        "{body}"
    );
    let log = node.stderr();
    assert!(log.contains("refused this client's secret"), "{log}");
    assert_eq!(
        log.matches("refused this client's secret").count(),
        1,
        "said once per streak, not once per attempt:\n{log}"
    );
    assert!(channel.stderr().contains("refused a channel client"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_says_where_it_listens_and_when_the_bus_goes_down_in_text_or_json() {
    let channel = Process::start(&["channel", "--listen", "127.0.0.1:0"]);
    let hub = channel.addr("channel").to_string();
    let node = Process::start_logged(
        &[
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--channel",
            &hub,
            "--metrics",
            "127.0.0.1:0",
        ],
        &[("GROUPCAST_LOG", "info")],
    );
    let metrics = node.addr("metrics");
    let deadline = Instant::now() + ARRIVES;
    while http_get(metrics, "/health").await.0 != 200 {
        assert!(Instant::now() < deadline, "the node never reached its bus");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    channel.signal(libc::SIGKILL);
    let deadline = Instant::now() + ARRIVES;
    while !node.stderr().contains("channel server lost") {
        assert!(Instant::now() < deadline, "no warning:\n{}", node.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = http_get(metrics, "/health").await;
    assert_eq!(status, 503, "{body}");
    let log = node.stderr();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let said = |level: &str, message: &str| {
        records
            .iter()
            .any(|r| r["level"] == level && r["fields"]["message"] == message)
    };
    assert!(said("INFO", "node listening"), "{log}");
    assert!(said("INFO", "connected to the channel server"), "{log}");
    assert!(said("WARN", "channel server lost; reconnecting"), "{log}");
    let listening = records
        .iter()
        .find(|r| r["fields"]["message"] == "node listening")
        .unwrap();
    assert_eq!(
        listening["fields"]["websocket"],
        node.addr("websocket").to_string()
    );

    // The default text format, with the default filter (info).
    let text = Process::start_logged(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--channel-listen",
            "127.0.0.1:0",
        ],
        &[("GROUPCAST_LOG", ""), ("RUST_LOG", "")],
    );
    let websocket = text.addr("websocket").to_string();
    let deadline = Instant::now() + ARRIVES;
    while !text.stderr().contains("node listening") {
        assert!(Instant::now() < deadline, "no listening line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = text.stderr();
    assert!(
        line.contains(" INFO ") && line.contains(&websocket),
        "{line}"
    );
}
