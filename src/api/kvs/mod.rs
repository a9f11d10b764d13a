//! Kinesis Video Streams over rest-json: operations by path (`POST /createStream`),
//! one typed function per operation, grouped by what they serve:
//!
//! - [`streams`]: the control plane (`kinesisvideo`): streams, retention, tags, data
//!   endpoints;
//! - [`channels`]: the control plane's signalling channels and their media storage;
//! - [`edge`]: edge configurations, whose recorder is the camera pull;
//! - [`signaling`]: GetSignalingChannelEndpoint, GetIceServerConfig,
//!   SendAlexaOfferToMaster and the signalling WebSocket;
//! - [`media`]: PutMedia and GetMedia (`kinesis-video-media`), long-lived streams;
//! - [`archived`]: ListFragments, GetMediaForFragmentList;
//! - [`images`]: GetImages, images at a sampling interval;
//! - [`stream_events`]: notification and image-generation settings;
//! - [`playback`]: GetHLS/DASHStreamingSessionURL and GetClip;
//! - [`playback_http`]: the session URLs those hand out (playlists, manifests,
//!   fragments), fetched by players with a signed token instead of SigV4;
//! - [`native`]: Kinescope's own endpoints (`/v1/streams`, camera sources).
//! - [`webrtc_storage`]: JoinStorageSession (`kinesis-video-webrtc-storage`).

pub mod archived;
pub mod channels;
pub mod edge;
mod errors;
pub mod images;
pub mod media;
pub mod native;
pub mod playback;
pub mod playback_http;
pub mod signaling;
pub mod stream_events;
pub mod streams;
pub mod webrtc_storage;

use std::sync::Arc;

use super::page_token::PageTokens;
use super::registry::ForCaller;
pub use super::shapes::StreamRef;
use crate::credentials::Caller;
use crate::ingest::fragmenter::FragmentLimits;
use crate::ingest::rtsp_pull::SourceManager;
use crate::metrics::Metrics;
use crate::playback::session::SessionSigner;
use crate::scope::Scope;
use crate::video_store::{StoreError, StreamRecord, VideoStore};
use axum::http::HeaderValue;
use axum::Router;

/// What the Kinesis Video operations reach.
#[derive(Clone)]
pub struct KvsState {
    pub store: VideoStore,
    pub metrics: Arc<Metrics>,
    /// What GetDataEndpoint returns, and the base of session URLs.
    pub public_url: String,
    pub limits: FragmentLimits,
    /// Signs and checks HLS/DASH session tokens.
    pub sessions: Arc<SessionSigner>,
    /// `Access-Control-Allow-Origin` of the playback URLs.
    pub cors_allow_origin: HeaderValue,
    /// IP cameras pulled into streams.
    pub sources: SourceManager,
    /// WebRTC signalling channels.
    pub signaling: crate::signaling::SignalingEngine,
    /// Signalling endpoints, TURN servers and the connected clients.
    pub webrtc: signaling::SignalingSettings,
    pub pages: PageTokens,
    /// Data streams (frame metadata bound to a video stream is read from one).
    pub data_streams: crate::data_streams::DataStreamEngine,
    /// Where image generation writes (a bucket is claimed for the stream's account).
    pub buckets: crate::buckets::Buckets,
    /// WHEP viewers' WebRTC sessions.
    pub whep: crate::webrtc::whep::WhepSessions,
    /// WHIP publishers' WebRTC sessions.
    pub whip: crate::webrtc::whip::WhipSessions,
    /// Stream-scoped bearer tokens for WHIP clients without SigV4.
    pub publish_tokens: Arc<crate::webrtc::whip::PublishTokens>,
    /// Channels recorded into streams (JoinStorageSession).
    pub storage_sessions: crate::webrtc::storage_session::StorageSessions,
    /// Where viewers reach the RTSP server (`rtsp://host:port`), for the watch page.
    pub rtsp_url: Option<String>,
    /// Pictures decoded from stored video (GetImages).
    pub images: crate::images::ImageService,
    /// The config file's `[secrets]`: edge configurations name their camera URL by ARN.
    pub secrets: Arc<crate::secrets::SecretValues>,
    /// The caller's account and region (see [`ForCaller`]); the server's default scope
    /// until narrowed to a request.
    pub scope: Scope,
}

