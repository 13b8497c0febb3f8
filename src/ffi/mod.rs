//! The C ABI, for C and PHP-FFI hosts. `include/groupcast.h` is generated
//! from this module by cbindgen (`cbindgen.toml`); the doc comments here are
//! the header's documentation.
//!
//! Conventions (as rustls-ffi): opaque handles made by `_new`/`_start` and
//! released by `_free` (`_free(NULL)` does nothing); every export checks its
//! pointers for NULL and runs inside a panic boundary; fallible calls return
//! a [`groupcast_result`] and write their out-parameters (always last) only
//! on success; strings cross as pointer + length and text is checked as
//! UTF-8. The few helpers below (`arg_ref`, `arg_str`, `arg_slice`, `out`)
//! are the only code that turns raw pointers into references.
#![allow(non_camel_case_types)]

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::{Config, SlowConsumerPolicy};
use crate::error::Error;
use crate::host::{HostEvent, Payload};
use crate::ids::ConnId;
use crate::node::{Addresses, NodeHandle};
use crate::server::Server;
use crate::stats::Stats;

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
    /// The configuration is inconsistent or out of range.
    GROUPCAST_ERR_CONFIG = 4,
    /// A listener could not be bound (port in use, no permission, bad address).
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
    /// The server has been stopped (also returned by a second stop, which
    /// is otherwise harmless).
    GROUPCAST_ERR_STOPPED = 12,
    /// The call does not fit how this server delivers events: polling a
    /// server that runs callbacks, or a server whose configuration asks for
    /// no events.
    GROUPCAST_ERR_MODE = 13,
    /// The caller's buffer is too small; nothing was written.
    GROUPCAST_ERR_BUFFER_TOO_SMALL = 14,
    /// A bug in groupcast: a panic was caught at the boundary.
    GROUPCAST_ERR_PANIC = 15,
}

use groupcast_result::*;

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
        }
    }

    fn from_u32(code: u32) -> Option<groupcast_result> {
        const ALL: [groupcast_result; 16] = [
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
        ];
        ALL.into_iter().find(|r| *r as u32 == code)
    }
}

/// Which events a host takes (`groupcast_config_set_events`); OR them
/// together. Registering a callback turns its event on by itself.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_events {
    /// `GROUPCAST_EVENT_CONNECT` for each connection.
    GROUPCAST_EVENTS_CONNECT = 1,
    /// Hold each connection until `groupcast_server_admit` (or refuse it
    /// with `groupcast_server_close`); implies `GROUPCAST_EVENTS_CONNECT`.
    GROUPCAST_EVENTS_APPROVE = 2,
    /// `GROUPCAST_EVENT_MESSAGE` for client messages that are not built-in
    /// commands (all of them when built-in commands are off).
    GROUPCAST_EVENTS_MESSAGE = 4,
    /// `GROUPCAST_EVENT_CLOSE` for each closed connection.
    GROUPCAST_EVENTS_CLOSE = 8,
    /// `GROUPCAST_EVENT_CHANNEL` for channels the host subscribes to; needed
    /// for `groupcast_server_channel_subscribe` when no other event is on.
    GROUPCAST_EVENTS_CHANNEL = 16,
}

/// What a [`groupcast_event`] is about.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_event_kind {
    /// A client completed the websocket handshake: `conn`, `peer`, `path`,
    /// `query`.
    GROUPCAST_EVENT_CONNECT = 1,
    /// A client message for the host: `conn`, `data`/`data_len`,
    /// `is_binary`.
    GROUPCAST_EVENT_MESSAGE = 2,
    /// A connection closed (it has already left its groups): `conn`,
    /// `close_code` (1006 when the socket ended without a close frame).
    GROUPCAST_EVENT_CLOSE = 3,
    /// Data published on a channel the host subscribed to: `channel`, and
    /// `data` (JSON text).
    GROUPCAST_EVENT_CHANNEL = 4,
}

/// One event, as a view into memory owned by the library.
///
/// Ownership: the pointers stay valid during the callback that received the
/// event, or — for `groupcast_server_poll` — until the next
/// `groupcast_server_poll` on the same server or `groupcast_server_free`,
/// whichever comes first. Copy what you keep. Every string is also
/// NUL-terminated (the NUL is not counted in its length); a text message may
/// itself contain NUL bytes, so trust the length. Fields a kind does not use
/// are 0 / NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct groupcast_event {
    /// A `groupcast_event_kind`.
    pub kind: u32,
    /// The connection (connect, message, close).
    pub conn: u64,
    /// Close: the close code sent or received; 1006 when none.
    pub close_code: u16,
    /// Message: true for a binary frame, false for text (valid UTF-8).
    pub is_binary: bool,
    /// Message: the payload. Channel: the data, as JSON text.
    pub data: *const u8,
    /// Length of `data` in bytes.
    pub data_len: usize,
    /// Channel: the channel name.
    pub channel: *const c_char,
    /// Length of `channel`.
    pub channel_len: usize,
    /// Connect: the client address, `ip:port`.
    pub peer: *const c_char,
    /// Length of `peer`.
    pub peer_len: usize,
    /// Connect: the request path, e.g. `/chat`.
    pub path: *const c_char,
    /// Length of `path`.
    pub path_len: usize,
    /// Connect: the query string without `?`, empty when none.
    pub query: *const c_char,
    /// Length of `query`.
    pub query_len: usize,
}

