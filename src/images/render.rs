//! Decoding one GOP's pictures and encoding the wanted ones as JPEG or PNG, with
//! FFmpeg's libavcodec and libswscale through `ffmpeg-next`. Synchronous and CPU-bound:
//! it runs on the image threads ([`super::pool`]), never on the async runtime.
//!
//! A job holds the GOP's access units in decode order (Annex B, the keyframe led by its
//! parameter sets) and the presentation times wanted. Only the prefix up to the last
//! wanted picture in decode order is fed, then the decoder is drained: a picture's
//! references precede it in decode order, so that prefix is enough, and a wanted
//! keyframe costs the decode of one access unit.

use ffmpeg_next as ff;

use ff::codec::{self, Id};
use ff::format::Pixel;
use ff::software::scaling::{Context as Scaler, Flags as ScaleFlags};
use ff::util::frame::Video as Picture;

use crate::codec::CodecKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
}

/// What the images should look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSpec {
    pub format: ImageFormat,
    /// 1–100, JPEG only.
    pub jpeg_quality: u8,
    /// Both given: that size. One given: the other follows the picture's aspect ratio.
    /// Neither: the picture's own size.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// One access unit in decode order.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    pub annex_b: Vec<u8>,
    /// Presentation and decode time, in the track's timescale.
    pub pts: i64,
    pub dts: i64,
}

/// The pictures wanted from one GOP.
#[derive(Debug, Clone)]
pub struct RenderJob {
    /// A video codec (the decoder is FFmpeg's for it, [`CodecKind::decoder_name`]).
    pub codec: CodecKind,
    /// From the keyframe, in decode order; only the prefix needed is kept.
    pub units: Vec<AccessUnit>,
    /// Presentation times of the pictures wanted (each one of `units`' `pts`).
    pub wanted: Vec<i64>,
    pub output: OutputSpec,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("the media could not be decoded or encoded: {0}")]
    Codec(String),
    #[error("the decoder gave no picture at this time")]
    NoPicture,
}

impl From<ff::Error> for RenderError {
    fn from(e: ff::Error) -> Self {
        RenderError::Codec(e.to_string())
    }
}

/// One result per `job.wanted`, in that order.
pub fn render(job: &RenderJob) -> Vec<Result<Vec<u8>, RenderError>> {
    crate::media::init_ffmpeg();
    let mut results: Vec<Option<Result<Vec<u8>, RenderError>>> = vec![None; job.wanted.len()];
    if let Err(e) = decode_wanted(job, &mut results) {
        for r in results.iter_mut().filter(|r| r.is_none()) {
            *r = Some(Err(e.clone()));
        }
    }
    results.into_iter().map(|r| r.unwrap_or(Err(RenderError::NoPicture))).collect()
}

/// How many leading access units must be decoded for every wanted picture.
pub fn needed_prefix(units: &[AccessUnit], wanted: &[i64]) -> usize {
    units.iter().rposition(|u| wanted.contains(&u.pts)).map_or(0, |i| i + 1)
}

fn decode_wanted(job: &RenderJob, results: &mut [Option<Result<Vec<u8>, RenderError>>]) -> Result<(), RenderError> {
    let decoder_codec = codec::decoder::find_by_name(job.codec.decoder_name()).ok_or(ff::Error::DecoderNotFound)?;
    let mut context = codec::Context::new_with_codec(decoder_codec);
    // Parallelism comes from the pool's threads, one job each.
    context.set_threading(codec::threading::Config::count(1));
    let mut decoder = context.decoder().video()?;
    let mut picture = Picture::empty();
    let mut encoding: Option<Encoding> = None;
    let prefix = needed_prefix(&job.units, &job.wanted);
    for unit in &job.units[..prefix] {
        // An empty packet would tell the decoder the stream ended.
        if unit.annex_b.is_empty() {
            continue;
        }
        let mut packet = ff::Packet::copy(&unit.annex_b);
        packet.set_pts(Some(unit.pts));
        packet.set_dts(Some(unit.dts));
        // A unit the decoder refuses spoils what depends on it, which then comes out
        // as no picture; the others are still rendered.
        if let Err(e) = decoder.send_packet(&packet) {
            tracing::debug!(error = %e, pts = unit.pts, "access unit refused by the decoder");
        }
        drain(&mut decoder, &mut picture, job, results, &mut encoding);
    }
    decoder.send_eof()?;
    drain(&mut decoder, &mut picture, job, results, &mut encoding);
    Ok(())
}

struct Encoding {
    scaler: Scaler,
    scaled: Picture,
    encoder: ff::encoder::Video,
    /// Pictures encoded so far: each gets the next timestamp.
    count: i64,
}

