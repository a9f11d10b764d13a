//! Firehose over AWS JSON 1.1 (`X-Amz-Target: Firehose_20150804.<Op>`): a thin typed
//! adapter over [`crate::delivery_streams::DeliveryStreamEngine`], split by resource:
//! [`streams`] (a stream's life and its destination), [`records`] (puts), [`tags`],
//! [`encryption`]; [`destinations`] holds the destination members as the wire carries
//! them and turns them into the engine's settings. Blobs are base64, timestamps epoch
//! seconds; errors are `{"__type", "message"}`, 400 except ServiceUnavailableException
//! (503, which botocore retries) and internal failures (500), mapped from the engine's
//! once, here.

mod destinations;
mod encryption;
mod records;
mod streams;
mod tags;

use axum::http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use super::protocol::Protocol;
use super::registry::{ForCaller, Operations};
use crate::credentials::Caller;
use crate::delivery_streams::{DeliveryStreamEngine, DeliveryStreamError, DeliveryStreamId};
use crate::scope::Scope;

pub use records::BatchRecords;

pub const TARGET_PREFIX: &str = "Firehose_20150804";

/// What the Firehose operations reach.
#[derive(Clone)]
pub struct FirehoseState {
    pub engine: DeliveryStreamEngine,
    pub scope: Scope,
}

impl ForCaller for FirehoseState {
    fn for_caller(&self, caller: &Caller) -> Self {
        FirehoseState { scope: caller.scope.clone(), ..self.clone() }
    }
}

/// The operation table registered under [`TARGET_PREFIX`].
pub fn operations(state: FirehoseState) -> Operations<FirehoseState> {
    Operations::new(state, Protocol::AwsJson11)
        .unknown(|op| ApiError::unknown_operation(&format!("{TARGET_PREFIX}.{op}")))
        .op("CreateDeliveryStream", streams::create_delivery_stream)
        .op("DescribeDeliveryStream", streams::describe_delivery_stream)
        .op("ListDeliveryStreams", streams::list_delivery_streams)
        .op("DeleteDeliveryStream", streams::delete_delivery_stream)
        .op("UpdateDestination", streams::update_destination)
        .op("PutRecord", records::put_record)
        .op("PutRecordBatch", records::put_record_batch)
        .op("TagDeliveryStream", tags::tag_delivery_stream)
        .op("UntagDeliveryStream", tags::untag_delivery_stream)
        .op("ListTagsForDeliveryStream", tags::list_tags_for_delivery_stream)
        .op("StartDeliveryStreamEncryption", encryption::start_encryption)
        .op("StopDeliveryStreamEncryption", encryption::stop_encryption)
}

/// The engine's errors as Firehose writes them, once.
impl From<DeliveryStreamError> for ApiError {
    fn from(e: DeliveryStreamError) -> Self {
        use DeliveryStreamError::*;
        let (status, code) = match &e {
            ResourceNotFound(_) => (StatusCode::BAD_REQUEST, "ResourceNotFoundException"),
            ResourceInUse(_) => (StatusCode::BAD_REQUEST, "ResourceInUseException"),
            InvalidArgument(_) => (StatusCode::BAD_REQUEST, "InvalidArgumentException"),
            Validation(_) => (StatusCode::BAD_REQUEST, "ValidationException"),
            LimitExceeded(_) => (StatusCode::BAD_REQUEST, "LimitExceededException"),
            ConcurrentModification(_) => (StatusCode::BAD_REQUEST, "ConcurrentModificationException"),
            ServiceUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException"),
            Storage(f) if f.unavailable => return ApiError::storage_unavailable(f),
            Storage(_) => {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", "Internal service failure.")
                    .with_detail(&e)
            }
            DiskFull(why) => return ApiError::disk_full(why),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// A `Limit` member: `default` when not given, else 1 to `max`.
fn page_limit(given: Option<u32>, default: u32, max: u32) -> Result<usize, ApiError> {
    let limit = given.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(invalid(format!("Limit must be between 1 and {max}.")))
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    DeliveryStreamError::InvalidArgument(msg.into()).into()
}

impl FirehoseState {
    fn id(&self, name: &str) -> DeliveryStreamId {
        DeliveryStreamId::new(&self.scope, name)
    }
}

/// The input of operations that name only the stream.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NameInput {
    delivery_stream_name: String,
}
