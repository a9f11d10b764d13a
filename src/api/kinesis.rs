//! Kinesis Data Streams over AWS JSON 1.1 (`X-Amz-Target: Kinesis_20131202.<Op>`): a
//! thin adapter over [`crate::data_streams::DataStreamEngine`]. Blobs are base64,
//! timestamps epoch seconds; SubscribeToShard answers with an event stream
//! ([`crate::wire::eventstream`]). Errors are `{"__type": Code, "message": …}`, 400
//! except InternalFailureException (500).

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::dispatch::{JsonFuture, JsonService};
use super::error::{ApiError, Protocol};
use super::json::{epoch_seconds, parse, Timestamp};
use crate::data_streams::keys::{format_sequence, parse_hash_key, parse_shard_id, shard_id};
use crate::data_streams::meta_store::StreamMode;
use crate::data_streams::shard_map::ShardInfo;
use crate::data_streams::{
    ChildShard, DataStreamEngine, DataStreamError, NewRecord, Record, StartingPosition, StreamView, LIST_TOKEN_TTL_MS,
};
use crate::wire::eventstream;

pub const TARGET_PREFIX: &str = "Kinesis_20131202";
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
pub const CBOR_CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";
const ON_DEMAND_STREAM_LIMIT: u32 = 50;

/// Maps an engine error to the Kinesis wire error, once.
pub fn wire_error(e: DataStreamError) -> ApiError {
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
        DryRun => "DryRunOperationException",
        Storage(_) => "InternalFailureException",
    };
    let status = if matches!(e, Storage(_)) {
        tracing::error!(error = %e, "data stream engine failure");
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, code, e.to_string()).with_protocol(Protocol::Json)
}

fn invalid(msg: impl Into<String>) -> ApiError {
    wire_error(DataStreamError::InvalidArgument(msg.into()))
}

/// The Kinesis JSON service, registered under `Kinesis_20131202`.
pub struct KinesisService {
    pub engine: DataStreamEngine,
}

impl JsonService for KinesisService {
    fn call(&self, operation: &str, body: Bytes) -> JsonFuture {
        self.call_with(operation, &HeaderMap::new(), body)
    }

    fn call_with(&self, operation: &str, headers: &HeaderMap, body: Bytes) -> JsonFuture {
        let engine = self.engine.clone();
        let op = operation.to_string();
        let cbor = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(CBOR_CONTENT_TYPE));
        Box::pin(async move {
            let body = if cbor {
                let v = crate::wire::cbor::to_json(&body).map_err(|e| {
                    ApiError::serialization(format!("could not parse the CBOR request body: {e}"))
                        .with_protocol(Protocol::Json)
                })?;
                Bytes::from(v.to_string())
            } else {
                body
            };
            if op == "SubscribeToShard" {
                return subscribe_to_shard(&engine, &body).await;
            }
            let out = handle(&engine, &op, &body).await?;
            Ok(if cbor { cbor_ok(&out) } else { ok(&out) })
        })
    }
}

fn ok(v: &Value) -> Response {
    let mut resp = (StatusCode::OK, v.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    resp
}

fn cbor_ok(v: &Value) -> Response {
    let mut resp = (StatusCode::OK, crate::wire::cbor::from_json(v)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CBOR_CONTENT_TYPE));
    resp
}

/// The members most operations share: which stream.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

impl StreamRef {
    fn name(&self, engine: &DataStreamEngine) -> Result<String, ApiError> {
        match (&self.stream_name, &self.stream_arn) {
            (_, Some(arn)) => {
                let from_arn = engine.name_from_arn(arn).map_err(wire_error)?;
                if self.stream_name.as_ref().is_some_and(|n| *n != from_arn) {
                    return Err(invalid("StreamName and StreamARN name different streams."));
                }
                Ok(from_arn)
            }
            (Some(name), None) => Ok(name.clone()),
            (None, None) => Err(invalid("Either StreamName or StreamARN must be provided.")),
        }
    }
}

fn ts(ms: i64) -> Value {
    epoch_seconds(ms * 1000)
}

