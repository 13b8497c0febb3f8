//! The two names everything else uses: a connection's id and a group's id.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// A connection id, unique for the node's lifetime. A single node counts
/// from 1; a node of a cluster puts its tag (21 bits) above the 32 bits of
/// its count, so the id is unique in the cluster and routable: an action
/// on it taken on another node reaches this one. Always below 2^53.
pub type ConnId = u64;

/// The first character of the names groupcast routes on itself over the
/// bus (a uid's connections, a node's connections, the cluster's presence):
/// refused in group ids, so a client can never join or send to them.
pub(crate) const RESERVED_PREFIX: char = '\u{1}';

/// A group's name. Integers given by clients are stored as their decimal
/// text, so `123` and `"123"` are one group. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(Arc<str>);

impl GroupId {
    /// Checks and wraps a group name.
    ///
    /// # Errors
    ///
    /// A message saying why when the name is empty or longer than `max_len`
    /// bytes.
    pub fn new(id: impl Into<String>, max_len: usize) -> Result<Self, String> {
        let id = id.into();
        if id.is_empty() {
            return Err("must not be empty".into());
        }
        if id.starts_with(RESERVED_PREFIX) {
            return Err(
                "must not start with the byte 0x01 (reserved for groupcast's own routing)".into(),
            );
        }
        if id.len() > max_len {
            return Err(format!(
                "is {} bytes long, the limit is {max_len}",
                id.len()
            ));
        }
        Ok(GroupId(id.into()))
    }

    /// A name groupcast routes on itself (a uid's or a node's channel),
    /// which starts with [`RESERVED_PREFIX`] so that no client or host group
    /// can take it.
    pub(crate) fn reserved(name: &str) -> Self {
        debug_assert!(name.starts_with(RESERVED_PREFIX));
        GroupId(name.into())
    }

    /// A name another node sent over the bus: checked there already.
    pub(crate) fn from_bus(name: String) -> Self {
        GroupId(name.into())
    }

    /// The group's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for GroupId {
    fn borrow(&self) -> &str {
        &self.0
    }
}
