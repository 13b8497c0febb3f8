//! The bus on a channel server: follows the registry's interest with
//! subscriptions, delivers other nodes' group messages, and hands the host
//! the channels it subscribed to.
//!
//! Group delivery never waits for the host: channel data that does not fit
//! in the host's queue is dropped and counted (`host_dropped_events`), so a
//! slow host cannot stall the cluster's traffic.
//!
//! What a batch hands to members is paced: a run of one group's messages
//! is cut at [`RUN_BYTES`] (the loop yields after each cut), and the loop
//! pauses for the connections' writers after every [`PAUSE_BYTES`] of one
//! batch. A backlog released at once (a
//! channel server thawed after a freeze: megabytes in one read) otherwise
//! reached each member as one push of megabytes, and a second push before
//! the writer ran took a member that reads promptly over its outbound
//! bound: closed as a slow consumer (issue 16: a presence message in the
//! backlog split it into two such pushes, so the frozen-channel drill
//! failed with presence on).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::envelope::{GROUP_CHANNEL_PREFIX, group_channel};
use super::remote::{Remote, RemoteRun};
use crate::channel::{ChannelClient, ChannelEvents};
use crate::host::HostEvents;
use crate::registry::Interest;

/// Most channel events taken at once; consecutive ones for a group are
/// delivered together.
const EVENT_BATCH: usize = 256;
/// Most bytes of one group's consecutive messages delivered as one run:
/// well under a connection's outbound bound (1 MiB by default).
const RUN_BYTES: usize = 64 * 1024;
/// Bytes delivered between two pauses for the connections' writers: only
/// a batch that far behind pauses (a backlog), at most 256 KiB a
/// millisecond.
const PAUSE_BYTES: usize = 256 * 1024;
/// The pause.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Follows the registry's interest changes with subscriptions, delivers
/// other nodes' group messages to local members, and hands the host the
/// events of channels it subscribed to, until `shutdown`.
pub(super) async fn run_channel_bus(
    client: ChannelClient,
    remote: Remote,
    host: Option<Arc<HostEvents>>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    mut events: ChannelEvents,
    shutdown: CancellationToken,
    mut history_requests: Option<super::positions::HistoryRequests>,
) {
    let mut batch = Vec::new();
    let mut stale_check = tokio::time::interval(super::positions::STALE_REQUEST);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = stale_check.tick(), if remote.positions.is_some() => {
                if let Some(positions) = &remote.positions {
                    for request in positions.stale_requests(super::positions::STALE_REQUEST) {
                        if let Some(frame) = request.channel_frame() {
                            let _ = client.send_frame(frame);
                        }
                    }
                }
            }
            Some(request) = next_history_request(&mut history_requests) => {
                if let Some(positions) = &remote.positions {
                    positions.taken(&request);
                }
                // After the subscriptions asked before it (positions.rs).
                while let Ok(change) = interest.try_recv() {
                    follow_interest(&client, change);
                }
                if let Some(frame) = request.channel_frame() {
                    let _ = client.send_frame(frame);
                }
            }
            change = interest.recv() => match change {
                Some(Interest::Subscribe(group)) => {
                    let _ = client.subscribe(&group_channel(group.as_str()));
                }
                Some(Interest::Unsubscribe(group)) => {
                    let _ = client.unsubscribe(&group_channel(group.as_str()));
                }
                None => return,
            },
            received = events.recv_many(&mut batch, EVENT_BATCH) => {
                if received == 0 {
                    return;
                }
                let mut run = RemoteRun::default();
                let mut pace = Pace::default();
                for event in batch.drain(..) {
                    if event.channel.starts_with(GROUP_CHANNEL_PREFIX) {
                        remote.add(&mut run, event.data.get().as_bytes());
                        if pace.added(event.data.get().len()) {
                            remote.finish(&mut run);
                            if pace.delivered() {
                                // A yield alone may run this task again at
                                // once: a pause frees the worker for the
                                // writers (and their clients, in process).
                                tokio::time::sleep(PAUSE).await;
                            } else {
                                tokio::task::yield_now().await;
                            }
                        }
                        continue;
                    }
                    if event.channel == crate::channel::HISTORY_REPLY_CHANNEL
                        && let Some(positions) = &remote.positions
                    {
                        remote.finish(&mut run);
                        positions.on_reply(event.data.get().as_bytes());
                        continue;
                    }
                    remote.to_host(&mut run, host.as_deref(), event.channel, event.data.get());
                }
                remote.finish(&mut run);
            }
        }
    }
}

/// Bytes handed to members in a batch, to cut runs and pause (see the
/// module's note).
#[derive(Default)]
struct Pace {
    /// In the run being gathered.
    run: usize,
    /// Delivered since the last pause.
    since_pause: usize,
}

impl Pace {
    /// Counts `bytes` added to the run; whether the run must be delivered
    /// now.
    fn added(&mut self, bytes: usize) -> bool {
        self.run += bytes;
        self.run >= RUN_BYTES
    }

    /// Counts the run as delivered; whether to pause now.
    fn delivered(&mut self) -> bool {
        self.since_pause += std::mem::take(&mut self.run);
        if self.since_pause >= PAUSE_BYTES {
            self.since_pause = 0;
            return true;
        }
        false
    }
}

/// The next group-history request, or never without history.
pub(super) async fn next_history_request(
    requests: &mut Option<super::positions::HistoryRequests>,
) -> Option<super::positions::PositionRequest> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Applies one interest change ahead of a history request.
fn follow_interest(client: &ChannelClient, change: Interest) {
    let _ = match change {
        Interest::Subscribe(group) => client.subscribe(&group_channel(group.as_str())),
        Interest::Unsubscribe(group) => client.unsubscribe(&group_channel(group.as_str())),
    };
}
