//! Group history on a node: numbering and queueing a message under the
//! history's lock, joins with `positions` or `since`, and the task that
//! drops quiet groups' logs.
//!
//! With history off (`Limits::history_size` unset) none of this runs: sends
//! take the plain path, in runs, as before.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handle::NodeHandle;
use super::state::NodeState;
use crate::config::Limits;
use crate::error::{Error, JoinError, Result};
use crate::history::{History, HistorySettings, Position, joined_reply};
use crate::ids::{ConnId, GroupId};
use crate::queue::Frames;
use crate::registry::{ConnectionEntry, Delivery};
use crate::stats::NodeCounters;

/// How long a host's `history` read waits for the channel server.
const CLUSTER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The node's history when `limits` ask for one, with its expiry task.
pub(super) fn start_history(
    limits: &Limits,
    bus: &crate::bus::Bus,
    counters: &Arc<NodeCounters>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Option<Arc<History>> {
    let size = limits.history_size?;
    if bus.positions().is_some() {
        // The channel server keeps the cluster's history.
        return None;
    }
    let settings = HistorySettings {
        size,
        ttl: limits.history_ttl,
        max_bytes: limits.history_max_bytes,
        frames: true,
    };
    let history = Arc::new(History::new(settings, counters.clone()));
    let (expiring, shutdown) = (history.clone(), shutdown.clone());
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(expiring.expiry_period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => expiring.expire(),
            }
        }
    });
    Some(history)
}

impl NodeState {
    /// Sends `text` to the group (see [`NodeState::send_to_group`]); with
    /// history on, the message is numbered and kept first, members that
    /// asked for positions get it as a `message` object, and its offset is
    /// returned. `json`: `text` is a JSON value (not a string) as sent.
    pub(crate) fn send_to_group_at(
        &self,
        group: &GroupId,
        text: &str,
        json: bool,
        exclude: &[ConnId],
    ) -> (usize, Option<u64>) {
        if let Some(cluster) = self.bus.positions() {
            // Delivered here too when it comes back numbered.
            cluster.publish(group.as_str(), text, json, exclude, None);
            return (0, None);
        }
        let Some(history) = &self.history else {
            return (self.send_to_group(group.as_str(), text, exclude), None);
        };
        let raw: Frames = crate::frame::text(text).into();
        // Numbered and queued under one lock, so a member joining with
        // `since` finds this message either in its replay or live.
        let mut guard = history.lock();
        let (offset, positioned_frame) = guard.append(group, text, json);
        let delivered = match guard.positioned_members(group.as_str()) {
            None => {
                let members = self.registry.fan_out(group.as_str(), &raw, exclude);
                self.count_out(members, text.len());
                members
            }
            Some(positioned) => {
                let (raw_members, positioned_members) = self.registry.fan_out_with(
                    group.as_str(),
                    &raw,
                    &positioned_frame.clone().into(),
                    |id| match (exclude.contains(&id), positioned.contains(&id)) {
                        (true, _) => Delivery::Skip,
                        (false, true) => Delivery::Positioned,
                        (false, false) => Delivery::Raw,
                    },
                );
                self.count_out(raw_members, text.len());
                self.count_out(positioned_members, positioned_frame.len());
                raw_members + positioned_members
            }
        };
        drop(guard);
        self.bus.publish(group.as_str(), text);
        (delivered, Some(offset))
    }

