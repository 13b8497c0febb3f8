//! A connection's outbound queue, bounded in bytes.
//!
//! Fan-out pushes the same shared frame into many queues, so a push must be
//! cheap and lock-free: an unbounded tokio channel carries the frames and an
//! atomic counter holds the bytes queued. When a push would go over the bound
//! the consumer is too slow to keep up, and the slow-consumer policy applies:
//! terminate the connection (close code 1008, the default) or drop the frame.
//! Either way one stalled client never makes the server's memory grow or
//! delays the others, and the event is counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use crate::config::SlowConsumerPolicy;
use crate::stats::Counters;

/// What a connection's writer is asked to do, in queue order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Write these bytes: an encoded websocket frame (see `crate::frame`) or
    /// channel frame, shared with every other connection it goes to.
    Frame(Bytes),
    /// Send a websocket ping.
    Ping,
    /// Send everything queued before this, then close with this frame.
    Close(CloseFrame),
}

/// Close code and reason used when a consumer falls too far behind.
pub(crate) const SLOW_CONSUMER: (u16, &str) = (1008, "slow consumer: outbound queue full");

/// The sending side of a connection's queue, shared by every task that
/// delivers to the connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Frames for the connection's writer.
    tx: mpsc::UnboundedSender<Outbound>,
    /// Payload bytes pushed and not yet written, to enforce `limit`.
    queued: AtomicUsize,
    /// Most payload bytes the queue may hold.
    limit: usize,
    /// What a push over the limit does.
    policy: SlowConsumerPolicy,
    /// Where drops and slow-consumer closes are counted.
    counters: Arc<Counters>,
    /// Cancelled to make the connection close at once (slow consumer, node
    /// stopping); `terminated_with` says how.
    terminate: CancellationToken,
    /// The close frame to send when `terminate` fires; the first reason wins.
    terminated_with: OnceLock<(u16, String)>,
}

/// The frame was not queued: the connection is closing or too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotQueued;

impl Outbox {
    /// Creates a queue bounded to `limit` payload bytes, and its receiver.
    pub(crate) fn new(
        limit: usize,
        policy: SlowConsumerPolicy,
        counters: Arc<Counters>,
        terminate: CancellationToken,
    ) -> (Self, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Outbox {
            tx,
            queued: AtomicUsize::new(0),
            limit,
            policy,
            counters,
            terminate,
            terminated_with: OnceLock::new(),
        };
        (outbox, OutboxReceiver { rx })
    }

    /// Queues a frame. The frame's bytes are shared, not copied.
    ///
    /// # Errors
    ///
    /// [`NotQueued`] when the connection is gone, or when the frame would take
    /// the queue over its bound; the slow-consumer policy then terminates the
    /// connection or drops the frame.
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), NotQueued> {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > self.limit && before > 0 {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            match self.policy {
                SlowConsumerPolicy::Close => {
                    if !self.terminate.is_cancelled() {
                        Counters::add(&self.counters.slow_consumer_closes, 1);
                    }
                    self.terminate_with(SLOW_CONSUMER.0, SLOW_CONSUMER.1);
                }
                SlowConsumerPolicy::Drop => Counters::add(&self.counters.dropped_messages, 1),
            }
            return Err(NotQueued);
        }
        self.tx.send(Outbound::Frame(frame)).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            NotQueued
        })
    }

    /// Queues a ping; it does not count against the bound.
    pub(crate) fn push_ping(&self) -> Result<(), NotQueued> {
        self.tx.send(Outbound::Ping).map_err(|_| NotQueued)
    }

    /// Queues a close after whatever is already queued.
    pub(crate) fn push_close(&self, code: u16, reason: &str) -> Result<(), NotQueued> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        self.tx.send(Outbound::Close(frame)).map_err(|_| NotQueued)
    }

    /// Makes the connection close now with `code`, dropping what is queued.
    pub(crate) fn terminate_with(&self, code: u16, reason: &str) {
        let _ = self.terminated_with.set((code, reason.to_owned()));
        self.terminate.cancel();
    }

    /// Whether the connection was terminated for a reason of its own (not
    /// because the node is stopping).
    pub(crate) fn terminated_for_cause(&self) -> bool {
        self.terminated_with.get().is_some()
    }

    /// The token the connection's task watches.
    pub(crate) fn terminated(&self) -> &CancellationToken {
        &self.terminate
    }

    /// The close frame for a terminated connection (1001 "going away" when the
    /// node itself is stopping).
    pub(crate) fn termination_frame(&self) -> CloseFrame {
        let (code, reason) = self
            .terminated_with
            .get()
            .cloned()
            .unwrap_or((1001, "server stopping".to_owned()));
        CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }
    }

    /// Payload bytes queued and not yet written.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Called by the writer once frames are written.
    pub(crate) fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The writer's side of an [`Outbox`].
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Outbound>,
}

