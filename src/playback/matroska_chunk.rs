//! A stored fragment as the self-contained Matroska chunk Kinesis Video's GetMedia and
//! GetMediaForFragmentList send for it, whatever the stream was fed with.
//!
//! Each chunk is a small file of its own: the EBML header, a Segment of unknown size
//! (8-byte form), Info (1 ms timecodes), Tracks, the service Tags that name the fragment
//! (`AWS_KINESISVIDEO_FRAGMENT_NUMBER`, `…_SERVER_TIMESTAMP`, `…_PRODUCER_TIMESTAMP`,
//! seconds with three decimals), the Cluster, then the Tags a follower reads after it
//! (`…_MILLIS_BEHIND_NOW`, `…_CONTINUATION_TOKEN`). The KVS parser library's
//! `FragmentMetadataVisitor` reads exactly this; an error is a chunk whose Tags carry
//! the fragment number, `…_ERROR_ID` and `…_ERROR_CODE` and no Cluster.
//!
//! The Cluster's timecode is the fragment's producer timestamp in milliseconds (what a
//! producer SDK sent in absolute mode) and stands for its earliest presentation time;
//! each block's timecode is its presentation time relative to that. A fragment longer than a block's 16-bit relative timecode reaches
//! (32.767 s) continues in another Cluster. Frames go in decode order, tracks
//! interleaved. Codec IDs and CodecPrivate come from the codec layer; pure functions.

use bytes::Bytes;

use crate::codec::CodecParams;
use crate::video_store::FragmentMeta;
use crate::wire::bmff::BoxError;
use crate::wire::fmp4::{InitInfo, TrackKind};
use crate::wire::matroska::{self, BlockOut, TrackOut};
use crate::wire::mp4_tracks::fragment_samples;

/// The MIME type Kinesis Video answers GetMedia with.
pub const CONTENT_TYPE: &str = "video/webm";

/// Timecodes in milliseconds, as every KVS producer and GetMedia writes them.
const TIMECODE_SCALE_NS: u64 = 1_000_000;

const APP: &str = "Kinescope";

/// The header of every chunk of one init segment: EBML header, Segment start, Info and
/// Tracks, written once and copied per fragment.
#[derive(Debug, Clone)]
pub struct ChunkHeader {
    bytes: Vec<u8>,
    /// (MP4 track id, Matroska track number, timescale) of every track written.
    tracks: Vec<(u32, u64, u32)>,
}

impl ChunkHeader {
    /// The header for `init`'s tracks. A track whose codec Kinescope does not know has
    /// no Matroska CodecID and is left out (its frames with it); `None` when no track
    /// is left.
    pub fn new(init: &InitInfo) -> Option<Self> {
        let mut described = Vec::new();
        for t in &init.tracks {
            let Some(params) = CodecParams::from_track(t) else { continue };
            let Ok(private) = params.matroska_private() else { continue };
            described.push((t, params, private));
        }
        let outs: Vec<TrackOut<'_>> = described
            .iter()
            .enumerate()
            .map(|(i, (t, params, private))| {
                let video = t.kind == TrackKind::Video || params.is_video();
                TrackOut {
                    number: i as u64 + 1,
                    kind: if video { 1 } else { 2 },
                    codec_id: params.kind().matroska_codec_id(),
                    codec_private: private,
                    width: (video && t.width > 0).then_some(t.width.into()),
                    height: (video && t.height > 0).then_some(t.height.into()),
                    sampling_frequency: (!video).then_some(f64::from(t.sample_rate.max(1))),
                    channels: (!video).then_some(t.channels.max(1)),
                }
            })
            .collect();
        if outs.is_empty() {
            return None;
        }
        let mut bytes = Vec::new();
        matroska::write_ebml_header(&mut bytes);
        matroska::write_segment_start(&mut bytes);
        matroska::write_info(&mut bytes, TIMECODE_SCALE_NS, APP);
        matroska::write_tracks(&mut bytes, &outs);
        let tracks =
            described.iter().enumerate().map(|(i, (t, _, _))| (t.track_id, i as u64 + 1, t.timescale)).collect();
        Some(ChunkHeader { bytes, tracks })
    }
}

/// Seconds with three decimals, as the service tags write timestamps.
pub fn seconds_3(us: i64) -> String {
    let ms = us.unsigned_abs() / 1000;
    let sign = if us < 0 && ms > 0 { "-" } else { "" };
    format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
}

