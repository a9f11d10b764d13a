//! Kinescope's own JSON endpoints, for the watch page and operators: what AWS has no
//! single call for. Behind the same SigV4 check as every API.
//!
//! - `GET /v1/streams`: every stream with its status, retention, newest fragment and
//!   camera source.
//! - `PUT|GET|DELETE /v1/streams/{name}/source`: the IP camera a stream is pulled from
//!   (credentials are taken, never shown).

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::error::ApiError;
use super::json::epoch_seconds;
use super::{json_ok, AppState};
use crate::ingest::rtsp_pull::{SourceConfig, SourceError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/streams", get(list_streams))
        .route("/v1/streams/{name}/source", get(get_source).put(put_source).delete(delete_source))
}

fn source_error(e: SourceError) -> ApiError {
    match e {
        SourceError::Invalid(m) => ApiError::invalid_argument(m),
        SourceError::NoStream(_) | SourceError::NoSource(_) => ApiError::not_found(e.to_string()),
        SourceError::Storage(m) => {
            tracing::error!(error = %m, "saving camera sources failed");
            ApiError::internal("internal error; see the server log")
        }
    }
}

/// `PUT /v1/streams/{name}/source` `{"url": "rtsp://…", "transport": "tcp"|"udp",
/// "username": …, "password": …}`: pull the stream from an IP camera.
async fn put_source(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let config: SourceConfig = super::json::parse(&body)?;
    s.sources.set(&name, config).map_err(source_error)?;
    Ok(json_ok(s.sources.get(&name).unwrap_or_default()))
}

async fn get_source(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    s.sources.get(&name).map(json_ok).ok_or_else(|| ApiError::not_found(format!("stream {name} has no source")))
}

async fn delete_source(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    s.sources.remove(&name).map_err(source_error)?;
    Ok(json_ok(json!({})))
}

/// At most this many streams are listed (the page shows them all on one screen).
const LIST_LIMIT: usize = 10_000;

async fn list_streams(State(s): State<AppState>) -> Result<Response, ApiError> {
    let records = s.store.list_streams("", None, LIST_LIMIT)?;
    let mut streams = Vec::with_capacity(records.len());
    for r in records {
        let last = s.store.last_fragment(r.id)?.map(|m| {
            json!({
                "FragmentNumber": m.fragment_number.to_string(),
                "ProducerTimestamp": epoch_seconds(m.producer_ts_us),
                "ServerTimestamp": epoch_seconds(m.server_ts_us),
            })
        });
        streams.push(json!({
            "StreamName": r.name,
            "StreamARN": r.arn,
            "Status": r.status.as_str(),
            "DataRetentionInHours": r.data_retention_hours,
            "CreationTime": epoch_seconds(r.creation_time_ms * 1000),
            "LastFragment": last,
            "Source": s.sources.get(&r.name),
        }));
    }
    Ok(json_ok(json!({ "Streams": streams })))
}
