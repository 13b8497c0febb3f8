//! Presence: which users (uids) are online and who is in each group, across
//! the whole cluster, answered from memory.
//!
//! Each node owns its **share**: its open connections, how many of them are
//! bound to each uid, and per group how many of them each uid (or no uid)
//! has there. A node replicates its share to every other node over the bus
//! (`wire.rs`: deltas with absolute values and sequence numbers, snapshots
//! on request, a heartbeat every third of the lease), and keeps every other
//! node's share with a **lease**: a share not refreshed within
//! `presence_lease` is removed whole, so a node that dies without a word
//! (SIGKILL, a cable pulled) leaves no ghost, and no counter exists that a
//! crash could leave wrong: totals are sums of live shares.
//!
//! Queries (`presence`, `is_uid_online`, `cluster_stats`) read the sums kept
//! here; they never ask another node and never wait on the network.
//!
//! A sum crossing zero for a `(group, uid)` is a **transition**: the uid's
//! first connection joined the group somewhere in the cluster, or its last
//! one left (or its node died). Events are per user, never per tab.
//!
//! One plain mutex guards it all, never held across `.await`; it is taken
//! by joins, leaves, binds and the bus's presence messages, never by a
//! group fan-out.

mod share;
pub(crate) mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::ids::GroupId;
use crate::stats::NodeCounters;
use share::{Share, Totals, set_conns, set_group, set_uid, uid_of_wire};
use wire::{GroupEntry, UidEntry, Wire};

/// Longest uid, in bytes.
pub const MAX_UID_LEN: usize = 256;
/// Most uids a presence answer lists unless the caller says otherwise.
pub const DEFAULT_MAX_UIDS: usize = 1000;
/// Most entries (uid counts and group entries) kept for all other nodes
/// together; more are dropped and counted (`presence_dropped_entries`).
pub(crate) const MAX_REMOTE_ENTRIES: usize = 4_000_000;
/// Most entries in one message on the bus, so that a snapshot of a large
/// share travels in frames of bounded size.
const ENTRIES_PER_MESSAGE: usize = 1000;
/// How soon this node asks the same node for a snapshot again.
const REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// More transitions than this for one group in one step (a snapshot
/// applied, a node's lease expired) are told as one `presence_changed`
/// event rather than one event each, so a node that restarts under a
/// group of 10,000 does not send 10,000 events to each member.
pub(crate) const EVENT_BURST: usize = 32;

/// Tags are 21 bits, so a connection id (tag above a 32-bit count) stays
/// below 2^53 and survives JavaScript and JSON readers.
const TAG_SPACE: u64 = (1 << 21) - 1;

/// The tag of the node with this id (never 0): the high bits of the
/// connection ids of a node of a cluster.
pub(crate) fn node_tag(node_id: u64) -> u64 {
    1 + node_id % TAG_SPACE
}

/// A user id: bound to connections by the host.
pub(crate) type Uid = Arc<str>;

/// Checks a uid: non-empty, at most [`MAX_UID_LEN`] bytes.
///
/// # Errors
///
/// Why it is not a uid.
pub(crate) fn check_uid(uid: &str) -> Result<(), String> {
    if uid.is_empty() {
        return Err("a uid must not be empty".into());
    }
    if uid.len() > MAX_UID_LEN {
        return Err(format!(
            "a uid is at most {MAX_UID_LEN} bytes, this one is {}",
            uid.len()
        ));
    }
    Ok(())
}

/// Who is in a group, across the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GroupPresence {
    /// Connections in the group (with or without a uid).
    pub connections: u64,
    /// Distinct uids among them.
    pub users: u64,
    /// Those uids, sorted, at most as many as asked for.
    pub uids: Vec<String>,
    /// Whether `uids` was cut to the number asked for.
    pub truncated: bool,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ClusterStats {
    /// Nodes whose share this node holds, itself included.
    pub nodes: u64,
    /// Open connections.
    pub connections: u64,
    /// Distinct uids bound to a connection.
    pub users: u64,
    /// Groups with at least one member.
    pub groups: u64,
}

