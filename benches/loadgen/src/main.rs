//! Load generator for group-broadcast websocket servers speaking the seed
//! protocol (`add_group`, `leave_group`, `send_to_group`).
//!
//! `loadgen run` opens the bulk member connections and the senders in this
//! process, and starts `loadgen probe` as a separate process that holds a few
//! latency probe connections: a client that must read thousands of
//! deliveries per message would otherwise add its own queueing delay to the
//! latency it reports. Every data message carries the CLOCK_MONOTONIC time
//! it was sent at, which is shared by all processes on the machine.
//!
//! The run prints one JSON object on stdout: deliveries/s, the server's CPU
//! seconds per delivery and RSS (summed over the process tree of each
//! `--server-pid`), probe latency percentiles, the generator's own CPU, and
//! lost deliveries (expected minus received).

use std::collections::HashMap;
use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod channel;

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;
type Ws = WebSocketStream<Socket>;
type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for group-broadcast websocket servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario against a server and print the results as JSON.
    Run(RunArgs),
    /// Hold latency probe connections (started by `run`, talks on stdio).
    Probe(ProbeArgs),
    /// Measure a channel server's own forwarding rate, in its protocol.
    Channel(channel::ChannelArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Each sender sends as fast as a window of in-flight messages allows.
    Flood,
    /// Each sender sends `rate` messages per second.
    Paced,
    /// No data: measure the server's RSS per idle joined connection.
    Idle,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Server websocket URL. Repeat it for a cluster: members and probes are
    /// spread round-robin over the URLs, senders use the first one.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Server process ids (comma-separated); CPU and RSS are summed over
    /// each one's process tree.
    #[arg(long, value_delimiter = ',', required = true)]
    server_pid: Vec<u32>,
    #[arg(long, value_enum, default_value = "paced")]
    mode: Mode,
    /// Number of groups.
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Bulk member connections per group (excluding probes).
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Senders per group.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// The senders are the group's first members (no extra connections);
    /// otherwise they are separate connections that join nothing.
    #[arg(long)]
    senders_are_members: bool,
    /// Paced mode: messages per second per sender.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Message size in bytes (the `message` string delivered to members).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Flood mode: messages a sender may have in flight (sent, not yet
    /// received by every bulk member).
    #[arg(long, default_value_t = 16)]
    window: u64,
    /// Latency probe connections, in a separate process, spread over groups.
    #[arg(long, default_value_t = 4)]
    probes: usize,
    /// Spread connections over this many source addresses 127.0.0.2.. (0:
    /// let the kernel choose), so ephemeral ports never run out.
    #[arg(long, default_value_t = 8)]
    src_ips: u8,
    /// Extra connections that join groups nobody sends to, 10 per group:
    /// a server's cost per delivery should not grow with them. Any message
    /// one receives is reported as an error.
    #[arg(long, default_value_t = 0)]
    bystanders: usize,
    /// Idle mode: after measuring, grow to this many connections in total
    /// and check that the server holds them all.
    #[arg(long, default_value_t = 0)]
    hold: usize,
    /// Seconds without progress after which missing deliveries count as lost.
    #[arg(long, default_value_t = 5.0)]
    drain_timeout: f64,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// Free-form label copied into the output.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args, Clone)]
struct ProbeArgs {
    /// One probe connection per `URL,GROUP` pair.
    #[arg(long = "conn", required = true)]
    conns: Vec<String>,
}

fn main() -> std::process::ExitCode {
    raise_fd_limit();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(BoxError::from)
            .and_then(|rt| rt.block_on(run(args))),
        Command::Probe(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BoxError::from)
            .and_then(|rt| rt.block_on(probe(args))),
        Command::Channel(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(BoxError::from)
            .and_then(|rt| rt.block_on(channel::run(args))),
    };
    match outcome {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Raises the soft open-files limit to the hard limit: 10,000+ connections
/// need more than the usual 1024.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU seconds (user + system) this process has used.
fn self_cpu_s() -> f64 {
    // SAFETY: valid pointer to a zeroed local rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

// ---------------------------------------------------------------------------
// Server process statistics from /proc.

/// Every process in the trees rooted at `roots`.
fn process_tree(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) =
                stat_fields(pid).and_then(|f| f.get(1).and_then(|s| s.parse::<u32>().ok()))
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        out.push(pid);
        if let Some(kids) = children.get(&pid) {
            todo.extend(kids);
        }
    }
    out
}

/// Fields of /proc/PID/stat after the command name: index 0 is `state`
/// (field 3), so utime (field 14) is index 11 and stime index 12.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Server CPU seconds (user, system), summed over the process trees.
fn server_cpu_split(roots: &[u32]) -> (f64, f64) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    process_tree(roots)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            let utime: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let stime: f64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            (utime / hz, stime / hz)
        })
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The kernel's slab memory in KiB (`Slab:` of /proc/meminfo): where a
/// socket's kernel state lives, outside any process's RSS. Machine-wide, so
/// other work moves it too.
fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("Slab:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Server resident memory in KiB (VmRSS), summed over the process trees.
fn server_rss_kib(roots: &[u32]) -> u64 {
    process_tree(roots)
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .sum()
}

// ---------------------------------------------------------------------------
// Connections.

fn ws_config() -> WebSocketConfig {
    // Small buffers: the generator holds up to ~20,000 connections.
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

/// Source address for connection number `index`.
fn source_ip(index: usize, src_ips: u8) -> Option<Ipv4Addr> {
    if src_ips == 0 {
        return None;
    }
    Some(Ipv4Addr::new(
        127,
        0,
        0,
        2 + (index % src_ips as usize) as u8,
    ))
}

/// A connection to the server: plain TCP (`ws://`) or TLS (`wss://`).
enum Socket {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Socket {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Socket {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The TLS client for `wss://` URLs: trusts the CA certificates in the PEM
/// file named by `LOADGEN_TLS_CA` (inherited by the probe process).
fn tls_connector() -> Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::pem::PemObject;
    static CONNECTOR: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();
    if let Some(connector) = CONNECTOR.get() {
        return Ok(connector.clone());
    }
    let ca = std::env::var("LOADGEN_TLS_CA").map_err(|_| "wss:// needs LOADGEN_TLS_CA=ca.pem")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(CONNECTOR
        .get_or_init(|| tokio_rustls::TlsConnector::from(Arc::new(config)))
        .clone())
}

async fn connect(url: &str, src: Option<Ipv4Addr>) -> Result<Ws> {
    let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        _ => return Err("only ws:// and wss:// URLs are supported".into()),
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    let addr: SocketAddr = host_port.parse()?;
    let mut last_error: BoxError = "no attempt".into();
    for attempt in 0..8 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
        }
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = src {
            socket.bind(SocketAddr::new(ip.into(), 0))?;
        }
        let stream = match socket.connect(addr).await {
            Ok(stream) => stream,
            Err(error) => {
                last_error = error.into();
                continue;
            }
        };
        stream.set_nodelay(true)?;
        let stream = match tls {
            false => Socket::Plain(stream),
            true => {
                let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
                match tls_connector()?.connect(name, stream).await {
                    Ok(stream) => Socket::Tls(Box::new(stream)),
                    Err(error) => {
                        last_error = error.into();
                        continue;
                    }
                }
            }
        };
        match tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())).await {
            Ok((ws, _)) => return Ok(ws),
            Err(error) => last_error = error.into(),
        }
    }
    Err(format!("connect {url}: {last_error}").into())
}

