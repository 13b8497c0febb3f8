//! groupcast: group broadcasting for websocket clients, as a library a host
//! starts and stops in-process.
//!
//! Clients connect over websocket, join groups with
//! `{"cmd":"add_group","group_id":"123"}`, and a
//! `{"cmd":"send_to_group","group_id":"123","message":"..."}` reaches every
//! member of the group, on every node of a cluster.
//!
//! # Layout
//!
//! - `accept`: the accept loop every listener shares.
//! - [`config`]: what a node is told at start ([`Config`], [`Limits`]).
//! - [`node`]: a node's tasks on a tokio runtime ([`Node`]) and the actions a
//!   host takes on it from any thread ([`NodeHandle`]).
//! - [`server`]: a node on a background runtime of its own ([`Server`]), for
//!   hosts that are not async: the binary, C, PHP and Python.
//! - [`host`]: the host bridge: events to the host, by polling or on a
//!   dispatcher thread ([`HostEvents`], [`Dispatcher`]).
//! - [`protocol`]: the client commands and their error replies.
//! - [`registry`]: which local connections are in which groups.
//! - `connection`: one websocket client's task.
//! - `frame`: websocket frames encoded once, shared by every member.
//! - `outbound`: a connection's outbound queue, bounded in bytes.
//! - [`bus`]: how nodes reach each other (local, or through a channel server).
//! - [`redis_bus`]: the bus on Redis pub/sub, standalone or sharded on a
//!   Redis Cluster.
//! - [`channel`]: the seed's pub/sub protocol, its server and its client.
//! - [`cli`]: the `groupcast` command line.
//! - [`ffi`]: the C ABI, for C and PHP-FFI hosts (header in `include/`).
//! - `python` (feature `python`): the Python module `groupcast._groupcast`.
//! - [`stats`]: counters a node keeps, as a snapshot or Prometheus text.
//! - [`error`]: the error type.

mod accept;
pub mod bus;
pub mod channel;
pub mod cli;
pub mod config;
pub mod error;
pub mod ffi;
mod frame;
pub mod host;
pub mod ids;
pub mod node;
pub mod protocol;
#[cfg(feature = "python")]
mod python;
mod queue;
mod registry;
pub mod server;
pub mod stats;

pub use config::{Config, HostConfig, Limits, SlowConsumerPolicy};
pub use error::{Error, Result};
pub use host::{Dispatcher, HostEvent, HostEvents, Payload};
pub use ids::{ConnId, GroupId};
pub use node::{Addresses, Node, NodeHandle};
pub use server::Server;
pub use stats::Stats;
