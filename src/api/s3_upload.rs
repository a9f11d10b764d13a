//! S3 uploads: a request body streamed into an object (PutObject) or a part of a
//! multipart upload, never whole in memory, in the framings the SDKs send: a plain body of `Content-Length` bytes, or
//! `aws-chunked` (`Content-Encoding: aws-chunked`, `x-amz-decoded-content-length`,
//! chunk signatures and trailing checksums: the Java and JavaScript SDKs' streaming
//! uploads). The body is checked against everything the request declared (the signed
//! `x-amz-content-sha256`, the chunk signatures, an `x-amz-checksum-*` header or
//! trailer) before the object is made durable and put in place; a body that fails any
//! check leaves nothing.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::StreamExt;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::s3::{owned_bucket, with_headers, S3Error, S3State, MAX_OBJECT_BYTES};
use crate::buckets::read::ObjectInfo;
use crate::buckets::ObjectWriter;
use crate::credentials::Caller;
use crate::wire::aws_chunked::{ChunkSigner, ChunkedError, Decoder, Mode};

/// A checksum algorithm S3 takes in `x-amz-checksum-*` (header or trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
}

impl Algorithm {
    const ALL: [Algorithm; 4] = [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Sha1, Algorithm::Sha256];

    fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    fn of_header(name: &str) -> Result<Algorithm, String> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("{name}: this server checks x-amz-checksum-crc32, -crc32c, -sha1 and -sha256 only"))
    }
}

/// A running checksum of one algorithm.
enum Running {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Running {
    fn new(a: Algorithm) -> Running {
        match a {
            Algorithm::Crc32 => Running::Crc32(crc32fast::Hasher::new()),
            Algorithm::Crc32c => Running::Crc32c(0),
            Algorithm::Sha1 => Running::Sha1(Sha1::new()),
            Algorithm::Sha256 => Running::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Running::Crc32(h) => h.update(bytes),
            Running::Crc32c(c) => *c = crc32c::crc32c_append(*c, bytes),
            Running::Sha1(h) => h.update(bytes),
            Running::Sha256(h) => h.update(bytes),
        }
    }

    /// Base64, as S3 writes checksums.
    fn finish(self) -> String {
        let raw = match self {
            Running::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Running::Crc32c(c) => c.to_be_bytes().to_vec(),
            Running::Sha1(h) => h.finalize().to_vec(),
            Running::Sha256(h) => h.finalize().to_vec(),
        };
        base64::engine::general_purpose::STANDARD.encode(raw)
    }
}

/// What an upload's headers promise about its body.
struct Declared {
    /// Payload bytes.
    length: u64,
    /// aws-chunked framing, if any.
    chunked: Option<Mode>,
    /// The signed SHA-256 of the whole payload (hex), when the request gave one.
    sha256: Option<String>,
    /// The checksum to verify: its algorithm, and its value when a header gave it (a
    /// trailer gives it at the end otherwise).
    checksum: Option<(Algorithm, Option<String>)>,
}

fn bad(code: &'static str, message: impl Into<String>, key: &str) -> S3Error {
    S3Error::new(StatusCode::BAD_REQUEST, code, message, key)
}

fn declared(headers: &HeaderMap, key: &str) -> Result<Declared, S3Error> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let content_sha = text("x-amz-content-sha256");
    let chunked = match content_sha {
        Some(v) if v.starts_with("STREAMING-") => Some(Mode::of(v).ok_or_else(|| {
            S3Error::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                format!("x-amz-content-sha256 {v}: this server takes STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) and STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                key,
            )
        })?),
        _ => None,
    };
    let length_header = if chunked.is_some() { "x-amz-decoded-content-length" } else { "content-length" };
    let length: u64 = text(length_header).and_then(|v| v.parse().ok()).ok_or_else(|| {
        S3Error::new(
            StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            format!("You must provide the {length_header} HTTP header."),
            key,
        )
    })?;
    if length > MAX_OBJECT_BYTES {
        return Err(bad(
            "EntityTooLarge",
            format!("Your proposed upload exceeds the maximum allowed object size of {MAX_OBJECT_BYTES} bytes"),
            key,
        ));
    }
    let sha256 =
        content_sha.filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).map(str::to_ascii_lowercase);
    // A checksum header, or a trailer announced by x-amz-trailer.
    let mut checksum = None;
    for (name, value) in headers {
        // (-type, -algorithm and -mode say how, not what.)
        let how = ["x-amz-checksum-type", "x-amz-checksum-algorithm", "x-amz-checksum-mode"];
        if name.as_str().starts_with("x-amz-checksum-") && !how.contains(&name.as_str()) {
            let a = Algorithm::of_header(name.as_str()).map_err(|m| bad("InvalidRequest", m, key))?;
            if checksum.is_some() {
                return Err(bad("InvalidRequest", "Expecting a single x-amz-checksum- header", key));
            }
            checksum = Some((a, Some(value.to_str().unwrap_or_default().to_string())));
        }
    }
    if let Some(trailer) = text("x-amz-trailer") {
        if chunked.is_none_or(|m| m == Mode::Signed) {
            return Err(bad("InvalidRequest", "x-amz-trailer needs a STREAMING-…-TRAILER upload", key));
        }
        let a = Algorithm::of_header(trailer.trim()).map_err(|m| bad("InvalidRequest", m, key))?;
        if checksum.replace((a, None)).is_some() {
            return Err(bad("InvalidRequest", "Expecting a single x-amz-checksum- header", key));
        }
    }
    Ok(Declared { length, chunked, sha256, checksum })
}

