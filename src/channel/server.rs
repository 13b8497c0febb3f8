//! The channel server: the seed's pub/sub hub. Clients subscribe to named
//! channels and publish data to them; every publish reaches every subscriber
//! of the channel, the publisher included (Workerman processes rely on that).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::FrameDecoder;
use super::message::{AuthReply, Request, auth_reply_frame, event_frame, parse_request};
use crate::accept::next_connection;
use crate::config::SlowConsumerPolicy;
use crate::queue::{Outbound, Outbox};
use crate::stats::NodeCounters;

/// How long a refused client is given to take its refusal.
const REFUSAL_WRITE: std::time::Duration = std::time::Duration::from_secs(1);

/// Limits of a channel server.
#[derive(Debug, Clone)]
pub struct ChannelServerConfig {
    /// Largest frame accepted, header included; a larger one closes the
    /// connection.
    pub max_frame: usize,
    /// Most bytes queued for one subscriber before it is disconnected.
    pub outbound_queue_bytes: usize,
    /// Shared secret every client must send in its first frame
    /// (`{"type":"auth","secret":"..."}`). Required when listening on an
    /// address other than loopback: the channel carries every group's
    /// traffic.
    pub secret: Option<String>,
    /// Group history for the cluster (`channel/history.rs`); `None`: none.
    pub history: Option<super::history::ChannelHistoryConfig>,
}

impl Default for ChannelServerConfig {
    fn default() -> Self {
        let limits = crate::Limits::default();
        ChannelServerConfig {
            max_frame: limits.max_channel_frame,
            // Channel clients are nodes carrying many clients' traffic: give
            // them more room than a single websocket client.
            outbound_queue_bytes: 64 << 20,
            secret: None,
            history: None,
        }
    }
}

/// A running channel server. Stop it with [`ChannelServer::stop`].
pub struct ChannelServer {
    /// Where it listens.
    local_addr: SocketAddr,
    /// Shared with the connection tasks (subscriber counts).
    hub: Arc<Hub>,
    /// Tells every task to end.
    shutdown: CancellationToken,
    /// Observes every task's end.
    tasks: TaskTracker,
}

/// channel name → subscribers; behind a plain mutex that is never held
/// across `.await` (publishing only queues frames).
#[derive(Default)]
struct Hub {
    channels: Mutex<HashMap<String, HashMap<u64, Arc<Subscriber>>>>,
    next_id: AtomicU64,
    /// Subscribers closed for being too slow, among others.
    counters: Arc<NodeCounters>,
    /// The cluster's group history, when configured (`channel/history.rs`).
    history: Option<Arc<crate::history::History>>,
}

struct Subscriber {
    /// Encoded event frames for this connection's writer.
    outbox: Outbox,
}

impl ChannelServer {
    /// Binds `addr` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Bind`] when the address cannot be bound.
    pub async fn bind(addr: &str, config: ChannelServerConfig) -> crate::Result<ChannelServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| crate::Error::bind(addr, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| crate::Error::bind(addr, e))?;
        if !local_addr.ip().is_loopback() && config.secret.is_none() {
            return Err(crate::Error::Config(format!(
                "a channel server listening on {local_addr} (not loopback) needs a secret"
            )));
        }
        let mut hub = Hub::default();
        hub.history = super::history::new_history(config.history, &hub.counters);
        let server = ChannelServer {
            local_addr,
            hub: Arc::new(hub),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        if let Some(history) = server.hub.history.clone() {
            server
                .tasks
                .spawn(expire_history(history, server.shutdown.clone()));
        }
        server.tasks.spawn(accept_loop(
            listener,
            server.hub.clone(),
            config,
            server.shutdown.clone(),
            server.tasks.clone(),
        ));
        Ok(server)
    }

    /// The address it listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of connections subscribed to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.hub
            .channels
            .lock()
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// Closes every connection and returns once every task has ended.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    hub: Arc<Hub>,
    config: ChannelServerConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    while let Some((stream, peer)) = next_connection(&listener, &shutdown).await {
        let _ = stream.set_nodelay(true);
        tasks.spawn(serve_client(
            stream,
            peer,
            hub.clone(),
            config.clone(),
            shutdown.child_token(),
        ));
    }
}

