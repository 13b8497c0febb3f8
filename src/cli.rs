//! The `groupcast` command line: `serve` runs a node, `channel` runs a
//! channel server alone. The Python package's `python -m groupcast` calls
//! [`run`] too, so both share one CLI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::channel::{BackgroundChannelServer, ChannelHistoryConfig, ChannelServerConfig};
use crate::config::ChannelProtocol;
use crate::config::{Config, DEFAULT_CHANNEL_LISTEN, DEFAULT_LISTEN, Limits, SlowConsumerPolicy};
use crate::logging::LogFormat;
use crate::server::Server;

/// Group broadcasting for websocket clients.
#[derive(Parser, Debug)]
#[command(name = "groupcast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
    /// How log lines are written to standard error: text for people, json
    /// for machines. GROUPCAST_LOG (else RUST_LOG) sets the filter
    /// [default: info].
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormatArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Run a websocket node (by default with an embedded channel server, as
    /// in the seed: websocket on 0.0.0.0:1234, channel on 127.0.0.1:2206).
    Serve(Box<ServeArgs>),
    /// Run a channel server alone, for nodes started with --channel.
    Channel(ChannelArgs),
}

#[derive(clap::Args, Debug)]
// --channel-ca is for a TLS link: to a remote channel server
// (--channel-tls) or to the embedded one (--channel-tls-cert).
#[command(group(
    clap::ArgGroup::new("channel_tls_on")
        .args(["channel_tls", "channel_tls_cert"])
        .multiple(true)
))]
struct ServeArgs {
    /// Websocket listen address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Where the embedded channel server listens [default: 127.0.0.1:2206].
    /// It has no authentication: keep it on loopback unless the network is
    /// trusted.
    #[arg(long, value_name = "ADDR", conflicts_with = "channel")]
    channel_listen: Option<String>,
    /// Join the channel server at HOST:PORT instead of embedding one.
    #[arg(long, value_name = "HOST:PORT")]
    channel: Option<String>,
    /// A single node with no channel server at all: groups reach this
    /// node's clients only.
    #[arg(long, conflicts_with_all = ["channel", "channel_listen", "bus"])]
    no_channel: bool,
    /// Use Redis as the bus instead of a channel server (none is embedded):
    /// redis://HOST:PORT, or redis+cluster://HOST:PORT,HOST:PORT,... for a
    /// Redis Cluster; ?prefix=P names the groups' channels [default:
    /// groupcast:].
    #[arg(long, value_name = "URL", conflicts_with_all = ["channel", "channel_listen"])]
    bus: Option<String>,
    /// Shared secret of the channel server (required when the embedded one
    /// listens beyond loopback).
    #[arg(
        long,
        value_name = "SECRET",
        env = "GROUPCAST_CHANNEL_SECRET",
        hide_env_values = true
    )]
    channel_secret: Option<String>,
    /// Serve Prometheus metrics on ADDR (GET /metrics).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// No demo page: a plain HTTP request on the websocket port gets 426
    /// (by default GET / gets a page to try groups from a browser, any
    /// other path 404).
    #[arg(long)]
    no_demo: bool,
    /// Serve wss:// (and the demo page over https) with this PEM
    /// certificate chain, leaf first. SIGHUP reads it (and the key) again.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The embedded channel server speaks TLS with this certificate chain
    /// (needs --channel-tls-key and --channel-ca).
    #[arg(long, value_name = "PEM", requires_all = ["channel_tls_key", "channel_ca"])]
    channel_tls_cert: Option<PathBuf>,
    /// The private key of --channel-tls-cert.
    #[arg(long, value_name = "PEM", requires = "channel_tls_cert")]
    channel_tls_key: Option<PathBuf>,
    /// Reach the channel server over TLS (the secret and the traffic never
    /// cross in clear); needs --channel-ca.
    #[arg(long, requires = "channel_ca")]
    channel_tls: bool,
    /// The CA certificate(s) (PEM) the channel server's certificate must
    /// chain to (with --channel-tls or --channel-tls-cert).
    #[arg(long, value_name = "PEM", requires = "channel_tls_on")]
    channel_ca: Option<PathBuf>,
    /// The name the channel server's certificate must carry, when it is not
    /// the host in --channel (e.g. --channel is an IP address).
    #[arg(long, value_name = "NAME", requires = "channel_ca")]
    channel_server_name: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// The protocol spoken to the channel server: groupcast (JSON, a
    /// channel per group) or workerman (the seed's PHP serialize() bodies
    /// and send_to_group events, to join a cluster of Workerman PHP workers;
    /// see docs/workerman.md).
    #[arg(long, value_name = "PROTOCOL", default_value = "groupcast", value_parser = parse_channel_protocol, conflicts_with_all = ["bus", "no_channel"])]
    channel_protocol: ChannelProtocol,
    /// Seconds another node's presence is kept without news from it (a
    /// node killed without a goodbye leaves presence within this); at least 1.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    presence_lease: f64,
    /// No presence: no replication of who is online, the client presence
    /// command refused.
    #[arg(long)]
    no_presence: bool,
    /// Bind each connection to the uid in this query-string parameter
    /// (`ws://host:1234/?uid=bob`). For demos and tests only: any client
    /// can claim any uid; a real host binds uids after authenticating.
    #[arg(long, value_name = "NAME")]
    uid_query_param: Option<String>,
}

