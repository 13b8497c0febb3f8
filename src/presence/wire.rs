//! What nodes tell each other about presence and about their connections,
//! as JSON on the bus (inside the usual envelope, on channels whose names
//! start with the reserved byte, see `crate::ids::RESERVED_PREFIX`).
//!
//! Entries carry absolute values ("uid u has 2 connections on node n"),
//! never increments: a message applied twice changes nothing, and a lost
//! one is repaired by the next snapshot, so no counter can drift.

use serde::{Deserialize, Serialize};

/// Reserved group name of the channel every node of a cluster subscribes
/// to: presence deltas, heartbeats, snapshots, and `ungroup`.
pub(crate) const CLUSTER_CHANNEL: &str = "\u{1}cluster";
/// Prefix of a uid's channel: nodes holding a connection bound to the uid
/// subscribe to it, so `send_to_uid` reaches only them.
pub(crate) const UID_PREFIX: &str = "\u{1}uid:";
/// Prefix of a node's own channel (followed by its tag), for actions on
/// one of its connections taken on another node.
pub(crate) const NODE_PREFIX: &str = "\u{1}node:";

/// A `(group, uid, connections)` entry: `uid` empty for connections
/// without a uid.
pub(crate) type GroupEntry = (String, String, u64);
/// A `(uid, connections)` entry.
pub(crate) type UidEntry = (String, u64);

/// One message between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub(crate) enum Wire {
    /// Changes of the sender's share since its previous message.
    Delta {
        /// The sender.
        n: u64,
        /// Its sequence number: one more than its previous message's.
        s: u64,
        /// Its open connections.
        c: u64,
        /// Uids whose count changed.
        u: Vec<UidEntry>,
        /// Group entries that changed.
        g: Vec<GroupEntry>,
    },
    /// One part of the sender's whole share; the parts of one snapshot
    /// have consecutive sequence numbers, the first one `first`, the last
    /// one `last`.
    Snapshot {
        n: u64,
        s: u64,
        first: bool,
        last: bool,
        c: u64,
        u: Vec<UidEntry>,
        g: Vec<GroupEntry>,
    },
    /// "I am alive, and my last message was `s`": refreshes the lease,
    /// which is the sender's own `l` milliseconds (it sends a heartbeat
    /// every third of it), whatever the receiver's setting.
    Heartbeat {
        n: u64,
        s: u64,
        #[serde(default)]
        l: u64,
    },
    /// Asks node `to` (every node when 0) for a snapshot; `l` is the
    /// sender's lease in milliseconds (a new node announces itself so).
    Request {
        n: u64,
        to: u64,
        #[serde(default)]
        l: u64,
    },
    /// The sender stops: its share goes now, not at the end of its lease.
    Bye { n: u64 },
    /// Every member leaves group `g`.
    Ungroup { n: u64, g: String },
    /// Text for one connection of the receiving node.
    Send { c: u64, t: String },
    /// Binary data (hex) for one connection of the receiving node.
    SendBinary { c: u64, h: String },
    /// Close one connection of the receiving node.
    Close { c: u64, code: u16, r: String },
    /// Put one connection of the receiving node in a group.
    Join { c: u64, g: String },
    /// Take one connection of the receiving node out of a group.
    Leave { c: u64, g: String },
    /// Bind one connection of the receiving node to uid `u` (unbind when
    /// `u` is empty).
    Bind { c: u64, u: String },
}

impl Wire {
    /// As JSON text.
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a message; `None` for anything else (ignored, not guessed at).
    pub(crate) fn decode(text: &str) -> Option<Wire> {
        serde_json::from_str(text).ok()
    }
}

/// Binary data as lowercase hex.
pub(crate) fn to_hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex back to bytes; `None` when it is not hex.
pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_foreign_text_is_ignored() {
        let delta = Wire::Delta {
            n: 7,
            s: 3,
            c: 2,
            u: vec![("bob".into(), 2)],
            g: vec![
                ("room".into(), "bob".into(), 1),
                ("room".into(), "".into(), 0),
            ],
        };
        assert_eq!(Wire::decode(&delta.encode()), Some(delta));
        assert!(Wire::decode("{\"k\":\"nope\"}").is_none());
        assert!(Wire::decode("hello").is_none());
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("abc"), None);
    }
}