impl groupcast_event {
    fn empty() -> groupcast_event {
        groupcast_event {
            kind: 0,
            conn: 0,
            close_code: 0,
            is_binary: false,
            data: std::ptr::null(),
            data_len: 0,
            channel: std::ptr::null(),
            channel_len: 0,
            peer: std::ptr::null(),
            peer_len: 0,
            path: std::ptr::null(),
            path_len: 0,
            query: std::ptr::null(),
            query_len: 0,
        }
    }
}

/// Called for each new connection; return true to admit it, false to refuse
/// it (it is closed with 1008 "refused"). Runs on the host thread
/// "groupcast-host", never on a network thread. `event` is valid during the
/// call only.
pub type groupcast_connect_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        server: *mut groupcast_server,
        event: *const groupcast_event,
    ) -> bool,
>;

/// Called for a message, a close or a channel event. Runs on the host thread
/// "groupcast-host", never on a network thread. `event` is valid during the
/// call only.
pub type groupcast_event_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        server: *mut groupcast_server,
        event: *const groupcast_event,
    ),
>;

/// Releases a callback's userdata. Runs exactly once, after the last call of
/// that callback, on the thread that drops the last reference to it: the
/// caller of `groupcast_config_free`, of `groupcast_server_free`, of a
/// registration replacing it, or the host thread as it ends.
pub type groupcast_userdata_free = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// A registered callback with its userdata; the finalizer runs on drop.
struct Callback<F> {
    f: F,
    userdata: *mut c_void,
    free: groupcast_userdata_free,
}

// SAFETY: the C API documents that callbacks and finalizers are called from
// the host thread and from whichever thread releases them; the host promises
// its userdata tolerates that by registering it.
unsafe impl<F: Send> Send for Callback<F> {}
unsafe impl<F: Sync> Sync for Callback<F> {}

impl<F> Drop for Callback<F> {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the host gave us this finalizer for this userdata.
            unsafe { free(self.userdata) };
        }
    }
}

type ConnectFn =
    unsafe extern "C" fn(*mut c_void, *mut groupcast_server, *const groupcast_event) -> bool;
type EventFn = unsafe extern "C" fn(*mut c_void, *mut groupcast_server, *const groupcast_event);

/// The callbacks a config carries to the servers started from it.
#[derive(Default, Clone)]
struct Callbacks {
    on_connect: Option<Arc<Callback<ConnectFn>>>,
    on_message: Option<Arc<Callback<EventFn>>>,
    on_close: Option<Arc<Callback<EventFn>>>,
    on_channel: Option<Arc<Callback<EventFn>>>,
}

impl Callbacks {
    fn any(&self) -> bool {
        self.on_connect.is_some()
            || self.on_message.is_some()
            || self.on_close.is_some()
            || self.on_channel.is_some()
    }
}

/// A server's configuration, built with setters and read by
/// `groupcast_server_start` (it can start several servers and is freed by
/// the caller). Defaults are the seed's: websocket on 0.0.0.0:1234, an
/// embedded channel server on 127.0.0.1:2206, one worker thread per CPU,
/// built-in commands on, no events.
pub struct groupcast_config {
    /// The Rust configuration being built.
    config: Config,
    /// `groupcast_events` flags asked for with `groupcast_config_set_events`.
    events: u32,
    /// Registered callbacks; shared with the servers started from here.
    callbacks: Callbacks,
}

/// A running (or stopped) server: made by `groupcast_server_start`, released
/// by `groupcast_server_free`. Actions may be called from any thread.
pub struct groupcast_server {
    /// Actions; cheap and thread-safe.
    handle: NodeHandle,
    /// Kept so they stay readable after stop.
    addresses: Addresses,
    /// For stop; locked only by stop and free.
    server: Mutex<Server>,
    /// Cleared by stop, so actions after it say `GROUPCAST_ERR_STOPPED`.
    running: AtomicBool,
    /// Whether callbacks take the events (then poll is refused).
    callbacks_mode: bool,
    /// The events the host asked for; others are dropped (a channel-only
    /// host needs a queue, which the core opens only for other events).
    wanted: u32,
    /// Events returned by the last poll, which the views point into.
    poll_slot: Mutex<PollSlot>,
    /// Cleared by a free made inside a callback, so that the host thread
    /// calls nothing more with the freed pointer.
    alive: Arc<AtomicBool>,
}

/// Owned storage behind the views that poll hands out.
#[derive(Default)]
struct PollSlot {
    events: Vec<HostEvent>,
    peers: Vec<String>,
}

/// A snapshot of group names, from `groupcast_server_groups`; released by
/// `groupcast_groups_free`.
pub struct groupcast_groups {
    /// Each name followed by a NUL (not counted in its length).
    names: Vec<String>,
}

