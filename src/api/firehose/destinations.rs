//! Firehose's destination members as the wire carries them: the configurations Create
//! reads, the updates UpdateDestination merges, and the descriptions Describe writes,
//! each turned into (or made from) the engine's
//! [`crate::delivery_streams::settings`] here and nowhere else.
//!
//! One shape serves a configuration and an update of the same destination: every member
//! is optional on the wire, and Create requires what the model requires. An update
//! replaces each member it names and keeps the rest (`S3BackupUpdate` and `S3Update`
//! merge into the backup bucket and the endpoint's bucket the same way).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::invalid;
use crate::api::error::ApiError;
use crate::delivery_streams::settings::{
    violation, BucketDestination, BufferingHints, Compression, Destination, EndpointBackup, ErrorLogging,
    FormatConversion, HttpDestination, HttpEndpoint, JsonReader, ObjectEncryption, ParquetWriter, Partitioning,
    Processing, Processor, ProcessorParameter, SourceBackup, TableRef,
};

/// `BufferingHints`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Hints {
    #[serde(skip_serializing_if = "Option::is_none")]
    size_in_m_bs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_in_seconds: Option<u32>,
}

impl From<Hints> for BufferingHints {
    fn from(h: Hints) -> Self {
        BufferingHints { size_mib: h.size_in_m_bs, interval_secs: h.interval_in_seconds }
    }
}

impl From<BufferingHints> for Hints {
    fn from(h: BufferingHints) -> Self {
        Hints { size_in_m_bs: h.size_mib, interval_in_seconds: h.interval_secs }
    }
}

/// `ProcessingConfiguration`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessingShape {
    #[serde(default)]
    enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    processors: Vec<ProcessorShape>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorShape {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parameters: Vec<ParameterShape>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParameterShape {
    parameter_name: String,
    parameter_value: String,
}

impl From<ProcessingShape> for Processing {
    fn from(p: ProcessingShape) -> Self {
        let processors = p
            .processors
            .into_iter()
            .map(|x| Processor {
                kind: x.kind,
                parameters: x
                    .parameters
                    .into_iter()
                    .map(|q| ProcessorParameter { name: q.parameter_name, value: q.parameter_value })
                    .collect(),
            })
            .collect();
        Processing { enabled: p.enabled, processors }
    }
}

impl From<&Processing> for ProcessingShape {
    fn from(p: &Processing) -> Self {
        let processors = p
            .processors
            .iter()
            .map(|x| ProcessorShape {
                kind: x.kind.clone(),
                parameters: x
                    .parameters
                    .iter()
                    .map(|q| ParameterShape { parameter_name: q.name.clone(), parameter_value: q.value.clone() })
                    .collect(),
            })
            .collect();
        ProcessingShape { enabled: p.enabled, processors }
    }
}

/// `EncryptionConfiguration` of a bucket destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptionShape {
    #[serde(rename = "NoEncryptionConfig", default, skip_serializing_if = "Option::is_none")]
    no_encryption: Option<String>,
    #[serde(rename = "KMSEncryptionConfig", default, skip_serializing_if = "Option::is_none")]
    kms: Option<KmsShape>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KmsShape {
    #[serde(rename = "AWSKMSKeyARN")]
    key_arn: String,
}

impl From<EncryptionShape> for ObjectEncryption {
    fn from(e: EncryptionShape) -> Self {
        match e.kms {
            Some(k) => ObjectEncryption::Kms { key_arn: k.key_arn },
            None => ObjectEncryption::None,
        }
    }
}

impl From<&ObjectEncryption> for EncryptionShape {
    fn from(e: &ObjectEncryption) -> Self {
        match e {
            ObjectEncryption::None => EncryptionShape { no_encryption: Some("NoEncryption".into()), kms: None },
            ObjectEncryption::Kms { key_arn } => {
                EncryptionShape { no_encryption: None, kms: Some(KmsShape { key_arn: key_arn.clone() }) }
            }
        }
    }
}

/// `CloudWatchLoggingOptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingShape {
    #[serde(default)]
    enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_stream_name: Option<String>,
}

