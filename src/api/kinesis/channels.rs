//! Channels: CreateChannel, DescribeChannel, UpdateChannel, DeleteChannel, ListChannels,
//! over [`crate::stream_channels::ChannelEngine`]. S3 destinations are delivered; S3
//! Tables destinations are refused with a clear error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{invalid, ts, violation, KinesisState};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::api::shapes::Timestamp;
use crate::stream_channels::{
    BucketTarget, ChannelChange, ChannelCompression, ChannelRecord, DeadLetterBucket, Logging, NewChannel,
    RecordFormat, DEFAULT_DATA_FRESHNESS_S,
};

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct RecordConfiguration {
    record_format_type: String,
    #[serde(rename = "GSRSchemaARN", skip_serializing_if = "Option::is_none")]
    gsr_schema_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamConfigurationIn {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    record_configuration: RecordConfiguration,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterConfig {
    #[serde(rename = "BucketARN")]
    bucket_arn: String,
    expected_bucket_owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_output_prefix: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StorageConfig {
    #[serde(rename = "BucketARN")]
    bucket_arn: String,
    expected_bucket_owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_key_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_class: Option<String>,
    compression_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3DestinationIn {
    data_freshness_in_seconds: Option<i64>,
    dead_letter_queue_s3_configuration: Option<DeadLetterConfig>,
    storage_configuration: StorageConfig,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionConfig {
    encryption_type: String,
    key_id: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloudWatchLogs {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_stream_name: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingConfig {
    cloud_watch_logs: CloudWatchLogs,
}

impl LoggingConfig {
    fn parse(self) -> Logging {
        let c = self.cloud_watch_logs;
        Logging { enabled: c.enabled, log_group_name: c.log_group_name, log_stream_name: c.log_stream_name }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateChannelInput {
    channel_name: String,
    #[serde(rename = "ServiceExecutionRoleARN")]
    service_execution_role_arn: String,
    stream_configuration_list: Vec<StreamConfigurationIn>,
    s3_destination_configuration: Option<S3DestinationIn>,
    s3_tables_destination_configuration: Option<serde_json::Value>,
    encryption_configuration: Option<EncryptionConfig>,
    tags: Option<BTreeMap<String, String>>,
    logging_configuration: Option<LoggingConfig>,
}

fn freshness(v: Option<i64>) -> Result<Option<u32>, ApiError> {
    v.map(|n| {
        u32::try_from(n).map_err(|_| violation(n, "dataFreshnessInSeconds", "have value greater than or equal to 0"))
    })
    .transpose()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamConfigurationOut {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_creation_timestamp: f64,
    record_configuration: RecordConfiguration,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3DestinationOut {
    data_freshness_in_seconds: u32,
    dead_letter_queue_s3_configuration: DeadLetterConfig,
    storage_configuration: StorageConfig,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelDescription {
    channel_name: String,
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    channel_id: String,
    channel_status: &'static str,
    channel_creation_timestamp: f64,
    #[serde(rename = "ServiceExecutionRoleARN")]
    service_execution_role_arn: String,
    stream_configuration_list: Vec<StreamConfigurationOut>,
    s3_destination_configuration: S3DestinationOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_configuration: Option<EncryptionConfig>,
    logging_configuration: LoggingConfig,
}

impl ChannelDescription {
    /// Changes complete at once; the call that started one still answers CREATING or
    /// UPDATING, as AWS's does.
    fn of(r: ChannelRecord, status: &'static str) -> Self {
        let d = &r.destination;
        let dead_letter = d.dead_letter.clone().unwrap_or_else(|| DeadLetterBucket {
            bucket_arn: d.bucket_arn.clone(),
            expected_bucket_owner: d.expected_bucket_owner.clone(),
            error_output_prefix: None,
        });
        ChannelDescription {
            channel_arn: r.arn(),
            channel_id: r.id.clone(),
            channel_status: status,
            channel_creation_timestamp: ts(r.created_ms),
            service_execution_role_arn: r.role_arn.clone(),
            stream_configuration_list: vec![StreamConfigurationOut {
                stream_arn: r.stream_arn(),
                stream_creation_timestamp: ts(r.stream_created_ms),
                record_configuration: RecordConfiguration {
                    record_format_type: r.record_format.as_str().into(),
                    gsr_schema_arn: None,
                },
            }],
            s3_destination_configuration: S3DestinationOut {
                data_freshness_in_seconds: d.data_freshness_s,
                dead_letter_queue_s3_configuration: DeadLetterConfig {
                    bucket_arn: dead_letter.bucket_arn,
                    expected_bucket_owner: dead_letter.expected_bucket_owner,
                    error_output_prefix: dead_letter.error_output_prefix,
                },
                storage_configuration: StorageConfig {
                    bucket_arn: d.bucket_arn.clone(),
                    expected_bucket_owner: d.expected_bucket_owner.clone(),
                    output_key_template: d.output_key_template.clone(),
                    storage_class: d.storage_class.clone(),
                    compression_type: d.compression.as_str().into(),
                },
            },
            encryption_configuration: r
                .encryption
                .clone()
                .map(|(encryption_type, key_id)| EncryptionConfig { encryption_type, key_id }),
            logging_configuration: LoggingConfig {
                cloud_watch_logs: CloudWatchLogs {
                    enabled: r.logging.enabled,
                    log_group_name: r.logging.log_group_name.clone(),
                    log_stream_name: r.logging.log_stream_name.clone(),
                },
            },
            channel_name: r.name,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelDescriptionOutput {
    channel_description: ChannelDescription,
}

pub async fn create_channel(s: KinesisState, i: CreateChannelInput) -> Result<ChannelDescriptionOutput, ApiError> {
    if i.s3_tables_destination_configuration.is_some() {
        return Err(invalid(
            "S3TablesDestinationConfiguration is not supported by Kinescope: channels deliver to S3 buckets (S3DestinationConfiguration).",
        ));
    }
    let dest = i
        .s3_destination_configuration
        .ok_or_else(|| invalid("S3DestinationConfiguration is required (S3 Tables destinations are not supported)."))?;
    let [config] = <[StreamConfigurationIn; 1]>::try_from(i.stream_configuration_list).map_err(|list| {
        invalid(format!("StreamConfigurationList must name exactly one stream; it names {}.", list.len()))
    })?;
    let stream = s.stream_by_arn(&config.stream_arn)?;
    let record_format = RecordFormat::parse(&config.record_configuration.record_format_type)?;
    if config.record_configuration.gsr_schema_arn.is_some() {
        return Err(invalid("GSRSchemaARN is for S3 Tables destinations."));
    }
    let storage = dest.storage_configuration;
    if let Some(class) = storage.storage_class.as_deref() {
        if !matches!(class, "STANDARD" | "INTELLIGENT_TIERING" | "GLACIER_IR") {
            return Err(violation(
                class,
                "s3DestinationConfiguration.storageConfiguration.storageClass",
                "satisfy enum value set: [STANDARD, INTELLIGENT_TIERING, GLACIER_IR]",
            ));
        }
    }
    if let Some(e) = &i.encryption_configuration {
        if e.encryption_type != "KMS" || e.key_id.is_empty() || e.key_id.len() > 2048 {
            return Err(invalid("EncryptionConfiguration needs EncryptionType KMS and a KeyId of 1-2048 characters."));
        }
    }
    let new = NewChannel {
        name: i.channel_name,
        role_arn: i.service_execution_role_arn,
        stream,
        record_format,
        destination: BucketTarget {
            data_freshness_s: freshness(dest.data_freshness_in_seconds)?.unwrap_or(DEFAULT_DATA_FRESHNESS_S),
            bucket_arn: storage.bucket_arn,
            expected_bucket_owner: storage.expected_bucket_owner,
            output_key_template: storage.output_key_template,
            storage_class: storage.storage_class,
            compression: ChannelCompression::parse(&storage.compression_type)?,
            dead_letter: dest.dead_letter_queue_s3_configuration.map(|d| DeadLetterBucket {
                bucket_arn: d.bucket_arn,
                expected_bucket_owner: d.expected_bucket_owner,
                error_output_prefix: d.error_output_prefix,
            }),
        },
        encryption: i.encryption_configuration.map(|e| (e.encryption_type, e.key_id)),
        logging: i.logging_configuration.map(LoggingConfig::parse).unwrap_or_default(),
        tags: i.tags.unwrap_or_default(),
    };
    let record = s.channels.create(&s.scope, new)?;
    Ok(ChannelDescriptionOutput { channel_description: ChannelDescription::of(record, "CREATING") })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelArnInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
}

pub async fn describe_channel(s: KinesisState, i: ChannelArnInput) -> Result<ChannelDescriptionOutput, ApiError> {
    let record = s.channels.describe(&s.scope, &i.channel_arn)?;
    Ok(ChannelDescriptionOutput { channel_description: ChannelDescription::of(record, "ACTIVE") })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FreshnessOnly {
    data_freshness_in_seconds: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateChannelInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    s3_destination_configuration: Option<FreshnessOnly>,
    s3_tables_destination_configuration: Option<FreshnessOnly>,
    logging_configuration: Option<LoggingConfig>,
}

pub async fn update_channel(s: KinesisState, i: UpdateChannelInput) -> Result<ChannelDescriptionOutput, ApiError> {
    if i.s3_tables_destination_configuration.is_some() {
        return Err(invalid("This channel delivers to S3: update S3DestinationConfiguration."));
    }
    let change = ChannelChange {
        data_freshness_s: freshness(i.s3_destination_configuration.map(|d| d.data_freshness_in_seconds))?,
        logging: i.logging_configuration.map(LoggingConfig::parse),
    };
    let record = s.channels.update(&s.scope, &i.channel_arn, change)?;
    Ok(ChannelDescriptionOutput { channel_description: ChannelDescription::of(record, "UPDATING") })
}

pub async fn delete_channel(s: KinesisState, i: ChannelArnInput) -> Result<Empty, ApiError> {
    s.channels.delete(&s.scope, &i.channel_arn)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelStreamFilter {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_creation_timestamp: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListChannelsInput {
    stream_filter: Option<Vec<ChannelStreamFilter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelStream {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_creation_timestamp: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelSummary {
    channel_name: String,
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    channel_id: String,
    channel_status: &'static str,
    channel_creation_timestamp: f64,
    channel_destination_type: &'static str,
    streams: Vec<ChannelStream>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListChannelsOutput {
    channel_summaries: Vec<ChannelSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn list_channels(s: KinesisState, i: ListChannelsInput) -> Result<ListChannelsOutput, ApiError> {
    let limit = match i.max_results {
        Some(n) if !(1..=10_000).contains(&n) => {
            return Err(violation(n, "maxResults", "have value between 1 and 10000"))
        }
        Some(n) => (n as usize).min(100),
        None => 100,
    };
    let after: Option<(String, String)> = match &i.next_token {
        Some(t) => Some(s.open_page("ListChannels", t, true)?),
        None => None,
    };
    let mut wanted = Vec::new();
    for f in i.stream_filter.unwrap_or_default() {
        wanted.push((s.stream_by_arn(&f.stream_arn)?.name, f.stream_creation_timestamp.map(|t| t.0 / 1_000_000)));
    }
    let matching: Vec<ChannelRecord> = s
        .channels
        .list(&s.scope, None)
        .into_iter()
        .filter(|r| {
            wanted.is_empty()
                || wanted
                    .iter()
                    .any(|(n, created)| r.stream == *n && created.is_none_or(|c| c == r.stream_created_ms / 1000))
        })
        .filter(|r| after.as_ref().is_none_or(|(n, id)| (&r.name, &r.id) > (n, id)))
        .collect();
    let more = matching.len() > limit;
    let page: Vec<ChannelRecord> = matching.into_iter().take(limit).collect();
    let next_token =
        page.last().filter(|_| more).map(|r| s.page_token("ListChannels", &(r.name.clone(), r.id.clone())));
    let channel_summaries = page
        .into_iter()
        .map(|r| ChannelSummary {
            channel_arn: r.arn(),
            channel_id: r.id.clone(),
            channel_status: "ACTIVE",
            channel_creation_timestamp: ts(r.created_ms),
            channel_destination_type: "S3",
            streams: vec![ChannelStream {
                stream_arn: r.stream_arn(),
                stream_creation_timestamp: ts(r.stream_created_ms),
            }],
            channel_name: r.name,
        })
        .collect();
    Ok(ListChannelsOutput { channel_summaries, next_token })
}
