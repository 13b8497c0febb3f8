//! Users and presence in the registry: which local connections are bound
//! to each uid (so a uid's channel is subscribed exactly while the node
//! holds one of its connections, as a group's is), which members asked for
//! presence events, and what other nodes ask of this node's connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::{ConnectionEntry, Interest, Members, Registry};
use crate::error::JoinError;
use crate::ids::{ConnId, GroupId};
use crate::presence::wire::{CLUSTER_CHANNEL, NODE_PREFIX, UID_PREFIX, Wire, from_hex};
use crate::presence::{EVENT_BURST, Presence, Transition, Uid};
use crate::queue::Frames;
use crate::stats::NodeCounters;

/// The reserved group whose channel carries `uid`'s messages.
pub(crate) fn uid_channel(uid: &str) -> GroupId {
    GroupId::reserved(&format!("{UID_PREFIX}{uid}"))
}

/// The reserved group whose channel carries actions for the node `tag`.
pub(crate) fn node_channel(tag: u64) -> GroupId {
    GroupId::reserved(&format!("{NODE_PREFIX}{tag}"))
}

/// The reserved group of the cluster's presence traffic.
pub(crate) fn cluster_channel() -> GroupId {
    GroupId::reserved(CLUSTER_CHANNEL)
}

impl Registry {
    fn uid_shard(&self, uid: &str) -> &Mutex<HashMap<Uid, Members>> {
        &self.uids[self.shard_index(uid)]
    }

    fn watcher_shard(&self, group: &str) -> &Mutex<HashMap<GroupId, Members>> {
        &self.watchers[self.shard_index(group)]
    }

    /// The node's presence state, when it keeps one.
    pub(crate) fn presence(&self) -> Option<&Arc<Presence>> {
        self.presence.as_ref()
    }

    /// Subscribes the node to a reserved channel for its whole life (its
    /// own node channel, the cluster's presence channel).
    pub(crate) fn subscribe_reserved(&self, channel: GroupId) {
        self.notify(Interest::Subscribe(channel));
    }

    /// Binds `conn` to `uid` (`None`: unbinds it). Returns the uid it had.
    ///
    /// # Errors
    ///
    /// [`JoinError::Closed`] when the connection has closed.
    pub(crate) fn bind_uid(
        &self,
        conn: &Arc<ConnectionEntry>,
        uid: Option<Uid>,
    ) -> Result<Option<Uid>, JoinError> {
        let groups = conn.groups.lock();
        let Some(groups) = groups.as_ref() else {
            return Err(JoinError::Closed);
        };
        let mut bound = conn.uid.lock();
        if *bound == uid {
            return Ok(uid);
        }
        let old = std::mem::replace(&mut *bound, uid.clone());
        if let Some(old) = &old {
            self.remove_uid_member(old, conn.id);
        }
        if let Some(uid) = &uid {
            let mut shard = self.uid_shard(uid).lock();
            let members = shard.entry(uid.clone()).or_insert_with(|| {
                self.notify(Interest::Subscribe(uid_channel(uid)));
                Members::default()
            });
            members.insert(conn.id, conn.clone());
        }
        let mut transitions = Vec::new();
        if let Some(presence) = &self.presence {
            // The old uid's count went down in `remove_uid_member`.
            if let Some(uid) = &uid {
                presence.local_uid(uid, 1);
            }
            for group in groups {
                presence.local_group(group, old.as_ref(), -1, &mut transitions);
                presence.local_group(group, uid.as_ref(), 1, &mut transitions);
            }
        }
        drop(bound);
        self.emit(transitions);
        Ok(old)
    }

    /// The uid `conn` is bound to.
    pub(crate) fn uid_of(&self, conn: &ConnectionEntry) -> Option<Uid> {
        conn.uid.lock().clone()
    }

    /// Takes a connection out of its uid's local connections (and the uid's
    /// channel out of the node's interest when it was the last).
    pub(super) fn remove_uid_member(&self, uid: &Uid, id: ConnId) {
        let mut shard = self.uid_shard(uid).lock();
        let Some(members) = shard.get_mut(uid) else {
            return;
        };
        members.remove(&id);
        if members.is_empty() {
            shard.remove(uid);
            self.notify(Interest::Unsubscribe(uid_channel(uid)));
        }
        drop(shard);
        if let Some(presence) = &self.presence {
            presence.local_uid(uid, -1);
        }
    }