    /// Delivers a client's run of messages to one group with history on
    /// this node: numbered and kept under one lock, then queued to each
    /// member as one item (raw or positioned), as runs are without history.
    fn send_numbered_run(&self, group: &GroupId, texts: &[(String, bool)]) {
        let Some(history) = &self.history else {
            return;
        };
        let mut raw = Vec::with_capacity(texts.len());
        let mut positioned = Vec::with_capacity(texts.len());
        let mut text_bytes = 0;
        let mut guard = history.lock();
        for (text, json) in texts {
            positioned.push(guard.append(group, text, *json).1);
            raw.push(crate::frame::text(text));
            text_bytes += text.len();
        }
        let (raw, positioned) = (Frames::many(raw), Frames::many(positioned));
        let (raw_members, positioned_members) = match guard.positioned_members(group.as_str()) {
            None => (self.registry.fan_out(group.as_str(), &raw, &[]), 0),
            Some(members) => self
                .registry
                .fan_out_with(group.as_str(), &raw, &positioned, |id| {
                    match members.contains(&id) {
                        true => Delivery::Positioned,
                        false => Delivery::Raw,
                    }
                }),
        };
        drop(guard);
        self.counters
            .count_out(raw_members * texts.len(), raw_members * text_bytes);
        self.counters.count_out(
            positioned_members * texts.len(),
            positioned_members * positioned.bytes(),
        );
        for (text, _) in texts {
            self.bus.publish(group.as_str(), text);
        }
    }

    /// Joins `conn` to `group` as a positioned member, and queues the
    /// `joined` reply, then (with `since`) the missed messages, ahead of
    /// any live one.
    ///
    /// # Errors
    ///
    /// The registry's [`JoinError`], nothing queued.
    pub(crate) fn join_positioned(
        &self,
        conn: &Arc<ConnectionEntry>,
        group: &GroupId,
        since: Option<&Position>,
    ) -> Result<(), JoinError> {
        let counters = &self.counters;
        if let Some(cluster) = self.bus.positions() {
            return cluster.join(conn, group, since);
        }
        let Some(history) = &self.history else {
            // No history: a plain member; the reply says so (epoch "").
            self.registry.join(conn, group)?;
            if since.is_some() {
                NodeCounters::add(&counters.history_not_recovered, 1);
            }
            let reply = joined_reply(group.as_str(), 0, "", since.map(|_| None));
            let _ = conn.outbox.push(crate::frame::text(&reply));
            return Ok(());
        };
        let mut guard = history.lock();
        self.registry.join(conn, group)?;
        guard.set_positioned(group, conn.id, true);
        let mut frames = Vec::new();
        let reply = match since {
            None => {
                let (last, epoch) = guard.position(group);
                joined_reply(group.as_str(), last, &epoch, None)
            }
            Some(since) => {
                let recovery = guard.recover(group, since);
                let missed = recovery.replay.as_ref().map(Vec::len);
                let counter = match missed {
                    Some(_) => &counters.history_recovered,
                    None => &counters.history_not_recovered,
                };
                NodeCounters::add(counter, 1);
                frames = recovery.replay.unwrap_or_default();
                joined_reply(group.as_str(), recovery.last, &recovery.epoch, Some(missed))
            }
        };
        let replayed: usize = frames.iter().map(|f| f.len()).sum();
        self.count_out(frames.len(), 0);
        self.counters.count_out(0, replayed);
        frames.insert(0, crate::frame::text(&reply));
        // Refused only for a client too slow for its own replay: it is
        // then closed (or, with the drop policy, loses it, counted).
        let _ = conn.outbox.push(Frames::many(frames));
        Ok(())
    }

    /// Takes `conn` out of `group`'s positioned members after it left.
    pub(crate) fn forget_positions(&self, conn: ConnId, groups: &[GroupId]) {
        if let Some(history) = &self.history {
            history.forget(conn, groups);
        }
        if let Some(cluster) = self.bus.positions() {
            cluster.forget(conn, groups);
        }
    }

    /// Whether group messages are numbered (history on this node, or kept
    /// by the channel server): sends then go one by one through
    /// [`NodeState::send_to_group_at`].
    pub(crate) fn numbers_messages(&self) -> bool {
        self.history.is_some() || self.bus.positions().is_some()
    }
}