fn shard_json(s: &ShardInfo) -> Value {
    let mut v = json!({
        "ShardId": s.id(),
        "HashKeyRange": {"StartingHashKey": s.start_key.to_string(), "EndingHashKey": s.end_key.to_string()},
        "SequenceNumberRange": {"StartingSequenceNumber": format_sequence(s.start_seq)},
    });
    if let Some(p) = s.parent {
        v["ParentShardId"] = json!(shard_id(p));
    }
    if let Some(p) = s.adjacent_parent {
        v["AdjacentParentShardId"] = json!(shard_id(p));
    }
    if let Some(e) = s.end_seq {
        v["SequenceNumberRange"]["EndingSequenceNumber"] = json!(format_sequence(e));
    }
    v
}

fn child_shards_json(children: &[ChildShard]) -> Value {
    Value::Array(
        children
            .iter()
            .map(|c| {
                json!({
                    "ShardId": c.shard_id,
                    "ParentShards": c.parent_shards,
                    "HashKeyRange": {
                        "StartingHashKey": c.hash_key_range.0.to_string(),
                        "EndingHashKey": c.hash_key_range.1.to_string(),
                    },
                })
            })
            .collect(),
    )
}

fn encryption_name(encrypted: bool) -> &'static str {
    if encrypted {
        "KMS"
    } else {
        "NONE"
    }
}

/// The members DescribeStream and DescribeStreamSummary share.
fn description_json(v: &StreamView) -> Value {
    let mut d = summary_json(v);
    d["RetentionPeriodHours"] = json!(v.meta.retention_hours);
    d["EnhancedMonitoring"] = enhanced_json(v);
    d["EncryptionType"] = json!(encryption_name(v.meta.encryption_key.is_some()));
    if let Some(k) = &v.meta.encryption_key {
        d["KeyId"] = json!(k);
    }
    d
}

fn record_json(r: &Record, encryption: &str) -> Value {
    json!({
        "SequenceNumber": r.sequence_number,
        "ApproximateArrivalTimestamp": ts(r.arrival_ms),
        "Data": BASE64.encode(&r.data),
        "PartitionKey": r.partition_key,
        "EncryptionType": encryption,
    })
}

fn summary_json(v: &StreamView) -> Value {
    json!({
        "StreamName": v.meta.name,
        "StreamARN": v.arn,
        "StreamStatus": v.status,
        "StreamModeDetails": {"StreamMode": v.meta.mode.as_str()},
        "StreamCreationTimestamp": ts(v.meta.created_ms),
    })
}

fn enhanced_json(v: &StreamView) -> Value {
    json!([{ "ShardLevelMetrics": v.meta.enhanced_metrics.iter().collect::<Vec<_>>() }])
}

fn decode_data(s: &str) -> Result<Vec<u8>, ApiError> {
    BASE64.decode(s).map_err(|_| ApiError::serialization("Data is not valid base64").with_protocol(Protocol::Json))
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
        other => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]"
            )))
        }
    })
}

/// A list page token: signed, naming the stream and where the next page starts.
fn page_token(engine: &DataStreamEngine, v: Value) -> String {
    engine.sign_token(v.to_string().as_bytes())
}

