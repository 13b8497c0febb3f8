//! Group history on the Redis bus (issue 17): Redis numbers every group
//! message and keeps the history, so offsets agree on every node and a
//! member can recover on a node other than the one it left.
//!
//! Each group has three keys, `<prefix>{<group>}:offset` (the last offset),
//! `:epoch` and `:log` (a list of the last `history_size` numbered
//! envelopes). One Lua script per publish ([`PUBLISH_SCRIPT`]) reads or
//! creates the epoch, `INCR`s the offset, appends the numbered envelope and
//! trims the list, sets `history_ttl` on the three keys, and `PUBLISH`es
//! the numbered envelope on the group's channel: Redis runs a script whole,
//! so every subscriber (the sending node too) sees a group's messages in
//! offset order. Nodes deliver them when they come back
//! ([`ClusterPositions::deliver_many`], as on the channel-server bus).
//!
//! A join with `positions` or `since` is answered by [`READ_SCRIPT`], run
//! on the connection that carries the node's subscriptions, after the
//! subscription to the group is confirmed; its reply is handed to the
//! delivery task behind the messages that arrived before it, so each
//! message is either in the reply or comes live after it
//! (`positions.rs` then sends no gap, no duplicate).
//!
//! A new epoch is chosen whenever the epoch key is missing (first use, the
//! keys expired, Redis was flushed or restarted without persistence), and
//! the offset and the log start over with it: an old position then answers
//! `recovered: false`, never a wrong replay.
//!
//! On a Redis Cluster the script would touch the group's keys and publish
//! on its shard channel, which hash to different slots: history on a
//! `redis+cluster://` bus is refused by `Config::validate`.
//!
//! [`ClusterPositions::deliver_many`]: super::positions::ClusterPositions::deliver_many

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::positions::PositionRequest;
use crate::history::Position;

/// Numbers, keeps and publishes one message. KEYS: offset, epoch, log.
/// ARGV: channel, the envelope after its `{`, history size, TTL in ms, a
/// new epoch to use if the group has none. Returns the offset.
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
redis.call('PUBLISH', ARGV[1], numbered)
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

/// What the Redis bus keeps (`Limits::history_size`, `history_ttl`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedisHistory {
    pub(crate) size: usize,
    pub(crate) ttl: Duration,
}

/// The scripts' SHA1s, loaded on each connection.
pub(crate) struct Scripts {
    publish: String,
    read: String,
}

impl RedisHistory {
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Loads the scripts (once per connection: a restarted Redis forgets
    /// them).
    pub(crate) async fn load(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<Scripts> {
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(PUBLISH_SCRIPT);
        pipe.cmd("SCRIPT").arg("LOAD").arg(READ_SCRIPT);
        let (publish, read): (String, String) = pipe.query_async(conn).await?;
        Ok(Scripts { publish, read })
    }

    /// Runs a run of requests in order: consecutive publishes in one
    /// pipeline, each read on its own. Returns the encoded replies to
    /// reads, in order, for [`super::positions::ClusterPositions::on_reply`],
    /// and how many publishes failed; `Err` when the connection failed.
    pub(crate) async fn run(
        &self,
        conn: &mut MultiplexedConnection,
        scripts: &Scripts,
        prefix: &str,
        requests: Vec<PositionRequest>,
    ) -> (Vec<Vec<u8>>, usize, redis::RedisResult<()>) {
        let mut replies = Vec::new();
        let mut failed = 0;
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
                    if let Err(error) = self.publish(conn, scripts, prefix, &batch).await {
                        failed += batch.len() + count_publishes(requests);
                        return (replies, failed, Err(error));
                    }
                }
                PositionRequest::History {
                    id,
                    group,
                    since,
                    read,
                } => match self
                    .read(conn, scripts, prefix, id, &group, since.as_ref(), read)
                    .await
                {
                    Ok(reply) => replies.push(reply),
                    Err(error) => {
                        failed += count_publishes(requests);
                        return (replies, failed, Err(error));
                    }
                },
            }
        }
        (replies, failed, Ok(()))
    }

    /// Numbers and publishes `batch` in one pipeline, telling each waiting
    /// sender its offset (`None` to all when it failed).
    async fn publish(
        &self,
        conn: &mut MultiplexedConnection,
        scripts: &Scripts,
        prefix: &str,
        batch: &[Publish],
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        let ttl = self.ttl_ms();
        for (group, envelope, _) in batch {
            let [offset_key, epoch_key, log_key] = keys(prefix, group);
            pipe.cmd("EVALSHA")
                .arg(&scripts.publish)
                .arg(3)
                .arg(offset_key)
                .arg(epoch_key)
                .arg(log_key)
                .arg(format!("{prefix}{group}"))
                .arg(envelope.strip_prefix('{').unwrap_or(envelope))
                .arg(self.size)
                .arg(ttl)
                .arg(crate::history::new_epoch());
        }
        let result: redis::RedisResult<Vec<u64>> = pipe.query_async(conn).await;
        let offsets = result.as_ref().ok();
        for (i, (_, _, waiter)) in batch.iter().enumerate() {
            if let Some(waiter) = waiter {
                let _ = waiter.try_send(offsets.and_then(|o| o.get(i).copied()));
            }
        }
        result.map(|_| ())
    }

    /// Reads a group's position and kept messages; the reply as the channel
    /// server would give it (`channel/history.rs`).
    #[allow(clippy::too_many_arguments)]
    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        scripts: &Scripts,
        prefix: &str,
        id: u64,
        group: &str,
        since: Option<&Position>,
        read: Option<(u64, usize)>,
    ) -> redis::RedisResult<Vec<u8>> {
        let (after, limit) = match (since, read) {
            (_, Some((after, limit))) => (after, limit.min(self.size)),
            (Some(since), None) => (since.offset, self.size),
            (None, None) => (0, 0),
        };
        let [offset_key, epoch_key, log_key] = keys(prefix, group);
        let (epoch, last, first, messages): (String, u64, i64, Vec<String>) = redis::cmd("EVALSHA")
            .arg(&scripts.read)
            .arg(3)
            .arg(offset_key)
            .arg(epoch_key)
            .arg(log_key)
            .arg(crate::history::new_epoch())
            .arg(self.ttl_ms())
            .arg(after.min(MAX_SCRIPT_OFFSET))
            .arg(limit)
            .query_async(conn)
            .await?;
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

/// A group's keys: offset, epoch, log (one hash tag, so one slot).
fn keys(prefix: &str, group: &str) -> [String; 3] {
    ["offset", "epoch", "log"].map(|kind| format!("{prefix}{{{group}}}:{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_keys_share_one_hash_tag_and_never_meet_another_groups() {
        assert_eq!(
            keys("groupcast:", "g"),
            [
                "groupcast:{g}:offset",
                "groupcast:{g}:epoch",
                "groupcast:{g}:log"
            ]
        );
        let a = keys("p:", "a:log");
        let b = keys("p:", "a");
        assert!(a.iter().all(|k| !b.contains(k)));
    }
}
