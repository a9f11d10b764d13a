//! The URLs a streaming session hands out: HLS playlists, DASH manifests and their
//! init and media fragments, in Kinesis Video's shape (`/hls/v1/...`, `/dash/v1/...`).
//!
//! These are fetched by players, not SDKs: the signed `SessionToken` query parameter
//! is the credential (no SigV4), every response carries CORS headers so a page on
//! another origin can play, and fragments honour byte ranges.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use super::KvsState;
use crate::api::error::ApiError;
use crate::api::shapes::{parse_range, RangeAsk};
use crate::playback::ll_hls::LowLatencyView;
use crate::playback::selection::{self, admits};
use crate::playback::session::{Protocol, Session, TokenError};
use crate::playback::ts_segment::{self, TsProgram};
use crate::playback::{dash, hls};
use crate::video_store::{FragmentMeta, PartLookup, TimeKind};
use crate::wire::fmp4::{chunk_ranges, parse_init, InitInfo};
use crate::wire::mp4_tracks::{fragment_samples, track_init, write_track_fragment};

pub fn routes(state: KvsState) -> Router<KvsState> {
    Router::new()
        .route("/hls/v1/getHLSMasterPlaylist.m3u8", get(hls_master))
        .route("/hls/v1/getHLSMediaPlaylist.m3u8", get(hls_media))
        .route("/hls/v1/getMP4InitFragment.mp4", get(hls_init))
        .route("/hls/v1/getMP4MediaFragment.mp4", get(hls_fragment))
        .route("/hls/v1/getTSFragment.ts", get(hls_ts_fragment))
        .route("/hls/v1/getMP4MediaPart.mp4", get(hls_part))
        .route("/dash/v1/getDASHManifest.mpd", get(dash_manifest))
        .route("/dash/v1/getMP4InitFragment.mp4", get(dash_init))
        .route("/dash/v1/getMP4MediaFragment.mp4", get(dash_fragment))
        .layer(middleware::from_fn_with_state(state, cors))
}

type Params = Query<HashMap<String, String>>;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// Adds the CORS headers, and answers preflight requests.
async fn cors(State(s): State<KvsState>, req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(req).await };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, s.cors_allow_origin.clone());
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Content-Length, Content-Range"));
    if preflight {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Range"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    }
    resp
}

/// The session a request's token grants, and its stream still exists.
fn session(s: &KvsState, q: &HashMap<String, String>, protocol: Protocol) -> Result<(Session, String), ApiError> {
    let token =
        q.get("SessionToken").ok_or_else(|| ApiError::invalid_argument("the SessionToken parameter is required"))?;
    let session = s
        .sessions
        .verify(token, protocol, s.store.clock().now_us())
        .map_err(|e: TokenError| ApiError::new(StatusCode::FORBIDDEN, "NotAuthorizedException", e.to_string()))?;
    let record = s.store.resolve(&session.scope, Some(&session.stream_name), None)?;
    if record.id != session.stream {
        return Err(ApiError::not_found(format!("stream '{}' was deleted", session.stream_name)));
    }
    Ok((session, token.clone()))
}

fn number_param<T: std::str::FromStr>(q: &HashMap<String, String>, name: &str) -> Result<T, ApiError> {
    let v = q.get(name).ok_or_else(|| ApiError::invalid_argument(format!("the {name} parameter is required")))?;
    v.parse().map_err(|_| ApiError::invalid_argument(format!("{name} '{v}' is not a valid number")))
}

fn init_info(s: &KvsState, session: &Session, init_id: u32) -> Result<(Bytes, InitInfo), ApiError> {
    let bytes = s
        .store
        .init_segment(session.stream, init_id)?
        .ok_or_else(|| ApiError::not_found(format!("init segment {init_id} does not exist")))?;
    let info = parse_init(&bytes).map_err(|e| ApiError::internal(format!("stored init segment {init_id}: {e}")))?;
    Ok((bytes, info))
}

fn text(content_type: &'static str, cache: &'static str, body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, cache)], body).into_response()
}

/// A finished list can be cached briefly; a growing one must be fetched every time.
fn playlist_cache(ended: bool) -> &'static str {
    if ended {
        "public, max-age=300"
    } else {
        NO_CACHE
    }
}

