//! What a node is told at start: where to listen, how to reach other nodes,
//! and the limits it enforces on clients.

use std::path::PathBuf;
use std::time::Duration;

mod bus_url;
mod channel_protocol;

pub use bus_url::DEFAULT_PREFIX as DEFAULT_REDIS_PREFIX;
pub(crate) use bus_url::{Deployment, RedisTarget};
pub use channel_protocol::ChannelProtocol;

/// A node's configuration. `Config::default()` is the seed's setup: websocket
/// on `0.0.0.0:1234` and an embedded channel server on `127.0.0.1:2206`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Websocket listen address (`host:port`; port 0 asks the OS).
    pub listen: String,
    /// Runtime worker threads when groupcast owns the runtime (the seed's
    /// `count`). `None`: one per CPU.
    pub workers: Option<usize>,
    /// Embed a channel server listening here, and use it as this node's bus.
    /// It has no authentication, so keep it on loopback unless the network is
    /// trusted.
    pub channel_listen: Option<String>,
    /// Join the channel server at this `host:port` as this node's bus instead
    /// of embedding one. Exclusive with `channel_listen`.
    pub channel: Option<String>,
    /// Use Redis as this node's bus instead of a channel server:
    /// `redis://host:port` or, on a Redis Cluster (sharded pub/sub, Redis 7
    /// or later), `redis+cluster://host:port,host:port,...`; `?prefix=P`
    /// names the groups' channels `P<group id>` (default `groupcast:`; on a
    /// cluster with `history_size`, `P{<group id>}`, the hash slot of the
    /// group's history keys, and `P` must not hold `{`).
    /// Exclusive with `channel` and `channel_listen`.
    pub bus: Option<String>,
    /// Shared secret of the channel server: required from clients by the
    /// embedded one, sent by this node when it joins one. Required for an
    /// embedded channel server that listens beyond loopback.
    pub channel_secret: Option<String>,
    /// Serve Prometheus metrics over HTTP on this address (`GET /metrics`).
    pub metrics_listen: Option<String>,
    /// Answer a plain `GET /` on the websocket port with a demo page (join a
    /// group, send to it, see what arrives), and any other plain HTTP
    /// request with 404. Off (every plain request gets 426) unless asked:
    /// an embedding host owns what its port shows; `groupcast serve` turns
    /// it on (`--no-demo` keeps it off).
    pub demo_page: bool,
    /// Client limits.
    pub limits: Limits,
    /// What the host takes part in (nothing by default).
    pub host: HostConfig,
    /// Serve `wss://` (and the demo page over https) with this PEM
    /// certificate chain, leaf first. Needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub tls_key: Option<PathBuf>,
    /// The embedded channel server speaks TLS with this certificate chain
    /// (PEM). Needs `channel_tls_key`; this node's own link to it then
    /// checks it against `channel_ca`.
    pub channel_tls_cert: Option<PathBuf>,
    /// The private key of `channel_tls_cert`.
    pub channel_tls_key: Option<PathBuf>,
    /// Reach the channel server over TLS, trusting the CA certificates in
    /// this PEM file (the server's certificate must chain to one of them
    /// and name the server).
    pub channel_ca: Option<PathBuf>,
    /// The name the channel server's certificate is checked against, when
    /// it is not the host of `channel` (e.g. `channel` is an IP address and
    /// the certificate names a host). Needs `channel_ca`.
    pub channel_server_name: Option<String>,
    /// The protocol this node speaks to its channel server: `Groupcast`
    /// (default) or `Workerman`, to join a cluster of the seed's PHP
    /// workers (PHP `serialize()` bodies, every group message on
    /// `send_to_group`; see docs/workerman.md). Needs a channel server
    /// (`channel` or `channel_listen`).
    pub channel_protocol: ChannelProtocol,
    /// Keep the cluster's presence (who is online, who is in each group)
    /// and replicate this node's share over the bus; on by default. Off,
    /// `presence`, `is_uid_online` and `cluster_stats` fail and the client
    /// `presence` command is refused (uids and `send_to_uid` still work).
    pub presence: bool,
    /// How long another node's presence share is kept without news from
    /// it (each node refreshes its own every third of this): a node that
    /// dies without a word leaves presence within this delay. At least one
    /// second.
    pub presence_lease: Duration,
}

