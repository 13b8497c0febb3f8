//! Actions on a server: messages, closes, admission, groups, counts and
//! the host's channel traffic. Callable from any thread, callbacks
//! included; none waits on the network.
//!
//! Each is a thin translation of a [`crate::NodeHandle`] method, which
//! already refuses with `Error::Stopped` (`GROUPCAST_ERR_STOPPED`) once the
//! server stopped; only the plain queries (counts, stats, groups), which
//! cannot fail in the core, check that the server still runs.

use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::result::*;
use super::server::groupcast_server;
use crate::ids::ConnId;
use crate::node::NodeHandle;
use crate::stats::Stats;

/// A snapshot of group names, from `groupcast_server_groups`; released by
/// `groupcast_groups_free`.
pub struct groupcast_groups {
    /// Each name followed by a NUL (not counted in its length).
    names: Vec<String>,
}

/// The server's action handle.
macro_rules! handle_of {
    ($server:ident) => {
        arg_ref!($server).server.handle()
    };
}

/// The server's action handle for a query the core answers even after
/// stop, or return `GROUPCAST_ERR_STOPPED`.
macro_rules! running_handle_of {
    ($server:ident) => {{
        let server = arg_ref!($server);
        match running(server) {
            Ok(handle) => handle,
            Err(code) => return code,
        }
    }};
}

fn running(server: &groupcast_server) -> Result<&NodeHandle, groupcast_result> {
    match server.server.is_running() {
        true => Ok(server.server.handle()),
        false => Err(fail(GROUPCAST_ERR_STOPPED, "the server has been stopped")),
    }
}

/// Sends a text message (UTF-8) to one connection.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `text` points to `text_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_send_text(
    server: *const groupcast_server,
    conn: u64,
    text: *const c_char,
    text_len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        done(
            handle.send_text(conn, arg_str!(text, text_len)),
            std::ptr::null_mut(),
        )
    })
}

/// Sends a binary message to one connection.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `data` points to `data_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_send_binary(
    server: *const groupcast_server,
    conn: u64,
    data: *const u8,
    data_len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        done(
            handle.send_binary(conn, arg_slice!(data, data_len)),
            std::ptr::null_mut(),
        )
    })
}

/// Closes a connection with `code` (1000-1003, 1007-1014 or 3000-4999) and
/// `reason` (UTF-8, cut to 123 bytes) after what is already queued for it.
/// A connection held for approval is refused instead, with HTTP 403.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `reason` points to `reason_len`
/// bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_close(
    server: *const groupcast_server,
    conn: u64,
    code: u16,
    reason: *const c_char,
    reason_len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        done(
            handle.close(conn, code, arg_str!(reason, reason_len)),
            std::ptr::null_mut(),
        )
    })
}

/// Lets a connection held for approval (`GROUPCAST_EVENTS_APPROVE`) start
/// talking.
///
/// # Safety
///
/// `server` from `groupcast_server_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_admit(
    server: *const groupcast_server,
    conn: u64,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        done(handle.admit(conn), std::ptr::null_mut())
    })
}

/// Admits a connection held for approval choosing `protocol` (UTF-8), one
/// of the subprotocols it offered (the connect event's `subprotocols`): the
/// handshake response names it. Usable from the connect callback (then its
/// return value is ignored) or after a poll.
///
/// Returns `GROUPCAST_ERR_CONFIG` when the client did not offer `protocol`
/// (the connection stays held), `GROUPCAST_ERR_UNKNOWN_CONNECTION` when
/// `conn` is not held.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `protocol` points to `len`
/// bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_admit_subprotocol(
    server: *const groupcast_server,
    conn: u64,
    protocol: *const c_char,
    len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        let protocol = arg_str!(protocol, len);
        done(
            handle.admit_with_subprotocol(conn, protocol),
            std::ptr::null_mut(),
        )
    })
}

/// Refuses a connection held for approval before its websocket upgrade:
/// the client gets a plain HTTP response with `status` (400-599) and
/// `body` (UTF-8, at most 4096 bytes; NULL when `body_len` is 0), then the
/// socket closes. Usable from the connect callback (then its return value
/// is ignored) or after a poll.
///
/// Returns `GROUPCAST_ERR_CONFIG` for a status out of range or a longer
/// body, `GROUPCAST_ERR_UNKNOWN_CONNECTION` when `conn` is not held.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `body` points to `body_len`
/// bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_refuse(
    server: *const groupcast_server,
    conn: u64,
    status: u16,
    body: *const c_char,
    body_len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        let body = arg_str!(body, body_len);
        done(handle.refuse(conn, status, body), std::ptr::null_mut())
    })
}

