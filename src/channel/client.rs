//! The channel client: what a node (or a host, like the seed's
//! `Channel\Client`) uses to publish to and hear from a channel server.
//!
//! It keeps itself connected: when the server goes away it reconnects with
//! capped exponential backoff and jitter, subscribes again to every channel it
//! had, and sends the publishes made meanwhile from a buffer bounded in bytes
//! (what does not fit is dropped and counted).
//!
//! Nothing on this path grows without bound or blocks its caller: publishes
//! waiting for a slow or frozen server, and events received and not yet
//! taken, are each bounded in bytes; past a bound they are dropped and
//! counted (`bus_dropped_publishes`, `bus_dropped_events`). Subscription
//! changes are never dropped (routing depends on them); there is one per
//! group that gains its first or loses its last local member.
//!
//! The link counts as up only once the server accepted it: with a secret,
//! when the server answered the `auth` frame with `auth_ok`; without one,
//! once connected (a server that wants a secret answers the first frame with
//! `auth_failed` and closes). Only a session that lasted resets the backoff,
//! so a server that refuses this client is retried at the capped backoff,
//! not in a tight loop.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::FrameDecoder;
use super::dialect::{hello_frame, parse_event_any, publish_frame_in, subscription_frame_in};
use super::message::{AuthReply, ChannelEvent, parse_auth_reply};
use crate::config::ChannelProtocol;
use crate::queue::ByteBudget;
use crate::tls::{ClientTls, host_of};

/// How a channel client behaves when the server is away.
#[derive(Debug, Clone)]
pub struct ChannelClientConfig {
    /// Largest frame accepted from the server, header included.
    pub max_frame: usize,
    /// First wait before reconnecting.
    pub reconnect_min: Duration,
    /// Longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// Most bytes of publishes kept while disconnected; more are dropped.
    pub offline_buffer_bytes: usize,
    /// Most bytes of publishes waiting to be written while connected (a
    /// slow or frozen server); more are dropped.
    pub max_pending_bytes: usize,
    /// Most bytes of received events not yet taken by the owner; more are
    /// dropped.
    pub max_event_bytes: usize,
    /// The server's shared secret, sent first on every connection.
    pub secret: Option<String>,
    /// Speak TLS to the server, trusting the CA certificates in this PEM
    /// file: the server's certificate must chain to one of them and name
    /// the server. Nothing (the secret included) is sent before the
    /// handshake succeeds.
    pub tls_ca: Option<std::path::PathBuf>,
    /// The name the server's certificate is checked against; by default
    /// the host part of the address (a DNS name or an IP address).
    pub tls_server_name: Option<String>,
    /// The body encoding this client sends: groupcast's JSON, or the PHP
    /// `serialize()` of Workerman's walkor/channel (to join a PHP
    /// `Channel\Server`). Events are read in either.
    pub protocol: ChannelProtocol,
}

impl ChannelClientConfig {
    /// The TLS client this configuration asks for to reach `addr`.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Config`] naming the CA file or the server name.
    pub(crate) fn client_tls(&self, addr: &str) -> crate::Result<Option<ClientTls>> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_server_name.is_some() {
                return Err(crate::Error::Config(
                    "a TLS server name needs a CA file (tls_ca) to check the server against".into(),
                ));
            }
            return Ok(None);
        };
        let name = self.tls_server_name.as_deref().unwrap_or(host_of(addr));
        ClientTls::new(ca, name).map(Some)
    }
}

impl Default for ChannelClientConfig {
    fn default() -> Self {
        ChannelClientConfig {
            max_frame: crate::Limits::default().max_channel_frame,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            offline_buffer_bytes: 1 << 20,
            max_pending_bytes: 4 << 20,
            max_event_bytes: 8 << 20,
            secret: None,
            tls_ca: None,
            tls_server_name: None,
            protocol: ChannelProtocol::default(),
        }
    }
}

enum ClientRequest {
    Subscribe(String),
    Unsubscribe(String),
    /// An encoded `publish` frame.
    Publish(Bytes),
}

/// Counters a client keeps about itself, and the last failure, for stats
/// and health.
#[derive(Debug, Default)]
struct ClientCounters {
    /// Times the connection was lost and made again.
    reconnects: AtomicU64,
    /// Connections tried (each TCP connect).
    connect_attempts: AtomicU64,
    /// Publishes dropped: the offline buffer or the pending bound was full.
    dropped_publishes: AtomicU64,
    /// Events dropped because the owner had not taken the earlier ones.
    dropped_events: AtomicU64,
    /// Times the server refused this client's secret.
    auth_failures: AtomicU64,
    /// Why the link is down, while it is.
    last_error: Mutex<Option<String>>,
}

