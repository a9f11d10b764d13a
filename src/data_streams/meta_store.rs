//! Stream metadata (topology, settings, consumers, tags) and resource policies behind
//! [`DataStreamMetaStore`], the engine's only way to them: load all, save one, delete
//! one, a policy by ARN. Every change is durable before the call that made it returns.
//! Records live in [`super::record_log`]. The embedded implementation is
//! [`super::embedded`] (sled); [`conformance`] is what every implementation must pass.

use super::DataStreamId;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::shard_map::ShardMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    #[serde(rename = "PROVISIONED")]
    Provisioned,
    #[serde(rename = "ON_DEMAND")]
    OnDemand,
}

impl StreamMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PROVISIONED" => Some(StreamMode::Provisioned),
            "ON_DEMAND" => Some(StreamMode::OnDemand),
            _ => None,
        }
    }
}

/// How records are placed on shards (`RecordDistributionStrategy`): by the MD5 of their
/// partition key (or their explicit hash key), or spread evenly by the server, which
/// then needs no key (on-demand streams only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RecordDistribution {
    #[default]
    #[serde(rename = "USER_PARTITION_KEY")]
    UserPartitionKey,
    #[serde(rename = "AUTO")]
    Auto,
}

impl RecordDistribution {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordDistribution::UserPartitionKey => "USER_PARTITION_KEY",
            RecordDistribution::Auto => "AUTO",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "USER_PARTITION_KEY" => Some(RecordDistribution::UserPartitionKey),
            "AUTO" => Some(RecordDistribution::Auto),
            _ => None,
        }
    }
}

/// An account's minimum-throughput billing commitment (DescribeAccountSettings): the
/// server bills nothing, but warm throughput is accepted only while it is on, as in
/// AWS, so code that turns it on first runs unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThroughputCommitment {
    pub started_ms: i64,
    /// The commitment cannot end before then; a DISABLED asked earlier ends it there.
    pub earliest_end_ms: i64,
    /// When it ends (or ended), once DISABLED was asked.
    pub ends_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    pub name: String,
    /// Seconds since the epoch; the ARN's suffix.
    pub created_s: i64,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    /// The account and region the stream lives in.
    pub scope: Scope,
    /// Unique over the server's life: names the record directory and binds iterators,
    /// so a re-created stream of the same name never serves the old one's iterators.
    pub uid: u64,
    pub created_ms: i64,
    pub mode: StreamMode,
    pub retention_hours: u32,
    pub shard_map: ShardMap,
    pub tags: BTreeMap<String, String>,
    pub consumers: Vec<ConsumerMeta>,
    /// KMS key id when encryption is on.
    pub encryption_key: Option<String>,
    pub max_record_kib: u32,
    pub enhanced_metrics: BTreeSet<String>,
    /// When UpdateShardCount ran, for the 10-per-24-hours limit.
    pub scaling_ops_ms: Vec<i64>,
    /// The stream reports UPDATING until then (see the engine's `update_delay_ms`).
    pub updating_until_ms: i64,
    /// Format 3 on: absent in older records (the default).
    #[serde(default)]
    pub distribution: RecordDistribution,
    /// UpdateStreamWarmThroughput's target (MiB/s), on-demand streams only.
    #[serde(default)]
    pub warm_throughput_mibps: Option<u32>,
}

impl StreamMeta {
    pub fn id(&self) -> DataStreamId {
        DataStreamId::new(&self.scope, &self.name)
    }
}

/// Where the data streams' metadata and policies are kept.
pub trait DataStreamMetaStore: Send + Sync + 'static {
    /// Every stream (one that cannot be read fails the load: the engine does not start
    /// without a stream it cannot account for).
    fn load(&self) -> Result<Vec<StreamMeta>, StorageFailure>;
    /// Creates or replaces a stream's record (by scope and name).
    fn save(&self, meta: &StreamMeta) -> Result<(), StorageFailure>;
    fn delete(&self, id: &DataStreamId) -> Result<(), StorageFailure>;
    /// The resource policy of a stream or consumer ARN.
    fn policy(&self, arn: &str) -> Result<Option<String>, StorageFailure>;
    /// Sets (or, with `None`, removes) the policy of an ARN.
    fn set_policy(&self, arn: &str, policy: Option<&str>) -> Result<(), StorageFailure>;
    /// An account's (per region) billing commitment, if it ever asked for one.
    fn commitment(&self, scope: &Scope) -> Result<Option<ThroughputCommitment>, StorageFailure>;
    fn set_commitment(&self, scope: &Scope, commitment: &ThroughputCommitment) -> Result<(), StorageFailure>;
}

