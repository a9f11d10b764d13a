//! Kinescope's own JSON endpoints, for the watch page and operators: what AWS has no
//! single call for. Behind the same SigV4 check as every API.
//!
//! - `GET /v1/streams`: every stream with its status, retention, newest fragment and
//!   camera source.
//! - `PUT|GET|DELETE /v1/streams/{name}/source`: the IP camera a stream is pulled from
//!   (credentials are taken, never shown).
//! - `PUT|GET|DELETE /v1/streams/{name}/metadata`: the data stream whose records
//!   describe the stream's frames (`{"DataStreamARN": "arn:aws:kinesis:…"}`).
//! - `GET /v1/streams/{name}/detections?start=MS&end=MS`: those records for frames with
//!   producer times in the window (see [`crate::playback::frame_metadata`]).

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::KvsState;
use crate::api::error::ApiError;
use crate::api::protocol::{Empty, RestJson};
use crate::api::registry::Scoped;
use crate::api::shapes::epoch_seconds;
use crate::ingest::rtsp_pull::{SourceConfig, SourceStatusView};

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/v1/streams", get(list_streams))
        .route("/v1/streams/{name}/source", get(get_source).put(put_source).delete(delete_source))
        .route("/v1/streams/{name}/metadata", get(get_metadata).put(put_metadata).delete(delete_metadata))
        .route("/v1/streams/{name}/detections", get(get_detections))
        .route("/v1/streams/{name}/whep", axum::routing::post(post_whep))
        .route("/v1/whep/{id}", axum::routing::delete(delete_whep).patch(patch_webrtc))
        .route("/v1/streams/{name}/whip", axum::routing::post(post_whip))
        .route("/v1/streams/{name}/whip-token", axum::routing::post(post_whip_token).delete(delete_whip_tokens))
        .route("/v1/whip/{id}", axum::routing::delete(delete_whip).patch(patch_webrtc))
}

