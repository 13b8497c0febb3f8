//! Other nodes' group messages reaching this node's members: one path for
//! every bus, so both buses deliver in runs and count the same way as local
//! deliveries (`messages_out`, `bytes_out`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::envelope::Envelope;
use crate::host::{HostEvent, HostEvents};
use crate::queue::{FinishedRun, FrameRun};
use crate::registry::Registry;
use crate::stats::NodeCounters;

/// Where other nodes' messages go, and where they are counted.
pub(crate) struct Remote {
    /// This node's id: its own publications are ignored.
    pub(crate) node_id: u64,
    /// The local members.
    pub(crate) registry: Arc<Registry>,
    /// The node's counters.
    pub(crate) counters: Arc<NodeCounters>,
    /// Group history in a channel-server cluster: numbered messages are
    /// delivered there (`positions.rs`).
    pub(crate) positions: Option<Arc<super::positions::ClusterPositions>>,
}

/// Consecutive messages of other nodes, gathered so that those for one
/// group reach its members as one run (as a local sender's burst does).
#[derive(Default)]
pub(super) struct RemoteRun(FrameRun<String>, Vec<Box<[u8]>>);

impl Remote {
    /// Adds an envelope's data to `run` if it is another node's group
    /// message (ignores this node's own echo and foreign data); delivers the
    /// run this one ended.
    pub(super) fn add(&self, run: &mut RemoteRun, data: &[u8]) {
        if self.positions.is_some() && !is_reserved(data) {
            // Numbered messages: delivered together when the run ends.
            run.1.push(data.into());
            return;
        }
        let Some(envelope) = Envelope::from_other_node(data, self.node_id) else {
            return;
        };
        // Presence and actions for this node's connections travel on
        // reserved channels: handled in order with the messages around them.
        if envelope.group_id.starts_with(crate::ids::RESERVED_PREFIX) {
            self.finish(run);
            if self.registry.control(&envelope.group_id, &envelope.message) {
                return;
            }
        }
        self.add_message(run, &envelope.group_id, &envelope.message);
    }

    /// Adds another node's (or a Workerman worker's) message for `group` to
    /// `run`; delivers the run this one ended.
    pub(super) fn add_message(&self, run: &mut RemoteRun, group: &str, message: &str) {
        let frame = crate::frame::text(message);
        if let Some(finished) = run.0.push(group, frame, message.len()) {
            self.deliver(finished);
        }
    }

    /// Delivers what `run` gathered.
    pub(super) fn finish(&self, run: &mut RemoteRun) {
        if let Some(finished) = run.0.finish() {
            self.deliver(finished);
        }
        if let Some(positions) = &self.positions
            && !run.1.is_empty()
        {
            positions.deliver_many(&run.1);
            run.1.clear();
        }
    }

    /// Hands the host a channel's data that is not a group message (its
    /// own channels), after the run before it; dropped and counted when
    /// the host's queue is full, so group delivery never waits for it.
    pub(super) fn to_host(
        &self,
        run: &mut RemoteRun,
        host: Option<&HostEvents>,
        channel: String,
        data: &str,
    ) {
        self.finish(run);
        let Some(host) = host else { return };
        let event = HostEvent::Channel {
            channel,
            data: data.to_owned(),
        };
        if host.try_push(event).is_err() {
            self.counters
                .host_dropped_events
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn deliver(&self, (group, frames, text_bytes): FinishedRun<String>) {
        let members = self.registry.fan_out(&group, &frames, &[]);
        self.counters
            .count_out(members * frames.count(), members * text_bytes);
    }
}

/// Whether `data` is a plain envelope on a reserved channel (presence, a
/// routed action: never numbered, handled as without history). Numbered
/// envelopes start with their offset, and are not looked into.
fn is_reserved(data: &[u8]) -> bool {
    !data.starts_with(br#"{"offset":"#)
        && serde_json::from_slice::<Envelope<'_>>(data)
            .is_ok_and(|e| e.group_id.starts_with(crate::ids::RESERVED_PREFIX))
}
