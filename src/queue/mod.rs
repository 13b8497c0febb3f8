//! A connection's outbound queue, bounded in bytes.
//!
//! Fan-out pushes the same shared frames into many queues, so a push must be
//! cheap: a short, uncontended lock around a `VecDeque` holds the items (a
//! push is one compare-and-swap, an append and a release), an `AtomicWaker`
//! wakes the connection's task, and an atomic counter holds the bytes
//! queued. The writer swaps the whole deque for its own empty batch rather
//! than popping item by item, and when it finds the queue drained it gives
//! both buffers back: a connection holds queue memory only while it has
//! something to write, so an idle one costs the same after a million
//! messages as before the first (a lock-free segmented queue kept a
//! 1.5 KiB block per connection after its first delivery, and its
//! cache-line padding took 0.4 KiB more per connection; benches/FINDINGS.md).
//! When a push would go over the bound the consumer is too slow to keep up,
//! and the slow-consumer policy applies: terminate the connection (close
//! code 1008, the default) or drop the frames. Either way one stalled client
//! never makes the server's memory grow or delays the others, and the event
//! is counted.
//!
//! The items themselves (shared frames, a group's run of frames, a close)
//! are in `frames.rs`.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

mod frames;

pub(crate) use frames::{FinishedRun, FrameRun, Frames, Outbound};

use crate::config::SlowConsumerPolicy;
use crate::stats::NodeCounters;

/// Close code and reason used when a consumer falls too far behind.
pub(crate) const SLOW_CONSUMER: (u16, &str) = (1008, "slow consumer: outbound queue full");

/// Bytes in flight through a queue that has no bound of its own. One item
/// larger than the bound still passes when nothing else is in flight.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(ByteBudget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Takes `n` bytes if they fit; `false` when they do not.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before + n > self.limit && before > 0 {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// What the sending and the receiving side share.
#[derive(Debug, Default)]
struct Queue {
    /// The items, in order. Unallocated while the connection has nothing
    /// to write. The lock is held only to append or to swap the deque out,
    /// never across an `.await`.
    items: Mutex<VecDeque<Outbound>>,
    /// The receiving task, woken by every push.
    waker: AtomicWaker,
    /// Set (under the `items` lock) when the receiver is gone: pushes are
    /// refused from then on.
    closed: AtomicBool,
    /// Set to make the connection close now (slow consumer, node stopping);
    /// the receiver is woken through `waker`. A flag rather than a
    /// cancellation token per connection: a token's child node was 112
    /// bytes of every idle connection (benches/FINDINGS.md).
    terminated: AtomicBool,
    /// Set by the node's heartbeat ticker when a ping is due, taken by the
    /// receiver: one ticker for all connections rather than a timer each.
    heartbeat: AtomicBool,
}

impl Queue {
    fn push(&self, item: Outbound) -> Result<(), NotQueued> {
        {
            let mut items = self.items.lock();
            if self.closed.load(Ordering::Relaxed) {
                return Err(NotQueued);
            }
            items.push_back(item);
        }
        self.waker.wake();
        Ok(())
    }
}

/// The sending side of a connection's queue, shared by every task that
/// delivers to the connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Items for the connection's writer.
    queue: Arc<Queue>,
    /// Payload bytes pushed and not yet written, to enforce `limit`.
    queued: AtomicUsize,
    /// Most payload bytes the queue may hold.
    limit: usize,
    /// What a push over the limit does.
    policy: SlowConsumerPolicy,
    /// Where drops and slow-consumer closes are counted.
    counters: Arc<NodeCounters>,
    /// Also cancelled when the connection is terminated, for a task that
    /// watches a token rather than the receiver (the channel server's); a
    /// token cancelled from outside terminates the connection too.
    token: Option<CancellationToken>,
    /// The close frame to send once terminated; the first reason wins.
    terminated_with: OnceLock<(u16, String)>,
}

/// The frame was not queued: the connection is closing or too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotQueued;

