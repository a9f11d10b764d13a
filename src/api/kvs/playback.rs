//! Kinesis Video archived media, playback half: GetHLSStreamingSessionURL,
//! GetDASHStreamingSessionURL and GetClip. The URLs these hand out are served by
//! [`super::playback_http`].

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::{KvsState, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::RestJson;
use crate::api::registry::Scoped;
use crate::api::shapes::Timestamp;
use crate::codec::CodecKind;
use crate::playback::selection::LIVE_RECENT_US;
use crate::playback::session::{DiscontinuityMode, PlaybackMode, Protocol, SelectorClock, Session};
use crate::playback::{clip, dash};
use crate::video_store::{FragmentMeta, StreamRecord};
use crate::wire::fmp4::parse_init;

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/getHLSStreamingSessionURL", post(get_hls_streaming_session_url))
        .route("/getDASHStreamingSessionURL", post(get_dash_streaming_session_url))
        .route("/getClip", post(get_clip))
}

const MAX_RANGE_US: i64 = 24 * 3_600_000_000;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimestampRange {
    start_timestamp: Option<Timestamp>,
    end_timestamp: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Selector {
    fragment_selector_type: Option<String>,
    timestamp_range: Option<TimestampRange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionUrlInput {
    #[serde(flatten)]
    stream: StreamRef,
    playback_mode: Option<String>,
    #[serde(alias = "DASHFragmentSelector")]
    #[serde(rename = "HLSFragmentSelector")]
    fragment_selector: Option<Selector>,
    container_format: Option<String>,
    discontinuity_mode: Option<String>,
    display_fragment_timestamp: Option<String>,
    display_fragment_number: Option<String>,
    expires: Option<i64>,
    #[serde(alias = "MaxManifestFragmentResults")]
    max_media_playlist_fragment_results: Option<i64>,
    /// Our extension: Low-Latency HLS (parts, blocking reloads) for a LIVE HLS session.
    low_latency: Option<bool>,
}

fn clock_of(selector: Option<&Selector>) -> Result<SelectorClock, ApiError> {
    match selector.and_then(|s| s.fragment_selector_type.as_deref()) {
        None | Some("SERVER_TIMESTAMP") => Ok(SelectorClock::Server),
        Some("PRODUCER_TIMESTAMP") => Ok(SelectorClock::Producer),
        Some(other) => Err(ApiError::invalid_argument(format!(
            "FragmentSelectorType '{other}' must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP"
        ))),
    }
}

fn always_never(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None | Some("NEVER") => Ok(false),
        Some("ALWAYS") => Ok(true),
        Some(other) => Err(ApiError::invalid_argument(format!("{name} '{other}' must be ALWAYS or NEVER"))),
    }
}

/// The checks every archived-media playback call makes of the stream and its media.
fn check_playable(
    s: &KvsState,
    record: &StreamRecord,
    init_id: u32,
    protocol: Option<Protocol>,
) -> Result<(), ApiError> {
    let init = s
        .store
        .init_segment(record.id, init_id)?
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "MissingCodecPrivateDataException", "no init segment"))?;
    let info = parse_init(&init).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidCodecPrivateDataException", format!("init segment: {e}"))
    })?;
    let Some(first) = info.tracks.first() else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "UnsupportedStreamMediaTypeException", "no tracks"));
    };
    let kind = CodecKind::from_sample_entry(first.sample_entry);
    let video_ok = kind.is_some_and(CodecKind::is_video);
    let audio_only_ok = protocol == Some(Protocol::Hls) && kind.is_some_and(CodecKind::plays_alone_in_hls);
    if !(video_ok || audio_only_ok) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedStreamMediaTypeException",
            format!(
                "track 1 is '{}'; it must be H.264 or H.265 video{}",
                first.sample_entry,
                if protocol == Some(Protocol::Hls) { " (or AAC audio)" } else { "" }
            ),
        ));
    }
    if !crate::codec::has_decoder_config(first) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MissingCodecPrivateDataException",
            format!("track 1 ('{}') has no codec private data", first.sample_entry),
        ));
    }
    Ok(())
}

pub(super) fn no_retention(record: &StreamRecord) -> Result<(), ApiError> {
    if record.data_retention_hours == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "NoDataRetentionException",
            format!("stream '{}' keeps no data (DataRetentionInHours is 0)", record.name),
        ));
    }
    Ok(())
}

/// Checks a selector's range: start before end, at most 24 hours, a server-time end
/// in the past.
fn check_range(start: i64, end: i64, clock: SelectorClock, now_us: i64) -> Result<(), ApiError> {
    if end <= start {
        return Err(ApiError::invalid_argument("EndTimestamp must be later than StartTimestamp"));
    }
    if end - start > MAX_RANGE_US {
        return Err(ApiError::invalid_argument("the timestamp range must not exceed 24 hours"));
    }
    if clock == SelectorClock::Server && end > now_us {
        return Err(ApiError::invalid_argument("with SERVER_TIMESTAMP, EndTimestamp must be in the past"));
    }
    Ok(())
}