async fn hls_master(State(s): State<KvsState>, Query(q): Params) -> Result<Response, ApiError> {
    let (session, token) = session(&s, &q, Protocol::Hls)?;
    let window = selection::window(&s.store, &session, s.store.clock().now_us())?;
    let first = window.entries.first().map(|e| e.meta.init_id).unwrap_or(1);
    let (_, info) = init_info(&s, &session, first)?;
    let bytes: u64 = window.entries.iter().map(|e| u64::from(e.meta.len)).sum();
    let micros: i64 = window.entries.iter().map(|e| e.meta.duration_us).sum::<i64>().max(1);
    let peak = window
        .entries
        .iter()
        .map(|e| u64::from(e.meta.len) * 8_000_000 / e.meta.duration_us.max(1) as u64)
        .max()
        .unwrap_or(bytes * 8_000_000 / micros as u64);
    Ok(text("application/vnd.apple.mpegurl", NO_CACHE, hls::master_playlist(&info, peak, &token)))
}

async fn hls_media(State(s): State<KvsState>, Query(q): Params) -> Result<Response, ApiError> {
    let (session, token) = session(&s, &q, Protocol::Hls)?;
    if !session.low_latency {
        let window = selection::window(&s.store, &session, s.store.clock().now_us())?;
        let body = hls::media_playlist(&window, &session, &token, None);
        return Ok(text("application/vnd.apple.mpegurl", playlist_cache(window.ended), body));
    }
    let block = blocking_reload(&q)?;
    let live = s.store.live(session.stream)?;
    let (mut edge, mut parts) = (live.subscribe(), live.subscribe_parts());
    let started = tokio::time::Instant::now();
    let mut waited = false;
    loop {
        edge.borrow_and_update();
        parts.borrow_and_update();
        let window = selection::window(&s.store, &session, s.store.clock().now_us())?;
        let from = window.entries.first().map_or(0, |e| e.meta.fragment_number);
        let view = LowLatencyView::new(&window, &live.parts_since(from));
        let Some((msn, part)) = block.filter(|(msn, part)| !view.holds(*msn, *part)) else {
            if block.is_some() {
                s.metrics.count_ll_hls("reload", if waited { "waited" } else { "immediate" });
            }
            let body = hls::media_playlist(&window, &session, &token, Some(&view));
            return Ok(text("application/vnd.apple.mpegurl", NO_CACHE, body));
        };
        if view.too_far(msn) {
            s.metrics.count_ll_hls("reload", "too_far");
            return Err(ApiError::invalid_argument(format!(
                "_HLS_msn {msn} is more than two segments past the playlist's last ({})",
                view.last_msn.unwrap_or(0)
            )));
        }
        // RFC 8216bis: give up after three target durations.
        let longest_us = window.entries.iter().map(|e| e.meta.duration_us).max().unwrap_or(1_000_000);
        let limit = std::time::Duration::from_micros((3 * longest_us.clamp(1_000_000, 20_000_000)) as u64);
        let Some(left) = limit.checked_sub(started.elapsed()) else {
            s.metrics.count_ll_hls("reload", "timeout");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                format!("segment {msn} part {part:?} did not arrive within {} s", limit.as_secs()),
            ));
        };
        waited = true;
        tokio::select! {
            _ = edge.changed() => {}
            _ = parts.changed() => {}
            _ = tokio::time::sleep(left) => {}
        }
    }
}

/// A blocking reload's `_HLS_msn` and `_HLS_part` (RFC 8216bis 6.2.5.2), if asked.
fn blocking_reload(q: &HashMap<String, String>) -> Result<Option<(u64, Option<usize>)>, ApiError> {
    let msn = q.get("_HLS_msn").map(|_| number_param::<u64>(q, "_HLS_msn")).transpose()?;
    let part = q.get("_HLS_part").map(|_| number_param::<usize>(q, "_HLS_part")).transpose()?;
    match (msn, part) {
        (None, Some(_)) => Err(ApiError::invalid_argument("_HLS_part needs _HLS_msn")),
        (msn, part) => Ok(msn.map(|m| (m, part))),
    }
}