    /// Fan-out on a reserved channel: a uid's connections (the other
    /// reserved channels carry no frames for clients).
    pub(super) fn fan_out_reserved(
        &self,
        name: &str,
        frames: &Frames,
        exclude: &[ConnId],
    ) -> usize {
        let Some(uid) = name.strip_prefix(UID_PREFIX) else {
            return 0;
        };
        let shard = self.uid_shard(uid).lock();
        let Some(members) = shard.get(uid) else {
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

    /// Has `conn` (a member of `group`) receive the group's presence events.
    pub(crate) fn watch(&self, conn: &Arc<ConnectionEntry>, group: &GroupId) {
        let in_group = conn
            .groups
            .lock()
            .as_ref()
            .is_some_and(|g| g.contains(group));
        if in_group {
            self.watcher_shard(group.as_str())
                .lock()
                .entry(group.clone())
                .or_default()
                .insert(conn.id, conn.clone());
        }
    }

    pub(super) fn unwatch(&self, group: &str, id: ConnId) {
        let mut shard = self.watcher_shard(group).lock();
        if let Some(watchers) = shard.get_mut(group) {
            watchers.remove(&id);
            if watchers.is_empty() {
                shard.remove(group);
            }
        }
    }

    /// Sends presence events for `transitions` to the watchers of each
    /// group: one event per transition, or one `presence_changed` for a
    /// group with more than [`EVENT_BURST`] at once.
    pub(super) fn emit(&self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        let mut by_group: HashMap<GroupId, Vec<Transition>> = HashMap::new();
        for t in transitions {
            by_group.entry(t.group.clone()).or_default().push(t);
        }
        for (group, changes) in by_group {
            let shard = self.watcher_shard(group.as_str()).lock();
            let Some(watchers) = shard.get(&group) else {
                continue;
            };
            let texts: Vec<String> = if changes.len() > EVENT_BURST {
                NodeCounters::add(
                    &self.counters.presence_coalesced_events,
                    changes.len() as u64,
                );
                let joined = changes.iter().filter(|t| t.joined).count();
                vec![
                    serde_json::json!({
                        "type": "presence_changed",
                        "group_id": group.as_str(),
                        "joined": joined,
                        "left": changes.len() - joined,
                    })
                    .to_string(),
                ]
            } else {
                changes
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "type": if t.joined { "join" } else { "leave" },
                            "group_id": group.as_str(),
                            "uid": &*t.uid,
                        })
                        .to_string()
                    })
                    .collect()
            };
            let frames = Frames::many(texts.iter().map(|t| crate::frame::text(t)).collect());
            let bytes: usize = texts.iter().map(String::len).sum();
            let mut reached = 0;
            for conn in watchers.values() {
                if conn.outbox.push(frames.clone()).is_ok() {
                    reached += 1;
                }
            }
            self.counters
                .count_out(reached * texts.len(), reached * bytes);
        }
    }

    /// Every local member leaves `group`. Returns how many left.
    pub(crate) fn ungroup_local(&self, group: &str) -> usize {
        let members: Vec<Arc<ConnectionEntry>> = self
            .group_shard(group)
            .lock()
            .get(group)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        members.iter().filter(|c| self.leave(c, group)).count()
    }

    /// Handles a message on a reserved channel other than a uid's (the
    /// cluster's presence traffic, actions for this node's connections).
    /// Returns `false` for a uid's channel, whose messages are for clients.
    pub(crate) fn control(&self, channel: &str, text: &str) -> bool {
        if channel.starts_with(UID_PREFIX) {
            return false;
        }
        let Some(message) = Wire::decode(text) else {
            return true;
        };
        match message {
            Wire::Ungroup { g, n } => {
                if self.presence.as_ref().is_none_or(|p| p.node_id() != n) {
                    self.ungroup_local(&g);
                }
            }
            Wire::Send { c, t } => self.remote_action(c, |conn| {
                let ok = conn.outbox.push(crate::frame::text(&t)).is_ok();
                if ok {
                    self.counters.count_out(1, t.len());
                }
                ok
            }),
            Wire::SendBinary { c, h } => self.remote_action(c, |conn| {
                let Some(data) = from_hex(&h) else {
                    return false;
                };
                let ok = conn.outbox.push(crate::frame::binary(&data)).is_ok();
                if ok {
                    self.counters.count_out(1, data.len());
                }
                ok
            }),
            Wire::Close { c, code, r } => {
                self.remote_action(c, |conn| conn.outbox.push_close(code, &r).is_ok())
            }
            Wire::Join { c, g } => self.remote_action(c, |conn| {
                !matches!(
                    self.join(conn, &GroupId::from_bus(g.clone())),
                    Err(JoinError::TooManyGroups(_)) | Err(JoinError::Closed)
                )
            }),
            Wire::Leave { c, g } => self.remote_action(c, |conn| {
                self.leave(conn, &g);
                true
            }),
            Wire::Bind { c, u } => self.remote_action(c, |conn| {
                let uid = (!u.is_empty()).then(|| Uid::from(u.as_str()));
                self.bind_uid(conn, uid).is_ok()
            }),
            presence => {
                if let Some(p) = &self.presence {
                    let mut transitions = Vec::new();
                    p.apply(presence, Instant::now(), &mut transitions);
                    self.emit(transitions);
                }
            }
        }
        true
    }

    /// Runs an action another node asked for on a local connection; counts
    /// it when the connection is not open here or the action failed.
    /// Refused while another live node has this node's tag: the action may
    /// have been meant for that node's connection with the same id.
    fn remote_action(&self, id: ConnId, action: impl FnOnce(&Arc<ConnectionEntry>) -> bool) {
        let shared = self.presence.as_ref().is_some_and(|p| p.tag_shared());
        let done = !shared && self.connection(id).is_some_and(|conn| action(&conn));
        if !done {
            NodeCounters::add(&self.counters.remote_actions_failed, 1);
        }
    }

    /// Removes the shares of nodes whose lease ended, with their events.
    pub(crate) fn expire_presence(&self) {
        if let Some(presence) = &self.presence {
            let mut transitions = Vec::new();
            presence.expire(Instant::now(), &mut transitions);
            self.emit(transitions);
        }
    }
}
