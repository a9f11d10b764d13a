//! Stream queues: CreateQueue, DescribeQueue, UpdateQueue, DeleteQueue, ListQueues, and
//! the record operations (receive, acknowledge, change visibility; the same for dead
//! letters, and restore), over [`crate::stream_queues::StreamQueueEngine`].

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{invalid, ts, violation, KinesisState};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::api::shapes::Timestamp;
use crate::stream_queues::store::StartKind;
use crate::stream_queues::{DeadLetter, EntryOutcome, NewQueue, QueueChange, QueueRecord, QueueView, Receive};

/// An integer member within its model bounds, as the engine takes it.
fn bounded(v: i64, min: i64, max: i64, member: &str) -> Result<u32, ApiError> {
    if (min..=max).contains(&v) {
        Ok(v as u32)
    } else {
        Err(violation(v, member, &format!("have value between {min} and {max}")))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartingPosition {
    #[serde(rename = "Type")]
    kind: String,
    timestamp: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamConfiguration {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    starting_position: Option<StartingPosition>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterConfiguration {
    target_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_receive_count: Option<i64>,
}

impl DeadLetterConfiguration {
    fn parse(&self) -> Result<DeadLetter, ApiError> {
        match self.target_type.as_str() {
            "BUILT_IN" => {
                let n = self.max_receive_count.ok_or_else(|| {
                    invalid("DeadLetterConfiguration.MaxReceiveCount is required when TargetType is BUILT_IN.")
                })?;
                Ok(DeadLetter::BuiltIn(bounded(
                    n,
                    1,
                    i64::from(crate::stream_queues::MAX_RECEIVE_COUNT),
                    "queueAttributes.deadLetterConfiguration.maxReceiveCount",
                )?))
            }
            "NONE" => Ok(DeadLetter::None),
            other => Err(violation(
                other,
                "queueAttributes.deadLetterConfiguration.targetType",
                "satisfy enum value set: [BUILT_IN, NONE]",
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueAttributesInput {
    visibility_timeout_seconds: Option<i64>,
    dead_letter_configuration: Option<DeadLetterConfiguration>,
}

impl QueueAttributesInput {
    fn parse(&self) -> Result<(Option<u32>, Option<DeadLetter>), ApiError> {
        let visibility = self
            .visibility_timeout_seconds
            .map(|v| {
                bounded(
                    v,
                    0,
                    i64::from(crate::stream_queues::MAX_VISIBILITY_TIMEOUT_S),
                    "queueAttributes.visibilityTimeoutSeconds",
                )
            })
            .transpose()?;
        let dead_letter = self.dead_letter_configuration.as_ref().map(DeadLetterConfiguration::parse).transpose()?;
        Ok((visibility, dead_letter))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateQueueInput {
    queue_name: String,
    stream_configuration_list: Vec<StreamConfiguration>,
    queue_attributes: Option<QueueAttributesInput>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamConfigurationOut {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    starting_position: StartingPositionOut,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartingPositionOut {
    #[serde(rename = "Type")]
    kind: &'static str,
    timestamp: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueAttributesOut {
    visibility_timeout_seconds: u32,
    dead_letter_configuration: DeadLetterConfiguration,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueDescription {
    queue_name: String,
    #[serde(rename = "QueueARN")]
    queue_arn: String,
    queue_status: &'static str,
    queue_creation_timestamp: f64,
    stream_configuration_list: Vec<StreamConfigurationOut>,
    queue_attributes: QueueAttributesOut,
}

impl QueueDescription {
    /// Control operations complete at once; the answer to the call that started one
    /// still says CREATING or UPDATING, as AWS's does.
    fn of(v: QueueView, status: &'static str) -> Self {
        let m = v.meta;
        QueueDescription {
            queue_name: m.name,
            queue_arn: v.arn,
            queue_status: status,
            queue_creation_timestamp: ts(m.created_ms),
            stream_configuration_list: vec![StreamConfigurationOut {
                stream_arn: v.stream_arn,
                starting_position: StartingPositionOut { kind: m.start.as_str(), timestamp: ts(m.start_ms) },
            }],
            queue_attributes: QueueAttributesOut {
                visibility_timeout_seconds: m.visibility_timeout_s,
                dead_letter_configuration: match m.max_receive_count {
                    Some(n) => {
                        DeadLetterConfiguration { target_type: "BUILT_IN".into(), max_receive_count: Some(n.into()) }
                    }
                    None => DeadLetterConfiguration { target_type: "NONE".into(), max_receive_count: None },
                },
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueDescriptionOutput {
    queue_description: QueueDescription,
}

pub async fn create_queue(s: KinesisState, i: CreateQueueInput) -> Result<QueueDescriptionOutput, ApiError> {
    let [config] = <[StreamConfiguration; 1]>::try_from(i.stream_configuration_list).map_err(|list| {
        invalid(format!("StreamConfigurationList must name exactly one stream; it names {}.", list.len()))
    })?;
    let stream = s.stream_by_arn(&config.stream_arn)?;
    let (kind, at) = match &config.starting_position {
        None => (StartKind::Latest, None),
        Some(p) => (
            StartKind::parse(&p.kind).ok_or_else(|| {
                violation(
                    &p.kind,
                    "streamConfigurationList.member.startingPosition.type",
                    "satisfy enum value set: [TRIM_HORIZON, LATEST, AT_TIMESTAMP]",
                )
            })?,
            p.timestamp.map(|t| t.0 / 1000),
        ),
    };
    let (visibility, dead_letter) = match &i.queue_attributes {
        Some(a) => a.parse()?,
        None => (None, None),
    };
    let new = NewQueue {
        name: i.queue_name,
        stream,
        start: kind,
        start_ms: at,
        visibility_timeout_s: visibility,
        dead_letter,
        tags: i.tags.unwrap_or_default(),
    };
    let view = s.stream_queues.create(&s.scope, new)?;
    Ok(QueueDescriptionOutput { queue_description: QueueDescription::of(view, "CREATING") })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueArnInput {
    #[serde(rename = "QueueARN")]
    queue_arn: String,
}

pub async fn describe_queue(s: KinesisState, i: QueueArnInput) -> Result<QueueDescriptionOutput, ApiError> {
    let view = s.stream_queues.describe(&s.scope, &i.queue_arn)?;
    Ok(QueueDescriptionOutput { queue_description: QueueDescription::of(view, "ACTIVE") })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateQueueInput {
    #[serde(rename = "QueueARN")]
    queue_arn: String,
    queue_attributes: QueueAttributesInput,
}

pub async fn update_queue(s: KinesisState, i: UpdateQueueInput) -> Result<QueueDescriptionOutput, ApiError> {
    let (visibility_timeout_s, dead_letter) = i.queue_attributes.parse()?;
    let change = QueueChange { visibility_timeout_s, dead_letter };
    let view = s.stream_queues.update(&s.scope, &i.queue_arn, change)?;
    Ok(QueueDescriptionOutput { queue_description: QueueDescription::of(view, "UPDATING") })
}

pub async fn delete_queue(s: KinesisState, i: QueueArnInput) -> Result<Empty, ApiError> {
    s.stream_queues.delete(&s.scope, &i.queue_arn)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamFilter {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_creation_timestamp: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListQueuesInput {
    max_results: Option<i64>,
    next_token: Option<String>,
    stream_filter: Option<Vec<StreamFilter>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueStream {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_creation_timestamp: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueSummary {
    queue_name: String,
    #[serde(rename = "QueueARN")]
    queue_arn: String,
    queue_status: &'static str,
    queue_creation_timestamp: f64,
    streams: Vec<QueueStream>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListQueuesOutput {
    queue_summaries: Vec<QueueSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn list_queues(s: KinesisState, i: ListQueuesInput) -> Result<ListQueuesOutput, ApiError> {
    let limit = i.max_results.map(|n| bounded(n, 1, 10_000, "maxResults")).transpose()?.unwrap_or(100) as usize;
    let after: Option<(String, String)> = match &i.next_token {
        Some(t) => Some(s.open_page("ListQueues", t, true)?),
        None => None,
    };
    let filters = i.stream_filter.unwrap_or_default();
    let mut wanted = Vec::with_capacity(filters.len());
    for f in &filters {
        wanted.push((s.stream_by_arn(&f.stream_arn)?.name, f.stream_creation_timestamp.map(|t| t.0 / 1000)));
    }
    let matching: Vec<QueueView> = s
        .stream_queues
        .list(&s.scope, None)
        .into_iter()
        .filter(|v| {
            wanted.is_empty()
                || wanted.iter().any(|(name, created)| {
                    v.meta.stream == *name && created.is_none_or(|c| c / 1000 == v.meta.stream_created_ms / 1000)
                })
        })
        .filter(|v| after.as_ref().is_none_or(|(n, id)| (&v.meta.name, &v.meta.id) > (n, id)))
        .collect();
    let more = matching.len() > limit;
    let page: Vec<QueueView> = matching.into_iter().take(limit).collect();
    let next_token =
        page.last().filter(|_| more).map(|v| s.page_token("ListQueues", &(v.meta.name.clone(), v.meta.id.clone())));
    let queue_summaries = page
        .into_iter()
        .map(|v| QueueSummary {
            queue_name: v.meta.name,
            queue_arn: v.arn,
            queue_status: "ACTIVE",
            queue_creation_timestamp: ts(v.meta.created_ms),
            streams: vec![QueueStream {
                stream_arn: v.stream_arn,
                stream_creation_timestamp: ts(v.meta.stream_created_ms),
            }],
        })
        .collect();
    Ok(ListQueuesOutput { queue_summaries, next_token })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiveInput {
    #[serde(rename = "QueueARN")]
    queue_arn: String,
    limit: Option<i64>,
    wait_time_seconds: Option<i64>,
    visibility_timeout_seconds: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueRecordOut {
    receipt_handle: String,
    record_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition_key: Option<String>,
    data: String,
    approximate_arrival_timestamp: f64,
    first_receive_timestamp: f64,
    receive_count: u32,
}

impl From<QueueRecord> for QueueRecordOut {
    fn from(r: QueueRecord) -> Self {
        QueueRecordOut {
            receipt_handle: r.receipt_handle,
            record_id: r.record_id,
            partition_key: (!r.partition_key.is_empty()).then_some(r.partition_key),
            data: BASE64.encode(&r.data),
            approximate_arrival_timestamp: ts(r.arrival_ms),
            first_receive_timestamp: ts(r.first_receive_ms),
            receive_count: r.receive_count,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiveOutput {
    queue_records: Vec<QueueRecordOut>,
}

async fn receive(s: KinesisState, i: ReceiveInput, dead_letters: bool) -> Result<ReceiveOutput, ApiError> {
    use crate::stream_queues::{DEFAULT_WAIT_S, MAX_BATCH, MAX_VISIBILITY_TIMEOUT_S, MAX_WAIT_S};
    let r = Receive {
        limit: i.limit.map(|n| bounded(n, 1, MAX_BATCH.into(), "limit")).transpose()?.unwrap_or(MAX_BATCH),
        wait_s: i
            .wait_time_seconds
            .map(|n| bounded(n, 1, MAX_WAIT_S.into(), "waitTimeSeconds"))
            .transpose()?
            .unwrap_or(DEFAULT_WAIT_S),
        visibility_timeout_s: i
            .visibility_timeout_seconds
            .map(|n| bounded(n, 0, MAX_VISIBILITY_TIMEOUT_S.into(), "visibilityTimeoutSeconds"))
            .transpose()?,
        dead_letters,
    };
    let records = s.stream_queues.receive(&s.scope, &i.queue_arn, r).await?;
    Ok(ReceiveOutput { queue_records: records.into_iter().map(QueueRecordOut::from).collect() })
}

pub async fn receive_records(s: KinesisState, i: ReceiveInput) -> Result<ReceiveOutput, ApiError> {
    receive(s, i, false).await
}

pub async fn receive_dead_letters(s: KinesisState, i: ReceiveInput) -> Result<ReceiveOutput, ApiError> {
    receive(s, i, true).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandleEntry {
    receipt_handle: String,
    visibility_timeout_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EntriesInput {
    #[serde(rename = "QueueARN")]
    queue_arn: String,
    entries: Vec<HandleEntry>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Succeeded {
    receipt_handle: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FailedEntry {
    receipt_handle: String,
    error_code: &'static str,
    error_message: String,
}

/// Partial success is a 200 with each entry on its side.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EntriesOutput {
    successful: Vec<Succeeded>,
    failed: Vec<FailedEntry>,
}

impl EntriesOutput {
    fn of(handles: Vec<String>, outcomes: Vec<EntryOutcome>) -> Self {
        let mut out = EntriesOutput { successful: Vec::new(), failed: Vec::new() };
        for (receipt_handle, outcome) in handles.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => out.successful.push(Succeeded { receipt_handle }),
                Err(e) => {
                    let wire = ApiError::from(e);
                    out.failed.push(FailedEntry { receipt_handle, error_code: wire.code, error_message: wire.message })
                }
            }
        }
        out
    }
}

fn handles_of(entries: &[HandleEntry]) -> Vec<String> {
    entries.iter().map(|e| e.receipt_handle.clone()).collect()
}

async fn acknowledge(s: KinesisState, i: EntriesInput, dead_letters: bool) -> Result<EntriesOutput, ApiError> {
    let handles = handles_of(&i.entries);
    let outcomes = s.stream_queues.acknowledge(&s.scope, &i.queue_arn, &handles, dead_letters).await?;
    Ok(EntriesOutput::of(handles, outcomes))
}

pub async fn acknowledge_records(s: KinesisState, i: EntriesInput) -> Result<EntriesOutput, ApiError> {
    acknowledge(s, i, false).await
}

pub async fn acknowledge_dead_letters(s: KinesisState, i: EntriesInput) -> Result<EntriesOutput, ApiError> {
    acknowledge(s, i, true).await
}

async fn change_visibility(s: KinesisState, i: EntriesInput, dead_letters: bool) -> Result<EntriesOutput, ApiError> {
    let mut entries = Vec::with_capacity(i.entries.len());
    for e in &i.entries {
        let v = e.visibility_timeout_seconds.ok_or_else(|| invalid("Each entry needs VisibilityTimeoutSeconds."))?;
        let v = bounded(
            v,
            0,
            i64::from(crate::stream_queues::MAX_VISIBILITY_TIMEOUT_S),
            "entries.member.visibilityTimeoutSeconds",
        )?;
        entries.push((e.receipt_handle.clone(), v));
    }
    let outcomes = s.stream_queues.change_visibility(&s.scope, &i.queue_arn, &entries, dead_letters).await?;
    Ok(EntriesOutput::of(handles_of(&i.entries), outcomes))
}

pub async fn update_records_visibility(s: KinesisState, i: EntriesInput) -> Result<EntriesOutput, ApiError> {
    change_visibility(s, i, false).await
}

pub async fn update_dead_letters_visibility(s: KinesisState, i: EntriesInput) -> Result<EntriesOutput, ApiError> {
    change_visibility(s, i, true).await
}

pub async fn restore_dead_letters(s: KinesisState, i: EntriesInput) -> Result<EntriesOutput, ApiError> {
    let handles = handles_of(&i.entries);
    let outcomes = s.stream_queues.restore(&s.scope, &i.queue_arn, &handles).await?;
    Ok(EntriesOutput::of(handles, outcomes))
}
