//! A delivery stream's settings: its source and its one destination, as the Firehose
//! API names their members (so the API layer reads them straight from a request and
//! Describe writes them back), validated here against the model's ranges, and kept in
//! the metadata store as JSON.
//!
//! Destinations Kinescope serves: `ExtendedS3` (and the deprecated `S3`, read as
//! ExtendedS3) into a bucket, and `HttpEndpoint`. The rest are refused by the API layer.

use serde::{Deserialize, Serialize};

pub const MIB: u64 = 1024 * 1024;
/// Buffering defaults (5 MiB or 300 s, whichever first).
pub const DEFAULT_BUFFER_MIB: u32 = 5;
pub const DEFAULT_BUFFER_SECS: u32 = 300;
/// How long a failed S3 delivery is retried before the data is given up (AWS: 24 h).
pub const BUCKET_RETRY_SECS: u32 = 86_400;
/// HTTP endpoints: the default retry duration (AWS: 300 s).
pub const DEFAULT_HTTP_RETRY_SECS: u32 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct BufferingHints {
    pub size_in_m_bs: Option<u32>,
    pub interval_in_seconds: Option<u32>,
}

impl BufferingHints {
    pub fn size_bytes(&self) -> u64 {
        u64::from(self.size_in_m_bs.unwrap_or(DEFAULT_BUFFER_MIB)) * MIB
    }

    pub fn interval_ms(&self) -> i64 {
        i64::from(self.interval_in_seconds.unwrap_or(DEFAULT_BUFFER_SECS)) * 1000
    }

    /// The hints with their defaults filled in, as Describe reports them.
    pub fn filled(&self) -> Self {
        BufferingHints {
            size_in_m_bs: Some(self.size_in_m_bs.unwrap_or(DEFAULT_BUFFER_MIB)),
            interval_in_seconds: Some(self.interval_in_seconds.unwrap_or(DEFAULT_BUFFER_SECS)),
        }
    }

    fn check(&self, member: &str, max_mib: u32) -> Result<(), String> {
        if let Some(s) = self.size_in_m_bs {
            if !(1..=max_mib).contains(&s) {
                return Err(violation(
                    s,
                    &format!("{member}.sizeInMBs"),
                    &format!("have value between 1 and {max_mib}"),
                ));
            }
        }
        if let Some(i) = self.interval_in_seconds {
            if i > 900 {
                return Err(violation(i, &format!("{member}.intervalInSeconds"), "have value between 0 and 900"));
            }
        }
        Ok(())
    }
}

/// `CompressionFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Compression {
    #[default]
    #[serde(rename = "UNCOMPRESSED")]
    Uncompressed,
    #[serde(rename = "GZIP")]
    Gzip,
    #[serde(rename = "ZIP")]
    Zip,
    #[serde(rename = "Snappy")]
    Snappy,
    #[serde(rename = "HADOOP_SNAPPY")]
    HadoopSnappy,
}

