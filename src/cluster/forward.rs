//! What a node that does not hold the writer lease does with a request: it passes it,
//! streamed both ways and otherwise as it came (the client's `Host` and signature
//! included), to the node that holds the lease, at the address in the lease row, and
//! streams the answer back. Until some node holds the lease, requests are answered 503.
//! `/health` and `/metrics` are answered here (this node's own); WebSocket upgrades
//! (signalling) are not forwarded: they must reach the writer node.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use futures_util::TryStreamExt;

use super::lease::WriterLease;

/// How long the holder read from the database is trusted before it is read again.
const HOLDER_FRESH: Duration = Duration::from_secs(1);

/// Marks a forwarded request: a node never forwards one again (two nodes that each
/// believe the other writes would otherwise pass a request back and forth).
const FORWARDED_BY: &str = "x-kinescope-forwarded-by";

/// Headers of one connection, not of the request (RFC 9110 section 7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn end_to_end(from: &HeaderMap) -> HeaderMap {
    from.iter().filter(|(k, _)| !hop_by_hop(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A request's headers as the writer must see them: the end-to-end ones, and the two
/// hop-by-hop ones a client may have signed (the KVS producer SDK signs `connection`
/// and `transfer-encoding`) when the forwarded request keeps their meaning: a
/// keep-alive or close, a chunked body (sent chunked again).
fn request_headers(from: &HeaderMap) -> HeaderMap {
    let mut headers = end_to_end(from);
    for (name, keep) in
        [(header::CONNECTION, ["keep-alive", "close"]), (header::TRANSFER_ENCODING, ["chunked", "chunked"])]
    {
        if let Some(v) =
            from.get(&name).filter(|v| keep.iter().any(|k| v.as_bytes().eq_ignore_ascii_case(k.as_bytes())))
        {
            headers.insert(name, v.clone());
        }
    }
    headers
}

/// Passes requests to the writer node.
pub struct Forwarder {
    lease: WriterLease,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    http: reqwest::Client,
    holder: Mutex<Option<(String, Instant)>>,
}

fn unavailable(message: String) -> Response<Body> {
    let body = serde_json::json!({ "__type": "ServiceUnavailable", "message": message });
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static("ServiceUnavailable"));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

impl Forwarder {
    pub fn new(
        lease: WriterLease,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Self, super::ClusterError> {
        crate::tls_provider::install();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| super::ClusterError::Config(format!("the forwarding client: {e}")))?;
        Ok(Forwarder { lease, metrics, http, holder: Mutex::new(None) })
    }

    /// The writer's address, read again when the one known is older than a second.
    async fn writer(&self) -> Result<String, Response<Body>> {
        if let Some((address, at)) = self.holder.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            if at.elapsed() < HOLDER_FRESH {
                return Ok(address);
            }
        }
        match self.lease.holder().await {
            Ok(Some(h)) if h.live && h.node != self.lease.node() => {
                *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = Some((h.address.clone(), Instant::now()));
                Ok(h.address)
            }
            Ok(_) => Err(unavailable("no node of this deployment holds the writer lease yet; retry shortly".into())),
            Err(e) => Err(unavailable(format!("the cluster database cannot be reached: {e}"))),
        }
    }

    fn forget_writer(&self) {
        *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Answers `req` through the writer node.
    pub async fn forward(&self, req: Request<Body>) -> Response<Body> {
        match req.uri().path() {
            "/health" => return Response::new(Body::from("ok\n")),
            "/metrics" => {
                let mut r = Response::new(Body::from(self.metrics.render()));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
                return r;
            }
            _ => {}
        }
        if req.headers().contains_key(FORWARDED_BY) {
            self.metrics.count_forwarded("refused");
            let refusal = unavailable("the request was forwarded to a node that does not hold the writer lease".into());
            return drained(req, refusal).await;
        }
        if req.headers().contains_key(header::UPGRADE) {
            self.metrics.count_forwarded("refused");
            return unavailable("WebSocket connections must reach the writer node; ask it for the endpoint".into());
        }
        let writer = match self.writer().await {
            Ok(w) => w,
            Err(r) => {
                self.metrics.count_forwarded("no_writer");
                return drained(req, r).await;
            }
        };
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{path}", writer.trim_end_matches('/'));
        let mut headers = request_headers(&parts.headers);
        // An HTTP/2 request names its host in `:authority`, which its signature covers as
        // `host`: the forwarded HTTP/1.1 request carries it as its Host.
        if !headers.contains_key(header::HOST) {
            if let Some(v) = parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                headers.insert(header::HOST, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(self.lease.node()) {
            headers.insert(FORWARDED_BY, v);
        }
        // By what the connection says of the body, not by its headers alone: an HTTP/2
        // request may carry a body with no Content-Length.
        let has_body = http_body::Body::size_hint(&body).exact() != Some(0);
        let mut request = self.http.request(parts.method, url).headers(headers);
        if has_body {
            request = request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        let answer = match request.send().await {
            Ok(a) => a,
            Err(e) => {
                self.metrics.count_forwarded("unreachable");
                self.forget_writer();
                tracing::warn!(writer = %writer, error = %e, "forwarding to the writer node failed");
                return unavailable(format!("the writer node at {writer} did not answer: {e}"));
            }
        };
        self.metrics.count_forwarded("answered");
        let mut response = Response::new(Body::empty());
        *response.status_mut() = answer.status();
        *response.headers_mut() = end_to_end(answer.headers());
        *response.body_mut() = Body::from_stream(answer.bytes_stream().map_err(move |e| {
            tracing::warn!(writer = %writer, error = %e, "the writer's answer broke off");
            std::io::Error::other(e)
        }));
        response
    }
}

/// Most of a request body a refusal reads before it is sent.
const DRAIN_LIMIT: usize = 1 << 20;

/// `answer`, after reading the request's body (up to [`DRAIN_LIMIT`], for up to five
/// seconds): closing a socket with unread bytes resets it, and the reset can reach the
/// client before the answer does, so a client would see a dropped connection instead of
/// a 503 it can retry.
async fn drained(req: Request<Body>, answer: Response<Body>) -> Response<Body> {
    let read = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT);
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_end_to_end_headers_are_passed() {
        let mut h = HeaderMap::new();
        for (k, v) in [("host", "a"), ("authorization", "b"), ("connection", "close"), ("transfer-encoding", "chunked")]
        {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let kept = end_to_end(&h);
        assert_eq!(kept.len(), 2);
        assert!(kept.contains_key("host") && kept.contains_key("authorization"));
        // What a producer may have signed goes on while it means the same.
        let kept = request_headers(&h);
        assert_eq!(kept.len(), 4);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip, chunked"));
        assert_eq!(request_headers(&h).len(), 2);
    }
}
