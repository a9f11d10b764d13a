//! Stored fragments out as one byte stream: GetMedia's follower and
//! GetMediaForFragmentList's fixed list, in either of two formats ([`MediaFormat`]).
//!
//! **Matroska** (the default, as Kinesis Video answers): one self-contained chunk per
//! fragment, written by [`super::matroska_chunk`].
//!
//! **Fragmented MP4** (on request): the stream is an init segment, then for each fragment a metadata box and the
//! fragment's bytes as stored; a fragment whose init differs from the last one sent is
//! preceded by its init. The metadata box is a top-level `uuid` box (players skip it)
//! holding JSON: where Kinesis Video puts MKV tags (fragment number, timestamps,
//! continuation token, millis behind now, errors), we put the same names here.
//!
//! Stored fragments keep the producer's decode times, which for absolute timecodes and
//! RTSP sources count from 1970. Each response moves its timeline back so that the
//! track that starts first starts at zero, every track by the same instant (to within
//! one tick of its timescale), so players draw a seek bar of the response and not of 56
//! years; the metadata boxes keep the real producer and server timestamps.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::watch;

use super::matroska_chunk::{self, ChunkHeader};
use crate::video_store::{FragmentMeta, LiveEdge, StoreError, StreamId, VideoStore};
use crate::wire::bmff;
use crate::wire::fmp4::{self, InitInfo};

/// The user type of Kinescope's metadata `uuid` boxes: the ASCII of "kinescope-meta01".
pub const METADATA_UUID: [u8; 16] = *b"kinescope-meta01";

/// What a GetMedia response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFormat {
    /// Kinesis Video's format: a Matroska chunk per fragment (`video/webm`).
    Matroska,
    /// Fragmented MP4 with metadata `uuid` boxes (`video/mp4`), playable as is.
    Mp4,
}

impl MediaFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            MediaFormat::Matroska => matroska_chunk::CONTENT_TYPE,
            MediaFormat::Mp4 => "video/mp4",
        }
    }

    /// The chunk or box that reports an error in place of a fragment.
    fn error(self, fragment_number: u64, error_id: u32, code: &str) -> Bytes {
        match self {
            MediaFormat::Matroska => matroska_chunk::error_chunk(fragment_number, error_id, code),
            MediaFormat::Mp4 => error_box(fragment_number, error_id, code),
        }
    }
}

/// Fragments read from the index per step.
const BATCH: usize = 16;

/// A metadata box for one fragment.
pub fn metadata_box(meta: &FragmentMeta, now_us: i64) -> Bytes {
    let n = meta.fragment_number.to_string();
    let payload = json!({
        "AWS_KINESISVIDEO_FRAGMENT_NUMBER": n,
        "AWS_KINESISVIDEO_SERVER_TIMESTAMP": meta.server_ts_us as f64 / 1e6,
        "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP": meta.producer_ts_us as f64 / 1e6,
        "AWS_KINESISVIDEO_CONTINUATION_TOKEN": n,
        "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW": ((now_us - meta.server_ts_us) / 1000).max(0),
    });
    let mut out = Vec::new();
    bmff::write_uuid_box(&mut out, &METADATA_UUID, payload.to_string().as_bytes());
    Bytes::from(out)
}

/// A metadata box that reports an error instead of a fragment.
pub fn error_box(fragment_number: u64, error_id: u32, code: &str) -> Bytes {
    let payload = json!({
        "AWS_KINESISVIDEO_FRAGMENT_NUMBER": fragment_number.to_string(),
        "AWS_KINESISVIDEO_ERROR_ID": error_id,
        "AWS_KINESISVIDEO_ERROR_CODE": code,
    });
    let mut out = Vec::new();
    bmff::write_uuid_box(&mut out, &METADATA_UUID, payload.to_string().as_bytes());
    Bytes::from(out)
}

/// Where a GetMedia starts, resolved against the index at request time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAt {
    /// The first fragment number to send (fragments are sent from here in number order).
    pub fragment_number: u64,
}

/// Serialises fragments one after another, sending each init segment when it changes.
struct Writer {
    store: VideoStore,
    stream: StreamId,
    format: MediaFormat,
    current_init: Option<(u32, InitInfo)>,
    /// The Matroska chunk header of `current_init` (Matroska only; `None` when none of
    /// its tracks has a Matroska codec).
    chunk_header: Option<ChunkHeader>,
    /// Where this response's timeline starts; set by its first fragment.
    origin: Option<Origin>,
    out: VecDeque<Bytes>,
}

/// The earliest decode time of a response's first fragment, as (ticks, timescale) of
/// the track that starts first: every track's decode times move back by this much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    ticks: u64,
    timescale: u32,
}

