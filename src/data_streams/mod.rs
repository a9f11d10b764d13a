//! The data-stream engine: Kinesis Data Streams' streams, shards, sequence numbers,
//! iterators, resharding and enhanced fan-out, with a plain Rust API so the video side
//! publishes events without HTTP.
//!
//! - [`keys`]: hash keys, sequence numbers and shard ids (pure).
//! - [`shard_map`]: a stream's shard topology and resharding (pure).
//! - [`record_log`]: records on disk, append-only checksummed segment files.
//! - [`meta_store`]: stream metadata in sled.
//! - [`writer`]: the one thread that appends, syncs and publishes records.
//! - [`throttle`]: the optional per-shard throughput limits.
//!
//! A put is acknowledged only after its frames are synced; concurrent puts share syncs.
//! Each shard's index (sequence → file location) lives in memory and is rebuilt from
//! the segment files on open. Iterators and list tokens are signed with a key in
//! `data/data_streams.key`: they cannot be forged or pointed elsewhere.

pub mod keys;
pub mod meta_store;
pub mod record_log;
pub mod shard_map;
pub mod throttle;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::secrets::{load_or_create_key, TokenSigner};
use keys::{format_sequence, parse_sequence, parse_shard_id, shard_id};
use meta_store::{ConsumerMeta, MetaStore, StreamMeta, StreamMode};
use record_log::{decode_frame, read_frames, Location, RollPolicy, SegmentLog};
use shard_map::{Counter, ReshardError, ShardInfo, ShardMap};
use throttle::ShardThrottle;

pub use meta_store::StreamMode as Mode;

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
pub const SUBSCRIPTION_MS: i64 = 300_000;
pub const SUBSCRIPTION_TAKEOVER_MS: i64 = 5_000;
const SCALING_OPS_PER_DAY: usize = 10;
const DAY_MS: i64 = 86_400_000;

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
    #[error("The request would have succeeded, but the DryRun flag is set.")]
    DryRun,
    #[error("data stream storage failed: {0}")]
    Storage(String),
}

type Result<T, E = DataStreamError> = std::result::Result<T, E>;

fn storage(e: impl std::fmt::Display) -> DataStreamError {
    DataStreamError::Storage(e.to_string())
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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { throughput_limits: false, update_delay_ms: 0, roll: RollPolicy::default(), shard_limit: 10_000 }
    }
}

/// A record to put.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
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
    log: SegmentLog,
    deleted: bool,
}