thread_local! {
    /// Details of the last failure on this thread.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    /// Whether this thread is the host thread delivering callbacks.
    static IN_HOST_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn fail(code: groupcast_result, detail: impl Into<String>) -> groupcast_result {
    let detail = detail.into();
    LAST_ERROR.with(|last| *last.borrow_mut() = detail);
    code
}

fn fail_with(error: &Error) -> groupcast_result {
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
    };
    fail(code, error.to_string())
}

/// The panic boundary every export runs in.
fn guard(f: impl FnOnce() -> groupcast_result) -> groupcast_result {
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
            None => return null_parameter(stringify!($ptr)),
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
            None => return null_parameter(stringify!($ptr)),
        }
    };
}

/// A UTF-8 string argument given as pointer + length (NULL is allowed for
/// length 0).
macro_rules! arg_str {
    ($ptr:ident, $len:ident) => {
        match arg_bytes($ptr.cast::<u8>(), $len, stringify!($ptr)) {
            Ok(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    return fail(
                        GROUPCAST_ERR_INVALID_UTF8,
                        format!("{} is not valid UTF-8: {e}", stringify!($ptr)),
                    );
                }
            },
            Err(code) => return code,
        }
    };
}

/// A slice argument given as pointer + count (NULL is allowed for count 0).
macro_rules! arg_slice {
    ($ptr:ident, $len:ident) => {
        match arg_slice_of($ptr, $len, stringify!($ptr)) {
            Ok(slice) => slice,
            Err(code) => return code,
        }
    };
}

fn null_parameter(name: &str) -> groupcast_result {
    fail(GROUPCAST_ERR_NULL_PARAMETER, format!("{name} is NULL"))
}

fn arg_bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8], groupcast_result> {
    arg_slice_of(ptr, len, name)
}

fn arg_slice_of<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T], groupcast_result> {
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
/// NULL; required ones are checked before any work).
fn out<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: the caller passes a writable pointer or NULL.
        unsafe { ptr.write(value) };
    }
}

/// Copies `text` and a NUL into `buf` when it fits.
fn write_text(text: &str, buf: *mut c_char, len: usize, out_len: *mut usize) -> groupcast_result {
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

// ---------------------------------------------------------------------------
// Configuration

/// Makes a configuration with the defaults (see `groupcast_config`).
///
/// # Safety
///
/// `out_config` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_new(
    out_config: *mut *mut groupcast_config,
) -> groupcast_result {
    guard(|| {
        if out_config.is_null() {
            return null_parameter("out_config");
        }
        let config = Box::new(groupcast_config {
            config: Config::default(),
            events: 0,
            callbacks: Callbacks::default(),
        });
        out(out_config, Box::into_raw(config));
        GROUPCAST_OK
    })
}

/// Releases a configuration and its references to callbacks (servers
/// started from it keep theirs). NULL does nothing.
///
/// # Safety
///
/// `config` is NULL or from `groupcast_config_new`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_free(config: *mut groupcast_config) {
    let _ = guard(|| {
        if !config.is_null() {
            // SAFETY: made by Box::into_raw in groupcast_config_new.
            drop(unsafe { Box::from_raw(config) });
        }
        GROUPCAST_OK
    });
}

/// Sets the websocket listen address, `host:port` (port 0 lets the OS pick;
/// read it back with `groupcast_server_websocket_address`).
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `addr` points to `addr_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_listen(
    config: *mut groupcast_config,
    addr: *const c_char,
    addr_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.listen = arg_str!(addr, addr_len).to_owned();
        GROUPCAST_OK
    })
}

/// Embeds a channel server listening on `addr` (the node uses it to reach
/// other nodes, and the host can publish and subscribe on it). Length 0
/// turns it off (a single node with no channel server).
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel_listen(
    config: *mut groupcast_config,
    addr: *const c_char,
    addr_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let addr = arg_str!(addr, addr_len);
        config.config.channel_listen = (!addr.is_empty()).then(|| addr.to_owned());
        GROUPCAST_OK
    })
}

/// Joins the channel server at `addr` instead of embedding one (exclusive
/// with `groupcast_config_set_channel_listen`: clear that one first). Length
/// 0 turns it off.
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel(
    config: *mut groupcast_config,
    addr: *const c_char,
    addr_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let addr = arg_str!(addr, addr_len);
        config.config.channel = (!addr.is_empty()).then(|| addr.to_owned());
        GROUPCAST_OK
    })
}

/// Uses Redis pub/sub as the bus between nodes instead of a channel
/// server: `redis://host:port` or `redis+cluster://h1:p1,h2:p2,...`
/// (exclusive with the channel options: clear those first). Length 0 turns
/// it off.
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_bus(
    config: *mut groupcast_config,
    url: *const c_char,
    url_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let url = arg_str!(url, url_len);
        config.config.bus = (!url.is_empty()).then(|| url.to_owned());
        GROUPCAST_OK
    })
}

/// Sets the number of network threads (the seed's `count`); 0 means one
/// per CPU.
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_workers(
    config: *mut groupcast_config,
    workers: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.workers = (workers > 0).then_some(workers);
        GROUPCAST_OK
    })
}