impl Origin {
    /// The origin in a track of `timescale` ticks per second (rounded down: at most one
    /// tick, 1/timescale s, off the exact instant).
    fn in_timescale(self, timescale: u32) -> u64 {
        let ticks = u128::from(self.ticks) * u128::from(timescale) / u128::from(self.timescale.max(1));
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }
}

/// The earliest decode time among `fragment`'s tracks.
fn origin_of(fragment: &[u8], init: &InitInfo) -> Result<Origin, bmff::BoxError> {
    let earliest = fmp4::decode_time_fields(fragment)?
        .iter()
        .filter_map(|f| {
            let timescale = init.track(f.track_id)?.timescale;
            (timescale > 0).then_some(Origin { ticks: f.value, timescale })
        })
        // a/ta < b/tb  ⇔  a·tb < b·ta
        .min_by_key(|o| (u128::from(o.ticks) << 32) / u128::from(o.timescale))
        .unwrap_or(Origin { ticks: 0, timescale: 1 });
    Ok(earliest)
}

/// `fragment` with the origin taken off every track's decode times.
fn rebase(fragment: &[u8], init: &InitInfo, origin: Origin) -> Result<Vec<u8>, bmff::BoxError> {
    let shift = |track: u32| init.track(track).map_or(0, |t| origin.in_timescale(t.timescale));
    fmp4::shift_decode_times(fragment, &shift)
}

impl Writer {
    fn new(store: VideoStore, stream: StreamId, format: MediaFormat) -> Self {
        Writer { store, stream, format, current_init: None, chunk_header: None, origin: None, out: VecDeque::new() }
    }

    async fn push_fragment(&mut self, meta: &FragmentMeta) -> Result<(), StoreError> {
        let bytes = match self.store.read_fragment(self.stream, meta).await {
            Ok(b) => b,
            Err(StoreError::FragmentNotFound(n)) => {
                // Swept between the index read and the file read.
                self.out.push_back(self.format.error(n, 4000, "requested fragment not found"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.current_init.as_ref().map(|(id, _)| *id) != Some(meta.init_id) {
            let init = self.store.init_segment(self.stream, meta.init_id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("init {} of fragment {} is missing", meta.init_id, meta.fragment_number))
            })?;
            let info = fmp4::parse_init(&init)
                .map_err(|e| StoreError::Corrupt(format!("init {} does not parse: {e}", meta.init_id)))?;
            match self.format {
                MediaFormat::Mp4 => self.out.push_back(init),
                MediaFormat::Matroska => self.chunk_header = ChunkHeader::new(&info),
            }
            self.current_init = Some((meta.init_id, info));
        }
        let Some((_, init)) = &self.current_init else { return Ok(()) };
        if self.format == MediaFormat::Matroska {
            let Some(header) = &self.chunk_header else {
                self.out.push_back(self.format.error(meta.fragment_number, 5000, "no track has a Matroska codec"));
                return Ok(());
            };
            let mut chunk = Vec::with_capacity(bytes.len() + 1024);
            let now = self.store.clock().now_us();
            match matroska_chunk::write_fragment(&mut chunk, header, init, &bytes, meta, now) {
                Ok(()) => self.out.push_back(Bytes::from(chunk)),
                Err(e) => {
                    tracing::warn!(error = %e, fragment = meta.fragment_number, "fragment not rewritten as Matroska");
                    self.out.push_back(self.format.error(meta.fragment_number, 5000, "internal error"));
                }
            }
            return Ok(());
        }
        let rebased = match self.origin {
            Some(origin) => rebase(&bytes, init, origin),
            None => origin_of(&bytes, init).and_then(|origin| {
                self.origin = Some(origin);
                rebase(&bytes, init, origin)
            }),
        };
        self.out.push_back(metadata_box(meta, self.store.clock().now_us()));
        match rebased {
            Ok(b) => self.out.push_back(Bytes::from(b)),
            Err(e) => {
                // Stored fragments were parsed at ingest; send what is stored.
                tracing::warn!(error = %e, fragment = meta.fragment_number, "fragment timeline not rebased");
                self.out.push_back(bytes);
            }
        }
        Ok(())
    }
}

struct Follow {
    writer: Writer,
    next: u64,
    edge: watch::Receiver<LiveEdge>,
    done: bool,
}

/// Streams fragments from `start` on, then follows the live edge until the stream is
/// deleted or the returned stream is dropped (the client went away).
pub fn follow(
    store: VideoStore,
    stream: StreamId,
    start: StartAt,
    format: MediaFormat,
) -> Result<impl Stream<Item = Bytes> + Send, StoreError> {
    let edge = store.live(stream)?.subscribe();
    let state = Follow { writer: Writer::new(store, stream, format), next: start.fragment_number, edge, done: false };
    Ok(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(b) = s.writer.out.pop_front() {
                return Some((b, s));
            }
            if s.done {
                return None;
            }
            // Mark the edge seen before reading the index, so a fragment persisted in
            // between wakes the wait below.
            let edge = *s.edge.borrow_and_update();
            if edge.deleted {
                return None;
            }
            let batch = match s.writer.store.fragments_from(s.writer.stream, s.next, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "GetMedia index read failed");
                    s.writer.out.push_back(s.writer.format.error(s.next, 5000, "internal error"));
                    s.done = true;
                    continue;
                }
            };
            if batch.is_empty() {
                if s.edge.changed().await.is_err() {
                    return None;
                }
                continue;
            }
            for meta in &batch {
                s.next = meta.fragment_number + 1;
                if let Err(e) = s.writer.push_fragment(meta).await {
                    tracing::error!(error = %e, fragment = meta.fragment_number, "GetMedia read failed");
                    s.writer.out.push_back(s.writer.format.error(meta.fragment_number, 5000, "internal error"));
                }
            }
        }
    }))
}

