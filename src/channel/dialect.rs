//! The two body encodings of the channel protocol: groupcast's JSON and the
//! seed's PHP `serialize()` (walkor/channel), on one server.
//!
//! A server connection speaks the dialect of its first non-empty body (`{`
//! for JSON, `a:` for PHP); requests of both become the same [`Request`],
//! and a publish is encoded at most once per dialect, whatever the number
//! of subscribers ([`EventFrames`]), so PHP clients and groupcast nodes
//! share channels. Published data is kept as it came (JSON text, or the PHP
//! bytes the decoder checked) and converted only for subscribers of the
//! other dialect: a PHP subscriber of a PHP publisher receives the very
//! bytes published.
//!
//! Conversions: a PHP list (keys 0, 1, … in order) is a JSON array, any
//! other PHP array a JSON object; JSON objects become PHP arrays with PHP's
//! key rules, as PHP's `json_decode($text, true)` does. What has no
//! counterpart cannot be delivered across: a PHP string that is not UTF-8
//! (JSON strings are text) and a NaN or infinite float (JSON has none).
//!
//! Older walkor/channel servers (up to 1.2.1) append `"\n"` to an event
//! body, so one trailing newline after a PHP body is accepted; none is ever
//! sent.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::codec::encode_frame;
use super::message::{
    ChannelEvent, Request, auth_frame, parse_event, parse_request, ping_frame, publish_frame,
    subscription_frame,
};
use super::php::{self, Parser, PhpKey, PhpValue};
use super::php_json::{json_to_php, php_to_json};
use crate::config::ChannelProtocol;

/// The encoding of a connection's bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// groupcast's JSON maps.
    Json,
    /// The seed's PHP `serialize()` arrays.
    Php,
}

impl Dialect {
    /// As a small number, to keep in an atomic (0 is "not known yet").
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Dialect::Json => 1,
            Dialect::Php => 2,
        }
    }

    /// Back from [`Dialect::to_u8`].
    pub(crate) fn from_u8(n: u8) -> Option<Dialect> {
        match n {
            1 => Some(Dialect::Json),
            2 => Some(Dialect::Php),
            _ => None,
        }
    }

    /// The dialect of a first non-empty body.
    ///
    /// # Errors
    ///
    /// A message saying the body is neither.
    pub(crate) fn detect(body: &[u8]) -> Result<Dialect, String> {
        let start = body.trim_ascii_start();
        if start.starts_with(b"{") {
            Ok(Dialect::Json)
        } else if start.starts_with(b"a:") {
            Ok(Dialect::Php)
        } else {
            Err(format!(
                "a channel request is a JSON object or a PHP serialize() array; this body starts with byte {:#04x}",
                start.first().copied().unwrap_or_default()
            ))
        }
    }
}

/// Published data, as it came.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Data<'a> {
    /// JSON text.
    Json(&'a RawValue),
    /// PHP `serialize()` bytes, already checked by the decoder.
    Php(&'a [u8]),
}

impl PartialEq for Data<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Data::Json(a), Data::Json(b)) => a.get() == b.get(),
            (Data::Php(a), Data::Php(b)) => a == b,
            _ => false,
        }
    }
}

/// Data kept past its request (a queue's items).
#[derive(Debug, Clone)]
pub(crate) enum OwnedData {
    /// JSON text.
    Json(Box<RawValue>),
    /// Checked PHP `serialize()` bytes.
    Php(Bytes),
}

impl OwnedData {
    /// Borrows it back as [`Data`].
    pub(crate) fn as_data(&self) -> Data<'_> {
        match self {
            OwnedData::Json(raw) => Data::Json(raw),
            OwnedData::Php(bytes) => Data::Php(bytes),
        }
    }

    /// Bytes it takes, against a queue's bound.
    pub(crate) fn len(&self) -> usize {
        match self {
            OwnedData::Json(raw) => raw.get().len(),
            OwnedData::Php(bytes) => bytes.len(),
        }
    }
}

