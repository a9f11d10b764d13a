//! Delivery-stream metadata behind [`DeliveryMetaStore`], the engine's only way to it:
//! each stream's settings, its delivery checkpoint (the serial through which its
//! records are delivered), a Kinesis-sourced stream's per-shard read checkpoints, and
//! the uid counter (a uid names a stream's backlog, so a stream deleted and created
//! again never sees the old records). Every write is durable before it returns. The
//! embedded implementation is [`super::embedded`] (sled); [`conformance`] is what every
//! implementation must pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::settings::{Destination, Source};
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

/// A source shard's checkpoint once it is closed and read to its end.
pub const SHARD_DONE: &str = "DONE";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    pub key_type: String,
    pub key_arn: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub scope: Scope,
    pub name: String,
    pub uid: u64,
    pub source: Source,
    pub destination: Destination,
    pub destination_id: String,
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub tags: BTreeMap<String, String>,
    pub encryption: Option<Encryption>,
    /// When Start/StopDeliveryStreamEncryption were called (the last 24 hours').
    #[serde(default)]
    pub encryption_calls_ms: Vec<i64>,
    /// Set when another resource (a Kinesis channel) runs this stream: it is then
    /// invisible to the delivery-stream operations and reached through its owner only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// The resource that runs an owned delivery stream, and that resource's own record
/// (opaque here: the owner's engine reads and writes it), kept with the stream so both
/// change in one write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub arn: String,
    pub record: serde_json::Value,
}

/// Where the delivery streams' metadata and checkpoints are kept.
pub trait DeliveryMetaStore: Send + Sync + 'static {
    /// Every stream that can be read (one that cannot is logged and left alone).
    fn all(&self) -> Result<Vec<StreamMeta>, StorageFailure>;
    /// Creates or replaces the stream's record (by scope and name).
    fn save(&self, meta: &StreamMeta) -> Result<(), StorageFailure>;
    /// Removes the stream's record and every checkpoint of its uid.
    fn remove(&self, meta: &StreamMeta) -> Result<(), StorageFailure>;
    /// A uid no stream has had: greater than every one handed out before.
    fn next_uid(&self) -> Result<u64, StorageFailure>;
    /// The serial through which the stream's records are delivered (0: none yet).
    fn delivered_through(&self, uid: u64) -> Result<u64, StorageFailure>;
    fn set_delivered_through(&self, uid: u64, serial: u64) -> Result<(), StorageFailure>;
    /// A source shard's read checkpoint (a sequence number, or [`SHARD_DONE`]).
    fn source_checkpoint(&self, uid: u64, shard: &str) -> Result<Option<String>, StorageFailure>;
    fn set_source_checkpoint(&self, uid: u64, shard: &str, checkpoint: &str) -> Result<(), StorageFailure>;
}

/// The behaviour the engine relies on, as checks any [`DeliveryMetaStore`] must pass.
/// `open` opens the same store each time (the previous one dropped first).
#[doc(hidden)]
pub mod conformance {
    use super::*;
    use crate::delivery_streams::settings::{BucketDestination, Destination, Source};

    fn meta(scope: &Scope, name: &str, uid: u64) -> StreamMeta {
        StreamMeta {
            scope: scope.clone(),
            name: name.into(),
            uid,
            source: Source::DirectPut { throughput_hint_mib: None },
            destination: Destination::Bucket(BucketDestination {
                bucket_arn: "arn:aws:s3:::frames".into(),
                ..Default::default()
            }),
            destination_id: "destinationId-000000000001".into(),
            version: 1,
            created_ms: 1,
            updated_ms: 1,
            tags: BTreeMap::new(),
            encryption: None,
            encryption_calls_ms: vec![],
            owner: None,
        }
    }

    pub fn run<S: DeliveryMetaStore>(open: impl Fn() -> S) {
        let here = Scope::new("123456789012", "us-east-1");
        let there = Scope::new("210987654321", "us-east-1");
        let (a, b);
        {
            let s = open();
            // Uids only grow, across reopens too.
            let first = s.next_uid().unwrap();
            let second = s.next_uid().unwrap();
            assert!(second > first);
            a = meta(&here, "logs", second);
            b = meta(&there, "logs", s.next_uid().unwrap());
            s.save(&a).unwrap();
            s.save(&b).unwrap();
            let mut a2 = a.clone();
            a2.version = 2;
            s.save(&a2).unwrap();
            let all = s.all().unwrap();
            assert_eq!(all.len(), 2, "one record per scope and name");
            assert!(all.contains(&a2) && all.contains(&b));
            // Checkpoints: none, then set, per uid and shard.
            assert_eq!(s.delivered_through(a.uid).unwrap(), 0);
            s.set_delivered_through(a.uid, 41).unwrap();
            s.set_delivered_through(a.uid, 42).unwrap();
            assert_eq!(s.delivered_through(a.uid).unwrap(), 42);
            assert_eq!(s.delivered_through(b.uid).unwrap(), 0);
            assert_eq!(s.source_checkpoint(a.uid, "shardId-000000000000").unwrap(), None);
            s.set_source_checkpoint(a.uid, "shardId-000000000000", "4960").unwrap();
            s.set_source_checkpoint(a.uid, "shardId-000000000001", SHARD_DONE).unwrap();
        }
        let s = open();
        let last = s.next_uid().unwrap();
        assert!(last > b.uid, "a reopened store hands out no uid twice");
        assert_eq!(s.all().unwrap().len(), 2, "records are durable");
        assert_eq!(s.delivered_through(a.uid).unwrap(), 42, "checkpoints are durable");
        assert_eq!(s.source_checkpoint(a.uid, "shardId-000000000000").unwrap().as_deref(), Some("4960"));
        assert_eq!(s.source_checkpoint(a.uid, "shardId-000000000001").unwrap().as_deref(), Some(SHARD_DONE));
        // Removal takes the record and its checkpoints, and nothing of another's.
        s.remove(&a).unwrap();
        assert_eq!(s.all().unwrap(), vec![b.clone()]);
        assert_eq!(s.delivered_through(a.uid).unwrap(), 0);
        assert_eq!(s.source_checkpoint(a.uid, "shardId-000000000000").unwrap(), None);
        drop(s);
        assert_eq!(open().all().unwrap(), vec![b], "a removal is durable");
    }
}
