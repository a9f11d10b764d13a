//! Kinesis Video archived media (`kinesis-video-archived-media`): ListFragments and
//! GetMediaForFragmentList. (HLS, DASH and clips are in [`super::playback`].)

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{KvsState, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::RestJson;
use crate::api::registry::Scoped;
use crate::api::shapes::{epoch_seconds, Timestamp};
use crate::playback::get_media;
use crate::video_store::{FragmentMeta, TimeKind};

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/listFragments", post(list_fragments))
        .route("/getMediaForFragmentList", post(get_media_for_fragment_list))
}

/// A fragment as ListFragments describes it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Fragment {
    fragment_number: String,
    fragment_size_in_bytes: u64,
    producer_timestamp: f64,
    server_timestamp: f64,
    fragment_length_in_milliseconds: i64,
}

impl From<&FragmentMeta> for Fragment {
    fn from(m: &FragmentMeta) -> Self {
        Fragment {
            fragment_number: m.fragment_number.to_string(),
            fragment_size_in_bytes: u64::from(m.len),
            producer_timestamp: epoch_seconds(m.producer_ts_us),
            server_timestamp: epoch_seconds(m.server_ts_us),
            fragment_length_in_milliseconds: m.duration_us / 1000,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimestampRange {
    start_timestamp: Timestamp,
    end_timestamp: Timestamp,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FragmentSelector {
    fragment_selector_type: String,
    timestamp_range: TimestampRange,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFragmentsInput {
    #[serde(flatten)]
    stream: StreamRef,
    max_results: Option<i64>,
    next_token: Option<String>,
    fragment_selector: Option<FragmentSelector>,
}

/// What a ListFragments NextToken carries: the query and where the last page ended.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct ListCursor {
    /// "P", "S", or "N" (all fragments by number).
    k: String,
    s: i64,
    e: i64,
    /// The last (time, fragment number) returned.
    t: i64,
    n: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFragmentsOutput {
    fragments: Vec<Fragment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

async fn list_fragments(
    Scoped(s): Scoped<KvsState>,
    RestJson(input): RestJson<ListFragmentsInput>,
) -> Result<RestJson<ListFragmentsOutput>, ApiError> {
    let record = input.stream.resolve(&s)?;
    let now = s.store.clock().now_ms();
    let limit = match input.max_results {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(_) => return Err(ApiError::invalid_argument("MaxResults must be between 1 and 1000")),
    };
    let (kind, start, end, after) = match (&input.next_token, &input.fragment_selector) {
        (Some(t), _) => {
            let c: ListCursor = s
                .pages
                .open("ListFragments", t, now, None)
                .map_err(|_| ApiError::invalid_argument("NextToken is not valid"))?;
            (c.k.clone(), c.s, c.e, Some((c.t, c.n)))
        }
        (None, Some(sel)) => {
            let k = match sel.fragment_selector_type.as_str() {
                "PRODUCER_TIMESTAMP" => "P",
                "SERVER_TIMESTAMP" => "S",
                other => {
                    return Err(ApiError::invalid_argument(format!(
                        "FragmentSelectorType '{other}' must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP"
                    )))
                }
            };
            let (st, en) = (sel.timestamp_range.start_timestamp.0, sel.timestamp_range.end_timestamp.0);
            if en < st {
                return Err(ApiError::invalid_argument("EndTimestamp must not be before StartTimestamp"));
            }
            (k.to_string(), st, en, None)
        }
        (None, None) => ("N".to_string(), i64::MIN, i64::MAX, None),
    };
    // One more than asked tells whether there is a next page.
    let mut fragments = match kind.as_str() {
        "P" | "S" => {
            let tk = if kind == "P" { TimeKind::Producer } else { TimeKind::Server };
            s.store.fragments_in_range(record.id, tk, start, end, after, limit + 1)?
        }
        _ => {
            let from = after.map_or(0, |(_, n)| n.saturating_add(1));
            s.store.fragments_from(record.id, from, limit + 1)?
        }
    };
    let more = fragments.len() > limit;
    fragments.truncate(limit);
    let next_token = fragments.last().filter(|_| more).map(|m| {
        let t = if kind == "P" { m.producer_ts_us } else { m.server_ts_us };
        s.pages.issue("ListFragments", &ListCursor { k: kind.clone(), s: start, e: end, t, n: m.fragment_number }, now)
    });
    Ok(RestJson(ListFragmentsOutput { fragments: fragments.iter().map(Fragment::from).collect(), next_token }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetMediaForFragmentListInput {
    #[serde(flatten)]
    stream: StreamRef,
    fragments: Vec<String>,
}

async fn get_media_for_fragment_list(
    Scoped(s): Scoped<KvsState>,
    headers: HeaderMap,
    RestJson(input): RestJson<GetMediaForFragmentListInput>,
) -> Result<Response, ApiError> {
    let record = input.stream.resolve(&s)?;
    if input.fragments.is_empty() || input.fragments.len() > 1000 {
        return Err(ApiError::invalid_argument("Fragments must list 1 to 1000 fragment numbers"));
    }
    let mut metas = Vec::with_capacity(input.fragments.len());
    for f in &input.fragments {
        if f.is_empty() || f.len() > 128 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid_argument(format!("fragment number '{f}' must be 1 to 128 decimal digits")));
        }
        let n: u64 = f.parse().map_err(|_| ApiError::not_found(format!("fragment {f} does not exist")))?;
        let meta = s
            .store
            .fragment(record.id, n)?
            .ok_or_else(|| ApiError::not_found(format!("fragment {f} does not exist")))?;
        metas.push(meta);
    }
    let metrics = s.metrics.clone();
    let format = super::media::media_format(&headers);
    let stream = get_media::fragment_list(s.store.clone(), record.id, metas, format).map(move |b| {
        metrics.add_bytes_out(b.len() as u64);
        Ok::<_, Infallible>(b)
    });
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, format.content_type())], Body::from_stream(stream)).into_response())
}
