//! The data-stream engine: Kinesis Data Streams' streams, shards, sequence numbers,
//! iterators, resharding and enhanced fan-out, with a plain Rust API so the video side
//! publishes events without HTTP.
//!
//! - [`keys`]: hash keys, sequence numbers and shard ids (pure).
//! - [`shard_map`]: a stream's shard topology and resharding (pure).
//! - [`record_log`]: the record-log traits (one log per shard) and their conformance suite.
//! - [`meta_store`]: the stream-metadata trait and its conformance suite.
//! - [`embedded`]: both in sled and append-only checksummed segment files.
//! - [`writer`]: the one thread that appends, syncs and publishes records.
//! - [`throttle`]: the optional per-shard throughput limits.
//!
//! A put is acknowledged only after its frames are synced; concurrent puts share syncs.
//! Each shard's index (sequence → file location) lives in memory and is rebuilt from
//! the segment files on open. Iterators and list tokens are signed with a key in
//! `data/data_streams.key`: they cannot be forged or pointed elsewhere.

mod consumers;
mod control_plane;
pub mod embedded;
pub mod keys;
pub mod meta_store;
mod reads;
mod subscriptions;
pub use subscriptions::{Subscription, SubscriptionEvent};
pub mod postgres;
pub mod postgres_log;
pub mod record_log;
pub mod shard_map;
pub mod throttle;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::scope::Scope;
use crate::secrets::{load_or_create_key, TokenSigner};
use crate::storage_failure::StorageFailure;
use keys::{format_sequence, parse_sequence, parse_shard_id, shard_id};
use meta_store::{ConsumerMeta, DataStreamMetaStore, StreamMeta, StreamMode};
use record_log::{decode_frame, Location, RecordLog, RecordLogs, RollPolicy};
use shard_map::{Counter, ReshardError, ShardInfo, ShardMap};
use throttle::ShardThrottle;

pub use meta_store::{RecordDistribution, StreamMode as Mode, ThroughputCommitment};

pub const DEFAULT_RETENTION_HOURS: u32 = 24;
pub const MAX_RETENTION_HOURS: u32 = 8760;
pub const DEFAULT_MAX_RECORD_KIB: u32 = 1024;
pub const MAX_RECORD_KIB: u32 = 10240;
pub const MAX_PUT_RECORDS: usize = 500;
pub const MAX_PUT_RECORDS_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_GET_RECORDS_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_GET_RECORDS_LIMIT: u32 = 10_000;
pub const ITERATOR_TTL_MS: i64 = 300_000;
pub const LIST_TOKEN_TTL_MS: i64 = 300_000;
pub const MAX_SHARDS_PER_STREAM: u32 = 10_000;
pub const MAX_CONSUMERS_PER_STREAM: usize = 20;
pub const MAX_TAGS: usize = 50;
pub const ON_DEMAND_SHARDS: u32 = 4;
/// UpdateStreamWarmThroughput's default per-stream maximum (10 GiB/s).
pub const MAX_WARM_THROUGHPUT_MIBPS: u32 = 10_240;
/// How long a billing commitment lasts at least once turned on.
pub const COMMITMENT_MINIMUM_MS: i64 = 24 * 3_600_000;
pub const SUBSCRIPTION_MS: i64 = 300_000;
pub const SUBSCRIPTION_TAKEOVER_MS: i64 = 5_000;
const SCALING_OPS_PER_DAY: usize = 10;
const DAY_MS: i64 = 86_400_000;

/// A data stream: the scope (account, region) it lives in and its name. Displayed as
/// its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataStreamId {
    pub scope: Scope,
    pub name: String,
}

impl DataStreamId {
    pub fn new(scope: &Scope, name: &str) -> Self {
        DataStreamId { scope: scope.clone(), name: name.to_string() }
    }

    /// `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`.
    pub fn arn(&self) -> String {
        self.scope.arn("kinesis", &format!("stream/{}", self.name))
    }