fn open_page_token(engine: &DataStreamEngine, token: &str, ttl: bool) -> Result<Value, ApiError> {
    let bad = || invalid(format!("Invalid NextToken: {}", token.chars().take(64).collect::<String>()));
    let raw = engine.open_token(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if ttl && engine.now_ms() - v["t"].as_i64().unwrap_or(0) > LIST_TOKEN_TTL_MS {
        return Err(wire_error(DataStreamError::ExpiredNextToken(
            "The NextToken has expired; it is valid for 300 seconds.".into(),
        )));
    }
    Ok(v)
}

fn tags_from_arn(engine: &DataStreamEngine, arn: &str) -> Result<ResourceTarget, ApiError> {
    if arn.contains("/consumer/") {
        let (stream, consumer) = engine.resolve_consumer_arn(arn).map_err(wire_error)?;
        Ok(ResourceTarget::Consumer(stream, consumer))
    } else {
        Ok(ResourceTarget::Stream(engine.name_from_arn(arn).map_err(wire_error)?))
    }
}

enum ResourceTarget {
    Stream(String),
    Consumer(String, String),
}

/// Every operation but SubscribeToShard.
pub async fn handle(engine: &DataStreamEngine, op: &str, body: &[u8]) -> Result<Value, ApiError> {
    let e = engine;
    let out = match op {
        "CreateStream" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                stream_name: String,
                shard_count: Option<u32>,
                stream_mode_details: Option<ModeDetails>,
                tags: Option<BTreeMap<String, String>>,
                max_record_size_in_ki_b: Option<u32>,
            }
            let i: In = parse(body)?;
            let mode = mode_of(i.stream_mode_details.as_ref())?.unwrap_or(StreamMode::Provisioned);
            e.create_stream(&i.stream_name, i.shard_count, mode, i.max_record_size_in_ki_b, i.tags.unwrap_or_default())
                .map_err(wire_error)?;
            json!({})
        }
        "DeleteStream" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                enforce_consumer_deletion: Option<bool>,
            }
            let i: In = parse(body)?;
            e.delete_stream(&i.s.name(e)?, i.enforce_consumer_deletion.unwrap_or(false)).map_err(wire_error)?;
            json!({})
        }
        "DescribeStream" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                limit: Option<u32>,
                exclusive_start_shard_id: Option<String>,
            }
            let i: In = parse(body)?;
            let limit = check_limit(i.limit, 10_000, "limit")?.unwrap_or(100).min(100) as usize;
            let v = e.describe(&i.s.name(e)?).map_err(wire_error)?;
            let after = i.exclusive_start_shard_id.as_deref().and_then(parse_shard_id);
            let shards: Vec<&ShardInfo> = v.shards.iter().filter(|s| after.is_none_or(|a| s.index > a)).collect();
            let mut d = description_json(&v);
            d["Shards"] = Value::Array(shards.iter().take(limit).map(|s| shard_json(s)).collect());
            d["HasMoreShards"] = json!(shards.len() > limit);
            json!({ "StreamDescription": d })
        }
        "DescribeStreamSummary" => {
            let s: StreamRef = parse(body)?;
            let v = e.describe(&s.name(e)?).map_err(wire_error)?;
            let mut d = description_json(&v);
            d["OpenShardCount"] = json!(v.open_shard_count());
            d["ConsumerCount"] = json!(v.meta.consumers.len());
            d["MaxRecordSizeInKiB"] = json!(v.meta.max_record_kib);
            json!({ "StreamDescriptionSummary": d })
        }
        "ListStreams" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                limit: Option<u32>,
                exclusive_start_stream_name: Option<String>,
                next_token: Option<String>,
            }
            let i: In = parse(body)?;
            let limit = check_limit(i.limit, 10_000, "limit")?.unwrap_or(100).min(100) as usize;
            let after = match &i.next_token {
                Some(t) => open_page_token(e, t, false)?["after"].as_str().map(str::to_string),
                None => i.exclusive_start_stream_name,
            };
            let all: Vec<StreamView> =
                e.list().into_iter().filter(|v| after.as_ref().is_none_or(|a| v.meta.name > *a)).collect();
            let page = &all[..all.len().min(limit)];
            let more = all.len() > limit;
            let mut out = json!({
                "StreamNames": page.iter().map(|v| v.meta.name.clone()).collect::<Vec<_>>(),
                "HasMoreStreams": more,
                "StreamSummaries": page.iter().map(summary_json).collect::<Vec<_>>(),
            });
            if let (true, Some(last)) = (more, page.last()) {
                out["NextToken"] = json!(page_token(e, json!({"after": last.meta.name, "t": e.now_ms()})));
            }
            out
        }
        "ListShards" => list_shards(e, body)?,
        "PutRecord" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                data: String,
                partition_key: Option<String>,
                explicit_hash_key: Option<String>,
                sequence_number_for_ordering: Option<String>,
                dry_run: Option<bool>,
            }
            let i: In = parse(body)?;
            let name = i.s.name(e)?;
            if let Some(s) = &i.sequence_number_for_ordering {
                if crate::data_streams::keys::parse_sequence(s).is_none() {
                    return Err(invalid(format!("SequenceNumberForOrdering {s} is not a sequence number of this stream.")));
                }
            }
            let record = NewRecord {
                partition_key: i.partition_key.unwrap_or_default(),
                data: decode_data(&i.data)?,
                explicit_hash_key: hash_key(i.explicit_hash_key.as_deref())?,
            };
            if i.dry_run == Some(true) {
                e.check_record(&name, &record).map_err(wire_error)?;
                return Err(wire_error(DataStreamError::DryRun));
            }
            let mut out = e.put_records(&name, vec![record]).await.map_err(wire_error)?;
            let r = out.records.pop().ok_or_else(|| wire_error(DataStreamError::Storage("the writer returned no result".into())))?;
            let r = r.map_err(wire_error)?;
            json!({"ShardId": r.shard_id, "SequenceNumber": r.sequence_number, "EncryptionType": encryption_name(out.encrypted)})
        }
        "PutRecords" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Entry {
                data: String,
                partition_key: Option<String>,
                explicit_hash_key: Option<String>,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                records: Vec<Entry>,
                dry_run: Option<bool>,
            }
            let i: In = parse(body)?;
            let name = i.s.name(e)?;
            let mut records = Vec::with_capacity(i.records.len());
            for r in &i.records {
                records.push(NewRecord {
                    partition_key: r.partition_key.clone().unwrap_or_default(),
                    data: decode_data(&r.data)?,
                    explicit_hash_key: hash_key(r.explicit_hash_key.as_deref())?,
                });
            }
            if i.dry_run == Some(true) {
                for r in &records {
                    e.check_record(&name, r).map_err(wire_error)?;
                }
                return Err(wire_error(DataStreamError::DryRun));
            }
            let out = e.put_records(&name, records).await.map_err(wire_error)?;
            let failed = out.records.iter().filter(|r| r.is_err()).count();
            let enc = encryption_name(out.encrypted);
            let records: Vec<Value> = out
                .records
                .into_iter()
                .map(|r| match r {
                    Ok(p) => json!({"ShardId": p.shard_id, "SequenceNumber": p.sequence_number}),
                    Err(err) => {
                        let code = wire_error(err.clone()).code;
                        let code = if code == "InternalFailureException" { "InternalFailure" } else { code };
                        json!({"ErrorCode": code, "ErrorMessage": err.to_string()})
                    }
                })
                .collect();
            json!({"FailedRecordCount": failed, "Records": records, "EncryptionType": enc})
        }
        "GetShardIterator" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                shard_id: String,
                shard_iterator_type: String,
                starting_sequence_number: Option<String>,
                timestamp: Option<Timestamp>,
                dry_run: Option<bool>,
            }
            let i: In = parse(body)?;
            let name = i.s.name(e)?;
            let start = starting_position(&i.shard_iterator_type, i.starting_sequence_number, i.timestamp)?;
            let it = e.get_shard_iterator(&name, &i.shard_id, start).map_err(wire_error)?;
            if i.dry_run == Some(true) {
                return Err(wire_error(DataStreamError::DryRun));
            }
            json!({ "ShardIterator": it })
        }
        "GetRecords" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                shard_iterator: String,
                limit: Option<u32>,
                dry_run: Option<bool>,
            }
            let i: In = parse(body)?;
            if i.dry_run == Some(true) {
                return Err(wire_error(DataStreamError::DryRun));
            }
            let out = e.get_records(&i.shard_iterator, i.limit).await.map_err(wire_error)?;
            let mut v = json!({
                "Records": out.records.iter().map(|r| record_json(r, "NONE")).collect::<Vec<_>>(),
                "MillisBehindLatest": out.millis_behind_latest,
            });
            if let Some(n) = out.next_iterator {
                v["NextShardIterator"] = json!(n);
            }
            if !out.child_shards.is_empty() {
                v["ChildShards"] = child_shards_json(&out.child_shards);
            }
            v
        }
        "IncreaseStreamRetentionPeriod" | "DecreaseStreamRetentionPeriod" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                retention_period_hours: i64,
            }
            let i: In = parse(body)?;
            e.change_retention(&i.s.name(e)?, i.retention_period_hours, op.starts_with("Increase"))
                .map_err(wire_error)?;
            json!({})
        }
        "SplitShard" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                shard_to_split: String,
                new_starting_hash_key: String,
            }
            let i: In = parse(body)?;
            let key = parse_hash_key(&i.new_starting_hash_key).ok_or_else(|| {
                invalid(format!("NewStartingHashKey {} is not a hash key in [0, 2^128-1].", i.new_starting_hash_key))
            })?;
            e.split_shard(&i.s.name(e)?, &i.shard_to_split, key).map_err(wire_error)?;
            json!({})
        }
        "MergeShards" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                shard_to_merge: String,
                adjacent_shard_to_merge: String,
            }
            let i: In = parse(body)?;
            e.merge_shards(&i.s.name(e)?, &i.shard_to_merge, &i.adjacent_shard_to_merge).map_err(wire_error)?;
            json!({})
        }
        "UpdateShardCount" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                target_shard_count: u32,
                scaling_type: String,
            }
            let i: In = parse(body)?;
            if i.scaling_type != "UNIFORM_SCALING" {
                return Err(invalid(format!("ScalingType '{}' is not UNIFORM_SCALING.", i.scaling_type)));
            }
            let name = i.s.name(e)?;
            let (current, target) = e.update_shard_count(&name, i.target_shard_count).map_err(wire_error)?;
            json!({"StreamName": name, "StreamARN": e.stream_arn(&name), "CurrentShardCount": current, "TargetShardCount": target})
        }
        "AddTagsToStream" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                tags: BTreeMap<String, String>,
            }
            let i: In = parse(body)?;
            if i.tags.len() > 10 {
                return Err(invalid("AddTagsToStream takes at most 10 tags per call."));
            }
            e.add_tags(&i.s.name(e)?, i.tags).map_err(wire_error)?;
            json!({})
        }
        "RemoveTagsFromStream" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                tag_keys: Vec<String>,
            }
            let i: In = parse(body)?;
            e.remove_tags(&i.s.name(e)?, &i.tag_keys).map_err(wire_error)?;
            json!({})
        }
        "ListTagsForStream" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                exclusive_start_tag_key: Option<String>,
                limit: Option<u32>,
            }
            let i: In = parse(body)?;
            let limit = check_limit(i.limit, 50, "limit")?.unwrap_or(50) as usize;
            let v = e.describe(&i.s.name(e)?).map_err(wire_error)?;
            let tags: Vec<(&String, &String)> = v
                .meta
                .tags
                .iter()
                .filter(|(k, _)| i.exclusive_start_tag_key.as_ref().is_none_or(|s| *k > s))
                .collect();
            json!({
                "Tags": tags.iter().take(limit).map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
                "HasMoreTags": tags.len() > limit,
            })
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(rename = "ResourceARN")]
                resource_arn: String,
                tags: Option<BTreeMap<String, String>>,
                tag_keys: Option<Vec<String>>,
            }
            let i: In = parse(body)?;
            let target = tags_from_arn(e, &i.resource_arn)?;
            match (op, target) {
                ("ListTagsForResource", target) => {
                    let tags = match target {
                        ResourceTarget::Stream(s) => e.describe(&s).map_err(wire_error)?.meta.tags,
                        ResourceTarget::Consumer(s, c) => e.consumer_tags(&s, &c).map_err(wire_error)?,
                    };
                    json!({"Tags": tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()})
                }
                ("TagResource", target) => {
                    let tags = i.tags.ok_or_else(|| invalid("Tags is required."))?;
                    match target {
                        ResourceTarget::Stream(s) => e.add_tags(&s, tags),
                        ResourceTarget::Consumer(s, c) => e.update_consumer_tags(&s, &c, |t| {
                            t.extend(tags);
                            Ok(())
                        }),
                    }
                    .map_err(wire_error)?;
                    json!({})
                }
                (_, target) => {
                    let keys = i.tag_keys.ok_or_else(|| invalid("TagKeys is required."))?;
                    match target {
                        ResourceTarget::Stream(s) => e.remove_tags(&s, &keys),
                        ResourceTarget::Consumer(s, c) => e.update_consumer_tags(&s, &c, |t| {
                            keys.iter().for_each(|k| {
                                t.remove(k);
                            });
                            Ok(())
                        }),
                    }
                    .map_err(wire_error)?;
                    json!({})
                }
            }
        }
        "StartStreamEncryption" | "StopStreamEncryption" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                encryption_type: String,
                key_id: String,
            }
            let i: In = parse(body)?;
            if i.encryption_type != "KMS" {
                return Err(invalid(format!("EncryptionType must be KMS; got '{}'.", i.encryption_type)));
            }
            if i.key_id.is_empty() || i.key_id.len() > 2048 {
                return Err(invalid("KeyId must be 1-2048 characters."));
            }
            let key = op.starts_with("Start").then_some(i.key_id);
            e.set_encryption(&i.s.name(e)?, key).map_err(wire_error)?;
            json!({})
        }
        "EnableEnhancedMonitoring" | "DisableEnhancedMonitoring" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                shard_level_metrics: Vec<String>,
            }
            let i: In = parse(body)?;
            let name = i.s.name(e)?;
            let (before, after) =
                e.set_enhanced_metrics(&name, &i.shard_level_metrics, op.starts_with("Enable")).map_err(wire_error)?;
            json!({"StreamName": name, "StreamARN": e.stream_arn(&name), "CurrentShardLevelMetrics": before, "DesiredShardLevelMetrics": after})
        }
        "DescribeLimits" => {
            let (limit, open, on_demand) = e.limits();
            json!({"ShardLimit": limit, "OpenShardCount": open, "OnDemandStreamCount": on_demand, "OnDemandStreamCountLimit": ON_DEMAND_STREAM_LIMIT})
        }
        "UpdateStreamMode" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(rename = "StreamARN")]
                stream_arn: String,
                stream_mode_details: ModeDetails,
            }
            let i: In = parse(body)?;
            let mode = mode_of(Some(&i.stream_mode_details))?.unwrap_or(StreamMode::Provisioned);
            e.set_stream_mode(&e.name_from_arn(&i.stream_arn).map_err(wire_error)?, mode).map_err(wire_error)?;
            json!({})
        }
        "UpdateMaxRecordSize" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(flatten)]
                s: StreamRef,
                max_record_size_in_ki_b: u32,
            }
            let i: In = parse(body)?;
            e.set_max_record_size(&i.s.name(e)?, i.max_record_size_in_ki_b).map_err(wire_error)?;
            json!({})
        }
        "RegisterStreamConsumer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(rename = "StreamARN")]
                stream_arn: String,
                consumer_name: String,
                tags: Option<BTreeMap<String, String>>,
            }
            let i: In = parse(body)?;
            let name = e.name_from_arn(&i.stream_arn).map_err(wire_error)?;
            let c = e.register_consumer(&name, &i.consumer_name, i.tags.unwrap_or_default()).map_err(wire_error)?;
            json!({"Consumer": consumer_json(&c, false)})
        }
        "DescribeStreamConsumer" | "DeregisterStreamConsumer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(rename = "StreamARN")]
                stream_arn: Option<String>,
                consumer_name: Option<String>,
                #[serde(rename = "ConsumerARN")]
                consumer_arn: Option<String>,
            }
            let i: In = parse(body)?;
            let (stream, consumer) = match (&i.consumer_arn, &i.stream_arn, &i.consumer_name) {
                (Some(arn), _, _) => e.resolve_consumer_arn(arn).map_err(wire_error)?,
                (None, Some(s), Some(c)) => (e.name_from_arn(s).map_err(wire_error)?, c.clone()),
                _ => return Err(invalid("Give ConsumerARN, or both StreamARN and ConsumerName.")),
            };
            if op == "DeregisterStreamConsumer" {
                e.deregister_consumer(&stream, &consumer).map_err(wire_error)?;
                json!({})
            } else {
                let c = e.describe_consumer(&stream, &consumer).map_err(wire_error)?;
                json!({"ConsumerDescription": consumer_json(&c, true)})
            }
        }
        "ListStreamConsumers" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(rename = "StreamARN")]
                stream_arn: String,
                next_token: Option<String>,
                max_results: Option<u32>,
            }
            let i: In = parse(body)?;
            let limit = check_limit(i.max_results, 10_000, "maxResults")?.unwrap_or(100).min(100) as usize;
            let name = e.name_from_arn(&i.stream_arn).map_err(wire_error)?;
            let after = match &i.next_token {
                Some(t) => open_page_token(e, t, true)?["after"].as_str().map(str::to_string),
                None => None,
            };
            let all: Vec<_> = e
                .list_consumers(&name)
                .map_err(wire_error)?
                .into_iter()
                .filter(|c| after.as_ref().is_none_or(|a| c.name > *a))
                .collect();
            let page = &all[..all.len().min(limit)];
            let mut out = json!({"Consumers": page.iter().map(|c| consumer_json(c, false)).collect::<Vec<_>>()});
            if let (true, Some(last)) = (all.len() > limit, page.last()) {
                out["NextToken"] = json!(page_token(e, json!({"after": last.name, "t": e.now_ms()})));
            }
            out
        }
        "PutResourcePolicy" | "GetResourcePolicy" | "DeleteResourcePolicy" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(rename = "ResourceARN")]
                resource_arn: String,
                policy: Option<String>,
            }
            let i: In = parse(body)?;
            match tags_from_arn(e, &i.resource_arn)? {
                ResourceTarget::Stream(s) => e.describe(&s).map(|_| ()),
                ResourceTarget::Consumer(s, c) => e.describe_consumer(&s, &c).map(|_| ()),
            }
            .map_err(wire_error)?;
            match op {
                "PutResourcePolicy" => {
                    let p = i.policy.ok_or_else(|| invalid("Policy is required."))?;
                    if serde_json::from_str::<Value>(&p).is_err() {
                        return Err(invalid("Policy is not a JSON document."));
                    }
                    e.set_resource_policy(&i.resource_arn, Some(&p)).map_err(wire_error)?;
                    json!({})
                }
                "GetResourcePolicy" => {
                    json!({"Policy": e.resource_policy(&i.resource_arn).map_err(wire_error)?.unwrap_or_else(|| "{}".into())})
                }
                _ => {
                    e.set_resource_policy(&i.resource_arn, None).map_err(wire_error)?;
                    json!({})
                }
            }
        }
        other => {
            return Err(ApiError::unknown_operation(&format!(
                "Kinesis_20131202.{other} (stream queues, channels, account settings and warm throughput are not supported by Kinescope)"
            ))
            .with_protocol(Protocol::Json))
        }
    };
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModeDetails {
    stream_mode: String,
}

