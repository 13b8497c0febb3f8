//! The vectored writer: what is queued for a connection leaves in as few
//! syscalls as possible, every member's frames sharing the same bytes.

use std::io::{self, IoSlice};
use std::pin::Pin;

use futures_util::SinkExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;

use super::stream::ClientStream;
use crate::queue::Outbound;

/// Most frames handed to the kernel in one vectored write.
const IOV_BATCH: usize = 256;

/// Writes the frames of `items` (a close among them is skipped) to the
/// socket, up to [`IOV_BATCH`] frames per syscall, and returns the bytes
/// written.
///
/// tungstenite's own buffer (a pong it queued while reading) is flushed
/// first, and reads only happen between batches, so frames written here and
/// frames tungstenite writes never interleave.
pub(super) async fn write_frames(
    ws: &mut WebSocketStream<ClientStream>,
    items: &[Outbound],
) -> io::Result<usize> {
    let total: usize = items.iter().map(Outbound::bytes).sum();
    ws.flush().await.map_err(io::Error::other)?;
    let stream = ws.get_mut().socket();
    let mut at = WritePosition::default();
    let mut left = total;
    while left > 0 {
        // The slices are built on the stack at each poll, not kept in the
        // future: an idle connection's task stays small.
        let n = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); IOV_BATCH];
            let count = at.fill(items, &mut slices);
            Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        at.advance(items, n);
        left -= n;
    }
    // TLS keeps what the socket did not take in its own buffer: push it
    // out (on plain TCP this returns at once).
    stream.flush().await?;
    Ok(total)
}

/// How far a run of queued items is written: the item, the frame within it,
/// and the bytes of that frame already sent.
#[derive(Debug, Default, Clone, Copy)]
struct WritePosition {
    item: usize,
    frame: usize,
    offset: usize,
}

impl WritePosition {
    /// Fills `slices` with what is left to write, from here on; returns how
    /// many it filled.
    fn fill<'a>(&self, items: &'a [Outbound], slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        let mut offset = self.offset;
        let mut frame = self.frame;
        for item in &items[self.item.min(items.len())..] {
            for bytes in &item.frames()[frame..] {
                if count == slices.len() {
                    return count;
                }
                slices[count] = IoSlice::new(&bytes[offset..]);
                count += 1;
                offset = 0;
            }
            frame = 0;
        }
        count
    }

    /// Moves past `n` written bytes.
    fn advance(&mut self, items: &[Outbound], mut n: usize) {
        while let Some(item) = items.get(self.item) {
            let frames = item.frames();
            match frames.get(self.frame) {
                Some(frame) => {
                    let rest = frame.len() - self.offset;
                    if n < rest {
                        self.offset += n;
                        return;
                    }
                    n -= rest;
                    self.frame += 1;
                    self.offset = 0;
                }
                None => {
                    self.item += 1;
                    self.frame = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use crate::queue::Frames;

    fn run(items: &[&[&'static str]]) -> Vec<Outbound> {
        items
            .iter()
            .map(|frames| {
                let frames = frames.iter().map(|f| Bytes::from_static(f.as_bytes()));
                Outbound::Frames(Frames::many(frames.collect()))
            })
            .collect()
    }

    /// What `fill` offers from `at`, as one string.
    fn offered(at: &WritePosition, items: &[Outbound], slots: usize) -> String {
        let mut slices = vec![IoSlice::new(&[]); slots];
        let count = at.fill(items, &mut slices);
        slices[..count]
            .iter()
            .map(|s| std::str::from_utf8(s).unwrap())
            .collect()
    }

    #[test]
    fn partial_writes_resume_at_the_right_byte_across_frames_and_items() {
        let items = run(&[&["ab", "cde"], &["f"], &["ghij", "k"]]);
        let all = "abcdefghijk";
        // Every way of cutting the stream into two writes resumes exactly.
        for first in 0..=all.len() {
            let mut at = WritePosition::default();
            at.advance(&items, first);
            assert_eq!(
                offered(&at, &items, 64),
                all[first..],
                "after {first} bytes"
            );
        }
        // Writes of 3 bytes at a time, the way a full socket takes them.
        let mut at = WritePosition::default();
        let mut sent = String::new();
        while sent.len() < all.len() {
            let chunk: String = offered(&at, &items, 64).chars().take(3).collect();
            at.advance(&items, chunk.len());
            sent += &chunk;
        }
        assert_eq!(sent, all);
    }

    #[test]
    fn fill_stops_at_the_slots_it_has_and_skips_a_close() {
        let mut items = run(&[&["a", "b", "c"]]);
        items.push(Outbound::Close(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        items.extend(run(&[&["d"]]));
        let at = WritePosition::default();
        assert_eq!(offered(&at, &items, 2), "ab");
        assert_eq!(offered(&at, &items, 64), "abcd");
    }
}
