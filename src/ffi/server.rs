//! `groupcast_server`'s lifecycle: start, stop, free, and the addresses it
//! listens on.
//!
//! The core's [`Server`] is usable from any thread and stops safely from
//! its own host thread, so this file holds no lock and no running flag of
//! its own. What it keeps is the C contract: free stops the server (joining
//! the host thread) before releasing the memory the host thread points to,
//! and no callback runs after a stop made from a callback.

use std::ffi::c_char;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::config::groupcast_config;
use super::events::{CHooks, PollSlot, in_callback_of};
use super::result::*;
use crate::server::Server;

/// A running (or stopped) server: made by `groupcast_server_start`, released
/// by `groupcast_server_free`. Actions may be called from any thread.
pub struct groupcast_server {
    /// The node, its runtime and its host thread; thread-safe.
    pub(crate) server: Server,
    /// Whether callbacks take the events (then poll is refused).
    pub(crate) callbacks_mode: bool,
    /// Events returned by the last poll, which the views point into.
    pub(crate) poll_slot: Mutex<PollSlot>,
    /// Cleared by a stop made inside a callback and by free, so that the
    /// host thread hands nothing more to C.
    alive: Arc<AtomicBool>,
}

/// Starts a server from `config` and returns once it listens: its network
/// threads and, when callbacks are registered, its host thread run in the
/// background. `config` is only read; free it when convenient. Without
/// callbacks, events asked for with `groupcast_config_set_events` are taken
/// with `groupcast_server_poll`. With callbacks and built-in commands off,
/// `on_message` is required (`GROUPCAST_ERR_CONFIG`).
///
/// `GROUPCAST_ERR_CONFIG` (details naming the setting) for a value out of
/// range: a count or size of 0, a duration of 0 (but the drain timeout), an
/// idle timeout under the ping interval, an address that is not HOST:PORT.
/// `GROUPCAST_ERR_BIND` when a well-formed address cannot be listened on.
///
/// Must not be called from a callback.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `out_server` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_start(
    config: *const groupcast_config,
    out_server: *mut *mut groupcast_server,
) -> groupcast_result {
    guard(|| {
        let config = arg_ref!(config);
        arg_out!(out_server);
        super::prepare_host_process();
        let rust_config = match config.server_config() {
            Ok(rust_config) => rust_config,
            Err(code) => return code,
        };
        let server = match Server::start(rust_config) {
            Ok(server) => server,
            Err(e) => return fail_with(&e),
        };
        let callbacks = config.callbacks.clone();
        let alive = Arc::new(AtomicBool::new(true));
        let raw = Box::into_raw(Box::new(groupcast_server {
            server,
            callbacks_mode: callbacks.any(),
            poll_slot: Mutex::new(PollSlot::default()),
            alive: alive.clone(),
        }));
        // SAFETY: just made; released below on error, or by
        // groupcast_server_free.
        let server = unsafe { &*raw };
        if server.callbacks_mode {
            if let Err(e) = server.server.run_hooks(CHooks::new(raw, callbacks, alive)) {
                // SAFETY: not handed out yet; no host thread runs.
                drop(unsafe { Box::from_raw(raw) });
                return fail_with(&e);
            }
        }
        out(out_server, raw);
        GROUPCAST_OK
    })
}

/// Stops the server: clients are closed with 1001, every network task ends
/// and every thread is joined before it returns; in callbacks mode the host
/// thread first delivers the last events (the closes), then ends. Returns
/// `GROUPCAST_ERR_STOPPED` (harmless) when already stopped. May be called
/// from a callback: it stops the server but does not wait for the host
/// thread, which ends when the callback returns; no callback runs after
/// that.
///
/// # Safety
///
/// `server` from `groupcast_server_start`, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_stop(server: *mut groupcast_server) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        if in_callback_of(server) {
            // No callback after a stop made from a callback.
            server.alive.store(false, Ordering::Release);
        }
        match server.server.stop() {
            true => GROUPCAST_OK,
            false => fail(GROUPCAST_ERR_STOPPED, "the server was already stopped"),
        }
    })
}

/// Stops the server if it runs (no callback runs from then on), waits for
/// its threads, runs the callbacks' finalizers (unless the config still
/// holds them) and releases it. NULL does nothing. No other call on this
/// server may be in progress or made afterwards.
///
/// Must not be called from a callback: call `groupcast_server_stop` there,
/// and free the server once `groupcast_server_stop` or the callback has
/// returned.
///
/// # Safety
///
/// `server` is NULL or from `groupcast_server_start`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_free(server: *mut groupcast_server) {
    let _ = guard(|| {
        if server.is_null() {
            return GROUPCAST_OK;
        }
        {
            // SAFETY: made by Box::into_raw in groupcast_server_start, not
            // yet freed.
            let running = unsafe { &*server };
            running.alive.store(false, Ordering::Release);
            // Joins the host thread (unless this is it, which the cleared
            // flag keeps from touching the server again), so nothing uses
            // the pointer once released.
            running.server.stop();
        }
        // SAFETY: as above; stopped, so ours alone.
        drop(unsafe { Box::from_raw(server) });
        GROUPCAST_OK
    });
}

/// Writes the websocket listen address (`ip:port`, NUL-terminated) into
/// `buf` and its length into `out_len` (may be NULL).
/// `GROUPCAST_ERR_BUFFER_TOO_SMALL` when it does not fit (64 bytes always
/// do). Readable after stop.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `buf` has room for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_websocket_address(
    server: *const groupcast_server,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        let address = server.server.addresses().websocket.to_string();
        write_text(&address, buf, len, out_len)
    })
}

/// As `groupcast_server_websocket_address`, for the embedded channel
/// server; an empty string when the server embeds none.
///
/// # Safety
///
/// As `groupcast_server_websocket_address`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_channel_address(
    server: *const groupcast_server,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        let text = server
            .server
            .addresses()
            .channel
            .map(|a| a.to_string())
            .unwrap_or_default();
        write_text(&text, buf, len, out_len)
    })
}
