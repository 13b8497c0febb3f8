//! The channel server: the seed's pub/sub hub. Clients subscribe to named
//! channels and publish data to them; every publish reaches every subscriber
//! of the channel, the publisher included (Workerman processes rely on that).
//!
//! It speaks both body encodings, per connection (`dialect.rs`): groupcast's
//! JSON and the PHP `serialize()` of walkor/channel, so the seed's PHP
//! `Channel\Client` works against it unchanged, including `publishLoop` and
//! the work queues (`queues.rs`). A body that breaks the protocol closes that
//! connection alone, and is counted (`channel_refused`).
//!
//! With a secret, a client's first frame must be `auth` with it: in JSON the
//! server answers `auth_ok`; in PHP (an array with `type` `auth` and
//! `secret`) it answers nothing, since the PHP protocol has no replies. The
//! stock PHP client sends no `auth`, so it is refused (closed, counted) by a
//! server with a secret: serve it from a server without one, on loopback or
//! a trusted network (see docs/workerman.md).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::FrameDecoder;
use super::dialect::{ConnectionDialect, Data, Delivery, Dialect, EventFrames};
use super::message::{AuthReply, Request, auth_reply_frame};
use super::queues::{Consumer, QueueLosses, Queues};
use crate::accept::next_connection;
use crate::config::SlowConsumerPolicy;
use crate::queue::{Outbound, Outbox};
use crate::stats::{NodeCounters, Stats};
use crate::tls::ServerTls;

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
    /// Speak TLS with this PEM certificate chain (leaf first), so the
    /// secret and the traffic never cross the network in clear. Needs
    /// `tls_key`.
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1 PEM).
    pub tls_key: Option<std::path::PathBuf>,
    /// Most bytes of work-queue items (`enqueue`) kept for watchers that have
    /// not reserved them yet, across every queue; past it an item is dropped
    /// and counted (`channel_queue_dropped`).
    pub queue_bytes: usize,
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
            tls_cert: None,
            tls_key: None,
            queue_bytes: 64 << 20,
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
    /// Its TLS, when it speaks TLS; reloadable.
    tls: Option<Arc<ServerTls>>,
}

/// channel name → subscribers; behind a plain mutex that is never held
/// across `.await` (publishing only queues frames). Lock order: `channels`,
/// then `rotation`; `queues` alone.
struct Hub {
    channels: Mutex<HashMap<String, HashMap<u64, Arc<Subscriber>>>>,
    next_id: AtomicU64,
    /// Subscribers closed for being too slow, among others.
    counters: Arc<NodeCounters>,
    /// The cluster's group history, when configured (`channel/history.rs`).
    history: Option<Arc<crate::history::History>>,
    /// `publishLoop`: the subscriber each channel served last.
    rotation: Mutex<HashMap<String, u64>>,
    /// The work queues (`watch`, `enqueue`, `reserve`).
    queues: Mutex<Queues<Subscriber>>,
}

impl Hub {
    fn new(config: &ChannelServerConfig) -> Hub {
        Hub {
            channels: Mutex::default(),
            next_id: AtomicU64::default(),
            counters: Arc::default(),
            rotation: Mutex::default(),
            queues: Mutex::new(Queues::new(config.queue_bytes)),
            history: None,
        }
    }
}

struct Subscriber {
    /// Encoded event frames for this connection's writer.
    outbox: Outbox,
    /// Its dialect (`Dialect::to_u8`), known from its first request.
    dialect: AtomicU8,
}

impl Subscriber {
    fn dialect(&self) -> Dialect {
        Dialect::from_u8(self.dialect.load(Ordering::Relaxed)).unwrap_or(Dialect::Json)
    }
}

impl Consumer for Subscriber {
    fn dialect(&self) -> Dialect {
        Subscriber::dialect(self)
    }

    fn deliver(&self, frame: bytes::Bytes) -> bool {
        self.outbox.push(frame).is_ok()
    }
}

