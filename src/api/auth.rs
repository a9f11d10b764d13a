//! SigV4 verification for every AWS route.
//!
//! The headers are checked first (a known key, a current date, a credential scope for
//! the service the route belongs to): a request that cannot be authentic is refused
//! before a byte of its body is read. Bodies of ordinary requests are then read (up to
//! a limit) to hash them for the signature. PutMedia's body is a stream: it is signed
//! `UNSIGNED-PAYLOAD`, verified on its headers alone, and passes through untouched; no
//! other route accepts an unsigned payload. Without an `x-amz-content-sha256` header,
//! PutMedia's signature may also be over the empty body's hash: that is how the KVS
//! producer SDKs (the C producer under `kvssink`, the Java producer) sign it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::protocol::{self, Protocol, RequestId, MAX_BODY};
use crate::clock::SharedClock;
use crate::credentials::{Caller, Credentials};
use crate::scope::Scope;
use crate::sts::{is_temporary_key, SessionClaims, SessionError, SessionIssuer};
use crate::webrtc::whip::PublishToken;
use crate::wire::sigv4::{self, RequestParts, UNSIGNED_PAYLOAD};
use crate::wire::{aws_chunked, sigv2};

/// What the SigV4 check needs.
#[derive(Clone)]
pub struct AuthState {
    pub credentials: Arc<Credentials>,
    pub clock: SharedClock,
    /// The XML namespace of Query-protocol refusals (SQS's).
    pub query_namespace: &'static str,
    /// Host names besides loopback ones that anonymous mode answers to (the host of
    /// `--public-url`, when it set one).
    pub anonymous_hosts: Vec<String>,
    /// What checks `Authorization: Bearer` on WHIP (stream-scoped publishing tokens).
    pub publish_tokens: Option<Arc<crate::webrtc::whip::PublishTokens>>,
    /// What verifies temporary credentials (STS sessions, `ASIA…` keys).
    pub sessions: Arc<SessionIssuer>,
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(str::trim)
}

/// A WHIP request with a publishing token: the token must be this server's, current,
/// and (on a stream's WHIP URL) for that stream. Its scope is the caller's; the token
/// rides along for the handler, which checks the stream's id.
fn whip_bearer(state: &AuthState, path: &str, token: &str) -> Result<(Caller, PublishToken), ApiError> {
    let denied = |m: String| ApiError::new(axum::http::StatusCode::FORBIDDEN, "AccessDeniedException", m);
    let tokens = state.publish_tokens.as_ref().ok_or_else(|| denied("bearer tokens are not accepted here".into()))?;
    let stream = match path.strip_prefix("/v1/streams/").and_then(|p| p.strip_suffix("/whip")) {
        Some(name) => Some(name),
        None if path.starts_with("/v1/whip/") => None,
        None => {
            return Err(denied("a bearer token authorises WHIP publishing only; sign other requests with SigV4".into()))
        }
    };
    let opened = tokens.open(token, state.clock.now_us()).map_err(|e| denied(e.to_string()))?;
    if stream.is_some_and(|name| name != opened.stream) {
        return Err(denied(format!("the bearer token is for stream '{}'", opened.stream)));
    }
    Ok((Caller { access_key_id: None, scope: opened.scope.clone(), session: None }, opened))
}

/// The longest a presigned signalling URL may be valid for.
const MAX_SIGNALING_URL_SECS: u64 = 900;

/// Requests whose body is a stream, verified on their headers alone.
const STREAMING_PATHS: [&str; 1] = ["/putMedia"];

/// The access key and region a request claims in its `Authorization` header, or in a
/// presigned URL's query (verified below when keys are configured; taken as given in
/// anonymous mode).
fn claimed(headers: &axum::http::HeaderMap, query: Option<&str>) -> (Option<String>, Option<String>) {
    let auth =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| sigv4::parse_authorization(v).ok());
    match auth {
        Some(a) => (Some(a.access_key_id), Some(a.region)),
        None => match query.and_then(sigv4::presigned_credential) {
            Some((key, region)) => (Some(key), Some(region)),
            // S3's version 2 presigned URLs name a key and no region.
            None => (query.filter(|q| sigv2::is_presigned(q)).and_then(sigv2::presigned_key), None),
        },
    }
}

