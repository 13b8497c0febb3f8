//! The channel client: what a node (or a host, like the seed's
//! `Channel\Client`) uses to publish to and hear from a channel server.
//!
//! It keeps itself connected: when the server goes away it reconnects with
//! capped exponential backoff and jitter, subscribes again to every channel it
//! had, and sends the publishes made meanwhile from a buffer bounded in bytes
//! (what does not fit is dropped and counted).

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::FrameDecoder;
use super::message::{ChannelEvent, auth_frame, parse_event, publish_frame, subscription_frame};

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
    /// The server's shared secret, sent first on every connection.
    pub secret: Option<String>,
}

impl Default for ChannelClientConfig {
    fn default() -> Self {
        ChannelClientConfig {
            max_frame: crate::Limits::default().max_channel_frame,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            offline_buffer_bytes: 1 << 20,
            secret: None,
        }
    }
}

enum ClientRequest {
    Subscribe(String),
    Unsubscribe(String),
    /// An encoded `publish` frame.
    Publish(Bytes),
}

/// ClientCounters a client keeps about itself.
#[derive(Debug, Default)]
struct ClientCounters {
    /// Times the connection was lost and made again.
    reconnects: AtomicU64,
    /// Publishes dropped because the offline buffer was full.
    dropped_publishes: AtomicU64,
}

/// A connection to a channel server that keeps itself up. Cheap to clone;
/// every method is synchronous and callable from any thread.
#[derive(Clone)]
pub struct ChannelClient {
    /// Requests for the connection task.
    commands: mpsc::UnboundedSender<ClientRequest>,
    /// Whether the connection is up now.
    connected: watch::Receiver<bool>,
    counters: Arc<ClientCounters>,
    /// Ends the connection task.
    shutdown: CancellationToken,
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
    ) -> (ChannelClient, mpsc::UnboundedReceiver<ChannelEvent>) {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(false);
        let counters = Arc::new(ClientCounters::default());
        let session = ClientLink {
            addr: addr.into(),
            config,
            commands: commands_rx,
            events: events_tx,
            connected: connected_tx,
            counters: counters.clone(),
            shutdown: shutdown.clone(),
            subscriptions: HashSet::new(),
            offline: VecDeque::new(),
            offline_bytes: 0,
        };
        tasks.spawn(session.run());
        let client = ChannelClient {
            commands,
            connected,
            counters,
            shutdown,
        };
        (client, events_rx)
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
        let frame = publish_frame(channel, data, exclude_self)
            .map_err(|e| crate::Error::Channel(e.to_string()))?;
        self.send(ClientRequest::Publish(frame))
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

    /// Publishes dropped because the server was away and the buffer full.
    pub fn dropped_publishes(&self) -> u64 {
        self.counters.dropped_publishes.load(Ordering::Relaxed)
    }

    /// Ends the connection; later calls return [`crate::Error::Stopped`].
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

/// The connection task's state, kept across reconnections.
struct ClientLink {
    addr: String,
    config: ChannelClientConfig,
    commands: mpsc::UnboundedReceiver<ClientRequest>,
    events: mpsc::UnboundedSender<ChannelEvent>,
    connected: watch::Sender<bool>,
    counters: Arc<ClientCounters>,
    shutdown: CancellationToken,
    /// Channels to (re)subscribe on every connection.
    subscriptions: HashSet<String>,
    /// Publishes made while disconnected, sent on reconnection.
    offline: VecDeque<Bytes>,
    offline_bytes: usize,
}

/// Why a connected session ended.
enum ClientLinkEnd {
    Shutdown,
    Lost,
}

impl ClientLink {
    async fn run(mut self) {
        let mut backoff = self.config.reconnect_min;
        let mut ever_connected = false;
        loop {
            let connect = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                connect = TcpStream::connect(&self.addr) => connect,
            };
            match connect {
                Ok(stream) => {
                    if ever_connected {
                        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    ever_connected = true;
                    backoff = self.config.reconnect_min;
                    let end = self.connected_session(stream).await;
                    self.connected.send_replace(false);
                    if let ClientLinkEnd::Shutdown = end {
                        return;
                    }
                }
                Err(_) => {
                    let wait = jitter(backoff);
                    backoff = (backoff * 2).min(self.config.reconnect_max);
                    if !self.wait_offline(wait).await {
                        return;
                    }
                }
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

    async fn connected_session(&mut self, stream: TcpStream) -> ClientLinkEnd {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut frames = FramedRead::new(read, FrameDecoder::new(self.config.max_frame));
        let mut writer = BufWriter::with_capacity(64 * 1024, write);
        if self.resume(&mut writer).await.is_err() {
            return ClientLinkEnd::Lost;
        }
        self.connected.send_replace(true);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return ClientLinkEnd::Shutdown,
                command = self.commands.recv() => {
                    let Some(command) = command else { return ClientLinkEnd::Shutdown };
                    if self.write_commands(command, &mut writer).await.is_err() {
                        return ClientLinkEnd::Lost;
                    }
                }
                frame = frames.next() => {
                    let Some(Ok(body)) = frame else { return ClientLinkEnd::Lost };
                    if let Some(event) = parse_event(&body) {
                        // The receiver may be gone while the owner stops.
                        let _ = self.events.send(event);
                    }
                }
            }
        }
    }

    /// After (re)connecting: subscribe to everything, send what was buffered.
    async fn resume(&mut self, writer: &mut BufWriter<OwnedWriteHalf>) -> std::io::Result<()> {
        if let Some(secret) = &self.config.secret {
            writer.write_all(&auth_frame(secret)?).await?;
        }
        if !self.subscriptions.is_empty() {
            let channels: Vec<&str> = self.subscriptions.iter().map(String::as_str).collect();
            writer
                .write_all(&subscription_frame(true, &channels)?)
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
        writer: &mut BufWriter<OwnedWriteHalf>,
    ) -> std::io::Result<()> {
        let mut next = Some(first);
        let mut budget = 256;
        while let Some(command) = next.take() {
            match command {
                ClientRequest::Subscribe(channel) => {
                    if self.subscriptions.insert(channel.clone()) {
                        writer
                            .write_all(&subscription_frame(true, &[&channel])?)
                            .await?;
                    }
                }
                ClientRequest::Unsubscribe(channel) => {
                    if self.subscriptions.remove(&channel) {
                        writer
                            .write_all(&subscription_frame(false, &[&channel])?)
                            .await?;
                    }
                }
                ClientRequest::Publish(frame) => writer.write_all(&frame).await?,
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
