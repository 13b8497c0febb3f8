//! Results and errors at the C boundary, and the only code that turns raw
//! pointers into references.
//!
//! Every export runs inside [`guard`] (the panic boundary), checks its
//! pointers with the `arg_*` macros, and reports failures as a
//! [`groupcast_result`] with details kept per thread for
//! `groupcast_last_error_message`. Keeping these helpers in one file is what
//! lets the other files contain no pointer arithmetic of their own.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::Error;

/// What a call returned. `GROUPCAST_OK` is 0; every other value is an error
/// whose text `groupcast_result_message` gives, and whose details (which
/// address, which connection) `groupcast_last_error_message` gives on the
/// thread that made the call.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_result {
    /// Success.
    GROUPCAST_OK = 0,
    /// A required pointer was NULL.
    GROUPCAST_ERR_NULL_PARAMETER = 1,
    /// A string that must be text was not valid UTF-8.
    GROUPCAST_ERR_INVALID_UTF8 = 2,
    /// An argument is out of range (an index, a buffer size of 0).
    GROUPCAST_ERR_INVALID_ARGUMENT = 3,
    /// The configuration is inconsistent or out of range (a count or size
    /// of 0, an address that is not HOST:PORT); the details name the
    /// setting.
    GROUPCAST_ERR_CONFIG = 4,
    /// A listener could not be bound (port in use, no permission, unknown
    /// host).
    GROUPCAST_ERR_BIND = 5,
    /// The background runtime or the host thread could not be started.
    GROUPCAST_ERR_RUNTIME = 6,
    /// No open connection has this id.
    GROUPCAST_ERR_UNKNOWN_CONNECTION = 7,
    /// A group id is empty or too long.
    GROUPCAST_ERR_INVALID_GROUP = 8,
    /// A join was refused (the connection is in too many groups).
    GROUPCAST_ERR_JOIN = 9,
    /// A close code that a server may not send.
    GROUPCAST_ERR_INVALID_CLOSE_CODE = 10,
    /// A channel request the channel server cannot carry (no channel server,
    /// empty or reserved name, data that is not JSON).
    GROUPCAST_ERR_CHANNEL = 11,
    /// The server (or channel client) has been stopped (also returned by a
    /// second stop, which is otherwise harmless).
    GROUPCAST_ERR_STOPPED = 12,
    /// The call does not fit how this server delivers events: polling a
    /// server that runs callbacks, or a server whose configuration asks for
    /// no events.
    GROUPCAST_ERR_MODE = 13,
    /// The caller's buffer is too small; nothing was written.
    GROUPCAST_ERR_BUFFER_TOO_SMALL = 14,
    /// A bug in groupcast: a panic was caught at the boundary.
    GROUPCAST_ERR_PANIC = 15,
    /// A uid is empty or longer than 256 bytes.
    GROUPCAST_ERR_INVALID_UID = 16,
}

pub(crate) use groupcast_result::*;

impl groupcast_result {
    fn message(self) -> &'static str {
        match self {
            GROUPCAST_OK => "ok",
            GROUPCAST_ERR_NULL_PARAMETER => "a required pointer was NULL",
            GROUPCAST_ERR_INVALID_UTF8 => "text is not valid UTF-8",
            GROUPCAST_ERR_INVALID_ARGUMENT => "an argument is out of range",
            GROUPCAST_ERR_CONFIG => "invalid configuration",
            GROUPCAST_ERR_BIND => "cannot listen on the address",
            GROUPCAST_ERR_RUNTIME => "cannot start the runtime or the host thread",
            GROUPCAST_ERR_UNKNOWN_CONNECTION => "no open connection with this id",
            GROUPCAST_ERR_INVALID_GROUP => "invalid group id",
            GROUPCAST_ERR_JOIN => "cannot join group: too many groups",
            GROUPCAST_ERR_INVALID_CLOSE_CODE => {
                "invalid close code: use 1000, 1001, 1008, 1011 or 3000-4999"
            }
            GROUPCAST_ERR_CHANNEL => "invalid channel request",
            GROUPCAST_ERR_STOPPED => "the server has been stopped",
            GROUPCAST_ERR_MODE => "this server does not deliver events that way",
            GROUPCAST_ERR_BUFFER_TOO_SMALL => "the buffer is too small",
            GROUPCAST_ERR_PANIC => "internal error: a panic was caught (a bug in groupcast)",
            GROUPCAST_ERR_INVALID_UID => "invalid uid",
        }
    }

    fn from_u32(code: u32) -> Option<groupcast_result> {
        const ALL: [groupcast_result; 17] = [
            GROUPCAST_OK,
            GROUPCAST_ERR_NULL_PARAMETER,
            GROUPCAST_ERR_INVALID_UTF8,
            GROUPCAST_ERR_INVALID_ARGUMENT,
            GROUPCAST_ERR_CONFIG,
            GROUPCAST_ERR_BIND,
            GROUPCAST_ERR_RUNTIME,
            GROUPCAST_ERR_UNKNOWN_CONNECTION,
            GROUPCAST_ERR_INVALID_GROUP,
            GROUPCAST_ERR_JOIN,
            GROUPCAST_ERR_INVALID_CLOSE_CODE,
            GROUPCAST_ERR_CHANNEL,
            GROUPCAST_ERR_STOPPED,
            GROUPCAST_ERR_MODE,
            GROUPCAST_ERR_BUFFER_TOO_SMALL,
            GROUPCAST_ERR_PANIC,
            GROUPCAST_ERR_INVALID_UID,
        ];
        ALL.into_iter().find(|r| *r as u32 == code)
    }
}