fn drain(
    decoder: &mut ff::decoder::Video,
    picture: &mut Picture,
    job: &RenderJob,
    results: &mut [Option<Result<Vec<u8>, RenderError>>],
    encoding: &mut Option<Encoding>,
) {
    while decoder.receive_frame(picture).is_ok() {
        let Some(pts) = picture.pts().or_else(|| picture.timestamp()) else { continue };
        for (i, w) in job.wanted.iter().enumerate() {
            if *w == pts && results[i].is_none() {
                results[i] = Some(encode(picture, job.output, encoding));
            }
        }
    }
}

fn encode(picture: &Picture, output: OutputSpec, encoding: &mut Option<Encoding>) -> Result<Vec<u8>, RenderError> {
    let e = match encoding {
        Some(e) => e,
        None => encoding.insert(open_encoder(picture, output)?),
    };
    e.scaler.run(picture, &mut e.scaled)?;
    e.scaled.set_pts(Some(e.count));
    e.count += 1;
    e.encoder.send_frame(&e.scaled)?;
    let mut packet = ff::Packet::empty();
    e.encoder.receive_packet(&mut packet)?;
    packet.data().map(<[u8]>::to_vec).ok_or(RenderError::NoPicture)
}

fn open_encoder(picture: &Picture, output: OutputSpec) -> Result<Encoding, RenderError> {
    let (w, h) = target_size(picture.width(), picture.height(), output.width, output.height);
    let (id, pixel) = match output.format {
        // Full-range 4:2:0, what JPEG files carry.
        ImageFormat::Jpeg => (Id::MJPEG, Pixel::YUVJ420P),
        ImageFormat::Png => (Id::PNG, Pixel::RGB24),
    };
    let scaler = Scaler::get(picture.format(), picture.width(), picture.height(), pixel, w, h, ScaleFlags::BILINEAR)?;
    let codec = codec::encoder::find(id).ok_or(ff::Error::EncoderNotFound)?;
    let mut encoder = codec::Context::new_with_codec(codec).encoder().video()?;
    encoder.set_width(w);
    encoder.set_height(h);
    encoder.set_format(pixel);
    encoder.set_time_base((1, 25));
    if output.format == ImageFormat::Jpeg {
        // A fixed quantiser: qmin = qmax pins the encoder's rate control to it.
        let q = jpeg_qscale(output.jpeg_quality);
        encoder.set_qmin(q);
        encoder.set_qmax(q);
    }
    let encoder = encoder.open_as(codec)?;
    Ok(Encoding { scaler, scaled: Picture::empty(), encoder, count: 0 })
}

/// JPEGQuality 1–100 (100 best) as the MJPEG encoder's quantiser scale 31–2 (2 best),
/// linearly: 80, AWS's default, is 7.
pub fn jpeg_qscale(quality: u8) -> i32 {
    2 + (100 - i32::from(quality.clamp(1, 100))) * 29 / 99
}

/// The widest and tallest image made (GetImages' WidthPixels and HeightPixels limits).
pub const MAX_WIDTH: u32 = 3840;
pub const MAX_HEIGHT: u32 = 2160;

/// The output size for a `w`×`h` picture: both asked, as asked; one asked, the other
/// from the aspect ratio (at least 1); none, the picture's size. A side that comes out
/// over [`MAX_WIDTH`]×[`MAX_HEIGHT`] (from the aspect ratio of a tall or wide picture,
/// or the picture's own size) shrinks both, keeping the ratio: no image is ever larger.
pub fn target_size(w: u32, h: u32, want_w: Option<u32>, want_h: Option<u32>) -> (u32, u32) {
    let scale = |a: u32, num: u32, den: u32| -> u32 {
        let v = (u64::from(a) * u64::from(num) + u64::from(den) / 2) / u64::from(den.max(1));
        v.clamp(1, u64::from(u32::MAX)) as u32
    };
    let (tw, th) = match (want_w, want_h) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => (a, scale(a, h, w)),
        (None, Some(b)) => (scale(b, w, h), b),
        (None, None) => (w, h),
    };
    let (tw, th) = (tw.max(1), th.max(1));
    if tw <= MAX_WIDTH && th <= MAX_HEIGHT {
        return (tw, th);
    }
    // Fit inside the limits by the tighter side.
    if u64::from(tw) * u64::from(MAX_HEIGHT) >= u64::from(th) * u64::from(MAX_WIDTH) {
        (MAX_WIDTH, scale(MAX_WIDTH, th, tw).min(MAX_HEIGHT))
    } else {
        (scale(MAX_HEIGHT, tw, th).min(MAX_WIDTH), MAX_HEIGHT)
    }
}

