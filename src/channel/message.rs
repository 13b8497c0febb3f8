//! Bodies of the channel protocol, encoded as JSON maps with a `type` field:
//! `subscribe`, `unsubscribe` and `publish` from clients, `event` from the
//! server.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::codec::encode_frame;
use super::dialect::Data;

/// A request a channel client sent (in either dialect: see `dialect.rs`).
#[derive(Debug, PartialEq)]
pub(crate) enum Request<'a> {
    /// Empty body: keeps the connection alive, needs no answer.
    Ping,
    /// `{"type":"auth","secret":"..."}`: the first frame of a client when the
    /// server requires a shared secret.
    Auth(String),
    /// Deliver this connection every publish to these channels.
    Subscribe(Vec<String>),
    /// Stop delivering these channels.
    Unsubscribe(Vec<String>),
    /// Deliver `data` to every subscriber of each channel (but the
    /// publisher, with `exclude_self`: a groupcast extension nodes use, since
    /// they deliver to their own members directly).
    Publish {
        channels: Vec<String>,
        data: Data<'a>,
        exclude_self: bool,
    },
    /// Deliver `data` to one subscriber of each channel, in rotation
    /// (walkor/channel's `publishLoop`).
    PublishLoop {
        channels: Vec<String>,
        data: Data<'a>,
    },
    /// Become a consumer of these queues.
    Watch(Vec<String>),
    /// Stop consuming these queues.
    Unwatch(Vec<String>),
    /// Append `data` to each queue.
    Enqueue {
        channels: Vec<String>,
        data: Data<'a>,
    },
    /// Ready for one more item of each watched queue.
    Reserve,
}

/// One or several channel names: Workerman's client sends a list, and a
/// single string is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Channels {
    One(String),
    Many(Vec<String>),
}

impl From<Channels> for Vec<String> {
    fn from(channels: Channels) -> Self {
        match channels {
            Channels::One(one) => vec![one],
            Channels::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    channels: Option<Channels>,
    /// Present even when `null` (a plain `Option` would read `null` as
    /// absent, and refuse a publish of `null`).
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    secret: Option<String>,
    #[serde(default)]
    exclude_self: bool,
}

/// Reads a field that is there, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses a client's frame body.
///
/// # Errors
///
/// A message saying what is wrong; the server closes the connection then,
/// since the client does not speak the protocol.
pub(crate) fn parse_request(body: &[u8]) -> Result<Request<'_>, String> {
    if body.is_empty() {
        return Ok(Request::Ping);
    }
    let wire: WireRequest<'_> =
        serde_json::from_slice(body).map_err(|e| format!("bad channel request: {e}"))?;
    let channels = || -> Result<Vec<String>, String> {
        wire.channels
            .map(Vec::from)
            .ok_or_else(|| format!("{} needs \"channels\"", wire.kind))
    };
    Request::from_parts(
        &wire.kind,
        channels,
        || {
            wire.data
                .map(Data::Json)
                .ok_or_else(|| format!("{} needs \"data\"", wire.kind))
        },
        wire.secret,
        wire.exclude_self,
    )
}

/// A delivery from the channel server: `data` published on `channel`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelEvent {
    /// The channel it was published on.
    pub channel: String,
    /// The published data, as JSON text.
    pub data: Box<RawValue>,
}

/// Parses a server's frame body into an event; `None` for pings and for
/// bodies that are not events.
pub(crate) fn parse_event(body: &[u8]) -> Option<ChannelEvent> {
    #[derive(Deserialize)]
    struct WireEvent<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        channel: String,
        data: Box<RawValue>,
    }
    let wire: WireEvent<'_> = serde_json::from_slice(body).ok()?;
    (wire.kind == "event").then_some(ChannelEvent {
        channel: wire.channel,
        data: wire.data,
    })
}

/// The server's answer to a client's `auth` frame (a groupcast extension:
/// the seed's protocol has no replies, and clients that send no `auth`
/// never get one, except a refusal from a server that wants a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthReply {
    /// `{"type":"auth_ok"}`: the link is up.
    Accepted,
    /// `{"type":"auth_failed","reason":"..."}`, then the server closes.
    Refused(String),
}

/// Parses a server's frame body as an answer to `auth`; `None` for any
/// other body.
pub(crate) fn parse_auth_reply(body: &[u8]) -> Option<AuthReply> {
    #[derive(Deserialize)]
    struct WireReply<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(default)]
        reason: String,
    }
    let wire: WireReply<'_> = serde_json::from_slice(body).ok()?;
    match &*wire.kind {
        "auth_ok" => Some(AuthReply::Accepted),
        "auth_failed" => Some(AuthReply::Refused(wire.reason)),
        _ => None,
    }
}

/// Encodes the server's answer to an `auth` frame.
pub(crate) fn auth_reply_frame(reply: &AuthReply) -> Bytes {
    let body = match reply {
        AuthReply::Accepted => serde_json::json!({ "type": "auth_ok" }),
        AuthReply::Refused(reason) => {
            serde_json::json!({ "type": "auth_failed", "reason": reason })
        }
    };
    encode_frame(body.to_string().as_bytes()).unwrap_or_default()
}