/// How long a part request waits for a part still to come (a preload hint).
const PART_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One part of a fragment: from memory while the fragment is received or recent (held
/// until it arrives, for preload hints), else cut from the stored fragment.
async fn hls_part(State(s): State<KvsState>, Query(q): Params, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, _) = session(&s, &q, Protocol::Hls)?;
    if !session.low_latency {
        return Err(ApiError::not_found("parts are served to LowLatency sessions only"));
    }
    let number: u64 = number_param(&q, "FragmentNumber")?;
    let index: usize = number_param(&q, "PartNumber")?;
    let live = s.store.live(session.stream)?;
    let mut changes = live.subscribe_parts();
    let deadline = tokio::time::Instant::now() + PART_WAIT;
    let mut waited = false;
    loop {
        changes.borrow_and_update();
        match live.part(number, index) {
            PartLookup::Ready(bytes) => {
                s.metrics.count_ll_hls("part", if waited { "waited" } else { "memory" });
                let mut resp = ranged(bytes, &headers);
                // Not immutable: a fragment still open could, in a race of two
                // producers, be stored under another number.
                resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
                return Ok(resp);
            }
            PartLookup::NotYet => {
                waited = true;
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        s.metrics.count_ll_hls("part", "missing");
                        return Err(ApiError::not_found(format!("part {index} of fragment {number} did not arrive")));
                    }
                }
            }
            PartLookup::Absent => break,
        }
    }
    let meta = session_fragment(&s, &session, number).inspect_err(|_| s.metrics.count_ll_hls("part", "missing"))?;
    let bytes = s.store.read_fragment(session.stream, &meta).await?;
    let ranges = chunk_ranges(&bytes).map_err(|e| ApiError::internal(format!("fragment {number}: {e}")))?;
    let Some(range) = ranges.get(index) else {
        s.metrics.count_ll_hls("part", "missing");
        return Err(ApiError::not_found(format!("fragment {number} has no part {index}")));
    };
    s.metrics.count_ll_hls("part", "store");
    Ok(ranged(bytes.slice(range.clone()), &headers))
}

async fn hls_init(State(s): State<KvsState>, Query(q): Params, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, _) = session(&s, &q, Protocol::Hls)?;
    let init_id: u32 = number_param(&q, "InitId")?;
    let (bytes, _) = init_info(&s, &session, init_id)?;
    Ok(ranged(bytes, &headers))
}

/// The stored fragment a session may show, by number.
fn session_fragment(s: &KvsState, session: &Session, number: u64) -> Result<FragmentMeta, ApiError> {
    let meta = s
        .store
        .fragment(session.stream, number)?
        .filter(|m| admits(session, m))
        .ok_or_else(|| ApiError::not_found(format!("fragment {number} is not part of this session")))?;
    Ok(meta)
}

async fn hls_fragment(State(s): State<KvsState>, Query(q): Params, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, _) = session(&s, &q, Protocol::Hls)?;
    let number: u64 = number_param(&q, "FragmentNumber")?;
    let meta = session_fragment(&s, &session, number)?;
    let bytes = s.store.read_fragment(session.stream, &meta).await?;
    Ok(ranged(bytes, &headers))
}

/// A fragment as an MPEG-TS segment, for `ContainerFormat=MPEG_TS` sessions.
async fn hls_ts_fragment(
    State(s): State<KvsState>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (session, _) = session(&s, &q, Protocol::Hls)?;
    if !session.mpeg_ts {
        return Err(ApiError::not_found("TS segments are served to ContainerFormat MPEG_TS sessions"));
    }
    let number: u64 = number_param(&q, "FragmentNumber")?;
    let meta = session_fragment(&s, &session, number)?;
    let bytes = s.store.read_fragment(session.stream, &meta).await?;
    let (_, info) = init_info(&s, &session, meta.init_id)?;
    let program = TsProgram::new(&info).ok_or_else(|| {
        ApiError::invalid_argument("no track of this stream has a codec MPEG-TS carries (H.264, H.265, AAC)")
    })?;
    let segment = ts_segment::write_segment(&program, &info, &bytes)
        .map_err(|e| ApiError::internal(format!("fragment {number} as MPEG-TS: {e}")))?;
    let mut resp = ranged(Bytes::from(segment), &headers);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ts_segment::CONTENT_TYPE));
    Ok(resp)
}

