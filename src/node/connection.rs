//! One websocket client: the handshake, then a single task that reads the
//! client's commands and writes what is queued for it.
//!
//! When the host approves connections it decides before the handshake,
//! from the request head read without being consumed; a refusal is a plain
//! HTTP response and the websocket never exists. A plain HTTP request gets
//! 426 either way.
//!
//! Reading and writing share one task (and one `select!`) so an idle
//! connection costs one small task, not two. Everything queued when the
//! writer wakes up is fed to the socket and flushed once, so a burst of group
//! messages leaves in few syscalls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError as WsProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::state::{NodeState, Pending};
use super::writer::write_frames;
use crate::host::{FAILED_STATUS, HostEvent, Payload, Verdict};
use crate::ids::GroupId;
use crate::protocol::{
    ClientCommand, ProtocolError, error_reply, parse_binary_command, parse_command,
};
use crate::queue::{FrameRun, Outbound, OutboxReceiver};
use crate::registry::ConnectionEntry;
use crate::stats::NodeCounters;

/// How long a closing connection waits for the client's close reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Most client messages handled in a row before queued frames are written.
const READ_BATCH: usize = 256;

/// Most queued items written per flush; bounds how long the writer keeps
/// the task away from reading.
const WRITE_BATCH: usize = 64;

/// Longest request head read before the upgrade for the host's verdict
/// (larger ones get 431).
const MAX_HEAD: usize = 8 * 1024;

/// Most headers in a request head; tungstenite's own bound.
const MAX_HEADERS: usize = 124;

/// How long to wait before peeking again at a request head that has not
/// grown (the socket stays readable while unread bytes wait, so waiting for
/// readiness alone would spin).
const PEEK_PAUSE: Duration = Duration::from_millis(5);

/// The body of the `426 Upgrade Required` answer to a plain HTTP request.
const NOT_WEBSOCKET: &str =
    "This is a websocket endpoint: connect with a websocket client (Upgrade: websocket).\n";

/// Where the client asked to connect and what it said, from the handshake
/// request.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestTarget {
    /// The request path, e.g. `/chat`.
    pub(crate) path: String,
    /// The query string without `?`, e.g. `token=abc`; empty when none.
    pub(crate) query: String,
    /// The headers, for a connect event after the handshake.
    pub(crate) headers: Vec<(String, String)>,
    /// The subprotocols offered, for the same event.
    pub(crate) subprotocols: Vec<String>,
}

