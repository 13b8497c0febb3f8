//! `groupcast_config`: what a C host builds before starting a server, and
//! the callbacks it registers.
//!
//! Setters store what they are given, with no range rule of their own:
//! `Config::validate` (run by `groupcast_server_start`) owns every rule, so
//! C, PHP, Python and the CLI refuse the same values with the same words.
//! Addresses are the exception: a malformed one is refused at its setter
//! (`GROUPCAST_ERR_INVALID_ARGUMENT`, with `check_address`'s words), where
//! the typo is made; start checks them again.
//! Callbacks are kept with their userdata and finalizer in reference-counted
//! cells, shared by the config and every server started from it, so each
//! finalizer runs once, after the last call.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::events::groupcast_event;
use super::result::*;
use super::server::groupcast_server;
use crate::config::{Config, SlowConsumerPolicy};

/// Which events a host takes (`groupcast_config_set_events`); OR them
/// together. Registering a callback turns its event on by itself.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_events {
    /// `GROUPCAST_EVENT_CONNECT` for each connection.
    GROUPCAST_EVENTS_CONNECT = 1,
    /// Hold each connection until `groupcast_server_admit` (or refuse it
    /// with `groupcast_server_close`); implies `GROUPCAST_EVENTS_CONNECT`.
    GROUPCAST_EVENTS_APPROVE = 2,
    /// `GROUPCAST_EVENT_MESSAGE` for client messages that are not built-in
    /// commands (all of them when built-in commands are off).
    GROUPCAST_EVENTS_MESSAGE = 4,
    /// `GROUPCAST_EVENT_CLOSE` for each closed connection.
    GROUPCAST_EVENTS_CLOSE = 8,
    /// `GROUPCAST_EVENT_CHANNEL` for channels the host subscribes to; needed
    /// for `groupcast_server_channel_subscribe` when no other event is on.
    GROUPCAST_EVENTS_CHANNEL = 16,
}

/// Called for each new connection, before its websocket upgrade; return
/// true to admit it, false to refuse it with HTTP 403 (or decide with
/// `groupcast_server_refuse` / `groupcast_server_admit_subprotocol`, and the
/// return value is ignored). Runs on the host thread
/// "groupcast-host", never on a network thread. `event` is valid during the
/// call only.
pub type groupcast_connect_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        server: *mut groupcast_server,
        event: *const groupcast_event,
    ) -> bool,
>;

/// Called for a message, a close or a channel event. Runs on the host thread
/// "groupcast-host", never on a network thread. `event` is valid during the
/// call only.
pub type groupcast_event_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        server: *mut groupcast_server,
        event: *const groupcast_event,
    ),
>;

/// Releases a callback's userdata. Runs exactly once, after the last call of
/// that callback, on the thread that drops the last reference to it: the
/// caller of `groupcast_config_free`, of `groupcast_server_free`, of a
/// registration replacing it, or the host thread as it ends.
pub type groupcast_userdata_free = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// A registered callback with its userdata; the finalizer runs on drop.
pub(crate) struct Callback<F> {
    pub(crate) f: F,
    pub(crate) userdata: *mut c_void,
    free: groupcast_userdata_free,
}

// SAFETY: the C API documents that callbacks and finalizers are called from
// the host thread and from whichever thread releases them; the host promises
// its userdata tolerates that by registering it.
unsafe impl<F: Send> Send for Callback<F> {}
unsafe impl<F: Sync> Sync for Callback<F> {}

impl<F> Drop for Callback<F> {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the host gave us this finalizer for this userdata.
            unsafe { free(self.userdata) };
        }
    }
}

pub(crate) type ConnectFn =
    unsafe extern "C" fn(*mut c_void, *mut groupcast_server, *const groupcast_event) -> bool;
pub(crate) type EventFn =
    unsafe extern "C" fn(*mut c_void, *mut groupcast_server, *const groupcast_event);

