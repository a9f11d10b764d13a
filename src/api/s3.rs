//! S3's REST API, path-style (`/BUCKET/KEY`) and virtual-hosted, for the buckets Kinescope keeps in its
//! data directory: the reads a computer-vision program needs to fetch what an event
//! points at (ListBuckets, HeadBucket, ListObjectsV2, GetObject with one byte range,
//! If-None-Match, If-Modified-Since, HeadObject) and the operator's writes
//! (Create/DeleteBucket, PutObject streamed to disk, DeleteObject(s)).
//!
//! Virtual-hosted requests (`http://BUCKET.HOST:PORT/KEY`, `HOST` the public URL's
//! host or `localhost`) are routed as their path-style twins.
//!
//! A request is S3's when its signature's credential scope names the service `s3` (in
//! the `Authorization` header or a presigned URL's `X-Amz-Credential`); the edge sends
//! it here before any other route, so a bucket may be called `hls` or `health`.
//! Authentication is the edge's (SigV4 with S3's rules: the path encoded once, and
//! presigned GETs, in version 4 or in the version 2 boto3 writes by default); a bucket
//! is its owner account's, and others get AccessDenied.
//! Uploads (plain and aws-chunked bodies) are [`super::s3_upload`]'s, multipart
//! uploads [`super::s3_multipart`]'s. CopyObject, and buckets configured as
//! `[buckets.NAME]` remote stores (use their store) are answered NotImplemented for
//! now. Errors are S3's XML.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;

use super::shapes::{parse_range, RangeAsk};
use crate::buckets::read::{ListPage, ListRequest, ObjectInfo, ObjectRead};
use crate::buckets::{BucketError, Buckets};
use crate::credentials::Caller;
use crate::wire::aws_chunked::ChunkSigner;
use crate::wire::sigv4;
use crate::wire::xml::Element;

/// The XML namespace of S3's documents.
pub(super) const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// The most keys one ListObjectsV2 page holds (S3's limit too).
pub const MAX_KEYS: usize = 1000;
/// Bytes read from an object per body chunk.
const READ_CHUNK: usize = 256 * 1024;
/// The largest object one PutObject writes (S3's single-PUT limit).
pub const MAX_OBJECT_BYTES: u64 = 5 << 30;

#[derive(Clone)]
pub struct S3State {
    pub buckets: Buckets,
}

/// Whether a request is signed for S3 (header, presigned version 4 query, or a version
/// 2 presigned query or header, which only S3 takes).
pub fn is_s3(headers: &HeaderMap, query: Option<&str>) -> bool {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let scoped = authorization.and_then(|v| sigv4::parse_authorization(v).ok()).is_some_and(|a| a.service == "s3");
    // `AWS KEY:SIGNATURE` is S3's own (version 2); refused there, in S3's words.
    scoped
        || authorization.is_some_and(|v| v.starts_with("AWS "))
        || query.and_then(presigned_service).is_some_and(|s| s == "s3")
        || query.is_some_and(crate::wire::sigv2::is_presigned)
}

/// The bucket a virtual-hosted request names in its host (`BUCKET.BASE[:PORT]`, for
/// `BASE` one of `bases`: the public URL's host, `localhost`).
pub fn virtual_bucket<'a>(host: &'a str, bases: &[String]) -> Option<&'a str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    bases.iter().find_map(|base| {
        let bucket = name.strip_suffix(base.as_str())?.strip_suffix('.')?;
        valid_bucket_name(bucket).then_some(bucket)
    })
}

/// The service a presigned URL's `X-Amz-Credential` names.
fn presigned_service(query: &str) -> Option<String> {
    let cred = query.split('&').find_map(|p| p.strip_prefix("X-Amz-Credential="))?;
    let cred = sigv4::percent_decode(cred, true);
    cred.split('/').nth(3).map(str::to_string)
}

