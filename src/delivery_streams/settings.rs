//! A delivery stream's settings: its source and its one destination, in the engine's
//! own terms (the API layer reads Firehose's members into them and writes Describe back
//! from them), checked here against the ranges the engine relies on, and kept by the
//! metadata store as they are.
//!
//! Destinations Kinescope serves: a bucket ([`BucketDestination`]) and an HTTP endpoint
//! ([`HttpDestination`]). The rest are refused by the API layer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MIB: u64 = 1024 * 1024;
/// Buffering defaults (5 MiB or 300 s, whichever first).
pub const DEFAULT_BUFFER_MIB: u32 = 5;
pub const DEFAULT_BUFFER_SECS: u32 = 300;
/// How long a failed S3 delivery is retried before the data is given up (AWS: 24 h).
pub const BUCKET_RETRY_SECS: u32 = 86_400;
/// HTTP endpoints: the default retry duration (AWS: 300 s).
pub const DEFAULT_HTTP_RETRY_SECS: u32 = 300;

/// When a batch is delivered: once it holds `size_mib` or its oldest record has waited
/// `interval_secs` (each defaulted when not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BufferingHints {
    pub size_mib: Option<u32>,
    pub interval_secs: Option<u32>,
}

impl BufferingHints {
    pub fn size_bytes(&self) -> u64 {
        u64::from(self.size_mib.unwrap_or(DEFAULT_BUFFER_MIB)) * MIB
    }

    pub fn interval_ms(&self) -> i64 {
        i64::from(self.interval_secs.unwrap_or(DEFAULT_BUFFER_SECS)) * 1000
    }

    /// The hints with their defaults filled in, as Describe reports them.
    pub fn filled(&self) -> Self {
        BufferingHints {
            size_mib: Some(self.size_mib.unwrap_or(DEFAULT_BUFFER_MIB)),
            interval_secs: Some(self.interval_secs.unwrap_or(DEFAULT_BUFFER_SECS)),
        }
    }

    fn check(&self, member: &str, max_mib: u32) -> Result<(), String> {
        if let Some(s) = self.size_mib {
            if !(1..=max_mib).contains(&s) {
                return Err(violation(
                    s,
                    &format!("{member}.sizeInMBs"),
                    &format!("have value between 1 and {max_mib}"),
                ));
            }
        }
        if let Some(i) = self.interval_secs {
            if i > 900 {
                return Err(violation(i, &format!("{member}.intervalInSeconds"), "have value between 0 and 900"));
            }
        }
        Ok(())
    }
}

/// How delivered objects are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Compression {
    #[default]
    Uncompressed,
    Gzip,
    Zip,
    Snappy,
    HadoopSnappy,
    /// Kinesis channels only (Firehose has no ZSTD).
    Zstd,
}

impl Compression {
    /// The file extension Firehose gives objects of this format.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy | Compression::HadoopSnappy => ".snappy",
            Compression::Zstd => ".zst",
        }
    }
}

/// One processor of a destination's processing: its type and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processor {
    pub kind: String,
    #[serde(default)]
    pub parameters: Vec<ProcessorParameter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorParameter {
    pub name: String,
    pub value: String,
}

impl Processor {
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.iter().find(|p| p.name == name).map(|p| p.value.as_str())
    }
}

/// The processors a destination runs on each batch (none unless enabled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Processing {
    pub enabled: bool,
    #[serde(default)]
    pub processors: Vec<Processor>,
}

/// The processor types Kinescope runs today.
pub const SUPPORTED_PROCESSORS: &[&str] =
    &["RecordDeAggregation", "Lambda", "MetadataExtraction", "AppendDelimiterToRecord"];
/// The processor types the model has.
const KNOWN_PROCESSORS: &[&str] = &[
    "RecordDeAggregation",
    "Decompression",
    "CloudWatchLogProcessing",
    "Lambda",
    "MetadataExtraction",
    "AppendDelimiterToRecord",
];

