//! A node: the websocket listener, its connections, the registry and the
//! bus, running as tasks on a tokio runtime; and [`NodeHandle`], the actions
//! a host takes on it from any thread.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::next_connection;
use crate::bus::{Bus, BusContext};
use crate::channel::{ChannelHistoryConfig, ChannelServer, ChannelServerConfig};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::host::HostEvents;
use crate::presence::Presence;
use crate::registry::Registry;
use crate::stats::NodeCounters;
use crate::tls::ServerTls;

mod connection;
mod demo;
mod handle;
mod handshake;
mod heartbeat;
mod metrics;
mod positions;
mod presence;
mod state;
mod stream;
mod users;
mod writer;

pub use handle::{MAX_REFUSAL_BODY, NodeHandle};
pub(crate) use state::NodeState;

/// Where a started node listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The websocket listener.
    pub websocket: SocketAddr,
    /// The embedded channel server, if the node runs one.
    pub channel: Option<SocketAddr>,
    /// The Prometheus metrics endpoint, if asked for.
    pub metrics: Option<SocketAddr>,
}

/// A running node. Start it with [`Node::start`] inside a tokio runtime;
/// [`crate::Server`] runs one on a runtime of its own.
pub struct Node {
    /// Actions on the node.
    handle: NodeHandle,
    /// Observes the end of every task.
    tasks: TaskTracker,
    /// Where it listens.
    addresses: Addresses,
    /// The embedded channel server, stopped after the node's own tasks so
    /// the bus never sees it vanish first.
    channel_server: Option<ChannelServer>,
}

