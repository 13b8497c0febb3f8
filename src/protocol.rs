//! The client protocol: JSON commands a websocket client sends, and the JSON
//! error replies it gets back when a command is not understood.
//!
//! Parsing borrows from the frame it reads: the hot command,
//! `send_to_group`, copies its message out once as text; the node then
//! encodes it once into the frame bytes every member's writer shares (and,
//! with a bus, once more into the envelope for the other nodes).

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::GroupId;

/// A command a client sent, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `{"cmd":"add_group","group_id":...}`: join the group.
    AddGroup(GroupId),
    /// `{"cmd":"leave_group","group_id":...}`: leave the group.
    LeaveGroup(GroupId),
    /// `{"cmd":"send_to_group","group_id":...,"message":...}`: deliver
    /// `message` to every member of the group on every node. `message` holds
    /// the text each member receives: a JSON string's contents, or the JSON
    /// text of any other value; `json` says which (members that asked for
    /// positions get the value back as it was sent).
    SendToGroup {
        group: GroupId,
        message: String,
        json: bool,
    },
    /// `{"cmd":"add_group","group_id":...,"presence":true}`: join the group
    /// and receive its presence events (`join` / `leave` per user).
    AddGroupWithPresence(GroupId),
    /// `{"cmd":"presence","group_id":...}`: who is in the group, across
    /// the cluster.
    Presence(GroupId),
    /// `add_group` with `"positions":true` or `"since":{"offset":O,"epoch":"E"}`
    /// (group history, issue 17): join the group, be told its position
    /// (`joined`), get missed messages when `since` is given, and receive
    /// its messages as positioned `message` objects.
    AddGroupPositioned {
        group: GroupId,
        since: Option<crate::history::Position>,
    },
}

/// Why a client's frame is not a command. Each kind has a stable `code` a
/// client can match on, and a message written for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame is not JSON at all.
    NotJson(String),
    /// The frame is JSON, but not an object with the expected fields.
    NotObject,
    /// A field has the wrong JSON type (for example a numeric `cmd`).
    InvalidField(String),
    /// The object has no `cmd`.
    MissingCmd,
    /// `cmd` names no built-in command.
    UnknownCmd(String),
    /// The command needs a `group_id` and has none.
    MissingGroupId,
    /// `group_id` is empty, too long, or neither a string nor an integer.
    InvalidGroupId(String),
    /// `send_to_group` without a `message`.
    MissingMessage,
    /// A binary frame that is not a UTF-8 JSON command.
    BinaryNotCommand,
}

