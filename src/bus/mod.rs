//! The bus: how the nodes of a cluster hand each other group messages.
//!
//! A node publishes a group message once, on the group's own channel
//! (`groupcast:group:<id>` on a channel server, `groupcast:<id>` on Redis:
//! see `redis.rs`), and subscribes only to the channels of groups it
//! has local members in (interest-based routing): a node never receives
//! traffic for groups it cannot deliver. Local members are served directly
//! by the sending node; each publication carries the sender's node id so the
//! sender ignores its own echo, and every member gets a message exactly once.
//!
//! [`Bus`] starts itself from the configuration and answers its own status,
//! so the node never matches on which kind of bus it has.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channel::{ChannelClient, ChannelClientConfig};
use crate::config::{ChannelProtocol, Config, RedisTarget};
use crate::error::{Error, Result};
use crate::host::HostEvents;
use crate::registry::{Interest, Registry};
use crate::stats::{NodeCounters, Stats};

mod channel;
mod envelope;
mod positions;
mod redis;
mod redis_history;
mod remote;
mod workerman;

pub(crate) use envelope::Envelope;
pub use envelope::GROUP_CHANNEL_PREFIX;

use channel::run_channel_bus;
use envelope::group_channel;
use redis::RedisBus;
use remote::Remote;
pub use workerman::SEND_TO_GROUP;
use workerman::{SeedEvent, run_workerman_bus};

/// How long a node's start waits for its bus to reach the channel server it
/// embeds (a loopback connection: this only guards against a stuck runtime).
const EMBEDDED_BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// A node's way out to other nodes.
pub(crate) enum Bus {
    /// A single node: nothing leaves the process.
    Local,
    /// Nodes meet on a channel server.
    Channel {
        client: ChannelClient,
        node_id: u64,
        /// Group history kept by the channel server (`positions.rs`).
        positions: Option<Arc<positions::ClusterPositions>>,
    },
    /// Nodes meet on a Redis deployment (standalone or cluster).
    Redis(RedisBus),
    /// Nodes and the seed's PHP workers meet on a channel server, in the
    /// seed's layout (`channel_protocol` = `workerman`: `workerman.rs`).
    Workerman { client: ChannelClient, node_id: u64 },
}

/// What a bus needs from the node that starts it.
pub(crate) struct BusContext<'a> {
    /// This node's id, carried in every publication.
    pub(crate) node_id: u64,
    /// Where other nodes' messages are delivered.
    pub(crate) registry: Arc<Registry>,
    /// Where deliveries and drops are counted.
    pub(crate) counters: Arc<NodeCounters>,
    /// The registry's interest changes (present when the node has a bus).
    pub(crate) interest: Option<mpsc::UnboundedReceiver<Interest>>,
    /// The host's event queue, for the channels it subscribes to.
    pub(crate) host: Option<Arc<HostEvents>>,
    /// Ends the bus's tasks.
    pub(crate) shutdown: &'a CancellationToken,
    /// Tracks the bus's tasks, so the node's stop waits for them.
    pub(crate) tasks: &'a TaskTracker,
}

impl Bus {
    /// Whether `config` gives the node a bus (so the registry must report
    /// its interest changes).
    pub(crate) fn configured(config: &Config) -> bool {
        config.bus.is_some() || config.channel.is_some() || config.channel_listen.is_some()
    }

    /// Starts the bus `config` asks for on the current runtime.
    /// `embedded_channel` is the address of the channel server the node
    /// embeds, which the bus then joins (and waits for, briefly: it is on
    /// loopback). A remote channel server or Redis is reached in the
    /// background: a node starts even while they are down.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bus URL that cannot be used.
    pub(crate) async fn start(
        config: &Config,
        embedded_channel: Option<String>,
        context: BusContext<'_>,
    ) -> Result<Bus> {
        let Some(interest) = context.interest else {
            return Ok(Bus::Local);
        };
        let mut remote = Remote {
            node_id: context.node_id,
            registry: context.registry,
            counters: context.counters,
            positions: None,
        };
        if let Some(url) = &config.bus {
            let target = RedisTarget::parse(url).map_err(Error::Config)?;
            let history = config.limits.history_size.map(|size| {
                let (positions, requests) = positions::ClusterPositions::new(
                    context.node_id,
                    remote.registry.clone(),
                    remote.counters.clone(),
                );
                remote.positions = Some(positions);
                let ttl = config.limits.history_ttl;
                (redis_history::RedisHistory { size, ttl }, requests)
            });
            return Ok(Bus::Redis(RedisBus::start(
                target,
                remote,
                interest,
                history,
                context.shutdown.child_token(),
                context.tasks,
            )));
        }
        let embedded = embedded_channel.is_some();
        let Some(addr) = config.channel.clone().or(embedded_channel) else {
            return Ok(Bus::Local);
        };
        let client_config = ChannelClientConfig {
            max_frame: config.limits.max_channel_frame,
            secret: config.channel_secret.clone(),
            tls_ca: config.channel_ca.clone(),
            tls_server_name: config.channel_server_name.clone(),
            protocol: config.channel_protocol,
            ..ChannelClientConfig::default()
        };
        // A CA or server name that cannot be used is a start error, not a
        // link that never comes up.
        client_config.client_tls(&addr)?;
        let (positions, history_requests) = match config.limits.history_size {
            Some(_) => {
                let (positions, requests) = positions::ClusterPositions::new(
                    context.node_id,
                    remote.registry.clone(),
                    remote.counters.clone(),
                );
                remote.positions = Some(positions.clone());
                (Some(positions), Some(requests))
            }
            None => (None, None),
        };
        let (client, events) = ChannelClient::connect(
            addr,
            client_config,
            context.shutdown.child_token(),
            context.tasks,
        );
        let workerman = config.channel_protocol == ChannelProtocol::Workerman;
        if workerman {
            context.tasks.spawn(run_workerman_bus(
                client.clone(),
                remote,
                context.host,
                interest,
                events,
                context.shutdown.clone(),
            ));
        } else {
            context.tasks.spawn(run_channel_bus(
                client.clone(),
                remote,
                context.host,
                interest,
                events,
                context.shutdown.clone(),
                history_requests,
            ));
        }
        if embedded {
            let _ = tokio::time::timeout(EMBEDDED_BUS_TIMEOUT, client.wait_connected()).await;
        }
        let node_id = context.node_id;
        Ok(match workerman {
            true => Bus::Workerman { client, node_id },
            false => Bus::Channel {
                client,
                node_id,
                positions,
            },
        })
    }

