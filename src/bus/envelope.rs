//! What travels between nodes: a group message in its envelope, on the
//! group's own channel.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

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

/// The channel that carries `group`'s messages.
pub(crate) fn group_channel(group: &str) -> String {
    format!("{GROUP_CHANNEL_PREFIX}{group}")
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
