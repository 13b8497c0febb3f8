//! Drills that measure this process's memory (RSS): slow consumers and
//! connection churn. They have a test binary of their own, and run one at a
//! time, because RSS is the whole process's: other tests running beside
//! them would make the figures flake.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, eventually, local_node, node_with, stalled_client};
use groupcast::{Limits, SlowConsumerPolicy};

/// Held by each test for its whole run: one measurement at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn flood_with_a_stalled_member(policy: SlowConsumerPolicy) {
    const READERS: usize = 200;
    const MESSAGES: usize = 1000;
    const SIZE: usize = 1024;
    /// Messages the sender may be ahead of the slowest healthy reader: 16 KiB,
    /// well under the 64 KiB bound, so only the stalled client overflows.
    const WINDOW: usize = 16;
    let node = node_with(Limits {
        outbound_queue_bytes: 64 * 1024,
        // Keep the kernel from absorbing megabytes for the stalled client.
        send_buffer_size: Some(16 * 1024),
        slow_consumer: policy,
        ..Limits::default()
    })
    .await;
    let addr = node.addresses().websocket;
    let handle = node.handle();
    let mut stalled = stalled_client(addr).await;
    stalled.join("g").await;
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let mut c = Client::connect(addr).await;
        c.join("g").await;
        readers.push(c);
    }
    eventually("everyone joined", || handle.group_size("g") == READERS + 1).await;
    let rss_before = rss_kib();

    let payload = "x".repeat(SIZE);
    let started = Instant::now();
    // The least number of messages every reader has received so far.
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..READERS).map(|_| AtomicUsize::new(0)).collect());
    let receivers: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let progress = progress.clone();
            tokio::spawn(async move {
                for n in 1..=MESSAGES {
                    assert_eq!(c.recv_text().await.len(), SIZE);
                    progress[i].store(n, Ordering::Relaxed);
                }
                c
            })
        })
        .collect();
    for sent in 1..=MESSAGES {
        handle.send_to_group("g", &payload, &[]).unwrap();
        while progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .min()
            .unwrap()
            + WINDOW
            < sent
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut readers = Vec::new();
    for r in receivers {
        readers.push(r.await.expect("every reader receives every message"));
    }
    let stats = handle.stats();
    match policy {
        SlowConsumerPolicy::Close => {
            assert_eq!(stats.slow_consumer_closes, 1);
            eventually("the stalled client removed", || {
                handle.group_size("g") == READERS
            })
            .await;
        }
        SlowConsumerPolicy::Drop => {
            assert!(stats.dropped_messages > 0, "{stats:?}");
            assert_eq!(stats.slow_consumer_closes, 0);
            assert_eq!(
                handle.group_size("g"),
                READERS + 1,
                "the stalled client stays"
            );
        }
    }
    // The counters above prove the stalled member's backlog stayed within
    // its 64 KiB bound. This process also holds the 200 readers' own
    // buffers (about 25 MiB measured), so the RSS check is a sanity bound
    // against runaway growth, with room for allocator noise.
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    eprintln!(
        "slow consumer ({policy:?}): {} deliveries in {:?}, RSS +{grown} KiB, {stats:?}",
        READERS * MESSAGES,
        started.elapsed()
    );
    drop((stalled, readers));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_closed_and_the_others_get_everything() {
    let _alone = ONE_AT_A_TIME.lock().await;
    flood_with_a_stalled_member(SlowConsumerPolicy::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_drop_policy_a_stalled_client_loses_messages_only_its_own() {
    let _alone = ONE_AT_A_TIME.lock().await;
    flood_with_a_stalled_member(SlowConsumerPolicy::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_ten_thousand_connections_leaves_nothing_behind() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let node = local_node().await;
    let addr = node.addresses().websocket;
    let handle = node.handle();
    // Warm up allocator pools before measuring.
    for _ in 0..200 {
        let mut c = Client::connect(addr).await;
        c.join("warm").await;
    }
    eventually("warm-up connections removed", || {
        handle.connection_count() == 0
    })
    .await;
    let rss_before = rss_kib();
    let workers: Vec<_> = (0..20)
        .map(|w| {
            tokio::spawn(async move {
                for i in 0..500 {
                    let mut c = Client::connect(addr).await;
                    c.join(&format!("g{}", (w * 500 + i) % 1000)).await;
                    c.join("common").await;
                    if i % 2 == 0 {
                        let _ = c.ws.close(None).await;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    eventually("all 10,000 connections removed", || {
        handle.connection_count() == 0 && handle.group_count() == 0
    })
    .await;
    assert!(handle.groups().is_empty());
    assert_eq!(handle.stats().connections_opened, 10_200);
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB after churn");
    eprintln!("churn: RSS +{grown} KiB after 10,000 cycles");
    node.stop().await;
}

/// Raises this process's soft limit on open files to its hard limit (the
/// server it starts inherits it): the drill below needs a few thousand.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill,
    // and setrlimit only reads it.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// What a connection allocates to write (its queue's buffer, the writer's
/// batch) is given back once it has written: the server's memory per idle
/// connection is the same after one message as before any. Measured on the
/// `groupcast` binary in its own process, so that the clients' memory does
/// not count. Before, each connection kept 1.6 KiB after its first
/// delivery (benches/FINDINGS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gives_back_its_write_memory_once_idle() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const CONNECTIONS: usize = 2_000;
    if raise_fd_limit() < 2 * CONNECTIONS as u64 + 100 {
        eprintln!("skipped: the fd limit is too low for {CONNECTIONS} connections");
        return;
    }
    let server = common::Process::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--channel-listen",
        "127.0.0.1:0",
        "--workers",
        "2",
    ]);
    let addr = server.addr("websocket");
    // Warm up the allocator and the runtime with a first batch, gone
    // before measuring.
    for _ in 0..100 {
        let mut c = Client::connect(addr).await;
        c.join("warm").await;
        c.sync().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();
    let started = Instant::now();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for chunk in 0..CONNECTIONS / 100 {
        let opened: Vec<_> = (0..100)
            .map(|_| {
                tokio::spawn(async move {
                    let mut c = Client::connect(addr).await;
                    c.join("all").await;
                    c
                })
            })
            .collect();
        for c in opened {
            clients.push(c.await.expect("connects"));
        }
        assert!(started.elapsed() < Duration::from_secs(60), "chunk {chunk}");
    }
    // Every join took effect once the last client's own join did: each
    // client's sync is a round trip behind its join.
    for c in clients.iter_mut().step_by(97) {
        c.sync().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let joined = server.rss_kib();
    // One message to all of them; each receives it, then all sit idle.
    clients[0]
        .send_to_group("all", "one message for everyone")
        .await;
    let receivers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                assert_eq!(c.recv_text().await, "one message for everyone");
                c
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for r in receivers {
        clients.push(r.await.expect("every client receives the message"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    let per_conn = |kib: u64| kib.saturating_sub(before) as f64 / CONNECTIONS as f64;
    let (joined_each, after_each) = (per_conn(joined), per_conn(after));
    eprintln!(
        "server RSS per connection: joined {joined_each:.2} KiB, after one message {after_each:.2} KiB"
    );
    // What was kept after traffic (1.6 KiB) must not return.
    assert!(
        after_each <= joined_each + 0.5,
        "each connection kept {:.2} KiB after one message",
        after_each - joined_each
    );
    // 2.6 KiB in the debug build, 2.4 in release (issue 18's target is
    // 2.5 for release; benches/FINDINGS.md): a read buffer, timer or token
    // back in every connection, or its task a size step larger, takes the
    // debug build over 3.
    for (state, each) in [("joined", joined_each), ("after one message", after_each)] {
        assert!(each <= 3.0, "{each:.2} KiB per idle connection ({state})");
    }
    drop(clients);
    server.signal(libc::SIGTERM);
    tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
}
