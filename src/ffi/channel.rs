//! A standalone channel server and channel client, for C hosts that run
//! the seed's `Channel\Server` in a process of its own, or talk on channels
//! without running a websocket server.
//!
//! Both wrap the core's [`BackgroundChannelServer`] /
//! [`BackgroundChannelClient`] (their own runtime, safe from any thread).
//! The client's received data is taken exactly as a server's events are:
//! with the same poll, views and ownership rules (`PollSlot`), and the same
//! notification fd.

use std::ffi::{c_char, c_int};
use std::time::Duration;

use parking_lot::Mutex;

use super::config::address_arg;
use super::events::{PollSlot, groupcast_event, write_notify_fd};
use super::result::*;
use crate::channel::{
    BackgroundChannelClient, BackgroundChannelServer, ChannelClientConfig, ChannelServerConfig,
};
use crate::config::HostConfig;
use crate::error::Error;

/// A standalone channel server: made by `groupcast_channel_server_start`,
/// released by `groupcast_channel_server_free`. Calls may come from any
/// thread.
pub struct groupcast_channel_server {
    pub(crate) inner: BackgroundChannelServer,
}

/// A channel client: made by `groupcast_channel_client_connect`, released
/// by `groupcast_channel_client_free`. Calls may come from any thread;
/// poll from one thread at a time.
pub struct groupcast_channel_client {
    pub(crate) inner: BackgroundChannelClient,
    /// Events returned by the last poll, which the views point into.
    pub(crate) poll_slot: Mutex<PollSlot>,
}

/// `Some(secret)` for a non-empty secret, `None` for length 0.
pub(crate) fn secret_of(secret: &str) -> Option<String> {
    (!secret.is_empty()).then(|| secret.to_owned())
}

/// Channel names the standalone client accepts: not empty (a node's own
/// channel requests also refuse names reserved for groups; a standalone
/// client may use any other).
fn check_channel(channel: &str) -> Result<(), groupcast_result> {
    match channel.is_empty() {
        true => Err(fail(GROUPCAST_ERR_CHANNEL, "channel must not be empty")),
        false => Ok(()),
    }
}

/// Starts a channel server listening on `listen` (`host:port`; port 0 lets
/// the OS pick, read it back with `groupcast_channel_server_address`) and
/// returns once it listens. Clients must send `secret` first (length 0: no
/// secret; listening beyond loopback requires one).
/// `GROUPCAST_ERR_INVALID_ARGUMENT` when `listen` is not HOST:PORT,
/// `GROUPCAST_ERR_BIND` when it cannot be listened on.
///
/// # Safety
///
/// `listen` points to `listen_len` bytes, `secret` to `secret_len` bytes;
/// `out_server` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_server_start(
    listen: *const c_char,
    listen_len: usize,
    secret: *const c_char,
    secret_len: usize,
    out_server: *mut *mut groupcast_channel_server,
) -> groupcast_result {
    guard(|| {
        let listen = arg_str!(listen, listen_len);
        let secret = arg_str!(secret, secret_len);
        arg_out!(out_server);
        if let Err(code) = address_arg("listen", listen) {
            return code;
        }
        let config = ChannelServerConfig {
            secret: secret_of(secret),
            ..ChannelServerConfig::default()
        };
        start_server(listen, config, out_server)
    })
}

/// Starts a standalone channel server into `out_server` (with or without
/// TLS: `groupcast_channel_server_start` and `_start_tls`).
pub(crate) fn start_server(
    listen: &str,
    config: ChannelServerConfig,
    out_server: *mut *mut groupcast_channel_server,
) -> groupcast_result {
    super::prepare_host_process();
    match BackgroundChannelServer::start(listen, config) {
        Ok(inner) => {
            let server = Box::new(groupcast_channel_server { inner });
            out(out_server, Box::into_raw(server));
            GROUPCAST_OK
        }
        Err(e) => fail_with(&e),
    }
}

/// Writes the address the channel server listens on (`ip:port`,
/// NUL-terminated) as `groupcast_server_websocket_address` does. Readable
/// after stop.
///
/// # Safety
///
/// `server` from `groupcast_channel_server_start`; `buf` has room for `len`
/// bytes; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_server_address(
    server: *const groupcast_channel_server,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        write_text(&server.inner.local_addr().to_string(), buf, len, out_len)
    })
}