fn parse_channel_protocol(value: &str) -> Result<ChannelProtocol, String> {
    value.parse()
}

/// Client limits and policies (`Limits`), defaults in brackets.
#[derive(clap::Args, Debug)]
struct LimitArgs {
    /// Largest client message, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_message_size)]
    max_message_size: usize,
    /// Most bytes queued for one client before the slow-consumer policy applies.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().outbound_queue_bytes)]
    outbound_queue_bytes: usize,
    /// What to do with a client whose queue is full: close it (1008) or drop the message.
    #[arg(long, value_enum, default_value = "close")]
    slow_consumer: SlowConsumerArg,
    /// Most groups one connection may be in.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_groups_per_connection)]
    max_groups_per_connection: usize,
    /// Longest group id, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_group_id_len)]
    max_group_id_len: usize,
    /// Most connections open at once (more are refused with HTTP 503) [default: no limit].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Seconds between server pings.
    #[arg(long, value_name = "SECONDS", default_value_t = 25.0)]
    ping_interval: f64,
    /// Seconds of silence (no frame, no pong) after which a client is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    idle_timeout: f64,
    /// Seconds a client has to complete the websocket handshake.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds a stopping server lets clients take to receive what is queued.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    drain_timeout: f64,
    /// Browser origin allowed to connect (repeat for several) [default: any].
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Group history: messages kept per group, so that a client rejoining
    /// with add_group's "since" gets what it missed [default: no history].
    #[arg(long, value_name = "N")]
    history_size: Option<usize>,
    /// Seconds after a group's last message that its history is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    history_ttl: f64,
    /// Most bytes of history kept, all groups together (the least recently
    /// written groups lose their oldest messages first).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().history_max_bytes)]
    history_max_bytes: usize,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SlowConsumerArg {
    Close,
    Drop,
}

impl LimitArgs {
    fn into_limits(self) -> crate::Result<Limits> {
        let seconds = |name: &str, value: f64| {
            Duration::try_from_secs_f64(value).map_err(|_| {
                crate::Error::Config(format!("{name} must be a number of seconds, not {value}"))
            })
        };
        Ok(Limits {
            max_message_size: self.max_message_size,
            outbound_queue_bytes: self.outbound_queue_bytes,
            slow_consumer: match self.slow_consumer {
                SlowConsumerArg::Close => SlowConsumerPolicy::Close,
                SlowConsumerArg::Drop => SlowConsumerPolicy::Drop,
            },
            max_groups_per_connection: self.max_groups_per_connection,
            max_group_id_len: self.max_group_id_len,
            max_connections: self.max_connections,
            ping_interval: seconds("ping_interval", self.ping_interval)?,
            idle_timeout: seconds("idle_timeout", self.idle_timeout)?,
            handshake_timeout: seconds("handshake_timeout", self.handshake_timeout)?,
            drain_timeout: seconds("drain_timeout", self.drain_timeout)?,
            allowed_origins: (!self.allowed_origins.is_empty()).then_some(self.allowed_origins),
            history_size: self.history_size,
            history_ttl: seconds("history_ttl", self.history_ttl)?,
            history_max_bytes: self.history_max_bytes,
            ..Limits::default()
        })
    }
}

#[derive(clap::Args, Debug)]
struct ChannelArgs {
    /// Listen address (beyond loopback a secret is required).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_CHANNEL_LISTEN)]
    listen: String,
    /// Shared secret clients must send first.
    #[arg(
        long,
        value_name = "SECRET",
        env = "GROUPCAST_CHANNEL_SECRET",
        hide_env_values = true
    )]
    secret: Option<String>,
    /// Speak TLS with this PEM certificate chain, leaf first. SIGHUP reads
    /// it (and the key) again.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Group history for the cluster: messages kept per group, numbered
    /// here so that offsets agree on every node [default: no history].
    /// Nodes using it are started with --history-size too.
    #[arg(long, value_name = "N")]
    history_size: Option<usize>,
    /// Seconds after a group's last message that its history is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    history_ttl: f64,
    /// Most bytes of history kept, all groups together.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().history_max_bytes)]
    history_max_bytes: usize,
}

