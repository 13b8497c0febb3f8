//! The bus on a channel server: follows the registry's interest with
//! subscriptions, delivers other nodes' group messages, and hands the host
//! the channels it subscribed to.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::envelope::{GROUP_CHANNEL_PREFIX, group_channel};
use super::remote::RemoteRun;
use crate::channel::{ChannelClient, ChannelEvent};
use crate::host::{HostEvent, HostEvents};
use crate::registry::{Interest, Registry};

/// Follows the registry's interest changes with subscriptions, delivers
/// other nodes' group messages to local members, and hands the host the
/// events of channels it subscribed to, until `shutdown`.
pub(crate) async fn run_channel_bus(
    client: ChannelClient,
    node_id: u64,
    registry: Arc<Registry>,
    host: Option<Arc<HostEvents>>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    mut events: mpsc::UnboundedReceiver<ChannelEvent>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
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
                for event in batch.drain(..) {
                    if event.channel.starts_with(GROUP_CHANNEL_PREFIX) {
                        run.add(&registry, node_id, event.data.get().as_bytes());
                        continue;
                    }
                    run.finish(&registry);
                    if let Some(host) = &host {
                        host.push(HostEvent::Channel {
                            channel: event.channel,
                            data: event.data.get().to_owned(),
                        }, &shutdown)
                        .await;
                    }
                }
                run.finish(&registry);
            }
        }
    }
}

/// Most channel events taken at once; consecutive ones for a group are
/// delivered together.
const EVENT_BATCH: usize = 256;
