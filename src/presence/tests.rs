use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wire::Wire;
use super::*;

fn node(id: u64) -> Presence {
    Presence::new(id, Duration::from_secs(2), Arc::default())
}

fn group(name: &str) -> GroupId {
    GroupId::new(name, 256).unwrap()
}

/// Delivers everything `from` owes the bus to `to`; returns the
/// transitions `to` saw.
fn relay(from: &Presence, to: &Presence, now: Instant) -> Vec<Transition> {
    let mut out = Vec::new();
    for message in from.take_outgoing() {
        to.apply(message, now, &mut out);
    }
    out
}

#[test]
fn a_uid_is_one_user_however_many_tabs_and_nodes() {
    let (a, b) = (node(1), node(2));
    let now = Instant::now();
    relay(&a, &b, now);
    relay(&b, &a, now);
    let bob: Uid = "bob".into();
    let room = group("room");
    let mut local = Vec::new();
    for p in [&a, &b] {
        p.local_connection(1);
        p.local_uid(&bob, 1);
        p.local_group(&room, Some(&bob), 1, &mut local);
    }
    // Each node saw its own first tab join.
    assert_eq!(local.len(), 2);
    // Node b learns of a's tab: bob is there already, no second join.
    assert!(relay(&a, &b, now).is_empty());
    assert!(relay(&b, &a, now).is_empty());
    for p in [&a, &b] {
        let seen = p.group("room", 10);
        assert_eq!((seen.connections, seen.users), (2, 1));
        assert_eq!(seen.uids, vec!["bob".to_owned()]);
        assert!(p.is_online("bob"));
        assert_eq!(p.cluster_stats().nodes, 2);
        assert_eq!(p.cluster_stats().connections, 2);
    }
    // A's tab leaves: b still has bob, nobody hears a leave.
    let mut out = Vec::new();
    a.local_group(&room, Some(&bob), -1, &mut out);
    assert!(out.is_empty(), "bob is still in the room on b");
    assert!(relay(&a, &b, now).is_empty());
    assert_eq!(b.group("room", 10).connections, 1);
}

#[test]
fn a_share_not_refreshed_within_its_lease_goes_with_leave_transitions() {
    let (a, b) = (node(1), node(2));
    let now = Instant::now();
    let alice: Uid = "alice".into();
    a.local_connection(1);
    a.local_uid(&alice, 1);
    a.local_group(&group("room"), Some(&alice), 1, &mut Vec::new());
    let joined = relay(&a, &b, now);
    assert_eq!(joined.len(), 1);
    assert!(joined[0].joined);
    assert!(b.is_online("alice"));
    let mut out = Vec::new();
    b.expire(now + Duration::from_millis(1999), &mut out);
    assert!(b.is_online("alice"), "within the lease");
    b.expire(now + Duration::from_secs(2), &mut out);
    assert!(!b.is_online("alice"));
    assert_eq!(out.len(), 1);
    assert!(!out[0].joined);
    assert_eq!(
        b.cluster_stats(),
        ClusterStats {
            nodes: 1,
            ..ClusterStats::default()
        }
    );
}

#[test]
fn a_gap_asks_for_a_snapshot_which_repairs_the_share() {
    let (a, b) = (node(1), node(2));
    let now = Instant::now();
    relay(&a, &b, now);
    b.take_outgoing();
    let carol: Uid = "carol".into();
    a.local_connection(1);
    a.local_uid(&carol, 1);
    // Lost on the way.
    let lost = a.take_outgoing();
    assert!(!lost.is_empty());
    a.local_group(&group("g"), Some(&carol), 1, &mut Vec::new());
    relay(&a, &b, now);
    assert!(!b.is_online("carol"), "the lost delta held it");
    // b asked a for a snapshot, which fills the gap.
    let requests = b.take_outgoing();
    assert!(
        requests
            .iter()
            .any(|m| matches!(m, Wire::Request { to: 1, .. }))
    );
    for m in requests {
        a.apply(m, now, &mut Vec::new());
    }
    relay(&a, &b, now);
    assert!(b.is_online("carol"));
    assert_eq!(b.group("g", 10).users, 1);
}