impl SessionUrlInput {
    /// The session the input asks for, checked as Kinesis Video checks it (what it
    /// shows is looked up by the caller).
    fn session(&self, protocol: Protocol, record: &StreamRecord, now_us: i64) -> Result<Session, ApiError> {
        let mode = match self.playback_mode.as_deref() {
            None => PlaybackMode::Live,
            Some(m) => PlaybackMode::parse(m).ok_or_else(|| {
                ApiError::invalid_argument(format!("PlaybackMode '{m}' must be LIVE, LIVE_REPLAY or ON_DEMAND"))
            })?,
        };
        let mpeg_ts = protocol == Protocol::Hls && mpeg_ts(self.container_format.as_deref())?;
        let expires_s = self.expires.unwrap_or(300);
        if !(300..=43_200).contains(&expires_s) {
            return Err(ApiError::invalid_argument("Expires must be between 300 and 43200 seconds"));
        }
        let max_fragments = match self.max_media_playlist_fragment_results {
            None if mode == PlaybackMode::OnDemand => 1000,
            None => 5,
            Some(n) if (1..=5000).contains(&n) => n as u32,
            Some(_) => return Err(ApiError::invalid_argument("the maximum fragment count must be between 1 and 5000")),
        };
        let selector = self.fragment_selector.as_ref();
        let clock = clock_of(selector)?;
        let (start_us, end_us) = selected_range(mode, selector, clock, now_us)?;
        let discontinuity = match (protocol, self.discontinuity_mode.as_deref()) {
            (Protocol::Dash, _) => DiscontinuityMode::OnDiscontinuity,
            (Protocol::Hls, None) if clock == SelectorClock::Server => DiscontinuityMode::Always,
            (Protocol::Hls, None) => DiscontinuityMode::Never,
            (Protocol::Hls, Some(m)) => DiscontinuityMode::parse(m).ok_or_else(|| {
                ApiError::invalid_argument(format!("DiscontinuityMode '{m}' must be ALWAYS, NEVER or ON_DISCONTINUITY"))
            })?,
        };
        let low_latency = self.low_latency.unwrap_or(false);
        if low_latency && (protocol != Protocol::Hls || mode != PlaybackMode::Live) {
            return Err(ApiError::invalid_argument("LowLatency is only for HLS sessions with PlaybackMode LIVE"));
        }
        if low_latency && mpeg_ts {
            return Err(ApiError::invalid_argument(
                "LowLatency sessions are FRAGMENTED_MP4 (their parts are CMAF chunks); ContainerFormat MPEG_TS is for the others",
            ));
        }
        Ok(Session {
            protocol,
            stream: record.id,
            stream_name: record.name.clone(),
            scope: record.scope.clone(),
            mode,
            clock,
            start_us,
            end_us,
            created_us: now_us,
            expires_us: now_us + expires_s * 1_000_000,
            max_fragments,
            discontinuity,
            display_timestamp: always_never("DisplayFragmentTimestamp", self.display_fragment_timestamp.as_deref())?,
            display_fragment_number: always_never("DisplayFragmentNumber", self.display_fragment_number.as_deref())?,
            anchor_fragment: 0,
            origin_us: 0,
            nonce: hex::encode(crate::playback::session::random_bytes::<16>().map_err(ApiError::internal)?),
            low_latency,
            mpeg_ts,
        })
    }
}

/// Whether an HLS session's ContainerFormat asks for MPEG-TS segments.
fn mpeg_ts(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("FRAGMENTED_MP4") => Ok(false),
        Some("MPEG_TS") => Ok(true),
        Some(other) => {
            Err(ApiError::invalid_argument(format!("ContainerFormat '{other}' must be FRAGMENTED_MP4 or MPEG_TS")))
        }
    }
}

/// The (start, end) a mode's selector gives: none for LIVE, a checked range otherwise.
fn selected_range(
    mode: PlaybackMode,
    selector: Option<&Selector>,
    clock: SelectorClock,
    now_us: i64,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let range = selector.and_then(|s| s.timestamp_range.as_ref());
    if mode == PlaybackMode::Live {
        if range.is_some() {
            return Err(ApiError::invalid_argument("TimestampRange must not be set for LIVE playback"));
        }
        return Ok((None, None));
    }
    let (Some(_), Some(range)) = (selector, range) else {
        return Err(ApiError::invalid_argument(
            "FragmentSelector with a TimestampRange is required for ON_DEMAND and LIVE_REPLAY playback",
        ));
    };
    let start =
        range.start_timestamp.ok_or_else(|| ApiError::invalid_argument("TimestampRange.StartTimestamp is required"))?.0;
    let end = range.end_timestamp.map(|t| t.0);
    match end {
        Some(end) => check_range(start, end, clock, now_us)?,
        None if mode == PlaybackMode::OnDemand => {
            return Err(ApiError::invalid_argument("ON_DEMAND playback requires an EndTimestamp"))
        }
        None => {}
    }
    Ok((Some(start), end))
}

