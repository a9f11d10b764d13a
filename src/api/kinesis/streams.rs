//! Stream operations: CreateStream, DeleteStream, DescribeStream(Summary), ListStreams,
//! retention, encryption, enhanced monitoring, stream mode, record size, limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_limit, encryption_name, invalid, ts, violation, KinesisState, Shard, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::data_streams::keys::parse_shard_id;
use crate::data_streams::meta_store::{RecordDistribution, StreamMode};
use crate::data_streams::DataStreamError;
use crate::data_streams::{DataStreamId, NewDataStream, StreamView, ThroughputCommitment};

const ON_DEMAND_STREAM_LIMIT: u32 = 50;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModeDetails {
    stream_mode: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModeDetailsOut {
    stream_mode: &'static str,
}

fn mode_of(d: Option<&ModeDetails>) -> Result<Option<StreamMode>, ApiError> {
    d.map(|d| {
        StreamMode::parse(&d.stream_mode)
            .ok_or_else(|| invalid(format!("StreamMode '{}' is not PROVISIONED or ON_DEMAND.", d.stream_mode)))
    })
    .transpose()
}

fn distribution_of(v: &str) -> Result<RecordDistribution, ApiError> {
    RecordDistribution::parse(v)
        .ok_or_else(|| violation(v, "recordDistributionStrategy", "satisfy enum value set: [AUTO, USER_PARTITION_KEY]"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateStreamInput {
    stream_name: String,
    shard_count: Option<u32>,
    stream_mode_details: Option<ModeDetails>,
    tags: Option<BTreeMap<String, String>>,
    max_record_size_in_ki_b: Option<u32>,
    record_distribution_strategy: Option<String>,
    warm_throughput_mi_bps: Option<u32>,
}

pub async fn create_stream(s: KinesisState, i: CreateStreamInput) -> Result<Empty, ApiError> {
    let new = NewDataStream {
        shard_count: i.shard_count,
        mode: mode_of(i.stream_mode_details.as_ref())?,
        max_record_kib: i.max_record_size_in_ki_b,
        tags: i.tags.unwrap_or_default(),
        distribution: i.record_distribution_strategy.as_deref().map(distribution_of).transpose()?,
        warm_throughput_mibps: i.warm_throughput_mi_bps,
    };
    s.engine.create_stream(&DataStreamId::new(&s.scope, &i.stream_name), new)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteStreamInput {
    #[serde(flatten)]
    s: StreamRef,
    enforce_consumer_deletion: Option<bool>,
}

pub async fn delete_stream(s: KinesisState, i: DeleteStreamInput) -> Result<Empty, ApiError> {
    let id = i.s.id(&s)?;
    // EnforceConsumerDeletion does not reach queues (as in AWS).
    let (queues, channels) = (s.stream_queues.count_for_stream(&id), s.channels.count_for_stream(&id));
    if queues + channels > 0 {
        return Err(DataStreamError::ResourceInUse(format!(
            "Stream {id} under account {} has {queues} stream queues and {channels} channels; delete them first.",
            id.scope.account
        ))
        .into());
    }
    s.engine.delete_stream(&id, i.enforce_consumer_deletion.unwrap_or(false))?;
    Ok(Empty {})
}

/// What StreamSummaries, DescribeStream and DescribeStreamSummary share.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamSummary {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_status: &'static str,
    stream_mode_details: ModeDetailsOut,
    stream_creation_timestamp: f64,
}

impl From<&StreamView> for StreamSummary {
    fn from(v: &StreamView) -> Self {
        StreamSummary {
            stream_name: v.meta.name.clone(),
            stream_arn: v.arn.clone(),
            stream_status: v.status,
            stream_mode_details: ModeDetailsOut { stream_mode: v.meta.mode.as_str() },
            stream_creation_timestamp: ts(v.meta.created_ms),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnhancedMetrics {
    shard_level_metrics: Vec<String>,
}

/// The members DescribeStream and DescribeStreamSummary add to the summary.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDescription {
    #[serde(flatten)]
    summary: StreamSummary,
    retention_period_hours: u32,
    enhanced_monitoring: Vec<EnhancedMetrics>,
    encryption_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
}

impl From<&StreamView> for StreamDescription {
    fn from(v: &StreamView) -> Self {
        StreamDescription {
            summary: v.into(),
            retention_period_hours: v.meta.retention_hours,
            enhanced_monitoring: vec![EnhancedMetrics {
                shard_level_metrics: v.meta.enhanced_metrics.iter().cloned().collect(),
            }],
            encryption_type: encryption_name(v.meta.encryption_key.is_some()),
            key_id: v.meta.encryption_key.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamInput {
    #[serde(flatten)]
    s: StreamRef,
    limit: Option<u32>,
    exclusive_start_shard_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamOutput {
    stream_description: DescribeStreamDescription,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamDescription {
    #[serde(flatten)]
    d: StreamDescription,
    shards: Vec<Shard>,
    has_more_shards: bool,
}

pub async fn describe_stream(s: KinesisState, i: DescribeStreamInput) -> Result<DescribeStreamOutput, ApiError> {
    let limit = check_limit(i.limit, 10_000, "limit")?.unwrap_or(100).min(100) as usize;
    let v = s.engine.describe(&i.s.id(&s)?)?;
    let after = i.exclusive_start_shard_id.as_deref().and_then(parse_shard_id);
    let shards: Vec<_> = v.shards.iter().filter(|s| after.is_none_or(|a| s.index > a)).collect();
    Ok(DescribeStreamOutput {
        stream_description: DescribeStreamDescription {
            d: (&v).into(),
            has_more_shards: shards.len() > limit,
            shards: shards.into_iter().take(limit).map(Shard::from).collect(),
        },
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamSummaryOutput {
    stream_description_summary: SummaryDescription,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryDescription {
    #[serde(flatten)]
    d: StreamDescription,
    open_shard_count: usize,
    consumer_count: usize,
    max_record_size_in_ki_b: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_distribution_strategy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warm_throughput: Option<WarmThroughput>,
    queue_count: usize,
    channel_count: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WarmThroughput {
    #[serde(rename = "TargetMiBps")]
    target_mibps: u32,
    #[serde(rename = "CurrentMiBps")]
    current_mibps: u32,
}

impl WarmThroughput {
    /// There is no capacity to warm here: the target is current as soon as it is set.
    fn reached(mibps: u32) -> Self {
        WarmThroughput { target_mibps: mibps, current_mibps: mibps }
    }
}

pub async fn describe_stream_summary(s: KinesisState, i: StreamRef) -> Result<DescribeStreamSummaryOutput, ApiError> {
    let id = i.id(&s)?;
    let v = s.engine.describe(&id)?;
    let on_demand = v.meta.mode == StreamMode::OnDemand;
    Ok(DescribeStreamSummaryOutput {
        stream_description_summary: SummaryDescription {
            d: (&v).into(),
            open_shard_count: v.open_shard_count(),
            consumer_count: v.meta.consumers.len(),
            max_record_size_in_ki_b: v.meta.max_record_kib,
            record_distribution_strategy: on_demand.then(|| v.meta.distribution.as_str()),
            warm_throughput: v.meta.warm_throughput_mibps.map(WarmThroughput::reached),
            queue_count: s.stream_queues.count_for_stream(&id),
            channel_count: s.channels.count_for_stream(&id),
        },
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsInput {
    limit: Option<u32>,
    exclusive_start_stream_name: Option<String>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsOutput {
    stream_names: Vec<String>,
    has_more_streams: bool,
    stream_summaries: Vec<StreamSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn list_streams(s: KinesisState, i: ListStreamsInput) -> Result<ListStreamsOutput, ApiError> {
    let limit = check_limit(i.limit, 10_000, "limit")?.unwrap_or(100).min(100) as usize;
    let after = match &i.next_token {
        Some(t) => Some(s.open_page::<String>("ListStreams", t, false)?),
        None => i.exclusive_start_stream_name,
    };
    let all: Vec<StreamView> =
        s.engine.list(&s.scope).into_iter().filter(|v| after.as_ref().is_none_or(|a| v.meta.name > *a)).collect();
    let page = &all[..all.len().min(limit)];
    let more = all.len() > limit;
    Ok(ListStreamsOutput {
        stream_names: page.iter().map(|v| v.meta.name.clone()).collect(),
        has_more_streams: more,
        stream_summaries: page.iter().map(StreamSummary::from).collect(),
        next_token: page.last().filter(|_| more).map(|last| s.page_token("ListStreams", &last.meta.name)),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetentionInput {
    #[serde(flatten)]
    s: StreamRef,
    retention_period_hours: i64,
}

pub async fn increase_retention(s: KinesisState, i: RetentionInput) -> Result<Empty, ApiError> {
    s.engine.change_retention(&i.s.id(&s)?, i.retention_period_hours, true)?;
    Ok(Empty {})
}

pub async fn decrease_retention(s: KinesisState, i: RetentionInput) -> Result<Empty, ApiError> {
    s.engine.change_retention(&i.s.id(&s)?, i.retention_period_hours, false)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionInput {
    #[serde(flatten)]
    s: StreamRef,
    encryption_type: String,
    key_id: String,
}

fn set_encryption(s: &KinesisState, i: EncryptionInput, on: bool) -> Result<Empty, ApiError> {
    if i.encryption_type != "KMS" {
        return Err(invalid(format!("EncryptionType must be KMS; got '{}'.", i.encryption_type)));
    }
    if i.key_id.is_empty() || i.key_id.len() > 2048 {
        return Err(invalid("KeyId must be 1-2048 characters."));
    }
    s.engine.set_encryption(&i.s.id(s)?, on.then_some(i.key_id))?;
    Ok(Empty {})
}

pub async fn start_encryption(s: KinesisState, i: EncryptionInput) -> Result<Empty, ApiError> {
    set_encryption(&s, i, true)
}

pub async fn stop_encryption(s: KinesisState, i: EncryptionInput) -> Result<Empty, ApiError> {
    set_encryption(&s, i, false)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitoringInput {
    #[serde(flatten)]
    s: StreamRef,
    shard_level_metrics: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitoringOutput {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    current_shard_level_metrics: std::collections::BTreeSet<String>,
    desired_shard_level_metrics: std::collections::BTreeSet<String>,
}

fn set_monitoring(s: &KinesisState, i: MonitoringInput, enable: bool) -> Result<MonitoringOutput, ApiError> {
    let name = i.s.id(s)?;
    let (before, after) = s.engine.set_enhanced_metrics(&name, &i.shard_level_metrics, enable)?;
    Ok(MonitoringOutput {
        stream_arn: name.arn(),
        stream_name: name.name,
        current_shard_level_metrics: before,
        desired_shard_level_metrics: after,
    })
}

pub async fn enable_monitoring(s: KinesisState, i: MonitoringInput) -> Result<MonitoringOutput, ApiError> {
    set_monitoring(&s, i, true)
}

pub async fn disable_monitoring(s: KinesisState, i: MonitoringInput) -> Result<MonitoringOutput, ApiError> {
    set_monitoring(&s, i, false)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeLimitsOutput {
    shard_limit: u32,
    open_shard_count: u32,
    on_demand_stream_count: u32,
    on_demand_stream_count_limit: u32,
    channel_count: usize,
    channel_count_limit: usize,
}

pub async fn describe_limits(s: KinesisState, _: Empty) -> Result<DescribeLimitsOutput, ApiError> {
    let (shard_limit, open_shard_count, on_demand_stream_count) = s.engine.limits(&s.scope);
    Ok(DescribeLimitsOutput {
        shard_limit,
        open_shard_count,
        on_demand_stream_count,
        on_demand_stream_count_limit: ON_DEMAND_STREAM_LIMIT,
        channel_count: s.channels.count(&s.scope),
        channel_count_limit: crate::stream_channels::MAX_CHANNELS_PER_SCOPE,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStreamModeInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_mode_details: ModeDetails,
    warm_throughput_mi_bps: Option<u32>,
}

pub async fn update_stream_mode(s: KinesisState, i: UpdateStreamModeInput) -> Result<Empty, ApiError> {
    let mode = mode_of(Some(&i.stream_mode_details))?.unwrap_or(StreamMode::Provisioned);
    let id = s.stream_by_arn(&i.stream_arn)?;
    if mode == StreamMode::Provisioned && s.stream_queues.count_for_stream(&id) + s.channels.count_for_stream(&id) > 0 {
        return Err(DataStreamError::ResourceInUse(format!(
            "Stream {id} has stream queues or channels, which read ON_DEMAND streams only; delete them first."
        ))
        .into());
    }
    s.engine.set_stream_mode(&id, mode, i.warm_throughput_mi_bps)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateDistributionInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    record_distribution_strategy: String,
}

pub async fn update_record_distribution(s: KinesisState, i: UpdateDistributionInput) -> Result<Empty, ApiError> {
    let strategy = distribution_of(&i.record_distribution_strategy)?;
    s.engine.set_record_distribution(&s.stream_by_arn(&i.stream_arn)?, strategy)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateWarmThroughputInput {
    #[serde(flatten)]
    s: StreamRef,
    #[serde(rename = "WarmThroughputMiBps")]
    warm_throughput_mibps: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateWarmThroughputOutput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_name: String,
    warm_throughput: WarmThroughput,
}

pub async fn update_warm_throughput(
    s: KinesisState,
    i: UpdateWarmThroughputInput,
) -> Result<UpdateWarmThroughputOutput, ApiError> {
    let mibps = u32::try_from(i.warm_throughput_mibps).map_err(|_| {
        violation(i.warm_throughput_mibps, "warmThroughputMiBps", "have value greater than or equal to 0")
    })?;
    let id = i.s.id(&s)?;
    let target = s.engine.set_warm_throughput(&id, mibps)?;
    Ok(UpdateWarmThroughputOutput {
        stream_arn: id.arn(),
        stream_name: id.name,
        warm_throughput: WarmThroughput::reached(target),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Commitment {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    earliest_allowed_end_at: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountSettingsOutput {
    minimum_throughput_billing_commitment: Commitment,
}

impl Commitment {
    fn of(c: Option<ThroughputCommitment>, now_ms: i64) -> Self {
        let Some(c) = c else {
            return Commitment { status: "DISABLED", started_at: None, ended_at: None, earliest_allowed_end_at: None };
        };
        let status = match c.ends_ms {
            None => "ENABLED",
            Some(end) if end > now_ms => "ENABLED_UNTIL_EARLIEST_ALLOWED_END",
            Some(_) => "DISABLED",
        };
        Commitment {
            status,
            started_at: Some(ts(c.started_ms)),
            ended_at: c.ends_ms.map(ts),
            earliest_allowed_end_at: Some(ts(c.earliest_end_ms)),
        }
    }
}

pub async fn describe_account_settings(s: KinesisState, _: Empty) -> Result<AccountSettingsOutput, ApiError> {
    let c = s.engine.commitment(&s.scope)?;
    Ok(AccountSettingsOutput { minimum_throughput_billing_commitment: Commitment::of(c, s.engine.now_ms()) })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommitmentInput {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateAccountSettingsInput {
    minimum_throughput_billing_commitment: CommitmentInput,
}

pub async fn update_account_settings(
    s: KinesisState,
    i: UpdateAccountSettingsInput,
) -> Result<AccountSettingsOutput, ApiError> {
    let enabled = match i.minimum_throughput_billing_commitment.status.as_str() {
        "ENABLED" => true,
        "DISABLED" => false,
        other => {
            return Err(violation(
                other,
                "minimumThroughputBillingCommitment.status",
                "satisfy enum value set: [ENABLED, DISABLED]",
            ))
        }
    };
    let c = s.engine.set_commitment(&s.scope, enabled)?;
    Ok(AccountSettingsOutput { minimum_throughput_billing_commitment: Commitment::of(Some(c), s.engine.now_ms()) })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateMaxRecordSizeInput {
    #[serde(flatten)]
    s: StreamRef,
    max_record_size_in_ki_b: u32,
}

pub async fn update_max_record_size(s: KinesisState, i: UpdateMaxRecordSizeInput) -> Result<Empty, ApiError> {
    s.engine.set_max_record_size(&i.s.id(&s)?, i.max_record_size_in_ki_b)?;
    Ok(Empty {})
}