/// What a received event weighs against [`ChannelClientConfig::max_event_bytes`].
fn event_bytes(event: &ChannelEvent) -> usize {
    event.channel.len() + event.data.get().len()
}

/// The events of subscribed channels, as a client receives them; bounded in
/// bytes (see [`ChannelClientConfig::max_event_bytes`]).
pub struct ChannelEvents {
    received: mpsc::UnboundedReceiver<ChannelEvent>,
    budget: Arc<ByteBudget>,
}

impl ChannelEvents {
    /// Waits for at least one event and appends up to `max` to `batch`;
    /// returns how many, 0 once the client has stopped.
    pub async fn recv_many(&mut self, batch: &mut Vec<ChannelEvent>, max: usize) -> usize {
        let start = batch.len();
        let taken = self.received.recv_many(batch, max).await;
        let bytes: usize = batch[start..].iter().map(event_bytes).sum();
        self.budget.give_back(bytes);
        taken
    }
}

/// A connection to a channel server that keeps itself up. Cheap to clone;
/// every method is synchronous and callable from any thread.
#[derive(Clone)]
pub struct ChannelClient {
    /// Requests for the connection task.
    commands: mpsc::UnboundedSender<ClientRequest>,
    /// Bytes of publishes in `commands`, against `max_pending_bytes`.
    pending: Arc<ByteBudget>,
    /// Whether the connection is up now.
    connected: watch::Receiver<bool>,
    counters: Arc<ClientCounters>,
    /// Ends the connection task.
    shutdown: CancellationToken,
    /// The encoding of publishes.
    protocol: ChannelProtocol,
}

impl ChannelClient {
    /// Starts connecting to `addr` (`host:port`) on the current tokio runtime
    /// and returns at once; events of subscribed channels arrive on the
    /// returned receiver. The task is tracked by `tasks` and ends when
    /// `shutdown` is cancelled.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn connect(
        addr: impl Into<String>,
        config: ChannelClientConfig,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> (ChannelClient, ChannelEvents) {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(false);
        let counters = Arc::new(ClientCounters::default());
        let pending = ByteBudget::new(config.max_pending_bytes);
        let event_budget = ByteBudget::new(config.max_event_bytes);
        let addr = addr.into();
        let tls = config.client_tls(&addr).map_err(|e| e.to_string());
        let protocol = config.protocol;
        let link = ClientLink {
            addr,
            tls,
            config,
            commands: commands_rx,
            pending: pending.clone(),
            events: events_tx,
            event_budget: event_budget.clone(),
            connected: connected_tx,
            counters: counters.clone(),
            shutdown: shutdown.clone(),
            subscriptions: HashSet::new(),
            offline: VecDeque::new(),
            offline_bytes: 0,
        };
        tasks.spawn(link.run());
        let client = ChannelClient {
            commands,
            pending,
            connected,
            counters,
            shutdown,
            protocol,
        };
        let events = ChannelEvents {
            received: events_rx,
            budget: event_budget,
        };
        (client, events)
    }

    /// Subscribes to `channel` (now, and again after every reconnection).
    pub fn subscribe(&self, channel: &str) -> crate::Result<()> {
        self.send(ClientRequest::Subscribe(channel.to_owned()))
    }

    /// Stops receiving `channel`.
    pub fn unsubscribe(&self, channel: &str) -> crate::Result<()> {
        self.send(ClientRequest::Unsubscribe(channel.to_owned()))
    }

    /// Publishes `data` (any serializable value) on `channel`.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Channel`] when `data` cannot be encoded,
    /// [`crate::Error::Stopped`] when the client has been stopped.
    pub fn publish<D: Serialize + ?Sized>(&self, channel: &str, data: &D) -> crate::Result<()> {
        self.publish_with(channel, data, false)
    }

    /// Publishes `data` on `channel` to every subscriber but this client
    /// (nodes deliver to their own members directly). A channel server that
    /// does not know this extension echoes it anyway; nodes also ignore their
    /// own publications by node id.
    ///
    /// # Errors
    ///
    /// As [`ChannelClient::publish`].
    pub fn publish_to_others<D: Serialize + ?Sized>(
        &self,
        channel: &str,
        data: &D,
    ) -> crate::Result<()> {
        self.publish_with(channel, data, true)
    }