impl Node {
    /// Binds the listeners and starts serving on the current runtime.
    /// Returns once the node accepts connections (and, with an embedded
    /// channel server, once its bus is connected to it).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an inconsistent configuration, [`Error::Bind`]
    /// when an address cannot be bound.
    pub async fn start(config: Config) -> Result<Node> {
        config.validate()?;
        let limits = config.limits.clone();
        // Read before anything listens: a bad file is a start error that
        // names it.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(ServerTls::load(cert, key)?)),
            _ => None,
        };
        let channel_server = match &config.channel_listen {
            Some(addr) => {
                let server_config = ChannelServerConfig {
                    max_frame: limits.max_channel_frame,
                    secret: config.channel_secret.clone(),
                    tls_cert: config.channel_tls_cert.clone(),
                    tls_key: config.channel_tls_key.clone(),
                    // The cluster's group history, kept by the channel server.
                    history: limits.history_size.map(|size| ChannelHistoryConfig {
                        size,
                        ttl: limits.history_ttl,
                        max_bytes: limits.history_max_bytes,
                    }),
                    ..ChannelServerConfig::default()
                };
                Some(ChannelServer::bind(addr, server_config).await?)
            }
            None => None,
        };
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| Error::bind(&config.listen, e))?;
        let websocket = listener
            .local_addr()
            .map_err(|e| Error::bind(&config.listen, e))?;

        let metrics_listener = match &config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::bind(addr, e))?,
            ),
            None => None,
        };
        let metrics = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let interest = Bus::configured(&config).then(mpsc::unbounded_channel);
        let (interest_tx, interest_rx) = interest.unzip();
        let counters = Arc::new(NodeCounters::default());
        let node_id = RandomState::new().hash_one(websocket);
        let presence = config.presence.then(|| {
            Arc::new(Presence::new(
                node_id,
                config.presence_lease,
                counters.clone(),
            ))
        });
        let registry = Arc::new(
            Registry::new(limits.max_groups_per_connection, interest_tx)
                .with_presence(presence.clone(), counters.clone()),
        );
        // A single node keeps ids from 1; a node of a cluster puts its tag
        // in their high bits, so its connections can be reached from others.
        let tag = match Bus::configured(&config) {
            true => presence::node_tag(node_id),
            false => 0,
        };
        if tag != 0 {
            presence::subscribe_cluster(&registry, tag);
        }
        let host = match config.host.wants_events() {
            true => Some(HostEvents::new(config.host.queue_capacity).map_err(Error::Runtime)?),
            false => None,
        };
        let embedded_channel = channel_server.as_ref().map(|s| s.local_addr().to_string());
        let context = BusContext {
            node_id,
            registry: registry.clone(),
            counters: counters.clone(),
            interest: interest_rx,
            host: host.clone(),
            shutdown: &shutdown,
            tasks: &tasks,
        };
        let bus = Bus::start(&config, embedded_channel, context).await?;
        let history = positions::start_history(&limits, &bus, &counters, &shutdown, &tasks);
        let ws_config = WebSocketConfig::default()
            // tungstenite allocates its read buffer eagerly, per connection,
            // keeps it, and zero-fills it before every read: keep it small
            // (it grows for a large message, read in steps of this size).
            // The socket is read in larger syscalls through the worker's
            // scratch buffer (`stream.rs`), so this costs no syscalls, only
            // a copy per step. At 32 a short command leaves it at 68 bytes,
            // at 64 it left 128 (tungstenite reserves the payload's length
            // again even when all of it is in the buffer).
            .read_buffer_size(32)
            // Data frames bypass tungstenite's writer (see `crate::frame`);
            // the control frames it still writes go out at once.
            .write_buffer_size(0)
            .max_message_size(Some(limits.max_message_size))
            .max_frame_size(Some(limits.max_message_size));
        let state = Arc::new(NodeState {
            limits,
            registry,
            bus,
            ws_config,
            shutdown,
            host_config: config.host,
            demo_page: config.demo_page,
            host,
            stopped: AtomicBool::new(false),
            next_conn_id: AtomicU64::new(presence::first_conn_id(tag)),
            counters,
            open_sockets: AtomicUsize::new(0),
            pending: parking_lot::Mutex::default(),
            tls,
            channel_tls: channel_server.as_ref().and_then(ChannelServer::tls),
            channel_counters: channel_server.as_ref().map(ChannelServer::counters),
            node_tag: tag,
            history,
        });
        tasks.spawn(accept_loop(listener, state.clone(), tasks.clone()));
        tasks.spawn(report_slow_consumers(state.clone()));
        tasks.spawn(heartbeat::run(state.clone()));
        if let Some(presence) = presence.filter(|_| !matches!(state.bus, Bus::Local)) {
            tasks.spawn(presence::replicate(state.clone(), presence));
        }
        let handle = NodeHandle::new(state);
        if let Some(listener) = metrics_listener {
            let shutdown = handle.state().shutdown.clone();
            tasks.spawn(metrics::serve_metrics(
                listener,
                handle.clone(),
                shutdown,
                tasks.clone(),
            ));
        }
        let addresses = Addresses {
            websocket,
            channel: channel_server.as_ref().map(ChannelServer::local_addr),
            metrics,
        };
        let or_none = |addr: Option<SocketAddr>| addr.map_or("none".into(), |a| a.to_string());
        tracing::info!(
            %websocket,
            tls = handle.state().tls.is_some(),
            channel = %or_none(addresses.channel),
            metrics = %or_none(metrics),
            bus = handle.state().bus.kind(),
            "node listening"
        );
        Ok(Node {
            handle,
            tasks,
            addresses,
            channel_server,
        })
    }

    /// Where the node listens.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// A handle for actions, usable from any thread.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// The embedded channel server, if the node runs one.
    pub fn channel_server(&self) -> Option<&ChannelServer> {
        self.channel_server.as_ref()
    }

    /// Stops accepting, closes every client with 1001, and returns once every
    /// task of the node has ended. Calling it again does nothing.
    pub async fn stop(&self) {
        if !self.handle.state().stopped.swap(true, Ordering::AcqRel) {
            tracing::info!(websocket = %self.addresses.websocket, "stopping the node");
        }
        self.handle.state().shut_down();
        self.tasks.close();
        self.tasks.wait().await;
        if let Some(channel_server) = &self.channel_server {
            channel_server.stop().await;
        }
        // Every Close event is queued by now: let pollers drain and finish.
        if let Some(host) = &self.handle.state().host {
            host.close();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Dropped without stop: tell the tasks to end on their own.
        self.handle.state().stopped.store(true, Ordering::Release);
        self.handle.state().shut_down();
    }
}

/// How often closed slow consumers are summed up in the log.
const SLOW_CONSUMER_REPORT: Duration = Duration::from_secs(10);

/// Logs the slow consumers closed in each interval as one line, not one
/// per client: a burst of thousands must not flood the log.
async fn report_slow_consumers(state: Arc<NodeState>) {
    let mut ticks = tokio::time::interval(SLOW_CONSUMER_REPORT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = 0;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let closed = state.counters.slow_consumer_closes.load(Ordering::Relaxed);
        if closed > reported {
            tracing::warn!(
                closed = closed - reported,
                seconds = SLOW_CONSUMER_REPORT.as_secs(),
                "closed slow consumers (outbound queue over its bound) in the last interval"
            );
            reported = closed;
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<NodeState>, tasks: TaskTracker) {
    while let Some((stream, peer)) = next_connection(&listener, &state.shutdown).await {
        tasks.spawn(connection::serve_connection(state.clone(), stream, peer));
    }
}