fn add_group(group: &str) -> Message {
    Message::text(serde_json::json!({"cmd": "add_group", "group_id": group}).to_string())
}

fn send_to_group(group: &str, message: &str) -> Message {
    Message::text(
        serde_json::json!({"cmd": "send_to_group", "group_id": group, "message": message})
            .to_string(),
    )
}

fn group_name(g: usize) -> String {
    format!("g{g}")
}

/// A data message: `D <send time ns> <sender> <seq> ` padded with `x` to
/// `size` bytes.
fn data_message(sender: usize, seq: u64, size: usize) -> String {
    let mut text = format!("D {:020} {sender:06} {seq:010} ", now_ns());
    while text.len() < size {
        text.push('x');
    }
    text
}

/// Shared counters of the bulk receivers.
#[derive(Default)]
struct Counters {
    /// Data messages received by bulk members.
    received: AtomicU64,
    /// Bulk members that have seen at least one sync message.
    synced: AtomicUsize,
    /// Connections closed (by the server or an error) before the end.
    closed: AtomicUsize,
    /// When `received` reaches this, wake the flood senders.
    wake_at: AtomicU64,
    /// Wakes flood senders waiting for their window to open.
    notify: Notify,
    /// Messages that were neither data nor sync (server errors), and close
    /// reasons: the first few, for the report.
    oddities: std::sync::Mutex<Vec<String>>,
    /// Count of such messages.
    odd_count: AtomicU64,
}

