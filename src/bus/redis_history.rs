//! Group history on the Redis bus (issue 17): Redis numbers every group
//! message and keeps the history, so offsets agree on every node and a
//! member can recover on a node other than the one it left.
//!
//! Each group has three keys, `<prefix>{<group>}:offset` (the last offset),
//! `:epoch` and `:log` (a list of the last `history_size` numbered
//! envelopes). One Lua script per publish ([`PUBLISH_SCRIPT`]) reads or
//! creates the epoch, `INCR`s the offset, appends the numbered envelope and
//! trims the list, sets `history_ttl` on the three keys, and publishes the
//! numbered envelope on the group's channel: Redis runs a script whole,
//! so every subscriber (the sending node too) sees a group's messages in
//! offset order. Nodes deliver them when they come back
//! ([`ClusterPositions::deliver_many`], as on the channel-server bus).
//!
//! A join with `positions` or `since` is answered by [`READ_SCRIPT`], run
//! on the connection that carries the node's subscription to the group,
//! after that subscription is confirmed; its reply is handed to the
//! delivery task behind the messages that arrived before it, so each
//! message is either in the reply or comes live after it
//! (`positions.rs` then sends no gap, no duplicate).
//!
//! A new epoch is chosen whenever the epoch key is missing (first use, the
//! keys expired, Redis was flushed or restarted without persistence), and
//! the offset and the log start over with it: an old position then answers
//! `recovered: false`, never a wrong replay.
//!
//! # On a Redis Cluster
//!
//! A script may only touch keys of one slot, and on Redis 7 a shard channel
//! it `SPUBLISH`es on counts as one of them. So with history on, a group's
//! shard channel is `<prefix>{<group>}` ([`Names`]), a prefix of each of
//! its keys: Redis hashes the text between the first `{` and the first `}`
//! after it, which is then the same in the channel and the keys. Two cases
//! break that rule, and are handled so that every node names a group alike:
//! a prefix holding `{` is refused by `Config::validate`, and a group whose
//! id starts with `}` (an empty tag: Redis would hash each whole name) is
//! named `<prefix>{\x01}<group>` instead; no client group starts with
//! `\x01`, so no other group's names can equal these. Without history, or
//! on a standalone Redis, channels stay `<prefix><group>`.
//!
//! The cluster client keeps one connection per node, so a group's
//! `SSUBSCRIBE` and its scripts (routed by their first key, the same slot)
//! go down the same connection to the slot's master: its pushes reach the
//! push callback before a script's reply reaches the bus task, which is
//! the order standalone relies on. Publishes are pipelined per group (a
//! cluster pipeline must stay in one slot), groups in parallel; a
//! member's read waits until its group's subscription is confirmed
//! ([`Outcome::deferred`], run after the bus task's next sync; a read
//! that got no answer is asked again by `STALE_REQUEST`). Scripts go by
//! SHA1 (`EVALSHA`), computed here;
//! a master that does not know them (restarted, failed over, `SCRIPT
//! FLUSH`) answers `NOSCRIPT`, and those calls are made again with the
//! first one as `EVAL`, which teaches that master the script.
//!
//! The client follows a slot's move (`MOVED`, `ASK`) and waits out
//! `TRYAGAIN` or `CLUSTERDOWN` by sending a pipeline again whole. All of a
//! pipeline's calls share one slot, so they are refused alike, except
//! while a slot's keys are being migrated under it: calls made before the
//! keys left would then be numbered a second time (a duplicate, with a new
//! offset), as could the client's retry of a pipeline whose connection
//! broke after Redis ran it.
//!
//! [`ClusterPositions::deliver_many`]: super::positions::ClusterPositions::deliver_many

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, RedisResult, ServerErrorKind, Value};

use super::positions::PositionRequest;
use crate::history::Position;
use crate::ids::RESERVED_PREFIX;

/// Numbers, keeps and publishes one message. KEYS: offset, epoch, log.
/// ARGV: channel, the envelope after its `{`, history size, TTL in ms, a
/// new epoch to use if the group has none, the publish command (`PUBLISH`,
/// or `SPUBLISH` on a cluster). Returns the offset.
pub(crate) const PUBLISH_SCRIPT: &str = r#"
local ttl = tonumber(ARGV[4])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ttl)
else
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local offset = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ttl)
local numbered = '{"offset":' .. offset .. ',' .. ARGV[2]
redis.call('RPUSH', KEYS[3], numbered)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call(ARGV[6], ARGV[1], numbered)
return offset
"#;

