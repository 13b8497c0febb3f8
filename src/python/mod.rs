//! The Python bindings (the `python` feature), built by maturin as
//! `groupcast._groupcast`; `python/groupcast/` re-exports them.
//!
//! Threads: tokio threads never touch Python. Hook callbacks run on the one
//! host thread the core's dispatcher owns, which attaches to the interpreter
//! once per batch of events; channel-client callbacks run on a host thread of
//! the client's own. Every call that waits (start, stop, polling, joining
//! threads) detaches from the interpreter, and long waits wake every
//! [`SIGNAL_CHECK`] to run Python's signal handlers, so Ctrl-C works.
//!
//! Lifetimes: classes that hold Python callables implement
//! `__traverse__`/`__clear__`, so a server whose callback refers back to the
//! server is collected. Running servers and clients are also listed in
//! [`LIVE`], which an `atexit` hook of the package stops, because a host
//! thread must not try to attach to an interpreter that is finalizing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pyo3::PyTraverseError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyString, PyTuple};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channel::{
    ChannelClient as CoreChannelClient, ChannelClientConfig, ChannelEvent as CoreChannelEvent,
    ChannelServer as CoreChannelServer, ChannelServerConfig,
};
use crate::{
    Config, Error, HostConfig, HostEvent, HostEvents, NodeHandle, Payload, SlowConsumerPolicy,
};

/// How long a wait stays detached before running Python's signal handlers.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Most events handed to Python under one attach: the core dispatcher's
/// batch size, and `poll`'s default `max_events` (written out as 1024 in
/// its signature, which must be a literal for the stubs).
const DEFAULT_MAX_EVENTS: usize = 1024;

/// Close code and reason when `on_connect` refuses a connection.
const REFUSED: (u16, &str) = (1008, "connection refused");
/// Close code and reason when `on_connect` raised.
const HOOK_FAILED: (u16, &str) = (1011, "internal error");

create_exception!(
    groupcast,
    GroupcastError,
    PyException,
    "Base class of groupcast's own errors."
);
create_exception!(
    groupcast,
    UnknownConnectionError,
    GroupcastError,
    "An action named a connection that is not open (it may have just closed)."
);
create_exception!(
    groupcast,
    GroupLimitError,
    GroupcastError,
    "A connection is already in as many groups as the server allows."
);
create_exception!(
    groupcast,
    ChannelError,
    GroupcastError,
    "A channel request failed: no channel server configured, or the client was closed."
);
create_exception!(
    groupcast,
    StoppedError,
    GroupcastError,
    "The server or client is not running (not started yet, or stopped)."
);

/// Turns a core error into the Python exception a caller expects: bad
/// arguments are `ValueError`, OS failures `OSError` with their errno.
fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Bind { source, .. } | Error::Runtime(source) => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, message)),
            None => PyOSError::new_err(message),
        },
        Error::Config(_) | Error::InvalidGroup(_) | Error::InvalidCloseCode(_) => {
            PyValueError::new_err(message)
        }
        Error::UnknownConnection(_) => UnknownConnectionError::new_err(message),
        Error::Join(_) => GroupLimitError::new_err(message),
        Error::Channel(_) => ChannelError::new_err(message),
        Error::Stopped => StoppedError::new_err(message),
    }
}

/// Something running that the package's `atexit` hook must stop.
trait Stoppable: Send + Sync {
    fn stop_detached(&self);
}

/// Running servers and clients, weakly: see the module doc.
static LIVE: Mutex<Vec<Weak<dyn Stoppable>>> = Mutex::new(Vec::new());

fn register_live(item: Weak<dyn Stoppable>) {
    let mut live = LIVE.lock();
    live.retain(|weak| weak.strong_count() > 0);
    live.push(item);
}

/// Waits until `done` returns true, detached, running signal handlers every
/// [`SIGNAL_CHECK`] (their exception, e.g. `KeyboardInterrupt`, ends the
/// wait). `done` gets how long it may block.
fn wait_interruptibly(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut done: impl FnMut(Duration) -> bool + Send,
) -> PyResult<bool> {
    loop {
        let step = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(py.detach(|| done(Duration::ZERO)));
                }
                left.min(SIGNAL_CHECK)
            }
            None => SIGNAL_CHECK,
        };
        if py.detach(|| done(step)) {
            return Ok(true);
        }
        py.check_signals()?;
    }
}

fn timeout_deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => {
            Ok(Some(Instant::now() + Duration::from_secs_f64(t)))
        }
        Some(t) => Err(PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds or None, not {t}"
        ))),
    }
}

/// `("host", port)`, as Python's socket module writes addresses.
fn address_tuple(addr: SocketAddr) -> (String, u16) {
    (addr.ip().to_string(), addr.port())
}