impl OutboxReceiver {
    /// Waits for at least one item and takes up to `max` queued ones, so the
    /// writer can send them in one flush. Returns 0 when every sender is gone.
    pub(crate) async fn recv_batch(&mut self, batch: &mut Vec<Outbound>, max: usize) -> usize {
        self.rx.recv_many(batch, max).await
    }

    /// Takes one queued item without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        self.rx.try_recv().ok()
    }

    /// Whether nothing is queued (tests only).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    fn outbox(limit: usize, policy: SlowConsumerPolicy) -> (Outbox, OutboxReceiver, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let (outbox, rx) = Outbox::new(limit, policy, counters.clone(), CancellationToken::new());
        (outbox, rx, counters)
    }

    #[test]
    fn a_full_queue_refuses_and_terminates() {
        let (outbox, _rx, counters) = outbox(10, SlowConsumerPolicy::Close);
        assert!(outbox.push(Bytes::from_static(b"123456")).is_ok());
        assert!(outbox.push(Bytes::from_static(b"1234")).is_ok());
        assert_eq!(outbox.queued_bytes(), 10);
        assert_eq!(outbox.push(Bytes::from_static(b"1")), Err(NotQueued));
        assert_eq!(outbox.queued_bytes(), 10);
        assert!(outbox.terminated().is_cancelled());
        assert_eq!(u16::from(outbox.termination_frame().code), 1008);
        assert_eq!(outbox.push(Bytes::from_static(b"1")), Err(NotQueued));
        assert_eq!(
            Stats::read(&counters).slow_consumer_closes,
            1,
            "counted once"
        );
    }

    #[test]
    fn the_drop_policy_drops_and_keeps_the_connection() {
        let (outbox, _rx, counters) = outbox(10, SlowConsumerPolicy::Drop);
        assert!(outbox.push(Bytes::from_static(b"0123456789")).is_ok());
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Err(NotQueued));
        assert_eq!(outbox.push(Bytes::from_static(b"y")), Err(NotQueued));
        assert!(!outbox.terminated().is_cancelled());
        assert_eq!(Stats::read(&counters).dropped_messages, 2);
        outbox.written(10);
        assert!(outbox.push(Bytes::from_static(b"z")).is_ok());
    }

    #[test]
    fn one_frame_larger_than_the_bound_passes_an_empty_queue() {
        // A single message bigger than the bound must still reach a client
        // that keeps up; only a backlog counts as slow.
        let (outbox, _rx, _) = outbox(4, SlowConsumerPolicy::Close);
        assert!(outbox.push(Bytes::from_static(b"0123456789")).is_ok());
        outbox.written(10);
        assert_eq!(outbox.queued_bytes(), 0);
        assert!(!outbox.terminated().is_cancelled());
    }

    #[test]
    fn termination_without_reason_means_going_away() {
        let (outbox, _rx, _) = outbox(10, SlowConsumerPolicy::Close);
        outbox.terminated().cancel();
        assert!(!outbox.terminated_for_cause());
        assert_eq!(u16::from(outbox.termination_frame().code), 1001);
    }
}
