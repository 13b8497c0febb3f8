//! The crate's error type: every failure a host or the CLI can see, each with
//! a message that says what went wrong and with what.

use std::fmt;
use std::io;

use crate::ids::ConnId;

/// Errors returned by groupcast's public API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound (port in use, no permission, bad
    /// address).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as configured.
        addr: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The configuration is inconsistent or out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The background runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] io::Error),
    /// An action named a connection that is not open on this node.
    #[error("no open connection with id {0}")]
    UnknownConnection(ConnId),
    /// A group id is empty or too long.
    #[error("invalid group id: {0}")]
    InvalidGroup(String),
    /// A join was refused.
    #[error("cannot join group: {0}")]
    Join(#[from] JoinError),
    /// A close code that a server may not send (RFC 6455 §7.4).
    #[error("invalid close code {0}: use 1000-1003, 1007-1014 or 3000-4999")]
    InvalidCloseCode(u16),
    /// A channel name or data that the channel protocol cannot carry.
    #[error("invalid channel request: {0}")]
    Channel(String),
    /// The server or client has been stopped.
    #[error("stopped")]
    Stopped,
    /// A uid is empty or too long.
    #[error("invalid uid: {0}")]
    InvalidUid(String),
}

impl Error {
    pub(crate) fn bind(addr: &str, source: io::Error) -> Self {
        Error::Bind {
            addr: addr.to_owned(),
            source,
        }
    }
}

/// `Result` with groupcast's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a join did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// The connection has closed.
    Closed,
    /// The connection is in as many groups as the limit allows.
    TooManyGroups(usize),
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Closed => f.write_str("connection is closed"),
            JoinError::TooManyGroups(limit) => {
                write!(f, "connection is already in {limit} groups, the limit")
            }
        }
    }
}

impl std::error::Error for JoinError {}