impl NodeHandle {
    /// As [`NodeHandle::send_to_group`], and also returns the message's
    /// offset in the group's history (`None` with history off).
    ///
    /// In a cluster the message is numbered elsewhere and delivered here
    /// too when it comes back: the local count is 0. On a Redis bus the
    /// offset is Redis's answer: this blocks the calling thread for one
    /// round trip (at most 5 s; `None` when Redis did not take it): call it
    /// from a host thread (on a multi-threaded runtime it waits in
    /// `block_in_place`; on a current-thread runtime, which the wait would
    /// stall, it does not wait and returns `None`). On a channel-server bus the offset is
    /// `None`: the channel server numbers messages without answering the
    /// sender (a sender needing it reads `history`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGroup`] for an empty or over-long group id,
    /// [`Error::Stopped`] after stop.
    pub fn send_to_group_with_offset(
        &self,
        group: &str,
        text: &str,
        exclude: &[ConnId],
    ) -> Result<(usize, Option<u64>)> {
        let group = self.checked_group(group)?;
        let state = self.state();
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .map(|h| h.runtime_flavor());
        if let Some(cluster) = state.bus.positions()
            && state.bus.kind() == "redis"
            && runtime != Some(tokio::runtime::RuntimeFlavor::CurrentThread)
        {
            // Redis's script numbers it: one round trip to learn the offset.
            let (offset, answer) = std::sync::mpsc::sync_channel(1);
            cluster.publish(group.as_str(), text, false, exclude, Some(offset));
            let wait = || answer.recv_timeout(CLUSTER_READ_TIMEOUT).ok().flatten();
            let offset = match runtime {
                None => wait(),
                Some(_) => tokio::task::block_in_place(wait),
            };
            return Ok((0, offset));
        }
        Ok(state.send_to_group_at(&group, text, false, exclude))
    }

    /// The group's history: its epoch, and its kept messages after offset
    /// `since` (all kept ones when `None`), oldest first, at most `limit`,
    /// each with its offset. A group with no history yet gets a new epoch
    /// and no messages. In a cluster the channel server (or Redis) is
    /// asked: this blocks the calling thread until it answers (at most
    /// 5 s), so call it from a host thread, not from the node's runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the node keeps no history (`history_size`
    /// unset), [`Error::Channel`] when the channel server does not answer
    /// in time, [`Error::InvalidGroup`] for a bad group id,
    /// [`Error::Stopped`] after stop.
    pub fn history(
        &self,
        group: &str,
        since: Option<u64>,
        limit: usize,
    ) -> Result<(String, Vec<(u64, String)>)> {
        let group = self.checked_group(group)?;
        if let Some(cluster) = self.state().bus.positions() {
            return cluster
                .read(
                    group.as_str(),
                    since.unwrap_or(0),
                    limit,
                    CLUSTER_READ_TIMEOUT,
                )
                .ok_or_else(|| {
                    Error::Channel(format!(
                        "the {} bus did not answer in {} s",
                        self.state().bus.kind(),
                        CLUSTER_READ_TIMEOUT.as_secs()
                    ))
                });
        }
        let Some(history) = &self.state().history else {
            return Err(Error::Config(
                "this node keeps no group history: set history_size".into(),
            ));
        };
        Ok(history.read(&group, since, limit))
    }

    fn checked_group(&self, group: &str) -> Result<GroupId> {
        let state = self.state();
        if state.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        GroupId::new(group, state.limits.max_group_id_len).map_err(Error::InvalidGroup)
    }
}

/// A client's `send_to_group` commands read in a row for one group, when
/// messages are numbered: with history on this node they are numbered and
/// delivered together when the run ends (so a burst costs each member one
/// queue push, as without history); in a channel-server cluster each is
/// published at once, to be numbered by the channel server.
#[derive(Default)]
pub(super) struct NumberedRun {
    group: Option<GroupId>,
    texts: Vec<(String, bool)>,
}

impl NumberedRun {
    pub(super) fn add(&mut self, shared: &NodeState, group: GroupId, text: String, json: bool) {
        if shared.history.is_none() {
            shared.send_to_group_at(&group, &text, json, &[]);
            return;
        }
        if self.group.as_ref() != Some(&group) {
            self.flush(shared);
            self.group = Some(group);
        }
        self.texts.push((text, json));
    }

    /// Delivers the pending run.
    pub(super) fn flush(&mut self, shared: &NodeState) {
        if let Some(group) = self.group.take() {
            shared.send_numbered_run(&group, &self.texts);
            self.texts.clear();
        }
    }
}
