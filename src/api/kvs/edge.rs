//! Edge configurations (`kinesisvideo`): StartEdgeConfigurationUpdate,
//! DescribeEdgeConfiguration, DeleteEdgeConfiguration, ListEdgeAgentConfigurations.
//!
//! AWS hands an edge configuration to its Edge Agent on a hub device, which records
//! an RTSP camera (its URL kept in AWS Secrets Manager) and uploads to the stream. Here
//! the server is the agent: the recorder's camera, named by the secret's ARN and
//! resolved from the config file's `[secrets]`, becomes the stream's camera source
//! (pulled continuously, recorded straight into the stream), and its state is what
//! Describe reports in AWS's `SyncStatus` and recorder/uploader terms.

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::{KvsState, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::{Empty, RestJson};
use crate::api::registry::Scoped;
use crate::api::shapes::epoch_seconds;
use crate::ingest::rtsp_pull::{EdgeOrigin, SourceConfig, SourceError, SourceStatus};
use crate::video_store::StreamRecord;

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/startEdgeConfigurationUpdate", post(start_update))
        .route("/describeEdgeConfiguration", post(describe))
        .route("/deleteEdgeConfiguration", post(delete))
        .route("/listEdgeAgentConfigurations", post(list))
}

type Answer<T> = Result<RestJson<T>, ApiError>;

fn not_found(stream: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "StreamEdgeConfigurationNotFoundException",
        format!("The stream {stream} has no edge configuration."),
    )
}

fn source_error(e: SourceError) -> ApiError {
    match e {
        SourceError::Invalid(m) => ApiError::invalid_argument(format!("The camera URL in the secret is refused: {m}")),
        SourceError::NoStream(s) => ApiError::not_found(format!("Stream {s} does not exist.")),
        SourceError::NoSource(s) => not_found(&s),
        SourceError::Storage(m) => ApiError::internal(m),
    }
}

/// Checks an ARN-shaped member: `arn:PARTITION:SERVICE:REGION:ACCOUNT:PREFIX NAME`.
fn check_arn(value: &str, member: &str, service: &str, prefix: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == service
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
        && value.len() <= 2048;
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!("{member} '{value}' is not an {service} {prefix}NAME ARN.")))
    }
}

fn check_range(v: i64, min: i64, max: i64, member: &str) -> Result<(), ApiError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!("{member} must be between {min} and {max}; got {v}.")))
    }
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleConfig {
    schedule_expression: String,
    duration_in_seconds: i64,
}

