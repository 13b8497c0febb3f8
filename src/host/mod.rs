//! The host bridge: how a host program (Python, C, PHP) takes part without
//! ever running on a tokio thread.
//!
//! Tokio tasks push [`HostEvent`]s into a [`HostEvents`] queue; the host takes
//! them in batches either by polling from its own thread ([`HostEvents::poll`],
//! with [`HostEvents::notify_fd`] for event loops), or through a
//! [`Dispatcher`]: one thread owned by the library that hands batches to a
//! handler, or through [`Hooks`]: the host's callbacks, which the core calls
//! per kind of event on that thread. Actions go the other way through
//! [`crate::NodeHandle`], callable from any thread.
//!
//! The queue is bounded: when the host falls behind, connection tasks wait
//! for room (that client's reads pause), so no event is lost and memory stays
//! bounded.

use std::net::SocketAddr;

use crate::ids::ConnId;

mod dispatcher;
mod hooks;
mod queue;

pub use dispatcher::Dispatcher;
pub(crate) use hooks::route;
pub use hooks::{EventHandler, FAILED_STATUS, Hooks, REFUSED_STATUS, Verdict};
pub use queue::{HostEvents, Polled};

/// A message's payload as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// Something the host is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A client connected: after its websocket handshake, or, when the
    /// host approves connections, before it (the upgrade waits for the
    /// host's verdict).
    Connect {
        /// Its id, for actions.
        conn: ConnId,
        /// Its address.
        peer: SocketAddr,
        /// The request path, e.g. `/chat`.
        path: String,
        /// The query string without `?`, empty when none (where tokens go).
        query: String,
        /// The request's headers (for cookies, `Authorization`): in the
        /// order sent with their names as sent when the host approves
        /// connections; otherwise read after the handshake, grouped by
        /// name and lowercased.
        headers: Vec<(String, String)>,
        /// The subprotocols the client offered (`Sec-WebSocket-Protocol`),
        /// in its order of preference.
        subprotocols: Vec<String>,
    },
    /// A client message for the host.
    Message {
        /// Who sent it.
        conn: ConnId,
        /// What it sent.
        payload: Payload,
    },
    /// A connection closed; it has already left all its groups.
    Close {
        /// Its id.
        conn: ConnId,
        /// The close code sent or received; `None` when the socket just
        /// ended (1006 in websocket terms).
        code: Option<u16>,
    },
    /// Data published on a channel the host subscribed to.
    Channel {
        /// The channel.
        channel: String,
        /// The data, as JSON text.
        data: String,
    },
}
