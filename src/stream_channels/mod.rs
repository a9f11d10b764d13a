//! Kinesis channels: a data stream delivered to a bucket, continuously. A channel is
//! carried out by a delivery stream the channel owns (the delivery-stream engine's
//! Kinesis source, buffering, compression and bucket writer, nothing written twice):
//! invisible to Firehose's operations, created, changed and deleted with the channel,
//! and holding the channel's own record beside its settings so both change in one
//! durable write.
//!
//! What maps to what: the stream is the delivery stream's source (read from the
//! channel's creation on); `DataFreshnessInSeconds` is its buffering interval (at most
//! 900 s here, Firehose's bound; a longer freshness is kept and reported, delivered
//! every 900 s); `OutputKeyTemplate` is the object key prefix, its `{timestamp:FORMAT}`
//! placeholders Firehose's `!{timestamp:FORMAT}`; `JSON` and `STRING` records are
//! written one per line, `BYTE_ARRAY` records as they are; failed deliveries go under
//! the dead-letter prefix of the same bucket. S3 Tables destinations are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data_streams::meta_store::StreamMode;
use crate::data_streams::{
    change_tags, check_new_resource, check_tags, name_ok, DataStreamEngine, DataStreamError, DataStreamId,
};
use crate::delivery_streams::settings::{
    BucketDestination, BufferingHints, Compression, Destination, Processing, Processor, Source,
};
use crate::delivery_streams::{DeliveryStreamEngine, DeliveryStreamError, DeliveryStreamId, Owner};
use crate::scope::Scope;

/// Errors are Kinesis's.
pub type Error = DataStreamError;
type Result<T, E = Error> = std::result::Result<T, E>;

pub const MAX_TAGS: usize = 50;
pub const DEFAULT_DATA_FRESHNESS_S: u32 = 300;
/// The longest buffering the delivery engine does.
pub const MAX_BUFFER_S: u32 = 900;
/// Channels per account and region.
pub const MAX_CHANNELS_PER_SCOPE: usize = 100;
const OWNER_KIND: &str = "kinesis-channel";
/// Where failed records go without a DeadLetterQueueS3Configuration prefix.
pub const DEFAULT_ERROR_PREFIX: &str = "errors/!{firehose:error-output-type}/";

fn invalid(msg: impl Into<String>) -> Error {
    DataStreamError::InvalidArgument(msg.into())
}

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordFormat {
    Json,
    String,
    ByteArray,
}

impl RecordFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::Json => "JSON",
            RecordFormat::String => "STRING",
            RecordFormat::ByteArray => "BYTE_ARRAY",
        }
    }

    /// The S3 formats; GSR_JSON is S3 Tables' only.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "JSON" => Ok(RecordFormat::Json),
            "STRING" => Ok(RecordFormat::String),
            "BYTE_ARRAY" => Ok(RecordFormat::ByteArray),
            "GSR_JSON" => Err(invalid("RecordFormatType GSR_JSON is for S3 Tables destinations; an S3 destination takes JSON, STRING or BYTE_ARRAY.")),
            other => Err(DataStreamError::Validation(format!(
                "1 validation error detected: Value '{other}' at 'recordFormatType' failed to satisfy constraint: Member must satisfy enum value set: [GSR_JSON, JSON, STRING, BYTE_ARRAY]"
            ))),
        }
    }
}

/// Object compression of a channel (`NONE`, `GZIP`, `ZSTD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelCompression {
    None,
    Gzip,
    Zstd,
}

impl ChannelCompression {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelCompression::None => "NONE",
            ChannelCompression::Gzip => "GZIP",
            ChannelCompression::Zstd => "ZSTD",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "NONE" => Ok(ChannelCompression::None),
            "GZIP" => Ok(ChannelCompression::Gzip),
            "ZSTD" => Ok(ChannelCompression::Zstd),
            other => Err(DataStreamError::Validation(format!(
                "1 validation error detected: Value '{other}' at 's3DestinationConfiguration.storageConfiguration.compressionType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, GZIP, ZSTD]"
            ))),
        }
    }

    fn delivery(self) -> Compression {
        match self {
            ChannelCompression::None => Compression::Uncompressed,
            ChannelCompression::Gzip => Compression::Gzip,
            ChannelCompression::Zstd => Compression::Zstd,
        }
    }
}

/// Where failed records go: a prefix of the destination bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterBucket {
    pub bucket_arn: String,
    pub expected_bucket_owner: String,
    pub error_output_prefix: Option<String>,
}