/// The callbacks a config carries to the servers started from it.
#[derive(Default, Clone)]
pub(crate) struct Callbacks {
    pub(crate) on_connect: Option<Arc<Callback<ConnectFn>>>,
    pub(crate) on_message: Option<Arc<Callback<EventFn>>>,
    pub(crate) on_close: Option<Arc<Callback<EventFn>>>,
    pub(crate) on_channel: Option<Arc<Callback<EventFn>>>,
}

impl Callbacks {
    pub(crate) fn any(&self) -> bool {
        self.on_connect.is_some()
            || self.on_message.is_some()
            || self.on_close.is_some()
            || self.on_channel.is_some()
    }
}

/// A server's configuration, built with setters and read by
/// `groupcast_server_start` (it can start several servers and is freed by
/// the caller). Defaults are the seed's: websocket on 0.0.0.0:1234, an
/// embedded channel server on 127.0.0.1:2206, one worker thread per CPU,
/// built-in commands on, no events.
pub struct groupcast_config {
    /// The Rust configuration being built.
    pub(crate) config: Config,
    /// `groupcast_events` flags asked for with `groupcast_config_set_events`.
    pub(crate) events: u32,
    /// Registered callbacks; shared with the servers started from here.
    pub(crate) callbacks: Callbacks,
}

/// A running (or stopped) server: made by `groupcast_server_start`, released
/// Makes a configuration with the defaults (see `groupcast_config`).
///
/// # Safety
///
/// `out_config` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_new(
    out_config: *mut *mut groupcast_config,
) -> groupcast_result {
    guard(|| {
        if out_config.is_null() {
            return null_parameter("out_config");
        }
        let config = Box::new(groupcast_config {
            config: Config::default(),
            events: 0,
            callbacks: Callbacks::default(),
        });
        out(out_config, Box::into_raw(config));
        GROUPCAST_OK
    })
}

/// Releases a configuration and its references to callbacks (servers
/// started from it keep theirs). NULL does nothing.
///
/// # Safety
///
/// `config` is NULL or from `groupcast_config_new`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_free(config: *mut groupcast_config) {
    let _ = guard(|| {
        if !config.is_null() {
            // SAFETY: made by Box::into_raw in groupcast_config_new.
            drop(unsafe { Box::from_raw(config) });
        }
        GROUPCAST_OK
    });
}

/// Sets the websocket listen address, `host:port` (port 0 lets the OS pick;
/// read it back with `groupcast_server_websocket_address`).
/// An address that is not `HOST:PORT` is `GROUPCAST_ERR_INVALID_ARGUMENT`
/// (details in `groupcast_last_error_message`).
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `addr` points to `addr_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_listen(
    config: *mut groupcast_config,
    addr: *const c_char,
    addr_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let addr = arg_str!(addr, addr_len);
        if let Err(code) = address_arg("listen", addr) {
            return code;
        }
        config.config.listen = addr.to_owned();
        GROUPCAST_OK
    })
}

/// Embeds a channel server listening on `addr` (the node uses it to reach
/// other nodes, and the host can publish and subscribe on it). Length 0
/// turns it off (a single node with no channel server).
/// An address that is not `HOST:PORT` is `GROUPCAST_ERR_INVALID_ARGUMENT`
/// (details in `groupcast_last_error_message`).
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel_listen(
    config: *mut groupcast_config,
    addr: *const c_char,
    addr_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let addr = arg_str!(addr, addr_len);
        if !addr.is_empty() {
            if let Err(code) = address_arg("channel_listen", addr) {
                return code;
            }
        }
        config.config.channel_listen = (!addr.is_empty()).then(|| addr.to_owned());
        GROUPCAST_OK
    })
}

/// Joins the channel server at `addr` instead of embedding one (exclusive
/// with `groupcast_config_set_channel_listen`: clear that one first). Length
/// 0 turns it off.
/// An address that is not `HOST:PORT` is `GROUPCAST_ERR_INVALID_ARGUMENT`
/// (details in `groupcast_last_error_message`).
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel(
    config: *mut groupcast_config,
    addr: *const c_char,
    addr_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let addr = arg_str!(addr, addr_len);
        if !addr.is_empty() {
            if let Err(code) = address_arg("channel", addr) {
                return code;
            }
        }
        config.config.channel = (!addr.is_empty()).then(|| addr.to_owned());
        GROUPCAST_OK
    })
}

/// Uses Redis pub/sub as the bus between nodes instead of a channel
/// server: `redis://host:port` or `redis+cluster://h1:p1,h2:p2,...`
/// (exclusive with the channel options: clear those first). Length 0 turns
/// it off.
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_bus(
    config: *mut groupcast_config,
    url: *const c_char,
    url_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let url = arg_str!(url, url_len);
        config.config.bus = (!url.is_empty()).then(|| url.to_owned());
        GROUPCAST_OK
    })
}