/// Encodes any request body (a groupcast extension's: group history).
pub(crate) fn encode_request<D: Serialize + ?Sized>(request: &D) -> Option<Bytes> {
    encode_frame(&serde_json::to_vec(request).ok()?).ok()
}

/// Encodes a ping (an empty body).
pub(crate) fn ping_frame() -> Bytes {
    encode_frame(&[]).unwrap_or_default()
}

/// Encodes the `auth` request a client sends first when the server wants a
/// shared secret.
pub(crate) fn auth_frame(secret: &str) -> std::io::Result<Bytes> {
    let body = serde_json::to_vec(&serde_json::json!({ "type": "auth", "secret": secret }))?;
    encode_frame(&body)
}

/// Encodes a `subscribe` or `unsubscribe` request.
pub(crate) fn subscription_frame(subscribe: bool, channels: &[&str]) -> std::io::Result<Bytes> {
    let kind = if subscribe {
        "subscribe"
    } else {
        "unsubscribe"
    };
    let body = serde_json::to_vec(&serde_json::json!({ "type": kind, "channels": channels }))?;
    encode_frame(&body)
}

/// Encodes a `publish` of `data` on `channel`; with `exclude_self` the
/// server does not echo it back to this connection.
pub(crate) fn publish_frame<D: Serialize + ?Sized>(
    channel: &str,
    data: &D,
    exclude_self: bool,
) -> std::io::Result<Bytes> {
    #[derive(Serialize)]
    struct Publish<'a, D: ?Sized> {
        #[serde(rename = "type")]
        kind: &'static str,
        channels: [&'a str; 1],
        data: &'a D,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        exclude_self: bool,
    }
    let body = serde_json::to_vec(&Publish {
        kind: "publish",
        channels: [channel],
        data,
        exclude_self,
    })?;
    encode_frame(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_replies_round_trip_and_other_bodies_are_not_replies() {
        for reply in [
            AuthReply::Accepted,
            AuthReply::Refused("wrong secret".into()),
        ] {
            let frame = auth_reply_frame(&reply);
            assert_eq!(parse_auth_reply(&frame[4..]), Some(reply));
        }
        assert_eq!(
            &auth_reply_frame(&AuthReply::Accepted)[4..],
            br#"{"type":"auth_ok"}"#
        );
        assert_eq!(
            parse_auth_reply(br#"{"type":"event","channel":"a","data":1}"#),
            None
        );
        assert_eq!(parse_auth_reply(b""), None);
        assert_eq!(&ping_frame()[..], &[0, 0, 0, 4]);
    }

    #[test]
    fn parses_requests() {
        assert_eq!(parse_request(b""), Ok(Request::Ping));
        let null = RawValue::from_string("null".into()).unwrap();
        assert_eq!(
            parse_request(br#"{"type":"publish","channels":["c"],"data":null}"#),
            Ok(Request::Publish {
                channels: vec!["c".into()],
                data: Data::Json(&null),
                exclude_self: false,
            }),
            "null is data too"
        );
        assert_eq!(
            parse_request(br#"{"type":"subscribe","channels":["a","b"]}"#),
            Ok(Request::Subscribe(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_request(br#"{"type":"unsubscribe","channels":"a"}"#),
            Ok(Request::Unsubscribe(vec!["a".into()]))
        );
        match parse_request(br#"{"type":"publish","channels":["c"],"data":{"x":[1,2]}}"#) {
            Ok(Request::Publish {
                channels,
                data: Data::Json(data),
                ..
            }) => {
                assert_eq!(channels, vec!["c".to_owned()]);
                assert_eq!(data.get(), r#"{"x":[1,2]}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_what_is_not_a_request() {
        for body in [
            &b"garbage"[..],
            b"[]",
            br#"{"type":"subscribe"}"#,
            br#"{"type":"publish","channels":["c"]}"#,
            br#"{"type":"dance","channels":["c"]}"#,
            br#"{"channels":["c"]}"#,
        ] {
            assert!(
                parse_request(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn event_frames_carry_the_data_as_published() {
        let data = RawValue::from_string(r#"{"group_id":"1","message":"hé"}"#.into()).unwrap();
        let frame = crate::channel::dialect::delivery_frame(
            crate::channel::dialect::Dialect::Json,
            crate::channel::dialect::Delivery::Event,
            "send_to_group",
            Data::Json(&data),
        )
        .unwrap();
        let body = &frame[4..];
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            r#"{"type":"event","channel":"send_to_group","data":{"group_id":"1","message":"hé"}}"#
        );
        let event = parse_event(body).unwrap();
        assert_eq!(event.channel, "send_to_group");
        assert_eq!(event.data.get(), data.get());
    }

    #[test]
    fn client_frames_parse_back_on_the_server() {
        let frame = publish_frame("ch", &serde_json::json!({"k": 1}), false).unwrap();
        match parse_request(&frame[4..]).unwrap() {
            Request::Publish {
                channels,
                data: Data::Json(data),
                ..
            } => {
                assert_eq!(channels, vec!["ch".to_owned()]);
                assert_eq!(data.get(), r#"{"k":1}"#);
            }
            other => panic!("{other:?}"),
        }
        let frame = subscription_frame(true, &["a", "b"]).unwrap();
        assert_eq!(
            parse_request(&frame[4..]).unwrap(),
            Request::Subscribe(vec!["a".into(), "b".into()])
        );
    }
}
