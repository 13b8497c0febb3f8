//! Group history from the command line: `groupcast channel` and
//! `groupcast serve` take --history-size/--history-ttl/--history-max-bytes,
//! and a member recovers on the other node of a real cluster.

mod common;

use std::process::Command;

use common::{Client, Process};
use serde_json::{Value, json};

async fn recv_json(client: &mut Client) -> Value {
    serde_json::from_str(&client.recv_text().await).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_recovers_on_the_other_process_of_a_cluster() {
    let channel = Process::start(&[
        "channel",
        "--listen",
        "127.0.0.1:0",
        "--history-size",
        "50",
        "--history-ttl",
        "60",
        "--history-max-bytes",
        "1000000",
    ]);
    let hub = channel.addr("channel").to_string();
    let node = |hub: &str| {
        Process::start(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--channel",
            hub,
            "--workers",
            "1",
            "--history-size",
            "50",
        ])
    };
    let (a, b) = (node(&hub), node(&hub));
    let mut member = Client::connect(a.addr("websocket")).await;
    member
        .send(r#"{"cmd":"add_group","group_id":"g","positions":true}"#)
        .await;
    let joined = recv_json(&mut member).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    drop(member);
    let mut sender = Client::connect(b.addr("websocket")).await;
    for i in 1..=5 {
        sender.send_to_group("g", &format!("m{i}")).await;
    }
    sender.sync().await;
    let mut member = Client::connect(b.addr("websocket")).await;
    let since = json!({"cmd": "add_group", "group_id": "g",
        "since": {"offset": joined["offset"], "epoch": joined["epoch"]}});
    member.send(&since.to_string()).await;
    let rejoined = recv_json(&mut member).await;
    assert_eq!(rejoined["recovered"], true, "{rejoined}");
    assert_eq!(rejoined["missed"], 5);
    for i in 1..=5u64 {
        let message = recv_json(&mut member).await;
        assert_eq!(
            (message["offset"].as_u64(), &message["message"]),
            (Some(i), &json!(format!("m{i}")))
        );
    }
    for process in [a, b, channel] {
        process.signal(libc::SIGTERM);
        let code = tokio::task::spawn_blocking(move || process.wait())
            .await
            .unwrap();
        assert_eq!(code, Some(0));
    }
}

#[test]
fn bad_history_settings_are_refused_naming_them() {
    for (args, setting) in [
        (
            &["serve", "--no-channel", "--history-size", "0"][..],
            "history_size",
        ),
        (
            &[
                "serve",
                "--no-channel",
                "--history-size",
                "5",
                "--history-ttl",
                "0",
            ][..],
            "history_ttl",
        ),
        (&["channel", "--history-size", "0"][..], "history_size"),
        (
            &[
                "serve",
                "--bus",
                "redis+cluster://127.0.0.1:1,127.0.0.1:2?prefix=a%7Bb",
                "--history-size",
                "5",
            ][..],
            "needs a bus prefix without '{'",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_groupcast"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
    }
}
