//! Group history in a channel-server cluster (issue 17): the channel
//! server numbers every group message and keeps the history
//! (`channel/history.rs`), so offsets agree on every node and a member can
//! recover on a node other than the one it left.
//!
//! A node with history publishes each group message numbered, to every
//! node *including itself*, and serves its own members when the numbered
//! message comes back: every node then delivers in the channel server's
//! order. A member joining with `positions` or `since` is registered at
//! once but held (its live messages buffered) while the channel server is
//! asked for the group's position and, with `since`, the missed messages;
//! the request goes out after the node's subscription to the group, on the
//! same connection, so every message is either in the reply or comes live
//! after it. When the reply arrives the member gets `joined`, the replay,
//! then what was buffered past the reply's last offset: no gap, no
//! duplicate. (A message at or below that offset arriving *after* the reply
//! would be a duplicate: each bus must hand the reply on behind the
//! messages published before the read, as the Redis bus does with the
//! subscription and the read on one connection, `redis_history.rs`.)

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::envelope::group_channel;
use crate::error::JoinError;
use crate::history::{Position, joined_reply, positioned_frame};
use crate::ids::{ConnId, GroupId};
use crate::queue::Frames;
use crate::registry::{ConnectionEntry, Delivery, Registry};
use crate::stats::NodeCounters;

/// Most bytes of numbered publishes waiting for the bus task: past it a
/// publish is dropped and counted (`bus_dropped_publishes`), so a bus that
/// cannot keep up costs messages rather than memory.
const PUBLISH_BYTES: usize = 8 << 20;

/// How long a held member waits for the channel server's answer before
/// its request is sent again.
pub(crate) const STALE_REQUEST: std::time::Duration = std::time::Duration::from_secs(5);

/// A group message as a node with history publishes it; the channel server
/// adds `offset` first when it numbers it.
#[derive(Serialize, Deserialize)]
struct NumberedEnvelope<'a> {
    /// Set by the channel server (absent when it keeps no history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(borrow)]
    group_id: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
    /// The sending node.
    node: u64,
    /// `message` is a JSON value as sent, not a string.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    json: bool,
    /// The sending node's connections that must not get it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exclude: Vec<ConnId>,
}

/// A member held while its position or recovery is asked for.
struct Pending {
    conn: Arc<ConnectionEntry>,
    group: GroupId,
    since: Option<Position>,
    /// Live messages that arrived meanwhile: offset and positioned frame.
    buffered: Vec<(u64, Bytes)>,
    /// The request, and when it was last sent: asked again when the
    /// channel server (or Redis) went away before answering.
    request: PositionRequest,
    asked: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    /// Members that take a group's messages as positioned objects.
    positioned: HashMap<GroupId, HashSet<ConnId>>,
    /// Held members by request id.
    pending: HashMap<u64, Pending>,
    /// Request ids held per group, to buffer their live messages.
    pending_groups: HashMap<GroupId, HashSet<u64>>,
}

/// A node's side of the cluster's history.
pub(crate) struct ClusterPositions {
    node_id: u64,
    registry: Arc<Registry>,
    counters: Arc<NodeCounters>,
    /// Under this lock: membership kinds, held members, and every delivery
    /// of a numbered message (the bus task delivers them one at a time).
    inner: Mutex<Inner>,
    /// Requests for the bus task, which sends them after the subscriptions
    /// asked before them.
    requests: mpsc::UnboundedSender<PositionRequest>,
    next_request: AtomicU64,
    /// Hosts waiting for a `history` read, by request id.
    reads: Mutex<HashMap<u64, std::sync::mpsc::SyncSender<HostRead>>>,
    /// Bytes of publishes in `requests`, against [`PUBLISH_BYTES`].
    in_flight: Arc<crate::queue::ByteBudget>,
    /// Publishes dropped: [`PUBLISH_BYTES`] were waiting.
    dropped: AtomicU64,
}

/// A host's read of a group's history: its epoch and `(offset, message)`s.
pub(crate) type HostRead = (String, Vec<(u64, String)>);

/// The receiving end of [`ClusterPositions`]'s requests, for the bus task.
pub(crate) type HistoryRequests = mpsc::UnboundedReceiver<PositionRequest>;

