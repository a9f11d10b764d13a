//! The events a video stream publishes (pure: values in, JSON and keys out).
//!
//! A fragment event, one per persisted fragment:
//!
//! ```json
//! {"type":"FRAGMENT","version":1,"streamName":"cam1","streamArn":"arn:aws:kinesisvideo:…",
//!  "fragmentNumber":"91343852333181432392682062607743920146264233010",
//!  "producerStartTimestampMs":1700000000000,"producerEndTimestampMs":1700000001000,
//!  "serverStartTimestampMs":1700000000012,"serverEndTimestampMs":1700000001012,
//!  "durationMs":1000,"codec":"avc1.4d401e","width":320,"height":240,"bytes":20480,
//!  "keyframes":1}
//! ```
//!
//! An image event, one per generated image, after the image is in its bucket:
//!
//! ```json
//! {"type":"IMAGE","version":1,"streamName":"cam1","streamArn":"…","fragmentNumber":"…",
//!  "imageTimestampMs":1700000000200,"imageSelectorType":"PRODUCER_TIMESTAMP",
//!  "format":"JPEG","bucket":"frames","key":"cam1/2023/11/14/22/cam1_1700000000200.jpg",
//!  "uri":"s3://frames/cam1/2023/11/14/22/cam1_1700000000200.jpg","bytes":9120}
//! ```

use serde::Serialize;

/// What every event starts with: its type and version, the stream, the fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventHeader {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: u32,
    pub stream_name: String,
    pub stream_arn: String,
    /// A string, as Kinesis Video's APIs give fragment numbers.
    pub fragment_number: String,
}

impl EventHeader {
    /// The header of a `kind` event about fragment `fragment_number` of `stream`.
    pub fn new(kind: &'static str, stream_name: &str, stream_arn: &str, fragment_number: u64) -> Self {
        EventHeader {
            kind,
            version: VERSION,
            stream_name: stream_name.to_string(),
            stream_arn: stream_arn.to_string(),
            fragment_number: fragment_number.to_string(),
        }
    }
}

/// What describes a stored fragment in its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FragmentEvent {
    #[serde(flatten)]
    pub header: EventHeader,
    pub producer_start_timestamp_ms: i64,
    pub producer_end_timestamp_ms: i64,
    pub server_start_timestamp_ms: i64,
    pub server_end_timestamp_ms: i64,
    pub duration_ms: i64,
    /// The video track's codec string (`avc1.…`, `hvc1.…`), else the first track's.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// Sync samples of the video track in the fragment.
    pub keyframes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageEvent {
    #[serde(flatten)]
    pub header: EventHeader,
    /// The sampled time on the configured clock.
    pub image_timestamp_ms: i64,
    pub image_selector_type: String,
    pub format: String,
    pub bucket: String,
    pub key: String,
    pub uri: String,
    pub bytes: u64,
}

pub const FRAGMENT: &str = "FRAGMENT";
pub const IMAGE: &str = "IMAGE";
pub const VERSION: u32 = 1;

/// Where a generated image is stored: `PREFIX/STREAM/YYYY/MM/DD/HH/STREAM_MILLIS.EXT`
/// (UTC hour of the image's time). The key depends only on the stream and the
/// sampled time, so an image made again after a restart replaces itself.
pub fn image_key(prefix: &str, stream: &str, image_ms: i64, extension: &str) -> String {
    let (y, mo, d, h) = utc_hour(image_ms);
    let path = format!("{stream}/{y:04}/{mo:02}/{d:02}/{h:02}/{stream}_{image_ms}.{extension}");
    if prefix.is_empty() {
        path
    } else {
        format!("{prefix}/{path}")
    }
}

/// Year, month, day and hour (UTC) of a Unix time in milliseconds.
fn utc_hour(ms: i64) -> (i64, u32, u32, u32) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let hour = (secs.rem_euclid(86_400) / 3600) as u32;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour)
}

/// The sampled image times (µs) in `[from, end)`, one every `interval_us`, starting at
/// `next` (the first time not yet sampled) or, when `next` is before the range, at
/// the range's start.
pub fn image_times(next: i64, from: i64, end: i64, interval_us: i64) -> Vec<i64> {
    let step = interval_us.max(1);
    let mut t = if next < from { from } else { next };
    let mut out = Vec::new();
    while t < end {
        out.push(t);
        t = t.saturating_add(step);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys_are_partitioned_by_utc_hour() {
        // 2023-11-14T22:13:20.250Z
        assert_eq!(image_key("p", "cam", 1_700_000_000_250, "jpg"), "p/cam/2023/11/14/22/cam_1700000000250.jpg");
        assert_eq!(image_key("", "cam", 0, "png"), "cam/1970/01/01/00/cam_0.png");
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(utc_hour(1_709_251_199_000), (2024, 2, 29, 23));
    }

    #[test]
    fn image_times_continue_from_the_last_sample() {
        assert_eq!(image_times(0, 1_000, 2_000, 400), vec![1_000, 1_400, 1_800]);
        assert_eq!(image_times(2_200, 2_000, 3_000, 400), vec![2_200, 2_600]);
        assert!(image_times(3_100, 2_000, 3_000, 400).is_empty());
    }

    #[test]
    fn events_serialise_with_their_documented_names() {
        let e = FragmentEvent {
            header: EventHeader::new(FRAGMENT, "cam", "arn", 7),
            producer_start_timestamp_ms: 1,
            producer_end_timestamp_ms: 2,
            server_start_timestamp_ms: 3,
            server_end_timestamp_ms: 4,
            duration_ms: 1,
            codec: "avc1.4d401e".into(),
            width: 320,
            height: 240,
            bytes: 10,
            keyframes: 1,
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "FRAGMENT");
        assert_eq!(v["fragmentNumber"], "7");
        assert_eq!(v["producerEndTimestampMs"], 2);
        assert_eq!(v["keyframes"], 1);
    }
}
