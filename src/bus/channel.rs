//! The bus on a channel server: follows the registry's interest with
//! subscriptions, delivers other nodes' group messages, and hands the host
//! the channels it subscribed to.
//!
//! Group delivery never waits for the host: channel data that does not fit
//! in the host's queue is dropped and counted (`host_dropped_events`), so a
//! slow host cannot stall the cluster's traffic.
//!
//! What a batch hands to members is paced (`RemoteRun::pace`, in
//! `remote.rs`, as on every bus).

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
                Some(change) => follow_interest(&client, change),
                None => return,
            },
            received = events.recv_many(&mut batch, EVENT_BATCH) => {
                if received == 0 {
                    return;
                }
                let mut run = RemoteRun::default();
                for event in batch.drain(..) {
                    if event.channel.starts_with(GROUP_CHANNEL_PREFIX) {
                        remote.add(&mut run, event.data.get().as_bytes());
                        run.pace().await;
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

/// The next group-history request, or never without history.
pub(super) async fn next_history_request(
    requests: &mut Option<super::positions::HistoryRequests>,
) -> Option<super::positions::PositionRequest> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Follows one interest change with a subscription.
fn follow_interest(client: &ChannelClient, change: Interest) {
    let _ = match change {
        Interest::Subscribe(group) => client.subscribe(&group_channel(group.as_str())),
        Interest::Unsubscribe(group) => client.unsubscribe(&group_channel(group.as_str())),
    };
}
