//! Group history from C (issue 17): a send that returns the message's
//! offset, and a snapshot of a group's kept messages.

use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::result::*;
use super::server::groupcast_server;
use crate::ids::ConnId;

/// A snapshot of a group's history, from `groupcast_server_history`;
/// released by `groupcast_history_free`.
pub struct groupcast_history {
    /// The group's epoch, followed by a NUL (not counted in its length).
    epoch: String,
    /// Each kept message's offset and text (the text followed by a NUL).
    messages: Vec<(u64, String)>,
}

/// As `groupcast_server_send_to_group`, and `out_offset` (may be NULL)
/// gets the message's offset in the group's history (0 when the server
/// keeps no history: offsets start at 1).
///
/// # Safety
///
/// As `groupcast_server_send_to_group`; `out_offset` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_send_to_group_with_offset(
    server: *const groupcast_server,
    group: *const c_char,
    group_len: usize,
    text: *const c_char,
    text_len: usize,
    exclude: *const u64,
    exclude_count: usize,
    out_delivered: *mut usize,
    out_offset: *mut u64,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        let group = arg_str!(group, group_len);
        let text = arg_str!(text, text_len);
        let exclude: &[ConnId] = arg_slice!(exclude, exclude_count);
        match handle.send_to_group_with_offset(group, text, exclude) {
            Ok((delivered, offset)) => {
                out(out_delivered, delivered);
                out(out_offset, offset.unwrap_or(0));
                GROUPCAST_OK
            }
            Err(e) => fail_with(&e),
        }
    })
}

/// Writes a snapshot of `group`'s history into `out_history`: its epoch
/// and its kept messages after offset `since` (0: all of them), oldest
/// first, at most `limit`. Read it with `groupcast_history_epoch`,
/// `groupcast_history_count` and `groupcast_history_get`; release it with
/// `groupcast_history_free`. `GROUPCAST_ERR_CONFIG` when the server keeps
/// no history (`GROUPCAST_LIMIT_HISTORY_SIZE` unset).
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `group` points to `group_len`
/// bytes; `out_history` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_history(
    server: *const groupcast_server,
    group: *const c_char,
    group_len: usize,
    since: u64,
    limit: usize,
    out_history: *mut *mut groupcast_history,
) -> groupcast_result {
    guard(|| {
        let handle = arg_ref!(server).server.handle();
        let group = arg_str!(group, group_len);
        arg_out!(out_history);
        match handle.history(group, Some(since), limit) {
            Ok((mut epoch, messages)) => {
                epoch.push('\0');
                let messages = messages
                    .into_iter()
                    .map(|(offset, mut text)| {
                        text.push('\0');
                        (offset, text)
                    })
                    .collect();
                let snapshot = groupcast_history { epoch, messages };
                out(out_history, Box::into_raw(Box::new(snapshot)));
                GROUPCAST_OK
            }
            Err(e) => fail_with(&e),
        }
    })
}

/// The snapshot's epoch (NUL-terminated; the length, without the NUL, in
/// `out_len`), living as long as the snapshot.
///
/// # Safety
///
/// `history` from `groupcast_server_history`; out pointers writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_history_epoch(
    history: *const groupcast_history,
    out_epoch: *mut *const c_char,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let history = arg_ref!(history);
        arg_out!(out_epoch);
        arg_out!(out_len);
        out(out_epoch, history.epoch.as_ptr().cast());
        out(out_len, history.epoch.len() - 1);
        GROUPCAST_OK
    })
}

/// The number of messages in a snapshot (0 for NULL).
///
/// # Safety
///
/// `history` NULL or from `groupcast_server_history`, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_history_count(history: *const groupcast_history) -> usize {
    // SAFETY: NULL or a live snapshot, per the contract.
    catch_unwind(AssertUnwindSafe(|| {
        unsafe { history.as_ref() }.map_or(0, |h| h.messages.len())
    }))
    .unwrap_or(0)
}

/// Writes the `index`th message's offset into `out_offset` and its text
/// (NUL-terminated; the length excludes the NUL) into `out_text` /
/// `out_len`. The text lives as long as the snapshot.
/// `GROUPCAST_ERR_INVALID_ARGUMENT` past the end.
///
/// # Safety
///
/// `history` from `groupcast_server_history`; out pointers writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_history_get(
    history: *const groupcast_history,
    index: usize,
    out_offset: *mut u64,
    out_text: *mut *const c_char,
    out_len: *mut usize,
) -> groupcast_result {
    guard(|| {
        let history = arg_ref!(history);
        arg_out!(out_offset);
        arg_out!(out_text);
        arg_out!(out_len);
        let Some((offset, text)) = history.messages.get(index) else {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                format!(
                    "index {index} is past the {} messages",
                    history.messages.len()
                ),
            );
        };
        out(out_offset, *offset);
        out(out_text, text.as_ptr().cast());
        out(out_len, text.len() - 1);
        GROUPCAST_OK
    })
}

/// Releases a snapshot. NULL does nothing.
///
/// # Safety
///
/// `history` NULL or from `groupcast_server_history`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_history_free(history: *mut groupcast_history) {
    let _ = guard(|| {
        if !history.is_null() {
            // SAFETY: made by Box::into_raw in groupcast_server_history.
            drop(unsafe { Box::from_raw(history) });
        }
        GROUPCAST_OK
    });
}
