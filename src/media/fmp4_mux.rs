//! Frames in, the store's unit out: an init segment (`ftyp`+`moov` with one track per
//! input, sample entries built from the codec parameters) and a fragment per GOP, cut
//! where a video keyframe begins. Sans-IO.
//!
//! A fragment is one `moof`+`mdat` chunk, or, with [`FragmentMuxer::with_chunk_duration`],
//! a chunk every so often inside the GOP (CMAF chunks; LL-HLS parts): each chunk is
//! handed out as soon as it closes, and the fragment is the chunks in order.
//!
//! Decode times are written as given (`tfdt`), so the caller passes them on the
//! timeline it wants stored: RTSP ingest passes producer wall-clock time in each
//! track's timescale, as `ffmpeg -movflags frag_keyframe` with absolute times would.

use bytes::Bytes;

use super::Frame;
use crate::codec::{CodecError, CodecParams};
use crate::wire::bmff::{box_header_len, full_box, kinds::*, write_box, write_box_header};
use crate::wire::fmp4::{
    SAMPLE_FLAGS_NON_SYNC, SAMPLE_FLAGS_SYNC, TFHD_DEFAULT_BASE_IS_MOOF, TRUN_CTO, TRUN_DATA_OFFSET, TRUN_DURATION,
    TRUN_FLAGS, TRUN_SIZE,
};

/// Cut a fragment even without a keyframe once it holds this much time (the store
/// refuses fragments over 20 s).
pub const MAX_FRAGMENT_US: i64 = 10_000_000;
/// Audio-only streams are cut into fragments of this length.
pub const AUDIO_FRAGMENT_US: i64 = 2_000_000;
/// Cut a fragment once its samples hold this many bytes (unless told otherwise with
/// [`FragmentMuxer::with_max_bytes`]); the store's own limit is 50 MB.
pub const MAX_FRAGMENT_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    #[error("sample for unknown track {0}")]
    UnknownTrack(usize),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("decode time went backwards on track {track}: {dts} after {last}")]
    TimeWentBack { track: usize, dts: i64, last: i64 },
}

/// One `moof`+`mdat` chunk of the fragment being muxed, ready as soon as it closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxedChunk {
    pub bytes: Bytes,
    /// The timing track's first decode time in the chunk, µs.
    pub start_us: i64,
    pub duration_us: i64,
    /// Whether it starts with a video keyframe (the first chunk of a fragment).
    pub independent: bool,
}

/// One fragment ready for the store: its chunks, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxedFragment {
    pub chunks: Vec<Bytes>,
    /// The first sample's decode time, µs (the timing track's).
    pub start_us: i64,
    pub duration_us: i64,
    /// Whether it starts with a video keyframe (always true of audio-only streams).
    pub keyframe: bool,
}

impl MuxedFragment {
    /// The fragment's bytes in one piece.
    pub fn bytes(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

/// What one frame closed: the chunk before it, and the fragment if it was the last
/// chunk of one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Muxed {
    pub chunk: Option<MuxedChunk>,
    pub fragment: Option<MuxedFragment>,
}

struct Track {
    params: CodecParams,
    timescale: u32,
    /// Samples of the chunk being muxed.
    pending: Vec<Frame>,
    /// The decode time of the fragment's first sample on this track.
    fragment_first_dts: Option<i64>,
    last_dts: Option<i64>,
    last_duration: u32,
}

pub struct FragmentMuxer {
    tracks: Vec<Track>,
    /// The track whose keyframes cut fragments (the first video track), if any.
    video: Option<usize>,
    sequence: u32,
    /// Sample bytes of the fragment being muxed, all tracks.
    pending_bytes: usize,
    max_bytes: usize,
    /// Close a chunk before it would last longer than this (None: one chunk per fragment).
    chunk_us: Option<i64>,
    /// The closed chunks of the fragment being muxed.
    chunks: Vec<MuxedChunk>,
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn to_us(t: i64, timescale: u32) -> i64 {
    (i128::from(t) * 1_000_000 / i128::from(timescale.max(1))) as i64
}

impl FragmentMuxer {
    pub fn new(params: Vec<CodecParams>) -> Self {
        let video = params.iter().position(CodecParams::is_video);
        let tracks = params
            .into_iter()
            .map(|p| Track {
                timescale: p.timescale(),
                last_duration: if p.is_video() { 3000 } else { 1024 },
                params: p,
                pending: Vec::new(),
                fragment_first_dts: None,
                last_dts: None,
            })
            .collect();
        FragmentMuxer {
            tracks,
            video,
            sequence: 0,
            pending_bytes: 0,
            max_bytes: MAX_FRAGMENT_BYTES,
            chunk_us: None,
            chunks: Vec::new(),
        }
    }