/// Accepts the websocket handshake and serves the connection until it
/// closes. Never panics on client input; every exit removes the connection
/// from the registry.
///
/// When the host approves connections, the request head is read first
/// without consuming it (`peek`), the host decides with its headers, and
/// only an admitted connection is upgraded; a refused one gets a plain HTTP
/// response. Otherwise nothing is peeked: a request that is not an upgrade
/// is answered 426 from tungstenite's failed handshake.
pub(crate) async fn serve_connection(
    shared: Arc<NodeState>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let _socket = OpenSocket::count(&shared);
    let _ = stream.set_nodelay(true);
    if let Some(size) = shared.limits.send_buffer_size {
        // Best effort: the OS may round it, and a failure only leaves the
        // default in place.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
    }
    let approve = shared.host.is_some() && shared.host_config.approve_connections;
    let mut held = None;
    if approve {
        // Boxed: it runs once, and unboxed its state would size the task.
        let decided = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            decided = Box::pin(hold_for_verdict(&shared, &mut stream, peer)) => decided,
        };
        match decided {
            Some(admitted) => held = Some(admitted),
            None => return,
        }
    }
    let subprotocol = held.as_ref().and_then(|h| h.subprotocol.clone());
    // A held connection passed the limits before the host was asked.
    let checked = held.is_some();
    let capture = shared.host.is_some() && shared.host_config.connect_events && !approve;
    let mut target = RequestTarget::default();
    let upgraded = {
        // The handshake's error type is tungstenite's and large; it is
        // built only to refuse a connection.
        #[allow(clippy::result_large_err)]
        let check = |request: &Request, mut response: Response| {
            let origin = request.headers().get("origin").map(|o| o.as_bytes());
            if !checked && let Some(refusal) = refusal(&shared, origin) {
                NodeCounters::add(&shared.counters.connections_refused, 1);
                tracing::debug!(%peer, status = %refusal.0, "connection refused at the handshake");
                let mut response = ErrorResponse::new(Some(refusal.1.to_owned()));
                *response.status_mut() = refusal.0;
                return Err(response);
            }
            target.path = request.uri().path().to_owned();
            target.query = request.uri().query().unwrap_or_default().to_owned();
            if capture {
                target.headers = request
                    .headers()
                    .iter()
                    .map(|(name, value)| {
                        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                        (name.as_str().to_owned(), value)
                    })
                    .collect();
                target.subprotocols = offered_subprotocols(&target.headers);
            }
            if let Some(protocol) = subprotocol
                .as_deref()
                .and_then(|p| HeaderValue::from_str(p).ok())
            {
                response
                    .headers_mut()
                    .insert("sec-websocket-protocol", protocol);
            }
            Ok(response)
        };
        // On a borrowed stream, so that a request that is not an upgrade
        // can still be answered; tungstenite refuses a request followed by
        // more bytes, so nothing read is lost when the stream is taken back.
        // Boxed: the handshake's state is larger than the session's.
        let handshake = Box::pin(tokio_tungstenite::accept_hdr_async_with_config(
            &mut stream,
            check,
            Some(shared.ws_config),
        ));
        tokio::select! {
            _ = shared.shutdown.cancelled() => Upgrade::Failed,
            result = tokio::time::timeout(shared.limits.handshake_timeout, handshake) => match result {
                Ok(Ok(_)) => Upgrade::Done,
                Ok(Err(WsError::Protocol(
                    WsProtocolError::MissingConnectionUpgradeHeader
                    | WsProtocolError::MissingUpgradeWebSocketHeader,
                ))) => Upgrade::NotWebsocket,
                // Timed out, refused or not a websocket handshake.
                _ => Upgrade::Failed,
            },
        }
    };
    match upgraded {
        Upgrade::Done => {}
        Upgrade::NotWebsocket => {
            tracing::debug!(%peer, "plain HTTP request on the websocket port: 426");
            return answer(&mut stream, 0, 426, NOT_WEBSOCKET).await;
        }
        Upgrade::Failed => return,
    }
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(shared.ws_config)).await;
    let (conn, outbox_rx) = match held {
        Some(held) => held.open(),
        None => shared.open_connection(shared.next_id(), peer),
    };
    tracing::debug!(conn = conn.id, %peer, "connection opened");
    let mut session = ClientSession {
        shared: shared.clone(),
        conn: conn.clone(),
        ws,
        outbox_rx,
        close_code: None,
    };
    session.run(target).await;
    shared.registry.remove_connection(&conn);
    tracing::debug!(conn = conn.id, %peer, code = ?session.close_code, "connection closed");
    if let Some(host) = shared
        .host
        .as_ref()
        .filter(|_| shared.host_config.close_events)
    {
        host.push_now(HostEvent::Close {
            conn: conn.id,
            code: session.close_code,
        });
    }
}

/// How the websocket handshake ended.
enum Upgrade {
    Done,
    /// A plain HTTP request (no `Upgrade: websocket`): answered 426.
    NotWebsocket,
    Failed,
}

/// A connection the host was told about before its upgrade. It is open
/// for actions from then on (the host may send to it or put it in groups
/// from its connect callback: what is queued is written after the
/// upgrade). Dropped before it was taken by a session, it stops waiting
/// for a verdict, leaves the registry, and the host gets its Close event
/// (code `None`), so every Connect has its Close.
struct Held {
    shared: Arc<NodeState>,
    conn: Arc<ConnectionEntry>,
    /// Its queue, for the session.
    outbox_rx: Option<OutboxReceiver>,
    /// The subprotocol the host chose.
    subprotocol: Option<String>,
}

