//! `ChannelServer` and `ChannelClient`: the seed's standalone pub/sub hub
//! and its client, for programs that are not a groupcast node.
//!
//! Both run on the core's background runtimes
//! ([`BackgroundChannelServer`], [`BackgroundChannelClient`]); what is
//! Python's here is the callables, the host thread that calls them (a core
//! [`Dispatcher`] on the client's event queue, one attach per batch), and
//! waits that Ctrl-C can interrupt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex};
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{
    ChannelError, Stoppable, StoppedError, address_tuple, call_channel_callback, check_address,
    check_channel_callback, check_channel_name, group_arg, json_dumps, register_live, text_arg,
    timeout_deadline, to_py, wait_interruptibly, with_stop_signals,
};
use crate::channel::{
    BackgroundChannelClient, BackgroundChannelServer, ChannelClientConfig, ChannelServerConfig,
};
use crate::{Dispatcher, Error, HostConfig, HostEvent};

/// The node id of group messages from outside the cluster
/// (`ChannelClient.publish_to_group`): reserved, no node has it.
const OUTSIDE_PUBLISHER: u64 = 0;

/// A secret is text; an empty one would be no secret at all.
fn check_secret(secret: Option<&str>) -> PyResult<()> {
    if secret == Some("") {
        return Err(PyValueError::new_err(
            "secret must not be empty (pass None for no secret)",
        ));
    }
    Ok(())
}

// ------------------------------------------------------- channel server

#[derive(Default)]
struct ChannelServerCore {
    /// The server of the last start, kept after stop (its address).
    server: Mutex<Option<Arc<BackgroundChannelServer>>>,
    /// Signalled when it stops, for `serve_forever`.
    stopped: Condvar,
}

impl ChannelServerCore {
    fn running(&self) -> bool {
        self.server.lock().as_ref().is_some_and(|s| s.is_running())
    }
}

impl Stoppable for ChannelServerCore {
    fn stop_detached(&self) {
        let server = self.server.lock().clone();
        if let Some(server) = server {
            server.stop();
        }
        self.stopped.notify_all();
    }
}

/// The seed's `Channel\Server`: a pub/sub hub that groupcast nodes (and
/// `ChannelClient`s) connect to.
#[pyclass(frozen, module = "groupcast._groupcast")]
pub(super) struct ChannelServer {
    listen: String,
    /// What every client must send first (`None`: no authentication).
    secret: Option<String>,
    /// Speak TLS with this certificate chain and key (PEM files).
    tls: (Option<PathBuf>, Option<PathBuf>),
    core: Arc<ChannelServerCore>,
}

#[pymethods]
impl ChannelServer {
    #[new]
    #[pyo3(signature = (listen = "127.0.0.1:2206", *, secret = None, tls_cert = None, tls_key = None))]
    fn new(
        listen: &str,
        secret: Option<String>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
    ) -> PyResult<Self> {
        check_address("listen", listen)?;
        check_secret(secret.as_deref())?;
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(PyValueError::new_err(
                "tls_cert and tls_key go together: set both, or neither",
            ));
        }
        Ok(ChannelServer {
            listen: listen.to_owned(),
            secret,
            tls: (tls_cert, tls_key),
            core: Arc::default(),
        })
    }

    /// Reads the TLS certificate and key files again: new connections get
    /// the new certificate, open ones stay. `ValueError` naming the file
    /// when it cannot be used (the certificate in use then stays).
    fn reload_tls(&self, py: Python<'_>) -> PyResult<()> {
        let server = self.core.server.lock().clone();
        let server = server
            .filter(|s| s.is_running())
            .ok_or_else(|| StoppedError::new_err("the channel server is not running"))?;
        py.detach(|| server.reload_tls()).map_err(to_py)
    }

    /// Binds and starts serving; returns once listening. Does nothing if
    /// running.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let listen = self.listen.as_str();
        let config = ChannelServerConfig {
            secret: self.secret.clone(),
            tls_cert: self.tls.0.clone(),
            tls_key: self.tls.1.clone(),
            ..ChannelServerConfig::default()
        };
        let core = &self.core;
        // Detached for the whole start, lock included: a thread attached to
        // the interpreter never holds this lock while waiting for it.
        let started = py.detach(|| -> crate::Result<bool> {
            let mut server = core.server.lock();
            if server.as_ref().is_some_and(|s| s.is_running()) {
                return Ok(false);
            }
            let started = BackgroundChannelServer::start(listen, config)?;
            *server = Some(Arc::new(started));
            Ok(true)
        });
        if started.map_err(to_py)? {
            register_live(Arc::downgrade(&self.core) as Weak<dyn Stoppable>);
        }
        Ok(())
    }

    /// Closes every connection and joins the runtime's threads.
    fn stop(&self, py: Python<'_>) {
        let core = self.core.clone();
        py.detach(move || core.stop_detached());
    }

    /// Starts if needed and blocks until stopped: by `stop()` or, in the
    /// main thread, by SIGINT (Ctrl-C) or SIGTERM, after which it returns
    /// normally.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        let on_signal = self.core.clone();
        with_stop_signals(
            py,
            move || on_signal.stop_detached(),
            || {
                self.start(py)?;
                let core = self.core.clone();
                let waited = wait_interruptibly(py, None, move |until| {
                    let mut server = core.server.lock();
                    let running = |s: &Option<Arc<BackgroundChannelServer>>| {
                        s.as_ref().is_some_and(|s| s.is_running())
                    };
                    if !running(&server) {
                        return true;
                    }
                    core.stopped.wait_until(&mut server, until);
                    !running(&server)
                });
                if waited.is_err() {
                    self.stop(py);
                }
                waited.map(|_| ())
            },
        )
    }

    /// Whether it is running.
    #[getter]
    fn running(&self) -> bool {
        self.core.running()
    }

    /// Where it listens, `("host", port)` (after start).
    #[getter]
    fn address(&self) -> PyResult<(String, u16)> {
        self.core
            .server
            .lock()
            .as_ref()
            .map(|s| address_tuple(s.local_addr()))
            .ok_or_else(|| StoppedError::new_err("the channel server has not been started"))
    }

    /// The server's counters, as a dict of ints (the keys of
    /// `Server.stats()`): `slow_consumer_closes`, `channel_refused`
    /// (connections closed for a bad body, a PHP serialized object say, or
    /// a missing or wrong secret), `channel_queue_dropped`,
    /// `channel_undeliverable`, `tls_handshake_failures`; the others are 0.
    /// Empty before start.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = self
            .core
            .server
            .lock()
            .as_ref()
            .map(|s| s.stats().to_json());
        super::json_loads(py, stats.as_deref().unwrap_or("{}"))
    }

    /// Connections subscribed to `channel` now.
    fn subscriber_count(&self, channel: &str) -> usize {
        self.core
            .server
            .lock()
            .as_ref()
            .map_or(0, |s| s.subscriber_count(channel))
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
        if self.core.running() {
            // Nothing in it needs the interpreter, but stopping blocks.
            let core = self.core.clone();
            Python::attach(|py| py.detach(move || core.stop_detached()));
        }
    }
}

