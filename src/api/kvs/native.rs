//! Kinescope's own JSON endpoints, for the watch page and operators: what AWS has no
//! single call for. Behind the same SigV4 check as every API.
//!
//! - `GET /v1/streams`: every stream with its status, retention, newest fragment and
//!   camera source.
//! - `PUT|GET|DELETE /v1/streams/{name}/source`: the IP camera a stream is pulled from
//!   (credentials are taken, never shown).

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::KvsState;
use crate::api::error::ApiError;
use crate::api::protocol::{Empty, RestJson};
use crate::api::registry::Scoped;
use crate::api::shapes::epoch_seconds;
use crate::ingest::rtsp_pull::{SourceConfig, SourceError, SourceStatusView};

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/v1/streams", get(list_streams))
        .route("/v1/streams/{name}/source", get(get_source).put(put_source).delete(delete_source))
}

fn source_error(e: SourceError) -> ApiError {
    match e {
        SourceError::Invalid(m) => ApiError::invalid_argument(m),
        SourceError::NoStream(_) | SourceError::NoSource(_) => ApiError::not_found(e.to_string()),
        SourceError::Storage(m) => ApiError::internal(format!("saving camera sources failed: {m}")),
    }
}

/// `PUT /v1/streams/{name}/source` `{"url": "rtsp://…", "transport": "tcp"|"udp",
/// "username": …, "password": …}`: pull the stream from an IP camera.
async fn put_source(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
    RestJson(config): RestJson<SourceConfig>,
) -> Result<RestJson<SourceStatusView>, ApiError> {
    s.sources.set(&s.scope, &name, config).await.map_err(source_error)?;
    Ok(RestJson(s.sources.get(&s.scope, &name).unwrap_or_default()))
}

async fn get_source(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
) -> Result<RestJson<SourceStatusView>, ApiError> {
    s.sources
        .get(&s.scope, &name)
        .map(RestJson)
        .ok_or_else(|| ApiError::not_found(format!("stream {name} has no source")))
}

async fn delete_source(Scoped(s): Scoped<KvsState>, Path(name): Path<String>) -> Result<RestJson<Empty>, ApiError> {
    s.sources.remove(&s.scope, &name).await.map_err(source_error)?;
    Ok(RestJson(Empty {}))
}

/// At most this many streams are listed (the page shows them all on one screen).
const LIST_LIMIT: usize = 10_000;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LastFragment {
    fragment_number: String,
    producer_timestamp: f64,
    server_timestamp: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamEntry {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    status: &'static str,
    data_retention_in_hours: u32,
    creation_time: f64,
    last_fragment: Option<LastFragment>,
    source: Option<SourceStatusView>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsOutput {
    streams: Vec<StreamEntry>,
}

async fn list_streams(Scoped(s): Scoped<KvsState>) -> Result<RestJson<ListStreamsOutput>, ApiError> {
    let records = s.store.list_streams(&s.scope, "", None, LIST_LIMIT)?;
    let mut streams = Vec::with_capacity(records.len());
    for r in records {
        let last_fragment = s.store.last_fragment(r.id)?.map(|m| LastFragment {
            fragment_number: m.fragment_number.to_string(),
            producer_timestamp: epoch_seconds(m.producer_ts_us),
            server_timestamp: epoch_seconds(m.server_ts_us),
        });
        streams.push(StreamEntry {
            source: s.sources.get(&s.scope, &r.name),
            stream_name: r.name,
            stream_arn: r.arn,
            status: r.status.as_str(),
            data_retention_in_hours: r.data_retention_hours,
            creation_time: epoch_seconds(r.creation_time_ms * 1000),
            last_fragment,
        });
    }
    Ok(RestJson(ListStreamsOutput { streams }))
}
