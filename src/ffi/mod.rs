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

/// What a C or PHP process needs before its first server or client starts:
/// logs go nowhere unless GROUPCAST_LOG (or RUST_LOG) asks for them, and
/// SIGPIPE is ignored if the host left it at its default. A peer that
/// closes while a vectored write (`writev`) is under way raises SIGPIPE,
/// whose default action kills the whole host process; Rust programs and
/// CPython ignore it at start, a C or PHP host usually does not. A host
/// that installed its own handler keeps it.
fn prepare_host_process() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    crate::logging::init(None, crate::logging::LogFormat::Text);
    ONCE.call_once(|| {
        // SAFETY: reads the current disposition into a zeroed sigaction,
        // and replaces it only when it is SIG_DFL.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction == libc::SIG_DFL
            {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
        }
    });
}