fn mode_of(d: Option<&ModeDetails>) -> Result<Option<StreamMode>, ApiError> {
    d.map(|d| {
        StreamMode::parse(&d.stream_mode)
            .ok_or_else(|| invalid(format!("StreamMode '{}' is not PROVISIONED or ON_DEMAND.", d.stream_mode)))
    })
    .transpose()
}

fn check_limit(v: Option<u32>, max: u32, name: &str) -> Result<Option<u32>, ApiError> {
    match v {
        Some(n) if n < 1 || n > max => Err(invalid(format!(
            "1 validation error detected: Value '{n}' at '{name}' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
        other => Ok(other),
    }
}

fn consumer_json(c: &crate::data_streams::ConsumerView, with_stream: bool) -> Value {
    let mut v = json!({
        "ConsumerName": c.name,
        "ConsumerARN": c.arn,
        "ConsumerStatus": c.status,
        "ConsumerCreationTimestamp": ts(c.created_s * 1000),
    });
    if with_stream {
        v["StreamARN"] = json!(c.stream_arn);
    }
    v
}

fn list_shards(e: &DataStreamEngine, body: &[u8]) -> Result<Value, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Filter {
        #[serde(rename = "Type")]
        kind: String,
        shard_id: Option<String>,
        timestamp: Option<Timestamp>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        #[serde(flatten)]
        s: StreamRef,
        next_token: Option<String>,
        exclusive_start_shard_id: Option<String>,
        max_results: Option<u32>,
        stream_creation_timestamp: Option<Timestamp>,
        shard_filter: Option<Filter>,
    }
    let i: In = parse(body)?;
    let limit = check_limit(i.max_results, 10_000, "maxResults")?.unwrap_or(1000).min(1000) as usize;
    let (name, after, filter) = match &i.next_token {
        Some(t) => {
            if i.s.stream_name.is_some()
                || i.exclusive_start_shard_id.is_some()
                || i.stream_creation_timestamp.is_some()
            {
                return Err(invalid(
                    "NextToken cannot be combined with StreamName, ExclusiveStartShardId or StreamCreationTimestamp.",
                ));
            }
            let v = open_page_token(e, t, true)?;
            let name = v["stream"].as_str().unwrap_or_default().to_string();
            (name, v["after"].as_u64().map(|a| a as u32), v["filter"].clone())
        }
        None => {
            let name = i.s.name(e)?;
            let after = i.exclusive_start_shard_id.as_deref().and_then(parse_shard_id);
            let filter = match &i.shard_filter {
                None => Value::Null,
                Some(f) => {
                    let at = |need: bool| -> Result<Value, ApiError> {
                        match (need, &f.timestamp) {
                            (true, Some(t)) => Ok(json!(t.0 / 1000)),
                            (true, None) => Err(invalid(format!("ShardFilter {} needs a Timestamp.", f.kind))),
                            (false, _) => Ok(Value::Null),
                        }
                    };
                    match f.kind.as_str() {
                        "AFTER_SHARD_ID" => {
                            let id = f
                                .shard_id
                                .as_deref()
                                .ok_or_else(|| invalid("ShardFilter AFTER_SHARD_ID needs a ShardId."))?;
                            json!({"kind": f.kind, "after": parse_shard_id(id).unwrap_or(0)})
                        }
                        "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" | "AT_LATEST" => json!({"kind": f.kind}),
                        "AT_TIMESTAMP" | "FROM_TIMESTAMP" => json!({"kind": f.kind, "ms": at(true)?}),
                        other => return Err(invalid(format!("ShardFilter type '{other}' is not one Kinesis knows."))),
                    }
                }
            };
            (name, after, filter)
        }
    };
    let v = e.describe(&name).map_err(wire_error)?;
    let kind = filter["kind"].as_str().unwrap_or("");
    let keep = |s: &&ShardInfo| -> bool {
        match kind {
            "AFTER_SHARD_ID" => s.index > filter["after"].as_u64().unwrap_or(0) as u32,
            "AT_LATEST" => s.is_open(),
            "AT_TIMESTAMP" => {
                let t = filter["ms"].as_i64().unwrap_or(0);
                s.created_ms <= t && s.closed_ms.is_none_or(|c| c > t)
            }
            "FROM_TIMESTAMP" => {
                let t = filter["ms"].as_i64().unwrap_or(0);
                s.closed_ms.is_none_or(|c| c > t)
            }
            "AT_TRIM_HORIZON" => {
                // Shards open at the trim horizon: the oldest generation still listed.
                let listed: Vec<u32> = v.shards.iter().map(|x| x.index).collect();
                [s.parent, s.adjacent_parent].into_iter().flatten().all(|p| !listed.contains(&p))
            }
            _ => true,
        }
    };
    let shards: Vec<&ShardInfo> = v.shards.iter().filter(keep).filter(|s| after.is_none_or(|a| s.index > a)).collect();
    let page = &shards[..shards.len().min(limit)];
    let mut out = json!({"Shards": page.iter().map(|s| shard_json(s)).collect::<Vec<_>>()});
    if let (true, Some(last)) = (shards.len() > limit, page.last()) {
        out["NextToken"] =
            json!(page_token(e, json!({"stream": name, "after": last.index, "filter": filter, "t": e.now_ms()})));
    }
    Ok(out)
}

/// SubscribeToShard: an event stream of `initial-response`, then SubscribeToShardEvents
/// until the subscription ends (5 minutes, a takeover, or the shard's end).
async fn subscribe_to_shard(e: &DataStreamEngine, body: &[u8]) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Start {
        #[serde(rename = "Type")]
        kind: String,
        sequence_number: Option<String>,
        timestamp: Option<Timestamp>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        #[serde(rename = "ConsumerARN")]
        consumer_arn: String,
        shard_id: String,
        starting_position: Start,
        dry_run: Option<bool>,
    }
    let i: In = parse(body)?;
    let sp = &i.starting_position;
    let start = starting_position(&sp.kind, sp.sequence_number.clone(), sp.timestamp)?;
    let sub = e.subscribe(&i.consumer_arn, &i.shard_id, start).map_err(wire_error)?;
    if i.dry_run == Some(true) {
        return Err(wire_error(DataStreamError::DryRun));
    }
    let first = Bytes::from(eventstream::event("initial-response", b"{}"));
    let events = futures_util::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        match sub.next_event().await? {
            Ok(ev) => {
                let mut v = json!({
                    "Records": ev.records.iter().map(|r| record_json(r, "NONE")).collect::<Vec<_>>(),
                    "ContinuationSequenceNumber": ev.continuation_sequence_number,
                    "MillisBehindLatest": ev.millis_behind_latest,
                });
                if !ev.child_shards.is_empty() {
                    v["ChildShards"] = child_shards_json(&ev.child_shards);
                }
                let frame = eventstream::event("SubscribeToShardEvent", v.to_string().as_bytes());
                Some((Ok::<_, std::io::Error>(Bytes::from(frame)), Some(sub)))
            }
            Err(err) => {
                let w = wire_error(err);
                Some((Ok(Bytes::from(eventstream::exception(w.code, &w.message))), None))
            }
        }
    });
    let stream = futures_util::stream::iter([Ok(first)]).chain(events);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
    Ok(resp)
}

use futures_util::StreamExt as _;
