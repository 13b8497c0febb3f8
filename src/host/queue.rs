//! The queue of events for the host: filled by the node's tasks, emptied
//! by the host's polls or its dispatcher thread. Bounded: when the host
//! falls behind, connection tasks wait for room (that client's reads pause),
//! so no event is lost and memory stays bounded.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::HostEvent;

/// What a poll came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// This many events were taken.
    Events(usize),
    /// None came before the deadline.
    TimedOut,
    /// The node stopped and every event was taken: none will come.
    Finished,
}

/// The queue of events for the host. Shared by the node's tasks (pushing)
/// and the host (polling).
pub struct HostEvents {
    /// Queued events and whether the queue is closed; behind a plain mutex
    /// never held across `.await`.
    state: Mutex<QueueState>,
    /// Wakes a host thread blocked in `poll`.
    readable: Condvar,
    /// Wakes connection tasks waiting for room.
    room: Notify,
    /// Most events held.
    capacity: usize,
    /// Readable while events are queued, for hosts' event loops.
    notify_reader: UnixStream,
    /// Our end of the notification pair: one byte when the queue stops being
    /// empty, drained when it empties.
    notify_writer: UnixStream,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<HostEvent>,
    closed: bool,
    /// Whether a byte is waiting in the notification pair.
    signalled: bool,
}

impl HostEvents {
    pub(crate) fn new(capacity: usize) -> std::io::Result<Arc<Self>> {
        let (notify_reader, notify_writer) = UnixStream::pair()?;
        notify_reader.set_nonblocking(true)?;
        notify_writer.set_nonblocking(true)?;
        Ok(Arc::new(HostEvents {
            state: Mutex::default(),
            readable: Condvar::new(),
            room: Notify::new(),
            capacity: capacity.max(1),
            notify_reader,
            notify_writer,
        }))
    }

