//! The live bus: each stream's live edge (what followers wait on), its frames as a live
//! source muxes them (WHEP), and the LL-HLS parts of the fragment being received.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use super::live_parts::{LivePart, LiveParts, PartLookup, PartedFragment};
use super::records::StreamId;

/// Which of a fragment's two clocks a time selector means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    Producer,
    Server,
}

/// A stream's live edge as readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveEdge {
    /// The highest fragment number persisted so far (0: none).
    pub last_persisted: u64,
    /// The stream was deleted: stop following it.
    pub deleted: bool,
}

/// What the index knows of one stream's live edge. Created on first use; kept (as a
/// tombstone) after the stream is deleted, so late producers are refused.
pub struct LiveStream {
    pub id: StreamId,
    /// The next fragment number to hand out; also the lock that orders appends.
    pub(super) next_fragment: tokio::sync::Mutex<NextFragment>,
    pub(super) edge: watch::Sender<LiveEdge>,
    pub(super) init: tokio::sync::Mutex<Option<(u32, Bytes)>>,
    /// Video (and Opus) frames as a live source (an RTSP or WHIP publisher, a pulled camera) muxes them,
    /// for viewers that cannot wait for a whole fragment (WHEP). Bounded: a reader that
    /// falls behind lags, and waits for the next keyframe.
    pub(super) frames: tokio::sync::broadcast::Sender<Arc<LiveFrame>>,
    /// The chunks of the fragment being received and the few before it (LL-HLS parts).
    pub(super) parts: Mutex<LiveParts>,
    /// Bumped whenever `parts` changes: what blocking playlist reloads wait on.
    pub(super) parts_changed: watch::Sender<u64>,
    /// The number the next submitted fragment will get (mirrors `next_fragment`).
    pub(super) next_number: std::sync::atomic::AtomicU64,
}

/// One frame on a stream's live bus: video, or Opus audio.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub codec: crate::codec::CodecKind,
    /// As stored: length-prefixed NAL units (video), one Opus packet (audio).
    pub data: Bytes,
    pub keyframe: bool,
    /// On keyframes: the parameter sets a decoder needs first (H.264: SPS, PPS).
    pub parameter_sets: Vec<Vec<u8>>,
}

impl LiveFrame {
    /// The frame as a decoder or RTP packetizer takes it (for NAL codecs: Annex B, led
    /// by its parameter sets on a keyframe).
    pub fn annex_b(&self) -> Bytes {
        Bytes::from(self.codec.elementary_sample(&self.parameter_sets, &self.data))
    }
}

/// Frames a live-bus reader may fall behind by before it lags (about 7 s of 25 fps video
/// with 20 ms Opus packets).
pub(super) const LIVE_FRAMES: usize = 512;

pub(super) struct NextFragment {
    pub(super) number: u64,
    pub(super) deleted: bool,
}

impl LiveStream {
    /// Raises the persisted fragment number and wakes the readers waiting on it.
    pub(super) fn notify_persisted(&self, n: u64) {
        self.edge.send_if_modified(|cur| {
            if n > cur.last_persisted {
                cur.last_persisted = n;
                true
            } else {
                false
            }
        });
    }

    /// A receiver that changes whenever a fragment of this stream is persisted or the
    /// stream is deleted.
    pub fn subscribe(&self) -> watch::Receiver<LiveEdge> {
        self.edge.subscribe()
    }

    /// Whether anyone reads the live bus (a publisher copies frames only then).
    pub fn has_frame_readers(&self) -> bool {
        self.frames.receiver_count() > 0
    }

    /// Offers a frame to the live bus's readers (none listening: it goes nowhere).
    pub fn publish_frame(&self, frame: LiveFrame) {
        if self.frames.receiver_count() > 0 {
            let _ = self.frames.send(Arc::new(frame));
        }
    }

    /// The frames published from now on.
    pub fn subscribe_frames(&self) -> tokio::sync::broadcast::Receiver<Arc<LiveFrame>> {
        self.frames.subscribe()
    }

    pub(super) fn parts_lock(&self) -> std::sync::MutexGuard<'_, LiveParts> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn parts_changed(&self) {
        self.parts_changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Makes the caller the producer whose chunks are the stream's parts (see
    /// [`live_parts`]); the previous producer's open fragment is dropped.
    pub fn part_sink(self: &Arc<Self>) -> PartSink {
        let producer = self.parts_lock().claim();
        self.parts_changed();
        PartSink { live: self.clone(), producer }
    }

    /// The parted fragments numbered `from` or later, oldest first.
    pub fn parts_since(&self, from: u64) -> Vec<PartedFragment> {
        self.parts_lock().since(from)
    }

    pub fn part(&self, number: u64, index: usize) -> PartLookup {
        self.parts_lock().part(number, index)
    }

    /// A receiver that changes whenever a part is added, closed or dropped.
    pub fn subscribe_parts(&self) -> watch::Receiver<u64> {
        self.parts_changed.subscribe()
    }
}

/// A producer's claim on its stream's parts (see [`LiveStream::part_sink`]). Dropped, it
/// drops the parts of a fragment it left unfinished.
pub struct PartSink {
    live: Arc<LiveStream>,
    producer: u64,
}

impl PartSink {
    /// A chunk of the fragment being received, as soon as it is complete.
    pub fn push(&self, init_id: u32, part: LivePart) {
        let expected = self.live.next_number.load(std::sync::atomic::Ordering::Acquire);
        if self.live.parts_lock().push(self.producer, expected, init_id, part) {
            self.live.parts_changed();
        }
    }

    /// The fragment being received was submitted and numbered `number`.
    pub fn close(&self, number: u64) {
        self.live.parts_lock().close(self.producer, number);
        self.live.parts_changed();
    }

    /// The fragment being received will not be stored.
    pub fn abandon(&self) {
        self.live.parts_lock().abandon(self.producer);
        self.live.parts_changed();
    }
}

impl Drop for PartSink {
    fn drop(&mut self) {
        self.abandon();
    }
}