/// A group's epoch (created if missing), last offset, first kept offset,
/// and at most `limit` kept envelopes after `after`. KEYS: offset, epoch,
/// log. ARGV: a new epoch, TTL in ms, after, limit.
pub(crate) const READ_SCRIPT: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('DEL', KEYS[1], KEYS[3])
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'PX', tonumber(ARGV[2]))
end
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local len = redis.call('LLEN', KEYS[3])
local first = last - len + 1
local from = tonumber(ARGV[3]) - first + 1
if from < 0 then from = 0 end
local limit = tonumber(ARGV[4])
local items = {}
if limit > 0 and from < len then
  items = redis.call('LRANGE', KEYS[3], from, from + limit - 1)
end
return {epoch, last, first, items}
"#;

/// Most offsets handed to the read script: Lua numbers are doubles.
const MAX_SCRIPT_OFFSET: u64 = 1 << 52;

/// A script and its SHA1, which `EVALSHA` names it by.
struct Script {
    body: &'static str,
    sha: String,
}

impl Script {
    fn new(body: &'static str) -> Script {
        use sha1::Digest;
        let sha = sha1::Sha1::digest(body.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Script { body, sha }
    }
}

static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_SCRIPT));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_SCRIPT));

/// How a group's channel and history keys are named on Redis.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
    /// History on a Redis Cluster: the shard channel shares the keys' slot
    /// (see the module docs).
    sharded_history: bool,
}

/// Stands for the tag of a group whose id starts with `}` on a cluster: a
/// client group never starts with it (`GroupId::new`).
const ESCAPED_TAG: char = RESERVED_PREFIX;

impl Names {
    pub(crate) fn new(prefix: String, sharded_history: bool) -> Names {
        Names {
            prefix,
            sharded_history,
        }
    }

    /// The Redis channel of `group`: `<prefix><group>`, or on a cluster
    /// with history `<prefix>{<group>}` (the slot of its keys).
    pub(crate) fn channel(&self, group: &str) -> String {
        if self.sharded_history {
            self.base(group)
        } else {
            format!("{}{group}", self.prefix)
        }
    }

    /// A group's keys: offset, epoch, log (one hash tag, so one slot).
    fn keys(&self, group: &str) -> [String; 3] {
        let base = self.base(group);
        ["offset", "epoch", "log"].map(|kind| format!("{base}:{kind}"))
    }

    /// What the keys start with: `<prefix>{<group>}`; on a cluster, a group
    /// starting with `}` would give an empty tag (each whole name hashed,
    /// to different slots), so it goes behind a tag of its own.
    fn base(&self, group: &str) -> String {
        let prefix = &self.prefix;
        if self.sharded_history && group.starts_with('}') {
            format!("{prefix}{{{ESCAPED_TAG}}}{group}")
        } else {
            format!("{prefix}{{{group}}}")
        }
    }

    /// The command the publish script publishes with.
    fn publish_command(&self) -> &'static str {
        if self.sharded_history {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

/// What the Redis bus keeps (`Limits::history_size`, `history_ttl`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedisHistory {
    pub(crate) size: usize,
    pub(crate) ttl: Duration,
}

/// One script call: its keys and arguments.
struct Call {
    keys: [String; 3],
    args: Vec<Vec<u8>>,
}

impl Call {
    fn new(keys: [String; 3]) -> Call {
        Call {
            keys,
            args: Vec::new(),
        }
    }

    fn arg(mut self, arg: impl redis::ToRedisArgs) -> Call {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// `EVALSHA`, or `EVAL` with the script's text.
    fn command(&self, script: &Script, eval: bool) -> Cmd {
        let mut cmd = if eval {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script.body);
            cmd
        } else {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&script.sha);
            cmd
        };
        cmd.arg(self.keys.len()).arg(&self.keys[..]);
        for arg in &self.args {
            cmd.arg(&arg[..]);
        }
        cmd
    }
}

