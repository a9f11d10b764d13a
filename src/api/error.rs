//! The wire error: an AWS error code, an HTTP status and a message, made from an engine
//! error once (each service's `From` impl) and rendered in the request's protocol by
//! [`super::protocol`]. Internal details (a storage failure's cause) ride along for the
//! log and never reach the client.

use axum::http::StatusCode;

use crate::video_store::StoreError;
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
            StoreError::DiskFull(why) => ApiError::disk_full(&why),
            StoreError::Io(e)
                if matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::ReadOnlyFilesystem) =>
            {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "the data directory's filesystem is full or read-only",
                )
                .with_detail(e)
            }
            StoreError::Io(_) | StoreError::Storage(_) | StoreError::Corrupt(_) => ApiError::internal(msg),
        }
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

impl From<crate::signaling::SignalingError> for ApiError {
    fn from(e: crate::signaling::SignalingError) -> Self {
        use crate::signaling::SignalingError as E;
        let msg = e.to_string();
        match e {
            E::ChannelNotFound(_) => ApiError::not_found(msg),
            E::ChannelExists(_) => ApiError::new(StatusCode::BAD_REQUEST, "ResourceInUseException", msg),
            E::VersionMismatch { .. } => ApiError::new(StatusCode::BAD_REQUEST, "VersionMismatchException", msg),
            E::InvalidArgument(_) => ApiError::invalid_argument(msg),
            E::TooManyTags { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "TagsPerResourceExceededLimitException", msg)
            }
            E::TooManyChannels(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "AccountChannelLimitExceededException", msg)
            }
            E::Storage(f) => ApiError::internal(f),
        }
    }
}

/// "Too many" of anything WebRTC: AWS's limit error, 503 when it is the server's capacity.
fn webrtc_capacity(msg: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ClientLimitExceededException", msg)
}

impl From<crate::signaling::hub::HubError> for ApiError {
    fn from(e: crate::signaling::hub::HubError) -> Self {
        use crate::signaling::hub::HubError as E;
        let msg = e.to_string();
        match e {
            E::TooManyViewers(_) => ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", msg),
            E::NoViewer(_) => ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", msg),
        }
    }
}

impl From<crate::webrtc::peer::PeerError> for ApiError {
    fn from(e: crate::webrtc::peer::PeerError) -> Self {
        use crate::webrtc::peer::PeerError as E;
        let msg = e.to_string();
        match e {
            E::BadOffer(_) => ApiError::invalid_argument(msg),
            E::NoPort { .. } => webrtc_capacity(msg),
            E::WebRtc(_) => ApiError::internal(msg),
        }
    }
}

impl From<crate::webrtc::whip::WhipError> for ApiError {
    fn from(e: crate::webrtc::whip::WhipError) -> Self {
        use crate::webrtc::whip::WhipError as E;
        let msg = e.to_string();
        match e {
            E::BadOffer(_) => ApiError::invalid_argument(msg),
            E::TooMany(_) => webrtc_capacity(msg),
            E::Store(e) => ApiError::from(e),
            E::Peer(e) => ApiError::from(e),
            E::NoSession => ApiError::not_found(msg),
            E::Record(_) => ApiError::internal(msg),
        }
    }
}

impl From<crate::webrtc::whep::WhepError> for ApiError {
    fn from(e: crate::webrtc::whep::WhepError) -> Self {
        use crate::webrtc::whep::WhepError as E;
        let msg = e.to_string();
        match e {
            E::BadOffer(_) | E::NoVideo => ApiError::invalid_argument(msg),
            E::TooMany(_) => webrtc_capacity(msg),
            E::Store(e) => ApiError::from(e),
            E::Peer(e) => ApiError::from(e),
            E::NoSession => ApiError::not_found(msg),
        }
    }
}

impl From<crate::webrtc::storage_session::StorageError> for ApiError {
    fn from(e: crate::webrtc::storage_session::StorageError) -> Self {
        use crate::webrtc::storage_session::StorageError as E;
        let msg = e.to_string();
        match e {
            // AWS answers JoinStorageSession's limits with a 400.
            E::TooMany(_) => ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", msg),
            E::Peer(crate::webrtc::peer::PeerError::NoPort { .. }) => {
                ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", msg)
            }
            E::Hub(e) => ApiError::from(e),
            E::Store(e) => ApiError::from(e),
            E::NothingToRecord(..) => ApiError::invalid_argument(msg),
            E::Peer(_) | E::Signaling(_) | E::NoAnswer(_) | E::Record(_) | E::Audio(_) => ApiError::internal(msg),
        }
    }
}
