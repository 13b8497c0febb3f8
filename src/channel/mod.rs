//! The channel: the seed's pub/sub protocol over TCP, its server, and the
//! client nodes and hosts use to reach it; and both on a runtime of their
//! own for callers that are not async (`background`).

pub mod background;
pub mod client;
pub mod codec;
pub(crate) mod dialect;
mod history;
pub(crate) mod message;
pub mod php;
mod php_json;
mod queues;
pub mod server;

pub use background::{BackgroundChannelClient, BackgroundChannelServer};
pub use client::{ChannelClient, ChannelClientConfig, ChannelEvents};
pub use history::{ChannelHistoryConfig, HISTORY_REPLY_CHANNEL};
pub use message::ChannelEvent;
pub use server::{ChannelServer, ChannelServerConfig};
