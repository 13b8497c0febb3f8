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

/// Most bytes of consecutive messages delivered as one run: well under a
/// connection's outbound bound (1 MiB by default).
const RUN_BYTES: usize = 64 * 1024;
/// Bytes delivered between two pauses for the connections' writers: only
/// a batch that far behind pauses (a backlog), at most 256 KiB a
/// millisecond.
const PAUSE_BYTES: usize = 256 * 1024;
/// The pause.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Consecutive messages of other nodes, gathered so that those for one
/// group reach its members as one run (as a local sender's burst does).
///
/// Paced, for every bus: a run is cut at [`RUN_BYTES`], and the bus task
/// lets the connections' writers run after each cut ([`RemoteRun::pace`]).
/// A backlog released at once (a channel server or Redis thawed after a
/// freeze: megabytes in one read) otherwise reached each member as one
/// push of megabytes, and a second push before the writer ran took a
/// member that reads promptly over its outbound bound: closed as a slow
/// consumer (issue 16: the frozen-channel drill failed with presence on).
/// One run per batch of the bus task: the pauses count bytes of one batch.
#[derive(Default)]
pub(super) struct RemoteRun {
    frames: FrameRun<String>,
    /// Numbered messages (history on), delivered together.
    numbered: Vec<Box<[u8]>>,
    /// Bytes added since the run was last delivered.
    bytes: usize,
    /// Bytes delivered since the last pause.
    since_pause: usize,
    /// A run was cut since the last [`RemoteRun::pace`].
    cut: bool,
}

impl RemoteRun {
    /// After a run was cut, lets the connections' writers run before more
    /// is delivered: a yield, and a pause after every [`PAUSE_BYTES`] (a
    /// yield alone may run the bus task again at once; a pause frees the
    /// worker for the writers, and their clients when in process).
    pub(super) async fn pace(&mut self) {
        if !std::mem::take(&mut self.cut) {
            return;
        }
        if self.since_pause >= PAUSE_BYTES {
            self.since_pause = 0;
            tokio::time::sleep(PAUSE).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

impl Remote {
    /// Adds an envelope's data to `run` if it is another node's group
    /// message (ignores this node's own echo and foreign data); delivers the
    /// run this one ended, or the run when it reached [`RUN_BYTES`].
    pub(super) fn add(&self, run: &mut RemoteRun, data: &[u8]) {
        self.gather(run, data);
        self.cut_if_long(run, data.len());
    }

    fn gather(&self, run: &mut RemoteRun, data: &[u8]) {
        if self.positions.is_some() && !is_reserved(data) {
            // Numbered messages: delivered together when the run ends.
            run.numbered.push(data.into());
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
        self.gather_message(run, &envelope.group_id, &envelope.message);
    }

    /// Adds a Workerman worker's message for `group` to `run`; delivers
    /// the run this one ended, or the run when it reached [`RUN_BYTES`].
    pub(super) fn add_message(&self, run: &mut RemoteRun, group: &str, message: &str) {
        self.gather_message(run, group, message);
        self.cut_if_long(run, message.len());
    }

    fn gather_message(&self, run: &mut RemoteRun, group: &str, message: &str) {
        let frame = crate::frame::text(message);
        if let Some(finished) = run.frames.push(group, frame, message.len()) {
            self.deliver(finished);
        }
    }

    fn cut_if_long(&self, run: &mut RemoteRun, added: usize) {
        run.bytes += added;
        if run.bytes >= RUN_BYTES {
            self.finish(run);
            run.cut = true;
        }
    }

    /// Delivers what `run` gathered.
    pub(super) fn finish(&self, run: &mut RemoteRun) {
        run.since_pause += std::mem::take(&mut run.bytes);
        if let Some(finished) = run.frames.finish() {
            self.deliver(finished);
        }
        if let Some(positions) = &self.positions
            && !run.numbered.is_empty()
        {
            positions.deliver_many(&run.numbered);
            run.numbered.clear();
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
