//! The stream queues' durable state behind [`StreamQueueStore`], the engine's only way
//! to it: each queue's record, its read position in every shard of its stream, and the
//! records it tracks (received and not yet acknowledged, or dead letters).
//!
//! What the engine relies on: a [`Progress`] (cursors moved, records tracked or
//! changed, records dropped) is applied atomically; [`StreamQueueStore::apply`] with
//! `durable` returns once it is on disk (acknowledgements, restores and queue changes
//! wait for that; receives do not: after a crash such a record is delivered again,
//! which at-least-once delivery allows, and the record itself is never lost: it lives
//! in the data stream). The embedded implementation is [`super::embedded`] (sled);
//! [`conformance`] is what every implementation must pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

/// Where a queue starts reading a shard it has not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartKind {
    #[serde(rename = "TRIM_HORIZON")]
    TrimHorizon,
    #[serde(rename = "LATEST")]
    Latest,
    #[serde(rename = "AT_TIMESTAMP")]
    AtTimestamp,
}

impl StartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StartKind::TrimHorizon => "TRIM_HORIZON",
            StartKind::Latest => "LATEST",
            StartKind::AtTimestamp => "AT_TIMESTAMP",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TRIM_HORIZON" => Some(StartKind::TrimHorizon),
            "LATEST" => Some(StartKind::Latest),
            "AT_TIMESTAMP" => Some(StartKind::AtTimestamp),
            _ => None,
        }
    }
}

/// A stream queue as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMeta {
    /// Unique over the server's life; the store's key.
    pub uid: u64,
    /// The ARN's resource id (`queue/<id>`): lower-case letters and digits, so it is a
    /// valid host label for SDKs that route by it.
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// The data stream read (in the queue's scope), and the incarnation of it.
    pub stream: String,
    pub stream_uid: u64,
    pub stream_created_ms: i64,
    pub start: StartKind,
    /// The effective start: records that arrived from then on are delivered (for
    /// TRIM_HORIZON, the oldest record the stream held at creation).
    pub start_ms: i64,
    pub visibility_timeout_s: u32,
    /// `Some(n)`: a record received n times without acknowledgement becomes a dead
    /// letter (BUILT_IN); `None`: redelivered until acknowledged or expired (NONE).
    pub max_receive_count: Option<u32>,
    pub created_ms: i64,
    pub tags: BTreeMap<String, String>,
}

/// Where a tracked record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedRecord {
    pub arrival_ms: i64,
    /// Unacknowledged receives since it was read (or last restored).
    pub receive_count: u32,
    pub first_receive_ms: i64,
    /// Invisible until then (0: visible).
    pub visible_at_ms: i64,
    /// Changes with every delivery: a receipt handle names the delivery it came from.
    pub delivery: u64,
    /// A dead letter: only the dead-letter operations see it.
    pub dead: bool,
}

/// A record's place in the stream: (shard index, sequence counter).
pub type RecordKey = (u32, u64);

/// One atomic step of a queue's state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Shard index → the last sequence counter read from it.
    pub cursors: BTreeMap<u32, u64>,
    pub tracked: BTreeMap<RecordKey, TrackedRecord>,
    pub dropped: Vec<RecordKey>,
}

impl Progress {
    pub fn is_empty(&self) -> bool {
        self.cursors.is_empty() && self.tracked.is_empty() && self.dropped.is_empty()
    }
}

/// What start-up reads back of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredQueue {
    pub meta: QueueMeta,
    pub cursors: BTreeMap<u32, u64>,
    pub tracked: BTreeMap<RecordKey, TrackedRecord>,
}

/// Where the stream queues' state is kept.
pub trait StreamQueueStore: Send + Sync + 'static {
    /// Every queue with its cursors and tracked records (one that cannot be read
    /// fails the load: the engine does not start without a queue it cannot account for).
    fn load(&self) -> Result<Vec<StoredQueue>, StorageFailure>;
    /// Creates or replaces a queue's record; durable on return.
    fn save(&self, meta: &QueueMeta) -> Result<(), StorageFailure>;
    /// Applies one step of a queue's state atomically; on disk on return if `durable`.
    fn apply(&self, uid: u64, progress: &Progress, durable: bool) -> Result<(), StorageFailure>;
    /// Removes a queue and everything it tracks; durable on return.
    fn delete(&self, uid: u64) -> Result<(), StorageFailure>;
}

/// The behaviour the engine relies on, as checks any [`StreamQueueStore`] must pass.
/// `open` opens the same store each time (the previous one dropped first).
#[doc(hidden)]
pub mod conformance {
    use super::*;

    fn meta(uid: u64, name: &str) -> QueueMeta {
        QueueMeta {
            uid,
            id: format!("q{uid}"),
            name: name.into(),
            scope: Scope::new("123456789012", "us-east-1"),
            stream: "events".into(),
            stream_uid: 7,
            stream_created_ms: 1,
            start: StartKind::Latest,
            start_ms: 5,
            visibility_timeout_s: 30,
            max_receive_count: Some(6),
            created_ms: 5,
            tags: BTreeMap::new(),
        }
    }

    fn tracked(n: u32) -> TrackedRecord {
        TrackedRecord {
            arrival_ms: 10,
            receive_count: n,
            first_receive_ms: 11,
            visible_at_ms: 40,
            delivery: u64::from(n),
            dead: false,
        }
    }

    pub fn run<S: StreamQueueStore>(open: impl Fn() -> S) {
        let (a, b) = (meta(1, "a"), meta(2, "b"));
        {
            let s = open();
            assert!(s.load().unwrap().is_empty());
            s.save(&a).unwrap();
            s.save(&b).unwrap();
            let mut step = Progress::default();
            step.cursors.insert(0, 3);
            step.cursors.insert(2, 9);
            step.tracked.insert((0, 1), tracked(1));
            step.tracked.insert((0, 2), tracked(1));
            step.tracked.insert((2, 9), tracked(1));
            s.apply(1, &step, true).unwrap();
            // A second step: a cursor moves, one record changes, one is acknowledged.
            let mut step = Progress::default();
            step.cursors.insert(0, 4);
            step.tracked.insert((0, 2), TrackedRecord { dead: true, ..tracked(6) });
            step.dropped.push((0, 1));
            s.apply(1, &step, true).unwrap();
            let mut other = Progress::default();
            other.tracked.insert((0, 1), tracked(2));
            s.apply(2, &other, true).unwrap();
            let mut renamed = a.clone();
            renamed.visibility_timeout_s = 60;
            s.save(&renamed).unwrap();
        }
        let s = open();
        let mut loaded = s.load().unwrap();
        loaded.sort_by_key(|q| q.meta.uid);
        assert_eq!(loaded.len(), 2, "one record per queue");
        assert_eq!(loaded[0].meta.visibility_timeout_s, 60, "the newest save is what was kept");
        assert_eq!(loaded[0].cursors, BTreeMap::from([(0, 4), (2, 9)]), "cursors are per shard, the newest kept");
        assert_eq!(
            loaded[0].tracked,
            BTreeMap::from([((0, 2), TrackedRecord { dead: true, ..tracked(6) }), ((2, 9), tracked(1))]),
            "changes replace, drops remove, and queues do not see each other's records"
        );
        assert_eq!(loaded[1].tracked, BTreeMap::from([((0, 1), tracked(2))]));
        s.delete(1).unwrap();
        drop(s);
        let s = open();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.len(), 1, "a deletion is durable");
        assert_eq!(loaded[0].meta, b);
        assert_eq!(loaded[0].tracked.len(), 1, "deleting one queue leaves the other's records");
    }
}