impl Outbox {
    /// Creates a queue bounded to `limit` payload bytes, and its receiver,
    /// for a task that watches `token` to learn of its termination.
    pub(crate) fn new(
        limit: usize,
        policy: SlowConsumerPolicy,
        counters: Arc<NodeCounters>,
        token: CancellationToken,
    ) -> (Self, OutboxReceiver) {
        Self::with_token(limit, policy, counters, Some(token))
    }

    /// Creates a queue whose termination the receiver learns of through
    /// [`OutboxReceiver::signals`]; the node terminates it when it stops.
    pub(crate) fn for_connection(
        limit: usize,
        policy: SlowConsumerPolicy,
        counters: Arc<NodeCounters>,
    ) -> (Self, OutboxReceiver) {
        Self::with_token(limit, policy, counters, None)
    }

    fn with_token(
        limit: usize,
        policy: SlowConsumerPolicy,
        counters: Arc<NodeCounters>,
        token: Option<CancellationToken>,
    ) -> (Self, OutboxReceiver) {
        let queue = Arc::new(Queue::default());
        let outbox = Outbox {
            queue: queue.clone(),
            queued: AtomicUsize::new(0),
            limit,
            policy,
            counters,
            token,
            terminated_with: OnceLock::new(),
        };
        (outbox, OutboxReceiver { queue })
    }

    /// Queues one frame or a run of frames. The bytes are shared, not copied.
    ///
    /// # Errors
    ///
    /// [`NotQueued`] when the connection is gone, or when the frames would
    /// take the queue over its bound; the slow-consumer policy then
    /// terminates the connection or drops them.
    pub(crate) fn push(&self, frames: impl Into<Frames>) -> Result<(), NotQueued> {
        let frames = frames.into();
        let len = frames.bytes();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > self.limit && before > 0 {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            match self.policy {
                SlowConsumerPolicy::Close => {
                    // Concurrent pushes may all overflow: only the one that
                    // terminates the connection counts it.
                    if self.terminate_with(SLOW_CONSUMER.0, SLOW_CONSUMER.1) {
                        NodeCounters::add(&self.counters.slow_consumer_closes, 1);
                    }
                }
                SlowConsumerPolicy::Drop => {
                    NodeCounters::add(&self.counters.dropped_messages, frames.count() as u64);
                }
            }
            return Err(NotQueued);
        }
        self.queue.push(Outbound::Frames(frames)).inspect_err(|_| {
            self.queued.fetch_sub(len, Ordering::Relaxed);
        })
    }

