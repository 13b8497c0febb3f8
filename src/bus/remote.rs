//! Other nodes' group messages reaching this node's members: one path for
//! every bus, so both buses deliver in runs and count the same way.

use crate::queue::{FinishedRun, FrameRun};
use crate::registry::Registry;

use super::envelope::Envelope;

/// Consecutive messages of other nodes, gathered so that those for one
/// group reach its members as one run (as a local sender's burst does).
#[derive(Default)]
pub(super) struct RemoteRun(FrameRun<String>);

impl RemoteRun {
    /// Adds an envelope's data if it is another node's group message
    /// (ignores this node's own echo and foreign data); delivers the run
    /// this one ended.
    pub(super) fn add(&mut self, registry: &Registry, node_id: u64, data: &[u8]) {
        let Some(envelope) = Envelope::from_other_node(data, node_id) else {
            return;
        };
        let frame = crate::frame::text(&envelope.message);
        let finished = self
            .0
            .push(&*envelope.group_id, frame, envelope.message.len());
        if let Some(finished) = finished {
            deliver_remote(registry, finished);
        }
    }

    /// Delivers what is gathered.
    pub(super) fn finish(&mut self, registry: &Registry) {
        if let Some(finished) = self.0.finish() {
            deliver_remote(registry, finished);
        }
    }
}

/// Delivers a run of other nodes' messages to the group's local members.
fn deliver_remote(registry: &Registry, (group, frames, _): FinishedRun<String>) {
    registry.fan_out(&group, &frames, &[]);
}
