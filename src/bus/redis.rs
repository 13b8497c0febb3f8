//! The Redis bus: nodes that share no channel server meet on a Redis
//! deployment, standalone (`redis://host:port`) or a Redis Cluster
//! (`redis+cluster://h1:p1,h2:p2,...`).
//!
//! Each group has its own Redis channel, `<prefix><group id>` (prefix
//! `groupcast:` unless the URL says `?prefix=...`). A node subscribes to a
//! group's channel only while it has local members in the group, following
//! the registry's `Interest` stream, so Redis never sends a node traffic it
//! cannot deliver. A group message is published once, as the same JSON
//! envelope the channel bus carries; the node id in it lets the sender ignore
//! its own echo (its local members were served directly), so every member
//! gets a message exactly once.
//!
//! On a cluster the channels are sharded (`SSUBSCRIBE` / `SPUBLISH`, Redis
//! 7 or later): a group's traffic stays on the shard that owns the channel's
//! slot instead of being broadcast over the whole cluster bus. With group
//! history on, a group's channel is `<prefix>{<group id>}` instead, the
//! slot of its history keys (`redis_history.rs`, which runs the history).
//!
//! Messages from other nodes leave the connection's push callback (which
//! Redis calls once per message) for a delivery task, which takes what has
//! arrived in one go: consecutive messages for a group reach its members as
//! one run, one queue push and one wake-up per member per run, as on the
//! channel bus. What waits for that task is bounded in bytes; past the
//! bound messages are dropped and counted (`bus_dropped_events`).
//!
//! # Outages
//!
//! Local delivery never waits for Redis. While the connection is down,
//! publications are **dropped and counted** (`Stats::bus_dropped_publishes`),
//! not buffered: a message replayed seconds late to a chat room or a live
//! dashboard is worse than a gap, and a buffer that must be bounded loses
//! messages anyway. Publications already queued when the connection breaks
//! are counted too. The bus reconnects with a backoff (50 ms doubling to
//! 1 s) and resubscribes every group that has members by then.
//!
//! On a cluster, one unreachable master only affects the groups whose slots
//! it serves: publications to them fail and are counted, the others flow; a
//! lost node connection makes the bus resubscribe every group (idempotent on
//! the nodes that stayed up) until each subscription is confirmed again,
//! then again once a second for a few seconds (the client may replace the
//! connection a subscription was made on while the master rejoins). The
//! crate follows MOVED/ASK redirections and refreshes the slot map; a shard
//! channel that Redis unsubscribes (slot migrated away) is subscribed again
//! on its new owner.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::envelope::Envelope;
use super::positions::{ClusterPositions, HistoryRequests, PositionRequest, STALE_REQUEST};
use super::redis_history::{HistoryLink, Names, RedisHistory};
use super::remote::Remote;
use crate::config::{Deployment, RedisTarget};
use crate::queue::ByteBudget;
use crate::registry::Interest;

#[path = "redis_inbox.rs"]
mod inbox;
use inbox::{INBOX_BYTES, Inbox, deliver_runs};
#[path = "redis_link.rs"]
mod link;
use link::{RedisLink, connect};

/// Publications waiting for the connection, in count and in bytes. Bounded
/// so that a Redis that cannot keep up costs messages, counted, rather than
/// memory.
const PUBLISH_QUEUE: usize = 16 * 1024;
const PUBLISH_QUEUE_BYTES: usize = 8 << 20;
/// Most publications sent in one pipeline (one write, one round trip).
const PUBLISH_BATCH: usize = 512;
/// Most channels named in one SUBSCRIBE / UNSUBSCRIBE.
const SUBSCRIBE_CHUNK: usize = 1024;
/// Most sharded (un)subscriptions in flight at once on a cluster.
const CLUSTER_CONCURRENCY: usize = 256;
/// First wait before reconnecting, doubled on each failure...
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// ...up to this, so a Redis that comes back is found within a second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often an idle connection is checked with a PING, to notice a
/// half-open connection (a peer that vanished without closing).
const HEALTH_CHECK: Duration = Duration::from_secs(1);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a command may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How soon a cluster retries subscriptions that failed (a master down).
const RESYNC_RETRY: Duration = Duration::from_millis(200);
/// Full resubscriptions made after a cluster node's connection was lost,
/// one per [`HEALTH_CHECK`] once the bus is in sync again. The client
/// replaces node connections by itself while a restarted master rejoins
/// (its slot refresh), and a subscription made on a connection it then
/// drops is gone without a word: without these, about one restart in six
/// left a node unsubscribed from that master's groups for good
/// (`tests/redis.rs`, `cluster_sharded_pubsub_...`).
const RECHECKS: u32 = 5;