/// What a bucket's own path answers (with or without a trailing slash).
fn bucket_routes() -> axum::routing::MethodRouter<S3State> {
    get(bucket_get)
        .head(bucket_head)
        .put(bucket_create)
        .delete(bucket_delete)
        .post(bucket_post)
        .fallback(not_implemented)
}

pub fn routes(state: S3State) -> Router {
    Router::new()
        .route("/", get(list_buckets).fallback(not_implemented))
        .route("/{bucket}", bucket_routes())
        .route("/{bucket}/", bucket_routes())
        .route(
            "/{bucket}/{*key}",
            get(object_get)
                .head(object_head)
                .put(object_put)
                .post(object_post)
                .delete(object_delete)
                .fallback(not_implemented),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .fallback(not_implemented)
        .with_state(state)
}

/// An S3 error.
#[derive(Debug)]
pub(super) struct S3Error {
    status: StatusCode,
    code: &'static str,
    message: String,
    resource: String,
}

impl S3Error {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>, resource: &str) -> Self {
        S3Error { status, code, message: message.into(), resource: resource.to_string() }
    }

    fn no_bucket(bucket: &str) -> Self {
        S3Error::new(StatusCode::NOT_FOUND, "NoSuchBucket", "The specified bucket does not exist", bucket)
    }

    pub(super) fn internal(e: impl std::fmt::Display, resource: &str) -> Self {
        tracing::error!(error = %e, resource, "S3 request failed");
        S3Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
            resource,
        )
    }
}

impl IntoResponse for S3Error {
    fn into_response(self) -> Response {
        let doc = Element::new("Error")
            .child(Element::text("Code", self.code))
            .child(Element::text("Message", self.message))
            .child(Element::text("Resource", self.resource))
            .to_document();
        let mut resp = (self.status, doc).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        resp
    }
}

/// The rendering of an edge error (authentication) in S3's terms.
pub fn error_from_edge(e: &super::ApiError, resource: &str) -> Response {
    let code = match e.code {
        "UnrecognizedClientException" | "InvalidClientTokenId" => "InvalidAccessKeyId",
        "InvalidSignatureException" => "SignatureDoesNotMatch",
        "IncompleteSignatureException" | "MissingAuthenticationTokenException" => "AccessDenied",
        "ExpiredTokenException" => "ExpiredToken",
        "AccessDeniedException" => "AccessDenied",
        c => c,
    };
    S3Error::new(e.status, code, e.message.clone(), resource).into_response()
}

fn account(caller: &Caller) -> &str {
    &caller.scope.account
}