impl Held {
    /// Hands the connection to its session, which sends the Close event.
    fn open(mut self) -> (Arc<ConnectionEntry>, OutboxReceiver) {
        let outbox_rx = self.outbox_rx.take().expect("taken once");
        (self.conn.clone(), outbox_rx)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.pending.lock().remove(&self.conn.id);
        if self.outbox_rx.is_none() {
            return;
        }
        self.shared.registry.remove_connection(&self.conn);
        if let Some(host) = &self.shared.host
            && self.shared.host_config.close_events
        {
            host.push_now(HostEvent::Close {
                conn: self.conn.id,
                code: None,
            });
        }
    }
}

/// Reads the request head without consuming it, asks the host, and waits
/// for its verdict. Returns the admitted connection, or `None` once the
/// connection has been answered (refused, timed out, not a websocket
/// request) or has gone.
async fn hold_for_verdict(
    shared: &Arc<NodeState>,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Option<Held> {
    let host = shared.host.as_ref()?;
    let head = tokio::time::timeout(shared.limits.handshake_timeout, peek_head(stream));
    let head = match head.await {
        Ok(Some(Ok(head))) => head,
        Ok(Some(Err((status, why)))) => {
            answer(stream, 0, status, why).await;
            return None;
        }
        // Timed out or gone before a whole head came.
        _ => return None,
    };
    if !head.upgrade {
        answer(stream, head.len, 426, NOT_WEBSOCKET).await;
        return None;
    }
    let origin = head
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("origin"))
        .map(|(_, value)| value.as_bytes());
    if let Some((status, why)) = refusal(shared, origin) {
        NodeCounters::add(&shared.counters.connections_refused, 1);
        answer(stream, head.len, status.as_u16(), why).await;
        return None;
    }
    let (entry, outbox_rx) = shared.open_connection(shared.next_id(), peer);
    let conn = entry.id;
    let subprotocols = offered_subprotocols(&head.headers);
    let (verdict_tx, verdict_rx) = oneshot::channel();
    shared.pending.lock().insert(
        conn,
        Pending {
            verdict: verdict_tx,
            subprotocols: subprotocols.clone(),
        },
    );
    let mut held = Held {
        shared: shared.clone(),
        conn: entry,
        outbox_rx: Some(outbox_rx),
        subprotocol: None,
    };
    let event = HostEvent::Connect {
        conn,
        peer,
        path: head.path,
        query: head.query,
        headers: head.headers,
        subprotocols,
    };
    host.push(event, &shared.shutdown).await;
    let verdict = match tokio::time::timeout(shared.host_config.approval_timeout, verdict_rx).await
    {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(_)) => Verdict::Failed,
        Err(_) => Verdict::Refuse {
            status: 503,
            body: "not admitted in time\n".into(),
        },
    };
    let (status, body) = match verdict {
        Verdict::Admit { subprotocol } => {
            held.subprotocol = subprotocol;
            return Some(held);
        }
        Verdict::Refuse { status, body } => (status, body),
        Verdict::Failed => (FAILED_STATUS, String::new()),
    };
    NodeCounters::add(&shared.counters.connections_refused, 1);
    tracing::debug!(conn, %peer, status, "connection refused before the upgrade");
    // Gone from the registry (and its Close queued) before the client
    // learns of the refusal.
    drop(held);
    answer(stream, head.len, status, &body).await;
    None
}

/// A request head read before the upgrade.
struct RequestHead {
    /// Its length in bytes, all of it still unread in the socket.
    len: usize,
    path: String,
    query: String,
    /// In request order, names as sent.
    headers: Vec<(String, String)>,
    /// Whether it asks for a websocket upgrade.
    upgrade: bool,
}

