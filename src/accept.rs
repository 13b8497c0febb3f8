//! Accepting connections, the same way for every listener (websocket,
//! channel, metrics).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long to wait after a failed accept before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next accepted connection, or `None` once `shutdown` is cancelled.
///
/// A failed accept (usually: out of file descriptors) backs off for a moment
/// instead of spinning, and the connections already open keep being served.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(connection) => return Some(connection),
                Err(error) => {
                    // Once per streak of failures: out of descriptors, a
                    // failed accept repeats every few milliseconds.
                    if !failing {
                        let addr = listener.local_addr().ok();
                        tracing::warn!(?addr, %error, "accept failed; retrying");
                        failing = true;
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}
