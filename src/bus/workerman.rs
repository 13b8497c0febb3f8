//! The bus of a node in a Workerman cluster (`channel_protocol` =
//! `workerman`): the seed's own event layout, so the seed's PHP websocket
//! workers and groupcast nodes deliver each other's group messages.
//!
//! Every group message travels on the one channel `send_to_group`, with
//! data `{group_id, message}` (the seed's PHP handler reads those two keys
//! and ignores others), in PHP `serialize()` bodies (the channel client's
//! `Workerman` protocol). A node subscribes to `send_to_group` once and
//! keeps no interest routing: every node and worker receives every group
//! message, as in the seed — that is this mode's cost.
//!
//! Exactly once per member: a PHP worker delivers to its own members only
//! when the channel server echoes its publish back (the seed relies on
//! that); a node delivers to its own members at once and adds
//! `groupcast_node` (its id) to the data, so it drops its own echo. On a
//! groupcast channel server the echo is not even sent (`exclude_self`, a key
//! the PHP server ignores).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::remote::{Remote, RemoteRun};
use crate::channel::{ChannelClient, ChannelEvents};
use crate::host::HostEvents;
use crate::registry::Interest;

/// The seed's channel for group messages.
pub const SEND_TO_GROUP: &str = "send_to_group";

/// Most channel events taken at once.
const EVENT_BATCH: usize = 256;

/// A group message as the seed publishes it, plus the sending node.
#[derive(Serialize)]
pub(crate) struct SeedEvent<'a> {
    /// The group.
    pub(crate) group_id: &'a str,
    /// The text every member receives.
    pub(crate) message: &'a str,
    /// The publishing node, which ignores its own echo (as an `i64`: PHP
    /// ints are signed, and a larger number would come back a float).
    pub(crate) groupcast_node: i64,
}

/// The same, as received from a node or a PHP worker: the group id may be
/// an int (a PHP array key), the message any value (not a string: delivered
/// as its JSON text, as the node does for its own clients).
#[derive(Deserialize)]
struct SeedEventIn {
    group_id: GroupIdIn,
    message: Box<serde_json::value::RawValue>,
    #[serde(default)]
    groupcast_node: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum GroupIdIn {
    Text(String),
    Int(i64),
}

/// Reads a `send_to_group` event: the group and the text for its members;
/// `None` for this node's own publications and for data without the seed's
/// keys.
fn group_message(data: &str, node_id: u64) -> Option<(String, String)> {
    let event: SeedEventIn = serde_json::from_str(data).ok()?;
    if event.groupcast_node == Some(node_tag(node_id)) {
        return None;
    }
    let group = match event.group_id {
        GroupIdIn::Text(text) if !text.is_empty() => text,
        GroupIdIn::Text(_) => return None,
        GroupIdIn::Int(n) => n.to_string(),
    };
    let raw = event.message.get();
    let message = match serde_json::from_str::<String>(raw) {
        Ok(text) => text,
        Err(_) => raw.to_owned(),
    };
    Some((group, message))
}

/// A node id as it travels in `groupcast_node`.
pub(crate) fn node_tag(node_id: u64) -> i64 {
    node_id as i64
}

/// Subscribes to `send_to_group`, delivers the group messages of the other
/// nodes and workers to local members, and hands the host the events of the
/// channels it subscribed to, until `shutdown`. Interest changes are taken
/// and ignored: this mode has no interest routing.
pub(super) async fn run_workerman_bus(
    client: ChannelClient,
    remote: Remote,
    host: Option<Arc<HostEvents>>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    mut events: ChannelEvents,
    shutdown: CancellationToken,
) {
    let _ = client.subscribe(SEND_TO_GROUP);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            change = interest.recv() => if change.is_none() {
                return;
            },
            received = events.recv_many(&mut batch, EVENT_BATCH) => {
                if received == 0 {
                    return;
                }
                let mut run = RemoteRun::default();
                for event in batch.drain(..) {
                    if event.channel == SEND_TO_GROUP {
                        if let Some((group, message)) = group_message(event.data.get(), remote.node_id) {
                            remote.add_message(&mut run, &group, &message);
                            run.pace().await;
                        }
                        continue;
                    }
                    remote.to_host(&mut run, host.as_deref(), event.channel, event.data.get());
                }
                remote.finish(&mut run);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seed_s_events_and_skips_its_own() {
        let own = serde_json::to_string(&SeedEvent {
            group_id: "123",
            message: "hi",
            groupcast_node: 7,
        })
        .unwrap();
        assert_eq!(
            own,
            r#"{"group_id":"123","message":"hi","groupcast_node":7}"#
        );
        assert_eq!(group_message(&own, 7), None);
        assert_eq!(group_message(&own, 8), Some(("123".into(), "hi".into())));
        assert_eq!(
            group_message(r#"{"group_id":123,"message":"C'est le message"}"#, 7),
            Some(("123".into(), "C'est le message".into())),
            "a PHP worker's, with an int key"
        );
        assert_eq!(
            group_message(r#"{"group_id":"g","message":{"a":[1]}}"#, 7),
            Some(("g".into(), r#"{"a":[1]}"#.into()))
        );
        for foreign in [
            r#"{"message":"x"}"#,
            r#"{"group_id":"","message":"x"}"#,
            r#"{"group_id":"g"}"#,
            r#""text""#,
        ] {
            assert_eq!(group_message(foreign, 7), None, "{foreign}");
        }
    }
}
