//! Kinesis Data Streams over AWS JSON 1.1 (`X-Amz-Target: Kinesis_20131202.<Op>`) and
//! CBOR: a thin typed adapter over [`crate::data_streams::DataStreamEngine`], one
//! function per operation, grouped by resource:
//!
//! - [`streams`]: create, delete, describe, list, retention, encryption, monitoring,
//!   mode, record size, limits;
//! - [`shards`]: ListShards, SplitShard, MergeShards, UpdateShardCount;
//! - [`records`]: PutRecord(s), GetShardIterator, GetRecords, SubscribeToShard (an
//!   event stream, [`crate::wire::eventstream`]);
//! - [`consumers`]: enhanced fan-out consumers;
//! - [`resources`]: tags and resource policies of streams, consumers and queues;
//! - [`channels`]: channels (a stream delivered to a bucket), over
//!   [`crate::stream_channels::ChannelEngine`];
//! - [`queues`]: stream queues (per-record delivery, dead letters), over
//!   [`crate::stream_queues::StreamQueueEngine`].
//!
//! Blobs are base64, timestamps epoch seconds. Errors are `{"__type": Code, "message"}`,
//! 400 except InternalFailureException (500), mapped from the engine's once, here.

pub mod channels;
pub mod consumers;
pub mod queues;
pub mod records;
pub mod resources;
pub mod shards;
pub mod streams;

use axum::http::StatusCode;
use serde::Serialize;

use super::error::ApiError;
use super::page_token::{PageTokenError, PageTokens};
use super::protocol::Protocol;
use super::registry::{ForCaller, Operations};
pub use super::shapes::{StreamRef, Tag};
use crate::credentials::Caller;
use crate::data_streams::keys::{format_sequence, shard_id};
use crate::data_streams::shard_map::ShardInfo;
use crate::data_streams::{ChildShard, DataStreamEngine, DataStreamError, DataStreamId, LIST_TOKEN_TTL_MS};
use crate::scope::Scope;
use crate::stream_queues::StreamQueueEngine;

pub const TARGET_PREFIX: &str = "Kinesis_20131202";

/// What the Kinesis operations reach.
#[derive(Clone)]
pub struct KinesisState {
    pub engine: DataStreamEngine,
    /// Stream queues, which read `engine`'s streams.
    pub stream_queues: StreamQueueEngine,
    /// Channels, which deliver `engine`'s streams to buckets.
    pub channels: crate::stream_channels::ChannelEngine,
    pub pages: PageTokens,
    /// The caller's account and region (the server's default until a call sets it).
    pub scope: Scope,
}

impl ForCaller for KinesisState {
    fn for_caller(&self, caller: &Caller) -> Self {
        KinesisState { scope: caller.scope.clone(), ..self.clone() }
    }
}

