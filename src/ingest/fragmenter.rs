//! Turns a fragmented-MP4 byte stream into the store's unit: keyframe-aligned fragments.
//!
//! Sans-IO: [`Fragmenter::push`] takes whatever bytes arrived and returns events; it
//! never blocks and never reads a socket. A fragment is one or more `moof`+`mdat`
//! chunks, the first of which starts with a sync sample of the timing track (the first
//! video track; every chunk of an audio-only stream is a sync point). Chunks are kept as
//! they came, so low-latency HLS parts can later be served from them.
//!
//! Errors come in two kinds. A [`FatalError`] means the byte stream itself cannot be
//! followed any more (a box with an absurd size, bytes that are not boxes): the caller
//! stops. A [`FragmentRejection`] is about one fragment (too large, too long, time going
//! backwards): that fragment is dropped and the stream goes on at the next keyframe.

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::bmff::{kinds, parse_box_header, BoxError, FourCc};
use crate::wire::fmp4::{self, parse_moof, parse_moov, InitInfo};

/// Limits a producer must keep to (Kinesis Video's, by default).
#[derive(Debug, Clone, Copy)]
pub struct FragmentLimits {
    pub max_fragment_bytes: u64,
    pub max_fragment_duration_us: i64,
    pub max_tracks: usize,
}

impl Default for FragmentLimits {
    fn default() -> Self {
        FragmentLimits { max_fragment_bytes: 50 * 1024 * 1024, max_fragment_duration_us: 20_000_000, max_tracks: 3 }
    }
}

/// An init segment: the bytes (`ftyp` and `moov`, as sent) and what they say.
#[derive(Debug, Clone)]
pub struct InitSegment {
    pub bytes: Bytes,
    pub info: InitInfo,
}