/// Sets the number of network threads (the seed's `count`) [default: one
/// per CPU]; 0 is refused by `groupcast_server_start`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_workers(
    config: *mut groupcast_config,
    workers: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.workers = Some(workers);
        GROUPCAST_OK
    })
}

/// Turns the built-in commands (`add_group`, `leave_group`,
/// `send_to_group`) on or off. Off, every client message goes to the host,
/// which then owns the protocol (enable `GROUPCAST_EVENTS_MESSAGE` or
/// register `on_message`).
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_builtin_commands(
    config: *mut groupcast_config,
    enabled: bool,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.host.builtin_commands = enabled;
        GROUPCAST_OK
    })
}

/// Answers a plain HTTP `GET /` on the websocket port with the demo page
/// (join a group, send to it, see what arrives), and any other plain
/// request with 404; off by default, when every plain request gets 426.
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_demo_page(
    config: *mut groupcast_config,
    enabled: bool,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.demo_page = enabled;
        GROUPCAST_OK
    })
}

/// Chooses the events the host takes, as `groupcast_events` flags OR-ed
/// together (replacing earlier flags; registered callbacks add theirs).
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_events(
    config: *mut groupcast_config,
    events: u32,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        if events >= 32 {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                format!("unknown event flags in {events:#x}"),
            );
        }
        config.events = events;
        GROUPCAST_OK
    })
}

/// Most events queued for the host before clients' reads pause [65536];
/// 0 is refused by `groupcast_server_start`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_queue_capacity(
    config: *mut groupcast_config,
    capacity: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.host.queue_capacity = capacity;
        GROUPCAST_OK
    })
}

/// A client limit, for `groupcast_config_set_limit` (defaults in brackets;
/// durations in milliseconds). 0 is refused by `groupcast_server_start`
/// (GROUPCAST_ERR_CONFIG naming the limit) for every limit but
/// `GROUPCAST_LIMIT_DRAIN_TIMEOUT_MS`: 0 never means "no limit".
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_limit {
    /// Largest client message in bytes [1 MiB]; larger closes with 1009.
    GROUPCAST_LIMIT_MAX_MESSAGE_SIZE = 1,
    /// Bytes queued for one client before the slow-consumer policy [1 MiB].
    GROUPCAST_LIMIT_OUTBOUND_QUEUE_BYTES = 2,
    /// Groups one connection may be in [1024].
    GROUPCAST_LIMIT_MAX_GROUPS_PER_CONNECTION = 3,
    /// Longest group id in bytes [256].
    GROUPCAST_LIMIT_MAX_GROUP_ID_LEN = 4,
    /// Connections open at once, more refused with HTTP 503
    /// [default: no limit]; 0 is refused.
    GROUPCAST_LIMIT_MAX_CONNECTIONS = 5,
    /// Milliseconds between server pings [25000].
    GROUPCAST_LIMIT_PING_INTERVAL_MS = 6,
    /// Milliseconds of client silence before closing it [60000]; at least
    /// the ping interval.
    GROUPCAST_LIMIT_IDLE_TIMEOUT_MS = 7,
    /// Milliseconds a client has for the handshake [10000].
    GROUPCAST_LIMIT_HANDSHAKE_TIMEOUT_MS = 8,
    /// Milliseconds a stopping server gives clients to receive what is
    /// queued [5000]; 0 closes them at once.
    GROUPCAST_LIMIT_DRAIN_TIMEOUT_MS = 9,
    /// Kernel send buffer per client socket in bytes [default: the OS's];
    /// 0 is refused.
    GROUPCAST_LIMIT_SEND_BUFFER_SIZE = 10,
    /// Group history: messages kept per group for clients that rejoin with
    /// `since` [default: no history]; 0 is refused.
    GROUPCAST_LIMIT_HISTORY_SIZE = 170,
    /// Milliseconds after a group's last message that its history is
    /// dropped [300000].
    GROUPCAST_LIMIT_HISTORY_TTL_MS = 171,
    /// Most bytes of history kept, all groups together [67108864].
    GROUPCAST_LIMIT_HISTORY_MAX_BYTES = 172,
}