/// A presigned request: no `Authorization` header, the signature in the query (the
/// signalling WebSocket URL the KVS WebRTC SDKs sign).
fn is_presigned(parts: &axum::http::request::Parts) -> bool {
    !parts.headers.contains_key("authorization")
        && parts.uri.query().is_some_and(|q| q.split('&').any(|p| p.starts_with("X-Amz-Signature=")))
}

/// Verifies the request (with keys configured) and puts its [`Caller`] in its
/// extensions: the account of its access key, the region of its credential scope.
pub async fn authenticate(State(state): State<AuthState>, mut req: Request, next: Next) -> Response {
    let (key, region) = claimed(req.headers(), req.uri().query());
    let caller = state.credentials.caller(key.as_deref(), region.as_deref());
    let protocol = Protocol::of_request(req.headers());
    let request_id = req.extensions().get::<RequestId>().cloned();
    // S3 words its refusals in its own XML.
    if super::s3::is_s3(req.headers(), req.uri().query()) {
        let path = req.uri().path().to_string();
        return match admit_s3(&state, key.as_deref(), region.as_deref(), caller, req).await {
            Ok(req) => next.run(req).await,
            Err(e) => super::s3::error_from_edge(&e, &path),
        };
    }
    // A region nobody serves (a made-up one would be a fresh set of quotas) is refused
    // as AWS refuses a credential scope it does not know.
    if let Some(r) = region.as_deref().filter(|r| !state.credentials.serves_region(r)) {
        tracing::debug!(region = r, "a request signed for a region the server does not serve");
        let e: ApiError =
            crate::wire::sigv4::SigV4Error::WrongScope("Credential should be scoped to a valid region. ".into()).into();
        return match protocol {
            Protocol::Query => protocol::query_error(&e, state.query_namespace, request_id.as_ref()),
            p => protocol::error_response(&e, p, None),
        };
    }
    if let Some(token) = bearer(req.headers()) {
        return match whip_bearer(&state, req.uri().path(), token) {
            Ok((caller, token)) => {
                req.extensions_mut().insert(caller);
                req.extensions_mut().insert(token);
                next.run(req).await
            }
            Err(e) => protocol::error_response(&e, Protocol::RestJson, None),
        };
    }
    if state.credentials.is_anonymous() {
        if let Err(e) = same_machine(req.headers(), &state.anonymous_hosts) {
            return match protocol {
                Protocol::Query => protocol::query_error(&e, state.query_namespace, request_id.as_ref()),
                p => protocol::error_response(&e, p, None),
            };
        }
        // Unsigned requests are taken as given here, but a session's token is the
        // server's own: its account is the session's (sessions of other accounts'
        // roles included, which only anonymous mode issues).
        let (parts, body) = req.into_parts();
        let now = state.clock.now_us() / 1_000_000;
        let caller = match session_of(&state, key.as_deref(), &parts, now) {
            Ok(Some((claims, _))) => session_caller(claims, caller),
            Ok(None) => caller,
            Err(e) => {
                let e = AuthService::of(&parts).session_error(&e);
                return match protocol {
                    Protocol::Query => protocol::query_error(&e, state.query_namespace, request_id.as_ref()),
                    p => protocol::error_response(&e, p, None),
                };
            }
        };
        let mut req = Request::from_parts(parts, body);
        req.extensions_mut().insert(caller);
        return next.run(req).await;
    }
    match verify(&state, key.as_deref(), req).await {
        Ok((mut req, session)) => {
            // verify() checked this very key's signature (and its session's token).
            let caller = match session {
                Some(claims) => session_caller(claims, caller),
                None => caller,
            };
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

/// The checks of [`authenticate`] for an S3 request, its refusal left to the caller to
/// word in S3's XML: the region, then anonymous mode's same-machine rule or the
/// signature (S3's presigned GETs included).
async fn admit_s3(
    state: &AuthState,
    key: Option<&str>,
    region: Option<&str>,
    caller: Caller,
    req: Request,
) -> Result<Request, ApiError> {
    if region.is_some_and(|r| !state.credentials.serves_region(r)) {
        return Err(sigv4::SigV4Error::WrongScope("Credential should be scoped to a valid region. ".into()).into());
    }
    let (parts, mut body) = req.into_parts();
    let mut chunk_signer = None;
    let now = state.clock.now_us() / 1_000_000;
    // S3 words a bad session token its own way (400 InvalidToken / ExpiredToken).
    let session = session_of(state, key, &parts, now).map_err(|e| match e {
        SessionError::Expired => {
            ApiError::new(axum::http::StatusCode::BAD_REQUEST, "ExpiredToken", "The provided token has expired.")
        }
        SessionError::MissingToken | SessionError::Invalid => ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "InvalidToken",
            "The provided token is malformed or otherwise invalid.",
        ),
    })?;
    let caller = match session.as_ref() {
        Some((claims, _)) => session_caller(claims.clone(), caller),
        None => caller,
    };
    if state.credentials.is_anonymous() {
        same_machine(&parts.headers, &state.anonymous_hosts)?;
    } else {
        let lookup = |id: &str| match &session {
            Some((claims, secret)) if claims.access_key_id == id => Some(secret.clone()),
            _ => state.credentials.secret(id),
        };
        let headers = header_pairs(&parts);
        let query = parts.uri.query().unwrap_or("");
        let v2 = !parts.headers.contains_key("authorization") && sigv2::is_presigned(query);
        if v2 || is_presigned(&parts) {
            // A presigned S3 URL reads (what a program hands a browser or a worker).
            if parts.method != axum::http::Method::GET && parts.method != axum::http::Method::HEAD {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "AccessDenied",
                    "presigned URLs are accepted for GET and HEAD only",
                ));
            }
            if v2 {
                sigv2::verify_presigned(parts.method.as_str(), parts.uri.path(), query, &headers, now, lookup)?;
            } else {
                sigv4::verify_presigned(&signed_parts(&parts, &headers, UNSIGNED_PAYLOAD), now, &["s3"], lookup)?;
            }
        } else {
            if parts.headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("AWS ")) {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
                ));
            }
            let pre = sigv4::preverify(&headers, now, &["s3"], lookup)?;
            // S3 requests say what they signed in x-amz-content-sha256: UNSIGNED-PAYLOAD
            // is taken as S3 takes it; an upload's declared hash is signed here and its
            // body checked against it as it streams to its object; anything else (reads,
            // DeleteObjects) is read, up to the limit, and hashed.
            let declared = parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok());
            let hash = match declared {
                // aws-chunked uploads sign the headers with this marker as the payload
                // hash; the chunks chain on from this signature (checked as they stream).
                Some(d) if aws_chunked::Mode::of(d).is_some() => {
                    let (key, amz_date, scope) = pre.signing_parts();
                    chunk_signer = Some(aws_chunked::ChunkSigner::new(key, amz_date, &scope, &pre.auth.signature));
                    d.to_string()
                }
                Some(d) if d.starts_with("STREAMING-") => {
                    return Err(ApiError::new(
                        axum::http::StatusCode::NOT_IMPLEMENTED,
                        "NotImplemented",
                        format!("x-amz-content-sha256 {d}: this server takes STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) and STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                    ));
                }
                Some(d) if d == UNSIGNED_PAYLOAD || (parts.method == axum::http::Method::PUT && d.len() == 64) => {
                    d.to_string()
                }
                _ => {
                    let bytes = axum::body::to_bytes(body, MAX_BODY)
                        .await
                        .map_err(|e| ApiError::serialization(format!("could not read the request body: {e}")))?;
                    let hash = sigv4::sha256_hex(&bytes);
                    body = Body::from(bytes);
                    hash
                }
            };
            sigv4::verify_signature(&pre, &signed_parts(&parts, &headers, &hash))?;
        }
    }
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(caller);
    if let Some(signer) = chunk_signer {
        req.extensions_mut().insert(signer);
    }
    Ok(req)
}

