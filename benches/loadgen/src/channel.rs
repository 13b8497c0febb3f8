//! `loadgen channel`: the channel server's own throughput, spoken in its
//! protocol directly (no websocket node in between).
//!
//! Subscriber connections (standing in for the nodes of a cluster)
//! subscribe to one channel; publisher connections publish to it as fast as
//! a window of publishes in flight allows (sent, not yet received by every
//! subscriber). The server forwards each publish to every subscriber, so
//! events/s = publishes/s × subscribers, and its CPU per event is what a
//! cluster's hub costs per message per node.
//!
//! Framing is the seed's: a 4-byte big-endian length that includes itself,
//! then the body. Bodies are JSON (`--dialect json`, groupcast's nodes) or
//! PHP `serialize()` (`--dialect php`, as Workerman's `Channel\Client`
//! speaks); subscribers receive events in their own dialect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{Result, self_cpu_s, server_cpu_split, server_rss_kib};

/// The channel every publish goes to.
const CHANNEL: &str = "bench";
/// Publishes written per syscall by a publisher.
const WRITE_BATCH: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// groupcast's JSON bodies.
    Json,
    /// PHP `serialize()` bodies (walkor/channel's `Channel\Client`).
    Php,
}

impl Dialect {
    /// The body subscribing to [`CHANNEL`].
    fn subscribe(self) -> String {
        match self {
            Dialect::Json => format!(r#"{{"type":"subscribe","channels":["{CHANNEL}"]}}"#),
            Dialect::Php => format!(
                r#"a:2:{{s:4:"type";s:9:"subscribe";s:8:"channels";a:1:{{i:0;{}}}}}"#,
                php_string(CHANNEL)
            ),
        }
    }

    /// The body publishing `data` (a string) to [`CHANNEL`].
    fn publish(self, data: &str) -> String {
        match self {
            Dialect::Json => {
                format!(r#"{{"type":"publish","channels":["{CHANNEL}"],"data":"{data}"}}"#)
            }
            Dialect::Php => format!(
                r#"a:3:{{s:4:"type";s:7:"publish";s:8:"channels";a:1:{{i:0;{}}}s:4:"data";{}}}"#,
                php_string(CHANNEL),
                php_string(data)
            ),
        }
    }
}

/// A string as PHP's `serialize()` writes it (its length in bytes).
fn php_string(s: &str) -> String {
    format!(r#"s:{}:"{s}";"#, s.len())
}

#[derive(Args, Clone)]
pub struct ChannelArgs {
    /// The channel server's address (HOST:PORT).
    #[arg(long)]
    addr: String,
    /// The channel server's process id (CPU and RSS over its tree).
    #[arg(long, value_delimiter = ',', required = true)]
    server_pid: Vec<u32>,
    /// Subscriber connections (the nodes of a cluster).
    #[arg(long, default_value_t = 2)]
    subscribers: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Bytes of each publish's data (a string).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Publishes a publisher may have in flight (sent, not yet received by
    /// every subscriber).
    #[arg(long, default_value_t = 4096)]
    window: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Body encoding.
    #[arg(long, value_enum, default_value = "json")]
    dialect: Dialect,
    /// Seconds without progress after which missing events count as lost.
    #[arg(long, default_value_t = 5.0)]
    drain_timeout: f64,
    /// Free-form label copied into the output.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Serialize)]
struct ChannelReport {
    label: String,
    mode: &'static str,
    dialect: Dialect,
    subscribers: usize,
    publishers: usize,
    size: usize,
    duration_s: f64,
    publishes: u64,
    publishes_per_s: f64,
    expected_events: u64,
    received_events: u64,
    events_per_s: f64,
    /// Server CPU (user + system) per event forwarded, in µs.
    server_cpu_us_per_event: f64,
    server_cpu_util: f64,
    server_sys_fraction: f64,
    server_rss_kib: u64,
    generator_cpu_util: f64,
    lost: u64,
}

fn frame(body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body.as_bytes());
    out
}

/// Reads frames until the connection ends, counting events.
async fn count_events(stream: TcpStream, events: Arc<AtomicU64>) {
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut header = [0u8; 4];
    let mut body = Vec::new();
    loop {
        if reader.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(header) as usize;
        if len < 4 {
            return;
        }
        body.resize(len - 4, 0);
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        // An empty body is a ping; everything else sent to a subscriber is
        // an event.
        if !body.is_empty() {
            events.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub async fn run(args: ChannelArgs) -> Result<u8> {
    let subscribe = frame(&args.dialect.subscribe());
    let mut counts = Vec::new();
    for _ in 0..args.subscribers {
        let mut stream = TcpStream::connect(&args.addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&subscribe).await?;
        let events = Arc::new(AtomicU64::new(0));
        tokio::spawn(count_events(stream, events.clone()));
        counts.push(events);
    }
    let received = |counts: &[Arc<AtomicU64>]| -> Vec<u64> {
        counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    };
    let data = "x".repeat(args.size);
    let publish = frame(&args.dialect.publish(&data));
    let mut publishers = Vec::new();
    for _ in 0..args.publishers.max(1) {
        let stream = TcpStream::connect(&args.addr).await?;
        stream.set_nodelay(true)?;
        publishers.push(stream);
    }
    // Subscriptions are confirmed by nothing but an event: publish until
    // every subscriber has received one.
    let sync_start = Instant::now();
    while received(&counts).contains(&0) {
        if sync_start.elapsed() > Duration::from_secs(10) {
            return Err("subscriptions not confirmed within 10 s".into());
        }
        publishers[0].write_all(&publish).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base: Vec<u64> = received(&counts);
    let subscribers = args.subscribers as u64;
    // Events received by the slowest subscriber since the start.
    let slowest = {
        let counts = counts.clone();
        let base = base.clone();
        move || {
            counts
                .iter()
                .zip(&base)
                .map(|(c, b)| c.load(Ordering::Relaxed) - b)
                .min()
                .unwrap_or(0)
        }
    };

    let (user0, sys0) = server_cpu_split(&args.server_pid);
    let gen0 = self_cpu_s();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let batch: Vec<u8> = publish.repeat(WRITE_BATCH);
    let mut tasks = Vec::new();
    for mut stream in publishers {
        let (sent, stop, batch, slowest) =
            (sent.clone(), stop.clone(), batch.clone(), slowest.clone());
        let window = args.window * args.publishers.max(1) as u64;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                if sent.load(Ordering::Relaxed) + WRITE_BATCH as u64 > slowest() + window {
                    // The window is full: let the subscribers catch up
                    // (a timer tick, ~1 ms) rather than spin on the cores
                    // the server needs.
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    continue;
                }
                if stream.write_all(&batch).await.is_err() {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                sent.fetch_add(WRITE_BATCH as u64, Ordering::Relaxed);
            }
            stream
        }));
    }
    let mut streams = Vec::new();
    for task in tasks {
        streams.push(task.await?);
    }
    let publishes = sent.load(Ordering::Relaxed);
    let expected = publishes * subscribers;
    let total = |counts: &[Arc<AtomicU64>]| -> u64 {
        received(counts).iter().zip(&base).map(|(c, b)| c - b).sum()
    };
    // Drain: until every event arrived, or no progress for drain_timeout.
    let mut last = (total(&counts), Instant::now());
    while total(&counts) < expected {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = total(&counts);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs_f64(args.drain_timeout) {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let (user1, sys1) = server_cpu_split(&args.server_pid);
    let gen1 = self_cpu_s();
    let got = total(&counts);
    let cpu = (user1 - user0) + (sys1 - sys0);
    let report = ChannelReport {
        label: args.label,
        mode: "channel",
        dialect: args.dialect,
        subscribers: args.subscribers,
        publishers: args.publishers.max(1),
        size: args.size,
        duration_s: wall,
        publishes,
        publishes_per_s: publishes as f64 / wall,
        expected_events: expected,
        received_events: got,
        events_per_s: got as f64 / wall,
        server_cpu_us_per_event: if got > 0 { cpu * 1e6 / got as f64 } else { 0.0 },
        server_cpu_util: cpu / wall,
        server_sys_fraction: if cpu > 0.0 { (sys1 - sys0) / cpu } else { 0.0 },
        server_rss_kib: server_rss_kib(&args.server_pid),
        generator_cpu_util: (gen1 - gen0) / wall,
        lost: expected.saturating_sub(got),
    };
    drop(streams);
    println!("{}", serde_json::to_string(&report)?);
    Ok(u8::from(report.lost > 0))
}
