//! The whole HTTP application over fresh engines in one directory, for tests and
//! benchmarks that drive it without a socket (`Router::oneshot`). One place builds
//! what `app` builds, so a test exercises the same wiring the server runs.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

use super::auth::AuthState;
use super::kinesis::KinesisState;
use super::kvs::KvsState;
use super::page_token::PageTokens;
use super::sqs::{SqsState, XML_NAMESPACE};
use super::{router, AppState};
use crate::clock::SharedClock;
use crate::credentials::Credentials;
use crate::data_streams::{DataStreamEngine, EngineOptions};
use crate::ingest::fragmenter::FragmentLimits;
use crate::ingest::rtsp_pull::SourceManager;
use crate::metrics::Metrics;
use crate::playback::session::SessionSigner;
use crate::queues::QueueEngine;
use crate::scope::Scope;
use crate::video_store::{StoreConfig, VideoStore};

/// What a test talks to: the router, and the engines behind it.
pub struct Harness {
    pub app: Router,
    pub state: AppState,
    pub store: VideoStore,
    pub queues: QueueEngine,
    pub data_streams: DataStreamEngine,
    /// The delivery streams (Kinesis channels run on them).
    pub delivery_streams: crate::delivery_streams::DeliveryStreamEngine,
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub const PUBLIC_URL: &str = "http://kinescope.test";
/// The server's default account in the harness.
pub const ACCOUNT: &str = "123456789012";

impl Harness {
    /// Every engine opened under `dir` on `clock`; `keys` empty means anonymous mode.
    pub fn open(dir: &Path, clock: SharedClock, keys: &[(&str, &str)]) -> Self {
        let scope = Scope::new(ACCOUNT, "us-east-1");
        let store_config = StoreConfig { default_scope: scope.clone(), ..StoreConfig::new(dir) };
        let (store, _) = VideoStore::open(store_config, clock.clone()).expect("video store opens");
        let queues = QueueEngine::open(dir, clock.clone(), &scope).expect("queues open");
        let data_streams =
            DataStreamEngine::open(dir, clock.clone(), &scope, EngineOptions::default()).expect("data streams open");
        let stream_queues =
            crate::stream_queues::StreamQueueEngine::open(dir, data_streams.clone()).expect("stream queues open");
        let delivery_options = crate::delivery_streams::DeliveryOptions {
            data_streams: Some(data_streams.clone()),
            default_account: ACCOUNT.into(),
            ..Default::default()
        };
        let delivery = crate::delivery_streams::DeliveryStreamEngine::open(dir, clock.clone(), delivery_options)
            .expect("delivery streams open");
        let channels = crate::stream_channels::ChannelEngine::new(delivery.clone(), data_streams.clone());
        let metrics = Arc::new(Metrics::default());
        let pages = PageTokens::new([4; 32]);
        let sources = SourceManager::start(
            dir,
            store.clone(),
            clock.clone(),
            metrics.clone(),
            &scope,
            Default::default(),
            crate::egress::EgressPolicy::open(),
        )
        .expect("sources start");
        let pool = crate::images::RenderPool::start(1, 4, 64 << 20, metrics.clone()).expect("image thread starts");
        let images = crate::images::ImageService::new(store.clone(), pool, metrics.clone());
        let kvs_hub = crate::signaling::hub::Hub::new(clock.clone(), Default::default());
        let whip = crate::webrtc::whip::WhipSessions::new(
            store.clone(),
            store.clock().clone(),
            Default::default(),
            metrics.clone(),
        );
        let kvs = KvsState {
            store: store.clone(),
            metrics: metrics.clone(),
            public_url: PUBLIC_URL.into(),
            limits: FragmentLimits::default(),
            sessions: Arc::new(SessionSigner::new([9; 32])),
            cors_allow_origin: HeaderValue::from_static("*"),
            sources,
            signaling: crate::signaling::SignalingEngine::open(dir, clock.clone()).expect("signalling channels open"),
            webrtc: super::kvs::signaling::SignalingSettings::new(
                PUBLIC_URL,
                None,
                None,
                kvs_hub.clone(),
                tokio::sync::watch::channel(false).1,
            ),
            pages: pages.clone(),
            images,
            secrets: Arc::new(crate::secrets::SecretValues::default()),
            data_streams: data_streams.clone(),
            buckets: crate::buckets::Buckets::in_directory(dir.join("buckets"), ACCOUNT).expect("buckets open"),
            rtsp_url: None,
            whep: crate::webrtc::whep::WhepSessions::new(store.clone(), Default::default(), metrics.clone()),
            publish_tokens: Arc::new(crate::webrtc::whip::PublishTokens::new([5; 32])),
            storage_sessions: crate::webrtc::storage_session::StorageSessions::new(
                kvs_hub.clone(),
                whip.recorder(),
                Default::default(),
            ),
            whip,
            scope: scope.clone(),
        };
        let credentials =
            Arc::new(keys.iter().fold(Credentials::new(scope.clone()), |c, (k, s)| c.with_key(*k, *s, None)));
        let state = AppState::new(
            kvs,
            Some(SqsState {
                engine: queues.clone(),
                base_url: PUBLIC_URL.into(),
                pages: pages.clone(),
                scope: scope.clone(),
            }),
            Some(KinesisState { engine: data_streams.clone(), stream_queues, channels, pages, scope: scope.clone() }),
            AuthState {
                credentials,
                clock,
                query_namespace: XML_NAMESPACE,
                anonymous_hosts: Vec::new(),
                publish_tokens: None,
                sessions: Arc::new(crate::sts::SessionIssuer::new([9; 32])),
            },
        );
        Harness { app: router(state.clone()), state, store, queues, data_streams, delivery_streams: delivery }
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.expect("the router always answers");
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20).await.expect("a whole body").to_vec();
        Answer { status: parts.status, headers: parts.headers, body }
    }

    /// A rest-json call (`POST /createStream` and the like).
    pub async fn rest(&self, path: &str, body: &str) -> Answer {
        let req = Request::post(path).header("content-type", "application/json").body(Body::from(body.to_string()));
        self.send(req.expect("a valid request")).await
    }

    /// An awsJson call by `X-Amz-Target` (`AmazonSQS.SendMessage`, …).
    pub async fn target(&self, target: &str, content_type: &str, body: impl Into<Body>) -> Answer {
        let req =
            Request::post("/").header("x-amz-target", target).header("content-type", content_type).body(body.into());
        self.send(req.expect("a valid request")).await
    }

    /// A Query-protocol form to `path`.
    pub async fn form(&self, path: &str, form: &str) -> Answer {
        let req = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()));
        self.send(req.expect("a valid request")).await
    }
}