/// Anonymous mode trusts whoever can reach a loopback address, which a web page can
/// too: a form POST to `127.0.0.1` (CSRF) or a name of the page's site resolving to
/// `127.0.0.1` (DNS rebinding). So an unsigned request must name a loopback host (or
/// `--public-url`'s) in `Host`, and come from no other site's page (`Origin`).
fn same_machine(headers: &axum::http::HeaderMap, extra_hosts: &[String]) -> Result<(), ApiError> {
    let host_ok = |host: &str| {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        host == "localhost"
            || host.ends_with(".localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || extra_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host))
    };
    let refuse = |what: String| {
        ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "AccessDeniedException",
            format!(
                "{what}: with no access keys configured, Kinescope answers unsigned requests from this machine only"
            ),
        )
    };
    if let Some(host) = headers.get(axum::http::header::HOST) {
        let host = host.to_str().unwrap_or_default();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => name,
            _ => host,
        };
        if !host_ok(name) {
            return Err(refuse(format!("Host '{host}' is not this machine")));
        }
    }
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let from_here = url::Url::parse(origin).ok().and_then(|u| u.host_str().map(host_ok)).unwrap_or(false);
        if !from_here {
            return Err(refuse(format!("a page of {origin} may not call this server")));
        }
    }
    Ok(())
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

