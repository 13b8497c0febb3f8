//! The `groupcast` binary as a user runs it: separate processes, printed
//! addresses, signals, exit codes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Client, Process};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_seed_and_sigterm_stops_it_with_1001() {
    let server = Process::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--channel-listen",
        "127.0.0.1:0",
        "--workers",
        "2",
    ]);
    let mut client = Client::connect(server.addr("websocket")).await;
    assert!(server.addr("channel").port() != 0);
    client
        .send(r#"{"cmd":"add_group", "group_id":"123"}"#)
        .await;
    client
        .send(r#"{"cmd":"send_to_group", "group_id":"123", "message":"C'est le message"}"#)
        .await;
    assert_eq!(client.recv_text().await, "C'est le message");

    server.signal(libc::SIGTERM);
    let close = client.recv_close().await.expect("close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(
        tokio::task::spawn_blocking(move || server.wait())
            .await
            .unwrap(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_a_channel_server() {
    let channel = Process::start(&["channel", "--listen", "127.0.0.1:0"]);
    assert!(
        tokio::net::TcpStream::connect(channel.addr("channel"))
            .await
            .is_ok()
    );
    channel.signal(libc::SIGINT);
    assert_eq!(
        tokio::task::spawn_blocking(move || channel.wait())
            .await
            .unwrap(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_in_separate_processes_form_a_cluster() {
    let channel = Process::start(&["channel", "--listen", "127.0.0.1:0"]);
    let hub = channel.addr("channel").to_string();
    let node_a = Process::start(&["serve", "--listen", "127.0.0.1:0", "--channel", &hub]);
    let node_b = Process::start(&["serve", "--listen", "127.0.0.1:0", "--channel", &hub]);
    let mut sender = Client::connect(node_a.addr("websocket")).await;
    let mut member_b = Client::connect(node_b.addr("websocket")).await;
    let mut member_a = Client::connect(node_a.addr("websocket")).await;
    member_b.join("g").await;
    member_a.join("g").await;
    member_a.sync().await;

    // Node b subscribes asynchronously: probe until a message crosses.
    let mut probes = 0;
    loop {
        probes += 1;
        sender.send_to_group("g", &format!("probe {probes}")).await;
        assert_eq!(member_a.recv_text().await, format!("probe {probes}"));
        let crossed = tokio::time::timeout(Duration::from_millis(100), member_b.recv_text()).await;
        if crossed.is_ok() {
            break;
        }
        assert!(probes < 50, "no cross-node delivery");
    }
    // Drain probes still in flight, then check exactly-once delivery.
    while tokio::time::timeout(Duration::from_millis(300), member_b.recv_text())
        .await
        .is_ok()
    {}
    for i in 0..20 {
        sender.send_to_group("g", &format!("m{i}")).await;
    }
    for i in 0..20 {
        assert_eq!(member_b.recv_text().await, format!("m{i}"));
        assert_eq!(member_a.recv_text().await, format!("m{i}"));
    }
    member_b.expect_nothing().await;
    member_a.expect_nothing().await;
    sender.expect_nothing().await;

    for process in [node_a, node_b, channel] {
        process.signal(libc::SIGTERM);
        assert_eq!(
            tokio::task::spawn_blocking(move || process.wait())
                .await
                .unwrap(),
            Some(0)
        );
    }
}

#[test]
fn help_lists_the_flags_and_bad_arguments_fail() {
    let help = Command::new(env!("CARGO_BIN_EXE_groupcast"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--listen", "--workers", "--channel-listen", "--channel"] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_groupcast"))
        .args(["serve", "--workers", "many"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// The range rules are `Config::validate`'s, the same as from Rust, C and
/// Python: 0 is never "no limit", durations are above 0 (a drain may be
/// 0), addresses are HOST:PORT. Each refusal names the setting, exit 1.
#[test]
fn zero_and_address_rules_are_the_cores() {
    let refused = |args: &[&str], says: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_groupcast"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--channel-listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    refused(&["--workers", "0"], "workers must be at least 1");
    refused(
        &["--max-connections", "0"],
        "max_connections must be at least 1",
    );
    refused(
        &["--max-message-size", "0"],
        "max_message_size must be at least 1",
    );
    refused(&["--ping-interval", "0"], "ping_interval must be above 0");
    refused(
        &["--handshake-timeout", "0"],
        "handshake_timeout must be above 0",
    );
    refused(
        &["--idle-timeout=-1"],
        "idle_timeout must be a number of seconds",
    );
    refused(&["--metrics", "9100"], "metrics_listen must be HOST:PORT");
    let out = Command::new(env!("CARGO_BIN_EXE_groupcast"))
        .args(["serve", "--listen", "127.0.0.1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen must be HOST:PORT"), "{stderr}");
    // A drain of 0 closes at once: accepted.
    let drained = Process::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--channel-listen",
        "127.0.0.1:0",
        "--drain-timeout",
        "0",
    ]);
    drained.addr("websocket");
    drained.signal(libc::SIGTERM);
    assert_eq!(drained.wait(), Some(0));
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_groupcast"))
        .args([
            "serve",
            "--listen",
            &addr,
            "--channel-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn a_taken_channel_port_names_the_channel_server_and_the_flags_around_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_groupcast"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--channel-listen",
            &addr,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "groupcast: cannot listen on {addr} (the embedded channel server): \
         Address already in use"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    for flag in [
        "--channel-listen 127.0.0.1:0",
        "--channel HOST:PORT",
        "--no-channel",
    ] {
        assert!(stderr.contains(flag), "{flag} missing from: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channel_serves_a_single_node_without_a_channel_server() {
    let server = Process::start(&["serve", "--listen", "127.0.0.1:0", "--no-channel"]);
    let mut client = Client::connect(server.addr("websocket")).await;
    client.join("g").await;
    client.send_to_group("g", "alone").await;
    assert_eq!(client.recv_text().await, "alone");
    let line = server.line().to_owned();
    assert!(!line.contains("channel"), "{line}");
    server.signal(libc::SIGTERM);
    assert_eq!(
        tokio::task::spawn_blocking(move || server.wait())
            .await
            .unwrap(),
        Some(0)
    );
    for conflicting in [
        &["--channel", "127.0.0.1:1"][..],
        &["--channel-listen", "127.0.0.1:0"],
        &["--bus", "redis://127.0.0.1:1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_groupcast"))
            .args(["serve", "--no-channel"])
            .args(conflicting)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{conflicting:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot be used with"), "{stderr}");
    }
}