/// A uid's first connection joined a group somewhere (`joined`), or its
/// last one left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) group: GroupId,
    pub(crate) uid: Uid,
    pub(crate) joined: bool,
}

/// Another node's share and what is known of its messages.
struct Peer {
    share: Share,
    /// Its last message's sequence number.
    seq: u64,
    /// When its share goes, unless refreshed.
    expires: Instant,
    /// Its lease, as its heartbeats say (this node's until one arrives).
    lease: Duration,
    /// A snapshot being received: the share so far and its last part.
    pending: Option<(Share, u64)>,
    /// When this node last asked it for a snapshot.
    last_request: Option<Instant>,
}

struct Inner {
    local: Share,
    dirty_conns: bool,
    dirty_uids: HashSet<Uid>,
    dirty_groups: HashSet<(GroupId, Option<Uid>)>,
    /// The last sequence number this node used.
    seq: u64,
    /// A snapshot of this node's share is owed to the cluster.
    snapshot_wanted: bool,
    /// Requests for snapshots to send.
    requests: Vec<Wire>,
    remotes: HashMap<u64, Peer>,
    remote_entries: usize,
    totals: Totals,
}

/// This node's presence state: its own share, every other node's, and
/// their sums.
pub(crate) struct Presence {
    node_id: u64,
    lease: Duration,
    inner: Mutex<Inner>,
    /// Wakes the node's presence task: something is owed to the bus.
    wake: tokio::sync::Notify,
    counters: Arc<NodeCounters>,
}

impl Presence {
    pub(crate) fn new(node_id: u64, lease: Duration, counters: Arc<NodeCounters>) -> Self {
        Presence {
            node_id,
            lease,
            inner: Mutex::new(Inner {
                local: Share::default(),
                dirty_conns: false,
                dirty_uids: HashSet::new(),
                dirty_groups: HashSet::new(),
                seq: 0,
                snapshot_wanted: false,
                requests: Vec::new(),
                remotes: HashMap::new(),
                remote_entries: 0,
                totals: Totals::default(),
            }),
            wake: tokio::sync::Notify::new(),
            counters,
        }
    }

    /// This node's id on the bus.
    pub(crate) fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The lease of a node's share.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// Waits until something is owed to the bus.
    pub(crate) async fn wanted(&self) {
        self.wake.notified().await;
    }

    /// Tells the cluster this node exists (its whole share) and asks every
    /// node for its share: when the node reaches the bus, at start and
    /// after an outage (what was published meanwhile was lost).
    pub(crate) fn announce(&self) {
        let mut inner = self.inner.lock();
        inner.snapshot_wanted = true;
        inner.requests.push(Wire::Request {
            n: self.node_id,
            to: 0,
            l: self.lease.as_millis() as u64,
        });
        self.wake.notify_one();
    }

    /// Sends this node's whole share again: some of its messages were
    /// dropped on the way to the bus (a choked link, a full publish
    /// bound), so the others' view of it may be wrong until they get it.
    pub(crate) fn resend(&self) {
        self.inner.lock().snapshot_wanted = true;
        self.wake.notify_one();
    }

    /// Asks every node for its whole share: messages from the bus were
    /// dropped before this node read them, some of them perhaps presence.
    pub(crate) fn ask_everyone(&self) {
        let mut inner = self.inner.lock();
        NodeCounters::add(&self.counters.presence_resyncs, 1);
        inner.requests.push(Wire::Request {
            n: self.node_id,
            to: 0,
            l: self.lease.as_millis() as u64,
        });
        self.wake.notify_one();
    }

