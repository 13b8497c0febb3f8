//! The C ABI, for C and PHP-FFI hosts. `include/groupcast.h` is generated
//! from these files by cbindgen (`cbindgen.toml`); the doc comments here
//! are the header's documentation.
//!
//! Conventions (as rustls-ffi): opaque handles made by `_new`/`_start`/
//! `_connect` and released by `_free` (`_free(NULL)` does nothing); every
//! export checks its pointers for NULL and runs inside a panic boundary;
//! fallible calls return a [`groupcast_result`] and write their
//! out-parameters (always last) only on success; strings cross as pointer +
//! length and text is checked as UTF-8. The helpers in `result.rs`
//! (`arg_ref!`, `arg_str!`, `arg_slice!`, `out`) are the only code that
//! turns raw pointers into references.
//!
//! One file per object, as rustls-ffi splits its ABI: `result` (results,
//! errors, pointer helpers), `config`, `server` (lifecycle), `events`
//! (views, poll, callbacks), `actions`, `channel` (standalone channel
//! server and client), `tls` (certificates, reload, TLS channel links).
//! The plumbing they share with the other bindings —
//! routing events to callbacks, the connect verdict, stopping from a
//! callback, range rules — is the core's (`crate::host`, `crate::Server`,
//! `Config::validate`).
#![allow(non_camel_case_types)]

// First: its macros are used by every other module.
#[macro_use]
mod result;
mod actions;
mod channel;
mod config;
mod events;
mod history;
mod presence;
mod server;
mod tls;

pub use actions::*;
pub use channel::*;
pub use config::*;
pub use events::*;
pub use history::*;
pub use presence::*;
pub use result::*;
pub use server::*;
pub use tls::*;