/// Puts a connection in a group; `out_joined` (may be NULL) tells whether
/// it was not in it yet.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `group` points to `group_len`
/// bytes; `out_joined` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_join(
    server: *const groupcast_server,
    conn: u64,
    group: *const c_char,
    group_len: usize,
    out_joined: *mut bool,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        done(handle.join(conn, arg_str!(group, group_len)), out_joined)
    })
}

/// Takes a connection out of a group; `out_left` (may be NULL) tells
/// whether it was in it.
///
/// # Safety
///
/// As `groupcast_server_join`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_leave(
    server: *const groupcast_server,
    conn: u64,
    group: *const c_char,
    group_len: usize,
    out_left: *mut bool,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        done(handle.leave(conn, arg_str!(group, group_len)), out_left)
    })
}

/// Sends a text message to every member of `group` on every node, except the
/// `exclude_count` connections in `exclude` (NULL when 0).
/// `out_delivered` (may be NULL) gets the number of local members it was
/// queued for.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; each pointer points to its
/// length's worth of items; `out_delivered` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_send_to_group(
    server: *const groupcast_server,
    group: *const c_char,
    group_len: usize,
    text: *const c_char,
    text_len: usize,
    exclude: *const u64,
    exclude_count: usize,
    out_delivered: *mut usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        let group = arg_str!(group, group_len);
        let text = arg_str!(text, text_len);
        let exclude: &[ConnId] = arg_slice!(exclude, exclude_count);
        done(handle.send_to_group(group, text, exclude), out_delivered)
    })
}

/// Sends a text message to every connection of this node except those in
/// `exclude`; `out_delivered` (may be NULL) gets how many it was queued for.
///
/// # Safety
///
/// As `groupcast_server_send_to_group`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_broadcast(
    server: *const groupcast_server,
    text: *const c_char,
    text_len: usize,
    exclude: *const u64,
    exclude_count: usize,
    out_delivered: *mut usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        let text = arg_str!(text, text_len);
        let exclude: &[ConnId] = arg_slice!(exclude, exclude_count);
        done(handle.broadcast(text, exclude), out_delivered)
    })
}

/// Writes the number of local members of `group` into `out_size`.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `group` points to `group_len`
/// bytes; `out_size` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_group_size(
    server: *const groupcast_server,
    group: *const c_char,
    group_len: usize,
    out_size: *mut usize,
) -> groupcast_result {
    guard(|| {
        let handle = running_handle_of!(server);
        let group = arg_str!(group, group_len);
        if out_size.is_null() {
            return null_parameter("out_size");
        }
        out(out_size, handle.group_size(group));
        GROUPCAST_OK
    })
}

/// Writes the number of open connections into `out_count`.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `out_count` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_connection_count(
    server: *const groupcast_server,
    out_count: *mut usize,
) -> groupcast_result {
    guard(|| {
        let handle = running_handle_of!(server);
        if out_count.is_null() {
            return null_parameter("out_count");
        }
        out(out_count, handle.connection_count());
        GROUPCAST_OK
    })
}

/// Writes a snapshot of the server's counters into `out_stats`.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `out_stats` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_stats(
    server: *const groupcast_server,
    out_stats: *mut Stats,
) -> groupcast_result {
    guard(|| {
        let handle = running_handle_of!(server);
        if out_stats.is_null() {
            return null_parameter("out_stats");
        }
        out(out_stats, handle.stats());
        GROUPCAST_OK
    })
}

/// Tells whether the server serves and its bus reaches the other nodes:
/// `out_ok` (may be NULL) gets the verdict, and `buf` the report as JSON
/// (NUL-terminated; length in `out_len`, which may be NULL), e.g.
/// `{"status":"ok","bus":"connected","connections":3}` or
/// `{"status":"unavailable","bus":"disconnected","reason":"...","connections":0}`
/// — what `GET /health` answers on the metrics listener. Answered from what
/// the server knows, without waiting on the network; after stop it reports
/// "unavailable". `GROUPCAST_ERR_BUFFER_TOO_SMALL` when the report does not
/// fit (512 bytes always do unless the bus's error is long).
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `buf` has room for `len` bytes;
/// `out_ok` and `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_health(
    server: *const groupcast_server,
    out_ok: *mut bool,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let health = handle_of!(server).health();
        let written = write_text(&health.to_json(), buf, len, out_len);
        if written == GROUPCAST_OK {
            out(out_ok, health.ok());
        }
        written
    })
}

