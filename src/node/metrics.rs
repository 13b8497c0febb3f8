//! A minimal HTTP endpoint serving the node's counters to Prometheus:
//! `GET /metrics` answers the text exposition format; anything else is 404.
//! One request per connection, bounded in size and time, so a stray client
//! cannot hold it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handle::NodeHandle;
use crate::accept::next_connection;

/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts scrapes until `shutdown`.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    node: NodeHandle,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    while let Some((stream, _)) = next_connection(&listener, &shutdown).await {
        let node = node.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
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
        _ => (
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
