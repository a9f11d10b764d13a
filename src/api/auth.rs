//! SigV4 verification for every AWS route.
//!
//! Bodies of ordinary requests are read (up to a limit) to hash them for the signature.
//! Streaming requests (PutMedia, or any request signed with `UNSIGNED-PAYLOAD`) are
//! verified on their headers alone and their bodies pass through untouched.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::protocol::{self, Protocol, RequestId, MAX_BODY};
use crate::clock::SharedClock;
use crate::credentials::Credentials;
use crate::wire::sigv4::{self, RequestParts, UNSIGNED_PAYLOAD};

/// What the SigV4 check needs.
#[derive(Clone)]
pub struct AuthState {
    pub credentials: Arc<Credentials>,
    pub clock: SharedClock,
    /// The XML namespace of Query-protocol refusals (SQS's).
    pub query_namespace: &'static str,
}

/// Requests whose body is a stream, verified on their headers alone.
const STREAMING_PATHS: [&str; 1] = ["/putMedia"];

/// The access key and region a request claims in its `Authorization` header (verified
/// below when keys are configured; taken as given in anonymous mode).
fn claimed(headers: &axum::http::HeaderMap) -> (Option<String>, Option<String>) {
    let auth =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| sigv4::parse_authorization(v).ok());
    match auth {
        Some(a) => (Some(a.access_key_id), Some(a.region)),
        None => (None, None),
    }
}

/// Verifies the request (with keys configured) and puts its [`Caller`] in its
/// extensions: the account of its access key, the region of its credential scope.
pub async fn authenticate(State(state): State<AuthState>, mut req: Request, next: Next) -> Response {
    let (key, region) = claimed(req.headers());
    let caller = state.credentials.caller(key.as_deref(), region.as_deref());
    if state.credentials.is_anonymous() {
        req.extensions_mut().insert(caller);
        return next.run(req).await;
    }
    let protocol = Protocol::of_request(req.headers());
    let request_id = req.extensions().get::<RequestId>().cloned();
    match verify(&state, req).await {
        Ok(mut req) => {
            // verify() checked this very key's signature.
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err((e, unread_body)) => {
            if let Some(body) = unread_body {
                drain(body).await;
            }
            match protocol {
                Protocol::Query => protocol::query_error(&e, state.query_namespace, request_id.as_ref()),
                p => protocol::error_response(&e, p, None),
            }
        }
    }
}

/// Reads and drops (a bounded part of) a refused streaming body, so the client, which
/// may still be sending, gets to read the refusal instead of a reset connection.
async fn drain(body: Body) {
    use futures_util::StreamExt;
    const DRAIN_BYTES: usize = 8 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut read = 0;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read >= DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Verifies a request; on refusal, hands back a streaming body that was not read.
async fn verify(state: &AuthState, req: Request) -> Result<Request, (ApiError, Option<Body>)> {
    let (parts, body) = req.into_parts();
    let mut headers: Vec<(String, String)> = Vec::with_capacity(parts.headers.len());
    for (k, v) in &parts.headers {
        headers.push((k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()));
    }
    // HTTP/1.1 carries the host in a header; make sure it is there for the signature.
    if !parts.headers.contains_key("host") {
        if let Some(a) = parts.uri.authority() {
            headers.push(("host".into(), a.to_string()));
        }
    }
    let declared = parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()).map(str::to_string);
    let streaming = STREAMING_PATHS.contains(&parts.uri.path());
    let (payload_hash, body) = if streaming || declared.as_deref() == Some(UNSIGNED_PAYLOAD) {
        (declared.unwrap_or_else(|| UNSIGNED_PAYLOAD.to_string()), body)
    } else {
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|e| (ApiError::serialization(format!("could not read the request body: {e}")), None))?;
        (sigv4::sha256_hex(&bytes), Body::from(bytes))
    };
    let parts_for_sig = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        payload_hash: &payload_hash,
    };
    let now = state.clock.now_us() / 1_000_000;
    let key = match sigv4::verify(&parts_for_sig, now, |id| state.credentials.secret(id)) {
        Ok(key) => key,
        Err(e) => return Err((e.into(), Some(body))),
    };
    tracing::trace!(access_key = %key, "signature verified");
    Ok(Request::from_parts(parts, body))
}
