//! Kinesis Video signalling channels (`kinesisvideo`): CreateSignalingChannel,
//! DescribeSignalingChannel, ListSignalingChannels, UpdateSignalingChannel,
//! DeleteSignalingChannel, and Update/DescribeMediaStorageConfiguration (a channel's
//! recording into a stream). Channel tags go through TagResource and friends in
//! [`super::streams`], which dispatch on the ARN.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::{KvsState, ListingPage, NameCondition};
use crate::api::error::ApiError;
use crate::api::protocol::{Empty, RestJson};
use crate::api::registry::Scoped;
use crate::api::shapes::{epoch_seconds, Tag};
use crate::signaling::channel::{ChannelRecord, MediaStorage, MediaStorageStatus};
use crate::signaling::NewChannel;

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/createSignalingChannel", post(create_signaling_channel))
        .route("/describeSignalingChannel", post(describe_signaling_channel))
        .route("/listSignalingChannels", post(list_signaling_channels))
        .route("/updateSignalingChannel", post(update_signaling_channel))
        .route("/deleteSignalingChannel", post(delete_signaling_channel))
        .route("/updateMediaStorageConfiguration", post(update_media_storage_configuration))
        .route("/describeMediaStorageConfiguration", post(describe_media_storage_configuration))
}

type Answer<T> = Result<RestJson<T>, ApiError>;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SingleMasterConfiguration {
    message_ttl_seconds: Option<i64>,
}

/// `ChannelInfo` as Describe and List return it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelInfo {
    channel_name: String,
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    channel_type: String,
    channel_status: &'static str,
    creation_time: f64,
    single_master_configuration: SingleMasterConfiguration,
    version: String,
}