    /// The stream a Kinesis stream (or consumer) ARN names.
    pub fn from_arn(arn: &str) -> Result<Self> {
        let not_ours = || invalid(format!("StreamARN '{arn}' is not a Kinesis stream ARN."));
        let (scope, resource) = Scope::parse_arn(arn, "kinesis").ok_or_else(not_ours)?;
        let name = resource.strip_prefix("stream/").and_then(|r| r.split('/').next()).filter(|n| !n.is_empty());
        Ok(DataStreamId { scope, name: name.ok_or_else(not_ours)?.to_string() })
    }

    /// Its key in the engine's registry and the metadata store.
    pub fn key(&self) -> String {
        self.scope.key(&self.name)
    }
}

impl std::fmt::Display for DataStreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Errors, named as Kinesis names them; the API layer maps each to its wire code once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataStreamError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    ExpiredIterator(String),
    #[error("{0}")]
    ExpiredNextToken(String),
    #[error("{0}")]
    ProvisionedThroughputExceeded(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("The request would have succeeded, but the DryRun flag is set.")]
    DryRun,
    #[error("data stream storage failed: {0}")]
    Storage(#[source] StorageFailure),
    #[error(transparent)]
    DiskFull(#[from] crate::disk_space::DiskRefusal),
}

type Result<T, E = DataStreamError> = std::result::Result<T, E>;

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> DataStreamError {
    DataStreamError::Storage(StorageFailure::caused("the data stream store (data/data_streams)", e))
}

/// A storage failure with no underlying error to keep.
fn storage_failed(what: impl Into<String>) -> DataStreamError {
    DataStreamError::Storage(StorageFailure::new(what))
}

fn invalid(msg: impl Into<String>) -> DataStreamError {
    DataStreamError::InvalidArgument(msg.into())
}

/// How the engine behaves beyond AWS's fixed rules.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Enforce AWS's per-shard throughput limits (off by default).
    pub throughput_limits: bool,
    /// How long a created or resharded stream reports CREATING / UPDATING (AWS takes
    /// seconds; 0 here by default). Resharding takes effect at once either way.
    pub update_delay_ms: i64,
    pub roll: RollPolicy,
    /// The account's shard limit, reported by DescribeLimits and enforced on create
    /// and resharding.
    pub shard_limit: u32,
    /// Refuses puts before the filesystem fills up.
    pub disk: Arc<crate::disk_space::DiskGuard>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            throughput_limits: false,
            update_delay_ms: 0,
            roll: RollPolicy::default(),
            shard_limit: 10_000,
            disk: Arc::new(crate::disk_space::DiskGuard::unlimited()),
        }
    }
}

/// What CreateStream asks for; `Default` is a one-shard provisioned stream with AWS's
/// defaults for the rest.
#[derive(Debug, Clone, Default)]
pub struct NewDataStream {
    /// Required for provisioned streams; on-demand streams start with
    /// [`ON_DEMAND_SHARDS`].
    pub shard_count: Option<u32>,
    pub mode: Option<StreamMode>,
    pub max_record_kib: Option<u32>,
    pub tags: BTreeMap<String, String>,
    /// On-demand streams only.
    pub distribution: Option<RecordDistribution>,
    /// On-demand streams only, with the account's billing commitment on.
    pub warm_throughput_mibps: Option<u32>,
}

/// A record to put.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    /// Empty when the producer gave none (allowed on `AUTO` streams only).
    pub partition_key: String,
    pub data: Vec<u8>,
    /// Overrides the partition key's hash.
    pub explicit_hash_key: Option<u128>,
}

/// Where a put record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub shard_id: String,
    pub sequence_number: String,
}

/// One record's result in a batch: placed, or refused by the throughput limit.
pub type PutOutcome = std::result::Result<PutResult, DataStreamError>;

/// What PutRecords answers: each record's outcome, and whether the stream encrypts.
#[derive(Debug)]
pub struct PutRecordsOutput {
    pub records: Vec<PutOutcome>,
    pub encrypted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence_number: String,
    pub arrival_ms: i64,
    pub partition_key: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub hash_key_range: (u128, u128),
}

#[derive(Debug, Clone)]
pub struct GetRecordsOutput {
    pub records: Vec<Record>,
    /// `None` once a closed shard has been read to its end.
    pub next_iterator: Option<String>,
    pub millis_behind_latest: i64,
    pub child_shards: Vec<ChildShard>,
}

