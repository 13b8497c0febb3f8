//! [`Server`]: a node on a runtime of its own, for hosts that are not async
//! (the binary, C, PHP, Python). `start` blocks until the node listens;
//! `stop` blocks until every task has ended and every runtime thread has
//! been joined.

use std::time::Duration;

use tokio::runtime::Runtime;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::host::{Dispatcher, HostEvent};
use crate::node::{Addresses, Node, NodeHandle};

/// A node running on a background tokio runtime.
///
/// Dropping a `Server` stops it. `start` and `stop` must not be called from
/// inside a tokio runtime (they block).
pub struct Server {
    /// The runtime and the node on it; `None` once stopped.
    running: Option<(Runtime, Node)>,
    /// Kept after stop so that addresses stay readable.
    addresses: Addresses,
    /// Actions keep working until stop (and fail cleanly after).
    handle: NodeHandle,
    /// The host thread running callbacks, if the host asked for one.
    dispatcher: Option<Dispatcher>,
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
        let runtime = builder.build().map_err(Error::Runtime)?;
        let node = runtime.block_on(Node::start(config))?;
        Ok(Server {
            addresses: node.addresses(),
            handle: node.handle(),
            running: Some((runtime, node)),
            dispatcher: None,
        })
    }

    /// Starts the host thread: `handler` gets every batch of events, in
    /// order, on that one thread (never on a tokio thread) until the server
    /// stops. The alternative is polling [`NodeHandle::events`] from a thread
    /// of the host's own.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the configuration asked for no events or a
    /// dispatcher already runs; [`Error::Runtime`] when the thread cannot
    /// start.
    pub fn dispatch(
        &mut self,
        handler: impl FnMut(&mut Vec<HostEvent>) + Send + 'static,
    ) -> Result<()> {
        if self.dispatcher.is_some() {
            return Err(Error::Config("a dispatcher already runs".into()));
        }
        let events = self
            .handle
            .events()
            .ok_or_else(|| Error::Config("the host configuration asks for no events".into()))?;
        self.dispatcher = Some(Dispatcher::spawn(events.clone(), handler).map_err(Error::Runtime)?);
        Ok(())
    }

    /// Where the server listens.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// A handle for actions, usable from any thread.
    pub fn handle(&self) -> &NodeHandle {
        &self.handle
    }

    /// The node, while running (for its channel server, for instance).
    pub fn node(&self) -> Option<&Node> {
        self.running.as_ref().map(|(_, node)| node)
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Runs a future on the server's runtime and waits for it.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] after stop.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> Result<F::Output> {
        let (runtime, _) = self.running.as_ref().ok_or(Error::Stopped)?;
        Ok(runtime.block_on(future))
    }

    /// Stops the node (clients get close code 1001), waits for every task,
    /// shuts the runtime down and joins its threads, then lets the host
    /// thread hand over the last events and joins it. A second call does
    /// nothing. Called from the host thread itself (inside a callback), it
    /// does not wait for that thread, which ends when the callback returns.
    pub fn stop(&mut self) {
        if let Some((runtime, node)) = self.running.take() {
            runtime.block_on(node.stop());
            drop(node);
            // Every task has ended; what is left are blocking-pool threads,
            // which exit at once.
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        if let Some(mut dispatcher) = self.dispatcher.take() {
            dispatcher.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