/// The services whose credential scope a request may carry: the one its route or
/// target belongs to.
fn signing_services(headers: &axum::http::HeaderMap) -> &'static [&'static str] {
    const ALL: &[&str] = &["kinesisvideo", "kinesis", "sqs", "sts", "firehose"];
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return match target.split('.').next() {
            Some(super::sqs::TARGET_PREFIX) => &["sqs"],
            Some(super::kinesis::TARGET_PREFIX) => &["kinesis"],
            Some(super::firehose::TARGET_PREFIX) => &["firehose"],
            _ => ALL,
        };
    }
    if protocol::is_query(headers) {
        return &["sqs", "sts"];
    }
    &["kinesisvideo"]
}

/// The caller a verified session acts as: its key, account and principal, in the
/// region the request signed for.
fn session_caller(claims: SessionClaims, signed: Caller) -> Caller {
    Caller {
        access_key_id: Some(claims.access_key_id),
        scope: Scope::new(claims.account, signed.scope.region),
        session: Some(claims.principal),
    }
}

/// The session of a request signed with `key` when it is a temporary key (`ASIA…`): its
/// claims and secret once its token (`X-Amz-Security-Token`, in a header or a presigned
/// URL's query; signed or not, as the KVS producer SDKs add it after signing) checks out.
fn session_of(
    state: &AuthState,
    key: Option<&str>,
    parts: &axum::http::request::Parts,
    now_s: i64,
) -> Result<Option<(SessionClaims, String)>, SessionError> {
    let Some(key) = key.filter(|k| is_temporary_key(k)) else { return Ok(None) };
    let from_query = || {
        let q = parts.uri.query()?;
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "X-Amz-Security-Token").map(|(_, v)| v.into_owned())
    };
    let token =
        parts.headers.get("x-amz-security-token").and_then(|v| v.to_str().ok()).map(str::to_string).or_else(from_query);
    state.sessions.verify(key, token.as_deref(), now_s).map(Some)
}

