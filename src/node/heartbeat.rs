//! One ticker for every connection's heartbeat.
//!
//! Each connection used to own an `Interval`, whose boxed `Sleep` was 112
//! bytes of every idle connection (benches/FINDINGS.md). The node now runs
//! one task that, every `ping_interval`, tells each connection a ping is
//! due (a flag and a wake-up through its queue, see
//! [`crate::queue::Outbox::heartbeat`]); the connection's task sends the
//! ping, or closes the connection when the client has been silent for
//! `idle_timeout`. Connections are taken in [`SLICES`] slices by id, one
//! slice every `ping_interval / SLICES`: each connection is still pinged
//! once per interval, and a node with a million connections does not write
//! a million pings in one go.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::state::NodeState;

/// Slices the connections are pinged in, one after the other.
const SLICES: u64 = 16;

/// The shortest step between two slices (timers are not finer).
const MIN_STEP: Duration = Duration::from_millis(1);

/// Tells every connection of the node when a ping is due, until the node
/// stops.
pub(super) async fn run(state: Arc<NodeState>) {
    let step = (state.limits.ping_interval / SLICES as u32).max(MIN_STEP);
    let mut due = Instant::now() + step;
    let mut slice = 0;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let now = Instant::now();
        // Late (a busy or suspended machine): one round, then on from now,
        // rather than every round that was missed.
        if now.saturating_duration_since(due) > state.limits.ping_interval {
            due = now;
        }
        while due <= now {
            state.registry.for_each_connection(|conn| {
                if conn.id % SLICES == slice {
                    conn.outbox.heartbeat();
                }
            });
            slice = (slice + 1) % SLICES;
            due += step;
        }
    }
}