/// Turns the built-in commands (`add_group`, `leave_group`,
/// `send_to_group`) on or off. Off, every client message goes to the host,
/// which then owns the protocol (enable `GROUPCAST_EVENTS_MESSAGE` or
/// register `on_message`).
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_builtin_commands(
    config: *mut groupcast_config,
    enabled: bool,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.host.builtin_commands = enabled;
        GROUPCAST_OK
    })
}

/// Chooses the events the host takes, as `groupcast_events` flags OR-ed
/// together (replacing earlier flags; registered callbacks add theirs).
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_events(
    config: *mut groupcast_config,
    events: u32,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        if events >= 32 {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                format!("unknown event flags in {events:#x}"),
            );
        }
        config.events = events;
        GROUPCAST_OK
    })
}

/// Most events queued for the host before clients' reads pause (default
/// 65536); at least 1.
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_queue_capacity(
    config: *mut groupcast_config,
    capacity: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        if capacity == 0 {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                "queue capacity must be at least 1",
            );
        }
        config.config.host.queue_capacity = capacity;
        GROUPCAST_OK
    })
}

/// A client limit, for `groupcast_config_set_limit` (defaults in brackets;
/// durations in milliseconds).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_limit {
    /// Largest client message in bytes [1 MiB]; larger closes with 1009.
    GROUPCAST_LIMIT_MAX_MESSAGE_SIZE = 1,
    /// Bytes queued for one client before the slow-consumer policy [1 MiB].
    GROUPCAST_LIMIT_OUTBOUND_QUEUE_BYTES = 2,
    /// Groups one connection may be in [1024].
    GROUPCAST_LIMIT_MAX_GROUPS_PER_CONNECTION = 3,
    /// Longest group id in bytes [256].
    GROUPCAST_LIMIT_MAX_GROUP_ID_LEN = 4,
    /// Connections open at once, more refused with HTTP 503 [0: no limit].
    GROUPCAST_LIMIT_MAX_CONNECTIONS = 5,
    /// Milliseconds between server pings [25000].
    GROUPCAST_LIMIT_PING_INTERVAL_MS = 6,
    /// Milliseconds of client silence before closing it [60000].
    GROUPCAST_LIMIT_IDLE_TIMEOUT_MS = 7,
    /// Milliseconds a client has for the handshake [10000].
    GROUPCAST_LIMIT_HANDSHAKE_TIMEOUT_MS = 8,
    /// Milliseconds a stopping server gives clients to receive what is
    /// queued [5000].
    GROUPCAST_LIMIT_DRAIN_TIMEOUT_MS = 9,
    /// Kernel send buffer per client socket in bytes [0: the OS's].
    GROUPCAST_LIMIT_SEND_BUFFER_SIZE = 10,
}

/// What to do with a client whose outbound queue is full
/// (`groupcast_config_set_slow_consumer`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_slow_consumer {
    /// Close it with 1008 (the default).
    GROUPCAST_SLOW_CONSUMER_CLOSE = 1,
    /// Drop the message that does not fit, for that client only.
    GROUPCAST_SLOW_CONSUMER_DROP = 2,
}

/// Sets one client limit (`which` is a `groupcast_limit`). Values are
/// checked again by `groupcast_server_start`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_limit(
    config: *mut groupcast_config,
    which: u32,
    value: u64,
) -> groupcast_result {
    guard(|| {
        use groupcast_limit::*;
        let config = arg_mut!(config);
        let limits = &mut config.config.limits;
        let size = usize::try_from(value).unwrap_or(usize::MAX);
        let millis = Duration::from_millis(value);
        match which {
            w if w == GROUPCAST_LIMIT_MAX_MESSAGE_SIZE as u32 => limits.max_message_size = size,
            w if w == GROUPCAST_LIMIT_OUTBOUND_QUEUE_BYTES as u32 => {
                limits.outbound_queue_bytes = size
            }
            w if w == GROUPCAST_LIMIT_MAX_GROUPS_PER_CONNECTION as u32 => {
                limits.max_groups_per_connection = size
            }
            w if w == GROUPCAST_LIMIT_MAX_GROUP_ID_LEN as u32 => limits.max_group_id_len = size,
            w if w == GROUPCAST_LIMIT_MAX_CONNECTIONS as u32 => {
                limits.max_connections = (size > 0).then_some(size)
            }
            w if w == GROUPCAST_LIMIT_PING_INTERVAL_MS as u32 => limits.ping_interval = millis,
            w if w == GROUPCAST_LIMIT_IDLE_TIMEOUT_MS as u32 => limits.idle_timeout = millis,
            w if w == GROUPCAST_LIMIT_HANDSHAKE_TIMEOUT_MS as u32 => {
                limits.handshake_timeout = millis
            }
            w if w == GROUPCAST_LIMIT_DRAIN_TIMEOUT_MS as u32 => limits.drain_timeout = millis,
            w if w == GROUPCAST_LIMIT_SEND_BUFFER_SIZE as u32 => {
                limits.send_buffer_size = (size > 0).then_some(size)
            }
            other => {
                return fail(
                    GROUPCAST_ERR_INVALID_ARGUMENT,
                    format!("unknown limit {other}"),
                );
            }
        }
        GROUPCAST_OK
    })
}