impl Data<'_> {
    /// A copy to keep.
    pub(crate) fn to_owned_data(self) -> OwnedData {
        match self {
            Data::Json(raw) => OwnedData::Json(raw.to_owned()),
            Data::Php(bytes) => OwnedData::Php(Bytes::copy_from_slice(bytes)),
        }
    }

    /// The data as PHP `serialize()` bytes.
    ///
    /// # Errors
    ///
    /// Never for valid JSON; a message otherwise.
    fn to_php(self) -> Result<Vec<u8>, String> {
        match self {
            Data::Php(bytes) => Ok(bytes.to_vec()),
            Data::Json(raw) => Ok(json_to_php(raw.get())?.encode()),
        }
    }

    /// The data as JSON text.
    ///
    /// # Errors
    ///
    /// When the PHP value has no JSON counterpart (a string that is not
    /// UTF-8, a NaN or infinite float).
    pub(crate) fn to_json(self) -> Result<Box<RawValue>, String> {
        match self {
            Data::Json(raw) => Ok(raw.to_owned()),
            Data::Php(bytes) => {
                let value = php::decode(bytes).map_err(|e| e.to_string())?;
                RawValue::from_string(php_to_json(&value)?).map_err(|e| e.to_string())
            }
        }
    }
}

/// A server connection's dialect, decided by its first non-empty body.
#[derive(Debug, Default)]
pub(crate) struct ConnectionDialect(Option<Dialect>);

impl ConnectionDialect {
    /// The dialect, once known.
    pub(crate) fn get(&self) -> Option<Dialect> {
        self.0
    }

    /// Parses a body in this connection's dialect (deciding it on the first
    /// non-empty body).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: the connection must close.
    pub(crate) fn parse<'a>(&mut self, body: &'a [u8]) -> Result<Request<'a>, String> {
        if body.is_empty() {
            return Ok(Request::Ping);
        }
        let dialect = match self.0 {
            Some(dialect) => dialect,
            None => *self.0.insert(Dialect::detect(body)?),
        };
        match dialect {
            Dialect::Json => parse_request(body),
            Dialect::Php => parse_php_request(body),
        }
    }
}

/// A body without the one `"\n"` older Workerman peers append.
pub(crate) fn without_newline(body: &[u8]) -> &[u8] {
    body.strip_suffix(b"\n").unwrap_or(body)
}

/// Parses a PHP `serialize()` request body.
///
/// # Errors
///
/// A message for a body that is not a plain-data PHP array with a known
/// `type` and the fields it needs.
pub(crate) fn parse_php_request(body: &[u8]) -> Result<Request<'_>, String> {
    let body = without_newline(body);
    if body.is_empty() {
        return Ok(Request::Ping);
    }
    let bad = |e: php::PhpError| format!("bad PHP channel request: {e}");
    let mut parser = Parser::new(body);
    let n = parser.array_open().map_err(bad)?;
    let mut kind = None;
    let mut channels = None;
    let mut data = None;
    let mut secret = None;
    let mut exclude_self = false;
    for _ in 0..n {
        let key = parser.key_bytes().map_err(bad)?;
        let start = parser.pos();
        match key {
            Some(b"type") => kind = Some(parser.value().map_err(bad)?),
            Some(b"channels") => channels = Some(parser.value().map_err(bad)?),
            Some(b"secret") => secret = Some(parser.value().map_err(bad)?),
            Some(b"exclude_self") => {
                exclude_self = matches!(parser.value().map_err(bad)?, PhpValue::Bool(true));
            }
            // Checked, not built: it is passed on as its bytes.
            Some(b"data") => {
                parser.skip_value().map_err(bad)?;
                data = Some(parser.slice(start, parser.pos()));
            }
            _ => parser.skip_value().map_err(bad)?,
        }
    }
    parser.array_close().map_err(bad)?;
    parser.end().map_err(bad)?;
    let kind = match kind {
        Some(PhpValue::Str(kind)) => String::from_utf8_lossy(&kind).into_owned(),
        Some(_) => return Err("a PHP channel request's \"type\" must be a string".into()),
        None => return Err("a PHP channel request needs \"type\"".into()),
    };
    let channels = || -> Result<Vec<String>, String> {
        match &channels {
            Some(PhpValue::Array(entries)) => entries
                .iter()
                .map(|(_, v)| channel_name(v))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("{kind}: channel names are strings or ints")),
            Some(other) => channel_name(other)
                .map(|one| vec![one])
                .ok_or_else(|| format!("{kind}: channel names are strings or ints")),
            None => Err(format!("{kind} needs \"channels\"")),
        }
    };
    let data = || {
        data.map(Data::Php)
            .ok_or_else(|| format!("{kind} needs \"data\""))
    };
    let secret = match secret {
        Some(PhpValue::Str(secret)) => Some(String::from_utf8_lossy(&secret).into_owned()),
        _ => None,
    };
    Request::from_parts(&kind, channels, data, secret, exclude_self)
}