/// Checks a `host:port` argument up front, so a typo is a `ValueError`
/// naming the argument instead of an `OSError` at start.
fn check_address(name: &str, value: &str) -> PyResult<()> {
    let bad = || {
        PyValueError::new_err(format!(
            "{name} must be \"host:port\" (port 0 lets the OS choose), not {value:?}"
        ))
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// A group id from Python: a str, or an int naming the same group as its
/// decimal text (as clients may send `123` or `"123"`).
fn group_arg(group: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = group.cast::<PyString>() {
        return Ok(text.to_str()?.to_owned());
    }
    if group.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err("group must be str or int, not bool"));
    }
    if let Ok(number) = group.extract::<i64>() {
        return Ok(number.to_string());
    }
    Err(PyTypeError::new_err(format!(
        "group must be str or int, not {}",
        group.get_type().name()?
    )))
}

/// Connection ids to leave out, from any iterable of ints.
fn exclude_arg(exclude: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<u64>> {
    let Some(exclude) = exclude else {
        return Ok(Vec::new());
    };
    if exclude.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "exclude must be an iterable of connection ids, not str",
        ));
    }
    let mut ids = Vec::new();
    for item in exclude
        .try_iter()
        .map_err(|_| PyTypeError::new_err("exclude must be an iterable of connection ids (ints)"))?
    {
        ids.push(item?.extract::<u64>().map_err(|_| {
            PyTypeError::new_err("exclude must contain connection ids (non-negative ints)")
        })?);
    }
    Ok(ids)
}

fn text_arg<'a>(name: &str, value: &'a Bound<'_, PyAny>) -> PyResult<std::borrow::Cow<'a, str>> {
    match value.cast::<PyString>() {
        Ok(text) => text.to_cow(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be str, not {}",
            value.get_type().name()?
        ))),
    }
}

static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Encodes `data` as JSON text with Python's `json` module (what crosses
/// the channel protocol).
fn json_dumps(data: &Bound<'_, PyAny>) -> PyResult<String> {
    let dumps = JSON_DUMPS.import(data.py(), "json", "dumps")?;
    dumps.call1((data,))?.extract()
}

fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    JSON_LOADS.import(py, "json", "loads")?.call1((text,))
}

fn check_channel_callback(callback: &Bound<'_, PyAny>) -> PyResult<()> {
    if !callback.is_callable() {
        return Err(PyTypeError::new_err("callback must be callable"));
    }
    Ok(())
}

// ---------------------------------------------------------------- events

/// A client completed the websocket handshake.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
struct ConnectEvent {
    /// The connection's id, for actions.
    conn: u64,
    /// The client's `("host", port)`.
    peer: (String, u16),
    /// The request path, e.g. `"/chat"`.
    path: String,
    /// The query string without `?` (where tokens usually travel).
    query: String,
}

#[pymethods]
impl ConnectEvent {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str, &'static str) {
        ("conn", "peer", "path", "query")
    }

    fn __repr__(&self) -> String {
        format!(
            "ConnectEvent(conn={}, peer=({:?}, {}), path={:?}, query={:?})",
            self.conn, self.peer.0, self.peer.1, self.path, self.query
        )
    }
}

/// A client message for the host: `str` for a text frame, `bytes` for a
/// binary one.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
struct MessageEvent {
    /// Who sent it.
    conn: u64,
    /// What it sent.
    data: Py<PyAny>,
}

#[pymethods]
impl MessageEvent {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("conn", "data")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "MessageEvent(conn={}, data={})",
            self.conn,
            self.data.bind(py).repr()?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.data)
    }
}

/// A connection closed; it has already left all its groups.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
struct CloseEvent {
    /// Its id.
    conn: u64,
    /// The close code, `None` when the socket just ended.
    code: Option<u16>,
}

#[pymethods]
impl CloseEvent {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("conn", "code")
    }

    fn __repr__(&self) -> String {
        match self.code {
            Some(code) => format!("CloseEvent(conn={}, code={code})", self.conn),
            None => format!("CloseEvent(conn={}, code=None)", self.conn),
        }
    }
}

/// Data published on a channel this program subscribed to, decoded from
/// JSON.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
struct ChannelEvent {
    /// The channel (the seed calls it an event name).
    channel: String,
    /// The published value.
    data: Py<PyAny>,
}

#[pymethods]
impl ChannelEvent {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("channel", "data")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ChannelEvent(channel={:?}, data={})",
            self.channel,
            self.data.bind(py).repr()?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.data)
    }
}

/// Where a server listens.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
struct Addresses {
    /// The websocket listener, `("host", port)`.
    websocket: (String, u16),
    /// The embedded channel server, if any.
    channel: Option<(String, u16)>,
}

#[pymethods]
impl Addresses {
    fn __repr__(&self) -> String {
        let channel = match &self.channel {
            Some((host, port)) => format!("({host:?}, {port})"),
            None => "None".into(),
        };
        format!(
            "Addresses(websocket=({:?}, {}), channel={channel})",
            self.websocket.0, self.websocket.1
        )
    }
}

fn message_data<'py>(py: Python<'py>, payload: &Payload) -> Bound<'py, PyAny> {
    match payload {
        Payload::Text(text) => PyString::new(py, text).into_any(),
        Payload::Binary(bytes) => PyBytes::new(py, bytes).into_any(),
    }
}

