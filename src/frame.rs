//! Websocket frames from server to client, encoded once.
//!
//! Server frames are never masked, so a frame's bytes depend only on its
//! opcode and payload: a group message is encoded into one buffer that every
//! member's writer shares, and writers hand many such buffers to the kernel
//! in one vectored write. tungstenite still handles the handshake, reading,
//! pings and the close handshake.

use bytes::{BufMut, Bytes, BytesMut};

/// Final text frame.
const TEXT: u8 = 0x81;
/// Final binary frame.
const BINARY: u8 = 0x82;

/// Encodes a final, unmasked frame with `first_byte` (FIN + opcode).
fn encode(first_byte: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut frame = BytesMut::with_capacity(len + 10);
    frame.put_u8(first_byte);
    match len {
        0..=125 => frame.put_u8(len as u8),
        126..=0xFFFF => {
            frame.put_u8(126);
            frame.put_u16(len as u16);
        }
        _ => {
            frame.put_u8(127);
            frame.put_u64(len as u64);
        }
    }
    frame.put_slice(payload);
    frame.freeze()
}

/// A text frame carrying `text`.
pub(crate) fn text(text: &str) -> Bytes {
    encode(TEXT, text.as_bytes())
}

/// A binary frame carrying `data`.
pub(crate) fn binary(data: &[u8]) -> Bytes {
    encode(BINARY, data)
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    /// What tungstenite itself writes for the same frame.
    fn reference(opcode: Data, payload: &[u8]) -> Vec<u8> {
        let frame = Frame::message(payload.to_vec(), OpCode::Data(opcode), true);
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[test]
    fn same_bytes_as_tungstenite_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload = vec![b'a'; len];
            let text_payload = std::str::from_utf8(&payload).unwrap();
            assert_eq!(
                text(text_payload)[..],
                reference(Data::Text, &payload)[..],
                "text {len}"
            );
            assert_eq!(
                binary(&payload)[..],
                reference(Data::Binary, &payload)[..],
                "binary {len}"
            );
        }
    }
}
