//! [`Server`]: a node on a runtime of its own, for hosts that are not async
//! (the binary, C, PHP, Python). `start` blocks until the node listens;
//! `stop` blocks until every task has ended and every runtime thread has
//! been joined.
//!
//! Every method takes `&self` and is safe from any thread, the host thread
//! included: a callback may stop the server it is called by. What a host
//! binding needs of a running server (a running flag, stop from a callback,
//! actions refused once stopped) is here, once.

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Runtime;

use crate::channel::background::off_runtime;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::host::{Dispatcher, FAILED_STATUS, Hooks, HostEvent, Verdict, route};
use crate::node::{Addresses, Node, NodeHandle};

/// A node running on a background tokio runtime.
///
/// Dropping a `Server` stops it. `start` and `stop` block; called from
/// inside a tokio runtime they wait on a thread of their own rather than
/// panic. `block_on` must not be called from inside a runtime.
pub struct Server {
    /// The runtime and the node on it; `None` once stopped. Locked only to
    /// take or look, never while waiting, so a stop from the host thread
    /// never waits for another stop that waits for the host thread.
    running: Mutex<Option<(Runtime, Node)>>,
    /// Kept after stop so that addresses stay readable.
    addresses: Addresses,
    /// Actions keep working until stop (and fail with `Error::Stopped`
    /// after).
    handle: NodeHandle,
    /// The host thread running callbacks, if the host asked for one.
    dispatcher: Mutex<Option<Dispatcher>>,
}

impl Server {
    /// Starts a runtime with `config.workers` threads and a node on it;
    /// returns once the node listens.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] when the threads cannot be started, otherwise what
    /// [`Node::start`] returns.
    pub fn start(config: Config) -> Result<Server> {
        config.validate()?;
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all().thread_name("groupcast-worker");
        if let Some(workers) = config.workers {
            builder.worker_threads(workers);
        }
        let (runtime, node) = off_runtime(move || {
            let runtime = builder.build().map_err(Error::Runtime)?;
            let node = runtime.block_on(Node::start(config))?;
            Ok::<_, Error>((runtime, node))
        })?;
        Ok(Server {
            addresses: node.addresses(),
            handle: node.handle(),
            running: Mutex::new(Some((runtime, node))),
            dispatcher: Mutex::new(None),
        })
    }

    /// Starts the host thread: `handler` gets every batch of events, in
    /// order, on that one thread (never on a tokio thread) until the server
    /// stops. The alternatives are [`Server::run_hooks`] (callbacks per
    /// kind of event) and polling [`NodeHandle::events`] from a thread of
    /// the host's own.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the configuration asked for no events or a
    /// dispatcher already runs; [`Error::Stopped`] after stop;
    /// [`Error::Runtime`] when the thread cannot start.
    pub fn dispatch(
        &self,
        handler: impl FnMut(&mut Vec<HostEvent>) + Send + 'static,
    ) -> Result<()> {
        let mut dispatcher = self.dispatcher.lock();
        if dispatcher.is_some() {
            return Err(Error::Config("a dispatcher already runs".into()));
        }
        if !self.is_running() {
            return Err(Error::Stopped);
        }
        let events = self
            .handle
            .events()
            .ok_or_else(|| Error::Config("the host configuration asks for no events".into()))?;
        *dispatcher = Some(Dispatcher::spawn(events.clone(), handler).map_err(Error::Runtime)?);
        Ok(())
    }

    /// Runs the host's callbacks on the host thread: each batch of events
    /// enters the host once ([`Hooks::batch`]), each event goes to the
    /// handler method of its kind, and a connect verdict admits or refuses
    /// the connection held before its upgrade.
    ///
    /// # Errors
    ///
    /// As [`Server::dispatch`].
    pub fn run_hooks(&self, mut hooks: impl Hooks) -> Result<()> {
        let node = self.handle.clone();
        // A connection that went (or was decided on from the callback
        // itself: the first verdict wins) is no error here. A verdict the
        // node rejects (a subprotocol not offered, a status out of range)
        // falls back to plain admission or to the failure's 500, so the
        // client never waits for the approval timeout.
        let mut verdict = move |conn, verdict| match verdict {
            Verdict::Admit { subprotocol: None } => {
                let _ = node.admit(conn);
            }
            Verdict::Admit {
                subprotocol: Some(protocol),
            } => {
                if let Err(Error::Config(_)) = node.admit_with_subprotocol(conn, &protocol) {
                    let _ = node.admit(conn);
                }
            }
            Verdict::Refuse { status, body } => {
                if let Err(Error::Config(_)) = node.refuse(conn, status, &body) {
                    let _ = node.refuse(conn, FAILED_STATUS, "");
                }
            }
            Verdict::Failed => {
                let _ = node.refuse(conn, FAILED_STATUS, "");
            }
        };
        self.dispatch(move |batch| {
            hooks.batch(&mut |handler| route(batch, handler, &mut verdict));
            // Whatever the host did not take (it could not enter) is dropped.
            batch.clear();
        })
    }

    /// Where the server listens.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// A handle for actions, usable from any thread.
    pub fn handle(&self) -> &NodeHandle {
        &self.handle
    }

    /// Reads the TLS certificate and key again; see
    /// [`NodeHandle::reload_tls`].
    ///
    /// # Errors
    ///
    /// As [`NodeHandle::reload_tls`].
    pub fn reload_tls(&self) -> Result<()> {
        self.handle.reload_tls()
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Runs a future on the server's runtime and waits for it.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] after stop.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output> {
        let runtime = match &*self.running.lock() {
            Some((runtime, _)) => runtime.handle().clone(),
            None => return Err(Error::Stopped),
        };
        Ok(runtime.block_on(future))
    }

    /// Runs `f` with the node while the server runs (for its embedded
    /// channel server, for instance).
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] after stop.
    pub fn with_node<R>(&self, f: impl FnOnce(&Node) -> R) -> Result<R> {
        match &*self.running.lock() {
            Some((_, node)) => Ok(f(node)),
            None => Err(Error::Stopped),
        }
    }

    /// Stops the node (clients get close code 1001), waits for every task,
    /// shuts the runtime down and joins its threads, then lets the host
    /// thread hand over the last events and joins it. Returns `false` when
    /// the server was already stopped (or another thread is stopping it).
    /// Called from the host thread itself (inside a callback), it does not
    /// wait for that thread, which ends when the callback returns.
    ///
    /// Inside a tokio runtime (a `Server` dropped in async code) the waiting
    /// is done on a thread of its own, so it never panics.
    pub fn stop(&self) -> bool {
        let running = self.running.lock().take();
        let Some((runtime, node)) = running else {
            return false;
        };
        off_runtime(move || {
            runtime.block_on(node.stop());
            drop(node);
            // Every task has ended; what is left are blocking-pool threads,
            // which exit at once.
            runtime.shutdown_timeout(Duration::from_secs(5));
        });
        let dispatcher = self.dispatcher.lock().take();
        if let Some(mut dispatcher) = dispatcher {
            dispatcher.join();
        }
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