    /// Closes a chunk inside the fragment whenever the next frame would make it last
    /// longer than `us` (a chunk holds at least one frame of the timing track).
    pub fn with_chunk_duration(mut self, us: i64) -> Self {
        self.chunk_us = (us > 0).then_some(us);
        self
    }

    /// Cuts fragments at `max_bytes` of samples at most.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
    }

    pub fn params(&self) -> Vec<CodecParams> {
        self.tracks.iter().map(|t| t.params.clone()).collect()
    }

    /// `ftyp` + `moov` for the tracks, in order (track ids 1, 2, …).
    pub fn init_segment(&self) -> Result<Vec<u8>, MuxError> {
        let mut out = Vec::with_capacity(1024);
        let mut ftyp = Vec::new();
        ftyp.extend_from_slice(b"iso6");
        ftyp.extend_from_slice(&0u32.to_be_bytes());
        for brand in [b"iso6", b"cmfc", b"mp41"] {
            ftyp.extend_from_slice(brand);
        }
        write_box(&mut out, FTYP, &ftyp);

        let mut moov = Vec::with_capacity(1024);
        let mut mvhd = full_box(0, 0);
        mvhd.extend_from_slice(&[0; 8]); // creation, modification
        mvhd.extend_from_slice(&1000u32.to_be_bytes());
        mvhd.extend_from_slice(&0u32.to_be_bytes()); // duration
        mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate
        mvhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume
        mvhd.extend_from_slice(&[0; 10]);
        MATRIX.iter().for_each(|m| mvhd.extend_from_slice(&m.to_be_bytes()));
        mvhd.extend_from_slice(&[0; 24]);
        mvhd.extend_from_slice(&(self.tracks.len() as u32 + 1).to_be_bytes());
        write_box(&mut moov, MVHD, &mvhd);
        for (i, t) in self.tracks.iter().enumerate() {
            write_box(&mut moov, TRAK, &trak(i as u32 + 1, t)?);
        }
        let mut mvex = Vec::new();
        for i in 0..self.tracks.len() {
            let mut trex = full_box(0, 0);
            trex.extend_from_slice(&(i as u32 + 1).to_be_bytes());
            trex.extend_from_slice(&1u32.to_be_bytes());
            trex.extend_from_slice(&[0; 12]);
            write_box(&mut mvex, TREX, &trex);
        }
        write_box(&mut moov, MVEX, &mvex);
        write_box(&mut out, MOOV, &moov);
        Ok(out)
    }