/// Verifies a request signed with `key` (what its `Authorization` or presigned query
/// claims); on refusal, hands back a body that was not read.
async fn verify(
    state: &AuthState,
    key: Option<&str>,
    req: Request,
) -> Result<(Request, Option<SessionClaims>), (ApiError, Option<Body>)> {
    let (parts, body) = req.into_parts();
    let headers = header_pairs(&parts);
    let now = state.clock.now_us() / 1_000_000;
    let session = match session_of(state, key, &parts, now) {
        Ok(s) => s,
        Err(e) => return Err((AuthService::of(&parts).session_error(&e), Some(body))),
    };
    let lookup = |id: &str| match &session {
        Some((claims, secret)) if claims.access_key_id == id => Some(secret.clone()),
        _ => state.credentials.secret(id),
    };
    let claims = session.as_ref().map(|(c, _)| c.clone());
    if is_presigned(&parts) {
        // Presigned URLs are what the signalling WebSocket is opened with (a browser
        // cannot set headers on it); nothing else takes one, so a URL handed out for
        // one purpose cannot be replayed against any other operation.
        if parts.method != axum::http::Method::GET || parts.uri.path() != super::kvs::signaling::WEBSOCKET_PATH {
            let e = ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "Presigned URLs are accepted for the signalling WebSocket (GET /v1/signaling) only; sign other requests with the Authorization header.",
            );
            return Err((e, Some(body)));
        }
        // Whoever holds a master's URL can connect as that master: such a URL may live
        // minutes (the SDKs sign for 299 s), not the days SigV4 allows.
        let expires = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "X-Amz-Expires").map(|(_, v)| v.into_owned())
        });
        if expires.and_then(|v| v.parse::<u64>().ok()).is_some_and(|secs| secs > MAX_SIGNALING_URL_SECS) {
            let e = ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "AccessDeniedException",
                format!("A presigned signalling URL may be valid for at most {MAX_SIGNALING_URL_SECS} seconds (X-Amz-Expires)."),
            );
            return Err((e, Some(body)));
        }
        // Signed with the empty body's hash; the body is not read (the WebSocket's GET).
        let empty = sigv4::sha256_hex(b"");
        let req_parts = signed_parts(&parts, &headers, &empty);
        return match sigv4::verify_presigned(&req_parts, now, &["kinesisvideo"], lookup) {
            Ok(key) => {
                tracing::trace!(access_key = %key, "presigned URL verified");
                Ok((Request::from_parts(parts, body), claims))
            }
            Err(e) => Err((AuthService::of(&parts).sigv4_error(e), None)),
        };
    }
    let services = signing_services(&parts.headers);
    let pre = match sigv4::preverify(&headers, now, services, lookup) {
        Ok(pre) => pre,
        Err(e) => return Err((AuthService::of(&parts).sigv4_error(e), Some(body))),
    };
    let streaming = STREAMING_PATHS.contains(&parts.uri.path());
    let (payload_hash, body) = if streaming {
        let declared = parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok());
        if declared.is_none() {
            // The producer SDKs' way: signed over the empty body, no header saying so.
            let empty = sigv4::sha256_hex(b"");
            if let Ok(key) = sigv4::verify_signature(&pre, &signed_parts(&parts, &headers, &empty)) {
                tracing::trace!(access_key = %key, "streaming signature verified (empty-body hash)");
                return Ok((Request::from_parts(parts, body), claims));
            }
        }
        (declared.unwrap_or(UNSIGNED_PAYLOAD).to_string(), body)
    } else {
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|e| (ApiError::serialization(format!("could not read the request body: {e}")), None))?;
        (sigv4::sha256_hex(&bytes), Body::from(bytes))
    };
    let parts_for_sig = signed_parts(&parts, &headers, &payload_hash);
    let key = match sigv4::verify_signature(&pre, &parts_for_sig) {
        Ok(key) => key,
        Err(e) => return Err((AuthService::of(&parts).sigv4_error(e), Some(body))),
    };
    tracing::trace!(access_key = %key, "signature verified");
    Ok((Request::from_parts(parts, body), claims))
}

/// The service a request is for, as far as how it words an authentication failure:
/// AWS's services each have their codes and statuses (see `../shared/aws-api/sts.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthService {
    /// Kinesis and Firehose (JSON 1.1): 400, `…Exception` codes.
    JsonData,
    /// STS and SQS (Query-era codes): 403, `InvalidClientTokenId`, `SignatureDoesNotMatch`.
    QueryEra,
    /// Kinesis Video (REST-JSON): 403, `…Exception` codes.
    Video,
}

impl AuthService {
    fn of(parts: &axum::http::request::Parts) -> Self {
        // The service the signature was scoped to says it best; else the target or
        // the route: Query forms go to `/` (STS, SQS) or a queue URL (`/ACCOUNT/NAME`),
        // Kinesis Video's REST routes are named (`/listStreams`, …).
        let scoped = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| sigv4::parse_authorization(v).ok())
            .map(|a| a.service);
        let service = match scoped.as_deref() {
            Some(s @ ("kinesis" | "firehose" | "sqs" | "sts" | "kinesisvideo")) => s,
            _ => match signing_services(&parts.headers) {
                [one] => one,
                _ => {
                    let path = parts.uri.path();
                    let queue_url = path.split('/').nth(1).is_some_and(crate::scope::is_account);
                    if protocol::is_query(&parts.headers) && (path == "/" || queue_url) {
                        "sqs"
                    } else {
                        "kinesisvideo"
                    }
                }
            },
        };
        match service {
            "kinesis" | "firehose" => AuthService::JsonData,
            "sqs" | "sts" => AuthService::QueryEra,
            _ => AuthService::Video,
        }
    }

    fn error(self, json: &'static str, query: &'static str, message: String) -> ApiError {
        use axum::http::StatusCode;
        match self {
            AuthService::JsonData => ApiError::new(StatusCode::BAD_REQUEST, json, message),
            AuthService::QueryEra => {
                let status =
                    if query == "IncompleteSignature" { StatusCode::BAD_REQUEST } else { StatusCode::FORBIDDEN };
                ApiError { legacy_code: Some(query), ..ApiError::new(status, query, message) }
            }
            AuthService::Video => ApiError::new(StatusCode::FORBIDDEN, json, message),
        }
    }

    fn sigv4_error(self, e: sigv4::SigV4Error) -> ApiError {
        use sigv4::SigV4Error as E;
        let (json, query) = match e {
            E::Missing => ("MissingAuthenticationTokenException", "MissingAuthenticationToken"),
            E::Incomplete(_) => ("IncompleteSignatureException", "IncompleteSignature"),
            E::UnknownAccessKey => ("UnrecognizedClientException", "InvalidClientTokenId"),
            E::Mismatch | E::Expired { .. } | E::NotYetCurrent { .. } | E::WrongScope(_) => {
                ("InvalidSignatureException", "SignatureDoesNotMatch")
            }
        };
        self.error(json, query, e.to_string())
    }

    fn session_error(self, e: &SessionError) -> ApiError {
        let (json, query) = match e {
            SessionError::Expired => ("ExpiredTokenException", "ExpiredToken"),
            SessionError::MissingToken | SessionError::Invalid => {
                ("UnrecognizedClientException", "InvalidClientTokenId")
            }
        };
        self.error(json, query, e.to_string())
    }
}