/// What one client may ask of a node.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest websocket message accepted, in bytes; a larger one closes the
    /// connection with 1009.
    pub max_message_size: usize,
    /// Longest group id, in bytes.
    pub max_group_id_len: usize,
    /// Most groups one connection may be in at once.
    pub max_groups_per_connection: usize,
    /// Most bytes queued for one connection before it is closed as a slow
    /// consumer (1008).
    pub outbound_queue_bytes: usize,
    /// Time a client has to complete the websocket handshake.
    pub handshake_timeout: Duration,
    /// Largest channel protocol frame, header included.
    pub max_channel_frame: usize,
    /// What happens when a client's outbound queue is full.
    pub slow_consumer: SlowConsumerPolicy,
    /// How often the server pings each client.
    pub ping_interval: Duration,
    /// A client that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once; more are refused at the handshake
    /// (HTTP 503). `None`: no limit but the OS's.
    pub max_connections: Option<usize>,
    /// Browser origins allowed to connect (exact `Origin` header values, e.g.
    /// `https://example.com`). `None`: any. Requests without an `Origin`
    /// header (not from a browser) are not affected.
    pub allowed_origins: Option<Vec<String>>,
    /// On stop, how long connections may take to send what is queued before
    /// they are closed anyway.
    pub drain_timeout: Duration,
    /// Kernel send buffer of each client socket (`SO_SNDBUF`), in bytes.
    /// `None`: the OS's autotuning, which may hold megabytes for a client
    /// that does not read before the outbound queue even starts to fill.
    pub send_buffer_size: Option<usize>,
    /// Group history: messages kept per group for members that rejoin with
    /// `since` (`add_group`'s `positions` and `since` options). `None`: no
    /// history (the default; positions are then not offered).
    pub history_size: Option<usize>,
    /// A group with no message for this long drops its history (and its
    /// next message starts a new epoch).
    pub history_ttl: Duration,
    /// Most bytes of history kept on the node, all groups together; over
    /// it, the least recently written groups lose their oldest messages
    /// (counted in `history_evictions`).
    pub history_max_bytes: usize,
}

/// What to do with a client whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Close it with code 1008 (what it had queued is dropped).
    #[default]
    Close,
    /// Keep it, and drop the message that does not fit.
    Drop,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 1 << 20,
            max_group_id_len: 256,
            max_groups_per_connection: 1024,
            outbound_queue_bytes: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            // A 1 MiB message escaped as JSON inside an envelope can grow
            // several times over; leave room for that.
            max_channel_frame: 8 << 20,
            slow_consumer: SlowConsumerPolicy::Close,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
            allowed_origins: None,
            drain_timeout: Duration::from_secs(5),
            send_buffer_size: None,
            history_size: None,
            history_ttl: Duration::from_secs(300),
            history_max_bytes: 64 << 20,
        }
    }
}