/// What to do with a client whose outbound queue is full
/// (`groupcast_config_set_slow_consumer`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_slow_consumer {
    /// Close it with 1008 (the default).
    GROUPCAST_SLOW_CONSUMER_CLOSE = 1,
    /// Drop the message that does not fit, for that client only.
    GROUPCAST_SLOW_CONSUMER_DROP = 2,
}

/// Sets one client limit (`which` is a `groupcast_limit`); an unknown
/// `which` is `GROUPCAST_ERR_INVALID_ARGUMENT`. Values are checked by
/// `groupcast_server_start`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_limit(
    config: *mut groupcast_config,
    which: u32,
    value: u64,
) -> groupcast_result {
    guard(|| {
        use groupcast_limit::*;
        let config = arg_mut!(config);
        let limits = &mut config.config.limits;
        let size = usize::try_from(value).unwrap_or(usize::MAX);
        let millis = Duration::from_millis(value);
        match which {
            w if w == GROUPCAST_LIMIT_MAX_MESSAGE_SIZE as u32 => limits.max_message_size = size,
            w if w == GROUPCAST_LIMIT_OUTBOUND_QUEUE_BYTES as u32 => {
                limits.outbound_queue_bytes = size
            }
            w if w == GROUPCAST_LIMIT_MAX_GROUPS_PER_CONNECTION as u32 => {
                limits.max_groups_per_connection = size
            }
            w if w == GROUPCAST_LIMIT_MAX_GROUP_ID_LEN as u32 => limits.max_group_id_len = size,
            w if w == GROUPCAST_LIMIT_MAX_CONNECTIONS as u32 => limits.max_connections = Some(size),
            w if w == GROUPCAST_LIMIT_PING_INTERVAL_MS as u32 => limits.ping_interval = millis,
            w if w == GROUPCAST_LIMIT_IDLE_TIMEOUT_MS as u32 => limits.idle_timeout = millis,
            w if w == GROUPCAST_LIMIT_HANDSHAKE_TIMEOUT_MS as u32 => {
                limits.handshake_timeout = millis
            }
            w if w == GROUPCAST_LIMIT_DRAIN_TIMEOUT_MS as u32 => limits.drain_timeout = millis,
            w if w == GROUPCAST_LIMIT_SEND_BUFFER_SIZE as u32 => {
                limits.send_buffer_size = Some(size)
            }
            w if w == GROUPCAST_LIMIT_HISTORY_SIZE as u32 => limits.history_size = Some(size),
            w if w == GROUPCAST_LIMIT_HISTORY_TTL_MS as u32 => limits.history_ttl = millis,
            w if w == GROUPCAST_LIMIT_HISTORY_MAX_BYTES as u32 => limits.history_max_bytes = size,
            other => {
                return fail(
                    GROUPCAST_ERR_INVALID_ARGUMENT,
                    format!("unknown limit {other}"),
                );
            }
        }
        GROUPCAST_OK
    })
}

/// Chooses the slow-consumer policy (`policy` is a
/// `groupcast_slow_consumer`).
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_slow_consumer(
    config: *mut groupcast_config,
    policy: u32,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.limits.slow_consumer = match policy {
            p if p == groupcast_slow_consumer::GROUPCAST_SLOW_CONSUMER_CLOSE as u32 => {
                SlowConsumerPolicy::Close
            }
            p if p == groupcast_slow_consumer::GROUPCAST_SLOW_CONSUMER_DROP as u32 => {
                SlowConsumerPolicy::Drop
            }
            other => {
                return fail(
                    GROUPCAST_ERR_INVALID_ARGUMENT,
                    format!("unknown slow-consumer policy {other}"),
                );
            }
        };
        GROUPCAST_OK
    })
}

