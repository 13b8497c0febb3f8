//! Events as C sees them: `groupcast_event` views, and the two ways of
//! taking them — polling (`groupcast_server_poll`, shared with the channel
//! client's poll) and callbacks on the host thread (the C [`Hooks`]).
//!
//! A view points into memory the library owns: the event itself, its
//! strings NUL-terminated in place. Which callback gets which event, and
//! what a connect callback's answer means, is the core's routing
//! ([`crate::host::Hooks`]); this file only builds views and calls C.

use std::cell::Cell;
use std::ffi::{c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::config::{Callback, Callbacks, EventFn};
use super::result::*;
use super::server::groupcast_server;
use crate::host::{EventHandler, Hooks, HostEvent, HostEvents, Payload, Polled, Verdict};

/// What a [`groupcast_event`] is about.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum groupcast_event_kind {
    /// A client connected: `conn`, `peer`, `path`, `query`, `headers`,
    /// `subprotocols`. With `GROUPCAST_EVENTS_APPROVE` it comes before the
    /// websocket upgrade, which waits for the verdict.
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
/// event, or — for `groupcast_server_poll` and
/// `groupcast_channel_client_poll` — until the next poll on the same server
/// (client) or its `_free`, whichever comes first. Copy what you keep. Every string is also
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
    /// Connect: the request's headers, `headers_len` of them, in request
    /// order (names as sent with `GROUPCAST_EVENTS_APPROVE`, lowercase
    /// otherwise).
    pub headers: *const groupcast_header,
    /// Number of `headers`.
    pub headers_len: usize,
    /// Connect: the subprotocols the client offered, as a
    /// `Sec-WebSocket-Protocol` value (`"chat, superchat"`), empty when none.
    pub subprotocols: *const c_char,
    /// Length of `subprotocols`.
    pub subprotocols_len: usize,
}

/// One request header of a connect event; both strings are also
/// NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct groupcast_header {
    /// The header's name.
    pub name: *const c_char,
    /// Length of `name`.
    pub name_len: usize,
    /// Its value.
    pub value: *const c_char,
    /// Length of `value`.
    pub value_len: usize,
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
            headers: std::ptr::null(),
            headers_len: 0,
            subprotocols: std::ptr::null(),
            subprotocols_len: 0,
        }
    }
}

/// What a connect event's view points to beyond the event itself.
#[derive(Default)]
pub(crate) struct ViewStore {
    /// The peer address as text.
    peer: String,
    /// The header views.
    headers: Vec<groupcast_header>,
    /// The offered subprotocols, joined.
    subprotocols: String,
}

// SAFETY: the header views point into the event last viewed; Rust never
// reads through them, and they are rebuilt before each view is handed out.
unsafe impl Send for ViewStore {}

/// NUL-terminates the event's strings in place (so C can also use them as
/// C strings) and returns a view pointing into them and into `store`. The
/// view is valid while `event` and `store` are neither moved nor changed.
fn view_of(event: &mut HostEvent, store: &mut ViewStore) -> groupcast_event {
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
            headers,
            subprotocols,
        } => {
            use std::fmt::Write;
            view.kind = groupcast_event_kind::GROUPCAST_EVENT_CONNECT as u32;
            view.conn = *conn;
            store.peer.clear();
            let _ = write!(store.peer, "{addr}");
            (view.peer, view.peer_len) = terminated(&mut store.peer);
            (view.path, view.path_len) = terminated(path);
            (view.query, view.query_len) = terminated(query);
            store.headers.clear();
            for (name, value) in headers.iter_mut() {
                let (name, name_len) = terminated(name);
                let (value, value_len) = terminated(value);
                store.headers.push(groupcast_header {
                    name,
                    name_len,
                    value,
                    value_len,
                });
            }
            (view.headers, view.headers_len) = (store.headers.as_ptr(), store.headers.len());
            store.subprotocols = subprotocols.join(", ");
            (view.subprotocols, view.subprotocols_len) = terminated(&mut store.subprotocols);
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

// ---------------------------------------------------------------------------
// Polling

/// The events of the last poll, which the views handed out point into;
/// one per polled object (server or channel client).
#[derive(Default)]
pub(crate) struct PollSlot {
    events: Vec<HostEvent>,
    stores: Vec<ViewStore>,
}

impl PollSlot {
    /// A whole poll: checks the arguments, releases the previous poll's
    /// events, takes up to `capacity` new ones from `queue` (waiting as
    /// `timeout_ms` says: 0 not at all, negative until one comes or the
    /// queue finishes) and writes their views into `events`.
    /// `finished` is the detail of `GROUPCAST_ERR_STOPPED`.
    pub(crate) fn poll(
        slot: &Mutex<PollSlot>,
        queue: &HostEvents,
        timeout_ms: i32,
        events: *mut groupcast_event,
        capacity: usize,
        out_count: *mut usize,
        finished: &str,
    ) -> groupcast_result {
        arg_out!(events);
        arg_out!(out_count);
        if capacity == 0 {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                "capacity must be at least 1",
            );
        }
        let deadline = u64::try_from(timeout_ms)
            .ok()
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        let mut slot = slot.lock();
        let slot = &mut *slot;
        slot.events.clear();
        slot.stores.clear();
        match queue.poll_until(&mut slot.events, deadline, capacity) {
            Polled::Finished => return fail(GROUPCAST_ERR_STOPPED, finished),
            Polled::TimedOut | Polled::Events(_) => {}
        }
        slot.stores
            .resize_with(slot.events.len(), ViewStore::default);
        for (i, (event, store)) in slot.events.iter_mut().zip(&mut slot.stores).enumerate() {
            let view = view_of(event, store);
            // SAFETY: `events` has room for `capacity` >= len items.
            unsafe { events.add(i).write(view) };
        }
        out(out_count, slot.events.len());
        GROUPCAST_OK
    }
}

