//! NodeCounters a node keeps about itself, readable from every host language and
//! as Prometheus text.
//!
//! NodeCounters are relaxed atomics bumped once per event or per fan-out (never
//! once per member), so counting costs nothing on the delivery path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The live counters, shared by a node's tasks.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) dropped_messages: AtomicU64,
    pub(crate) slow_consumer_closes: AtomicU64,
    pub(crate) heartbeat_timeouts: AtomicU64,
}

impl NodeCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A snapshot of a node's counters (the C ABI hands out this very struct as
/// `groupcast_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Connections open now.
    pub connections: u64,
    /// Groups with at least one local member now.
    pub groups: u64,
    /// Connections accepted since start.
    pub connections_opened: u64,
    /// Connections refused (connection limit, origin, host approval).
    pub connections_refused: u64,
    /// Client messages received.
    pub messages_in: u64,
    /// Bytes of client messages received.
    pub bytes_in: u64,
    /// Messages queued for clients (each member of a fan-out counts).
    pub messages_out: u64,
    /// Bytes of those messages.
    pub bytes_out: u64,
    /// Messages dropped for slow consumers (the `drop` policy).
    pub dropped_messages: u64,
    /// Connections closed for being too slow (the `close` policy).
    pub slow_consumer_closes: u64,
    /// Connections closed for not answering pings.
    pub heartbeat_timeouts: u64,
    /// Times the bus lost its connection and made it again.
    pub bus_reconnects: u64,
    /// Publishes to other nodes dropped while the bus was down.
    pub bus_dropped_publishes: u64,
}

impl Stats {
    pub(crate) fn read(counters: &NodeCounters) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections_opened: get(&counters.connections_opened),
            connections_refused: get(&counters.connections_refused),
            messages_in: get(&counters.messages_in),
            bytes_in: get(&counters.bytes_in),
            messages_out: get(&counters.messages_out),
            bytes_out: get(&counters.bytes_out),
            dropped_messages: get(&counters.dropped_messages),
            slow_consumer_closes: get(&counters.slow_consumer_closes),
            heartbeat_timeouts: get(&counters.heartbeat_timeouts),
            ..Stats::default()
        }
    }

    /// The snapshot as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The snapshot in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let gauges = [
            ("connections", "Connections open now.", self.connections),
            (
                "groups",
                "Groups with at least one local member.",
                self.groups,
            ),
        ];
        let counters = [
            (
                "connections_opened",
                "Connections accepted.",
                self.connections_opened,
            ),
            (
                "connections_refused",
                "Connections refused.",
                self.connections_refused,
            ),
            ("messages_in", "Client messages received.", self.messages_in),
            (
                "bytes_in",
                "Bytes of client messages received.",
                self.bytes_in,
            ),
            (
                "messages_out",
                "Messages queued for clients.",
                self.messages_out,
            ),
            (
                "bytes_out",
                "Bytes of messages queued for clients.",
                self.bytes_out,
            ),
            (
                "dropped_messages",
                "Messages dropped for slow consumers.",
                self.dropped_messages,
            ),
            (
                "slow_consumer_closes",
                "Connections closed for being too slow.",
                self.slow_consumer_closes,
            ),
            (
                "heartbeat_timeouts",
                "Connections closed for not answering pings.",
                self.heartbeat_timeouts,
            ),
            ("bus_reconnects", "Bus reconnections.", self.bus_reconnects),
            (
                "bus_dropped_publishes",
                "Publishes dropped while the bus was down.",
                self.bus_dropped_publishes,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in gauges {
            let _ = write!(
                out,
                "# HELP groupcast_{name} {help}\n# TYPE groupcast_{name} gauge\ngroupcast_{name} {value}\n"
            );
        }
        for (name, help, value) in counters {
            let _ = write!(
                out,
                "# HELP groupcast_{name}_total {help}\n# TYPE groupcast_{name}_total counter\ngroupcast_{name}_total {value}\n"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_counter_once() {
        let stats = Stats {
            connections: 3,
            messages_out: 42,
            ..Stats::default()
        };
        let text = stats.to_prometheus();
        assert!(text.contains("\ngroupcast_connections 3\n"));
        assert!(text.contains("\ngroupcast_messages_out_total 42\n"));
        assert_eq!(text.matches("# TYPE").count(), 13);
        let json: serde_json::Value = serde_json::from_str(&stats.to_json()).unwrap();
        assert_eq!(json["messages_out"], 42);
    }
}
