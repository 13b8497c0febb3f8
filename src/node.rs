//! A node: the websocket listener, its connections, the registry and the
//! bus, running as tasks on a tokio runtime; and [`NodeHandle`], the actions
//! a host takes on it from any thread.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::next_connection;
use crate::bus::{Bus, run_channel_bus};
use crate::channel::{ChannelClient, ChannelClientConfig, ChannelServer, ChannelServerConfig};
use crate::config::{Config, Limits};
use crate::error::{Error, Result};
use crate::host::{HostConfig, HostEvents};
use crate::outbound::{Frames, Outbox, OutboxReceiver};
use crate::redis_bus::{RedisBus, RedisTarget};
use crate::registry::{ConnId, Connection, GroupId, Registry};
use crate::stats::{Counters, Stats};

/// How long a node's start waits for its bus to reach the channel server it
/// embeds (a loopback connection: this only guards against a stuck runtime).
const EMBEDDED_BUS_TIMEOUT: Duration = Duration::from_secs(5);

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

/// State shared by the node's tasks and handles.
pub(crate) struct Shared {
    /// Client limits.
    pub(crate) limits: Limits,
    /// Groups and connections.
    pub(crate) registry: Arc<Registry>,
    /// The way to other nodes.
    pub(crate) bus: Bus,
    /// tungstenite settings derived from `limits`.
    pub(crate) ws_config: WebSocketConfig,
    /// Cancelled when the node stops; every connection's token is a child.
    pub(crate) shutdown: CancellationToken,
    /// What the host takes part in.
    pub(crate) host_config: HostConfig,
    /// Events for the host, when it wants any.
    pub(crate) host: Option<Arc<HostEvents>>,
    /// Next connection id.
    next_conn_id: AtomicU64,
    /// Counters for [`NodeHandle::stats`].
    pub(crate) counters: Arc<Counters>,
    /// Sockets accepted and not yet finished (handshaking or open), for
    /// `max_connections`.
    pub(crate) open_sockets: AtomicUsize,
}

impl Shared {
    /// Counts `messages` queued messages of `len` bytes each.
    pub(crate) fn count_out(&self, messages: usize, len: usize) {
        Counters::add(&self.counters.messages_out, messages as u64);
        Counters::add(&self.counters.bytes_out, (messages * len) as u64);
    }

    /// Registers a new connection and returns it with its queue's receiver.
    pub(crate) fn open_connection(&self, peer: SocketAddr) -> (Arc<Connection>, OutboxReceiver) {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (outbox, receiver) = Outbox::new(
            self.limits.outbound_queue_bytes,
            self.limits.slow_consumer,
            self.counters.clone(),
            self.shutdown.child_token(),
        );
        Counters::add(&self.counters.connections_opened, 1);
        let conn = Connection::new(id, peer, outbox);
        self.registry.add_connection(conn.clone());
        (conn, receiver)
    }

    /// Delivers `text` to the group's local members (except `exclude`),
    /// encoded once for all of them, and hands it to the other nodes.
    /// Returns the number of local deliveries.
    pub(crate) fn send_to_group(&self, group: &str, text: &str, exclude: &[ConnId]) -> usize {
        let frame = crate::frame::text(text).into();
        let delivered = self.registry.fan_out(group, &frame, exclude);
        self.count_out(delivered, text.len());
        self.bus.publish(group, text);
        delivered
    }