/// What a node with history asks of its bus task: the channel bus sends it
/// to the channel server ([`PositionRequest::channel_frame`]), the Redis bus
/// runs it as a script (`redis_history.rs`).
#[derive(Clone)]
pub(crate) enum PositionRequest {
    /// Number, keep and publish a group message to every node, this one
    /// included. `envelope`: the message's JSON envelope, without offset.
    Publish {
        group: String,
        envelope: String,
        /// Told the offset the message got (`None`: it was not published).
        offset: Option<std::sync::mpsc::SyncSender<Option<u64>>>,
    },
    /// The group's epoch and last offset, and the kept messages after
    /// `after` (at most `limit`), answered with the same `id`
    /// ([`ClusterPositions::on_reply`]). `since`: a member's recovery;
    /// `read`: a host's read (`after`, `limit`); neither: a position only.
    History {
        id: u64,
        group: String,
        since: Option<Position>,
        read: Option<(u64, usize)>,
    },
}

impl PositionRequest {
    /// The request as the channel server takes it (`channel/history.rs`).
    pub(crate) fn channel_frame(&self) -> Option<Bytes> {
        let request = match self {
            PositionRequest::Publish {
                group, envelope, ..
            } => serde_json::json!({
                "type": "publish_numbered",
                "channel": group_channel(group),
                "data": RawValue::from_string(envelope.clone()).ok()?,
            }),
            PositionRequest::History {
                id,
                group,
                since,
                read,
            } => {
                let mut request = serde_json::json!({
                    "type": "history",
                    "id": id,
                    "channel": group_channel(group),
                });
                if let Some(since) = since {
                    request["since"] =
                        serde_json::json!({"offset": since.offset, "epoch": since.epoch});
                }
                if let Some((after, limit)) = read {
                    request["after"] = serde_json::json!(after);
                    request["limit"] = serde_json::json!(limit);
                }
                request
            }
        };
        crate::channel::message::encode_request(&request)
    }
}

impl ClusterPositions {
    pub(crate) fn new(
        node_id: u64,
        registry: Arc<Registry>,
        counters: Arc<NodeCounters>,
    ) -> (Arc<Self>, HistoryRequests) {
        let (requests, receiver) = mpsc::unbounded_channel();
        let positions = ClusterPositions {
            node_id,
            registry,
            counters,
            inner: Mutex::default(),
            requests,
            next_request: AtomicU64::new(1),
            reads: Mutex::default(),
            in_flight: crate::queue::ByteBudget::new(PUBLISH_BYTES),
            dropped: AtomicU64::new(0),
        };
        (Arc::new(positions), receiver)
    }

    /// Publishes a group message to be numbered by the channel server (or
    /// Redis); this node's members get it when it comes back. `offset`, when
    /// given, is told the offset the message got.
    pub(crate) fn publish(
        &self,
        group: &str,
        text: &str,
        json: bool,
        exclude: &[ConnId],
        offset: Option<std::sync::mpsc::SyncSender<Option<u64>>>,
    ) {
        let envelope = NumberedEnvelope {
            offset: None,
            group_id: Cow::Borrowed(group),
            message: Cow::Borrowed(text),
            node: self.node_id,
            json,
            exclude: exclude.to_vec(),
        };
        let Ok(envelope) = serde_json::to_string(&envelope) else {
            return;
        };
        if !self.in_flight.try_take(envelope.len()) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Through the bus task, after the subscription a join just asked
        // for: the node must be subscribed to get its own message back.
        // Only fails once the node is stopping.
        let _ = self.requests.send(PositionRequest::Publish {
            group: group.to_owned(),
            envelope,
            offset,
        });
    }