impl Processing {
    fn check(&self, member: &str) -> Result<(), String> {
        for p in &self.processors {
            if !KNOWN_PROCESSORS.contains(&p.kind.as_str()) {
                return Err(violation(
                    &p.kind,
                    &format!("{member}.processingConfiguration.processors.member.type"),
                    &format!("satisfy enum value set: [{}]", KNOWN_PROCESSORS.join(", ")),
                ));
            }
            if self.enabled && !SUPPORTED_PROCESSORS.contains(&p.kind.as_str()) {
                return Err(format!(
                    "Processor type {} is not supported by Kinescope yet (supported: {}).",
                    p.kind,
                    SUPPORTED_PROCESSORS.join(", ")
                ));
            }
            for param in &p.parameters {
                if !(1..=5120).contains(&param.value.chars().count()) {
                    return Err(format!("Processor parameter {} must be 1 to 5120 characters.", param.name));
                }
            }
        }
        Ok(())
    }

    /// The processors that run (none unless enabled).
    pub fn active(&self) -> &[Processor] {
        if self.enabled {
            &self.processors
        } else {
            &[]
        }
    }
}

/// Dynamic partitioning: objects keyed by what a query extracts from each record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Partitioning {
    pub enabled: bool,
    /// How long a failed partitioned delivery is retried (recorded, for Describe).
    pub retry_secs: Option<u32>,
}

/// Server-side encryption of delivered objects, as the stream was told (recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ObjectEncryption {
    #[default]
    None,
    Kms {
        key_arn: String,
    },
}

/// Logging of delivery errors to a log group (recorded, for Describe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorLogging {
    pub enabled: bool,
    pub log_group: Option<String>,
    pub log_stream: Option<String>,
}

/// Whether a bucket destination also writes every record as it arrived to a second bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceBackup {
    Disabled,
    Enabled,
}

/// Which batches an HTTP endpoint destination writes to its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointBackup {
    FailedDataOnly,
    AllData,
}

/// Records converted to a columnar format on delivery, with the schema of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FormatConversion {
    pub enabled: bool,
    pub schema: TableRef,
    pub reader: Option<JsonReader>,
    pub writer: Option<ParquetWriter>,
}

/// The table whose columns a conversion writes (Kinescope reads them from its
/// configuration, `[tables.DATABASE.TABLE]`); the rest is recorded, for Describe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TableRef {
    pub database: Option<String>,
    pub table: Option<String>,
    pub role_arn: Option<String>,
    pub catalog_id: Option<String>,
    pub region: Option<String>,
    pub version_id: Option<String>,
}

/// How records are read as JSON before conversion (recorded, for Describe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JsonReader {
    OpenX {
        convert_dots_to_underscores: Option<bool>,
        case_insensitive: Option<bool>,
        column_keys: Option<BTreeMap<String, String>>,
    },
    Hive {
        timestamp_formats: Option<Vec<String>>,
    },
}

/// The Parquet writer's settings; `compression` is acted on, the rest recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ParquetWriter {
    pub compression: Option<String>,
    pub block_size_bytes: Option<u64>,
    pub page_size_bytes: Option<u64>,
    pub enable_dictionary_compression: Option<bool>,
    pub max_padding_bytes: Option<u64>,
    pub writer_version: Option<String>,
}

/// Delivery into a bucket. Settings Kinescope records but does not act on (object
/// encryption, error logging) are kept as given, for Describe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BucketDestination {
    pub role_arn: String,
    pub bucket_arn: String,
    pub prefix: Option<String>,
    pub error_output_prefix: Option<String>,
    #[serde(default)]
    pub buffering: BufferingHints,
    #[serde(default)]
    pub compression: Compression,
    pub encryption: Option<ObjectEncryption>,
    pub error_logging: Option<ErrorLogging>,
    pub processing: Option<Processing>,
    pub source_backup_mode: Option<SourceBackup>,
    /// With [`SourceBackup::Enabled`]: where every record is also written as it arrived,
    /// before any processing.
    pub source_backup_bucket: Option<Box<BucketDestination>>,
    pub conversion: Option<FormatConversion>,
    pub partitioning: Option<Partitioning>,
    pub file_extension: Option<String>,
    pub custom_time_zone: Option<String>,
}