impl From<LoggingShape> for ErrorLogging {
    fn from(l: LoggingShape) -> Self {
        ErrorLogging { enabled: l.enabled, log_group: l.log_group_name, log_stream: l.log_stream_name }
    }
}

impl From<&ErrorLogging> for LoggingShape {
    fn from(l: &ErrorLogging) -> Self {
        LoggingShape { enabled: l.enabled, log_group_name: l.log_group.clone(), log_stream_name: l.log_stream.clone() }
    }
}

/// `DynamicPartitioningConfiguration`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitioningShape {
    #[serde(default)]
    enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_options: Option<RetryShape>,
}

/// `RetryOptions`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetryShape {
    duration_in_seconds: Option<u32>,
}

/// `DataFormatConversionConfiguration` (Parquet output; ORC is refused).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConversionShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema_configuration: Option<SchemaShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_format_configuration: Option<InputShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_format_configuration: Option<OutputShape>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SchemaShape {
    #[serde(rename = "RoleARN", default, skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    catalog_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InputShape {
    #[serde(default)]
    deserializer: DeserializerShape,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeserializerShape {
    #[serde(rename = "OpenXJsonSerDe", default, skip_serializing_if = "Option::is_none")]
    open_x: Option<OpenXShape>,
    #[serde(rename = "HiveJsonSerDe", default, skip_serializing_if = "Option::is_none")]
    hive: Option<HiveShape>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenXShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    convert_dots_in_json_keys_to_underscores: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    case_insensitive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    column_to_json_key_mappings: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HiveShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp_formats: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OutputShape {
    #[serde(default)]
    serializer: SerializerShape,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SerializerShape {
    #[serde(rename = "ParquetSerDe", default, skip_serializing_if = "Option::is_none")]
    parquet: Option<ParquetShape>,
    /// Only noticed, to be refused.
    #[serde(rename = "OrcSerDe", default, skip_serializing)]
    orc: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParquetShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    block_size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page_size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enable_dictionary_compression: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_padding_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer_version: Option<String>,
}

impl ConversionShape {
    fn into_settings(self) -> Result<FormatConversion, ApiError> {
        let serializer = self.output_format_configuration.map(|o| o.serializer).unwrap_or_default();
        if serializer.orc.is_some() {
            return Err(invalid("ORC output (OrcSerDe) is not supported by Kinescope; use ParquetSerDe."));
        }
        let s = self.schema_configuration.unwrap_or_default();
        let reader = self.input_format_configuration.and_then(|i| match (i.deserializer.open_x, i.deserializer.hive) {
            (Some(o), _) => Some(JsonReader::OpenX {
                convert_dots_to_underscores: o.convert_dots_in_json_keys_to_underscores,
                case_insensitive: o.case_insensitive,
                column_keys: o.column_to_json_key_mappings,
            }),
            (None, Some(h)) => Some(JsonReader::Hive { timestamp_formats: h.timestamp_formats }),
            (None, None) => None,
        });
        let writer = serializer.parquet.map(|p| ParquetWriter {
            compression: p.compression,
            block_size_bytes: p.block_size_bytes,
            page_size_bytes: p.page_size_bytes,
            enable_dictionary_compression: p.enable_dictionary_compression,
            max_padding_bytes: p.max_padding_bytes,
            writer_version: p.writer_version,
        });
        Ok(FormatConversion {
            enabled: self.enabled.unwrap_or(true),
            schema: TableRef {
                database: s.database_name,
                table: s.table_name,
                role_arn: s.role_arn,
                catalog_id: s.catalog_id,
                region: s.region,
                version_id: s.version_id,
            },
            reader,
            writer,
        })
    }

    fn describe(c: &FormatConversion) -> Self {
        let t = &c.schema;
        let deserializer = match &c.reader {
            Some(JsonReader::OpenX { convert_dots_to_underscores, case_insensitive, column_keys }) => {
                DeserializerShape {
                    open_x: Some(OpenXShape {
                        convert_dots_in_json_keys_to_underscores: *convert_dots_to_underscores,
                        case_insensitive: *case_insensitive,
                        column_to_json_key_mappings: column_keys.clone(),
                    }),
                    hive: None,
                }
            }
            Some(JsonReader::Hive { timestamp_formats }) => DeserializerShape {
                open_x: None,
                hive: Some(HiveShape { timestamp_formats: timestamp_formats.clone() }),
            },
            None => DeserializerShape::default(),
        };
        let parquet = c.writer.as_ref().map(|w| ParquetShape {
            block_size_bytes: w.block_size_bytes,
            page_size_bytes: w.page_size_bytes,
            compression: w.compression.clone(),
            enable_dictionary_compression: w.enable_dictionary_compression,
            max_padding_bytes: w.max_padding_bytes,
            writer_version: w.writer_version.clone(),
        });
        ConversionShape {
            enabled: Some(c.enabled),
            schema_configuration: Some(SchemaShape {
                role_arn: t.role_arn.clone(),
                catalog_id: t.catalog_id.clone(),
                database_name: t.database.clone(),
                table_name: t.table.clone(),
                region: t.region.clone(),
                version_id: t.version_id.clone(),
            }),
            input_format_configuration: c.reader.as_ref().map(|_| InputShape { deserializer }),
            output_format_configuration: parquet
                .map(|p| OutputShape { serializer: SerializerShape { parquet: Some(p), orc: None } }),
        }
    }
}

/// A bucket destination's members: `ExtendedS3DestinationConfiguration` (and the
/// deprecated `S3DestinationConfiguration`, its subset), `S3BackupConfiguration`, an
/// HTTP endpoint's `S3Configuration`, the `*Update` of each, and the descriptions
/// Describe writes of them (`S3BackupDescription` for the backup).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BucketFields {
    #[serde(rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(rename = "BucketARN", skip_serializing_if = "Option::is_none")]
    bucket_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_output_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buffering_hints: Option<Hints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_configuration: Option<EncryptionShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_watch_logging_options: Option<LoggingShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processing_configuration: Option<ProcessingShape>,
    #[serde(rename = "S3BackupMode", skip_serializing_if = "Option::is_none")]
    s3_backup_mode: Option<String>,
    #[serde(
        rename(serialize = "S3BackupDescription", deserialize = "S3BackupConfiguration"),
        alias = "S3BackupUpdate",
        skip_serializing_if = "Option::is_none"
    )]
    s3_backup_configuration: Option<Box<BucketFields>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_format_conversion_configuration: Option<ConversionShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dynamic_partitioning_configuration: Option<PartitioningShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_extension: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_time_zone: Option<String>,
}

