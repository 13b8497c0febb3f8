//! The host thread: one thread owned by the library that hands queued
//! events to the host's handler, so host code never runs on a tokio thread.

use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};

use super::{HostEvent, HostEvents};

/// Most events handed to the handler in one batch.
const DISPATCH_BATCH: usize = 1024;

/// A thread owned by the library that hands queued events to a handler, in
/// batches, until the queue closes. Host callbacks run there and only there.
pub struct Dispatcher {
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl Dispatcher {
    /// Starts the thread. `handler` gets each batch in queue order.
    ///
    /// # Errors
    ///
    /// When the OS refuses a new thread.
    pub fn spawn(
        events: Arc<HostEvents>,
        mut handler: impl FnMut(&mut Vec<HostEvent>) + Send + 'static,
    ) -> std::io::Result<Dispatcher> {
        let thread = thread::Builder::new()
            .name("groupcast-host".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(64);
                loop {
                    events.poll_into(&mut batch, None, DISPATCH_BATCH);
                    if batch.is_empty() {
                        if events.is_finished() {
                            return;
                        }
                        continue;
                    }
                    handler(&mut batch);
                    batch.clear();
                }
            })?;
        let thread_id = thread.thread().id();
        Ok(Dispatcher {
            thread: Some(thread),
            thread_id,
        })
    }

    /// Waits for the thread to end (the queue must be closed first). Called
    /// from the dispatcher thread itself (a handler stopping the server), it
    /// returns at once: the thread ends after the handler returns.
    pub fn join(&mut self) {
        if thread::current().id() == self.thread_id {
            return;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[test]
    fn dispatcher_ends_when_the_queue_closes() {
        let events = HostEvents::new(8).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut dispatcher = {
            let seen = seen.clone();
            Dispatcher::spawn(events.clone(), move |batch| {
                seen.lock().extend(batch.drain(..))
            })
            .unwrap()
        };
        let close = HostEvent::Close {
            conn: 7,
            code: None,
        };
        events.push_now(close.clone());
        events.close();
        dispatcher.join();
        assert_eq!(*seen.lock(), vec![close]);
    }
}