    /// The longest time any track's samples in the fragment span.
    fn pending_span_us(&self) -> i64 {
        self.tracks
            .iter()
            .filter_map(|t| match (t.fragment_first_dts, t.last_dts) {
                (Some(a), Some(b)) => Some(to_us(b - a, t.timescale)),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The track whose time is the chunk's and the fragment's: the video track once it
    /// has samples in the fragment, else the first track that has.
    fn timing_track(&self) -> Option<usize> {
        let has = |t: &Track| !t.pending.is_empty() || t.fragment_first_dts.is_some();
        self.video.filter(|v| has(&self.tracks[*v])).or_else(|| self.tracks.iter().position(has))
    }

    /// Adds a frame; returns the fragment it completes, if it starts a new one.
    pub fn push(&mut self, sample: Frame) -> Result<Option<MuxedFragment>, MuxError> {
        Ok(self.push_frame(sample)?.fragment)
    }

    /// Adds a frame; returns the chunk it closes and, if it starts a new fragment, the
    /// fragment that chunk completes.
    pub fn push_frame(&mut self, sample: Frame) -> Result<Muxed, MuxError> {
        let track = self.tracks.get(sample.track).ok_or(MuxError::UnknownTrack(sample.track))?;
        if let Some(last) = track.last_dts {
            if sample.dts < last {
                return Err(MuxError::TimeWentBack { track: sample.track, dts: sample.dts, last });
            }
        }
        // Keyframes cut; so do time and size, whatever arrives (a stream that announced
        // video but sends only audio must not grow one endless fragment).
        let full = self.pending_bytes.saturating_add(sample.data.len()) > self.max_bytes;
        let cut = match self.video {
            Some(v) => {
                let has_video = self.tracks[v].fragment_first_dts.is_some();
                (has_video && sample.track == v && sample.keyframe) || self.pending_span_us() >= MAX_FRAGMENT_US || full
            }
            None => self.pending_span_us() >= AUDIO_FRAGMENT_US || full,
        };
        let mut out = Muxed::default();
        if cut {
            out.chunk = self.cut_chunk(Some(&sample));
            out.fragment = self.take_fragment();
        } else if self.chunk_full(&sample) {
            out.chunk = self.cut_chunk(Some(&sample));
        }
        let t = &self.tracks[sample.track];
        // Video before its first keyframe cannot be decoded: drop it (after a cut by
        // time or size, the frame starts the next fragment whatever it is).
        if Some(sample.track) == self.video
            && t.fragment_first_dts.is_none()
            && !sample.keyframe
            && out.fragment.is_none()
        {
            let no_video_yet = self.tracks.iter().all(|t| t.fragment_first_dts.is_none());
            if no_video_yet {
                self.tracks[sample.track].last_dts = Some(sample.dts);
                return Ok(out);
            }
        }
        let t = &mut self.tracks[sample.track];
        t.last_dts = Some(sample.dts);
        t.fragment_first_dts.get_or_insert(sample.dts);
        self.pending_bytes = self.pending_bytes.saturating_add(sample.data.len());
        t.pending.push(sample);
        Ok(out)
    }

    /// Whether the chunk being muxed would last longer than the chunk duration if it
    /// waited for the frame after `next` (only the timing track's frames close chunks).
    fn chunk_full(&self, next: &Frame) -> bool {
        let Some(limit) = self.chunk_us else { return false };
        if self.timing_track() != Some(next.track) {
            return false;
        }
        let t = &self.tracks[next.track];
        let (Some(first), Some(last)) = (t.pending.first(), t.pending.last()) else { return false };
        let interval = next.dts - last.dts;
        to_us(next.dts - first.dts + interval, t.timescale) > limit
    }

    /// Emits whatever is pending (at the end of a stream).
    pub fn flush(&mut self) -> Option<MuxedFragment> {
        self.flush_frame().fragment
    }

    /// Emits whatever is pending as a last chunk and the fragment it completes.
    pub fn flush_frame(&mut self) -> Muxed {
        let chunk = self.cut_chunk(None);
        Muxed { chunk, fragment: self.take_fragment() }
    }

    /// The closed chunks as one fragment; the next frame starts a new one.
    fn take_fragment(&mut self) -> Option<MuxedFragment> {
        self.pending_bytes = 0;
        for t in &mut self.tracks {
            t.fragment_first_dts = None;
        }
        let chunks = std::mem::take(&mut self.chunks);
        let first = chunks.first()?;
        let last = chunks.last()?;
        Some(MuxedFragment {
            start_us: first.start_us,
            duration_us: (last.start_us + last.duration_us - first.start_us).max(0),
            keyframe: first.independent,
            chunks: chunks.into_iter().map(|c| c.bytes).collect(),
        })
    }

    /// Writes the pending samples as one `moof`+`mdat`, adds it to the fragment's
    /// chunks and returns it.
    fn cut_chunk(&mut self, next: Option<&Frame>) -> Option<MuxedChunk> {
        if self.tracks.iter().all(|t| t.pending.is_empty()) {
            return None;
        }
        self.sequence += 1;
        let timing = self
            .video
            .filter(|v| !self.tracks[*v].pending.is_empty())
            .unwrap_or_else(|| self.tracks.iter().position(|t| !t.pending.is_empty()).unwrap_or(0));
        // (track id, traf without its data offset, the samples whose bytes go in the mdat, their size)
        let mut trafs: Vec<(u32, Vec<u8>, Vec<Frame>, usize)> = Vec::new();
        let (mut start_us, mut end_us, mut keyframe) = (0, 0, false);
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if t.pending.is_empty() {
                continue;
            }
            let samples = std::mem::take(&mut t.pending);
            let mut durations: Vec<u32> =
                samples.windows(2).map(|w| u32::try_from(w[1].dts - w[0].dts).unwrap_or(0)).collect();
            let last = match next {
                Some(n) if n.track == i => u32::try_from(n.dts - samples[samples.len() - 1].dts).unwrap_or(0),
                _ => durations.last().copied().unwrap_or(t.last_duration),
            };
            durations.push(last);
            t.last_duration = last.max(1);
            if i == timing {
                start_us = to_us(samples[0].dts, t.timescale);
                end_us = to_us(samples[samples.len() - 1].dts + i64::from(last), t.timescale);
                keyframe = !t.params.is_video() || samples[0].keyframe;
            }
            let mut trun = full_box(1, TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | TRUN_CTO);
            trun.extend_from_slice(&(samples.len() as u32).to_be_bytes());
            trun.extend_from_slice(&0u32.to_be_bytes()); // data offset, fixed below
            let mut data_len = 0usize;
            for (s, d) in samples.iter().zip(&durations) {
                trun.extend_from_slice(&d.to_be_bytes());
                trun.extend_from_slice(&(s.data.len() as u32).to_be_bytes());
                let flags = if !t.params.is_video() || s.keyframe { SAMPLE_FLAGS_SYNC } else { SAMPLE_FLAGS_NON_SYNC };
                trun.extend_from_slice(&flags.to_be_bytes());
                trun.extend_from_slice(&s.cts_offset.to_be_bytes());
                data_len += s.data.len();
            }
            let mut tfhd = full_box(0, TFHD_DEFAULT_BASE_IS_MOOF);
            tfhd.extend_from_slice(&(i as u32 + 1).to_be_bytes());
            let mut tfdt = full_box(1, 0);
            tfdt.extend_from_slice(&(samples[0].dts.max(0) as u64).to_be_bytes());
            let mut traf = Vec::new();
            write_box(&mut traf, TFHD, &tfhd);
            write_box(&mut traf, TFDT, &tfdt);
            write_box(&mut traf, TRUN, &trun);
            trafs.push((i as u32 + 1, traf, samples, data_len));
        }
        // moof = header + mfhd + trafs; each trun's data offset counts from the moof start.
        let mut mfhd = full_box(0, 0);
        mfhd.extend_from_slice(&self.sequence.to_be_bytes());
        let moof_len = 8 + (8 + mfhd.len()) + trafs.iter().map(|(_, traf, _, _)| 8 + traf.len()).sum::<usize>();
        let payload: usize = trafs.iter().map(|(_, _, _, len)| len).sum();
        let mdat_header = box_header_len(payload);
        let mut moof = Vec::with_capacity(moof_len);
        write_box(&mut moof, MFHD, &mfhd);
        let mut offset = moof_len + mdat_header;
        for (_, traf, _, data_len) in &mut trafs {
            // trun body: after tfhd and tfdt boxes, the trun header (8), version/flags (4), count (4).
            let tfhd_len = u32::from_be_bytes([traf[0], traf[1], traf[2], traf[3]]) as usize;
            let tfdt_len =
                u32::from_be_bytes([traf[tfhd_len], traf[tfhd_len + 1], traf[tfhd_len + 2], traf[tfhd_len + 3]])
                    as usize;
            let at = tfhd_len + tfdt_len + 8 + 4 + 4;
            traf[at..at + 4].copy_from_slice(&(offset as u32).to_be_bytes());
            offset += *data_len;
            write_box(&mut moof, TRAF, traf);
        }
        let mut bytes = Vec::with_capacity(moof_len + mdat_header + payload);
        write_box(&mut bytes, MOOF, &moof);
        write_box_header(&mut bytes, MDAT, payload);
        // Each sample's bytes copied once, straight into the chunk.
        for (_, _, samples, _) in &trafs {
            for s in samples {
                bytes.extend_from_slice(&s.data);
            }
        }
        let chunk = MuxedChunk {
            bytes: Bytes::from(bytes),
            start_us,
            duration_us: (end_us - start_us).max(0),
            independent: keyframe,
        };
        self.chunks.push(chunk.clone());
        Some(chunk)
    }
}

fn trak(track_id: u32, t: &Track) -> Result<Vec<u8>, MuxError> {
    let (width, height) = t.params.dimensions()?;
    let video = t.params.is_video();
    let mut tkhd = full_box(0, 3);
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&track_id.to_be_bytes());
    tkhd.extend_from_slice(&[0; 4]);
    tkhd.extend_from_slice(&0u32.to_be_bytes()); // duration
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&0u16.to_be_bytes()); // layer
    tkhd.extend_from_slice(&0u16.to_be_bytes()); // alternate group
    tkhd.extend_from_slice(&(if video { 0u16 } else { 0x0100 }).to_be_bytes());
    tkhd.extend_from_slice(&[0; 2]);
    MATRIX.iter().for_each(|m| tkhd.extend_from_slice(&m.to_be_bytes()));
    tkhd.extend_from_slice(&(width << 16).to_be_bytes());
    tkhd.extend_from_slice(&(height << 16).to_be_bytes());