/// The operation table registered under [`TARGET_PREFIX`].
pub fn operations(state: KinesisState) -> Operations<KinesisState> {
    Operations::new(state, Protocol::AwsJson11)
        .unknown(|op| {
            ApiError::unknown_operation(&format!("{TARGET_PREFIX}.{op} (channels are not supported by Kinescope yet)"))
        })
        .op("CreateStream", streams::create_stream)
        .op("DeleteStream", streams::delete_stream)
        .op("DescribeStream", streams::describe_stream)
        .op("DescribeStreamSummary", streams::describe_stream_summary)
        .op("ListStreams", streams::list_streams)
        .op("IncreaseStreamRetentionPeriod", streams::increase_retention)
        .op("DecreaseStreamRetentionPeriod", streams::decrease_retention)
        .op("StartStreamEncryption", streams::start_encryption)
        .op("StopStreamEncryption", streams::stop_encryption)
        .op("EnableEnhancedMonitoring", streams::enable_monitoring)
        .op("DisableEnhancedMonitoring", streams::disable_monitoring)
        .op("DescribeLimits", streams::describe_limits)
        .op("UpdateStreamMode", streams::update_stream_mode)
        .op("UpdateMaxRecordSize", streams::update_max_record_size)
        .op("UpdateStreamRecordDistributionStrategy", streams::update_record_distribution)
        .op("UpdateStreamWarmThroughput", streams::update_warm_throughput)
        .op("DescribeAccountSettings", streams::describe_account_settings)
        .op("UpdateAccountSettings", streams::update_account_settings)
        .op("CreateChannel", channels::create_channel)
        .op("DescribeChannel", channels::describe_channel)
        .op("UpdateChannel", channels::update_channel)
        .op("DeleteChannel", channels::delete_channel)
        .op("ListChannels", channels::list_channels)
        .op("CreateQueue", queues::create_queue)
        .op("DescribeQueue", queues::describe_queue)
        .op("UpdateQueue", queues::update_queue)
        .op("DeleteQueue", queues::delete_queue)
        .op("ListQueues", queues::list_queues)
        .op("ReceiveQueueRecords", queues::receive_records)
        .op("AcknowledgeQueueRecords", queues::acknowledge_records)
        .op("UpdateQueueRecordsVisibility", queues::update_records_visibility)
        .op("ReceiveDeadLetterQueueRecords", queues::receive_dead_letters)
        .op("AcknowledgeDeadLetterQueueRecords", queues::acknowledge_dead_letters)
        .op("UpdateDeadLetterQueueRecordsVisibility", queues::update_dead_letters_visibility)
        .op("RestoreDeadLetterQueueRecords", queues::restore_dead_letters)
        .op("ListShards", shards::list_shards)
        .op("SplitShard", shards::split_shard)
        .op("MergeShards", shards::merge_shards)
        .op("UpdateShardCount", shards::update_shard_count)
        .op("PutRecord", records::put_record)
        .op("PutRecords", records::put_records)
        .op("GetShardIterator", records::get_shard_iterator)
        .op("GetRecords", records::get_records)
        .streaming_op("SubscribeToShard", records::subscribe_to_shard)
        .op("RegisterStreamConsumer", consumers::register)
        .op("DescribeStreamConsumer", consumers::describe)
        .op("DeregisterStreamConsumer", consumers::deregister)
        .op("ListStreamConsumers", consumers::list)
        .op("AddTagsToStream", resources::add_tags_to_stream)
        .op("RemoveTagsFromStream", resources::remove_tags_from_stream)
        .op("ListTagsForStream", resources::list_tags_for_stream)
        .op("TagResource", resources::tag_resource)
        .op("UntagResource", resources::untag_resource)
        .op("ListTagsForResource", resources::list_tags_for_resource)
        .op("PutResourcePolicy", resources::put_resource_policy)
        .op("GetResourcePolicy", resources::get_resource_policy)
        .op("DeleteResourcePolicy", resources::delete_resource_policy)
}

/// The engine's errors as Kinesis writes them, once.
impl From<DataStreamError> for ApiError {
    fn from(e: DataStreamError) -> Self {
        use DataStreamError::*;
        let code = match &e {
            ResourceNotFound(_) => "ResourceNotFoundException",
            ResourceInUse(_) => "ResourceInUseException",
            InvalidArgument(_) => "InvalidArgumentException",
            Validation(_) => "ValidationException",
            LimitExceeded(_) => "LimitExceededException",
            ExpiredIterator(_) => "ExpiredIteratorException",
            ExpiredNextToken(_) => "ExpiredNextTokenException",
            ProvisionedThroughputExceeded(_) => "ProvisionedThroughputExceededException",
            AccessDenied(_) => "AccessDeniedException",
            DryRun => "DryRunOperationException",
            Storage(f) if f.unavailable => return ApiError::storage_unavailable(f),
            Storage(_) => "InternalFailureException",
            DiskFull(why) => return ApiError::disk_full(why),
        };
        if matches!(e, Storage(_)) {
            // The cause is for the log; the client learns only that it failed inside.
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, "Internal service failure.").with_detail(&e)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
        }
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    DataStreamError::InvalidArgument(msg.into()).into()
}

/// A member that breaks its model constraint: AWS's ValidationException text,
/// `1 validation error detected: Value 'V' at 'member' failed to satisfy constraint:
/// Member must …`.
fn violation(value: impl std::fmt::Display, member: &str, constraint: &str) -> ApiError {
    DataStreamError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must {constraint}"
    ))
    .into()
}

/// A shard id as the model allows it (`[a-zA-Z0-9_.-]+`, 1 to 128 characters).
fn check_shard_id(value: &str, member: &str) -> Result<(), ApiError> {
    let ok =
        (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(violation(value, member, "satisfy regular expression pattern: [a-zA-Z0-9_.-]+"))
    }
}
impl StreamRef {
    /// The stream in the caller's scope; a StreamARN wins, and must agree with a
    /// StreamName.
    pub fn id(&self, s: &KinesisState) -> Result<DataStreamId, ApiError> {
        match (&self.stream_name, &self.stream_arn) {
            (_, Some(arn)) => {
                let from_arn = s.stream_by_arn(arn)?;
                if self.stream_name.as_ref().is_some_and(|n| *n != from_arn.name) {
                    return Err(invalid("StreamName and StreamARN name different streams."));
                }
                Ok(from_arn)
            }
            (Some(name), None) => Ok(DataStreamId::new(&s.scope, name)),
            (None, None) => Err(invalid("Either StreamName or StreamARN must be provided.")),
        }
    }
}