impl ProtocolError {
    /// A short stable identifier, the `code` field of the error reply.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::NotJson(_) => "not_json",
            ProtocolError::NotObject => "not_object",
            ProtocolError::InvalidField(_) => "invalid_field",
            ProtocolError::MissingCmd => "missing_cmd",
            ProtocolError::UnknownCmd(_) => "unknown_cmd",
            ProtocolError::MissingGroupId => "missing_group_id",
            ProtocolError::InvalidGroupId(_) => "invalid_group_id",
            ProtocolError::MissingMessage => "missing_message",
            ProtocolError::BinaryNotCommand => "binary_not_command",
        }
    }

    /// Whether the frame was meant as a built-in command (a known `cmd` with
    /// bad fields). Other frames may be the host's own protocol, and go to
    /// the host when it listens for messages.
    pub fn is_builtin(&self) -> bool {
        matches!(
            self,
            ProtocolError::MissingGroupId
                | ProtocolError::InvalidGroupId(_)
                | ProtocolError::MissingMessage
        )
    }

    /// The JSON error reply sent to the client:
    /// `{"type":"error","code":"...","message":"..."}`.
    pub fn to_reply(&self) -> String {
        error_reply(self.code(), &self.to_string())
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::NotJson(why) => write!(f, "frame is not valid JSON: {why}"),
            ProtocolError::NotObject => f.write_str("command must be a JSON object"),
            ProtocolError::InvalidField(why) => write!(f, "invalid command: {why}"),
            ProtocolError::MissingCmd => f.write_str("command has no \"cmd\" field"),
            ProtocolError::UnknownCmd(cmd) => write!(
                f,
                "unknown cmd {cmd:?}; expected add_group, leave_group, send_to_group or presence"
            ),
            ProtocolError::MissingGroupId => f.write_str("command needs a \"group_id\""),
            ProtocolError::InvalidGroupId(why) => write!(f, "invalid group_id: {why}"),
            ProtocolError::MissingMessage => f.write_str("send_to_group needs a \"message\""),
            ProtocolError::BinaryNotCommand => {
                f.write_str("binary frame is not a UTF-8 JSON command")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Builds the JSON error reply `{"type":"error","code":...,"message":...}`.
pub(crate) fn error_reply(code: &str, message: &str) -> String {
    serde_json::json!({ "type": "error", "code": code, "message": message }).to_string()
}

/// The wire shape of a command. Fields stay raw so that each one is checked
/// with its own error, and unknown fields are ignored (browser clients add
/// their own).
///
/// `Option<&RawValue>` alone would read an explicit `null` as absent; the
/// `present` deserializer keeps it, so `"message": null` is the text `null`.
#[derive(Deserialize)]
struct WireCommand<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    cmd: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    group_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    message: Option<&'a RawValue>,
    /// `add_group`'s opt-in to presence events.
    #[serde(default)]
    presence: Option<bool>,
    #[serde(borrow, default, deserialize_with = "present")]
    positions: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    since: Option<&'a RawValue>,
}

fn present<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// Parses one text frame into a built-in command.
///
/// `max_group_id_len` bounds the group id in bytes.
///
/// # Errors
///
/// Returns a [`ProtocolError`] naming what is wrong with the frame.
pub fn parse_command(text: &str, max_group_id_len: usize) -> Result<ClientCommand, ProtocolError> {
    if !text.trim_start().starts_with('{') {
        // serde would read a JSON array as a struct: refuse anything that is
        // not an object up front, and say whether it was JSON at all.
        return Err(match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => ProtocolError::NotObject,
            Err(e) => ProtocolError::NotJson(e.to_string()),
        });
    }
    let wire: WireCommand<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ProtocolError::InvalidField(e.to_string()),
        _ => ProtocolError::NotJson(e.to_string()),
    })?;
    let cmd = wire.cmd.ok_or(ProtocolError::MissingCmd)?;
    let cmd: &str = serde_json::from_str(cmd.get())
        .map_err(|_| ProtocolError::InvalidField("\"cmd\" must be a string".into()))?;
    let group = || {
        let raw = wire.group_id.ok_or(ProtocolError::MissingGroupId)?;
        parse_group_id(raw, max_group_id_len)
    };
    match cmd {
        // Presence events and positioned messages are separate opt-ins;
        // asking for both in one join is refused rather than half-served.
        "add_group"
            if wire.presence == Some(true)
                && (wire.positions.is_some() || wire.since.is_some()) =>
        {
            Err(ProtocolError::InvalidField(
                "\"presence\" and \"positions\"/\"since\" cannot be asked in one add_group".into(),
            ))
        }
        "add_group" if wire.presence == Some(true) => {
            Ok(ClientCommand::AddGroupWithPresence(group()?))
        }
        "add_group" if wire.positions.is_some() || wire.since.is_some() => {
            let group = group()?;
            positioned_join(group, wire.positions, wire.since)
        }
        "add_group" => Ok(ClientCommand::AddGroup(group()?)),
        "presence" => Ok(ClientCommand::Presence(group()?)),
        "leave_group" => Ok(ClientCommand::LeaveGroup(group()?)),
        "send_to_group" => {
            let group = group()?;
            let raw = wire.message.ok_or(ProtocolError::MissingMessage)?;
            Ok(ClientCommand::SendToGroup {
                group,
                message: message_text(raw),
                json: !raw.get().starts_with('"'),
            })
        }
        other => Err(ProtocolError::UnknownCmd(other.to_owned())),
    }
}

/// `add_group`'s history options: `"positions"` a boolean, `"since"` an
/// object `{"offset": <integer >= 0>, "epoch": <string>}` (which implies
/// positions).
fn positioned_join(
    group: GroupId,
    positions: Option<&RawValue>,
    since: Option<&RawValue>,
) -> Result<ClientCommand, ProtocolError> {
    let positions = match positions {
        None => false,
        Some(raw) => serde_json::from_str::<bool>(raw.get()).map_err(|_| {
            ProtocolError::InvalidField("\"positions\" must be true or false".into())
        })?,
    };
    let since = match since {
        None => None,
        Some(raw) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Since {
                offset: u64,
                epoch: String,
            }
            let since: Since = serde_json::from_str(raw.get()).map_err(|_| {
                ProtocolError::InvalidField(
                    "\"since\" must be {\"offset\": <integer >= 0>, \"epoch\": <string>}, from a \"joined\" reply or a \"message\"".into(),
                )
            })?;
            Some(crate::history::Position {
                offset: since.offset,
                epoch: since.epoch,
            })
        }
    };
    match (positions, since) {
        (false, None) => Ok(ClientCommand::AddGroup(group)),
        (_, since) => Ok(ClientCommand::AddGroupPositioned { group, since }),
    }
}

