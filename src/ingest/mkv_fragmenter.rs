//! PutMedia's Matroska (what the KVS producer SDKs and `kvssink` send) turned into the
//! store's unit, the same keyframe-aligned fragmented-MP4 fragments the fMP4 path makes,
//! so every reader works on MKV-fed streams unchanged.
//!
//! Sans-IO, like [`super::fragmenter::Fragmenter`], and with the same events: the
//! Matroska reader ([`crate::wire::matroska`]) parses; each track's CodecPrivate goes
//! through the codec layer into the parameters the muxer writes an init segment from;
//! each frame's presentation time is the Cluster's timecode plus the block's, turned
//! into decode order per track (B-frames) before the muxer, which cuts fragments at
//! video keyframes (a KVS producer starts every Cluster with one) and chunks of at most
//! [`LIVE_CHUNK_US`] (LL-HLS parts). A fragment also ends at the producer SDK's
//! `AWS_KINESISVIDEO_END_OF_FRAGMENT` tag. A Cluster whose timecode goes back is
//! refused alone (Kinesis Video's 4004) and the stream goes on at the next Cluster.

use bytes::Bytes;

use super::fragmenter::{
    AssembledFragment, FatalError, FragmentLimits, FragmentRejection, FragmenterEvent, InitSegment,
};
use super::publisher::LIVE_CHUNK_US;
use crate::codec::{CodecKind, CodecParams};
use crate::media::fmp4_mux::{FragmentMuxer, Muxed, MuxedChunk};
use crate::media::timeline::DecodeOrder;
use crate::media::Frame;
use crate::wire::fmp4;
use crate::wire::matroska::{MkvEvent, MkvFrame, MkvLimits, MkvReader, MkvTrack};

/// The tag a KVS producer writes after a fragment's last frame to close it.
pub const END_OF_FRAGMENT: &str = "AWS_KINESISVIDEO_END_OF_FRAGMENT";

/// Frames held per video track to turn presentation into decode order.
const REORDER_DEPTH: usize = 4;

/// Whether a stream's first bytes are Matroska's (the EBML magic).
pub fn is_matroska(first: &[u8]) -> bool {
    first.starts_with(&[0x1A, 0x45, 0xDF, 0xA3])
}

struct Track {
    number: u64,
    timescale: u32,
    order: DecodeOrder<(bool, Vec<u8>)>,
    /// Frames muxed into the fragment being built (a declared track without any makes
    /// Kinesis Video refuse the fragment: FRAMES_MISSING_FOR_TRACK).
    in_fragment: u32,
}

pub struct MkvFragmenter {
    limits: FragmentLimits,
    reader: MkvReader,
    /// Nanoseconds per timecode unit.
    scale_ns: u64,
    tracks: Vec<Track>,
    muxer: Option<FragmentMuxer>,
    /// The current Cluster's timecode, µs; `None` before the first or while a refused
    /// Cluster's frames are skipped.
    cluster_us: Option<i64>,
    previous_cluster_us: Option<i64>,
    /// The start of the fragment being muxed (its FragmentStarted was sent): the
    /// presentation time of the keyframe it starts with, which is the Cluster's timecode
    /// when the producer starts Clusters on keyframes as KVS producers do; what
    /// acknowledgements echo and producer timestamps count from.
    fragment_start_us: Option<i64>,
}

impl MkvFragmenter {
    pub fn new(limits: FragmentLimits) -> Self {
        let reader_limits = MkvLimits {
            max_frame: usize::try_from(limits.max_fragment_bytes).unwrap_or(usize::MAX).min(64 << 20),
            ..MkvLimits::default()
        };
        MkvFragmenter {
            limits,
            reader: MkvReader::new(reader_limits),
            scale_ns: 1_000_000,
            tracks: Vec::new(),
            muxer: None,
            cluster_us: None,
            previous_cluster_us: None,
            fragment_start_us: None,
        }
    }