impl StreamState {
    fn new(meta: StreamMeta, log: SegmentLog, now_ms: i64) -> Self {
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
    dir: PathBuf,
    clock: SharedClock,
    region: String,
    account: String,
    signer: TokenSigner,
    meta: MetaStore,
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
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct DataStreamEngine {
    inner: Arc<Inner>,
}

fn name_ok(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Checks one record against a stream's maximum record size (bytes).
fn check_record(r: &NewRecord, max: usize) -> Result<()> {
    let keys = r.partition_key.chars().count();
    if !(1..=256).contains(&keys) {
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

/// Checks a tag set as TagResource / AddTagsToStream do.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
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
    pub fn open(
        data_dir: &Path,
        clock: SharedClock,
        region: &str,
        account: &str,
        options: EngineOptions,
    ) -> Result<Self> {
        let dir = data_dir.join("data_streams");
        std::fs::create_dir_all(&dir).map_err(storage)?;
        let signer = TokenSigner::new(load_or_create_key(&data_dir.join("data_streams.key")).map_err(storage)?);
        let meta = MetaStore::open(&dir).map_err(storage)?;
        let now = clock.now_ms();
        let mut registry = Registry::default();
        let mut max_uid = 0;
        for m in meta.load().map_err(storage)? {
            max_uid = max_uid.max(m.uid);
            let handle = Arc::new(Self::recover_stream(&dir, m, now, options.roll)?);
            registry.by_uid.insert(handle.uid, handle.clone());
            let name = handle.lock().meta.name.clone();
            registry.by_name.insert(name, handle);
        }
        let writer = writer::WriterHandle::start(clock.clone(), options.throughput_limits).map_err(storage)?;
        Ok(DataStreamEngine {
            inner: Arc::new(Inner {
                dir,
                clock,
                region: region.to_string(),
                account: account.to_string(),
                signer,
                meta,
                registry: RwLock::new(registry),
                writer,
                options,
                next_uid: AtomicU64::new(max_uid.max(now as u64) + 1),
                subscriptions: Mutex::new(HashMap::new()),
                subscription_gen: AtomicU64::new(1),
            }),
        })
    }

    fn recover_stream(dir: &Path, meta: StreamMeta, now_ms: i64, roll: RollPolicy) -> Result<StreamHandle> {
        let (log, frames) = SegmentLog::open(&dir.join(meta.uid.to_string()), roll).map_err(storage)?;
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
            next_seq = next_seq.max(f.seq + 1);
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

    pub fn stream_arn(&self, name: &str) -> String {
        format!("arn:aws:kinesis:{}:{}:stream/{name}", self.inner.region, self.inner.account)
    }

    fn consumer_arn(&self, stream: &str, c: &ConsumerMeta) -> String {
        format!("{}/consumer/{}:{}", self.stream_arn(stream), c.name, c.created_s)
    }

    /// The stream name an ARN of this server names.
    pub fn name_from_arn(&self, arn: &str) -> Result<String> {
        let prefix = format!("arn:aws:kinesis:{}:{}:stream/", self.inner.region, self.inner.account);
        match arn.strip_prefix(&prefix) {
            Some(rest) if !rest.is_empty() => Ok(rest.split('/').next().unwrap_or(rest).to_string()),
            _ if arn.starts_with("arn:aws") && arn.contains(":kinesis:") => {
                Err(DataStreamError::ResourceNotFound(format!("Stream {arn} not found.")))
            }
            _ => Err(invalid(format!("StreamARN '{arn}' is not a Kinesis stream ARN."))),
        }
    }

    fn not_found(&self, name: &str) -> DataStreamError {
        DataStreamError::ResourceNotFound(format!("Stream {name} under account {} not found.", self.inner.account))
    }

    fn handle(&self, name: &str) -> Result<Arc<StreamHandle>> {
        let reg = self.inner.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_name.get(name).cloned().ok_or_else(|| self.not_found(name))
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
            arn: self.stream_arn(&state.meta.name),
            status: self.status(&state.meta, now),
            meta: state.meta.clone(),
            shards,
        }
    }

    fn save(&self, meta: &StreamMeta) -> Result<()> {
        self.inner.meta.save(meta).map_err(storage)
    }

    /// Every stream's handle, in name order (the registry lock is not held after).
    fn handles(&self) -> Vec<Arc<StreamHandle>> {
        let reg = self.inner.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_name.values().cloned().collect()
    }

    fn open_shards_total(&self) -> u32 {
        self.handles().iter().map(|h| h.lock().meta.shard_map.open_count()).sum()
    }

    // ---- control plane -------------------------------------------------------------

    pub fn create_stream(
        &self,
        name: &str,
        shard_count: Option<u32>,
        mode: StreamMode,
        max_record_kib: Option<u32>,
        tags: BTreeMap<String, String>,
    ) -> Result<StreamView> {
        if !name_ok(name) {
            return Err(invalid(format!("StreamName '{name}' must be 1-128 characters from [a-zA-Z0-9_.-].")));
        }
        let count = match (mode, shard_count) {
            (StreamMode::Provisioned, Some(n)) if n >= 1 => n,
            (StreamMode::Provisioned, Some(_)) => return Err(invalid("ShardCount must be at least 1.")),
            (StreamMode::Provisioned, None) => return Err(invalid("ShardCount is required for a PROVISIONED stream.")),
            (StreamMode::OnDemand, _) => ON_DEMAND_SHARDS,
        };
        if count > MAX_SHARDS_PER_STREAM {
            return Err(DataStreamError::LimitExceeded(format!(
                "A stream can have at most {MAX_SHARDS_PER_STREAM} shards; {count} were requested."
            )));
        }
        let kib = max_record_kib.unwrap_or(DEFAULT_MAX_RECORD_KIB);
        if !(DEFAULT_MAX_RECORD_KIB..=MAX_RECORD_KIB).contains(&kib) {
            return Err(DataStreamError::Validation(format!(
                "MaxRecordSizeInKiB must be between {DEFAULT_MAX_RECORD_KIB} and {MAX_RECORD_KIB}; got {kib}."
            )));
        }
        check_tags(&tags)?;
        if tags.len() > MAX_TAGS {
            return Err(invalid(format!("A stream can have at most {MAX_TAGS} tags.")));
        }
        let open = self.open_shards_total();
        if open + count > self.inner.options.shard_limit {
            return Err(DataStreamError::LimitExceeded(format!(
                "This request would exceed the shard limit for the account {}: {} open, {count} requested, limit {}.",
                self.inner.account, open, self.inner.options.shard_limit
            )));
        }
        let now = self.now_ms();
        let uid = self.inner.next_uid.fetch_add(1, Ordering::SeqCst);
        let meta = StreamMeta {
            name: name.to_string(),
            uid,
            created_ms: now,
            mode,
            retention_hours: DEFAULT_RETENTION_HOURS,
            shard_map: ShardMap::new(count, 1, now),
            tags,
            consumers: Vec::new(),
            encryption_key: None,
            max_record_kib: kib,
            enhanced_metrics: BTreeSet::new(),
            scaling_ops_ms: Vec::new(),
            updating_until_ms: 0,
        };
        let mut reg = self.inner.registry.write().unwrap_or_else(|p| p.into_inner());
        if reg.by_name.contains_key(name) {
            return Err(DataStreamError::ResourceInUse(format!(
                "Stream {name} under account {} already exists.",
                self.inner.account
            )));
        }
        let (log, _) =
            SegmentLog::open(&self.inner.dir.join(uid.to_string()), self.inner.options.roll).map_err(storage)?;
        self.save(&meta)?;
        let state = StreamState::new(meta, log, now);
        let view = self.view(&state, now);
        let handle = Arc::new(StreamHandle { uid, state: Mutex::new(state), published: watch::channel(0).0 });
        reg.by_uid.insert(uid, handle.clone());
        reg.by_name.insert(name.to_string(), handle);
        tracing::info!(stream = name, shards = count, mode = mode.as_str(), "data stream created");
        Ok(view)
    }

    pub fn delete_stream(&self, name: &str, enforce_consumer_deletion: bool) -> Result<()> {
        let handle = self.handle(name)?;
        {
            let state = handle.lock();
            if !state.meta.consumers.is_empty() && !enforce_consumer_deletion {
                return Err(DataStreamError::ResourceInUse(format!(
                    "Stream {name} has {} registered consumers; deregister them or set EnforceConsumerDeletion.",
                    state.meta.consumers.len()
                )));
            }
        }
        {
            let mut reg = self.inner.registry.write().unwrap_or_else(|p| p.into_inner());
            reg.by_name.remove(name);
            reg.by_uid.remove(&handle.uid);
        }
        self.inner.meta.delete(name).map_err(storage)?;
        handle.lock().deleted = true;
        handle.notify();
        let dir = self.inner.dir.join(handle.uid.to_string());
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted stream's records");
        }
        tracing::info!(stream = name, "data stream deleted");
        Ok(())
    }

    pub fn describe(&self, name: &str) -> Result<StreamView> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        Ok(self.view(&state, self.now_ms()))
    }

    /// Every stream, in name order.
    pub fn list(&self) -> Vec<StreamView> {
        let now = self.now_ms();
        self.handles().iter().map(|h| self.view(&h.lock(), now)).collect()
    }

    /// Runs `f` on a stream's metadata and saves it if `f` succeeds.
    fn update<T>(&self, name: &str, f: impl FnOnce(&mut StreamMeta, i64) -> Result<T>) -> Result<T> {
        let handle = self.handle(name)?;
        let mut state = handle.lock();
        let now = self.now_ms();
        let mut meta = state.meta.clone();
        let out = f(&mut meta, now)?;
        self.save(&meta)?;
        state.meta = meta;
        Ok(out)
    }

    fn require_active(&self, meta: &StreamMeta, now: i64) -> Result<()> {
        match self.status(meta, now) {
            "ACTIVE" => Ok(()),
            s => Err(DataStreamError::ResourceInUse(format!(
                "Stream {} under account {} not ACTIVE, instead in state {s}",
                meta.name, self.inner.account
            ))),
        }
    }

    pub fn change_retention(&self, name: &str, hours: i64, increase: bool) -> Result<()> {
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            let current = i64::from(m.retention_hours);
            if increase {
                if hours > i64::from(MAX_RETENTION_HOURS) {
                    return Err(invalid(format!(
                        "Minimum allowed retention period is {DEFAULT_RETENTION_HOURS} hours. Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too long."
                    )));
                }
                if hours < current {
                    return Err(invalid(format!(
                        "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
                    )));
                }
            } else {
                if hours < i64::from(DEFAULT_RETENTION_HOURS) {
                    return Err(invalid(format!(
                        "Minimum allowed retention period is {DEFAULT_RETENTION_HOURS} hours. Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too short."
                    )));
                }
                if hours > current {
                    return Err(invalid(format!(
                        "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
                    )));
                }
            }
            m.retention_hours = hours as u32;
            Ok(())
        })
    }

