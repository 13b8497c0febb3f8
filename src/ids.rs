//! The two names everything else uses: a connection's id and a group's id.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// A node-local connection id, unique for the node's lifetime.
pub type ConnId = u64;

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
        if id.len() > max_len {
            return Err(format!(
                "is {} bytes long, the limit is {max_len}",
                id.len()
            ));
        }
        Ok(GroupId(id.into()))
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
