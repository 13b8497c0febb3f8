//! A node's share and the sums over every share, and the one way both
//! change: an entry set to an absolute value, its difference added to the
//! sums, a transition recorded when a uid's sum in a group crosses zero.

use std::collections::HashMap;

use super::{Transition, Uid};
use crate::ids::GroupId;

/// One node's share: its connections, how many of them each uid has, and
/// per group how many each uid (`None`: no uid) has there.
#[derive(Default)]
pub(super) struct Share {
    pub(super) conns: u64,
    pub(super) uids: HashMap<Uid, u64>,
    /// group → uid (`None`: no uid) → connections.
    pub(super) groups: HashMap<GroupId, HashMap<Option<Uid>, u64>>,
}

impl Share {
    pub(super) fn entries(&self) -> usize {
        self.uids.len() + self.groups.values().map(HashMap::len).sum::<usize>()
    }
}

/// Sums over every share.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) conns: u64,
    pub(super) uids: HashMap<Uid, u64>,
    pub(super) groups: HashMap<GroupId, GroupTotal>,
}

/// A group's sums: its connections, and each uid's connections in it.
#[derive(Default)]
pub(super) struct GroupTotal {
    pub(super) conns: u64,
    pub(super) uids: HashMap<Uid, u64>,
}

/// Applies `n` (the new value) to `map[key]`, returning the old value.
pub(super) fn set_count<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, key: K, n: u64) -> u64 {
    if n == 0 {
        map.remove(&key).unwrap_or(0)
    } else {
        map.insert(key, n).unwrap_or(0)
    }
}

/// Adds `new - old` to a sum; returns the sum before and after.
pub(super) fn shift<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, u64>,
    key: K,
    old: u64,
    new: u64,
) -> (u64, u64) {
    let before = map.get(&key).copied().unwrap_or(0);
    let after = (before + new).saturating_sub(old);
    set_count(map, key, after);
    (before, after)
}

pub(super) fn set_conns(share: &mut Share, totals: &mut Totals, n: u64) {
    totals.conns = (totals.conns + n).saturating_sub(share.conns);
    share.conns = n;
}

/// Sets a share's uid count; returns the change in its number of entries.
pub(super) fn set_uid(share: &mut Share, totals: &mut Totals, uid: &Uid, n: u64) -> isize {
    let old = set_count(&mut share.uids, uid.clone(), n);
    shift(&mut totals.uids, uid.clone(), old, n);
    (n > 0) as isize - (old > 0) as isize
}

/// Sets a share's group entry; records a transition when the uid's sum in
/// the group crosses zero. Returns the change in the share's entries.
pub(super) fn set_group(
    share: &mut Share,
    totals: &mut Totals,
    group: &GroupId,
    uid: Option<&Uid>,
    n: u64,
    out: &mut Vec<Transition>,
) -> isize {
    let entries = share.groups.entry(group.clone()).or_default();
    let old = set_count(entries, uid.cloned(), n);
    if entries.is_empty() {
        share.groups.remove(group);
    }
    if old == n {
        return 0;
    }
    let total = totals.groups.entry(group.clone()).or_default();
    total.conns = (total.conns + n).saturating_sub(old);
    if let Some(uid) = uid {
        let (before, after) = shift(&mut total.uids, uid.clone(), old, n);
        if (before == 0) != (after == 0) {
            out.push(Transition {
                group: group.clone(),
                uid: uid.clone(),
                joined: after > 0,
            });
        }
    }
    if total.conns == 0 && total.uids.is_empty() {
        totals.groups.remove(group);
    }
    (n > 0) as isize - (old > 0) as isize
}

/// A uid on the wire: empty for no uid.
pub(super) fn uid_of_wire(uid: &str) -> Option<Uid> {
    (!uid.is_empty()).then(|| uid.into())
}