    /// Applies a resharding step under the stream's lock, so that no put is routed
    /// between the old and the new topology.
    fn reshard(
        &self,
        name: &str,
        op: impl FnOnce(&mut ShardMap, &mut Counter, i64) -> Result<(), ReshardError>,
    ) -> Result<()> {
        let handle = self.handle(name)?;
        {
            let mut state = handle.lock();
            let now = self.now_ms();
            self.require_active(&state.meta, now)?;
            if state.meta.mode == StreamMode::OnDemand {
                return Err(DataStreamError::Validation(format!(
                    "Stream {name} is in ON_DEMAND mode; resharding is only for PROVISIONED streams."
                )));
            }
            let mut meta = state.meta.clone();
            let mut next_seq = state.next_seq;
            op(&mut meta.shard_map, &mut Counter(&mut next_seq), now).map_err(|e| match e {
                ReshardError::NoSuchShard(_) => DataStreamError::ResourceNotFound(e.to_string()),
                ReshardError::Count(_) => DataStreamError::Validation(e.to_string()),
                _ => invalid(e.to_string()),
            })?;
            let open = meta.shard_map.open_count();
            if open > MAX_SHARDS_PER_STREAM {
                return Err(DataStreamError::LimitExceeded(format!(
                    "A stream can have at most {MAX_SHARDS_PER_STREAM} open shards."
                )));
            }
            meta.updating_until_ms = now + self.inner.options.update_delay_ms;
            self.save(&meta)?;
            state.meta = meta;
            state.next_seq = next_seq;
            state.ensure_shard_slots(now);
        }
        handle.notify();
        Ok(())
    }

    fn shard_index(&self, name: &str, shard: &str) -> Result<u32> {
        parse_shard_id(shard).ok_or_else(|| {
            DataStreamError::ResourceNotFound(format!(
                "Could not find shard {shard} in stream {name} under account {}.",
                self.inner.account
            ))
        })
    }

