//! A delivery stream's life: CreateDeliveryStream, DescribeDeliveryStream,
//! ListDeliveryStreams, DeleteDeliveryStream and UpdateDestination.

use serde::{Deserialize, Serialize};

use super::destinations::{BucketFields, DestinationDescription, HttpFields};
use super::encryption::EncryptionInput;
use super::tags::{tag_map, FirehoseTag};
use super::{invalid, page_limit, FirehoseState};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::delivery_streams::meta_store::Encryption;
use crate::delivery_streams::settings::{Destination, Source};
use crate::delivery_streams::DeliveryStreamError;

/// Destination members the model has and Kinescope does not serve.
const UNSERVED_DESTINATIONS: &[&str] = &[
    "RedshiftDestinationConfiguration",
    "ElasticsearchDestinationConfiguration",
    "AmazonopensearchserviceDestinationConfiguration",
    "SplunkDestinationConfiguration",
    "AmazonOpenSearchServerlessDestinationConfiguration",
    "SnowflakeDestinationConfiguration",
    "IcebergDestinationConfiguration",
];

/// Members the model has that Kinescope does not read: only their presence matters
/// (an unserved source or destination is refused by name).
type Present = Option<serde::de::IgnoredAny>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateInput {
    delivery_stream_name: String,
    delivery_stream_type: Option<String>,
    direct_put_source_configuration: Option<DirectPutSource>,
    kinesis_stream_source_configuration: Option<KinesisStreamSource>,
    delivery_stream_encryption_configuration_input: Option<EncryptionInput>,
    s3_destination_configuration: Option<BucketFields>,
    extended_s3_destination_configuration: Option<BucketFields>,
    http_endpoint_destination_configuration: Option<HttpFields>,
    tags: Option<Vec<FirehoseTag>>,
    redshift_destination_configuration: Present,
    elasticsearch_destination_configuration: Present,
    amazonopensearchservice_destination_configuration: Present,
    splunk_destination_configuration: Present,
    amazon_open_search_serverless_destination_configuration: Present,
    snowflake_destination_configuration: Present,
    iceberg_destination_configuration: Present,
}