    /// Queues a close after whatever is already queued.
    pub(crate) fn push_close(&self, code: u16, reason: &str) -> Result<(), NotQueued> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        self.queue.push(Outbound::Close(frame))
    }

    /// Makes the connection close now with `code`, dropping what is queued.
    /// Returns whether this call decided it (the first reason wins, and a
    /// node that is stopping has already decided).
    pub(crate) fn terminate_with(&self, code: u16, reason: &str) -> bool {
        let first =
            !self.is_terminated() && self.terminated_with.set((code, reason.to_owned())).is_ok();
        self.terminate();
        first
    }

    /// Makes the connection close now with 1001 "going away" (the node is
    /// stopping), unless it was terminated for a reason already.
    pub(crate) fn terminate(&self) {
        self.queue.terminated.store(true, Ordering::Release);
        if let Some(token) = &self.token {
            token.cancel();
        }
        self.queue.waker.wake();
    }

    /// Whether the connection was terminated (for a reason or because the
    /// node is stopping).
    pub(crate) fn is_terminated(&self) -> bool {
        self.queue.terminated.load(Ordering::Acquire)
            || self
                .token
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
    }

    /// Tells the receiver a ping is due (the node's heartbeat ticker).
    pub(crate) fn heartbeat(&self) {
        self.queue.heartbeat.store(true, Ordering::Release);
        self.queue.waker.wake();
    }

    /// Whether the connection was terminated for a reason of its own (not
    /// because the node is stopping).
    pub(crate) fn terminated_for_cause(&self) -> bool {
        self.terminated_with.get().is_some()
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

    /// Whether the connection can still receive: its writer is there and
    /// it is not being terminated.
    pub(crate) fn is_open(&self) -> bool {
        !self.queue.closed.load(Ordering::Acquire) && !self.is_terminated()
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

/// The writer's side of an [`Outbox`]. Dropping it refuses further pushes
/// and frees what is queued.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    queue: Arc<Queue>,
}

impl OutboxReceiver {
    /// Waits for at least one item and takes up to `max` queued ones, so the
    /// writer can send them in one flush. Returns how many it took.
    ///
    /// A plain function returning the wait itself (not an `async fn`
    /// around it): the future is only its three references, and it sits in
    /// every idle connection's task.
    pub(crate) fn recv_batch<'a>(
        &'a mut self,
        batch: &'a mut Vec<Outbound>,
        max: usize,
    ) -> impl Future<Output = usize> + 'a {
        poll_fn(move |cx| {
            let taken = self.take(batch, max);
            if taken > 0 {
                return Poll::Ready(taken);
            }
            // Registered before looking again, so a push between the two
            // looks is not missed.
            self.queue.waker.register(cx.waker());
            match self.take(batch, max) {
                0 => Poll::Pending,
                taken => Poll::Ready(taken),
            }
        })
    }

    /// Waits for what the connection's task acts on, in this order: its
    /// termination, a ping due, queued items (up to `max`, taken into
    /// `batch`). One wait and one waker registration for the three, so an
    /// idle connection's loop costs what waiting for items alone did.
    pub(crate) fn next_wake<'a>(
        &'a mut self,
        batch: &'a mut Vec<Outbound>,
        max: usize,
    ) -> impl Future<Output = Wake> + 'a {
        poll_fn(move |cx| {
            if let Some(wake) = self.ready(batch, max) {
                return Poll::Ready(wake);
            }
            // Registered before looking again, so a push or a signal
            // between the two looks is not missed.
            self.queue.waker.register(cx.waker());
            match self.ready(batch, max) {
                Some(wake) => Poll::Ready(wake),
                None => Poll::Pending,
            }
        })
    }

    fn ready(&self, batch: &mut Vec<Outbound>, max: usize) -> Option<Wake> {
        let queue = &self.queue;
        if queue.terminated.load(Ordering::Acquire) {
            return Some(Wake::Terminated);
        }
        if queue.heartbeat.load(Ordering::Relaxed) && queue.heartbeat.swap(false, Ordering::AcqRel)
        {
            return Some(Wake::Heartbeat);
        }
        match self.take(batch, max) {
            0 => None,
            taken => Some(Wake::Items(taken)),
        }
    }

    fn take(&self, batch: &mut Vec<Outbound>, max: usize) -> usize {
        let mut items = self.queue.items.lock();
        let n = items.len().min(max);
        if n == 0 {
            return 0;
        }
        if batch.is_empty() && n == items.len() {
            // All of it: swap the deque for the batch's buffer (no copy,
            // no allocation; a deque becomes a `Vec` in place).
            let spare = VecDeque::from(std::mem::take(batch));
            *batch = Vec::from(std::mem::replace(&mut *items, spare));
        } else {
            batch.extend(items.drain(..n));
        }
        n
    }

    /// Frees the queue's buffer and the writer's `batch` (which must have
    /// been written and cleared) when nothing more is queued: a connection
    /// keeps no queue memory between bursts. Returns whether it did.
    pub(crate) fn release_if_drained(&self, batch: &mut Vec<Outbound>) -> bool {
        debug_assert!(batch.is_empty(), "the batch is written first");
        let mut items = self.queue.items.lock();
        if !items.is_empty() {
            return false;
        }
        *items = VecDeque::new();
        *batch = Vec::new();
        true
    }

    /// A wait for the termination while the receiver's batch is being
    /// written. A handle of its own, so that waiting borrows neither the
    /// receiver nor the task's other state.
    pub(crate) fn signals(&self) -> Signals {
        Signals {
            queue: self.queue.clone(),
        }
    }

    /// Takes one queued item without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        self.queue.items.lock().pop_front()
    }

    /// Whether nothing is queued (tests only).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.items.lock().is_empty()
    }

    /// The bytes of memory the queue's buffer holds (tests only).
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.queue.items.lock().capacity() * std::mem::size_of::<Outbound>()
    }
}