/// `S3DestinationConfiguration`, in the channel's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketTarget {
    pub data_freshness_s: u32,
    pub bucket_arn: String,
    pub expected_bucket_owner: String,
    pub output_key_template: Option<String>,
    pub storage_class: Option<String>,
    pub compression: ChannelCompression,
    pub dead_letter: Option<DeadLetterBucket>,
}

/// CloudWatch Logs settings: stored and reported (there is no CloudWatch here; delivery
/// failures go to the server's log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Logging {
    pub enabled: bool,
    pub log_group_name: Option<String>,
    pub log_stream_name: Option<String>,
}

/// A channel as stored (in its delivery stream's owner record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_ms: i64,
    pub role_arn: String,
    pub stream: String,
    pub stream_created_ms: i64,
    pub record_format: RecordFormat,
    pub destination: BucketTarget,
    /// (`KMS`, key id): stored and reported; objects are not encrypted by this server.
    pub encryption: Option<(String, String)>,
    pub logging: Logging,
    pub tags: BTreeMap<String, String>,
}

impl ChannelRecord {
    /// `arn:aws:kinesis:REGION:ACCOUNT:channel/ID`.
    pub fn arn(&self) -> String {
        self.scope.arn("kinesis", &format!("channel/{}", self.id))
    }

    pub fn stream_arn(&self) -> String {
        DataStreamId::new(&self.scope, &self.stream).arn()
    }
}

/// What CreateChannel asks for.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub name: String,
    pub role_arn: String,
    pub stream: DataStreamId,
    pub record_format: RecordFormat,
    pub destination: BucketTarget,
    pub encryption: Option<(String, String)>,
    pub logging: Logging,
    pub tags: BTreeMap<String, String>,
}

/// What UpdateChannel may change.
#[derive(Debug, Clone, Default)]
pub struct ChannelChange {
    pub data_freshness_s: Option<u32>,
    pub logging: Option<Logging>,
}

/// The channel engine; cheap to clone.
#[derive(Clone)]
pub struct ChannelEngine {
    delivery: DeliveryStreamEngine,
    data_streams: DataStreamEngine,
}

fn from_delivery(e: DeliveryStreamError) -> Error {
    match e {
        DeliveryStreamError::ResourceNotFound(m) => DataStreamError::ResourceNotFound(m),
        DeliveryStreamError::ResourceInUse(m) => DataStreamError::ResourceInUse(m),
        DeliveryStreamError::LimitExceeded(m) => DataStreamError::LimitExceeded(m),
        DeliveryStreamError::Storage(f) => DataStreamError::Storage(f),
        other => invalid(other.to_string()),
    }
}

/// `arn:aws…:iam::ACCOUNT:role/NAME`.
fn role_ok(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let fields: Vec<&str> = parts.by_ref().collect();
    fields.len() == 6
        && fields[0] == "arn"
        && fields[1].starts_with("aws")
        && fields[2] == "iam"
        && fields[3].is_empty()
        && fields[4].len() == 12
        && fields[4].bytes().all(|b| b.is_ascii_digit())
        && fields[5].strip_prefix("role/").is_some_and(|r| !r.is_empty())
        && arn.len() <= 512
}

/// The bucket name of `arn:aws:s3:::NAME`, checked against the model's pattern.
fn bucket_of(arn: &str) -> Result<&str> {
    let name = arn.strip_prefix("arn:aws:s3:::").filter(|n| {
        (3..=63).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    });
    name.ok_or_else(|| invalid(format!("BucketARN '{arn}' is not an S3 bucket ARN (arn:aws:s3:::NAME).")))
}

/// `OutputKeyTemplate` as a Firehose prefix: `{timestamp:FORMAT}` → `!{timestamp:FORMAT}`.
pub fn key_prefix(template: &str) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or_else(|| invalid("OutputKeyTemplate has a '{' without its '}'."))?;
        let inner = &rest[open + 1..open + close];
        if !inner.starts_with("timestamp:") {
            return Err(invalid(format!(
                "OutputKeyTemplate placeholder '{{{inner}}}' is not supported by Kinescope; it expands {{timestamp:FORMAT}} only."
            )));
        }
        out.push_str("!{");
        out.push_str(inner);
        out.push('}');
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(invalid("OutputKeyTemplate has a '}' without its '{'."));
    }
    out.push_str(rest);
    Ok(out)
}

fn new_channel_id() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = crate::secrets::random_bytes::<20>()
        .map_err(|e| DataStreamError::Storage(crate::storage_failure::StorageFailure::caused("a new channel id", e)))?;
    Ok(bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
}