/// Adds a browser origin allowed to connect (e.g. `https://example.com`);
/// once one is added, browsers from other origins are refused with HTTP 403.
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_add_allowed_origin(
    config: *mut groupcast_config,
    origin: *const c_char,
    origin_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let origin = arg_str!(origin, origin_len).to_owned();
        config
            .config
            .limits
            .allowed_origins
            .get_or_insert_with(Vec::new)
            .push(origin);
        GROUPCAST_OK
    })
}

/// Sets the channel server's shared secret: required from clients by an
/// embedded channel server, sent by this node when it joins one. Length 0
/// clears it.
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel_secret(
    config: *mut groupcast_config,
    secret: *const c_char,
    secret_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let secret = arg_str!(secret, secret_len);
        config.config.channel_secret = (!secret.is_empty()).then(|| secret.to_owned());
        GROUPCAST_OK
    })
}

/// Serves Prometheus metrics on `addr` (`GET /metrics`). Length 0 turns it
/// off.
/// An address that is not `HOST:PORT` is `GROUPCAST_ERR_INVALID_ARGUMENT`
/// (details in `groupcast_last_error_message`).
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_metrics_listen(
    config: *mut groupcast_config,
    addr: *const c_char,
    addr_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let addr = arg_str!(addr, addr_len);
        if !addr.is_empty() {
            if let Err(code) = address_arg("metrics_listen", addr) {
                return code;
            }
        }
        config.config.metrics_listen = (!addr.is_empty()).then(|| addr.to_owned());
        GROUPCAST_OK
    })
}

/// Refuses a malformed address at its setter: `GROUPCAST_ERR_INVALID_ARGUMENT`
/// with the words `Config::validate` would use at start.
pub(crate) fn address_arg(name: &str, addr: &str) -> Result<(), groupcast_result> {
    match crate::config::check_address(name, addr) {
        Ok(()) => Ok(()),
        Err(crate::error::Error::Config(why)) => Err(fail(GROUPCAST_ERR_INVALID_ARGUMENT, why)),
        Err(other) => Err(fail(GROUPCAST_ERR_INVALID_ARGUMENT, other.to_string())),
    }
}

fn callback<F>(f: F, userdata: *mut c_void, free: groupcast_userdata_free) -> Arc<Callback<F>> {
    Arc::new(Callback { f, userdata, free })
}

/// Registers `on_connect` (NULL unregisters), which decides on each new
/// connection: the connection is held, reading nothing, until it returns.
/// Switches the server to callbacks mode. `userdata` is passed to every
/// call; `free_userdata` (may be NULL) releases it once no config or server
/// needs it. A replaced registration's finalizer runs now if nothing else
/// holds it.
///
/// Thread: the callback runs on the host thread "groupcast-host", one event
/// at a time in arrival order, never on a network thread.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `callback` callable as documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_on_connect(
    config: *mut groupcast_config,
    callback_fn: groupcast_connect_callback,
    userdata: *mut c_void,
    free_userdata: groupcast_userdata_free,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.callbacks.on_connect = callback_fn.map(|f| callback(f, userdata, free_userdata));
        GROUPCAST_OK
    })
}

/// Registers `on_message` (NULL unregisters) for client messages that are
/// not built-in commands (all of them with built-in commands off).
/// Userdata, finalizer and thread as `groupcast_config_on_connect`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `callback_fn` callable as
/// documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_on_message(
    config: *mut groupcast_config,
    callback_fn: groupcast_event_callback,
    userdata: *mut c_void,
    free_userdata: groupcast_userdata_free,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.callbacks.on_message = callback_fn.map(|f| callback(f, userdata, free_userdata));
        GROUPCAST_OK
    })
}