impl From<&ChannelRecord> for ChannelInfo {
    fn from(r: &ChannelRecord) -> Self {
        ChannelInfo {
            channel_name: r.name.clone(),
            channel_arn: r.arn.clone(),
            channel_type: r.channel_type.clone(),
            channel_status: "ACTIVE",
            creation_time: epoch_seconds(r.creation_time_ms * 1000),
            single_master_configuration: SingleMasterConfiguration {
                message_ttl_seconds: Some(i64::from(r.message_ttl_s)),
            },
            version: r.version.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSignalingChannelInput {
    channel_name: String,
    channel_type: Option<String>,
    single_master_configuration: Option<SingleMasterConfiguration>,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Serialize)]
pub struct ChannelArnOutput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
}

async fn create_signaling_channel(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<CreateSignalingChannelInput>,
) -> Answer<ChannelArnOutput> {
    let tags = tag_map(i.tags, 0)?;
    let record = s
        .signaling
        .create(
            &s.scope,
            NewChannel {
                name: i.channel_name,
                channel_type: i.channel_type,
                message_ttl_s: i.single_master_configuration.and_then(|c| c.message_ttl_seconds),
                tags,
            },
        )
        .await?;
    tracing::info!(channel = %record.name, ttl_s = record.message_ttl_s, "signalling channel created");
    Ok(RestJson(ChannelArnOutput { channel_arn: record.arn }))
}

/// A list of `Tag`s as a map: at least `min`, no key twice (more than 50 is the
/// engine's `TagsPerResourceExceededLimitException`).
pub fn tag_map(tags: Vec<Tag>, min: usize) -> Result<BTreeMap<String, String>, ApiError> {
    if tags.len() < min {
        return Err(ApiError::invalid_argument(format!("Tags must hold at least {min} tag")));
    }
    let count = tags.len();
    let map: BTreeMap<String, String> = tags.into_iter().map(|t| (t.key, t.value)).collect();
    if map.len() != count {
        return Err(ApiError::invalid_argument("Tags name the same key more than once"));
    }
    Ok(map)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelRef {
    channel_name: Option<String>,
    #[serde(rename = "ChannelARN")]
    channel_arn: Option<String>,
}

impl ChannelRef {
    fn resolve(&self, s: &KvsState) -> Result<ChannelRecord, ApiError> {
        Ok(s.signaling.resolve(&s.scope, self.channel_name.as_deref(), self.channel_arn.as_deref())?)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSignalingChannelOutput {
    channel_info: ChannelInfo,
}

async fn describe_signaling_channel(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<ChannelRef>,
) -> Answer<DescribeSignalingChannelOutput> {
    Ok(RestJson(DescribeSignalingChannelOutput { channel_info: (&i.resolve(&s)?).into() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSignalingChannelsInput {
    max_results: Option<i64>,
    next_token: Option<String>,
    channel_name_condition: Option<NameCondition>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSignalingChannelsOutput {
    channel_info_list: Vec<ChannelInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

async fn list_signaling_channels(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<ListSignalingChannelsInput>,
) -> Answer<ListSignalingChannelsOutput> {
    let page = ListingPage::new(
        &s,
        "ListSignalingChannels",
        i.max_results,
        500,
        i.channel_name_condition.as_ref(),
        i.next_token.as_deref(),
    )?;
    let mut records = s.signaling.list(&s.scope, page.fetched())?;
    let next_token = page.finish(&s, &mut records, |r| &r.name);
    Ok(RestJson(ListSignalingChannelsOutput {
        channel_info_list: records.iter().map(ChannelInfo::from).collect(),
        next_token,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateSignalingChannelInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    current_version: String,
    single_master_configuration: Option<SingleMasterConfiguration>,
}

async fn update_signaling_channel(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<UpdateSignalingChannelInput>,
) -> Answer<Empty> {
    let ttl = i.single_master_configuration.and_then(|c| c.message_ttl_seconds);
    s.signaling.update(&s.scope, &i.channel_arn, &i.current_version, ttl).await?;
    Ok(RestJson(Empty {}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSignalingChannelInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    current_version: Option<String>,
}

async fn delete_signaling_channel(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<DeleteSignalingChannelInput>,
) -> Answer<Empty> {
    let gone = s.signaling.delete(&s.scope, &i.channel_arn, i.current_version.as_deref()).await?;
    // Its connections close and the messages held for its master go with it.
    s.webrtc.hub.forget(&gone.arn);
    s.metrics.signaling_held_bytes.set(s.webrtc.hub.pending_bytes() as i64);
    tracing::info!(channel = %gone.name, "signalling channel deleted");
    Ok(RestJson(Empty {}))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MediaStorageConfiguration {
    #[serde(rename = "StreamARN", skip_serializing_if = "Option::is_none")]
    stream_arn: Option<String>,
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateMediaStorageConfigurationInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    media_storage_configuration: MediaStorageConfiguration,
}

/// Maps the channel to a stream (ENABLED) or stops recording (DISABLED). The stream
/// must exist in the caller's scope, keep data (retention > 0) and record no other
/// channel.
async fn update_media_storage_configuration(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<UpdateMediaStorageConfigurationInput>,
) -> Answer<Empty> {
    let c = i.media_storage_configuration;
    let status = MediaStorageStatus::parse(&c.status)?;
    let channel = s.signaling.resolve(&s.scope, None, Some(&i.channel_arn))?;
    let storage = match (status, c.stream_arn) {
        (MediaStorageStatus::Enabled, None) => {
            return Err(ApiError::invalid_argument("StreamARN is required when Status is ENABLED"))
        }
        (MediaStorageStatus::Enabled, Some(stream_arn)) => {
            let stream = s.store.resolve(&s.scope, None, Some(&stream_arn))?;
            if stream.data_retention_hours == 0 {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "NoDataRetentionException",
                    format!(
                        "the stream {} keeps no data (DataRetentionInHours 0); it cannot record a channel",
                        stream.name
                    ),
                ));
            }
            if let Some(other) = s.signaling.storing_into(&stream.arn)?.into_iter().find(|o| o.arn != channel.arn) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ResourceInUseException",
                    format!("the stream {} already records the channel {}", stream.name, other.name),
                ));
            }
            MediaStorage { status, stream_arn: Some(stream.arn) }
        }
        (MediaStorageStatus::Disabled, arn) => MediaStorage { status, stream_arn: arn },
    };
    s.signaling.set_media_storage(&s.scope, &channel.arn, storage).await?;
    Ok(RestJson(Empty {}))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeMediaStorageConfigurationOutput {
    media_storage_configuration: MediaStorageConfiguration,
}

async fn describe_media_storage_configuration(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<ChannelRef>,
) -> Answer<DescribeMediaStorageConfigurationOutput> {
    let m = i.resolve(&s)?.media_storage;
    Ok(RestJson(DescribeMediaStorageConfigurationOutput {
        media_storage_configuration: MediaStorageConfiguration {
            stream_arn: m.stream_arn,
            status: m.status.as_str().to_string(),
        },
    }))
}
