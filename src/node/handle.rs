//! [`NodeHandle`]: the actions a host takes on a node, from any thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::state::NodeState;
use crate::bus::GROUP_CHANNEL_PREFIX;
use crate::channel::ChannelClient;
use crate::error::{Error, Result};
use crate::host::{HostEvents, Verdict};
use crate::ids::{ConnId, GroupId};
use crate::presence::wire::{Wire, to_hex};
use crate::registry::ConnectionEntry;
use crate::stats::{Health, Stats};

/// Longest body of a refusal ([`NodeHandle::refuse`]): a short reason,
/// not a page.
pub const MAX_REFUSAL_BODY: usize = 4096;

/// Actions on a node, callable from any thread (they never block on the
/// network: sends are queued for each connection's writer). Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    state: Arc<NodeState>,
}

impl NodeHandle {
    pub(crate) fn new(state: Arc<NodeState>) -> Self {
        NodeHandle { state }
    }

    pub(crate) fn state(&self) -> &NodeState {
        &self.state
    }

    /// `Err(Error::Stopped)` once the node has stopped: every action
    /// fails the same way afterwards, from every host.
    pub(super) fn running(&self) -> Result<()> {
        match self.state.stopped.load(Ordering::Acquire) {
            true => Err(Error::Stopped),
            false => Ok(()),
        }
    }

    pub(super) fn connection(&self, conn: ConnId) -> Result<Arc<ConnectionEntry>> {
        self.running()?;
        self.state
            .registry
            .connection(conn)
            .ok_or(Error::UnknownConnection(conn))
    }

    pub(super) fn group_id(&self, group: &str) -> Result<GroupId> {
        self.running()?;
        GroupId::new(group, self.state.limits.max_group_id_len).map_err(Error::InvalidGroup)
    }