impl Compression {
    /// The file extension Firehose gives objects of this format.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy | Compression::HadoopSnappy => ".snappy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorParameter {
    pub parameter_name: String,
    pub parameter_value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Processor {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ProcessorParameter>,
}

impl Processor {
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.iter().find(|p| p.parameter_name == name).map(|p| p.parameter_value.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessingConfiguration {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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

impl ProcessingConfiguration {
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
                if !(1..=5120).contains(&param.parameter_value.chars().count()) {
                    return Err(format!("Processor parameter {} must be 1 to 5120 characters.", param.parameter_name));
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RetryOptions {
    pub duration_in_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DynamicPartitioning {
    #[serde(default)]
    pub enabled: bool,
    pub retry_options: Option<RetryOptions>,
}

/// `ExtendedS3DestinationConfiguration` (and `S3DestinationConfiguration`, its subset):
/// delivery into a bucket. Members Kinescope records but does not act on (encryption,
/// CloudWatch logging, backup, format conversion) are kept as given, for Describe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct BucketDestination {
    #[serde(rename = "RoleARN")]
    pub role_arn: String,
    #[serde(rename = "BucketARN")]
    pub bucket_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_output_prefix: Option<String>,
    #[serde(default)]
    pub buffering_hints: BufferingHints,
    #[serde(default)]
    pub compression_format: Compression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch_logging_options: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_configuration: Option<ProcessingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_backup_mode: Option<String>,
    /// With `S3BackupMode` `Enabled`: where every record is also written as it arrived,
    /// before any processing (an `S3DestinationConfiguration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_backup_configuration: Option<Box<BucketDestination>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_format_conversion_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_partitioning_configuration: Option<DynamicPartitioning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_extension: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
        self.buffering_hints.check(&format!("{member}.bufferingHints"), 128)?;
        if let Some(p) = &self.processing_configuration {
            p.check(member)?;
        }
        match (self.s3_backup_mode.as_deref(), &self.s3_backup_configuration) {
            (None | Some("Disabled"), _) => {}
            (Some("Enabled"), Some(backup)) => backup.check(&format!("{member}.s3BackupConfiguration"))?,
            (Some("Enabled"), None) => return Err("S3BackupMode Enabled needs an S3BackupConfiguration.".into()),
            (Some(other), _) => {
                return Err(violation(
                    other,
                    &format!("{member}.s3BackupMode"),
                    "satisfy enum value set: [Disabled, Enabled]",
                ))
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
        if self.conversion()?.is_some() && self.compression_format != Compression::Uncompressed {
            return Err("CompressionFormat must be UNCOMPRESSED when format conversion is enabled (Parquet compresses inside the file: ParquetSerDe.Compression).".into());
        }
        let partitioning = self.dynamic_partitioning_configuration.as_ref().is_some_and(|d| d.enabled);
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
        if let Some(engine) = self.processing_configuration.as_ref().and_then(|p| {
            p.processors.iter().find(|x| x.kind == "MetadataExtraction").and_then(|x| x.parameter("JsonParsingEngine"))
        }) {
            if engine != "JQ-1.6" {
                return Err(format!("JsonParsingEngine '{engine}' is not JQ-1.6."));
            }
        }
        Ok(())
    }

    /// The bucket that gets every record as it arrived (`S3BackupMode` `Enabled`).
    pub fn source_backup(&self) -> Option<&BucketDestination> {
        self.s3_backup_configuration.as_deref().filter(|_| self.s3_backup_mode.as_deref() == Some("Enabled"))
    }

    /// Format conversion, if enabled: the table its schema comes from and the Parquet
    /// compression. ORC output is refused.
    pub fn conversion(&self) -> Result<Option<Conversion>, String> {
        let Some(c) = &self.data_format_conversion_configuration else { return Ok(None) };
        if c.get("Enabled").and_then(serde_json::Value::as_bool) == Some(false) {
            return Ok(None);
        }
        let text = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_str).map(str::to_string);
        let schema = c.get("SchemaConfiguration");
        let database = text(schema.and_then(|s| s.get("DatabaseName")))
            .ok_or("DataFormatConversionConfiguration.SchemaConfiguration.DatabaseName is required.")?;
        let table = text(schema.and_then(|s| s.get("TableName")))
            .ok_or("DataFormatConversionConfiguration.SchemaConfiguration.TableName is required.")?;
        let serializer = c.get("OutputFormatConfiguration").and_then(|o| o.get("Serializer"));
        if serializer.and_then(|s| s.get("OrcSerDe")).is_some() {
            return Err("ORC output (OrcSerDe) is not supported by Kinescope; use ParquetSerDe.".into());
        }
        let compression = text(serializer.and_then(|s| s.get("ParquetSerDe")).and_then(|p| p.get("Compression")));
        Ok(Some(Conversion { database, table, compression }))
    }

    /// The JQ query of dynamic partitioning, if it is enabled with MetadataExtraction.
    pub fn partition_query(&self) -> Option<&str> {
        if !self.dynamic_partitioning_configuration.as_ref().is_some_and(|d| d.enabled) {
            return None;
        }
        self.processing_configuration
            .as_ref()
            .filter(|p| p.enabled)?
            .processors
            .iter()
            .find(|p| p.kind == "MetadataExtraction")?
            .parameter("MetadataExtractionQuery")
    }

    /// The settings of an update merged into these: members the update names replace
    /// ours, the rest stay (Firehose merges updates of the same destination type).
    pub fn merged(&self, update: &serde_json::Value) -> Result<Self, String> {
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let (Some(cur), Some(upd)) = (current.as_object_mut(), update.as_object()) {
            for (k, v) in upd {
                if k == "S3BackupUpdate" {
                    let merged = match &self.s3_backup_configuration {
                        Some(b) => b.merged(v)?,
                        None => serde_json::from_value(v.clone()).map_err(|e| format!("S3BackupUpdate: {e}"))?,
                    };
                    cur.insert(
                        "S3BackupConfiguration".into(),
                        serde_json::to_value(merged).map_err(|e| e.to_string())?,
                    );
                    continue;
                }
                cur.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(current)
            .map_err(|e| format!("The update is not a valid ExtendedS3DestinationUpdate: {e}"))
    }
}

/// Where a converting destination's schema comes from, and its Parquet compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub database: String,
    pub table: String,
    pub compression: Option<String>,
}

/// `HttpEndpointDestinationConfiguration`: batches POSTed to an HTTP endpoint in
/// Firehose's request format, with a bucket for failed (or all) data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpDestination {
    pub endpoint_configuration: HttpEndpoint,
    #[serde(default)]
    pub buffering_hints: BufferingHints,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_configuration: Option<HttpRequestConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_configuration: Option<ProcessingConfiguration>,
    #[serde(default, rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_options: Option<RetryOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_backup_mode: Option<String>,
    pub s3_configuration: BucketDestination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch_logging_options: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpEndpoint {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HttpRequestConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_attributes: Vec<HttpAttribute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpAttribute {
    pub attribute_name: String,
    pub attribute_value: String,
}

impl HttpDestination {
    pub fn retry_secs(&self) -> u32 {
        self.retry_options.as_ref().and_then(|r| r.duration_in_seconds).unwrap_or(DEFAULT_HTTP_RETRY_SECS)
    }

    pub fn gzip(&self) -> bool {
        self.request_configuration.as_ref().and_then(|r| r.content_encoding.as_deref()) == Some("GZIP")
    }

    /// Whether every batch is also written to the bucket (`AllData`), not only failed ones.
    pub fn backs_up_all(&self) -> bool {
        self.s3_backup_mode.as_deref() == Some("AllData")
    }

    pub fn check(&self, member: &str, allow_plain_http: bool) -> Result<(), String> {
        let url = &self.endpoint_configuration.url;
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
        self.buffering_hints.check(&format!("{member}.bufferingHints"), 64)?;
        if let Some(r) = &self.retry_options {
            if r.duration_in_seconds.is_some_and(|d| d > 7200) {
                return Err(violation(
                    r.duration_in_seconds.unwrap_or(0),
                    &format!("{member}.retryOptions.durationInSeconds"),
                    "have value between 0 and 7200",
                ));
            }
        }
        if let Some(r) = &self.request_configuration {
            if let Some(e) = &r.content_encoding {
                if e != "NONE" && e != "GZIP" {
                    return Err(violation(
                        e,
                        &format!("{member}.requestConfiguration.contentEncoding"),
                        "satisfy enum value set: [NONE, GZIP]",
                    ));
                }
            }
            if r.common_attributes.len() > 50 {
                return Err(format!("{member}.requestConfiguration.commonAttributes holds at most 50 attributes."));
            }
        }
        if let Some(p) = &self.processing_configuration {
            p.check(member)?;
        }
        if let Some(m) = &self.s3_backup_mode {
            if m != "FailedDataOnly" && m != "AllData" {
                return Err(violation(
                    m,
                    &format!("{member}.s3BackupMode"),
                    "satisfy enum value set: [FailedDataOnly, AllData]",
                ));
            }
        }
        self.s3_configuration.check(&format!("{member}.s3Configuration"))
    }

    pub fn merged(&self, update: &serde_json::Value) -> Result<Self, String> {
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let (Some(cur), Some(upd)) = (current.as_object_mut(), update.as_object()) {
            for (k, v) in upd {
                match k.as_str() {
                    "S3Update" => {
                        let s3 = self.s3_configuration.merged(v)?;
                        cur.insert("S3Configuration".into(), serde_json::to_value(s3).map_err(|e| e.to_string())?);
                    }
                    _ => {
                        cur.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        serde_json::from_value(current)
            .map_err(|e| format!("The update is not a valid HttpEndpointDestinationUpdate: {e}"))
    }
}

/// The one destination of a stream (one per stream, never in a hot collection: the
/// size difference between the variants does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Destination {
    ExtendedS3(BucketDestination),
    HttpEndpoint(HttpDestination),
}

impl Destination {
    pub fn buffering(&self) -> BufferingHints {
        match self {
            Destination::ExtendedS3(d) => d.buffering_hints,
            Destination::HttpEndpoint(d) => d.buffering_hints,
        }
    }

    pub fn processors(&self) -> &[Processor] {
        let p = match self {
            Destination::ExtendedS3(d) => d.processing_configuration.as_ref(),
            Destination::HttpEndpoint(d) => d.processing_configuration.as_ref(),
        };
        p.map_or(&[], ProcessingConfiguration::active)
    }

    /// The bucket this destination writes (its data, or an HTTP endpoint's backup).
    pub fn bucket(&self) -> &BucketDestination {
        match self {
            Destination::ExtendedS3(d) => d,
            Destination::HttpEndpoint(d) => &d.s3_configuration,
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
        assert_eq!(b.buffering_hints.size_bytes(), 5 * MIB);
        assert_eq!(b.buffering_hints.interval_ms(), 300_000);
        b.buffering_hints.size_in_m_bs = Some(129);
        assert!(b.check("x").unwrap_err().contains("between 1 and 128"));
        b.buffering_hints = BufferingHints { size_in_m_bs: Some(1), interval_in_seconds: Some(901) };
        assert!(b.check("x").unwrap_err().contains("between 0 and 900"));
    }

    #[test]
    fn an_update_merges_into_the_settings() {
        let b = bucket();
        let merged = b.merged(&serde_json::json!({"Prefix": "events/", "CompressionFormat": "GZIP"})).unwrap();
        assert_eq!(merged.prefix.as_deref(), Some("events/"));
        assert_eq!(merged.compression_format, Compression::Gzip);
        assert_eq!(merged.bucket_arn, b.bucket_arn);
        assert!(b.merged(&serde_json::json!({"CompressionFormat": "LZ4"})).is_err());
    }

    #[test]
    fn unsupported_processing_is_refused_with_a_reason() {
        let mut b = bucket();
        b.processing_configuration = Some(ProcessingConfiguration {
            enabled: true,
            processors: vec![Processor { kind: "Decompression".into(), parameters: vec![] }],
        });
        assert!(b.check("x").unwrap_err().contains("not supported by Kinescope yet"));
        b.processing_configuration.as_mut().unwrap().processors[0].kind = "Nope".into();
        assert!(b.check("x").unwrap_err().contains("enum value set"));
    }
}