impl Counters {
    fn odd(&self, what: String) {
        self.odd_count.fetch_add(1, Ordering::Relaxed);
        let mut list = self.oddities.lock().unwrap();
        if list.len() < 5 {
            list.push(what);
        }
    }
}

async fn read_loop(mut stream: Stream, counters: Arc<Counters>, member: bool) {
    let mut synced = false;
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => match text.as_bytes().first() {
                Some(b'D') if member => {
                    let n = counters.received.fetch_add(1, Ordering::SeqCst) + 1;
                    if n >= counters.wake_at.load(Ordering::SeqCst) {
                        counters.wake_at.store(u64::MAX, Ordering::SeqCst);
                        counters.notify.notify_one();
                    }
                }
                Some(b'S') if member => {
                    if !synced {
                        synced = true;
                        counters.synced.fetch_add(1, Ordering::SeqCst);
                    }
                }
                _ => counters.odd(format!("unexpected message: {:.120}", text.as_str())),
            },
            Ok(Message::Close(frame)) => {
                counters.odd(format!("closed by server: {frame:?}"));
                break;
            }
            Ok(_) => {}
            Err(error) => {
                counters.odd(format!("read error: {error}"));
                break;
            }
        }
    }
    counters.closed.fetch_add(1, Ordering::SeqCst);
}

/// What a connection is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Joins its group and counts deliveries.
    Member,
    /// Joins its group, counts deliveries, and sends.
    MemberSender,
    /// Sends to its group without joining it.
    Sender,
    /// Joins a group nobody sends to; must receive nothing.
    Bystander,
}

struct ConnSpec {
    url: String,
    group: usize,
    role: Role,
    src: Option<Ipv4Addr>,
}

struct Conn {
    group: usize,
    role: Role,
    sink: Sink,
}

