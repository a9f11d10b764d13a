//! The per-track and progressive MP4 writers on arbitrary stored-fragment bytes: no
//! panic, and whatever sample table parses is written into a track fragment that
//! parses back to the same samples. Also the session-token reader on the same bytes, the
//! image planner (which access units to decode for which times) on the same fragment,
//! and the frame-metadata record matcher.
#![no_main]

use kinescope::images::plan::plan_fragment;
use kinescope::images::{ImageFormat, OutputSpec};
use kinescope::playback::session::{Protocol, SessionSigner};
use kinescope::wire::bmff::{kinds, BoxIter};
use kinescope::wire::fmp4::parse_init;
use kinescope::wire::mp4_tracks::{fragment_samples, track_init, write_track_fragment, ProgressiveWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = SessionSigner::new([7; 32]).verify(token, Protocol::Hls, 0);
    }
    let _ = kinescope::playback::frame_metadata::matching(data, "cam", 0, i64::MAX);
    // A file: the init segment (ftyp + moov) and then the fragment (moof + mdat...).
    let mut split = data.len();
    let mut pos = 0;
    for item in BoxIter::new(data) {
        let Ok((kind, body)) = item else { break };
        if kind == kinds::MOOF {
            split = pos;
            break;
        }
        pos += body.len() + 8;
    }
    let (init, fragment) = data.split_at(split.min(data.len()));
    let spec = OutputSpec { format: ImageFormat::Jpeg, jpeg_quality: 80, width: None, height: None };
    if let Ok(plan) = plan_fragment(init, fragment, 0, &[0, 40_000, 500_000, -1, i64::MAX], spec) {
        assert_eq!(plan.answer.len(), 5);
        assert!(plan.answer.iter().all(|&slot| slot < plan.job.wanted.len()));
    }
    let Ok(info) = parse_init(init) else { return };
    let Ok(tracks) = fragment_samples(fragment, &info) else { return };
    for t in &tracks {
        let mut out = Vec::new();
        if write_track_fragment(&mut out, 1, t.track_id, 1000, &t.samples, fragment).is_err() {
            continue;
        }
        if let Ok(one) = track_init(init, t.track_id) {
            if let Ok(one_info) = parse_init(&one) {
                let again = fragment_samples(&out, &one_info).expect("a written track fragment parses");
                let sizes: Vec<u32> = again.iter().flat_map(|a| a.samples.iter().map(|s| s.size)).collect();
                let want: Vec<u32> = t.samples.iter().map(|s| s.size).collect();
                assert_eq!(sizes, want);
            }
        }
    }
    let mut clip = ProgressiveWriter::new(init, info);
    if clip.push(fragment).is_ok() {
        let _ = clip.finish();
    }
});
