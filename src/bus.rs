//! The bus: how the nodes of a cluster hand each other group messages.
//!
//! A node publishes a group message once, on the group's own channel
//! (`groupcast:group:<id>` on a channel server, `groupcast:<id>` on Redis:
//! see [`crate::redis_bus`]), and subscribes only to the channels of groups it
//! has local members in (interest-based routing): a node never receives
//! traffic for groups it cannot deliver. Local members are served directly
//! by the sending node; each publication carries the sender's node id so the
//! sender ignores its own echo, and every member gets a message exactly once.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::channel::{ChannelClient, ChannelEvent};
use crate::host::{HostEvent, HostEvents};
use crate::outbound::{FinishedRun, FrameRun};
use crate::redis_bus::RedisBus;
use crate::registry::{Interest, Registry};

/// Prefix of the channel that carries a group's messages.
pub const GROUP_CHANNEL_PREFIX: &str = "groupcast:group:";

/// A group message as it travels between nodes. Field names follow the
/// seed's `send_to_group` event, plus the sending node.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// The group the message is for.
    #[serde(borrow)]
    pub(crate) group_id: Cow<'a, str>,
    /// The text every member receives.
    #[serde(borrow)]
    pub(crate) message: Cow<'a, str>,
    /// The sending node, which ignores its own publications.
    pub(crate) node: u64,
}

impl<'a> Envelope<'a> {
    /// Reads another node's group message; `None` for this node's own
    /// publications and for data that is not an envelope (a foreign
    /// publisher's: ignored rather than guessed at).
    pub(crate) fn from_other_node(data: &'a [u8], node_id: u64) -> Option<Self> {
        serde_json::from_slice::<Envelope<'a>>(data)
            .ok()
            .filter(|envelope| envelope.node != node_id)
    }
}

/// A node's way out to other nodes.
pub(crate) enum Bus {
    /// A single node: nothing leaves the process.
    Local,
    /// Nodes meet on a channel server.
    Channel { client: ChannelClient, node_id: u64 },
    /// Nodes meet on a Redis deployment (standalone or cluster).
    Redis(RedisBus),
}

impl Bus {
    /// Hands a group message to the other nodes (the local members are
    /// served by the caller).
    pub(crate) fn publish(&self, group: &str, message: &str) {
        match self {
            Bus::Local => {}
            Bus::Channel { client, node_id } => {
                let envelope = Envelope {
                    group_id: Cow::Borrowed(group),
                    message: Cow::Borrowed(message),
                    node: *node_id,
                };
                // Only fails once the node is stopping.
                let _ = client.publish_to_others(&group_channel(group), &envelope);
            }
            Bus::Redis(redis) => redis.publish(group, message),
        }
    }
}

/// The channel that carries `group`'s messages.
pub(crate) fn group_channel(group: &str) -> String {
    format!("{GROUP_CHANNEL_PREFIX}{group}")
}

/// Follows the registry's interest changes with subscriptions, delivers
/// other nodes' group messages to local members, and hands the host the
/// events of channels it subscribed to, until `shutdown`.
pub(crate) async fn run_channel_bus(
    client: ChannelClient,
    node_id: u64,
    registry: Arc<Registry>,
    host: Option<Arc<HostEvents>>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    mut events: mpsc::UnboundedReceiver<ChannelEvent>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            change = interest.recv() => match change {
                Some(Interest::Subscribe(group)) => {
                    let _ = client.subscribe(&group_channel(group.as_str()));
                }
                Some(Interest::Unsubscribe(group)) => {
                    let _ = client.unsubscribe(&group_channel(group.as_str()));
                }
                None => return,
            },
            received = events.recv_many(&mut batch, EVENT_BATCH) => {
                if received == 0 {
                    return;
                }
                // Consecutive messages for one group reach its members as one
                // run, as a local sender's burst does.
                let mut run = FrameRun::<String>::default();
                for event in batch.drain(..) {
                    if event.channel.starts_with(GROUP_CHANNEL_PREFIX) {
                        if let Some(finished) = add_to_run(&mut run, node_id, &event) {
                            deliver(&registry, finished);
                        }
                        continue;
                    }
                    if let Some(finished) = run.finish() {
                        deliver(&registry, finished);
                    }
                    if let Some(host) = &host {
                        host.push(HostEvent::Channel {
                            channel: event.channel,
                            data: event.data.get().to_owned(),
                        }, &shutdown)
                        .await;
                    }
                }
                if let Some(finished) = run.finish() {
                    deliver(&registry, finished);
                }
            }
        }
    }
}

/// Most channel events taken at once; consecutive ones for a group are
/// delivered together.
const EVENT_BATCH: usize = 256;

/// Adds another node's group message to `run`; returns the run it ended.
fn add_to_run(
    run: &mut FrameRun<String>,
    node_id: u64,
    event: &ChannelEvent,
) -> Option<FinishedRun<String>> {
    let envelope = Envelope::from_other_node(event.data.get().as_bytes(), node_id)?;
    let frame = crate::frame::text(&envelope.message);
    run.push(&*envelope.group_id, frame, envelope.message.len())
}

/// Delivers a run of other nodes' messages to the group's local members.
fn deliver(registry: &Registry, (group, frames, _): FinishedRun<String>) {
    registry.fan_out(&group, &frames, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_nodes_envelopes_are_delivered() {
        let data = br#"{"group_id":"g","message":"hi \"you\"","node":7}"#;
        let envelope = Envelope::from_other_node(data, 1).expect("another node's");
        assert_eq!(
            (&*envelope.group_id, &*envelope.message),
            ("g", "hi \"you\"")
        );
        assert!(Envelope::from_other_node(data, 7).is_none(), "our own");
        assert!(
            Envelope::from_other_node(b"\"just text\"", 1).is_none(),
            "foreign"
        );
        assert!(
            Envelope::from_other_node(b"{\"node\":1}", 2).is_none(),
            "incomplete"
        );
    }
}