/// Parses `args` (program name first) and runs the command until SIGINT or
/// SIGTERM. Prints the bound addresses on one line once listening.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version land here too, with exit code 0.
            let _ = error.print();
            return ExitCode::from(error.exit_code() as u8);
        }
    };
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    crate::logging::init(Some("info"), format);
    let result = match cli.command {
        CliCommand::Serve(args) => serve(*args),
        CliCommand::Channel(args) => channel(args).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("groupcast: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let elsewhere = args.channel.is_some() || args.bus.is_some() || args.no_channel;
    let channel_listen = match (elsewhere, args.channel_listen) {
        (true, _) => None,
        (false, given) => Some(given.unwrap_or_else(|| DEFAULT_CHANNEL_LISTEN.to_owned())),
    };
    // Every field is set today; the update stays for fields added later.
    #[allow(clippy::needless_update)]
    let config = Config {
        listen: args.listen,
        workers: args.workers,
        channel_listen: channel_listen.clone(),
        channel: args.channel.clone(),
        bus: args.bus.clone(),
        channel_secret: args.channel_secret,
        metrics_listen: args.metrics,
        demo_page: !args.no_demo,
        limits: args.limits.into_limits()?,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        channel_tls_cert: args.channel_tls_cert,
        channel_tls_key: args.channel_tls_key,
        channel_ca: args.channel_ca,
        channel_server_name: args.channel_server_name,
        channel_protocol: args.channel_protocol,
        presence: !args.no_presence,
        presence_lease: Duration::try_from_secs_f64(args.presence_lease).map_err(|_| {
            crate::Error::Config(format!(
                "presence_lease must be a number of seconds, not {}",
                args.presence_lease
            ))
        })?,
        host: crate::HostConfig {
            connect_events: args.uid_query_param.is_some(),
            ..crate::HostConfig::default()
        },
        ..Config::default()
    };
    // --channel-tls is checked by clap (it needs --channel-ca, and the CA
    // needs it or an embedded TLS server); the CA is what the core needs.
    let _ = args.channel_tls;
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(crate::Error::Bind { addr, source }) if Some(&addr) == channel_listen.as_ref() => {
            return Err(channel_port_taken(&addr, &source).into());
        }
        Err(error) => return Err(error.into()),
    };
    let addresses = server.addresses();
    let channel = match (addresses.channel, &args.channel) {
        (Some(embedded), _) => format!("channel={embedded}"),
        (None, Some(remote)) => format!("channel-remote={remote}"),
        // Not the URL: it may hold a password.
        (None, None) if args.bus.is_some() => "bus=redis".to_owned(),
        (None, None) => String::new(),
    };
    let channel = match addresses.metrics {
        Some(metrics) => format!("{channel} metrics={metrics}"),
        None => channel,
    };
    if let Some(param) = args.uid_query_param {
        bind_uids_from_query(server.handle().clone(), param);
    }
    let mut signals = server.block_on(async { StopSignals::register() })??;
    println!(
        "groupcast listening websocket={} {channel}",
        addresses.websocket
    );
    while let Wanted::Reload = server.block_on(signals.recv())? {
        // A failed reload keeps the certificate in use; say why.
        match server.reload_tls() {
            Ok(()) => {}
            Err(error) => tracing::error!(%error, "SIGHUP: TLS not reloaded"),
        }
    }
    server.stop();
    Ok(())
}

