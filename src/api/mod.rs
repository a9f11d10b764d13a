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
pub mod kvs;
pub mod kvs_archived;
pub mod kvs_media;

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
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let aws = Router::new()
        .merge(kvs::routes())
        .merge(kvs_media::routes())
        .merge(kvs_archived::routes())
        .merge(dispatch::routes())
        .fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(render_metrics))
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
    let mut resp = {
        let _enter = span.enter();
        tracing::debug!(method = %req.method(), path = %req.uri().path(), "request");
        drop(_enter);
        tracing::Instrument::instrument(next.run(req), span.clone()).await
    };
    if counted {
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