impl ScheduleConfig {
    fn check(&self, member: &str) -> Result<(), ApiError> {
        let n = self.schedule_expression.chars().count();
        if !(11..=100).contains(&n) {
            return Err(ApiError::invalid_argument(format!("{member}.ScheduleExpression must be 11-100 characters.")));
        }
        check_range(self.duration_in_seconds, 60, 3600, &format!("{member}.DurationInSeconds"))
    }
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct MediaSourceConfig {
    media_uri_secret_arn: String,
    media_uri_type: String,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct RecorderConfig {
    media_source_config: MediaSourceConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_config: Option<ScheduleConfig>,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct UploaderConfig {
    schedule_config: ScheduleConfig,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct LocalSizeConfig {
    #[serde(rename = "MaxLocalMediaSizeInMB", skip_serializing_if = "Option::is_none")]
    max_local_media_size_in_mb: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_on_full_size: Option<String>,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct DeletionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    edge_retention_in_hours: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_size_config: Option<LocalSizeConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_after_upload: Option<bool>,
}

/// `EdgeConfig`, as given and as reported.
#[derive(Deserialize, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct EdgeConfig {
    hub_device_arn: String,
    recorder_config: RecorderConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploader_config: Option<UploaderConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_config: Option<DeletionConfig>,
}

impl EdgeConfig {
    fn check(&self) -> Result<(), ApiError> {
        check_arn(&self.hub_device_arn, "HubDeviceArn", "iot", "thing/")?;
        let source = &self.recorder_config.media_source_config;
        check_arn(&source.media_uri_secret_arn, "MediaUriSecretArn", "secretsmanager", "secret:")?;
        match source.media_uri_type.as_str() {
            "RTSP_URI" => {}
            "FILE_URI" => {
                return Err(ApiError::invalid_argument(
                    "MediaUriType FILE_URI is not supported by Kinescope: its recorder pulls RTSP cameras (RTSP_URI).",
                ))
            }
            other => {
                return Err(ApiError::invalid_argument(format!("MediaUriType '{other}' is not RTSP_URI or FILE_URI.")))
            }
        }
        if let Some(c) = &self.recorder_config.schedule_config {
            c.check("RecorderConfig.ScheduleConfig")?;
        }
        if let Some(u) = &self.uploader_config {
            u.schedule_config.check("UploaderConfig.ScheduleConfig")?;
        }
        if let Some(d) = &self.deletion_config {
            if let Some(h) = d.edge_retention_in_hours {
                check_range(h, 1, 720, "DeletionConfig.EdgeRetentionInHours")?;
            }
            if let Some(l) = &d.local_size_config {
                if let Some(mb) = l.max_local_media_size_in_mb {
                    check_range(mb, 64, 2_000_000, "LocalSizeConfig.MaxLocalMediaSizeInMB")?;
                }
                if let Some(st) = l.strategy_on_full_size.as_deref() {
                    if !matches!(st, "DELETE_OLDEST_MEDIA" | "DENY_NEW_MEDIA") {
                        return Err(ApiError::invalid_argument(format!(
                            "StrategyOnFullSize '{st}' is not DELETE_OLDEST_MEDIA or DENY_NEW_MEDIA."
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartInput {
    #[serde(flatten)]
    stream: StreamRef,
    edge_config: EdgeConfig,
}

/// What Start, Describe and List report of one configuration.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EdgeConfigurationOut {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    creation_time: f64,
    last_updated_time: f64,
    sync_status: &'static str,
    edge_config: serde_json::Value,
}

impl EdgeConfigurationOut {
    fn of(stream: &str, arn: &str, edge: &EdgeOrigin) -> Self {
        EdgeConfigurationOut {
            stream_name: stream.to_string(),
            stream_arn: arn.to_string(),
            creation_time: epoch_seconds(edge.created_ms * 1000),
            last_updated_time: epoch_seconds(edge.updated_ms * 1000),
            // The server is the agent: a configuration it accepted is the one it runs.
            sync_status: "IN_SYNC",
            edge_config: edge.config.clone(),
        }
    }
}

async fn start_update(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<StartInput>) -> Answer<EdgeConfigurationOut> {
    i.edge_config.check()?;
    let stream: StreamRecord = i.stream.resolve(&s)?;
    if stream.data_retention_hours == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "NoDataRetentionException",
            format!(
                "Stream {} keeps no data (DataRetentionInHours is 0): an edge recorder needs retention.",
                stream.name
            ),
        ));
    }
    let secret_arn = i.edge_config.recorder_config.media_source_config.media_uri_secret_arn.clone();
    let url = s.secrets.get(&secret_arn).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "MediaUriSecretArn {secret_arn} is not in the server's [secrets] table; add `\"{secret_arn}\" = \"rtsp://…\"` to the config file."
        ))
    })?;
    let now = s.store.clock().now_ms();
    let edge = EdgeOrigin {
        hub_device_arn: i.edge_config.hub_device_arn.clone(),
        secret_arn,
        created_ms: now,
        updated_ms: now,
        config: serde_json::to_value(&i.edge_config).map_err(|e| ApiError::internal(e.to_string()))?,
    };
    let source = SourceConfig { url: url.to_string(), transport: "tcp".into(), username: None, password: None };
    let edge = s.sources.set_from_edge(&s.scope, &stream.name, source, edge).await.map_err(source_error)?;
    tracing::info!(stream = %stream.name, hub = %edge.hub_device_arn, "edge configuration applied: the stream's camera is pulled");
    Ok(RestJson(EdgeConfigurationOut::of(&stream.name, &stream.arn, &edge)))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobStatus {
    job_status_details: String,
    last_collected_time: f64,
    last_updated_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    recorder_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploader_status: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentStatus {
    last_recorder_status: JobStatus,
    last_uploader_status: JobStatus,
}

/// The recorder (the camera pull) and the uploader (the writes into the stream, the
/// same here) as the source's status has them.
fn agent_status(status: &SourceStatus) -> Option<AgentStatus> {
    if status.updated_ms == 0 {
        return None;
    }
    let (state, details) = match (&status.last_error, status.connected) {
        (_, true) => ("SUCCESS", format!("Recording: {} frames, {} bytes.", status.frames, status.bytes)),
        (Some(e), false) => ("SYSTEM_ERROR", e.clone()),
        (None, false) => ("SUCCESS", "Connecting to the camera.".to_string()),
    };
    let at = epoch_seconds(status.updated_ms * 1000);
    let job = |recorder: bool| JobStatus {
        job_status_details: details.clone(),
        last_collected_time: at,
        last_updated_time: at,
        recorder_status: recorder.then_some(state),
        uploader_status: (!recorder).then_some(state),
    };
    Some(AgentStatus { last_recorder_status: job(true), last_uploader_status: job(false) })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeOutput {
    #[serde(flatten)]
    configuration: EdgeConfigurationOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    edge_agent_status: Option<AgentStatus>,
}

async fn describe(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<StreamRef>) -> Answer<DescribeOutput> {
    let stream = i.resolve(&s)?;
    let (edge, status) = s.sources.edge(&s.scope, &stream.name).ok_or_else(|| not_found(&stream.name))?;
    Ok(RestJson(DescribeOutput {
        configuration: EdgeConfigurationOut::of(&stream.name, &stream.arn, &edge),
        edge_agent_status: agent_status(&status),
    }))
}

/// Stops the recorder (the camera pull) at once; what it recorded stays in the stream.
async fn delete(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<StreamRef>) -> Answer<Empty> {
    let stream = i.resolve(&s)?;
    if s.sources.edge(&s.scope, &stream.name).is_none() {
        return Err(not_found(&stream.name));
    }
    s.sources.remove(&s.scope, &stream.name).await.map_err(source_error)?;
    tracing::info!(stream = %stream.name, "edge configuration deleted: the camera pull stopped");
    Ok(RestJson(Empty {}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInput {
    hub_device_arn: String,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListOutput {
    edge_configs: Vec<EdgeConfigurationOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

async fn list(Scoped(s): Scoped<KvsState>, RestJson(i): RestJson<ListInput>) -> Answer<ListOutput> {
    check_arn(&i.hub_device_arn, "HubDeviceArn", "iot", "thing/")?;
    let limit = i.max_results.unwrap_or(5);
    check_range(limit, 1, 10, "MaxResults")?;
    let after: Option<String> = match i.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(
            s.pages
                .open("ListEdgeAgentConfigurations", t, s.store.clock().now_ms(), None)
                .map_err(|_| ApiError::invalid_argument("NextToken is not valid."))?,
        ),
        None => None,
    };
    let mut matching: Vec<(String, EdgeOrigin)> = s
        .sources
        .edges(&s.scope)
        .into_iter()
        .filter(|(name, e, _)| e.hub_device_arn == i.hub_device_arn && after.as_ref().is_none_or(|a| name > a))
        .map(|(name, e, _)| (name, e))
        .collect();
    let more = matching.len() > limit as usize;
    matching.truncate(limit as usize);
    let next_token = matching
        .last()
        .filter(|_| more)
        .map(|(name, _)| s.pages.issue("ListEdgeAgentConfigurations", name, s.store.clock().now_ms()));
    let mut edge_configs = Vec::with_capacity(matching.len());
    for (name, edge) in &matching {
        let arn = s.store.resolve(&s.scope, Some(name), None).map(|r| r.arn).unwrap_or_default();
        edge_configs.push(EdgeConfigurationOut::of(name, &arn, edge));
    }
    Ok(RestJson(ListOutput { edge_configs, next_token }))
}
