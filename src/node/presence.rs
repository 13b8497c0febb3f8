//! A node's part in the cluster's presence and routing: its tag (the high
//! bits of its connection ids, so another node can route an action to one
//! of them), the reserved channels it subscribes to for its whole life, and
//! the task that replicates its presence share over the bus.
//!
//! Delays, all bounded: a change is published within [`FLUSH_DELAY`] (plus
//! the bus's latency: milliseconds on loopback); a heartbeat goes every
//! third of `presence_lease`; another node's share is checked every tenth
//! of the lease (at least every second), so a node that dies silently
//! leaves presence between one and 1.1 leases after its last heartbeat.
//! After the bus dropped messages (a choked link), the repair (this node's
//! whole share sent again, or every node's asked for) goes once the bus
//! has gone [`REPAIR_WAIT`] without dropping, at the latest a third of the
//! lease after the drop.

use std::sync::Arc;
use std::time::Duration;

use super::state::NodeState;
use crate::ids::ConnId;
use crate::presence::wire::Wire;
use crate::presence::{DEFAULT_MAX_UIDS, Presence};
use crate::protocol::{ClientCommand, error_reply};
use crate::registry::users::{cluster_channel, node_channel};
use crate::registry::{ConnectionEntry, Registry};

/// Bits of a connection id below the node's tag: 2^32 connections per
/// node's life.
const TAG_SHIFT: u32 = 32;
/// How long the task waits after a change before publishing, so a burst of
/// joins becomes one message.
const FLUSH_DELAY: Duration = Duration::from_millis(5);
/// How long the bus must go without dropping before this node sends its
/// share again (or asks for the others') after drops: a choked link is
/// given time to drain first.
const REPAIR_WAIT: Duration = Duration::from_millis(500);

pub(super) use crate::presence::node_tag;

/// The first connection id of the node tagged `tag`.
pub(super) fn first_conn_id(tag: u64) -> ConnId {
    (tag << TAG_SHIFT) | 1
}

/// The tag of the node that holds connection `conn`.
pub(super) fn tag_of(conn: ConnId) -> u64 {
    conn >> TAG_SHIFT
}

/// Subscribes a node with a bus to its own channel and the cluster's.
pub(super) fn subscribe_cluster(registry: &Registry, tag: u64) {
    registry.subscribe_reserved(node_channel(tag));
    registry.subscribe_reserved(cluster_channel());
}

/// Publishes a message to the cluster channel.
fn publish(state: &NodeState, message: &Wire) {
    state
        .bus
        .publish(cluster_channel().as_str(), &message.encode());
}

/// What the bus dropped so far: publications (a choked link, a full
/// publish bound) and received messages (not taken in time).
fn bus_drops(state: &NodeState) -> (u64, u64) {
    let mut stats = crate::stats::Stats::default();
    state.bus.add_stats(&mut stats);
    (stats.bus_dropped_publishes, stats.bus_dropped_events)
}

/// Publishes `messages`; whether the bus dropped a publication meanwhile.
/// The count is the bus's, so a group message dropped by another thread
/// at the same moment also says yes: the cost is a share sent once more.
fn publish_all(state: &NodeState, messages: &[Wire]) -> bool {
    if messages.is_empty() {
        return false;
    }
    let before = bus_drops(state).0;
    for message in messages {
        publish(state, message);
    }
    bus_drops(state).0 > before
}

/// A repair owed to the cluster after the bus dropped presence messages
/// (or may have). It waits for the drops to stop, so that what it sends
/// is not dropped in turn: due [`REPAIR_WAIT`] after it was needed, and
/// put off by as much while the bus's count of drops still rises, but
/// never past `max` after it was needed.
struct Repair {
    /// When it is due, while one is owed.
    at: Option<tokio::time::Instant>,
    /// When it was needed.
    since: tokio::time::Instant,
    /// The bus's count of drops when it was last looked at.
    drops: u64,
    max: Duration,
}

impl Repair {
    fn new(max: Duration) -> Self {
        Repair {
            at: None,
            since: tokio::time::Instant::now(),
            drops: 0,
            max,
        }
    }

    /// Something was dropped (the bus has counted `drops` so far).
    fn needed(&mut self, drops: u64) {
        if self.at.is_none() {
            let now = tokio::time::Instant::now();
            self.at = Some(now + REPAIR_WAIT);
            self.since = now;
            self.drops = drops;
        }
    }