/// A channel name: PHP array keys, so strings and ints (in decimal).
fn channel_name(value: &PhpValue) -> Option<String> {
    match value {
        PhpValue::Str(bytes) => String::from_utf8(bytes.clone()).ok(),
        PhpValue::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

impl<'a> Request<'a> {
    /// The request a `type` names, with its fields (shared by both
    /// dialects).
    ///
    /// # Errors
    ///
    /// An unknown type, or a missing field.
    pub(crate) fn from_parts(
        kind: &str,
        channels: impl FnOnce() -> Result<Vec<String>, String>,
        data: impl FnOnce() -> Result<Data<'a>, String>,
        secret: Option<String>,
        exclude_self: bool,
    ) -> Result<Request<'a>, String> {
        Ok(match kind {
            "auth" => Request::Auth(secret.ok_or("auth needs \"secret\"")?),
            "subscribe" => Request::Subscribe(channels()?),
            "unsubscribe" => Request::Unsubscribe(channels()?),
            "publish" => Request::Publish {
                data: data()?,
                channels: channels()?,
                exclude_self,
            },
            "publishLoop" => Request::PublishLoop {
                data: data()?,
                channels: channels()?,
            },
            "watch" => Request::Watch(channels()?),
            "unwatch" => Request::Unwatch(channels()?),
            "enqueue" => Request::Enqueue {
                data: data()?,
                channels: channels()?,
            },
            "reserve" => Request::Reserve,
            other => return Err(format!("unknown channel request type {other:?}")),
        })
    }
}

/// What a server sends: a publish (`event`) or a queue item (`queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// `{"type":"event",…}`: a publish on a subscribed channel.
    Event,
    /// `{"type":"queue",…}`: an item of a watched queue.
    Queue,
}

impl Delivery {
    fn name(self) -> &'static str {
        match self {
            Delivery::Event => "event",
            Delivery::Queue => "queue",
        }
    }
}