/// Which events the host wants, and how messages are routed.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Handle `add_group` / `leave_group` / `send_to_group` in Rust. When
    /// off, every client message goes to the host.
    pub builtin_commands: bool,
    /// Deliver [`crate::HostEvent::Connect`].
    pub connect_events: bool,
    /// Hold each new connection before its websocket upgrade, the request
    /// head read but not consumed, until the host calls
    /// [`crate::NodeHandle::admit`] (or
    /// [`crate::NodeHandle::admit_with_subprotocol`]), or refuses it with an
    /// HTTP status ([`crate::NodeHandle::refuse`]; `close` refuses with
    /// 403); implies `connect_events`. The held connection takes actions
    /// meanwhile (sends, joins), written once it is admitted.
    pub approve_connections: bool,
    /// Deliver [`crate::HostEvent::Message`] for messages that are not built-in
    /// commands (all messages when `builtin_commands` is off). Such messages
    /// then reach the host instead of getting an error reply.
    pub message_events: bool,
    /// Deliver [`crate::HostEvent::Close`].
    pub close_events: bool,
    /// Open the event queue for [`crate::HostEvent::Channel`] alone: a host
    /// that takes any other event gets its channels' data anyway; one that
    /// takes none sets this to subscribe to channels.
    pub channel_events: bool,
    /// Most events queued for the host before connection tasks wait.
    pub queue_capacity: usize,
    /// How long a connection waits for the host's verdict before it is
    /// refused with HTTP 503 (with `approve_connections`).
    pub approval_timeout: Duration,
    /// Answer the client command `{"cmd":"presence","group_id":...}`
    /// (and `"presence":true` on `add_group`); when off, clients get an
    /// error reply and only the host queries presence.
    pub presence_command: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            builtin_commands: true,
            connect_events: false,
            approve_connections: false,
            message_events: false,
            close_events: false,
            channel_events: false,
            queue_capacity: 65_536,
            approval_timeout: Duration::from_secs(10),
            presence_command: true,
        }
    }
}

impl HostConfig {
    /// Whether any event goes to the host, so a queue is needed.
    pub(crate) fn wants_events(&self) -> bool {
        self.connect_events
            || self.approve_connections
            || self.message_events
            || self.close_events
            || self.channel_events
            || !self.builtin_commands
    }
}

/// How long another node's presence is kept without news from it.
pub const DEFAULT_PRESENCE_LEASE: Duration = Duration::from_secs(60);
/// The shortest presence lease allowed: below it, heartbeats would be a
/// load of their own.
pub const MIN_PRESENCE_LEASE: Duration = Duration::from_secs(1);

/// The seed's ports.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:1234";
/// The seed's channel server port, on loopback (no authentication).
pub const DEFAULT_CHANNEL_LISTEN: &str = "127.0.0.1:2206";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_owned(),
            workers: None,
            channel_listen: Some(DEFAULT_CHANNEL_LISTEN.to_owned()),
            channel: None,
            bus: None,
            channel_secret: None,
            metrics_listen: None,
            demo_page: false,
            limits: Limits::default(),
            host: HostConfig::default(),
            tls_cert: None,
            tls_key: None,
            channel_tls_cert: None,
            channel_tls_key: None,
            channel_ca: None,
            channel_server_name: None,
            channel_protocol: ChannelProtocol::default(),
            presence: true,
            presence_lease: DEFAULT_PRESENCE_LEASE,
        }
    }
}

impl Config {
    /// A single node with no channel server, listening on `listen`.
    pub fn local(listen: impl Into<String>) -> Self {
        Config {
            listen: listen.into(),
            channel_listen: None,
            ..Config::default()
        }
    }

