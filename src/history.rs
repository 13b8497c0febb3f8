//! Group history: each group's recent messages with their positions, so a
//! member that reconnects can ask for what it missed (`add_group` with
//! `since`) and be told honestly whether it got all of it.
//!
//! A position is an offset and an epoch. Offsets of a group start at 1 and
//! grow by one per message. The epoch names one unbroken run of offsets: it
//! is chosen when the group's log is created (a random part chosen at the
//! node's start, then a generation counter), so a log that was dropped (the
//! group was quiet for `history_ttl`, evicted, or the node restarted) comes
//! back under a new epoch and an old position can never replay the wrong
//! messages: it answers `recovered: false`.
//!
//! Memory is bounded three ways: `history_size` messages per group, groups
//! quiet for `history_ttl` lose their log, and the node's total
//! (`history_max_bytes`) evicts the least recently written groups' oldest
//! messages first, counted in `history_evictions`.
//!
//! Everything sits behind one plain mutex, never held across `.await`. The
//! node numbers a message and queues it to the group's members while it
//! holds the lock, and a member joining with `since` is registered and sent
//! its replay under the same lock: a message is then either in the replay
//! or delivered live, never both and never neither.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};

use crate::ids::{ConnId, GroupId};
use crate::stats::NodeCounters;

/// Bytes counted for each kept message beyond its text and frame (the
/// entry, its place in the ring), so that many tiny messages still count.
const ENTRY_OVERHEAD: usize = 64;

/// How a node keeps history (`Limits::history_size` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistorySettings {
    /// Messages kept per group.
    pub(crate) size: usize,
    /// A group with no message for this long loses its log.
    pub(crate) ttl: Duration,
    /// Most bytes of history the node keeps, all groups together.
    pub(crate) max_bytes: usize,
    /// Keep each message's positioned websocket frame (a node); a channel
    /// server keeps only the data.
    pub(crate) frames: bool,
}

/// A client's last known position, from `add_group`'s `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The offset of the last message the client saw (0: none).
    pub offset: u64,
    /// The epoch that offset belongs to.
    pub epoch: String,
}

/// One kept message.
struct Entry {
    offset: u64,
    /// The text raw members received.
    text: Arc<str>,
    /// The `message` object positioned members received, encoded once.
    frame: Bytes,
}

impl Entry {
    fn cost(&self) -> usize {
        self.text.len() + self.frame.len() + ENTRY_OVERHEAD
    }
}

/// One group's log.
struct Log {
    /// Names this run of offsets.
    epoch: Arc<str>,
    /// The offset of the group's latest message (0: none yet).
    last: u64,
    /// The kept messages, oldest first, offsets consecutive.
    entries: VecDeque<Entry>,
    /// When the log was last written (or created).
    touched: Instant,
    /// Its key in `Inner::recency`.
    recency: u64,
}

/// Everything under the lock.
#[derive(Default)]
struct Inner {
    logs: HashMap<GroupId, Log>,
    /// Logs by last write, oldest first: the order of eviction and expiry.
    recency: BTreeMap<u64, GroupId>,
    /// Next recency key.
    next_recency: u64,
    /// Next epoch generation.
    generation: u64,
    /// Bytes kept now.
    bytes: usize,
    /// Connections that take this group's messages as positioned `message`
    /// objects (they joined with `positions` or `since`).
    positioned: HashMap<GroupId, HashSet<ConnId>>,
}

/// A node's group history.
pub(crate) struct History {
    settings: HistorySettings,
    /// The random part of every epoch this node hands out.
    node_epoch: String,
    inner: Mutex<Inner>,
    /// Where evictions and expiries are counted.
    counters: Arc<NodeCounters>,
}

/// What a join with `since` found.
pub(crate) struct Recovery {
    /// The group's latest offset.
    pub(crate) last: u64,
    /// The group's epoch.
    pub(crate) epoch: Arc<str>,
    /// The missed messages' frames, in order, when all of them are kept;
    /// `None` when they cannot all be given.
    pub(crate) replay: Option<Vec<Bytes>>,
}

impl History {
    pub(crate) fn new(settings: HistorySettings, counters: Arc<NodeCounters>) -> Self {
        History {
            settings,
            node_epoch: new_epoch(),
            inner: Mutex::default(),
            counters,
        }
    }