/// What one connection has asked for, released when it ends.
#[derive(Default)]
struct Session {
    /// Channels it subscribed to.
    subscribed: HashSet<String>,
    /// Queues it watches.
    watching: HashSet<String>,
    /// The encoding of its bodies.
    dialect: ConnectionDialect,
}

impl ChannelServer {
    /// Binds `addr` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Bind`] when the address cannot be bound.
    pub async fn bind(addr: &str, config: ChannelServerConfig) -> crate::Result<ChannelServer> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(ServerTls::load(cert, key)?)),
            (None, None) => None,
            _ => {
                return Err(crate::Error::Config(
                    "the channel server's tls_cert and tls_key go together: set both, or neither"
                        .into(),
                ));
            }
        };
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
        let mut hub = Hub::new(&config);
        hub.history = super::history::new_history(config.history, &hub.counters);
        let server = ChannelServer {
            local_addr,
            hub: Arc::new(hub),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            tls,
        };
        if let Some(history) = server.hub.history.clone() {
            server
                .tasks
                .spawn(expire_history(history, server.shutdown.clone()));
        }
        server.tasks.spawn(accept_loop(
            listener,
            server.tls.clone(),
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

    /// Reads its TLS certificate and key files again: new connections use
    /// what they hold now, open ones keep their sessions.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Config`] when it speaks no TLS, or naming the file
    /// that cannot be used (the certificate in use then stays).
    pub fn reload_tls(&self) -> crate::Result<()> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Err(crate::Error::Config(
                "this channel server speaks no TLS (start it with tls_cert and tls_key)".into(),
            )),
        }
    }

    /// Its TLS, for a node that reloads it with its own.
    pub(crate) fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
    }

    /// The server's counters: `slow_consumer_closes` (subscribers closed
    /// for being too slow), `channel_refused`, `channel_queue_dropped`,
    /// `channel_undeliverable`, `tls_handshake_failures`; the rest are 0.
    pub fn stats(&self) -> Stats {
        Stats::read(&self.hub.counters)
    }

    /// The live counters, for a node that embeds this server.
    pub(crate) fn counters(&self) -> Arc<NodeCounters> {
        self.hub.counters.clone()
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
    tls: Option<Arc<ServerTls>>,
    hub: Arc<Hub>,
    config: ChannelServerConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    while let Some((stream, peer)) = next_connection(&listener, &shutdown).await {
        let _ = stream.set_nodelay(true);
        let (hub, config, terminate) = (hub.clone(), config.clone(), shutdown.child_token());
        match &tls {
            None => {
                let (read, write) = stream.into_split();
                tasks.spawn(serve_client(read, write, peer, hub, config, terminate));
            }
            Some(tls) => {
                let tls = tls.clone();
                tasks.spawn(async move {
                    let accepted = tokio::select! {
                        _ = terminate.cancelled() => return,
                        accepted = tokio::time::timeout(TLS_HANDSHAKE, tls.accept(stream)) => accepted,
                    };
                    match accepted {
                        Ok(Ok(socket)) => {
                            let (read, write) = tokio::io::split(socket);
                            serve_client(read, write, peer, hub, config, terminate).await;
                        }
                        Ok(Err(error)) => {
                            NodeCounters::add(&hub.counters.tls_handshake_failures, 1);
                            tracing::debug!(%peer, %error, "channel client's TLS handshake failed");
                        }
                        Err(_) => {
                            NodeCounters::add(&hub.counters.tls_handshake_failures, 1);
                            tracing::debug!(%peer, "channel client's TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}

/// How long a channel client has to complete its TLS handshake.
const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves one channel client until it leaves, breaks the protocol, falls too
/// far behind, or the server stops.
async fn serve_client<R, W>(
    read: R,
    write: W,
    peer: SocketAddr,
    hub: Arc<Hub>,
    config: ChannelServerConfig,
    terminate: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let mut frames = FramedRead::new(read, FrameDecoder::new(config.max_frame));
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let (outbox, mut outbox_rx) = Outbox::new(
        config.outbound_queue_bytes,
        SlowConsumerPolicy::Close,
        hub.counters.clone(),
        terminate.clone(),
    );
    let me = Arc::new(Subscriber {
        outbox,
        dialect: AtomicU8::new(0),
    });
    let mut session = Session::default();
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
                let request = match session.dialect.parse(&body) {
                    Ok(request) => request,
                    Err(mut reason) => {
                        // Group history's requests (channel/history.rs) are
                        // JSON bodies the seed's requests do not include.
                        if authenticated && session.dialect.get() == Some(Dialect::Json) {
                            let publish = |channel: &str, data: &serde_json::value::RawValue| {
                                hub.publish(channel, Data::Json(data), None);
                            };
                            match super::history::handle(hub.history.as_deref(), &body, config.max_frame, publish) {
                                Some(Ok(reply)) => {
                                    if let Some(reply) = reply {
                                        let _ = me.outbox.push(reply);
                                    }
                                    continue;
                                }
                                Some(Err(why)) => reason = why,
                                None => {}
                            }
                        }
                        NodeCounters::add(&hub.counters.channel_refused, 1);
                        tracing::warn!(%peer, %reason, "closed a channel client that broke the protocol");
                        break;
                    }
                };
                let dialect = session.dialect.get();
                if let Some(dialect) = dialect {
                    me.dialect.store(dialect.to_u8(), Ordering::Relaxed);
                }
                if !authenticated {
                    // The first frame must prove the secret; anything else
                    // is refused, with the reason, before it can do anything.
                    let refusal = match (request, &config.secret) {
                        (Request::Auth(given), Some(secret)) if same_secret(&given, secret) => {
                            authenticated = true;
                            // The PHP protocol has no replies.
                            if dialect != Some(Dialect::Php) {
                                let _ = me.outbox.push(auth_reply_frame(&AuthReply::Accepted));
                            }
                            continue;
                        }
                        (Request::Auth(_), _) => "wrong secret",
                        _ => "this channel server requires a secret",
                    };
                    NodeCounters::add(&hub.counters.channel_refused, 1);
                    tracing::warn!(%peer, reason = refusal, "refused a channel client");
                    if dialect != Some(Dialect::Php) {
                        let frame = auth_reply_frame(&AuthReply::Refused(refusal.into()));
                        let _ = tokio::time::timeout(REFUSAL_WRITE, async {
                            writer.write_all(&frame).await?;
                            writer.flush().await
                        })
                        .await;
                    }
                    break;
                }
                if let Err(reason) = handle_request(&hub, id, &me, &mut session, request) {
                    NodeCounters::add(&hub.counters.channel_refused, 1);
                    tracing::warn!(%peer, %reason, "closed a channel client");
                    break;
                }
            }
        }
    }
    hub.remove(id, &session);
}

/// Applies one request. An error means the client does not speak the
/// protocol and must be disconnected.
fn handle_request(
    hub: &Hub,
    id: u64,
    me: &Arc<Subscriber>,
    session: &mut Session,
    request: Request<'_>,
) -> Result<(), String> {
    match request {
        Request::Ping => {}
        // Already authenticated (or no secret needed): say so, so that a
        // client that sent a secret knows its link is up (the PHP protocol
        // has no replies).
        Request::Auth(_) => {
            if me.dialect() == Dialect::Json {
                let _ = me.outbox.push(auth_reply_frame(&AuthReply::Accepted));
            }
        }
        Request::Subscribe(channels) => {
            let mut map = hub.channels.lock();
            for channel in channels {
                map.entry(channel.clone())
                    .or_default()
                    .insert(id, me.clone());
                session.subscribed.insert(channel);
            }
        }
        Request::Unsubscribe(channels) => {
            let mut map = hub.channels.lock();
            for channel in channels {
                if session.subscribed.remove(&channel) {
                    hub.remove_subscriber(&mut map, &channel, id);
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
                hub.publish(&channel, data, skip);
            }
        }
        Request::PublishLoop { channels, data } => {
            for channel in channels {
                hub.publish_loop(&channel, data);
            }
        }
        Request::Watch(channels) => {
            let mut queues = hub.queues.lock();
            for channel in channels {
                queues.watch(&channel, id, me);
                session.watching.insert(channel);
            }
        }
        Request::Unwatch(channels) => {
            let mut queues = hub.queues.lock();
            for channel in channels {
                if session.watching.remove(&channel) {
                    queues.unwatch(&channel, id);
                }
            }
        }
        Request::Enqueue { channels, data } => {
            let mut losses = QueueLosses::default();
            let mut queues = hub.queues.lock();
            for channel in channels {
                queues.enqueue(&channel, data, &mut losses);
            }
            drop(queues);
            hub.count_losses(&losses);
        }
        Request::Reserve => {
            let mut losses = QueueLosses::default();
            hub.queues
                .lock()
                .reserve(&session.watching, id, &mut losses);
            hub.count_losses(&losses);
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
    /// Queues one event frame, encoded once per dialect, for every
    /// subscriber of `channel` but `skip` (a node publishing to the others).
    fn publish(&self, channel: &str, data: Data<'_>, skip: Option<u64>) {
        let mut frames = EventFrames::new(Delivery::Event, channel, data);
        let mut undeliverable = 0;
        let map = self.channels.lock();
        if let Some(subscribers) = map.get(channel) {
            for (id, subscriber) in subscribers {
                if Some(*id) == skip {
                    continue;
                }
                // A subscriber that is too slow is disconnected by its own
                // queue; the others still get the event.
                match frames.get(subscriber.dialect()) {
                    Some(frame) => {
                        let _ = subscriber.outbox.push(frame);
                    }
                    None => undeliverable += 1,
                }
            }
        }
        drop(map);
        NodeCounters::add(&self.counters.channel_undeliverable, undeliverable);
    }

    /// Queues one event frame for the next subscriber of `channel` in
    /// rotation (by connection id, so a newcomer takes its turn in order).
    fn publish_loop(&self, channel: &str, data: Data<'_>) {
        let map = self.channels.lock();
        let Some(subscribers) = map.get(channel) else {
            return;
        };
        let mut rotation = self.rotation.lock();
        let last = rotation.get(channel).copied();
        let after = subscribers
            .keys()
            .filter(|id| last.is_none_or(|last| **id > last))
            .min();
        let Some(id) = after.or_else(|| subscribers.keys().min()).copied() else {
            return;
        };
        rotation.insert(channel.to_owned(), id);
        drop(rotation);
        let subscriber = subscribers[&id].clone();
        drop(map);
        match EventFrames::new(Delivery::Event, channel, data).get(subscriber.dialect()) {
            Some(frame) => {
                let _ = subscriber.outbox.push(frame);
            }
            None => NodeCounters::add(&self.counters.channel_undeliverable, 1),
        }
    }

    fn count_losses(&self, losses: &QueueLosses) {
        NodeCounters::add(&self.counters.channel_queue_dropped, losses.dropped);
        NodeCounters::add(&self.counters.channel_undeliverable, losses.undeliverable);
    }

    /// Releases everything a connection held.
    fn remove(&self, id: u64, session: &Session) {
        let mut map = self.channels.lock();
        for channel in &session.subscribed {
            self.remove_subscriber(&mut map, channel, id);
        }
        drop(map);
        let mut queues = self.queues.lock();
        for channel in &session.watching {
            queues.unwatch(channel, id);
        }
    }

    /// Removes one subscriber and frees a channel left with none (and its
    /// place in the `publishLoop` rotation).
    fn remove_subscriber(
        &self,
        map: &mut HashMap<String, HashMap<u64, Arc<Subscriber>>>,
        channel: &str,
        id: u64,
    ) {
        if let Some(subscribers) = map.get_mut(channel) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                map.remove(channel);
                self.rotation.lock().remove(channel);
            }
        }
    }
}