    /// Checks every value the type system cannot: the one place where a
    /// range rule lives, called by every surface (Rust, C, PHP, Python, the
    /// command line) so that a value means the same everywhere.
    ///
    /// The rules: an address is `HOST:PORT`; a count or size is at least 1
    /// (0 is never a sentinel: "no limit" or "the OS's default" is `None`,
    /// or leaving the setting out); a duration is above 0, except
    /// `drain_timeout`, where 0 means "close at once"; `idle_timeout` is at
    /// least `ping_interval`.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Config`] naming the first bad value.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |why: &str| Err(crate::Error::Config(why.to_owned()));
        check_address("listen", &self.listen)?;
        for (name, address) in [
            ("channel_listen", &self.channel_listen),
            ("channel", &self.channel),
            ("metrics_listen", &self.metrics_listen),
        ] {
            if let Some(address) = address {
                check_address(name, address)?;
            }
        }
        if self.channel.is_some() && self.channel_listen.is_some() {
            return bad(
                "set either channel (join a channel server) or channel_listen (embed one), not both",
            );
        }
        if let Some(url) = &self.bus {
            if self.channel.is_some() || self.channel_listen.is_some() {
                return bad(
                    "set either bus (Redis) or a channel server (channel, channel_listen), not both; Config::local has no channel server",
                );
            }
            RedisTarget::parse(url).map_err(crate::Error::Config)?;
        }
        if self.channel_secret.as_deref() == Some("") {
            return bad("channel_secret must not be empty (leave it unset for no secret)");
        }
        let l = &self.limits;
        let h = &self.host;
        for (name, value) in [
            ("workers", self.workers.unwrap_or(1)),
            ("max_message_size", l.max_message_size),
            ("max_group_id_len", l.max_group_id_len),
            ("max_groups_per_connection", l.max_groups_per_connection),
            ("outbound_queue_bytes", l.outbound_queue_bytes),
            ("queue_capacity", h.queue_capacity),
            ("history_max_bytes", l.history_max_bytes),
        ] {
            if value == 0 {
                return bad(&format!("{name} must be at least 1"));
            }
        }
        for (name, value) in [
            ("max_connections", l.max_connections),
            ("send_buffer_size", l.send_buffer_size),
        ] {
            if value == Some(0) {
                return bad(&format!(
                    "{name} must be at least 1 (leave it unset for no limit)"
                ));
            }
        }
        for (name, value) in [
            ("ping_interval", l.ping_interval),
            ("idle_timeout", l.idle_timeout),
            ("handshake_timeout", l.handshake_timeout),
            ("approval_timeout", h.approval_timeout),
            ("history_ttl", l.history_ttl),
        ] {
            if value.is_zero() {
                return bad(&format!("{name} must be above 0 seconds"));
            }
        }
        if l.history_size == Some(0) {
            return bad("history_size must be at least 1 (leave it unset for no history)");
        }
        // On a cluster a group's history keys and shard channel must hash
        // to one slot; a `{` in the prefix would take the tag's place.
        if let (Some(_), Some(url)) = (l.history_size, &self.bus)
            && let Ok(RedisTarget {
                deployment: Deployment::Cluster(_),
                prefix,
            }) = RedisTarget::parse(url)
            && let Some(why) = bus_url::cluster_prefix_problem(&prefix)
        {
            return bad(&why);
        }
        if l.idle_timeout < l.ping_interval {
            return bad("idle_timeout must be at least ping_interval");
        }
        if l.max_channel_frame < 64 {
            return bad("max_channel_frame must be at least 64 bytes");
        }
        self.validate_tls()
    }

    /// The TLS settings come in pairs; the files themselves are read (and
    /// their errors named) when the node starts.
    fn validate_tls(&self) -> crate::Result<()> {
        let bad = |why: &str| Err(crate::Error::Config(why.to_owned()));
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together: set both to serve wss://, or neither");
        }
        if self.channel_tls_cert.is_some() != self.channel_tls_key.is_some() {
            return bad("channel_tls_cert and channel_tls_key go together: set both, or neither");
        }
        if self.channel_tls_cert.is_some() && self.channel_listen.is_none() {
            return bad("channel_tls_cert is for an embedded channel server: set channel_listen");
        }
        if self.channel_tls_cert.is_some() && self.channel_ca.is_none() {
            return bad(
                "an embedded channel server with TLS needs channel_ca too (the CA of channel_tls_cert), for this node's own link to it",
            );
        }
        if self.channel_ca.is_some() && self.channel.is_none() && self.channel_listen.is_none() {
            return bad(
                "channel_ca is for the link to a channel server: set channel or channel_listen",
            );
        }
        if self.channel_server_name.is_some() && self.channel_ca.is_none() {
            return bad("channel_server_name needs channel_ca (it names the server TLS checks)");
        }
        if self.channel_protocol == ChannelProtocol::Workerman
            && self.channel.is_none()
            && self.channel_listen.is_none()
        {
            return bad(
                "channel_protocol workerman needs a channel server (channel or channel_listen)",
            );
        }
        if self.presence_lease < MIN_PRESENCE_LEASE {
            return bad(&format!(
                "presence_lease must be at least 1 second, not {:?}",
                self.presence_lease
            ));
        }
        Ok(())
    }
}