/// Opens the connections, joins groups, starts their readers.
async fn open_all(
    specs: Vec<ConnSpec>,
    counters: &Arc<Counters>,
    concurrency: usize,
) -> Result<Vec<Conn>> {
    let results: Vec<Result<Conn>> = futures_util::stream::iter(specs)
        .map(|spec| {
            let counters = counters.clone();
            async move {
                let ws = connect(&spec.url, spec.src).await?;
                let (mut sink, stream) = ws.split();
                if spec.role != Role::Sender {
                    sink.send(add_group(&group_name(spec.group))).await?;
                }
                let member = matches!(spec.role, Role::Member | Role::MemberSender);
                tokio::spawn(read_loop(stream, counters, member));
                Ok(Conn {
                    group: spec.group,
                    role: spec.role,
                    sink,
                })
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

// ---------------------------------------------------------------------------
// The probe process.

/// Spawned `loadgen probe`: its stdin takes `report N`, its stdout says
/// `joined`, `synced`, then the JSON report.
struct Probe {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    joined: Arc<AtomicBool>,
    synced: Arc<AtomicBool>,
    reports: mpsc::UnboundedReceiver<String>,
}

impl Probe {
    async fn start(conns: &[(String, usize)]) -> Result<Probe> {
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.arg("probe");
        for (url, group) in conns {
            command
                .arg("--conn")
                .arg(format!("{url},{}", group_name(*group)));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("probe stdin")?;
        let stdout = child.stdout.take().ok_or("probe stdout")?;
        let joined = Arc::new(AtomicBool::new(false));
        let synced = Arc::new(AtomicBool::new(false));
        let (tx, reports) = mpsc::unbounded_channel();
        {
            let joined = joined.clone();
            let synced = synced.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match line.as_str() {
                        "joined" => joined.store(true, Ordering::SeqCst),
                        "synced" => synced.store(true, Ordering::SeqCst),
                        _ => {
                            let _ = tx.send(line);
                        }
                    }
                }
            });
        }
        Ok(Probe {
            child,
            stdin,
            joined,
            synced,
            reports,
        })
    }

    async fn report(mut self, expected: u64) -> Result<ProbeReport> {
        self.stdin
            .write_all(format!("report {expected}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(30), self.reports.recv())
            .await?
            .ok_or("probe exited without a report")?;
        let _ = self.child.wait().await;
        Ok(serde_json::from_str(&line)?)
    }
}

#[derive(Serialize, serde::Deserialize, Default, Clone)]
struct ProbeReport {
    connections: usize,
    received: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    cpu_s: f64,
    errors: Vec<String>,
}

async fn probe(args: ProbeArgs) -> Result<u8> {
    let latencies: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let synced = Arc::new(AtomicUsize::new(0));
    let errors: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let n = args.conns.len();
    let mut sinks = Vec::new();
    for (i, conn) in args.conns.iter().enumerate() {
        let (url, group) = conn.split_once(',').ok_or("--conn URL,GROUP")?;
        let ws = connect(url, Some(Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8 + 10))).await?;
        let (mut sink, mut stream) = ws.split();
        sink.send(add_group(group)).await?;
        sinks.push(sink);
        let latencies = latencies.clone();
        let synced = synced.clone();
        let errors = errors.clone();
        tokio::spawn(async move {
            let mut seen_sync = false;
            while let Some(message) = stream.next().await {
                let now = now_ns();
                match message {
                    Ok(Message::Text(text)) => {
                        let b = text.as_bytes();
                        match b.first() {
                            Some(b'D') => {
                                let sent: u64 =
                                    text.get(2..22).and_then(|s| s.parse().ok()).unwrap_or(now);
                                latencies.lock().unwrap().push(now.saturating_sub(sent));
                            }
                            Some(b'S') if !seen_sync => {
                                seen_sync = true;
                                if synced.fetch_add(1, Ordering::SeqCst) + 1 == n {
                                    println!("synced");
                                }
                            }
                            Some(b'S') => {}
                            _ => errors
                                .lock()
                                .unwrap()
                                .push(format!("{:.120}", text.as_str())),
                        }
                    }
                    Ok(Message::Close(frame)) => {
                        errors.lock().unwrap().push(format!("closed: {frame:?}"));
                        break;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        errors.lock().unwrap().push(format!("error: {error}"));
                        break;
                    }
                }
            }
        });
    }
    println!("joined");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let expected: u64 = loop {
        match lines.next_line().await? {
            Some(line) => {
                if let Some(n) = line.strip_prefix("report ") {
                    break n.trim().parse()?;
                }
            }
            None => return Ok(0),
        }
    };
    // Wait for the stragglers, as long as they keep coming.
    let mut last = (0, Instant::now());
    loop {
        let got = latencies.lock().unwrap().len() as u64;
        if got >= expected {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    let report = ProbeReport {
        connections: n,
        received: all.len() as u64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: all.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
        cpu_s: self_cpu_s(),
        errors: errors.lock().unwrap().clone(),
    };
    println!("{}", serde_json::to_string(&report)?);
    drop(sinks);
    Ok(0)
}

// ---------------------------------------------------------------------------
// A run.

#[derive(Serialize, Default)]
struct Report {
    label: String,
    mode: Option<Mode>,
    urls: Vec<String>,
    groups: usize,
    members_per_group: usize,
    senders_per_group: usize,
    senders_are_members: bool,
    rate_per_sender: f64,
    size: usize,
    connections: usize,
    messages_sent: u64,
    expected_deliveries: u64,
    received_deliveries: u64,
    lost: i64,
    wall_s: f64,
    deliveries_per_s: f64,
    server_cpu_s: f64,
    server_cpu_us_per_delivery: f64,
    server_cpu_util: f64,
    /// Share of the server's CPU spent in the kernel (stime).
    server_sys_fraction: f64,
    server_rss_kib: u64,
    generator_cpu_s: f64,
    generator_cpu_util: f64,
    probe: Option<ProbeReport>,
    idle: Option<IdleReport>,
    errors: Vec<String>,
    error_count: u64,
}

#[derive(Serialize, Default)]
struct IdleReport {
    connections: usize,
    rss_before_kib: u64,
    rss_after_kib: u64,
    kib_per_connection: f64,
    /// RSS once every member has received one message (the barrier's sync
    /// message) and the server had time to go idle again: what a
    /// connection keeps after its first delivery.
    rss_after_traffic_kib: u64,
    kib_per_connection_after_traffic: f64,
    /// Kernel slab memory before connecting and once connected (both
    /// ends of each loopback connection are sockets of this machine).
    slab_before_kib: u64,
    slab_after_kib: u64,
    joined_verified: usize,
    hold_target: usize,
    held: usize,
    rss_at_hold_kib: u64,
}

/// Sends sync messages to every group until every bulk member (and the
/// probe process) has seen one: proof that all joins took effect.
async fn barrier(
    conns: &mut [Conn],
    groups: usize,
    counters: &Counters,
    target: usize,
    probe: Option<&Probe>,
    max_wait: Duration,
) -> bool {
    let start = Instant::now();
    let mut round = 0u64;
    loop {
        round += 1;
        // The first sender of each group, or its first member.
        let mut done = vec![false; groups];
        for conn in conns.iter_mut() {
            if conn.role == Role::Bystander || done[conn.group] {
                continue;
            }
            done[conn.group] = true;
            let _ = conn
                .sink
                .send(send_to_group(&group_name(conn.group), &format!("S{round}")))
                .await;
        }
        let round_start = Instant::now();
        while round_start.elapsed() < Duration::from_millis(500) {
            let probe_ok = probe.is_none_or(|p| p.synced.load(Ordering::SeqCst));
            if counters.synced.load(Ordering::SeqCst) >= target && probe_ok {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if start.elapsed() > max_wait {
            return false;
        }
    }
}

async fn run(args: RunArgs) -> Result<u8> {
    let counters = Arc::new(Counters {
        wake_at: AtomicU64::new(u64::MAX),
        ..Counters::default()
    });
    let groups = args.groups.max(1);
    // Plan: for each group, dedicated senders first (so that the barrier's
    // sync comes from a sender), then members.
    let mut specs = Vec::new();
    let mut index = 0usize;
    let mut member_urls = args.url.iter().cycle();
    for g in 0..groups {
        if args.mode != Mode::Idle && !args.senders_are_members {
            for _ in 0..args.senders {
                specs.push(ConnSpec {
                    url: args.url[0].clone(),
                    group: g,
                    role: Role::Sender,
                    src: source_ip(index, args.src_ips),
                });
                index += 1;
            }
        }
        for m in 0..args.members {
            let role = if args.mode != Mode::Idle && args.senders_are_members && m < args.senders {
                Role::MemberSender
            } else {
                Role::Member
            };
            let url = if role == Role::MemberSender {
                args.url[0].clone()
            } else {
                member_urls.next().unwrap().clone()
            };
            specs.push(ConnSpec {
                url,
                group: g,
                role,
                src: source_ip(index, args.src_ips),
            });
            index += 1;
        }
    }
    // Bystanders' groups come after the measured ones, so no sender and no
    // sync message ever reaches them.
    for i in 0..args.bystanders {
        specs.push(ConnSpec {
            url: member_urls.next().unwrap().clone(),
            group: groups + i / 10,
            role: Role::Bystander,
            src: source_ip(index, args.src_ips),
        });
        index += 1;
    }
    let bulk_members = groups * args.members;
    let total_conns = specs.len();

    let rss_before = server_rss_kib(&args.server_pid);
    let slab_before = slab_kib();
    let connect_start = Instant::now();
    // Members ordered so each group's sender/first member precedes the
    // rest: `open_all` keeps no order, so sort afterwards.
    let mut conns = open_all(specs, &counters, args.connect_concurrency).await?;
    conns.sort_by_key(|c| {
        (
            c.group,
            c.role != Role::Sender,
            c.role != Role::MemberSender,
        )
    });
    eprintln!(
        "loadgen: {} connections open in {:.1}s",
        conns.len(),
        connect_start.elapsed().as_secs_f64()
    );

    let mut report = Report {
        label: args.label.clone(),
        mode: Some(args.mode),
        urls: args.url.clone(),
        groups,
        members_per_group: args.members,
        senders_per_group: args.senders,
        senders_are_members: args.senders_are_members,
        rate_per_sender: args.rate,
        size: args.size,
        connections: total_conns,
        ..Report::default()
    };

    if args.mode == Mode::Idle {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rss_after = server_rss_kib(&args.server_pid);
        let slab_after = slab_kib();
        let joined_ok = barrier(
            &mut conns,
            groups,
            &counters,
            bulk_members,
            None,
            Duration::from_secs(30),
        )
        .await;
        let mut idle = IdleReport {
            connections: total_conns,
            rss_before_kib: rss_before,
            rss_after_kib: rss_after,
            kib_per_connection: rss_after.saturating_sub(rss_before) as f64
                / total_conns.max(1) as f64,
            joined_verified: counters.synced.load(Ordering::SeqCst),
            hold_target: args.hold,
            slab_before_kib: slab_before,
            slab_after_kib: slab_after,
            ..IdleReport::default()
        };
        // Every member has now received one message: let the writers drain
        // and the server go idle, then measure again.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        idle.rss_after_traffic_kib = server_rss_kib(&args.server_pid);
        idle.kib_per_connection_after_traffic =
            idle.rss_after_traffic_kib.saturating_sub(rss_before) as f64
                / total_conns.max(1) as f64;
        if !joined_ok {
            eprintln!(
                "loadgen: only {} of {} joins verified",
                idle.joined_verified, bulk_members
            );
        }
        if args.hold > total_conns {
            let extra: Vec<ConnSpec> = (total_conns..args.hold)
                .map(|i| ConnSpec {
                    url: args.url[i % args.url.len()].clone(),
                    group: i % groups,
                    role: Role::Member,
                    src: source_ip(i, args.src_ips),
                })
                .collect();
            match open_all(extra, &counters, args.connect_concurrency).await {
                Ok(more) => conns.extend(more),
                Err(error) => counters.odd(format!("hold: {error}")),
            }
            conns.sort_by_key(|c| c.group);
            tokio::time::sleep(Duration::from_millis(500)).await;
            barrier(
                &mut conns,
                groups,
                &counters,
                args.hold,
                None,
                Duration::from_secs(30),
            )
            .await;
            idle.held = counters
                .synced
                .load(Ordering::SeqCst)
                .saturating_sub(counters.closed.load(Ordering::SeqCst));
            idle.rss_at_hold_kib = server_rss_kib(&args.server_pid);
        }
        report.connections = conns.len();
        report.server_rss_kib = server_rss_kib(&args.server_pid);
        let failed = !joined_ok || (args.hold > 0 && idle.held < args.hold);
        report.idle = Some(idle);
        report.errors = counters.oddities.lock().unwrap().clone();
        report.error_count = counters.odd_count.load(Ordering::SeqCst);
        println!("{}", serde_json::to_string(&report)?);
        return Ok(u8::from(failed));
    }

    // Probes: spread over the groups and the URLs.
    let probe_conns: Vec<(String, usize)> = (0..args.probes)
        .map(|i| {
            (
                args.url[i % args.url.len()].clone(),
                i * groups / args.probes.max(1),
            )
        })
        .collect();
    let mut probes_in_group = vec![0u64; groups];
    for (_, g) in &probe_conns {
        probes_in_group[*g] += 1;
    }
    let probe = if probe_conns.is_empty() {
        None
    } else {
        let probe = Probe::start(&probe_conns).await?;
        let wait = Instant::now();
        while !probe.joined.load(Ordering::SeqCst) {
            if wait.elapsed() > Duration::from_secs(30) {
                return Err("probe process did not connect".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some(probe)
    };

    if !barrier(
        &mut conns,
        groups,
        &counters,
        bulk_members,
        probe.as_ref(),
        Duration::from_secs(30),
    )
    .await
    {
        return Err(format!(
            "joins not confirmed: {} of {} members synced, probe synced: {}",
            counters.synced.load(Ordering::SeqCst),
            bulk_members,
            probe
                .as_ref()
                .is_some_and(|p| p.synced.load(Ordering::SeqCst))
        )
        .into());
    }
    // Let the last sync messages drain so they do not count.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Senders.
    let sent_total = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut others = Vec::new();
    for conn in conns {
        if matches!(conn.role, Role::Member | Role::Bystander) {
            others.push(conn.sink);
        } else {
            senders.push((conn.group, conn.sink));
        }
    }
    let n_senders = senders.len();
    let (user0, sys0) = server_cpu_split(&args.server_pid);
    let cpu0 = user0 + sys0;
    let gen0 = self_cpu_s();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for (i, (group, mut sink)) in senders.into_iter().enumerate() {
        let counters = counters.clone();
        let sent_total = sent_total.clone();
        let args = args.clone();
        let name = group_name(group);
        let members = args.members as u64;
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            match args.mode {
                Mode::Flood => {
                    while Instant::now() < deadline {
                        loop {
                            let sent = sent_total.load(Ordering::SeqCst);
                            let need = sent.saturating_sub(args.window) * members;
                            if counters.received.load(Ordering::SeqCst) >= need {
                                break;
                            }
                            counters.wake_at.store(need, Ordering::SeqCst);
                            if counters.received.load(Ordering::SeqCst) >= need {
                                break;
                            }
                            let _ = tokio::time::timeout(
                                Duration::from_millis(50),
                                counters.notify.notified(),
                            )
                            .await;
                            if Instant::now() >= deadline {
                                return (group, seq, sink);
                            }
                        }
                        if sink
                            .send(send_to_group(&name, &data_message(i, seq, args.size)))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        seq += 1;
                        sent_total.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Mode::Paced => {
                    let count = (args.duration * args.rate).round() as u64;
                    let period = Duration::from_secs_f64(1.0 / args.rate);
                    // Stagger the senders over one period.
                    let offset = period.mul_f64(i as f64 / n_senders as f64);
                    let mut ticks = tokio::time::interval_at((start + offset).into(), period);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    while seq < count {
                        ticks.tick().await;
                        if sink
                            .send(send_to_group(&name, &data_message(i, seq, args.size)))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        seq += 1;
                        sent_total.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Mode::Idle => unreachable!(),
            }
            (group, seq, sink)
        }));
    }
    let mut sent_per_group = vec![0u64; groups];
    let mut sinks = Vec::new();
    for task in tasks {
        let (group, sent, sink) = task.await?;
        sent_per_group[group] += sent;
        sinks.push(sink);
    }
    let expected_bulk: u64 = sent_per_group.iter().map(|s| s * args.members as u64).sum();
    let expected_probe: u64 = sent_per_group
        .iter()
        .zip(&probes_in_group)
        .map(|(s, p)| s * p)
        .sum();

    // Drain.
    let mut last = (0u64, Instant::now());
    let mut end = Instant::now();
    loop {
        let got = counters.received.load(Ordering::SeqCst);
        if got >= expected_bulk {
            end = Instant::now();
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
            end = last.1;
        } else if last.1.elapsed().as_secs_f64() > args.drain_timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (user1, sys1) = server_cpu_split(&args.server_pid);
    let cpu1 = user1 + sys1;
    let gen1 = self_cpu_s();
    let rss = server_rss_kib(&args.server_pid);
    let probe_report = match probe {
        Some(probe) => Some(probe.report(expected_probe).await?),
        None => None,
    };

    let received_bulk = counters.received.load(Ordering::SeqCst);
    let received_probe = probe_report.as_ref().map(|p| p.received).unwrap_or(0);
    let received = received_bulk + received_probe;
    let expected = expected_bulk + expected_probe;
    let wall = (end - start).as_secs_f64();
    report.messages_sent = sent_per_group.iter().sum();
    report.expected_deliveries = expected;
    report.received_deliveries = received;
    report.lost = expected as i64 - received as i64;
    report.wall_s = wall;
    report.deliveries_per_s = received as f64 / wall;
    report.server_cpu_s = cpu1 - cpu0;
    report.server_cpu_us_per_delivery = (cpu1 - cpu0) * 1e6 / received.max(1) as f64;
    report.server_cpu_util = (cpu1 - cpu0) / wall;
    report.server_sys_fraction = if cpu1 > cpu0 {
        (sys1 - sys0) / (cpu1 - cpu0)
    } else {
        0.0
    };
    report.server_rss_kib = rss;
    report.generator_cpu_s = gen1 - gen0;
    report.generator_cpu_util = (gen1 - gen0) / wall;
    report.errors = counters.oddities.lock().unwrap().clone();
    report.error_count = counters.odd_count.load(Ordering::SeqCst);
    if let Some(p) = &probe_report {
        report.errors.extend(p.errors.iter().take(3).cloned());
        report.error_count += p.errors.len() as u64;
    }
    report.probe = probe_report;
    println!("{}", serde_json::to_string(&report)?);
    eprintln!(
        "loadgen: {} sent={} delivered={}/{} lost={} {:.0} deliveries/s server {:.3} us/delivery ({:.2} cores) gen {:.2} cores p50/p99/p99.9 {:?}",
        args.label,
        report.messages_sent,
        received,
        expected,
        report.lost,
        report.deliveries_per_s,
        report.server_cpu_us_per_delivery,
        report.server_cpu_util,
        report.generator_cpu_util,
        report
            .probe
            .as_ref()
            .map(|p| (p.p50_us, p.p99_us, p.p999_us)),
    );
    drop(sinks);
    drop(others);
    Ok(u8::from(report.lost != 0))
}
