//! Kinesis Video control plane (`kinesisvideo`, rest-json): streams, retention, tags,
//! data endpoints. Each handler parses its input shape, calls the store, and writes
//! the output shape; nothing else.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::json::{epoch_seconds, parse};
use super::{json_ok, AppState};
use crate::video_store::{NewStream, RetentionChange, StreamRecord};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/createStream", post(create_stream))
        .route("/describeStream", post(describe_stream))
        .route("/listStreams", post(list_streams))
        .route("/deleteStream", post(delete_stream))
        .route("/updateStream", post(update_stream))
        .route("/updateDataRetention", post(update_data_retention))
        .route("/getDataEndpoint", post(get_data_endpoint))
        .route("/tagStream", post(tag_stream))
        .route("/untagStream", post(untag_stream))
        .route("/listTagsForStream", post(list_tags_for_stream))
        .route("/TagResource", post(tag_resource))
        .route("/UntagResource", post(untag_resource))
        .route("/ListTagsForResource", post(list_tags_for_resource))
}

/// `StreamInfo` as DescribeStream and ListStreams return it.
pub fn stream_info(r: &StreamRecord) -> serde_json::Value {
    let mut v = json!({
        "StreamName": r.name,
        "StreamARN": r.arn,
        "KmsKeyId": r.kms_key_id,
        "Version": r.version,
        "Status": r.status.as_str(),
        "CreationTime": epoch_seconds(r.creation_time_ms * 1000),
        "DataRetentionInHours": r.data_retention_hours,
    });
    if let Some(d) = &r.device_name {
        v["DeviceName"] = json!(d);
    }
    if let Some(m) = &r.media_type {
        v["MediaType"] = json!(m);
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateStreamInput {
    stream_name: String,
    device_name: Option<String>,
    media_type: Option<String>,
    kms_key_id: Option<String>,
    data_retention_in_hours: Option<i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

async fn create_stream(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let input: CreateStreamInput = parse(&body)?;
    let retention = match input.data_retention_in_hours {
        Some(h) if h < 0 => return Err(ApiError::invalid_argument("DataRetentionInHours must be 0 or more")),
        Some(h) => Some(u32::try_from(h).map_err(|_| ApiError::invalid_argument("DataRetentionInHours is too large"))?),
        None => None,
    };
    let record = s.store.create_stream(NewStream {
        name: input.stream_name,
        device_name: input.device_name,
        media_type: input.media_type,
        kms_key_id: input.kms_key_id,
        data_retention_hours: retention,
        tags: input.tags,
    })?;
    tracing::info!(stream = %record.name, retention_hours = record.data_retention_hours, "stream created");
    Ok(json_ok(json!({ "StreamARN": record.arn })))
}

async fn describe_stream(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let input: StreamRef = parse(&body)?;
    let record = s.store.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?;
    Ok(json_ok(json!({ "StreamInfo": stream_info(&record) })))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamNameCondition {
    comparison_operator: Option<String>,
    comparison_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListStreamsInput {
    max_results: Option<i64>,
    next_token: Option<String>,
    stream_name_condition: Option<StreamNameCondition>,
}

/// Pagination tokens are the base64 of the last name returned.
fn encode_token(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn decode_token(t: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::invalid_argument("NextToken is not valid"))
}

async fn list_streams(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let input: ListStreamsInput = parse(&body)?;
    let limit = match input.max_results {
        None => 10_000,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(_) => return Err(ApiError::invalid_argument("MaxResults must be between 1 and 10000")),
    };
    let prefix = match &input.stream_name_condition {
        Some(c) => {
            if let Some(op) = &c.comparison_operator {
                if op != "BEGINS_WITH" {
                    return Err(ApiError::invalid_argument("ComparisonOperator must be BEGINS_WITH"));
                }
            }
            c.comparison_value.clone().unwrap_or_default()
        }
        None => String::new(),
    };
    let after = input.next_token.as_deref().filter(|t| !t.is_empty()).map(decode_token).transpose()?;
    // One more than asked tells whether there is a next page.
    let mut records = s.store.list_streams(&prefix, after.as_deref(), limit + 1)?;
    let next = if records.len() > limit {
        records.truncate(limit);
        records.last().map(|r| encode_token(&r.name))
    } else {
        None
    };
    let mut out = json!({ "StreamInfoList": records.iter().map(stream_info).collect::<Vec<_>>() });
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(json_ok(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteStreamInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    current_version: Option<String>,
}

async fn delete_stream(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let input: DeleteStreamInput = parse(&body)?;
    s.store.delete_stream(&input.stream_arn, input.current_version.as_deref()).await?;
    tracing::info!(arn = %input.stream_arn, "stream deleted");
    Ok(json_ok(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    current_version: String,
    device_name: Option<String>,
    media_type: Option<String>,
}

async fn update_stream(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: UpdateStreamInput = parse(&body)?;
    s.store.update_stream(
        i.stream_name.as_deref(),
        i.stream_arn.as_deref(),
        &i.current_version,
        i.device_name,
        i.media_type,
    )?;
    Ok(json_ok(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateDataRetentionInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    current_version: String,
    operation: String,
    data_retention_change_in_hours: i64,
}

async fn update_data_retention(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: UpdateDataRetentionInput = parse(&body)?;
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
    let r =
        s.store.update_retention(i.stream_name.as_deref(), i.stream_arn.as_deref(), &i.current_version, change).await?;
    tracing::info!(stream = %r.name, retention_hours = r.data_retention_hours, "retention changed");
    Ok(json_ok(json!({})))
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
struct GetDataEndpointInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(rename = "APIName")]
    api_name: String,
}

async fn get_data_endpoint(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: GetDataEndpointInput = parse(&body)?;
    if !API_NAMES.contains(&i.api_name.as_str()) {
        return Err(ApiError::invalid_argument(format!("APIName must be one of {}", API_NAMES.join(", "))));
    }
    s.store.resolve(i.stream_name.as_deref(), i.stream_arn.as_deref())?;
    Ok(json_ok(json!({ "DataEndpoint": s.public_url })))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    tags: BTreeMap<String, String>,
}

async fn tag_stream(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: TagStreamInput = parse(&body)?;
    if i.tags.is_empty() {
        return Err(ApiError::invalid_argument("Tags must hold 1 to 50 tags"));
    }
    s.store.tag_stream(i.stream_name.as_deref(), i.stream_arn.as_deref(), &i.tags)?;
    Ok(json_ok(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    tag_key_list: Vec<String>,
}

async fn untag_stream(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: UntagStreamInput = parse(&body)?;
    check_tag_keys(&i.tag_key_list)?;
    s.store.untag_stream(i.stream_name.as_deref(), i.stream_arn.as_deref(), &i.tag_key_list)?;
    Ok(json_ok(json!({})))
}

fn check_tag_keys(keys: &[String]) -> Result<(), ApiError> {
    if keys.is_empty() || keys.len() > 50 {
        return Err(ApiError::invalid_argument("TagKeyList must hold 1 to 50 keys"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsForStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

async fn list_tags_for_stream(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: ListTagsForStreamInput = parse(&body)?;
    let r = s.store.resolve(i.stream_name.as_deref(), i.stream_arn.as_deref())?;
    Ok(json_ok(json!({ "Tags": r.tags })))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tags: Vec<Tag>,
}

/// The stream an ARN names (signalling channels join in their own issue).
fn resource_stream(arn: &str) -> Result<(), ApiError> {
    if crate::video_store::parse_stream_arn(arn).is_none() {
        return Err(ApiError::invalid_argument(format!("'{arn}' is not a Kinesis Video stream ARN")));
    }
    Ok(())
}

async fn tag_resource(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: TagResourceInput = parse(&body)?;
    resource_stream(&i.resource_arn)?;
    if i.tags.is_empty() || i.tags.len() > 50 {
        return Err(ApiError::invalid_argument("Tags must hold 1 to 50 tags"));
    }
    let tags: BTreeMap<String, String> = i.tags.into_iter().map(|t| (t.key, t.value)).collect();
    s.store.tag_stream(None, Some(&i.resource_arn), &tags)?;
    Ok(json_ok(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tag_key_list: Vec<String>,
}

async fn untag_resource(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: UntagResourceInput = parse(&body)?;
    resource_stream(&i.resource_arn)?;
    check_tag_keys(&i.tag_key_list)?;
    s.store.untag_stream(None, Some(&i.resource_arn), &i.tag_key_list)?;
    Ok(json_ok(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsForResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
}

async fn list_tags_for_resource(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let i: ListTagsForResourceInput = parse(&body)?;
    resource_stream(&i.resource_arn)?;
    let r = s.store.resolve(None, Some(&i.resource_arn))?;
    Ok(json_ok(json!({ "Tags": r.tags })))
}
