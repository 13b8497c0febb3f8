//! Users and presence from C: bind a uid to a connection, send to a uid's
//! every connection on every node, ask who is online and who is in a group
//! (answered from memory: see `crate::presence`), take every member out of
//! a group, and the presence settings of a configuration. Actions on a
//! connection held by another node of the cluster go through the usual
//! `groupcast_server_send_text` / `_close` / `_join` / `_leave`.

use std::ffi::c_char;
use std::time::Duration;

use super::config::groupcast_config;
use super::result::*;
use super::server::groupcast_server;
use crate::presence::ClusterStats;

/// The cluster as one node sees it (`groupcast_server_cluster_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct groupcast_cluster_stats {
    /// Nodes whose presence this node holds, itself included.
    pub nodes: u64,
    /// Open connections.
    pub connections: u64,
    /// Distinct uids bound to a connection.
    pub users: u64,
    /// Groups with at least one member.
    pub groups: u64,
}

impl From<ClusterStats> for groupcast_cluster_stats {
    fn from(s: ClusterStats) -> Self {
        groupcast_cluster_stats {
            nodes: s.nodes,
            connections: s.connections,
            users: s.users,
            groups: s.groups,
        }
    }
}

/// Presence settings: `enabled` keeps the cluster's presence [true];
/// `lease_ms` is how long another node's share is kept without news from
/// it [60000; at least 1000, checked by `groupcast_server_start`; 0 keeps
/// the current value]; `client_command` answers the client command
/// `{"cmd":"presence"}` and `"presence":true` on `add_group` [true].
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_presence(
    config: *mut groupcast_config,
    enabled: bool,
    lease_ms: u64,
    client_command: bool,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.presence = enabled;
        if lease_ms != 0 {
            config.config.presence_lease = Duration::from_millis(lease_ms);
        }
        config.config.host.presence_command = client_command;
        GROUPCAST_OK
    })
}

/// Binds a connection of this server to `uid` (UTF-8, 1-256 bytes; one uid
/// per connection, binding again replaces it). `GROUPCAST_ERR_INVALID_UID`
/// for a bad uid.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `uid` points to `uid_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_bind_uid(
    server: *const groupcast_server,
    conn: u64,
    uid: *const c_char,
    uid_len: usize,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        done(
            handle.bind_uid(conn, arg_str!(uid, uid_len)),
            std::ptr::null_mut(),
        )
    })
}

/// Unbinds a connection's uid (no uid is fine).
///
/// # Safety
///
/// `server` from `groupcast_server_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_unbind_uid(
    server: *const groupcast_server,
    conn: u64,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        done(handle.unbind_uid(conn).map(drop), std::ptr::null_mut())
    })
}

/// Writes the uid a connection is bound to into `buf` (NUL-terminated,
/// length in `out_len`, which may be NULL) and `true` into `out_bound`; a
/// connection without a uid gets `false` and an empty string.
/// `GROUPCAST_ERR_BUFFER_TOO_SMALL` unless `len` is over the uid's length
/// (257 bytes always do).
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `buf` has room for `len` bytes;
/// `out_bound` writable; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_uid_of(
    server: *const groupcast_server,
    conn: u64,
    out_bound: *mut bool,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        arg_out!(out_bound);
        let uid = match handle.uid_of(conn) {
            Ok(uid) => uid,
            Err(error) => return fail_with(&error),
        };
        let written = write_text(uid.as_deref().unwrap_or(""), buf, len, out_len);
        if written == GROUPCAST_OK {
            out(out_bound, uid.is_some());
        }
        written
    })
}

/// Sends a text message to every connection bound to `uid`, on every node
/// (only the nodes holding one get it); `out_delivered` (may be NULL) gets
/// the number of local connections it was queued for.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `uid` and `text` point to their
/// lengths in bytes; `out_delivered` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_send_to_uid(
    server: *const groupcast_server,
    uid: *const c_char,
    uid_len: usize,
    text: *const c_char,
    text_len: usize,
    out_delivered: *mut usize,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        let uid = arg_str!(uid, uid_len);
        let text = arg_str!(text, text_len);
        done(handle.send_to_uid(uid, text), out_delivered)
    })
}

/// Writes whether `uid` has a connection on any node of the cluster into
/// `out_online`. `GROUPCAST_ERR_CONFIG` when presence is off.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `uid` points to `uid_len`
/// bytes; `out_online` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_is_uid_online(
    server: *const groupcast_server,
    uid: *const c_char,
    uid_len: usize,
    out_online: *mut bool,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        arg_out!(out_online);
        done(handle.is_uid_online(arg_str!(uid, uid_len)), out_online)
    })
}

/// Who is in `group` across the cluster: `out_connections` and
/// `out_users` (each may be NULL) get the counts, and `buf` the answer as
/// JSON, NUL-terminated (length in `out_len`, which may be NULL):
/// `{"connections":3,"users":2,"uids":["bob","eve"],"truncated":false}`,
/// listing at most `max_uids` uids. `GROUPCAST_ERR_BUFFER_TOO_SMALL` when
/// it does not fit (nothing written then).
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `group` points to `group_len`
/// bytes; `buf` has room for `len` bytes; the other out-pointers NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_presence(
    server: *const groupcast_server,
    group: *const c_char,
    group_len: usize,
    max_uids: usize,
    out_connections: *mut u64,
    out_users: *mut u64,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        let group = arg_str!(group, group_len);
        let answer = match handle.presence(group, max_uids) {
            Ok(answer) => answer,
            Err(error) => return fail_with(&error),
        };
        let json = serde_json::to_string(&answer).unwrap_or_default();
        let written = write_text(&json, buf, len, out_len);
        if written == GROUPCAST_OK {
            out(out_connections, answer.connections);
            out(out_users, answer.users);
        }
        written
    })
}

/// Writes the cluster's counts as this node sees them into `out_stats`.
/// `GROUPCAST_ERR_CONFIG` when presence is off.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `out_stats` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_cluster_stats(
    server: *const groupcast_server,
    out_stats: *mut groupcast_cluster_stats,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        arg_out!(out_stats);
        done(handle.cluster_stats().map(Into::into), out_stats)
    })
}

/// Every member of `group` leaves it, on every node; `out_left` (may be
/// NULL) gets how many local members left.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `group` points to `group_len`
/// bytes; `out_left` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_ungroup(
    server: *const groupcast_server,
    group: *const c_char,
    group_len: usize,
    out_left: *mut usize,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        done(handle.ungroup(arg_str!(group, group_len)), out_left)
    })
}
