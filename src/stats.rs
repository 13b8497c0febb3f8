//! Counters a node keeps about itself, readable from every host language and
//! as Prometheus text.
//!
//! Counters are relaxed atomics bumped once per event or per fan-out (never
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
    pub(crate) host_dropped_events: AtomicU64,
    pub(crate) tls_handshake_failures: AtomicU64,
    /// Channel server: connections closed for a bad body or a missing or
    /// wrong secret.
    pub(crate) channel_refused: AtomicU64,
    /// Channel server: work-queue items dropped over the bound in bytes.
    pub(crate) channel_queue_dropped: AtomicU64,
    /// Channel server: deliveries skipped because the data has no form in
    /// the subscriber's dialect (a PHP byte string that is not UTF-8, or a
    /// NaN float, for a JSON subscriber).
    pub(crate) channel_undeliverable: AtomicU64,
    pub(crate) presence_resyncs: AtomicU64,
    pub(crate) presence_dropped_entries: AtomicU64,
    pub(crate) presence_expired_nodes: AtomicU64,
    pub(crate) presence_coalesced_events: AtomicU64,
    pub(crate) remote_actions_failed: AtomicU64,
    /// Group history (issue 17): messages evicted by the node's byte bound.
    pub(crate) history_evictions: AtomicU64,
    /// Joins with `since` answered `recovered: true`.
    pub(crate) history_recovered: AtomicU64,
    /// Joins with `since` answered `recovered: false`.
    pub(crate) history_not_recovered: AtomicU64,
}

impl NodeCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `messages` queued for clients, `bytes` of payload in all:
    /// the one place local and remote deliveries are counted.
    pub(crate) fn count_out(&self, messages: usize, bytes: usize) {
        Self::add(&self.messages_out, messages as u64);
        Self::add(&self.bytes_out, bytes as u64);
    }
}

/// Whether a node serves and reaches its cluster: what `GET /health` on
/// the metrics listener answers (200 when [`Health::ok`], 503 otherwise).
/// A node that lost its bus is not healthy: its clients would miss every
/// other node's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `"ok"`, or `"unavailable"` (bus down, or the node stopped).
    pub status: &'static str,
    /// `"none"` (a single node), `"connected"` or `"disconnected"`.
    pub bus: &'static str,
    /// Why the node is unavailable; absent when it is ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Connections open now.
    pub connections: u64,
}