/// Registers `on_close` (NULL unregisters), called once per closed
/// connection. Userdata, finalizer and thread as
/// `groupcast_config_on_connect`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `callback_fn` callable as
/// documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_on_close(
    config: *mut groupcast_config,
    callback_fn: groupcast_event_callback,
    userdata: *mut c_void,
    free_userdata: groupcast_userdata_free,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.callbacks.on_close = callback_fn.map(|f| callback(f, userdata, free_userdata));
        GROUPCAST_OK
    })
}

/// Registers `on_channel_event` (NULL unregisters), called with the data of
/// channels subscribed with `groupcast_server_channel_subscribe`. Userdata,
/// finalizer and thread as `groupcast_config_on_connect`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `callback_fn` callable as
/// documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_on_channel_event(
    config: *mut groupcast_config,
    callback_fn: groupcast_event_callback,
    userdata: *mut c_void,
    free_userdata: groupcast_userdata_free,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.callbacks.on_channel = callback_fn.map(|f| callback(f, userdata, free_userdata));
        GROUPCAST_OK
    })
}

const EV_CONNECT: u32 = groupcast_events::GROUPCAST_EVENTS_CONNECT as u32;
const EV_APPROVE: u32 = groupcast_events::GROUPCAST_EVENTS_APPROVE as u32;
const EV_MESSAGE: u32 = groupcast_events::GROUPCAST_EVENTS_MESSAGE as u32;
const EV_CLOSE: u32 = groupcast_events::GROUPCAST_EVENTS_CLOSE as u32;
const EV_CHANNEL: u32 = groupcast_events::GROUPCAST_EVENTS_CHANNEL as u32;

impl groupcast_config {
    /// The core configuration a server starts with: the event flags asked
    /// for, plus those of the registered callbacks, become the host's
    /// settings. Ranges are left to `Config::validate`.
    pub(crate) fn server_config(&self) -> Result<Config, groupcast_result> {
        let callbacks = &self.callbacks;
        if callbacks.any() && callbacks.on_message.is_none() && !self.config.host.builtin_commands {
            // Every client message would be dropped on the host thread.
            return Err(fail(
                GROUPCAST_ERR_CONFIG,
                "built-in commands are off but no on_message callback is registered",
            ));
        }
        let mut wanted = self.events;
        if callbacks.on_connect.is_some() {
            wanted |= EV_CONNECT | EV_APPROVE;
        }
        if callbacks.on_message.is_some() {
            wanted |= EV_MESSAGE;
        }
        if callbacks.on_close.is_some() {
            wanted |= EV_CLOSE;
        }
        if callbacks.on_channel.is_some() {
            wanted |= EV_CHANNEL;
        }
        let mut config = self.config.clone();
        let host = &mut config.host;
        host.connect_events = wanted & (EV_CONNECT | EV_APPROVE) != 0;
        host.approve_connections = wanted & EV_APPROVE != 0;
        host.message_events = wanted & EV_MESSAGE != 0 || !host.builtin_commands;
        host.close_events = wanted & EV_CLOSE != 0;
        host.channel_events = wanted & EV_CHANNEL != 0;
        Ok(config)
    }
}

/// Sets the protocol this node speaks to its channel server: `groupcast`
/// (the default: JSON, a channel per group) or `workerman` (the seed's
/// walkor/channel protocol, PHP `serialize()` bodies and `send_to_group`
/// events, so the node joins a cluster of Workerman PHP workers; see
/// docs/workerman.md). Length 0 restores the default. Any other name is
/// `GROUPCAST_ERR_INVALID_ARGUMENT` (details in
/// `groupcast_last_error_message`).
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel_protocol(
    config: *mut groupcast_config,
    protocol: *const c_char,
    protocol_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let protocol = arg_str!(protocol, protocol_len);
        config.config.channel_protocol = match protocol {
            "" => crate::config::ChannelProtocol::default(),
            name => match name.parse() {
                Ok(protocol) => protocol,
                Err(why) => return fail(GROUPCAST_ERR_INVALID_ARGUMENT, why),
            },
        };
        GROUPCAST_OK
    })
}