    let mut mdhd = full_box(0, 0);
    mdhd.extend_from_slice(&[0; 8]);
    mdhd.extend_from_slice(&t.timescale.to_be_bytes());
    mdhd.extend_from_slice(&0u32.to_be_bytes());
    mdhd.extend_from_slice(&0x55c4u16.to_be_bytes()); // "und"
    mdhd.extend_from_slice(&[0; 2]);
    let mut hdlr = full_box(0, 0);
    hdlr.extend_from_slice(&[0; 4]);
    hdlr.extend_from_slice(if video { b"vide" } else { b"soun" });
    hdlr.extend_from_slice(&[0; 12]);
    hdlr.extend_from_slice(if video { b"VideoHandler\0" } else { b"SoundHandler\0" });

    let mut minf = Vec::new();
    if video {
        let mut vmhd = full_box(0, 1);
        vmhd.extend_from_slice(&[0; 8]);
        write_box(&mut minf, VMHD, &vmhd);
    } else {
        let mut smhd = full_box(0, 0);
        smhd.extend_from_slice(&[0; 4]);
        write_box(&mut minf, SMHD, &smhd);
    }
    let mut dref = full_box(0, 0);
    dref.extend_from_slice(&1u32.to_be_bytes());
    write_box(&mut dref, URL, &full_box(0, 1));
    let mut dinf = Vec::new();
    write_box(&mut dinf, DREF, &dref);
    write_box(&mut minf, DINF, &dinf);

