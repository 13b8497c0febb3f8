//! One websocket client: the handshake, then a single task that reads the
//! client's commands and writes what is queued for it.
//!
//! When the host approves connections it decides before the handshake
//! (`handshake.rs`). A plain HTTP request gets 426, or with the demo page
//! on, the page for `GET /` and 404 otherwise (`demo.rs`).
//!
//! Reading and writing share one task (and one `select!`) so an idle
//! connection costs one small task, not two. Everything queued when the
//! writer wakes up is fed to the socket and flushed once, so a burst of group
//! messages leaves in few syscalls.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError as WsProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::demo::answer_plain;
use super::handshake::{
    NOT_WEBSOCKET, RequestTarget, answer, hold_for_verdict, offered_subprotocols, peek_head,
    refusal,
};
use super::state::NodeState;
use super::stream::ClientStream;
use super::writer::write_frames;
use crate::host::{HostEvent, Payload};
use crate::ids::GroupId;
use crate::protocol::{
    ClientCommand, ProtocolError, error_reply, parse_binary_command, parse_command,
};
use crate::queue::{FrameRun, Outbound, OutboxReceiver, Wake};
use crate::registry::ConnectionEntry;
use crate::stats::NodeCounters;
use crate::tls::Socket;

/// How long a closing connection waits for the client's close reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Most client messages handled in a row before queued frames are written.
const READ_BATCH: usize = 256;

/// Most queued items written per flush; bounds how long the writer keeps
/// the task away from reading.
const WRITE_BATCH: usize = 64;