/// A host event as the Python object `poll` returns.
fn event_object(py: Python<'_>, event: HostEvent) -> PyResult<Py<PyAny>> {
    Ok(match event {
        HostEvent::Connect {
            conn,
            peer,
            path,
            query,
        } => Py::new(
            py,
            ConnectEvent {
                conn,
                peer: address_tuple(peer),
                path,
                query,
            },
        )?
        .into_any(),
        HostEvent::Message { conn, payload } => Py::new(
            py,
            MessageEvent {
                conn,
                data: message_data(py, &payload).unbind(),
            },
        )?
        .into_any(),
        HostEvent::Close { conn, code } => Py::new(py, CloseEvent { conn, code })?.into_any(),
        HostEvent::Channel { channel, data } => Py::new(
            py,
            ChannelEvent {
                channel,
                data: json_loads(py, &data)?.unbind(),
            },
        )?
        .into_any(),
    })
}

// ---------------------------------------------------------------- server

/// The Python callables of a server. Shared with the dispatcher thread;
/// the mutex is held only to read or swap references, never while Python
/// code runs, so `__traverse__` and `__clear__` never wait on a callback.
#[derive(Default)]
struct Hooks {
    on_connect: Option<Py<PyAny>>,
    on_message: Option<Py<PyAny>>,
    on_close: Option<Py<PyAny>>,
    /// channel → callback, for `subscribe` (`None` with `events=True`:
    /// the data goes to `poll`); subscribed again at every start.
    channels: HashMap<String, Option<Py<PyAny>>>,
}

/// The references the dispatcher uses for one batch.
struct HookSnapshot {
    on_connect: Option<Py<PyAny>>,
    on_message: Option<Py<PyAny>>,
    on_close: Option<Py<PyAny>>,
}

/// What a server is doing; behind [`ServerCore::state`].
#[derive(Default)]
struct ServerState {
    /// The running core server; `None` before start and after stop.
    server: Option<crate::Server>,
    /// Its actions, cloned out for each call so no lock is held during one.
    handle: Option<NodeHandle>,
    /// The event queue in poll mode (`events=True`), kept after stop so a
    /// poller can drain it.
    events: Option<Arc<HostEvents>>,
    /// Where the last start listened.
    addresses: Option<crate::Addresses>,
    /// A start is in progress (the lock is not held while it binds).
    starting: bool,
}

/// A server's shared state: the Python object, the `atexit` list and
/// `serve_forever` all reach it.
#[derive(Default)]
struct ServerCore {
    state: Mutex<ServerState>,
    /// Signalled when the server stops, for `serve_forever`.
    stopped: Condvar,
}

impl ServerCore {
    /// Takes the running server out and stops it; the caller must not be
    /// attached to the interpreter (the dispatcher thread may need it to
    /// finish its batch).
    fn stop_detached(&self) {
        let server = {
            let mut state = self.state.lock();
            state.handle = None;
            state.server.take()
        };
        if let Some(server) = server {
            server.stop();
        }
        self.stopped.notify_all();
    }
}

impl Stoppable for ServerCore {
    fn stop_detached(&self) {
        ServerCore::stop_detached(self);
    }
}

/// A groupcast node: a websocket server whose clients join groups and send
/// to them, embedded in this process. See the package documentation.
#[pyclass(frozen, weakref, module = "groupcast._groupcast")]
struct Server {
    /// What `start` starts; fixed at construction.
    config: Config,
    /// `events=True`: events go to `poll` / `events()` instead of hooks.
    poll_mode: bool,
    /// The callbacks, shared with the dispatcher thread.
    hooks: Arc<Mutex<Hooks>>,
    core: Arc<ServerCore>,
}

impl Server {
    fn handle(&self) -> PyResult<NodeHandle> {
        self.core
            .state
            .lock()
            .handle
            .clone()
            .ok_or_else(|| StoppedError::new_err("the server is not running: call start() first"))
    }

    fn set_hook(
        &self,
        which: fn(&mut Hooks) -> &mut Option<Py<PyAny>>,
        name: &str,
        callback: Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "{name} needs a callable, not {}",
                callback.get_type().name()?
            )));
        }
        if self.poll_mode {
            return Err(PyValueError::new_err(format!(
                "this server was made with events=True: take events from poll() or \
                 events() instead of registering {name}"
            )));
        }
        let state = self.core.state.lock();
        if state.server.is_some() || state.starting {
            return Err(PyValueError::new_err(format!(
                "register {name} before start(): the hooks decide what the server asks the host"
            )));
        }
        let previous = which(&mut self.hooks.lock()).replace(callback.clone().unbind());
        drop(state);
        // Released outside the locks: its finalizer may call back in.
        drop(previous);
        Ok(callback.unbind())
    }

    /// The configuration for this start: which events the hooks need.
    fn start_config(&self) -> Config {
        let mut config = self.config.clone();
        let host = &mut config.host;
        let wants_bus = config.channel.is_some() || config.channel_listen.is_some();
        if self.poll_mode {
            host.connect_events = true;
            host.message_events = true;
            host.close_events = true;
        } else {
            let hooks = self.hooks.lock();
            host.approve_connections = hooks.on_connect.is_some();
            host.connect_events = hooks.on_connect.is_some();
            host.message_events = hooks.on_message.is_some();
            // Close events are cheap; with a channel bus they also give the
            // server the event queue that `subscribe` needs at any time.
            host.close_events = hooks.on_close.is_some() || wants_bus;
        }
        config
    }
}

