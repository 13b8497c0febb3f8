//! The channel server's work queues (walkor/channel's `watch`, `enqueue`,
//! `reserve`): FIFO per name; an item goes to one watcher that has reserved
//! (one item per `reserve` and queue; the PHP client reserves again after
//! each item), in the order they reserved.
//!
//! Items enqueued while no watcher is ready are kept, bounded in bytes across
//! every queue of the server: an item past the bound is dropped and counted
//! (`channel_queue_dropped`), never the server's memory. A queue with no
//! watcher and no item is freed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::dialect::{Data, Delivery, Dialect, EventFrames, OwnedData};

/// Where a queue item goes: a watcher's dialect and outbox.
pub(crate) trait Consumer {
    /// The watcher's dialect (known: it sent a request).
    fn dialect(&self) -> Dialect;
    /// Queues one frame for it; `false` when it could not take it.
    fn deliver(&self, frame: Bytes) -> bool;
}

/// One named queue.
struct Queue<C> {
    /// Items not yet delivered, oldest first.
    items: VecDeque<OwnedData>,
    /// Connections watching it.
    watchers: HashMap<u64, Arc<C>>,
    /// Watchers that reserved and wait for an item, in the order they did.
    ready: VecDeque<u64>,
}

impl<C> Default for Queue<C> {
    fn default() -> Self {
        Queue {
            items: VecDeque::new(),
            watchers: HashMap::new(),
            ready: VecDeque::new(),
        }
    }
}

/// Every queue of a server.
pub(crate) struct Queues<C> {
    queues: HashMap<String, Queue<C>>,
    /// Bytes of items kept, across every queue.
    bytes: usize,
    /// Most bytes of items kept.
    max_bytes: usize,
}

/// What a queue operation could not do, for the counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueLosses {
    /// Items dropped: over the bound.
    pub(crate) dropped: u64,
    /// Items with no form in their watcher's dialect.
    pub(crate) undeliverable: u64,
}

impl<C: Consumer> Queues<C> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Queues {
            queues: HashMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Bytes of items kept now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of queues that exist (watched or holding items).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.queues.len()
    }

    /// Makes `id` a watcher of `name`.
    pub(crate) fn watch(&mut self, name: &str, id: u64, consumer: &Arc<C>) {
        self.queues
            .entry(name.to_owned())
            .or_default()
            .watchers
            .insert(id, consumer.clone());
    }

    /// `id` stops watching `name`; a queue left empty is freed.
    pub(crate) fn unwatch(&mut self, name: &str, id: u64) {
        if let Some(queue) = self.queues.get_mut(name) {
            queue.watchers.remove(&id);
            queue.ready.retain(|r| *r != id);
            if queue.watchers.is_empty() && queue.items.is_empty() {
                self.queues.remove(name);
            }
        }
    }

    /// `id` is ready for one item of each queue in `watching`: one is sent
    /// now from each queue that has one.
    pub(crate) fn reserve<'n>(
        &mut self,
        watching: impl IntoIterator<Item = &'n String>,
        id: u64,
        losses: &mut QueueLosses,
    ) {
        for name in watching {
            let Some(queue) = self.queues.get_mut(name) else {
                continue;
            };
            if !queue.watchers.contains_key(&id) || queue.ready.contains(&id) {
                continue;
            }
            queue.ready.push_back(id);
            self.bytes -= drain(name, queue, losses);
        }
    }

    /// Appends `data` to queue `name` (created if needed), then hands items
    /// to ready watchers.
    pub(crate) fn enqueue(&mut self, name: &str, data: Data<'_>, losses: &mut QueueLosses) {
        let item = data.to_owned_data();
        if self.bytes + item.len() > self.max_bytes {
            losses.dropped += 1;
            return;
        }
        self.bytes += item.len();
        let queue = self.queues.entry(name.to_owned()).or_default();
        queue.items.push_back(item);
        self.bytes -= drain(name, queue, losses);
    }
}

