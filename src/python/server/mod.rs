//! The `Server` class: a node embedded in the Python process. Its options
//! become a [`Config`] that the core validates; its actions are the core's
//! [`NodeHandle`]'s; its callbacks run through the core's hooks
//! ([`PyHooks`], in `hooks.rs`), or, with `events=True`, the core's queue
//! is polled ([`HostEvents::poll_until`]) in waits Ctrl-C can interrupt.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

mod core;

use self::core::ServerCore;
use super::events::{Addresses, event_object};
use super::hooks::Callbacks;
use super::{
    ChannelError, Stoppable, StoppedError, check_channel_callback, check_channel_name, exclude_arg,
    group_arg, json_dumps, json_loads, register_live, seconds_arg, text_arg, timeout_deadline,
    to_py, wait_interruptibly, with_stop_signals,
};
use crate::host::Polled;
use crate::{Config, SlowConsumerPolicy};

/// A groupcast node: a websocket server whose clients join groups and send
/// to them, embedded in this process. See the package documentation.
///
/// Every option is checked at construction by the rules all surfaces share
/// (`ValueError` naming the setting): addresses are `HOST:PORT`; counts and
/// sizes are at least 1 (`None` is "no limit", never 0); durations are
/// seconds above 0, except `drain_timeout`, where 0 closes at once.
#[pyclass(frozen, weakref, module = "groupcast._groupcast")]
pub(super) struct Server {
    /// What `start` starts; fixed at construction.
    config: Config,
    /// `events=True`: events go to `poll` / `events()` instead of hooks.
    poll_mode: bool,
    /// The callbacks, shared with the host thread.
    callbacks: Arc<Mutex<Callbacks>>,
    core: Arc<ServerCore>,
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        listen = "0.0.0.0:1234",
        *,
        channel_listen = None,
        channel = None,
        workers = None,
        builtin_commands = true,
        events = false,
        approve_connections = false,
        max_message_size = None,
        max_group_id_len = None,
        max_groups_per_connection = None,
        outbound_queue_bytes = None,
        queue_capacity = None,
        approval_timeout = None,
        bus = None,
        channel_secret = None,
        metrics_listen = None,
        slow_consumer = "close",
        max_connections = None,
        ping_interval = None,
        idle_timeout = None,
        handshake_timeout = None,
        drain_timeout = None,
        allowed_origins = None,
        send_buffer_size = None,
        demo_page = false,
        tls_cert = None,
        tls_key = None,
        channel_tls_cert = None,
        channel_tls_key = None,
        channel_ca = None,
        channel_server_name = None,
        channel_protocol = "groupcast",
        presence = true,
        presence_lease = None,
        presence_command = true,
        history_size = None,
        history_ttl = None,
        history_max_bytes = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        listen: &str,
        channel_listen: Option<&str>,
        channel: Option<&str>,
        workers: Option<usize>,
        builtin_commands: bool,
        events: bool,
        approve_connections: bool,
        max_message_size: Option<usize>,
        max_group_id_len: Option<usize>,
        max_groups_per_connection: Option<usize>,
        outbound_queue_bytes: Option<usize>,
        queue_capacity: Option<usize>,
        approval_timeout: Option<f64>,
        bus: Option<&str>,
        channel_secret: Option<&str>,
        metrics_listen: Option<&str>,
        slow_consumer: &str,
        max_connections: Option<usize>,
        ping_interval: Option<f64>,
        idle_timeout: Option<f64>,
        handshake_timeout: Option<f64>,
        drain_timeout: Option<f64>,
        allowed_origins: Option<Vec<String>>,
        send_buffer_size: Option<usize>,
        demo_page: bool,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        channel_tls_cert: Option<PathBuf>,
        channel_tls_key: Option<PathBuf>,
        channel_ca: Option<PathBuf>,
        channel_server_name: Option<String>,
        channel_protocol: &str,
        presence: bool,
        presence_lease: Option<f64>,
        presence_command: bool,
        history_size: Option<usize>,
        history_ttl: Option<f64>,
        history_max_bytes: Option<usize>,
    ) -> PyResult<Self> {
        // Start from the defaults so fields added to the core keep their
        // default meaning here; `validate` below judges every value.
        let mut config = Config::local(listen);
        config.workers = workers;
        config.channel_listen = channel_listen.map(str::to_owned);
        config.channel = channel.map(str::to_owned);
        config.bus = bus.map(str::to_owned);
        config.channel_secret = channel_secret.map(str::to_owned);
        config.metrics_listen = metrics_listen.map(str::to_owned);
        config.demo_page = demo_page;
        config.tls_cert = tls_cert;
        config.tls_key = tls_key;
        config.channel_tls_cert = channel_tls_cert;
        config.channel_tls_key = channel_tls_key;
        config.channel_ca = channel_ca;
        config.channel_server_name = channel_server_name;
        config.channel_protocol = channel_protocol
            .parse()
            .map_err(|why: String| PyValueError::new_err(format!("channel_protocol: {why}")))?;
        config.presence = presence;
        if let Some(seconds) = presence_lease {
            config.presence_lease = seconds_arg("presence_lease", seconds)?;
        }
        config.host.presence_command = presence_command;
        let limits = &mut config.limits;
        for (value, field) in [
            (max_message_size, &mut limits.max_message_size),
            (max_group_id_len, &mut limits.max_group_id_len),
            (
                max_groups_per_connection,
                &mut limits.max_groups_per_connection,
            ),
            (outbound_queue_bytes, &mut limits.outbound_queue_bytes),
        ] {
            if let Some(value) = value {
                *field = value;
            }
        }
        limits.slow_consumer = match slow_consumer {
            "close" => SlowConsumerPolicy::Close,
            "drop" => SlowConsumerPolicy::Drop,
            other => {
                return Err(PyValueError::new_err(format!(
                    "slow_consumer must be \"close\" or \"drop\", not {other:?}"
                )));
            }
        };
        limits.max_connections = max_connections;
        limits.allowed_origins = allowed_origins;
        limits.send_buffer_size = send_buffer_size;
        limits.history_size = history_size;
        if let Some(bytes) = history_max_bytes {
            limits.history_max_bytes = bytes;
        }
        if let Some(seconds) = history_ttl {
            limits.history_ttl = seconds_arg("history_ttl", seconds)?;
        }
        let host = &mut config.host;
        host.builtin_commands = builtin_commands;
        if let Some(value) = queue_capacity {
            host.queue_capacity = value;
        }
        for (name, value, field) in [
            ("ping_interval", ping_interval, &mut limits.ping_interval),
            ("idle_timeout", idle_timeout, &mut limits.idle_timeout),
            (
                "handshake_timeout",
                handshake_timeout,
                &mut limits.handshake_timeout,
            ),
            ("drain_timeout", drain_timeout, &mut limits.drain_timeout),
            (
                "approval_timeout",
                approval_timeout,
                &mut host.approval_timeout,
            ),
        ] {
            if let Some(seconds) = value {
                *field = seconds_arg(name, seconds)?;
            }
        }
        if approve_connections && !events {
            return Err(PyValueError::new_err(
                "approve_connections=True is for events=True; with hooks, registering \
                 on_connect holds each connection until it returns",
            ));
        }
        // Poll mode keeps it; hook mode derives it from on_connect at start.
        host.approve_connections = approve_connections;
        config.validate().map_err(to_py)?;
        Ok(Server {
            config,
            poll_mode: events,
            callbacks: Arc::default(),
            core: Arc::default(),
        })
    }

    /// Registers `callback(conn_info)`, called for each new connection
    /// before the websocket upgrade, with its headers: returning `False`
    /// refuses it with HTTP 403, `Refuse(status, body)` with that status,
    /// an offered subprotocol admits it with that one, anything else admits.
    fn on_connect(&self, callback: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.set_hook(|h| &mut h.on_connect, "on_connect", callback)
    }

    /// Registers `callback(conn, data)` for client messages that are not
    /// built-in commands (all messages with `builtin_commands=False`).
    fn on_message(&self, callback: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.set_hook(|h| &mut h.on_message, "on_message", callback)
    }

    /// Registers `callback(conn, code)`, called once a connection closed
    /// and left its groups.
    fn on_close(&self, callback: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.set_hook(|h| &mut h.on_close, "on_close", callback)
    }

    /// Starts serving; returns once listening. Does nothing if running.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut state = self.core.state.lock();
            if state.running().is_some() || state.starting {
                return Ok(());
            }
            state.starting = true;
        }
        let config = self.start_config();
        let started = py.detach(|| self.start_detached(config));
        {
            let mut state = self.core.state.lock();
            state.starting = false;
            let server = started.map_err(to_py)?;
            state.addresses = Some(server.addresses());
            state.events = match self.poll_mode {
                true => server.handle().events().cloned(),
                false => None,
            };
            state.server = Some(server);
        }
        register_live(Arc::downgrade(&self.core) as Weak<dyn Stoppable>);
        Ok(())
    }

    /// Stops serving: clients get close code 1001, every thread is joined.
    /// Safe from any thread, from inside a callback, and more than once.
    fn stop(&self, py: Python<'_>) {
        let core = self.core.clone();
        py.detach(move || core.stop_detached());
    }

    /// Whether the server is running.
    #[getter]
    fn running(&self) -> bool {
        self.core.state.lock().running().is_some()
    }

    /// Starts the server if needed and blocks until it is stopped: by
    /// `stop()` (from a callback or another thread) or, in the main thread,
    /// by SIGINT (Ctrl-C) or SIGTERM, which stop it gracefully (clients get
    /// 1001) and return normally. Another signal handler's exception stops
    /// it and propagates.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        let on_signal = self.core.clone();
        with_stop_signals(
            py,
            move || on_signal.stop_detached(),
            || {
                // Handlers first: once `running`, a signal stops cleanly.
                self.start(py)?;
                let core = self.core.clone();
                let waited = wait_interruptibly(py, None, move |until| {
                    let mut state = core.state.lock();
                    if state.running().is_none() {
                        return true;
                    }
                    core.stopped.wait_until(&mut state, until);
                    state.running().is_none()
                });
                if waited.is_err() {
                    self.stop(py);
                }
                waited.map(|_| ())
            },
        )
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.stop(py);
        false
    }

    /// Where the server listens (after start; kept after stop).
    #[getter]
    fn addresses(&self) -> PyResult<Addresses> {
        self.core
            .state
            .lock()
            .addresses
            .map(Addresses::new)
            .ok_or_else(|| StoppedError::new_err("the server has not been started"))
    }

    /// The websocket URL clients can use, e.g. `"ws://127.0.0.1:1234/"`
    /// (`wss://` with `tls_cert`).
    #[getter]
    fn url(&self) -> PyResult<String> {
        let (host, port) = self.addresses()?.websocket().clone();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let scheme = match self.config.tls_cert {
            Some(_) => "wss",
            None => "ws",
        };
        Ok(format!("{scheme}://{host}:{port}/"))
    }

    /// Reads the TLS certificate and key files again (and the embedded
    /// channel server's): new connections get the new certificate, open
    /// ones stay. `ValueError` naming the file when it cannot be used (the
    /// certificate in use then stays) or when the server has no TLS.
    fn reload_tls(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle()?;
        py.detach(|| handle.reload_tls()).map_err(to_py)
    }

    /// Sends `data` to one connection: a text frame for `str`, a binary
    /// frame for `bytes`-like data.
    fn send(&self, conn: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let handle = self.handle()?;
        if let Ok(text) = data.cast::<PyString>() {
            return handle.send_text(conn, &text.to_cow()?).map_err(to_py);
        }
        if let Ok(bytes) = data.cast::<PyBytes>() {
            return handle.send_binary(conn, bytes.as_bytes()).map_err(to_py);
        }
        match data.extract::<Vec<u8>>() {
            Ok(bytes) => handle.send_binary(conn, &bytes).map_err(to_py),
            _ => Err(PyTypeError::new_err(format!(
                "data must be str (text frame) or bytes (binary frame), not {}",
                data.get_type().name()?
            ))),
        }
    }

    /// Closes a connection after what is queued for it has been sent.
    #[pyo3(signature = (conn, code = 1000, reason = ""))]
    fn close(&self, conn: u64, code: u16, reason: &str) -> PyResult<()> {
        self.handle()?.close(conn, code, reason).map_err(to_py)
    }

    /// Lets a connection held for approval be upgraded (`events=True,
    /// approve_connections=True`), with one of the subprotocols it offered
    /// if given. With hooks, `on_connect` decides by what it returns.
    #[pyo3(signature = (conn, subprotocol = None))]
    fn admit(&self, conn: u64, subprotocol: Option<&str>) -> PyResult<()> {
        let handle = self.handle()?;
        match subprotocol {
            Some(protocol) => handle.admit_with_subprotocol(conn, protocol),
            None => handle.admit(conn),
        }
        .map_err(to_py)
    }

    /// Refuses a connection held for approval with an HTTP `status`
    /// (400-599) and `body`, before any websocket frame (`events=True,
    /// approve_connections=True`; `close` refuses with 403).
    #[pyo3(signature = (conn, status = 403, body = ""))]
    fn refuse(&self, conn: u64, status: u16, body: &str) -> PyResult<()> {
        self.handle()?.refuse(conn, status, body).map_err(to_py)
    }

    /// Puts a connection in a group; `False` if it already was.
    fn join(&self, conn: u64, group: &Bound<'_, PyAny>) -> PyResult<bool> {
        let group = group_arg(group)?;
        self.handle()?.join(conn, &group).map_err(to_py)
    }

    /// Takes a connection out of a group; `False` if it was not in it.
    fn leave(&self, conn: u64, group: &Bound<'_, PyAny>) -> PyResult<bool> {
        let group = group_arg(group)?;
        self.handle()?.leave(conn, &group).map_err(to_py)
    }

    /// Sends `message` to every member of `group` on every node, except the
    /// local connections in `exclude`; returns the local deliveries.
    #[pyo3(signature = (group, message, exclude = None))]
    fn send_to_group(
        &self,
        group: &Bound<'_, PyAny>,
        message: &Bound<'_, PyAny>,
        exclude: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let group = group_arg(group)?;
        let message = text_arg("message", message)?;
        let exclude = exclude_arg(exclude)?;
        self.handle()?
            .send_to_group(&group, &message, &exclude)
            .map_err(to_py)
    }

    /// As `send_to_group`, returning `(delivered, offset)`: `offset` is the
    /// message's position in the group's history (`None` with history
    /// off).
    #[pyo3(signature = (group, message, exclude = None))]
    fn send_to_group_with_offset(
        &self,
        group: &Bound<'_, PyAny>,
        message: &Bound<'_, PyAny>,
        exclude: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(usize, Option<u64>)> {
        let py = group.py();
        let group = group_arg(group)?;
        let message = text_arg("message", message)?;
        let exclude = exclude_arg(exclude)?;
        let handle = self.handle()?;
        // Detached: on a cluster bus the offset is a round trip to Redis.
        py.detach(|| handle.send_to_group_with_offset(&group, &message, &exclude))
            .map_err(to_py)
    }

    /// The group's history: `(epoch, [(offset, message), ...])`, the kept
    /// messages after offset `since` (all when `None`), oldest first, at
    /// most `limit`. `ValueError` when the server keeps no history.
    #[pyo3(signature = (group, since = None, limit = 100))]
    fn history(
        &self,
        group: &Bound<'_, PyAny>,
        since: Option<u64>,
        limit: usize,
    ) -> PyResult<(String, Vec<(u64, String)>)> {
        let py = group.py();
        let group = group_arg(group)?;
        let handle = self.handle()?;
        // Detached: in a cluster the history is asked of the channel
        // server or Redis.
        py.detach(|| handle.history(&group, since, limit))
            .map_err(to_py)
    }

    /// Sends `message` to every connection of this server except those in
    /// `exclude`; returns how many it was queued for.
    #[pyo3(signature = (message, exclude = None))]
    fn broadcast(
        &self,
        message: &Bound<'_, PyAny>,
        exclude: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let message = text_arg("message", message)?;
        let exclude = exclude_arg(exclude)?;
        self.handle()?.broadcast(&message, &exclude).map_err(to_py)
    }

    /// Local members of `group` (0 when not running).
    fn group_size(&self, group: &Bound<'_, PyAny>) -> PyResult<usize> {
        let group = group_arg(group)?;
        Ok(self.handle().map_or(0, |h| h.group_size(&group)))
    }

    /// Groups with at least one local member (empty when not running).
    fn groups(&self) -> Vec<String> {
        self.handle().map(|h| h.groups()).unwrap_or_default()
    }

    /// The groups a connection is in.
    fn connection_groups(&self, conn: u64) -> PyResult<Vec<String>> {
        self.handle()?.connection_groups(conn).map_err(to_py)
    }

    /// The client address of a connection, `("host", port)`.
    fn peer(&self, conn: u64) -> PyResult<(String, u16)> {
        let peer = self.handle()?.peer_addr(conn).map_err(to_py)?;
        Ok(super::address_tuple(peer))
    }

    /// Open connections (0 when not running).
    fn connection_count(&self) -> usize {
        self.handle().map_or(0, |h| h.connection_count())
    }

    /// A snapshot of the server's counters, as a dict of ints: connections,
    /// groups, connections_opened, connections_refused, messages_in,
    /// bytes_in, messages_out, bytes_out, dropped_messages,
    /// slow_consumer_closes, heartbeat_timeouts, bus_reconnects,
    /// bus_dropped_publishes, bus_connected, bus_connect_attempts,
    /// bus_auth_failures, bus_dropped_events, host_dropped_events,
    /// tls_handshake_failures.
    /// channel_refused, channel_queue_dropped, channel_undeliverable.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = self.handle()?.stats();
        json_loads(py, &stats.to_json())
    }

    /// Binds a connection of this server to `uid` (one per connection;
    /// binding again replaces it).
    fn bind_uid(&self, conn: u64, uid: &str) -> PyResult<()> {
        self.handle()?.bind_uid(conn, uid).map_err(to_py)
    }

    /// Unbinds a connection's uid; returns the uid it had.
    fn unbind_uid(&self, conn: u64) -> PyResult<Option<String>> {
        self.handle()?.unbind_uid(conn).map_err(to_py)
    }

    /// The uid a connection of this server is bound to, or `None`.
    fn uid_of(&self, conn: u64) -> PyResult<Option<String>> {
        self.handle()?.uid_of(conn).map_err(to_py)
    }

    /// Sends `message` to every connection bound to the uid (or to any of
    /// the uids), on every node; returns the local deliveries.
    fn send_to_uid(&self, uids: &Bound<'_, PyAny>, message: &Bound<'_, PyAny>) -> PyResult<usize> {
        super::presence::send_to_uid(&self.handle()?, uids, message)
    }

    /// Whether the uid has a connection on any node of the cluster.
    fn is_uid_online(&self, uid: &str) -> PyResult<bool> {
        self.handle()?.is_uid_online(uid).map_err(to_py)
    }

    /// Who is in `group` across the cluster: a dict with `connections`,
    /// `users`, `uids` (at most `max_uids`) and `truncated`.
    #[pyo3(signature = (group, max_uids = 1000))]
    fn presence<'py>(
        &self,
        py: Python<'py>,
        group: &Bound<'_, PyAny>,
        max_uids: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let group = group_arg(group)?;
        super::presence::presence(py, &self.handle()?, &group, max_uids)
    }

    /// The cluster as this node sees it: a dict with `nodes`,
    /// `connections`, `users` and `groups`.
    fn cluster_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        super::presence::cluster_stats(py, &self.handle()?)
    }

    /// Every member of `group` leaves it, on every node; returns how many
    /// local members left.
    fn ungroup(&self, group: &Bound<'_, PyAny>) -> PyResult<usize> {
        let group = group_arg(group)?;
        self.handle()?.ungroup(&group).map_err(to_py)
    }

    /// Whether the server serves and its bus reaches the other nodes, as
    /// `GET /health` reports it: a dict with `status` ("ok" or
    /// "unavailable"), `bus` ("none", "connected" or "disconnected"),
    /// `connections`, and `reason` when unavailable.
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let health = self.handle()?.health();
        json_loads(py, &health.to_json())
    }

    /// Subscribes to a channel of the channel server: each value published
    /// on it is passed to `callback(data)` (with `events=True`: arrives as a
    /// `ChannelEvent` and `callback` must be omitted).
    #[pyo3(signature = (channel, callback = None))]
    fn subscribe(&self, channel: &str, callback: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        match (&callback, self.poll_mode) {
            (Some(callback), false) => check_channel_callback(callback)?,
            (None, true) => {}
            (None, false) => {
                return Err(PyTypeError::new_err("subscribe() needs a callback"));
            }
            (Some(_), true) => {
                return Err(PyValueError::new_err(
                    "this server was made with events=True: channel data arrives as \
                     ChannelEvent; omit the callback",
                ));
            }
        }
        if !self.has_channel_server() {
            return Err(ChannelError::new_err(
                "this server has no channel server: pass channel= or channel_listen=",
            ));
        }
        check_channel_name(channel)?;
        let handle = self.handle().ok();
        let previous = self
            .callbacks
            .lock()
            .channels
            .insert(channel.to_owned(), callback.map(Bound::unbind));
        drop(previous); // outside the lock: its finalizer may call back in
        match handle {
            Some(handle) => handle.channel_subscribe(channel).map_err(to_py),
            None => Ok(()), // subscribed at start
        }
    }

    /// Stops a subscription made with `subscribe`.
    fn unsubscribe(&self, channel: &str) -> PyResult<()> {
        let removed = self.callbacks.lock().channels.remove(channel);
        drop(removed);
        match self.handle() {
            Ok(handle) => handle.channel_unsubscribe(channel).map_err(to_py),
            Err(_) => Ok(()),
        }
    }

    /// Publishes `data` (anything `json.dumps` accepts) on a channel of the
    /// channel server, as the seed's `Channel\Client::publish`.
    fn publish(&self, channel: &str, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let handle = self.handle()?;
        let text = json_dumps(data)?;
        handle.channel_publish(channel, &text).map_err(to_py)
    }

    /// With `events=True`: takes up to `max_events` events, waiting up to
    /// `timeout` seconds for the first (`None`: until one comes or the
    /// server stops). Returns `[]` on timeout and once stopped and drained.
    #[pyo3(signature = (timeout = None, max_events = 1024))]
    fn poll(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        max_events: usize,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let events = self.poll_events()?;
        let deadline = timeout_deadline(timeout)?;
        let mut batch = Vec::new();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            // poll(0), the common case in an event loop: no detach.
            events.poll_until(&mut batch, deadline, max_events);
        } else {
            wait_interruptibly(py, deadline, |until| {
                events.poll_until(&mut batch, Some(until), max_events) != Polled::TimedOut
            })?;
        }
        batch
            .into_iter()
            .map(|event| event_object(py, event))
            .collect()
    }

    /// With `events=True`: a file descriptor readable while events wait,
    /// for event loops (`loop.add_reader`). Do not read from it.
    fn fileno(&self) -> PyResult<i32> {
        Ok(self.poll_events()?.notify_fd())
    }

    /// With `events=True`: whether the server stopped and every event was
    /// taken.
    #[getter]
    fn finished(&self) -> bool {
        let state = self.core.state.lock();
        match &state.events {
            Some(events) => events.is_finished(),
            None => state.running().is_none(),
        }
    }

    /// With `events=True`: an async iterator over the events, for asyncio.
    #[pyo3(signature = (max_events = 1024))]
    fn events<'py>(slf: &Bound<'py, Self>, max_events: usize) -> PyResult<Bound<'py, PyAny>> {
        if !slf.get().poll_mode {
            return Err(PyValueError::new_err(
                "events() needs a server made with events=True",
            ));
        }
        slf.py()
            .import("groupcast._aio")?
            .getattr("server_events")?
            .call1((slf, max_events))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never wait inside the collector: the lock is only held for
        // reference swaps, so missing one visit is harmless.
        if let Some(callbacks) = self.callbacks.try_lock() {
            visit.call(&callbacks.on_connect)?;
            visit.call(&callbacks.on_message)?;
            visit.call(&callbacks.on_close)?;
            for callback in callbacks.channels.values() {
                visit.call(callback.as_ref())?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = std::mem::take(&mut *self.callbacks.lock());
        drop(taken);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The last reference went away while running: stop, detached, since
        // the host thread may be waiting to attach to finish a batch.
        if self.running() {
            let core = self.core.clone();
            Python::attach(|py| py.detach(move || core.stop_detached()));
        }
    }
}
