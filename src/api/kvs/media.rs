//! Kinesis Video media: PutMedia (ingest, acknowledgements streamed back) and
//! GetMedia (`kinesis-video-media`), both long-lived streaming requests.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{KvsState, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::RestJson;
use crate::api::registry::Scoped;
use crate::api::shapes::{parse_timestamp_str, Timestamp};
use crate::ingest::put_media::{run_session, Ack, SessionParams, TimecodeType};
use crate::playback::get_media::{self, MediaFormat, StartAt};
use crate::video_store::{TimeKind, VideoStore};

/// How long a PutMedia response stays silent before an IDLE acknowledgement.
pub const IDLE_ACK_AFTER: Duration = Duration::from_secs(3);

pub fn routes() -> Router<KvsState> {
    Router::new().route("/putMedia", post(put_media)).route("/getMedia", post(get_media))
}

/// The format a GetMedia or GetMediaForFragmentList caller gets: Matroska, as Kinesis
/// Video answers, unless its `Accept` header names `video/mp4` and not `video/webm`
/// (the fragmented MP4 Kinescope also serves).
pub(super) fn media_format(h: &HeaderMap) -> MediaFormat {
    let accept = h.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let names = |mime: &str| {
        accept.split(',').any(|m| m.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(mime)))
    };
    if names("video/mp4") && !names("video/webm") {
        MediaFormat::Mp4
    } else {
        MediaFormat::Matroska
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => {
            v.to_str().map(Some).map_err(|_| ApiError::invalid_argument(format!("header {name} is not valid text")))
        }
    }
}

async fn put_media(Scoped(s): Scoped<KvsState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let name = header_str(&headers, "x-amzn-stream-name")?;
    let arn = header_str(&headers, "x-amzn-stream-arn")?;
    if name.is_some() && arn.is_some() {
        return Err(ApiError::invalid_argument("give x-amzn-stream-name or x-amzn-stream-arn, not both"));
    }
    let record = s.store.resolve(&s.scope, name, arn)?;
    let timecode_type = match header_str(&headers, "x-amzn-fragment-timecode-type")? {
        None | Some("RELATIVE") => TimecodeType::Relative,
        Some("ABSOLUTE") => TimecodeType::Absolute,
        Some(other) => {
            return Err(ApiError::invalid_argument(format!(
                "x-amzn-fragment-timecode-type '{other}' must be ABSOLUTE or RELATIVE"
            )))
        }
    };
    let producer_start_us = match header_str(&headers, "x-amzn-producer-start-timestamp")? {
        None => None,
        Some(v) => Some(parse_timestamp_str(v).ok_or_else(|| {
            ApiError::invalid_argument(format!("x-amzn-producer-start-timestamp '{v}' is not epoch seconds"))
        })?),
    };
    let params = SessionParams { timecode_type, producer_start_us, limits: s.limits };
    tracing::info!(stream = %record.name, ?timecode_type, "PutMedia session started");

    let (tx, rx) = mpsc::channel::<Ack>(256);
    let store = s.store.clone();
    let metrics = s.metrics.clone();
    let stream_name = record.name.clone();
    tokio::spawn(async move {
        run_session(store, record, params, body.into_data_stream(), tx, metrics).await;
        tracing::info!(stream = %stream_name, "PutMedia session ended");
    });

    // Acknowledgements as they come, one JSON object a line; IDLE while there are none.
    let acks = futures_util::stream::unfold(rx, |mut rx| async move {
        match tokio::time::timeout(IDLE_ACK_AFTER, rx.recv()).await {
            Ok(Some(ack)) => Some((Ok::<_, Infallible>(ack.to_line()), rx)),
            Ok(None) => None,
            Err(_) => Some((Ok(Ack::idle().to_line()), rx)),
        }
    });
    let mut resp = Response::new(Body::from_stream(acks));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartSelector {
    start_selector_type: String,
    after_fragment_number: Option<String>,
    start_timestamp: Option<Timestamp>,
    continuation_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetMediaInput {
    #[serde(flatten)]
    stream: StreamRef,
    start_selector: StartSelector,
}

fn parse_fragment_number(field: &str, v: &str) -> Result<u64, ApiError> {
    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_argument(format!("{field} '{v}' must be 1 to 128 decimal digits")));
    }
    v.parse().map_err(|_| ApiError::not_found(format!("fragment {v} does not exist")))
}

/// Resolves a StartSelector to the first fragment number to send.
fn resolve_start(store: &VideoStore, stream: u64, sel: &StartSelector) -> Result<StartAt, ApiError> {
    let after_live_edge =
        || -> Result<u64, ApiError> { Ok(store.last_fragment(stream)?.map_or(0, |m| m.fragment_number) + 1) };
    let n = match sel.start_selector_type.as_str() {
        "NOW" => match store.last_fragment(stream)? {
            Some(m) => m.fragment_number,
            None => after_live_edge()?,
        },
        "EARLIEST" => store.first_fragment(stream)?.map_or(0, |m| m.fragment_number),
        "FRAGMENT_NUMBER" => next_after("FRAGMENT_NUMBER", "AfterFragmentNumber", sel.after_fragment_number.as_deref())?,
        "CONTINUATION_TOKEN" => next_after("CONTINUATION_TOKEN", "ContinuationToken", sel.continuation_token.as_deref())?,
        t @ ("SERVER_TIMESTAMP" | "PRODUCER_TIMESTAMP") => {
            let ts = sel.start_timestamp.ok_or_else(|| ApiError::invalid_argument(format!("{t} needs StartTimestamp")))?;
            let kind = if t == "SERVER_TIMESTAMP" { TimeKind::Server } else { TimeKind::Producer };
            match store.fragment_at(stream, kind, ts.0)? {
                Some(m) => m.fragment_number,
                None => after_live_edge()?,
            }
        }
        other => {
            return Err(ApiError::invalid_argument(format!(
                "StartSelectorType '{other}' must be one of FRAGMENT_NUMBER, SERVER_TIMESTAMP, PRODUCER_TIMESTAMP, NOW, EARLIEST, CONTINUATION_TOKEN"
            )))
        }
    };
    Ok(StartAt { fragment_number: n })
}

async fn get_media(
    Scoped(s): Scoped<KvsState>,
    headers: HeaderMap,
    RestJson(input): RestJson<GetMediaInput>,
) -> Result<Response, ApiError> {
    let format = media_format(&headers);
    let record = input.stream.resolve(&s)?;
    let start = resolve_start(&s.store, record.id, &input.start_selector)?;
    tracing::info!(stream = %record.name, from = start.fragment_number, "GetMedia started");
    let metrics = s.metrics.clone();
    let stream = get_media::follow(s.store.clone(), record.id, start, format)?.map(move |b| {
        metrics.add_bytes_out(b.len() as u64);
        Ok::<_, Infallible>(b)
    });
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, format.content_type())], Body::from_stream(stream)).into_response())
}

/// The fragment number after the one `member` names, which selector `kind` needs.
fn next_after(kind: &str, member: &str, value: Option<&str>) -> Result<u64, ApiError> {
    let v = value.ok_or_else(|| ApiError::invalid_argument(format!("{kind} needs {member}")))?;
    Ok(parse_fragment_number(member, v)?.saturating_add(1))
}