/// Checks that `value` is `HOST:PORT` (a name or an IP, brackets around
/// IPv6; port 0 lets the OS choose), so a typo is a configuration error
/// naming the setting rather than a failed bind.
///
/// # Errors
///
/// [`crate::Error::Config`] saying what was expected.
pub(crate) fn check_address(name: &str, value: &str) -> crate::Result<()> {
    let port_ok = |port: &str| !port.is_empty() && port.parse::<u16>().is_ok();
    let well_formed = match value.rsplit_once(':') {
        Some((host, port)) if host.starts_with('[') => {
            host.len() > 2 && host.ends_with(']') && port_ok(port)
        }
        Some((host, port)) => !host.is_empty() && !host.contains(':') && port_ok(port),
        None => false,
    };
    match well_formed {
        true => Ok(()),
        false => Err(crate::Error::Config(format!(
            "{name} must be HOST:PORT (e.g. 127.0.0.1:1234; port 0 lets the OS choose), not {value:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(change: impl FnOnce(&mut Config)) -> String {
        let mut config = Config::local("127.0.0.1:0");
        change(&mut config);
        match config.validate() {
            Err(crate::Error::Config(why)) => why,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_and_the_seed_setup_are_valid() {
        Config::default().validate().unwrap();
        Config::local("127.0.0.1:0").validate().unwrap();
    }

    #[test]
    fn zero_is_refused_for_every_count_and_size() {
        assert!(error_of(|c| c.workers = Some(0)).contains("workers must be at least 1"));
        assert!(error_of(|c| c.limits.max_message_size = 0).contains("max_message_size"));
        assert!(error_of(|c| c.limits.outbound_queue_bytes = 0).contains("outbound_queue_bytes"));
        assert!(error_of(|c| c.host.queue_capacity = 0).contains("queue_capacity"));
        let no_limit = error_of(|c| c.limits.max_connections = Some(0));
        assert!(
            no_limit.contains("max_connections must be at least 1"),
            "{no_limit}"
        );
        assert!(no_limit.contains("unset for no limit"), "{no_limit}");
        assert!(error_of(|c| c.limits.send_buffer_size = Some(0)).contains("send_buffer_size"));
    }

    #[test]
    fn durations_are_above_zero_but_a_drain_may_be_skipped() {
        for (name, change) in [
            (
                "ping_interval",
                (|c: &mut Config| c.limits.ping_interval = Duration::ZERO) as fn(&mut Config),
            ),
            ("idle_timeout", |c| c.limits.idle_timeout = Duration::ZERO),
            ("handshake_timeout", |c| {
                c.limits.handshake_timeout = Duration::ZERO
            }),
            ("approval_timeout", |c| {
                c.host.approval_timeout = Duration::ZERO
            }),
        ] {
            let why = error_of(change);
            assert!(why.contains(&format!("{name} must be above 0")), "{why}");
        }
        let mut config = Config::local("127.0.0.1:0");
        config.limits.drain_timeout = Duration::ZERO;
        config.validate().unwrap();
    }

    #[test]
    fn addresses_must_be_host_and_port() {
        for good in ["127.0.0.1:0", "localhost:1234", "[::1]:80", "0.0.0.0:65535"] {
            check_address("listen", good).unwrap();
        }
        for bad in [
            "127.0.0.1",
            ":80",
            "host:",
            "host:99999",
            "::1:80",
            "[]:80",
            "",
        ] {
            let why = error_of(|c| c.listen = bad.into());
            assert!(why.contains("listen must be HOST:PORT"), "{bad}: {why}");
        }
        let why = error_of(|c| c.metrics_listen = Some("9100".into()));
        assert!(why.contains("metrics_listen must be HOST:PORT"), "{why}");
    }

    #[test]
    fn a_presence_lease_under_a_second_is_refused() {
        let why = error_of(|c| c.presence_lease = Duration::from_millis(999));
        assert!(
            why.contains("presence_lease must be at least 1 second"),
            "{why}"
        );
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(error_of(|c| c.channel_secret = Some(String::new())).contains("channel_secret"));
    }
}