impl ForCaller for KvsState {
    fn for_caller(&self, caller: &Caller) -> Self {
        KvsState { scope: caller.scope.clone(), ..self.clone() }
    }
}

/// The signed Kinesis Video routes (the session URLs are [`playback_http::routes`]).
pub fn routes() -> Router<KvsState> {
    Router::new()
        .merge(streams::routes())
        .merge(channels::routes())
        .merge(edge::routes())
        .merge(signaling::routes())
        .merge(media::routes())
        .merge(archived::routes())
        .merge(images::routes())
        .merge(stream_events::routes())
        .merge(playback::routes())
        .merge(native::routes())
        .merge(webrtc_storage::routes())
}

impl StreamRef {
    /// The stream's record in the video store, in the caller's scope.
    pub fn resolve(&self, s: &KvsState) -> Result<StreamRecord, StoreError> {
        s.store.resolve(&s.scope, self.stream_name.as_deref(), self.stream_arn.as_deref())
    }
}

/// `StreamNameCondition` / `ChannelNameCondition`: only `BEGINS_WITH`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NameCondition {
    comparison_operator: Option<String>,
    comparison_value: Option<String>,
}

/// One page of a name-ordered listing (ListStreams, ListSignalingChannels): names
/// starting with `prefix`, after `after`, at most `limit`.
pub struct ListingPage {
    pub prefix: String,
    pub after: Option<String>,
    pub limit: usize,
    operation: &'static str,
}

impl ListingPage {
    /// Reads `MaxResults` (1–10000, `default` when absent), the name condition and a
    /// `NextToken` signed for `operation`.
    pub fn new(
        s: &KvsState,
        operation: &'static str,
        max_results: Option<i64>,
        default: usize,
        condition: Option<&NameCondition>,
        next_token: Option<&str>,
    ) -> Result<Self, crate::api::error::ApiError> {
        use crate::api::error::ApiError;
        let limit = match max_results {
            None => default,
            Some(n) if (1..=10_000).contains(&n) => n as usize,
            Some(_) => return Err(ApiError::invalid_argument("MaxResults must be between 1 and 10000")),
        };
        let prefix = match condition {
            Some(c) => {
                if c.comparison_operator.as_deref().is_some_and(|op| op != "BEGINS_WITH") {
                    return Err(ApiError::invalid_argument("ComparisonOperator must be BEGINS_WITH"));
                }
                c.comparison_value.clone().unwrap_or_default()
            }
            None => String::new(),
        };
        let now = s.store.clock().now_ms();
        let after = match next_token.filter(|t| !t.is_empty()) {
            Some(t) => Some(s.pages.open::<String>(operation, t, now, None).map_err(
                |_: super::page_token::PageTokenError| ApiError::invalid_argument("NextToken is not valid"),
            )?),
            None => None,
        };
        Ok(ListingPage { prefix, after, limit, operation })
    }

    /// What to ask the engine for: one more than the page, which tells whether there is
    /// a next one.
    pub fn fetched(&self) -> crate::scope::NamePage<'_> {
        crate::scope::NamePage { prefix: &self.prefix, after: self.after.as_deref(), limit: self.limit + 1 }
    }

    /// Cuts `records` (fetched with [`ListingPage::fetched`]) to the page; the token of the
    /// next page, if there is one.
    pub fn finish<T>(&self, s: &KvsState, records: &mut Vec<T>, name: impl Fn(&T) -> &str) -> Option<String> {
        let more = records.len() > self.limit;
        records.truncate(self.limit);
        let now = s.store.clock().now_ms();
        records.last().filter(|_| more).map(|r| s.pages.issue(self.operation, &name(r).to_string(), now))
    }
}