impl RenderJob {
    /// Bytes the job's pictures may take at most: one scaled picture (4 bytes a pixel)
    /// and each encoded image (PNG up to 3 bytes a pixel, JPEG 1), at the size asked, or
    /// at the largest size when a side follows the picture.
    pub fn output_bytes(&self) -> u64 {
        let (w, h) = match (self.output.width, self.output.height) {
            (Some(w), Some(h)) => target_size(1, 1, Some(w), Some(h)),
            _ => (MAX_WIDTH, MAX_HEIGHT),
        };
        let pixels = u64::from(w) * u64::from(h);
        let per_image = match self.output.format {
            ImageFormat::Png => 3,
            ImageFormat::Jpeg => 1,
        };
        pixels * 4 + pixels * per_image * self.wanted.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_keep_the_aspect_ratio_when_one_side_is_asked() {
        assert_eq!(target_size(1280, 720, Some(640), None), (640, 360));
        assert_eq!(target_size(1280, 720, None, Some(90)), (160, 90));
        assert_eq!(target_size(1280, 720, Some(100), Some(100)), (100, 100));
        assert_eq!(target_size(320, 240, None, None), (320, 240));
        assert_eq!(target_size(4000, 2, Some(1), None), (1, 1));
        // A tall picture asked 3840 wide would be 67,200 high: both shrink to fit.
        assert_eq!(target_size(64, 1120, Some(3840), None), (123, 2160));
        assert_eq!(target_size(20_000, 100, None, Some(2160)), (3840, 19));
        assert_eq!(target_size(7680, 4320, None, None), (3840, 2160));
        for (w, h, ww, wh) in [(1, 60_000, Some(3840), None), (60_000, 1, None, Some(2160)), (9, 9, None, None)] {
            let (a, b) = target_size(w, h, ww, wh);
            assert!(a >= 1 && b >= 1 && a <= MAX_WIDTH && b <= MAX_HEIGHT, "{a}x{b}");
        }
    }

    #[test]
    fn jpeg_quality_maps_onto_the_quantiser_scale() {
        assert_eq!(jpeg_qscale(100), 2);
        assert_eq!(jpeg_qscale(1), 31);
        assert_eq!(jpeg_qscale(80), 7);
        assert_eq!(jpeg_qscale(0), 31);
    }

    /// The width and height in a JPEG's first SOF0 segment.
    fn jpeg_size(b: &[u8]) -> Option<(u32, u32)> {
        let at = b.windows(2).position(|w| w == [0xFF, 0xC0])?;
        let h = u32::from(u16::from_be_bytes([b[at + 5], b[at + 6]]));
        let w = u32::from(u16::from_be_bytes([b[at + 7], b[at + 8]]));
        Some((w, h))
    }

    #[test]
    fn a_gop_of_h264_and_of_h265_renders_to_jpeg_and_png() {
        use crate::images::plan::{plan_fragment, tests::fragments_of};
        for fixture in ["av.mp4", "hevc.mp4"] {
            let (init, fragments) = fragments_of(fixture);
            let jpeg = OutputSpec { format: ImageFormat::Jpeg, jpeg_quality: 80, width: Some(160), height: None };
            // The keyframe and a picture 0.52 s in (past B-frames, in presentation order).
            let plan = plan_fragment(&init, &fragments[1], 0, &[0, 520_000], jpeg).unwrap();
            let out = render(&plan.job);
            assert_eq!(out.len(), 2, "{fixture}");
            for image in &out {
                let image = image.as_ref().unwrap();
                assert!(image.starts_with(&[0xFF, 0xD8]) && image.ends_with(&[0xFF, 0xD9]), "{fixture}");
                assert_eq!(jpeg_size(image), Some((160, 120)), "{fixture}");
            }
            assert_ne!(out[0], out[1], "two different pictures");
            let png = OutputSpec { format: ImageFormat::Png, ..jpeg };
            let plan = plan_fragment(&init, &fragments[0], 0, &[0], png).unwrap();
            let image = render(&plan.job).remove(0).unwrap();
            assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"));
            // IHDR: width and height follow the 8-byte signature and the chunk header.
            assert_eq!(&image[16..24], &[0, 0, 0, 160, 0, 0, 0, 120]);
        }
    }

    #[test]
    fn undecodable_units_give_errors_not_pictures() {
        let job = RenderJob {
            codec: CodecKind::H264,
            units: vec![AccessUnit { annex_b: vec![0, 0, 0, 1, 0x65, 0xFF, 0x00, 0x13], pts: 0, dts: 0 }],
            wanted: vec![0, 7],
            output: OutputSpec { format: ImageFormat::Jpeg, jpeg_quality: 80, width: None, height: None },
        };
        let out = render(&job);
        assert!(out.iter().all(Result::is_err), "{out:?}");
    }

    #[test]
    fn only_the_prefix_up_to_the_last_wanted_picture_is_decoded() {
        let unit = |pts| AccessUnit { annex_b: Vec::new(), pts, dts: 0 };
        let units = [unit(0), unit(3), unit(1), unit(2)];
        assert_eq!(needed_prefix(&units, &[0]), 1);
        assert_eq!(needed_prefix(&units, &[1, 0]), 3);
        assert_eq!(needed_prefix(&units, &[9]), 0);
    }
}