/// Parses a binary frame: accepted when it is a UTF-8 JSON command.
///
/// # Errors
///
/// [`ProtocolError::BinaryNotCommand`] when the bytes are not UTF-8, otherwise
/// whatever [`parse_command`] says.
pub fn parse_binary_command(
    data: &[u8],
    max_group_id_len: usize,
) -> Result<ClientCommand, ProtocolError> {
    let text = std::str::from_utf8(data).map_err(|_| ProtocolError::BinaryNotCommand)?;
    parse_command(text, max_group_id_len).map_err(|e| match e {
        ProtocolError::NotJson(_) => ProtocolError::BinaryNotCommand,
        other => other,
    })
}

/// A `group_id` is a non-empty string or an integer; `123` and `"123"` name
/// the same group.
fn parse_group_id(raw: &RawValue, max_len: usize) -> Result<GroupId, ProtocolError> {
    let text = raw.get();
    let id: String = if text.starts_with('"') {
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidGroupId(e.to_string()))?
    } else if let Ok(n) = text.parse::<i128>() {
        n.to_string()
    } else {
        return Err(ProtocolError::InvalidGroupId(format!(
            "must be a string or an integer, got {text}"
        )));
    };
    GroupId::new(id, max_len).map_err(ProtocolError::InvalidGroupId)
}