/// The bucket, checked: it exists here and is the caller's.
pub(super) fn owned_bucket(state: &S3State, caller: &Caller, bucket: &str) -> Result<(), S3Error> {
    if state.buckets.is_remote(bucket) {
        return Err(S3Error::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("bucket '{bucket}' is kept in an external object store ([buckets.{bucket}]); read it there"),
            bucket,
        ));
    }
    match state.buckets.owner(bucket) {
        None => Err(S3Error::no_bucket(bucket)),
        Some(owner) if owner != account(caller) => {
            Err(S3Error::new(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied", bucket))
        }
        Some(_) if !state.buckets.exists(bucket) => Err(S3Error::no_bucket(bucket)),
        Some(_) => Ok(()),
    }
}

fn http_date(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub(super) fn iso8601(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub(super) fn xml(doc: String) -> Response {
    ([(header::CONTENT_TYPE, "application/xml")], doc).into_response()
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, S3Error> + Send + 'static,
) -> Result<T, S3Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| S3Error::internal(e, ""))?
}

async fn list_buckets(State(s): State<S3State>, Extension(caller): Extension<Caller>) -> Result<Response, S3Error> {
    let acct = account(&caller).to_string();
    let buckets = s.buckets.clone();
    let owned = blocking(move || buckets.owned_by(&acct).map_err(|e| S3Error::internal(e, "/"))).await?;
    let doc = Element::new("ListAllMyBucketsResult")
        .attr("xmlns", NS)
        .child(Element::new("Owner").child(Element::text("ID", account(&caller))))
        .child(Element::new("Buckets").children(owned.into_iter().map(|(name, made)| {
            Element::new("Bucket")
                .child(Element::text("Name", name))
                .child(Element::text("CreationDate", iso8601(made)))
        })))
        .to_document();
    Ok(xml(doc))
}

async fn bucket_head(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path(bucket): Path<String>,
) -> Result<Response, S3Error> {
    owned_bucket(&s, &caller, &bucket)?;
    Ok(StatusCode::OK.into_response())
}

/// GET on a bucket: ListObjectsV2 (`list-type=2`); other sub-resources are not served.
async fn bucket_get(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path(bucket): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, S3Error> {
    owned_bucket(&s, &caller, &bucket)?;
    if q.contains_key("uploads") {
        return super::s3_multipart::list_uploads(&s, &caller, &bucket, &q).await;
    }
    if q.get("list-type").map(String::as_str) != Some("2") {
        if q.contains_key("location") {
            let doc = Element::new("LocationConstraint").attr("xmlns", NS).to_document();
            return Ok(xml(doc));
        }
        return Err(S3Error::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "this server lists buckets with ListObjectsV2 (list-type=2)",
            &bucket,
        ));
    }
    let max_keys = match q.get("max-keys") {
        None => MAX_KEYS,
        Some(v) => v.parse::<usize>().map_err(|_| {
            S3Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "max-keys must be a number from 0 to 1000",
                &bucket,
            )
        })?,
    }
    .min(MAX_KEYS);
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let delimiter = q.get("delimiter").cloned().filter(|d| !d.is_empty());
    let start_after = q.get("start-after").cloned();
    let token = q.get("continuation-token").cloned();
    let resume = token.as_deref().map(|t| decode_token(t, &bucket)).transpose()?;
    let encode_url = q.get("encoding-type").map(String::as_str) == Some("url");
    let buckets = s.buckets.clone();
    let (b, p, d) = (bucket.clone(), prefix.clone(), delimiter.clone());
    let (sa, rs) = (start_after.clone(), resume.clone());
    let page: ListPage = blocking(move || {
        let (after, skip_prefix) = match &rs {
            Some((last, true)) => (Some(last.as_str()), Some(last.as_str())),
            Some((last, false)) => (Some(last.as_str()), None),
            None => (sa.as_deref(), None),
        };
        let req = ListRequest { prefix: &p, delimiter: d.as_deref(), after, skip_prefix, max_keys };
        buckets.list(&b, req).map_err(|e| S3Error::internal(e, &b))
    })
    .await?;
    let enc = |s: &str| if encode_url { sigv4::uri_encode(s, true) } else { s.to_string() };
    let mut doc = Element::new("ListBucketResult")
        .attr("xmlns", NS)
        .child(Element::text("Name", &bucket))
        .child(Element::text("Prefix", enc(&prefix)))
        .child(Element::text("KeyCount", (page.objects.len() + page.common_prefixes.len()).to_string()))
        .child(Element::text("MaxKeys", max_keys.to_string()))
        .child(Element::text("IsTruncated", page.truncated.to_string()));
    if let Some(d) = &delimiter {
        doc = doc.child(Element::text("Delimiter", enc(d)));
    }
    if encode_url {
        doc = doc.child(Element::text("EncodingType", "url"));
    }
    if let Some(t) = &token {
        doc = doc.child(Element::text("ContinuationToken", t));
    }
    if let Some(sa) = &start_after {
        doc = doc.child(Element::text("StartAfter", enc(sa)));
    }
    if page.truncated {
        if let Some((last, is_prefix)) = &page.last {
            doc = doc.child(Element::text("NextContinuationToken", encode_token(last, *is_prefix)));
        }
    }
    doc = doc.children(page.objects.iter().map(|o: &ObjectInfo| {
        Element::new("Contents")
            .child(Element::text("Key", enc(&o.key)))
            .child(Element::text("LastModified", iso8601(o.modified)))
            .child(Element::text("ETag", &o.etag))
            .child(Element::text("Size", o.size.to_string()))
            .child(Element::text("StorageClass", "STANDARD"))
    }));
    doc = doc.children(
        page.common_prefixes.iter().map(|p| Element::new("CommonPrefixes").child(Element::text("Prefix", enc(p)))),
    );
    Ok(xml(doc.to_document()))
}

