//! Kinesis Video Streams over rest-json: operations by path (`POST /createStream`),
//! one typed function per operation, grouped by what they serve:
//!
//! - [`streams`]: the control plane (`kinesisvideo`): streams, retention, tags, data
//!   endpoints;
//! - [`media`]: PutMedia and GetMedia (`kinesis-video-media`), long-lived streams;
//! - [`archived`]: ListFragments, GetMediaForFragmentList;
//! - [`playback`]: GetHLS/DASHStreamingSessionURL and GetClip;
//! - [`playback_http`]: the session URLs those hand out (playlists, manifests,
//!   fragments), fetched by players with a signed token instead of SigV4;
//! - [`native`]: Kinescope's own endpoints (`/v1/streams`, camera sources).

pub mod archived;
pub mod media;
pub mod native;
pub mod playback;
pub mod playback_http;
pub mod streams;

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
    pub pages: PageTokens,
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
        .merge(media::routes())
        .merge(archived::routes())
        .merge(playback::routes())
        .merge(native::routes())
}

impl StreamRef {
    /// The stream's record in the video store, in the caller's scope.
    pub fn resolve(&self, s: &KvsState) -> Result<StreamRecord, StoreError> {
        s.store.resolve(&s.scope, self.stream_name.as_deref(), self.stream_arn.as_deref())
    }
}
