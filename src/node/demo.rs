//! The demo page: what a plain HTTP request on the websocket port gets when
//! `Config::demo_page` is on. One self-contained HTML file, compiled into
//! the binary, that speaks only the public client protocol to the same
//! origin, so `groupcast serve` can be tried from a browser with nothing
//! else installed. Off, every plain request keeps its 426 answer: an
//! embedding host decides what its port shows.

use super::handshake::{NOT_WEBSOCKET, RequestHead, respond};
use crate::tls::Socket;

/// The page, with its inline script and style.
const PAGE: &str = include_str!("demo.html");

/// The page's headers. The policy allows nothing but the page's own inline
/// script and style and websockets (`'self'` alone does not cover `ws:` in
/// every browser); nothing is cached, so a new binary's page is seen at once.
const PAGE_HEADERS: &str = "Content-Type: text/html; charset=utf-8\r\n\
     Cache-Control: no-store\r\n\
     Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src data:; connect-src 'self' ws: wss:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
     X-Content-Type-Options: nosniff\r\n\
     Referrer-Policy: no-referrer\r\n";

/// Body of the 404 answer, with the page on.
const NOT_FOUND: &str = "not found\n";

/// Answers a plain HTTP request (no `Upgrade: websocket`) whose head,
/// `head.len` bytes, is still unread: `GET /` gets the page and anything
/// else 404 when `demo_page` is on; everything gets 426 when it is off.
/// Logged at debug level only: browsers and probes send these all the time.
pub(super) async fn answer_plain(demo_page: bool, stream: &mut Socket, head: &RequestHead) {
    let (status, headers, body) = match (demo_page, head.method.as_str(), head.path.as_str()) {
        (false, ..) => (426, None, NOT_WEBSOCKET),
        (true, "GET", "/") => (200, Some(PAGE_HEADERS), PAGE),
        (true, ..) => (404, None, NOT_FOUND),
    };
    tracing::debug!(method = %head.method, path = %head.path, status, "plain HTTP request on the websocket port");
    respond(stream, head.len, status, headers, body).await;
}
