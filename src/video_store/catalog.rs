//! Stream records: what a stream is (name, scope, retention, settings), and the rules
//! their fields follow. They are kept by a [`super::index::StreamCatalog`]; every
//! change is a compare-and-swap on the whole record, so two concurrent updates cannot
//! both succeed against the same version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::records::StreamId;
use super::StoreError;
use crate::scope::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    #[serde(rename = "ACTIVE")]
    Active,
    #[serde(rename = "DELETING")]
    Deleting,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    pub id: StreamId,
    pub scope: Scope,
    pub name: String,
    pub arn: String,
    pub device_name: Option<String>,
    pub media_type: Option<String>,
    pub kms_key_id: String,
    pub version: String,
    pub status: StreamStatus,
    pub creation_time_ms: i64,
    pub data_retention_hours: u32,
    pub tags: BTreeMap<String, String>,
    pub storage_tier: String,
    /// UpdateNotificationConfiguration: where fragment and image events go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<NotificationSettings>,
    /// UpdateImageGenerationConfiguration: images made as fragments arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_generation: Option<ImageGenerationSettings>,
    /// The data stream (ARN) whose records describe this stream's frames (detections
    /// drawn over the video).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_metadata_stream: Option<String>,
    /// WHIP publishing tokens issued before this (µs since the epoch) are revoked.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub publish_tokens_not_before_us: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A stream's `NotificationConfiguration`, as given (checked at the API edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationSettings {
    /// `ENABLED` or `DISABLED`.
    pub status: String,
    /// The destination: a queue, data stream or delivery stream ARN.
    pub uri: String,
}

impl NotificationSettings {
    pub fn enabled(&self) -> bool {
        self.status == "ENABLED"
    }

    pub fn destination(&self) -> Option<EventDestination> {
        EventDestination::parse(&self.uri)
    }
}

/// Where a stream's events go: AWS sends them to an SNS topic; we take the ARN of one
/// of our own queues, data streams or delivery streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventDestination {
    Queue { scope: Scope, name: String },
    DataStream { scope: Scope, name: String },
    DeliveryStream { scope: Scope, name: String },
}

impl EventDestination {
    /// `arn:aws:sqs:R:A:NAME`, `arn:aws:kinesis:R:A:stream/NAME` or
    /// `arn:aws:firehose:R:A:deliverystream/NAME`.
    pub fn parse(arn: &str) -> Option<Self> {
        let plain = |n: &str| !n.is_empty() && !n.contains([':', '/']);
        if let Some((scope, name)) = Scope::parse_arn(arn, "sqs") {
            return plain(name).then(|| EventDestination::Queue { scope, name: name.to_string() });
        }
        if let Some((scope, rest)) = Scope::parse_arn(arn, "kinesis") {
            let name = rest.strip_prefix("stream/")?;
            return plain(name).then(|| EventDestination::DataStream { scope, name: name.to_string() });
        }
        let (scope, rest) = Scope::parse_arn(arn, "firehose")?;
        let name = rest.strip_prefix("deliverystream/")?;
        plain(name).then(|| EventDestination::DeliveryStream { scope, name: name.to_string() })
    }

    /// `queue`, `data_stream` or `delivery_stream` (a metrics label).
    pub fn label(&self) -> &'static str {
        match self {
            EventDestination::Queue { .. } => "queue",
            EventDestination::DataStream { .. } => "data_stream",
            EventDestination::DeliveryStream { .. } => "delivery_stream",
        }
    }
}

/// A stream's `ImageGenerationConfiguration`, as given (checked at the API edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageGenerationSettings {
    pub status: String,
    /// `SERVER_TIMESTAMP` or `PRODUCER_TIMESTAMP`.
    pub image_selector_type: String,
    /// `s3://bucket/prefix`.
    pub uri: String,
    pub region: String,
    pub sampling_interval_ms: i64,
    /// `JPEG` or `PNG`.
    pub format: String,
    #[serde(default)]
    pub format_config: BTreeMap<String, String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl ImageGenerationSettings {
    pub fn enabled(&self) -> bool {
        self.status == "ENABLED"
    }

    /// The bucket and key prefix of the destination.
    pub fn bucket_and_prefix(&self) -> Option<(String, String)> {
        parse_bucket_uri(&self.uri)
    }
}

