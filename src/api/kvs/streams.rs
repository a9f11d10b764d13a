//! Kinesis Video control plane (`kinesisvideo`): CreateStream, DescribeStream,
//! ListStreams, DeleteStream, UpdateStream, UpdateDataRetention, GetDataEndpoint, and
//! the tag operations (stream-named and ARN-named).

use std::collections::BTreeMap;

use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::{KvsState, ListingPage, NameCondition, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::{Empty, RestJson};
use crate::api::registry::Scoped;
use crate::api::shapes::epoch_seconds;
use crate::api::shapes::{ResourceArn, Tag};
use crate::video_store::{NewStream, RetentionChange, StreamRecord};

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/createStream", post(create_stream))
        .route("/describeStream", post(describe_stream))
        .route("/listStreams", post(list_streams))
        .route("/deleteStream", post(delete_stream))
        .route("/updateStream", post(update_stream))
        .route("/updateDataRetention", post(update_data_retention))
        .route("/getDataEndpoint", post(get_data_endpoint))
        .route("/describeStreamStorageConfiguration", post(describe_storage_configuration))
        .route("/updateStreamStorageConfiguration", post(update_storage_configuration))
        .route("/describeMappedResourceConfiguration", post(describe_mapped_resources))
        .route("/tagStream", post(tag_stream))
        .route("/untagStream", post(untag_stream))
        .route("/listTagsForStream", post(list_tags_for_stream))
        .route("/TagResource", post(tag_resource))
        .route("/UntagResource", post(untag_resource))
        .route("/ListTagsForResource", post(list_tags_for_resource))
}

type Answer<T> = Result<RestJson<T>, ApiError>;

/// `StreamInfo` as DescribeStream and ListStreams return it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamInfo {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    kms_key_id: String,
    version: String,
    status: &'static str,
    creation_time: f64,
    data_retention_in_hours: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
}

