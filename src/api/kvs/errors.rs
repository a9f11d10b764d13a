//! The video side's engine errors (fragment store, playback, camera sources, signalling,
//! WebRTC) as Kinesis Video writes them: one `From` per engine error, so handlers use `?`.

use axum::http::StatusCode;

use super::super::error::ApiError;
use crate::data_streams::DataStreamError;
use crate::ingest::rtsp_pull::SourceError;
use crate::playback::clip::ClipError;
use crate::playback::frame_metadata::MetadataError;
use crate::playback::selection::SelectError;
use crate::signaling::hub::HubError;
use crate::signaling::SignalingError;
use crate::video_store::StoreError;
use crate::webrtc::peer::PeerError;
use crate::webrtc::storage_session::StorageError;
use crate::webrtc::whep::WhepError;
use crate::webrtc::whip::WhipError;
use crate::wire::kvs_signaling::Refusal;

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
            StoreError::Storage(f) if f.unavailable => ApiError::storage_unavailable(f),
            StoreError::Io(_) | StoreError::Storage(_) | StoreError::Corrupt(_) => ApiError::internal(msg),
        }
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Invalid(m) => ApiError::invalid_argument(m),
            SourceError::NoStream(_) | SourceError::NoSource(_) => ApiError::not_found(e.to_string()),
            SourceError::Storage(_) => ApiError::internal(e),
        }
    }
}

impl From<ClipError> for ApiError {
    fn from(e: ClipError) -> Self {
        match e {
            ClipError::NoFragments => ApiError::not_found(e.to_string()),
            ClipError::MissingInit(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "MissingCodecPrivateDataException", e.to_string())
            }
            ClipError::InvalidMedia { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "InvalidMediaFrameException", e.to_string())
            }
            ClipError::Store(e) => e.into(),
        }
    }
}

impl From<SelectError> for ApiError {
    fn from(e: SelectError) -> Self {
        match e {
            SelectError::NoFragments(m) => ApiError::not_found(m),
            SelectError::Store(e) => e.into(),
        }
    }
}

/// Reading a stream's frame metadata from its data stream, as Kinesis Video would say it:
/// the data stream's own refusals keep their 4xx, a failure inside is a 500.
impl From<MetadataError> for ApiError {
    fn from(e: MetadataError) -> Self {
        use DataStreamError as D;
        let e = match e {
            MetadataError::Store(e) => return e.into(),
            MetadataError::DataStream(e) => e,
        };
        let msg = format!("the stream's frame-metadata data stream: {e}");
        match e {
            D::ResourceNotFound(_) => ApiError::not_found(msg),
            D::ResourceInUse(_) => ApiError::new(StatusCode::BAD_REQUEST, "ResourceInUseException", msg),
            D::InvalidArgument(_) | D::Validation(_) | D::ExpiredIterator(_) | D::ExpiredNextToken(_) | D::DryRun => {
                ApiError::invalid_argument(msg)
            }
            D::LimitExceeded(_) | D::ProvisionedThroughputExceeded(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", msg)
            }
            D::AccessDenied(_) => ApiError::new(StatusCode::UNAUTHORIZED, "AccessDeniedException", msg),
            D::DiskFull(why) => ApiError::disk_full(&why),
            D::Storage(f) if f.unavailable => ApiError::storage_unavailable(f),
            D::Storage(_) => ApiError::internal(msg),
        }
    }
}

/// A signalling message refused, as an HTTP error (SendAlexaOfferToMaster): the status
/// and type the WebSocket's status response would carry.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = StatusCode::from_u16(r.status_code).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, r.error_type, r.description)
    }
}

impl From<SignalingError> for ApiError {
    fn from(e: SignalingError) -> Self {
        use SignalingError as E;
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
            E::Storage(f) if f.unavailable => ApiError::storage_unavailable(f),
            E::Storage(f) => ApiError::internal(f),
        }
    }
}

/// "Too many" of anything WebRTC: AWS's limit error, 503 when it is the server's capacity.
fn webrtc_capacity(msg: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ClientLimitExceededException", msg)
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        use HubError as E;
        let msg = e.to_string();
        match e {
            E::TooManyViewers(_) => ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", msg),
            E::NoViewer(_) => ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", msg),
        }
    }
}

impl From<PeerError> for ApiError {
    fn from(e: PeerError) -> Self {
        use PeerError as E;
        let msg = e.to_string();
        match e {
            E::BadOffer(_) => ApiError::invalid_argument(msg),
            E::NoPort { .. } => webrtc_capacity(msg),
            E::WebRtc(_) => ApiError::internal(msg),
        }
    }
}

impl From<WhipError> for ApiError {
    fn from(e: WhipError) -> Self {
        use WhipError as E;
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

impl From<WhepError> for ApiError {
    fn from(e: WhepError) -> Self {
        use WhepError as E;
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

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        use StorageError as E;
        let msg = e.to_string();
        match e {
            // AWS answers JoinStorageSession's limits with a 400.
            E::TooMany(_) => ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", msg),
            E::Peer(PeerError::NoPort { .. }) => {
                ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", msg)
            }
            E::Hub(e) => ApiError::from(e),
            E::Store(e) => ApiError::from(e),
            E::NothingToRecord(..) => ApiError::invalid_argument(msg),
            E::Peer(_) | E::Signaling(_) | E::NoAnswer(_) | E::Record(_) | E::Audio(_) => ApiError::internal(msg),
        }
    }
}