    /// Takes the lock; see the module's doc for what must happen under it.
    pub(crate) fn lock(&self) -> HistoryGuard<'_> {
        HistoryGuard {
            history: self,
            inner: self.inner.lock(),
        }
    }

    /// Drops the logs of groups quiet for longer than `history_ttl`.
    pub(crate) fn expire(&self) {
        self.lock().expire(Instant::now());
    }

    /// How often [`History::expire`] should run.
    pub(crate) fn expiry_period(&self) -> Duration {
        (self.settings.ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(30))
    }

    /// Bytes of history kept now.
    pub(crate) fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// The group's epoch and its kept messages after `since` (all kept
    /// ones when `None`), oldest first, at most `limit`.
    pub(crate) fn read(
        &self,
        group: &GroupId,
        since: Option<u64>,
        limit: usize,
    ) -> (String, Vec<(u64, String)>) {
        let mut guard = self.lock();
        let log = guard.log(group);
        let after = since.unwrap_or(0);
        let messages = log
            .entries
            .iter()
            .filter(|e| e.offset > after)
            .take(limit)
            .map(|e| (e.offset, e.text.to_string()))
            .collect();
        (log.epoch.to_string(), messages)
    }
}

/// The history's lock, held while a message is numbered and queued, or a
/// member joins.
pub(crate) struct HistoryGuard<'a> {
    history: &'a History,
    inner: MutexGuard<'a, Inner>,
}

impl HistoryGuard<'_> {
    /// The group's log, created (under a new epoch) when it has none or its
    /// log expired.
    fn log(&mut self, group: &GroupId) -> &mut Log {
        let now = Instant::now();
        let ttl = self.history.settings.ttl;
        let expired = self
            .inner
            .logs
            .get(group)
            .is_some_and(|log| now.duration_since(log.touched) >= ttl);
        if expired {
            self.drop_log(group.as_str());
        }
        let inner = &mut *self.inner;
        if !inner.logs.contains_key(group) {
            inner.generation += 1;
            let recency = inner.next_recency;
            inner.next_recency += 1;
            inner.recency.insert(recency, group.clone());
            let epoch = format!("{}-{}", self.history.node_epoch, inner.generation);
            inner.logs.insert(
                group.clone(),
                Log {
                    epoch: epoch.into(),
                    last: 0,
                    entries: VecDeque::new(),
                    touched: now,
                    recency,
                },
            );
        }
        inner.logs.get_mut(group).expect("inserted above")
    }

    fn drop_log(&mut self, group: &str) {
        if let Some(log) = self.inner.logs.remove(group) {
            self.inner.recency.remove(&log.recency);
            let freed: usize = log.entries.iter().map(Entry::cost).sum();
            self.inner.bytes -= freed;
        }
    }

    /// The group's latest offset and its epoch.
    pub(crate) fn position(&mut self, group: &GroupId) -> (u64, Arc<str>) {
        let log = self.log(group);
        (log.last, log.epoch.clone())
    }

    /// Numbers a message, keeps it, and returns its offset with the
    /// positioned members' frame.
    pub(crate) fn append(&mut self, group: &GroupId, text: &str, json: bool) -> (u64, Bytes) {
        let size = self.history.settings.size;
        let frames = self.history.settings.frames;
        let log = self.log(group);
        log.last += 1;
        let offset = log.last;
        let frame = match frames {
            true => positioned_frame(group.as_str(), offset, text, json),
            false => Bytes::new(),
        };
        let entry = Entry {
            offset,
            text: text.into(),
            frame: frame.clone(),
        };
        let mut freed = 0;
        let mut evicted = 0;
        log.entries.push_back(entry);
        while log.entries.len() > size {
            if let Some(old) = log.entries.pop_front() {
                freed += old.cost();
            }
        }
        let added = log.entries.back().map_or(0, Entry::cost);
        log.touched = Instant::now();
        let old_recency = log.recency;
        let inner = &mut *self.inner;
        let recency = inner.next_recency;
        inner.next_recency += 1;
        inner.recency.remove(&old_recency);
        inner.recency.insert(recency, group.clone());
        inner.logs.get_mut(group).expect("created above").recency = recency;
        inner.bytes = inner.bytes + added - freed;
        // Over the node's bound: the least recently written groups give up
        // their oldest messages first (the group just written is the most
        // recent, so it is touched last, and keeps at least this message).
        while inner.bytes > self.history.settings.max_bytes {
            let Some(victim) = inner
                .recency
                .values()
                .find(|g| inner.logs.get(*g).is_some_and(|l| !l.entries.is_empty()))
                .cloned()
            else {
                break;
            };
            let log = inner.logs.get_mut(&victim).expect("in recency");
            if &victim == group && log.entries.len() == 1 {
                break;
            }
            if let Some(old) = log.entries.pop_front() {
                inner.bytes -= old.cost();
                evicted += 1;
            }
        }
        if evicted > 0 {
            NodeCounters::add(&self.history.counters.history_evictions, evicted);
        }
        (offset, frame)
    }

    /// What a member joining with `since` can be given.
    pub(crate) fn recover(&mut self, group: &GroupId, since: &Position) -> Recovery {
        let log = self.log(group);
        let (last, epoch) = (log.last, log.epoch.clone());
        let replay = (*log.epoch == *since.epoch && since.offset <= last)
            .then(|| {
                let first_kept = log.entries.front().map_or(last + 1, |e| e.offset);
                // Every message after `since.offset` must still be kept.
                (first_kept <= since.offset + 1).then(|| {
                    log.entries
                        .iter()
                        .filter(|e| e.offset > since.offset)
                        .map(|e| e.frame.clone())
                        .collect::<Vec<_>>()
                })
            })
            .flatten();
        Recovery {
            last,
            epoch,
            replay,
        }
    }

    /// As [`HistoryGuard::recover`], with the kept texts rather than the
    /// frames (a channel server replays data).
    pub(crate) fn recover_texts(
        &mut self,
        group: &GroupId,
        since: &Position,
    ) -> (u64, Arc<str>, Option<Vec<Arc<str>>>) {
        let log = self.log(group);
        let (last, epoch) = (log.last, log.epoch.clone());
        let first_kept = log.entries.front().map_or(last + 1, |e| e.offset);
        let complete =
            *log.epoch == *since.epoch && since.offset <= last && first_kept <= since.offset + 1;
        let texts = complete.then(|| {
            log.entries
                .iter()
                .filter(|e| e.offset > since.offset)
                .map(|e| e.text.clone())
                .collect()
        });
        (last, epoch, texts)
    }

    /// Drops the logs of groups quiet for `history_ttl` as of `now`.
    fn expire(&mut self, now: Instant) {
        let ttl = self.history.settings.ttl;
        let mut expired = Vec::new();
        for group in self.inner.recency.values() {
            match self.inner.logs.get(group) {
                Some(log) if now.duration_since(log.touched) >= ttl => expired.push(group.clone()),
                // In recency order: the rest were written later.
                _ => break,
            }
        }
        for group in expired {
            self.drop_log(group.as_str());
        }
    }

    /// Whether `group` has positioned members.
    pub(crate) fn positioned_members(&self, group: &str) -> Option<&HashSet<ConnId>> {
        self.inner.positioned.get(group).filter(|s| !s.is_empty())
    }

    /// Marks `conn` as a positioned member of `group` (`true`), or a raw
    /// one (`false`).
    pub(crate) fn set_positioned(&mut self, group: &GroupId, conn: ConnId, positioned: bool) {
        if positioned {
            self.inner
                .positioned
                .entry(group.clone())
                .or_default()
                .insert(conn);
        } else if let Some(set) = self.inner.positioned.get_mut(group.as_str()) {
            set.remove(&conn);
            if set.is_empty() {
                self.inner.positioned.remove(group.as_str());
            }
        }
    }
}