/// Where an iterator or subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
    AtSequence(String),
    AfterSequence(String),
    AtTimestamp(i64),
}

/// A snapshot of a stream for Describe* and List*.
#[derive(Debug, Clone)]
pub struct StreamView {
    pub meta: StreamMeta,
    pub arn: String,
    pub status: &'static str,
    /// Shards still listed (open, or closed with data inside retention), in id order.
    pub shards: Vec<ShardInfo>,
}

impl StreamView {
    pub fn open_shard_count(&self) -> usize {
        self.shards.iter().filter(|s| s.is_open()).count()
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerView {
    pub name: String,
    pub arn: String,
    pub stream_arn: String,
    pub created_s: i64,
    pub status: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    seq: u64,
    arrival_ms: i64,
    at: Location,
}

#[derive(Default)]
struct ShardRecords {
    entries: VecDeque<IndexEntry>,
    /// Records given sequence numbers but not yet synced and published.
    pending: u32,
}

struct StreamState {
    meta: StreamMeta,
    next_seq: u64,
    last_arrival_ms: i64,
    shards: Vec<ShardRecords>,
    throttles: Vec<ShardThrottle>,
    log: Box<dyn RecordLog>,
    deleted: bool,
}

impl StreamState {
    fn new(meta: StreamMeta, log: Box<dyn RecordLog>, now_ms: i64) -> Self {
        let mut state = StreamState {
            meta,
            next_seq: 1,
            last_arrival_ms: 0,
            shards: Vec::new(),
            throttles: Vec::new(),
            log,
            deleted: false,
        };
        state.ensure_shard_slots(now_ms);
        state
    }

    fn ensure_shard_slots(&mut self, now_ms: i64) {
        let n = self.meta.shard_map.shards.len();
        while self.shards.len() < n {
            self.shards.push(ShardRecords::default());
        }
        while self.throttles.len() < n {
            self.throttles.push(ShardThrottle::new(now_ms));
        }
    }

    fn retention_ms(&self) -> i64 {
        i64::from(self.meta.retention_hours) * 3_600_000
    }
}

pub(crate) struct StreamHandle {
    uid: u64,
    state: Mutex<StreamState>,
    /// Bumped whenever records are published or the topology changes.
    published: watch::Sender<u64>,
}

impl StreamHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.published.send_modify(|v| *v += 1);
    }
}

#[derive(Default)]
struct Registry {
    by_name: BTreeMap<String, Arc<StreamHandle>>,
    by_uid: HashMap<u64, Arc<StreamHandle>>,
}

/// (stream uid, consumer name, shard index).
type SubscriptionKey = (u64, String, u32);

