//! S3 multipart uploads over the buckets' [`crate::buckets::multipart`]: Create, UploadPart
//! (plain or aws-chunked bodies, checked as PutObject's), Complete (the parts named in
//! an XML document), Abort, ListParts and ListMultipartUploads. What the aws CLI and
//! the SDKs' transfer managers send for objects past their multipart threshold.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::s3::{blocking, iso8601, owned_bucket, xml, S3Error, S3State, NS};
use super::s3_upload::{upload_answer, write_body};
use crate::buckets::multipart::{CompleteError, Upload, MAX_PARTS};
use crate::credentials::Caller;
use crate::wire::aws_chunked::ChunkSigner;
use crate::wire::xml::Element;

/// The largest CompleteMultipartUpload document: ten thousand parts and markup.
const MAX_COMPLETE_BODY: usize = 2 << 20;

fn no_upload(id: &str) -> S3Error {
    S3Error::new(
        StatusCode::NOT_FOUND,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        id,
    )
}

/// The upload `id`, checked: the caller's bucket, in progress, for this key.
async fn owned_upload(s: &S3State, caller: &Caller, bucket: &str, key: &str, id: &str) -> Result<Upload, S3Error> {
    owned_bucket(s, caller, bucket)?;
    let (buckets, i) = (s.buckets.clone(), id.to_string());
    let upload = blocking(move || buckets.upload(&i).map_err(|e| S3Error::internal(e, &i))).await?;
    // The account too: a bucket deleted and made again by another account does not
    // hand it the uploads begun in the old one.
    upload
        .filter(|u| u.bucket == bucket && u.key == key && u.account == caller.scope.account)
        .ok_or_else(|| no_upload(id))
}

/// CreateMultipartUpload (`POST /BUCKET/KEY?uploads`).
pub(super) async fn create(s: &S3State, caller: &Caller, bucket: &str, key: &str) -> Result<Response, S3Error> {
    owned_bucket(s, caller, bucket)?;
    if let Err(e) = crate::buckets::check_key(key) {
        return Err(S3Error::new(StatusCode::BAD_REQUEST, "KeyTooLongError", e, key));
    }
    let (buckets, b, k, account) =
        (s.buckets.clone(), bucket.to_string(), key.to_string(), caller.scope.account.clone());
    let id = blocking(move || buckets.create_upload(&b, &k, &account).map_err(|e| S3Error::internal(e, &k))).await?;
    Ok(xml(Element::new("InitiateMultipartUploadResult")
        .attr("xmlns", NS)
        .child(Element::text("Bucket", bucket))
        .child(Element::text("Key", key))
        .child(Element::text("UploadId", id))
        .to_document()))
}

/// UploadPart (`PUT /BUCKET/KEY?partNumber=N&uploadId=ID`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn upload_part(
    s: &S3State,
    caller: &Caller,
    signer: Option<ChunkSigner>,
    bucket: &str,
    key: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, S3Error> {
    let id = query.get("uploadId").map(String::as_str).unwrap_or_default();
    let number: u32 =
        query.get("partNumber").and_then(|n| n.parse().ok()).filter(|n| (1..=MAX_PARTS).contains(n)).ok_or_else(
            || {
                S3Error::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    format!("Part number must be an integer between 1 and {MAX_PARTS}, inclusive"),
                    key,
                )
            },
        )?;
    owned_upload(s, caller, bucket, key, id).await?;
    let (buckets, i) = (s.buckets.clone(), id.to_string());
    let (info, checksum) = write_body(s, headers, body, signer, key, move || buckets.begin_part(&i, number)).await?;
    Ok(upload_answer(info.etag, checksum))
}

/// CompleteMultipartUpload (`POST /BUCKET/KEY?uploadId=ID`, the parts in XML).
pub(super) async fn complete(
    s: &S3State,
    caller: &Caller,
    bucket: &str,
    key: &str,
    id: &str,
    body: Body,
) -> Result<Response, S3Error> {
    owned_upload(s, caller, bucket, key, id).await?;
    let malformed = |why: String| {
        S3Error::new(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            format!("The XML you provided was not well-formed or did not validate against our published schema: {why}"),
            key,
        )
    };
    let body = axum::body::to_bytes(body, MAX_COMPLETE_BODY)
        .await
        .map_err(|_| malformed(format!("the document is over {MAX_COMPLETE_BODY} bytes")))?;
    let doc = std::str::from_utf8(&body).map_err(|_| malformed("not UTF-8".into()))?;
    let numbers = crate::wire::xml::texts_of(doc, "PartNumber", MAX_PARTS as usize).map_err(malformed)?;
    let etags = crate::wire::xml::texts_of(doc, "ETag", MAX_PARTS as usize).map_err(malformed)?;
    if numbers.is_empty() || numbers.len() != etags.len() {
        return Err(malformed("each <Part> needs one <PartNumber> and one <ETag>".into()));
    }
    let mut parts = Vec::with_capacity(numbers.len());
    for (n, e) in numbers.into_iter().zip(etags) {
        let n: u32 = n.trim().parse().map_err(|_| malformed(format!("PartNumber '{n}'")))?;
        parts.push((n, e.trim().replace("&quot;", "\"")));
    }
    let (buckets, i, k) = (s.buckets.clone(), id.to_string(), key.to_string());
    let info = blocking(move || {
        buckets.complete_upload(&i, &parts).map_err(|e| {
            let (status, code) = match &e {
                CompleteError::NoSuchUpload => return no_upload(&i),
                CompleteError::InvalidPart(_) => (StatusCode::BAD_REQUEST, "InvalidPart"),
                CompleteError::InvalidPartOrder => (StatusCode::BAD_REQUEST, "InvalidPartOrder"),
                CompleteError::EntityTooSmall(_) => (StatusCode::BAD_REQUEST, "EntityTooSmall"),
                CompleteError::EntityTooLarge => (StatusCode::BAD_REQUEST, "EntityTooLarge"),
                CompleteError::NoSpace(_) => (StatusCode::SERVICE_UNAVAILABLE, "SlowDown"),
                CompleteError::Bucket(_) | CompleteError::Io(_) => return S3Error::internal(e, &k),
            };
            S3Error::new(status, code, e.to_string(), &k)
        })
    })
    .await?;
    Ok(xml(Element::new("CompleteMultipartUploadResult")
        .attr("xmlns", NS)
        .child(Element::text("Location", format!("/{bucket}/{key}")))
        .child(Element::text("Bucket", bucket))
        .child(Element::text("Key", key))
        .child(Element::text("ETag", info.etag))
        .to_document()))
}