#[test]
fn snapshots_of_large_shares_travel_in_bounded_parts_and_lists_are_capped() {
    let (a, b) = (node(1), node(2));
    let now = Instant::now();
    let g = group("big");
    let mut out = Vec::new();
    for i in 0..2500 {
        let uid: Uid = format!("u{i}").into();
        a.local_uid(&uid, 1);
        a.local_group(&g, Some(&uid), 1, &mut out);
    }
    let messages = a.take_outgoing();
    assert!(messages.len() >= 5, "{} parts", messages.len());
    for m in messages {
        b.apply(m, now, &mut Vec::new());
    }
    let seen = b.group("big", 100);
    assert_eq!(seen.users, 2500);
    assert_eq!(seen.uids.len(), 100);
    assert!(seen.truncated);
    // The same share sent again changes nothing.
    b.apply(Wire::Request { n: 2, to: 1, l: 0 }, now, &mut Vec::new());
    a.apply(Wire::Request { n: 2, to: 1, l: 0 }, now, &mut Vec::new());
    assert!(relay(&a, &b, now).is_empty());
    assert_eq!(b.group("big", 10).users, 2500);
}

#[test]
fn bad_uids_are_refused_with_a_reason() {
    assert!(check_uid("").unwrap_err().contains("empty"));
    assert!(check_uid(&"x".repeat(257)).unwrap_err().contains("256"));
    check_uid(&"x".repeat(256)).unwrap();
}

#[test]
fn a_new_node_announces_its_own_lease() {
    let (a, b) = (
        node(1),
        Presence::new(2, Duration::from_secs(60), Arc::default()),
    );
    let now = Instant::now();
    a.announce();
    let alice: Uid = "alice".into();
    a.local_uid(&alice, 1);
    relay(&a, &b, now);
    assert!(b.is_online("alice"));
    // a's lease is 2 s, not b's 60 s: gone 2 s after its last word.
    let mut out = Vec::new();
    b.expire(now + Duration::from_secs(2), &mut out);
    assert!(!b.is_online("alice"));
}

#[test]
fn a_share_sent_again_repairs_what_the_bus_dropped() {
    let (a, b) = (node(1), node(2));
    let now = Instant::now();
    relay(&a, &b, now);
    relay(&b, &a, now);
    let carol: Uid = "carol".into();
    a.local_connection(1);
    a.local_uid(&carol, 1);
    // The bus dropped a's delta: b does not know carol.
    assert!(!a.take_outgoing().is_empty());
    assert!(!b.is_online("carol"));
    a.resend();
    relay(&a, &b, now);
    assert!(b.is_online("carol"));
    assert_eq!(b.cluster_stats().connections, 1);
    // And the other way: b dropped what a sent; it asks everyone.
    a.local_uid(&carol, -1);
    a.take_outgoing();
    assert!(b.is_online("carol"));
    b.ask_everyone();
    relay(&b, &a, now);
    relay(&a, &b, now);
    assert!(!b.is_online("carol"), "a's snapshot took carol away");
}

#[test]
fn a_shared_tag_is_seen_and_cleared_when_one_node_leaves() {
    // Node ids one tag space apart carry the same tag.
    let (a, b, c) = (node(7), node(7 + TAG_SPACE), node(8));
    assert_eq!(node_tag(7), node_tag(7 + TAG_SPACE));
    let now = Instant::now();
    for (from, to) in [(&a, &b), (&b, &a), (&a, &c), (&b, &c)] {
        a.announce();
        b.announce();
        relay(from, to, now);
    }
    assert!(a.tag_shared() && b.tag_shared());
    assert!(!c.tag_shared());
    // The third node routes to neither: two live nodes have the tag.
    assert_eq!(c.nodes_with_tag(node_tag(7)), 2);
    assert_eq!(c.nodes_with_tag(node_tag(8)), 1);
    assert_eq!(c.nodes_with_tag(node_tag(9)), 0);
    // B stops: the tag names one node again.
    let mut out = Vec::new();
    for p in [&a, &c] {
        p.apply(Wire::Bye { n: 7 + TAG_SPACE }, now, &mut out);
    }
    assert!(!a.tag_shared());
    assert_eq!(c.nodes_with_tag(node_tag(7)), 1);
}