/// Hands items to ready watchers while both remain; returns the bytes of
/// the items that left.
fn drain<C: Consumer>(name: &str, queue: &mut Queue<C>, losses: &mut QueueLosses) -> usize {
    let mut freed = 0;
    while !queue.items.is_empty() {
        let Some(id) = queue.ready.pop_front() else {
            break;
        };
        let Some(watcher) = queue.watchers.get(&id) else {
            continue;
        };
        let Some(item) = queue.items.pop_front() else {
            break;
        };
        freed += item.len();
        let frame = EventFrames::new(Delivery::Queue, name, item.as_data()).get(watcher.dialect());
        match frame {
            Some(frame) => {
                // A watcher too slow for its outbox is being closed; the
                // item is lost with it, as with the PHP server.
                let _ = watcher.deliver(frame);
            }
            None => losses.undeliverable += 1,
        }
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Fake {
        got: Mutex<Vec<Bytes>>,
    }

    impl Consumer for Fake {
        fn dialect(&self) -> Dialect {
            Dialect::Php
        }
        fn deliver(&self, frame: Bytes) -> bool {
            self.got.lock().push(frame);
            true
        }
    }

    fn data(n: i64) -> Vec<u8> {
        format!("i:{n};").into_bytes()
    }

    fn got(fake: &Fake) -> Vec<String> {
        fake.got
            .lock()
            .iter()
            .map(|f| String::from_utf8_lossy(&f[4..]).into_owned())
            .collect()
    }

    #[test]
    fn items_wait_for_a_reservation_and_go_to_one_watcher_each_in_order() {
        let mut queues = Queues::new(1 << 20);
        let mut losses = QueueLosses::default();
        let (a, b) = (Arc::new(Fake::default()), Arc::new(Fake::default()));
        let q = "jobs".to_owned();
        for n in 1..=3 {
            queues.enqueue(&q, Data::Php(&data(n)), &mut losses);
        }
        assert_eq!(queues.bytes(), 12, "kept while nobody watches");
        queues.watch(&q, 1, &a);
        queues.watch(&q, 2, &b);
        queues.reserve([&q], 1, &mut losses);
        assert_eq!(
            got(&a),
            [r#"a:3:{s:4:"type";s:5:"queue";s:7:"channel";s:4:"jobs";s:4:"data";i:1;}"#],
            "one item per reserve"
        );
        queues.reserve([&q], 2, &mut losses);
        queues.reserve([&q], 1, &mut losses);
        assert!(got(&b)[0].ends_with("i:2;}"), "FIFO");
        assert!(got(&a)[1].ends_with("i:3;}"));
        assert_eq!(queues.bytes(), 0);
        // A reserve with nothing queued waits, once however often it is sent.
        queues.reserve([&q], 2, &mut losses);
        queues.reserve([&q], 2, &mut losses);
        queues.reserve([&q], 1, &mut losses);
        // Both wait: items go to them in the order they reserved.
        queues.enqueue(&q, Data::Php(&data(4)), &mut losses);
        queues.enqueue(&q, Data::Php(&data(5)), &mut losses);
        queues.enqueue(&q, Data::Php(&data(6)), &mut losses);
        assert_eq!((got(&a).len(), got(&b).len()), (3, 2));
        assert!(got(&b)[1].ends_with("i:4;}"));
        assert!(got(&a)[2].ends_with("i:5;}"));
        assert_eq!(queues.bytes(), 4, "the third waits for a reserve");
        queues.reserve([&q], 1, &mut losses);
        assert!(got(&a)[3].ends_with("i:6;}"));
        queues.unwatch(&q, 1);
        queues.unwatch(&q, 2);
        assert_eq!(queues.len(), 0, "freed");
        assert_eq!(losses, QueueLosses::default());
    }

    #[test]
    fn past_the_bound_items_are_dropped_and_counted() {
        let mut queues: Queues<Fake> = Queues::new(8);
        let mut losses = QueueLosses::default();
        queues.enqueue("q", Data::Php(&data(1)), &mut losses);
        queues.enqueue("q", Data::Php(&data(2)), &mut losses);
        queues.enqueue("q", Data::Php(&data(3)), &mut losses);
        assert_eq!(losses.dropped, 1);
        assert_eq!(queues.bytes(), 8);
        queues.unwatch("q", 9);
        assert_eq!(queues.len(), 1, "items keep the queue");
    }
}
