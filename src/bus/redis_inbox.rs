//! Where the Redis bus's push callback leaves other nodes' messages (and
//! the history replies behind them) for the delivery task, which delivers
//! them in runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RedisCounters;
use crate::bus::remote::{Remote, RemoteRun};
use crate::queue::ByteBudget;

/// Most bytes of other nodes' messages waiting for the delivery task (a
/// node too busy to deliver them drops the rest, counted).
pub(super) const INBOX_BYTES: usize = 8 << 20;
/// Most messages the delivery task takes at once; consecutive ones for a
/// group are delivered together.
const INBOX_BATCH: usize = 256;

/// What the delivery task takes, in the order it arrived.
pub(super) enum Inbound {
    /// A message's envelope, from the push callback.
    Message(Vec<u8>),
    /// The reply to a history request (`redis_history.rs`), behind the
    /// messages that arrived before it.
    Reply(Vec<u8>),
}

/// Where the push callback leaves other nodes' messages for the delivery
/// task: a queue bounded in bytes.
#[derive(Clone)]
pub(super) struct Inbox {
    pub(super) queue: mpsc::UnboundedSender<Inbound>,
    pub(super) budget: Arc<ByteBudget>,
    pub(super) counters: Arc<RedisCounters>,
}

impl Inbox {
    /// Hands a message (its envelope) to the delivery task, or drops and
    /// counts it when the task is too far behind. Never waits.
    pub(super) fn put(&self, payload: Vec<u8>) {
        let bytes = payload.len();
        if !self.budget.try_take(bytes) {
            self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.queue.send(Inbound::Message(payload)).is_err() {
            // The node is stopping.
            self.budget.give_back(bytes);
        }
    }

    /// Hands a history reply to the delivery task (never dropped: a held
    /// member waits for it).
    pub(super) fn put_reply(&self, reply: Vec<u8>) {
        let _ = self.queue.send(Inbound::Reply(reply));
    }
}

/// The delivery task: takes what arrived in one go and delivers it in runs
/// (consecutive messages for a group as one), until the bus is gone.
pub(super) async fn deliver_runs(
    remote: Arc<Remote>,
    mut inbox: mpsc::UnboundedReceiver<Inbound>,
    budget: Arc<ByteBudget>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::new();
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = inbox.recv_many(&mut batch, INBOX_BATCH) => received,
        };
        if received == 0 {
            return;
        }
        let mut run = RemoteRun::default();
        for item in batch.drain(..) {
            match item {
                Inbound::Message(payload) => {
                    budget.give_back(payload.len());
                    remote.add(&mut run, &payload);
                    run.pace().await;
                }
                Inbound::Reply(reply) => {
                    remote.finish(&mut run);
                    if let Some(positions) = &remote.positions {
                        positions.on_reply(&reply);
                    }
                }
            }
        }
        remote.finish(&mut run);
    }
}