/// Writes how many connections are subscribed to `channel` now into
/// `out_count`. `GROUPCAST_ERR_STOPPED` after stop.
///
/// # Safety
///
/// `server` from `groupcast_channel_server_start`; `channel` points to
/// `channel_len` bytes; `out_count` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_server_subscriber_count(
    server: *const groupcast_channel_server,
    channel: *const c_char,
    channel_len: usize,
    out_count: *mut usize,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        let channel = arg_str!(channel, channel_len);
        arg_out!(out_count);
        if !server.inner.is_running() {
            return fail(GROUPCAST_ERR_STOPPED, "the channel server has been stopped");
        }
        out(out_count, server.inner.subscriber_count(channel));
        GROUPCAST_OK
    })
}

/// Writes the channel server's counters into `out_stats`: in
/// `slow_consumer_closes`, `channel_refused` (connections closed for a bad
/// body, a PHP serialized object say, or a missing or wrong secret),
/// `channel_queue_dropped`, `channel_undeliverable` and
/// `tls_handshake_failures`; the other fields
/// are 0. Readable after stop.
///
/// # Safety
///
/// `server` from `groupcast_channel_server_start`; `out_stats` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_server_stats(
    server: *const groupcast_channel_server,
    out_stats: *mut crate::stats::Stats,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        arg_out!(out_stats);
        out(out_stats, server.inner.stats());
        GROUPCAST_OK
    })
}

/// Closes every connection and joins the channel server's threads.
/// `GROUPCAST_ERR_STOPPED` (harmless) when already stopped.
///
/// # Safety
///
/// `server` from `groupcast_channel_server_start`, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_server_stop(
    server: *mut groupcast_channel_server,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        match server.inner.stop() {
            true => GROUPCAST_OK,
            false => fail(
                GROUPCAST_ERR_STOPPED,
                "the channel server was already stopped",
            ),
        }
    })
}

/// Stops the channel server if it runs and releases it. NULL does nothing.
///
/// # Safety
///
/// `server` is NULL or from `groupcast_channel_server_start`, not yet
/// freed; no other call on it in progress or made afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_server_free(server: *mut groupcast_channel_server) {
    let _ = guard(|| {
        if !server.is_null() {
            // SAFETY: made by Box::into_raw in groupcast_channel_server_start;
            // dropping it stops it.
            drop(unsafe { Box::from_raw(server) });
        }
        GROUPCAST_OK
    });
}

/// Starts a channel client for the server at `addr` (`host:port`) and
/// returns at once: it connects, reconnects and resubscribes by itself
/// (see `groupcast_channel_client_wait_connected`); publishes made while
/// disconnected are kept up to a bound. `secret` (length 0: none) is sent
/// first. `GROUPCAST_ERR_INVALID_ARGUMENT` when `addr` is not HOST:PORT.
///
/// # Safety
///
/// `addr` points to `addr_len` bytes, `secret` to `secret_len` bytes;
/// `out_client` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_connect(
    addr: *const c_char,
    addr_len: usize,
    secret: *const c_char,
    secret_len: usize,
    out_client: *mut *mut groupcast_channel_client,
) -> groupcast_result {
    guard(|| {
        let addr = arg_str!(addr, addr_len);
        let secret = arg_str!(secret, secret_len);
        arg_out!(out_client);
        if let Err(code) = address_arg("address", addr) {
            return code;
        }
        let config = ChannelClientConfig {
            secret: secret_of(secret),
            ..ChannelClientConfig::default()
        };
        connect_client(addr, config, out_client)
    })
}

/// Connects a channel client into `out_client` (with or without TLS:
/// `groupcast_channel_client_connect` and `_connect_tls`).
pub(crate) fn connect_client(
    addr: &str,
    config: ChannelClientConfig,
    out_client: *mut *mut groupcast_channel_client,
) -> groupcast_result {
    super::prepare_host_process();
    let capacity = HostConfig::default().queue_capacity;
    match BackgroundChannelClient::connect(addr, config, capacity) {
        Ok(inner) => {
            let client = Box::new(groupcast_channel_client {
                inner,
                poll_slot: Mutex::new(PollSlot::default()),
            });
            out(out_client, Box::into_raw(client));
            GROUPCAST_OK
        }
        Err(e) => fail_with(&e),
    }
}

/// Waits up to `timeout_ms` for the connection to the channel server and
/// writes whether it is up into `out_connected` (false on timeout or after
/// close).
///
/// # Safety
///
/// `client` from `groupcast_channel_client_connect`; `out_connected`
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_wait_connected(
    client: *const groupcast_channel_client,
    timeout_ms: u32,
    out_connected: *mut bool,
) -> groupcast_result {
    guard(|| {
        let client = arg_ref!(client);
        arg_out!(out_connected);
        let connected = client
            .inner
            .wait_connected(Duration::from_millis(timeout_ms.into()));
        out(out_connected, connected);
        GROUPCAST_OK
    })
}

