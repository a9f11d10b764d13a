//! `kinesis-video-webrtc-storage`: JoinStorageSession (the server joins a signalling
//! channel to record its master's camera into the channel's mapped stream) and
//! JoinStorageSessionAsViewer (a connected viewer joins that session: it sees the
//! master, and its voice is mixed into the call and the recording). See
//! [`crate::webrtc::storage_session`].

use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use super::KvsState;
use crate::api::error::ApiError;
use crate::api::protocol::{Empty, RestJson};
use crate::api::registry::Scoped;
use crate::signaling::channel::ChannelRecord;
use crate::signaling::channel::MediaStorageStatus;
use crate::video_store::StreamRecord;

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/joinStorageSession", post(join_storage_session))
        .route("/joinStorageSessionAsViewer", post(join_storage_session_as_viewer))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinInput {
    channel_arn: Option<String>,
    client_id: Option<String>,
}

/// The channel `arn` names and the stream its media storage records into.
fn storage_target(s: &KvsState, arn: Option<String>) -> Result<(ChannelRecord, StreamRecord), ApiError> {
    let arn = arn.ok_or_else(|| ApiError::invalid_argument("channelArn is required"))?;
    let channel = s.signaling.resolve(&s.scope, None, Some(&arn))?;
    let storage = &channel.media_storage;
    let stream_arn = match (storage.status, storage.stream_arn.as_deref()) {
        (MediaStorageStatus::Enabled, Some(a)) => a,
        _ => {
            return Err(ApiError::invalid_argument(format!(
                "channel {} has no media storage; enable it with UpdateMediaStorageConfiguration first",
                channel.name
            )))
        }
    };
    let stream = s.store.resolve(&s.scope, None, Some(stream_arn))?;
    Ok((channel, stream))
}

async fn join_storage_session(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<JoinInput>,
) -> Result<RestJson<Empty>, ApiError> {
    let (channel, stream) = storage_target(&s, i.channel_arn)?;
    s.storage_sessions.join(&channel.arn, channel.message_ttl_s, stream).await?;
    Ok(RestJson(Empty {}))
}

async fn join_storage_session_as_viewer(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<JoinInput>,
) -> Result<RestJson<Empty>, ApiError> {
    let client_id = i.client_id.ok_or_else(|| ApiError::invalid_argument("clientId is required"))?;
    if !valid_client_id(&client_id) {
        return Err(ApiError::invalid_argument(
            "clientId must be 1 to 256 characters of letters, digits, '_', '.' and '-'",
        ));
    }
    let (channel, stream) = storage_target(&s, i.channel_arn)?;
    s.storage_sessions.join_as_viewer(&channel.arn, &client_id, stream).await?;
    Ok(RestJson(Empty {}))
}

/// AWS's ClientId: `^[a-zA-Z0-9_.-]+$`, 1–256.
fn valid_client_id(id: &str) -> bool {
    (1..=256).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