    /// Feeds body bytes; the events they complete go to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        let events = self.reader.push(data).map_err(|e| FatalError::Matroska(e.to_string()))?;
        for event in events {
            self.event(event, out)?;
        }
        Ok(())
    }

    /// The end of the body: what is pending becomes the last fragment.
    pub fn finish(&mut self, out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        self.flush(out);
        if self.reader.missing() > 0 {
            return Err(FatalError::EndedInsideBox { dropped: self.reader.buffered() as u64 });
        }
        Ok(())
    }

    /// Emits what is pending (the body ended with an error).
    pub fn flush(&mut self, out: &mut Vec<FragmenterEvent>) {
        self.drain_reorder(out);
        if let Some(m) = self.muxer.as_mut() {
            let muxed = m.flush_frame();
            let missing = missing_track(&mut self.tracks, muxed.fragment.is_some());
            emit(muxed, &mut self.fragment_start_us, None, missing, out);
        }
    }

    fn to_us(&self, timecode: i64) -> i64 {
        (i128::from(timecode) * i128::from(self.scale_ns) / 1000) as i64
    }

    fn event(&mut self, event: MkvEvent, out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        match event {
            MkvEvent::Header { .. } | MkvEvent::SegmentStart => {}
            // The producer SDK's explicit end of fragment (it sends one at the end of a
            // stream and waits for that fragment's PERSISTED before it closes).
            MkvEvent::Tags(tags) if tags.iter().any(|(name, _)| name == END_OF_FRAGMENT) => self.flush(out),
            MkvEvent::Tags(_) => {}
            MkvEvent::Info { timecode_scale_ns } => self.scale_ns = timecode_scale_ns,
            MkvEvent::Tracks(tracks) => self.tracks_event(&tracks, out)?,
            MkvEvent::Cluster { timecode } => {
                let at = self.to_us(i64::try_from(timecode).unwrap_or(i64::MAX));
                if let Some(previous) = self.previous_cluster_us.filter(|p| at < *p) {
                    out.push(FragmenterEvent::Rejected {
                        start_us: at,
                        reason: FragmentRejection::TimecodeBackwards {
                            timecode_ms: at / 1000,
                            previous_ms: previous / 1000,
                        },
                    });
                    self.cluster_us = None;
                    return Ok(());
                }
                // What the previous Cluster left in the reorder windows belongs to it.
                self.drain_reorder(out);
                self.previous_cluster_us = Some(at);
                self.cluster_us = Some(at);
            }
            MkvEvent::Frame(frame) => self.frame(frame, out)?,
        }
        Ok(())
    }

    fn tracks_event(&mut self, tracks: &[MkvTrack], out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        if self.muxer.is_some() {
            // The same Tracks again (a new chunk of the stream) changes nothing.
            let same =
                tracks.len() == self.tracks.len() && tracks.iter().zip(&self.tracks).all(|(a, b)| a.number == b.number);
            return if same {
                Ok(())
            } else {
                Err(FatalError::Matroska("Tracks changed in the middle of the stream".into()))
            };
        }
        if tracks.is_empty() {
            return Err(FatalError::NoTracks);
        }
        if tracks.len() > self.limits.max_tracks {
            return Err(FatalError::TooManyTracks { found: tracks.len(), max: self.limits.max_tracks });
        }
        let mut params = Vec::with_capacity(tracks.len());
        for t in tracks {
            let kind = CodecKind::from_matroska_codec_id(&t.codec_id).ok_or_else(|| {
                FatalError::Matroska(format!(
                    "track {} has CodecID {}; Kinescope takes V_MPEG4/ISO/AVC, V_MPEGH/ISO/HEVC, A_AAC and A_OPUS",
                    t.number, t.codec_id
                ))
            })?;
            let rate = t.sampling_frequency.unwrap_or(0.0).clamp(0.0, 1e6) as u32;
            let channels = t.channels.unwrap_or(0).min(255) as u16;
            let p = CodecParams::from_matroska(kind, &t.codec_private, rate, channels).ok_or_else(|| {
                FatalError::Matroska(format!(
                    "track {}'s CodecPrivate is not a readable {} configuration",
                    t.number, t.codec_id
                ))
            })?;
            let depth = if p.is_video() && p.can_reorder() { REORDER_DEPTH } else { 0 };
            self.tracks.push(Track {
                number: t.number,
                timescale: p.timescale(),
                order: DecodeOrder::new(depth),
                in_fragment: 0,
            });
            params.push(p);
        }
        let max = usize::try_from(self.limits.max_fragment_bytes).unwrap_or(usize::MAX);
        let muxer = FragmentMuxer::new(params).with_chunk_duration(LIVE_CHUNK_US).with_max_bytes(max);
        let bytes =
            muxer.init_segment().map_err(|e| FatalError::Matroska(format!("an init segment from the Tracks: {e}")))?;
        let info = fmp4::parse_init(&bytes).map_err(FatalError::Invalid)?;
        out.push(FragmenterEvent::Init(InitSegment { bytes: Bytes::from(bytes), info }));
        self.muxer = Some(muxer);
        Ok(())
    }

    fn frame(&mut self, frame: MkvFrame, out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        let Some(cluster_us) = self.cluster_us else { return Ok(()) };
        let index =
            self.tracks.iter().position(|t| t.number == frame.track).ok_or(FatalError::UndeclaredTrack(frame.track))?;
        let pts_us = cluster_us + self.to_us(i64::from(frame.relative_timecode));
        let t = &mut self.tracks[index];
        let pts = (i128::from(pts_us) * i128::from(t.timescale) / 1_000_000) as i64;
        let ready = t.order.push(pts, (frame.keyframe, frame.data));
        for (dts, pts, (keyframe, data)) in ready {
            self.mux(index, dts, pts, keyframe, data, out)?;
        }
        Ok(())
    }

    fn drain_reorder(&mut self, out: &mut Vec<FragmenterEvent>) {
        for index in 0..self.tracks.len() {
            while let Some((dts, pts, (keyframe, data))) = self.tracks[index].order.pop() {
                if let Err(e) = self.mux(index, dts, pts, keyframe, data, out) {
                    tracing::debug!(error = %e, "a frame at a cluster's end was not muxed");
                }
            }
        }
    }

    fn mux(
        &mut self,
        track: usize,
        dts: i64,
        pts: i64,
        keyframe: bool,
        data: Vec<u8>,
        out: &mut Vec<FragmenterEvent>,
    ) -> Result<(), FatalError> {
        let Some(muxer) = self.muxer.as_mut() else { return Err(FatalError::NoInitSegment) };
        let timescale = self.tracks[track].timescale;
        let cts_offset = i32::try_from(pts - dts).unwrap_or(0).max(0);
        let frame = Frame { track, dts, cts_offset, keyframe, data };
        let muxed = muxer.push_frame(frame).map_err(|e| FatalError::Matroska(e.to_string()))?;
        let pts_us = (i128::from(pts) * 1_000_000 / i128::from(timescale.max(1))) as i64;
        // A closed fragment holds the frames muxed before this one, which starts the next.
        let missing = missing_track(&mut self.tracks, muxed.fragment.is_some());
        self.tracks[track].in_fragment += 1;
        emit(muxed, &mut self.fragment_start_us, Some(pts_us), missing, out);
        Ok(())
    }
}