impl KinesisState {
    /// The stream an ARN names, if it is in the caller's account and region (another
    /// account's stream does not exist for the caller).
    pub fn stream_by_arn(&self, arn: &str) -> Result<DataStreamId, ApiError> {
        let id = DataStreamId::from_arn(arn)?;
        if id.scope != self.scope {
            return Err(self.stream_not_found(arn).into());
        }
        Ok(id)
    }

    /// A stream named by ARN that the caller has not, in Kinesis's words.
    pub fn stream_not_found(&self, arn: &str) -> DataStreamError {
        DataStreamError::ResourceNotFound(format!("Stream {arn} under account {} not found.", self.scope.account))
    }

    /// The stream and consumer a consumer ARN names, in the caller's scope.
    pub fn consumer_by_arn(&self, arn: &str) -> Result<(DataStreamId, String), ApiError> {
        let not_found =
            || DataStreamError::ResourceNotFound(format!("Consumer {arn}, account {} not found.", self.scope.account));
        let (stream, consumer) = self.engine.resolve_consumer_arn(arn).map_err(|e| match e {
            DataStreamError::ResourceNotFound(_) => not_found(),
            e => e,
        })?;
        if stream.scope != self.scope {
            return Err(not_found().into());
        }
        Ok((stream, consumer))
    }
}

/// An epoch-millisecond time as Kinesis writes timestamps: seconds, ms precision.
fn ts(ms: i64) -> f64 {
    super::shapes::epoch_seconds(ms * 1000)
}

/// A `Limit`/`MaxResults` member: out of range is AWS's validation message.
fn check_limit(v: Option<u32>, max: u32, name: &str) -> Result<Option<u32>, ApiError> {
    match v {
        Some(n) if n < 1 || n > max => Err(violation(n, name, &format!("have value between 1 and {max}"))),
        other => Ok(other),
    }
}

impl KinesisState {
    /// A NextToken for `op`, continuing after `cursor`.
    fn page_token<T: Serialize>(&self, op: &str, cursor: &T) -> String {
        self.pages.issue(op, cursor, self.engine.now_ms())
    }

    /// The cursor of a NextToken; `expires` for the operations whose tokens live 300 s.
    fn open_page<T: serde::de::DeserializeOwned>(&self, op: &str, token: &str, expires: bool) -> Result<T, ApiError> {
        let ttl = expires.then_some(LIST_TOKEN_TTL_MS);
        self.pages.open(op, token, self.engine.now_ms(), ttl).map_err(|e| match e {
            PageTokenError::Invalid => {
                invalid(format!("Invalid NextToken: {}", token.chars().take(64).collect::<String>()))
            }
            PageTokenError::Expired => {
                DataStreamError::ExpiredNextToken("The NextToken has expired; it is valid for 300 seconds.".into())
                    .into()
            }
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HashKeyRange {
    pub starting_hash_key: String,
    pub ending_hash_key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SequenceNumberRange {
    pub starting_sequence_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ending_sequence_number: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Shard {
    pub shard_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_shard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjacent_parent_shard_id: Option<String>,
    pub hash_key_range: HashKeyRange,
    pub sequence_number_range: SequenceNumberRange,
}

impl From<&ShardInfo> for Shard {
    fn from(s: &ShardInfo) -> Self {
        Shard {
            shard_id: s.id(),
            parent_shard_id: s.parent.map(shard_id),
            adjacent_parent_shard_id: s.adjacent_parent.map(shard_id),
            hash_key_range: HashKeyRange {
                starting_hash_key: s.start_key.to_string(),
                ending_hash_key: s.end_key.to_string(),
            },
            sequence_number_range: SequenceNumberRange {
                starting_sequence_number: format_sequence(s.start_seq),
                ending_sequence_number: s.end_seq.map(format_sequence),
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChildShardOut {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub hash_key_range: HashKeyRange,
}

fn child_shards(children: &[ChildShard]) -> Option<Vec<ChildShardOut>> {
    (!children.is_empty()).then(|| {
        children
            .iter()
            .map(|c| ChildShardOut {
                shard_id: c.shard_id.clone(),
                parent_shards: c.parent_shards.clone(),
                hash_key_range: HashKeyRange {
                    starting_hash_key: c.hash_key_range.0.to_string(),
                    ending_hash_key: c.hash_key_range.1.to_string(),
                },
            })
            .collect()
    })
}

fn encryption_name(encrypted: bool) -> &'static str {
    if encrypted {
        "KMS"
    } else {
        "NONE"
    }
}

fn tag_list<'a>(tags: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<Tag> {
    tags.into_iter().map(|(k, v)| Tag { key: k.clone(), value: v.clone() }).collect()
}
