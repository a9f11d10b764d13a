//! `kinesis-video-webrtc-storage`: JoinStorageSession, the server joining a signalling
//! channel to record its master's camera into the channel's mapped stream (see
//! [`crate::ingest::storage_session`]). JoinStorageSessionAsViewer (multi-party
//! sessions) is refused with a message saying so.

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use super::KvsState;
use crate::api::error::ApiError;
use crate::api::protocol::{Empty, RestJson};
use crate::api::registry::Scoped;
use crate::ingest::storage_session::StorageError;
use crate::signaling::channel::MediaStorageStatus;
use crate::signaling::hub::HubError;

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/joinStorageSession", post(join_storage_session))
        .route("/joinStorageSessionAsViewer", post(join_storage_session_as_viewer))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinInput {
    channel_arn: Option<String>,
}

async fn join_storage_session(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<JoinInput>,
) -> Result<RestJson<Empty>, ApiError> {
    let arn = i.channel_arn.ok_or_else(|| ApiError::invalid_argument("channelArn is required"))?;
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
    s.storage_sessions.join(&channel.arn, channel.message_ttl_s, stream).await.map_err(|e| match e {
        StorageError::TooMany(_) | StorageError::Hub(HubError::TooManyViewers(_)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", e.to_string())
        }
        StorageError::Session(e @ crate::ingest::whip::WhipError::NoPort(_)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", e.to_string())
        }
        StorageError::Session(e) => ApiError::internal(e.to_string()),
    })?;
    Ok(RestJson(Empty {}))
}

async fn join_storage_session_as_viewer() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "InvalidArgumentException",
        "JoinStorageSessionAsViewer (multi-party sessions) is not supported; JoinStorageSession records a channel's master",
    )
}