/// Writes a snapshot of the groups with local members into `out_groups`;
/// read it with `groupcast_groups_count` / `groupcast_groups_get`, release
/// it with `groupcast_groups_free`.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `out_groups` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_groups(
    server: *const groupcast_server,
    out_groups: *mut *mut groupcast_groups,
) -> groupcast_result {
    guard(|| {
        let handle = running_handle_of!(server);
        if out_groups.is_null() {
            return null_parameter("out_groups");
        }
        let names = handle
            .groups()
            .into_iter()
            .map(|mut name| {
                name.push('\0');
                name
            })
            .collect();
        out(
            out_groups,
            Box::into_raw(Box::new(groupcast_groups { names })),
        );
        GROUPCAST_OK
    })
}

/// The number of names in a snapshot (0 for NULL).
///
/// # Safety
///
/// `groups` NULL or from `groupcast_server_groups`, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_groups_count(groups: *const groupcast_groups) -> usize {
    // SAFETY: NULL or a live snapshot, per the contract.
    catch_unwind(AssertUnwindSafe(|| {
        unsafe { groups.as_ref() }.map_or(0, |g| g.names.len())
    }))
    .unwrap_or(0)
}

/// Writes the `index`th name (NUL-terminated; the length excludes the NUL)
/// into `out_name` / `out_len`. The name lives as long as the snapshot.
/// `GROUPCAST_ERR_INVALID_ARGUMENT` past the end.
///
/// # Safety
///
/// `groups` from `groupcast_server_groups`; out pointers writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_groups_get(
    groups: *const groupcast_groups,
    index: usize,
    out_name: *mut *const c_char,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let groups = arg_ref!(groups);
        if out_name.is_null() {
            return null_parameter("out_name");
        }
        if out_len.is_null() {
            return null_parameter("out_len");
        }
        let Some(name) = groups.names.get(index) else {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                format!("index {index} is past the {} groups", groups.names.len()),
            );
        };
        out(out_name, name.as_ptr().cast());
        out(out_len, name.len() - 1);
        GROUPCAST_OK
    })
}

/// Releases a snapshot. NULL does nothing.
///
/// # Safety
///
/// `groups` NULL or from `groupcast_server_groups`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_groups_free(groups: *mut groupcast_groups) {
    let _ = guard(|| {
        if !groups.is_null() {
            // SAFETY: made by Box::into_raw in groupcast_server_groups.
            drop(unsafe { Box::from_raw(groups) });
        }
        GROUPCAST_OK
    });
}

/// Publishes `data` (JSON text) on `channel` through the channel server, as
/// the seed's `Channel\Client::publish`.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; each pointer points to its
/// length's worth of bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_channel_publish(
    server: *const groupcast_server,
    channel: *const c_char,
    channel_len: usize,
    data_json: *const c_char,
    data_json_len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        let channel = arg_str!(channel, channel_len);
        let data = arg_str!(data_json, data_json_len);
        done(handle.channel_publish(channel, data), std::ptr::null_mut())
    })
}

/// Subscribes the host to `channel`, as the seed's `Channel\Client::on`;
/// its data arrives as `GROUPCAST_EVENT_CHANNEL` (to `on_channel_event`, or
/// through poll). Needs a channel server and events on.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `channel` points to
/// `channel_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_channel_subscribe(
    server: *const groupcast_server,
    channel: *const c_char,
    channel_len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        done(
            handle.channel_subscribe(arg_str!(channel, channel_len)),
            std::ptr::null_mut(),
        )
    })
}

/// Ends the host's subscription to `channel`.
///
/// # Safety
///
/// As `groupcast_server_channel_subscribe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_channel_unsubscribe(
    server: *const groupcast_server,
    channel: *const c_char,
    channel_len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = handle_of!(server);
        done(
            handle.channel_unsubscribe(arg_str!(channel, channel_len)),
            std::ptr::null_mut(),
        )
    })
}