    /// Delivers messages already encoded (and already handed to the bus) to
    /// the group's local members; `text_bytes` is their payloads' total
    /// length. Returns the number of members reached.
    pub(crate) fn deliver_local(&self, group: &str, frames: &Frames, text_bytes: usize) -> usize {
        let members = self.registry.fan_out(group, frames, &[]);
        Counters::add(
            &self.counters.messages_out,
            (members * frames.count()) as u64,
        );
        Counters::add(&self.counters.bytes_out, (members * text_bytes) as u64);
        members
    }
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
        let channel_server = match &config.channel_listen {
            Some(addr) => {
                let server_config = ChannelServerConfig {
                    max_frame: limits.max_channel_frame,
                    secret: config.channel_secret.clone(),
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
        let bus_addr = config
            .channel
            .clone()
            .or_else(|| channel_server.as_ref().map(|s| s.local_addr().to_string()));
        let (interest_tx, interest_rx) = match bus_addr.as_ref().or(config.bus.as_ref()) {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let registry = Arc::new(Registry::new(limits.max_groups_per_connection, interest_tx));
        let host = match config.host.wants_events() {
            true => Some(HostEvents::new(config.host.queue_capacity).map_err(Error::Runtime)?),
            false => None,
        };
        let bus = match (bus_addr, interest_rx) {
            (_, Some(interest_rx)) if config.bus.is_some() => {
                let url = config.bus.as_deref().unwrap_or_default();
                let target = RedisTarget::parse(url).map_err(Error::Config)?;
                let node_id = RandomState::new().hash_one(websocket);
                let (registry, shutdown) = (registry.clone(), shutdown.child_token());
                Bus::Redis(RedisBus::start(
                    target,
                    node_id,
                    registry,
                    interest_rx,
                    shutdown,
                    &tasks,
                ))
            }
            (Some(addr), Some(interest_rx)) => {
                let client_config = ChannelClientConfig {
                    max_frame: limits.max_channel_frame,
                    secret: config.channel_secret.clone(),
                    ..ChannelClientConfig::default()
                };
                let (client, events) =
                    ChannelClient::connect(addr, client_config, shutdown.child_token(), &tasks);
                let node_id = RandomState::new().hash_one(websocket);
                tasks.spawn(run_channel_bus(
                    client.clone(),
                    node_id,
                    registry.clone(),
                    host.clone(),
                    interest_rx,
                    events,
                    shutdown.clone(),
                ));
                if channel_server.is_some() {
                    let _ =
                        tokio::time::timeout(EMBEDDED_BUS_TIMEOUT, client.wait_connected()).await;
                }
                Bus::Channel { client, node_id }
            }
            _ => Bus::Local,
        };
        let ws_config = WebSocketConfig::default()
            // tungstenite allocates its read buffer eagerly, per connection,
            // and zero-fills it before every read: keep it small (it grows
            // for a large message, read in steps of this size).
            .read_buffer_size(512)
            // Data frames bypass tungstenite's writer (see `crate::frame`);
            // the control frames it still writes go out at once.
            .write_buffer_size(0)
            .max_message_size(Some(limits.max_message_size))
            .max_frame_size(Some(limits.max_message_size));
        let shared = Arc::new(Shared {
            limits,
            registry,
            bus,
            ws_config,
            shutdown,
            host_config: config.host,
            host,
            next_conn_id: AtomicU64::new(1),
            counters: Arc::default(),
            open_sockets: AtomicUsize::new(0),
        });
        tasks.spawn(accept_loop(listener, shared.clone(), tasks.clone()));
        let handle = NodeHandle { shared };
        if let Some(listener) = metrics_listener {
            let shutdown = handle.shared.shutdown.clone();
            tasks.spawn(crate::metrics::serve(
                listener,
                handle.clone(),
                shutdown,
                tasks.clone(),
            ));
        }
        Ok(Node {
            handle,
            tasks,
            addresses: Addresses {
                websocket,
                channel: channel_server.as_ref().map(ChannelServer::local_addr),
                metrics,
            },
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
        self.handle.shared.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        if let Some(channel_server) = &self.channel_server {
            channel_server.stop().await;
        }
        // Every Close event is queued by now: let pollers drain and finish.
        if let Some(host) = &self.handle.shared.host {
            host.close();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Dropped without stop: tell the tasks to end on their own.
        self.handle.shared.shutdown.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tasks: TaskTracker) {
    while let Some((stream, peer)) = next_connection(&listener, &shared.shutdown).await {
        tasks.spawn(crate::connection::serve(shared.clone(), stream, peer));
    }
}

/// Actions on a node, callable from any thread (they never block on the
/// network: sends are queued for each connection's writer). Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

impl NodeHandle {
    fn connection(&self, conn: ConnId) -> Result<Arc<Connection>> {
        self.shared
            .registry
            .connection(conn)
            .ok_or(Error::UnknownConnection(conn))
    }

    fn group_id(&self, group: &str) -> Result<GroupId> {
        GroupId::new(group, self.shared.limits.max_group_id_len).map_err(Error::InvalidGroup)
    }

    /// Sends a text message to one connection.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn send_text(&self, conn: ConnId, text: &str) -> Result<()> {
        self.send(conn, crate::frame::text(text), text.len())
    }

    /// Sends a binary message to one connection.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn send_binary(&self, conn: ConnId, data: &[u8]) -> Result<()> {
        self.send(conn, crate::frame::binary(data), data.len())
    }

    fn send(&self, conn: ConnId, frame: Bytes, len: usize) -> Result<()> {
        self.connection(conn)?
            .outbox
            .push(frame)
            .map_err(|_| Error::UnknownConnection(conn))?;
        self.shared.count_out(1, len);
        Ok(())
    }

    /// Closes a connection with `code` and `reason` after what is already
    /// queued for it has been sent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCloseCode`] for a code a server may not send,
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn close(&self, conn: ConnId, code: u16, reason: &str) -> Result<()> {
        if !close_code_allowed(code) {
            return Err(Error::InvalidCloseCode(code));
        }
        // A close frame's reason is limited to 123 bytes: cut on a char
        // boundary rather than fail.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.connection(conn)?
            .outbox
            .push_close(code, &reason[..end])
            .map_err(|_| Error::UnknownConnection(conn))
    }

    /// Puts a connection in a group. Returns `false` if it already was.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`], [`Error::InvalidGroup`], or
    /// [`Error::Join`] when the connection is in too many groups.
    pub fn join(&self, conn: ConnId, group: &str) -> Result<bool> {
        let group = self.group_id(group)?;
        let conn = self.connection(conn)?;
        Ok(self.shared.registry.join(&conn, &group)?)
    }

    /// Takes a connection out of a group. Returns `false` if it was not in it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn leave(&self, conn: ConnId, group: &str) -> Result<bool> {
        let conn = self.connection(conn)?;
        Ok(self.shared.registry.leave(&conn, group))
    }

    /// Sends a text message to every member of `group` on every node, except
    /// the local connections in `exclude`. Returns the number of local
    /// members it was queued for.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGroup`] for an empty or over-long group id.
    pub fn send_to_group(&self, group: &str, text: &str, exclude: &[ConnId]) -> Result<usize> {
        let group = self.group_id(group)?;
        Ok(self.shared.send_to_group(group.as_str(), text, exclude))
    }

    /// Sends a text message to every connection of this node, except those
    /// in `exclude`. Returns how many it was queued for.
    pub fn broadcast(&self, text: &str, exclude: &[ConnId]) -> usize {
        let frame = crate::frame::text(text);
        let mut queued = 0;
        self.shared.registry.for_each_connection(|conn| {
            if !exclude.contains(&conn.id) && conn.outbox.push(frame.clone()).is_ok() {
                queued += 1;
            }
        });
        self.shared.count_out(queued, text.len());
        queued
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        let shared = &self.shared;
        let mut stats = Stats::read(&shared.counters);
        stats.connections = shared.registry.connection_count() as u64;
        stats.groups = shared.registry.group_count() as u64;
        if let Bus::Channel { client, .. } = &shared.bus {
            stats.bus_reconnects = client.reconnects();
            stats.bus_dropped_publishes = client.dropped_publishes();
        }
        if let Bus::Redis(redis) = &shared.bus {
            stats.bus_reconnects = redis.reconnects();
            stats.bus_dropped_publishes = redis.dropped_publishes();
        }
        stats
    }

    /// Local members of `group`.
    pub fn group_size(&self, group: &str) -> usize {
        self.shared.registry.group_size(group)
    }

    /// Groups with at least one local member.
    pub fn groups(&self) -> Vec<String> {
        let groups = self.shared.registry.groups();
        groups.iter().map(|g| g.as_str().to_owned()).collect()
    }

    /// The groups a connection is in.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn connection_groups(&self, conn: ConnId) -> Result<Vec<String>> {
        let groups = self.connection(conn)?.groups();
        Ok(groups.iter().map(|g| g.as_str().to_owned()).collect())
    }

    /// The client address of a connection.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn peer_addr(&self, conn: ConnId) -> Result<SocketAddr> {
        Ok(self.connection(conn)?.peer)
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.connection_count()
    }

    /// Groups with at least one local member.
    pub fn group_count(&self) -> usize {
        self.shared.registry.group_count()
    }

    /// The host's event queue, when the configuration asked for events.
    pub fn events(&self) -> Option<&Arc<HostEvents>> {
        self.shared.host.as_ref()
    }

    /// Lets a connection held for approval (see
    /// [`HostConfig::approve_connections`]) start talking. To refuse it, call
    /// [`NodeHandle::close`] instead.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn admit(&self, conn: ConnId) -> Result<()> {
        let connection = self.connection(conn)?;
        if let Some(admit) = connection.admission.lock().take() {
            let _ = admit.send(());
        }
        Ok(())
    }

    fn channel_client(&self) -> Result<&ChannelClient> {
        match &self.shared.bus {
            Bus::Channel { client, .. } => Ok(client),
            Bus::Local => Err(Error::Channel(
                "this node has no channel server: set channel or channel_listen".into(),
            )),
            Bus::Redis(_) => Err(Error::Channel(
                "this node's bus is Redis: host channels need a channel server".into(),
            )),
        }
    }

    /// Publishes `data` (JSON text) on a channel, as the seed's
    /// `Channel\Client::publish`.
    ///
    /// # Errors
    ///
    /// [`Error::Channel`] when `data` is not JSON, the channel name is empty
    /// or reserved for groups, or the node has no channel server.
    pub fn channel_publish(&self, channel: &str, data: &str) -> Result<()> {
        check_channel_name(channel)?;
        let data = serde_json::value::RawValue::from_string(data.to_owned())
            .map_err(|e| Error::Channel(format!("data is not JSON: {e}")))?;
        self.channel_client()?.publish(channel, &data)
    }

    /// Subscribes the host to a channel, as the seed's `Channel\Client::on`;
    /// its events arrive as [`crate::HostEvent::Channel`].
    ///
    /// # Errors
    ///
    /// As [`NodeHandle::channel_publish`], and when the host takes no events.
    pub fn channel_subscribe(&self, channel: &str) -> Result<()> {
        check_channel_name(channel)?;
        if self.shared.host.is_none() {
            return Err(Error::Channel(
                "the host takes no events: enable them in HostConfig".into(),
            ));
        }
        self.channel_client()?.subscribe(channel)
    }

    /// Stops the host's subscription to a channel.
    ///
    /// # Errors
    ///
    /// As [`NodeHandle::channel_publish`].
    pub fn channel_unsubscribe(&self, channel: &str) -> Result<()> {
        check_channel_name(channel)?;
        self.channel_client()?.unsubscribe(channel)
    }

    /// Whether the node is connected to its channel server, or to Redis
    /// with every group that has members subscribed (`true` for a node
    /// without a bus: it has nothing to wait for).
    pub fn bus_connected(&self) -> bool {
        match &self.shared.bus {
            Bus::Local => true,
            Bus::Channel { client, .. } => client.is_connected(),
            Bus::Redis(redis) => redis.is_connected(),
        }
    }

    /// Waits until [`NodeHandle::bus_connected`].
    pub async fn wait_bus_connected(&self) {
        if let Bus::Channel { client, .. } = &self.shared.bus {
            client.wait_connected().await;
        }
        if let Bus::Redis(redis) = &self.shared.bus {
            redis.wait_connected().await;
        }
    }
}

/// Host channels must not be empty nor use the groups' prefix (that would
/// let a host bypass or disturb group routing).
fn check_channel_name(channel: &str) -> Result<()> {
    if channel.is_empty() {
        return Err(Error::Channel("channel name must not be empty".into()));
    }
    if channel.starts_with(crate::bus::GROUP_CHANNEL_PREFIX) {
        return Err(Error::Channel(format!(
            "channel names starting with {:?} are reserved for groups",
            crate::bus::GROUP_CHANNEL_PREFIX
        )));
    }
    Ok(())
}

/// Close codes a server may send (RFC 6455 §7.4): not the reserved ones nor
/// those that must never be on the wire.
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