    /// Sends a text message to one connection. Like a group message, one
    /// that does not fit in a slow client's queue closes it (1008) or, with
    /// the drop policy, is dropped and counted.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn send_text(&self, conn: ConnId, text: &str) -> Result<()> {
        if let Some(tag) = self.remote_tag(conn)? {
            return self.forward(
                tag,
                Wire::Send {
                    c: conn,
                    t: text.to_owned(),
                },
            );
        }
        self.send(conn, crate::frame::text(text), text.len())
    }

    /// Sends a binary message to one connection.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn send_binary(&self, conn: ConnId, data: &[u8]) -> Result<()> {
        if let Some(tag) = self.remote_tag(conn)? {
            let h = to_hex(data);
            return self.forward(tag, Wire::SendBinary { c: conn, h });
        }
        self.send(conn, crate::frame::binary(data), data.len())
    }

    fn send(&self, conn: ConnId, frame: Bytes, len: usize) -> Result<()> {
        let connection = self.connection(conn)?;
        match connection.outbox.push(frame) {
            Ok(()) => {
                self.state.count_out(1, len);
                Ok(())
            }
            // The drop policy dropped it, as it drops a group message that
            // does not fit: counted in `dropped_messages`, and the
            // connection, still open, is no unknown one.
            Err(_) if connection.outbox.is_open() => Ok(()),
            Err(_) => Err(Error::UnknownConnection(conn)),
        }
    }

    /// Closes a connection with `code` and `reason` after what is already
    /// queued for it has been sent. A connection held for approval is
    /// refused instead, with HTTP 403 (it has no websocket to close).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCloseCode`] for a code a server may not send,
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn close(&self, conn: ConnId, code: u16, reason: &str) -> Result<()> {
        if !close_code_allowed(code) {
            return Err(Error::InvalidCloseCode(code));
        }
        self.running()?;
        if self.decide(conn, Verdict::refuse()).is_ok() {
            return Ok(());
        }
        // A close frame's reason is limited to 123 bytes: cut on a char
        // boundary rather than fail.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        if let Some(tag) = self.remote_tag(conn)? {
            let r = reason[..end].to_owned();
            return self.forward(tag, Wire::Close { c: conn, code, r });
        }
        self.connection(conn)?
            .outbox
            .push_close(code, &reason[..end])
            .map_err(|_| Error::UnknownConnection(conn))
    }

    /// Puts a connection in a group. Returns `false` if it already was.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`], [`Error::InvalidGroup`], or
    /// [`Error::Join`] when the connection is in too many groups.
    pub fn join(&self, conn: ConnId, group: &str) -> Result<bool> {
        let group = self.group_id(group)?;
        if let Some(tag) = self.remote_tag(conn)? {
            let g = group.as_str().to_owned();
            return self.forward(tag, Wire::Join { c: conn, g }).map(|()| true);
        }
        let conn = self.connection(conn)?;
        Ok(self.state.registry.join(&conn, &group)?)
    }

    /// Takes a connection out of a group. Returns `false` if it was not in it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn leave(&self, conn: ConnId, group: &str) -> Result<bool> {
        if let Some(tag) = self.remote_tag(conn)? {
            let g = group.to_owned();
            return self.forward(tag, Wire::Leave { c: conn, g }).map(|()| true);
        }
        let conn = self.connection(conn)?;
        let left = self.state.registry.leave(&conn, group);
        if left && let Ok(group) = self.group_id(group) {
            self.state
                .forget_positions(conn.id, std::slice::from_ref(&group));
        }
        Ok(left)
    }

    /// Sends a text message to every member of `group` on every node, except
    /// the local connections in `exclude`. Returns the number of local
    /// members it was queued for.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGroup`] for an empty or over-long group id.
    pub fn send_to_group(&self, group: &str, text: &str, exclude: &[ConnId]) -> Result<usize> {
        let group = self.group_id(group)?;
        Ok(self.state.send_to_group_at(&group, text, false, exclude).0)
    }

    /// Sends a text message to every connection of this node, except those
    /// in `exclude`. Returns how many it was queued for.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] after stop.
    pub fn broadcast(&self, text: &str, exclude: &[ConnId]) -> Result<usize> {
        self.running()?;
        let frame = crate::frame::text(text);
        let mut queued = 0;
        self.state.registry.for_each_connection(|conn| {
            if !exclude.contains(&conn.id) && conn.outbox.push(frame.clone()).is_ok() {
                queued += 1;
            }
        });
        self.state.count_out(queued, text.len());
        Ok(queued)
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        let state = &self.state;
        let mut stats = Stats::read(&state.counters);
        stats.connections = state.registry.connection_count() as u64;
        stats.groups = state.registry.group_count() as u64;
        state.bus.add_stats(&mut stats);
        if let Some(channel) = &state.channel_counters {
            let channel = Stats::read(channel);
            stats.channel_refused = channel.channel_refused;
            stats.channel_queue_dropped = channel.channel_queue_dropped;
            stats.channel_undeliverable = channel.channel_undeliverable;
        }
        if let Some(history) = &state.history {
            stats.history_bytes = history.bytes() as u64;
        }
        stats
    }

    /// Whether the node serves and its bus reaches the other nodes (see
    /// [`Health`]); answered from what the node knows, never by asking the
    /// network.
    pub fn health(&self) -> Health {
        let state = &self.state;
        let connections = state.registry.connection_count() as u64;
        if self.running().is_err() {
            return Health {
                status: "unavailable",
                bus: "disconnected",
                reason: Some("the node has stopped".into()),
                connections,
            };
        }
        let bus = &state.bus;
        match (bus.kind(), bus.is_connected()) {
            ("none", _) => Health {
                status: "ok",
                bus: "none",
                reason: None,
                connections,
            },
            (_, true) => Health {
                status: "ok",
                bus: "connected",
                reason: None,
                connections,
            },
            (kind, false) => Health {
                status: "unavailable",
                bus: "disconnected",
                reason: Some(match bus.last_error() {
                    Some(error) => format!("the {kind} bus is down: {error}"),
                    None => format!("the {kind} bus is not connected yet"),
                }),
                connections,
            },
        }
    }

    /// Local members of `group`.
    pub fn group_size(&self, group: &str) -> usize {
        self.state.registry.group_size(group)
    }

    /// Groups with at least one local member.
    pub fn groups(&self) -> Vec<String> {
        let groups = self.state.registry.groups();
        groups.iter().map(|g| g.as_str().to_owned()).collect()
    }

    /// The groups a connection is in.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn connection_groups(&self, conn: ConnId) -> Result<Vec<String>> {
        let groups = self.connection(conn)?.groups();
        Ok(groups.iter().map(|g| g.as_str().to_owned()).collect())
    }

    /// The client address of a connection.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn peer_addr(&self, conn: ConnId) -> Result<SocketAddr> {
        Ok(self.connection(conn)?.peer)
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.state.registry.connection_count()
    }

    /// Groups with at least one local member.
    pub fn group_count(&self) -> usize {
        self.state.registry.group_count()
    }

    /// The host's event queue, when the configuration asked for events.
    pub fn events(&self) -> Option<&Arc<HostEvents>> {
        self.state.host.as_ref()
    }

    /// Lets a connection held for approval (see
    /// [`HostConfig::approve_connections`](crate::HostConfig)) upgrade to
    /// a websocket. To refuse it, call [`NodeHandle::refuse`]. A held
    /// connection is open for the other actions already (what is sent to it
    /// is written after the upgrade); admitting one that is not held is
    /// `Ok`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is held or open.
    pub fn admit(&self, conn: ConnId) -> Result<()> {
        self.running()?;
        if self.decide(conn, Verdict::ADMIT).is_ok() || self.connection(conn).is_ok() {
            return Ok(());
        }
        Err(Error::UnknownConnection(conn))
    }

    /// Admits a held connection choosing `subprotocol`, one of those it
    /// offered: the handshake response names it in `Sec-WebSocket-Protocol`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is held,
    /// [`Error::Config`] when the client did not offer `subprotocol` (the
    /// connection stays held).
    pub fn admit_with_subprotocol(&self, conn: ConnId, subprotocol: &str) -> Result<()> {
        self.running()?;
        let mut pending = self.state.pending.lock();
        let held = pending.get(&conn).ok_or(Error::UnknownConnection(conn))?;
        if !held.subprotocols.iter().any(|p| p == subprotocol) {
            return Err(Error::Config(format!(
                "subprotocol {subprotocol:?} was not offered by connection {conn} (offered: {:?})",
                held.subprotocols
            )));
        }
        let held = pending.remove(&conn).expect("looked up above");
        drop(pending);
        let _ = held.verdict.send(Verdict::Admit {
            subprotocol: Some(subprotocol.to_owned()),
        });
        Ok(())
    }

    /// Refuses a held connection before its upgrade: it gets a plain HTTP
    /// response with `status` (400-599) and `body` (text, at most
    /// [`MAX_REFUSAL_BODY`] bytes), then the socket closes; no websocket
    /// frame is ever sent.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a status outside 400-599 or a longer body,
    /// [`Error::UnknownConnection`] when no such connection is held (one
    /// already open is closed with [`NodeHandle::close`]).
    pub fn refuse(&self, conn: ConnId, status: u16, body: &str) -> Result<()> {
        self.running()?;
        if !(400..=599).contains(&status) {
            return Err(Error::Config(format!(
                "a refusal's HTTP status must be 400-599, not {status}"
            )));
        }
        if body.len() > MAX_REFUSAL_BODY {
            return Err(Error::Config(format!(
                "a refusal's body must be at most {MAX_REFUSAL_BODY} bytes, not {}",
                body.len()
            )));
        }
        self.decide(
            conn,
            Verdict::Refuse {
                status,
                body: body.to_owned(),
            },
        )
    }

    /// Hands `verdict` to a held connection.
    fn decide(&self, conn: ConnId, verdict: Verdict) -> Result<()> {
        let held = self.state.pending.lock().remove(&conn);
        match held {
            // Sent even if the task just stopped waiting: nothing to undo.
            Some(held) => {
                let _ = held.verdict.send(verdict);
                Ok(())
            }
            None => Err(Error::UnknownConnection(conn)),
        }
    }

    fn channel_client(&self) -> Result<&ChannelClient> {
        self.running()?;
        self.state.bus.channel_client()
    }

    /// Publishes `data` (JSON text) on a channel, as the seed's
    /// `Channel\Client::publish`.
    ///
    /// # Errors
    ///
    /// [`Error::Channel`] when `data` is not JSON, the channel name is empty
    /// or reserved for groups, or the node has no channel server.
    pub fn channel_publish(&self, channel: &str, data: &str) -> Result<()> {
        check_channel_name(channel)?;
        let data = serde_json::value::RawValue::from_string(data.to_owned())
            .map_err(|e| Error::Channel(format!("data is not JSON: {e}")))?;
        self.channel_client()?.publish(channel, &data)
    }

    /// Subscribes the host to a channel, as the seed's `Channel\Client::on`;
    /// its events arrive as [`crate::HostEvent::Channel`].
    ///
    /// # Errors
    ///
    /// As [`NodeHandle::channel_publish`], and when the host takes no events.
    pub fn channel_subscribe(&self, channel: &str) -> Result<()> {
        check_channel_name(channel)?;
        if self.state.host.is_none() {
            return Err(Error::Channel(
                "the host takes no events: enable them in HostConfig".into(),
            ));
        }
        self.channel_client()?.subscribe(channel)
    }

    /// Stops the host's subscription to a channel.
    ///
    /// # Errors
    ///
    /// As [`NodeHandle::channel_publish`].
    pub fn channel_unsubscribe(&self, channel: &str) -> Result<()> {
        check_channel_name(channel)?;
        self.channel_client()?.unsubscribe(channel)
    }

    /// Whether the node is connected to its channel server, or to Redis
    /// with every group that has members subscribed (`true` for a node
    /// without a bus: it has nothing to wait for).
    pub fn bus_connected(&self) -> bool {
        self.state.bus.is_connected()
    }

    /// Waits until [`NodeHandle::bus_connected`].
    pub async fn wait_bus_connected(&self) {
        self.state.bus.wait_connected().await;
    }

    /// Reads the TLS certificate and key files again (`tls_cert` and
    /// `tls_key`, and the embedded channel server's `channel_tls_cert` and
    /// `channel_tls_key`): new handshakes use what they hold now; open
    /// connections keep theirs and are not disturbed. Blocks on reading
    /// the files.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the node serves no TLS, or naming the file
    /// that cannot be used (the certificate in use then stays: each pair is
    /// replaced only when it loads whole); [`Error::Stopped`] after stop.
    pub fn reload_tls(&self) -> Result<()> {
        self.running()?;
        let (websocket, channel) = (&self.state.tls, &self.state.channel_tls);
        if websocket.is_none() && channel.is_none() {
            return Err(Error::Config(
                "this node serves no TLS (start it with tls_cert and tls_key)".into(),
            ));
        }
        for tls in [websocket, channel].into_iter().flatten() {
            tls.reload()?;
        }
        Ok(())
    }
}

/// Host channels must not be empty nor use the groups' prefix (that would
/// let a host bypass or disturb group routing).
fn check_channel_name(channel: &str) -> Result<()> {
    if channel.is_empty() {
        return Err(Error::Channel("channel name must not be empty".into()));
    }
    if channel.starts_with(GROUP_CHANNEL_PREFIX) {
        return Err(Error::Channel(format!(
            "channel names starting with {:?} are reserved for groups",
            GROUP_CHANNEL_PREFIX
        )));
    }
    Ok(())
}

/// Close codes a server may send (RFC 6455 §7.4): not the reserved ones nor
/// those that must never be on the wire.
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