impl BucketFields {
    /// A new bucket destination (`member` names it in messages).
    pub fn into_new(self, member: &str) -> Result<BucketDestination, ApiError> {
        if self.role_arn.is_none() || self.bucket_arn.is_none() {
            return Err(invalid(format!("{member}: RoleARN and BucketARN are required.")));
        }
        self.merge_into(BucketDestination::default(), member)
    }

    /// `current` with every member these fields name replaced.
    pub fn merge_into(self, mut b: BucketDestination, member: &str) -> Result<BucketDestination, ApiError> {
        if let Some(v) = self.role_arn {
            b.role_arn = v;
        }
        if let Some(v) = self.bucket_arn {
            b.bucket_arn = v;
        }
        if let Some(v) = self.prefix {
            b.prefix = Some(v);
        }
        if let Some(v) = self.error_output_prefix {
            b.error_output_prefix = Some(v);
        }
        if let Some(v) = self.buffering_hints {
            b.buffering = v.into();
        }
        if let Some(v) = self.compression_format {
            b.compression = compression(&v, member)?;
        }
        if let Some(v) = self.encryption_configuration {
            b.encryption = Some(v.into());
        }
        if let Some(v) = self.cloud_watch_logging_options {
            b.error_logging = Some(v.into());
        }
        if let Some(v) = self.processing_configuration {
            b.processing = Some(v.into());
        }
        if let Some(v) = self.s3_backup_mode {
            let modes = [("Disabled", SourceBackup::Disabled), ("Enabled", SourceBackup::Enabled)];
            b.source_backup_mode = Some(one_of(&v, &format!("{member}.s3BackupMode"), &modes)?);
        }
        if let Some(v) = self.s3_backup_configuration {
            let current = b.source_backup_bucket.take().map(|x| *x).unwrap_or_default();
            b.source_backup_bucket = Some(Box::new(v.merge_into(current, &format!("{member}.s3BackupConfiguration"))?));
        }
        if let Some(v) = self.data_format_conversion_configuration {
            b.conversion = Some(v.into_settings()?);
        }
        if let Some(v) = self.dynamic_partitioning_configuration {
            b.partitioning = Some(Partitioning {
                enabled: v.enabled,
                retry_secs: v.retry_options.and_then(|r| r.duration_in_seconds),
            });
        }
        if let Some(v) = self.file_extension {
            b.file_extension = Some(v);
        }
        if let Some(v) = self.custom_time_zone {
            b.custom_time_zone = Some(v);
        }
        Ok(b)
    }
}