// ------------------------------------------------------- channel client

/// channel → callback; shared with the host thread. The mutex is held only
/// to read or swap references, never while Python code runs.
type Callbacks = Arc<Mutex<HashMap<String, Py<PyAny>>>>;

/// A connected client and the host thread that runs its callbacks.
struct ClientRunning {
    client: Arc<BackgroundChannelClient>,
    host_thread: Dispatcher,
}

#[derive(Default)]
struct ChannelClientCore {
    running: Mutex<Option<ClientRunning>>,
}

impl Stoppable for ChannelClientCore {
    fn stop_detached(&self) {
        let running = self.running.lock().take();
        if let Some(mut running) = running {
            // Closing ends the queue: the host thread ends once it has
            // handed over what was received (joining it from itself, a
            // callback closing the client, returns at once).
            running.client.close();
            running.host_thread.join();
        }
    }
}

/// Runs one batch of channel data on the client's host thread.
fn run_callbacks(callbacks: &Callbacks, batch: &mut Vec<HostEvent>) {
    // An interpreter that is finalizing runs no callback: dropped.
    Python::try_attach(|py| {
        for event in batch.drain(..) {
            let HostEvent::Channel { channel, data } = event else {
                continue;
            };
            let callback = callbacks.lock().get(&channel).map(|c| c.bind(py).clone());
            if let Some(callback) = callback {
                call_channel_callback(py, &callback, &data);
            }
        }
    });
}

/// The seed's `Channel\Client`: publishes to and hears from a channel
/// server, reconnecting by itself when it goes away. Callbacks run on a
/// thread of the client's own, one at a time.
#[pyclass(frozen, weakref, module = "groupcast._groupcast")]
pub(super) struct ChannelClient {
    /// The channel server's secret, sent first on every connection.
    secret: Option<String>,
    /// Speak TLS, trusting this CA file, checking this server name.
    tls: (Option<PathBuf>, Option<String>),
    callbacks: Callbacks,
    core: Arc<ChannelClientCore>,
}

impl ChannelClient {
    fn client(&self) -> PyResult<Arc<BackgroundChannelClient>> {
        self.core
            .running
            .lock()
            .as_ref()
            .map(|r| r.client.clone())
            .ok_or_else(|| {
                StoppedError::new_err("the channel client is not connected: call connect() first")
            })
    }