    /// Queues an event, waiting while the queue is full. Once `stopping` is
    /// cancelled it stops waiting and queues the event anyway (a host thread
    /// that is itself stopping the node must not deadlock with it). Returns
    /// at once, dropping the event, when the queue is closed.
    pub(crate) async fn push(&self, mut event: HostEvent, stopping: &CancellationToken) {
        loop {
            // Enabled before trying, so room made in between is not missed.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(event) {
                Ok(()) => return,
                Err(full) => event = full,
            }
            tokio::select! {
                _ = room => {}
                _ = stopping.cancelled() => return self.push_now(event),
            }
        }
    }

    /// Queues an event if there is room, without waiting; gives it back
    /// when the queue is full (the caller then waits with [`Self::push`]).
    /// Like `push`, drops it when the queue is closed.
    // The event is handed back whole (not boxed): this path runs per
    // client message, and a full queue is the rare case.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_push(&self, event: HostEvent) -> Result<(), HostEvent> {
        let mut state = self.state.lock();
        if state.closed {
            return Ok(());
        }
        if state.events.len() >= self.capacity {
            return Err(event);
        }
        state.events.push_back(event);
        self.signal(&mut state);
        Ok(())
    }

    /// Queues an event even when full: for the few events of a connection's
    /// end, which must not wait (the node may be stopping).
    pub(crate) fn push_now(&self, event: HostEvent) {
        let mut state = self.state.lock();
        if !state.closed {
            state.events.push_back(event);
            self.signal(&mut state);
        }
    }

    fn signal(&self, state: &mut QueueState) {
        if !state.signalled {
            state.signalled = true;
            let _ = (&self.notify_writer).write(&[1]);
        }
        self.readable.notify_one();
    }

    /// Takes up to `max` events, waiting up to `timeout` for the first one
    /// (`None`: wait until one comes or the queue closes). Returns an empty
    /// vector on timeout or once the queue is closed and empty.
    pub fn poll(&self, timeout: Option<Duration>, max: usize) -> Vec<HostEvent> {
        let mut batch = Vec::new();
        self.poll_into(&mut batch, timeout, max);
        batch
    }

    /// Like [`HostEvents::poll`], appending to `batch`; returns how many
    /// were taken.
    pub fn poll_into(
        &self,
        batch: &mut Vec<HostEvent>,
        timeout: Option<Duration>,
        max: usize,
    ) -> usize {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.state.lock();
        while state.events.is_empty() && !state.closed {
            match deadline {
                Some(deadline) => {
                    if self.readable.wait_until(&mut state, deadline).timed_out() {
                        break;
                    }
                }
                None => self.readable.wait(&mut state),
            }
        }
        let take = state.events.len().min(max.max(1));
        batch.extend(state.events.drain(..take));
        // Once closed, the fd stays readable so an event loop waiting on it
        // alone also learns that the node stopped.
        if state.events.is_empty() && state.signalled && !state.closed {
            state.signalled = false;
            let mut sink = [0u8; 16];
            while matches!((&self.notify_reader).read(&mut sink), Ok(n) if n > 0) {}
        }
        drop(state);
        if take > 0 {
            self.room.notify_waiters();
        }
        take
    }

    /// Takes up to `max` events into `batch`, waiting until `deadline` for
    /// the first (`None`: until one comes or the queue closes), and says
    /// which of the three things happened: what every host's poll needs.
    pub fn poll_until(
        &self,
        batch: &mut Vec<HostEvent>,
        deadline: Option<Instant>,
        max: usize,
    ) -> Polled {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match self.poll_into(batch, timeout, max) {
            0 if self.is_finished() => Polled::Finished,
            0 => Polled::TimedOut,
            taken => Polled::Events(taken),
        }
    }

    /// Events waiting now.
    pub fn len(&self) -> usize {
        self.state.lock().events.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is closed (the node stopped) and drained.
    pub fn is_finished(&self) -> bool {
        let state = self.state.lock();
        state.closed && state.events.is_empty()
    }

    /// A file descriptor that is readable while events are waiting (and once
    /// the node has stopped). Do not read from it: `poll` drains it.
    pub fn notify_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.notify_reader.as_raw_fd()
    }

    /// Closes the queue: pollers wake up, pushers stop waiting. Events
    /// already queued can still be polled.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        if !state.signalled {
            state.signalled = true;
            let _ = (&self.notify_writer).write(&[1]);
        }
        drop(state);
        self.readable.notify_all();
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConnId;
    use std::thread;

    fn close_event(conn: ConnId) -> HostEvent {
        HostEvent::Close { conn, code: None }
    }

    #[test]
    fn poll_times_out_empty_and_takes_in_order() {
        let events = HostEvents::new(8).unwrap();
        assert!(events.poll(Some(Duration::from_millis(10)), 10).is_empty());
        events.push_now(close_event(1));
        events.push_now(close_event(2));
        events.push_now(close_event(3));
        assert_eq!(
            events.poll(Some(Duration::ZERO), 2),
            vec![close_event(1), close_event(2)]
        );
        assert_eq!(events.poll(None, 10), vec![close_event(3)]);
    }

    #[test]
    fn notify_fd_is_readable_exactly_while_events_wait() {
        let events = HostEvents::new(8).unwrap();
        let readable = || {
            let mut fd = libc::pollfd {
                fd: events.notify_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout.
            unsafe { libc::poll(&mut fd, 1, 0) == 1 }
        };
        assert!(!readable());
        events.push_now(close_event(1));
        assert!(readable());
        events.poll(Some(Duration::ZERO), 10);
        assert!(!readable());
        events.close();
        assert!(readable());
        events.poll(Some(Duration::ZERO), 10);
        assert!(
            readable(),
            "still readable after the last poll of a closed queue"
        );
    }

    #[test]
    fn a_full_queue_makes_pushers_wait_until_polled() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let events = HostEvents::new(1).unwrap();
        rt.block_on(events.push(close_event(1), &CancellationToken::new()));
        let pushing = {
            let events = events.clone();
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(events.push(close_event(2), &CancellationToken::new()));
            })
        };
        thread::sleep(Duration::from_millis(50));
        assert_eq!(events.len(), 1, "second push waits for room");
        assert_eq!(events.poll(None, 1), vec![close_event(1)]);
        pushing.join().unwrap();
        assert_eq!(events.poll(None, 1), vec![close_event(2)]);
    }
}