impl ChannelEngine {
    pub fn new(delivery: DeliveryStreamEngine, data_streams: DataStreamEngine) -> Self {
        ChannelEngine { delivery, data_streams }
    }

    /// A delivery stream's channel record, if a channel owns it (one that cannot be
    /// read is logged and left alone).
    fn record_of(meta: crate::delivery_streams::meta_store::StreamMeta) -> Option<ChannelRecord> {
        let owner = meta.owner?;
        owner.arn.contains(":channel/").then_some(())?;
        match serde_json::from_value::<ChannelRecord>(owner.record) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(owner = %owner.arn, error = %e, "a channel record cannot be read; left alone");
                None
            }
        }
    }

    fn records(&self, scope: &Scope) -> Vec<ChannelRecord> {
        self.delivery.owned(scope).into_iter().filter_map(Self::record_of).collect()
    }

    /// The channels of `scope` (reading `stream`, if given), by name.
    pub fn list(&self, scope: &Scope, stream: Option<&str>) -> Vec<ChannelRecord> {
        let mut all: Vec<ChannelRecord> =
            self.records(scope).into_iter().filter(|r| stream.is_none_or(|s| r.stream == s)).collect();
        all.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        all
    }

    pub fn count(&self, scope: &Scope) -> usize {
        self.records(scope).len()
    }

    /// Channels delivering `stream` (its DescribeStreamSummary's ChannelCount; it blocks
    /// DeleteStream): only their delivery streams' records are read.
    pub fn count_for_stream(&self, stream: &DataStreamId) -> usize {
        let arn = stream.arn();
        self.delivery
            .owned(&stream.scope)
            .into_iter()
            .filter(|m| matches!(&m.source, Source::KinesisStream { stream_arn, .. } if *stream_arn == arn))
            .filter_map(Self::record_of)
            .count()
    }

    pub fn describe(&self, scope: &Scope, arn: &str) -> Result<ChannelRecord> {
        self.delivery.owned_by(arn).and_then(Self::record_of).filter(|r| r.scope == *scope).ok_or_else(|| {
            DataStreamError::ResourceNotFound(format!("Channel {arn} under account {} not found.", scope.account))
        })
    }

    fn destination(&self, r: &ChannelRecord) -> Result<Destination> {
        let d = &r.destination;
        let prefix = d.output_key_template.as_deref().map(key_prefix).transpose()?;
        let error_prefix = d
            .dead_letter
            .as_ref()
            .and_then(|l| l.error_output_prefix.clone())
            .unwrap_or_else(|| DEFAULT_ERROR_PREFIX.to_string());
        let processing = match r.record_format {
            RecordFormat::Json | RecordFormat::String => Some(Processing {
                enabled: true,
                processors: vec![Processor { kind: "AppendDelimiterToRecord".into(), parameters: vec![] }],
            }),
            RecordFormat::ByteArray => None,
        };
        Ok(Destination::Bucket(BucketDestination {
            role_arn: r.role_arn.clone(),
            bucket_arn: d.bucket_arn.clone(),
            prefix,
            error_output_prefix: Some(error_prefix),
            buffering: BufferingHints { size_mib: None, interval_secs: Some(d.data_freshness_s.min(MAX_BUFFER_S)) },
            compression: d.compression.delivery(),
            processing,
            ..Default::default()
        }))
    }

    pub fn create(&self, scope: &Scope, new: NewChannel) -> Result<ChannelRecord> {
        if !name_ok(&new.name) {
            return Err(DataStreamError::Validation(format!(
                "1 validation error detected: Value '{}' at 'channelName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128",
                new.name
            )));
        }
        if !role_ok(&new.role_arn) {
            return Err(DataStreamError::Validation(format!(
                "1 validation error detected: Value '{}' at 'serviceExecutionRoleARN' failed to satisfy constraint: Member must be an IAM role ARN",
                new.role_arn
            )));
        }
        check_tags(&new.tags)?;
        if new.tags.len() > MAX_TAGS {
            return Err(invalid(format!("A channel can have at most {MAX_TAGS} tags.")));
        }
        let d = &new.destination;
        let bucket = bucket_of(&d.bucket_arn)?.to_string();
        for owner in
            std::iter::once(&d.expected_bucket_owner).chain(d.dead_letter.as_ref().map(|l| &l.expected_bucket_owner))
        {
            if *owner != scope.account {
                return Err(DataStreamError::AccessDenied(format!(
                    "ExpectedBucketOwner {owner} is not the channel's account ({}): buckets here belong to the account that writes them.",
                    scope.account
                )));
            }
        }
        if let Some(l) = &d.dead_letter {
            if bucket_of(&l.bucket_arn)? != bucket.as_str() {
                return Err(invalid(
                    "DeadLetterQueueS3Configuration must name the destination bucket in Kinescope (failed records go under its error prefix).",
                ));
            }
        }
        if new.stream.scope != *scope {
            return Err(DataStreamError::ResourceNotFound(format!("Stream {} not found.", new.stream.arn())));
        }
        let stream = self.data_streams.describe(&new.stream)?;
        if stream.meta.mode != StreamMode::OnDemand {
            return Err(invalid(format!(
                "Stream {} is PROVISIONED; channels deliver ON_DEMAND streams only.",
                new.stream.name
            )));
        }
        let existing = self.records(scope);
        check_new_resource(
            "Channel",
            scope,
            &new.name,
            existing.iter().map(|r| r.name.as_str()),
            MAX_CHANNELS_PER_SCOPE,
        )?;
        let record = ChannelRecord {
            id: new_channel_id()?,
            name: new.name,
            scope: scope.clone(),
            created_ms: self.data_streams.now_ms(),
            role_arn: new.role_arn,
            stream: new.stream.name.clone(),
            stream_created_ms: stream.meta.created_ms,
            record_format: new.record_format,
            destination: new.destination,
            encryption: new.encryption,
            logging: new.logging,
            tags: new.tags,
        };
        let destination = self.destination(&record)?;
        let owner =
            Owner { arn: record.arn(), record: serde_json::to_value(&record).map_err(|e| invalid(e.to_string()))? };
        let id = DeliveryStreamId::new(scope, &format!("{OWNER_KIND}/{}", record.id));
        let source = Source::KinesisStream { stream_arn: new.stream.arn(), role_arn: record.role_arn.clone() };
        self.delivery.create_owned(&id, owner, source, destination).map_err(from_delivery)?;
        tracing::info!(channel = %record.name, stream = %record.stream, bucket = %bucket, "channel created");
        Ok(record)
    }

    /// UpdateChannel: the data freshness and the logging settings.
    pub fn update(&self, scope: &Scope, arn: &str, change: ChannelChange) -> Result<ChannelRecord> {
        let mut record = self.describe(scope, arn)?;
        if let Some(f) = change.data_freshness_s {
            record.destination.data_freshness_s = f;
        }
        if let Some(l) = change.logging {
            record.logging = l;
        }
        let destination = self.destination(&record)?;
        let value = serde_json::to_value(&record).map_err(|e| invalid(e.to_string()))?;
        self.delivery
            .update_owned(arn, |owner, d| {
                owner.record = value;
                *d = destination;
                Ok(())
            })
            .map_err(from_delivery)?;
        Ok(record)
    }

    /// DeleteChannel: delivery stops; what was delivered stays in the bucket.
    pub fn delete(&self, scope: &Scope, arn: &str) -> Result<()> {
        let record = self.describe(scope, arn)?;
        self.delivery.delete_owned(arn).map_err(from_delivery)?;
        tracing::info!(channel = %record.name, "channel deleted");
        Ok(())
    }

    /// TagResource / UntagResource on a channel ARN.
    pub fn update_tags(
        &self,
        scope: &Scope,
        arn: &str,
        add: BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let mut record = self.describe(scope, arn)?;
        change_tags(&mut record.tags, add, remove, MAX_TAGS, "channel")?;
        let value = serde_json::to_value(&record).map_err(|e| invalid(e.to_string()))?;
        self.delivery
            .update_owned(arn, |owner, _| {
                owner.record = value;
                Ok(())
            })
            .map_err(from_delivery)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_key_templates_become_firehose_prefixes() {
        assert_eq!(key_prefix("cams/").unwrap(), "cams/");
        assert_eq!(
            key_prefix("cams/{timestamp:yyyy}/{timestamp:MM}/").unwrap(),
            "cams/!{timestamp:yyyy}/!{timestamp:MM}/"
        );
        assert!(key_prefix("cams/{partitionKey}/").is_err());
        assert!(key_prefix("cams/{timestamp:yyyy").is_err());
        assert!(key_prefix("cams/}").is_err());
    }

    #[test]
    fn only_iam_role_arns_serve_as_the_service_role() {
        assert!(role_ok("arn:aws:iam::123456789012:role/channel-writer"));
        assert!(!role_ok("arn:aws:iam::123456789012:user/x"));
        assert!(!role_ok("arn:aws:s3:::bucket"));
        assert!(!role_ok("arn:aws:iam:us-east-1:123456789012:role/x"));
    }
}