    /// Waits until the repair is due (never, when none is owed).
    async fn due(&self) {
        match self.at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// At the due time, with the bus's count of drops now: whether to
    /// repair now, or later (the drops go on).
    fn now(&mut self, drops: u64) -> bool {
        let now = tokio::time::Instant::now();
        if drops > self.drops && now.duration_since(self.since) < self.max {
            self.drops = drops;
            self.at = Some(now + REPAIR_WAIT);
            return false;
        }
        self.at = None;
        true
    }
}

/// Replicates this node's share: its changes, the snapshots asked of it, a
/// heartbeat every third of the lease; and removes the shares of nodes
/// whose lease ended. Says goodbye when the node stops.
///
/// A link that stays up can still lose presence messages: publications
/// over the bus's bound while it is choked (a frozen channel server), and
/// received messages over the bound on those not yet read. Either is seen
/// in the bus's counters: this node then sends its whole share again once
/// the drops stop getting in the way ([`Repair`]), or asks every node for
/// theirs, rather than leaving the others' view wrong until a heartbeat
/// shows the gap.
pub(super) async fn replicate(state: Arc<NodeState>, presence: Arc<Presence>) {
    let lease = presence.lease();
    let mut heartbeat = tokio::time::interval(lease / 3);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry = tokio::time::interval(
        (lease / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)),
    );
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the bus reached the cluster at the last heartbeat: when it
    // comes back, what was published meanwhile is lost, so announce again.
    let mut was_connected = false;
    let mut resend = Repair::new(lease / 3);
    let mut ask = Repair::new(lease / 3);
    let mut events_dropped = bus_drops(&state).1;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                publish(&state, &Wire::Bye { n: presence.node_id() });
                return;
            }
            _ = presence.wanted() => {
                tokio::select! {
                    _ = state.shutdown.cancelled() => continue,
                    _ = tokio::time::sleep(FLUSH_DELAY) => {}
                }
                if publish_all(&state, &presence.take_outgoing()) {
                    resend.needed(bus_drops(&state).0);
                }
            }
            _ = state.bus.wait_connected(), if !was_connected => {
                was_connected = true;
                presence.announce();
            }
            _ = heartbeat.tick() => {
                if !state.bus.is_connected() {
                    was_connected = false;
                }
                // What is owed goes first, so the heartbeat's sequence
                // number is one the others have seen.
                let mut messages = presence.take_outgoing();
                messages.push(presence.heartbeat());
                if publish_all(&state, &messages) {
                    resend.needed(bus_drops(&state).0);
                }
            }
            _ = resend.due() => {
                if resend.now(bus_drops(&state).0) {
                    presence.resend();
                }
            }
            _ = ask.due() => {
                if ask.now(bus_drops(&state).1) {
                    presence.ask_everyone();
                }
            }
            _ = expiry.tick() => {
                state.registry.expire_presence();
                let dropped = bus_drops(&state).1;
                if dropped > events_dropped {
                    events_dropped = dropped;
                    ask.needed(dropped);
                }
            }
        }
    }
}

/// Runs a client's presence command; returns the reply, if any.
pub(super) fn client_command(
    state: &NodeState,
    conn: &Arc<ConnectionEntry>,
    command: ClientCommand,
) -> Option<String> {
    let presence = state.registry.presence();
    let refused = match presence {
        _ if !state.host_config.presence_command => {
            Some("the presence command is off on this server")
        }
        None => Some("presence is off on this server"),
        Some(_) => None,
    };
    match command {
        ClientCommand::AddGroupWithPresence(group) => {
            if let Some(why) = refused {
                return Some(error_reply("presence_off", why));
            }
            match state.registry.join(conn, &group) {
                Ok(_) => {
                    state.registry.watch(conn, &group);
                    None
                }
                Err(error) => Some(error_reply("join_refused", &error.to_string())),
            }
        }
        ClientCommand::Presence(group) => {
            if let Some(why) = refused {
                return Some(error_reply("presence_off", why));
            }
            let answer = presence?.group(group.as_str(), DEFAULT_MAX_UIDS);
            Some(
                serde_json::json!({
                    "type": "presence",
                    "group_id": group.as_str(),
                    "connections": answer.connections,
                    "users": answer.users,
                    "uids": answer.uids,
                    "truncated": answer.truncated,
                })
                .to_string(),
            )
        }
        _ => None,
    }
}