/// A continuation token: where the page ended (a key, or a common prefix whose keys
/// were all given as it), opaque to clients.
fn encode_token(last: &str, is_prefix: bool) -> String {
    let raw = format!("{}{last}", if is_prefix { 'p' } else { 'k' });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_token(token: &str, bucket: &str) -> Result<(String, bool), S3Error> {
    let bad = || {
        S3Error::new(StatusCode::BAD_REQUEST, "InvalidArgument", "The continuation token provided is incorrect", bucket)
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    match raw.split_at_checked(1) {
        Some(("p", last)) => Ok((last.to_string(), true)),
        Some(("k", last)) => Ok((last.to_string(), false)),
        _ => Err(bad()),
    }
}

/// The object's headers (HEAD and GET share them).
fn object_headers(info: &ObjectInfo) -> Vec<(header::HeaderName, String)> {
    vec![
        (header::ETAG, info.etag.clone()),
        (header::LAST_MODIFIED, http_date(info.modified)),
        (header::CONTENT_TYPE, content_type(&info.key).to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
    ]
}

/// What a key's extension says it holds (what Kinescope writes: images, JSON lines,
/// Parquet, compressed records), else S3's default.
fn content_type(key: &str) -> &'static str {
    let ext = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "json" => "application/json",
        "mp4" => "video/mp4",
        "gz" => "application/gzip",
        _ => "binary/octet-stream",
    }
}

/// A conditional GET or HEAD that the object does not need to be sent for.
fn not_modified(headers: &HeaderMap, info: &ObjectInfo) -> bool {
    if let Some(v) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return v.split(',').any(|t| t.trim() == info.etag || t.trim() == "*");
    }
    if let Some(since) = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()) {
        if let Ok(t) = chrono::DateTime::parse_from_rfc2822(since) {
            let modified: chrono::DateTime<chrono::Utc> = info.modified.into();
            return modified.timestamp() <= t.timestamp();
        }
    }
    false
}