impl BucketDestination {
    /// The bucket name of `arn:aws:s3:::NAME`.
    pub fn bucket_name(&self) -> Result<&str, String> {
        bucket_name(&self.bucket_arn)
    }

    pub fn check(&self, member: &str) -> Result<(), String> {
        check_role(&self.role_arn, member)?;
        self.bucket_name()?;
        check_len(self.prefix.as_deref(), 1024, &format!("{member}.prefix"))?;
        check_len(self.error_output_prefix.as_deref(), 1024, &format!("{member}.errorOutputPrefix"))?;
        self.buffering.check(&format!("{member}.bufferingHints"), 128)?;
        if let Some(p) = &self.processing {
            p.check(member)?;
        }
        match (self.source_backup_mode, &self.source_backup_bucket) {
            (None | Some(SourceBackup::Disabled), _) => {}
            (Some(SourceBackup::Enabled), Some(backup)) => backup.check(&format!("{member}.s3BackupConfiguration"))?,
            (Some(SourceBackup::Enabled), None) => {
                return Err("S3BackupMode Enabled needs an S3BackupConfiguration.".into())
            }
        }
        if let Some(ext) = &self.file_extension {
            let ok = ext.is_empty()
                || (ext.starts_with('.')
                    && ext.len() <= 128
                    && ext[1..]
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"!-_.*'()".contains(&b)));
            if !ok {
                return Err(violation(
                    ext,
                    &format!("{member}.fileExtension"),
                    "satisfy regular expression pattern: ^$|\\.[0-9a-z!\\-_.*'()]+",
                ));
            }
        }
        if self.conversion()?.is_some() && self.compression != Compression::Uncompressed {
            return Err("CompressionFormat must be UNCOMPRESSED when format conversion is enabled (Parquet compresses inside the file: ParquetSerDe.Compression).".into());
        }
        let partitioning = self.partitioning.as_ref().is_some_and(|d| d.enabled);
        let uses_keys = self.prefix.as_deref().is_some_and(|p| p.contains("partitionKeyFromQuery"));
        match (partitioning, self.partition_query()) {
            // The query is compiled and tried by the engine, in its sandbox.
            (true, Some(_)) => {}
            (true, None) => {
                return Err("Dynamic partitioning needs a MetadataExtraction processor with a MetadataExtractionQuery (Kinescope does not run Lambda partitioning).".into())
            }
            (false, _) if uses_keys => {
                return Err("Prefix uses partitionKeyFromQuery, but dynamic partitioning is not enabled.".into())
            }
            (false, _) => {}
        }
        if let Some(engine) = self.processing.as_ref().and_then(|p| {
            p.processors.iter().find(|x| x.kind == "MetadataExtraction").and_then(|x| x.parameter("JsonParsingEngine"))
        }) {
            if engine != "JQ-1.6" {
                return Err(format!("JsonParsingEngine '{engine}' is not JQ-1.6."));
            }
        }
        Ok(())
    }

    /// The bucket that gets every record as it arrived ([`SourceBackup::Enabled`]).
    pub fn source_backup(&self) -> Option<&BucketDestination> {
        self.source_backup_bucket.as_deref().filter(|_| self.source_backup_mode == Some(SourceBackup::Enabled))
    }

    /// Format conversion, if enabled: the table its schema comes from and the Parquet
    /// compression.
    pub fn conversion(&self) -> Result<Option<Conversion>, String> {
        let Some(c) = self.conversion.as_ref().filter(|c| c.enabled) else { return Ok(None) };
        let database = c
            .schema
            .database
            .clone()
            .ok_or("DataFormatConversionConfiguration.SchemaConfiguration.DatabaseName is required.")?;
        let table = c
            .schema
            .table
            .clone()
            .ok_or("DataFormatConversionConfiguration.SchemaConfiguration.TableName is required.")?;
        let compression = c.writer.as_ref().and_then(|w| w.compression.clone());
        Ok(Some(Conversion { database, table, compression }))
    }

    /// The JQ query of dynamic partitioning, if it is enabled with MetadataExtraction.
    pub fn partition_query(&self) -> Option<&str> {
        if !self.partitioning.as_ref().is_some_and(|d| d.enabled) {
            return None;
        }
        self.processing
            .as_ref()
            .filter(|p| p.enabled)?
            .processors
            .iter()
            .find(|p| p.kind == "MetadataExtraction")?
            .parameter("MetadataExtractionQuery")
    }
}

