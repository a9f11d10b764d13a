//! Which pictures of a stored fragment show at given times, and the render job that
//! produces them. Pure: bytes in, a job out.
//!
//! A fragment is one GOP. The picture shown at time `t` is the last one, in
//! presentation order, that starts at or before `t` (the first, if `t` falls before it).
//! A picture's time is the fragment's timestamp plus its presentation offset from the
//! fragment's earliest picture.

use crate::codec::CodecParams;
use crate::wire::fmp4::{parse_init, TrackKind};
use crate::wire::mp4_tracks::fragment_samples;

use super::render::{AccessUnit, OutputSpec, RenderJob};

/// Why a fragment gives no pictures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the stream has no video track")]
    NoVideo,
    #[error("{0} video cannot be decoded to images")]
    UnsupportedCodec(&'static str),
    #[error("the fragment cannot be read: {0}")]
    Malformed(String),
}

/// A render job and, for each asked time, which of its wanted pictures answers it.
#[derive(Debug, Clone)]
pub struct FragmentPlan {
    pub job: RenderJob,
    pub answer: Vec<usize>,
    /// The time (µs) of each wanted picture, in `job.wanted` order.
    pub picture_times_us: Vec<i64>,
}

/// Plans the pictures of `fragment` (with its `init`) shown at each of `times_us`,
/// the fragment starting at `fragment_start_us` on the same clock.
pub fn plan_fragment(
    init: &[u8],
    fragment: &[u8],
    fragment_start_us: i64,
    times_us: &[i64],
    output: OutputSpec,
) -> Result<FragmentPlan, PlanError> {
    let info = parse_init(init).map_err(|e| PlanError::Malformed(e.to_string()))?;
    let track = info.tracks.iter().find(|t| t.kind == TrackKind::Video).ok_or(PlanError::NoVideo)?;
    let params = CodecParams::from_track(track).ok_or(PlanError::UnsupportedCodec("this"))?;
    let codec = params.kind();
    if !codec.is_video() {
        return Err(PlanError::UnsupportedCodec(codec.name()));
    }
    let tracks = fragment_samples(fragment, &info).map_err(|e| PlanError::Malformed(e.to_string()))?;
    let samples = tracks
        .into_iter()
        .find(|t| t.track_id == track.track_id)
        .map(|t| t.samples)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PlanError::Malformed("no video samples".into()))?;
    let timescale = i64::from(track.timescale.max(1));
    let pts: Vec<i64> =
        samples.iter().map(|s| (s.decode_time as i64).saturating_add(i64::from(s.composition_offset))).collect();
    let base = pts.iter().copied().min().unwrap_or(0);
    let time_of =
        |p: i64| fragment_start_us.saturating_add(p.saturating_sub(base).saturating_mul(1_000_000) / timescale);

    // Presentation order: (time, index in decode order).
    let mut shown: Vec<(i64, usize)> = pts.iter().enumerate().map(|(i, p)| (time_of(*p), i)).collect();
    shown.sort_unstable();
    let mut wanted: Vec<i64> = Vec::new();
    let mut picture_times_us = Vec::new();
    let mut answer = Vec::with_capacity(times_us.len());
    for &t in times_us {
        let at = shown.partition_point(|(time, _)| *time <= t).saturating_sub(1);
        let (time, index) = shown[at];
        let p = pts[index];
        let slot = match wanted.iter().position(|w| *w == p) {
            Some(i) => i,
            None => {
                wanted.push(p);
                picture_times_us.push(time);
                wanted.len() - 1
            }
        };
        answer.push(slot);
    }

    let sets = params.parameter_sets();
    let last = pts.iter().rposition(|p| wanted.contains(p)).unwrap_or(0);
    let mut units = Vec::with_capacity(last + 1);
    for (i, s) in samples.iter().take(last + 1).enumerate() {
        let range =
            s.range(fragment.len()).ok_or_else(|| PlanError::Malformed("sample outside the fragment".into()))?;
        let leading: &[Vec<u8>] = if i == 0 || s.is_sync() { &sets } else { &[] };
        units.push(AccessUnit {
            annex_b: codec.elementary_sample(leading, &fragment[range]),
            pts: pts[i],
            dts: s.decode_time as i64,
        });
    }
    Ok(FragmentPlan { job: RenderJob { codec, units, wanted, output }, answer, picture_times_us })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::images::render::ImageFormat;

    /// A fixture's init segment (`ftyp`+`moov`) and its `moof`+`mdat` pairs (one GOP
    /// each: the fixtures are cut at every keyframe).
    pub(crate) fn fragments_of(name: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
        let file = std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture");
        let (mut init, mut fragments, mut at) = (Vec::new(), Vec::<Vec<u8>>::new(), 0);
        while at + 8 <= file.len() {
            let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
            let piece = &file[at..at + size];
            match &file[at + 4..at + 8] {
                b"ftyp" | b"moov" => init.extend_from_slice(piece),
                b"moof" => fragments.push(piece.to_vec()),
                b"mdat" => fragments.last_mut().unwrap().extend_from_slice(piece),
                _ => {}
            }
            at += size;
        }
        (init, fragments)
    }

    const OUT: OutputSpec = OutputSpec { format: ImageFormat::Jpeg, jpeg_quality: 80, width: None, height: None };

    #[test]
    fn a_keyframe_time_needs_one_access_unit_and_later_times_the_prefix() {
        let (init, fragments) = fragments_of("av.mp4");
        let frag = &fragments[1];
        // 25 fps: 40 ms per picture; the fragment starts at 1 s on this made-up clock.
        let start = 1_000_000;
        let plan = plan_fragment(&init, frag, start, &[start], OUT).unwrap();
        assert_eq!(plan.job.units.len(), 1);
        assert_eq!(plan.picture_times_us, vec![start]);
        assert!(plan.job.units[0].annex_b.starts_with(&[0, 0, 0, 1, 0x67]), "the keyframe leads with its SPS");

        let plan =
            plan_fragment(&init, frag, start, &[start + 119_000, start + 121_000, start + 120_500], OUT).unwrap();
        assert_eq!(plan.picture_times_us, vec![start + 80_000, start + 120_000]);
        assert_eq!(plan.answer, vec![0, 1, 1]);
        assert!(plan.job.units.len() >= 4 && plan.job.units.len() < 25);
        assert!(!plan.job.units[1].annex_b.starts_with(&[0, 0, 0, 1, 0x67]));
    }

    #[test]
    fn times_before_the_first_picture_get_the_first() {
        let (init, fragments) = fragments_of("video_only.mp4");
        let plan = plan_fragment(&init, &fragments[0], 5_000_000, &[4_000_000], OUT).unwrap();
        assert_eq!(plan.picture_times_us, vec![5_000_000]);
    }

    #[test]
    fn fragments_without_decodable_video_say_why() {
        let (init, fragments) = fragments_of("av.mp4");
        assert!(matches!(plan_fragment(&init, &fragments[0][..40], 0, &[0], OUT), Err(PlanError::Malformed(_))));
        assert!(matches!(plan_fragment(b"junk", &fragments[0], 0, &[0], OUT), Err(PlanError::Malformed(_))));
    }
}