/// AbortMultipartUpload (`DELETE /BUCKET/KEY?uploadId=ID`).
pub(super) async fn abort(
    s: &S3State,
    caller: &Caller,
    bucket: &str,
    key: &str,
    id: &str,
) -> Result<Response, S3Error> {
    owned_upload(s, caller, bucket, key, id).await?;
    let (buckets, i) = (s.buckets.clone(), id.to_string());
    blocking(move || buckets.abort_upload(&i).map_err(|e| S3Error::internal(e, &i))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// ListParts (`GET /BUCKET/KEY?uploadId=ID`): every part, in one page.
pub(super) async fn list_parts(
    s: &S3State,
    caller: &Caller,
    bucket: &str,
    key: &str,
    id: &str,
) -> Result<Response, S3Error> {
    owned_upload(s, caller, bucket, key, id).await?;
    let (buckets, i) = (s.buckets.clone(), id.to_string());
    let parts = blocking(move || buckets.parts(&i).map_err(|e| S3Error::internal(e, &i))).await?;
    let mut doc = Element::new("ListPartsResult")
        .attr("xmlns", NS)
        .child(Element::text("Bucket", bucket))
        .child(Element::text("Key", key))
        .child(Element::text("UploadId", id))
        .child(Element::text("MaxParts", MAX_PARTS.to_string()))
        .child(Element::text("IsTruncated", "false"));
    for p in parts {
        doc = doc.child(
            Element::new("Part")
                .child(Element::text("PartNumber", p.number.to_string()))
                .child(Element::text("LastModified", iso8601(p.modified)))
                .child(Element::text("ETag", p.etag))
                .child(Element::text("Size", p.size.to_string())),
        );
    }
    Ok(xml(doc.to_document()))
}

/// ListMultipartUploads (`GET /BUCKET?uploads`): uploads in progress by key and
/// initiation, a thousand a page (`key-marker`, `upload-id-marker` resume).
pub(super) async fn list_uploads(
    s: &S3State,
    caller: &Caller,
    bucket: &str,
    query: &HashMap<String, String>,
) -> Result<Response, S3Error> {
    const PAGE: usize = 1000;
    owned_bucket(s, caller, bucket)?;
    let (buckets, b) = (s.buckets.clone(), bucket.to_string());
    let uploads = blocking(move || buckets.uploads(&b).map_err(|e| S3Error::internal(e, &b))).await?;
    let key_marker = query.get("key-marker").cloned().unwrap_or_default();
    let id_marker = query.get("upload-id-marker").cloned().unwrap_or_default();
    let mut rest = uploads.into_iter().filter(|u| {
        key_marker.is_empty()
            || u.key > key_marker
            || (u.key == key_marker && !id_marker.is_empty() && u.id > id_marker)
    });
    let page: Vec<Upload> = rest.by_ref().take(PAGE).collect();
    let truncated = rest.next().is_some();
    let mut doc = Element::new("ListMultipartUploadsResult")
        .attr("xmlns", NS)
        .child(Element::text("Bucket", bucket))
        .child(Element::text("KeyMarker", key_marker.as_str()))
        .child(Element::text("UploadIdMarker", id_marker.as_str()))
        .child(Element::text("MaxUploads", PAGE.to_string()))
        .child(Element::text("IsTruncated", truncated.to_string()));
    if let (true, Some(last)) = (truncated, page.last()) {
        doc = doc
            .child(Element::text("NextKeyMarker", last.key.as_str()))
            .child(Element::text("NextUploadIdMarker", last.id.as_str()));
    }
    for u in page {
        let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u.initiated);
        doc = doc.child(
            Element::new("Upload")
                .child(Element::text("Key", u.key))
                .child(Element::text("UploadId", u.id))
                .child(Element::text("Initiated", iso8601(when))),
        );
    }
    Ok(xml(doc.to_document()))
}
