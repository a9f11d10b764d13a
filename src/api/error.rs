//! The wire error: an AWS error code, an HTTP status and a message, made from an engine
//! error once (each service's `From` impl) and rendered in the request's protocol by
//! [`super::protocol`]. Internal details (a storage failure's cause) ride along for the
//! log and never reach the client.

use axum::http::StatusCode;

use crate::wire::sigv4::SigV4Error;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// JSON protocol: the namespace before `#` in `__type` (`com.amazonaws.sqs`).
    pub type_namespace: Option<&'static str>,
    /// Services that were Query-compatible (SQS) also send `x-amzn-query-error:
    /// <legacy code>;<Sender|Receiver>`, which SDKs map back to the legacy code, and
    /// use the legacy code in Query XML errors.
    pub legacy_code: Option<&'static str>,
    /// What went wrong inside, for the server log only.
    pub detail: Option<String>,
}

/// Logged by the request middleware, once per failed request.
#[derive(Debug, Clone)]
pub struct ErrorLog {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), type_namespace: None, legacy_code: None, detail: None }
    }

    /// An error of a Query-compatible JSON service: `__type` is `namespace#code`, and
    /// the legacy code goes into `x-amzn-query-error` and Query XML.
    pub fn query_compatible(
        status: StatusCode,
        namespace: &'static str,
        code: &'static str,
        legacy_code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError { type_namespace: Some(namespace), legacy_code: Some(legacy_code), ..Self::new(status, code, message) }
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

    /// A failure inside the server: the client gets a generic message, the log the cause.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", "internal error; see the server log")
            .with_detail(detail)
    }

    /// The storage out of reach (the cluster database down or restarting, a node that
    /// lost its lease): AWS's common 503 `ServiceUnavailable`, retryable; nothing was
    /// changed.
    pub fn storage_unavailable(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the service's storage cannot be reached right now; nothing was changed; retry",
        )
        .with_detail(detail)
    }

    /// New data refused because the data directory's filesystem is (nearly) full or
    /// read-only: 503, the refusal's own words, retryable.
    pub fn disk_full(why: &crate::disk_space::DiskRefusal) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", why.to_string())
    }

    pub fn with_detail(mut self, detail: impl std::fmt::Display) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// `Sender` for client errors, `Receiver` for server errors.
    pub fn fault(&self) -> &'static str {
        if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        }
    }

    pub fn log(&self) -> ErrorLog {
        ErrorLog { code: self.code, message: self.message.clone(), detail: self.detail.clone() }
    }
}

impl From<SigV4Error> for ApiError {
    fn from(e: SigV4Error) -> Self {
        let code = match e {
            SigV4Error::Missing => "MissingAuthenticationTokenException",
            SigV4Error::Incomplete(_) => "IncompleteSignatureException",
            SigV4Error::UnknownAccessKey => "UnrecognizedClientException",
            SigV4Error::Mismatch
            | SigV4Error::Expired { .. }
            | SigV4Error::NotYetCurrent { .. }
            | SigV4Error::WrongScope(_) => "InvalidSignatureException",
        };
        ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
    }
}