fn no_key(key: &str) -> S3Error {
    S3Error::new(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist.", key)
}

pub(super) fn with_headers(mut resp: Response, headers: Vec<(header::HeaderName, String)>) -> Response {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

async fn object_head(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, S3Error> {
    let (st, c, b, k) = (s.clone(), caller.clone(), bucket.clone(), key.clone());
    let info = blocking(move || {
        owned_bucket(&st, &c, &b)?;
        st.buckets.object_info(&b, &k).map_err(|e| S3Error::internal(e, &k))?.ok_or_else(|| no_key(&k))
    })
    .await?;
    let mut base = object_headers(&info);
    if not_modified(&headers, &info) {
        return Ok(with_headers(StatusCode::NOT_MODIFIED.into_response(), base));
    }
    base.push((header::CONTENT_LENGTH, info.size.to_string()));
    Ok(with_headers(StatusCode::OK.into_response(), base))
}

async fn object_get(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path((bucket, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, S3Error> {
    if let Some(id) = q.get("uploadId") {
        return super::s3_multipart::list_parts(&s, &caller, &bucket, &key, id).await;
    }
    // One trip to a blocking thread: the owner check, the stat, and a small object's
    // bytes (from memory when unchanged since they were last read).
    let (st, c, b, k) = (s.clone(), caller.clone(), bucket.clone(), key.clone());
    let read = blocking(move || {
        owned_bucket(&st, &c, &b)?;
        st.buckets.read_object(&b, &k).map_err(|e| S3Error::internal(e, &k))?.ok_or_else(|| no_key(&k))
    })
    .await?;
    let info = match &read {
        ObjectRead::Whole(info, _) | ObjectRead::Open(_, info) => info.clone(),
    };
    let mut base = object_headers(&info);
    if not_modified(&headers, &info) {
        return Ok(with_headers(StatusCode::NOT_MODIFIED.into_response(), base));
    }
    let len = info.size;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|r| parse_range(r, len));
    let (status, first, count) = match range {
        None | Some(RangeAsk::Whole) => (StatusCode::OK, 0, len),
        Some(RangeAsk::Part(a, b)) => {
            base.push((header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}")));
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        Some(RangeAsk::Unsatisfiable) => {
            let mut resp = S3Error::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
                &key,
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    base.push((header::CONTENT_LENGTH, count.to_string()));
    let mut file = match read {
        ObjectRead::Whole(_, bytes) => {
            let body = bytes.slice(first as usize..(first + count) as usize);
            return Ok(with_headers((status, Body::from(body)).into_response(), base));
        }
        ObjectRead::Open(file, _) => file,
    };
    // A larger one streams from the open file, a chunk at a time: never held whole.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(first)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = count;
        while left > 0 {
            let mut buf = vec![0u8; READ_CHUNK.min(left as usize)];
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream_of(rx));
    Ok(with_headers((status, body).into_response(), base))
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A bucket name S3 accepts: 3 to 63 lower-case letters, digits, dots and hyphens,
/// starting and ending with a letter or digit.
fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// CreateBucket: a directory bucket of the caller's account (its own existing one is
/// answered 200, as us-east-1 does).
async fn bucket_create(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path(bucket): Path<String>,
) -> Result<Response, S3Error> {
    if !valid_bucket_name(&bucket) {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidBucketName",
            "The specified bucket is not valid.",
            &bucket,
        ));
    }
    if s.buckets.is_remote(&bucket) || s.buckets.owner(&bucket).is_some_and(|o| o != account(&caller)) {
        return Err(S3Error::new(
            StatusCode::CONFLICT,
            "BucketAlreadyExists",
            "The requested bucket name is not available.",
            &bucket,
        ));
    }
    let (buckets, acct, b) = (s.buckets.clone(), account(&caller).to_string(), bucket.clone());
    blocking(move || {
        buckets.create(&acct, &b).map_err(|e| match e {
            BucketError::AccessDenied { .. } => S3Error::new(
                StatusCode::CONFLICT,
                "BucketAlreadyExists",
                "The requested bucket name is not available.",
                &b,
            ),
            e => S3Error::internal(e, &b),
        })
    })
    .await?;
    Ok(with_headers(StatusCode::OK.into_response(), vec![(header::LOCATION, format!("/{bucket}"))]))
}

/// DeleteBucket: only an empty one.
async fn bucket_delete(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path(bucket): Path<String>,
) -> Result<Response, S3Error> {
    owned_bucket(&s, &caller, &bucket)?;
    let (buckets, b) = (s.buckets.clone(), bucket.clone());
    let removed = blocking(move || buckets.remove_empty(&b).map_err(|e| S3Error::internal(e, &b))).await?;
    if !removed {
        return Err(S3Error::new(
            StatusCode::CONFLICT,
            "BucketNotEmpty",
            "The bucket you tried to delete is not empty",
            &bucket,
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The most keys one DeleteObjects names (S3's limit).
pub const MAX_DELETE_KEYS: usize = 1000;
/// The largest DeleteObjects document: a thousand of the longest keys, and markup.
const MAX_DELETE_BODY: usize = 2 << 20;

/// POST on a bucket: DeleteObjects (`?delete`), the keys in an XML document.
async fn bucket_post(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path(bucket): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Body,
) -> Result<Response, S3Error> {
    if !q.contains_key("delete") {
        return Err(S3Error::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "POST on a bucket: DeleteObjects (?delete) only",
            &bucket,
        ));
    }
    owned_bucket(&s, &caller, &bucket)?;
    let malformed = |why: String| {
        S3Error::new(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            format!("The XML you provided was not well-formed or did not validate against our published schema: {why}"),
            &bucket,
        )
    };
    let body = axum::body::to_bytes(body, MAX_DELETE_BODY)
        .await
        .map_err(|_| malformed(format!("the document is over {MAX_DELETE_BODY} bytes")))?;
    let doc = std::str::from_utf8(&body).map_err(|_| malformed("not UTF-8".into()))?;
    let keys = crate::wire::xml::texts_of(doc, "Key", MAX_DELETE_KEYS).map_err(malformed)?;
    if keys.is_empty() {
        return Err(malformed("no <Key>".into()));
    }
    let quiet = crate::wire::xml::texts_of(doc, "Quiet", 1).map_err(malformed)?.first().is_some_and(|q| q == "true");
    let (buckets, b) = (s.buckets.clone(), bucket.clone());
    let results = blocking(move || {
        Ok(keys
            .into_iter()
            .map(|k| {
                let r = buckets.delete(&b, &k);
                (k, r)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let mut doc = Element::new("DeleteResult").attr("xmlns", NS);
    for (key, r) in results {
        match r {
            Ok(()) if quiet => {}
            Ok(()) => doc = doc.child(Element::new("Deleted").child(Element::text("Key", key))),
            Err(e) => {
                tracing::error!(error = %e, bucket = %bucket, key = %key, "an object was not deleted");
                doc = doc.child(
                    Element::new("Error")
                        .child(Element::text("Key", key))
                        .child(Element::text("Code", "InternalError"))
                        .child(Element::text("Message", "We encountered an internal error. Please try again.")),
                );
            }
        }
    }
    Ok(xml(doc.to_document()))
}

/// DeleteObject: gone, or never there (204 both ways, as S3 answers).
/// PUT on a key: PutObject, or UploadPart of a multipart upload.
async fn object_put(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    signer: Option<Extension<ChunkSigner>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, S3Error> {
    if headers.contains_key("x-amz-copy-source") {
        return Err(S3Error::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "CopyObject and UploadPartCopy (x-amz-copy-source) are not served; GET the source and PUT it",
            &key,
        ));
    }
    let signer = signer.map(|Extension(s)| s);
    if q.contains_key("uploadId") || q.contains_key("partNumber") {
        return super::s3_multipart::upload_part(&s, &caller, signer, &bucket, &key, &q, &headers, body).await;
    }
    super::s3_upload::object_put(&s, &caller, signer, &bucket, &key, &headers, body).await
}

/// POST on a key: CreateMultipartUpload (`?uploads`) or CompleteMultipartUpload
/// (`?uploadId=`).
async fn object_post(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path((bucket, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, S3Error> {
    if q.contains_key("uploads") {
        return super::s3_multipart::create(&s, &caller, &bucket, &key).await;
    }
    match q.get("uploadId") {
        Some(id) => super::s3_multipart::complete(&s, &caller, &bucket, &key, id, body).await,
        None => Err(S3Error::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "POST on a key: CreateMultipartUpload (?uploads) and CompleteMultipartUpload (?uploadId=) only",
            &key,
        )),
    }
}

/// DeleteObject, or AbortMultipartUpload (`?uploadId=`).
async fn object_delete(
    State(s): State<S3State>,
    Extension(caller): Extension<Caller>,
    Path((bucket, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, S3Error> {
    if let Some(id) = q.get("uploadId") {
        return super::s3_multipart::abort(&s, &caller, &bucket, &key, id).await;
    }
    owned_bucket(&s, &caller, &bucket)?;
    let (buckets, b, k) = (s.buckets.clone(), bucket.clone(), key.clone());
    blocking(move || buckets.delete(&b, &k).map_err(|e| S3Error::internal(e, &k))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn not_implemented(method: Method, req: Request) -> S3Error {
    let path = req.uri().path().to_string();
    S3Error::new(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        format!("{method} {path}: this server answers ListBuckets, Create/Head/DeleteBucket, ListObjectsV2, Get/Head/Put/DeleteObject and DeleteObjects"),
        &path,
    )
}
