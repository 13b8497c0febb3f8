//! Framing of the channel protocol (Workerman's `Frame`): a 4-byte unsigned
//! big-endian length that includes those 4 bytes, then the body. A body of
//! length 0 is a ping.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Size of the length header.
pub const HEADER_LEN: usize = 4;

/// Decodes channel frames into their bodies, refusing lengths the protocol
/// forbids.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    /// Largest frame accepted, header included.
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder accepting frames of at most `max_frame` bytes, header
    /// included.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { max_frame }
    }
}

impl Decoder for FrameDecoder {
    type Item = Bytes;
    type Error = io::Error;

    /// # Errors
    ///
    /// `InvalidData` when the length is below 4 or above the maximum: the
    /// stream cannot be resynchronised, so the connection must close.
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len < HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("channel frame length {len} is below the 4-byte header"),
            ));
        }
        if len > self.max_frame {
            let why = match mismatched_peer(&src[..HEADER_LEN]) {
                Some(why) => why.to_owned(),
                None => format!(
                    "channel frame length {len} is over the limit of {}",
                    self.max_frame
                ),
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len - HEADER_LEN).freeze()))
    }
}

/// What a "length" that is not one says about the peer, for the two
/// mistakes an operator makes: a plain link to a TLS channel server (which
/// answers in plain HTTP, see `tls.rs`) and TLS to a plain one (a TLS record
/// header: content type 0x14-0x17, version 3.x).
fn mismatched_peer(header: &[u8]) -> Option<&'static str> {
    match header {
        b"HTTP" => Some(
            "the peer answered in plain HTTP: a TLS channel server refusing a plain client? \
             (connect with --channel-tls and --channel-ca)",
        ),
        [0x14..=0x17, 3, 0..=4, _] => Some(
            "the peer speaks TLS on a plain channel link: start the channel server with \
             --tls-cert and --tls-key, or connect without --channel-tls",
        ),
        _ => None,
    }
}

/// Encodes one frame: header and body in one buffer, ready to be shared by
/// every subscriber's writer.
///
/// # Errors
///
/// When the frame would be longer than a 4-byte length can say.
pub fn encode_frame(body: &[u8]) -> io::Result<Bytes> {
    let len = u32::try_from(body.len() + HEADER_LEN)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "channel frame over 4 GiB"))?;
    let mut frame = BytesMut::with_capacity(body.len() + HEADER_LEN);
    frame.put_u32(len);
    frame.put_slice(body);
    Ok(frame.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut FrameDecoder, buf: &mut BytesMut) -> io::Result<Vec<Bytes>> {
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    #[test]
    fn a_peer_of_the_other_kind_is_named_in_the_error() {
        let mut decoder = FrameDecoder::new(1024);
        let mut http = BytesMut::from(&b"HTTP/1.1 400 Bad Request\r\n"[..]);
        let error = decoder.decode(&mut http).unwrap_err().to_string();
        assert!(error.contains("answered in plain HTTP"), "{error}");
        let mut hello = BytesMut::from(&[0x16, 3, 1, 0, 0xf0, 1, 0, 0][..]);
        let error = decoder.decode(&mut hello).unwrap_err().to_string();
        assert!(
            error.contains("speaks TLS on a plain channel link"),
            "{error}"
        );
        let mut big = BytesMut::from(&[0x7f, 0, 0, 0][..]);
        let error = decoder.decode(&mut big).unwrap_err().to_string();
        assert!(error.contains("over the limit of 1024"), "{error}");
    }

    #[test]
    fn round_trip() {
        let frame = encode_frame(br#"{"type":"ping"}"#).unwrap();
        assert_eq!(&frame[..4], &[0, 0, 0, 19]);
        let mut buf = BytesMut::from(&frame[..]);
        let bodies = decode_all(&mut FrameDecoder::new(1024), &mut buf).unwrap();
        assert_eq!(bodies, vec![Bytes::from_static(br#"{"type":"ping"}"#)]);
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let frame = encode_frame(b"hello").unwrap();
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        for (i, byte) in frame.iter().enumerate() {
            buf.put_u8(*byte);
            let got = decoder.decode(&mut buf).unwrap();
            if i + 1 < frame.len() {
                assert_eq!(got, None, "after {} bytes", i + 1);
            } else {
                assert_eq!(got, Some(Bytes::from_static(b"hello")));
            }
        }
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut buf = BytesMut::new();
        for body in [&b"a"[..], b"", b"ccc"] {
            buf.put_slice(&encode_frame(body).unwrap());
        }
        buf.put_slice(&[0, 0, 0]); // start of a fourth frame
        let bodies = decode_all(&mut FrameDecoder::new(1024), &mut buf).unwrap();
        assert_eq!(
            bodies,
            vec![
                Bytes::from_static(b"a"),
                Bytes::new(),
                Bytes::from_static(b"ccc")
            ]
        );
        assert_eq!(&buf[..], &[0, 0, 0]);
    }

    #[test]
    fn empty_body_is_a_ping() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 4][..]);
        assert_eq!(
            FrameDecoder::new(16).decode(&mut buf).unwrap(),
            Some(Bytes::new())
        );
    }

    #[test]
    fn lengths_below_the_header_are_errors() {
        for len in 0u32..4 {
            let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
            let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "length {len}");
        }
    }

    #[test]
    fn over_size_is_an_error_before_the_body_arrives() {
        let mut buf = BytesMut::from(&1025u32.to_be_bytes()[..]);
        let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
        // Exactly at the limit is fine.
        let mut buf = BytesMut::from(&encode_frame(&[b'x'; 1020]).unwrap()[..]);
        assert_eq!(
            FrameDecoder::new(1024)
                .decode(&mut buf)
                .unwrap()
                .unwrap()
                .len(),
            1020
        );
    }
}
