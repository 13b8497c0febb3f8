//! The registry: which local connections are in which groups.
//!
//! Groups live in shards, each behind a plain `parking_lot` mutex, so that
//! joins, leaves and fan-outs of different groups rarely meet. No lock here is
//! ever held across an `.await`: every method is synchronous, which is also
//! what lets host threads call them directly.
//!
//! Lock order, everywhere: a connection's group set, then its uid, then a
//! group (or uid, or watcher) shard, then the presence state. Fan-out takes
//! only the shard lock.
//!
//! Users (a uid bound to connections), presence events and the actions
//! other nodes send live in `registry/users.rs`.

pub(crate) mod users;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::error::JoinError;
use crate::ids::{ConnId, GroupId};
use crate::presence::{Presence, Transition, Uid};
use crate::queue::{Frames, Outbox};
use crate::stats::NodeCounters;

/// A change in which groups this node has members in; the bus uses it to
/// subscribe only to the traffic the node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interest {
    /// The group got its first local member.
    Subscribe(GroupId),
    /// The group's last local member left.
    Unsubscribe(GroupId),
}

/// Which frames a member gets from [`Registry::fan_out_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The message as is.
    Raw,
    /// The positioned `message` object (group history).
    Positioned,
    /// Nothing (excluded, or waiting for its recovery).
    Skip,
}

/// What the registry keeps of one connection.
#[derive(Debug)]
pub(crate) struct ConnectionEntry {
    /// The connection's id, the key hosts use.
    pub(crate) id: ConnId,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Where frames for this connection go.
    pub(crate) outbox: Outbox,
    /// The groups this connection is in, to leave them all on close; `None`
    /// once the connection has been removed, so a late join cannot leak it
    /// into a group.
    groups: Mutex<Option<HashSet<GroupId>>>,
    /// The uid the host bound this connection to, if any.
    uid: Mutex<Option<Uid>>,
}

impl ConnectionEntry {
    pub(crate) fn new(id: ConnId, peer: SocketAddr, outbox: Outbox) -> Arc<Self> {
        Arc::new(ConnectionEntry {
            id,
            peer,
            outbox,
            groups: Mutex::new(Some(HashSet::new())),
            uid: Mutex::new(None),
        })
    }