/// Chooses the slow-consumer policy (`policy` is a
/// `groupcast_slow_consumer`).
///
/// # Safety
///
/// `config` from `groupcast_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_slow_consumer(
    config: *mut groupcast_config,
    policy: u32,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.config.limits.slow_consumer = match policy {
            p if p == groupcast_slow_consumer::GROUPCAST_SLOW_CONSUMER_CLOSE as u32 => {
                SlowConsumerPolicy::Close
            }
            p if p == groupcast_slow_consumer::GROUPCAST_SLOW_CONSUMER_DROP as u32 => {
                SlowConsumerPolicy::Drop
            }
            other => {
                return fail(
                    GROUPCAST_ERR_INVALID_ARGUMENT,
                    format!("unknown slow-consumer policy {other}"),
                );
            }
        };
        GROUPCAST_OK
    })
}

/// Adds a browser origin allowed to connect (e.g. `https://example.com`);
/// once one is added, browsers from other origins are refused with HTTP 403.
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_add_allowed_origin(
    config: *mut groupcast_config,
    origin: *const c_char,
    origin_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let origin = arg_str!(origin, origin_len).to_owned();
        config
            .config
            .limits
            .allowed_origins
            .get_or_insert_with(Vec::new)
            .push(origin);
        GROUPCAST_OK
    })
}

/// Sets the channel server's shared secret: required from clients by an
/// embedded channel server, sent by this node when it joins one. Length 0
/// clears it.
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel_secret(
    config: *mut groupcast_config,
    secret: *const c_char,
    secret_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let secret = arg_str!(secret, secret_len);
        config.config.channel_secret = (!secret.is_empty()).then(|| secret.to_owned());
        GROUPCAST_OK
    })
}

/// Serves Prometheus metrics on `addr` (`GET /metrics`). Length 0 turns it
/// off.
///
/// # Safety
///
/// As `groupcast_config_set_listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_metrics_listen(
    config: *mut groupcast_config,
    addr: *const c_char,
    addr_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let addr = arg_str!(addr, addr_len);
        config.config.metrics_listen = (!addr.is_empty()).then(|| addr.to_owned());
        GROUPCAST_OK
    })
}

fn callback<F>(f: F, userdata: *mut c_void, free: groupcast_userdata_free) -> Arc<Callback<F>> {
    Arc::new(Callback { f, userdata, free })
}

/// Registers `on_connect` (NULL unregisters), which decides on each new
/// connection: the connection is held, reading nothing, until it returns.
/// Switches the server to callbacks mode. `userdata` is passed to every
/// call; `free_userdata` (may be NULL) releases it once no config or server
/// needs it. A replaced registration's finalizer runs now if nothing else
/// holds it.
///
/// Thread: the callback runs on the host thread "groupcast-host", one event
/// at a time in arrival order, never on a network thread.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `callback` callable as documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_on_connect(
    config: *mut groupcast_config,
    callback_fn: groupcast_connect_callback,
    userdata: *mut c_void,
    free_userdata: groupcast_userdata_free,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.callbacks.on_connect = callback_fn.map(|f| callback(f, userdata, free_userdata));
        GROUPCAST_OK
    })
}

/// Registers `on_message` (NULL unregisters) for client messages that are
/// not built-in commands (all of them with built-in commands off).
/// Userdata, finalizer and thread as `groupcast_config_on_connect`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `callback_fn` callable as
/// documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_on_message(
    config: *mut groupcast_config,
    callback_fn: groupcast_event_callback,
    userdata: *mut c_void,
    free_userdata: groupcast_userdata_free,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.callbacks.on_message = callback_fn.map(|f| callback(f, userdata, free_userdata));
        GROUPCAST_OK
    })
}

/// Registers `on_close` (NULL unregisters), called once per closed
/// connection. Userdata, finalizer and thread as
/// `groupcast_config_on_connect`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `callback_fn` callable as
/// documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_on_close(
    config: *mut groupcast_config,
    callback_fn: groupcast_event_callback,
    userdata: *mut c_void,
    free_userdata: groupcast_userdata_free,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.callbacks.on_close = callback_fn.map(|f| callback(f, userdata, free_userdata));
        GROUPCAST_OK
    })
}

/// Registers `on_channel_event` (NULL unregisters), called with the data of
/// channels subscribed with `groupcast_server_channel_subscribe`. Userdata,
/// finalizer and thread as `groupcast_config_on_connect`.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `callback_fn` callable as
/// documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_on_channel_event(
    config: *mut groupcast_config,
    callback_fn: groupcast_event_callback,
    userdata: *mut c_void,
    free_userdata: groupcast_userdata_free,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        config.callbacks.on_channel = callback_fn.map(|f| callback(f, userdata, free_userdata));
        GROUPCAST_OK
    })
}

// ---------------------------------------------------------------------------
// Server lifecycle

