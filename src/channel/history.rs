//! The cluster's group history, kept by the channel server (issue 17): it
//! sees every publish, so it is where a group's messages get their offsets,
//! in one order for every node, and where a member that reconnects to any
//! node recovers what it missed.
//!
//! Two requests extend the JSON dialect (the seed's clients never send
//! them, and a server without history still answers them):
//!
//! - `{"type":"publish_numbered","channel":C,"data":{...}}`: number `data`
//!   (a JSON object) in `C`'s history, keep it, and deliver it to every
//!   subscriber of `C`, the publisher included, as `data` with
//!   `"offset":n` added first. Without history it is a plain publish to
//!   everyone.
//! - `{"type":"history","id":N,"channel":C,"since":{"offset":O,"epoch":"E"}}`
//!   (`since` optional): answered to the requester alone, as an event on the
//!   channel `groupcast:history` whose data is
//!   `{"id":N,"channel":C,"epoch":"E2","last":L,"recovered":true|false,"messages":[...]}`
//!   — the data published after `O`, in order, when every one of them is
//!   still kept under that epoch. Requests and events of one connection are
//!   answered in order, so a subscriber gets every message of `C` either in
//!   the reply (offset <= L) or as an event after it.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::dialect::{Data, Delivery, Dialect, delivery_frame};
use crate::history::{History, HistorySettings, Position};
use crate::ids::GroupId;
use crate::stats::NodeCounters;

/// The channel on which history replies arrive.
pub const HISTORY_REPLY_CHANNEL: &str = "groupcast:history";

/// What the channel server keeps (`groupcast channel --history-size ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelHistoryConfig {
    /// Messages kept per channel.
    pub size: usize,
    /// A channel with no message for this long loses its history.
    pub ttl: Duration,
    /// Most bytes kept, all channels together.
    pub max_bytes: usize,
}

/// The channel server's history, when configured.
pub(crate) fn new_history(
    config: Option<ChannelHistoryConfig>,
    counters: &Arc<NodeCounters>,
) -> Option<Arc<History>> {
    let config = config?;
    let settings = HistorySettings {
        size: config.size,
        ttl: config.ttl,
        max_bytes: config.max_bytes,
        frames: false,
    };
    Some(Arc::new(History::new(settings, counters.clone())))
}

/// One of this module's requests (read by hand: serde's internally tagged
/// enums cannot borrow a `RawValue`).
#[derive(Deserialize)]
struct WireHistoryRequest<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    channel: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    id: u64,
    #[serde(default)]
    since: Option<WireSince>,
    /// A host's read: the kept data after this offset (at most `limit`).
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct WireSince {
    offset: u64,
    epoch: String,
}

/// Reads `body` as one of this module's requests (called only for bodies
/// the seed's dialect does not know, so the usual requests pay nothing);
/// `None` when it is not one.
///
/// A numbered publish is numbered, kept and published by `publish` while
/// the history's lock is held, so offsets follow the order subscribers see.
pub(crate) fn handle(
    history: Option<&History>,
    body: &[u8],
    max_frame: usize,
    publish: impl FnOnce(&str, &RawValue),
) -> Option<Result<Option<bytes::Bytes>, String>> {
    let request: WireHistoryRequest<'_> = serde_json::from_slice(body).ok()?;
    let WireHistoryRequest {
        channel,
        id,
        since,
        after,
        limit,
        ..
    } = request;
    Some(match (&*request.kind, request.data) {
        ("publish_numbered", Some(data)) => {
            let Some(history) = history else {
                publish(&channel, data);
                return Some(Ok(None));
            };
            let Some(rest) = data.get().strip_prefix('{') else {
                return Some(Err("publish_numbered needs an object as data".into()));
            };
            let Ok(key) = GroupId::new(channel.clone(), usize::MAX) else {
                return Some(Err("publish_numbered needs a channel".into()));
            };
            let mut guard = history.lock();
            let offset = guard.position(&key).0 + 1;
            let separator = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            let numbered = format!("{{\"offset\":{offset}{separator}{rest}");
            guard.append(&key, &numbered, true);
            match RawValue::from_string(numbered) {
                Ok(numbered) => publish(&channel, &numbered),
                Err(e) => return Some(Err(e.to_string())),
            }
            Ok(None)
        }
        ("history", _) => match after {
            Some(after) => read_reply(
                history,
                id,
                &channel,
                after,
                limit.unwrap_or(100),
                max_frame,
            )
            .map(Some),
            None => reply(history, id, &channel, since, max_frame).map(Some),
        },
        _ => return None,
    })
}