/// Encodes one delivery frame in `dialect`.
///
/// # Errors
///
/// When the data has no form in `dialect`, or the frame is over 4 GiB.
pub(crate) fn delivery_frame(
    dialect: Dialect,
    kind: Delivery,
    channel: &str,
    data: Data<'_>,
) -> Result<Bytes, String> {
    let body = match dialect {
        Dialect::Json => {
            let data = data.to_json()?;
            let mut body = Vec::with_capacity(data.get().len() + channel.len() + 40);
            body.extend_from_slice(br#"{"type":""#);
            body.extend_from_slice(kind.name().as_bytes());
            body.extend_from_slice(br#"","channel":"#);
            serde_json::to_writer(&mut body, channel).map_err(|e| e.to_string())?;
            body.extend_from_slice(br#","data":"#);
            body.extend_from_slice(data.get().as_bytes());
            body.push(b'}');
            body
        }
        Dialect::Php => {
            let data = data.to_php()?;
            let mut body = Vec::with_capacity(data.len() + channel.len() + 60);
            body.extend_from_slice(b"a:3:{");
            php::encode_str(b"type", &mut body);
            php::encode_str(kind.name().as_bytes(), &mut body);
            php::encode_str(b"channel", &mut body);
            php::encode_str(channel.as_bytes(), &mut body);
            php::encode_str(b"data", &mut body);
            body.extend_from_slice(&data);
            body.push(b'}');
            body
        }
    };
    encode_frame(&body).map_err(|e| e.to_string())
}

/// One publish's frames, encoded at most once per dialect however many
/// subscribers take them.
pub(crate) struct EventFrames<'a> {
    kind: Delivery,
    channel: &'a str,
    data: Data<'a>,
    json: Option<Option<Bytes>>,
    php: Option<Option<Bytes>>,
}

impl<'a> EventFrames<'a> {
    pub(crate) fn new(kind: Delivery, channel: &'a str, data: Data<'a>) -> Self {
        EventFrames {
            kind,
            channel,
            data,
            json: None,
            php: None,
        }
    }

    /// The frame for a subscriber of `dialect`; `None` when the data has no
    /// form in it (the caller counts it).
    pub(crate) fn get(&mut self, dialect: Dialect) -> Option<Bytes> {
        let (kind, channel, data) = (self.kind, self.channel, self.data);
        let slot = match dialect {
            Dialect::Json => &mut self.json,
            Dialect::Php => &mut self.php,
        };
        slot.get_or_insert_with(|| delivery_frame(dialect, kind, channel, data).ok())
            .clone()
    }
}

/// Encodes a client's `subscribe` or `unsubscribe` in `protocol`'s dialect.
///
/// # Errors
///
/// A frame over 4 GiB.
pub(crate) fn subscription_frame_in(
    protocol: ChannelProtocol,
    subscribe: bool,
    channels: &[&str],
) -> std::io::Result<Bytes> {
    if protocol == ChannelProtocol::Groupcast {
        return subscription_frame(subscribe, channels);
    }
    let kind = if subscribe {
        "subscribe"
    } else {
        "unsubscribe"
    };
    let body = PhpValue::array([
        (PhpKey::from_bytes(b"type"), PhpValue::str(kind)),
        (
            PhpKey::from_bytes(b"channels"),
            PhpValue::list(channels.iter().map(PhpValue::str)),
        ),
    ])
    .encode();
    encode_frame(&body)
}

/// Encodes a client's `publish` of `data` on `channel` in `protocol`'s
/// dialect. In PHP, `data` goes through JSON (object keys in their order)
/// and `exclude_self` is an extra key that the PHP `Channel\Server`
/// ignores.
///
/// # Errors
///
/// `data` that cannot be encoded, a frame over 4 GiB.
pub(crate) fn publish_frame_in<D: serde::Serialize + ?Sized>(
    protocol: ChannelProtocol,
    channel: &str,
    data: &D,
    exclude_self: bool,
) -> std::io::Result<Bytes> {
    if protocol == ChannelProtocol::Groupcast {
        return publish_frame(channel, data, exclude_self);
    }
    let json = serde_json::to_string(data)?;
    let data = json_to_php(&json).map_err(std::io::Error::other)?;
    let mut body = Vec::with_capacity(json.len() + channel.len() + 80);
    body.extend_from_slice(if exclude_self { b"a:4:{" } else { b"a:3:{" });
    php::encode_str(b"type", &mut body);
    php::encode_str(b"publish", &mut body);
    php::encode_str(b"channels", &mut body);
    PhpValue::list([PhpValue::str(channel)]).encode_into(&mut body);
    php::encode_str(b"data", &mut body);
    data.encode_into(&mut body);
    if exclude_self {
        php::encode_str(b"exclude_self", &mut body);
        PhpValue::Bool(true).encode_into(&mut body);
    }
    body.push(b'}');
    encode_frame(&body)
}

/// The first frame of a client: its secret (`auth`), or a ping. In PHP an
/// `auth` gets no answer (a server without a secret, like the PHP
/// `Channel\Server`, ignores it; one with a secret closes on a wrong one).
///
/// # Errors
///
/// A frame over 4 GiB.
pub(crate) fn hello_frame(
    protocol: ChannelProtocol,
    secret: Option<&str>,
) -> std::io::Result<Bytes> {
    match (protocol, secret) {
        (_, None) => Ok(ping_frame()),
        (ChannelProtocol::Groupcast, Some(secret)) => auth_frame(secret),
        (ChannelProtocol::Workerman, Some(secret)) => encode_frame(
            &PhpValue::array([
                (PhpKey::from_bytes(b"type"), PhpValue::str("auth")),
                (PhpKey::from_bytes(b"secret"), PhpValue::str(secret)),
            ])
            .encode(),
        ),
    }
}

/// Reads a server's body, in either dialect, as an event; `None` for
/// pings, other bodies, and PHP data with no JSON form.
pub(crate) fn parse_event_any(body: &[u8]) -> Option<ChannelEvent> {
    if body.starts_with(b"a:") {
        let (channel, data) = parse_php_event(body)?;
        Some(ChannelEvent { channel, data })
    } else {
        parse_event(body)
    }
}

/// Reads a server's PHP body as an event: channel and data (as JSON);
/// `None` for pings, other types, and data with no JSON form.
pub(crate) fn parse_php_event(body: &[u8]) -> Option<(String, Box<RawValue>)> {
    let body = without_newline(body);
    let mut parser = Parser::new(body);
    let n = parser.array_open().ok()?;
    let (mut kind, mut channel, mut data) = (None, None, None);
    for _ in 0..n {
        let key = parser.key_bytes().ok()?;
        let start = parser.pos();
        match key {
            Some(b"type") => kind = Some(parser.value().ok()?),
            Some(b"channel") => channel = channel_name(&parser.value().ok()?),
            Some(b"data") => {
                parser.skip_value().ok()?;
                data = Some(parser.slice(start, parser.pos()));
            }
            _ => parser.skip_value().ok()?,
        }
    }
    parser.array_close().ok()?;
    parser.end().ok()?;
    if kind != Some(PhpValue::str("event")) {
        return None;
    }
    let data = Data::Php(data?).to_json().ok()?;
    Some((channel?, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISH: &[u8] = br#"a:3:{s:4:"type";s:7:"publish";s:8:"channels";a:1:{i:0;s:13:"send_to_group";}s:4:"data";a:2:{s:8:"group_id";s:3:"123";s:7:"message";s:5:"hello";}}"#;
    const EVENT: &[u8] = br#"a:3:{s:4:"type";s:5:"event";s:7:"channel";s:13:"send_to_group";s:4:"data";a:2:{s:8:"group_id";s:3:"123";s:7:"message";s:5:"hello";}}"#;

    #[test]
    fn the_issue_s_publish_becomes_its_event_byte_for_byte() {
        let Ok(Request::Publish { channels, data, .. }) = parse_php_request(PUBLISH) else {
            panic!()
        };
        assert_eq!(channels, ["send_to_group"]);
        let frame = EventFrames::new(Delivery::Event, &channels[0], data)
            .get(Dialect::Php)
            .unwrap();
        assert_eq!(&frame[..4], &[0, 0, 0, 0x88]);
        assert_eq!(&frame[4..], EVENT);
        let json = EventFrames::new(Delivery::Event, &channels[0], data)
            .get(Dialect::Json)
            .unwrap();
        assert_eq!(
            &json[4..],
            br#"{"type":"event","channel":"send_to_group","data":{"group_id":"123","message":"hello"}}"#
        );
        let (channel, data) = parse_php_event(EVENT).unwrap();
        assert_eq!(
            (&*channel, data.get()),
            ("send_to_group", r#"{"group_id":"123","message":"hello"}"#)
        );
        let mut with_newline = EVENT.to_vec();
        with_newline.push(b'\n');
        assert!(parse_php_event(&with_newline).is_some());
    }

    #[test]
    fn every_php_request_type_parses() {
        let cases: [(&[u8], Request<'_>); 7] = [
            (
                br#"a:2:{s:4:"type";s:9:"subscribe";s:8:"channels";a:2:{i:0;s:1:"a";i:1;i:5;}}"#,
                Request::Subscribe(vec!["a".into(), "5".into()]),
            ),
            (
                b"a:2:{s:4:\"type\";s:11:\"unsubscribe\";s:8:\"channels\";a:1:{i:0;s:1:\"a\";}}\n",
                Request::Unsubscribe(vec!["a".into()]),
            ),
            (
                br#"a:3:{s:4:"type";s:11:"publishLoop";s:8:"channels";a:1:{i:0;s:1:"q";}s:4:"data";i:7;}"#,
                Request::PublishLoop {
                    channels: vec!["q".into()],
                    data: Data::Php(b"i:7;"),
                },
            ),
            (
                br#"a:2:{s:4:"type";s:5:"watch";s:8:"channels";a:1:{i:0;s:1:"q";}}"#,
                Request::Watch(vec!["q".into()]),
            ),
            (
                br#"a:2:{s:4:"type";s:7:"unwatch";s:8:"channels";a:1:{i:0;s:1:"q";}}"#,
                Request::Unwatch(vec!["q".into()]),
            ),
            (
                br#"a:3:{s:4:"type";s:7:"enqueue";s:8:"channels";a:1:{i:0;s:1:"q";}s:4:"data";N;}"#,
                Request::Enqueue {
                    channels: vec!["q".into()],
                    data: Data::Php(b"N;"),
                },
            ),
            (br#"a:1:{s:4:"type";s:7:"reserve";}"#, Request::Reserve),
        ];
        for (body, request) in cases {
            assert_eq!(
                parse_php_request(body),
                Ok(request),
                "{}",
                body.escape_ascii()
            );
        }
    }

    #[test]
    fn bad_php_requests_say_why() {
        for (body, says) in [
            (&br#"a:1:{s:4:"type";O:8:"stdClass":0:{}}"#[..], "objects"),
            (br#"a:1:{s:4:"type";s:5:"dance";}"#, "unknown"),
            (br#"a:1:{s:4:"type";s:9:"subscribe";}"#, "channels"),
            (
                br#"a:2:{s:4:"type";s:7:"publish";s:8:"channels";a:0:{}}"#,
                "data",
            ),
            (br#"a:0:{}"#, "type"),
            (b"i:1;", "array"),
            (
                br#"a:2:{s:4:"type";s:9:"subscribe";s:8:"channels";a:1:{i:0;a:0:{}}}"#,
                "channel names",
            ),
        ] {
            let error = parse_php_request(body).unwrap_err();
            assert!(error.contains(says), "{}: {error}", body.escape_ascii());
        }
    }

    #[test]
    fn dialects_are_told_by_the_first_byte() {
        let mut conn = ConnectionDialect::default();
        assert_eq!(conn.parse(b""), Ok(Request::Ping));
        assert_eq!(conn.get(), None, "a ping decides nothing");
        assert!(conn.parse(br#"a:1:{s:4:"type";s:7:"reserve";}"#).is_ok());
        assert_eq!(conn.get(), Some(Dialect::Php));
        assert!(
            conn.parse(br#"{"type":"reserve"}"#).is_err(),
            "then it stays PHP"
        );
        assert!(Dialect::detect(b"hello").unwrap_err().contains("0x68"));
    }

    #[test]
    fn data_with_no_json_form_reaches_php_subscribers_only() {
        let data = Data::Php(b"s:1:\"\xff\";");
        let mut frames = EventFrames::new(Delivery::Queue, "c", data);
        assert!(frames.get(Dialect::Json).is_none());
        assert!(frames.get(Dialect::Php).is_some());
    }
}