const EV_CONNECT: u32 = groupcast_events::GROUPCAST_EVENTS_CONNECT as u32;
const EV_APPROVE: u32 = groupcast_events::GROUPCAST_EVENTS_APPROVE as u32;
const EV_MESSAGE: u32 = groupcast_events::GROUPCAST_EVENTS_MESSAGE as u32;
const EV_CLOSE: u32 = groupcast_events::GROUPCAST_EVENTS_CLOSE as u32;
const EV_CHANNEL: u32 = groupcast_events::GROUPCAST_EVENTS_CHANNEL as u32;

/// Starts a server from `config` and returns once it listens: its network
/// threads and, when callbacks are registered, its host thread run in the
/// background. `config` is only read; free it when convenient. Without
/// callbacks, events asked for with `groupcast_config_set_events` are taken
/// with `groupcast_server_poll`. With callbacks and built-in commands off,
/// `on_message` is required (`GROUPCAST_ERR_CONFIG`).
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
        if out_server.is_null() {
            return null_parameter("out_server");
        }
        let callbacks = config.callbacks.clone();
        if callbacks.any() && callbacks.on_message.is_none() && !config.config.host.builtin_commands
        {
            // Every client message would be dropped on the host thread.
            return fail(
                GROUPCAST_ERR_CONFIG,
                "built-in commands are off but no on_message callback is registered",
            );
        }
        let mut wanted = config.events;
        if callbacks.on_connect.is_some() {
            wanted |= EV_CONNECT | EV_APPROVE;
        }
        if callbacks.on_message.is_some() {
            wanted |= EV_MESSAGE;
        }
        if callbacks.on_close.is_some() {
            wanted |= EV_CLOSE;
        }
        if callbacks.on_channel.is_some() {
            wanted |= EV_CHANNEL;
        }
        let mut rust_config = config.config.clone();
        let host = &mut rust_config.host;
        host.connect_events = wanted & (EV_CONNECT | EV_APPROVE) != 0;
        host.approve_connections = wanted & EV_APPROVE != 0;
        host.message_events = wanted & EV_MESSAGE != 0 || !host.builtin_commands;
        host.close_events = wanted & EV_CLOSE != 0;
        if wanted & EV_CHANNEL != 0 && !host.wants_events() {
            // The core opens the event queue only for connection events; a
            // host that only subscribes to channels still needs it. The close
            // events this brings are dropped (not in `wanted`).
            host.close_events = true;
        }
        if !host.builtin_commands {
            wanted |= EV_MESSAGE;
        }
        let server = match Server::start(rust_config) {
            Ok(server) => server,
            Err(e) => return fail_with(&e),
        };
        let boxed = Box::new(groupcast_server {
            handle: server.handle().clone(),
            addresses: server.addresses(),
            server: Mutex::new(server),
            running: AtomicBool::new(true),
            callbacks_mode: callbacks.any(),
            wanted,
            poll_slot: Mutex::new(PollSlot::default()),
            alive: Arc::new(AtomicBool::new(true)),
        });
        let raw = Box::into_raw(boxed);
        // SAFETY: just made; freed below on error, or by groupcast_server_free.
        let server = unsafe { &*raw };
        if server.callbacks_mode {
            let handler = host_thread_handler(raw, server, callbacks);
            if let Err(e) = server.server.lock().dispatch(handler) {
                // SAFETY: not handed out yet.
                drop(unsafe { Box::from_raw(raw) });
                return fail_with(&e);
            }
        }
        out(out_server, raw);
        GROUPCAST_OK
    })
}

/// The address of a server, movable to the host thread. It outlives every
/// use there: free joins the host thread before releasing the server, and a
/// free made on the host thread itself clears `alive` first.
#[derive(Clone, Copy)]
struct ServerPtr(*mut groupcast_server);
// SAFETY: see above; the server's own fields are Send + Sync.
unsafe impl Send for ServerPtr {}

/// What the host thread runs for each batch of events.
fn host_thread_handler(
    raw: *mut groupcast_server,
    server: &groupcast_server,
    callbacks: Callbacks,
) -> impl FnMut(&mut Vec<HostEvent>) + Send + 'static {
    let ptr = ServerPtr(raw);
    let alive = server.alive.clone();
    let handle = server.handle.clone();
    let wanted = server.wanted;
    let mut peer = String::new();
    move |batch: &mut Vec<HostEvent>| {
        IN_HOST_THREAD.with(|flag| flag.set(true));
        let ptr = ptr;
        for mut event in batch.drain(..) {
            if !alive.load(Ordering::Acquire) {
                return;
            }
            // A panic here is a bug of ours; keep the host thread alive.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                deliver(ptr.0, &handle, &callbacks, wanted, &mut event, &mut peer);
            }));
        }
    }
}