fn chunked_error(e: ChunkedError, key: &str) -> S3Error {
    match e {
        ChunkedError::SignatureMismatch => S3Error::new(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided (a chunk or trailer signature).",
            key,
        ),
        ChunkedError::ChunkTooSmall => bad("InvalidChunkSizeError", e.to_string(), key),
        e => bad("IncompleteBody", e.to_string(), key),
    }
}

/// PutObject (see the module docs).
pub(super) async fn object_put(
    s: &S3State,
    caller: &Caller,
    signer: Option<ChunkSigner>,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, S3Error> {
    owned_bucket(s, caller, bucket)?;
    if let Err(e) = crate::buckets::check_key(key) {
        return Err(bad("KeyTooLongError", e, key));
    }
    let (buckets, b, k) = (s.buckets.clone(), bucket.to_string(), key.to_string());
    let (info, checksum) = write_body(s, headers, body, signer, key, move || buckets.begin_put(&b, &k)).await?;
    Ok(upload_answer(info.etag, checksum))
}

/// The answer to a body written: its ETag, and its checksum when one was declared.
pub(super) fn upload_answer(etag: String, checksum: Option<(&'static str, String)>) -> Response {
    let mut out = vec![(header::ETAG, etag)];
    if let Some((name, value)) = checksum {
        out.push((header::HeaderName::from_static(name), value));
    }
    with_headers(StatusCode::OK.into_response(), out)
}

/// Streams a request body (see the module docs) into the writer `begin` opens on a
/// blocking thread, and commits it once every check passed; returns what the written
/// file holds and the checksum to echo (its header name and value).
pub(super) async fn write_body(
    s: &S3State,
    headers: &HeaderMap,
    body: Body,
    signer: Option<ChunkSigner>,
    key: &str,
    begin: impl FnOnce() -> std::io::Result<ObjectWriter> + Send + 'static,
) -> Result<(ObjectInfo, Option<(&'static str, String)>), S3Error> {
    let declared = declared(headers, key)?;
    if let Err(e) = s.buckets.check_space(declared.length) {
        return Err(S3Error::new(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", e.to_string(), key));
    }
    // The writer runs on a blocking thread; the body's pieces reach it over a channel.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<bytes::Bytes>>(4);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Option<ObjectInfo>> {
        let mut w = begin()?;
        loop {
            match rx.blocking_recv() {
                Some(Some(piece)) => w.write(&piece)?,
                // The end, and the checks passed.
                Some(None) => break,
                // The handler gave up: the temporary file goes with the writer.
                None => return Ok(None),
            }
        }
        let path = w.commit()?;
        Ok(Some(crate::buckets::read::info(String::new(), &std::fs::metadata(path)?)))
    });
    let checksum = match receive(body, &declared, signer, key, &tx).await {
        Ok(c) => c,
        Err(ReceiveError::Refused(e)) => return Err(e),
        Err(ReceiveError::WriterStopped) => {
            drop(tx);
            let why = match writer.await {
                Ok(Err(e)) => e.to_string(),
                _ => "the object writer stopped".to_string(),
            };
            return Err(S3Error::internal(why, key));
        }
    };
    let _ = tx.send(None).await;
    let info = writer
        .await
        .map_err(|e| S3Error::internal(e, key))?
        .map_err(|e| S3Error::internal(e, key))?
        .ok_or_else(|| S3Error::internal("the object writer stopped", key))?;
    Ok((info, checksum.map(|(a, v)| (a.header(), v))))
}

enum ReceiveError {
    Refused(S3Error),
    WriterStopped,
}

impl From<S3Error> for ReceiveError {
    fn from(e: S3Error) -> Self {
        ReceiveError::Refused(e)
    }
}

/// Streams `body` to `tx` as payload, checking it against `declared`; returns the
/// checksum to echo (its algorithm and value), if one was declared.
async fn receive(
    body: Body,
    declared: &Declared,
    signer: Option<ChunkSigner>,
    key: &str,
    tx: &tokio::sync::mpsc::Sender<Option<bytes::Bytes>>,
) -> Result<Option<(Algorithm, String)>, ReceiveError> {
    let mut sha = declared.sha256.as_ref().map(|_| Sha256::new());
    let mut sum = declared.checksum.as_ref().map(|(a, _)| Running::new(*a));
    let mut decoder = declared.chunked.map(|mode| Decoder::new(mode, signer, declared.length));
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| bad("IncompleteBody", e.to_string(), key))?;
        let payload: Vec<bytes::Bytes> = match decoder.as_mut() {
            Some(d) => d.feed(&piece).map_err(|e| chunked_error(e, key))?.into_iter().map(|r| piece.slice(r)).collect(),
            None => {
                received += piece.len() as u64;
                if received > declared.length {
                    return Err(bad("IncompleteBody", "more bytes than Content-Length", key).into());
                }
                vec![piece]
            }
        };
        for p in payload {
            if let Some(h) = sha.as_mut() {
                h.update(&p);
            }
            if let Some(s) = sum.as_mut() {
                s.update(&p);
            }
            if tx.send(Some(p)).await.is_err() {
                return Err(ReceiveError::WriterStopped);
            }
        }
    }
    let trailers = match decoder {
        Some(d) => d.finish().map_err(|e| chunked_error(e, key))?,
        None if received != declared.length => {
            return Err(bad(
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header",
                key,
            )
            .into())
        }
        None => Vec::new(),
    };
    if let (Some(want), Some(h)) = (declared.sha256.as_deref(), sha) {
        if want != hex::encode(h.finalize()) {
            return Err(bad(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                key,
            )
            .into());
        }
    }
    let (Some((algorithm, from_header)), Some(sum)) = (declared.checksum.as_ref(), sum) else {
        return Ok(None);
    };
    let claimed = match from_header {
        Some(v) => v.clone(),
        None => trailers.iter().find(|(n, _)| n == algorithm.header()).map(|(_, v)| v.clone()).ok_or_else(|| {
            bad(
                "InvalidRequest",
                format!("x-amz-trailer named {} and the body's trailers did not", algorithm.header()),
                key,
            )
        })?,
    };
    let computed = sum.finish();
    if claimed != computed {
        return Err(bad(
            "BadDigest",
            format!("The {} you specified did not match the calculated checksum.", algorithm.header()),
            key,
        )
        .into());
    }
    Ok(Some((*algorithm, computed)))
}