    fn publish_with<D: Serialize + ?Sized>(
        &self,
        channel: &str,
        data: &D,
        exclude_self: bool,
    ) -> crate::Result<()> {
        let frame = publish_frame_in(self.protocol, channel, data, exclude_self)
            .map_err(|e| crate::Error::Channel(e.to_string()))?;
        if self.shutdown.is_cancelled() {
            return Err(crate::Error::Stopped);
        }
        // A server that does not read must not grow this process: past the
        // bound the publish is dropped and counted, the caller never waits.
        if !self.pending.try_take(frame.len()) {
            self.counters
                .dropped_publishes
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let len = frame.len();
        self.send(ClientRequest::Publish(frame))
            .inspect_err(|_| self.pending.give_back(len))
    }

    /// Sends an encoded request of a groupcast extension (group history:
    /// `channel/history.rs`), in order with the others and under the same
    /// bound as publishes.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Stopped`] when the client has been stopped.
    pub(crate) fn send_frame(&self, frame: Bytes) -> crate::Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(crate::Error::Stopped);
        }
        if !self.pending.try_take(frame.len()) {
            self.counters
                .dropped_publishes
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let len = frame.len();
        self.send(ClientRequest::Publish(frame))
            .inspect_err(|_| self.pending.give_back(len))
    }

    fn send(&self, command: ClientRequest) -> crate::Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(crate::Error::Stopped);
        }
        self.commands
            .send(command)
            .map_err(|_| crate::Error::Stopped)
    }

    /// Whether the connection to the server is up now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until the connection is up; `false` if the client stopped first.
    pub async fn wait_connected(&self) -> bool {
        let mut connected = self.connected.clone();
        connected.wait_for(|up| *up).await.is_ok()
    }

    /// Times the connection was lost and made again.
    pub fn reconnects(&self) -> u64 {
        self.counters.reconnects.load(Ordering::Relaxed)
    }

    /// Publishes dropped: the server was away and the offline buffer
    /// full, or it did not read and the pending bound was reached.
    pub fn dropped_publishes(&self) -> u64 {
        self.counters.dropped_publishes.load(Ordering::Relaxed)
    }

    /// Events dropped because the owner had not taken the earlier ones.
    pub fn dropped_events(&self) -> u64 {
        self.counters.dropped_events.load(Ordering::Relaxed)
    }

    /// Connections tried (successful or not).
    pub fn connect_attempts(&self) -> u64 {
        self.counters.connect_attempts.load(Ordering::Relaxed)
    }

    /// Times the server refused this client's secret.
    pub fn auth_failures(&self) -> u64 {
        self.counters.auth_failures.load(Ordering::Relaxed)
    }

    /// Why the link is down, while it is (`None` when up or never tried).
    pub fn last_error(&self) -> Option<String> {
        self.counters.last_error.lock().clone()
    }

    /// Ends the connection; later calls return [`crate::Error::Stopped`].
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

/// How long a client with a secret waits for the server's answer to it.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection task's state, kept across reconnections.
struct ClientLink {
    addr: String,
    /// TLS to the server, when asked for; the error when its CA or name
    /// cannot be used (the link then never connects: nothing goes in
    /// clear that was meant to be encrypted).
    tls: Result<Option<ClientTls>, String>,
    config: ChannelClientConfig,
    commands: mpsc::UnboundedReceiver<ClientRequest>,
    /// Given back as publishes leave `commands`.
    pending: Arc<ByteBudget>,
    events: mpsc::UnboundedSender<ChannelEvent>,
    /// Taken as events are received, given back as the owner takes them.
    event_budget: Arc<ByteBudget>,
    connected: watch::Sender<bool>,
    counters: Arc<ClientCounters>,
    shutdown: CancellationToken,
    /// Channels to (re)subscribe on every connection.
    subscriptions: HashSet<String>,
    /// Publishes made while disconnected, sent on reconnection.
    offline: VecDeque<Bytes>,
    offline_bytes: usize,
}

/// Why a connection ended.
enum ClientLinkEnd {
    /// The client is stopping.
    Shutdown,
    /// The server went away or broke the protocol; `up` tells whether the
    /// link had been accepted.
    Lost { error: String, up: bool },
    /// The server refused this client's secret.
    Refused(String),
}

