//! A minimal HTTP endpoint for operators: `GET /metrics` answers the
//! node's counters in the Prometheus text format, `GET /health` whether it
//! serves and reaches its cluster (200, or 503 with the reason); anything
//! else is 404. One request per connection, bounded in size and time, and
//! at most [`MAX_CONCURRENT`] at once, so stray clients cannot hold it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handle::NodeHandle;
use crate::accept::next_connection;

/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests served at once; more are closed at once (a scraper retries).
const MAX_CONCURRENT: usize = 16;

/// Accepts scrapes until `shutdown`.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    node: NodeHandle,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    while let Some((stream, _)) = next_connection(&listener, &shutdown).await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let node = node.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &node)) => {}
            }
        });
    }
}

async fn answer(mut stream: TcpStream, node: &NodeHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            node.stats().to_prometheus(),
        ),
        (Some(b"GET"), Some(b"/health")) => {
            let health = node.health();
            let status = match health.ok() {
                true => "200 OK",
                false => "503 Service Unavailable",
            };
            (status, "application/json", health.to_json() + "\n")
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "try GET /metrics or GET /health\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
