//! The AWS wire protocols, in one place: which one a request speaks, typed inputs
//! decoded from it, typed outputs and errors encoded in it, and the body limit.
//!
//! - rest-json (Kinesis Video): operations by path, JSON bodies, errors as
//!   `x-amzn-ErrorType` + `{"message"}`;
//! - awsJson 1.0 (SQS) and 1.1 (Kinesis, Firehose): `POST /` with `X-Amz-Target`,
//!   errors as `{"__type": "[namespace#]Code", "message"}`;
//! - CBOR (`application/x-amz-cbor-1.1`, the Java SDK's Kinesis default): the awsJson
//!   shapes in CBOR ([`crate::wire::cbor`]);
//! - Query (SQS's older wire): form bodies in, XML out.
//!
//! A leaf of `api`: it knows the error type and nothing of any service.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use crate::wire::xml::Element;

/// The largest non-streaming request body accepted (Kinesis PutRecords carries up to
/// 10 MiB of records, base64'd; every other AWS JSON API stays far below).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

pub const CBOR_CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    RestJson,
    AwsJson10,
    AwsJson11,
    Cbor,
    Query,
}

impl Protocol {
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::RestJson => "application/json",
            Protocol::AwsJson10 => "application/x-amz-json-1.0",
            Protocol::AwsJson11 => "application/x-amz-json-1.1",
            Protocol::Cbor => CBOR_CONTENT_TYPE,
            Protocol::Query => "text/xml",
        }
    }

    /// The protocol a request speaks, from its headers alone: a form without
    /// `X-Amz-Target` is Query; with a target, CBOR or JSON 1.0/1.1 by content type;
    /// anything else is rest-json.
    pub fn of_request(headers: &HeaderMap) -> Protocol {
        if is_query(headers) {
            return Protocol::Query;
        }
        if !headers.contains_key("x-amz-target") {
            return Protocol::RestJson;
        }
        let json = match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            Some(t) if t.starts_with("application/x-amz-json-1.0") => Protocol::AwsJson10,
            _ => Protocol::AwsJson11,
        };
        Protocol::of_json_request(headers, json)
    }

    /// The protocol of a request to a JSON service: CBOR when the body is CBOR,
    /// else the service's JSON version.
    pub fn of_json_request(headers: &HeaderMap, json: Protocol) -> Protocol {
        let cbor = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(CBOR_CONTENT_TYPE));
        if cbor {
            Protocol::Cbor
        } else {
            json
        }
    }
}

/// The id of one request, put in its extensions by the request middleware; the same
/// id goes into the `x-amzn-RequestId` header and any XML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn new() -> Self {
        RequestId(uuid::Uuid::new_v4().to_string())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a request is in the Query protocol: a form body without `X-Amz-Target`.
pub fn is_query(headers: &HeaderMap) -> bool {
    !headers.contains_key("x-amz-target")
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(FORM_CONTENT_TYPE))
}

/// A JSON or CBOR body as the JSON value the typed inputs are read from (an empty body
/// is `{}`).
pub fn body_value(protocol: Protocol, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if protocol == Protocol::Cbor {
        return crate::wire::cbor::to_json(body)
            .map_err(|e| ApiError::serialization(format!("could not parse the CBOR request body: {e}")));
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::serialization(format!("could not parse the request body: {e}")))
}

/// A JSON body straight into a typed input (an empty body is `{}`).
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::serialization(format!("could not parse the request body: {e}")))
}

/// A typed output as a 200 response in a JSON protocol or CBOR.
pub fn encode<T: Serialize>(protocol: Protocol, out: &T) -> Response {
    let body: Vec<u8> = match protocol {
        Protocol::Cbor => match serde_json::to_value(out) {
            Ok(v) => crate::wire::cbor::from_json(&v),
            Err(e) => return error_response(&ApiError::internal(e), protocol, None),
        },
        _ => match serde_json::to_vec(out) {
            Ok(b) => b,
            Err(e) => return error_response(&ApiError::internal(e), protocol, None),
        },
    };
    with_content_type(StatusCode::OK, body, protocol.content_type())
}