impl ClientLink {
    async fn run(mut self) {
        let mut backoff = self.config.reconnect_min;
        let mut ever_up = false;
        // Whether the current outage (or refusal streak) was logged.
        let mut outage_logged = false;
        let mut refusal_logged = false;
        if let Err(error) = &self.tls {
            tracing::error!(addr = %self.addr, %error, "cannot reach the channel server over TLS");
            *self.counters.last_error.lock() = Some(error.clone());
            self.shutdown.cancelled().await;
            return;
        }
        loop {
            self.counters
                .connect_attempts
                .fetch_add(1, Ordering::Relaxed);
            let connect = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                connect = TcpStream::connect(&self.addr) => connect,
            };
            let started = tokio::time::Instant::now();
            let end = match connect {
                Ok(stream) => self.connected_session(stream, &mut ever_up).await,
                Err(error) => ClientLinkEnd::Lost {
                    error: format!("cannot connect: {error}"),
                    up: false,
                },
            };
            self.connected.send_replace(false);
            match end {
                ClientLinkEnd::Shutdown => return,
                ClientLinkEnd::Lost { error, up } => {
                    if up {
                        tracing::warn!(addr = %self.addr, %error, "channel server lost; reconnecting");
                        outage_logged = true;
                    } else if !outage_logged {
                        tracing::warn!(addr = %self.addr, %error, "channel server unreachable; retrying");
                        outage_logged = true;
                    }
                    refusal_logged = false;
                    *self.counters.last_error.lock() = Some(error);
                }
                ClientLinkEnd::Refused(reason) => {
                    self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
                    if !refusal_logged {
                        tracing::warn!(
                            addr = %self.addr,
                            %reason,
                            "the channel server refused this client's secret (check the channel secret); retrying"
                        );
                        refusal_logged = true;
                    }
                    outage_logged = true;
                    *self.counters.last_error.lock() =
                        Some(format!("the channel server refused the secret: {reason}"));
                }
            }
            // A session that broke at once (a refusal, a server closing on
            // us) must not make a busy loop: only one that lasted resets the
            // backoff.
            if started.elapsed() >= self.config.reconnect_max {
                backoff = self.config.reconnect_min;
            }
            let wait = jitter(backoff);
            backoff = (backoff * 2).min(self.config.reconnect_max);
            if !self.wait_offline(wait).await {
                return;
            }
        }
    }

    /// Waits `duration` while applying commands; `false` on shutdown.
    async fn wait_offline(&mut self, duration: Duration) -> bool {
        let sleep = tokio::time::sleep(duration);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = &mut sleep => return true,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply_offline(command),
                    None => return false,
                },
            }
        }
    }

    fn apply_offline(&mut self, command: ClientRequest) {
        match command {
            ClientRequest::Subscribe(channel) => {
                self.subscriptions.insert(channel);
            }
            ClientRequest::Unsubscribe(channel) => {
                self.subscriptions.remove(&channel);
            }
            ClientRequest::Publish(frame) => {
                self.pending.give_back(frame.len());
                if self.offline_bytes + frame.len() <= self.config.offline_buffer_bytes {
                    self.offline_bytes += frame.len();
                    self.offline.push_back(frame);
                } else {
                    self.counters
                        .dropped_publishes
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Serves one connection until it ends. `ever_up` tells whether a link
    /// was ever accepted, so the reconnections can be counted.
    async fn connected_session(&mut self, stream: TcpStream, ever_up: &mut bool) -> ClientLinkEnd {
        let _ = stream.set_nodelay(true);
        let Ok(Some(tls)) = &self.tls else {
            let (read, write) = stream.into_split();
            return self.session(read, write, ever_up).await;
        };
        let handshake = tokio::select! {
            _ = self.shutdown.cancelled() => return ClientLinkEnd::Shutdown,
            handshake = tokio::time::timeout(AUTH_TIMEOUT, tls.connect(stream)) => handshake,
        };
        match handshake {
            Ok(Ok(socket)) => {
                let (read, write) = tokio::io::split(socket);
                self.session(read, write, ever_up).await
            }
            Ok(Err(error)) => ClientLinkEnd::Lost {
                error: format!("TLS handshake failed: {error}"),
                up: false,
            },
            Err(_) => ClientLinkEnd::Lost {
                error: "TLS handshake timed out".into(),
                up: false,
            },
        }
    }

    /// Serves one connection (plain or TLS, split in halves) until it ends.
    async fn session<R, W>(&mut self, read: R, write: W, ever_up: &mut bool) -> ClientLinkEnd
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut frames = FramedRead::new(read, FrameDecoder::new(self.config.max_frame));
        let mut writer = BufWriter::with_capacity(64 * 1024, write);
        let lost = |error: String| ClientLinkEnd::Lost { error, up: false };
        if let Err(error) = self.introduce(&mut writer).await {
            return lost(format!("cannot write: {error}"));
        }
        // The PHP protocol has no replies: a wrong secret is a close.
        if self.config.secret.is_some() && self.config.protocol == ChannelProtocol::Groupcast {
            let answer = tokio::select! {
                _ = self.shutdown.cancelled() => return ClientLinkEnd::Shutdown,
                answer = tokio::time::timeout(AUTH_TIMEOUT, frames.next()) => answer,
            };
            match answer {
                Ok(Some(Ok(body))) => match parse_auth_reply(&body) {
                    Some(AuthReply::Accepted) => {}
                    Some(AuthReply::Refused(reason)) => return ClientLinkEnd::Refused(reason),
                    None => return lost("the server did not answer the secret".into()),
                },
                Ok(Some(Err(error))) => return lost(format!("cannot read: {error}")),
                Ok(None) => return lost("the server closed the connection".into()),
                Err(_) => return lost("the server did not answer the secret in time".into()),
            }
        }
        if let Err(error) = self.resume(&mut writer).await {
            return lost(format!("cannot write: {error}"));
        }
        if *ever_up {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        *ever_up = true;
        *self.counters.last_error.lock() = None;
        tracing::info!(addr = %self.addr, "connected to the channel server");
        self.connected.send_replace(true);
        let lost = |error: String| ClientLinkEnd::Lost { error, up: true };
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return ClientLinkEnd::Shutdown,
                command = self.commands.recv() => {
                    let Some(command) = command else { return ClientLinkEnd::Shutdown };
                    if let Err(error) = self.write_commands(command, &mut writer).await {
                        return lost(format!("cannot write: {error}"));
                    }
                }
                frame = frames.next() => {
                    let body = match frame {
                        Some(Ok(body)) => body,
                        Some(Err(error)) => return lost(format!("cannot read: {error}")),
                        None => return lost("the server closed the connection".into()),
                    };
                    if let Some(event) = parse_event_any(&body) {
                        self.received(event);
                    } else if let Some(AuthReply::Refused(reason)) = parse_auth_reply(&body) {
                        // A server that wants a secret this client lacks.
                        return ClientLinkEnd::Refused(reason);
                    }
                }
            }
        }
    }

    /// Hands an event to the owner, or drops and counts it when the owner
    /// has not taken enough of the earlier ones.
    fn received(&self, event: ChannelEvent) {
        if !self.event_budget.try_take(event_bytes(&event)) {
            self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let bytes = event_bytes(&event);
        // The receiver may be gone while the owner stops.
        if self.events.send(event).is_err() {
            self.event_budget.give_back(bytes);
        }
    }

    /// The first frame: the secret, or a ping that a server wanting a secret
    /// answers with its refusal at once.
    async fn introduce(
        &self,
        writer: &mut BufWriter<impl AsyncWrite + Unpin>,
    ) -> std::io::Result<()> {
        let hello = hello_frame(self.config.protocol, self.config.secret.as_deref())?;
        writer.write_all(&hello).await?;
        writer.flush().await
    }

    /// Once accepted: subscribe to everything, send what was buffered.
    async fn resume(
        &mut self,
        writer: &mut BufWriter<impl AsyncWrite + Unpin>,
    ) -> std::io::Result<()> {
        if !self.subscriptions.is_empty() {
            let channels: Vec<&str> = self.subscriptions.iter().map(String::as_str).collect();
            writer
                .write_all(&subscription_frame_in(
                    self.config.protocol,
                    true,
                    &channels,
                )?)
                .await?;
        }
        while let Some(frame) = self.offline.pop_front() {
            self.offline_bytes -= frame.len();
            writer.write_all(&frame).await?;
        }
        writer.flush().await
    }

    /// Writes `first` and every command already queued behind it, then
    /// flushes once.
    async fn write_commands(
        &mut self,
        first: ClientRequest,
        writer: &mut BufWriter<impl AsyncWrite + Unpin>,
    ) -> std::io::Result<()> {
        let mut next = Some(first);
        let mut budget = 256;
        while let Some(command) = next.take() {
            match command {
                ClientRequest::Subscribe(channel) => {
                    if self.subscriptions.insert(channel.clone()) {
                        writer
                            .write_all(&subscription_frame_in(
                                self.config.protocol,
                                true,
                                &[&channel],
                            )?)
                            .await?;
                    }
                }
                ClientRequest::Unsubscribe(channel) => {
                    if self.subscriptions.remove(&channel) {
                        writer
                            .write_all(&subscription_frame_in(
                                self.config.protocol,
                                false,
                                &[&channel],
                            )?)
                            .await?;
                    }
                }
                ClientRequest::Publish(frame) => {
                    self.pending.give_back(frame.len());
                    writer.write_all(&frame).await?;
                }
            }
            budget -= 1;
            if budget > 0 {
                next = self.commands.try_recv().ok();
            }
        }
        writer.flush().await
    }
}

/// Spreads reconnections of many nodes over time: a wait between half and
/// all of `base`.
fn jitter(base: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
    base.mul_f64(fraction)
}