/// The behaviour the engine relies on, as checks any [`DataStreamMetaStore`] must pass.
/// `open` opens the same store each time (the previous one dropped first).
#[doc(hidden)]
pub mod conformance {
    use super::*;

    fn meta(scope: &Scope, name: &str, uid: u64) -> StreamMeta {
        StreamMeta {
            name: name.into(),
            scope: scope.clone(),
            uid,
            created_ms: 1,
            mode: StreamMode::Provisioned,
            retention_hours: 24,
            shard_map: ShardMap::new(2, 1, 1),
            tags: BTreeMap::new(),
            consumers: vec![],
            encryption_key: None,
            max_record_kib: 1024,
            enhanced_metrics: BTreeSet::new(),
            scaling_ops_ms: vec![],
            updating_until_ms: 0,
            distribution: RecordDistribution::UserPartitionKey,
            warm_throughput_mibps: None,
        }
    }

    pub fn run<S: DataStreamMetaStore>(open: impl Fn() -> S) {
        let here = Scope::new("123456789012", "us-east-1");
        let there = Scope::new("123456789012", "eu-west-1");
        let a = meta(&here, "events", 1);
        let b = meta(&there, "events", 2);
        {
            let s = open();
            assert!(s.load().unwrap().is_empty());
            s.save(&a).unwrap();
            s.save(&b).unwrap();
            let mut a2 = a.clone();
            a2.retention_hours = 48;
            a2.distribution = RecordDistribution::Auto;
            a2.warm_throughput_mibps = Some(100);
            s.save(&a2).unwrap();
            let loaded = s.load().unwrap();
            assert_eq!(loaded.len(), 2, "one record per scope and name");
            assert!(loaded.contains(&a2) && loaded.contains(&b));
            assert_eq!(s.policy("arn:aws:kinesis:us-east-1:123456789012:stream/events").unwrap(), None);
            s.set_policy("arn:aws:kinesis:us-east-1:123456789012:stream/events", Some("{\"Version\":\"2012-10-17\"}"))
                .unwrap();
            assert_eq!(s.commitment(&here).unwrap(), None);
            let c = ThroughputCommitment { started_ms: 5, earliest_end_ms: 10, ends_ms: None };
            s.set_commitment(&here, &c).unwrap();
            s.set_commitment(&here, &ThroughputCommitment { ends_ms: Some(10), ..c }).unwrap();
        }
        let s = open();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.len(), 2, "records are durable");
        assert!(loaded.iter().any(|m| m.retention_hours == 48), "the newest save is what was kept");
        assert!(loaded
            .iter()
            .any(|m| m.distribution == RecordDistribution::Auto && m.warm_throughput_mibps == Some(100)));
        assert_eq!(
            s.commitment(&here).unwrap(),
            Some(ThroughputCommitment { started_ms: 5, earliest_end_ms: 10, ends_ms: Some(10) }),
            "the newest commitment is durable"
        );
        assert_eq!(s.commitment(&there).unwrap(), None, "commitments are per account and region");
        assert!(s.policy("arn:aws:kinesis:us-east-1:123456789012:stream/events").unwrap().is_some());
        s.delete(&a.id()).unwrap();
        s.set_policy("arn:aws:kinesis:us-east-1:123456789012:stream/events", None).unwrap();
        assert_eq!(s.load().unwrap(), vec![b.clone()]);
        drop(s);
        let s = open();
        assert_eq!(s.load().unwrap(), vec![b], "a deletion is durable");
        assert_eq!(s.policy("arn:aws:kinesis:us-east-1:123456789012:stream/events").unwrap(), None);
    }
}