    /// Joins `conn` to `group`, held until the channel server tells the
    /// group's position (and, with `since`, what was missed).
    ///
    /// # Errors
    ///
    /// The registry's [`JoinError`]; nothing is asked then.
    pub(crate) fn join(
        &self,
        conn: &Arc<ConnectionEntry>,
        group: &GroupId,
        since: Option<&Position>,
    ) -> Result<(), JoinError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let request = PositionRequest::History {
            id,
            group: group.as_str().to_owned(),
            since: since.cloned(),
            read: None,
        };
        let mut inner = self.inner.lock();
        self.registry.join(conn, group)?;
        if let Some(set) = inner.positioned.get_mut(group.as_str()) {
            set.remove(&conn.id);
        }
        inner.pending.insert(
            id,
            Pending {
                conn: conn.clone(),
                group: group.clone(),
                since: since.cloned(),
                buffered: Vec::new(),
                request: request.clone(),
                asked: std::time::Instant::now(),
            },
        );
        inner
            .pending_groups
            .entry(group.clone())
            .or_default()
            .insert(id);
        drop(inner);
        let _ = self.requests.send(request);
        Ok(())
    }

    /// Delivers group events in order: consecutive numbered messages of one
    /// group go to each member as one item (as runs do without history).
    pub(crate) fn deliver_many(&self, events: &[Box<[u8]>]) {
        let mut run: Vec<NumberedEnvelope<'_>> = Vec::new();
        for data in events {
            let Ok(envelope) = serde_json::from_slice::<NumberedEnvelope<'_>>(data) else {
                continue;
            };
            let joins = envelope.offset.is_some()
                && envelope.exclude.is_empty()
                && run
                    .last()
                    .is_none_or(|last| last.group_id == envelope.group_id);
            if !joins {
                self.deliver_run(&mut run);
            }
            if envelope.offset.is_some() && envelope.exclude.is_empty() {
                run.push(envelope);
            } else {
                self.deliver(data);
            }
        }
        self.deliver_run(&mut run);
    }

    /// Delivers numbered messages of one group, without exclusions.
    fn deliver_run(&self, run: &mut Vec<NumberedEnvelope<'_>>) {
        let Some(first) = run.first() else {
            return;
        };
        let group = first.group_id.to_string();
        let mut raw = Vec::with_capacity(run.len());
        let mut positioned = Vec::with_capacity(run.len());
        let mut text_bytes = 0;
        for envelope in run.iter() {
            let offset = envelope.offset.unwrap_or_default();
            raw.push(crate::frame::text(&envelope.message));
            positioned.push((
                offset,
                positioned_frame(&group, offset, &envelope.message, envelope.json),
            ));
            text_bytes += envelope.message.len();
        }
        let count = run.len();
        run.clear();
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut held = Vec::new();
        if let Some(ids) = inner.pending_groups.get(group.as_str()) {
            for id in ids {
                if let Some(pending) = inner.pending.get_mut(id) {
                    pending.buffered.extend(positioned.iter().cloned());
                    held.push(pending.conn.id);
                }
            }
        }
        let raw = Frames::many(raw);
        let positioned = Frames::many(positioned.into_iter().map(|(_, f)| f).collect());
        let members = inner.positioned.get(group.as_str());
        let (raw_members, positioned_members) =
            self.registry.fan_out_with(&group, &raw, &positioned, |id| {
                if held.contains(&id) {
                    Delivery::Skip
                } else if members.is_some_and(|set| set.contains(&id)) {
                    Delivery::Positioned
                } else {
                    Delivery::Raw
                }
            });
        drop(guard);
        self.counters
            .count_out(raw_members * count, raw_members * text_bytes);
        self.counters.count_out(
            positioned_members * count,
            positioned_members * positioned.bytes(),
        );
    }

    /// Delivers a group event (numbered or not) to this node's members.
    pub(crate) fn deliver(&self, data: &[u8]) {
        let Ok(envelope) = serde_json::from_slice::<NumberedEnvelope<'_>>(data) else {
            return;
        };
        let own = envelope.node == self.node_id;
        let raw: Frames = crate::frame::text(&envelope.message).into();
        let group = &*envelope.group_id;
        let Some(offset) = envelope.offset else {
            // A channel server without history: a plain publish to all.
            let exclude: &[ConnId] = if own { &envelope.exclude } else { &[] };
            let members = self.registry.fan_out(group, &raw, exclude);
            self.counters
                .count_out(members, members * envelope.message.len());
            return;
        };
        let positioned = positioned_frame(group, offset, &envelope.message, envelope.json);
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if let Some(ids) = inner.pending_groups.get(group) {
            for id in ids {
                if let Some(pending) = inner.pending.get_mut(id) {
                    pending.buffered.push((offset, positioned.clone()));
                }
            }
        }
        let held: Vec<ConnId> = inner
            .pending_groups
            .get(group)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| inner.pending.get(id).map(|p| p.conn.id))
                    .collect()
            })
            .unwrap_or_default();
        let positioned_members = inner.positioned.get(group);
        let exclude: &[ConnId] = if own { &envelope.exclude } else { &[] };
        let (raw_members, positioned_count) =
            self.registry
                .fan_out_with(group, &raw, &positioned.clone().into(), |id| {
                    if exclude.contains(&id) || held.contains(&id) {
                        Delivery::Skip
                    } else if positioned_members.is_some_and(|set| set.contains(&id)) {
                        Delivery::Positioned
                    } else {
                        Delivery::Raw
                    }
                });
        self.counters
            .count_out(raw_members, raw_members * envelope.message.len());
        self.counters
            .count_out(positioned_count, positioned_count * positioned.len());
    }

    /// Reads `group`'s history from the channel server for a host: the kept
    /// messages after `after`, at most `limit`. Blocks the calling thread
    /// until the answer comes, at most `timeout` (`None` then).
    pub(crate) fn read(
        &self,
        group: &str,
        after: u64,
        limit: usize,
        timeout: std::time::Duration,
    ) -> Option<HostRead> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let request = PositionRequest::History {
            id,
            group: group.to_owned(),
            since: None,
            read: Some((after, limit)),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.reads.lock().insert(id, tx);
        let _ = self.requests.send(request);
        let answer = rx.recv_timeout(timeout).ok();
        self.reads.lock().remove(&id);
        answer
    }

    /// Completes a held join with the channel server's reply.
    pub(crate) fn on_reply(&self, data: &[u8]) {
        #[derive(Deserialize)]
        struct Reply<'a> {
            id: u64,
            epoch: String,
            last: u64,
            recovered: bool,
            #[serde(borrow)]
            messages: Vec<&'a RawValue>,
        }
        let Ok(reply) = serde_json::from_slice::<Reply<'_>>(data) else {
            return;
        };
        if let Some(waiter) = self.reads.lock().remove(&reply.id) {
            let messages = reply
                .messages
                .iter()
                .filter_map(|m| serde_json::from_str::<NumberedEnvelope<'_>>(m.get()).ok())
                .filter_map(|e| Some((e.offset?, e.message.into_owned())))
                .collect();
            let _ = waiter.try_send((reply.epoch, messages));
            return;
        }
        let mut inner = self.inner.lock();
        let Some(pending) = inner.pending.remove(&reply.id) else {
            return;
        };
        if let Some(ids) = inner.pending_groups.get_mut(&pending.group) {
            ids.remove(&reply.id);
            if ids.is_empty() {
                inner.pending_groups.remove(&pending.group);
            }
        }
        let group = pending.group.as_str();
        let mut frames = Vec::new();
        let mut last_sent = reply.last;
        let recovered = pending.since.as_ref().map(|since| {
            let replay: Option<Vec<Bytes>> = reply.recovered.then(|| {
                reply
                    .messages
                    .iter()
                    .filter_map(|m| serde_json::from_str::<NumberedEnvelope<'_>>(m.get()).ok())
                    .filter_map(|e| {
                        let offset = e.offset?;
                        (offset > since.offset)
                            .then(|| positioned_frame(group, offset, &e.message, e.json))
                    })
                    .collect()
            });
            replay.map(|replay| {
                let missed = replay.len();
                frames.extend(replay);
                missed
            })
        });
        let counter = match recovered {
            Some(Some(_)) => Some(&self.counters.history_recovered),
            Some(None) => Some(&self.counters.history_not_recovered),
            None => None,
        };
        if let Some(counter) = counter {
            NodeCounters::add(counter, 1);
        }
        for (offset, frame) in pending.buffered {
            if offset > last_sent {
                frames.push(frame);
                last_sent = offset;
            }
        }
        let still_member = pending
            .conn
            .groups()
            .iter()
            .any(|g| g.as_str() == pending.group.as_str());
        if !still_member {
            return;
        }
        frames.insert(
            0,
            crate::frame::text(&joined_reply(group, reply.last, &reply.epoch, recovered)),
        );
        inner
            .positioned
            .entry(pending.group.clone())
            .or_default()
            .insert(pending.conn.id);
        let _ = pending.conn.outbox.push(Frames::many(frames));
    }

    /// The requests of members held for longer than `after` (the channel
    /// server went away before answering: its answer will never come),
    /// to be sent again; a second answer to the same request is ignored.
    /// Members whose connection closed are let go.
    pub(crate) fn stale_requests(&self, after: std::time::Duration) -> Vec<PositionRequest> {
        let mut inner = self.inner.lock();
        let now = std::time::Instant::now();
        let mut again = Vec::new();
        let mut gone = Vec::new();
        for (id, pending) in inner.pending.iter_mut() {
            if now.duration_since(pending.asked) < after {
                continue;
            }
            let member = pending.conn.groups().contains(&pending.group);
            if !member {
                gone.push((*id, pending.group.clone()));
                continue;
            }
            pending.asked = now;
            again.push(pending.request.clone());
        }
        for (id, group) in gone {
            inner.pending.remove(&id);
            if let Some(ids) = inner.pending_groups.get_mut(&group) {
                ids.remove(&id);
                if ids.is_empty() {
                    inner.pending_groups.remove(&group);
                }
            }
        }
        again
    }

    /// Called by the bus task for each request it takes: a publish's bytes
    /// no longer wait.
    pub(crate) fn taken(&self, request: &PositionRequest) {
        if let PositionRequest::Publish { envelope, .. } = request {
            self.in_flight.give_back(envelope.len());
        }
    }

    /// Publishes dropped because too many bytes of them were waiting.
    pub(crate) fn dropped_publishes(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes `conn` out of the positioned and held members of `groups`.
    pub(crate) fn forget(&self, conn: ConnId, groups: &[GroupId]) {
        let mut inner = self.inner.lock();
        for group in groups {
            if let Some(set) = inner.positioned.get_mut(group.as_str()) {
                set.remove(&conn);
                if set.is_empty() {
                    inner.positioned.remove(group.as_str());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Outbox, OutboxReceiver};

    fn member(id: ConnId) -> (Arc<ConnectionEntry>, OutboxReceiver) {
        let (outbox, rx) = Outbox::new(
            1 << 20,
            crate::config::SlowConsumerPolicy::Close,
            Default::default(),
            tokio_util::sync::CancellationToken::new(),
        );
        let entry = ConnectionEntry::new(id, "127.0.0.1:1".parse().unwrap(), outbox);
        (entry, rx)
    }

    /// Another node's numbered message, as it comes off the bus.
    fn numbered(offset: u64) -> Box<[u8]> {
        format!(r#"{{"offset":{offset},"group_id":"g","message":"m{offset}","node":2}}"#)
            .into_bytes()
            .into()
    }

    fn frames(rx: &mut OutboxReceiver) -> Vec<Bytes> {
        std::iter::from_fn(|| rx.try_recv())
            .flat_map(|item| item.frames().to_vec())
            .collect()
    }

    /// Live messages that reach the delivery task before the reply to a
    /// held member's read: those the reply covers (published before the
    /// read) are dropped, and those past its `last` (which only come first
    /// when pushes and replies travel apart, as they could if a cluster
    /// client replaced a node's connection in between) follow the replay in
    /// order; then live ones flow.
    #[test]
    fn live_messages_before_the_reply_neither_gap_nor_duplicate() {
        let registry = Arc::new(Registry::new(16, None));
        let (positions, mut requests) =
            ClusterPositions::new(1, registry, Arc::new(NodeCounters::default()));
        let (conn, mut rx) = member(7);
        let group = GroupId::new("g", 64).unwrap();
        let since = Position {
            offset: 2,
            epoch: "e".into(),
        };
        positions.join(&conn, &group, Some(&since)).unwrap();
        let Ok(PositionRequest::History { id, .. }) = requests.try_recv() else {
            panic!("a read is asked");
        };
        // 3 and 4 are in the reply too; 5 and 6 came after the read.
        positions.deliver_many(&[numbered(3), numbered(4), numbered(5)]);
        positions.deliver_many(&[numbered(6)]);
        assert!(frames(&mut rx).is_empty(), "held until the reply");
        let reply = format!(
            r#"{{"id":{id},"epoch":"e","last":4,"recovered":true,"messages":[{},{}]}}"#,
            String::from_utf8_lossy(&numbered(3)),
            String::from_utf8_lossy(&numbered(4)),
        );
        positions.on_reply(reply.as_bytes());
        positions.deliver_many(&[numbered(7)]);
        let positioned = |o: u64| positioned_frame("g", o, &format!("m{o}"), false);
        let mut want = vec![crate::frame::text(&joined_reply(
            "g",
            4,
            "e",
            Some(Some(2)),
        ))];
        want.extend((3..=7).map(positioned));
        assert_eq!(
            frames(&mut rx),
            want,
            "joined, 3 4 replayed, 5 6 held, 7 live"
        );
    }

    #[test]
    fn publishes_waiting_for_the_bus_task_are_bounded_and_counted() {
        let registry = Arc::new(Registry::new(16, None));
        let (positions, mut requests) =
            ClusterPositions::new(1, registry, Arc::new(NodeCounters::default()));
        let big = "x".repeat(PUBLISH_BYTES / 2);
        positions.publish("g", &big, false, &[], None);
        positions.publish("g", &big, false, &[], None);
        assert_eq!(positions.dropped_publishes(), 1, "the second is over");
        let first = requests.try_recv().expect("the first waits");
        assert!(requests.try_recv().is_err());
        positions.taken(&first);
        positions.publish("g", &big, false, &[], None);
        assert_eq!(positions.dropped_publishes(), 1, "room again once taken");
        let PositionRequest::Publish { envelope, .. } = requests.try_recv().expect("queued") else {
            panic!("a publish");
        };
        assert!(
            envelope.starts_with(r#"{"group_id":"g","#),
            "{}",
            &envelope[..40]
        );
    }
}