/// One group message on its way to Redis: the channel and the encoded
/// envelope.
struct Publication {
    channel: String,
    payload: Vec<u8>,
}

impl Publication {
    /// What it weighs against [`PUBLISH_QUEUE_BYTES`].
    fn bytes(&self) -> usize {
        self.channel.len() + self.payload.len()
    }
}

/// What the node keeps of its Redis bus: the way to publish, and the state
/// the handle reports. Cheap to share; the connection lives in the bus task.
pub(crate) struct RedisBus {
    /// This node's id, carried in each envelope.
    node_id: u64,
    /// Names a group's channel (and history keys).
    names: Names,
    /// To the bus task, which owns the connection.
    queue: mpsc::Sender<Publication>,
    /// Whether the bus can reach Redis now; also lets callers wait for it.
    connected: watch::Receiver<bool>,
    /// Standalone: publications are dropped without a try while the
    /// connection is down. A cluster tries each (other shards may be up).
    gate_on_connected: bool,
    /// Bytes of publications in `queue`, against [`PUBLISH_QUEUE_BYTES`].
    pending: Arc<ByteBudget>,
    /// Counters shared with the bus task.
    counters: Arc<RedisCounters>,
    /// Group history kept in Redis (`redis_history.rs`), when on.
    positions: Option<Arc<ClusterPositions>>,
}

#[derive(Default)]
struct RedisCounters {
    /// Publications that did not reach Redis.
    dropped: AtomicU64,
    /// Connections re-established after a loss.
    reconnects: AtomicU64,
    /// Connections tried.
    connect_attempts: AtomicU64,
    /// Why Redis is unreachable, while it is.
    last_error: Mutex<Option<String>>,
    /// Other nodes' messages dropped: the delivery task was [`INBOX_BYTES`]
    /// behind.
    dropped_events: AtomicU64,
}

impl RedisBus {
    /// Starts the bus task on the current runtime (tracked by `tasks`, ended
    /// by `shutdown`). Returns at once: connecting happens in the background,
    /// and a node starts even while Redis is down.
    pub(crate) fn start(
        target: RedisTarget,
        remote: Remote,
        interest: mpsc::UnboundedReceiver<Interest>,
        history: Option<(RedisHistory, HistoryRequests)>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> RedisBus {
        let (queue, publications) = mpsc::channel(PUBLISH_QUEUE);
        let (connected_tx, connected) = watch::channel(false);
        let counters = Arc::new(RedisCounters::default());
        let pending = ByteBudget::new(PUBLISH_QUEUE_BYTES);
        let gate_on_connected = matches!(target.deployment, Deployment::Standalone(_));
        let node_id = remote.node_id;
        let positions = remote.positions.clone();
        let (history, requests) = history.unzip();
        let cluster = matches!(target.deployment, Deployment::Cluster(_));
        let names = Names::new(target.prefix, cluster && history.is_some());
        let remote = Arc::new(remote);
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let inbox_budget = ByteBudget::new(INBOX_BYTES);
        tasks.spawn(deliver_runs(
            remote,
            inbox_rx,
            inbox_budget.clone(),
            shutdown.clone(),
        ));
        let task = BusTask {
            names: names.clone(),
            inbox: Inbox {
                queue: inbox_tx,
                budget: inbox_budget,
                counters: counters.clone(),
            },
            pending: pending.clone(),
            interest,
            publications,
            connected: connected_tx,
            counters: counters.clone(),
            shutdown,
            wanted: HashSet::new(),
            subscribed: HashSet::new(),
            generation: 0,
            history,
            requests,
            positions: positions.clone(),
            deferred: Vec::new(),
        };
        tasks.spawn(task.run(target.deployment));
        RedisBus {
            node_id,
            names,
            queue,
            connected,
            gate_on_connected,
            pending,
            counters,
            positions,
        }
    }

    /// Group history kept in Redis, when on.
    pub(crate) fn positions(&self) -> Option<&ClusterPositions> {
        self.positions.as_deref()
    }

    /// Hands a group message to the other nodes, without waiting. Counted
    /// as dropped when Redis is unreachable or the queue is full.
    pub(crate) fn publish(&self, group: &str, message: &str) {
        if self.gate_on_connected && !self.is_connected() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let envelope = Envelope {
            group_id: group.into(),
            message: message.into(),
            node: self.node_id,
        };
        let Ok(payload) = serde_json::to_vec(&envelope) else {
            return;
        };
        let publication = Publication {
            channel: self.channel(group),
            payload,
        };
        let bytes = publication.bytes();
        if !self.pending.try_take(bytes) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.queue.try_send(publication) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.pending.give_back(bytes);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The node is stopping: nobody routes any more.
            Err(mpsc::error::TrySendError::Closed(_)) => self.pending.give_back(bytes),
        }
    }