/// Writes `queue`'s notification fd into `out_fd`.
pub(crate) fn write_notify_fd(queue: &HostEvents, out_fd: *mut c_int) -> groupcast_result {
    arg_out!(out_fd);
    out(out_fd, queue.notify_fd());
    GROUPCAST_OK
}

/// The queue a server's events are polled from, or why there is none.
fn poll_queue(server: &groupcast_server) -> Result<&Arc<HostEvents>, groupcast_result> {
    if server.callbacks_mode {
        return Err(fail(
            GROUPCAST_ERR_MODE,
            "this server delivers events to callbacks",
        ));
    }
    server
        .server
        .handle()
        .events()
        .ok_or_else(|| fail(GROUPCAST_ERR_MODE, "the configuration asks for no events"))
}

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
        let queue = match poll_queue(server) {
            Ok(queue) => queue,
            Err(code) => return code,
        };
        PollSlot::poll(
            &server.poll_slot,
            queue,
            timeout_ms,
            events,
            capacity,
            out_count,
            "the server has stopped and every event was taken",
        )
    })
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
        arg_out!(out_fd);
        match poll_queue(server) {
            Ok(queue) => write_notify_fd(queue, out_fd),
            Err(code) => code,
        }
    })
}

// ---------------------------------------------------------------------------
// Callbacks

thread_local! {
    /// The server whose callbacks this thread is running now (its host
    /// thread, inside a batch); NULL elsewhere.
    static HOST_OF: Cell<*const groupcast_server> = const { Cell::new(std::ptr::null()) };
}

/// Whether the calling thread is `server`'s host thread (so a stop made
/// now comes from one of its callbacks).
pub(crate) fn in_callback_of(server: &groupcast_server) -> bool {
    HOST_OF.with(|host| std::ptr::eq(host.get(), server))
}

/// The address of a server, movable to the host thread. It outlives every
/// call made with it there: free stops the server, which joins the host
/// thread, before releasing it; a stop or free made on the host thread
/// itself clears `alive` first, and [`CHooks::halted`] then hands nothing
/// more over.
#[derive(Clone, Copy)]
struct ServerPtr(*mut groupcast_server);
// SAFETY: see above; the server's own fields are Send + Sync.
unsafe impl Send for ServerPtr {}

/// The C host's callbacks, run by the core on the host thread.
pub(crate) struct CHooks {
    server: ServerPtr,
    callbacks: Callbacks,
    /// Shared with the server; cleared by a stop from a callback and by
    /// free.
    alive: Arc<AtomicBool>,
    /// Storage for what a connect event's view points to.
    store: ViewStore,
}

impl CHooks {
    pub(crate) fn new(
        server: *mut groupcast_server,
        callbacks: Callbacks,
        alive: Arc<AtomicBool>,
    ) -> CHooks {
        CHooks {
            server: ServerPtr(server),
            callbacks,
            alive,
            store: ViewStore::default(),
        }
    }
}

/// Builds the view of `event` and calls `call` with it; `None` when our
/// code panicked (a C callback cannot unwind into us: that would abort).
fn call_c<R>(
    server: ServerPtr,
    store: &mut ViewStore,
    event: &mut HostEvent,
    call: impl FnOnce(*mut groupcast_server, &groupcast_event) -> R,
) -> Option<R> {
    catch_unwind(AssertUnwindSafe(|| {
        let view = view_of(event, store);
        call(server.0, &view)
    }))
    .ok()
}

/// Calls an event callback, if registered.
fn call_event(
    server: ServerPtr,
    store: &mut ViewStore,
    cb: &Option<Arc<Callback<EventFn>>>,
    event: &mut HostEvent,
) {
    if let Some(cb) = cb {
        call_c(server, store, event, |server, view| {
            // SAFETY: a callback the host registered, with its userdata;
            // the view lives across the call.
            unsafe { (cb.f)(cb.userdata, server, view) }
        });
    }
}

impl Hooks for CHooks {
    fn batch(&mut self, route: &mut dyn FnMut(&mut dyn EventHandler)) {
        HOST_OF.with(|host| host.set(self.server.0));
        route(self);
    }
}

impl EventHandler for CHooks {
    fn on_connect(&mut self, event: &mut HostEvent) -> Verdict {
        let Some(cb) = &self.callbacks.on_connect else {
            // Approval asked for with flags only: nobody decides, admit.
            return Verdict::ADMIT;
        };
        let admitted = call_c(self.server, &mut self.store, event, |server, view| {
            // SAFETY: a callback the host registered, with its userdata;
            // the view lives across the call.
            unsafe { (cb.f)(cb.userdata, server, view) }
        });
        match admitted {
            // Decided from the callback (`groupcast_server_refuse`, ...):
            // that first verdict stands and this one finds nobody held.
            Some(true) => Verdict::ADMIT,
            Some(false) => Verdict::refuse(),
            None => Verdict::Failed,
        }
    }

    fn on_message(&mut self, event: &mut HostEvent) {
        call_event(
            self.server,
            &mut self.store,
            &self.callbacks.on_message,
            event,
        );
    }

    fn on_close(&mut self, event: &mut HostEvent) {
        call_event(
            self.server,
            &mut self.store,
            &self.callbacks.on_close,
            event,
        );
    }

    fn on_channel(&mut self, event: &mut HostEvent) {
        call_event(
            self.server,
            &mut self.store,
            &self.callbacks.on_channel,
            event,
        );
    }

    fn halted(&self) -> bool {
        !self.alive.load(Ordering::Acquire)
    }
}