/// Publishes `data_json` (JSON text) on `channel` to every subscriber,
/// this client included when subscribed. `GROUPCAST_ERR_CHANNEL` when the
/// data is not JSON or the channel is empty, `GROUPCAST_ERR_STOPPED` after
/// close.
///
/// # Safety
///
/// `client` from `groupcast_channel_client_connect`; each pointer points
/// to its length's worth of bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_publish(
    client: *const groupcast_channel_client,
    channel: *const c_char,
    channel_len: usize,
    data_json: *const c_char,
    data_json_len: usize,
) -> groupcast_result {
    guard(|| {
        let client = arg_ref!(client);
        let channel = arg_str!(channel, channel_len);
        let data = arg_str!(data_json, data_json_len);
        if let Err(code) = check_channel(channel) {
            return code;
        }
        let data = match serde_json::value::RawValue::from_string(data.to_owned()) {
            Ok(data) => data,
            Err(e) => return fail_with(&Error::Channel(format!("data is not JSON: {e}"))),
        };
        done(
            client.inner.client().publish(channel, &data),
            std::ptr::null_mut(),
        )
    })
}

/// Subscribes to `channel` (again after every reconnection); its data
/// arrives as `GROUPCAST_EVENT_CHANNEL` through
/// `groupcast_channel_client_poll`.
///
/// # Safety
///
/// `client` from `groupcast_channel_client_connect`; `channel` points to
/// `channel_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_subscribe(
    client: *const groupcast_channel_client,
    channel: *const c_char,
    channel_len: usize,
) -> groupcast_result {
    guard(|| {
        let client = arg_ref!(client);
        let channel = arg_str!(channel, channel_len);
        if let Err(code) = check_channel(channel) {
            return code;
        }
        done(
            client.inner.client().subscribe(channel),
            std::ptr::null_mut(),
        )
    })
}

/// Ends the subscription to `channel`.
///
/// # Safety
///
/// As `groupcast_channel_client_subscribe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_unsubscribe(
    client: *const groupcast_channel_client,
    channel: *const c_char,
    channel_len: usize,
) -> groupcast_result {
    guard(|| {
        let client = arg_ref!(client);
        let channel = arg_str!(channel, channel_len);
        if let Err(code) = check_channel(channel) {
            return code;
        }
        done(
            client.inner.client().unsubscribe(channel),
            std::ptr::null_mut(),
        )
    })
}

/// Takes up to `capacity` `GROUPCAST_EVENT_CHANNEL` events, as
/// `groupcast_server_poll` does (same timeout, views and ownership: valid
/// until the next poll on this client or its free).
/// `GROUPCAST_ERR_STOPPED` once the client is closed and every event has
/// been taken.
///
/// # Safety
///
/// `client` from `groupcast_channel_client_connect`; `events` has room for
/// `capacity` items; `out_count` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_poll(
    client: *mut groupcast_channel_client,
    timeout_ms: i32,
    events: *mut groupcast_event,
    capacity: usize,
    out_count: *mut usize,
) -> groupcast_result {
    guard(|| {
        let client = arg_ref!(client);
        PollSlot::poll(
            &client.poll_slot,
            client.inner.events(),
            timeout_ms,
            events,
            capacity,
            out_count,
            "the channel client was closed and every event was taken",
        )
    })
}

/// As `groupcast_server_notify_fd`, for the client's events.
///
/// # Safety
///
/// `client` from `groupcast_channel_client_connect`; `out_fd` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_notify_fd(
    client: *const groupcast_channel_client,
    out_fd: *mut c_int,
) -> groupcast_result {
    guard(|| {
        let client = arg_ref!(client);
        write_notify_fd(client.inner.events(), out_fd)
    })
}

/// Disconnects and joins the client's threads; what was received can
/// still be polled. `GROUPCAST_ERR_STOPPED` (harmless) when already closed.
///
/// # Safety
///
/// `client` from `groupcast_channel_client_connect`, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_close(
    client: *mut groupcast_channel_client,
) -> groupcast_result {
    guard(|| {
        let client = arg_ref!(client);
        match client.inner.close() {
            true => GROUPCAST_OK,
            false => fail(
                GROUPCAST_ERR_STOPPED,
                "the channel client was already closed",
            ),
        }
    })
}

/// Closes the client if open and releases it, with the events of its last
/// poll. NULL does nothing.
///
/// # Safety
///
/// `client` is NULL or from `groupcast_channel_client_connect`, not yet
/// freed; no other call on it in progress or made afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_client_free(client: *mut groupcast_channel_client) {
    let _ = guard(|| {
        if !client.is_null() {
            // SAFETY: made by Box::into_raw in
            // groupcast_channel_client_connect; dropping it closes it.
            drop(unsafe { Box::from_raw(client) });
        }
        GROUPCAST_OK
    });
}