    let mut stsd = full_box(0, 0);
    stsd.extend_from_slice(&1u32.to_be_bytes());
    stsd.extend_from_slice(&t.params.sample_entry()?);
    let mut stbl = Vec::new();
    write_box(&mut stbl, STSD, &stsd);
    for kind in [STTS, STSC, STCO] {
        let mut b = full_box(0, 0);
        b.extend_from_slice(&0u32.to_be_bytes());
        write_box(&mut stbl, kind, &b);
    }
    let mut stsz = full_box(0, 0);
    stsz.extend_from_slice(&[0; 8]);
    write_box(&mut stbl, STSZ, &stsz);
    write_box(&mut minf, STBL, &stbl);

    let mut mdia = Vec::new();
    write_box(&mut mdia, MDHD, &mdhd);
    write_box(&mut mdia, HDLR, &hdlr);
    write_box(&mut mdia, MINF, &minf);
    let mut trak = Vec::new();
    write_box(&mut trak, TKHD, &tkhd);
    write_box(&mut trak, MDIA, &mdia);
    Ok(trak)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::h264::tests::{PPS, SPS};
    use crate::codec::{aac, h264, opus};
    use crate::wire::fmp4::parse_init;
    use crate::wire::mp4_tracks::fragment_samples;

    fn video(dts: i64, key: bool) -> Frame {
        Frame { track: 0, dts, cts_offset: 0, keyframe: key, data: vec![0, 0, 0, 2, if key { 0x65 } else { 0x41 }, 0] }
    }