    /// Starts the client, its subscriptions and its host thread.
    /// Runs detached (the errors it makes need no interpreter).
    fn open(&self, address: &str) -> PyResult<Arc<BackgroundChannelClient>> {
        let mut running = self.core.running.lock();
        if running.is_some() {
            return Err(PyValueError::new_err(
                "this client is already connected: close() it first",
            ));
        }
        let client = BackgroundChannelClient::connect(
            address,
            ChannelClientConfig {
                secret: self.secret.clone(),
                tls_ca: self.tls.0.clone(),
                tls_server_name: self.tls.1.clone(),
                ..ChannelClientConfig::default()
            },
            HostConfig::default().queue_capacity,
        )
        .map_err(to_py)?;
        let client = Arc::new(client);
        for channel in self.callbacks.lock().keys() {
            let _ = client.client().subscribe(channel);
        }
        let callbacks = self.callbacks.clone();
        let host_thread = Dispatcher::spawn(client.events().clone(), move |batch| {
            run_callbacks(&callbacks, batch)
        })
        .map_err(|error| to_py(Error::Runtime(error)))?;
        *running = Some(ClientRunning {
            client: client.clone(),
            host_thread,
        });
        Ok(client)
    }
}

#[pymethods]
impl ChannelClient {
    #[new]
    #[pyo3(signature = (*, secret = None, tls_ca = None, tls_server_name = None))]
    fn new(
        secret: Option<String>,
        tls_ca: Option<PathBuf>,
        tls_server_name: Option<String>,
    ) -> PyResult<Self> {
        check_secret(secret.as_deref())?;
        Ok(ChannelClient {
            secret,
            tls: (tls_ca, tls_server_name),
            callbacks: Arc::default(),
            core: Arc::default(),
        })
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
        // A client that failed to start is dropped (and closed) detached.
        let client = py.detach(|| this.open(address))?;
        register_live(Arc::downgrade(&this.core) as Weak<dyn Stoppable>);
        let connected = wait_interruptibly(py, deadline, |until| {
            client.wait_connected(until.saturating_duration_since(std::time::Instant::now()))
        });
        let refused = client.client().auth_failures() > 0;
        drop(client);
        match connected {
            Ok(true) => Ok(slf),
            Ok(false) => {
                this.close(py);
                let why = match refused {
                    true => "it refused the secret",
                    false => "not connected",
                };
                Err(PyTimeoutError::new_err(format!(
                    "cannot reach the channel server at {address}: {why} after {}s",
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
        check_channel_name(channel)?;
        let previous = self
            .callbacks
            .lock()
            .insert(channel.to_owned(), callback.unbind());
        drop(previous); // outside the lock: its finalizer may call back in
        if let Ok(client) = self.client() {
            client.client().subscribe(channel).map_err(to_py)?;
        }
        Ok(())
    }

    /// Stops receiving `channel`.
    fn unsubscribe(&self, channel: &str) -> PyResult<()> {
        let removed = self.callbacks.lock().remove(channel);
        drop(removed);
        if let Ok(client) = self.client() {
            client.client().unsubscribe(channel).map_err(to_py)?;
        }
        Ok(())
    }

    /// Publishes `data` (anything `json.dumps` accepts) on `channel`; every
    /// subscriber gets it, this client included if it subscribed.
    fn publish(&self, channel: &str, data: &Bound<'_, PyAny>) -> PyResult<()> {
        check_channel_name(channel)?;
        let client = self.client()?;
        let text = json_dumps(data)?;
        let raw = serde_json::value::RawValue::from_string(text)
            .map_err(|e| ChannelError::new_err(format!("data is not JSON: {e}")))?;
        client.client().publish(channel, &raw).map_err(to_py)
    }

    /// Sends `message` (text) to every member of `group` on every node of
    /// the cluster behind the channel server, as a node's `send_to_group`
    /// does. It travels as a node's group message from the reserved node id
    /// 0, which no node has (nodes ignore their own id's messages; theirs
    /// are random 64-bit hashes), so every node delivers it.
    fn publish_to_group(
        &self,
        group: &Bound<'_, PyAny>,
        message: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let group = group_arg(group)?;
        crate::ids::GroupId::new(group.as_str(), crate::Limits::default().max_group_id_len)
            .map_err(|why| to_py(Error::InvalidGroup(format!("group id {why}"))))?;
        let message = text_arg("message", message)?;
        let client = self.client()?;
        let envelope = crate::bus::Envelope {
            group_id: group.as_str().into(),
            message,
            node: OUTSIDE_PUBLISHER,
        };
        let text = serde_json::to_string(&envelope)
            .map_err(|e| ChannelError::new_err(format!("cannot encode the message: {e}")))?;
        let raw = serde_json::value::RawValue::from_string(text)
            .map_err(|e| ChannelError::new_err(format!("cannot encode the message: {e}")))?;
        let channel = format!("{}{group}", crate::bus::GROUP_CHANNEL_PREFIX);
        client.client().publish(&channel, &raw).map_err(to_py)
    }

    /// Whether the connection to the server is up now.
    #[getter]
    fn connected(&self) -> bool {
        self.client().is_ok_and(|c| c.is_connected())
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