    /// A local connection opened (`+1`) or closed (`-1`).
    pub(crate) fn local_connection(&self, delta: i64) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let n = inner.local.conns.saturating_add_signed(delta);
        set_conns(&mut inner.local, &mut inner.totals, n);
        inner.dirty_conns = true;
        self.wake.notify_one();
    }

    /// A local connection was bound to `uid` (`+1`) or unbound (`-1`).
    pub(crate) fn local_uid(&self, uid: &Uid, delta: i64) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let n = inner
            .local
            .uids
            .get(uid)
            .copied()
            .unwrap_or(0)
            .saturating_add_signed(delta);
        set_uid(&mut inner.local, &mut inner.totals, uid, n);
        inner.dirty_uids.insert(uid.clone());
        self.wake.notify_one();
    }

    /// A local connection with `uid` joined (`+1`) or left (`-1`) `group`.
    pub(crate) fn local_group(
        &self,
        group: &GroupId,
        uid: Option<&Uid>,
        delta: i64,
        out: &mut Vec<Transition>,
    ) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let n = inner
            .local
            .groups
            .get(group)
            .and_then(|g| g.get(&uid.cloned()))
            .copied()
            .unwrap_or(0)
            .saturating_add_signed(delta);
        set_group(&mut inner.local, &mut inner.totals, group, uid, n, out);
        inner.dirty_groups.insert((group.clone(), uid.cloned()));
        self.wake.notify_one();
    }

    /// What this node owes the bus now: snapshot requests, its changes as
    /// deltas, and a snapshot of its share when one was asked for.
    pub(crate) fn take_outgoing(&self) -> Vec<Wire> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let mut out = std::mem::take(&mut inner.requests);
        let conns = inner.local.conns;
        if inner.snapshot_wanted {
            inner.snapshot_wanted = false;
            inner.dirty_conns = false;
            inner.dirty_uids.clear();
            inner.dirty_groups.clear();
            let uids: Vec<UidEntry> = inner
                .local
                .uids
                .iter()
                .map(|(u, n)| (u.to_string(), *n))
                .collect();
            let groups: Vec<GroupEntry> = inner
                .local
                .groups
                .iter()
                .flat_map(|(g, entries)| {
                    entries.iter().map(move |(u, n)| {
                        (
                            g.as_str().to_owned(),
                            u.as_deref().unwrap_or("").to_owned(),
                            *n,
                        )
                    })
                })
                .collect();
            let parts = chunks(uids, groups);
            let last = parts.len() - 1;
            for (i, (u, g)) in parts.into_iter().enumerate() {
                inner.seq += 1;
                out.push(Wire::Snapshot {
                    n: self.node_id,
                    s: inner.seq,
                    first: i == 0,
                    last: i == last,
                    c: conns,
                    u,
                    g,
                });
            }
            return out;
        }
        if !inner.dirty_conns && inner.dirty_uids.is_empty() && inner.dirty_groups.is_empty() {
            return out;
        }
        inner.dirty_conns = false;
        let local = &inner.local;
        let uids: Vec<UidEntry> = inner
            .dirty_uids
            .drain()
            .map(|u| {
                let n = local.uids.get(&u).copied().unwrap_or(0);
                (u.to_string(), n)
            })
            .collect();
        let groups: Vec<GroupEntry> = inner
            .dirty_groups
            .drain()
            .map(|(g, u)| {
                let n = local
                    .groups
                    .get(&g)
                    .and_then(|e| e.get(&u))
                    .copied()
                    .unwrap_or(0);
                (
                    g.as_str().to_owned(),
                    u.as_deref().unwrap_or("").to_owned(),
                    n,
                )
            })
            .collect();
        for (u, g) in chunks(uids, groups) {
            inner.seq += 1;
            out.push(Wire::Delta {
                n: self.node_id,
                s: inner.seq,
                c: conns,
                u,
                g,
            });
        }
        out
    }

    /// The heartbeat that refreshes this node's lease on the others.
    pub(crate) fn heartbeat(&self) -> Wire {
        Wire::Heartbeat {
            n: self.node_id,
            s: self.inner.lock().seq,
            l: self.lease.as_millis() as u64,
        }
    }

    /// Applies another node's presence message (this node's own echo is
    /// ignored). Transitions go to `out`; what it owes the bus in answer (a
    /// snapshot, a request for one) wakes the presence task.
    pub(crate) fn apply(&self, message: Wire, now: Instant, out: &mut Vec<Transition>) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let sender = match &message {
            Wire::Delta { n, .. }
            | Wire::Snapshot { n, .. }
            | Wire::Heartbeat { n, .. }
            | Wire::Request { n, .. }
            | Wire::Bye { n }
            | Wire::Ungroup { n, .. } => *n,
            _ => return,
        };
        if sender == self.node_id {
            return;
        }
        match message {
            Wire::Request { to, l, .. } => {
                if to == 0 || to == self.node_id {
                    inner.snapshot_wanted = true;
                    self.wake.notify_one();
                }
                // A new node asks everyone: it exists now, with its lease.
                let peer = self.peer(inner, sender, now);
                if l >= 1000 {
                    peer.lease = Duration::from_millis(l);
                    peer.expires = now + peer.lease;
                }
            }
            Wire::Bye { .. } => {
                if let Some(peer) = inner.remotes.remove(&sender) {
                    self.remove_share(inner, peer.share, out);
                }
            }
            Wire::Heartbeat { s, l, .. } => {
                let peer = self.peer(inner, sender, now);
                if l >= 1000 {
                    peer.lease = Duration::from_millis(l);
                    peer.expires = now + peer.lease;
                }
                if peer.seq != s && peer.pending.is_none() {
                    self.ask(inner, sender, now);
                }
            }
            Wire::Delta { s, c, u, g, .. } => {
                let peer = self.peer(inner, sender, now);
                let gap = s != peer.seq + 1;
                peer.seq = s;
                if gap {
                    self.ask(inner, sender, now);
                }
                self.apply_entries(inner, sender, c, &u, &g, out);
            }
            Wire::Snapshot {
                s,
                first,
                last,
                c,
                u,
                g,
                ..
            } => {
                let peer = self.peer(inner, sender, now);
                let mut pending = match (first, peer.pending.take()) {
                    (true, _) => (Share::default(), s),
                    (false, Some(p)) if p.1 + 1 == s => (p.0, s),
                    _ => {
                        // A part missing: ask again (the deltas still apply).
                        self.ask(inner, sender, now);
                        return;
                    }
                };
                pending.0.conns = c;
                for (uid, n) in u {
                    if n > 0 {
                        pending.0.uids.insert(uid.into(), n);
                    }
                }
                for (group, uid, n) in g {
                    if n > 0 {
                        pending
                            .0
                            .groups
                            .entry(GroupId::from_bus(group))
                            .or_default()
                            .insert(uid_of_wire(&uid), n);
                    }
                }
                if !last {
                    peer.pending = Some(pending);
                    return;
                }
                peer.seq = s;
                let fresh = pending.0;
                self.replace_share(inner, sender, fresh, out);
            }
            _ => {}
        }
    }

    /// The known peer `id`, its lease refreshed (created when new).
    fn peer<'a>(&self, inner: &'a mut Inner, id: u64, now: Instant) -> &'a mut Peer {
        let peer = inner.remotes.entry(id).or_insert_with(|| {
            if node_tag(id) == node_tag(self.node_id) {
                // One chance in about two million per pair of nodes: their
                // connection ids overlap. Actions routed to either are
                // refused meanwhile (`tag_shared`); restarting either node
                // draws a new tag.
                tracing::error!(
                    node = id,
                    tag = node_tag(id),
                    "another node has this node's tag: actions on their connections from other nodes are refused until one of them restarts"
                );
            }
            Peer {
                share: Share::default(),
                seq: 0,
                expires: now,
                lease: self.lease,
                pending: None,
                last_request: None,
            }
        });
        peer.expires = now + peer.lease;
        peer
    }

    /// Asks node `id` for a snapshot, at most once per [`REQUEST_INTERVAL`].
    fn ask(&self, inner: &mut Inner, id: u64, now: Instant) {
        let Some(peer) = inner.remotes.get_mut(&id) else {
            return;
        };
        if peer
            .last_request
            .is_some_and(|at| now.duration_since(at) < REQUEST_INTERVAL)
        {
            return;
        }
        peer.last_request = Some(now);
        NodeCounters::add(&self.counters.presence_resyncs, 1);
        inner.requests.push(Wire::Request {
            n: self.node_id,
            to: id,
            l: self.lease.as_millis() as u64,
        });
        self.wake.notify_one();
    }

    fn apply_entries(
        &self,
        inner: &mut Inner,
        id: u64,
        conns: u64,
        uids: &[UidEntry],
        groups: &[GroupEntry],
        out: &mut Vec<Transition>,
    ) {
        let Some(peer) = inner.remotes.get_mut(&id) else {
            return;
        };
        set_conns(&mut peer.share, &mut inner.totals, conns);
        for (uid, n) in uids {
            let uid: Uid = uid.as_str().into();
            let new_key = *n > 0 && !peer.share.uids.contains_key(&uid);
            if new_key && inner.remote_entries >= MAX_REMOTE_ENTRIES {
                NodeCounters::add(&self.counters.presence_dropped_entries, 1);
                continue;
            }
            let change = set_uid(&mut peer.share, &mut inner.totals, &uid, *n);
            inner.remote_entries = inner.remote_entries.saturating_add_signed(change);
        }
        for (group, uid, n) in groups {
            let group = GroupId::from_bus(group.clone());
            let uid = uid_of_wire(uid);
            let new_key = *n > 0
                && !peer
                    .share
                    .groups
                    .get(&group)
                    .is_some_and(|e| e.contains_key(&uid));
            if new_key && inner.remote_entries >= MAX_REMOTE_ENTRIES {
                NodeCounters::add(&self.counters.presence_dropped_entries, 1);
                continue;
            }
            let change = set_group(
                &mut peer.share,
                &mut inner.totals,
                &group,
                uid.as_ref(),
                *n,
                out,
            );
            inner.remote_entries = inner.remote_entries.saturating_add_signed(change);
        }
    }

    /// Replaces node `id`'s share with `fresh`: only what differs changes
    /// the sums (and makes transitions).
    fn replace_share(&self, inner: &mut Inner, id: u64, fresh: Share, out: &mut Vec<Transition>) {
        let Some(peer) = inner.remotes.get_mut(&id) else {
            return;
        };
        // Zero what the old share has and the new one lacks...
        let mut uids: Vec<UidEntry> = peer
            .share
            .uids
            .keys()
            .filter(|u| !fresh.uids.contains_key(*u))
            .map(|u| (u.to_string(), 0))
            .collect();
        let mut groups: Vec<GroupEntry> = Vec::new();
        for (g, entries) in &peer.share.groups {
            let new = fresh.groups.get(g);
            for u in entries.keys() {
                if !new.is_some_and(|n| n.contains_key(u)) {
                    groups.push((
                        g.as_str().to_owned(),
                        u.as_deref().unwrap_or("").to_owned(),
                        0,
                    ));
                }
            }
        }
        // ...and set what the new one has.
        uids.extend(fresh.uids.iter().map(|(u, n)| (u.to_string(), *n)));
        for (g, entries) in &fresh.groups {
            for (u, n) in entries {
                groups.push((
                    g.as_str().to_owned(),
                    u.as_deref().unwrap_or("").to_owned(),
                    *n,
                ));
            }
        }
        self.apply_entries(inner, id, fresh.conns, &uids, &groups, out);
    }

    /// Takes a whole share out of the sums.
    fn remove_share(&self, inner: &mut Inner, share: Share, out: &mut Vec<Transition>) {
        inner.remote_entries = inner.remote_entries.saturating_sub(share.entries());
        let mut share = share;
        set_conns(&mut share, &mut inner.totals, 0);
        let uids: Vec<Uid> = share.uids.keys().cloned().collect();
        for uid in uids {
            set_uid(&mut share, &mut inner.totals, &uid, 0);
        }
        let entries: Vec<(GroupId, Option<Uid>)> = share
            .groups
            .iter()
            .flat_map(|(g, e)| e.keys().map(move |u| (g.clone(), u.clone())))
            .collect();
        for (group, uid) in entries {
            set_group(&mut share, &mut inner.totals, &group, uid.as_ref(), 0, out);
        }
    }

    /// Removes the shares of nodes whose lease ended before `now`.
    pub(crate) fn expire(&self, now: Instant, out: &mut Vec<Transition>) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let expired: Vec<u64> = inner
            .remotes
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(peer) = inner.remotes.remove(&id) {
                NodeCounters::add(&self.counters.presence_expired_nodes, 1);
                tracing::warn!(
                    node = id,
                    lease_ms = peer.lease.as_millis() as u64,
                    "a node's presence lease ended without news from it: its connections are gone"
                );
                self.remove_share(inner, peer.share, out);
            }
        }
    }

    /// Live nodes (this one included) whose connection ids carry `tag`:
    /// 0 for no node, 1 for the one a routed action reaches, more after a
    /// collision of tags (see [`Presence::tag_shared`]).
    pub(crate) fn nodes_with_tag(&self, tag: u64) -> usize {
        let inner = self.inner.lock();
        usize::from(node_tag(self.node_id) == tag)
            + inner
                .remotes
                .keys()
                .filter(|id| node_tag(**id) == tag)
                .count()
    }

    /// Whether a live node has this node's tag. Their connection ids then
    /// overlap: an action routed to either's node channel could reach the
    /// other's connection with the same count, so both refuse routed
    /// actions (counted in `remote_actions_failed`), and every node refuses
    /// to route to that tag, until one of them leaves the cluster.
    pub(crate) fn tag_shared(&self) -> bool {
        self.nodes_with_tag(node_tag(self.node_id)) > 1
    }

    /// Who is in `group`, cluster-wide, listing at most `max_uids` uids.
    pub(crate) fn group(&self, group: &str, max_uids: usize) -> GroupPresence {
        let inner = self.inner.lock();
        let Some(total) = inner.totals.groups.get(group) else {
            return GroupPresence::default();
        };
        let mut uids: Vec<String> = total
            .uids
            .keys()
            .take(max_uids)
            .map(|u| u.to_string())
            .collect();
        uids.sort_unstable();
        GroupPresence {
            connections: total.conns,
            users: total.uids.len() as u64,
            truncated: uids.len() < total.uids.len(),
            uids,
        }
    }

    /// Whether `uid` has a connection anywhere in the cluster.
    pub(crate) fn is_online(&self, uid: &str) -> bool {
        self.inner.lock().totals.uids.contains_key(uid)
    }

    /// Counts over the cluster.
    pub(crate) fn cluster_stats(&self) -> ClusterStats {
        let inner = self.inner.lock();
        ClusterStats {
            nodes: 1 + inner.remotes.len() as u64,
            connections: inner.totals.conns,
            users: inner.totals.uids.len() as u64,
            groups: inner.totals.groups.len() as u64,
        }
    }
}

/// Cuts entries into messages of at most [`ENTRIES_PER_MESSAGE`]; always at
/// least one (a share may be empty).
fn chunks(uids: Vec<UidEntry>, groups: Vec<GroupEntry>) -> Vec<(Vec<UidEntry>, Vec<GroupEntry>)> {
    let mut parts = Vec::new();
    let mut uids = uids.into_iter().peekable();
    let mut groups = groups.into_iter().peekable();
    loop {
        let u: Vec<UidEntry> = uids.by_ref().take(ENTRIES_PER_MESSAGE).collect();
        let g: Vec<GroupEntry> = groups
            .by_ref()
            .take(ENTRIES_PER_MESSAGE - u.len())
            .collect();
        parts.push((u, g));
        if uids.peek().is_none() && groups.peek().is_none() {
            return parts;
        }
    }
}

#[cfg(test)]
mod tests;