/// `s3://bucket/prefix` (prefix optional, without leading or trailing `/`).
pub fn parse_bucket_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = !bucket.is_empty()
        && bucket.len() <= 63
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    ok.then(|| (bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl StreamRecord {
    /// How long fragments are kept, in microseconds; retention 0 keeps a live buffer.
    pub fn retention_us(&self, live_buffer_us: i64) -> i64 {
        if self.data_retention_hours == 0 {
            live_buffer_us
        } else {
            i64::from(self.data_retention_hours) * 3_600_000_000
        }
    }
}

pub const MAX_TAGS: usize = 50;
pub const MAX_RETENTION_HOURS: u32 = 87_600;

fn name_chars_ok(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub fn validate_stream_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 256 || !name_chars_ok(name) {
        return Err(StoreError::InvalidArgument(format!(
            "StreamName '{name}' must be 1 to 256 characters of [a-zA-Z0-9_.-]"
        )));
    }
    Ok(())
}

pub fn validate_device_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 128 || !name_chars_ok(name) {
        return Err(StoreError::InvalidArgument(format!(
            "DeviceName '{name}' must be 1 to 128 characters of [a-zA-Z0-9_.-]"
        )));
    }
    Ok(())
}

/// `type/subtype[,type/subtype…]`, each part of `[\w\-\.\+]`.
pub fn validate_media_type(mt: &str) -> Result<(), StoreError> {
    let part_ok =
        |p: &str| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    let ok = !mt.is_empty()
        && mt.len() <= 128
        && mt.split(',').all(|one| one.split_once('/').is_some_and(|(t, s)| part_ok(t) && part_ok(s)));
    if !ok {
        return Err(StoreError::InvalidArgument(format!(
            "MediaType '{mt}' must look like type/subtype[,type/subtype] (e.g. video/h264,audio/aac)"
        )));
    }
    Ok(())
}

fn tag_chars_ok(s: &str) -> bool {
    s.chars().all(|c| c.is_alphabetic() || c.is_numeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

pub fn validate_tags<'a>(tags: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<(), StoreError> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || !tag_chars_ok(k) {
            return Err(StoreError::InvalidArgument(format!(
                "tag key '{k}' must be 1 to 128 characters of letters, digits, spaces and _.:/=+-@"
            )));
        }
        if v.chars().count() > 256 || !tag_chars_ok(v) {
            return Err(StoreError::InvalidArgument(format!(
                "tag value for '{k}' must be at most 256 characters of letters, digits, spaces and _.:/=+-@"
            )));
        }
    }
    Ok(())
}

pub fn new_version() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..20].to_string()
}

/// `StreamStorageConfiguration.DefaultStorageTier`: `HOT` or `WARM`.
pub fn validate_storage_tier(tier: &str) -> Result<(), StoreError> {
    match tier {
        "HOT" | "WARM" => Ok(()),
        other => Err(StoreError::InvalidArgument(format!(
            "1 validation error detected: Value '{other}' at 'streamStorageConfiguration.defaultStorageTier' failed to satisfy constraint: Member must satisfy enum value set: [HOT, WARM]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_uris_split_into_bucket_and_prefix() {
        assert_eq!(parse_bucket_uri("s3://frames"), Some(("frames".into(), String::new())));
        assert_eq!(parse_bucket_uri("s3://frames/a/b/"), Some(("frames".into(), "a/b".into())));
        assert_eq!(parse_bucket_uri("s3://"), None);
        assert_eq!(parse_bucket_uri("http://frames"), None);
        assert_eq!(parse_bucket_uri("s3://Frames"), None);
    }

    #[test]
    fn names_and_media_types() {
        assert!(validate_stream_name("cam-1.front_door").is_ok());
        assert!(validate_stream_name("").is_err());
        assert!(validate_stream_name("bad/name").is_err());
        assert!(validate_stream_name(&"a".repeat(257)).is_err());
        assert!(validate_media_type("video/h264,audio/aac").is_ok());
        assert!(validate_media_type("video").is_err());
        assert!(validate_media_type("video/h264,").is_err());
    }

    #[test]
    fn tags() {
        let ok: BTreeMap<String, String> = [("team".into(), "vision lab".into())].into();
        assert!(validate_tags(&ok).is_ok());
        let bad: BTreeMap<String, String> = [("".into(), "x".into())].into();
        assert!(validate_tags(&bad).is_err());
        let bad: BTreeMap<String, String> = [("k".into(), "no#hash".into())].into();
        assert!(validate_tags(&bad).is_err());
    }
}