/// The text members receive: a JSON string's contents, or the JSON text of
/// any other value (as the client wrote it).
fn message_text(raw: &RawValue) -> String {
    let text = raw.get();
    if text.starts_with('"') {
        // RawValue only holds valid JSON, so a string always decodes.
        serde_json::from_str(text).unwrap_or_else(|_| text.to_owned())
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 256;

    fn group(id: &str) -> GroupId {
        GroupId::new(id.to_owned(), MAX).unwrap()
    }

    #[test]
    fn parses_the_seed_commands() {
        assert_eq!(
            parse_command(r#"{"cmd":"add_group", "group_id":"123"}"#, MAX),
            Ok(ClientCommand::AddGroup(group("123")))
        );
        assert_eq!(
            parse_command(
                r#"{"cmd":"send_to_group", "group_id":"123", "message":"C'est le message"}"#,
                MAX
            ),
            Ok(ClientCommand::SendToGroup {
                group: group("123"),
                message: "C'est le message".into(),
                json: false,
            })
        );
        assert_eq!(
            parse_command(r#"{"cmd":"leave_group","group_id":"a b"}"#, MAX),
            Ok(ClientCommand::LeaveGroup(group("a b")))
        );
    }

    #[test]
    fn integer_and_string_ids_name_the_same_group() {
        let a = parse_command(r#"{"cmd":"add_group","group_id":123}"#, MAX).unwrap();
        let b = parse_command(r#"{"cmd":"add_group","group_id":"123"}"#, MAX).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_command(r#"{"cmd":"add_group","group_id":-7}"#, MAX),
            Ok(ClientCommand::AddGroup(group("-7")))
        );
    }

    #[test]
    fn non_string_messages_arrive_as_json_text() {
        for (raw, expected) in [
            ("42", "42"),
            ("1.5", "1.5"),
            ("true", "true"),
            ("null", "null"),
            (r#"{"a":[1,2]}"#, r#"{"a":[1,2]}"#),
            (r#""with \"quotes\" \u00e9""#, "with \"quotes\" é"),
        ] {
            let frame = format!(r#"{{"cmd":"send_to_group","group_id":"g","message":{raw}}}"#);
            match parse_command(&frame, MAX) {
                Ok(ClientCommand::SendToGroup { message, .. }) => assert_eq!(message, expected),
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(
            parse_command(r#"{"cmd":"add_group","group_id":"1","extra":{"x":1}}"#, MAX),
            Ok(ClientCommand::AddGroup(group("1")))
        );
    }

    #[test]
    fn each_bad_input_names_its_problem() {
        let long_id = format!(
            r#"{{"cmd":"add_group","group_id":"{}"}}"#,
            "x".repeat(MAX + 1)
        );
        let cases: &[(&str, &str)] = &[
            ("hello", "not_json"),
            ("", "not_json"),
            ("{\"cmd\":", "not_json"),
            ("[1,2]", "not_object"),
            ("\"add_group\"", "not_object"),
            ("42", "not_object"),
            ("{}", "missing_cmd"),
            (r#"{"group_id":"1"}"#, "missing_cmd"),
            (r#"{"cmd":5,"group_id":"1"}"#, "invalid_field"),
            (r#"{"cmd":"dance","group_id":"1"}"#, "unknown_cmd"),
            (r#"{"cmd":"add_group"}"#, "missing_group_id"),
            (r#"{"cmd":"add_group","group_id":""}"#, "invalid_group_id"),
            (r#"{"cmd":"add_group","group_id":null}"#, "invalid_group_id"),
            (r#"{"cmd":"add_group","group_id":1.5}"#, "invalid_group_id"),
            (r#"{"cmd":"add_group","group_id":[1]}"#, "invalid_group_id"),
            (&long_id, "invalid_group_id"),
            (
                r#"{"cmd":"send_to_group","group_id":"1"}"#,
                "missing_message",
            ),
            (
                r#"{"cmd":"send_to_group","message":"m"}"#,
                "missing_group_id",
            ),
        ];
        for (frame, code) in cases {
            let err = parse_command(frame, MAX).expect_err(frame);
            assert_eq!(err.code(), *code, "{frame}: {err}");
            let reply: serde_json::Value = serde_json::from_str(&err.to_reply()).unwrap();
            assert_eq!(reply["type"], "error");
            assert_eq!(reply["code"], *code);
            assert!(!reply["message"].as_str().unwrap().is_empty());
        }
    }

    #[test]
    fn add_group_takes_positions_and_since() {
        assert_eq!(
            parse_command(
                r#"{"cmd":"add_group","group_id":"g","positions":true}"#,
                MAX
            ),
            Ok(ClientCommand::AddGroupPositioned {
                group: group("g"),
                since: None
            })
        );
        assert_eq!(
            parse_command(
                r#"{"cmd":"add_group","group_id":"g","positions":false}"#,
                MAX
            ),
            Ok(ClientCommand::AddGroup(group("g")))
        );
        assert_eq!(
            parse_command(
                r#"{"cmd":"add_group","group_id":"g","since":{"offset":5,"epoch":"e-1"}}"#,
                MAX
            ),
            Ok(ClientCommand::AddGroupPositioned {
                group: group("g"),
                since: Some(crate::history::Position {
                    offset: 5,
                    epoch: "e-1".into()
                })
            })
        );
        for bad in [
            r#"{"cmd":"add_group","group_id":"g","positions":"yes"}"#,
            r#"{"cmd":"add_group","group_id":"g","since":5}"#,
            r#"{"cmd":"add_group","group_id":"g","since":{"offset":-1,"epoch":"e"}}"#,
            r#"{"cmd":"add_group","group_id":"g","since":{"offset":1}}"#,
            r#"{"cmd":"add_group","group_id":"g","since":{"offset":1,"epoch":7}}"#,
            r#"{"cmd":"add_group","group_id":"g","since":null}"#,
        ] {
            let err = parse_command(bad, MAX).expect_err(bad);
            assert_eq!(err.code(), "invalid_field", "{bad}");
        }
    }

    #[test]
    fn binary_frames_are_commands_only_when_utf8_json() {
        assert_eq!(
            parse_binary_command(br#"{"cmd":"add_group","group_id":"9"}"#, MAX),
            Ok(ClientCommand::AddGroup(group("9")))
        );
        assert_eq!(
            parse_binary_command(&[0xff, 0x00, 0x12], MAX),
            Err(ProtocolError::BinaryNotCommand)
        );
        assert_eq!(
            parse_binary_command(b"plain", MAX),
            Err(ProtocolError::BinaryNotCommand)
        );
        assert_eq!(
            parse_binary_command(br#"{"cmd":"nope"}"#, MAX)
                .unwrap_err()
                .code(),
            "unknown_cmd"
        );
    }
}