/// Runs `calls` of `script` in one pipeline (on a cluster, all of one
/// slot), each answered on its own. The calls refused with `NOSCRIPT` (a
/// master that restarted or failed over forgets scripts) are made again,
/// in order, the first as `EVAL`, which loads the script for the rest.
/// (Only a script forgotten in the middle of a pipeline and taught again
/// by another client before its end could put a retried call after a
/// later one.) `Err` when the pipeline itself failed (nothing is known of
/// its calls).
async fn call_many<C: ConnectionLike>(
    conn: &mut C,
    script: &Script,
    calls: &[Call],
) -> RedisResult<Vec<RedisResult<Value>>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for call in calls {
        pipe.add_command(call.command(script, false));
    }
    let mut results: Vec<RedisResult<Value>> = pipe.query_async(conn).await?;
    let unknown: Vec<usize> = (0..results.len().min(calls.len()))
        .filter(|&i| {
            results[i]
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
        })
        .collect();
    if unknown.is_empty() {
        return Ok(results);
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (n, &i) in unknown.iter().enumerate() {
        pipe.add_command(calls[i].command(script, n == 0));
    }
    let again: Vec<RedisResult<Value>> = pipe.query_async(conn).await?;
    for (i, result) in unknown.into_iter().zip(again) {
        results[i] = result;
    }
    Ok(results)
}

/// The connection the history runs on, and how it is shared out.
pub(crate) enum HistoryLink<'a> {
    /// One connection to a standalone Redis: everything in order on it.
    Standalone(&'a mut redis::aio::MultiplexedConnection),
    /// A cluster: publishes pipelined per group, groups in parallel.
    /// `subscribed`: whether a channel's subscription is confirmed now.
    Cluster(
        &'a mut redis::cluster_async::ClusterConnection,
        &'a (dyn Fn(&str) -> bool + Sync),
    ),
}

/// What a run of requests came to.
pub(crate) struct Outcome {
    /// Encoded replies to reads, in order, for
    /// [`super::positions::ClusterPositions::on_reply`].
    pub(crate) replies: Vec<Vec<u8>>,
    /// Publishes that did not reach Redis.
    pub(crate) failed: usize,
    /// Members' reads held back until their group's subscription is
    /// confirmed (cluster), to run again after the next sync.
    pub(crate) deferred: Vec<PositionRequest>,
    /// Whether the (standalone) connection failed: the session is over.
    pub(crate) lost: bool,
}

impl RedisHistory {
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Runs a run of requests in order: consecutive publishes together,
    /// each read on its own. On a standalone Redis the first failure ends
    /// the run (the connection is gone; the rest are dropped, counted). On
    /// a cluster a failure only costs the calls of the master that failed:
    /// its publishes are counted, its reads left unanswered (held members
    /// ask again), and a member's read waits for its group's subscription
    /// ([`Outcome::deferred`]).
    pub(crate) async fn run(
        &self,
        mut link: HistoryLink<'_>,
        names: &Names,
        requests: Vec<PositionRequest>,
    ) -> Outcome {
        let mut outcome = Outcome {
            replies: Vec::new(),
            failed: 0,
            deferred: Vec::new(),
            lost: false,
        };
        let mut publishes = Vec::new();
        let mut requests = requests.into_iter().peekable();
        while let Some(request) = requests.next() {
            match request {
                PositionRequest::Publish {
                    group,
                    envelope,
                    offset,
                } => {
                    publishes.push((group, envelope, offset));
                    let next_is_publish =
                        matches!(requests.peek(), Some(PositionRequest::Publish { .. }));
                    if next_is_publish {
                        continue;
                    }
                    let batch = std::mem::take(&mut publishes);
                    let failed = match &mut link {
                        HistoryLink::Standalone(conn) => {
                            self.publish(&mut **conn, names, &batch).await
                        }
                        HistoryLink::Cluster(conn, _) => {
                            self.publish_sharded(conn, names, batch).await
                        }
                    };
                    outcome.failed += failed;
                    if failed > 0 && matches!(link, HistoryLink::Standalone(_)) {
                        outcome.failed += count_publishes(requests);
                        outcome.lost = true;
                        return outcome;
                    }
                }
                PositionRequest::History {
                    id,
                    group,
                    since,
                    read,
                } => {
                    let result = match &mut link {
                        HistoryLink::Standalone(conn) => {
                            self.read(&mut **conn, names, id, &group, since.as_ref(), read)
                                .await
                        }
                        // A member's read before its subscription could
                        // miss what comes between: run after the next sync.
                        HistoryLink::Cluster(_, subscribed)
                            if read.is_none() && !subscribed(&names.channel(&group)) =>
                        {
                            outcome.deferred.push(PositionRequest::History {
                                id,
                                group,
                                since,
                                read,
                            });
                            continue;
                        }
                        HistoryLink::Cluster(conn, _) => {
                            self.read(&mut **conn, names, id, &group, since.as_ref(), read)
                                .await
                        }
                    };
                    match result {
                        Ok(reply) => outcome.replies.push(reply),
                        Err(_) if matches!(link, HistoryLink::Cluster(..)) => {}
                        Err(_) => {
                            outcome.failed += count_publishes(requests);
                            outcome.lost = true;
                            return outcome;
                        }
                    }
                }
            }
        }
        outcome
    }