impl History {
    /// Forgets a closing connection's positioned memberships.
    pub(crate) fn forget(&self, conn: ConnId, groups: &[GroupId]) {
        let mut guard = self.lock();
        for group in groups {
            guard.set_positioned(group, conn, false);
        }
    }
}

/// The frame positioned members receive:
/// `{"type":"message","group_id":G,"offset":n,"message":M}`, `M` the text
/// as a JSON string, or as the JSON value it is when `json`.
pub(crate) fn positioned_frame(group: &str, offset: u64, text: &str, json: bool) -> Bytes {
    let group = serde_json::to_string(group).expect("a string serializes");
    let message = match json {
        true => text.to_owned(),
        false => serde_json::to_string(text).expect("a string serializes"),
    };
    crate::frame::text(&format!(
        r#"{{"type":"message","group_id":{group},"offset":{offset},"message":{message}}}"#
    ))
}

/// The `joined` reply to `add_group` with `positions` or `since`:
/// `recovery` is `None` without `since`, else the number of missed messages
/// replayed (`Some(Some(k))`) or that they could not be (`Some(None)`).
pub(crate) fn joined_reply(
    group: &str,
    offset: u64,
    epoch: &str,
    recovery: Option<Option<usize>>,
) -> String {
    let mut reply = serde_json::json!({
        "type": "joined",
        "group_id": group,
        "offset": offset,
        "epoch": epoch,
    });
    if let (Some(recovery), Some(object)) = (recovery, reply.as_object_mut()) {
        object.insert("recovered".into(), recovery.is_some().into());
        object.insert("missed".into(), recovery.unwrap_or(0).into());
    }
    reply.to_string()
}