fn deliver(
    server: *mut groupcast_server,
    handle: &NodeHandle,
    callbacks: &Callbacks,
    wanted: u32,
    event: &mut HostEvent,
    peer: &mut String,
) {
    let view = view_of(event, peer);
    match event {
        HostEvent::Connect { conn, .. } => {
            let conn = *conn;
            match &callbacks.on_connect {
                Some(cb) => {
                    // SAFETY: a callback the host registered, with its
                    // userdata; the view lives across the call.
                    let admit = unsafe { (cb.f)(cb.userdata, server, &view) };
                    let _ = if admit {
                        handle.admit(conn)
                    } else {
                        handle.close(conn, 1008, "refused")
                    };
                }
                None if wanted & EV_APPROVE != 0 => {
                    let _ = handle.admit(conn);
                }
                None => {}
            }
        }
        HostEvent::Message { .. } => call(&callbacks.on_message, server, &view),
        HostEvent::Close { .. } if wanted & EV_CLOSE != 0 => {
            call(&callbacks.on_close, server, &view)
        }
        HostEvent::Close { .. } => {}
        HostEvent::Channel { .. } => call(&callbacks.on_channel, server, &view),
    }
}

fn call(
    cb: &Option<Arc<Callback<EventFn>>>,
    server: *mut groupcast_server,
    view: &groupcast_event,
) {
    if let Some(cb) = cb {
        // SAFETY: a callback the host registered, with its userdata.
        unsafe { (cb.f)(cb.userdata, server, view) };
    }
}

/// NUL-terminates the event's strings in place (so C can also use them as
/// C strings) and returns a view pointing into them and into `peer`. The
/// view is valid while `event` and `peer` are neither moved nor changed.
fn view_of(event: &mut HostEvent, peer: &mut String) -> groupcast_event {
    fn terminated(text: &mut String) -> (*const c_char, usize) {
        let len = text.len();
        text.push('\0');
        (text.as_ptr().cast(), len)
    }
    let mut view = groupcast_event::empty();
    match event {
        HostEvent::Connect {
            conn,
            peer: addr,
            path,
            query,
        } => {
            use std::fmt::Write;
            view.kind = groupcast_event_kind::GROUPCAST_EVENT_CONNECT as u32;
            view.conn = *conn;
            peer.clear();
            let _ = write!(peer, "{addr}");
            (view.peer, view.peer_len) = terminated(peer);
            (view.path, view.path_len) = terminated(path);
            (view.query, view.query_len) = terminated(query);
        }
        HostEvent::Message { conn, payload } => {
            view.kind = groupcast_event_kind::GROUPCAST_EVENT_MESSAGE as u32;
            view.conn = *conn;
            let (data, len) = match payload {
                Payload::Text(text) => terminated(text),
                Payload::Binary(bytes) => {
                    view.is_binary = true;
                    let len = bytes.len();
                    bytes.push(0);
                    (bytes.as_ptr().cast(), len)
                }
            };
            (view.data, view.data_len) = (data.cast(), len);
        }
        HostEvent::Close { conn, code } => {
            view.kind = groupcast_event_kind::GROUPCAST_EVENT_CLOSE as u32;
            view.conn = *conn;
            view.close_code = code.unwrap_or(1006);
        }
        HostEvent::Channel { channel, data } => {
            view.kind = groupcast_event_kind::GROUPCAST_EVENT_CHANNEL as u32;
            (view.channel, view.channel_len) = terminated(channel);
            let (data, len) = terminated(data);
            (view.data, view.data_len) = (data.cast(), len);
        }
    }
    view
}

/// Stops the server: clients are closed with 1001, every network task ends
/// and every thread is joined before it returns; in callbacks mode the host
/// thread first delivers the last events (the closes), then ends. Returns
/// `GROUPCAST_ERR_STOPPED` (harmless) when already stopped. From inside a
/// callback it stops the server but does not wait for the host thread,
/// which ends when the callback returns; no callback runs after that.
///
/// # Safety
///
/// `server` from `groupcast_server_start`, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_stop(server: *mut groupcast_server) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        stop(server)
    })
}

fn stop(server: &groupcast_server) -> groupcast_result {
    let in_host_thread = IN_HOST_THREAD.with(Cell::get);
    let inner = if in_host_thread && server.callbacks_mode {
        match server.server.try_lock() {
            Some(inner) => inner,
            // Another thread is stopping and waits for this thread to
            // deliver the last events: waiting here would deadlock.
            None => return fail(GROUPCAST_ERR_STOPPED, "the server is stopping"),
        }
    } else {
        server.server.lock()
    };
    if !inner.is_running() {
        return fail(GROUPCAST_ERR_STOPPED, "the server was already stopped");
    }
    if in_host_thread && server.callbacks_mode {
        // No callback after a stop made from a callback.
        server.alive.store(false, Ordering::Release);
    }
    inner.stop();
    server.running.store(false, Ordering::Release);
    GROUPCAST_OK
}

/// Stops the server if it runs, waits for its threads, runs the callbacks'
/// finalizers (unless the config still holds them) and releases it. NULL
/// does nothing. No other call on this server may be in progress or made
/// afterwards; do not call it from a callback.
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
        // SAFETY: made by Box::into_raw in groupcast_server_start.
        let boxed = unsafe { Box::from_raw(server) };
        boxed.alive.store(false, Ordering::Release);
        let _ = stop(&boxed);
        drop(boxed);
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
        write_text(&server.addresses.websocket.to_string(), buf, len, out_len)
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
            .addresses
            .channel
            .map(|a| a.to_string())
            .unwrap_or_default();
        write_text(&text, buf, len, out_len)
    })
}

