//! A standalone channel server or client on a runtime of its own, for
//! callers that are not async: the `groupcast channel` command, Python's
//! `ChannelServer` / `ChannelClient`, and C's `groupcast_channel_*`.
//!
//! Like [`crate::Server`], every method takes `&self` and is safe from any
//! thread; `stop` / `close` return once every task and runtime thread has
//! ended. A client's events go into a [`HostEvents`] queue, so hosts take
//! them the way they take a node's: by polling, or on a host thread.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    ChannelClient, ChannelClientConfig, ChannelEvents, ChannelServer, ChannelServerConfig,
};
use crate::error::{Error, Result};
use crate::host::{HostEvent, HostEvents};

/// Runs `f`, which blocks on a runtime of groupcast's own, where blocking
/// is allowed: on this thread, or, when this thread is itself inside a
/// tokio runtime (a `Server` dropped in `#[tokio::test]`, say), on a thread
/// of its own that this one waits for. Tokio refuses to block inside a
/// runtime with a panic; waiting for a plain thread is only slow.
pub(crate) fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Channel traffic of a standalone server or client is light next to a
/// node's: one worker thread.
fn small_runtime(name: &str) -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(Error::Runtime)
}

/// A channel server (the seed's `Channel\Server`) on a runtime of its own.
pub struct BackgroundChannelServer {
    /// The runtime and the server; `None` once stopped.
    running: Mutex<Option<(Runtime, ChannelServer)>>,
    /// Kept after stop.
    local_addr: SocketAddr,
    /// The server's counters, readable after stop.
    counters: Arc<crate::stats::NodeCounters>,
}

impl BackgroundChannelServer {
    /// Binds `listen` (`host:port`) and serves; returns once listening.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] when the runtime cannot start, otherwise what
    /// [`ChannelServer::bind`] returns.
    pub fn start(listen: &str, config: ChannelServerConfig) -> Result<Self> {
        crate::config::check_address("listen", listen)?;
        let (runtime, server) = off_runtime(move || {
            let runtime = small_runtime("groupcast-channel")?;
            let server = runtime.block_on(ChannelServer::bind(listen, config))?;
            Ok::<_, Error>((runtime, server))
        })?;
        Ok(BackgroundChannelServer {
            local_addr: server.local_addr(),
            counters: server.counters(),
            running: Mutex::new(Some((runtime, server))),
        })
    }

    /// Where it listens (kept after stop).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters (see [`ChannelServer::stats`]); readable
    /// after stop.
    pub fn stats(&self) -> crate::stats::Stats {
        crate::stats::Stats::read(&self.counters)
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Connections subscribed to `channel` now (0 once stopped).
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.running
            .lock()
            .as_ref()
            .map_or(0, |(_, server)| server.subscriber_count(channel))
    }

    /// Reads the TLS certificate and key again; see
    /// [`ChannelServer::reload_tls`].
    ///
    /// # Errors
    ///
    /// As [`ChannelServer::reload_tls`]; [`Error::Stopped`] after stop.
    pub fn reload_tls(&self) -> Result<()> {
        match &*self.running.lock() {
            Some((_, server)) => server.reload_tls(),
            None => Err(Error::Stopped),
        }
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

    /// Closes every connection and joins the runtime's threads. Returns
    /// `false` when it was already stopped.
    pub fn stop(&self) -> bool {
        let running = self.running.lock().take();
        let Some((runtime, server)) = running else {
            return false;
        };
        off_runtime(move || {
            runtime.block_on(server.stop());
            drop(server);
            runtime.shutdown_timeout(Duration::from_secs(5));
        });
        true
    }
}

impl Drop for BackgroundChannelServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running client's runtime and tasks.
struct ClientRunning {
    runtime: Runtime,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A channel client (the seed's `Channel\Client`) on a runtime of its own:
/// it reconnects and resubscribes by itself, and the data of subscribed
/// channels arrives in [`BackgroundChannelClient::events`] as
/// [`HostEvent::Channel`].
pub struct BackgroundChannelClient {
    client: ChannelClient,
    events: Arc<HostEvents>,
    /// `None` once closed.
    running: Mutex<Option<ClientRunning>>,
}

impl BackgroundChannelClient {
    /// Starts connecting to `addr` (`host:port`) and returns at once (see
    /// [`BackgroundChannelClient::wait_connected`]). At most
    /// `queue_capacity` events wait for the host; the client stops reading
    /// from the server while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a malformed address or a zero capacity,
    /// [`Error::Runtime`] when the runtime cannot start.
    pub fn connect(addr: &str, config: ChannelClientConfig, queue_capacity: usize) -> Result<Self> {
        crate::config::check_address("address", addr)?;
        if queue_capacity == 0 {
            return Err(Error::Config("queue_capacity must be at least 1".into()));
        }
        config.client_tls(addr)?;
        let runtime = small_runtime("groupcast-channel-client")?;
        let events = HostEvents::new(queue_capacity).map_err(Error::Runtime)?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let client = {
            let _entered = runtime.enter();
            let (client, received) = ChannelClient::connect(addr, config, shutdown.clone(), &tasks);
            tasks.spawn(forward(received, events.clone(), shutdown.clone()));
            client
        };
        Ok(BackgroundChannelClient {
            client,
            events,
            running: Mutex::new(Some(ClientRunning {
                runtime,
                shutdown,
                tasks,
            })),
        })
    }

    /// The client, for publishing and subscribing (any thread).
    pub fn client(&self) -> &ChannelClient {
        &self.client
    }

    /// The queue of [`HostEvent::Channel`] events; finished once closed.
    pub fn events(&self) -> &Arc<HostEvents> {
        &self.events
    }

    /// Whether the connection to the server is up now.
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Waits up to `timeout` for the connection; `true` once it is up.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        // The connection task reconnects by itself: look every few ms
        // (this thread is the host's, not the runtime's).
        while !self.client.is_connected() {
            if Instant::now() >= deadline || !self.is_running() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Whether it has not been closed.
    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Disconnects, ends every task and joins the runtime's threads; the
    /// event queue is then closed (what was received can still be taken).
    /// Returns `false` when already closed.
    pub fn close(&self) -> bool {
        let running = self.running.lock().take();
        let Some(running) = running else {
            return false;
        };
        running.shutdown.cancel();
        off_runtime(move || {
            running.tasks.close();
            running.runtime.block_on(running.tasks.wait());
            running.runtime.shutdown_timeout(Duration::from_secs(5));
        });
        self.events.close();
        true
    }
}

impl Drop for BackgroundChannelClient {
    fn drop(&mut self) {
        self.close();
    }
}

/// Most events moved to the host's queue at once.
const FORWARD_BATCH: usize = 256;

/// Moves what the client receives into the host's queue until `shutdown`.
async fn forward(
    mut received: ChannelEvents,
    events: Arc<HostEvents>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(FORWARD_BATCH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            taken = received.recv_many(&mut batch, FORWARD_BATCH) => {
                if taken == 0 {
                    return;
                }
                for event in batch.drain(..) {
                    let event = HostEvent::Channel {
                        channel: event.channel,
                        data: event.data.get().to_owned(),
                    };
                    events.push(event, &shutdown).await;
                }
            }
        }
    }
}