struct Inner {
    /// Every stream's records: the engine's only way to them.
    logs: Arc<dyn RecordLogs>,
    clock: SharedClock,
    signer: TokenSigner,
    meta: Arc<dyn DataStreamMetaStore>,
    registry: RwLock<Registry>,
    writer: writer::WriterHandle,
    options: EngineOptions,
    next_uid: AtomicU64,
    /// (stream uid, consumer name, shard) → (started ms, generation) of the latest
    /// subscription; a newer one takes over after 5 s. Kept after a subscription ends:
    /// AWS refuses a new SubscribeToShard within 5 s of the last successful one, whether
    /// or not that one is still open.
    subscriptions: Mutex<HashMap<SubscriptionKey, (i64, u64)>>,
    subscription_gen: AtomicU64,
    /// Places the records of `AUTO` streams.
    spread: AtomicU64,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct DataStreamEngine {
    inner: Arc<Inner>,
}

/// A Kinesis resource name (streams, consumers, queues): 1–128 of `[a-zA-Z0-9_.-]`.
pub fn name_ok(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Checks one record against a stream's maximum record size (bytes) and its record
/// distribution (a partition key is needed unless the server places records).
fn check_record(r: &NewRecord, max: usize, distribution: RecordDistribution) -> Result<()> {
    let keys = r.partition_key.chars().count();
    if keys == 0 && distribution == RecordDistribution::Auto {
        // No key to check: the server places the record.
    } else if keys == 0 {
        return Err(invalid(
            "PartitionKey is required: the stream's RecordDistributionStrategy is USER_PARTITION_KEY (set AUTO to let the server place records without one).",
        ));
    } else if keys > 256 {
        return Err(invalid(format!(
            "1 validation error detected: Value '{}' at 'partitionKey' failed to satisfy constraint: Member must have length between 1 and 256",
            r.partition_key
        )));
    }
    if r.data.len() + r.partition_key.len() > max {
        return Err(invalid(format!(
            "Record size ({} bytes of data and partition key) exceeds the stream's maximum record size of {max} bytes.",
            r.data.len() + r.partition_key.len()
        )));
    }
    Ok(())
}

/// Checks that a new Kinesis resource of `kind` (`Queue`, `Channel`) named `name` is
/// the first of that name in `scope` and within the per-scope count `max`, given the
/// names the scope has.
pub fn check_new_resource<'a>(
    kind: &str,
    scope: &Scope,
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Result<()> {
    let mut count = 0;
    for n in existing {
        if n == name {
            return Err(DataStreamError::ResourceInUse(format!(
                "{kind} {name} under account {} already exists.",
                scope.account
            )));
        }
        count += 1;
    }
    if count >= max {
        return Err(DataStreamError::LimitExceeded(format!(
            "Account {} has {max} {}s in {}, the most this server allows.",
            scope.account,
            kind.to_lowercase(),
            scope.region
        )));
    }
    Ok(())
}

/// TagResource / UntagResource on a resource's tags: `add` checked, then added, `remove`
/// removed, and the result at most `max` tags (`kind` names the resource in the error).
pub fn change_tags(
    tags: &mut BTreeMap<String, String>,
    add: BTreeMap<String, String>,
    remove: &[String],
    max: usize,
    kind: &str,
) -> Result<()> {
    check_tags(&add)?;
    tags.extend(add);
    for k in remove {
        tags.remove(k);
    }
    if tags.len() > max {
        return Err(DataStreamError::LimitExceeded(format!("A {kind} can have at most {max} tags.")));
    }
    Ok(())
}

/// Checks a tag set as TagResource / AddTagsToStream do.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(invalid(format!("Tag key '{k}' must be 1-128 characters and its value at most 256")));
        }
        if k.starts_with("aws:") {
            return Err(invalid(format!("Tag key '{k}' uses the reserved prefix 'aws:'")));
        }
    }
    Ok(())
}

impl DataStreamEngine {
    /// Opens the engine over `data_dir/data_streams`, recovering every stream's records.
    /// Streams stored before scopes were recorded belong to `default_scope`.
    pub fn open(data_dir: &Path, clock: SharedClock, default_scope: &Scope, options: EngineOptions) -> Result<Self> {
        let dir = data_dir.join("data_streams");
        std::fs::create_dir_all(&dir).map_err(storage)?;
        let key = load_or_create_key(&data_dir.join("data_streams.key")).map_err(storage)?;
        let meta: Arc<dyn DataStreamMetaStore> =
            Arc::new(embedded::SledDataStreamMeta::open(&dir, default_scope).map_err(storage)?);
        let logs: Arc<dyn RecordLogs> = Arc::new(embedded::log_files::LogFiles::new(&dir));
        Self::open_with(meta, logs, key, clock, options)
    }

    /// Opens the engine over the streams `meta` describes and the records `logs` keeps,
    /// recovering every stream's records. `iterator_key` signs shard iterators: the
    /// same key across restarts keeps iterators valid.
    pub fn open_with(
        meta: Arc<dyn DataStreamMetaStore>,
        logs: Arc<dyn RecordLogs>,
        iterator_key: [u8; 32],
        clock: SharedClock,
        options: EngineOptions,
    ) -> Result<Self> {
        let signer = TokenSigner::new(iterator_key);
        let now = clock.now_ms();
        let mut registry = Registry::default();
        let mut max_uid = 0;
        for m in meta.load().map_err(DataStreamError::Storage)? {
            max_uid = max_uid.max(m.uid);
            let handle = Arc::new(Self::recover_stream(logs.as_ref(), m, now, options.roll)?);
            registry.by_uid.insert(handle.uid, handle.clone());
            let key = handle.lock().meta.id().key();
            registry.by_name.insert(key, handle);
        }
        let writer = writer::WriterHandle::start(clock.clone(), options.throughput_limits).map_err(storage)?;
        Ok(DataStreamEngine {
            inner: Arc::new(Inner {
                logs,
                clock,
                signer,
                meta,
                registry: RwLock::new(registry),
                writer,
                options,
                next_uid: AtomicU64::new(max_uid.max(now as u64) + 1),
                subscriptions: Mutex::new(HashMap::new()),
                subscription_gen: AtomicU64::new(1),
                spread: AtomicU64::new(0),
            }),
        })
    }

