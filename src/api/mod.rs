//! The HTTP edge: the only layer that knows AWS request and response shapes.
//!
//! Requests are routed the way the AWS SDKs send them: Kinesis Video's rest-json
//! operations by path (`POST /createStream`), the JSON-protocol services by their
//! `X-Amz-Target` header on `POST /` (see [`dispatch`]). Every AWS route goes through
//! SigV4 verification ([`auth`]); errors are turned into the wire shape once, in
//! [`error`].

pub mod auth;
pub mod dispatch;
pub mod error;
pub mod json;
pub mod kinesis;
pub mod kvs;
pub mod kvs_archived;
pub mod kvs_media;
pub mod kvs_playback;
pub mod native;
pub mod playback_http;
pub mod sqs;
pub mod sqs_query;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::ingest::fragmenter::FragmentLimits;
use crate::metrics::Metrics;
use crate::video_store::VideoStore;
pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: VideoStore,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<auth::Credentials>,
    /// What GetDataEndpoint returns.
    pub public_url: String,
    pub limits: FragmentLimits,
    pub json_services: Arc<dispatch::JsonServices>,
    /// Signs and checks HLS/DASH session tokens.
    pub sessions: Arc<crate::playback::session::SessionSigner>,
    /// `Access-Control-Allow-Origin` of the playback URLs.
    pub cors_allow_origin: HeaderValue,
    /// IP cameras pulled into streams.
    pub sources: crate::ingest::rtsp_pull::SourceManager,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let aws = Router::new()
        .merge(kvs::routes())
        .merge(kvs_media::routes())
        .merge(kvs_archived::routes())
        .merge(kvs_playback::routes())
        .merge(native::routes())
        .merge(dispatch::routes())
        .fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(render_metrics))
        .merge(playback_http::routes(state.clone()))
        .merge(crate::web::routes())
        .merge(aws)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn unknown_operation(req: Request) -> ApiError {
    ApiError::unknown_operation(&format!("{} {}", req.method(), req.uri().path()))
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// The operation a request names, for metrics and logs.
pub fn operation_name(req: &Request) -> String {
    if let Some(target) = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let path = req.uri().path().trim_start_matches('/');
    let op = path.rsplit('/').next().unwrap_or(path);
    let op = op.split('.').next().unwrap_or(op);
    let mut chars = op.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => "Root".to_string(),
    }
}

/// Gives every response a request id, counts it, and logs it in a span.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let op = operation_name(&req);
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("request", op = %op, id = %request_id);
    let counted = !matches!(req.uri().path(), "/health" | "/metrics");
    // Media bodies stream and are counted where they are read or written; the rest
    // have sizes known up front.
    let media = matches!(req.uri().path(), "/putMedia" | "/getMedia" | "/getMediaForFragmentList");
    if counted && !media {
        state.metrics.add_bytes_in(http_body::Body::size_hint(req.body()).exact().unwrap_or(0));
    }
    tracing::debug!(parent: &span, method = %req.method(), path = %req.uri().path(), "request");
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    if counted {
        if !media || !resp.status().is_success() {
            state.metrics.add_bytes_out(http_body::Body::size_hint(resp.body()).exact().unwrap_or(0));
        }
        state.metrics.count_request(&op, resp.status().as_u16());
        if resp.status().is_server_error() {
            tracing::warn!(parent: &span, status = resp.status().as_u16(), "request failed");
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

/// A JSON 200 response with the content type the rest-json protocol uses.
pub fn json_ok(value: serde_json::Value) -> Response {
    let mut resp = (StatusCode::OK, value.to_string()).into_response();
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::video_store::StoreConfig;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app(dir: &std::path::Path, keys: &[(&str, &str)]) -> Router {
        let (store, _) = VideoStore::open(StoreConfig::new(dir), Arc::new(SystemClock)).unwrap();
        router(AppState {
            store: store.clone(),
            metrics: Arc::new(Metrics::default()),
            auth: Arc::new(auth::Credentials::new(keys.iter().map(|(k, s)| (k.to_string(), s.to_string())))),
            public_url: "http://kinescope.test".into(),
            limits: FragmentLimits::default(),
            json_services: Arc::new(dispatch::JsonServices::default()),
            sessions: Arc::new(crate::playback::session::SessionSigner::new([1; 32])),
            cors_allow_origin: HeaderValue::from_static("*"),
            sources: crate::ingest::rtsp_pull::SourceManager::start(
                dir,
                store.clone(),
                Arc::new(SystemClock),
                Arc::new(Metrics::default()),
                Default::default(),
            )
            .unwrap(),
        })
    }

    async fn call(app: &Router, path: &str, body: &str) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let req =
            Request::post(path).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn routes_answer_in_the_aws_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path(), &[]);
        let (status, headers, body) = call(&app, "/createStream", r#"{"StreamName":"cam"}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.contains_key("x-amzn-RequestId"));
        assert!(body["StreamARN"].as_str().unwrap().contains(":stream/cam/"));
        let (status, _, body) = call(&app, "/getDataEndpoint", r#"{"StreamName":"cam","APIName":"GET_MEDIA"}"#).await;
        assert_eq!((status, body["DataEndpoint"].as_str()), (StatusCode::OK, Some("http://kinescope.test")));

        let (status, headers, body) = call(&app, "/describeStream", r#"{"StreamName":"nope"}"#).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["x-amzn-ErrorType"], "ResourceNotFoundException");
        assert!(body["Message"].as_str().unwrap().contains("nope"));
        let (status, headers, _) = call(&app, "/describeStream", r#"{"StreamName": 5}"#).await;
        assert_eq!(
            (status, &headers["x-amzn-ErrorType"]),
            (StatusCode::BAD_REQUEST, &"SerializationException".parse().unwrap())
        );
        let (status, headers, _) = call(&app, "/frobnicate", "{}").await;
        assert_eq!(
            (status, &headers["x-amzn-ErrorType"]),
            (StatusCode::NOT_FOUND, &"UnknownOperationException".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn with_keys_an_unsigned_request_is_refused_but_health_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path(), &[("AKID", "secret")]);
        let (status, headers, _) = call(&app, "/listStreams", "{}").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers["x-amzn-ErrorType"], "MissingAuthenticationTokenException");
        let resp = app.clone().oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