    /// Connections to Redis tried.
    pub(crate) fn connect_attempts(&self) -> u64 {
        self.counters.connect_attempts.load(Ordering::Relaxed)
    }

    /// Why Redis is unreachable, while it is.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.counters.last_error.lock().clone()
    }

    /// Whether Redis is reachable and every group with members is
    /// subscribed.
    pub(crate) fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until [`RedisBus::is_connected`] (or the bus task ended).
    pub(crate) async fn wait_connected(&self) {
        let mut connected = self.connected.clone();
        let _ = connected.wait_for(|c| *c).await;
    }

    /// Publications that never reached Redis (outage, full queue, failed
    /// command).
    pub(crate) fn dropped_publishes(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Other nodes' messages dropped because this node had not delivered
    /// the earlier ones (its bound in bytes was reached).
    pub(crate) fn dropped_events(&self) -> u64 {
        self.counters.dropped_events.load(Ordering::Relaxed)
    }

    /// Times the connection was re-established after a loss (on a
    /// cluster: node connections lost, each followed by a resubscription).
    pub(crate) fn reconnects(&self) -> u64 {
        self.counters.reconnects.load(Ordering::Relaxed)
    }

    /// The Redis channel of `group`.
    pub(crate) fn channel(&self, group: &str) -> String {
        self.names.channel(group)
    }
}

/// What the connection's push callback tells the bus task.
enum Signal {
    /// The connection of this generation closed (standalone), or one of the
    /// cluster's node connections did.
    Lost { generation: u64 },
    /// Redis dropped a shard channel subscription by itself (its slot moved).
    ShardUnsubscribed { channel: String },
}

/// How a session with one connection ended.
enum RedisSessionEnd {
    Shutdown,
    Lost,
}

/// The bus task: owns the connection, follows interest, sends publications.
struct BusTask {
    names: Names,
    /// Where other nodes' messages go, to be delivered in runs.
    inbox: Inbox,
    /// Given back as publications leave the queue.
    pending: Arc<ByteBudget>,
    interest: mpsc::UnboundedReceiver<Interest>,
    publications: mpsc::Receiver<Publication>,
    connected: watch::Sender<bool>,
    counters: Arc<RedisCounters>,
    shutdown: CancellationToken,
    /// Channels of the groups with local members, as the registry said.
    wanted: HashSet<String>,
    /// Channels Redis confirmed on the current connection.
    subscribed: HashSet<String>,
    /// Tells a stale connection's signals from the current one's.
    generation: u64,
    /// Group history, when on (`redis_history.rs`).
    history: Option<RedisHistory>,
    /// Numbered publishes and history reads, run after the subscriptions
    /// asked before them.
    requests: Option<HistoryRequests>,
    /// Held members whose read must be run again.
    positions: Option<Arc<ClusterPositions>>,
    /// Members' reads waiting for their group's subscription (cluster).
    deferred: Vec<PositionRequest>,
}

