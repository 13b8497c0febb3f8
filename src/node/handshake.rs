//! Before the upgrade: when the host approves connections, the request head
//! is read without being consumed (`peek`), the host decides with its
//! headers, and a refused connection gets a plain HTTP response; the
//! websocket never exists. Only an admitted connection goes on to the
//! websocket handshake, on the untouched stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::demo::answer_plain;
use super::state::{NodeState, Pending};
use crate::host::{FAILED_STATUS, HostEvent, Verdict};
use crate::queue::OutboxReceiver;
use crate::registry::ConnectionEntry;
use crate::stats::NodeCounters;
use crate::tls::Socket;

/// How long a refused client is given to take its answer and close.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// The body of the `426 Upgrade Required` answer to a plain HTTP request.
pub(super) const NOT_WEBSOCKET: &str =
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

/// Longest request head read before the upgrade for the host's verdict
/// (larger ones get 431).
const MAX_HEAD: usize = 8 * 1024;

/// Most headers in a request head; tungstenite's own bound.
const MAX_HEADERS: usize = 124;

/// How long to wait before peeking again at a request head that has not
/// grown (the socket stays readable while unread bytes wait, so waiting for
/// readiness alone would spin).
const PEEK_PAUSE: Duration = Duration::from_millis(5);

/// A connection the host was told about before its upgrade. It is open
/// for actions from then on (the host may send to it or put it in groups
/// from its connect callback: what is queued is written after the
/// upgrade). Dropped before it was taken by a session, it stops waiting
/// for a verdict, leaves the registry, and the host gets its Close event
/// (code `None`), so every Connect has its Close.
pub(super) struct Held {
    shared: Arc<NodeState>,
    conn: Arc<ConnectionEntry>,
    /// Its queue, for the session.
    outbox_rx: Option<OutboxReceiver>,
    /// The subprotocol the host chose.
    pub(super) subprotocol: Option<String>,
}

impl Held {
    /// Hands the connection to its session, which sends the Close event.
    pub(super) fn open(mut self) -> (Arc<ConnectionEntry>, OutboxReceiver) {
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
pub(super) async fn hold_for_verdict(
    shared: &Arc<NodeState>,
    stream: &mut Socket,
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
        answer_plain(shared.demo_page, stream, &head).await;
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
pub(super) struct RequestHead {
    /// Its length in bytes, all of it still unread in the socket.
    pub(super) len: usize,
    /// `GET`, `POST`, ...
    pub(super) method: String,
    pub(super) path: String,
    query: String,
    /// In request order, names as sent.
    headers: Vec<(String, String)>,
    /// Whether it asks for a websocket upgrade.
    pub(super) upgrade: bool,
}

/// Peeks at the socket until a whole request head is there. `None` when
/// the client goes first; `Err` with the status and body to answer for a
/// head that is malformed or over [`MAX_HEAD`].
pub(super) async fn peek_head(
    stream: &mut Socket,
) -> Option<Result<RequestHead, (u16, &'static str)>> {
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
        method: request.method.unwrap_or_default().to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        upgrade,
    }
}

/// The subprotocols offered in `Sec-WebSocket-Protocol` (one or several
/// headers, comma-separated), in order.
pub(super) fn offered_subprotocols(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Answers with a plain text HTTP response and closes; see [`respond`].
pub(super) async fn answer(stream: &mut Socket, head_len: usize, status: u16, body: &str) {
    respond(stream, head_len, status, None, body).await;
}

/// Answers with a plain HTTP response and closes: the `head_len` bytes of
/// request head still unread are taken first, and after the response
/// whatever else the client sends is read and dropped until it closes
/// (within [`ANSWER_TIMEOUT`]): closing with unread bytes would reset the
/// connection and could lose the response. `headers` (each line ending in
/// CRLF) replace the plain text content type.
pub(super) async fn respond(
    stream: &mut Socket,
    head_len: usize,
    status: u16,
    headers: Option<&str>,
    body: &str,
) {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Refused");
    let headers = headers.unwrap_or("Content-Type: text/plain; charset=utf-8\r\n");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n{headers}\
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
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, send).await;
}

/// Why a connection is refused whatever the host says, as the HTTP status
/// and body to answer: over the connection limit (503), or a browser
/// `origin` not allowed (403).
pub(super) fn refusal(
    shared: &NodeState,
    origin: Option<&[u8]>,
) -> Option<(StatusCode, &'static str)> {
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