/// Serves one channel client until it leaves, breaks the protocol, falls too
/// far behind, or the server stops.
async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    hub: Arc<Hub>,
    config: ChannelServerConfig,
    terminate: CancellationToken,
) {
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (read, write) = stream.into_split();
    let mut frames = FramedRead::new(read, FrameDecoder::new(config.max_frame));
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let (outbox, mut outbox_rx) = Outbox::new(
        config.outbound_queue_bytes,
        SlowConsumerPolicy::Close,
        hub.counters.clone(),
        terminate.clone(),
    );
    let me = Arc::new(Subscriber { outbox });
    let mut subscribed = HashSet::new();
    let mut authenticated = config.secret.is_none();
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = terminate.cancelled() => break,
            _ = outbox_rx.recv_batch(&mut batch, 256) => {
                let written: usize = batch.iter().map(Outbound::bytes).sum();
                let write_all = async {
                    for item in batch.drain(..) {
                        for frame in item.frames() {
                            writer.write_all(frame).await?;
                        }
                    }
                    writer.flush().await
                };
                let ok = tokio::select! {
                    result = write_all => result.is_ok(),
                    _ = terminate.cancelled() => false,
                };
                me.outbox.written(written);
                if !ok {
                    break;
                }
            }
            frame = frames.next() => {
                let Some(Ok(body)) = frame else { break };
                if !authenticated {
                    // The first frame must prove the secret; anything else
                    // is refused, with the reason, before it can do anything.
                    let refusal = match (parse_request(&body), &config.secret) {
                        (Ok(Request::Auth(given)), Some(secret)) if same_secret(&given, secret) => {
                            authenticated = true;
                            let _ = me.outbox.push(auth_reply_frame(&AuthReply::Accepted));
                            continue;
                        }
                        (Ok(Request::Auth(_)), _) => "wrong secret",
                        _ => "this channel server requires a secret",
                    };
                    tracing::warn!(%peer, reason = refusal, "refused a channel client");
                    let frame = auth_reply_frame(&AuthReply::Refused(refusal.into()));
                    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
                        writer.write_all(&frame).await?;
                        writer.flush().await
                    })
                    .await;
                    break;
                }
                if handle_request(&hub, id, &me, &mut subscribed, &body, config.max_frame).is_err() {
                    break;
                }
            }
        }
    }
    hub.remove(id, &subscribed);
}

/// Applies one request. An error means the client does not speak the
/// protocol and must be disconnected.
fn handle_request(
    hub: &Hub,
    id: u64,
    me: &Arc<Subscriber>,
    subscribed: &mut HashSet<String>,
    body: &[u8],
    max_frame: usize,
) -> Result<(), String> {
    let request = match parse_request(body) {
        Ok(request) => request,
        // Group history's requests (channel/history.rs), unknown to the
        // seed's dialect: only bodies that are not one of its requests get
        // here.
        Err(why) => {
            let publish = |channel: &str, data: &serde_json::value::RawValue| {
                let _ = hub.publish(channel, data, None);
            };
            return match super::history::handle(hub.history.as_deref(), body, max_frame, publish) {
                Some(Ok(reply)) => {
                    if let Some(reply) = reply {
                        let _ = me.outbox.push(reply);
                    }
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                None => Err(why),
            };
        }
    };
    match request {
        Request::Ping => {}
        // Already authenticated (or no secret needed): say so, so that a
        // client that sent a secret knows its link is up.
        Request::Auth(_) => {
            let _ = me.outbox.push(auth_reply_frame(&AuthReply::Accepted));
        }
        Request::Subscribe(channels) => {
            let mut map = hub.channels.lock();
            for channel in channels {
                map.entry(channel.clone())
                    .or_default()
                    .insert(id, me.clone());
                subscribed.insert(channel);
            }
        }
        Request::Unsubscribe(channels) => {
            let mut map = hub.channels.lock();
            for channel in channels {
                if subscribed.remove(&channel) {
                    remove_subscriber(&mut map, &channel, id);
                }
            }
        }
        Request::Publish {
            channels,
            data,
            exclude_self,
        } => {
            let skip = exclude_self.then_some(id);
            for channel in channels {
                hub.publish(&channel, data, skip)?;
            }
        }
    }
    Ok(())
}

/// Drops quiet channels' history now and then.
async fn expire_history(history: Arc<crate::history::History>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(history.expiry_period());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => history.expire(),
        }
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

impl Hub {
    /// Queues one event frame, encoded once, for every subscriber of
    /// `channel` but `skip` (a node publishing to the others).
    fn publish(
        &self,
        channel: &str,
        data: &serde_json::value::RawValue,
        skip: Option<u64>,
    ) -> Result<(), String> {
        let anyone_else = |map: &HashMap<String, HashMap<u64, Arc<Subscriber>>>| {
            map.get(channel)
                .is_some_and(|subs| subs.keys().any(|id| Some(*id) != skip))
        };
        if !anyone_else(&self.channels.lock()) {
            return Ok(());
        }
        let frame = event_frame(channel, data).map_err(|e| e.to_string())?;
        let map = self.channels.lock();
        if let Some(subscribers) = map.get(channel) {
            for (id, subscriber) in subscribers {
                // A subscriber that is too slow is disconnected by its own
                // queue; the others still get the event.
                if Some(*id) != skip {
                    let _ = subscriber.outbox.push(frame.clone());
                }
            }
        }
        Ok(())
    }

    fn remove(&self, id: u64, subscribed: &HashSet<String>) {
        let mut map = self.channels.lock();
        for channel in subscribed {
            remove_subscriber(&mut map, channel, id);
        }
    }
}

/// Removes one subscriber and frees a channel left with none.
fn remove_subscriber(
    map: &mut HashMap<String, HashMap<u64, Arc<Subscriber>>>,
    channel: &str,
    id: u64,
) {
    if let Some(subscribers) = map.get_mut(channel) {
        subscribers.remove(&id);
        if subscribers.is_empty() {
            map.remove(channel);
        }
    }
}
