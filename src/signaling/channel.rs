//! A signalling channel as stored, and the rules its fields follow (pure).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SignalingError;
use crate::scope::Scope;

/// The channel record's JSON layout in the `channels` tree (see docs/storage.md).
pub const CHANNELS_FORMAT: u32 = 1;
/// `SingleMasterConfiguration.MessageTtlSeconds`: AWS's range and default.
pub const MIN_MESSAGE_TTL_S: u32 = 5;
pub const MAX_MESSAGE_TTL_S: u32 = 120;
pub const DEFAULT_MESSAGE_TTL_S: u32 = 60;
pub const MAX_TAGS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaStorageStatus {
    #[serde(rename = "ENABLED")]
    Enabled,
    #[serde(rename = "DISABLED")]
    Disabled,
}

impl MediaStorageStatus {
    pub fn parse(s: &str) -> Result<Self, SignalingError> {
        match s {
            "ENABLED" => Ok(MediaStorageStatus::Enabled),
            "DISABLED" => Ok(MediaStorageStatus::Disabled),
            other => Err(SignalingError::InvalidArgument(format!("Status '{other}' must be ENABLED or DISABLED"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MediaStorageStatus::Enabled => "ENABLED",
            MediaStorageStatus::Disabled => "DISABLED",
        }
    }
}

/// Where a channel's media is recorded (`UpdateMediaStorageConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaStorage {
    pub status: MediaStorageStatus,
    pub stream_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub scope: Scope,
    pub name: String,
    pub arn: String,
    /// `SINGLE_MASTER` (the only type AWS supports).
    pub channel_type: String,
    pub creation_time_ms: i64,
    pub message_ttl_s: u32,
    /// Changes with every update; Update and Delete may name the version they saw.
    pub version: String,
    pub tags: BTreeMap<String, String>,
    pub media_storage: MediaStorage,
}

impl ChannelRecord {
    /// The stream the channel records into, when storage is enabled.
    pub fn storage_stream(&self) -> Option<&str> {
        match self.media_storage.status {
            MediaStorageStatus::Enabled => self.media_storage.stream_arn.as_deref(),
            MediaStorageStatus::Disabled => None,
        }
    }
}

/// `arn:PARTITION:kinesisvideo:REGION:ACCOUNT:channel/NAME/CREATION_MS`.
pub fn channel_arn(scope: &Scope, name: &str, creation_ms: i64) -> String {
    scope.arn("kinesisvideo", &format!("channel/{name}/{creation_ms}"))
}

/// The scope and name of a channel ARN.
pub fn parse_channel_arn(arn: &str) -> Option<(Scope, String)> {
    let (scope, resource) = Scope::parse_arn(arn, "kinesisvideo")?;
    let (name, ms) = resource.strip_prefix("channel/")?.rsplit_once('/')?;
    validate_name(name).ok()?;
    ms.parse::<i64>().ok()?;
    Some((scope, name.to_string()))
}

/// `ChannelName`: 1–256 of `[a-zA-Z0-9_.-]`.
pub fn validate_name(name: &str) -> Result<(), SignalingError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SignalingError::InvalidArgument(format!(
            "ChannelName '{name}' must be 1 to 256 characters of a-z, A-Z, 0-9, '_', '.' and '-'"
        )))
    }
}

pub fn validate_ttl(ttl: i64) -> Result<u32, SignalingError> {
    u32::try_from(ttl).ok().filter(|t| (MIN_MESSAGE_TTL_S..=MAX_MESSAGE_TTL_S).contains(t)).ok_or_else(|| {
        SignalingError::InvalidArgument(format!(
            "MessageTtlSeconds {ttl} must be between {MIN_MESSAGE_TTL_S} and {MAX_MESSAGE_TTL_S}"
        ))
    })
}

/// Tag keys 1–128 and values 0–256 characters, at most [`MAX_TAGS`].
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), SignalingError> {
    if tags.len() > MAX_TAGS {
        return Err(SignalingError::TooManyTags { max: MAX_TAGS, would_have: tags.len() });
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(SignalingError::InvalidArgument(format!("tag key '{k}' must be 1 to 128 characters")));
        }
        if v.chars().count() > 256 {
            return Err(SignalingError::InvalidArgument(format!("the value of tag '{k}' is over 256 characters")));
        }
    }
    Ok(())
}

/// A fresh version string, as AWS's (opaque, changes on every update).
pub fn new_version() -> String {
    let bytes = crate::secrets::random_bytes::<10>().unwrap_or([0; 10]);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_round_trip_and_names_are_checked() {
        let scope = Scope::new("123456789012", "us-west-2");
        let arn = channel_arn(&scope, "front-door", 1_700_000_000_000);
        assert_eq!(arn, "arn:aws:kinesisvideo:us-west-2:123456789012:channel/front-door/1700000000000");
        assert_eq!(parse_channel_arn(&arn), Some((scope, "front-door".into())));
        assert_eq!(parse_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:stream/x/1"), None);
        assert_eq!(parse_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:channel/x y/1"), None);
        assert!(validate_name(&"a".repeat(256)).is_ok());
        assert!(validate_name(&"a".repeat(257)).is_err());
        assert!(validate_name("").is_err());
        assert_eq!(validate_ttl(5).ok(), Some(5));
        assert!(validate_ttl(4).is_err() && validate_ttl(121).is_err() && validate_ttl(-1).is_err());
    }
}