/// A request's headers as SigV4 reads them. HTTP/1.1 carries the host in a header,
/// HTTP/2 in the `:authority` pseudo-header (in the URI here): both names are given
/// for the signature, which may sign either, whichever protocol brought the request.
fn header_pairs(parts: &axum::http::request::Parts) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(parts.headers.len() + 2);
    for (k, v) in &parts.headers {
        headers.push((k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()));
    }
    if let Some(a) = parts.uri.authority() {
        if !parts.headers.contains_key("host") {
            headers.push(("host".into(), a.to_string()));
        }
        headers.push((":authority".into(), a.to_string()));
    } else if let Some(host) = parts.headers.get("host") {
        // An HTTP/2 request passed on over HTTP/1.1 (a cluster follower forwarding to
        // the writer) carries its authority as the Host header.
        headers.push((":authority".into(), String::from_utf8_lossy(host.as_bytes()).into_owned()));
    }
    headers
}

/// What SigV4 signs of a request: its line, its headers and the body's hash.
/// The path a client signed, when the edge rewrote the request's own: an S3
/// virtual-hosted request (`BUCKET.HOST/KEY`) is routed as `/BUCKET/KEY`, and its
/// version 4 signature covers `/KEY`.
#[derive(Debug, Clone)]
pub struct SignedPath(pub String);

fn signed_parts<'a>(
    parts: &'a axum::http::request::Parts,
    headers: &'a [(String, String)],
    payload_hash: &'a str,
) -> RequestParts<'a> {
    RequestParts {
        method: parts.method.as_str(),
        path: parts.extensions.get::<SignedPath>().map_or(parts.uri.path(), |p| p.0.as_str()),
        query: parts.uri.query().unwrap_or(""),
        headers,
        payload_hash,
    }
}

#[cfg(test)]
mod tests {
    use super::header_pairs;

    fn pairs(req: axum::http::Request<()>) -> Vec<(String, String)> {
        header_pairs(&req.into_parts().0)
    }

    #[test]
    fn the_host_is_offered_under_both_names_whichever_protocol_brought_it() {
        let authority = |p: &[(String, String)]| p.iter().find(|(k, _)| k == ":authority").map(|(_, v)| v.clone());
        // HTTP/2: the authority is in the URI.
        let h2 = pairs(axum::http::Request::builder().uri("http://127.0.0.1:4566/").body(()).unwrap());
        assert_eq!(authority(&h2).as_deref(), Some("127.0.0.1:4566"));
        assert!(h2.iter().any(|(k, v)| k == "host" && v == "127.0.0.1:4566"));
        // The same request forwarded over HTTP/1.1: the Host header, for a signature over `:authority`.
        let h1 = pairs(axum::http::Request::builder().uri("/").header("host", "127.0.0.1:4566").body(()).unwrap());
        assert_eq!(authority(&h1).as_deref(), Some("127.0.0.1:4566"));
    }
}