    /// The publish script's call for one message.
    fn publish_call(&self, names: &Names, group: &str, envelope: &str) -> Call {
        Call::new(names.keys(group))
            .arg(names.channel(group))
            .arg(envelope.strip_prefix('{').unwrap_or(envelope))
            .arg(self.size)
            .arg(self.ttl_ms())
            .arg(crate::history::new_epoch())
            .arg(names.publish_command())
    }

    /// Numbers and publishes `batch` in one pipeline, telling each waiting
    /// sender its offset (`None` when it failed). Returns how many failed.
    async fn publish<C: ConnectionLike>(
        &self,
        conn: &mut C,
        names: &Names,
        batch: &[Publish],
    ) -> usize {
        let calls: Vec<Call> = batch
            .iter()
            .map(|(group, envelope, _)| self.publish_call(names, group, envelope))
            .collect();
        let results = call_many(conn, &PUBLISH, &calls).await;
        let mut failed = 0;
        for (i, (_, _, waiter)) in batch.iter().enumerate() {
            let offset = match &results {
                Ok(results) => results
                    .get(i)
                    .and_then(|r| r.as_ref().ok())
                    .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok()),
                Err(_) => None,
            };
            if offset.is_none() {
                failed += 1;
            }
            if let Some(waiter) = waiter {
                let _ = waiter.try_send(offset);
            }
        }
        failed
    }

    /// Publishes `batch` on a cluster: one pipeline per group (one slot),
    /// in the order sent; the groups' pipelines in parallel. Returns how
    /// many failed.
    async fn publish_sharded(
        &self,
        conn: &redis::cluster_async::ClusterConnection,
        names: &Names,
        batch: Vec<Publish>,
    ) -> usize {
        let mut by_group: Vec<Vec<Publish>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for publish in batch {
            let i = *index.entry(publish.0.clone()).or_insert_with(|| {
                by_group.push(Vec::new());
                by_group.len() - 1
            });
            by_group[i].push(publish);
        }
        let failed = futures_util::future::join_all(by_group.iter().map(|batch| {
            let mut conn = conn.clone();
            async move { self.publish(&mut conn, names, batch).await }
        }))
        .await;
        failed.into_iter().sum()
    }

    /// Reads a group's position and kept messages; the reply as the channel
    /// server would give it (`channel/history.rs`).
    async fn read<C: ConnectionLike>(
        &self,
        conn: &mut C,
        names: &Names,
        id: u64,
        group: &str,
        since: Option<&Position>,
        read: Option<(u64, usize)>,
    ) -> RedisResult<Vec<u8>> {
        let (after, limit) = match (since, read) {
            (_, Some((after, limit))) => (after, limit.min(self.size)),
            (Some(since), None) => (since.offset, self.size),
            (None, None) => (0, 0),
        };
        let call = Call::new(names.keys(group))
            .arg(crate::history::new_epoch())
            .arg(self.ttl_ms())
            .arg(after.min(MAX_SCRIPT_OFFSET))
            .arg(limit);
        let value = call_many(conn, &READ, std::slice::from_ref(&call))
            .await?
            .pop()
            .unwrap_or_else(|| Err((ErrorKind::Client, "no reply to the read").into()))?;
        let (epoch, last, first, messages): (String, u64, i64, Vec<String>) =
            redis::from_redis_value(value)?;
        let recovered = match (since, read) {
            (_, Some(_)) => true,
            (Some(since), None) => {
                since.epoch == epoch
                    && since.offset <= last
                    && first <= i64::try_from(since.offset).unwrap_or(i64::MAX) + 1
            }
            (None, None) => false,
        };
        // The kept envelopes are the script's own JSON: copied as they are.
        let mut reply = format!(
            "{{\"id\":{id},\"epoch\":{},\"last\":{last},\"recovered\":{recovered},\"messages\":[",
            serde_json::Value::from(epoch),
        );
        if recovered {
            for (i, message) in messages.iter().enumerate() {
                if i > 0 {
                    reply.push(',');
                }
                reply.push_str(message);
            }
        }
        reply.push_str("]}");
        Ok(reply.into_bytes())
    }
}