/// `on_connect` refuses with exactly `False` (`None`, the result of a
/// function without `return`, admits).
fn is_false(value: &Bound<'_, PyAny>) -> bool {
    value.is_instance_of::<pyo3::types::PyBool>() && !value.is_truthy().unwrap_or(true)
}

/// Runs one batch of events on the dispatcher thread.
fn dispatch_batch(hooks: &Mutex<Hooks>, handle: &NodeHandle, batch: &mut Vec<HostEvent>) {
    // Close events nobody listens to are only there to keep the queue:
    // do not attach to the interpreter for them.
    let needs_python = {
        let hooks = hooks.lock();
        batch.iter().any(|event| match event {
            HostEvent::Close { .. } => hooks.on_close.is_some(),
            _ => true,
        })
    };
    if !needs_python {
        return;
    }
    Python::attach(|py| {
        let snapshot = {
            let hooks = hooks.lock();
            HookSnapshot {
                on_connect: hooks.on_connect.as_ref().map(|h| h.clone_ref(py)),
                on_message: hooks.on_message.as_ref().map(|h| h.clone_ref(py)),
                on_close: hooks.on_close.as_ref().map(|h| h.clone_ref(py)),
            }
        };
        for event in batch.drain(..) {
            match event {
                HostEvent::Connect {
                    conn,
                    peer,
                    path,
                    query,
                } => {
                    let Some(hook) = &snapshot.on_connect else {
                        // Cleared by the garbage collector: nobody decides.
                        let _ = handle.admit(conn);
                        continue;
                    };
                    let info = ConnectEvent {
                        conn,
                        peer: address_tuple(peer),
                        path,
                        query,
                    };
                    let verdict = Py::new(py, info).and_then(|info| hook.bind(py).call1((info,)));
                    let (code, reason) = match verdict {
                        Ok(result) if is_false(&result) => REFUSED,
                        Ok(_) => {
                            let _ = handle.admit(conn);
                            continue;
                        }
                        Err(error) => {
                            error.write_unraisable(py, Some(hook.bind(py)));
                            HOOK_FAILED
                        }
                    };
                    let _ = handle.close(conn, code, reason);
                }
                HostEvent::Message { conn, payload } => {
                    if let Some(hook) = &snapshot.on_message {
                        let data = message_data(py, &payload);
                        if let Err(error) = hook.bind(py).call1((conn, data)) {
                            error.write_unraisable(py, Some(hook.bind(py)));
                        }
                    }
                }
                HostEvent::Close { conn, code } => {
                    if let Some(hook) = &snapshot.on_close {
                        if let Err(error) = hook.bind(py).call1((conn, code)) {
                            error.write_unraisable(py, Some(hook.bind(py)));
                        }
                    }
                }
                HostEvent::Channel { channel, data } => {
                    let callback = hooks
                        .lock()
                        .channels
                        .get(&channel)
                        .and_then(|c| c.as_ref().map(|c| c.clone_ref(py)));
                    if let Some(callback) = callback {
                        let called =
                            json_loads(py, &data).and_then(|data| callback.bind(py).call1((data,)));
                        if let Err(error) = called {
                            error.write_unraisable(py, Some(callback.bind(py)));
                        }
                    }
                }
            }
        }
    });
}

