//! groupcast: group broadcasting for websocket clients, as a library a host
//! starts and stops in-process.
//!
//! Clients connect over websocket, join groups with
//! `{"cmd":"add_group","group_id":"123"}`, and a
//! `{"cmd":"send_to_group","group_id":"123","message":"..."}` reaches every
//! member of the group, on every node of a cluster.
//!
//! # How a message travels
//!
//! A client's frame is read by its connection task (`node/connection.rs`),
//! parsed into a [`protocol::ClientCommand`], and a `send_to_group` is
//! encoded once as a websocket frame. The local members of the group are
//! found in the registry and the frame is pushed, shared, onto each member's
//! outbound queue (`queue/`); each member's task writes what is queued in
//! few vectored syscalls (`node/writer.rs`). The same message is handed once
//! to the bus (`bus/`), which publishes it on the group's channel (a channel
//! server or Redis); other nodes with members in the group receive it, and
//! deliver it to their own members the same way. Messages that are not
//! built-in commands go to the host through its event queue (`host/`),
//! taken by polling or by callbacks on the host thread.
//!
//! # Layout, in layers
//!
//! Each layer uses only the layers above it in this list; no module reaches
//! up, so there is no import circle.
//!
//! 1. Plain data, no I/O: [`ids`] (connection and group ids), [`config`]
//!    (everything a node is told, and its one validator), [`stats`],
//!    [`protocol`] (client commands and error replies), `frame` (frames
//!    encoded once), [`error`]; `accept` (the accept loop every listener
//!    shares); `tls` (certificates from PEM, the reloadable acceptor, the
//!    plain-or-TLS socket).
//! 2. `queue` (a connection's outbound queue, bounded in bytes),
//!    [`presence`] (who is online and in which group across the cluster,
//!    each node's share kept with a lease) and `registry` (which local
//!    connections are in which groups and bound to which uid),
//!    and [`history`] (each group's recent messages with their positions).
//! 3. [`host`]: events to the host, its queue, the dispatcher thread and
//!    the hooks that route events to its callbacks.
//! 4. [`channel`]: the seed's pub/sub protocol: codec, messages, server,
//!    client, and both on a background runtime; its two body encodings
//!    (groupcast's JSON and the seed's PHP `serialize()`, with a safe
//!    decoder), the server's work queues.
//! 5. [`bus`]: how nodes meet (channel server or Redis): the envelope and
//!    channel naming, remote delivery, each bus.
//! 6. [`node`]: a node's tasks on a tokio runtime ([`Node`]), its state,
//!    the actions a host takes from any thread ([`NodeHandle`]), the host's
//!    verdict before the upgrade, connection tasks, the vectored writer, the
//!    metrics endpoint.
//! 7. [`server`] (a node on a background runtime of its own: [`Server`]) and
//!    [`cli`] (the `groupcast` command line).
//! 8. The host surfaces, thin over all of the above: [`ffi`] (the C ABI,
//!    for C and PHP-FFI; header in `include/`) and `python` (feature
//!    `python`: the module `groupcast._groupcast`).

mod accept;
pub mod bus;
pub mod channel;
pub mod cli;
pub mod config;
pub mod error;
pub mod ffi;
mod frame;
pub mod history;
pub mod host;
pub mod ids;
pub mod logging;
pub mod node;
pub mod presence;
pub mod protocol;
#[cfg(feature = "python")]
mod python;
mod queue;
mod registry;
pub mod server;
pub mod stats;
mod tls;

pub use config::{Config, HostConfig, Limits, SlowConsumerPolicy};
pub use error::{Error, Result};
pub use host::{Dispatcher, HostEvent, HostEvents, Payload};
pub use ids::{ConnId, GroupId};
pub use node::{Addresses, Node, NodeHandle};
pub use presence::{ClusterStats, GroupPresence};
pub use server::Server;
pub use stats::{Health, Stats};

/// The Rust code blocks of README.md and docs/, compiled and run by
/// `cargo test --doc`, so that a snippet a reader copies works
/// (tests/docs/snippets.py runs the other languages' blocks).
#[cfg(doctest)]
mod doc_snippets {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/c-api.md")]
    struct CApi;
    #[doc = include_str!("../docs/python.md")]
    struct Python;
    #[doc = include_str!("../docs/redis.md")]
    struct Redis;
}