/// Peeks at the socket until a whole request head is there. `None` when
/// the client goes first; `Err` with the status and body to answer for a
/// head that is malformed or over [`MAX_HEAD`].
async fn peek_head(stream: &TcpStream) -> Option<Result<RequestHead, (u16, &'static str)>> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if n > seen {
            seen = n;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf[..n]) {
                Ok(httparse::Status::Complete(len)) => return Some(Ok(head_of(&request, len))),
                Ok(httparse::Status::Partial) if n < MAX_HEAD => {}
                Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                    return Some(Err((431, "request head too large\n")));
                }
                Err(_) => return Some(Err((400, "malformed HTTP request\n"))),
            }
        }
        // The bytes already there keep the socket readable: pause rather
        // than spin until more arrive.
        tokio::time::sleep(PEEK_PAUSE).await;
    }
}

fn head_of(request: &httparse::Request<'_, '_>, len: usize) -> RequestHead {
    let target = request.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).into_owned();
            (h.name.to_owned(), value)
        })
        .collect();
    let upgrade = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("upgrade")
            && value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
    });
    RequestHead {
        len,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        upgrade,
    }
}

/// The subprotocols offered in `Sec-WebSocket-Protocol` (one or several
/// headers, comma-separated), in order.
fn offered_subprotocols(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Answers with a plain HTTP response and closes: the `head_len` bytes of
/// request head still unread are taken first, and after the response
/// whatever else the client sends is read and dropped until it closes
/// (within [`CLOSE_TIMEOUT`]): closing with unread bytes would reset the
/// connection and could lose the response.
async fn answer(stream: &mut TcpStream, head_len: usize, status: u16, body: &str) {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Refused");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let send = async {
        let mut head = vec![0u8; head_len];
        stream.read_exact(&mut head).await?;
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, send).await;
}

/// Counts a socket for `max_connections` from accept to the end of its
/// task, whichever way it ends.
struct OpenSocket<'a>(&'a NodeState);

impl<'a> OpenSocket<'a> {
    fn count(shared: &'a NodeState) -> Self {
        shared.open_sockets.fetch_add(1, Ordering::Relaxed);
        OpenSocket(shared)
    }
}

impl Drop for OpenSocket<'_> {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection is refused whatever the host says, as the HTTP status
/// and body to answer: over the connection limit (503), or a browser
/// `origin` not allowed (403).
fn refusal(shared: &NodeState, origin: Option<&[u8]>) -> Option<(StatusCode, &'static str)> {
    let limits = &shared.limits;
    if let Some(max) = limits.max_connections
        && shared.open_sockets.load(Ordering::Relaxed) > max
    {
        return Some((StatusCode::SERVICE_UNAVAILABLE, "too many connections"));
    }
    if let (Some(allowed), Some(origin)) = (&limits.allowed_origins, origin)
        && !allowed.iter().any(|a| a.as_bytes() == origin)
    {
        return Some((StatusCode::FORBIDDEN, "origin not allowed"));
    }
    None
}

struct ClientSession {
    shared: Arc<NodeState>,
    conn: Arc<ConnectionEntry>,
    ws: WebSocketStream<TcpStream>,
    outbox_rx: OutboxReceiver,
    /// The close code sent or received, for the host's Close event.
    close_code: Option<u16>,
}

/// What became of the client messages handled in a row.
enum Handled {
    /// Handled here; what the session does next.
    Done(Next),
    /// A message for the host, whose queue is full: wait for room before
    /// reading more.
    ForHost(HostEvent),
}

/// What the session does after a step.
enum Next {
    Continue,
    /// Send this close frame, wait for the reply, end.
    Close(CloseFrame),
    /// Terminated (slow consumer, node stopping): drop what is queued, send
    /// the termination close frame, end.
    Terminate,
    /// The socket is gone: end now.
    End,
}

