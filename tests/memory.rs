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
