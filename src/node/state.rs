//! A node's state, shared by its tasks and handles: limits, registry, bus,
//! host queue and counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::{HostConfig, Limits};
use crate::host::{HostEvents, Verdict};
use crate::ids::ConnId;
use crate::queue::{Frames, Outbox, OutboxReceiver};
use crate::registry::{ConnectionEntry, Registry};
use crate::stats::NodeCounters;
use crate::tls::ServerTls;

/// State shared by the node's tasks and handles.
pub(crate) struct NodeState {
    /// Client limits.
    pub(crate) limits: Limits,
    /// Groups and connections.
    pub(crate) registry: Arc<Registry>,
    /// The way to other nodes.
    pub(crate) bus: Bus,
    /// tungstenite settings derived from `limits`.
    pub(crate) ws_config: WebSocketConfig,
    /// Cancelled when the node stops (see [`Self::shut_down`]).
    pub(crate) shutdown: CancellationToken,
    /// What the host takes part in.
    pub(crate) host_config: HostConfig,
    /// Answer plain HTTP requests with the demo page (`Config::demo_page`).
    pub(crate) demo_page: bool,
    /// Events for the host, when it wants any.
    pub(crate) host: Option<Arc<HostEvents>>,
    /// Set when the node stops: actions fail with `Error::Stopped` after.
    pub(crate) stopped: AtomicBool,
    /// Next connection id.
    pub(crate) next_conn_id: AtomicU64,
    /// Counters for `NodeHandle::stats`.
    pub(crate) counters: Arc<NodeCounters>,
    /// Sockets accepted and not yet finished (handshaking or open), for
    /// `max_connections`.
    pub(crate) open_sockets: AtomicUsize,
    /// Connections held before their websocket upgrade for the host's
    /// verdict, by id. A plain mutex, never held across `.await`: actions
    /// take an entry out, the connection task removes its own when it
    /// stops waiting.
    pub(crate) pending: Mutex<HashMap<ConnId, Pending>>,
    /// TLS for new connections (`wss://`), when configured; reloadable.
    pub(crate) tls: Option<Arc<ServerTls>>,
    /// The embedded channel server's TLS, reloaded with `tls`.
    pub(crate) channel_tls: Option<Arc<ServerTls>>,
    /// The embedded channel server's counters (refusals, queue drops), for
    /// `NodeHandle::stats`.
    pub(crate) channel_counters: Option<Arc<NodeCounters>>,
    /// This node's tag, the high bits of its connection ids: another node
    /// routes an action for one of them to this node's channel.
    pub(crate) node_tag: u64,
    /// Group history (`Limits::history_size`); `None` when off, so that
    /// groups without it cost nothing (see `node/positions.rs`).
    pub(crate) history: Option<Arc<crate::history::History>>,
}

/// A connection waiting for the host's verdict before its upgrade.
pub(crate) struct Pending {
    /// Where the verdict goes; the connection task waits on the other end.
    pub(crate) verdict: oneshot::Sender<Verdict>,
    /// What the client offered, to check an admission's choice against.
    pub(crate) subprotocols: Vec<String>,
}

impl NodeState {
    /// Counts `messages` queued messages of `len` bytes each.
    pub(crate) fn count_out(&self, messages: usize, len: usize) {
        self.counters.count_out(messages, messages * len);
    }

    /// A new connection id.
    pub(crate) fn next_id(&self) -> ConnId {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a new connection (under `id`, from [`Self::next_id`]) and
    /// returns it with its queue's receiver.
    pub(crate) fn open_connection(
        &self,
        id: ConnId,
        peer: SocketAddr,
    ) -> (Arc<ConnectionEntry>, OutboxReceiver) {
        let (outbox, receiver) = Outbox::for_connection(
            self.limits.outbound_queue_bytes,
            self.limits.slow_consumer,
            self.counters.clone(),
        );
        NodeCounters::add(&self.counters.connections_opened, 1);
        let conn = ConnectionEntry::new(id, peer, outbox);
        self.registry.add_connection(conn.clone());
        // Registered after `shut_down` went through the registry: closed
        // here. (Before, `shut_down` finds it: the registry's lock orders
        // the two.)
        if self.shutdown.is_cancelled() {
            conn.outbox.terminate();
        }
        (conn, receiver)
    }

    /// Tells every task of the node to end, and every connection to close
    /// with 1001 after sending what is queued for it.
    pub(crate) fn shut_down(&self) {
        self.shutdown.cancel();
        self.registry
            .for_each_connection(|conn| conn.outbox.terminate());
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
    pub(crate) fn fan_out_run(&self, group: &str, frames: &Frames, text_bytes: usize) -> usize {
        let members = self.registry.fan_out(group, frames, &[]);
        self.counters
            .count_out(members * frames.count(), members * text_bytes);
        members
    }
}