    fn recover_stream(logs: &dyn RecordLogs, meta: StreamMeta, now_ms: i64, roll: RollPolicy) -> Result<StreamHandle> {
        let (log, frames) = logs.open(&meta.uid.to_string(), roll).map_err(DataStreamError::Storage)?;
        let mut state = StreamState::new(meta, log, now_ms);
        let mut next_seq = 1u64;
        for s in &state.meta.shard_map.shards {
            next_seq = next_seq.max(s.start_seq).max(s.end_seq.map_or(0, |e| e + 1));
        }
        for f in frames {
            let Some(shard) = state.shards.get_mut(f.shard as usize) else {
                tracing::warn!(stream = %state.meta.name, shard = f.shard, "a record names a shard the stream does not have; skipped");
                continue;
            };
            if shard.entries.back().is_some_and(|e| e.seq >= f.seq) {
                continue;
            }
            shard.entries.push_back(IndexEntry { seq: f.seq, arrival_ms: f.arrival_ms, at: f.at });
            next_seq = next_seq.max(f.seq.saturating_add(1));
            state.last_arrival_ms = state.last_arrival_ms.max(f.arrival_ms);
        }
        state.next_seq = next_seq;
        let uid = state.meta.uid;
        Ok(StreamHandle { uid, state: Mutex::new(state), published: watch::channel(0).0 })
    }

    /// The engine clock's time (also for the page tokens the API layer makes).
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Signs a page token (ListShards, ListStreams, ListStreamConsumers).
    pub fn sign_token(&self, payload: &[u8]) -> String {
        self.inner.signer.sign(payload)
    }

    pub fn open_token(&self, token: &str) -> Result<Vec<u8>, crate::secrets::TokenError> {
        self.inner.signer.open(token)
    }

    fn consumer_arn(&self, stream: &DataStreamId, c: &ConsumerMeta) -> String {
        format!("{}/consumer/{}:{}", stream.arn(), c.name, c.created_s)
    }

    fn not_found(&self, name: &DataStreamId) -> DataStreamError {
        DataStreamError::ResourceNotFound(format!("Stream {name} under account {} not found.", name.scope.account))
    }

    fn handle(&self, name: &DataStreamId) -> Result<Arc<StreamHandle>> {
        let reg = self.inner.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_name.get(&name.key()).cloned().ok_or_else(|| self.not_found(name))
    }

