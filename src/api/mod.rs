//! The HTTP edge: the only layer that knows AWS request and response shapes.
//!
//! - [`protocol`]: the wire protocols (rest-json, awsJson 1.0/1.1, CBOR, Query):
//!   detection, decoding, encoding, error rendering, the body limit;
//! - [`registry`]: the JSON-protocol services on `POST /` by `X-Amz-Target`, each a
//!   table of typed operations;
//! - [`auth`]: SigV4 on every AWS route; [`error`]: the wire error;
//!   [`page_token`]: the one signed NextToken scheme; [`shapes`]: what services share
//!   (StreamRef, tags, timestamps);
//!   [`harness`]: the application over fresh engines, for router-level tests;
//! - [`s3`]: S3's REST reads of the buckets (path-style, routed by the signature's
//!   service before anything else), [`s3_upload`]: its uploads streamed into objects
//!   (plain and aws-chunked bodies, chunk signatures and checksums checked),
//!   [`s3_multipart`]: multipart uploads;
//! - one folder per service: [`kvs`] (Kinesis Video, rest-json, by path), [`sqs`],
//!   [`kinesis`]; and [`sts`] (GetCallerIdentity, Query forms routed by the
//!   service their signature names).
//!
//! Each service's routes get only the state they need ([`kvs::KvsState`],
//! [`sqs::SqsState`], [`kinesis::KinesisState`]).

pub mod auth;
pub mod error;
pub mod firehose;
pub mod harness;
pub mod kinesis;
pub mod kvs;
pub mod page_token;
pub mod protocol;
pub mod registry;
pub mod s3;
pub mod s3_multipart;
pub mod s3_upload;
pub mod serve;
pub mod shapes;
pub mod sqs;
pub mod sts;
#[cfg(test)]
mod tests;
pub mod tls;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::metrics::Metrics;
pub use error::ApiError;
use error::ErrorLog;
use protocol::RequestId;
use registry::Registry;

/// Everything the HTTP application holds; each route takes only its part.
#[derive(Clone)]
pub struct AppState {
    pub kvs: kvs::KvsState,
    pub registry: Arc<Registry>,
    pub auth: auth::AuthState,
    pub metrics: Arc<Metrics>,
    /// The listener's limits; the body idle timeout applies in the router.
    pub http: serve::HttpLimits,
}

impl AppState {
    /// The state with SQS and Kinesis registered on `POST /` (either may be absent in
    /// tests that serve only Kinesis Video).
    pub fn new(
        kvs: kvs::KvsState,
        sqs: Option<sqs::SqsState>,
        kinesis: Option<kinesis::KinesisState>,
        auth: auth::AuthState,
    ) -> Self {
        let mut registry = Registry::default();
        if let Some(sqs) = sqs {
            let base_url = sqs.base_url.clone();
            let operations = Arc::new(sqs::operations(sqs));
            registry.register(sqs::TARGET_PREFIX, operations.clone());
            registry.add_query_service(
                "sqs",
                sqs::API_VERSION,
                Arc::new(sqs::query::SqsQuery { operations, base_url }),
            );
        }
        let sts = sts::Sts {
            sessions: auth.sessions.clone(),
            clock: auth.clock.clone(),
            any_account_roles: auth.credentials.is_anonymous(),
        };
        registry.add_query_service("sts", sts::API_VERSION, Arc::new(sts));
        if let Some(kinesis) = kinesis {
            registry.register(kinesis::TARGET_PREFIX, Arc::new(kinesis::operations(kinesis)));
        }
        let metrics = kvs.metrics.clone();
        AppState { kvs, registry: Arc::new(registry), auth, metrics, http: serve::HttpLimits::default() }
    }

    /// The state with Firehose registered too (call right after [`AppState::new`]).
    pub fn with_firehose(mut self, firehose: firehose::FirehoseState) -> Self {
        match Arc::get_mut(&mut self.registry) {
            Some(registry) => registry.register(firehose::TARGET_PREFIX, Arc::new(firehose::operations(firehose))),
            None => tracing::error!("Firehose registered after the registry was shared; it is not served"),
        }
        self
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    // S3's path-style routes (`/BUCKET/KEY`) overlap every other GET route: requests
    // signed for S3 go to them before anything else is matched.
    let virtual_bases: Vec<String> =
        std::iter::once("localhost".to_string()).chain(state.auth.anonymous_hosts.iter().cloned()).collect();
    let s3 = s3::routes(s3::S3State { buckets: state.kvs.buckets.clone() })
        .layer(middleware::from_fn_with_state(state.auth.clone(), auth::authenticate));
    let json_services = Router::new()
        .route("/", post(registry::root))
        .merge(sqs::query::routes())
        .layer(DefaultBodyLimit::max(protocol::MAX_BODY))
        .with_state(state.registry.clone());
    let aws = Router::new()
        .merge(kvs::routes().with_state(state.kvs.clone()))
        .merge(json_services)
        .fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(state.auth.clone(), auth::authenticate));
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(render_metrics).with_state(state.metrics.clone()))
        .merge(kvs::playback_http::routes(state.kvs.clone()).with_state(state.kvs.clone()))
        .merge(crate::web::routes())
        .merge(aws)
        .layer(middleware::from_fn_with_state(S3Edge { routes: s3, virtual_bases: Arc::new(virtual_bases) }, to_s3))
        .layer(middleware::from_fn_with_state(
            (state.http.body_idle_timeout, state.metrics.clone()),
            serve::body_idle_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.metrics.clone(), observe))
}

