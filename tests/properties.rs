//! Property tests (the fuzzing of the test command): the client command
//! parser and the channel frame decoder never panic, whatever the bytes, and
//! agree with their encoders on every valid input.

use bytes::{BufMut, BytesMut};
use groupcast::channel::codec::{FrameDecoder, encode_frame};
use groupcast::protocol::{ClientCommand, parse_binary_command, parse_command};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Cases per property (`default` unless PROPTEST_CASES asks for a longer
/// run).
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

/// Strings that look like commands: JSON-ish fragments glued together.
fn command_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("\"cmd\":".to_owned()),
        Just("\"group_id\":".to_owned()),
        Just("\"message\":".to_owned()),
        Just("\"add_group\"".to_owned()),
        Just("\"send_to_group\"".to_owned()),
        Just(",".to_owned()),
        Just("null".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        "-?[0-9]{1,40}(\\.[0-9]+)?".prop_map(|s| s),
        "\"(\\\\u[0-9a-fA-F]{4}|\\\\.|[^\"\\\\]){0,20}\"".prop_map(|s| s),
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    // Generating JSON-like text is the slow part: fewer, richer cases.
    #![proptest_config(config(5_000))]

    #[test]
    fn parse_command_never_panics(text in command_like()) {
        if let Err(error) = parse_command(&text, 256) {
            // Every error has a code and a reply that is valid JSON.
            let reply: serde_json::Value = serde_json::from_str(&error.to_reply()).unwrap();
            prop_assert_eq!(reply["code"].as_str(), Some(error.code()));
        }
    }

}

proptest! {
    #![proptest_config(config(20_000))]

    #[test]
    fn parse_binary_command_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_binary_command(&bytes, 256);
    }

    #[test]
    // A group id is any text without NUL that does not start with 0x01
    // (reserved for groupcast's own routing: refused, below).
    fn valid_commands_round_trip(group in "[^\u{0}\u{1}][^\u{0}]{0,63}", message in any::<String>(), numeric in any::<i64>()) {
        let reserved = serde_json::json!({"cmd": "add_group", "group_id": format!("\u{1}{group}")});
        prop_assert!(parse_command(&reserved.to_string(), 256).is_err());
        let frame = serde_json::json!({"cmd": "send_to_group", "group_id": group, "message": message});
        let expected_group = groupcast::GroupId::new(group.clone(), 256).unwrap();
        prop_assert_eq!(
            parse_command(&frame.to_string(), 256),
            Ok(ClientCommand::SendToGroup { group: expected_group, message, json: false })
        );
        let frame = serde_json::json!({"cmd": "add_group", "group_id": numeric});
        let expected_group = groupcast::GroupId::new(numeric.to_string(), 256).unwrap();
        prop_assert_eq!(parse_command(&frame.to_string(), 256), Ok(ClientCommand::AddGroup(expected_group)));
    }

    #[test]
    fn frame_decoder_never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        'feed: for chunk in chunks {
            buf.put_slice(&chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(body)) => prop_assert!(body.len() <= 1020),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }

    #[test]
    fn frames_survive_any_split(bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8), cut in 1usize..64) {
        let mut wire = Vec::new();
        for body in &bodies {
            wire.extend_from_slice(&encode_frame(body).unwrap());
        }
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in wire.chunks(cut) {
            buf.put_slice(piece);
            while let Some(body) = decoder.decode(&mut buf).unwrap() {
                decoded.push(body.to_vec());
            }
        }
        prop_assert_eq!(decoded, bodies);
    }
}