/// The reply to a host's read (`after`, `limit`): the kept data after
/// `after`, at most `limit`, as for a recovery.
fn read_reply(
    history: Option<&History>,
    id: u64,
    channel: &str,
    after: u64,
    limit: usize,
    max_frame: usize,
) -> Result<bytes::Bytes, String> {
    let (epoch, messages) = match (history, GroupId::new(channel, usize::MAX)) {
        (Some(history), Ok(key)) => history.read(&key, Some(after), limit),
        _ => (String::new(), Vec::new()),
    };
    let mut data = format!(
        "{{\"id\":{id},\"channel\":{},\"epoch\":{},\"last\":0,\"recovered\":{},\"messages\":[",
        serde_json::to_string(channel).map_err(|e| e.to_string())?,
        serde_json::to_string(&epoch).map_err(|e| e.to_string())?,
        history.is_some(),
    );
    let mut size = data.len();
    for (i, (_, message)) in messages.iter().enumerate() {
        // Whatever fits in one frame: a host reads on from the last offset.
        size += message.len() + 1;
        if size + 64 > max_frame {
            break;
        }
        if i > 0 {
            data.push(',');
        }
        data.push_str(message);
    }
    data.push_str("]}");
    let data = RawValue::from_string(data).map_err(|e| e.to_string())?;
    delivery_frame(
        Dialect::Json,
        Delivery::Event,
        HISTORY_REPLY_CHANNEL,
        Data::Json(&data),
    )
}

/// The reply to a `history` request, as an event frame.
fn reply(
    history: Option<&History>,
    id: u64,
    channel: &str,
    since: Option<WireSince>,
    max_frame: usize,
) -> Result<bytes::Bytes, String> {
    let (epoch, last, messages) = match (history, GroupId::new(channel, usize::MAX)) {
        (Some(history), Ok(key)) => {
            let mut guard = history.lock();
            match since {
                Some(since) => {
                    let since = Position {
                        offset: since.offset,
                        epoch: since.epoch,
                    };
                    let (last, epoch, texts) = guard.recover_texts(&key, &since);
                    (epoch.to_string(), last, texts)
                }
                None => {
                    let (last, epoch) = guard.position(&key);
                    (epoch.to_string(), last, None)
                }
            }
        }
        _ => (String::new(), 0, None),
    };
    let encode = |messages: Option<&[Arc<str>]>| -> Result<bytes::Bytes, String> {
        let mut data = format!(
            "{{\"id\":{id},\"channel\":{},\"epoch\":{},\"last\":{last},\"recovered\":{},\"messages\":[",
            serde_json::to_string(channel).map_err(|e| e.to_string())?,
            serde_json::to_string(&epoch).map_err(|e| e.to_string())?,
            messages.is_some(),
        );
        for (i, message) in messages.unwrap_or_default().iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            data.push_str(message);
        }
        data.push_str("]}");
        let data = RawValue::from_string(data).map_err(|e| e.to_string())?;
        delivery_frame(
            Dialect::Json,
            Delivery::Event,
            HISTORY_REPLY_CHANNEL,
            Data::Json(&data),
        )
    };
    let frame = encode(messages.as_deref())?;
    if frame.len() > max_frame {
        // Too much to send in one frame: say it cannot be recovered.
        return encode(None);
    }
    Ok(frame)
}