/// Streams exactly the given fragments, in the given order.
pub fn fragment_list(
    store: VideoStore,
    stream: StreamId,
    fragments: Vec<FragmentMeta>,
    format: MediaFormat,
) -> impl Stream<Item = Bytes> + Send {
    let writer = Writer::new(store, stream, format);
    futures_util::stream::unfold((writer, fragments.into_iter()), |(mut w, mut it)| async move {
        loop {
            if let Some(b) = w.out.pop_front() {
                return Some((b, (w, it)));
            }
            let meta = it.next()?;
            if let Err(e) = w.push_fragment(&meta).await {
                tracing::error!(error = %e, fragment = meta.fragment_number, "GetMediaForFragmentList read failed");
                w.out.push_back(w.format.error(meta.fragment_number, 5000, "internal error"));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::bmff::{full_box, kinds::*, write_box, FourCc};
    use crate::wire::fmp4::{TrackDefaults, TrackInfo, TrackKind};

    fn track(track_id: u32, timescale: u32) -> TrackInfo {
        TrackInfo {
            track_id,
            kind: if timescale == 90_000 { TrackKind::Video } else { TrackKind::Audio },
            timescale,
            sample_entry: FourCc(*b"avc1"),
            sample_entry_body: Vec::new(),
            width: 0,
            height: 0,
            channels: 0,
            sample_rate: 0,
            defaults: TrackDefaults::default(),
        }
    }

    /// A moof with one traf (tfhd + 64-bit tfdt) per (track, decode time).
    fn moof(trafs: &[(u32, u64)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (track, time) in trafs {
            let mut tfhd = full_box(0, 0);
            tfhd.extend_from_slice(&track.to_be_bytes());
            let mut tfdt = full_box(1, 0);
            tfdt.extend_from_slice(&time.to_be_bytes());
            let mut traf = Vec::new();
            write_box(&mut traf, TFHD, &tfhd);
            write_box(&mut traf, TFDT, &tfdt);
            write_box(&mut body, TRAF, &traf);
        }
        let mut out = Vec::new();
        write_box(&mut out, MOOF, &body);
        out
    }

    #[test]
    fn the_track_that_starts_first_starts_at_zero_and_the_others_keep_their_offset() {
        let init = InitInfo { tracks: vec![track(1, 90_000), track(2, 48_000)] };
        // Wall-clock decode times: video at 1_795_969_379.6 s, audio 0.15 s earlier.
        let (video, audio) = (1_795_969_379_600u64 * 90, 1_795_969_379_450u64 * 48);
        let first = moof(&[(1, video), (2, audio)]);
        let origin = origin_of(&first, &init).unwrap();
        assert_eq!(origin, Origin { ticks: audio, timescale: 48_000 }, "audio starts first");
        let rebased = rebase(&first, &init, origin).unwrap();
        let times: Vec<(u32, u64)> =
            fmp4::decode_time_fields(&rebased).unwrap().iter().map(|f| (f.track_id, f.value)).collect();
        assert_eq!(times, vec![(1, 150 * 90), (2, 0)], "video still starts 150 ms after audio");
        // Later fragments move by the same amount.
        let later = rebase(&moof(&[(1, video + 90_000)]), &init, origin).unwrap();
        assert_eq!(fmp4::decode_time_fields(&later).unwrap()[0].value, 150 * 90 + 90_000);
    }
}