impl ClientSession {
    async fn run(&mut self, target: RequestTarget) {
        // Allocated on first use: a connection that is never sent anything
        // carries no batch buffer.
        let mut batch = Vec::new();
        // The first and last steps are boxed: they run once, and unboxed
        // their state would size every idle connection's task.
        let next = match Box::pin(self.introduce(target)).await {
            Next::Continue => self.exchange(&mut batch).await,
            other => other,
        };
        match next {
            Next::Close(frame) => Box::pin(self.close(frame, true)).await,
            Next::Terminate => {
                // Stopping node: send what is queued first, within the
                // drain timeout. Terminated for cause (a slow consumer):
                // drop it.
                let frame = self.conn.outbox.termination_frame();
                let drain = !self.conn.outbox.terminated_for_cause();
                Box::pin(self.close(frame, drain)).await;
            }
            Next::Continue | Next::End => {}
        }
    }

    /// Tells the host about the connection when it takes connect events
    /// but does not approve them (an approved connection was announced
    /// before its upgrade).
    async fn introduce(&mut self, target: RequestTarget) -> Next {
        let shared = self.shared.clone();
        let config = &shared.host_config;
        let Some(host) = &shared.host else {
            return Next::Continue;
        };
        if !config.connect_events || config.approve_connections {
            return Next::Continue;
        }
        host.push(
            HostEvent::Connect {
                conn: self.conn.id,
                peer: self.conn.peer,
                path: target.path,
                query: target.query,
                headers: target.headers,
                subprotocols: target.subprotocols,
            },
            &shared.shutdown,
        )
        .await;
        Next::Continue
    }