/// A numbered publish waiting for its pipeline.
type Publish = (
    String,
    String,
    Option<std::sync::mpsc::SyncSender<Option<u64>>>,
);

/// Counts the publishes among `rest` (dropped with a failed connection),
/// telling their waiting senders.
fn count_publishes(rest: impl Iterator<Item = PositionRequest>) -> usize {
    rest.filter(dropped).count()
}

/// Whether `request` is a publish; tells its waiting sender it failed.
pub(crate) fn dropped(request: &PositionRequest) -> bool {
    match request {
        PositionRequest::Publish { offset, .. } => {
            if let Some(waiter) = offset {
                let _ = waiter.try_send(None);
            }
            true
        }
        PositionRequest::History { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis's `keyHashSlot`, written out from its docs (CRC16-XMODEM of
    /// the hash tag, or of the whole name when there is none or it is
    /// empty, mod 16384): an oracle independent of the client's routing.
    fn slot(name: &str) -> u16 {
        let bytes = name.as_bytes();
        let hashed = match bytes.iter().position(|&b| b == b'{') {
            Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
                Some(0) | None => bytes,
                Some(len) => &bytes[open + 1..open + 1 + len],
            },
            None => bytes,
        };
        let mut crc: u16 = 0;
        for &byte in hashed {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    /// Groups whose names test the hash-tag rules.
    const TRICKY: &[&str] = &[
        "g",
        "room:1",
        "}",
        "}}",
        "}x",
        "}x}",
        "{",
        "{}",
        "a{b}c",
        "a}b",
        "{x}",
        "x{",
        "\u{1}uid:42",
        "é}ü",
    ];

    #[test]
    fn the_slot_oracle_gives_redis_known_slots() {
        // From the Redis Cluster spec and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{foo}bar"), 12182);
        assert_ne!(slot("{}foo"), slot("foo"));
    }

    #[test]
    fn on_a_cluster_with_history_a_groups_channel_and_keys_share_one_slot() {
        for prefix in ["groupcast:", "", "app}:", "a:b:"] {
            let names = Names::new(prefix.into(), true);
            for group in TRICKY {
                let channel = names.channel(group);
                for key in names.keys(group) {
                    assert_eq!(
                        slot(&channel),
                        slot(&key),
                        "{prefix:?} {group:?}: {channel:?} and {key:?}"
                    );
                    // The client routes the same way.
                    assert_eq!(
                        redis::cluster_routing::Slot::for_key(&channel),
                        redis::cluster_routing::Slot::for_key(&key),
                    );
                }
            }
        }
    }

    #[test]
    fn names_of_different_groups_never_meet() {
        for sharded in [false, true] {
            let names = Names::new("p:".into(), sharded);
            let mut seen = std::collections::HashSet::new();
            let groups = TRICKY.iter().chain(&["a:log", "a", "}a", "\u{1}}a", "}a}"]);
            for group in groups {
                for name in names.keys(group) {
                    assert!(seen.insert(name.clone()), "{group:?}: {name:?} twice");
                }
            }
        }
    }

    #[test]
    fn standalone_and_plain_cluster_names_are_unchanged() {
        let names = Names::new("groupcast:".into(), false);
        assert_eq!(names.channel("g"), "groupcast:g");
        assert_eq!(names.channel("}x"), "groupcast:}x");
        assert_eq!(
            names.keys("g"),
            [
                "groupcast:{g}:offset",
                "groupcast:{g}:epoch",
                "groupcast:{g}:log"
            ]
        );
        assert_eq!(names.publish_command(), "PUBLISH");
        let sharded = Names::new("groupcast:".into(), true);
        assert_eq!(sharded.channel("g"), "groupcast:{g}");
        assert_eq!(sharded.keys("g")[0], "groupcast:{g}:offset");
        assert_eq!(sharded.channel("}x"), "groupcast:{\u{1}}}x");
        assert_eq!(sharded.publish_command(), "SPUBLISH");
    }

    #[test]
    fn scripts_are_named_by_the_sha1_redis_gives_them() {
        // `SCRIPT LOAD "return 1"` answers this SHA1.
        let script = Script::new("return 1");
        assert_eq!(script.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert_eq!(PUBLISH.sha.len(), 40);
    }
}
