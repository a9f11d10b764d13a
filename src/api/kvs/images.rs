//! GetImages (`kinesis-video-archived-media`): the pictures of a stored stream at a
//! sampling interval, as base64 JPEG or PNG, decoded by [`crate::images`].
//!
//! Times are `StartTimestamp + k × SamplingInterval` for every `k` that stays before
//! `EndTimestamp`; a range shorter than the interval gives the image at
//! `StartTimestamp`. `MaxResults` caps the images of the whole request (default: all
//! of the range); a page holds at most 25, as AWS's do, and `NextToken` carries on.
//! Each image's `TimeStamp` is the sampled time; a time no fragment holds gets
//! `Error: NO_MEDIA`, one whose media cannot be decoded `Error: MEDIA_ERROR`.

use std::collections::BTreeMap;

use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{KvsState, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::RestJson;
use crate::api::registry::Scoped;
use crate::api::shapes::{epoch_seconds, Timestamp};
use crate::images::{ImageFormat, ImageOutcome, OutputSpec};
use crate::video_store::TimeKind;

pub fn routes() -> Router<KvsState> {
    Router::new().route("/getImages", post(get_images))
}

/// The widest range one request may sample (AWS's limit).
const MAX_RANGE_US: i64 = 300_000_000;
/// The shortest sampling interval (AWS's documented minimum: 5 images a second).
pub const MIN_SAMPLING_INTERVAL_MS: i64 = 200;
/// When the request names none.
const DEFAULT_SAMPLING_INTERVAL_MS: i64 = 3_000;
/// Images in one response page (AWS's page size).
const PAGE_IMAGES: usize = 25;
/// The largest `ImageContent` (base64 characters) AWS's model allows.
const MAX_IMAGE_CONTENT: usize = 6_291_456;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetImagesInput {
    #[serde(flatten)]
    stream: StreamRef,
    image_selector_type: Option<String>,
    start_timestamp: Option<Timestamp>,
    end_timestamp: Option<Timestamp>,
    sampling_interval: Option<i64>,
    format: Option<String>,
    format_config: Option<BTreeMap<String, String>>,
    width_pixels: Option<i64>,
    height_pixels: Option<i64>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    time_stamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_content: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetImagesOutput {
    images: Vec<Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// What a GetImages NextToken carries: the request it belongs to and the next image.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct ImagesCursor {
    s: i64,
    e: i64,
    i: i64,
    k: String,
    /// Index of the next image.
    n: usize,
}

/// The image settings GetImages and image generation share: `Format`, `FormatConfig`,
/// `WidthPixels`, `HeightPixels`, checked as AWS checks them.
pub fn output_spec(
    format: Option<&str>,
    format_config: Option<&BTreeMap<String, String>>,
    width: Option<i64>,
    height: Option<i64>,
) -> Result<OutputSpec, ApiError> {
    let format = match format {
        Some("JPEG") => ImageFormat::Jpeg,
        Some("PNG") => ImageFormat::Png,
        Some(other) => return Err(ApiError::invalid_argument(format!("Format '{other}' must be JPEG or PNG"))),
        None => return Err(ApiError::invalid_argument("Format is required")),
    };
    let mut jpeg_quality = 80;
    if let Some(config) = format_config {
        if config.len() != 1 {
            return Err(ApiError::invalid_argument("FormatConfig must hold exactly one entry, JPEGQuality"));
        }
        for (key, value) in config {
            if key != "JPEGQuality" {
                return Err(ApiError::invalid_argument(format!("FormatConfig key '{key}' must be JPEGQuality")));
            }
            jpeg_quality = value
                .parse::<u8>()
                .ok()
                .filter(|q| (1..=100).contains(q))
                .ok_or_else(|| ApiError::invalid_argument(format!("JPEGQuality '{value}' must be 1 to 100")))?;
        }
    }
    let side = |v: Option<i64>, name: &str, max: i64| -> Result<Option<u32>, ApiError> {
        match v {
            None => Ok(None),
            Some(n) if (1..=max).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(ApiError::invalid_argument(format!("{name} {n} must be 1 to {max}"))),
        }
    };
    Ok(OutputSpec {
        format,
        jpeg_quality,
        width: side(width, "WidthPixels", 3840)?,
        height: side(height, "HeightPixels", 2160)?,
    })
}

/// `PRODUCER_TIMESTAMP` or `SERVER_TIMESTAMP`.
pub fn selector_clock(selector: Option<&str>) -> Result<TimeKind, ApiError> {
    match selector {
        Some("PRODUCER_TIMESTAMP") => Ok(TimeKind::Producer),
        Some("SERVER_TIMESTAMP") => Ok(TimeKind::Server),
        Some(other) => Err(ApiError::invalid_argument(format!(
            "ImageSelectorType '{other}' must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP"
        ))),
        None => Err(ApiError::invalid_argument("ImageSelectorType is required")),
    }
}

/// The sampled times: every `interval` from `start` while before `end`, or `start`
/// alone when the range is shorter than one interval.
pub fn sample_times(start_us: i64, end_us: i64, interval_ms: i64) -> impl Iterator<Item = i64> {
    let step = interval_ms.max(1).saturating_mul(1000);
    let count = if end_us - start_us < step { 1 } else { (end_us - start_us + step - 1) / step };
    (0..count).map(move |k| start_us.saturating_add(k.saturating_mul(step)))
}

async fn get_images(
    Scoped(s): Scoped<KvsState>,
    RestJson(input): RestJson<GetImagesInput>,
) -> Result<RestJson<GetImagesOutput>, ApiError> {
    let kind = selector_clock(input.image_selector_type.as_deref())?;
    let (Some(start), Some(end)) = (input.start_timestamp, input.end_timestamp) else {
        return Err(ApiError::invalid_argument("StartTimestamp and EndTimestamp are required"));
    };
    let (start, end) = (start.0, end.0);
    if end < start {
        return Err(ApiError::invalid_argument("EndTimestamp must not be before StartTimestamp"));
    }
    if end - start > MAX_RANGE_US {
        return Err(ApiError::invalid_argument(
            "the range from StartTimestamp to EndTimestamp must be 300 seconds or less",
        ));
    }
    let interval = input.sampling_interval.unwrap_or(DEFAULT_SAMPLING_INTERVAL_MS);
    if interval < MIN_SAMPLING_INTERVAL_MS {
        return Err(ApiError::invalid_argument(format!(
            "SamplingInterval {interval} must be at least {MIN_SAMPLING_INTERVAL_MS} milliseconds"
        )));
    }
    let output =
        output_spec(input.format.as_deref(), input.format_config.as_ref(), input.width_pixels, input.height_pixels)?;
    let cap = match input.max_results {
        None => usize::MAX,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(n) => return Err(ApiError::invalid_argument(format!("MaxResults {n} must be 1 to 100"))),
    };
    let record = input.stream.resolve(&s)?;
    super::playback::no_retention(&record)?;

    let selector = input.image_selector_type.clone().unwrap_or_default();
    let now = s.store.clock().now_ms();
    let first = match &input.next_token {
        None => 0,
        Some(token) => {
            let c: ImagesCursor = s
                .pages
                .open("GetImages", token, now, None)
                .map_err(|_| ApiError::invalid_argument("NextToken is not valid"))?;
            if (c.s, c.e, c.i, c.k.as_str()) != (start, end, interval, selector.as_str()) {
                return Err(ApiError::invalid_argument("NextToken belongs to a request for other images"));
            }
            c.n
        }
    };
    let all: Vec<i64> = sample_times(start, end, interval).take(cap).collect();
    let page: Vec<i64> = all.iter().copied().skip(first).take(PAGE_IMAGES).collect();
    let outcomes = s.images.images_at(record.id, kind, &page, output).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let images = page
        .iter()
        .zip(outcomes)
        .map(|(t, outcome)| {
            let (error, image_content) = match outcome {
                ImageOutcome::Image { bytes, .. } if bytes.len().div_ceil(3) * 4 <= MAX_IMAGE_CONTENT => {
                    (None, Some(b64.encode(bytes)))
                }
                ImageOutcome::Image { .. } | ImageOutcome::MediaError(_) => (Some("MEDIA_ERROR"), None),
                ImageOutcome::NoMedia => (Some("NO_MEDIA"), None),
            };
            Image { time_stamp: epoch_seconds(*t), error, image_content }
        })
        .collect();
    let next = first + page.len();
    let next_token = (next < all.len()).then(|| {
        s.pages.issue("GetImages", &ImagesCursor { s: start, e: end, i: interval, k: selector, n: next }, now)
    });
    Ok(RestJson(GetImagesOutput { images, next_token }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_half_open_and_a_short_range_gives_its_start() {
        assert_eq!(sample_times(0, 1_000_000, 200).collect::<Vec<_>>(), vec![0, 200_000, 400_000, 600_000, 800_000]);
        assert_eq!(sample_times(0, 1_000_001, 500).count(), 3);
        assert_eq!(sample_times(7, 7, 200).collect::<Vec<_>>(), vec![7]);
        assert_eq!(sample_times(0, 100_000, 200).collect::<Vec<_>>(), vec![0]);
        assert_eq!(sample_times(0, 300_000_000, 200).count(), 1500);
    }

    #[test]
    fn output_settings_are_checked_as_aws_checks_them() {
        let q = |v: &str| BTreeMap::from([("JPEGQuality".to_string(), v.to_string())]);
        let ok = output_spec(Some("JPEG"), Some(&q("55")), Some(640), None).unwrap();
        assert_eq!((ok.jpeg_quality, ok.width, ok.height), (55, Some(640), None));
        assert_eq!(output_spec(Some("PNG"), None, None, None).unwrap().format, ImageFormat::Png);
        for bad in [
            output_spec(Some("GIF"), None, None, None),
            output_spec(None, None, None, None),
            output_spec(Some("JPEG"), Some(&q("0")), None, None),
            output_spec(Some("JPEG"), Some(&q("x")), None, None),
            output_spec(Some("JPEG"), Some(&BTreeMap::from([("Quality".into(), "5".into())])), None, None),
            output_spec(Some("JPEG"), None, Some(3841), None),
            output_spec(Some("JPEG"), None, None, Some(0)),
        ] {
            assert_eq!(bad.unwrap_err().code, "InvalidArgumentException");
        }
    }
}