    pub fn split_shard(&self, name: &str, shard: &str, new_starting_hash_key: u128) -> Result<()> {
        let index = self.shard_index(name, shard)?;
        self.reshard(name, |map, counter, now| map.split(index, new_starting_hash_key, counter, now).map(|_| ()))
    }

    pub fn merge_shards(&self, name: &str, shard: &str, adjacent: &str) -> Result<()> {
        let (a, b) = (self.shard_index(name, shard)?, self.shard_index(name, adjacent)?);
        self.reshard(name, |map, counter, now| map.merge(a, b, counter, now).map(|_| ()))
    }

    /// UpdateShardCount (UNIFORM_SCALING); returns (current, target).
    pub fn update_shard_count(&self, name: &str, target: u32) -> Result<(u32, u32)> {
        let handle = self.handle(name)?;
        let current = {
            let state = handle.lock();
            let now = self.now_ms();
            let current = state.meta.shard_map.open_count();
            if target == 0 || target > current * 2 || target * 2 < current {
                return Err(invalid(format!(
                    "UpdateShardCount can scale from {current} shards to between {} and {} shards; {target} was requested.",
                    current.div_ceil(2),
                    current * 2
                )));
            }
            if target > MAX_SHARDS_PER_STREAM {
                return Err(DataStreamError::LimitExceeded(format!(
                    "A stream can have at most {MAX_SHARDS_PER_STREAM} shards."
                )));
            }
            let recent = state.meta.scaling_ops_ms.iter().filter(|t| **t > now - DAY_MS).count();
            if recent >= SCALING_OPS_PER_DAY {
                return Err(DataStreamError::LimitExceeded(format!(
                    "Stream {name} has been scaled {recent} times in the last 24 hours; the limit is {SCALING_OPS_PER_DAY}."
                )));
            }
            current
        };
        if target > current && self.open_shards_total() + target - current > self.inner.options.shard_limit {
            return Err(DataStreamError::LimitExceeded(format!(
                "Scaling to {target} shards would exceed the account's shard limit of {}.",
                self.inner.options.shard_limit
            )));
        }
        if target != current {
            self.reshard(name, |map, counter, now| map.scale_uniform(target, counter, now))?;
        }
        self.update(name, |m, now| {
            m.scaling_ops_ms.retain(|t| *t > now - DAY_MS);
            m.scaling_ops_ms.push(now);
            Ok(())
        })?;
        Ok((current, target))
    }