fn with_content_type(status: StatusCode, body: impl Into<axum::body::Body>, content_type: &'static str) -> Response {
    let mut resp = (status, body.into()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// An error's body in the JSON protocols (and CBOR, the same members).
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    #[serde(rename = "Message", skip_serializing_if = "Option::is_none")]
    message_rest: Option<&'a str>,
    message: &'a str,
}

/// An error in the request's protocol. Query errors need the service's XML namespace
/// and the request id (see [`query_error`]); the other protocols carry the id only in
/// the header the middleware adds.
pub fn error_response(e: &ApiError, protocol: Protocol, xml_namespace: Option<&str>) -> Response {
    if protocol == Protocol::Query {
        return query_error(e, xml_namespace.unwrap_or_default(), None);
    }
    let kind = match e.type_namespace {
        Some(ns) => format!("{ns}#{}", e.code),
        None => e.code.to_string(),
    };
    let body = ErrorBody {
        kind: &kind,
        // REST-JSON SDKs read `Message`; the JSON protocols read `message`.
        message_rest: (protocol == Protocol::RestJson).then_some(e.message.as_str()),
        message: &e.message,
    };
    let bytes = if protocol == Protocol::Cbor {
        crate::wire::cbor::from_json(&serde_json::to_value(&body).unwrap_or_default())
    } else {
        serde_json::to_vec(&body).unwrap_or_default()
    };
    let mut resp = with_content_type(e.status, bytes, protocol.content_type());
    decorate(&mut resp, e);
    resp
}

/// The headers every error carries, and what the middleware logs.
fn decorate(resp: &mut Response, e: &ApiError) {
    let h = resp.headers_mut();
    // The same type as the body's `__type` (`com.amazonaws.sqs#QueueDoesNotExist`).
    let kind = match e.type_namespace {
        Some(ns) => HeaderValue::from_str(&format!("{ns}#{}", e.code)).ok(),
        None => Some(HeaderValue::from_static(e.code)),
    };
    if let Some(kind) = kind {
        h.insert("x-amzn-ErrorType", kind);
    }
    if let Some(legacy) = e.legacy_code {
        if let Ok(v) = HeaderValue::from_str(&format!("{legacy};{}", e.fault())) {
            h.insert("x-amzn-query-error", v);
        }
    }
    resp.extensions_mut().insert(e.log());
}

/// The Query protocol's error document (the request id, when not given, is filled in
/// by the middleware's header only).
pub fn query_error(e: &ApiError, xml_namespace: &str, request_id: Option<&RequestId>) -> Response {
    let code = e.legacy_code.unwrap_or(e.code);
    let id = request_id.map_or_else(|| RequestId::new().0, |r| r.0.clone());
    let xml = Element::new("ErrorResponse")
        .attr("xmlns", xml_namespace)
        .child(
            Element::new("Error")
                .child(Element::text("Type", e.fault()))
                .child(Element::text("Code", code))
                .child(Element::text("Message", e.message.clone()))
                .child(Element::new("Detail")),
        )
        .child(Element::text("RequestId", id))
        .to_document();
    let mut resp = with_content_type(e.status, xml, Protocol::Query.content_type());
    decorate(&mut resp, e);
    resp
}

/// The Query protocol's success document around an action's result elements.
pub fn query_response(action: &str, xml_namespace: &str, result: Element, request_id: &RequestId) -> Response {
    let xml = Element::new(format!("{action}Response"))
        .attr("xmlns", xml_namespace)
        .child(result)
        .child(Element::new("ResponseMetadata").child(Element::text("RequestId", request_id.0.clone())))
        .to_document();
    with_content_type(StatusCode::OK, xml, Protocol::Query.content_type())
}

/// Rest-json errors (Kinesis Video's routes), the default rendering.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self, Protocol::RestJson, None)
    }
}

/// A rest-json request body read into `T`, or a rest-json response from `T`.
pub struct RestJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for RestJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::serialization(format!("could not read the request body: {e}")))?;
        decode_json(&body).map(RestJson)
    }
}

impl<T: Serialize> IntoResponse for RestJson<T> {
    fn into_response(self) -> Response {
        encode(Protocol::RestJson, &self.0)
    }
}

/// An input or output with no members (`{}`).
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(resp: Response) -> (StatusCode, HeaderMap, Vec<u8>) {
        let (parts, body) = resp.into_parts();
        (parts.status, parts.headers, axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec())
    }

    #[tokio::test]
    async fn errors_in_each_protocol() {
        let e = ApiError::query_compatible(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.sqs",
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "no such queue",
        );
        let (status, h, b) = body(error_response(&e, Protocol::AwsJson10, None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(h["content-type"], "application/x-amz-json-1.0");
        assert_eq!(h["x-amzn-query-error"], "AWS.SimpleQueueService.NonExistentQueue;Sender");
        assert_eq!(h["x-amzn-errortype"], "com.amazonaws.sqs#QueueDoesNotExist", "the header matches __type");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
        let (_, _, b) =
            body(query_error(&e, "http://queue.amazonaws.com/doc/2012-11-05/", Some(&RequestId("r1".into())))).await;
        let xml = String::from_utf8(b).unwrap();
        assert!(
            xml.contains("<Code>AWS.SimpleQueueService.NonExistentQueue</Code>")
                && xml.contains("<RequestId>r1</RequestId>")
        );
        let (_, h, b) = body(ApiError::not_found("gone").into_response()).await;
        assert_eq!(h["x-amzn-ErrorType"], "ResourceNotFoundException");
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&b).unwrap()["Message"], "gone");
        let (_, h, b) = body(error_response(&ApiError::internal("disk on fire"), Protocol::Cbor, None)).await;
        assert_eq!(h["content-type"], CBOR_CONTENT_TYPE);
        let v = crate::wire::cbor::to_json(&b).unwrap();
        assert_eq!(v["message"], "internal error; see the server log", "the detail stays in the log");
    }

    #[test]
    fn bodies_decode_from_json_and_cbor() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct In {
            #[serde(rename = "A")]
            a: Option<u32>,
        }
        assert_eq!(decode_json::<In>(b"").unwrap(), In { a: None });
        assert_eq!(decode_json::<In>(b"{\"A\": 3}").unwrap(), In { a: Some(3) });
        assert_eq!(decode_json::<In>(b"{").unwrap_err().code, "SerializationException");
        let cbor = crate::wire::cbor::from_json(&serde_json::json!({"A": 4}));
        assert_eq!(body_value(Protocol::Cbor, &cbor).unwrap()["A"], 4);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
        assert!(is_query(&h));
        h.insert("x-amz-target", HeaderValue::from_static("AmazonSQS.ListQueues"));
        assert!(!is_query(&h));
    }
}