impl BusTask {
    async fn run(mut self, deployment: Deployment) {
        let (signals_tx, mut signals) = mpsc::unbounded_channel();
        let mut backoff = BACKOFF_MIN;
        let mut ever_connected = false;
        // Whether the current outage was logged: once per outage.
        let mut outage_logged = false;
        loop {
            self.generation += 1;
            self.counters
                .connect_attempts
                .fetch_add(1, Ordering::Relaxed);
            let connecting = connect(
                &deployment,
                self.push_handler(signals_tx.clone(), self.generation),
            );
            let link = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                link = connecting => link,
            };
            match link {
                Ok(link) => {
                    if ever_connected {
                        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    ever_connected = true;
                    *self.counters.last_error.lock() = None;
                    tracing::info!("connected to Redis");
                    self.subscribed.clear();
                    let started = tokio::time::Instant::now();
                    if let RedisSessionEnd::Shutdown = self.session(link, &mut signals).await {
                        return;
                    }
                    self.connected.send_replace(false);
                    tracing::warn!("lost Redis; reconnecting");
                    outage_logged = true;
                    *self.counters.last_error.lock() = Some("the connection was lost".into());
                    // A connection that breaks at once (a SUBSCRIBE refused,
                    // a server closing on us) must not make a busy loop:
                    // only a session that lasted resets the backoff.
                    if started.elapsed() < BACKOFF_MAX {
                        if !self.wait_disconnected(backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    } else {
                        backoff = BACKOFF_MIN;
                    }
                }
                Err(error) => {
                    if !outage_logged {
                        tracing::warn!(%error, "Redis unreachable; retrying");
                        outage_logged = true;
                    }
                    *self.counters.last_error.lock() = Some(format!("cannot connect: {error}"));
                    if !self.wait_disconnected(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// The connection's push callback: delivers other nodes' messages to
    /// local members, and signals losses to the task.
    fn push_handler(
        &self,
        signals: mpsc::UnboundedSender<Signal>,
        generation: u64,
    ) -> impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static {
        let inbox = self.inbox.clone();
        move |push: PushInfo| {
            match push.kind {
                PushKind::Message | PushKind::SMessage => {
                    // `[channel, payload]`: the payload is the envelope.
                    if let Some(Value::BulkString(payload)) = push.data.into_iter().next_back() {
                        inbox.put(payload);
                    }
                }
                PushKind::Disconnection => {
                    let _ = signals.send(Signal::Lost { generation });
                }
                PushKind::SUnsubscribe => {
                    if let Some(Value::BulkString(channel)) = push.data.first() {
                        let channel = String::from_utf8_lossy(channel).into_owned();
                        let _ = signals.send(Signal::ShardUnsubscribed { channel });
                    }
                }
                _ => {}
            }
            Ok(())
        }
    }

    /// Sleeps `delay` while Redis is unreachable: interest changes are still
    /// followed, queued publications are counted as dropped. Returns `false`
    /// on shutdown.
    async fn wait_disconnected(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = &mut sleep => return true,
                change = self.interest.recv() => match change {
                    Some(change) => self.apply(change),
                    None => return false,
                },
                n = self.publications.recv_many(&mut batch, PUBLISH_BATCH) => {
                    self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    self.taken(&batch);
                    batch.clear();
                }
                Some(request) = super::channel::next_history_request(&mut self.requests) => {
                    if let Some(positions) = &self.positions {
                        positions.taken(&request);
                    }
                    // A read is asked again once Redis is back (held
                    // members' stale requests); a publish is lost, counted.
                    if super::redis_history::dropped(&request) {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Gives back the bytes of publications taken from the queue.
    fn taken(&self, batch: &[Publication]) {
        self.pending
            .give_back(batch.iter().map(Publication::bytes).sum());
    }

    /// Records an interest change in `wanted`.
    fn apply(&mut self, change: Interest) {
        match change {
            Interest::Subscribe(group) => {
                self.wanted.insert(self.names.channel(group.as_str()));
            }
            Interest::Unsubscribe(group) => {
                self.wanted.remove(&self.names.channel(group.as_str()));
            }
        }
    }

    /// Serves one connection until it is lost or the node stops.
    async fn session(
        &mut self,
        mut link: RedisLink,
        signals: &mut mpsc::UnboundedReceiver<Signal>,
    ) -> RedisSessionEnd {
        let cluster = matches!(link, RedisLink::Cluster(_));
        let mut in_sync = self.sync(&mut link).await;
        if !cluster && !in_sync {
            return RedisSessionEnd::Lost;
        }
        self.connected.send_replace(in_sync);
        let mut stale = tokio::time::interval(STALE_REQUEST);
        stale.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        let mut health = tokio::time::interval(HEALTH_CHECK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(RESYNC_RETRY);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Full resubscriptions still to make, one per health tick, once in
        // sync after a lost cluster node (see `RECHECKS`).
        let mut rechecks = 0;
        loop {
            let needs_sync = tokio::select! {
                _ = self.shutdown.cancelled() => return RedisSessionEnd::Shutdown,
                signal = signals.recv() => match signal {
                    Some(Signal::Lost { generation }) if cluster || generation == self.generation => {
                        if !cluster {
                            return RedisSessionEnd::Lost;
                        }
                        // Which node went is not said: subscribe everything
                        // again (a no-op on the nodes that stayed up). The
                        // client reconnects to it on the next command.
                        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                        self.subscribed.clear();
                        self.connected.send_replace(false);
                        rechecks = RECHECKS;
                        true
                    }
                    Some(Signal::ShardUnsubscribed { channel }) => {
                        self.subscribed.remove(&channel) && self.wanted.contains(&channel)
                    }
                    Some(Signal::Lost { .. }) => false,
                    None => return RedisSessionEnd::Shutdown,
                },
                change = self.interest.recv() => match change {
                    Some(change) => {
                        self.apply(change);
                        // Take every change already queued: one sync for a
                        // burst of joins.
                        while let Ok(change) = self.interest.try_recv() {
                            self.apply(change);
                        }
                        true
                    }
                    None => return RedisSessionEnd::Shutdown,
                },
                n = self.publications.recv_many(&mut batch, PUBLISH_BATCH) => {
                    if n == 0 {
                        return RedisSessionEnd::Shutdown;
                    }
                    self.taken(&batch);
                    let failed = link.publish(&batch).await;
                    batch.clear();
                    if failed > 0 {
                        self.counters.dropped.fetch_add(failed as u64, Ordering::Relaxed);
                        if !cluster {
                            return RedisSessionEnd::Lost;
                        }
                    }
                    false
                }
                _ = health.tick() => {
                    if !cluster && link.ping().await.is_err() {
                        return RedisSessionEnd::Lost;
                    }
                    if cluster && in_sync && rechecks > 0 {
                        rechecks -= 1;
                        // Subscribe every wanted channel again (a no-op on
                        // a connection that holds it); unwanted ones stay
                        // listed, so the sync still unsubscribes them.
                        let wanted = &self.wanted;
                        self.subscribed.retain(|channel| !wanted.contains(channel));
                        true
                    } else {
                        false
                    }
                }
                _ = resync.tick(), if !in_sync => true,
                Some(request) = super::channel::next_history_request(&mut self.requests) => {
                    let mut requests = vec![request];
                    while requests.len() < PUBLISH_BATCH
                        && let Some(Ok(request)) = self.requests.as_mut().map(|r| r.try_recv())
                    {
                        requests.push(request);
                    }
                    if let Some(positions) = &self.positions {
                        requests.iter().for_each(|r| positions.taken(r));
                    }
                    // After the subscriptions asked before them: a joining
                    // member's read, a sender's own message coming back.
                    let mut changed = false;
                    while let Ok(change) = self.interest.try_recv() {
                        self.apply(change);
                        changed = true;
                    }
                    if changed {
                        in_sync = self.sync(&mut link).await;
                        self.connected.send_replace(in_sync);
                    }
                    if !(in_sync || cluster) || !self.run_history(&mut link, requests).await {
                        return RedisSessionEnd::Lost;
                    }
                    false
                }
                _ = stale.tick(), if self.positions.is_some() => {
                    // Those still held are among the stale ones when due:
                    // what waits stays bounded while a master is down.
                    self.deferred.clear();
                    let again = self
                        .positions
                        .as_ref()
                        .map(|p| p.stale_requests(STALE_REQUEST))
                        .unwrap_or_default();
                    if !again.is_empty() && !self.run_history(&mut link, again).await {
                        return RedisSessionEnd::Lost;
                    }
                    false
                }
            };
            if needs_sync {
                in_sync = self.sync(&mut link).await;
                if !cluster && !in_sync {
                    return RedisSessionEnd::Lost;
                }
                self.connected.send_replace(in_sync);
                let deferred = std::mem::take(&mut self.deferred);
                if !deferred.is_empty() {
                    self.run_history(&mut link, deferred).await;
                }
            }
        }
    }

    /// Runs numbered publishes and history reads; the replies go to the
    /// delivery task behind the messages that arrived before them. Returns
    /// `false` when the (standalone) connection failed.
    async fn run_history(&mut self, link: &mut RedisLink, requests: Vec<PositionRequest>) -> bool {
        let Some(history) = &self.history else {
            return true;
        };
        let subscribed = |channel: &str| self.subscribed.contains(channel);
        let link = match link {
            RedisLink::Standalone(conn) => HistoryLink::Standalone(conn),
            RedisLink::Cluster(conn) => HistoryLink::Cluster(conn, &subscribed),
        };
        let outcome = history.run(link, &self.names, requests).await;
        self.deferred.extend(outcome.deferred);
        for reply in outcome.replies {
            self.inbox.put_reply(reply);
        }
        self.counters
            .dropped
            .fetch_add(outcome.failed as u64, Ordering::Relaxed);
        !outcome.lost
    }

    /// Subscribes what is wanted and not subscribed, unsubscribes the rest.
    /// Returns whether Redis confirmed all of it.
    async fn sync(&mut self, link: &mut RedisLink) -> bool {
        let subscribe: Vec<String> = self.wanted.difference(&self.subscribed).cloned().collect();
        let unsubscribe: Vec<String> = self.subscribed.difference(&self.wanted).cloned().collect();
        match link {
            RedisLink::Standalone(conn) => {
                for chunk in unsubscribe.chunks(SUBSCRIBE_CHUNK) {
                    if conn.unsubscribe(chunk).await.is_err() {
                        return false;
                    }
                    for channel in chunk {
                        self.subscribed.remove(channel);
                    }
                }
                for chunk in subscribe.chunks(SUBSCRIBE_CHUNK) {
                    if conn.subscribe(chunk).await.is_err() {
                        return false;
                    }
                    self.subscribed.extend(chunk.iter().cloned());
                }
                true
            }
            RedisLink::Cluster(conn) => {
                // A sharded (un)subscription names channels of one slot
                // only: one command per channel, many in flight.
                let unsubscribed: Vec<_> = futures_util::stream::iter(unsubscribe)
                    .map(|channel| {
                        let mut conn = conn.clone();
                        async move { (conn.sunsubscribe(&channel).await, channel) }
                    })
                    .buffer_unordered(CLUSTER_CONCURRENCY)
                    .collect()
                    .await;
                for (_, channel) in unsubscribed {
                    // Even when the command failed (its node is down), the
                    // subscription is gone with that node's connection.
                    self.subscribed.remove(&channel);
                }
                let subscribed: Vec<_> = futures_util::stream::iter(subscribe)
                    .map(|channel| {
                        let mut conn = conn.clone();
                        async move { (conn.ssubscribe(&channel).await, channel) }
                    })
                    .buffer_unordered(CLUSTER_CONCURRENCY)
                    .collect()
                    .await;
                let mut all = true;
                for (result, channel) in subscribed {
                    match result {
                        // Interest may have changed while this was in
                        // flight; the next sync settles it.
                        Ok(()) => {
                            self.subscribed.insert(channel);
                        }
                        Err(_) => all = false,
                    }
                }
                all && self.subscribed == self.wanted
            }
        }
    }
}