thread_local! {
    /// Details of the last failure on this thread.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `detail` for `groupcast_last_error_message` and returns `code`.
pub(crate) fn fail(code: groupcast_result, detail: impl Into<String>) -> groupcast_result {
    let detail = detail.into();
    LAST_ERROR.with(|last| *last.borrow_mut() = detail);
    code
}

/// The result code for a core error, its text recorded as the details.
pub(crate) fn fail_with(error: &Error) -> groupcast_result {
    let code = match error {
        Error::Bind { .. } => GROUPCAST_ERR_BIND,
        Error::Config(_) => GROUPCAST_ERR_CONFIG,
        Error::Runtime(_) => GROUPCAST_ERR_RUNTIME,
        Error::UnknownConnection(_) => GROUPCAST_ERR_UNKNOWN_CONNECTION,
        Error::InvalidGroup(_) => GROUPCAST_ERR_INVALID_GROUP,
        Error::Join(_) => GROUPCAST_ERR_JOIN,
        Error::InvalidCloseCode(_) => GROUPCAST_ERR_INVALID_CLOSE_CODE,
        Error::Channel(_) => GROUPCAST_ERR_CHANNEL,
        Error::Stopped => GROUPCAST_ERR_STOPPED,
        Error::InvalidUid(_) => GROUPCAST_ERR_INVALID_UID,
    };
    fail(code, error.to_string())
}

/// `GROUPCAST_OK` with the value written to `out_ptr` (if not NULL), or the
/// error's code.
pub(crate) fn done<T>(result: crate::Result<T>, out_ptr: *mut T) -> groupcast_result {
    match result {
        Ok(value) => {
            out(out_ptr, value);
            GROUPCAST_OK
        }
        Err(e) => fail_with(&e),
    }
}

/// The panic boundary every export runs in.
pub(crate) fn guard(f: impl FnOnce() -> groupcast_result) -> groupcast_result {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        fail(
            GROUPCAST_ERR_PANIC,
            "internal error: a panic was caught at the C boundary",
        )
    })
}

/// Turns a pointer argument into a reference, or returns
/// `GROUPCAST_ERR_NULL_PARAMETER` naming it.
macro_rules! arg_ref {
    ($ptr:ident) => {
        // SAFETY: the caller passes NULL or a pointer this API handed out
        // (or, for plain structs, memory it owns), per the header.
        match unsafe { $ptr.as_ref() } {
            Some(value) => value,
            None => return $crate::ffi::result::null_parameter(stringify!($ptr)),
        }
    };
}

/// As `arg_ref!`, mutable.
macro_rules! arg_mut {
    ($ptr:ident) => {
        // SAFETY: as `arg_ref!`; the header says the caller does not share
        // this object with a concurrent call.
        match unsafe { $ptr.as_mut() } {
            Some(value) => value,
            None => return $crate::ffi::result::null_parameter(stringify!($ptr)),
        }
    };
}