/// Why the embedded channel server cannot listen, and the flags that do
/// without that port (the usual cause: another node already runs there).
fn channel_port_taken(addr: &str, source: &std::io::Error) -> String {
    let mut message = format!("cannot listen on {addr} (the embedded channel server): {source}");
    if source.kind() == std::io::ErrorKind::AddrInUse {
        message.push_str(
            "; another groupcast node may be running: pass --channel-listen \
             127.0.0.1:0 (or another port), --channel HOST:PORT to join that \
             node's channel server, or --no-channel",
        );
    }
    message
}

fn channel(args: ChannelArgs) -> crate::Result<()> {
    // The node's validator judges the history settings, so they mean the
    // same here.
    let limits = Limits {
        history_size: args.history_size,
        history_ttl: Duration::try_from_secs_f64(args.history_ttl).map_err(|_| {
            crate::Error::Config(format!(
                "history_ttl must be a number of seconds, not {}",
                args.history_ttl
            ))
        })?,
        history_max_bytes: args.history_max_bytes,
        ..Limits::default()
    };
    Config {
        limits: limits.clone(),
        ..Config::local("127.0.0.1:0")
    }
    .validate()?;
    let config = ChannelServerConfig {
        secret: args.secret,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        history: limits.history_size.map(|size| ChannelHistoryConfig {
            size,
            ttl: limits.history_ttl,
            max_bytes: limits.history_max_bytes,
        }),
        ..ChannelServerConfig::default()
    };
    let server = BackgroundChannelServer::start(&args.listen, config)?;
    let mut signals = server.block_on(async { StopSignals::register() })??;
    println!("groupcast listening channel={}", server.local_addr());
    while let Wanted::Reload = server.block_on(signals.recv())? {
        if let Err(error) = server.reload_tls() {
            tracing::error!(%error, "SIGHUP: TLS not reloaded");
        }
    }
    server.stop();
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM, and SIGHUP (reload the TLS certificate),
/// registered before the "listening" line is printed so that a signal sent
/// right after it is never missed.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

/// What a signal asks for.
enum Wanted {
    Stop,
    Reload,
}

impl StopSignals {
    /// Registers the handlers; must run inside the runtime that will wait.
    fn register() -> crate::Result<Self> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).map_err(crate::Error::Runtime)?,
            terminate: signal(SignalKind::terminate()).map_err(crate::Error::Runtime)?,
            hangup: signal(SignalKind::hangup()).map_err(crate::Error::Runtime)?,
        })
    }

    /// Resolves on the first of them.
    async fn recv(&mut self) -> Wanted {
        tokio::select! {
            _ = self.interrupt.recv() => Wanted::Stop,
            _ = self.terminate.recv() => Wanted::Stop,
            _ = self.hangup.recv() => Wanted::Reload,
        }
    }
}

/// `--uid-query-param`: a host thread that binds each new connection to
/// the uid its query string names, until the server stops.
fn bind_uids_from_query(handle: crate::NodeHandle, param: String) {
    let Some(events) = handle.events().cloned() else {
        return;
    };
    std::thread::spawn(move || {
        while !events.is_finished() {
            for event in events.poll(Some(Duration::from_millis(200)), 64) {
                let crate::HostEvent::Connect { conn, query, .. } = event else {
                    continue;
                };
                let uid = query
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| *name == param)
                    .map(|(_, value)| value.to_owned());
                if let Some(uid) = uid
                    && let Err(error) = handle.bind_uid(conn, &uid)
                {
                    tracing::warn!(conn, %error, "cannot bind the uid from the query string");
                }
            }
        }
    });
}