    /// Hands a group message to the other nodes (the local members are
    /// served by the caller).
    pub(crate) fn publish(&self, group: &str, message: &str) {
        match self {
            Bus::Local => {}
            Bus::Channel {
                client, node_id, ..
            } => {
                let envelope = Envelope {
                    group_id: Cow::Borrowed(group),
                    message: Cow::Borrowed(message),
                    node: *node_id,
                };
                // Only fails once the node is stopping.
                let _ = client.publish_to_others(&group_channel(group), &envelope);
            }
            Bus::Redis(redis) => redis.publish(group, message),
            // The seed's workers know only groups: presence and routed
            // actions (reserved channels) stay off their `send_to_group`.
            Bus::Workerman { .. } if group.starts_with(crate::ids::RESERVED_PREFIX) => {}
            Bus::Workerman { client, node_id } => {
                let event = SeedEvent {
                    group_id: group,
                    message,
                    groupcast_node: workerman::node_tag(*node_id),
                };
                // Only fails once the node is stopping.
                let _ = client.publish_to_others(SEND_TO_GROUP, &event);
            }
        }
    }

    /// Group history kept by the channel server or Redis, when this node
    /// uses it.
    pub(crate) fn positions(&self) -> Option<&positions::ClusterPositions> {
        match self {
            Bus::Channel {
                positions: Some(positions),
                ..
            } => Some(positions),
            Bus::Redis(redis) => redis.positions(),
            _ => None,
        }
    }

    /// Adds the bus's own counters to a node's `stats`.
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        stats.bus_connected = u64::from(self.is_connected());
        // Numbered publishes that never left the node count with the bus's.
        let numbered_dropped = self.positions().map_or(0, |p| p.dropped_publishes());
        match self {
            Bus::Local => {}
            Bus::Channel { client, .. } | Bus::Workerman { client, .. } => {
                stats.bus_reconnects = client.reconnects();
                stats.bus_dropped_publishes = client.dropped_publishes();
                stats.bus_connect_attempts = client.connect_attempts();
                stats.bus_auth_failures = client.auth_failures();
                stats.bus_dropped_events = client.dropped_events();
                stats.bus_dropped_publishes += numbered_dropped;
            }
            Bus::Redis(redis) => {
                stats.bus_reconnects = redis.reconnects();
                stats.bus_dropped_publishes = redis.dropped_publishes();
                stats.bus_connect_attempts = redis.connect_attempts();
                stats.bus_dropped_events = redis.dropped_events();
                stats.bus_dropped_publishes += numbered_dropped;
            }
        }
    }

    /// Which bus this is, for health reports: `none`, `channel`, `redis` or
    /// `workerman`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Bus::Local => "none",
            Bus::Channel { .. } => "channel",
            Bus::Redis(_) => "redis",
            Bus::Workerman { .. } => "workerman",
        }
    }

    /// Why the bus is down, while it is.
    pub(crate) fn last_error(&self) -> Option<String> {
        match self {
            Bus::Local => None,
            Bus::Channel { client, .. } | Bus::Workerman { client, .. } => client.last_error(),
            Bus::Redis(redis) => redis.last_error(),
        }
    }

    /// Whether the node reaches the other nodes now (`true` for a node
    /// without a bus: it has nothing to wait for).
    pub(crate) fn is_connected(&self) -> bool {
        match self {
            Bus::Local => true,
            Bus::Channel { client, .. } | Bus::Workerman { client, .. } => client.is_connected(),
            Bus::Redis(redis) => redis.is_connected(),
        }
    }

    /// Waits until [`Bus::is_connected`].
    pub(crate) async fn wait_connected(&self) {
        match self {
            Bus::Local => {}
            Bus::Channel { client, .. } | Bus::Workerman { client, .. } => {
                client.wait_connected().await;
            }
            Bus::Redis(redis) => redis.wait_connected().await,
        }
    }

    /// The channel client, for the host's own channels.
    ///
    /// # Errors
    ///
    /// [`Error::Channel`] when the node has no channel server.
    pub(crate) fn channel_client(&self) -> Result<&ChannelClient> {
        match self {
            Bus::Channel { client, .. } | Bus::Workerman { client, .. } => Ok(client),
            Bus::Local => Err(Error::Channel(
                "this node has no channel server: set channel or channel_listen".into(),
            )),
            Bus::Redis(_) => Err(Error::Channel(
                "this node's bus is Redis: host channels need a channel server".into(),
            )),
        }
    }
}