/// A duration argument in seconds, checked.
fn positive_seconds(name: &str, seconds: f64) -> PyResult<Duration> {
    if seconds.is_finite() && seconds > 0.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(PyValueError::new_err(format!(
            "{name} must be a positive number of seconds, not {seconds}"
        )))
    }
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
    ) -> PyResult<Self> {
        check_address("listen", listen)?;
        if let Some(addr) = channel_listen {
            check_address("channel_listen", addr)?;
        }
        if let Some(addr) = channel {
            check_address("channel", addr)?;
        }
        let host_defaults = HostConfig::default();
        let approval_timeout = match approval_timeout {
            None => host_defaults.approval_timeout,
            Some(t) if t.is_finite() && t > 0.0 => Duration::from_secs_f64(t),
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "approval_timeout must be a positive number of seconds, not {t}"
                )));
            }
        };
        // Start from the defaults so fields added to the core keep their
        // default meaning here.
        let mut config = Config::local(listen);
        config.workers = workers;
        config.channel_listen = channel_listen.map(str::to_owned);
        config.channel = channel.map(str::to_owned);
        let limits = &mut config.limits;
        if let Some(value) = max_message_size {
            limits.max_message_size = value;
        }
        if let Some(value) = max_group_id_len {
            limits.max_group_id_len = value;
        }
        if let Some(value) = max_groups_per_connection {
            limits.max_groups_per_connection = value;
        }
        if let Some(value) = outbound_queue_bytes {
            limits.outbound_queue_bytes = value;
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
        for (name, value, field) in [
            ("ping_interval", ping_interval, &mut limits.ping_interval),
            ("idle_timeout", idle_timeout, &mut limits.idle_timeout),
            (
                "handshake_timeout",
                handshake_timeout,
                &mut limits.handshake_timeout,
            ),
            ("drain_timeout", drain_timeout, &mut limits.drain_timeout),
        ] {
            if let Some(seconds) = value {
                *field = positive_seconds(name, seconds)?;
            }
        }
        config.bus = bus.map(str::to_owned);
        config.channel_secret = channel_secret.map(str::to_owned);
        config.metrics_listen = metrics_listen.map(str::to_owned);
        config.host.builtin_commands = builtin_commands;
        if let Some(value) = queue_capacity {
            config.host.queue_capacity = value;
        }
        config.host.approval_timeout = approval_timeout;
        if approve_connections && !events {
            return Err(PyValueError::new_err(
                "approve_connections=True is for events=True; with hooks, registering \
                 on_connect holds each connection until it returns",
            ));
        }
        // Poll mode keeps it; hook mode derives it from on_connect at start.
        config.host.approve_connections = approve_connections;
        config.validate().map_err(to_py)?;
        Ok(Server {
            config,
            poll_mode: events,
            hooks: Arc::default(),
            core: Arc::default(),
        })
    }

    /// Registers `callback(conn_info)`, called for each new connection
    /// before it may talk; returning `False` refuses it (close code 1008).
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
            if state.server.is_some() || state.starting {
                return Ok(());
            }
            state.starting = true;
        }
        let config = self.start_config();
        let wants_events = config.host.wants_events();
        let poll_mode = self.poll_mode;
        let started = py.detach(|| crate::Server::start(config));
        let server = match started {
            Ok(server) => server,
            Err(error) => {
                self.core.state.lock().starting = false;
                return Err(to_py(error));
            }
        };
        let handle = server.handle().clone();
        let mut events = None;
        if poll_mode {
            events = handle.events().cloned();
        } else if wants_events {
            let hooks = self.hooks.clone();
            let dispatch_handle = handle.clone();
            if let Err(error) =
                server.dispatch(move |batch| dispatch_batch(&hooks, &dispatch_handle, batch))
            {
                py.detach(|| server.stop());
                self.core.state.lock().starting = false;
                return Err(to_py(error));
            }
        }
        // Channels subscribed before start.
        let channels: Vec<String> = self.hooks.lock().channels.keys().cloned().collect();
        for channel in channels {
            if let Err(error) = handle.channel_subscribe(&channel) {
                py.detach(|| server.stop());
                self.core.state.lock().starting = false;
                return Err(to_py(error));
            }
        }
        {
            let mut state = self.core.state.lock();
            state.addresses = Some(server.addresses());
            state.handle = Some(handle);
            state.events = events;
            state.server = Some(server);
            state.starting = false;
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
        self.core.state.lock().server.is_some()
    }

    /// Starts the server if needed and blocks until it is stopped (by
    /// `stop()` from a callback or another thread). Ctrl-C stops it and
    /// raises `KeyboardInterrupt`.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        self.start(py)?;
        let core = self.core.clone();
        let waited = wait_interruptibly(py, None, move |step| {
            let mut state = core.state.lock();
            if state.server.is_none() {
                return true;
            }
            core.stopped.wait_for(&mut state, step);
            state.server.is_none()
        });
        if waited.is_err() {
            self.stop(py);
        }
        waited.map(|_| ())
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
        let addresses = self
            .core
            .state
            .lock()
            .addresses
            .ok_or_else(|| StoppedError::new_err("the server has not been started"))?;
        Ok(Addresses {
            websocket: address_tuple(addresses.websocket),
            channel: addresses.channel.map(address_tuple),
        })
    }

    /// The websocket URL clients can use, e.g. `"ws://127.0.0.1:1234/"`.
    #[getter]
    fn url(&self) -> PyResult<String> {
        let websocket = self.addresses()?.websocket;
        let host = if websocket.0.contains(':') {
            format!("[{}]", websocket.0)
        } else {
            websocket.0
        };
        Ok(format!("ws://{host}:{}/", websocket.1))
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
            Ok(bytes) if !data.is_instance_of::<PyString>() => {
                handle.send_binary(conn, &bytes).map_err(to_py)
            }
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

    /// Lets a connection held for approval talk (`events=True,
    /// approve_connections=True`; refuse with `close` instead). With hooks,
    /// `on_connect` admits by returning.
    fn admit(&self, conn: u64) -> PyResult<()> {
        self.handle()?.admit(conn).map_err(to_py)
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
        Ok(address_tuple(
            self.handle()?.peer_addr(conn).map_err(to_py)?,
        ))
    }

    /// Open connections (0 when not running).
    fn connection_count(&self) -> usize {
        self.handle().map_or(0, |h| h.connection_count())
    }

    /// A snapshot of the server's counters, as a dict of ints: connections,
    /// groups, connections_opened, connections_refused, messages_in,
    /// bytes_in, messages_out, bytes_out, dropped_messages,
    /// slow_consumer_closes, heartbeat_timeouts, bus_reconnects,
    /// bus_dropped_publishes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = self.handle()?.stats();
        json_loads(py, &stats.to_json())
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
        if self.config.channel.is_none() && self.config.channel_listen.is_none() {
            return Err(ChannelError::new_err(
                "this server has no channel server: pass channel= or channel_listen=",
            ));
        }
        if channel.is_empty() {
            return Err(PyValueError::new_err("channel must not be empty"));
        }
        let handle = self.core.state.lock().handle.clone();
        let previous = self
            .hooks
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
        let removed = self.hooks.lock().channels.remove(channel);
        drop(removed);
        match self.core.state.lock().handle.clone() {
            Some(handle) => handle.channel_unsubscribe(channel).map_err(to_py),
            None => Ok(()),
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
            events.poll_into(&mut batch, Some(Duration::ZERO), max_events);
        } else {
            wait_interruptibly(py, deadline, |step| {
                events.poll_into(&mut batch, Some(step), max_events) > 0 || events.is_finished()
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
    fn finished(&self) -> PyResult<bool> {
        let state = self.core.state.lock();
        Ok(match &state.events {
            Some(events) => events.is_finished(),
            None => state.server.is_none(),
        })
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
        if let Some(hooks) = self.hooks.try_lock() {
            visit.call(&hooks.on_connect)?;
            visit.call(&hooks.on_message)?;
            visit.call(&hooks.on_close)?;
            for callback in hooks.channels.values() {
                visit.call(callback.as_ref())?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = std::mem::take(&mut *self.hooks.lock());
        drop(taken);
    }
}

impl Server {
    fn poll_events(&self) -> PyResult<Arc<HostEvents>> {
        if !self.poll_mode {
            return Err(PyValueError::new_err(
                "poll() needs a server made with events=True (this one uses hooks)",
            ));
        }
        self.core
            .state
            .lock()
            .events
            .clone()
            .ok_or_else(|| StoppedError::new_err("the server has not been started"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The last reference went away while running: stop, detached, since
        // the dispatcher thread may be waiting to attach to finish a batch.
        if self.core.state.lock().server.is_some() {
            let core = self.core.clone();
            Python::attach(|py| py.detach(move || core.stop_detached()));
        }
    }
}

// ------------------------------------------------------- channel server

/// A tokio runtime of a binding's own, with one worker thread (channel
/// traffic from Python is light) and its threads joined at shutdown.
fn small_runtime(name: &str) -> PyResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(|e| to_py(Error::Runtime(e)))
}

/// A running standalone channel server and its runtime.
struct ChannelServerRunning {
    runtime: tokio::runtime::Runtime,
    server: CoreChannelServer,
}

#[derive(Default)]
struct ChannelServerCore {
    running: Mutex<Option<ChannelServerRunning>>,
    stopped: Condvar,
}

impl Stoppable for ChannelServerCore {
    fn stop_detached(&self) {
        let running = self.running.lock().take();
        if let Some(ChannelServerRunning { runtime, server }) = running {
            runtime.block_on(server.stop());
            drop(server);
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        self.stopped.notify_all();
    }
}

/// The seed's `Channel\Server`: a pub/sub hub that groupcast nodes (and
/// `ChannelClient`s) connect to.
#[pyclass(frozen, module = "groupcast._groupcast")]
struct ChannelServer {
    listen: String,
    core: Arc<ChannelServerCore>,
    /// Kept after stop.
    address: Mutex<Option<SocketAddr>>,
}

#[pymethods]
impl ChannelServer {
    #[new]
    #[pyo3(signature = (listen = "127.0.0.1:2206"))]
    fn new(listen: &str) -> PyResult<Self> {
        check_address("listen", listen)?;
        Ok(ChannelServer {
            listen: listen.to_owned(),
            core: Arc::default(),
            address: Mutex::new(None),
        })
    }

    /// Binds and starts serving; returns once listening. Does nothing if
    /// running.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let listen = self.listen.clone();
        let core = self.core.clone();
        // Detached for the whole start, lock included: a thread attached to
        // the interpreter never holds this lock while waiting for it.
        let started = py.detach(move || -> PyResult<Option<SocketAddr>> {
            let mut running = core.running.lock();
            if running.is_some() {
                return Ok(None);
            }
            let runtime = small_runtime("groupcast-channel")?;
            let server = runtime
                .block_on(CoreChannelServer::bind(
                    &listen,
                    ChannelServerConfig::default(),
                ))
                .map_err(to_py)?;
            let address = server.local_addr();
            *running = Some(ChannelServerRunning { runtime, server });
            Ok(Some(address))
        })?;
        if let Some(address) = started {
            *self.address.lock() = Some(address);
            register_live(Arc::downgrade(&self.core) as Weak<dyn Stoppable>);
        }
        Ok(())
    }

    /// Closes every connection and joins the runtime's threads.
    fn stop(&self, py: Python<'_>) {
        let core = self.core.clone();
        py.detach(move || core.stop_detached());
    }

    /// Starts if needed and blocks until stopped; Ctrl-C stops it and
    /// raises `KeyboardInterrupt`.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        self.start(py)?;
        let core = self.core.clone();
        let waited = wait_interruptibly(py, None, move |step| {
            let mut running = core.running.lock();
            if running.is_none() {
                return true;
            }
            core.stopped.wait_for(&mut running, step);
            running.is_none()
        });
        if waited.is_err() {
            self.stop(py);
        }
        waited.map(|_| ())
    }

    /// Whether it is running.
    #[getter]
    fn running(&self) -> bool {
        self.core.running.lock().is_some()
    }

    /// Where it listens, `("host", port)` (after start).
    #[getter]
    fn address(&self) -> PyResult<(String, u16)> {
        self.address
            .lock()
            .map(address_tuple)
            .ok_or_else(|| StoppedError::new_err("the channel server has not been started"))
    }

    /// Connections subscribed to `channel` now.
    fn subscriber_count(&self, channel: &str) -> usize {
        self.core
            .running
            .lock()
            .as_ref()
            .map_or(0, |r| r.server.subscriber_count(channel))
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
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        if self.core.running.lock().is_some() {
            // Nothing in it needs the interpreter, but stopping blocks.
            let core = self.core.clone();
            Python::attach(|py| py.detach(move || core.stop_detached()));
        }
    }
}

// ------------------------------------------------------- channel client

/// A connected channel client: its runtime, the core client, and the host
/// thread that runs callbacks.
struct ChannelClientRunning {
    runtime: tokio::runtime::Runtime,
    client: CoreChannelClient,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    host_thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ChannelClientCore {
    running: Mutex<Option<ChannelClientRunning>>,
}

impl Stoppable for ChannelClientCore {
    fn stop_detached(&self) {
        let running = self.running.lock().take();
        if let Some(mut running) = running {
            running.shutdown.cancel();
            running.tasks.close();
            running.runtime.block_on(running.tasks.wait());
            // The event sender is gone with the task: the host thread ends
            // once it has handed over what was received.
            if let Some(thread) = running.host_thread.take() {
                if thread.thread().id() != thread::current().id() {
                    let _ = thread.join();
                }
            }
            drop(running.client);
            running.runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// The seed's `Channel\Client`: publishes to and hears from a channel
/// server, reconnecting by itself when it goes away. Callbacks run on a
/// thread of the client's own, one at a time.
#[pyclass(frozen, weakref, module = "groupcast._groupcast")]
struct ChannelClient {
    /// channel → callback; shared with the host thread (same locking rule as
    /// [`Hooks`]).
    callbacks: Arc<Mutex<HashMap<String, Py<PyAny>>>>,
    core: Arc<ChannelClientCore>,
}

impl ChannelClient {
    fn client(&self) -> PyResult<CoreChannelClient> {
        self.core
            .running
            .lock()
            .as_ref()
            .map(|r| r.client.clone())
            .ok_or_else(|| {
                StoppedError::new_err("the channel client is not connected: call connect() first")
            })
    }
}

/// The channel client's host thread: batches of events, one attach each.
fn channel_host_thread(
    mut events: tokio::sync::mpsc::UnboundedReceiver<CoreChannelEvent>,
    callbacks: Arc<Mutex<HashMap<String, Py<PyAny>>>>,
) {
    let mut batch = Vec::new();
    while let Some(first) = events.blocking_recv() {
        batch.push(first);
        while batch.len() < DEFAULT_MAX_EVENTS {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let attached = Python::try_attach(|py| {
            for event in batch.drain(..) {
                let callback = callbacks
                    .lock()
                    .get(&event.channel)
                    .map(|c| c.clone_ref(py));
                let Some(callback) = callback else { continue };
                let called = json_loads(py, event.data.get())
                    .and_then(|data| callback.bind(py).call1((data,)));
                if let Err(error) = called {
                    error.write_unraisable(py, Some(callback.bind(py)));
                }
            }
        });
        if attached.is_none() {
            return; // the interpreter is going away
        }
    }
}

#[pymethods]
impl ChannelClient {
    #[new]
    fn new() -> Self {
        ChannelClient {
            callbacks: Arc::default(),
            core: Arc::default(),
        }
    }

    /// Connects to the channel server at `address` (`"host:port"`) and
    /// waits up to `timeout` seconds for the connection; returns `self`.
    /// Once connected it stays so: it reconnects and resubscribes by itself.
    #[pyo3(signature = (address, timeout = 5.0))]
    fn connect<'py>(
        slf: Bound<'py, Self>,
        address: &str,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, Self>> {
        check_address("address", address)?;
        let py = slf.py();
        let this = slf.get();
        let deadline = timeout_deadline(timeout)?;
        let client = {
            let mut running = this.core.running.lock();
            if running.is_some() {
                return Err(PyValueError::new_err(
                    "this client is already connected: close() it first",
                ));
            }
            let runtime = small_runtime("groupcast-channel-client")?;
            let shutdown = CancellationToken::new();
            let tasks = TaskTracker::new();
            let (client, events) = {
                let _entered = runtime.enter();
                CoreChannelClient::connect(
                    address,
                    ChannelClientConfig::default(),
                    shutdown.clone(),
                    &tasks,
                )
            };
            for channel in this.callbacks.lock().keys() {
                let _ = client.subscribe(channel);
            }
            let callbacks = this.callbacks.clone();
            let host_thread = thread::Builder::new()
                .name("groupcast-channel-host".into())
                .spawn(move || channel_host_thread(events, callbacks))
                .map_err(|e| to_py(Error::Runtime(e)));
            let host_thread = match host_thread {
                Ok(thread) => thread,
                Err(error) => {
                    shutdown.cancel();
                    return Err(error);
                }
            };
            *running = Some(ChannelClientRunning {
                runtime,
                client: client.clone(),
                shutdown,
                tasks,
                host_thread: Some(host_thread),
            });
            client
        };
        register_live(Arc::downgrade(&this.core) as Weak<dyn Stoppable>);
        let connected = wait_interruptibly(py, deadline, |_| {
            // The client reconnects by itself; just look every step.
            let up = client.is_connected();
            if !up {
                thread::sleep(Duration::from_millis(5));
            }
            up
        });
        match connected {
            Ok(true) => Ok(slf),
            Ok(false) => {
                this.close(py);
                Err(PyTimeoutError::new_err(format!(
                    "cannot reach the channel server at {address}: not connected after {}s",
                    timeout.unwrap_or_default()
                )))
            }
            Err(error) => {
                this.close(py);
                Err(error)
            }
        }
    }

    /// Calls `callback(data)` for every value published on `channel` (one
    /// callback per channel; a second `on` replaces the first).
    fn on(&self, channel: &str, callback: Bound<'_, PyAny>) -> PyResult<()> {
        check_channel_callback(&callback)?;
        if channel.is_empty() {
            return Err(PyValueError::new_err("channel must not be empty"));
        }
        let previous = self
            .callbacks
            .lock()
            .insert(channel.to_owned(), callback.unbind());
        drop(previous); // outside the lock: its finalizer may call back in
        if let Some(running) = self.core.running.lock().as_ref() {
            running.client.subscribe(channel).map_err(to_py)?;
        }
        Ok(())
    }

    /// Stops receiving `channel`.
    fn unsubscribe(&self, channel: &str) -> PyResult<()> {
        let removed = self.callbacks.lock().remove(channel);
        drop(removed);
        if let Some(running) = self.core.running.lock().as_ref() {
            running.client.unsubscribe(channel).map_err(to_py)?;
        }
        Ok(())
    }

    /// Publishes `data` (anything `json.dumps` accepts) on `channel`; every
    /// subscriber gets it, this client included if it subscribed.
    fn publish(&self, channel: &str, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if channel.is_empty() {
            return Err(PyValueError::new_err("channel must not be empty"));
        }
        let client = self.client()?;
        let text = json_dumps(data)?;
        let raw = serde_json::value::RawValue::from_string(text)
            .map_err(|e| ChannelError::new_err(format!("data is not JSON: {e}")))?;
        client.publish(channel, &raw).map_err(to_py)
    }

    /// Whether the connection to the server is up now.
    #[getter]
    fn connected(&self) -> bool {
        self.core
            .running
            .lock()
            .as_ref()
            .is_some_and(|r| r.client.is_connected())
    }

    /// Disconnects and joins the client's threads. Safe from a callback
    /// and more than once.
    fn close(&self, py: Python<'_>) {
        let core = self.core.clone();
        py.detach(move || core.stop_detached());
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(callbacks) = self.callbacks.try_lock() {
            for callback in callbacks.values() {
                visit.call(callback)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = std::mem::take(&mut *self.callbacks.lock());
        drop(taken);
    }
}

impl Drop for ChannelClient {
    fn drop(&mut self) {
        if self.core.running.lock().is_some() {
            let core = self.core.clone();
            Python::attach(|py| py.detach(move || core.stop_detached()));
        }
    }
}

// ---------------------------------------------------------------- module

/// Runs the `groupcast` command line (`python -m groupcast ...`), detached
/// from the interpreter until it ends; returns the exit status.
#[pyfunction]
fn _cli(py: Python<'_>, args: Vec<String>) -> u8 {
    let code = py.detach(move || crate::cli::run(args));
    (0..=u8::MAX)
        .find(|n| ExitCode::from(*n) == code)
        .unwrap_or(1)
}

/// Stops every running server and client; the package calls it at exit,
/// before the interpreter finalizes.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    let live: Vec<_> = std::mem::take(&mut *LIVE.lock());
    py.detach(move || {
        for item in live.iter().filter_map(Weak::upgrade) {
            item.stop_detached();
        }
    });
}

#[pymodule(gil_used = true)]
mod _groupcast {
    #[pymodule_export]
    use super::{
        _cli, _shutdown, Addresses, ChannelClient, ChannelError, ChannelEvent, ChannelServer,
        CloseEvent, ConnectEvent, GroupLimitError, GroupcastError, MessageEvent, Server,
        StoppedError, UnknownConnectionError,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
