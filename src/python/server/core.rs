//! A Python `Server`'s lifecycle state, shared with the `atexit` list and
//! `serve_forever`, and the steps behind its methods: the running node's
//! handle, hook registration, the configuration of a start, the start
//! itself.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::super::hooks::{Callbacks, PyHooks};
use super::super::{Stoppable, StoppedError, SyncHook, check_not_async};
use super::Server;
use crate::{Config, HostEvents, NodeHandle};

/// What a server is doing; behind [`ServerCore::state`].
#[derive(Default)]
pub(super) struct ServerState {
    /// The running server; `None` before start and once stopped (so a
    /// stopped server holds no thread, socket or queue).
    pub(super) server: Option<crate::Server>,
    /// Where the last start listened, kept after stop.
    pub(super) addresses: Option<crate::Addresses>,
    /// The event queue with `events=True`, kept after stop so that a poller
    /// can drain it.
    pub(super) events: Option<Arc<HostEvents>>,
    /// A start is in progress (the lock is not held while it binds).
    pub(super) starting: bool,
}

impl ServerState {
    pub(super) fn running(&self) -> Option<&crate::Server> {
        self.server.as_ref()
    }
}

/// A server's shared state: the Python object, the `atexit` list and
/// `serve_forever` all reach it.
#[derive(Default)]
pub(super) struct ServerCore {
    pub(super) state: Mutex<ServerState>,
    /// Signalled when the server stops, for `serve_forever`.
    pub(super) stopped: Condvar,
}

impl Stoppable for ServerCore {
    /// The caller must not be attached to the interpreter: the host thread
    /// may need it to finish its batch.
    fn stop_detached(&self) {
        let server = self.state.lock().server.take();
        if let Some(server) = server {
            server.stop();
        }
        self.stopped.notify_all();
    }
}

impl Server {
    /// The running server's actions.
    pub(super) fn handle(&self) -> PyResult<NodeHandle> {
        self.core
            .state
            .lock()
            .running()
            .map(|server| server.handle().clone())
            .ok_or_else(|| StoppedError::new_err("the server is not running: call start() first"))
    }

    pub(super) fn set_hook(
        &self,
        which: fn(&mut Callbacks) -> &mut Option<Py<PyAny>>,
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
        check_not_async(name, &callback)?;
        // Stored wrapped: an awaitable it returns is closed and reported.
        let hook = SyncHook::wrap(callback.clone())?;
        let state = self.core.state.lock();
        if state.running().is_some() || state.starting {
            return Err(PyValueError::new_err(format!(
                "register {name} before start(): the hooks decide what the server asks the host"
            )));
        }
        let previous = which(&mut self.callbacks.lock()).replace(hook);
        drop(state);
        // Released outside the locks: its finalizer may call back in.
        drop(previous);
        Ok(callback.unbind())
    }

    /// Whether the server has a channel server (embedded or joined), which
    /// `subscribe` and `publish` need.
    pub(super) fn has_channel_server(&self) -> bool {
        self.config.channel.is_some() || self.config.channel_listen.is_some()
    }

    /// The configuration for this start: which events the hooks need.
    pub(super) fn start_config(&self) -> Config {
        let mut config = self.config.clone();
        let host = &mut config.host;
        // `subscribe` works at any time, whatever else the host takes.
        host.channel_events = self.has_channel_server();
        if self.poll_mode {
            host.connect_events = true;
            host.message_events = true;
            host.close_events = true;
        } else {
            let callbacks = self.callbacks.lock();
            host.approve_connections = callbacks.on_connect.is_some();
            host.connect_events = callbacks.on_connect.is_some();
            host.message_events = callbacks.on_message.is_some();
            host.close_events = callbacks.on_close.is_some();
        }
        config
    }

    /// Starts the core server and what feeds the callbacks; detached.
    pub(super) fn start_detached(&self, config: Config) -> crate::Result<crate::Server> {
        let hooked = !self.poll_mode && config.host.wants_events();
        let server = crate::Server::start(config)?;
        let callbacks = self.callbacks.clone();
        if hooked {
            server.run_hooks(PyHooks {
                callbacks: callbacks.clone(),
            })?;
        }
        // Channels subscribed before start.
        let channels: Vec<String> = callbacks.lock().channels.keys().cloned().collect();
        for channel in channels {
            server.handle().channel_subscribe(&channel)?;
        }
        Ok(server)
    }

    pub(super) fn poll_events(&self) -> PyResult<Arc<HostEvents>> {
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