/// A fresh random epoch prefix: differs between runs of the node.
pub(crate) fn new_epoch() -> String {
    let seed = RandomState::new().hash_one((SystemTime::now(), std::process::id()));
    format!("{:012x}", seed & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn group(id: &str) -> GroupId {
        GroupId::new(id, 256).unwrap()
    }

    fn history(size: usize, max_bytes: usize) -> History {
        History::new(
            HistorySettings {
                size,
                ttl: Duration::from_secs(300),
                max_bytes,
                frames: true,
            },
            Arc::default(),
        )
    }

    #[test]
    fn offsets_grow_by_one_and_replay_what_was_missed() {
        let h = history(10, 1 << 20);
        let g = group("g");
        let (start, epoch) = h.lock().position(&g);
        assert_eq!(start, 0);
        for i in 1..=5 {
            assert_eq!(h.lock().append(&g, &format!("m{i}"), false).0, i);
        }
        let since = Position {
            offset: 2,
            epoch: epoch.to_string(),
        };
        let recovery = h.lock().recover(&g, &since);
        assert_eq!(recovery.last, 5);
        let replay = recovery.replay.expect("recovered");
        assert_eq!(replay.len(), 3);
        assert!(
            std::str::from_utf8(&replay[0][2..])
                .unwrap()
                .contains(r#""offset":3,"message":"m3""#)
        );
        let (epoch2, messages) = h.read(&g, Some(3), 100);
        assert_eq!(epoch2, *epoch);
        assert_eq!(messages, vec![(4, "m4".into()), (5, "m5".into())]);
    }

    #[test]
    fn a_wrong_epoch_or_a_lost_message_is_not_recovered() {
        let h = history(3, 1 << 20);
        let g = group("g");
        let (_, epoch) = h.lock().position(&g);
        for i in 0..5 {
            h.lock().append(&g, &format!("m{i}"), false);
        }
        let at = |offset| Position {
            offset,
            epoch: epoch.to_string(),
        };
        assert!(h.lock().recover(&g, &at(1)).replay.is_none(), "too old");
        assert_eq!(h.lock().recover(&g, &at(2)).replay.unwrap().len(), 3);
        assert!(h.lock().recover(&g, &at(9)).replay.is_none(), "ahead");
        let other = Position {
            offset: 2,
            epoch: "x".into(),
        };
        assert!(h.lock().recover(&g, &other).replay.is_none(), "epoch");
    }

    #[test]
    fn the_byte_bound_evicts_the_least_recently_written_first() {
        let one = {
            let h = history(100, 1 << 20);
            h.lock().append(&group("a"), "x", false);
            h.bytes()
        };
        let h = history(100, one * 4);
        for _ in 0..3 {
            h.lock().append(&group("a"), "x", false);
        }
        for _ in 0..3 {
            h.lock().append(&group("b"), "x", false);
        }
        assert!(h.bytes() <= one * 4);
        assert_eq!(h.counters.history_evictions.load(Ordering::Relaxed), 2);
        assert_eq!(h.read(&group("a"), None, 100).1.len(), 1);
        assert_eq!(h.read(&group("b"), None, 100).1.len(), 3);
    }

    #[test]
    fn a_quiet_group_loses_its_log_and_its_epoch() {
        let h = History::new(
            HistorySettings {
                size: 10,
                ttl: Duration::from_millis(20),
                max_bytes: 1 << 20,
                frames: true,
            },
            Arc::default(),
        );
        let g = group("g");
        h.lock().append(&g, "x", false);
        let (_, epoch) = h.lock().position(&g);
        std::thread::sleep(Duration::from_millis(30));
        h.expire();
        assert_eq!(h.bytes(), 0);
        let (last, epoch2) = h.lock().position(&g);
        assert_eq!(last, 0);
        assert_ne!(epoch, epoch2);
    }

    #[test]
    fn non_string_messages_keep_their_json() {
        let frame = positioned_frame("g", 7, r#"{"a":1}"#, true);
        assert_eq!(
            &frame[2..],
            br#"{"type":"message","group_id":"g","offset":7,"message":{"a":1}}"#
        );
        let frame = positioned_frame("g", 7, "42", false);
        assert!(frame.ends_with(br#""message":"42"}"#));
    }
}