/// Appends the chunk of one fragment: `fragment` is its stored fMP4 bytes, `init` its
/// init segment's description, `now_us` the time the chunk is sent (for
/// MILLIS_BEHIND_NOW).
pub fn write_fragment(
    out: &mut Vec<u8>,
    header: &ChunkHeader,
    init: &InitInfo,
    fragment: &[u8],
    meta: &FragmentMeta,
    now_us: i64,
) -> Result<(), BoxError> {
    let tracks = fragment_samples(fragment, init)?;
    // Each track's frames, in its decode order.
    let mut per_track: Vec<Vec<Frame>> = Vec::with_capacity(tracks.len());
    for t in &tracks {
        let Some(&(_, number, _)) = header.tracks.iter().find(|(id, _, _)| *id == t.track_id) else { continue };
        let scale = i64::from(t.timescale.max(1));
        // ticks · 10^6 / scale without overflow (decode times count from 1970).
        let to_us = |ticks: i64| ticks.div_euclid(scale) * 1_000_000 + ticks.rem_euclid(scale) * 1_000_000 / scale;
        let mut frames = Vec::with_capacity(t.samples.len());
        for s in &t.samples {
            let Some(range) = s.range(fragment.len()) else { continue };
            let dts = i64::try_from(s.decode_time).unwrap_or(i64::MAX / 2);
            let dts_us = to_us(dts);
            frames.push(Frame {
                track: number,
                dts_us,
                pts_us: dts_us + to_us(i64::from(s.composition_offset)),
                keyframe: s.is_sync(),
                start: range.start,
                end: range.end,
            });
        }
        per_track.push(frames);
    }
    let frames = merge_by_decode_time(per_track);
    // The cluster's timecode is the fragment's earliest presentation time.
    let base_us = frames.iter().map(|f| f.pts_us).min().unwrap_or(0);
    let cluster_ms = u64::try_from(meta.producer_ts_us.max(0) / 1000).unwrap_or(0);

    let number = meta.fragment_number.to_string();
    out.extend_from_slice(&header.bytes);
    matroska::write_tags(
        out,
        &[
            ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", &number),
            ("AWS_KINESISVIDEO_SERVER_TIMESTAMP", &seconds_3(meta.server_ts_us)),
            ("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", &seconds_3(meta.producer_ts_us)),
        ],
    );
    // Clusters: a new one wherever a block's timecode would leave the i16 range.
    let mut blocks: Vec<BlockOut<'_>> = Vec::with_capacity(frames.len());
    let mut cluster_start_ms = 0i64;
    for f in &frames {
        let rel_ms = (f.pts_us - base_us).div_euclid(1000);
        let mut in_cluster = rel_ms - cluster_start_ms;
        if !(i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&in_cluster) {
            if !blocks.is_empty() {
                matroska::write_cluster(out, cluster_ms.saturating_add_signed(cluster_start_ms), &blocks);
                blocks.clear();
            }
            cluster_start_ms = rel_ms.max(0);
            in_cluster = rel_ms - cluster_start_ms;
        }
        blocks.push(BlockOut {
            track: f.track,
            relative_timecode: in_cluster.clamp(i16::MIN.into(), i16::MAX.into()) as i16,
            keyframe: f.keyframe,
            data: &fragment[f.start..f.end],
        });
    }
    if !blocks.is_empty() || frames.is_empty() {
        matroska::write_cluster(out, cluster_ms.saturating_add_signed(cluster_start_ms), &blocks);
    }
    let behind = ((now_us - meta.server_ts_us) / 1000).max(0).to_string();
    matroska::write_tags(
        out,
        &[("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", &behind), ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", &number)],
    );
    Ok(())
}

/// A frame with its track number, decode and presentation times (µs) and where its
/// bytes lie in the fragment.
struct Frame {
    track: u64,
    dts_us: i64,
    pts_us: i64,
    keyframe: bool,
    start: usize,
    end: usize,
}

/// The tracks' frames (each list in decode order) as one list in decode order; on equal
/// times the earlier track first. A merge: there are at most a few tracks.
fn merge_by_decode_time(tracks: Vec<Vec<Frame>>) -> Vec<Frame> {
    let total = tracks.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<Frame>>> =
        tracks.into_iter().map(|t| t.into_iter().peekable()).collect();
    loop {
        let mut best: Option<(usize, i64)> = None;
        for (i, head) in heads.iter_mut().enumerate() {
            if let Some(f) = head.peek() {
                if best.is_none_or(|(_, d)| f.dts_us < d) {
                    best = Some((i, f.dts_us));
                }
            }
        }
        match best.and_then(|(i, _)| heads[i].next()) {
            Some(f) => out.push(f),
            None => return out,
        }
    }
}

/// A chunk that reports an error for `fragment_number` instead of its media.
pub fn error_chunk(fragment_number: u64, error_id: u32, code: &str) -> Bytes {
    let mut out = Vec::new();
    matroska::write_ebml_header(&mut out);
    matroska::write_segment_start(&mut out);
    matroska::write_tags(
        &mut out,
        &[
            ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", &fragment_number.to_string()),
            ("AWS_KINESISVIDEO_ERROR_ID", &error_id.to_string()),
            ("AWS_KINESISVIDEO_ERROR_CODE", code),
        ],
    );
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::matroska::{MkvEvent, MkvLimits, MkvReader};

    use crate::wire::matroska::MkvFrame;

    fn fixture() -> (InitInfo, Vec<u8>) {
        crate::playback::test_fixtures::av_first_fragment()
    }

    fn meta() -> FragmentMeta {
        FragmentMeta {
            fragment_number: 91_343_852_333_181_432,
            producer_ts_us: 1_700_000_000_200_000,
            server_ts_us: 1_700_000_000_950_000,
            duration_us: 1_000_000,
            segment_id: 0,
            offset: 0,
            len: 0,
            crc: 0,
            init_id: 1,
            chunk_count: 1,
            flags: 1,
        }
    }

    fn frames(events: &[MkvEvent]) -> Vec<&MkvFrame> {
        events.iter().filter_map(|e| if let MkvEvent::Frame(f) = e { Some(f) } else { None }).collect()
    }

    #[test]
    fn a_stored_fragment_becomes_a_chunk_the_parser_library_would_read() {
        let (init, fragment) = fixture();
        let header = ChunkHeader::new(&init).unwrap();
        let mut out = Vec::new();
        write_fragment(&mut out, &header, &init, &fragment, &meta(), 1_700_000_001_000_000).unwrap();
        let events = MkvReader::new(MkvLimits::default()).push(&out).unwrap();
        let MkvEvent::Tracks(tracks) = &events[3] else { panic!("{:?}", events[3]) };
        let codecs: Vec<(&str, u64)> = tracks.iter().map(|t| (t.codec_id.as_str(), t.number)).collect();
        assert_eq!(codecs, [("V_MPEG4/ISO/AVC", 1), ("A_AAC", 2)]);
        assert_eq!((tracks[0].width, tracks[0].height), (Some(320), Some(240)));
        assert_eq!(tracks[1].sampling_frequency, Some(48000.0));
        let MkvEvent::Tags(before) = &events[4] else { panic!("{:?}", events[4]) };
        assert_eq!(before[0], ("AWS_KINESISVIDEO_FRAGMENT_NUMBER".into(), "91343852333181432".into()));
        assert_eq!(before[1].1, "1700000000.950");
        assert_eq!(before[2].1, "1700000000.200");
        assert_eq!(events[5], MkvEvent::Cluster { timecode: 1_700_000_000_200 });
        let read = frames(&events);
        let samples = fragment_samples(&fragment, &init).unwrap();
        assert_eq!(read.len(), samples.iter().map(|t| t.samples.len()).sum::<usize>());
        assert!(read[0].keyframe && read[0].track == 1 && read[0].relative_timecode >= 0);
        assert_eq!(read.iter().filter(|f| f.track == 1 && f.keyframe).count(), 1, "one keyframe a fragment");
        let first_video = samples[0].samples[0];
        assert_eq!(read[0].data, fragment[first_video.range(fragment.len()).unwrap()]);
        let Some(MkvEvent::Tags(after)) = events.last() else { panic!() };
        assert_eq!(after[0], ("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW".into(), "50".into()));
        assert_eq!(after[1], ("AWS_KINESISVIDEO_CONTINUATION_TOKEN".into(), "91343852333181432".into()));
    }

    #[test]
    fn a_fragment_longer_than_a_block_timecode_reaches_continues_in_more_clusters() {
        let (mut init, fragment) = fixture();
        // The same samples on a clock 100 times slower: a 1 s fragment lasts 100 s.
        for t in &mut init.tracks {
            t.timescale /= 100;
        }
        let header = ChunkHeader::new(&init).unwrap();
        let mut out = Vec::new();
        write_fragment(&mut out, &header, &init, &fragment, &meta(), 0).unwrap();
        let events = MkvReader::new(MkvLimits::default()).push(&out).unwrap();
        let clusters: Vec<u64> = events
            .iter()
            .filter_map(|e| if let MkvEvent::Cluster { timecode } = e { Some(*timecode) } else { None })
            .collect();
        assert!(clusters.len() >= 3, "{} clusters", clusters.len());
        assert!(clusters.windows(2).all(|w| w[0] < w[1]), "cluster timecodes rise");
        let samples: usize = fragment_samples(&fragment, &init).unwrap().iter().map(|t| t.samples.len()).sum();
        assert_eq!(frames(&events).len(), samples, "no frame lost at a cluster boundary");
    }

    #[test]
    fn timestamps_print_as_seconds_with_three_decimals() {
        assert_eq!(seconds_3(1_511_852_109_126_400), "1511852109.126");
        assert_eq!(seconds_3(5_000_000), "5.000");
        assert_eq!(seconds_3(7_000), "0.007");
        assert_eq!(seconds_3(-1_500), "-0.001");
    }

    #[test]
    fn an_error_chunk_reads_as_tags_without_a_cluster() {
        let bytes = error_chunk(42, 4000, "requested fragment not found");
        let events = MkvReader::new(MkvLimits::default()).push(&bytes).unwrap();
        assert!(!events.iter().any(|e| matches!(e, MkvEvent::Cluster { .. })));
        let Some(MkvEvent::Tags(tags)) = events.last() else { panic!("{events:?}") };
        let names: Vec<&str> = tags.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["AWS_KINESISVIDEO_FRAGMENT_NUMBER", "AWS_KINESISVIDEO_ERROR_ID", "AWS_KINESISVIDEO_ERROR_CODE"]
        );
        assert_eq!(tags[1].1, "4000");
    }
}