async fn dash_manifest(State(s): State<KvsState>, Query(q): Params) -> Result<Response, ApiError> {
    let (session, token) = session(&s, &q, Protocol::Dash)?;
    let now = s.store.clock().now_us();
    let window = selection::window(&s.store, &session, now)?;
    let mut inits: HashMap<u32, Option<InitInfo>> = HashMap::new();
    for e in &window.entries {
        if let std::collections::hash_map::Entry::Vacant(v) = inits.entry(e.meta.init_id) {
            v.insert(init_info(&s, &session, e.meta.init_id).ok().map(|(_, i)| i));
        }
    }
    let manifest = dash::manifest(&window, &session, &|id| inits.get(&id).cloned().flatten(), &token, now);
    Ok(text("application/dash+xml", playlist_cache(window.ended), manifest.to_xml()))
}

/// The track a DASH `TrackNumber` (1-based, init segment order) names.
fn dash_track(info: &InitInfo, q: &HashMap<String, String>) -> Result<u32, ApiError> {
    let n: usize = number_param(q, "TrackNumber")?;
    n.checked_sub(1)
        .and_then(|i| info.tracks.get(i))
        .map(|t| t.track_id)
        .ok_or_else(|| ApiError::not_found(format!("track {n} does not exist")))
}

async fn dash_init(State(s): State<KvsState>, Query(q): Params, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, _) = session(&s, &q, Protocol::Dash)?;
    let init_id: u32 = number_param(&q, "InitId")?;
    let (bytes, info) = init_info(&s, &session, init_id)?;
    let track_id = dash_track(&info, &q)?;
    let one = track_init(&bytes, track_id).map_err(|e| ApiError::internal(format!("init segment {init_id}: {e}")))?;
    Ok(ranged(Bytes::from(one), &headers))
}

async fn dash_fragment(State(s): State<KvsState>, Query(q): Params, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, _) = session(&s, &q, Protocol::Dash)?;
    let t_ms: i64 = number_param(&q, "Time")?;
    let t_us = t_ms.saturating_mul(1000);
    // Several fragments may share a producer time; the newest is the one shown.
    let meta = s
        .store
        .fragments_in_range(session.stream, TimeKind::Producer, t_us, t_us.saturating_add(999), None, 16)?
        .into_iter()
        .rev()
        .find(|m| admits(&session, m))
        .ok_or_else(|| ApiError::not_found(format!("no fragment of this session starts at {t_ms}")))?;
    let (_, info) = init_info(&s, &session, meta.init_id)?;
    let track_id = dash_track(&info, &q)?;
    let bytes = s.store.read_fragment(session.stream, &meta).await?;
    let bad = |e| ApiError::internal(format!("fragment {}: {e}", meta.fragment_number));
    let tracks = fragment_samples(&bytes, &info).map_err(bad)?;
    // Every track moves by the same amount: the timing track's start lands on the
    // fragment's producer time.
    let timing = info.timing_track().map(|t| t.track_id).unwrap_or(track_id);
    let timing_start_us = tracks
        .iter()
        .find(|t| t.track_id == timing)
        .and_then(|t| t.start().map(|d| i128::from(d) * 1_000_000 / i128::from(t.timescale.max(1))))
        .unwrap_or(0);
    let shift_us = i128::from(t_us) - timing_start_us;
    let Some(track) = tracks.iter().find(|t| t.track_id == track_id) else {
        return Err(ApiError::not_found("the track has no samples in this fragment"));
    };
    let start = i128::from(track.start().unwrap_or(0)) + shift_us * i128::from(track.timescale) / 1_000_000;
    let mut out = Vec::with_capacity(bytes.len());
    write_track_fragment(
        &mut out,
        meta.fragment_number as u32,
        track_id,
        u64::try_from(start.max(0)).unwrap_or(0),
        &track.samples,
        &bytes,
    )
    .map_err(bad)?;
    Ok(ranged(Bytes::from(out), &headers))
}

/// A fragment response: the whole body, or the one byte range asked for.
fn ranged(bytes: Bytes, headers: &HeaderMap) -> Response {
    let len = bytes.len() as u64;
    let base = [
        (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
        (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ];
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match range.map(|r| parse_range(r, len)) {
        None | Some(RangeAsk::Whole) => (StatusCode::OK, base, Body::from(bytes)).into_response(),
        Some(RangeAsk::Part(a, b)) => {
            let mut resp =
                (StatusCode::PARTIAL_CONTENT, base, Body::from(bytes.slice(a as usize..=b as usize))).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
        Some(RangeAsk::Unsatisfiable) => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Part(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=95-", 100), RangeAsk::Part(95, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=9-3", 100), RangeAsk::Whole);
    }
}