/// What woke a connection's task (see [`OutboxReceiver::next_wake`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The connection is terminated.
    Terminated,
    /// A ping is due.
    Heartbeat,
    /// This many items were taken.
    Items(usize),
}

/// Waits for a queue's termination (see [`OutboxReceiver::signals`]) while
/// the receiver is busy: it wakes the task through the queue's waker, which
/// only the receiving task registers.
#[derive(Debug)]
pub(crate) struct Signals {
    queue: Arc<Queue>,
}

/// Plain functions returning the waits (not `async fn`s around them): each
/// is one reference in the connection's task.
impl Signals {
    /// Resolves once the connection is terminated.
    pub(crate) fn terminated(&self) -> impl Future<Output = ()> + '_ {
        self.wait(|queue| queue.terminated.load(Ordering::Acquire))
    }

    fn wait<'a>(&'a self, ready: impl Fn(&Queue) -> bool + 'a) -> impl Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            if ready(&self.queue) {
                return Poll::Ready(());
            }
            // Registered before looking again, so a signal between the two
            // looks is not missed.
            self.queue.waker.register(cx.waker());
            match ready(&self.queue) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let left = {
            let mut items = self.queue.items.lock();
            self.queue.closed.store(true, Ordering::Release);
            std::mem::take(&mut *items)
        };
        // Freed outside the lock.
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::stats::Stats;

    fn outbox(
        limit: usize,
        policy: SlowConsumerPolicy,
    ) -> (Outbox, OutboxReceiver, Arc<NodeCounters>) {
        let counters = Arc::new(NodeCounters::default());
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
        assert!(outbox.is_terminated());
        assert_eq!(u16::from(outbox.termination_frame().code), 1008);
        assert_eq!(outbox.push(Bytes::from_static(b"1")), Err(NotQueued));
        assert_eq!(
            Stats::read(&counters).slow_consumer_closes,
            1,
            "counted once"
        );
    }

    #[test]
    fn concurrent_overflows_count_one_slow_consumer_close() {
        for _ in 0..50 {
            let (outbox, _rx, counters) = outbox(4, SlowConsumerPolicy::Close);
            outbox.push(Bytes::from_static(b"1234")).unwrap();
            let outbox = Arc::new(outbox);
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let outbox = outbox.clone();
                    std::thread::spawn(move || {
                        for _ in 0..100 {
                            let _ = outbox.push(Bytes::from_static(b"x"));
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(Stats::read(&counters).slow_consumer_closes, 1);
        }
    }

    #[test]
    fn a_node_stopping_is_not_a_slow_consumer() {
        let (outbox, _rx, counters) = outbox(4, SlowConsumerPolicy::Close);
        outbox.push(Bytes::from_static(b"1234")).unwrap();
        outbox.terminate();
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Err(NotQueued));
        assert_eq!(Stats::read(&counters).slow_consumer_closes, 0);
        assert_eq!(u16::from(outbox.termination_frame().code), 1001);
    }

    #[test]
    fn a_byte_budget_lets_one_oversize_item_through_an_empty_queue() {
        let budget = ByteBudget::new(10);
        assert!(budget.try_take(25), "alone, even over the bound");
        assert!(!budget.try_take(1));
        budget.give_back(25);
        assert!(budget.try_take(6));
        assert!(budget.try_take(4));
        assert!(!budget.try_take(1));
    }

    #[test]
    fn the_drop_policy_drops_and_keeps_the_connection() {
        let (outbox, _rx, counters) = outbox(10, SlowConsumerPolicy::Drop);
        assert!(outbox.push(Bytes::from_static(b"0123456789")).is_ok());
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Err(NotQueued));
        assert_eq!(outbox.push(Bytes::from_static(b"y")), Err(NotQueued));
        assert!(!outbox.is_terminated());
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
        assert!(!outbox.is_terminated());
    }

    fn frames(parts: &[&'static str]) -> Frames {
        Frames::many(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
        )
    }

    #[test]
    fn a_run_of_frames_is_one_item_and_counts_all_its_bytes() {
        let run = frames(&["ab", "cde", "f"]);
        assert_eq!((run.count(), run.bytes()), (3, 6));
        assert!(
            matches!(frames(&["x"]), Frames::One(_)),
            "one frame needs no run"
        );
        let (outbox, mut rx, counters) = outbox(8, SlowConsumerPolicy::Drop);
        assert!(outbox.push(run.clone()).is_ok());
        assert_eq!(outbox.queued_bytes(), 6);
        // Over the bound: the whole run is dropped, each frame counted.
        assert_eq!(outbox.push(run), Err(NotQueued));
        assert_eq!(Stats::read(&counters).dropped_messages, 3);
        let item = rx.try_recv().expect("queued");
        assert_eq!(item.frames().concat(), b"abcdef");
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn a_run_ends_where_its_key_changes() {
        let mut run = FrameRun::<String>::default();
        let frame = |text: &'static str| Bytes::from_static(text.as_bytes());
        assert!(run.push("a", frame("1"), 1).is_none());
        assert!(run.push("a", frame("22"), 2).is_none());
        let (key, frames, bytes) = run.push("b", frame("333"), 3).expect("a ends");
        assert_eq!((key.as_str(), frames.count(), bytes), ("a", 2, 3));
        assert_eq!(frames.as_slice().concat(), b"122");
        let (key, frames, bytes) = run.finish().expect("b ends");
        assert_eq!((key.as_str(), frames.count(), bytes), ("b", 1, 3));
        assert!(matches!(frames, Frames::One(_)));
        assert!(run.finish().is_none(), "nothing left");
    }

    #[test]
    fn nothing_is_queued_once_the_receiver_is_gone() {
        let (outbox, rx, _) = outbox(100, SlowConsumerPolicy::Close);
        assert!(
            outbox
                .push(Bytes::from_static(b"kept until the drop"))
                .is_ok()
        );
        drop(rx);
        assert_eq!(outbox.push(Bytes::from_static(b"late")), Err(NotQueued));
        assert_eq!(outbox.push_close(1000, "bye"), Err(NotQueued));
        assert!(
            outbox.queue.items.lock().is_empty(),
            "the drop freed what was queued"
        );
        assert!(!outbox.is_terminated(), "a closed queue is not a slow one");
    }

    #[test]
    fn a_waiting_receiver_wakes_for_a_push_from_another_thread() {
        let (outbox, mut rx, _) = outbox(1 << 20, SlowConsumerPolicy::Close);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let pusher = std::thread::spawn(move || {
            for i in 0..10_000u32 {
                if i % 1000 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                outbox.push(Bytes::from(i.to_be_bytes().to_vec())).unwrap();
            }
            outbox
        });
        let mut batch = Vec::new();
        let mut seen = 0u32;
        rt.block_on(async {
            while seen < 10_000 {
                let wait = rx.recv_batch(&mut batch, 64);
                let taken = tokio::time::timeout(std::time::Duration::from_secs(5), wait)
                    .await
                    .expect("woken");
                assert!((1..=64).contains(&taken));
                for item in batch.drain(..) {
                    assert_eq!(item.frames()[0][..], seen.to_be_bytes(), "in order");
                    seen += 1;
                }
            }
        });
        let outbox = pusher.join().unwrap();
        assert_eq!(
            outbox.queued_bytes(),
            40_000,
            "the writer reports what it wrote"
        );
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let (outbox, mut rx, _) = outbox(1 << 20, SlowConsumerPolicy::Close);
        assert_eq!(rx.allocated(), 0, "nothing before the first push");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut batch = Vec::new();
        rt.block_on(async {
            for round in 0..3 {
                for i in 0..10u8 {
                    outbox.push(Bytes::from(vec![i; 8])).unwrap();
                }
                assert!(rx.allocated() > 0);
                // Taken whole: the batch is the queue's buffer, in order.
                assert_eq!(rx.recv_batch(&mut batch, 64).await, 10, "round {round}");
                let taken: Vec<u8> = batch.iter().map(|item| item.frames()[0][0]).collect();
                assert_eq!(taken, (0..10).collect::<Vec<_>>());
                outbox.written(batch.iter().map(Outbound::bytes).sum());
                batch.clear();
                assert!(rx.release_if_drained(&mut batch));
                assert_eq!((rx.allocated(), batch.capacity()), (0, 0), "round {round}");
            }
            // More than one batch's worth: taken in order, the rest stays,
            // and nothing is released while something is queued.
            for i in 0..10u8 {
                outbox.push(Bytes::from(vec![i; 8])).unwrap();
            }
            assert_eq!(rx.recv_batch(&mut batch, 4).await, 4);
            assert_eq!(batch[3].frames()[0][0], 3);
            batch.clear();
            assert!(!rx.release_if_drained(&mut batch));
            assert_eq!(rx.recv_batch(&mut batch, 64).await, 6);
            assert_eq!(batch[0].frames()[0][0], 4, "in order");
        });
    }

    #[test]
    fn termination_and_heartbeats_wake_the_receiver_from_another_thread() {
        let (outbox, mut rx, _) = outbox(100, SlowConsumerPolicy::Close);
        let signals = rx.signals();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let outbox = Arc::new(outbox);
        let (wait, short) = (Duration::from_secs(5), Duration::from_millis(20));
        let mut batch = Vec::new();
        rt.block_on(async {
            let nothing = tokio::time::timeout(short, rx.next_wake(&mut batch, 8)).await;
            assert!(nothing.is_err(), "nothing yet");
            let pinger = outbox.clone();
            std::thread::spawn(move || pinger.heartbeat());
            let woken = tokio::time::timeout(wait, rx.next_wake(&mut batch, 8)).await;
            assert_eq!(woken.expect("woken for the ping"), Wake::Heartbeat);
            let again = tokio::time::timeout(short, rx.next_wake(&mut batch, 8)).await;
            assert!(again.is_err(), "a ping is taken once");
            outbox.push(Bytes::from_static(b"x")).unwrap();
            assert_eq!(rx.next_wake(&mut batch, 8).await, Wake::Items(1));
            let not_yet = tokio::time::timeout(short, signals.terminated()).await;
            assert!(not_yet.is_err(), "a ping or an item is not a termination");
            // Terminated while the batch is being written, and ahead of
            // anything queued.
            outbox.push(Bytes::from_static(b"y")).unwrap();
            outbox.heartbeat();
            let stopper = outbox.clone();
            std::thread::spawn(move || stopper.terminate());
            tokio::time::timeout(wait, signals.terminated())
                .await
                .expect("woken for the termination");
            assert_eq!(rx.next_wake(&mut batch, 8).await, Wake::Terminated);
        });
        assert!(outbox.is_terminated() && !outbox.is_open());
        assert!(!outbox.terminated_for_cause(), "the node stopping: 1001");
        assert!(
            !outbox.terminate_with(1008, "late"),
            "the first reason wins"
        );
        assert_eq!(u16::from(outbox.termination_frame().code), 1001);
    }

    #[test]
    fn termination_without_reason_means_going_away() {
        let (outbox, _rx, _) = outbox(10, SlowConsumerPolicy::Close);
        outbox.terminate();
        assert!(!outbox.terminated_for_cause());
        assert_eq!(u16::from(outbox.termination_frame().code), 1001);
    }
}
