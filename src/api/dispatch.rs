//! Dispatch of the JSON-protocol services by `X-Amz-Target` (`AmazonSQS.SendMessage`,
//! `Kinesis_20131202.PutRecord`, `Firehose_20150804.PutRecordBatch`, …) on `POST /`.
//!
//! A service registers itself under its target prefix; the dispatcher splits the header
//! at the last `.` and hands the operation name and body to it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::error::{ApiError, Protocol};
use super::AppState;

pub type JsonFuture = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send>>;

/// A service spoken over the AWS JSON protocol.
pub trait JsonService: Send + Sync + 'static {
    /// Handles `operation` (the part of `X-Amz-Target` after the last `.`).
    fn call(&self, operation: &str, body: Bytes) -> JsonFuture;

    /// Like [`JsonService::call`], for services that read request headers (Kinesis's
    /// CBOR content type).
    fn call_with(&self, operation: &str, headers: &HeaderMap, body: Bytes) -> JsonFuture {
        let _ = headers;
        self.call(operation, body)
    }
}

#[derive(Default)]
pub struct JsonServices {
    by_prefix: HashMap<String, Arc<dyn JsonService>>,
    /// The service that also answers the older Query protocol (form bodies, XML):
    /// SQS, the only one of ours that had it.
    pub query_service: Option<Arc<super::sqs::SqsService>>,
}

impl JsonServices {
    /// Registers `service` for targets `"{prefix}.{Operation}"`.
    pub fn register(&mut self, prefix: &str, service: Arc<dyn JsonService>) {
        self.by_prefix.insert(prefix.to_string(), service);
    }

    pub fn prefixes(&self) -> Vec<String> {
        let mut p: Vec<String> = self.by_prefix.keys().cloned().collect();
        p.sort();
        p
    }

    pub async fn dispatch(&self, target: &str, body: Bytes) -> Result<Response, ApiError> {
        self.dispatch_with(target, &HeaderMap::new(), body).await
    }

    pub async fn dispatch_with(&self, target: &str, headers: &HeaderMap, body: Bytes) -> Result<Response, ApiError> {
        let (prefix, op) =
            target.rsplit_once('.').ok_or_else(|| ApiError::unknown_operation(target).with_protocol(Protocol::Json))?;
        let service = self.by_prefix.get(prefix).ok_or_else(|| {
            ApiError::unknown_operation(&format!("{target} (no service registered for '{prefix}')"))
                .with_protocol(Protocol::Json)
        })?;
        service.call_with(op, headers, body).await.map_err(|e| e.with_protocol(Protocol::Json))
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", post(root))
        .route("/{account}/{queue}", post(super::sqs_query::handle))
        // Kinesis PutRecords may carry 10 MiB of records, base64'd.
        .layer(axum::extract::DefaultBodyLimit::max(super::auth::MAX_SIGNED_BODY))
}

/// Whether a request is in the Query protocol: a form body without `X-Amz-Target`,
/// sent to `/` or to a queue URL path (`/ACCOUNT/NAME`).
pub fn is_query_protocol(path: &str, headers: &HeaderMap) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query_path = path == "/"
        || (segments.len() == 2 && segments[0].len() == 12 && segments[0].bytes().all(|b| b.is_ascii_digit()));
    query_path
        && !headers.contains_key("x-amz-target")
        && headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
}

async fn root(
    state: State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if is_query_protocol(uri.path(), &headers) {
        return Ok(super::sqs_query::handle(state, uri, body).await);
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unknown_operation("POST / without X-Amz-Target").with_protocol(Protocol::Json))?;
    state.json_services.dispatch_with(target, &headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    struct Echo;
    impl JsonService for Echo {
        fn call(&self, operation: &str, body: Bytes) -> JsonFuture {
            let op = operation.to_string();
            Box::pin(async move { Ok((op + ":" + &String::from_utf8_lossy(&body)).into_response()) })
        }
    }

    #[tokio::test]
    async fn routes_by_prefix_and_refuses_unknown() {
        let mut s = JsonServices::default();
        s.register("Test_20200101", Arc::new(Echo));
        let r = s.dispatch("Test_20200101.DoIt", Bytes::from_static(b"x")).await.unwrap();
        let body = axum::body::to_bytes(r.into_body(), 100).await.unwrap();
        assert_eq!(&body[..], b"DoIt:x");
        let e = s.dispatch("Other_1.DoIt", Bytes::new()).await.unwrap_err();
        assert_eq!((e.code, e.protocol), ("UnknownOperationException", Protocol::Json));
        assert!(s.dispatch("NoDot", Bytes::new()).await.is_err());
    }
}
