//! A client's socket as tungstenite reads it: through the worker thread's
//! scratch buffer, so that an idle connection keeps no read buffer.
//!
//! tungstenite allocates its read buffer at the upgrade, `read_buffer_size`
//! bytes, keeps it for the connection's life, and never reads more than that
//! size at a time. At 512 bytes that was a sixth of an idle connection's
//! memory (benches/FINDINGS.md); at 64 it would cost a syscall per 64 bytes
//! of a burst of commands. Here tungstenite keeps a small buffer and asks for
//! small reads, while the socket is read in one syscall of up to
//! [`SCRATCH_SIZE`] bytes into a buffer each worker thread owns: what
//! tungstenite did not ask for yet waits in a buffer of the connection's
//! own, allocated only while it holds something.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::Socket;

/// Most bytes read from the socket in one syscall: one TLS record.
pub(crate) const SCRATCH_SIZE: usize = 16 * 1024;

thread_local! {
    /// The worker thread's read buffer, shared by all its connections: a
    /// read copies out of it before the thread polls anything else.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// A client's socket, read through the worker's scratch buffer.
pub(crate) struct ClientStream {
    socket: Socket,
    /// Read from the socket and not yet asked for; `None` when there is
    /// nothing (boxed: one pointer in every idle connection's task).
    ahead: Option<Box<Ahead>>,
}

/// Bytes read ahead of tungstenite.
struct Ahead {
    bytes: Vec<u8>,
    /// How much of `bytes` was handed out.
    taken: usize,
}

impl ClientStream {
    pub(crate) fn new(socket: Socket) -> Self {
        ClientStream {
            socket,
            ahead: None,
        }
    }

    /// The socket, to write to it directly.
    pub(crate) fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// Bytes read ahead and not yet handed out (tests only).
    #[cfg(test)]
    fn ahead(&self) -> usize {
        self.ahead.as_ref().map_or(0, |a| a.bytes.len() - a.taken)
    }

    /// Hands out what was read ahead, if anything; frees it once all of it
    /// was handed out.
    fn take_ahead(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let Some(ahead) = &mut self.ahead else {
            return false;
        };
        let rest = &ahead.bytes[ahead.taken..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        ahead.taken += n;
        if ahead.taken == ahead.bytes.len() {
            self.ahead = None;
        }
        true
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || this.take_ahead(buf) {
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH_SIZE {
            return Pin::new(&mut this.socket).poll_read(cx, buf);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut this.socket).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    let n = filled.len().min(buf.remaining());
                    buf.put_slice(&filled[..n]);
                    if n < filled.len() {
                        this.ahead = Some(Box::new(Ahead {
                            bytes: filled[n..].to_vec(),
                            taken: 0,
                        }));
                    }
                    Poll::Ready(Ok(()))
                }
                other => other,
            }
        })
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the client end, and the server end wrapped.
    async fn pair() -> (TcpStream, ClientStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let server = ClientStream::new(Socket::Plain(accepted.unwrap().0));
        (client.unwrap(), server)
    }

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_and_keep_nothing_after() {
        let (mut client, mut server) = pair().await;
        let sent: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        let mut small = [0u8; 14];
        while got.len() < sent.len() {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(5), server.read(&mut small))
                    .await
                    .expect("read in time")
                    .unwrap();
            assert!(n > 0, "not at the end yet");
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(server.ahead(), 0);
        assert!(server.ahead.is_none(), "nothing kept once read");
        drop(client);
        assert_eq!(server.read(&mut small).await.unwrap(), 0, "end of stream");
    }

    #[tokio::test]
    async fn one_syscall_reads_what_many_small_reads_take() {
        let (mut client, mut server) = pair().await;
        client.write_all(&[7u8; 1000]).await.unwrap();
        let mut first = [0u8; 64];
        // The first read waits for data; the rest of what arrived with it
        // is read ahead.
        let n = server.read(&mut first).await.unwrap();
        assert_eq!(n, 64);
        // Up to 1000 bytes may arrive in more than one segment: read until
        // all of them were handed out.
        let mut total = n;
        while total < 1000 {
            let ahead = server.ahead();
            let n = server.read(&mut first).await.unwrap();
            if ahead > 0 {
                assert_eq!(n, ahead.min(64), "served from what was read ahead");
            }
            total += n;
        }
        assert_eq!(total, 1000);
    }
}
