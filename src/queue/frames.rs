//! What goes into a connection's queue: frames shared by every member they
//! go to, runs of one group's frames queued as one item, and the close that
//! ends a queue. Kept apart from the queue itself (`super`), which only
//! moves these items and counts their bytes.

use std::sync::Arc;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Encoded frames (websocket frames, see `crate::frame`, or channel frames)
/// shared by every connection they go to.
#[derive(Debug, Clone)]
pub(crate) enum Frames {
    /// One frame.
    One(Bytes),
    /// Several frames for the same members, queued as one item so that a
    /// burst costs each member one push and one wake-up, not one per frame.
    Many {
        frames: Arc<[Bytes]>,
        /// Their total length, computed once for all members.
        bytes: usize,
    },
}

impl Frames {
    /// Several frames as one item (one frame stays [`Frames::One`]).
    pub(crate) fn many(mut frames: Vec<Bytes>) -> Self {
        if frames.len() == 1 {
            return Frames::One(frames.pop().expect("one frame"));
        }
        let bytes = frames.iter().map(Bytes::len).sum();
        Frames::Many {
            frames: frames.into(),
            bytes,
        }
    }

    /// The frames, in order.
    pub(crate) fn as_slice(&self) -> &[Bytes] {
        match self {
            Frames::One(frame) => std::slice::from_ref(frame),
            Frames::Many { frames, .. } => frames,
        }
    }

    /// How many frames.
    pub(crate) fn count(&self) -> usize {
        self.as_slice().len()
    }

    /// Their total length in bytes.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Frames::One(frame) => frame.len(),
            Frames::Many { bytes, .. } => *bytes,
        }
    }
}

impl From<Bytes> for Frames {
    fn from(frame: Bytes) -> Self {
        Frames::One(frame)
    }
}

/// Frames for one key (a group) collected in a row, to be queued to the
/// group's members as one item: a burst then costs each member one push and
/// one wake-up rather than one per message.
#[derive(Debug)]
pub(crate) struct FrameRun<K> {
    key: Option<K>,
    frames: Vec<Bytes>,
    /// Payload bytes of the messages in the run, for the counters.
    payload_bytes: usize,
}

impl<K> Default for FrameRun<K> {
    fn default() -> Self {
        FrameRun {
            key: None,
            frames: Vec::new(),
            payload_bytes: 0,
        }
    }
}

/// A finished run: its key, its frames, and their payloads' total length.
pub(crate) type FinishedRun<K> = (K, Frames, usize);

impl<K> FrameRun<K> {
    /// Appends `frame` (carrying `payload_len` bytes of message) for `key`.
    /// When the run is for another key, it is finished first and handed
    /// back, to be delivered before this frame.
    pub(crate) fn push<Q>(
        &mut self,
        key: &Q,
        frame: Bytes,
        payload_len: usize,
    ) -> Option<FinishedRun<K>>
    where
        K: std::borrow::Borrow<Q>,
        Q: ?Sized + PartialEq + ToOwned<Owned = K>,
    {
        let finished = match &self.key {
            Some(current) if current.borrow() != key => self.finish(),
            _ => None,
        };
        if self.key.is_none() {
            self.key = Some(key.to_owned());
        }
        self.frames.push(frame);
        self.payload_bytes += payload_len;
        finished
    }

    /// Ends the run, if any.
    pub(crate) fn finish(&mut self) -> Option<FinishedRun<K>> {
        let key = self.key.take()?;
        let frames = Frames::many(std::mem::take(&mut self.frames));
        Some((key, frames, std::mem::take(&mut self.payload_bytes)))
    }
}

/// What a connection's writer is asked to do, in queue order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Write these frames.
    Frames(Frames),
    /// Send everything queued before this, then close with this frame.
    Close(CloseFrame),
}

impl Outbound {
    /// The frames to write; none for a close.
    pub(crate) fn frames(&self) -> &[Bytes] {
        match self {
            Outbound::Frames(frames) => frames.as_slice(),
            Outbound::Close(_) => &[],
        }
    }

    /// The bytes to write; 0 for a close.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Outbound::Frames(frames) => frames.bytes(),
            Outbound::Close(_) => 0,
        }
    }
}