/// `PUT /v1/streams/{name}/source` `{"url": "rtsp://…", "transport": "tcp"|"udp",
/// "username": …, "password": …}`: pull the stream from an IP camera.
async fn put_source(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
    RestJson(config): RestJson<SourceConfig>,
) -> Result<RestJson<SourceStatusView>, ApiError> {
    s.sources.set(&s.scope, &name, config).await?;
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
    s.sources.remove(&s.scope, &name).await?;
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
    /// Where an RTSP player (VLC, ffplay) plays it live.
    #[serde(skip_serializing_if = "Option::is_none")]
    rtsp_url: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsOutput {
    streams: Vec<StreamEntry>,
}

async fn list_streams(Scoped(s): Scoped<KvsState>) -> Result<RestJson<ListStreamsOutput>, ApiError> {
    let records = s.store.list_streams(&s.scope, crate::scope::NamePage::first(LIST_LIMIT))?;
    let mut streams = Vec::with_capacity(records.len());
    for r in records {
        let last_fragment = s.store.last_fragment(r.id)?.map(|m| LastFragment {
            fragment_number: m.fragment_number.to_string(),
            producer_timestamp: epoch_seconds(m.producer_ts_us),
            server_timestamp: epoch_seconds(m.server_ts_us),
        });
        streams.push(StreamEntry {
            source: s.sources.get(&s.scope, &r.name),
            rtsp_url: s.rtsp_url.as_ref().map(|u| format!("{u}/{}", r.name)),
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

#[derive(serde::Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetadataBinding {
    #[serde(rename = "DataStreamARN")]
    data_stream_arn: String,
}

/// `PUT /v1/streams/{name}/metadata`: bind a data stream (same account and region) whose
/// records describe this stream's frames.
async fn put_metadata(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
    RestJson(b): RestJson<MetadataBinding>,
) -> Result<RestJson<MetadataBinding>, ApiError> {
    let id = crate::data_streams::DataStreamId::from_arn(&b.data_stream_arn)
        .map_err(|_| ApiError::invalid_argument(format!("'{}' is not a data stream ARN", b.data_stream_arn)))?;
    if id.scope != s.scope {
        return Err(ApiError::invalid_argument("the data stream must be in the video stream's account and region"));
    }
    s.data_streams.describe(&id).map_err(|_| ApiError::not_found(format!("data stream {} not found", id.name)))?;
    s.store.set_frame_metadata_stream(&s.scope, &name, Some(b.data_stream_arn.clone())).await?;
    Ok(RestJson(b))
}

async fn get_metadata(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
) -> Result<RestJson<MetadataBinding>, ApiError> {
    let record = s.store.resolve(&s.scope, Some(&name), None)?;
    record
        .frame_metadata_stream
        .map(|data_stream_arn| RestJson(MetadataBinding { data_stream_arn }))
        .ok_or_else(|| ApiError::not_found(format!("stream {name} has no frame metadata stream")))
}

async fn delete_metadata(Scoped(s): Scoped<KvsState>, Path(name): Path<String>) -> Result<RestJson<Empty>, ApiError> {
    s.store.set_frame_metadata_stream(&s.scope, &name, None).await?;
    Ok(RestJson(Empty {}))
}

/// `start`/`end` (producer times, ms), or `fragment` (a fragment number) and `count`
/// (fragments from it, default 5).
#[derive(serde::Deserialize)]
pub struct DetectionsQuery {
    start: Option<i64>,
    end: Option<i64>,
    fragment: Option<u64>,
    count: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DetectionsOutput {
    detections: Vec<serde_json::Value>,
}

/// `GET /v1/streams/{name}/detections?start=MS&end=MS` (producer times, a window of at
/// most two minutes) or `?fragment=N&count=K` (the frames of K fragments from fragment
/// N): what the bound data stream says about those frames.
async fn get_detections(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DetectionsQuery>,
) -> Result<RestJson<DetectionsOutput>, ApiError> {
    use crate::playback::frame_metadata::{fragments_window, frame_metadata, MAX_WINDOW_MS};
    let record = s.store.resolve(&s.scope, Some(&name), None)?;
    let (start, end) = match (q.start, q.end, q.fragment) {
        (Some(start), Some(end), None) => {
            if end <= start || end - start > MAX_WINDOW_MS {
                return Err(ApiError::invalid_argument(format!(
                    "end must be after start, by at most {MAX_WINDOW_MS} ms"
                )));
            }
            (start, end)
        }
        (None, None, Some(first)) => match fragments_window(&s.store, &record, first, q.count.unwrap_or(5))? {
            Some(w) => w,
            None => return Ok(RestJson(DetectionsOutput { detections: Vec::new() })),
        },
        _ => return Err(ApiError::invalid_argument("give start and end, or fragment (and count)")),
    };
    let Some(arn) = &record.frame_metadata_stream else {
        return Ok(RestJson(DetectionsOutput { detections: Vec::new() }));
    };
    let id = crate::data_streams::DataStreamId::from_arn(arn).map_err(ApiError::internal)?;
    let detections = frame_metadata(&s.store, &s.data_streams, &id, &record, start, end).await?;
    Ok(RestJson(DetectionsOutput { detections }))
}

/// `POST /v1/streams/{name}/whep` with an SDP offer (`application/sdp`): `201 Created`, the
/// answer, and the session's resource in `Location` (WHEP).
async fn post_whep(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    use crate::webrtc::whep::MAX_OFFER_BYTES;
    let offer = sdp_offer(&headers, &body, MAX_OFFER_BYTES)?;
    let record = s.store.resolve(&s.scope, Some(&name), None)?;
    let (id, answer) = s.whep.open(record.id, offer).await?;
    Ok(sdp_answer(format!("/v1/whep/{id}"), answer))
}

/// The SDP offer a WHIP or WHEP request carries (`application/sdp`, at most `max` bytes).
fn sdp_offer(headers: &axum::http::HeaderMap, body: &[u8], max: usize) -> Result<String, ApiError> {
    use axum::http::{header, StatusCode};
    let sdp_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !sdp_type.starts_with("application/sdp") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaTypeException",
            "an offer is application/sdp",
        ));
    }
    if body.len() > max {
        return Err(ApiError::invalid_argument(format!("an SDP offer is at most {max} bytes")));
    }
    String::from_utf8(body.to_vec()).map_err(|_| ApiError::invalid_argument("the offer is not UTF-8"))
}

/// `201 Created` with the answer and the session's resource in `Location`.
fn sdp_answer(location: String, answer: String) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/sdp".to_string()), (header::LOCATION, location)], answer)
        .into_response()
}

/// `POST /v1/streams/{name}/whip` with an SDP offer that sends H.264 and/or Opus: `201
/// Created`, the answer, and the session's resource in `Location` (WHIP, RFC 9725). What
/// arrives is recorded into the stream.
async fn post_whip(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
    token: Option<axum::Extension<crate::webrtc::whip::PublishToken>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    use crate::webrtc::whip::MAX_OFFER_BYTES;
    use axum::http::StatusCode;
    let offer = sdp_offer(&headers, &body, MAX_OFFER_BYTES)?;
    let record = s.store.resolve(&s.scope, Some(&name), None)?;
    if token.as_ref().is_some_and(|t| t.stream_id != record.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            format!("the bearer token is for an earlier stream named '{name}'"),
        ));
    }
    if token.is_some_and(|t| t.issued_us < record.publish_tokens_not_before_us) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            format!("the bearer token was revoked (DELETE /v1/streams/{name}/whip-token); ask for a new one"),
        ));
    }
    let (id, answer) = s.whip.open(record, offer).await?;
    Ok(sdp_answer(format!("/v1/whip/{id}"), answer))
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WhipTokenInput {
    expires_in_seconds: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WhipTokenOutput {
    token: String,
    whip_url: String,
    expires: f64,
}

/// Publishing tokens live 30 days unless asked otherwise, a year at most.
const WHIP_TOKEN_DEFAULT_S: i64 = 30 * 24 * 3600;
const WHIP_TOKEN_MAX_S: i64 = 365 * 24 * 3600;

/// `POST /v1/streams/{name}/whip-token` (signed): a bearer token that lets a WHIP client
/// without SigV4 (OBS) publish to this stream, and the URL to publish to.
async fn post_whip_token(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<RestJson<WhipTokenOutput>, ApiError> {
    let input: WhipTokenInput = if body.iter().all(u8::is_ascii_whitespace) {
        WhipTokenInput::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_argument(format!("the body is not valid: {e}")))?
    };
    let seconds = input.expires_in_seconds.unwrap_or(WHIP_TOKEN_DEFAULT_S);
    if !(60..=WHIP_TOKEN_MAX_S).contains(&seconds) {
        return Err(ApiError::invalid_argument(format!("ExpiresInSeconds must be between 60 and {WHIP_TOKEN_MAX_S}")));
    }
    let record = s.store.resolve(&s.scope, Some(&name), None)?;
    let now_us = s.store.clock().now_us();
    let expires_us = now_us.saturating_add(seconds * 1_000_000);
    Ok(RestJson(WhipTokenOutput {
        token: s.publish_tokens.mint(&record, now_us, expires_us),
        whip_url: format!("{}/v1/streams/{name}/whip", s.public_url.trim_end_matches('/')),
        expires: epoch_seconds(expires_us),
    }))
}

/// `DELETE /v1/streams/{name}/whip-token` (signed): every publishing token of the stream
/// issued so far stops working (sessions already publishing go on until they end).
async fn delete_whip_tokens(
    Scoped(s): Scoped<KvsState>,
    Path(name): Path<String>,
) -> Result<RestJson<Empty>, ApiError> {
    s.store.revoke_publish_tokens(&s.scope, &name).await?;
    Ok(RestJson(Empty {}))
}

/// `DELETE /v1/whip/{id}`: the publisher stops; what it sent is kept.
async fn delete_whip(Scoped(s): Scoped<KvsState>, Path(id): Path<String>) -> Result<RestJson<Empty>, ApiError> {
    s.whip.close(&id).await.map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(RestJson(Empty {}))
}

/// `DELETE /v1/whep/{id}`: the viewer leaves.
async fn delete_whep(Scoped(s): Scoped<KvsState>, Path(id): Path<String>) -> Result<RestJson<Empty>, ApiError> {
    s.whep.close(&id).await.map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(RestJson(Empty {}))
}

/// `PATCH /v1/whep/{id}` and `/v1/whip/{id}`: trickle ICE is not taken; the answer
/// carried every candidate.
async fn patch_webrtc() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowedException",
        "trickle ICE is not supported: the answer carries every candidate",
    )
}