/// Where a converting destination's schema comes from, and its Parquet compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub database: String,
    pub table: String,
    pub compression: Option<String>,
}

/// Batches POSTed to an HTTP endpoint in Firehose's request format, with a bucket for
/// failed (or all) data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpDestination {
    pub endpoint: HttpEndpoint,
    #[serde(default)]
    pub buffering: BufferingHints,
    #[serde(default)]
    pub gzip: bool,
    /// Attributes sent with every request (`X-Amz-Firehose-Common-Attributes`), in order.
    #[serde(default)]
    pub common_attributes: Vec<(String, String)>,
    pub processing: Option<Processing>,
    pub role_arn: Option<String>,
    pub retry_secs: Option<u32>,
    pub backup_mode: Option<EndpointBackup>,
    pub bucket: BucketDestination,
    pub error_logging: Option<ErrorLogging>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpEndpoint {
    pub url: String,
    pub name: Option<String>,
    pub access_key: Option<String>,
}

impl HttpDestination {
    pub fn retry_secs(&self) -> u32 {
        self.retry_secs.unwrap_or(DEFAULT_HTTP_RETRY_SECS)
    }

    /// Whether every batch is also written to the bucket (`AllData`), not only failed ones.
    pub fn backs_up_all(&self) -> bool {
        self.backup_mode == Some(EndpointBackup::AllData)
    }

    pub fn check(&self, member: &str, allow_plain_http: bool) -> Result<(), String> {
        let url = &self.endpoint.url;
        let parsed = url::Url::parse(url).map_err(|_| format!("{member}.endpointConfiguration.url is not a URL."))?;
        let plain_ok = allow_plain_http && parsed.scheme() == "http";
        if parsed.scheme() != "https" && !plain_ok {
            return Err(violation(
                "***",
                &format!("{member}.endpointConfiguration.url"),
                "satisfy regular expression pattern: https://.* (plain http:// only with [delivery_streams] allow_http_endpoints)",
            ));
        }
        if url.len() > 1000 {
            return Err(violation(
                "***",
                &format!("{member}.endpointConfiguration.url"),
                "have length less than or equal to 1000",
            ));
        }
        self.buffering.check(&format!("{member}.bufferingHints"), 64)?;
        if let Some(d) = self.retry_secs.filter(|d| *d > 7200) {
            return Err(violation(
                d,
                &format!("{member}.retryOptions.durationInSeconds"),
                "have value between 0 and 7200",
            ));
        }
        if self.common_attributes.len() > 50 {
            return Err(format!("{member}.requestConfiguration.commonAttributes holds at most 50 attributes."));
        }
        if let Some(p) = &self.processing {
            p.check(member)?;
        }
        self.bucket.check(&format!("{member}.s3Configuration"))
    }
}

/// The one destination of a stream (one per stream, never in a hot collection: the
/// size difference between the variants does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Destination {
    Bucket(BucketDestination),
    HttpEndpoint(HttpDestination),
}

impl Destination {
    pub fn buffering(&self) -> BufferingHints {
        match self {
            Destination::Bucket(d) => d.buffering,
            Destination::HttpEndpoint(d) => d.buffering,
        }
    }

    pub fn processors(&self) -> &[Processor] {
        let p = match self {
            Destination::Bucket(d) => d.processing.as_ref(),
            Destination::HttpEndpoint(d) => d.processing.as_ref(),
        };
        p.map_or(&[], Processing::active)
    }