impl From<&StreamRecord> for StreamInfo {
    fn from(r: &StreamRecord) -> Self {
        StreamInfo {
            stream_name: r.name.clone(),
            stream_arn: r.arn.clone(),
            kms_key_id: r.kms_key_id.clone(),
            version: r.version.clone(),
            status: r.status.as_str(),
            creation_time: epoch_seconds(r.creation_time_ms * 1000),
            data_retention_in_hours: r.data_retention_hours,
            device_name: r.device_name.clone(),
            media_type: r.media_type.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateStreamInput {
    stream_name: String,
    device_name: Option<String>,
    media_type: Option<String>,
    kms_key_id: Option<String>,
    data_retention_in_hours: Option<i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    stream_storage_configuration: Option<StorageConfiguration>,
}

/// `StreamStorageConfiguration`.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StorageConfiguration {
    default_storage_tier: String,
}

#[derive(Serialize)]
pub struct CreateStreamOutput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
}

async fn create_stream(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<CreateStreamInput>,
) -> Answer<CreateStreamOutput> {
    let retention = match i.data_retention_in_hours {
        Some(h) if h < 0 => return Err(ApiError::invalid_argument("DataRetentionInHours must be 0 or more")),
        Some(h) => Some(u32::try_from(h).map_err(|_| ApiError::invalid_argument("DataRetentionInHours is too large"))?),
        None => None,
    };
    let record = s
        .store
        .create_stream(
            &s.scope,
            NewStream {
                name: i.stream_name,
                device_name: i.device_name,
                media_type: i.media_type,
                kms_key_id: i.kms_key_id,
                data_retention_hours: retention,
                tags: i.tags,
                storage_tier: i.stream_storage_configuration.map(|c| c.default_storage_tier),
            },
        )
        .await?;
    tracing::info!(stream = %record.name, retention_hours = record.data_retention_hours, "stream created");
    Ok(RestJson(CreateStreamOutput { stream_arn: record.arn }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamOutput {
    stream_info: StreamInfo,
}

async fn describe_stream(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<StreamRef>,
) -> Answer<DescribeStreamOutput> {
    Ok(RestJson(DescribeStreamOutput { stream_info: (&i.resolve(&s)?).into() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsInput {
    max_results: Option<i64>,
    next_token: Option<String>,
    stream_name_condition: Option<NameCondition>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsOutput {
    stream_info_list: Vec<StreamInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

async fn list_streams(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<ListStreamsInput>,
) -> Answer<ListStreamsOutput> {
    let page = ListingPage::new(
        &s,
        "ListStreams",
        i.max_results,
        10_000,
        i.stream_name_condition.as_ref(),
        i.next_token.as_deref(),
    )?;
    let mut records = s.store.list_streams(&s.scope, page.fetched())?;
    let next_token = page.finish(&s, &mut records, |r| &r.name);
    Ok(RestJson(ListStreamsOutput { stream_info_list: records.iter().map(StreamInfo::from).collect(), next_token }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStorageOutput {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_storage_configuration: StorageConfiguration,
}

async fn describe_storage_configuration(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<StreamRef>,
) -> Answer<DescribeStorageOutput> {
    let r = i.resolve(&s)?;
    Ok(RestJson(DescribeStorageOutput {
        stream_name: r.name,
        stream_arn: r.arn,
        stream_storage_configuration: StorageConfiguration { default_storage_tier: r.storage_tier },
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStorageInput {
    #[serde(flatten)]
    stream: StreamRef,
    current_version: String,
    stream_storage_configuration: StorageConfiguration,
}

async fn update_storage_configuration(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<UpdateStorageInput>,
) -> Answer<Empty> {
    let r = &i.stream;
    let tier = &i.stream_storage_configuration.default_storage_tier;
    s.store
        .set_storage_tier(&s.scope, r.stream_name.as_deref(), r.stream_arn.as_deref(), &i.current_version, tier)
        .await?;
    Ok(RestJson(Empty {}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MappedResourcesInput {
    #[serde(flatten)]
    stream: StreamRef,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MappedResource {
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(rename = "ARN")]
    arn: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MappedResourcesOutput {
    mapped_resource_configuration_list: Vec<MappedResource>,
}

/// The signalling channel whose media this stream stores (UpdateMediaStorageConfiguration
/// maps at most one; `MaxResults` is fixed at 1).
async fn describe_mapped_resources(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<MappedResourcesInput>,
) -> Answer<MappedResourcesOutput> {
    if let Some(n) = i.max_results.filter(|n| *n != 1) {
        return Err(ApiError::invalid_argument(format!("MaxResults must be 1; got {n}.")));
    }
    if i.next_token.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::invalid_argument("NextToken is not valid: this list has one page."));
    }
    let stream = i.stream.resolve(&s)?;
    let channels = s.signaling.storing_into(&stream.arn)?;
    let list = channels
        .into_iter()
        .filter(|c| c.scope == s.scope)
        .take(1)
        .map(|c| MappedResource { kind: "SIGNALING_CHANNEL", arn: c.arn })
        .collect();
    Ok(RestJson(MappedResourcesOutput { mapped_resource_configuration_list: list }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteStreamInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    current_version: Option<String>,
}

async fn delete_stream(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<DeleteStreamInput>) -> Answer<Empty> {
    s.store.delete_stream(&s.scope, &i.stream_arn, i.current_version.as_deref()).await?;
    tracing::info!(arn = %i.stream_arn, "stream deleted");
    Ok(RestJson(Empty {}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    current_version: String,
    device_name: Option<String>,
    media_type: Option<String>,
}

async fn update_stream(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<UpdateStreamInput>) -> Answer<Empty> {
    let r = &i.stream;
    s.store
        .update_stream(
            &s.scope,
            r.stream_name.as_deref(),
            r.stream_arn.as_deref(),
            &i.current_version,
            i.device_name,
            i.media_type,
        )
        .await?;
    Ok(RestJson(Empty {}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateDataRetentionInput {
    #[serde(flatten)]
    stream: StreamRef,
    current_version: String,
    operation: String,
    data_retention_change_in_hours: i64,
}

async fn update_data_retention(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<UpdateDataRetentionInput>,
) -> Answer<Empty> {
    let hours = u32::try_from(i.data_retention_change_in_hours)
        .ok()
        .filter(|&h| h >= 1)
        .ok_or_else(|| ApiError::invalid_argument("DataRetentionChangeInHours must be 1 or more"))?;
    let change = match i.operation.as_str() {
        "INCREASE_DATA_RETENTION" => RetentionChange::Increase(hours),
        "DECREASE_DATA_RETENTION" => RetentionChange::Decrease(hours),
        other => {
            return Err(ApiError::invalid_argument(format!(
                "Operation '{other}' must be INCREASE_DATA_RETENTION or DECREASE_DATA_RETENTION"
            )))
        }
    };
    let r = &i.stream;
    let record = s
        .store
        .update_retention(&s.scope, r.stream_name.as_deref(), r.stream_arn.as_deref(), &i.current_version, change)
        .await?;
    tracing::info!(stream = %record.name, retention_hours = record.data_retention_hours, "retention changed");
    Ok(RestJson(Empty {}))
}

const API_NAMES: [&str; 8] = [
    "PUT_MEDIA",
    "GET_MEDIA",
    "LIST_FRAGMENTS",
    "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL",
    "GET_DASH_STREAMING_SESSION_URL",
    "GET_CLIP",
    "GET_IMAGES",
];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetDataEndpointInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "APIName")]
    api_name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetDataEndpointOutput {
    data_endpoint: String,
}

async fn get_data_endpoint(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<GetDataEndpointInput>,
) -> Answer<GetDataEndpointOutput> {
    if !API_NAMES.contains(&i.api_name.as_str()) {
        return Err(ApiError::invalid_argument(format!("APIName must be one of {}", API_NAMES.join(", "))));
    }
    i.stream.resolve(&s)?;
    Ok(RestJson(GetDataEndpointOutput { data_endpoint: s.public_url.clone() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    tags: BTreeMap<String, String>,
}

async fn tag_stream(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<TagStreamInput>) -> Answer<Empty> {
    if i.tags.is_empty() {
        return Err(ApiError::invalid_argument("Tags must hold 1 to 50 tags"));
    }
    s.store.tag_stream(&s.scope, i.stream.stream_name.as_deref(), i.stream.stream_arn.as_deref(), &i.tags).await?;
    Ok(RestJson(Empty {}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    tag_key_list: Vec<String>,
}

async fn untag_stream(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<UntagStreamInput>) -> Answer<Empty> {
    check_tag_keys(&i.tag_key_list)?;
    s.store
        .untag_stream(&s.scope, i.stream.stream_name.as_deref(), i.stream.stream_arn.as_deref(), &i.tag_key_list)
        .await?;
    Ok(RestJson(Empty {}))
}

fn check_tag_keys(keys: &[String]) -> Result<(), ApiError> {
    if keys.is_empty() || keys.len() > 50 {
        return Err(ApiError::invalid_argument("TagKeyList must hold 1 to 50 keys"));
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagsOutput {
    tags: BTreeMap<String, String>,
}

async fn list_tags_for_stream(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<StreamRef>) -> Answer<TagsOutput> {
    Ok(RestJson(TagsOutput { tags: i.resolve(&s)?.tags }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tags: Vec<Tag>,
}

/// What a `ResourceARN` of TagResource and friends names.
enum Resource {
    Stream,
    Channel,
}

fn resource(arn: &str) -> Result<Resource, ApiError> {
    if crate::video_store::parse_stream_arn(arn).is_some() {
        return Ok(Resource::Stream);
    }
    if crate::signaling::channel::parse_channel_arn(arn).is_some() {
        return Ok(Resource::Channel);
    }
    Err(ApiError::invalid_argument(format!("'{arn}' is not a Kinesis Video stream or signaling channel ARN")))
}

async fn tag_resource(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<TagResourceInput>) -> Answer<Empty> {
    let kind = resource(&i.resource_arn)?;
    let tags = super::channels::tag_map(i.tags, 1)?;
    match kind {
        Resource::Stream => drop(s.store.tag_stream(&s.scope, None, Some(&i.resource_arn), &tags).await?),
        Resource::Channel => drop(s.signaling.tag(&s.scope, &i.resource_arn, &tags).await?),
    }
    Ok(RestJson(Empty {}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tag_key_list: Vec<String>,
}

async fn untag_resource(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<UntagResourceInput>) -> Answer<Empty> {
    let kind = resource(&i.resource_arn)?;
    check_tag_keys(&i.tag_key_list)?;
    match kind {
        Resource::Stream => drop(s.store.untag_stream(&s.scope, None, Some(&i.resource_arn), &i.tag_key_list).await?),
        Resource::Channel => drop(s.signaling.untag(&s.scope, &i.resource_arn, &i.tag_key_list).await?),
    }
    Ok(RestJson(Empty {}))
}

async fn list_tags_for_resource(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<ResourceArn>) -> Answer<TagsOutput> {
    let tags = match resource(&i.resource_arn)? {
        Resource::Stream => s.store.resolve(&s.scope, None, Some(&i.resource_arn))?.tags,
        Resource::Channel => s.signaling.resolve(&s.scope, None, Some(&i.resource_arn))?.tags,
    };
    Ok(RestJson(TagsOutput { tags }))
}