/// When a fragment closed: the first declared track that had no frame in it; the
/// counts start again for the next fragment.
fn missing_track(tracks: &mut [Track], closed: bool) -> Option<u64> {
    if !closed {
        return None;
    }
    let missing = tracks.iter().find(|t| t.in_fragment == 0).map(|t| t.number);
    tracks.iter_mut().for_each(|t| t.in_fragment = 0);
    missing
}

/// The events one muxer step makes: the chunk it closed, the fragment that chunk
/// completed (refused when `missing_track` names a track without frames), and (when a
/// frame was added) the start of a new fragment at `next_start_us`.
fn emit(
    muxed: Muxed,
    fragment_start_us: &mut Option<i64>,
    next_start_us: Option<i64>,
    missing_track: Option<u64>,
    out: &mut Vec<FragmenterEvent>,
) {
    if let Some(MuxedChunk { bytes, duration_us, independent, .. }) = muxed.chunk {
        out.push(FragmenterEvent::Chunk { bytes, duration_us, independent });
    }
    if let Some(f) = muxed.fragment {
        let size = f.chunks.iter().map(|c| c.len() as u64).sum();
        let start_us = fragment_start_us.take().unwrap_or(f.start_us);
        // Fragments tile the producer's timeline: one lasts until the next one starts
        // (the muxer's own duration counts decode times, which B-frames put up to a
        // reorder delay before the presentation times the starts are).
        let duration_us = match next_start_us {
            Some(next) if next > start_us => next - start_us,
            _ => f.duration_us,
        };
        if let Some(track) = missing_track {
            out.push(FragmenterEvent::Rejected {
                start_us,
                reason: FragmentRejection::FramesMissingForTrack { track },
            });
        } else {
            out.push(FragmenterEvent::Fragment(AssembledFragment {
                chunks: f.chunks,
                size,
                start_us,
                duration_us,
                keyframe: f.keyframe,
            }));
        }
    }
    if let (Some(start_us), None) = (next_start_us, *fragment_start_us) {
        *fragment_start_us = Some(start_us);
        out.push(FragmenterEvent::FragmentStarted { start_us });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpegs_live_matroska_becomes_the_fragments_its_mp4_twin_makes() {
        let mkv = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mkv")).unwrap();
        for chunk in [mkv.len(), 4096, 333] {
            let mut f = MkvFragmenter::new(FragmentLimits::default());
            let mut events = Vec::new();
            for piece in mkv.chunks(chunk) {
                f.push(piece, &mut events).unwrap();
            }
            f.finish(&mut events).unwrap();
            let inits = events.iter().filter(|e| matches!(e, FragmenterEvent::Init(_))).count();
            assert_eq!(inits, 1);
            let FragmenterEvent::Init(init) = &events[0] else { panic!("first an init") };
            assert_eq!(init.info.tracks.len(), 2);
            let fragments: Vec<&AssembledFragment> = events
                .iter()
                .filter_map(|e| if let FragmenterEvent::Fragment(f) = e { Some(f) } else { None })
                .collect();
            assert_eq!(fragments.len(), 4, "four 1 s GOPs");
            assert!(fragments.iter().all(|f| f.keyframe));
            // Audio opens the first at 0; each next starts at its keyframe, presented 80 ms
            // after its decode time (B-frames).
            let starts: Vec<i64> = fragments.iter().map(|f| f.start_us).collect();
            assert_eq!(starts, [0, 1_080_000, 2_080_000, 3_080_000], "{starts:?}");
            // Each lasts until the next starts: no gap in the producer's timeline.
            let ends: Vec<i64> = fragments.iter().map(|f| f.start_us + f.duration_us).collect();
            assert_eq!(ends[..3], starts[1..], "{ends:?}");
            let started = events.iter().filter(|e| matches!(e, FragmenterEvent::FragmentStarted { .. })).count();
            assert_eq!(started, 4);
            // Every fragment parses against the init, and the video's 100 frames are all there.
            let samples: usize = fragments
                .iter()
                .map(|f| {
                    let bytes: Vec<u8> = f.chunks.concat();
                    crate::wire::mp4_tracks::fragment_samples(&bytes, &init.info)
                        .unwrap()
                        .iter()
                        .filter(|t| t.track_id == init.info.tracks[0].track_id)
                        .map(|t| t.samples.len())
                        .sum::<usize>()
                })
                .sum();
            assert_eq!(samples, 100);
        }
    }

    #[test]
    fn what_is_not_kvs_matroska_stops_the_stream_with_a_reason() {
        let mut f = MkvFragmenter::new(FragmentLimits::default());
        let mut events = Vec::new();
        let e = f.push(b"\x1A\x45\xDF\xA3\x84\x42\x82\x81\x41", &mut events).unwrap_err();
        assert!(e.to_string().contains("DocType"), "{e}");
        assert!(is_matroska(b"\x1A\x45\xDF\xA3rest") && !is_matroska(b"\0\0\0\x1cftyp"));
    }

    /// fixtures/av.mkv rewritten by the Matroska writer, its frames passed through
    /// `keep(time in ms, track number)`, with a block of `extra_track` in the second cluster.
    fn rewritten(keep: impl Fn(i64, u64) -> bool, extra_track: Option<u64>) -> Vec<u8> {
        use crate::wire::matroska::*;
        let mkv = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mkv")).unwrap();
        let events = MkvReader::new(MkvLimits::default()).push(&mkv).unwrap();
        let mut out = Vec::new();
        write_ebml_header(&mut out);
        write_segment_start(&mut out);
        write_info(&mut out, 1_000_000, "test");
        let mut clusters: Vec<(u64, Vec<MkvFrame>)> = Vec::new();
        for e in events {
            match e {
                MkvEvent::Tracks(tracks) => {
                    let outs: Vec<TrackOut<'_>> = tracks
                        .iter()
                        .map(|t| TrackOut {
                            number: t.number,
                            kind: t.kind,
                            codec_id: &t.codec_id,
                            codec_private: &t.codec_private,
                            width: t.width.map(|w| w as u32),
                            height: t.height.map(|h| h as u32),
                            sampling_frequency: t.sampling_frequency,
                            channels: t.channels.map(|c| c as u16),
                        })
                        .collect();
                    write_tracks(&mut out, &outs);
                }
                MkvEvent::Cluster { timecode } => clusters.push((timecode, Vec::new())),
                MkvEvent::Frame(f) => clusters.last_mut().unwrap().1.push(f),
                _ => {}
            }
        }
        for (i, (timecode, frames)) in clusters.iter().enumerate() {
            let mut blocks: Vec<BlockOut<'_>> = frames
                .iter()
                .filter(|f| keep(*timecode as i64 + i64::from(f.relative_timecode), f.track))
                .map(|f| BlockOut {
                    track: f.track,
                    relative_timecode: f.relative_timecode,
                    keyframe: f.keyframe,
                    data: &f.data,
                })
                .collect();
            if let (Some(track), 1) = (extra_track, i) {
                blocks.push(BlockOut { track, relative_timecode: 500, keyframe: true, data: b"?" });
            }
            write_cluster(&mut out, *timecode, &blocks);
        }
        out
    }

    fn run(bytes: &[u8]) -> (Vec<FragmenterEvent>, Result<(), FatalError>) {
        let mut f = MkvFragmenter::new(FragmentLimits::default());
        let mut events = Vec::new();
        let r = f.push(bytes, &mut events).and_then(|()| f.finish(&mut events));
        (events, r)
    }

    #[test]
    fn a_fragment_missing_a_declared_track_is_refused_alone() {
        // No audio from 1.9 s to 3.3 s: the third fragment (2 s to 3 s in the order the
        // frames reach the muxer, video held back by its reorder window) has none.
        let (events, r) = run(&rewritten(|ms, track| !((1900..3300).contains(&ms) && track == 2), None));
        r.unwrap();
        let outcome: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                FragmenterEvent::Fragment(_) => Some("stored"),
                FragmenterEvent::Rejected { reason: FragmentRejection::FramesMissingForTrack { track: 2 }, .. } => {
                    Some("refused")
                }
                _ => None,
            })
            .collect();
        assert_eq!(outcome, ["stored", "stored", "refused", "stored"]);
    }

    #[test]
    fn a_block_of_an_undeclared_track_stops_the_stream_as_a_track_number_mismatch() {
        let (events, r) = run(&rewritten(|_, _| true, Some(3)));
        assert_eq!(r, Err(FatalError::UndeclaredTrack(3)));
        assert!(events.iter().any(|e| matches!(e, FragmenterEvent::Fragment(_))), "what came before is kept");
    }
}