/// `CompressionFormat`'s values, as the wire names them.
const COMPRESSIONS: [(&str, Compression); 5] = [
    ("UNCOMPRESSED", Compression::Uncompressed),
    ("GZIP", Compression::Gzip),
    ("ZIP", Compression::Zip),
    ("Snappy", Compression::Snappy),
    ("HADOOP_SNAPPY", Compression::HadoopSnappy),
];

fn compression(v: &str, member: &str) -> Result<Compression, ApiError> {
    one_of(v, &format!("{member}.compressionFormat"), &COMPRESSIONS)
}

fn compression_name(c: Compression) -> &'static str {
    COMPRESSIONS.iter().find(|(_, x)| *x == c).map_or("UNCOMPRESSED", |(name, _)| name)
}

/// The value an enum member names, or the model's validation error listing the choices.
fn one_of<T: Copy>(v: &str, member: &str, choices: &[(&str, T)]) -> Result<T, ApiError> {
    match choices.iter().find(|(name, _)| *name == v) {
        Some((_, value)) => Ok(*value),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(invalid(violation(v, member, &format!("satisfy enum value set: [{}]", names.join(", ")))))
        }
    }
}

/// `HttpEndpointDestinationConfiguration`, `HttpEndpointDestinationUpdate`, and the
/// `HttpEndpointDestinationDescription` Describe writes (never the access key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_configuration: Option<EndpointShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buffering_hints: Option<Hints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_configuration: Option<RequestShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processing_configuration: Option<ProcessingShape>,
    #[serde(rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_options: Option<RetryShape>,
    #[serde(rename = "S3BackupMode", skip_serializing_if = "Option::is_none")]
    s3_backup_mode: Option<String>,
    #[serde(
        rename(serialize = "S3DestinationDescription", deserialize = "S3Configuration"),
        alias = "S3Update",
        skip_serializing_if = "Option::is_none"
    )]
    s3_configuration: Option<BucketFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_watch_logging_options: Option<LoggingShape>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointShape {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Never described: it is a secret.
    #[serde(default, skip_serializing)]
    access_key: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    common_attributes: Vec<AttributeShape>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeShape {
    attribute_name: String,
    attribute_value: String,
}

impl HttpFields {
    pub fn into_new(self, member: &str) -> Result<HttpDestination, ApiError> {
        let endpoint = self
            .endpoint_configuration
            .clone()
            .ok_or_else(|| invalid(format!("{member}: EndpointConfiguration is required.")))?;
        let bucket =
            self.s3_configuration.clone().ok_or_else(|| invalid(format!("{member}: S3Configuration is required.")))?;
        let fresh = HttpDestination {
            endpoint: HttpEndpoint { url: endpoint.url, name: endpoint.name, access_key: endpoint.access_key },
            buffering: BufferingHints::default(),
            gzip: false,
            common_attributes: Vec::new(),
            processing: None,
            role_arn: None,
            retry_secs: None,
            backup_mode: None,
            bucket: bucket.into_new(&format!("{member}.s3Configuration"))?,
            error_logging: None,
        };
        HttpFields { s3_configuration: None, ..self }.merge_into(fresh, member)
    }

    pub fn merge_into(self, mut h: HttpDestination, member: &str) -> Result<HttpDestination, ApiError> {
        if let Some(e) = self.endpoint_configuration {
            h.endpoint = HttpEndpoint { url: e.url, name: e.name, access_key: e.access_key };
        }
        if let Some(v) = self.buffering_hints {
            h.buffering = v.into();
        }
        if let Some(r) = self.request_configuration {
            let member = format!("{member}.requestConfiguration.contentEncoding");
            h.gzip =
                one_of(r.content_encoding.as_deref().unwrap_or("NONE"), &member, &[("NONE", false), ("GZIP", true)])?;
            h.common_attributes =
                r.common_attributes.into_iter().map(|a| (a.attribute_name, a.attribute_value)).collect();
        }
        if let Some(v) = self.processing_configuration {
            h.processing = Some(v.into());
        }
        if let Some(v) = self.role_arn {
            h.role_arn = Some(v);
        }
        if let Some(v) = self.retry_options {
            h.retry_secs = v.duration_in_seconds;
        }
        if let Some(v) = self.s3_backup_mode {
            let modes = [("FailedDataOnly", EndpointBackup::FailedDataOnly), ("AllData", EndpointBackup::AllData)];
            h.backup_mode = Some(one_of(&v, &format!("{member}.s3BackupMode"), &modes)?);
        }
        if let Some(v) = self.s3_configuration {
            h.bucket = v.merge_into(h.bucket, &format!("{member}.s3Configuration"))?;
        }
        if let Some(v) = self.cloud_watch_logging_options {
            h.error_logging = Some(v.into());
        }
        Ok(h)
    }
}

impl BucketFields {
    /// The full description of an extended bucket destination: defaults filled in.
    fn extended(b: &BucketDestination) -> Self {
        BucketFields {
            processing_configuration: b.processing.as_ref().map(ProcessingShape::from),
            s3_backup_mode: Some(
                match b.source_backup_mode {
                    Some(SourceBackup::Enabled) => "Enabled",
                    _ => "Disabled",
                }
                .into(),
            ),
            s3_backup_configuration: b.source_backup_bucket.as_deref().map(|x| Box::new(Self::extended(x))),
            data_format_conversion_configuration: b.conversion.as_ref().map(ConversionShape::describe),
            dynamic_partitioning_configuration: b.partitioning.as_ref().map(|p| PartitioningShape {
                enabled: p.enabled,
                retry_options: p.retry_secs.map(|d| RetryShape { duration_in_seconds: Some(d) }),
            }),
            file_extension: b.file_extension.clone(),
            custom_time_zone: b.custom_time_zone.clone(),
            ..Self::plain(b)
        }
    }

    /// The members of a plain `S3DestinationDescription`.
    fn plain(b: &BucketDestination) -> Self {
        BucketFields {
            role_arn: Some(b.role_arn.clone()),
            bucket_arn: Some(b.bucket_arn.clone()),
            prefix: b.prefix.clone(),
            error_output_prefix: b.error_output_prefix.clone(),
            buffering_hints: Some(b.buffering.filled().into()),
            compression_format: Some(compression_name(b.compression).into()),
            encryption_configuration: Some(b.encryption.as_ref().unwrap_or(&ObjectEncryption::None).into()),
            cloud_watch_logging_options: Some(b.error_logging.as_ref().map(LoggingShape::from).unwrap_or_default()),
            ..Self::default()
        }
    }
}

/// One of `Destinations` in Describe.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationDescription {
    destination_id: String,
    #[serde(rename = "ExtendedS3DestinationDescription", skip_serializing_if = "Option::is_none")]
    extended_s3: Option<BucketFields>,
    #[serde(rename = "S3DestinationDescription", skip_serializing_if = "Option::is_none")]
    s3: Option<BucketFields>,
    #[serde(rename = "HttpEndpointDestinationDescription", skip_serializing_if = "Option::is_none")]
    http_endpoint: Option<HttpFields>,
}