    /// The bucket this destination writes (its data, or an HTTP endpoint's backup).
    pub fn bucket(&self) -> &BucketDestination {
        match self {
            Destination::Bucket(d) => d,
            Destination::HttpEndpoint(d) => &d.bucket,
        }
    }
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    DirectPut { throughput_hint_mib: Option<u32> },
    KinesisStream { stream_arn: String, role_arn: String },
}

impl Source {
    pub fn type_name(&self) -> &'static str {
        match self {
            Source::DirectPut { .. } => "DirectPut",
            Source::KinesisStream { .. } => "KinesisStreamAsSource",
        }
    }
}

/// `arn:aws:s3:::NAME` → `NAME` (the model's pattern `arn:.*:s3:::[\w\.\-]{1,255}`).
/// `arn:aws:s3::NAME`, with one colon fewer, is read too: moto's tests (and so some
/// users' fixtures) write it, and it names the bucket just as clearly.
pub fn bucket_name(arn: &str) -> Result<&str, String> {
    let name = arn
        .split_once(":s3:::")
        .or_else(|| arn.split_once(":s3::"))
        .filter(|(head, _)| head.starts_with("arn:"))
        .map(|(_, n)| n);
    match name {
        Some(n)
            if (1..=255).contains(&n.len())
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && n != "."
                && n != ".." =>
        {
            Ok(n)
        }
        _ => Err(violation(arn, "bucketARN", "satisfy regular expression pattern: arn:.*:s3:::[\\w\\.\\-]{1,255}")),
    }
}

fn check_role(arn: &str, member: &str) -> Result<(), String> {
    let ok = arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/") && arn.len() <= 512;
    if ok {
        Ok(())
    } else {
        Err(violation(
            arn,
            &format!("{member}.roleARN"),
            "satisfy regular expression pattern: arn:.*:iam::\\d{12}:role/[a-zA-Z_0-9+=,.@\\-_/]+",
        ))
    }
}

fn check_len(v: Option<&str>, max: usize, member: &str) -> Result<(), String> {
    match v {
        Some(s) if s.chars().count() > max => {
            Err(violation(s, member, &format!("have length less than or equal to {max}")))
        }
        _ => Ok(()),
    }
}

/// AWS's validation text for a member that breaks its constraint.
pub fn violation(value: impl std::fmt::Display, member: &str, constraint: &str) -> String {
    format!("1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must {constraint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> BucketDestination {
        BucketDestination {
            role_arn: "arn:aws:iam::123456789012:role/firehose".into(),
            bucket_arn: "arn:aws:s3:::frames".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bucket_names_come_from_s3_arns_only() {
        assert_eq!(bucket_name("arn:aws:s3:::frames.v1"), Ok("frames.v1"));
        assert!(bucket_name("arn:aws:s3:::").is_err());
        assert!(bucket_name("arn:aws:s3:::a/b").is_err());
        assert!(bucket_name("arn:aws:s3:::..").is_err());
        assert!(bucket_name("s3://frames").is_err());
    }

    #[test]
    fn hints_are_checked_and_defaulted() {
        let mut b = bucket();
        assert!(b.check("extendedS3DestinationConfiguration").is_ok());
        assert_eq!(b.buffering.size_bytes(), 5 * MIB);
        assert_eq!(b.buffering.interval_ms(), 300_000);
        b.buffering.size_mib = Some(129);
        assert!(b.check("x").unwrap_err().contains("between 1 and 128"));
        b.buffering = BufferingHints { size_mib: Some(1), interval_secs: Some(901) };
        assert!(b.check("x").unwrap_err().contains("between 0 and 900"));
    }

    #[test]
    fn unsupported_processing_is_refused_with_a_reason() {
        let mut b = bucket();
        b.processing = Some(Processing {
            enabled: true,
            processors: vec![Processor { kind: "Decompression".into(), parameters: vec![] }],
        });
        assert!(b.check("x").unwrap_err().contains("not supported by Kinescope yet"));
        b.processing.as_mut().unwrap().processors[0].kind = "Nope".into();
        assert!(b.check("x").unwrap_err().contains("enum value set"));
    }
}
