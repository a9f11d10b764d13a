//! The wire error: the one place where internal errors become AWS error codes and HTTP
//! statuses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::video_store::StoreError;
use crate::wire::sigv4::SigV4Error;

/// How a service's errors are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// rest-json (Kinesis Video): `x-amzn-ErrorType` header, `Message` in the body.
    RestJson,
    /// awsJson 1.0/1.1 (SQS, Kinesis, Firehose): `__type` in the body.
    Json,
    /// The Query protocol (SQS's older wire): an XML `ErrorResponse`.
    Query,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub protocol: Protocol,
    /// JSON protocol: the namespace before `#` in `__type` (`com.amazonaws.sqs`).
    pub type_namespace: Option<&'static str>,
    /// Services that were Query-compatible (SQS) also send `x-amzn-query-error:
    /// <legacy code>;<Sender|Receiver>`, which SDKs map back to the legacy code.
    pub query_error: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            protocol: Protocol::RestJson,
            type_namespace: None,
            query_error: None,
        }
    }

    /// An error of a Query-compatible JSON service: `__type` is `namespace#code`, and
    /// `x-amzn-query-error` carries the legacy code.
    pub fn query_compatible(
        status: StatusCode,
        namespace: &'static str,
        code: &'static str,
        legacy_code: &str,
        message: impl Into<String>,
    ) -> Self {
        let fault = if status.is_server_error() { "Receiver" } else { "Sender" };
        ApiError {
            protocol: Protocol::Json,
            type_namespace: Some(namespace),
            query_error: Some(format!("{legacy_code};{fault}")),
            ..Self::new(status, code, message)
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgumentException", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "SerializationException", message)
    }

    pub fn unknown_operation(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "UnknownOperationException", format!("Unknown operation {what}"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", message)
    }

    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match e {
            StoreError::StreamNotFound(_) | StoreError::FragmentNotFound(_) => ApiError::not_found(msg),
            StoreError::StreamExists(_) => ApiError::new(StatusCode::BAD_REQUEST, "ResourceInUseException", msg),
            StoreError::VersionMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "VersionMismatchException", msg)
            }
            StoreError::InvalidArgument(_) => ApiError::invalid_argument(msg),
            StoreError::TooManyTags { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "TagsPerResourceExceededLimitException", msg)
            }
            StoreError::Conflict(_) => ApiError::new(StatusCode::BAD_REQUEST, "ResourceInUseException", msg),
            StoreError::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", msg),
            StoreError::Io(_) | StoreError::Index(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %msg, "store failure");
                ApiError::internal("internal error; see the server log")
            }
        }
    }
}

impl From<SigV4Error> for ApiError {
    fn from(e: SigV4Error) -> Self {
        let code = match e {
            SigV4Error::Missing => "MissingAuthenticationTokenException",
            SigV4Error::Incomplete(_) => "IncompleteSignatureException",
            SigV4Error::UnknownAccessKey => "UnrecognizedClientException",
            SigV4Error::Mismatch | SigV4Error::Expired { .. } | SigV4Error::NotYetCurrent { .. } => {
                "InvalidSignatureException"
            }
        };
        ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.protocol == Protocol::Query {
            return super::sqs_query::error_response(&self);
        }
        let body = match self.protocol {
            Protocol::RestJson => {
                serde_json::json!({ "__type": self.code, "Message": self.message, "message": self.message })
            }
            Protocol::Json | Protocol::Query => {
                let kind = match self.type_namespace {
                    Some(ns) => format!("{ns}#{}", self.code),
                    None => self.code.to_string(),
                };
                serde_json::json!({ "__type": kind, "message": self.message })
            }
        };
        let content_type = match self.protocol {
            Protocol::RestJson => "application/json",
            Protocol::Json | Protocol::Query => "application/x-amz-json-1.1",
        };
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        if let Some(q) = self.query_error.as_deref().and_then(|q| HeaderValue::from_str(q).ok()) {
            h.insert("x-amzn-query-error", q);
        }
        resp
    }
}