    pub fn set_stream_mode(&self, name: &str, mode: StreamMode) -> Result<()> {
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            if m.mode == mode {
                return Err(invalid(format!("Stream {name} is already in {} mode.", mode.as_str())));
            }
            m.mode = mode;
            m.updating_until_ms = now + self.inner.options.update_delay_ms;
            Ok(())
        })
    }

    pub fn set_max_record_size(&self, name: &str, kib: u32) -> Result<()> {
        if !(DEFAULT_MAX_RECORD_KIB..=MAX_RECORD_KIB).contains(&kib) {
            return Err(DataStreamError::Validation(format!(
                "MaxRecordSizeInKiB must be between {DEFAULT_MAX_RECORD_KIB} and {MAX_RECORD_KIB}; got {kib}."
            )));
        }
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            m.max_record_kib = kib;
            Ok(())
        })
    }

    /// Start (`Some(key)`) or stop (`None`) server-side encryption: stored and
    /// reported; records are not encrypted at rest by this server.
    pub fn set_encryption(&self, name: &str, key_id: Option<String>) -> Result<()> {
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            m.encryption_key = key_id;
            Ok(())
        })
    }

    /// Enables or disables enhanced metrics; returns (before, after).
    pub fn set_enhanced_metrics(
        &self,
        name: &str,
        metrics: &[String],
        enable: bool,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
        const ALL: [&str; 7] = [
            "IncomingBytes",
            "IncomingRecords",
            "OutgoingBytes",
            "OutgoingRecords",
            "WriteProvisionedThroughputExceeded",
            "ReadProvisionedThroughputExceeded",
            "IteratorAgeMilliseconds",
        ];
        let mut chosen = BTreeSet::new();
        for m in metrics {
            match m.as_str() {
                "ALL" => chosen.extend(ALL.iter().map(|s| s.to_string())),
                s if ALL.contains(&s) => {
                    chosen.insert(s.to_string());
                }
                s => return Err(invalid(format!("Unknown shard-level metric '{s}'."))),
            }
        }
        self.update(name, |m, _| {
            let before = m.enhanced_metrics.clone();
            if enable {
                m.enhanced_metrics.extend(chosen);
            } else {
                m.enhanced_metrics.retain(|x| !chosen.contains(x));
            }
            Ok((before, m.enhanced_metrics.clone()))
        })
    }

    pub fn add_tags(&self, name: &str, tags: BTreeMap<String, String>) -> Result<()> {
        check_tags(&tags)?;
        self.update(name, |m, _| {
            let mut merged = m.tags.clone();
            merged.extend(tags);
            if merged.len() > MAX_TAGS {
                return Err(DataStreamError::LimitExceeded(format!(
                    "Stream {name} would have {} tags; the limit is {MAX_TAGS}.",
                    merged.len()
                )));
            }
            m.tags = merged;
            Ok(())
        })
    }

    pub fn remove_tags(&self, name: &str, keys: &[String]) -> Result<()> {
        self.update(name, |m, _| {
            for k in keys {
                m.tags.remove(k);
            }
            Ok(())
        })
    }

    // ---- consumers -----------------------------------------------------------------

    fn consumer_view(&self, stream: &str, c: &ConsumerMeta, now: i64) -> ConsumerView {
        let ready = c.created_s * 1000 + self.inner.options.update_delay_ms;
        ConsumerView {
            name: c.name.clone(),
            arn: self.consumer_arn(stream, c),
            stream_arn: self.stream_arn(stream),
            created_s: c.created_s,
            status: if now < ready { "CREATING" } else { "ACTIVE" },
        }
    }

    pub fn register_consumer(
        &self,
        name: &str,
        consumer: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<ConsumerView> {
        if !name_ok(consumer) {
            return Err(invalid(format!("ConsumerName '{consumer}' must be 1-128 characters from [a-zA-Z0-9_.-].")));
        }
        check_tags(&tags)?;
        self.update(name, |m, now| {
            if m.consumers.iter().any(|c| c.name == consumer) {
                return Err(DataStreamError::ResourceInUse(format!(
                    "Consumer {consumer} under stream {name} already exists."
                )));
            }
            if m.consumers.len() >= MAX_CONSUMERS_PER_STREAM {
                return Err(DataStreamError::LimitExceeded(format!(
                    "Stream {name} already has {MAX_CONSUMERS_PER_STREAM} consumers, the limit."
                )));
            }
            let c = ConsumerMeta { name: consumer.to_string(), created_s: now / 1000, tags };
            let view = self.consumer_view(name, &c, now);
            m.consumers.push(c);
            Ok(view)
        })
    }

    /// The stream and consumer a consumer ARN names.
    pub fn resolve_consumer_arn(&self, arn: &str) -> Result<(String, String)> {
        let not_found = || DataStreamError::ResourceNotFound(format!("Consumer {arn} not found."));
        let stream = self.name_from_arn(arn).map_err(|_| not_found())?;
        let rest = arn.split_once("/consumer/").map(|(_, r)| r).ok_or_else(not_found)?;
        let (consumer, created) = rest.rsplit_once(':').ok_or_else(not_found)?;
        let handle = self.handle(&stream).map_err(|_| not_found())?;
        let state = handle.lock();
        state
            .meta
            .consumers
            .iter()
            .find(|c| c.name == consumer && c.created_s.to_string() == created)
            .map(|c| (stream.clone(), c.name.clone()))
            .ok_or_else(not_found)
    }

    pub fn describe_consumer(&self, name: &str, consumer: &str) -> Result<ConsumerView> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        state
            .meta
            .consumers
            .iter()
            .find(|c| c.name == consumer)
            .map(|c| self.consumer_view(name, c, self.now_ms()))
            .ok_or_else(|| {
                DataStreamError::ResourceNotFound(format!("Consumer {consumer} under stream {name} not found."))
            })
    }

    pub fn list_consumers(&self, name: &str) -> Result<Vec<ConsumerView>> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        let now = self.now_ms();
        let mut v: Vec<ConsumerView> = state.meta.consumers.iter().map(|c| self.consumer_view(name, c, now)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    pub fn deregister_consumer(&self, name: &str, consumer: &str) -> Result<()> {
        self.update(name, |m, _| {
            let before = m.consumers.len();
            m.consumers.retain(|c| c.name != consumer);
            if m.consumers.len() == before {
                return Err(DataStreamError::ResourceNotFound(format!(
                    "Consumer {consumer} under stream {name} not found."
                )));
            }
            Ok(())
        })
    }

    pub fn consumer_tags(&self, name: &str, consumer: &str) -> Result<BTreeMap<String, String>> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        state.meta.consumers.iter().find(|c| c.name == consumer).map(|c| c.tags.clone()).ok_or_else(|| {
            DataStreamError::ResourceNotFound(format!("Consumer {consumer} under stream {name} not found."))
        })
    }

    pub fn update_consumer_tags(
        &self,
        name: &str,
        consumer: &str,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<()>,
    ) -> Result<()> {
        self.update(name, |m, _| {
            let c = m.consumers.iter_mut().find(|c| c.name == consumer).ok_or_else(|| {
                DataStreamError::ResourceNotFound(format!("Consumer {consumer} under stream {name} not found."))
            })?;
            f(&mut c.tags)?;
            if c.tags.len() > MAX_TAGS {
                return Err(DataStreamError::LimitExceeded(format!("A consumer can have at most {MAX_TAGS} tags.")));
            }
            Ok(())
        })
    }

    pub fn resource_policy(&self, arn: &str) -> Result<Option<String>> {
        self.inner.meta.policy(arn).map_err(storage)
    }

    pub fn set_resource_policy(&self, arn: &str, policy: Option<&str>) -> Result<()> {
        self.inner.meta.set_policy(arn, policy).map_err(storage)
    }

    /// (shard limit, open shards, on-demand streams) for DescribeLimits.
    pub fn limits(&self) -> (u32, u32, u32) {
        let (mut open, mut on_demand) = (0, 0);
        for h in self.handles() {
            let state = h.lock();
            open += state.meta.shard_map.open_count();
            on_demand += u32::from(state.meta.mode == StreamMode::OnDemand);
        }
        (self.inner.options.shard_limit, open, on_demand)
    }

    // ---- records in ----------------------------------------------------------------

    /// Checks a record against the stream's limits, as PutRecord(s) do before writing.
    pub fn check_record(&self, name: &str, r: &NewRecord) -> Result<()> {
        let kib = self.handle(name)?.lock().meta.max_record_kib;
        check_record(r, kib as usize * 1024)
    }

    /// Puts records into `name`, returning once they are on disk. Each record is
    /// placed or (with throughput limits on) refused on its own.
    pub async fn put_records(&self, name: &str, records: Vec<NewRecord>) -> Result<PutRecordsOutput> {
        if records.is_empty() || records.len() > MAX_PUT_RECORDS {
            return Err(invalid(format!(
                "A PutRecords request holds 1 to {MAX_PUT_RECORDS} records; it had {}.",
                records.len()
            )));
        }
        let total: usize = records.iter().map(|r| r.data.len() + r.partition_key.len()).sum();
        if total > MAX_PUT_RECORDS_BYTES {
            return Err(invalid(format!(
                "The PutRecords request holds {total} bytes; the limit is {MAX_PUT_RECORDS_BYTES} bytes."
            )));
        }
        let handle = self.handle(name)?;
        let (max, encrypted) = {
            let state = handle.lock();
            (state.meta.max_record_kib as usize * 1024, state.meta.encryption_key.is_some())
        };
        for r in &records {
            check_record(r, max)?;
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
    pub async fn put_record(&self, name: &str, record: NewRecord) -> Result<PutResult> {
        let mut out = self.put_records(name, vec![record]).await?;
        out.records.pop().unwrap_or_else(|| Err(DataStreamError::Storage("the writer returned no result".into())))
    }

    // ---- records out ---------------------------------------------------------------

    fn iterator_token(&self, uid: u64, shard: u32, pos: u64) -> String {
        let mut p = Vec::with_capacity(28);
        p.extend_from_slice(&uid.to_be_bytes());
        p.extend_from_slice(&shard.to_be_bytes());
        p.extend_from_slice(&pos.to_be_bytes());
        p.extend_from_slice(&self.now_ms().to_be_bytes());
        self.inner.signer.sign(&p)
    }

    fn open_iterator(&self, token: &str) -> Result<(u64, u32, u64, i64)> {
        let bad = || invalid(format!("Invalid ShardIterator: {}", token.chars().take(64).collect::<String>()));
        let p = self.inner.signer.open(token).map_err(|_| bad())?;
        if p.len() != 28 {
            return Err(bad());
        }
        let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
        let shard = u32::from_be_bytes(p[8..12].try_into().unwrap_or([0; 4]));
        Ok((u64_at(0), shard, u64_at(12), u64_at(20) as i64))
    }

    fn shard_for_read<'a>(&self, state: &'a StreamState, shard: &str) -> Result<&'a ShardInfo> {
        let name = &state.meta.name;
        let missing = || {
            DataStreamError::ResourceNotFound(format!(
                "Shard {shard} in stream {name} under account {} does not exist",
                self.inner.account
            ))
        };
        let index = parse_shard_id(shard).ok_or_else(missing)?;
        state.meta.shard_map.get(index).ok_or_else(missing)
    }

    /// The first counter value a starting position reads from in a shard.
    fn start_of(&self, state: &StreamState, info: &ShardInfo, start: &StartingPosition) -> Result<u64> {
        let recs = &state.shards[info.index as usize];
        let parse = |s: &str| {
            let seq = parse_sequence(s).ok_or_else(|| {
                invalid(format!(
                    "StartingSequenceNumber {s} used in GetShardIterator on shard {} in stream {} under account {} is invalid.",
                    info.id(),
                    state.meta.name,
                    self.inner.account
                ))
            })?;
            let end = info.end_seq.unwrap_or(u64::MAX);
            if seq + 1 < info.start_seq || seq > end {
                return Err(invalid(format!(
                    "StartingSequenceNumber {s} used in GetShardIterator on shard {} in stream {} under account {} is invalid because it did not come from this shard.",
                    info.id(),
                    state.meta.name,
                    self.inner.account
                )));
            }
            Ok(seq)
        };
        Ok(match start {
            StartingPosition::TrimHorizon => 0,
            StartingPosition::Latest => state.next_seq.max(info.start_seq),
            StartingPosition::AtSequence(s) => parse(s)?,
            StartingPosition::AfterSequence(s) => parse(s)? + 1,
            StartingPosition::AtTimestamp(ms) => {
                let i = recs.entries.partition_point(|e| e.arrival_ms < *ms);
                recs.entries.get(i).map_or(state.next_seq.max(info.start_seq), |e| e.seq)
            }
        })
    }

    pub fn get_shard_iterator(&self, name: &str, shard: &str, start: StartingPosition) -> Result<String> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        let info = self.shard_for_read(&state, shard)?;
        let pos = self.start_of(&state, info, &start)?;
        Ok(self.iterator_token(handle.uid, info.index, pos))
    }

    fn handle_by_uid(&self, uid: u64) -> Result<Arc<StreamHandle>> {
        let reg = self.inner.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_uid.get(&uid).cloned().ok_or_else(|| {
            DataStreamError::ResourceNotFound("The stream this iterator was made for no longer exists.".into())
        })
    }

    /// Up to `limit` records (and 10 MiB) from `pos` in a shard.
    async fn read_from(
        &self,
        handle: &StreamHandle,
        shard: u32,
        pos: u64,
        limit: u32,
        throttled: bool,
    ) -> Result<ReadBatch> {
        let now = self.now_ms();
        let (picked, files, shard_done, next_pos, children, tip_gap) = {
            let mut state = handle.lock();
            if state.deleted {
                return Err(DataStreamError::ResourceNotFound("The stream was deleted.".into()));
            }
            if shard as usize >= state.shards.len() {
                return Err(DataStreamError::ResourceNotFound(format!("Shard {} does not exist", shard_id(shard))));
            }
            if throttled && self.inner.options.throughput_limits {
                let t = &mut state.throttles[shard as usize];
                if !t.admit_read(now) {
                    return Err(DataStreamError::ProvisionedThroughputExceeded(format!(
                        "Rate exceeded for shard {} in stream {} under account {}.",
                        shard_id(shard),
                        state.meta.name,
                        self.inner.account
                    )));
                }
            }
            let horizon = now - state.retention_ms();
            let info = state.meta.shard_map.get(shard).cloned();
            let recs = &state.shards[shard as usize];
            let mut i = recs.entries.partition_point(|e| e.seq < pos);
            while recs.entries.get(i).is_some_and(|e| e.arrival_ms < horizon) {
                i += 1;
            }
            let mut picked = Vec::new();
            let mut bytes = 0usize;
            while let Some(e) = recs.entries.get(i) {
                if picked.len() as u32 >= limit
                    || (bytes + e.at.len as usize > MAX_GET_RECORDS_BYTES && !picked.is_empty())
                {
                    break;
                }
                bytes += e.at.len as usize;
                picked.push(*e);
                i += 1;
            }
            let more_after = recs.entries.get(i).map(|e| e.arrival_ms);
            let next_pos = picked.last().map_or(pos, |e| e.seq + 1);
            // Closed, nothing still on its way in, and everything read.
            let shard_done = more_after.is_none() && recs.pending == 0 && info.as_ref().is_some_and(|s| !s.is_open());
            let children = if shard_done {
                state
                    .meta
                    .shard_map
                    .children(shard)
                    .into_iter()
                    .map(|c| ChildShard {
                        shard_id: c.id(),
                        parent_shards: [c.parent, c.adjacent_parent].into_iter().flatten().map(shard_id).collect(),
                        hash_key_range: (c.start_key, c.end_key),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut files = BTreeMap::new();
            for e in &picked {
                if let std::collections::btree_map::Entry::Vacant(v) = files.entry(e.at.segment) {
                    if let Some(f) = state.log.file(e.at.segment) {
                        v.insert(f);
                    }
                }
            }
            if throttled && self.inner.options.throughput_limits {
                state.throttles[shard as usize].charge_read(bytes);
            }
            (picked, files, shard_done, next_pos, children, more_after.map_or(0, |t| (now - t).max(0)))
        };
        let records = tokio::task::spawn_blocking(move || -> Result<Vec<Record>> {
            let mut out = Vec::with_capacity(picked.len());
            let mut start = 0;
            while start < picked.len() {
                let seg = picked[start].at.segment;
                let end = picked[start..].iter().position(|e| e.at.segment != seg).map_or(picked.len(), |n| start + n);
                let locations: Vec<Location> = picked[start..end].iter().map(|e| e.at).collect();
                let file = files.get(&seg).ok_or_else(|| storage(format!("segment {seg} is gone")))?;
                let bytes = read_frames(file, &locations).map_err(storage)?;
                let mut at = 0;
                for e in &picked[start..end] {
                    let (f, n) = decode_frame(&bytes[at..])
                        .map_err(|err| storage(format!("record {} in segment {seg}: {err}", e.seq)))?
                        .ok_or_else(|| storage(format!("record {} in segment {seg} is cut short", e.seq)))?;
                    out.push(Record {
                        sequence_number: format_sequence(f.seq),
                        arrival_ms: f.arrival_ms,
                        partition_key: f.partition_key.to_string(),
                        data: f.data.to_vec(),
                    });
                    at += n;
                }
                start = end;
            }
            Ok(out)
        })
        .await
        .map_err(storage)??;
        Ok(ReadBatch { records, next_pos, shard_done, children, millis_behind: tip_gap })
    }

    pub async fn get_records(&self, iterator: &str, limit: Option<u32>) -> Result<GetRecordsOutput> {
        let limit = limit.unwrap_or(MAX_GET_RECORDS_LIMIT);
        if !(1..=MAX_GET_RECORDS_LIMIT).contains(&limit) {
            return Err(invalid(format!("Limit must be between 1 and {MAX_GET_RECORDS_LIMIT}; got {limit}.")));
        }
        let (uid, shard, pos, issued) = self.open_iterator(iterator)?;
        let now = self.now_ms();
        if now - issued > ITERATOR_TTL_MS {
            return Err(DataStreamError::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
                fmt_ms(issued),
                fmt_ms(now)
            )));
        }
        let handle = self.handle_by_uid(uid)?;
        let batch = self.read_from(&handle, shard, pos, limit, true).await?;
        Ok(GetRecordsOutput {
            next_iterator: (!batch.shard_done).then(|| self.iterator_token(uid, shard, batch.next_pos)),
            records: batch.records,
            millis_behind_latest: batch.millis_behind,
            child_shards: batch.children,
        })
    }

    // ---- enhanced fan-out ----------------------------------------------------------

    /// Starts a SubscribeToShard push for a registered consumer.
    pub fn subscribe(&self, consumer_arn: &str, shard: &str, start: StartingPosition) -> Result<Subscription> {
        let (stream, consumer) = self.resolve_consumer_arn(consumer_arn)?;
        let handle = self.handle(&stream)?;
        let (index, pos) = {
            let state = handle.lock();
            let info = self.shard_for_read(&state, shard)?;
            (info.index, self.start_of(&state, info, &start)?)
        };
        let now = self.now_ms();
        let key = (handle.uid, consumer, index);
        let generation = self.inner.subscription_gen.fetch_add(1, Ordering::SeqCst);
        {
            let mut subs = self.inner.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((started, _)) = subs.get(&key) {
                if now - started < SUBSCRIPTION_TAKEOVER_MS {
                    return Err(DataStreamError::ResourceInUse(format!(
                        "Another active subscription exists for consumer {consumer_arn} on shard {shard}; retry after 5 seconds."
                    )));
                }
            }
            subs.insert(key.clone(), (now, generation));
        }
        Ok(Subscription {
            engine: self.clone(),
            handle,
            key,
            generation,
            shard: index,
            pos,
            ends_ms: now + SUBSCRIPTION_MS,
            done: false,
        })
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
            state.log.drop_older_than(horizon).map_err(storage)?;
        }
        Ok(dropped)
    }

    /// Records held in a shard's index (for tests and benches).
    pub fn stored_records(&self, name: &str) -> Result<usize> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        Ok(state.shards.iter().map(|s| s.entries.len()).sum())
    }
}

