//! Record operations: PutRecord, PutRecords, GetShardIterator, GetRecords, and
//! SubscribeToShard, whose answer is an AWS event stream.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{
    check_shard_id, child_shards, encryption_name, invalid, ts, violation, ChildShardOut, KinesisState, StreamRef,
};
use crate::api::error::ApiError;
use crate::api::shapes::Timestamp;
use crate::data_streams::keys::{parse_hash_key, parse_sequence};
use crate::data_streams::{DataStreamError, NewRecord, Record, StartingPosition};
use crate::wire::eventstream;

fn decode_data(s: &str) -> Result<Vec<u8>, ApiError> {
    BASE64.decode(s).map_err(|_| ApiError::serialization("Data is not valid base64"))
}

fn hash_key(s: Option<&str>) -> Result<Option<u128>, ApiError> {
    s.map(|k| {
        parse_hash_key(k).ok_or_else(|| {
            invalid(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {k}"
            ))
        })
    })
    .transpose()
}

/// One record to put, as PutRecord and PutRecords entries carry it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordInput {
    data: String,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

impl RecordInput {
    fn into_record(self) -> Result<NewRecord, ApiError> {
        Ok(NewRecord {
            data: decode_data(&self.data)?,
            explicit_hash_key: hash_key(self.explicit_hash_key.as_deref())?,
            partition_key: self.partition_key.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordInput {
    #[serde(flatten)]
    s: StreamRef,
    #[serde(flatten)]
    record: RecordInput,
    sequence_number_for_ordering: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutput {
    shard_id: String,
    sequence_number: String,
    encryption_type: &'static str,
}

pub async fn put_record(s: KinesisState, i: PutRecordInput) -> Result<PutRecordOutput, ApiError> {
    let name = i.s.id(&s)?;
    if let Some(seq) = &i.sequence_number_for_ordering {
        if parse_sequence(seq).is_none() {
            return Err(invalid(format!("SequenceNumberForOrdering {seq} is not a sequence number of this stream.")));
        }
    }
    let record = i.record.into_record()?;
    if i.dry_run == Some(true) {
        s.engine.check_record(&name, &record)?;
        return Err(DataStreamError::DryRun.into());
    }
    let mut out = s.engine.put_records(&name, vec![record]).await?;
    let put = out.records.pop().ok_or_else(|| ApiError::internal("the writer returned no result"))??;
    Ok(PutRecordOutput {
        shard_id: put.shard_id,
        sequence_number: put.sequence_number,
        encryption_type: encryption_name(out.encrypted),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsInput {
    #[serde(flatten)]
    s: StreamRef,
    records: Vec<RecordInput>,
    dry_run: Option<bool>,
}

/// One entry of PutRecords' answer: where the record went, or why it did not.
#[derive(Serialize)]
#[serde(untagged)]
pub enum PutRecordsEntry {
    #[serde(rename_all = "PascalCase")]
    Put { shard_id: String, sequence_number: String },
    #[serde(rename_all = "PascalCase")]
    Failed { error_code: &'static str, error_message: String },
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOutput {
    failed_record_count: usize,
    records: Vec<PutRecordsEntry>,
    encryption_type: &'static str,
}

pub async fn put_records(s: KinesisState, i: PutRecordsInput) -> Result<PutRecordsOutput, ApiError> {
    let name = i.s.id(&s)?;
    let records = i.records.into_iter().map(RecordInput::into_record).collect::<Result<Vec<_>, _>>()?;
    if i.dry_run == Some(true) {
        for r in &records {
            s.engine.check_record(&name, r)?;
        }
        return Err(DataStreamError::DryRun.into());
    }
    let out = s.engine.put_records(&name, records).await?;
    let failed_record_count = out.records.iter().filter(|r| r.is_err()).count();
    let records = out
        .records
        .into_iter()
        .map(|r| match r {
            Ok(p) => PutRecordsEntry::Put { shard_id: p.shard_id, sequence_number: p.sequence_number },
            Err(err) => {
                let code = ApiError::from(err.clone()).code;
                let error_code = if code == "InternalFailureException" { "InternalFailure" } else { code };
                PutRecordsEntry::Failed { error_code, error_message: err.to_string() }
            }
        })
        .collect();
    Ok(PutRecordsOutput { failed_record_count, records, encryption_type: encryption_name(out.encrypted) })
}

fn starting_position(
    kind: &str,
    sequence: Option<String>,
    timestamp: Option<Timestamp>,
) -> Result<StartingPosition, ApiError> {
    let need_seq =
        || sequence.clone().ok_or_else(|| invalid(format!("StartingSequenceNumber is required for {kind}.")));
    Ok(match kind {
        "TRIM_HORIZON" => StartingPosition::TrimHorizon,
        "LATEST" => StartingPosition::Latest,
        "AT_SEQUENCE_NUMBER" => StartingPosition::AtSequence(need_seq()?),
        "AFTER_SEQUENCE_NUMBER" => StartingPosition::AfterSequence(need_seq()?),
        "AT_TIMESTAMP" => StartingPosition::AtTimestamp(
            timestamp.ok_or_else(|| invalid("Timestamp is required for AT_TIMESTAMP."))?.0 / 1000,
        ),
        other => return Err(violation(
            other,
            "shardIteratorType",
            "satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
        )),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorInput {
    #[serde(flatten)]
    s: StreamRef,
    shard_id: String,
    shard_iterator_type: String,
    starting_sequence_number: Option<String>,
    timestamp: Option<Timestamp>,
    dry_run: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorOutput {
    shard_iterator: String,
}

pub async fn get_shard_iterator(s: KinesisState, i: GetShardIteratorInput) -> Result<GetShardIteratorOutput, ApiError> {
    check_shard_id(&i.shard_id, "shardId")?;
    let name = i.s.id(&s)?;
    let start = starting_position(&i.shard_iterator_type, i.starting_sequence_number, i.timestamp)?;
    let shard_iterator = s.engine.get_shard_iterator(&name, &i.shard_id, start)?;
    if i.dry_run == Some(true) {
        return Err(DataStreamError::DryRun.into());
    }
    Ok(GetShardIteratorOutput { shard_iterator })
}

/// A record as GetRecords and SubscribeToShard events carry it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordOut {
    sequence_number: String,
    approximate_arrival_timestamp: f64,
    data: String,
    /// Absent for a record put without one (an `AUTO` stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    partition_key: Option<String>,
    encryption_type: &'static str,
}

impl From<&Record> for RecordOut {
    fn from(r: &Record) -> Self {
        RecordOut {
            sequence_number: r.sequence_number.clone(),
            approximate_arrival_timestamp: ts(r.arrival_ms),
            data: BASE64.encode(&r.data),
            partition_key: (!r.partition_key.is_empty()).then(|| r.partition_key.clone()),
            encryption_type: "NONE",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsInput {
    shard_iterator: String,
    limit: Option<u32>,
    dry_run: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsOutput {
    records: Vec<RecordOut>,
    millis_behind_latest: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_shard_iterator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    child_shards: Option<Vec<ChildShardOut>>,
}

pub async fn get_records(s: KinesisState, i: GetRecordsInput) -> Result<GetRecordsOutput, ApiError> {
    if i.dry_run == Some(true) {
        return Err(DataStreamError::DryRun.into());
    }
    let out = s.engine.get_records(&i.shard_iterator, i.limit).await?;
    Ok(GetRecordsOutput {
        records: out.records.iter().map(RecordOut::from).collect(),
        millis_behind_latest: out.millis_behind_latest,
        next_shard_iterator: out.next_iterator,
        child_shards: child_shards(&out.child_shards),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartingPositionInput {
    #[serde(rename = "Type")]
    kind: String,
    sequence_number: Option<String>,
    timestamp: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscribeToShardInput {
    #[serde(rename = "ConsumerARN")]
    consumer_arn: String,
    shard_id: String,
    starting_position: StartingPositionInput,
    dry_run: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SubscribeToShardEvent {
    records: Vec<RecordOut>,
    continuation_sequence_number: String,
    millis_behind_latest: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    child_shards: Option<Vec<ChildShardOut>>,
}

/// SubscribeToShard: an event stream of `initial-response`, then SubscribeToShardEvents
/// until the subscription ends (5 minutes, a takeover, or the shard's end).
pub async fn subscribe_to_shard(s: KinesisState, i: SubscribeToShardInput) -> Result<Response, ApiError> {
    let sp = i.starting_position;
    let start = starting_position(&sp.kind, sp.sequence_number, sp.timestamp)?;
    let sub = s.engine.subscribe(&i.consumer_arn, &i.shard_id, start)?;
    if i.dry_run == Some(true) {
        return Err(DataStreamError::DryRun.into());
    }
    let first = Bytes::from(eventstream::event("initial-response", b"{}"));
    let events = futures_util::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        match sub.next_event().await? {
            Ok(ev) => {
                let event = SubscribeToShardEvent {
                    records: ev.records.iter().map(RecordOut::from).collect(),
                    continuation_sequence_number: ev.continuation_sequence_number,
                    millis_behind_latest: ev.millis_behind_latest,
                    child_shards: child_shards(&ev.child_shards),
                };
                let payload = serde_json::to_vec(&event).unwrap_or_default();
                let frame = eventstream::event("SubscribeToShardEvent", &payload);
                Some((Ok::<_, std::io::Error>(Bytes::from(frame)), Some(sub)))
            }
            Err(err) => {
                let w = ApiError::from(err);
                Some((Ok(Bytes::from(eventstream::exception(w.code, &w.message))), None))
            }
        }
    });
    let stream = futures_util::stream::iter([Ok(first)]).chain(events);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
    Ok(resp)
}
