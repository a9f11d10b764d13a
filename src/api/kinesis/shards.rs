//! Shard operations: ListShards (with ShardFilter and NextToken), SplitShard,
//! MergeShards, UpdateShardCount.

use serde::{Deserialize, Serialize};

use super::{check_limit, check_shard_id, invalid, violation, KinesisState, Shard, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::api::shapes::Timestamp;
use crate::data_streams::keys::{parse_hash_key, parse_shard_id};
use crate::data_streams::shard_map::ShardInfo;
use crate::data_streams::DataStreamId;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardFilterInput {
    #[serde(rename = "Type")]
    kind: String,
    shard_id: Option<String>,
    timestamp: Option<Timestamp>,
}

/// Which shards a ListShards call keeps; carried in its NextToken.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
enum ShardFilter {
    All,
    AfterShardId(u32),
    AtTrimHorizon,
    FromTrimHorizon,
    AtLatest,
    AtTimestamp(i64),
    FromTimestamp(i64),
}

impl ShardFilter {
    fn parse(f: &ShardFilterInput) -> Result<Self, ApiError> {
        let at = || -> Result<i64, ApiError> {
            f.timestamp.map(|t| t.0 / 1000).ok_or_else(|| invalid(format!("ShardFilter {} needs a Timestamp.", f.kind)))
        };
        Ok(match f.kind.as_str() {
            "AFTER_SHARD_ID" => {
                let id = f.shard_id.as_deref().ok_or_else(|| invalid("ShardFilter AFTER_SHARD_ID needs a ShardId."))?;
                ShardFilter::AfterShardId(parse_shard_id(id).unwrap_or(0))
            }
            "AT_TRIM_HORIZON" => ShardFilter::AtTrimHorizon,
            "FROM_TRIM_HORIZON" => ShardFilter::FromTrimHorizon,
            "AT_LATEST" => ShardFilter::AtLatest,
            "AT_TIMESTAMP" => ShardFilter::AtTimestamp(at()?),
            "FROM_TIMESTAMP" => ShardFilter::FromTimestamp(at()?),
            other => return Err(invalid(format!("ShardFilter type '{other}' is not one Kinesis knows."))),
        })
    }

    /// Whether shard `s` of the listed `all` passes.
    fn keeps(self, s: &ShardInfo, all: &[ShardInfo]) -> bool {
        match self {
            ShardFilter::All | ShardFilter::FromTrimHorizon => true,
            ShardFilter::AfterShardId(after) => s.index > after,
            ShardFilter::AtLatest => s.is_open(),
            ShardFilter::AtTimestamp(t) => s.created_ms <= t && s.closed_ms.is_none_or(|c| c > t),
            ShardFilter::FromTimestamp(t) => s.closed_ms.is_none_or(|c| c > t),
            // Shards open at the trim horizon: the oldest generation still listed.
            ShardFilter::AtTrimHorizon => {
                [s.parent, s.adjacent_parent].into_iter().flatten().all(|p| !all.iter().any(|x| x.index == p))
            }
        }
    }
}

/// Where a ListShards page ended (the stream by name: the token is only good in the
/// caller's scope).
#[derive(Serialize, Deserialize)]
struct ListShardsCursor {
    stream: String,
    after: u32,
    filter: ShardFilter,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShardsInput {
    #[serde(flatten)]
    s: StreamRef,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    max_results: Option<u32>,
    stream_creation_timestamp: Option<Timestamp>,
    shard_filter: Option<ShardFilterInput>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShardsOutput {
    shards: Vec<Shard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn list_shards(s: KinesisState, i: ListShardsInput) -> Result<ListShardsOutput, ApiError> {
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
            let c: ListShardsCursor = s.open_page("ListShards", t, true)?;
            (DataStreamId::new(&s.scope, &c.stream), Some(c.after), c.filter)
        }
        None => {
            let filter = i.shard_filter.as_ref().map(ShardFilter::parse).transpose()?.unwrap_or(ShardFilter::All);
            (i.s.id(&s)?, i.exclusive_start_shard_id.as_deref().and_then(parse_shard_id), filter)
        }
    };
    let v = s.engine.describe(&name)?;
    let shards: Vec<&ShardInfo> =
        v.shards.iter().filter(|x| filter.keeps(x, &v.shards)).filter(|x| after.is_none_or(|a| x.index > a)).collect();
    let page = &shards[..shards.len().min(limit)];
    let next_token = page.last().filter(|_| shards.len() > limit).map(|last| {
        s.page_token("ListShards", &ListShardsCursor { stream: name.name.clone(), after: last.index, filter })
    });
    Ok(ListShardsOutput { shards: page.iter().map(|x| Shard::from(*x)).collect(), next_token })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SplitShardInput {
    #[serde(flatten)]
    s: StreamRef,
    shard_to_split: String,
    new_starting_hash_key: String,
}

pub async fn split_shard(s: KinesisState, i: SplitShardInput) -> Result<Empty, ApiError> {
    check_shard_id(&i.shard_to_split, "shardToSplit")?;
    let key = parse_hash_key(&i.new_starting_hash_key).ok_or_else(|| {
        violation(
            &i.new_starting_hash_key,
            "newStartingHashKey",
            "satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
        )
    })?;
    s.engine.split_shard(&i.s.id(&s)?, &i.shard_to_split, key)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MergeShardsInput {
    #[serde(flatten)]
    s: StreamRef,
    shard_to_merge: String,
    adjacent_shard_to_merge: String,
}

pub async fn merge_shards(s: KinesisState, i: MergeShardsInput) -> Result<Empty, ApiError> {
    check_shard_id(&i.shard_to_merge, "shardToMerge")?;
    check_shard_id(&i.adjacent_shard_to_merge, "adjacentShardToMerge")?;
    s.engine.merge_shards(&i.s.id(&s)?, &i.shard_to_merge, &i.adjacent_shard_to_merge)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCountInput {
    #[serde(flatten)]
    s: StreamRef,
    target_shard_count: u32,
    scaling_type: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCountOutput {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    current_shard_count: u32,
    target_shard_count: u32,
}

pub async fn update_shard_count(s: KinesisState, i: UpdateShardCountInput) -> Result<UpdateShardCountOutput, ApiError> {
    if i.scaling_type != "UNIFORM_SCALING" {
        return Err(invalid(format!("ScalingType '{}' is not UNIFORM_SCALING.", i.scaling_type)));
    }
    let name = i.s.id(&s)?;
    let (current, target) = s.engine.update_shard_count(&name, i.target_shard_count)?;
    Ok(UpdateShardCountOutput {
        stream_arn: name.arn(),
        stream_name: name.name,
        current_shard_count: current,
        target_shard_count: target,
    })
}