impl Health {
    /// Whether the node serves and reaches the other nodes.
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }

    /// As JSON text, e.g. `{"status":"ok","bus":"connected","connections":3}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
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
    /// Publishes to other nodes dropped: the bus was down, or its bound in
    /// bytes was reached (a slow or frozen channel server, Redis).
    pub bus_dropped_publishes: u64,
    /// 1 while the bus reaches the other nodes (always 1 without a bus).
    pub bus_connected: u64,
    /// Connections to the bus tried, successful or not.
    pub bus_connect_attempts: u64,
    /// Times the channel server refused this node's secret.
    pub bus_auth_failures: u64,
    /// Messages from the bus dropped because the node had not taken the
    /// earlier ones (its bound in bytes was reached).
    pub bus_dropped_events: u64,
    /// Events for the host dropped because its queue was full (channel
    /// data: group delivery never waits for the host).
    pub host_dropped_events: u64,
    /// TLS handshakes that failed (a client that does not trust the
    /// certificate, plain HTTP or ws:// to a TLS port, a timeout).
    pub tls_handshake_failures: u64,
    /// Channel server (embedded or alone): connections closed for a bad
    /// body (not JSON nor PHP plain data: a serialized object, say) or a
    /// missing or wrong secret.
    pub channel_refused: u64,
    /// Channel server: work-queue items dropped (over `queue_bytes`).
    pub channel_queue_dropped: u64,
    /// Channel server: deliveries skipped because the data has no form in
    /// the subscriber's dialect (non-UTF-8 PHP string for a JSON client).
    pub channel_undeliverable: u64,
    /// Snapshots of another node's presence asked for after a gap in its
    /// messages (a lost publication, a late start).
    pub presence_resyncs: u64,
    /// Presence entries of other nodes dropped: over the bound on what a
    /// node keeps of the others.
    pub presence_dropped_entries: u64,
    /// Other nodes whose presence share was removed when its lease ended
    /// (died without saying goodbye).
    pub presence_expired_nodes: u64,
    /// Presence events replaced by one `presence_changed` event (a burst
    /// for one group).
    pub presence_coalesced_events: u64,
    /// Actions from another node for a connection that is not open here.
    pub remote_actions_failed: u64,
    /// Bytes of group history kept now (0 with history off).
    pub history_bytes: u64,
    /// History messages evicted by the node's byte bound
    /// (`history_max_bytes`) before their group's size or age let them go.
    pub history_evictions: u64,
    /// Joins with `since` that got every missed message (`recovered: true`).
    pub history_recovered: u64,
    /// Joins with `since` that could not get them (`recovered: false`).
    pub history_not_recovered: u64,
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
            host_dropped_events: get(&counters.host_dropped_events),
            tls_handshake_failures: get(&counters.tls_handshake_failures),
            channel_refused: get(&counters.channel_refused),
            channel_queue_dropped: get(&counters.channel_queue_dropped),
            channel_undeliverable: get(&counters.channel_undeliverable),
            presence_resyncs: get(&counters.presence_resyncs),
            presence_dropped_entries: get(&counters.presence_dropped_entries),
            presence_expired_nodes: get(&counters.presence_expired_nodes),
            presence_coalesced_events: get(&counters.presence_coalesced_events),
            remote_actions_failed: get(&counters.remote_actions_failed),
            history_evictions: get(&counters.history_evictions),
            history_recovered: get(&counters.history_recovered),
            history_not_recovered: get(&counters.history_not_recovered),
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
            (
                "bus_connected",
                "1 while the bus reaches the other nodes.",
                self.bus_connected,
            ),
            (
                "history_bytes",
                "Bytes of group history kept.",
                self.history_bytes,
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
                "Publishes to other nodes dropped (bus down or over its bound).",
                self.bus_dropped_publishes,
            ),
            (
                "bus_connect_attempts",
                "Connections to the bus tried.",
                self.bus_connect_attempts,
            ),
            (
                "bus_auth_failures",
                "Times the channel server refused the secret.",
                self.bus_auth_failures,
            ),
            (
                "bus_dropped_events",
                "Messages from the bus dropped (over its bound).",
                self.bus_dropped_events,
            ),
            (
                "host_dropped_events",
                "Events for the host dropped (its queue was full).",
                self.host_dropped_events,
            ),
            (
                "tls_handshake_failures",
                "TLS handshakes that failed (including plain requests to a TLS port).",
                self.tls_handshake_failures,
            ),
            (
                "channel_refused",
                "Channel server connections closed for a bad body or secret.",
                self.channel_refused,
            ),
            (
                "channel_queue_dropped",
                "Channel server queue items dropped (over the bound).",
                self.channel_queue_dropped,
            ),
            (
                "channel_undeliverable",
                "Channel server deliveries with no form in the subscriber's dialect.",
                self.channel_undeliverable,
            ),
            (
                "presence_resyncs",
                "Presence snapshots asked of other nodes after a gap.",
                self.presence_resyncs,
            ),
            (
                "presence_dropped_entries",
                "Other nodes' presence entries dropped (over the bound).",
                self.presence_dropped_entries,
            ),
            (
                "presence_expired_nodes",
                "Other nodes' presence removed at the end of their lease.",
                self.presence_expired_nodes,
            ),
            (
                "presence_coalesced_events",
                "Presence events replaced by one presence_changed event.",
                self.presence_coalesced_events,
            ),
            (
                "remote_actions_failed",
                "Actions from other nodes for a connection not open here.",
                self.remote_actions_failed,
            ),
            (
                "history_evictions",
                "History messages evicted by the node's byte bound.",
                self.history_evictions,
            ),
            (
                "history_recovered",
                "Joins with since that recovered every missed message.",
                self.history_recovered,
            ),
            (
                "history_not_recovered",
                "Joins with since answered recovered: false.",
                self.history_not_recovered,
            ),
        ];
        let mut out = format!(
            "# HELP groupcast_build_info The running version.\n# TYPE groupcast_build_info gauge\ngroupcast_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
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
        assert_eq!(text.matches("# TYPE").count(), 32);
        assert!(text.contains(&format!(
            "groupcast_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        let json: serde_json::Value = serde_json::from_str(&stats.to_json()).unwrap();
        assert_eq!(json["messages_out"], 42);
    }
}