    /// The main loop: client frames in, queued frames out, pings on time.
    async fn exchange(&mut self, batch: &mut Vec<Outbound>) -> Next {
        let token = self.conn.outbox.terminated().clone();
        // One wait for the whole loop (not one per turn): it registers with
        // the token once and takes no space per select below.
        let terminated = token.cancelled();
        tokio::pin!(terminated);
        let limits = &self.shared.limits;
        let (ping_interval, idle_timeout) = (limits.ping_interval, limits.idle_timeout);
        let mut heartbeat = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            let next = tokio::select! {
                biased;
                _ = &mut terminated => Next::Terminate,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() >= idle_timeout {
                        NodeCounters::add(&self.shared.counters.heartbeat_timeouts, 1);
                        Next::Close(CloseFrame {
                            code: CloseCode::Away,
                            reason: "no answer to pings".into(),
                        })
                    } else {
                        // Written here rather than queued: queued frames are
                        // only ever written whole, so a ping cannot split
                        // one, and a connection that is only pinged never
                        // allocates a queue block.
                        tokio::select! {
                            sent = self.ws.send(Message::Ping(Bytes::new())) => match sent {
                                Ok(()) => Next::Continue,
                                Err(_) => Next::End,
                            },
                            _ = &mut terminated => Next::Terminate,
                        }
                    }
                }
                _ = self.outbox_rx.recv_batch(batch, WRITE_BATCH) => {
                    tokio::select! {
                        next = self.write_batch(batch) => next,
                        _ = &mut terminated => Next::Terminate,
                    }
                }
                incoming = self.ws.next() => {
                    last_heard = Instant::now();
                    match self.on_incoming(incoming) {
                        Handled::Done(next) => next,
                        Handled::ForHost(event) => {
                            self.push_to_host(event).await;
                            Next::Continue
                        }
                    }
                }
            };
            if !matches!(next, Next::Continue) {
                return next;
            }
        }
    }

    /// Writes what was queued, in order: the frames before a close (all of
    /// them when there is none) go straight to the socket in vectored
    /// writes; a close ends the batch.
    async fn write_batch(&mut self, batch: &mut Vec<Outbound>) -> Next {
        let close_at = batch
            .iter()
            .position(|item| matches!(item, Outbound::Close(_)));
        let frames = &batch[..close_at.unwrap_or(batch.len())];
        let mut next = match write_frames(&mut self.ws, frames).await {
            Ok(written) => {
                self.conn.outbox.written(written);
                Next::Continue
            }
            Err(_) => Next::End,
        };
        if let (Some(at), Next::Continue) = (close_at, &next)
            && let Outbound::Close(frame) = &batch[at]
        {
            next = Next::Close(frame.clone());
        }
        batch.clear();
        next
    }

    /// Handles what the read side produced, then the messages that are
    /// already buffered (up to [`READ_BATCH`]), so that the replies and
    /// deliveries they cause leave in one write rather than one each.
    ///
    /// Synchronous, so the connection's task carries no state for it while
    /// it waits; a message for a host whose queue is full ends the run and
    /// is handed back to be pushed (the rest stays buffered for the next
    /// turn).
    fn on_incoming(&mut self, mut incoming: Option<Result<Message, WsError>>) -> Handled {
        let mut sends = GroupSends::default();
        let mut handled = 0;
        let next = loop {
            let next = match incoming {
                Some(Ok(message)) => match self.on_message(message, &mut sends) {
                    Handled::Done(next) => next,
                    for_host @ Handled::ForHost(_) => {
                        sends.flush(&self.shared);
                        return for_host;
                    }
                },
                Some(Err(error)) => {
                    sends.flush(&self.shared);
                    self.on_read_error(error)
                }
                None => Next::End,
            };
            handled += 1;
            if !matches!(next, Next::Continue) || handled == READ_BATCH {
                break next;
            }
            // Polled once: a message already read (or readable at once)
            // comes now; otherwise back to the select, which waits.
            match self.ws.next().now_or_never() {
                Some(more) => incoming = more,
                None => break Next::Continue,
            }
        };
        sends.flush(&self.shared);
        Handled::Done(next)
    }

    /// Hands a client message to the host, waiting while its queue is full.
    async fn push_to_host(&self, event: HostEvent) {
        if let Some(host) = &self.shared.host {
            // Boxed so that the idle task does not carry its state.
            Box::pin(host.push(event, &self.shared.shutdown)).await;
        }
    }

    /// Routes a client message: built-in commands are handled here; what
    /// is not one goes to the host when it listens, else gets an error reply.
    fn on_message(&mut self, message: Message, sends: &mut GroupSends) -> Handled {
        let shared = self.shared.clone();
        let to_host = shared
            .host
            .as_ref()
            .filter(|_| shared.host_config.message_events || !shared.host_config.builtin_commands);
        let max_group = shared.limits.max_group_id_len;
        if message.is_text() || message.is_binary() {
            NodeCounters::add(&shared.counters.messages_in, 1);
            NodeCounters::add(&shared.counters.bytes_in, message.len() as u64);
        }
        let command = match &message {
            // Before the built-ins switch: a client's close code is recorded
            // (for the host's close event) whether or not built-ins are on.
            Message::Close(frame) => {
                self.close_code = Some(frame.as_ref().map_or(1005, |f| f.code.into()));
                return Handled::Done(Next::Continue);
            }
            _ if !shared.host_config.builtin_commands => Err(None),
            Message::Text(text) => parse_command(text.as_str(), max_group).map_err(Some),
            Message::Binary(data) => parse_binary_command(data, max_group).map_err(Some),
            // Pings are answered by tungstenite.
            _ => return Handled::Done(Next::Continue),
        };
        if command.is_err() {
            // What this message causes comes after the sends before it.
            sends.flush(&shared);
        }
        match command {
            Ok(command) => self.execute(command, sends),
            Err(error)
                if error.as_ref().is_some_and(ProtocolError::is_builtin) || to_host.is_none() =>
            {
                match error {
                    Some(error) => self.reply_error(&error),
                    None => self.reply(error_reply(
                        "not_handled",
                        "built-in commands are off and no host handles messages",
                    )),
                }
            }
            Err(_) => {
                let payload = match message {
                    Message::Text(text) => Payload::Text(text.as_str().to_owned()),
                    Message::Binary(data) => Payload::Binary(data.to_vec()),
                    _ => return Handled::Done(Next::Continue),
                };
                let event = HostEvent::Message {
                    conn: self.conn.id,
                    payload,
                };
                // Queued at once when the host keeps up; only a full queue
                // ends the run, to wait for room.
                if let Some(host) = to_host
                    && let Err(event) = host.try_push(event)
                {
                    return Handled::ForHost(event);
                }
            }
        }
        Handled::Done(Next::Continue)
    }

    /// Runs a built-in command. Sends join the run in `sends`; any other
    /// command first delivers that run, so that (for instance) a member
    /// leaving right after a send still gets it.
    fn execute(&self, command: ClientCommand, sends: &mut GroupSends) {
        let shared = &self.shared;
        match command {
            ClientCommand::SendToGroup { group, message } => sends.add(shared, group, &message),
            ClientCommand::AddGroup(group) => {
                sends.flush(shared);
                if let Err(error) = shared.registry.join(&self.conn, &group) {
                    self.reply(error_reply("join_refused", &error.to_string()));
                }
            }
            ClientCommand::LeaveGroup(group) => {
                sends.flush(shared);
                shared.registry.leave(&self.conn, group.as_str());
            }
        }
    }

    fn reply_error(&self, error: &ProtocolError) {
        self.reply(error.to_reply());
    }

    /// Queues a reply behind what is already queued for this client.
    fn reply(&self, text: String) {
        // Refused only when the client is too slow, and then it is closing.
        let _ = self.conn.outbox.push(crate::frame::text(&text));
    }

    fn on_read_error(&mut self, error: WsError) -> Next {
        match error {
            WsError::Capacity(why) => {
                let limit = self.shared.limits.max_message_size;
                self.reply(error_reply(
                    "message_too_big",
                    &format!("{why}; the limit is {limit} bytes"),
                ));
                Next::Close(CloseFrame {
                    code: CloseCode::Size,
                    reason: "message too big".into(),
                })
            }
            WsError::Utf8(_) => Next::Close(CloseFrame {
                code: CloseCode::Invalid,
                reason: "text frame is not valid UTF-8".into(),
            }),
            WsError::Protocol(_) => Next::Close(CloseFrame {
                code: CloseCode::Protocol,
                reason: "websocket protocol error".into(),
            }),
            _ => Next::End,
        }
    }

    /// Sends what is already queued when `drain` (error replies first of
    /// all), then the close frame, and waits briefly for the client's reply.
    async fn close(&mut self, frame: CloseFrame, drain: bool) {
        self.close_code.get_or_insert(frame.code.into());
        let send_timeout = match drain {
            true => self.shared.limits.drain_timeout,
            false => CLOSE_TIMEOUT,
        };
        let send = async {
            if drain {
                let mut rest = Vec::new();
                while let Some(item) = self.outbox_rx.try_recv() {
                    if let Outbound::Frames(_) = item {
                        rest.push(item);
                    }
                }
                write_frames(&mut self.ws, &rest)
                    .await
                    .map_err(WsError::Io)?;
            }
            self.ws.send(Message::Close(Some(frame))).await
        };
        if let Ok(Ok(())) = tokio::time::timeout(send_timeout, send).await {
            // The stream ends once the client answers the close.
            let reply = async { while self.ws.next().await.is_some_and(|r| r.is_ok()) {} };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, reply).await;
        }
    }
}

/// The `send_to_group` commands a connection read in a row for one group.
/// They are handed to the other nodes at once and delivered to local members
/// together at the end of the run, so a burst costs each member one queue
/// push and one wake-up rather than one per message.
#[derive(Default)]
struct GroupSends(FrameRun<GroupId>);

impl GroupSends {
    fn add(&mut self, shared: &NodeState, group: GroupId, text: &str) {
        shared.bus.publish(group.as_str(), text);
        let finished = self.0.push(&group, crate::frame::text(text), text.len());
        if let Some((group, frames, text_bytes)) = finished {
            shared.fan_out_run(group.as_str(), &frames, text_bytes);
        }
    }

    /// Delivers the pending run to the local members.
    fn flush(&mut self, shared: &NodeState) {
        if let Some((group, frames, text_bytes)) = self.0.finish() {
            shared.fan_out_run(group.as_str(), &frames, text_bytes);
        }
    }
}