impl DestinationDescription {
    pub fn new(destination_id: &str, d: &Destination) -> Self {
        let none = DestinationDescription {
            destination_id: destination_id.to_string(),
            extended_s3: None,
            s3: None,
            http_endpoint: None,
        };
        match d {
            Destination::Bucket(b) => DestinationDescription {
                extended_s3: Some(BucketFields::extended(b)),
                s3: Some(BucketFields::plain(b)),
                ..none
            },
            Destination::HttpEndpoint(h) => DestinationDescription {
                http_endpoint: Some(HttpFields {
                    endpoint_configuration: Some(EndpointShape {
                        url: h.endpoint.url.clone(),
                        name: h.endpoint.name.clone(),
                        access_key: None,
                    }),
                    buffering_hints: Some(h.buffering.filled().into()),
                    request_configuration: Some(RequestShape {
                        content_encoding: Some(if h.gzip { "GZIP" } else { "NONE" }.into()),
                        common_attributes: h
                            .common_attributes
                            .iter()
                            .map(|(n, v)| AttributeShape { attribute_name: n.clone(), attribute_value: v.clone() })
                            .collect(),
                    }),
                    processing_configuration: h.processing.as_ref().map(ProcessingShape::from),
                    role_arn: h.role_arn.clone(),
                    retry_options: Some(RetryShape { duration_in_seconds: Some(h.retry_secs()) }),
                    s3_backup_mode: Some(if h.backs_up_all() { "AllData" } else { "FailedDataOnly" }.into()),
                    s3_configuration: Some(BucketFields::extended(&h.bucket)),
                    cloud_watch_logging_options: h.error_logging.as_ref().map(LoggingShape::from),
                }),
                ..none
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_configuration_is_described_back_with_its_defaults_filled() {
        let given = json!({
            "RoleARN": "arn:aws:iam::123456789012:role/f", "BucketARN": "arn:aws:s3:::frames",
            "Prefix": "cams/", "CompressionFormat": "GZIP",
            "ProcessingConfiguration": {"Enabled": true, "Processors": [
                {"Type": "AppendDelimiterToRecord", "Parameters": [{"ParameterName": "Delimiter", "ParameterValue": "\\n"}]}]},
            "DataFormatConversionConfiguration": {"Enabled": false,
                "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {}}},
                "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}},
                "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t"}},
            "S3BackupMode": "Enabled",
            "S3BackupConfiguration": {"RoleARN": "arn:aws:iam::123456789012:role/f", "BucketARN": "arn:aws:s3:::raw"},
            "UnknownMember": 1,
        });
        let b = fields::<BucketFields>(given.clone()).into_new("ExtendedS3DestinationConfiguration").unwrap();
        assert_eq!(b.compression, Compression::Gzip);
        let described = serde_json::to_value(DestinationDescription::new("d-1", &Destination::Bucket(b))).unwrap();
        let ext = &described["ExtendedS3DestinationDescription"];
        for member in ["RoleARN", "BucketARN", "Prefix", "CompressionFormat", "ProcessingConfiguration"] {
            assert_eq!(ext[member], given[member], "{member}");
        }
        assert_eq!(ext["DataFormatConversionConfiguration"], given["DataFormatConversionConfiguration"]);
        assert_eq!(ext["BufferingHints"], json!({"SizeInMBs": 5, "IntervalInSeconds": 300}));
        assert_eq!(ext["EncryptionConfiguration"], json!({"NoEncryptionConfig": "NoEncryption"}));
        assert_eq!(ext["CloudWatchLoggingOptions"], json!({"Enabled": false}));
        assert_eq!(ext["S3BackupMode"], "Enabled");
        assert_eq!(ext["S3BackupDescription"]["BucketARN"], "arn:aws:s3:::raw");
        assert_eq!(described["S3DestinationDescription"]["BucketARN"], "arn:aws:s3:::frames");
        assert!(described["S3DestinationDescription"].get("S3BackupMode").is_none());
        assert_eq!(described["DestinationId"], "d-1");
    }

    #[test]
    fn an_update_replaces_what_it_names_and_keeps_the_rest() {
        let b = fields::<BucketFields>(json!({"RoleARN": "arn:aws:iam::1:role/f", "BucketARN": "arn:aws:s3:::a",
            "Prefix": "old/", "BufferingHints": {"SizeInMBs": 9}}))
        .into_new("x")
        .unwrap();
        let merged = fields::<BucketFields>(json!({"Prefix": "new/", "CompressionFormat": "ZIP",
            "S3BackupUpdate": {"RoleARN": "arn:aws:iam::1:role/f", "BucketARN": "arn:aws:s3:::b"}}))
        .merge_into(b.clone(), "x")
        .unwrap();
        assert_eq!((merged.prefix.as_deref(), merged.compression), (Some("new/"), Compression::Zip));
        assert_eq!((merged.bucket_arn.as_str(), merged.buffering.size_mib), ("arn:aws:s3:::a", Some(9)));
        assert_eq!(merged.source_backup_bucket.as_ref().map(|x| x.bucket_arn.as_str()), Some("arn:aws:s3:::b"));
        let bad = fields::<BucketFields>(json!({"CompressionFormat": "LZ4"})).merge_into(b.clone(), "x").unwrap_err();
        assert!(
            bad.message.contains("enum value set") && bad.message.contains("x.compressionFormat"),
            "{}",
            bad.message
        );
        let bad = fields::<BucketFields>(json!({"S3BackupMode": "Sometimes"})).merge_into(b, "x").unwrap_err();
        assert!(bad.message.contains("[Disabled, Enabled]"), "{}", bad.message);
        assert!(
            fields::<BucketFields>(json!({"Prefix": "p/"})).into_new("x").is_err(),
            "RoleARN and BucketARN required"
        );
    }

    #[test]
    fn an_endpoint_is_described_without_its_access_key() {
        let h = fields::<HttpFields>(json!({
            "EndpointConfiguration": {"Url": "https://example.com/in", "Name": "hook", "AccessKey": "s3cret"},
            "RequestConfiguration": {"ContentEncoding": "GZIP",
                "CommonAttributes": [{"AttributeName": "cam", "AttributeValue": "door"}]},
            "S3BackupMode": "AllData",
            "S3Configuration": {"RoleARN": "arn:aws:iam::1:role/f", "BucketARN": "arn:aws:s3:::failed"},
        }))
        .into_new("HttpEndpointDestinationConfiguration")
        .unwrap();
        assert_eq!(h.endpoint.access_key.as_deref(), Some("s3cret"));
        assert!(h.gzip && h.backs_up_all());
        let text =
            serde_json::to_string(&DestinationDescription::new("d-1", &Destination::HttpEndpoint(h.clone()))).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let d: serde_json::Value = serde_json::from_str(&text).unwrap();
        let e = &d["HttpEndpointDestinationDescription"];
        assert_eq!(e["EndpointConfiguration"], json!({"Url": "https://example.com/in", "Name": "hook"}));
        assert_eq!(e["RequestConfiguration"]["CommonAttributes"][0]["AttributeValue"], "door");
        assert_eq!(
            (e["S3BackupMode"].as_str(), e["RetryOptions"]["DurationInSeconds"].as_u64()),
            (Some("AllData"), Some(300))
        );
        assert_eq!(e["S3DestinationDescription"]["BucketARN"], "arn:aws:s3:::failed");
        let updated =
            fields::<HttpFields>(json!({"S3Update": {"Prefix": "f/"}, "RetryOptions": {"DurationInSeconds": 60}}))
                .merge_into(h, "u")
                .unwrap();
        assert_eq!((updated.bucket.prefix.as_deref(), updated.retry_secs()), (Some("f/"), 60));
        assert_eq!(
            updated.endpoint.access_key.as_deref(),
            Some("s3cret"),
            "kept across an update that does not name it"
        );
    }
}