    fn status(&self, meta: &StreamMeta, now: i64) -> &'static str {
        if now < meta.created_ms + self.inner.options.update_delay_ms {
            "CREATING"
        } else if now < meta.updating_until_ms {
            "UPDATING"
        } else {
            "ACTIVE"
        }
    }

    fn view(&self, state: &StreamState, now: i64) -> StreamView {
        let horizon = now - state.retention_ms();
        let shards =
            state.meta.shard_map.shards.iter().filter(|s| s.closed_ms.is_none_or(|c| c >= horizon)).cloned().collect();
        StreamView {
            arn: state.meta.id().arn(),
            status: self.status(&state.meta, now),
            meta: state.meta.clone(),
            shards,
        }
    }

    fn save(&self, meta: &StreamMeta) -> Result<()> {
        self.inner.meta.save(meta).map_err(DataStreamError::Storage)
    }

    /// Every stream's handle, in key order (the registry lock is not held after).
    fn handles(&self) -> Vec<Arc<StreamHandle>> {
        let reg = self.inner.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_name.values().cloned().collect()
    }

    /// The handles of one scope's streams, in name order.
    fn handles_in(&self, scope: &Scope) -> Vec<Arc<StreamHandle>> {
        let prefix = scope.key_prefix();
        let reg = self.inner.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_name
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, h)| h.clone())
            .collect()
    }

    /// Open shards of one scope (the account's limit is per region).
    fn open_shards_total(&self, scope: &Scope) -> u32 {
        self.handles_in(scope).iter().map(|h| h.lock().meta.shard_map.open_count()).sum()
    }

    // ---- records in ----------------------------------------------------------------

    /// Checks a record against the stream's limits, as PutRecord(s) do before writing.
    pub fn check_record(&self, name: &DataStreamId, r: &NewRecord) -> Result<()> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        check_record(r, state.meta.max_record_kib as usize * 1024, state.meta.distribution)
    }

    /// Puts records into `name`, returning once they are on disk. Each record is
    /// placed or (with throughput limits on) refused on its own.
    pub async fn put_records(&self, name: &DataStreamId, records: Vec<NewRecord>) -> Result<PutRecordsOutput> {
        let count = if records.is_empty() {
            Some("greater than or equal to 1".to_string())
        } else {
            (records.len() > MAX_PUT_RECORDS).then(|| format!("less than or equal to {MAX_PUT_RECORDS}"))
        };
        if let Some(bound) = count {
            return Err(DataStreamError::Validation(format!(
                "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length {bound}"
            )));
        }
        let total: usize = records.iter().map(|r| r.data.len() + r.partition_key.len()).sum();
        if total > MAX_PUT_RECORDS_BYTES {
            return Err(invalid(format!("Records size exceeds {} MB limit", MAX_PUT_RECORDS_BYTES >> 20)));
        }
        let handle = self.handle(name)?;
        self.inner.options.disk.check((total + 64 * records.len()) as u64)?;
        let (max, encrypted, distribution) = {
            let state = handle.lock();
            (state.meta.max_record_kib as usize * 1024, state.meta.encryption_key.is_some(), state.meta.distribution)
        };
        let mut records = records;
        for r in &mut records {
            check_record(r, max, distribution)?;
            if distribution == RecordDistribution::Auto {
                // AUTO ignores keys and explicit hash keys: consecutive records land on
                // hash points a golden-ratio step apart, an even spread over any shards.
                let n = self.inner.spread.fetch_add(1, Ordering::Relaxed);
                r.explicit_hash_key = Some(u128::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
            }
        }
        let placed = self.inner.writer.put(handle, records).await?;
        let records = placed
            .into_iter()
            .map(|p| {
                p.map(|(shard, seq)| PutResult { shard_id: shard_id(shard), sequence_number: format_sequence(seq) })
            })
            .collect();
        Ok(PutRecordsOutput { records, encrypted })
    }

    /// Puts one record; a throughput refusal is the call's error.
    pub async fn put_record(&self, name: &DataStreamId, record: NewRecord) -> Result<PutResult> {
        let mut out = self.put_records(name, vec![record]).await?;
        out.records.pop().unwrap_or_else(|| Err(storage_failed("the writer returned no result")))
    }

    // ---- retention -----------------------------------------------------------------

    /// Drops records past each stream's retention, whole segment files at a time on
    /// disk; returns the number of index entries dropped.
    pub fn sweep(&self) -> Result<usize> {
        let now = self.now_ms();
        let mut dropped = 0;
        for h in self.handles() {
            let mut state = h.lock();
            let horizon = now - state.retention_ms();
            for shard in &mut state.shards {
                while shard.entries.front().is_some_and(|e| e.arrival_ms < horizon) {
                    shard.entries.pop_front();
                    dropped += 1;
                }
            }
            // A dropped segment holds only records that arrived before the horizon,
            // and those left the index just above.
            state.log.drop_older_than(horizon).map_err(DataStreamError::Storage)?;
        }
        Ok(dropped)
    }

    /// A receiver that changes whenever records are published to `name` (or its shards
    /// change, or it is deleted): in-process readers wait on it instead of polling.
    pub fn watch(&self, name: &DataStreamId) -> Result<watch::Receiver<u64>> {
        Ok(self.handle(name)?.published.subscribe())
    }

    /// Records held in a shard's index (for tests and benches).
    pub fn stored_records(&self, name: &DataStreamId) -> Result<usize> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        Ok(state.shards.iter().map(|s| s.entries.len()).sum())
    }
}

#[cfg(test)]
mod tests;