struct ReadBatch {
    records: Vec<Record>,
    next_pos: u64,
    shard_done: bool,
    children: Vec<ChildShard>,
    millis_behind: i64,
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

/// One SubscribeToShardEvent.
#[derive(Debug, Clone)]
pub struct SubscriptionEvent {
    pub records: Vec<Record>,
    pub continuation_sequence_number: String,
    pub millis_behind_latest: i64,
    pub child_shards: Vec<ChildShard>,
}

/// A live SubscribeToShard push: records as they are published, an empty event every
/// 5 seconds of quiet, for up to 5 minutes or until a newer subscription takes over.
pub struct Subscription {
    engine: DataStreamEngine,
    handle: Arc<StreamHandle>,
    key: SubscriptionKey,
    generation: u64,
    shard: u32,
    pos: u64,
    ends_ms: i64,
    done: bool,
}

const HEARTBEAT: Duration = Duration::from_secs(5);
/// A subscription's events are kept small enough to push at once.
const EVENT_RECORD_LIMIT: u32 = 1000;

impl Subscription {
    fn superseded(&self) -> bool {
        let subs = self.engine.inner.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        subs.get(&self.key).is_none_or(|(_, g)| *g != self.generation)
    }

    /// The next event, or `None` when the subscription is over.
    pub async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, DataStreamError>> {
        if self.done || self.superseded() {
            return None;
        }
        let mut changes = self.handle.published.subscribe();
        let started = self.engine.now_ms();
        loop {
            changes.borrow_and_update();
            let batch = match self.engine.read_from(&self.handle, self.shard, self.pos, EVENT_RECORD_LIMIT, false).await
            {
                Ok(b) => b,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let now = self.engine.now_ms();
            if !batch.records.is_empty() || batch.shard_done || now - started >= HEARTBEAT.as_millis() as i64 {
                self.pos = batch.next_pos;
                self.done = batch.shard_done;
                return Some(Ok(SubscriptionEvent {
                    continuation_sequence_number: format_sequence(self.pos.saturating_sub(1)),
                    records: batch.records,
                    millis_behind_latest: batch.millis_behind,
                    child_shards: batch.children,
                }));
            }
            if now >= self.ends_ms || self.superseded() {
                return None;
            }
            let wait = HEARTBEAT.saturating_sub(Duration::from_millis((now - started) as u64));
            let wait = wait.min(Duration::from_millis((self.ends_ms - now) as u64));
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests;
