//! A stored fragment as an MPEG-TS HLS segment (`ContainerFormat=MPEG_TS`), cut from its
//! bytes without transcoding: each sample becomes one PES access unit in the form the
//! codec layer gives it (Annex B with delimiters and, on keyframes, parameter sets; AAC
//! in ADTS), interleaved across tracks in decode order, after a PAT and PMT.
//!
//! Timestamps are the stored decode and presentation times on a 90 kHz clock, modulo
//! 2^33 as MPEG-TS counts, so consecutive segments continue one timeline; continuity
//! counters start at zero in each segment (players take every segment as it comes).
//! Tracks of codecs MPEG-TS does not carry (Opus) are left out. Pure.

use crate::codec::CodecParams;
use crate::wire::bmff::BoxError;
use crate::wire::fmp4::InitInfo;
use crate::wire::mp4_tracks::fragment_samples;
use crate::wire::mpegts::{AccessUnit, EsInfo, TsWriter};

/// The MIME type of a TS segment.
pub const CONTENT_TYPE: &str = "video/mp2t";

/// What an init segment's tracks become in a transport stream.
#[derive(Debug, Clone)]
pub struct TsProgram {
    /// (MP4 track id, timescale, parameters) of every track carried, in PMT order.
    tracks: Vec<(u32, u32, CodecParams)>,
    streams: Vec<EsInfo>,
}

impl TsProgram {
    /// The program for `init`; `None` when none of its tracks can be carried.
    pub fn new(init: &InitInfo) -> Option<Self> {
        let mut tracks = Vec::new();
        let mut streams = Vec::new();
        for t in &init.tracks {
            let Some(params) = CodecParams::from_track(t) else { continue };
            let Some(stream_type) = params.kind().mpegts_stream_type() else { continue };
            streams.push(EsInfo { stream_type, video: params.is_video() });
            tracks.push((t.track_id, t.timescale, params));
        }
        (!tracks.is_empty()).then_some(TsProgram { tracks, streams })
    }
}

/// The segment of one stored fragment (`fragment`, its init described by `init`).
pub fn write_segment(program: &TsProgram, init: &InitInfo, fragment: &[u8]) -> Result<Vec<u8>, BoxError> {
    struct Unit {
        stream: usize,
        dts: i128,
        pts: i128,
        keyframe: bool,
        start: usize,
        end: usize,
    }
    let mut units = Vec::new();
    for track in fragment_samples(fragment, init)? {
        let Some(stream) = program.tracks.iter().position(|(id, _, _)| *id == track.track_id) else { continue };
        let scale = i128::from(program.tracks[stream].1.max(1));
        for s in &track.samples {
            let Some(range) = s.range(fragment.len()) else { continue };
            let dts = i128::from(s.decode_time);
            units.push(Unit {
                stream,
                dts: dts * 90_000 / scale,
                pts: (dts + i128::from(s.composition_offset)) * 90_000 / scale,
                keyframe: s.is_sync(),
                start: range.start,
                end: range.end,
            });
        }
    }
    units.sort_by_key(|u| u.dts);
    let mut writer = TsWriter::new(program.streams.clone());
    let media: usize = units.iter().map(|u| u.end - u.start).sum();
    let mut out = Vec::with_capacity(media + media / 16 + 1024);
    writer.write_tables(&mut out);
    let wrap = |t: i128| t.rem_euclid(1 << 33) as u64;
    for u in &units {
        let params = &program.tracks[u.stream].2;
        let data = params.mpegts_access_unit(&fragment[u.start..u.end], u.keyframe);
        let au = AccessUnit {
            stream: u.stream,
            pts: wrap(u.pts.max(u.dts)),
            dts: wrap(u.dts),
            random_access: u.keyframe && params.is_video(),
            data: &data,
        };
        writer.write_access_unit(&mut out, &au);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::mpegts::{FIRST_ES_PID, PACKET, PMT_PID};

    #[test]
    fn a_fragment_becomes_a_segment_of_h264_and_adts_aac_access_units() {
        let (init, fragment) = crate::playback::test_fixtures::av_first_fragment();
        let fragment = &fragment[..];
        let program = TsProgram::new(&init).unwrap();
        let ts = write_segment(&program, &init, fragment).unwrap();
        assert_eq!(ts.len() % PACKET, 0);
        let pids: Vec<u16> = ts.chunks(PACKET).map(|p| u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])).collect();
        assert_eq!(pids[..2], [0, PMT_PID]);
        let starts = |pid: u16| ts.chunks(PACKET).filter(|p| p[1] & 0x40 != 0 && pids_of(p) == pid).count();
        let samples = fragment_samples(fragment, &init).unwrap();
        assert_eq!(starts(FIRST_ES_PID), samples[0].samples.len(), "one PES per video frame");
        assert_eq!(starts(FIRST_ES_PID + 1), samples[1].samples.len(), "one PES per AAC frame");
        // The first video PES starts with an access unit delimiter, then the SPS.
        let first_video = ts.chunks(PACKET).find(|p| pids_of(p) == FIRST_ES_PID).unwrap();
        let payload = &first_video[5 + first_video[4] as usize..];
        let header_len = 9 + payload[8] as usize;
        assert_eq!(&payload[header_len..header_len + 6], &[0, 0, 0, 1, 0x09, 0xF0]);
        assert_eq!(payload[header_len + 10] & 0x1F, 7, "SPS after the delimiter");
    }

    fn pids_of(p: &[u8]) -> u16 {
        u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
    }
}