/// A complete keyframe-aligned fragment.
#[derive(Debug, Clone)]
pub struct AssembledFragment {
    /// `moof`+`mdat` chunks, in order; their concatenation is the fragment.
    pub chunks: Vec<Bytes>,
    pub size: u64,
    /// Decode time of the first sample of the timing track, in microseconds on the
    /// producer's media timeline (tfdt / timescale).
    pub start_us: i64,
    pub duration_us: i64,
    /// The first chunk starts with a sync sample (false only for a stream that began
    /// mid-GOP: its first fragment).
    pub keyframe: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatalError {
    #[error("invalid fragmented MP4: {0}")]
    Invalid(#[from] BoxError),
    #[error("media data arrived before any init segment (ftyp+moov)")]
    NoInitSegment,
    #[error("init segment has {found} tracks; at most {max} are allowed")]
    TooManyTracks { found: usize, max: usize },
    #[error("init segment has no tracks")]
    NoTracks,
    #[error("'moof' is not followed by an 'mdat' (found '{0}')")]
    MoofWithoutMdat(FourCc),
    #[error("'mdat' without a preceding 'moof'")]
    MdatWithoutMoof,
    #[error("tfhd with an explicit base-data-offset; write fragments with default-base-is-moof (ffmpeg -movflags +default_base_moof)")]
    ExplicitBaseOffset,
    #[error("sample data of track {track} lies outside its moof+mdat chunk")]
    DataOutsideChunk { track: u32 },
    #[error("the stream ended inside a box; {dropped} bytes of it were dropped")]
    EndedInsideBox { dropped: u64 },
    #[error("invalid Matroska: {0}")]
    Matroska(String),
    #[error("a block of track {0}, which Tracks does not declare")]
    UndeclaredTrack(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentRejection {
    #[error("fragment of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("fragment lasts {duration_ms} ms, more than the limit of {limit_ms} ms")]
    TooLong { duration_ms: i64, limit_ms: i64 },
    #[error("fragment timecode {timecode_ms} ms is earlier than the previous fragment's {previous_ms} ms")]
    TimecodeBackwards { timecode_ms: i64, previous_ms: i64 },
    #[error("track {track} is declared in Tracks but has no frame in the fragment")]
    FramesMissingForTrack { track: u64 },
}

#[derive(Debug)]
pub enum FragmenterEvent {
    /// A new init segment (the first, or one that differs from the previous).
    Init(InitSegment),
    /// The first chunk of a new fragment arrived (Kinesis Video's BUFFERING).
    FragmentStarted {
        start_us: i64,
    },
    /// One `moof`+`mdat` chunk of the fragment being received, as soon as it is whole
    /// (after `FragmentStarted`, before the `Fragment` it belongs to): an LL-HLS part.
    Chunk {
        bytes: Bytes,
        duration_us: i64,
        /// It starts with a sync sample of the timing track.
        independent: bool,
    },
    Fragment(AssembledFragment),
    Rejected {
        start_us: i64,
        reason: FragmentRejection,
    },
}

#[derive(Debug, Default)]
struct Pending {
    chunks: Vec<Bytes>,
    size: u64,
    start_us: i64,
    duration_us: i64,
    keyframe: bool,
    rejected: Option<FragmentRejection>,
}

/// The state machine. Feed it with [`push`](Self::push); call [`finish`](Self::finish)
/// at the end of the stream.
pub struct Fragmenter {
    limits: FragmentLimits,
    buf: BytesMut,
    /// Bytes consumed so far, for error offsets.
    consumed: u64,
    ftyp: Option<Bytes>,
    init: Option<InitSegment>,
    /// A `moof` waiting for its `mdat`.
    moof: Option<(Bytes, fmp4::MoofInfo)>,
    pending: Option<Pending>,
    /// Running decode time per track, for `traf`s without a `tfdt`.
    next_decode: Vec<(u32, u64)>,
    last_start_us: Option<i64>,
    /// Bytes still to drop of an oversized mdat.
    skip_remaining: u64,
}

impl Fragmenter {
    pub fn new(limits: FragmentLimits) -> Self {
        Fragmenter {
            limits,
            buf: BytesMut::new(),
            consumed: 0,
            ftyp: None,
            init: None,
            moof: None,
            pending: None,
            next_decode: Vec::new(),
            last_start_us: None,
            skip_remaining: 0,
        }
    }

    pub fn init(&self) -> Option<&InitSegment> {
        self.init.as_ref()
    }

    /// Bytes received but not yet part of a complete box.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes newly arrived bytes; appends what they complete to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        self.buf.extend_from_slice(data);
        // A box may not exceed the fragment limit plus room for its header.
        let box_limit = self.limits.max_fragment_bytes + 64;
        loop {
            if self.skip_remaining > 0 {
                let n = self.skip_remaining.min(self.buf.len() as u64);
                self.buf.advance(n as usize);
                self.consumed += n;
                self.skip_remaining -= n;
                if self.skip_remaining > 0 {
                    return Ok(());
                }
            }
            let Some(header) = parse_box_header(&self.buf, self.consumed, u64::MAX)? else {
                return Ok(());
            };
            if header.size > box_limit {
                // An oversized mdat is skipped as it streams by: its fragment is
                // rejected alone and the stream goes on. Anything else that large is not
                // a box we could step over safely.
                if header.kind == kinds::MDAT {
                    if let Some((moof, info)) = self.moof.take() {
                        self.on_chunk(moof, info, None, header.size, out)?;
                        self.skip_remaining = header.size;
                        continue;
                    }
                }
                return Err(FatalError::Invalid(BoxError::SizeTooLarge {
                    kind: header.kind,
                    offset: self.consumed,
                    size: header.size,
                    limit: box_limit,
                }));
            }
            let size = header.size as usize;
            if self.buf.len() < size {
                self.buf.reserve(size - self.buf.len());
                return Ok(());
            }
            let whole = self.buf.split_to(size).freeze();
            self.consumed += size as u64;
            self.on_box(header.kind, header.header_len, whole, out)?;
        }
    }

    /// The stream ended. A fragment whose chunks are all complete is emitted; the bytes
    /// of an incomplete box are dropped and reported.
    pub fn finish(&mut self, out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        let leftover = self.buf.len() as u64 + self.moof.as_ref().map_or(0, |(m, _)| m.len() as u64);
        let inside_skip = self.skip_remaining > 0;
        self.buf.clear();
        self.moof = None;
        self.skip_remaining = 0;
        self.flush_pending(out);
        if leftover > 0 || inside_skip {
            return Err(FatalError::EndedInsideBox { dropped: leftover });
        }
        Ok(())
    }

    /// Emits the fragment in progress if it holds complete chunks: what arrived whole
    /// before a fatal error or a disconnect is kept.
    pub fn flush(&mut self, out: &mut Vec<FragmenterEvent>) {
        self.moof = None;
        self.flush_pending(out);
    }

    fn on_box(
        &mut self,
        kind: FourCc,
        header_len: usize,
        whole: Bytes,
        out: &mut Vec<FragmenterEvent>,
    ) -> Result<(), FatalError> {
        if let Some((moof, info)) = self.moof.take() {
            if kind != kinds::MDAT {
                return Err(FatalError::MoofWithoutMdat(kind));
            }
            let size = whole.len() as u64;
            return self.on_chunk(moof, info, Some(whole), size, out);
        }
        match kind {
            k if k == kinds::FTYP => {
                self.ftyp = Some(whole);
                Ok(())
            }
            k if k == kinds::MOOV => self.on_moov(header_len, whole, out),
            k if k == kinds::MOOF => {
                let init = self.init.as_ref().ok_or(FatalError::NoInitSegment)?;
                let info = parse_moof(&whole[header_len..], &init.info, self.limits.max_fragment_bytes)?;
                if info.trafs.iter().any(|t| t.explicit_base_offset) {
                    return Err(FatalError::ExplicitBaseOffset);
                }
                self.moof = Some((whole, info));
                Ok(())
            }
            k if k == kinds::MDAT => Err(FatalError::MdatWithoutMoof),
            // styp, sidx, free, skip, prft, emsg, mfra, uuid…: nothing the store serves.
            _ => Ok(()),
        }
    }

    fn on_moov(&mut self, header_len: usize, moov: Bytes, out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        let info = parse_moov(&moov[header_len..])?;
        if info.tracks.is_empty() {
            return Err(FatalError::NoTracks);
        }
        if info.tracks.len() > self.limits.max_tracks {
            return Err(FatalError::TooManyTracks { found: info.tracks.len(), max: self.limits.max_tracks });
        }
        // A new init ends the fragment in progress: its chunks refer to the old tracks.
        self.flush_pending(out);
        let mut bytes = Vec::with_capacity(moov.len() + self.ftyp.as_ref().map_or(0, Bytes::len));
        if let Some(ftyp) = &self.ftyp {
            bytes.extend_from_slice(ftyp);
        }
        bytes.extend_from_slice(&moov);
        let bytes = Bytes::from(bytes);
        if self.init.as_ref().is_some_and(|i| i.bytes == bytes) {
            return Ok(());
        }
        self.next_decode.clear();
        let segment = InitSegment { bytes, info };
        self.init = Some(segment.clone());
        out.push(FragmenterEvent::Init(segment));
        Ok(())
    }

    fn on_chunk(
        &mut self,
        moof: Bytes,
        info: fmp4::MoofInfo,
        mdat: Option<Bytes>,
        mdat_size: u64,
        out: &mut Vec<FragmenterEvent>,
    ) -> Result<(), FatalError> {
        let Some(init) = self.init.as_ref() else {
            return Err(FatalError::NoInitSegment);
        };
        let chunk_len = (moof.len() as u64).saturating_add(mdat_size) as i64;
        for t in &info.trafs {
            if t.sample_count > 0 && (t.data_start < 0 || t.data_end > chunk_len) {
                return Err(FatalError::DataOutsideChunk { track: t.track_id });
            }
        }
        let timing = init.info.timing_track().map(|t| (t.track_id, t.timescale, t.kind));
        let Some((timing_id, timescale, timing_kind)) = timing else {
            return Err(FatalError::NoTracks);
        };
        let is_video = timing_kind == fmp4::TrackKind::Video;
        // The timing track's traf, else the first traf (an audio-only chunk in a stream
        // whose video has paused still needs a time).
        let traf = info.trafs.iter().find(|t| t.track_id == timing_id);
        let (traf_id, traf_scale) = match traf {
            Some(t) => (t.track_id, timescale),
            None => {
                let first = &info.trafs[0];
                let scale = init.info.track(first.track_id).map_or(timescale, |t| t.timescale);
                (first.track_id, scale)
            }
        };
        let traf = traf.unwrap_or(&info.trafs[0]);
        let sync = if is_video { traf.track_id == timing_id && traf.first_sample_sync.unwrap_or(false) } else { true };

        // Decode times, with running values for trafs without a tfdt.
        let mut start_ticks = 0u64;
        for t in &info.trafs {
            let running = self.next_decode.iter_mut().find(|(id, _)| *id == t.track_id);
            let base = t.base_decode_time.or(running.as_ref().map(|(_, v)| *v)).unwrap_or(0);
            let next = base.saturating_add(t.duration);
            match running {
                Some(r) => r.1 = next,
                None => self.next_decode.push((t.track_id, next)),
            }
            if t.track_id == traf_id {
                start_ticks = base;
            }
        }
        let to_us = |ticks: u64| -> i64 { ((u128::from(ticks) * 1_000_000) / u128::from(traf_scale.max(1))) as i64 };
        let start_us = to_us(start_ticks);
        let duration_us = to_us(traf.duration);

        let starts_new = match &self.pending {
            None => true,
            Some(_) => sync,
        };
        if starts_new {
            self.flush_pending(out);
            out.push(FragmenterEvent::FragmentStarted { start_us });
            self.pending = Some(Pending { start_us, keyframe: sync, ..Pending::default() });
        }
        let limits = self.limits;
        let Some(p) = self.pending.as_mut() else {
            return Ok(());
        };
        let size = (moof.len() as u64).saturating_add(mdat_size);
        if p.rejected.is_none() {
            p.size += size;
            p.duration_us = (start_us + duration_us - p.start_us).max(p.duration_us);
            if p.size > limits.max_fragment_bytes {
                p.rejected = Some(FragmentRejection::TooLarge { size: p.size, limit: limits.max_fragment_bytes });
                p.chunks.clear();
            } else if p.duration_us > limits.max_fragment_duration_us {
                p.rejected = Some(FragmentRejection::TooLong {
                    duration_ms: p.duration_us / 1000,
                    limit_ms: limits.max_fragment_duration_us / 1000,
                });
                p.chunks.clear();
            } else if let Some(mdat) = mdat {
                let mut chunk = BytesMut::with_capacity(size as usize);
                chunk.extend_from_slice(&moof);
                chunk.extend_from_slice(&mdat);
                let chunk = chunk.freeze();
                p.chunks.push(chunk.clone());
                out.push(FragmenterEvent::Chunk { bytes: chunk, duration_us, independent: sync });
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self, out: &mut Vec<FragmenterEvent>) {
        let Some(p) = self.pending.take() else {
            return;
        };
        if let Some(reason) = p.rejected {
            out.push(FragmenterEvent::Rejected { start_us: p.start_us, reason });
            return;
        }
        if p.chunks.is_empty() {
            return;
        }
        if let Some(prev) = self.last_start_us {
            if p.start_us < prev {
                out.push(FragmenterEvent::Rejected {
                    start_us: p.start_us,
                    reason: FragmentRejection::TimecodeBackwards {
                        timecode_ms: p.start_us / 1000,
                        previous_ms: prev / 1000,
                    },
                });
                return;
            }
        }
        self.last_start_us = Some(p.start_us);
        out.push(FragmenterEvent::Fragment(AssembledFragment {
            chunks: p.chunks,
            size: p.size,
            start_us: p.start_us,
            duration_us: p.duration_us,
            keyframe: p.keyframe,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
    }

    fn run(data: &[u8], piece: usize, limits: FragmentLimits) -> (Vec<FragmenterEvent>, Result<(), FatalError>) {
        let mut f = Fragmenter::new(limits);
        let mut out = Vec::new();
        for p in data.chunks(piece) {
            if let Err(e) = f.push(p, &mut out) {
                return (out, Err(e));
            }
        }
        let r = f.finish(&mut out);
        (out, r)
    }

    fn fragments(events: &[FragmenterEvent]) -> Vec<&AssembledFragment> {
        events.iter().filter_map(|e| if let FragmenterEvent::Fragment(f) = e { Some(f) } else { None }).collect()
    }

    /// Found by the fragmenter fuzz target: a 2,180-byte PutMedia body whose `trun` has
    /// no per-sample fields and a count of 1,835,296,868 once cost 13 s of CPU, walked
    /// sample by sample. The count is now checked against the data a fragment may hold
    /// before any sample is read.
    #[test]
    fn a_trun_counting_more_samples_than_a_fragment_holds_is_refused_before_walking_them() {
        let data = fixture("putmedia-huge-trun.bin");
        let (_, r) = run(&data, data.len(), FragmentLimits::default());
        let e = r.expect_err("refused");
        assert!(e.to_string().contains("more default-sized samples"), "{e}");
    }

    #[test]
    fn av_fixture_gives_one_init_and_four_keyframe_fragments() {
        let data = fixture("av.mp4");
        let (events, r) = run(&data, data.len(), FragmentLimits::default());
        r.unwrap();
        let inits: Vec<_> =
            events.iter().filter_map(|e| if let FragmenterEvent::Init(i) = e { Some(i) } else { None }).collect();
        assert_eq!(inits.len(), 1);
        let tracks = &inits[0].info.tracks;
        assert_eq!(tracks.len(), 2);
        let codec = crate::codec::codec_string(&tracks[0]);
        assert!(codec.starts_with("avc1.4d"), "{codec}");
        assert_eq!((tracks[0].width, tracks[0].height), (320, 240));
        assert_eq!(crate::codec::codec_string(&tracks[1]), "mp4a.40.2");
        assert_eq!(tracks[1].sample_rate, 48_000);
        let frags = fragments(&events);
        assert_eq!(frags.len(), 4);
        for (i, f) in frags.iter().enumerate() {
            assert!(f.keyframe);
            assert_eq!(f.start_us, i as i64 * 1_000_000);
            assert_eq!(f.duration_us, 1_000_000);
        }
        // Every byte after the init segment is in exactly one fragment, but the trailing
        // mfra index, whose size the last four bytes (its mfro) give.
        let total: u64 = frags.iter().map(|f| f.size).sum();
        let mfra = u32::from_be_bytes(data[data.len() - 4..].try_into().unwrap()) as usize;
        assert_eq!(total as usize + inits[0].bytes.len() + mfra, data.len());
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_fragments() {
        let data = fixture("av.mp4");
        let (whole, _) = run(&data, data.len(), FragmentLimits::default());
        let (small, r) = run(&data, 7, FragmentLimits::default());
        r.unwrap();
        let a: Vec<_> = fragments(&whole).iter().map(|f| (f.start_us, f.size, f.chunks.concat())).collect();
        let b: Vec<_> = fragments(&small).iter().map(|f| (f.start_us, f.size, f.chunks.concat())).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn short_chunks_are_grouped_until_the_next_keyframe() {
        let (events, r) = run(&fixture("chunked.mp4"), 4096, FragmentLimits::default());
        r.unwrap();
        let frags = fragments(&events);
        assert_eq!(frags.len(), 2);
        assert_eq!(frags[0].chunks.len(), 5);
        assert_eq!(frags[1].start_us, 1_000_000);
        assert_eq!(frags[0].duration_us, 1_000_000);
        // Each chunk was handed out on its own before its fragment: the same bytes, the
        // first of each fragment independent, 200 ms each.
        let mut chunks: Vec<(Bytes, i64, bool)> = Vec::new();
        for e in &events {
            match e {
                FragmenterEvent::Chunk { bytes, duration_us, independent } => {
                    chunks.push((bytes.clone(), *duration_us, *independent))
                }
                FragmenterEvent::Fragment(f) => {
                    let sent: Vec<Bytes> = chunks.drain(..).map(|c| c.0).collect();
                    assert_eq!(sent, f.chunks);
                }
                FragmenterEvent::FragmentStarted { .. } => {
                    assert!(chunks.is_empty(), "a fragment starts after the previous one's chunks were assembled")
                }
                _ => {}
            }
        }
        let mut all = Vec::new();
        for e in &events {
            if let FragmenterEvent::Chunk { duration_us, independent, .. } = e {
                all.push((*duration_us, *independent));
            }
        }
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|(d, _)| (190_000..=210_000).contains(d)), "{all:?}");
        assert_eq!(all.iter().filter(|(_, i)| *i).count(), 2);
        assert!(all[0].1 && all[5].1);
    }

    #[test]
    fn hevc_codec_string() {
        let (events, _) = run(&fixture("hevc.mp4"), 1 << 20, FragmentLimits::default());
        let FragmenterEvent::Init(init) = &events[0] else { panic!("init first") };
        let codec = crate::codec::codec_string(&init.info.tracks[0]);
        assert!(codec.starts_with("hvc1.1."), "{codec}");
    }

    #[test]
    fn truncated_stream_keeps_complete_fragments_and_reports_the_rest() {
        let data = fixture("av.mp4");
        let cut = data.len() - 500;
        let (events, r) = run(&data[..cut], 1000, FragmentLimits::default());
        assert!(matches!(r, Err(FatalError::EndedInsideBox { .. })));
        assert_eq!(fragments(&events).len(), 3);
    }

    #[test]
    fn media_without_init_is_fatal() {
        let data = fixture("av.mp4");
        let (events, _) = run(&data, data.len(), FragmentLimits::default());
        let FragmenterEvent::Init(init) = &events[0] else { panic!() };
        let (_, r) = run(&data[init.bytes.len()..], 4096, FragmentLimits::default());
        assert_eq!(r, Err(FatalError::NoInitSegment));
    }

    #[test]
    fn absurd_box_size_is_fatal_before_buffering() {
        let mut data = b"\xff\xff\xff\xf0ftyp".to_vec();
        data.extend_from_slice(&[0; 100]);
        let (_, r) = run(&data, 1 << 20, FragmentLimits::default());
        assert!(matches!(r, Err(FatalError::Invalid(BoxError::SizeTooLarge { .. }))));
    }

    #[test]
    fn garbage_is_fatal() {
        let (_, r) = run(&[0x00, 0x00, 0x00, 0x02, 0x41, 0x41, 0x41, 0x41, 0, 0], 3, FragmentLimits::default());
        assert!(matches!(r, Err(FatalError::Invalid(BoxError::SizeTooSmall { .. }))));
    }

    #[test]
    fn time_going_backwards_rejects_the_fragment_and_goes_on() {
        let data = fixture("av.mp4");
        let mut twice = data.clone();
        twice.extend_from_slice(&data);
        let (events, r) = run(&twice, 8192, FragmentLimits::default());
        r.unwrap();
        // The second copy restarts at t=0: its first fragment is refused; the rest are
        // refused too, as each still starts before the last accepted one (3 s).
        let rejected = events
            .iter()
            .filter(|e| {
                matches!(e, FragmenterEvent::Rejected { reason: FragmentRejection::TimecodeBackwards { .. }, .. })
            })
            .count();
        assert_eq!(rejected, 3);
        assert_eq!(fragments(&events).len(), 5);
    }

    #[test]
    fn oversized_fragment_is_rejected_alone() {
        let data = fixture("av.mp4");
        let (events, _) = run(&data, data.len(), FragmentLimits::default());
        let sizes: Vec<u64> = fragments(&events).iter().map(|f| f.size).collect();
        let biggest = *sizes.iter().max().unwrap();
        let limits = FragmentLimits { max_fragment_bytes: biggest - 1, ..FragmentLimits::default() };
        let (events, r) = run(&data, 1000, limits);
        r.unwrap();
        let rejected = events
            .iter()
            .filter(|e| matches!(e, FragmenterEvent::Rejected { reason: FragmentRejection::TooLarge { .. }, .. }))
            .count();
        assert_eq!(rejected, sizes.iter().filter(|&&s| s == biggest).count());
        assert_eq!(fragments(&events).len() + rejected, 4);
    }

    #[test]
    fn fragment_longer_than_the_limit_is_rejected() {
        let limits = FragmentLimits { max_fragment_duration_us: 500_000, ..FragmentLimits::default() };
        let (events, r) = run(&fixture("av.mp4"), 4096, limits);
        r.unwrap();
        let too_long = events
            .iter()
            .filter(|e| {
                matches!(e, FragmenterEvent::Rejected { reason: FragmentRejection::TooLong { limit_ms: 500, .. }, .. })
            })
            .count();
        assert_eq!(too_long, 4);
        assert!(fragments(&events).is_empty());
    }

    #[test]
    fn more_tracks_than_allowed_is_fatal() {
        let limits = FragmentLimits { max_tracks: 1, ..FragmentLimits::default() };
        let (events, r) = run(&fixture("av.mp4"), 4096, limits);
        assert_eq!(r, Err(FatalError::TooManyTracks { found: 2, max: 1 }));
        assert!(events.is_empty());
    }

    #[test]
    fn a_new_init_ends_the_fragment_in_progress_and_is_reported_once() {
        let mut data = fixture("av.mp4");
        data.extend_from_slice(&fixture("video_only.mp4"));
        // The same init twice in a row is not a new one.
        data.extend_from_slice(&fixture("video_only.mp4")[..1000.min(fixture("video_only.mp4").len())]);
        let (events, _) = run(&data, 3000, FragmentLimits::default());
        let inits: Vec<usize> = events
            .iter()
            .filter_map(|e| if let FragmenterEvent::Init(i) = e { Some(i.info.tracks.len()) } else { None })
            .collect();
        assert_eq!(inits, vec![2, 1]);
    }
}