    #[test]
    fn fragments_are_cut_at_keyframes_and_read_back_by_our_parser() {
        let mut m = FragmentMuxer::new(vec![
            CodecParams::H264(h264::Params { sps: SPS.to_vec(), pps: PPS.to_vec() }),
            CodecParams::Aac(aac::Params { config: vec![0x12, 0x10], sample_rate: 44_100, channels: 2 }),
        ]);
        let init = m.init_segment().unwrap();
        let info = parse_init(&init).unwrap();
        assert_eq!(info.tracks.len(), 2);
        // A P-frame before any keyframe is dropped.
        assert_eq!(m.push(video(0, false)).unwrap(), None);
        let base = 90_000 * 1_700_000_000;
        let mut out = Vec::new();
        for i in 0..50 {
            if let Some(f) = m.push(video(base + i * 3600, i % 25 == 0)).unwrap() {
                out.push(f);
            }
            let audio = Frame {
                track: 1,
                dts: (base / 90_000) * 44_100 + i * 1764,
                cts_offset: 0,
                keyframe: true,
                data: vec![1; 10],
            };
            if let Some(f) = m.push(audio).unwrap() {
                out.push(f);
            }
        }
        out.extend(m.flush());
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|f| f.keyframe));
        assert_eq!(out[0].start_us, 1_700_000_000_000_000);
        assert_eq!(out[0].duration_us, 1_000_000);
        let bytes = out[0].bytes();
        let tracks = fragment_samples(&bytes, &info).unwrap();
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].samples.len(), 25);
        assert!(tracks[0].samples[0].is_sync() && !tracks[0].samples[1].is_sync());
        assert_eq!(tracks[0].samples[1].duration, 3600);
        assert_eq!(tracks[0].start(), Some(base as u64));
        // The sample bytes are where the trun says.
        let s = &tracks[0].samples[0];
        assert_eq!(&bytes[s.range(bytes.len()).unwrap()], &[0, 0, 0, 2, 0x65, 0]);
        assert!(matches!(m.push(video(base, true)), Err(MuxError::TimeWentBack { .. })));
        assert!(matches!(m.push(Frame { track: 9, ..video(0, true) }), Err(MuxError::UnknownTrack(9))));
    }

    /// A stream that announced video but sends only audio (or one huge GOP) is still cut
    /// by time and by size: no fragment grows past either.
    #[test]
    fn without_video_keyframes_fragments_are_cut_by_time_and_size() {
        let params = || {
            vec![
                CodecParams::H264(h264::Params { sps: SPS.to_vec(), pps: PPS.to_vec() }),
                CodecParams::Aac(aac::Params { config: vec![0x12, 0x10], sample_rate: 48_000, channels: 2 }),
            ]
        };
        let audio =
            |i: i64, len: usize| Frame { track: 1, dts: i * 1024, cts_offset: 0, keyframe: true, data: vec![7; len] };
        let mut m = FragmentMuxer::new(params());
        let mut out = Vec::new();
        for i in 0..(48_000 / 1024 * 35) {
            out.extend(m.push(audio(i, 100)).unwrap());
        }
        assert!(out.len() >= 3, "35 s of audio alone is cut at most every 10 s");
        assert!(
            out.iter().all(|f| f.duration_us <= MAX_FRAGMENT_US + 30_000),
            "{:?}",
            out.iter().map(|f| f.duration_us).collect::<Vec<_>>()
        );

        let mut m = FragmentMuxer::new(params()).with_max_bytes(1_000_000);
        let sizes: Vec<usize> =
            (0..100).filter_map(|i| m.push(audio(i, 100_000)).unwrap()).map(|f| f.bytes().len()).collect();
        assert!(sizes.len() >= 9 && sizes.iter().all(|&n| n <= 1_000_000 + 4096), "{sizes:?}");
    }

    /// With a chunk duration, each GOP is written as chunks of at most that long, each
    /// handed out when the frame after it arrives; the fragment is those chunks, and
    /// reads back as the same samples as one chunk would.
    #[test]
    fn chunks_inside_a_gop_close_as_they_fill_and_make_up_the_fragment() {
        let params = vec![
            CodecParams::H264(h264::Params { sps: SPS.to_vec(), pps: PPS.to_vec() }),
            CodecParams::Aac(aac::Params { config: vec![0x12, 0x10], sample_rate: 48_000, channels: 2 }),
        ];
        let mut m = FragmentMuxer::new(params.clone()).with_chunk_duration(200_000);
        let info = parse_init(&m.init_segment().unwrap()).unwrap();
        let (mut chunks, mut fragments) = (Vec::new(), Vec::new());
        // 25 fps video, keyframe every second; AAC frames of 1024 samples at 48 kHz.
        let mut audio_dts = 0;
        for i in 0..51i64 {
            let out = m.push_frame(video(i * 3600, i % 25 == 0)).unwrap();
            chunks.extend(out.chunk);
            fragments.extend(out.fragment);
            while audio_dts * 90_000 / 48_000 < (i + 1) * 3600 {
                let out = m
                    .push_frame(Frame { track: 1, dts: audio_dts, cts_offset: 0, keyframe: true, data: vec![1; 8] })
                    .unwrap();
                assert!(out.chunk.is_none() && out.fragment.is_none(), "audio never closes a chunk here");
                audio_dts += 1024;
            }
        }
        // Two GOPs of 1 s: five chunks of 200 ms each, the first of each independent.
        assert_eq!(fragments.len(), 2);
        assert_eq!(chunks.len(), 10, "{:?}", chunks.iter().map(|c| c.duration_us).collect::<Vec<_>>());
        assert!(chunks.iter().all(|c| c.duration_us == 200_000));
        let independent: Vec<bool> = chunks.iter().map(|c| c.independent).collect();
        assert_eq!(independent, [true, false, false, false, false, true, false, false, false, false]);
        assert_eq!(fragments[0].chunks, chunks[..5].iter().map(|c| c.bytes.clone()).collect::<Vec<_>>());
        assert_eq!((fragments[0].start_us, fragments[0].duration_us), (0, 1_000_000));
        assert_eq!((fragments[1].start_us, fragments[1].duration_us), (1_000_000, 1_000_000));
        let tracks = fragment_samples(&fragments[0].bytes(), &info).unwrap();
        assert_eq!(tracks[0].samples.len(), 25);
        assert_eq!(tracks[0].start(), Some(0));
        assert!(tracks[1].samples.len() >= 46, "{}", tracks[1].samples.len());
        // The same frames without chunking: one chunk, the same samples.
        let mut whole = FragmentMuxer::new(params);
        let one = (0..26i64).filter_map(|i| whole.push(video(i * 3600, i % 25 == 0)).unwrap()).next().unwrap();
        assert_eq!(one.chunks.len(), 1);
        let single = fragment_samples(&one.bytes(), &info).unwrap();
        let durations =
            |t: &crate::wire::mp4_tracks::TrackSamples| t.samples.iter().map(|s| s.duration).collect::<Vec<_>>();
        assert_eq!(durations(&single[0]), durations(&tracks[0]));
        // The last chunk is flushed with the fragment it ends.
        let last = m.flush_frame();
        assert!(last.chunk.is_some() && last.fragment.map(|f| f.chunks.len()) == Some(1));
    }

    #[test]
    fn audio_only_streams_are_cut_every_two_seconds() {
        let mut m = FragmentMuxer::new(vec![CodecParams::Opus(opus::Params { channels: 2 })]);
        assert!(m.init_segment().is_ok());
        let mut n = 0;
        for i in 0..250 {
            if m.push(Frame { track: 0, dts: i * 960, cts_offset: 0, keyframe: true, data: vec![0; 20] })
                .unwrap()
                .is_some()
            {
                n += 1;
            }
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let m = FragmentMuxer::new(vec![CodecParams::H264(h264::Params { sps: vec![0x67, 1], pps: PPS.to_vec() })]);
        assert_eq!(m.init_segment(), Err(MuxError::Codec(CodecError::BadParameters("H.264 SPS"))));
    }
}