/// S3's routes, and the hosts whose subdomains name buckets.
#[derive(Clone)]
struct S3Edge {
    routes: Router,
    virtual_bases: Arc<Vec<String>>,
}

/// Sends a request signed for S3 to S3's routes (a virtual-hosted one as its
/// path-style twin); every other goes on.
async fn to_s3(State(edge): State<S3Edge>, req: Request, next: Next) -> Response {
    if !s3::is_s3(req.headers(), req.uri().query()) {
        return next.run(req).await;
    }
    use tower::ServiceExt;
    // The outer router matched a route of its own (its path parameters ride in the
    // extensions): S3's routes start from a clean request, keeping its id.
    let (mut parts, body) = req.into_parts();
    let mut signed_path = None;
    let host = parts.headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).or(parts.uri.host());
    if let Some(bucket) = host.and_then(|h| s3::virtual_bucket(h, &edge.virtual_bases)) {
        let path = parts.uri.path().to_string();
        let rewritten = match parts.uri.query() {
            Some(q) => format!("/{bucket}{path}?{q}"),
            None => format!("/{bucket}{path}"),
        };
        match rewritten.parse() {
            Ok(uri) => {
                parts.uri = uri;
                signed_path = Some(auth::SignedPath(path));
            }
            Err(_) => return s3::error_from_edge(&ApiError::serialization("an unusable request path"), &path),
        }
    }
    let id = parts.extensions.remove::<RequestId>();
    let connection = parts.extensions.remove::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
    parts.extensions = axum::http::Extensions::new();
    if let Some(id) = id {
        parts.extensions.insert(id);
    }
    if let Some(c) = connection {
        parts.extensions.insert(c);
    }
    if let Some(p) = signed_path {
        parts.extensions.insert(p);
    }
    match edge.routes.oneshot(Request::from_parts(parts, body)).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

async fn unknown_operation(req: Request) -> ApiError {
    ApiError::unknown_operation(&format!("{} {}", req.method(), req.uri().path()))
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], metrics.render())
}

/// The label a request is counted and logged under: the operation that answered it
/// (the registries put it in the response), else the name of the route it matched
/// (`/createStream` → `CreateStream`; the route table is the server's), else
/// `unknown`. Never text the request chose.
fn operation_label(route: Option<&str>, resp: &Response) -> String {
    if let Some(registry::Operation(name)) = resp.extensions().get::<registry::Operation>() {
        return (*name).to_string();
    }
    match route {
        Some("/") | None => crate::metrics::UNKNOWN_OPERATION.to_string(),
        Some(path) if path.contains('{') => path.to_string(),
        Some(path) => {
            let op = path.trim_start_matches('/');
            let mut chars = op.chars();
            match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect(),
                None => crate::metrics::UNKNOWN_OPERATION.to_string(),
            }
        }
    }
}

/// Gives every request its id (in its extensions, for handlers and XML bodies, and in
/// the `x-amzn-RequestId` header), counts it, and logs it in a span; failed requests
/// are logged here, once, with the detail their error carried.
async fn observe(State(metrics): State<Arc<Metrics>>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_string());
    let request_id = RequestId::new();
    req.extensions_mut().insert(request_id.clone());
    let span = tracing::info_span!("request", id = %request_id.0, op = tracing::field::Empty);
    let counted = !matches!(req.uri().path(), "/health" | "/metrics");
    // Media bodies stream and are counted where they are read or written; the rest
    // have sizes known up front.
    let media = matches!(req.uri().path(), "/putMedia" | "/getMedia" | "/getMediaForFragmentList");
    if counted && !media {
        metrics.add_bytes_in(http_body::Body::size_hint(req.body()).exact().unwrap_or(0));
    }
    tracing::debug!(parent: &span, method = %req.method(), path = %req.uri().path(), "request");
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let op = operation_label(route.as_deref(), &resp);
    span.record("op", op.as_str());
    if counted {
        if !media || !resp.status().is_success() {
            metrics.add_bytes_out(http_body::Body::size_hint(resp.body()).exact().unwrap_or(0));
        }
        metrics.count_request(&op, resp.status().as_u16());
    }
    if let Some(e) = resp.extensions_mut().remove::<ErrorLog>() {
        let status = resp.status().as_u16();
        if resp.status().is_server_error() {
            tracing::error!(parent: &span, status, code = e.code, message = %e.message, detail = ?e.detail, "request failed");
        } else {
            tracing::info!(parent: &span, status, code = e.code, message = %e.message, "request refused");
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id.0) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}