/// Returns `GROUPCAST_ERR_NULL_PARAMETER` when a required out-parameter is
/// NULL (checked before any work, so nothing happens half-way).
macro_rules! arg_out {
    ($ptr:ident) => {
        if $ptr.is_null() {
            return $crate::ffi::result::null_parameter(stringify!($ptr));
        }
    };
}

/// A UTF-8 string argument given as pointer + length (NULL is allowed for
/// length 0).
macro_rules! arg_str {
    ($ptr:ident, $len:ident) => {
        match $crate::ffi::result::arg_text($ptr, $len, stringify!($ptr)) {
            Ok(text) => text,
            Err(code) => return code,
        }
    };
}

/// A slice argument given as pointer + count (NULL is allowed for count 0).
macro_rules! arg_slice {
    ($ptr:ident, $len:ident) => {
        match $crate::ffi::result::arg_slice_of($ptr, $len, stringify!($ptr)) {
            Ok(slice) => slice,
            Err(code) => return code,
        }
    };
}

pub(crate) fn null_parameter(name: &str) -> groupcast_result {
    fail(GROUPCAST_ERR_NULL_PARAMETER, format!("{name} is NULL"))
}

pub(crate) fn arg_text<'a>(
    ptr: *const c_char,
    len: usize,
    name: &str,
) -> Result<&'a str, groupcast_result> {
    let bytes = arg_slice_of(ptr.cast::<u8>(), len, name)?;
    std::str::from_utf8(bytes).map_err(|e| {
        fail(
            GROUPCAST_ERR_INVALID_UTF8,
            format!("{name} is not valid UTF-8: {e}"),
        )
    })
}

pub(crate) fn arg_slice_of<'a, T>(
    ptr: *const T,
    len: usize,
    name: &str,
) -> Result<&'a [T], groupcast_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null_parameter(name));
    }
    // SAFETY: the header requires `ptr` to point to `len` readable items
    // that stay untouched for the duration of the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Writes an out-parameter if the caller gave one (optional ones may be
/// NULL; required ones are checked with `arg_out!` before any work).
pub(crate) fn out<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: the caller passes a writable pointer or NULL.
        unsafe { ptr.write(value) };
    }
}

/// Copies `text` and a NUL into `buf` when it fits.
pub(crate) fn write_text(
    text: &str,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> groupcast_result {
    if buf.is_null() {
        return null_parameter("buf");
    }
    if text.len() >= len {
        return fail(
            GROUPCAST_ERR_BUFFER_TOO_SMALL,
            format!("{} bytes are needed, the buffer has {len}", text.len() + 1),
        );
    }
    // SAFETY: `buf` has room for `len` > text.len() bytes, per the header.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    out(out_len, text.len());
    GROUPCAST_OK
}

/// Copies as much of `text` as fits, then a NUL: for messages, where a cut
/// message beats none.
fn write_truncated(text: &str, buf: *mut c_char, len: usize, out_len: *mut usize) {
    if buf.is_null() || len == 0 {
        out(out_len, 0);
        return;
    }
    let mut n = text.len().min(len - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `buf` has room for `len` > n bytes, per the header.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        buf.add(n).write(0);
    }
    out(out_len, n);
}

/// The library's version, e.g. "0.1.0": a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn groupcast_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Writes the text of `code` into `buf` (at most `len - 1` bytes, cut if
/// needed, then a NUL) and its length into `out_len` (may be NULL). Never
/// fails; an unknown code gets a message saying so.
///
/// # Safety
///
/// `buf` is NULL or has room for `len` bytes; `out_len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_result_message(
    code: u32,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) {
    let _ = guard(|| {
        match groupcast_result::from_u32(code) {
            Some(result) => write_truncated(result.message(), buf, len, out_len),
            None => write_truncated(&format!("unknown result code {code}"), buf, len, out_len),
        }
        GROUPCAST_OK
    });
}

/// Writes the details of the last failed call made on this thread (e.g.
/// "cannot listen on 127.0.0.1:1234: Address already in use") like
/// `groupcast_result_message`; empty when no call failed yet. Successful
/// calls leave it unchanged.
///
/// # Safety
///
/// As `groupcast_result_message`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) {
    let _ = guard(|| {
        LAST_ERROR.with(|last| write_truncated(&last.borrow(), buf, len, out_len));
        GROUPCAST_OK
    });
}