impl CreateInput {
    /// The first destination member given that Kinescope does not serve.
    fn unserved_destination(&self) -> Option<&'static str> {
        let given = [
            self.redshift_destination_configuration.is_some(),
            self.elasticsearch_destination_configuration.is_some(),
            self.amazonopensearchservice_destination_configuration.is_some(),
            self.splunk_destination_configuration.is_some(),
            self.amazon_open_search_serverless_destination_configuration.is_some(),
            self.snowflake_destination_configuration.is_some(),
            self.iceberg_destination_configuration.is_some(),
        ];
        UNSERVED_DESTINATIONS.iter().zip(given).find(|(_, g)| *g).map(|(m, _)| *m)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DirectPutSource {
    throughput_hint_in_m_bs: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KinesisStreamSource {
    #[serde(rename = "KinesisStreamARN")]
    kinesis_stream_arn: Option<String>,
    #[serde(rename = "RoleARN")]
    role_arn: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateOutput {
    #[serde(rename = "DeliveryStreamARN")]
    delivery_stream_arn: String,
}

pub async fn create_delivery_stream(s: FirehoseState, i: CreateInput) -> Result<CreateOutput, ApiError> {
    if let Some(m) = i.unserved_destination() {
        return Err(invalid(format!(
            "{} destinations are not supported by Kinescope; it delivers to buckets (ExtendedS3DestinationConfiguration) and HTTP endpoints (HttpEndpointDestinationConfiguration).",
            m.trim_end_matches("DestinationConfiguration")
        )));
    }
    let kind = i.delivery_stream_type.as_deref().unwrap_or("DirectPut");
    let source = match kind {
        "DirectPut" => {
            if i.kinesis_stream_source_configuration.is_some() {
                return Err(invalid("KinesisStreamSourceConfiguration is only for KinesisStreamAsSource delivery streams."));
            }
            let hint = i.direct_put_source_configuration.and_then(|c| c.throughput_hint_in_m_bs);
            if hint.is_some_and(|h| !(1..=100).contains(&h)) {
                return Err(invalid("ThroughputHintInMBs must be between 1 and 100."));
            }
            Source::DirectPut { throughput_hint_mib: hint }
        }
        "KinesisStreamAsSource" => {
            let c = i
                .kinesis_stream_source_configuration
                .ok_or_else(|| invalid("KinesisStreamAsSource needs KinesisStreamSourceConfiguration."))?;
            Source::KinesisStream {
                stream_arn: c
                    .kinesis_stream_arn
                    .ok_or_else(|| invalid("KinesisStreamSourceConfiguration.KinesisStreamARN is required."))?,
                role_arn: c.role_arn.ok_or_else(|| invalid("KinesisStreamSourceConfiguration.RoleARN is required."))?,
            }
        }
        "MSKAsSource" | "DatabaseAsSource" => {
            return Err(invalid(format!("{kind} delivery streams are not supported by Kinescope.")));
        }
        other => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{other}' at 'deliveryStreamType' failed to satisfy constraint: Member must satisfy enum value set: [DirectPut, KinesisStreamAsSource, MSKAsSource, DatabaseAsSource]"
            )))
        }
    };
    let destination = match (
        i.extended_s3_destination_configuration,
        i.s3_destination_configuration,
        i.http_endpoint_destination_configuration,
    ) {
        (Some(b), None, None) => Destination::Bucket(b.into_new("ExtendedS3DestinationConfiguration")?),
        (None, Some(b), None) => Destination::Bucket(b.into_new("S3DestinationConfiguration")?),
        (None, None, Some(h)) => Destination::HttpEndpoint(h.into_new("HttpEndpointDestinationConfiguration")?),
        (None, None, None) => {
            return Err(invalid("Exactly one destination configuration is supported for a Firehose (none given)."))
        }
        _ => return Err(invalid("Exactly one destination configuration is supported for a Firehose.")),
    };
    let encryption = i.delivery_stream_encryption_configuration_input.map(EncryptionInput::checked).transpose()?;
    let id = s.id(&i.delivery_stream_name);
    let (engine, tags, created) = (s.engine.clone(), tag_map(i.tags)?, id.clone());
    // Off the runtime's threads: a partitioning query is tried once in a worker process.
    let arn = tokio::task::spawn_blocking(move || engine.create(&created, source, destination, tags))
        .await
        .map_err(ApiError::internal)??;
    if let Some(e) = encryption {
        s.engine.set_encryption(&id, Some(e))?;
    }
    Ok(CreateOutput { delivery_stream_arn: arn })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInput {
    delivery_stream_name: String,
    limit: Option<u32>,
    exclusive_start_destination_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeOutput {
    delivery_stream_description: StreamDescription,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDescription {
    delivery_stream_name: String,
    #[serde(rename = "DeliveryStreamARN")]
    delivery_stream_arn: String,
    delivery_stream_status: &'static str,
    delivery_stream_encryption_configuration: EncryptionDescription,
    delivery_stream_type: &'static str,
    version_id: String,
    create_timestamp: f64,
    last_update_timestamp: f64,
    source: SourceDescription,
    destinations: Vec<DestinationDescription>,
    has_more_destinations: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionDescription {
    #[serde(rename = "KeyARN", skip_serializing_if = "Option::is_none")]
    key_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_type: Option<String>,
    status: String,
}

impl From<Option<&Encryption>> for EncryptionDescription {
    fn from(e: Option<&Encryption>) -> Self {
        match e {
            Some(e) => EncryptionDescription {
                key_arn: e.key_arn.clone(),
                key_type: Some(e.key_type.clone()),
                status: e.status.clone(),
            },
            None => EncryptionDescription { key_arn: None, key_type: None, status: "DISABLED".into() },
        }
    }
}

#[derive(Serialize)]
pub enum SourceDescription {
    #[serde(rename = "DirectPutSourceDescription")]
    DirectPut {
        #[serde(rename = "ThroughputHintInMBs")]
        throughput_hint_in_mbs: Option<u32>,
    },
    #[serde(rename = "KinesisStreamSourceDescription")]
    KinesisStream {
        #[serde(rename = "KinesisStreamARN")]
        kinesis_stream_arn: String,
        #[serde(rename = "RoleARN")]
        role_arn: String,
        #[serde(rename = "DeliveryStartTimestamp")]
        delivery_start_timestamp: f64,
    },
}

pub async fn describe_delivery_stream(s: FirehoseState, i: DescribeInput) -> Result<DescribeOutput, ApiError> {
    page_limit(i.limit, 1, 10_000)?;
    let view = s.engine.describe(&s.id(&i.delivery_stream_name))?;
    let m = view.meta;
    let past_only = i.exclusive_start_destination_id.as_deref().is_some_and(|d| d >= m.destination_id.as_str());
    let destinations =
        if past_only { vec![] } else { vec![DestinationDescription::new(&m.destination_id, &m.destination)] };
    let source = match &m.source {
        Source::DirectPut { throughput_hint_mib } => {
            SourceDescription::DirectPut { throughput_hint_in_mbs: *throughput_hint_mib }
        }
        Source::KinesisStream { stream_arn, role_arn } => SourceDescription::KinesisStream {
            kinesis_stream_arn: stream_arn.clone(),
            role_arn: role_arn.clone(),
            delivery_start_timestamp: secs(m.created_ms),
        },
    };
    Ok(DescribeOutput {
        delivery_stream_description: StreamDescription {
            delivery_stream_name: m.name.clone(),
            delivery_stream_arn: view.arn,
            delivery_stream_status: "ACTIVE",
            delivery_stream_encryption_configuration: m.encryption.as_ref().into(),
            delivery_stream_type: m.source.type_name(),
            version_id: m.version.to_string(),
            create_timestamp: secs(m.created_ms),
            last_update_timestamp: secs(m.updated_ms),
            source,
            destinations,
            has_more_destinations: false,
        },
    })
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInput {
    limit: Option<u32>,
    delivery_stream_type: Option<String>,
    exclusive_start_delivery_stream_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListOutput {
    delivery_stream_names: Vec<String>,
    has_more_delivery_streams: bool,
}

pub async fn list_delivery_streams(s: FirehoseState, i: ListInput) -> Result<ListOutput, ApiError> {
    let limit = page_limit(i.limit, 10, 10_000)?;
    let (names, more) = s.engine.list(
        &s.scope,
        i.delivery_stream_type.as_deref(),
        i.exclusive_start_delivery_stream_name.as_deref(),
        limit,
    );
    Ok(ListOutput { delivery_stream_names: names, has_more_delivery_streams: more })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteInput {
    delivery_stream_name: String,
    #[serde(default)]
    allow_force_delete: bool,
}

pub async fn delete_delivery_stream(s: FirehoseState, i: DeleteInput) -> Result<Empty, ApiError> {
    // Nothing of Kinescope's can keep a delete from finishing (no KMS grant to
    // retire), so AllowForceDelete changes nothing.
    let _ = i.allow_force_delete;
    s.engine.delete(&s.id(&i.delivery_stream_name))?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateInput {
    delivery_stream_name: String,
    current_delivery_stream_version_id: String,
    destination_id: String,
    s3_destination_update: Option<BucketFields>,
    extended_s3_destination_update: Option<BucketFields>,
    http_endpoint_destination_update: Option<HttpFields>,
    redshift_destination_update: Present,
    elasticsearch_destination_update: Present,
    amazonopensearchservice_destination_update: Present,
    splunk_destination_update: Present,
    amazon_open_search_serverless_destination_update: Present,
    snowflake_destination_update: Present,
    iceberg_destination_update: Present,
}

/// What an update asks of the destination (one per request: the size difference
/// between the variants does not matter).
#[allow(clippy::large_enum_variant)]
enum Update {
    Bucket(BucketFields),
    Http(HttpFields),
    Unserved(&'static str),
}

impl UpdateInput {
    fn update(self) -> Result<Update, ApiError> {
        let unserved = [
            ("Redshift", self.redshift_destination_update.is_some()),
            ("Elasticsearch", self.elasticsearch_destination_update.is_some()),
            ("Amazonopensearchservice", self.amazonopensearchservice_destination_update.is_some()),
            ("Splunk", self.splunk_destination_update.is_some()),
            ("AmazonOpenSearchServerless", self.amazon_open_search_serverless_destination_update.is_some()),
            ("Snowflake", self.snowflake_destination_update.is_some()),
            ("Iceberg", self.iceberg_destination_update.is_some()),
        ];
        if let Some((name, _)) = unserved.iter().find(|(_, given)| *given) {
            return Ok(Update::Unserved(name));
        }
        match (self.extended_s3_destination_update, self.s3_destination_update, self.http_endpoint_destination_update) {
            (Some(u), None, None) | (None, Some(u), None) => Ok(Update::Bucket(u)),
            (None, None, Some(u)) => Ok(Update::Http(u)),
            (None, None, None) => {
                Err(invalid("Exactly one destination configuration is supported for a Firehose (none given)."))
            }
            _ => Err(invalid("Exactly one destination configuration is supported for a Firehose.")),
        }
    }
}

pub async fn update_destination(s: FirehoseState, i: UpdateInput) -> Result<Empty, ApiError> {
    let version: u64 = i
        .current_delivery_stream_version_id
        .parse()
        .map_err(|_| invalid("CurrentDeliveryStreamVersionId must be 1 to 50 digits."))?;
    let (id, destination_id) = (s.id(&i.delivery_stream_name), i.destination_id.clone());
    let update = i.update()?;
    if let Update::Unserved(name) = update {
        return Err(invalid(format!("{name} destinations are not supported by Kinescope.")));
    }
    let engine = s.engine.clone();
    // The wire's own refusals (a bad enum value) ride out of the engine's closure here.
    let mut refused: Option<ApiError> = None;
    let changed = tokio::task::spawn_blocking(move || {
        let out = engine.update_destination(&id, version, &destination_id, |current| {
            let next = match (current, update) {
                (Destination::Bucket(b), Update::Bucket(u)) => {
                    u.merge_into(b.clone(), "extendedS3DestinationUpdate").map(Destination::Bucket)
                }
                (Destination::HttpEndpoint(h), Update::Http(u)) => {
                    u.merge_into(h.clone(), "httpEndpointDestinationUpdate").map(Destination::HttpEndpoint)
                }
                // As AWS: an HTTP endpoint destination stays one, and nothing becomes one.
                _ => {
                    return Err(DeliveryStreamError::InvalidArgument(
                        "Changing the destination type to or from HttpEndpoint is not supported at this time.".into(),
                    ))
                }
            };
            next.map_err(|e| {
                let message = e.message.clone();
                refused = Some(e);
                DeliveryStreamError::InvalidArgument(message)
            })
        });
        (out, refused)
    })
    .await
    .map_err(ApiError::internal)?;
    match changed {
        (Ok(()), _) => Ok(Empty {}),
        (Err(_), Some(wire)) => Err(wire),
        (Err(e), None) => Err(e.into()),
    }
}