    /// The groups this connection is in.
    pub(crate) fn groups(&self) -> Vec<GroupId> {
        self.groups
            .lock()
            .as_ref()
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Number of shards for groups and connections: enough that two worker
/// threads rarely contend, few enough to stay cheap to walk for `groups()`.
const SHARDS: usize = 64;

type Members = HashMap<ConnId, Arc<ConnectionEntry>>;
type ConnectionShard = Mutex<HashMap<ConnId, Arc<ConnectionEntry>>>;

/// Groups and connections of one node.
pub(crate) struct Registry {
    /// group id → its local members, sharded by the group id's hash.
    groups: Box<[Mutex<HashMap<GroupId, Members>>]>,
    /// connection id → connection, for actions addressed by id.
    connections: Box<[ConnectionShard]>,
    /// Picks a group's shard.
    hasher: RandomState,
    /// Connections registered now.
    connection_count: AtomicUsize,
    /// Groups with at least one member now.
    group_count: AtomicUsize,
    /// Most groups one connection may be in.
    max_groups_per_connection: usize,
    /// Where interest changes go, in order (sent under the shard lock so a
    /// subscribe and the unsubscribe after it can never swap). `None` for a
    /// node without a bus.
    interest: Option<mpsc::UnboundedSender<Interest>>,
    /// uid → its local connections, sharded like groups.
    uids: Box<[Mutex<HashMap<Uid, Members>>]>,
    /// group → its local members that asked for presence events.
    watchers: Box<[Mutex<HashMap<GroupId, Members>>]>,
    /// The cluster's presence, when the node keeps it.
    presence: Option<Arc<Presence>>,
    /// Where presence events and other nodes' actions are counted.
    counters: Arc<NodeCounters>,
}

impl Registry {
    pub(crate) fn new(
        max_groups_per_connection: usize,
        interest: Option<mpsc::UnboundedSender<Interest>>,
    ) -> Self {
        Registry {
            groups: (0..SHARDS).map(|_| Mutex::default()).collect(),
            connections: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            connection_count: AtomicUsize::new(0),
            group_count: AtomicUsize::new(0),
            max_groups_per_connection,
            interest,
            uids: (0..SHARDS).map(|_| Mutex::default()).collect(),
            watchers: (0..SHARDS).map(|_| Mutex::default()).collect(),
            presence: None,
            counters: Arc::default(),
        }
    }

    /// Keeps presence in `presence` (when some) and counts in `counters`.
    pub(crate) fn with_presence(
        mut self,
        presence: Option<Arc<Presence>>,
        counters: Arc<NodeCounters>,
    ) -> Self {
        self.presence = presence;
        self.counters = counters;
        self
    }

    fn shard_index(&self, name: &str) -> usize {
        self.hasher.hash_one(name) as usize % SHARDS
    }

    fn group_shard(&self, group: &str) -> &Mutex<HashMap<GroupId, Members>> {
        &self.groups[self.shard_index(group)]
    }

    fn connection_shard(&self, id: ConnId) -> &ConnectionShard {
        &self.connections[id as usize % SHARDS]
    }

    /// Adds a connection so that actions can find it by id.
    pub(crate) fn add_connection(&self, conn: Arc<ConnectionEntry>) {
        self.connection_shard(conn.id).lock().insert(conn.id, conn);
        self.connection_count.fetch_add(1, Ordering::Relaxed);
        if let Some(presence) = &self.presence {
            presence.local_connection(1);
        }
    }

    /// Removes a connection and takes it out of every group it was in;
    /// groups left empty are freed.
    pub(crate) fn remove_connection(&self, conn: &ConnectionEntry) {
        if self
            .connection_shard(conn.id)
            .lock()
            .remove(&conn.id)
            .is_some()
        {
            self.connection_count.fetch_sub(1, Ordering::Relaxed);
            if let Some(presence) = &self.presence {
                presence.local_connection(-1);
            }
        }
        let mut groups = conn.groups.lock();
        let uid = conn.uid.lock().take();
        let mut transitions = Vec::new();
        for group in groups.take().unwrap_or_default() {
            self.unwatch(group.as_str(), conn.id);
            self.remove_member(&group, conn.id, uid.as_ref(), &mut transitions);
        }
        if let Some(uid) = uid {
            self.remove_uid_member(&uid, conn.id);
        }
        drop(groups);
        self.emit(transitions);
    }

    /// The connection with this id, if it is open.
    pub(crate) fn connection(&self, id: ConnId) -> Option<Arc<ConnectionEntry>> {
        self.connection_shard(id).lock().get(&id).cloned()
    }

    /// Every open connection, for broadcasts to all.
    pub(crate) fn for_each_connection(&self, mut f: impl FnMut(&Arc<ConnectionEntry>)) {
        for shard in self.connections.iter() {
            for conn in shard.lock().values() {
                f(conn);
            }
        }
    }

    /// Puts a connection in a group. Returns `false` if it already was.
    pub(crate) fn join(
        &self,
        conn: &Arc<ConnectionEntry>,
        group: &GroupId,
    ) -> Result<bool, JoinError> {
        let mut guard = conn.groups.lock();
        let groups = guard.as_mut().ok_or(JoinError::Closed)?;
        if groups.contains(group) {
            return Ok(false);
        }
        if groups.len() >= self.max_groups_per_connection {
            return Err(JoinError::TooManyGroups(self.max_groups_per_connection));
        }
        groups.insert(group.clone());
        let mut shard = self.group_shard(group.as_str()).lock();
        let members = shard.entry(group.clone()).or_insert_with(|| {
            self.group_count.fetch_add(1, Ordering::Relaxed);
            self.notify(Interest::Subscribe(group.clone()));
            Members::default()
        });
        members.insert(conn.id, conn.clone());
        drop(shard);
        if let Some(presence) = &self.presence {
            let uid = conn.uid.lock().clone();
            let mut transitions = Vec::new();
            presence.local_group(group, uid.as_ref(), 1, &mut transitions);
            drop(guard);
            self.emit(transitions);
        }
        Ok(true)
    }

    /// Takes a connection out of a group. Returns `false` if it was not in it.
    pub(crate) fn leave(&self, conn: &ConnectionEntry, group: &str) -> bool {
        let mut groups = conn.groups.lock();
        let Some(group) = groups.as_mut().and_then(|g| g.take(group)) else {
            return false;
        };
        let uid = conn.uid.lock().clone();
        let mut transitions = Vec::new();
        self.unwatch(group.as_str(), conn.id);
        self.remove_member(&group, conn.id, uid.as_ref(), &mut transitions);
        drop(groups);
        self.emit(transitions);
        true
    }

    /// Takes a member out of a group's members (and out of presence).
    fn remove_member(
        &self,
        group: &GroupId,
        id: ConnId,
        uid: Option<&Uid>,
        transitions: &mut Vec<Transition>,
    ) {
        if let Some(presence) = &self.presence {
            presence.local_group(group, uid, -1, transitions);
        }
        let group = group.as_str();
        let mut shard = self.group_shard(group).lock();
        let Some(members) = shard.get_mut(group) else {
            return;
        };
        members.remove(&id);
        if members.is_empty() {
            // Free the group, as the seed insists, so ids used once do not
            // accumulate.
            if let Some((group, _)) = shard.remove_entry(group) {
                self.group_count.fetch_sub(1, Ordering::Relaxed);
                self.notify(Interest::Unsubscribe(group));
            }
        }
    }

    fn notify(&self, change: Interest) {
        if let Some(tx) = &self.interest {
            // The bus may already be gone while the node stops; nothing is
            // lost then, since no one will route again.
            let _ = tx.send(change);
        }
    }

    /// Queues `frame` (an encoded websocket frame, see `crate::frame`) for
    /// every local member of `group` whose id is not in `exclude`. The
    /// frame's bytes are shared by all of them. Returns how many members it
    /// was queued for.
    pub(crate) fn fan_out(&self, group: &str, frames: &Frames, exclude: &[ConnId]) -> usize {
        if group.starts_with(crate::ids::RESERVED_PREFIX) {
            return self.fan_out_reserved(group, frames, exclude);
        }
        let shard = self.group_shard(group).lock();
        let Some(members) = shard.get(group) else {
            return 0;
        };
        let mut queued = 0;
        for (id, conn) in members {
            if !exclude.contains(id) && conn.outbox.push(frames.clone()).is_ok() {
                queued += 1;
            }
        }
        queued
    }

    /// As [`Registry::fan_out`], with each member's frames chosen by
    /// `classify` (group history: members that asked for positions get the
    /// positioned frames; one waiting for its recovery gets nothing yet).
    /// Returns how many members each kind of frames was queued for.
    pub(crate) fn fan_out_with(
        &self,
        group: &str,
        raw: &Frames,
        positioned: &Frames,
        mut classify: impl FnMut(ConnId) -> Delivery,
    ) -> (usize, usize) {
        let shard = self.group_shard(group).lock();
        let Some(members) = shard.get(group) else {
            return (0, 0);
        };
        let (mut raw_queued, mut positioned_queued) = (0, 0);
        for (id, conn) in members {
            match classify(*id) {
                Delivery::Skip => {}
                Delivery::Raw => raw_queued += usize::from(conn.outbox.push(raw.clone()).is_ok()),
                Delivery::Positioned => {
                    positioned_queued += usize::from(conn.outbox.push(positioned.clone()).is_ok())
                }
            }
        }
        (raw_queued, positioned_queued)
    }

    /// Local members of `group`.
    pub(crate) fn group_size(&self, group: &str) -> usize {
        self.group_shard(group)
            .lock()
            .get(group)
            .map_or(0, HashMap::len)
    }

    /// Groups with at least one local member.
    pub(crate) fn groups(&self) -> Vec<GroupId> {
        let mut all = Vec::with_capacity(self.group_count());
        for shard in self.groups.iter() {
            all.extend(shard.lock().keys().cloned());
        }
        all
    }

    /// Number of groups with at least one local member.
    pub(crate) fn group_count(&self) -> usize {
        self.group_count.load(Ordering::Relaxed)
    }

    /// Number of open connections.
    pub(crate) fn connection_count(&self) -> usize {
        self.connection_count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::queue::OutboxReceiver;

    fn conn(id: ConnId) -> (Arc<ConnectionEntry>, OutboxReceiver) {
        let (outbox, rx) = Outbox::new(
            1 << 20,
            crate::config::SlowConsumerPolicy::Close,
            Default::default(),
            CancellationToken::new(),
        );
        (
            ConnectionEntry::new(id, "127.0.0.1:1".parse().unwrap(), outbox),
            rx,
        )
    }

    fn group(id: &str) -> GroupId {
        GroupId::new(id, 256).unwrap()
    }

    #[test]
    fn join_leave_and_interest_in_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let registry = Registry::new(16, Some(tx));
        let (a, _ra) = conn(1);
        let (b, _rb) = conn(2);
        registry.add_connection(a.clone());
        registry.add_connection(b.clone());
        assert_eq!(registry.join(&a, &group("g")), Ok(true));
        assert_eq!(registry.join(&a, &group("g")), Ok(false));
        assert_eq!(registry.join(&b, &group("g")), Ok(true));
        assert_eq!(registry.group_size("g"), 2);
        assert!(registry.leave(&a, "g"));
        assert!(!registry.leave(&a, "g"));
        registry.remove_connection(&b);
        assert_eq!(registry.group_count(), 0);
        assert_eq!(registry.connection_count(), 1);
        assert_eq!(rx.try_recv(), Ok(Interest::Subscribe(group("g"))));
        assert_eq!(rx.try_recv(), Ok(Interest::Unsubscribe(group("g"))));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn fan_out_skips_excluded_members() {
        let registry = Registry::new(16, None);
        let (a, mut ra) = conn(1);
        let (b, rb) = conn(2);
        registry.join(&a, &group("g")).unwrap();
        registry.join(&b, &group("g")).unwrap();
        let frame = crate::frame::text("hi").into();
        assert_eq!(registry.fan_out("g", &frame, &[2]), 1);
        assert_eq!(registry.fan_out("nobody", &frame, &[]), 0);
        let mut batch = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(ra.recv_batch(&mut batch, 8)), 1);
        drop(b);
        registry.remove_connection(&a);
        assert!(rb.is_empty());
    }

    #[test]
    fn group_limit_per_connection() {
        let registry = Registry::new(2, None);
        let (a, _ra) = conn(1);
        registry.join(&a, &group("1")).unwrap();
        registry.join(&a, &group("2")).unwrap();
        assert_eq!(
            registry.join(&a, &group("3")),
            Err(JoinError::TooManyGroups(2))
        );
        // Re-joining a group it is in is still fine.
        assert_eq!(registry.join(&a, &group("2")), Ok(false));
    }

    #[test]
    fn removed_connection_cannot_join() {
        let registry = Registry::new(16, None);
        let (a, _ra) = conn(1);
        registry.add_connection(a.clone());
        registry.remove_connection(&a);
        assert_eq!(registry.join(&a, &group("g")), Err(JoinError::Closed));
        assert_eq!(registry.group_count(), 0);
        assert!(registry.connection(1).is_none());
    }
}