// ---------------------------------------------------------------------------
// Poll mode

/// Takes up to `capacity` events into the caller's array `events`, waiting
/// up to `timeout_ms` for the first (0: do not wait; negative: until one
/// comes or the server stops), and writes how many into `out_count` (0 on
/// timeout). Returns `GROUPCAST_ERR_STOPPED` once the server has stopped
/// and every event has been taken, `GROUPCAST_ERR_MODE` when the server
/// runs callbacks or takes no events.
///
/// Ownership: the strings and data the events point to belong to the
/// server and stay valid until the next `groupcast_server_poll` on this
/// server or `groupcast_server_free`; copy what you keep. Poll from one
/// thread at a time (concurrent polls wait for each other). For event
/// loops, see `groupcast_server_notify_fd`.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `events` has room for
/// `capacity` items; `out_count` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_poll(
    server: *mut groupcast_server,
    timeout_ms: i32,
    events: *mut groupcast_event,
    capacity: usize,
    out_count: *mut usize,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        if events.is_null() {
            return null_parameter("events");
        }
        if out_count.is_null() {
            return null_parameter("out_count");
        }
        if capacity == 0 {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                "capacity must be at least 1",
            );
        }
        let queue = match poll_queue(server) {
            Ok(queue) => queue,
            Err(code) => return code,
        };
        let deadline = u64::try_from(timeout_ms)
            .ok()
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        let mut slot = server.poll_slot.lock();
        let slot = &mut *slot;
        slot.events.clear();
        slot.peers.clear();
        loop {
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let taken = queue.poll_into(&mut slot.events, timeout, capacity);
            // Drop close events a channel-only host did not ask for.
            if server.wanted & EV_CLOSE == 0 {
                slot.events
                    .retain(|e| !matches!(e, HostEvent::Close { .. }));
            }
            if !slot.events.is_empty() {
                break;
            }
            if queue.is_finished() {
                return fail(
                    GROUPCAST_ERR_STOPPED,
                    "the server has stopped and every event was taken",
                );
            }
            if taken == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        slot.peers.resize_with(slot.events.len(), String::new);
        for (i, (event, peer)) in slot.events.iter_mut().zip(&mut slot.peers).enumerate() {
            let view = view_of(event, peer);
            // SAFETY: `events` has room for `capacity` >= len items.
            unsafe { events.add(i).write(view) };
        }
        out(out_count, slot.events.len());
        GROUPCAST_OK
    })
}

fn poll_queue(
    server: &groupcast_server,
) -> Result<&Arc<crate::host::HostEvents>, groupcast_result> {
    if server.callbacks_mode {
        return Err(fail(
            GROUPCAST_ERR_MODE,
            "this server delivers events to callbacks",
        ));
    }
    server
        .handle
        .events()
        .ok_or_else(|| fail(GROUPCAST_ERR_MODE, "the configuration asks for no events"))
}

/// Writes a file descriptor that is readable while events wait to be polled
/// (and once the server has stopped), for `poll`/`epoll`/`select` loops. Do
/// not read from it or close it: `groupcast_server_poll` drains it, and it
/// lives as long as the server.
///
/// # Safety
///
/// `server` from `groupcast_server_start`; `out_fd` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_notify_fd(
    server: *const groupcast_server,
    out_fd: *mut c_int,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        if out_fd.is_null() {
            return null_parameter("out_fd");
        }
        match poll_queue(server) {
            Ok(queue) => {
                out(out_fd, queue.notify_fd());
                GROUPCAST_OK
            }
            Err(code) => code,
        }
    })
}

// ---------------------------------------------------------------------------
// Actions: callable from any thread, including callbacks; none waits on
// the network.

fn running(server: &groupcast_server) -> Result<&NodeHandle, groupcast_result> {
    if server.running.load(Ordering::Acquire) {
        Ok(&server.handle)
    } else {
        Err(fail(GROUPCAST_ERR_STOPPED, "the server has been stopped"))
    }
}

/// The running server's handle, or return `GROUPCAST_ERR_STOPPED`.
macro_rules! handle_of {
    ($server:ident) => {{
        let server = arg_ref!($server);
        match running(server) {
            Ok(handle) => handle,
            Err(code) => return code,
        }
    }};
}

fn done<T>(result: crate::Result<T>, out_ptr: *mut T) -> groupcast_result {
    match result {
        Ok(value) => {
            out(out_ptr, value);
            GROUPCAST_OK
        }
        Err(e) => fail_with(&e),
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
/// Also refuses a connection held for approval.
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
        let handle = handle_of!(server);
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
        let handle = handle_of!(server);
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
        let handle = handle_of!(server);
        if out_stats.is_null() {
            return null_parameter("out_stats");
        }
        out(out_stats, handle.stats());
        GROUPCAST_OK
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
        let handle = handle_of!(server);
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