/// The first fragment the session will show, which must exist now, as Kinesis Video
/// checks; a LIVE session is anchored at the newest ones, a range at its first.
fn first_fragment(
    s: &KvsState,
    record: &StreamRecord,
    session: &mut Session,
    now_us: i64,
) -> Result<FragmentMeta, ApiError> {
    if session.mode == PlaybackMode::Live {
        let newest = s.store.last_fragments(record.id, session.max_fragments as usize)?;
        let Some(&last) = newest.last().filter(|m| m.server_ts_us >= now_us - LIVE_RECENT_US) else {
            return Err(ApiError::not_found(format!(
                "stream '{}' has had no fragments in the last 30 seconds",
                record.name
            )));
        };
        session.anchor_fragment = newest[0].fragment_number;
        return Ok(last);
    }
    let (start, end) = (session.start_us.unwrap_or(i64::MIN), session.end_us.unwrap_or(i64::MAX));
    let found = s.store.fragments_in_range(record.id, session.clock.time_kind(), start, end, None, 1)?;
    let first = found.into_iter().next().ok_or_else(|| ApiError::not_found("no fragments in the requested range"))?;
    session.origin_us = first.producer_ts_us;
    Ok(first)
}

#[derive(Serialize)]
pub struct SessionUrlOutput {
    #[serde(rename = "HLSStreamingSessionURL", skip_serializing_if = "Option::is_none")]
    hls: Option<String>,
    #[serde(rename = "DASHStreamingSessionURL", skip_serializing_if = "Option::is_none")]
    dash: Option<String>,
}

async fn session_url(
    s: KvsState,
    input: SessionUrlInput,
    protocol: Protocol,
) -> Result<RestJson<SessionUrlOutput>, ApiError> {
    let record = input.stream.resolve(&s)?;
    no_retention(&record)?;
    let now_us = s.store.clock().now_us();
    let mut session = input.session(protocol, &record, now_us)?;
    let first = first_fragment(&s, &record, &mut session, now_us)?;
    check_playable(&s, &record, first.init_id, Some(protocol))?;
    let token = s.sessions.sign(&session);
    let base = s.public_url.trim_end_matches('/');
    Ok(RestJson(match protocol {
        Protocol::Hls => SessionUrlOutput {
            hls: Some(format!("{base}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}")),
            dash: None,
        },
        Protocol::Dash => SessionUrlOutput {
            hls: None,
            dash: Some(format!("{base}/dash/v1/{}?SessionToken={token}", dash::MANIFEST)),
        },
    }))
}

async fn get_hls_streaming_session_url(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<SessionUrlInput>,
) -> Result<RestJson<SessionUrlOutput>, ApiError> {
    session_url(s, i, Protocol::Hls).await
}

async fn get_dash_streaming_session_url(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<SessionUrlInput>,
) -> Result<RestJson<SessionUrlOutput>, ApiError> {
    session_url(s, i, Protocol::Dash).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetClipInput {
    #[serde(flatten)]
    stream: StreamRef,
    clip_fragment_selector: Option<Selector>,
}

async fn get_clip(Scoped(s): Scoped<KvsState>, RestJson(input): RestJson<GetClipInput>) -> Result<Response, ApiError> {
    let record = input.stream.resolve(&s)?;
    no_retention(&record)?;
    let selector = input
        .clip_fragment_selector
        .as_ref()
        .ok_or_else(|| ApiError::invalid_argument("ClipFragmentSelector is required"))?;
    if selector.fragment_selector_type.is_none() {
        return Err(ApiError::invalid_argument("ClipFragmentSelector.FragmentSelectorType is required"));
    }
    let clock = clock_of(Some(selector))?;
    let range = selector
        .timestamp_range
        .as_ref()
        .ok_or_else(|| ApiError::invalid_argument("ClipFragmentSelector.TimestampRange is required"))?;
    let (Some(start), Some(end)) = (range.start_timestamp, range.end_timestamp) else {
        return Err(ApiError::invalid_argument("TimestampRange needs StartTimestamp and EndTimestamp"));
    };
    check_range(start.0, end.0, clock, s.store.clock().now_us())?;
    let kind = clock.time_kind();
    if let Some(first) = s.store.fragments_in_range(record.id, kind, start.0, end.0, None, 1)?.first() {
        check_playable(&s, &record, first.init_id, None)?;
    }
    let built = clip::build(&s.store, record.id, kind, start.0, end.0).await?;
    tracing::debug!(fragments = built.fragments, truncated = built.truncated, bytes = built.bytes.len(), "clip built");
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "video/mp4")], built.bytes).into_response())
}