/// Accepts the websocket handshake and serves the connection until it
/// closes. Never panics on client input; every exit removes the connection
/// from the registry.
///
/// When the host approves connections, the request head is read first
/// without consuming it (`peek`), the host decides with its headers, and
/// only an admitted connection is upgraded; a refused one gets a plain HTTP
/// response. Otherwise the head is peeked only with the demo page on, to
/// answer a plain request by its path; with it off, a request that is not
/// an upgrade is answered 426 from tungstenite's failed handshake.
pub(crate) fn serve_connection(
    shared: Arc<NodeState>,
    stream: TcpStream,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send {
    // Boxed: everything before the upgrade runs once, and its state (the
    // peek, the host's verdict, the handshake, a plain HTTP answer) would
    // otherwise size every idle connection's task for its whole life. Boxed
    // here, not in an async fn, so that the stream and the peer's address
    // are not kept in the task for its whole life either.
    let upgrading = {
        let shared = shared.clone();
        Box::pin(async move { upgrade(&shared, stream, peer).await })
    };
    serve_upgraded(shared, upgrading)
}

/// [`upgrade`] under way, boxed.
type Upgrading = Pin<Box<dyn Future<Output = Option<(ClientSession, RequestTarget)>> + Send>>;

/// The connection's life once [`upgrade`] is under way: its session, then
/// its removal from the registry and the host's close event.
async fn serve_upgraded(shared: Arc<NodeState>, upgrading: Upgrading) {
    let _socket = OpenSocket::count(&shared);
    let Some((mut session, target)) = upgrading.await else {
        return;
    };
    let conn = session.conn.clone();
    // The target is read once, by `introduce`: boxed, it takes a pointer
    // in the task rather than its four fields for the connection's life.
    session.run(Box::new(target)).await;
    let positioned = shared.numbers_messages().then(|| conn.groups());
    shared.registry.remove_connection(&conn);
    if let Some(groups) = positioned {
        shared.forget_positions(conn.id, &groups);
    }
    let peer = conn.peer;
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

/// Everything before the session: the host's verdict or the demo page when
/// asked for, the websocket handshake, the connection's registration.
/// `None` when the connection ended before it became a websocket (refused,
/// answered as plain HTTP, gone).
async fn upgrade(
    shared: &Arc<NodeState>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(ClientSession, RequestTarget)> {
    let _ = stream.set_nodelay(true);
    if let Some(size) = shared.limits.send_buffer_size {
        // Best effort: the OS may round it, and a failure only leaves the
        // default in place.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
    }
    let approve = shared.host.is_some() && shared.host_config.approve_connections;
    // One bound for all that comes before the upgrade: the TLS handshake,
    // peeking for the demo page, then the websocket handshake.
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    let mut stream = match &shared.tls {
        None => Socket::Plain(stream),
        Some(tls) => {
            let accepted = tokio::select! {
                _ = shared.shutdown.cancelled() => return None,
                accepted = tokio::time::timeout_at(deadline, tls.accept(stream)) => accepted,
            };
            match accepted {
                Ok(Ok(socket)) => socket,
                // Browsers and probes fail handshakes all the time (an
                // untrusted certificate, ws:// to this port): counted, and
                // logged at debug only.
                Ok(Err(error)) => {
                    NodeCounters::add(&shared.counters.tls_handshake_failures, 1);
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    NodeCounters::add(&shared.counters.tls_handshake_failures, 1);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    if shared.demo_page && !approve {
        // Read the head without consuming it, to answer a plain request by
        // its path; an upgrade goes on to the handshake on the untouched
        // stream. (With approval the head is peeked for the host anyway.)
        // Boxed, as the steps below: it runs once per connection.
        let peeked = tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            peeked = Box::pin(tokio::time::timeout_at(deadline, peek_head(&mut stream))) => peeked,
        };
        match peeked {
            Ok(Some(Ok(head))) if head.upgrade => {}
            Ok(Some(Ok(head))) => {
                Box::pin(answer_plain(true, &mut stream, &head)).await;
                return None;
            }
            Ok(Some(Err((status, why)))) => {
                answer(&mut stream, 0, status, why).await;
                return None;
            }
            // Timed out or gone before a whole head came.
            _ => return None,
        }
    }
    let mut held = None;
    if approve {
        // Boxed: it runs once, and unboxed its state would size the task.
        let decided = tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            decided = Box::pin(hold_for_verdict(shared, &mut stream, peer)) => decided,
        };
        match decided {
            Some(admitted) => held = Some(admitted),
            None => return None,
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
            if !checked && let Some(refusal) = refusal(shared, origin) {
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
            result = tokio::time::timeout_at(deadline, handshake) => match result {
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
            answer(&mut stream, 0, 426, NOT_WEBSOCKET).await;
            return None;
        }
        Upgrade::Failed => return None,
    }
    let stream = ClientStream::new(stream);
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(shared.ws_config)).await;
    let (conn, outbox_rx) = match held {
        Some(held) => held.open(),
        None => shared.open_connection(shared.next_id(), peer),
    };
    tracing::debug!(conn = conn.id, %peer, "connection opened");
    let session = ClientSession {
        shared: shared.clone(),
        conn,
        ws,
        outbox_rx,
        close_code: None,
    };
    Some((session, target))
}

/// How the websocket handshake ended.
enum Upgrade {
    Done,
    /// A plain HTTP request (no `Upgrade: websocket`): answered 426.
    NotWebsocket,
    Failed,
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

struct ClientSession {
    shared: Arc<NodeState>,
    conn: Arc<ConnectionEntry>,
    ws: WebSocketStream<ClientStream>,
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
    async fn run(&mut self, target: Box<RequestTarget>) {
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
    async fn introduce(&mut self, target: Box<RequestTarget>) -> Next {
        let target = *target;
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
        // Termination and heartbeats come through the queue's waker: no
        // token and no timer of the connection's own (node/heartbeat.rs).
        let signals = self.outbox_rx.signals();
        let mut last_heard = Instant::now();
        // The ticker's first call comes anywhere within the first interval:
        // the first ping waits for its second, so that no client is pinged
        // before a whole interval has passed, and then one per interval.
        let mut pinging = false;
        loop {
            let next = tokio::select! {
                biased;
                wake = self.outbox_rx.next_wake(batch, WRITE_BATCH) => match wake {
                    Wake::Terminated => Next::Terminate,
                    Wake::Heartbeat => {
                        if last_heard.elapsed() >= self.shared.limits.idle_timeout {
                            NodeCounters::add(&self.shared.counters.heartbeat_timeouts, 1);
                            Next::Close(CloseFrame {
                                code: CloseCode::Away,
                                reason: "no answer to pings".into(),
                            })
                        } else if !pinging {
                            pinging = true;
                            Next::Continue
                        } else {
                            // Written here rather than queued: queued frames are
                            // only ever written whole, so a ping cannot split
                            // one, and a connection that is only pinged never
                            // allocates a queue block. Boxed: it runs once per
                            // interval, and inline its state would size every
                            // connection's task. Biased: the write first, so that
                            // the wait for a termination registers only when
                            // the write waits.
                            tokio::select! {
                                biased;
                                sent = Box::pin(self.ws.send(Message::Ping(Bytes::new()))) => match sent {
                                    Ok(()) => Next::Continue,
                                    Err(_) => Next::End,
                                },
                                _ = signals.terminated() => Next::Terminate,
                            }
                        }
                    }
                    Wake::Items(_) => {
                        tokio::select! {
                            biased;
                            next = self.write_batch(batch) => next,
                            _ = signals.terminated() => Next::Terminate,
                        }
                    }
                },
                incoming = self.ws.next() => {
                    last_heard = Instant::now();
                    match self.on_incoming(incoming) {
                        Handled::Done(next) => next,
                        Handled::ForHost(event) => {
                            // Boxed: it runs only when the host's queue is
                            // full, and inline its state (the event) would
                            // size every connection's task.
                            Box::pin(self.push_to_host(event)).await;
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
        // Idle again: what was allocated for writing goes back.
        self.outbox_rx.release_if_drained(batch);
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
            ClientCommand::SendToGroup {
                group,
                message,
                json,
            } => {
                if shared.numbers_messages() {
                    // Numbered (node/positions.rs).
                    sends.1.add(shared, group, message, json);
                } else {
                    sends.add(shared, group, &message);
                }
            }
            ClientCommand::AddGroupPositioned { group, since } => {
                sends.flush(shared);
                if let Err(error) = shared.join_positioned(&self.conn, &group, since.as_ref()) {
                    self.reply(error_reply("join_refused", &error.to_string()));
                }
            }
            ClientCommand::AddGroup(group) => {
                sends.flush(shared);
                if let Err(error) = shared.registry.join(&self.conn, &group) {
                    self.reply(error_reply("join_refused", &error.to_string()));
                }
            }
            ClientCommand::LeaveGroup(group) => {
                sends.flush(shared);
                if shared.registry.leave(&self.conn, group.as_str()) {
                    shared.forget_positions(self.conn.id, std::slice::from_ref(&group));
                }
            }
            command @ (ClientCommand::AddGroupWithPresence(_) | ClientCommand::Presence(_)) => {
                sends.flush(shared);
                if let Some(reply) = super::presence::client_command(shared, &self.conn, command) {
                    self.reply(reply);
                }
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
struct GroupSends(FrameRun<GroupId>, super::positions::NumberedRun);

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
        self.1.flush(shared);
    }
}

#[cfg(test)]
mod task_size {
    use super::*;

    /// The size of the future an async fn with these arguments returns.
    fn future_size<F, Fut>(_f: &F) -> usize
    where
        F: Fn(Arc<NodeState>, TcpStream, SocketAddr) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every connection's task is this future, for its whole life: what
    /// runs once before the upgrade is boxed so that it does not size it.
    /// Unboxed, it took 1,856 bytes and 0.5 KiB more RSS per idle
    /// connection (benches/FINDINGS.md); boxed, 1,248; with the stream,
    /// the peer's address and the request target out of it, and the rare
    /// steps (a ping, a wait for the host) boxed too, 1,008. Then with no
    /// timer or token of its own, the read-ahead buffer boxed and the
    /// waits on the queue plain `poll_fn`s rather than `async fn`s around
    /// them, 888 (release; 896 in the test build): tokio's task cell
    /// (this future with its header and trailer, in steps of 128 bytes)
    /// went from 1,152 to 1,024 bytes per connection. Over 900 it is
    /// likely back at 1,152.
    #[test]
    fn an_idle_connection_task_stays_small() {
        let size = future_size(&serve_connection);
        assert!(size <= 900, "the connection task takes {size} bytes");
    }
}
