//! Stream queues: Kinesis's per-record consumers of an on-demand data stream. A queue
//! reads its stream through the data-stream engine's API (no copy of the records) and
//! tracks each record it handed out: in flight until its visibility timeout, then
//! visible again; acknowledged (forgotten); or, after `MaxReceiveCount` unacknowledged
//! receives, a dead letter that only the dead-letter operations see.
//!
//! - [`store`]: the [`store::StreamQueueStore`] trait (queue records, per-shard cursors,
//!   tracked records) and its conformance suite;
//! - [`embedded`]: that store in sled.
//!
//! What a queue keeps is small: per shard the last sequence read, and per tracked
//! record its counters (37 bytes), never the data, which is read again from the stream
//! on a redelivery. A record that aged out of the stream is not delivered again: it is
//! dropped when its turn comes. Receipt handles are signed with the data streams' key
//! and name one delivery: a handle from an earlier delivery of a record is refused.
//! Records are handed out in shard order, oldest first, with no ordering promise (as
//! AWS says). Control operations complete at once: CreateQueue answers CREATING and
//! UpdateQueue UPDATING, as AWS's do, and the queue is ACTIVE by the next call.

pub mod embedded;
pub mod postgres;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::data_streams::keys::{format_sequence, parse_sequence, shard_id};
use crate::data_streams::meta_store::StreamMode;
use crate::data_streams::{
    change_tags, check_new_resource, check_tags, name_ok, DataStreamEngine, DataStreamError, DataStreamId,
    StartingPosition, MAX_CONSUMERS_PER_STREAM,
};
use crate::scope::Scope;
use store::{Progress, QueueMeta, RecordKey, StartKind, StreamQueueStore, TrackedRecord};

pub const DEFAULT_VISIBILITY_TIMEOUT_S: u32 = 30;
pub const MAX_VISIBILITY_TIMEOUT_S: u32 = 43_200;
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 6;
pub const MAX_RECEIVE_COUNT: u32 = 1000;
/// Records received and not yet acknowledged, per queue (AWS's quota).
pub const MAX_IN_FLIGHT: usize = 120_000;
pub const MAX_BATCH: u32 = 10;
pub const MAX_WAIT_S: u32 = 20;
pub const DEFAULT_WAIT_S: u32 = 9;
pub const MAX_TAGS: usize = 50;
/// Queues (and their records' state) in one account and region.
pub const MAX_QUEUES_PER_SCOPE: usize = 1000;

/// Errors are Kinesis's: the same names as the data streams'.
pub type Error = DataStreamError;
type Result<T, E = Error> = std::result::Result<T, E>;

fn invalid(msg: impl Into<String>) -> Error {
    DataStreamError::InvalidArgument(msg.into())
}

fn storage(e: crate::storage_failure::StorageFailure) -> Error {
    DataStreamError::Storage(e)
}

/// What to do with a record received too often without acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetter {
    /// After this many receives it becomes a dead letter of the same queue.
    BuiltIn(u32),
    /// Redelivered until acknowledged or expired.
    None,
}

impl DeadLetter {
    fn max_receive_count(self) -> Option<u32> {
        match self {
            DeadLetter::BuiltIn(n) => Some(n),
            DeadLetter::None => None,
        }
    }

    fn check(self) -> Result<()> {
        match self {
            DeadLetter::BuiltIn(n) if !(1..=MAX_RECEIVE_COUNT).contains(&n) => Err(DataStreamError::Validation(format!(
                "1 validation error detected: Value '{n}' at 'queueAttributes.deadLetterConfiguration.maxReceiveCount' failed to satisfy constraint: Member must have value between 1 and {MAX_RECEIVE_COUNT}"
            ))),
            _ => Ok(()),
        }
    }
}

/// What CreateQueue asks for.
#[derive(Debug, Clone)]
pub struct NewQueue {
    pub name: String,
    pub stream: DataStreamId,
    pub start: StartKind,
    /// AT_TIMESTAMP's time (required there, refused elsewhere).
    pub start_ms: Option<i64>,
    pub visibility_timeout_s: Option<u32>,
    /// `None`: BUILT_IN with [`DEFAULT_MAX_RECEIVE_COUNT`].
    pub dead_letter: Option<DeadLetter>,
    pub tags: BTreeMap<String, String>,
}

/// What UpdateQueue changes (absent: unchanged).
#[derive(Debug, Clone, Default)]
pub struct QueueChange {
    pub visibility_timeout_s: Option<u32>,
    pub dead_letter: Option<DeadLetter>,
}

/// A queue as Describe and List report it.
#[derive(Debug, Clone)]
pub struct QueueView {
    pub meta: QueueMeta,
    pub arn: String,
    pub stream_arn: String,
}

/// ReceiveQueueRecords / ReceiveDeadLetterQueueRecords.
#[derive(Debug, Clone, Copy)]
pub struct Receive {
    pub limit: u32,
    pub wait_s: u32,
    /// Overrides the queue's visibility timeout for these records.
    pub visibility_timeout_s: Option<u32>,
    pub dead_letters: bool,
}

impl Default for Receive {
    fn default() -> Self {
        Receive { limit: MAX_BATCH, wait_s: DEFAULT_WAIT_S, visibility_timeout_s: None, dead_letters: false }
    }
}

/// One delivered record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    pub receipt_handle: String,
    /// The same for every delivery and every queue of the stream.
    pub record_id: String,
    /// Empty when the producer gave none.
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrival_ms: i64,
    pub first_receive_ms: i64,
    pub receive_count: u32,
}

/// One entry of a batch operation: done, or refused alone.
pub type EntryOutcome = Result<()>;

struct QueueState {
    cursors: BTreeMap<u32, u64>,
    tracked: BTreeMap<RecordKey, TrackedRecord>,
    /// (visible at, shard, sequence) of records that are not dead letters.
    by_visibility: BTreeSet<(i64, u32, u64)>,
    /// The same for dead letters.
    dead_by_visibility: BTreeSet<(i64, u32, u64)>,
    /// Shard to start the next read at (turns go round).
    next_shard: usize,
}

impl QueueState {
    fn new(cursors: BTreeMap<u32, u64>, tracked: BTreeMap<RecordKey, TrackedRecord>) -> Self {
        let mut state = QueueState {
            cursors: BTreeMap::new(),
            tracked: BTreeMap::new(),
            by_visibility: BTreeSet::new(),
            dead_by_visibility: BTreeSet::new(),
            next_shard: 0,
        };
        state.cursors = cursors;
        for (k, t) in tracked {
            state.index(k, &t);
            state.tracked.insert(k, t);
        }
        state
    }

    fn index(&mut self, (shard, seq): RecordKey, t: &TrackedRecord) {
        let set = if t.dead { &mut self.dead_by_visibility } else { &mut self.by_visibility };
        set.insert((t.visible_at_ms, shard, seq));
    }

    fn unindex(&mut self, (shard, seq): RecordKey, t: &TrackedRecord) {
        let set = if t.dead { &mut self.dead_by_visibility } else { &mut self.by_visibility };
        set.remove(&(t.visible_at_ms, shard, seq));
    }

    /// Records `t` for `k` here and in the step to store.
    fn set(&mut self, k: RecordKey, t: TrackedRecord, step: &mut Progress) {
        if let Some(old) = self.tracked.insert(k, t) {
            self.unindex(k, &old);
        }
        self.index(k, &t);
        step.dropped.retain(|d| *d != k);
        step.tracked.insert(k, t);
    }

    fn drop_record(&mut self, k: RecordKey, step: &mut Progress) {
        if let Some(old) = self.tracked.remove(&k) {
            self.unindex(k, &old);
            step.tracked.remove(&k);
            step.dropped.push(k);
        }
    }

    /// Up to `n` records visible at `now`, oldest visibility first.
    fn visible(&self, now: i64, dead: bool, n: usize) -> Vec<RecordKey> {
        let set = if dead { &self.dead_by_visibility } else { &self.by_visibility };
        set.range(..=(now, u32::MAX, u64::MAX)).take(n).map(|(_, s, q)| (*s, *q)).collect()
    }

    /// When the next invisible record becomes visible.
    fn next_visible_after(&self, now: i64, dead: bool) -> Option<i64> {
        let set = if dead { &self.dead_by_visibility } else { &self.by_visibility };
        set.range((now + 1, 0, 0)..).next().map(|(t, _, _)| *t)
    }

    /// Records tracked that are not dead letters (the in-flight quota counts them).
    fn live(&self) -> usize {
        self.by_visibility.len()
    }
}

struct QueueHandle {
    meta: RwLock<QueueMeta>,
    state: tokio::sync::Mutex<QueueState>,
    deleted: AtomicBool,
    /// Wakes long polls when records become visible by an operation (not by time).
    woken: Notify,
}

impl QueueHandle {
    fn meta(&self) -> QueueMeta {
        self.meta.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct Inner {
    store: Arc<dyn StreamQueueStore>,
    data_streams: DataStreamEngine,
    /// Scope key of the queue id → queue.
    queues: RwLock<BTreeMap<String, Arc<QueueHandle>>>,
    /// Serializes creations (name uniqueness, per-stream limits).
    creating: Mutex<()>,
    next_uid: AtomicU64,
    next_delivery: AtomicU64,
}

/// The stream-queue engine; cheap to clone.
#[derive(Clone)]
pub struct StreamQueueEngine {
    inner: Arc<Inner>,
}

/// The record id of a stream record: equal in every queue of the stream.
pub fn record_id((shard, seq): RecordKey) -> String {
    format!("{shard:08x}{seq:016x}")
}

fn new_queue_id() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = crate::secrets::random_bytes::<20>()
        .map_err(|e| storage(crate::storage_failure::StorageFailure::caused("a new queue id", e)))?;
    Ok(bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
}

impl StreamQueueEngine {
    /// Opens the queues kept in `data_dir/stream_queues`.
    pub fn open(data_dir: &Path, data_streams: DataStreamEngine) -> Result<Self> {
        let store = embedded::SledStreamQueues::open(&data_dir.join("stream_queues")).map_err(|e| {
            storage(crate::storage_failure::StorageFailure::caused("the stream queues (data/stream_queues)", e))
        })?;
        Self::open_with(Arc::new(store), data_streams)
    }

    pub fn open_with(store: Arc<dyn StreamQueueStore>, data_streams: DataStreamEngine) -> Result<Self> {
        let mut queues = BTreeMap::new();
        let mut max_uid = 0;
        let mut max_delivery = 0;
        for q in store.load().map_err(storage)? {
            max_uid = max_uid.max(q.meta.uid);
            max_delivery = q.tracked.values().map(|t| t.delivery).fold(max_delivery, u64::max);
            let key = q.meta.scope.key(&q.meta.id);
            let handle = QueueHandle {
                state: tokio::sync::Mutex::new(QueueState::new(q.cursors, q.tracked)),
                meta: RwLock::new(q.meta),
                deleted: AtomicBool::new(false),
                woken: Notify::new(),
            };
            queues.insert(key, Arc::new(handle));
        }
        let now = data_streams.now_ms().max(0) as u64;
        Ok(StreamQueueEngine {
            inner: Arc::new(Inner {
                store,
                data_streams,
                queues: RwLock::new(queues),
                creating: Mutex::new(()),
                next_uid: AtomicU64::new(max_uid.max(now) + 1),
                next_delivery: AtomicU64::new(max_delivery.max(now) + 1),
            }),
        })
    }

    fn now_ms(&self) -> i64 {
        self.inner.data_streams.now_ms()
    }

    fn handles(&self) -> Vec<Arc<QueueHandle>> {
        self.inner.queues.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn view(&self, meta: QueueMeta) -> QueueView {
        let stream = DataStreamId::new(&meta.scope, &meta.stream);
        QueueView { arn: queue_arn(&meta), stream_arn: stream.arn(), meta }
    }

    /// The queue an ARN names, in the caller's scope.
    fn queue(&self, scope: &Scope, arn: &str) -> Result<Arc<QueueHandle>> {
        let not_found =
            || DataStreamError::ResourceNotFound(format!("Queue {arn} under account {} not found.", scope.account));
        let (arn_scope, resource) = Scope::parse_arn(arn, "kinesis").ok_or_else(|| {
            DataStreamError::Validation(format!(
                "1 validation error detected: Value '{arn}' at 'queueARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{{12}}:queue/\\S+"
            ))
        })?;
        let id = resource.strip_prefix("queue/").ok_or_else(not_found)?;
        if arn_scope != *scope {
            return Err(not_found());
        }
        let queues = self.inner.queues.read().unwrap_or_else(|p| p.into_inner());
        queues.get(&scope.key(id)).cloned().ok_or_else(not_found)
    }

    /// Queues reading `stream` (they share its registered-consumer limit, and block
    /// its deletion).
    pub fn count_for_stream(&self, stream: &DataStreamId) -> usize {
        self.handles()
            .iter()
            .filter(|h| {
                let m = h.meta.read().unwrap_or_else(|p| p.into_inner());
                m.scope == stream.scope && m.stream == stream.name
            })
            .count()
    }

    // ---- control ------------------------------------------------------------------

    pub fn create(&self, scope: &Scope, new: NewQueue) -> Result<QueueView> {
        if !name_ok(&new.name) {
            return Err(DataStreamError::Validation(format!(
                "1 validation error detected: Value '{}' at 'queueName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128",
                new.name
            )));
        }
        let visibility = new.visibility_timeout_s.unwrap_or(DEFAULT_VISIBILITY_TIMEOUT_S);
        check_visibility(visibility, "queueAttributes.visibilityTimeoutSeconds")?;
        let dead_letter = new.dead_letter.unwrap_or(DeadLetter::BuiltIn(DEFAULT_MAX_RECEIVE_COUNT));
        dead_letter.check()?;
        match (new.start, new.start_ms) {
            (StartKind::AtTimestamp, None) => {
                return Err(invalid("StartingPosition.Timestamp is required for AT_TIMESTAMP."))
            }
            (StartKind::TrimHorizon | StartKind::Latest, Some(_)) => {
                return Err(DataStreamError::Validation(
                    "StartingPosition.Timestamp is allowed only with the AT_TIMESTAMP type.".into(),
                ))
            }
            _ => {}
        }
        if new.tags.len() > MAX_TAGS {
            return Err(invalid(format!("A queue can have at most {MAX_TAGS} tags.")));
        }
        check_tags(&new.tags)?;
        if new.stream.scope != *scope {
            return Err(DataStreamError::ResourceNotFound(format!(
                "Stream {} under account {} not found.",
                new.stream.arn(),
                scope.account
            )));
        }
        let _one_at_a_time = self.inner.creating.lock().unwrap_or_else(|p| p.into_inner());
        let stream = self.inner.data_streams.describe(&new.stream)?;
        if stream.meta.mode != StreamMode::OnDemand {
            return Err(invalid(format!(
                "Stream {} is PROVISIONED; stream queues read ON_DEMAND streams only.",
                new.stream.name
            )));
        }
        let in_scope: Vec<QueueMeta> = self.handles().iter().map(|h| h.meta()).filter(|m| m.scope == *scope).collect();
        check_new_resource("Queue", scope, &new.name, in_scope.iter().map(|m| m.name.as_str()), MAX_QUEUES_PER_SCOPE)?;
        let on_stream = in_scope.iter().filter(|m| m.stream == new.stream.name).count();
        if on_stream + stream.meta.consumers.len() >= MAX_CONSUMERS_PER_STREAM {
            return Err(DataStreamError::LimitExceeded(format!(
                "Stream {} has {} registered consumers and queues, the most it may have ({MAX_CONSUMERS_PER_STREAM}).",
                new.stream.name,
                on_stream + stream.meta.consumers.len()
            )));
        }
        let now = self.now_ms();
        let retention_ms = i64::from(stream.meta.retention_hours) * 3_600_000;
        let earliest = stream.meta.created_ms.max(now - retention_ms);
        let start_ms = match new.start {
            StartKind::TrimHorizon => earliest,
            StartKind::Latest => now,
            StartKind::AtTimestamp => new.start_ms.unwrap_or(now).max(earliest),
        };
        let meta = QueueMeta {
            uid: self.inner.next_uid.fetch_add(1, Ordering::SeqCst),
            id: new_queue_id()?,
            name: new.name,
            scope: scope.clone(),
            stream: new.stream.name.clone(),
            stream_uid: stream.meta.uid,
            stream_created_ms: stream.meta.created_ms,
            start: new.start,
            start_ms,
            visibility_timeout_s: visibility,
            max_receive_count: dead_letter.max_receive_count(),
            created_ms: now,
            tags: new.tags,
        };
        self.inner.store.save(&meta).map_err(storage)?;
        let handle = QueueHandle {
            meta: RwLock::new(meta.clone()),
            state: tokio::sync::Mutex::new(QueueState::new(BTreeMap::new(), BTreeMap::new())),
            deleted: AtomicBool::new(false),
            woken: Notify::new(),
        };
        self.inner.queues.write().unwrap_or_else(|p| p.into_inner()).insert(scope.key(&meta.id), Arc::new(handle));
        tracing::info!(queue = %meta.name, stream = %meta.stream, "stream queue created");
        Ok(self.view(meta))
    }

    pub fn describe(&self, scope: &Scope, arn: &str) -> Result<QueueView> {
        Ok(self.view(self.queue(scope, arn)?.meta()))
    }

    /// The queues of `scope` reading `stream` (any, if `None`), by name then id.
    pub fn list(&self, scope: &Scope, stream: Option<&str>) -> Vec<QueueView> {
        let mut metas: Vec<QueueMeta> = self
            .handles()
            .iter()
            .map(|h| h.meta())
            .filter(|m| m.scope == *scope && stream.is_none_or(|s| m.stream == s))
            .collect();
        metas.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        metas.into_iter().map(|m| self.view(m)).collect()
    }

    /// UpdateQueue: a new visibility timeout applies to records received from now on;
    /// a lower MaxReceiveCount turns records received that often into dead letters
    /// when they next become visible; NONE leaves existing dead letters where they are.
    pub fn update(&self, scope: &Scope, arn: &str, change: QueueChange) -> Result<QueueView> {
        if let Some(v) = change.visibility_timeout_s {
            check_visibility(v, "queueAttributes.visibilityTimeoutSeconds")?;
        }
        if let Some(d) = change.dead_letter {
            d.check()?;
        }
        let handle = self.queue(scope, arn)?;
        let mut meta = handle.meta();
        if let Some(v) = change.visibility_timeout_s {
            meta.visibility_timeout_s = v;
        }
        if let Some(d) = change.dead_letter {
            meta.max_receive_count = d.max_receive_count();
        }
        self.inner.store.save(&meta).map_err(storage)?;
        *handle.meta.write().unwrap_or_else(|p| p.into_inner()) = meta.clone();
        Ok(self.view(meta))
    }

    /// DeleteQueue: its receipt handles stop working at once; the stream is untouched.
    pub fn delete(&self, scope: &Scope, arn: &str) -> Result<()> {
        let handle = self.queue(scope, arn)?;
        let meta = handle.meta();
        self.inner.store.delete(meta.uid).map_err(storage)?;
        self.inner.queues.write().unwrap_or_else(|p| p.into_inner()).remove(&scope.key(&meta.id));
        handle.deleted.store(true, Ordering::SeqCst);
        handle.woken.notify_waiters();
        tracing::info!(queue = %meta.name, stream = %meta.stream, "stream queue deleted");
        Ok(())
    }

    pub fn tags(&self, scope: &Scope, arn: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.queue(scope, arn)?.meta().tags)
    }

    /// TagResource / UntagResource on a queue ARN.
    pub fn update_tags(
        &self,
        scope: &Scope,
        arn: &str,
        add: BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let handle = self.queue(scope, arn)?;
        let mut meta = handle.meta();
        change_tags(&mut meta.tags, add, remove, MAX_TAGS, "queue")?;
        self.inner.store.save(&meta).map_err(storage)?;
        *handle.meta.write().unwrap_or_else(|p| p.into_inner()) = meta;
        Ok(())
    }

    // ---- data ---------------------------------------------------------------------

    /// Receive(Dead­Letter)QueueRecords: returns as soon as records are visible, or
    /// empty after `wait_s`.
    pub async fn receive(&self, scope: &Scope, arn: &str, r: Receive) -> Result<Vec<QueueRecord>> {
        check_range(r.limit, 1, MAX_BATCH, "limit")?;
        check_range(r.wait_s, 1, MAX_WAIT_S, "waitTimeSeconds")?;
        if let Some(v) = r.visibility_timeout_s {
            check_visibility(v, "visibilityTimeoutSeconds")?;
        }
        let handle = self.queue(scope, arn)?;
        let stream = {
            let m = handle.meta.read().unwrap_or_else(|p| p.into_inner());
            DataStreamId::new(&m.scope, &m.stream)
        };
        let mut published = self.inner.data_streams.watch(&stream).ok();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(r.wait_s));
        loop {
            if handle.deleted.load(Ordering::SeqCst) {
                return Err(DataStreamError::ResourceNotFound(format!("Queue {arn} was deleted.")));
            }
            let woken = handle.woken.notified();
            let (got, next_visible) = self.receive_once(&handle, &stream, r).await?;
            if !got.is_empty() {
                return Ok(got);
            }
            let now_inst = tokio::time::Instant::now();
            if now_inst >= deadline {
                return Ok(got);
            }
            let until = next_visible
                .map(|at| now_inst + Duration::from_millis((at - self.now_ms()).clamp(1, 20_000) as u64))
                .map_or(deadline, |t| t.min(deadline));
            let records = async {
                match published.as_mut() {
                    Some(rx) if !r.dead_letters => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    _ => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = records => {}
                () = woken => {}
            }
        }
    }

    /// One look: visible records first, then (not for dead letters) new ones from the
    /// stream. Returns what it delivered and when the next invisible record shows.
    async fn receive_once(
        &self,
        handle: &QueueHandle,
        stream: &DataStreamId,
        r: Receive,
    ) -> Result<(Vec<QueueRecord>, Option<i64>)> {
        let meta = handle.meta();
        let mut st = handle.state.lock().await;
        let now = self.now_ms();
        let hide_ms = i64::from(r.visibility_timeout_s.unwrap_or(meta.visibility_timeout_s)) * 1000;
        let limit = r.limit as usize;
        let mut step = Progress::default();
        let mut out = Vec::new();
        // The stream this queue reads, looked up once: gone (or another incarnation of
        // its name), it has nothing to deliver or redeliver.
        let view = self.inner.data_streams.describe(stream).ok().filter(|v| v.meta.uid == meta.stream_uid);

        // Records seen too often become dead letters before anything is handed out.
        if let Some(max) = meta.max_receive_count {
            for k in st.visible(now, false, usize::MAX) {
                if let Some(t) = st.tracked.get(&k).copied().filter(|t| t.receive_count >= max) {
                    st.set(k, TrackedRecord { dead: true, visible_at_ms: 0, ..t }, &mut step);
                }
            }
        }
        // Redeliveries, oldest visibility first.
        let mut candidates = st.visible(now, r.dead_letters, limit * 4).into_iter();
        while out.len() < limit {
            let Some(k) = candidates.next() else { break };
            let Some(t) = st.tracked.get(&k).copied() else { continue };
            let record = match view {
                Some(_) => self.read_record(stream, k).await?,
                None => None,
            };
            match record {
                None => st.drop_record(k, &mut step),
                Some(rec) => {
                    let t = TrackedRecord {
                        receive_count: t.receive_count.saturating_add(1),
                        first_receive_ms: if t.first_receive_ms == 0 { now } else { t.first_receive_ms },
                        visible_at_ms: now + hide_ms,
                        delivery: self.inner.next_delivery.fetch_add(1, Ordering::SeqCst),
                        ..t
                    };
                    st.set(k, t, &mut step);
                    out.push(self.delivered(&meta, k, &t, rec));
                }
            }
        }
        // New records from the stream, while the in-flight quota allows.
        if let Some(view) = view.filter(|_| !r.dead_letters && out.len() < limit && st.live() < MAX_IN_FLIGHT) {
            self.pull(&meta, &view, &mut st, limit - out.len(), now, hide_ms, &mut step, &mut out).await?;
        }
        if !step.is_empty() {
            self.inner.store.apply(meta.uid, &step, false).map_err(storage)?;
        }
        Ok((out, st.next_visible_after(now, r.dead_letters)))
    }

    /// Reads up to `want` records the queue has not read yet, shard by shard (the
    /// first shard rotates between calls), and hands them out.
    #[allow(clippy::too_many_arguments)]
    async fn pull(
        &self,
        meta: &QueueMeta,
        view: &crate::data_streams::StreamView,
        st: &mut QueueState,
        want: usize,
        now: i64,
        hide_ms: i64,
        step: &mut Progress,
        out: &mut Vec<QueueRecord>,
    ) -> Result<()> {
        let stream = view.meta.id();
        let n = view.shards.len();
        if n == 0 {
            return Ok(());
        }
        let first = st.next_shard % n;
        st.next_shard = st.next_shard.wrapping_add(1);
        let room = MAX_IN_FLIGHT - st.live();
        let mut want = want.min(room);
        for i in 0..n {
            if want == 0 {
                break;
            }
            let shard = view.shards[(first + i) % n].index;
            let start = match st.cursors.get(&shard) {
                Some(seq) => StartingPosition::AfterSequence(format_sequence(*seq)),
                None if meta.start == StartKind::TrimHorizon => StartingPosition::TrimHorizon,
                None => StartingPosition::AtTimestamp(meta.start_ms),
            };
            let records = match self.read_shard(&stream, shard, start, want as u32).await? {
                Some(r) => r,
                None => continue,
            };
            for rec in records {
                let Some(seq) = parse_sequence(&rec.sequence_number) else { continue };
                st.cursors.insert(shard, seq);
                step.cursors.insert(shard, seq);
                if rec.arrival_ms < meta.start_ms && meta.start != StartKind::TrimHorizon {
                    continue;
                }
                let t = TrackedRecord {
                    arrival_ms: rec.arrival_ms,
                    receive_count: 1,
                    first_receive_ms: now,
                    visible_at_ms: now + hide_ms,
                    delivery: self.inner.next_delivery.fetch_add(1, Ordering::SeqCst),
                    dead: false,
                };
                st.set((shard, seq), t, step);
                out.push(self.delivered(meta, (shard, seq), &t, rec));
                want = want.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Records of one shard from a position; `None` when the shard cannot be read
    /// (gone with its stream, or throttled): the next receive tries again.
    async fn read_shard(
        &self,
        stream: &DataStreamId,
        shard: u32,
        start: StartingPosition,
        limit: u32,
    ) -> Result<Option<Vec<crate::data_streams::Record>>> {
        let ds = &self.inner.data_streams;
        let iterator = match ds.get_shard_iterator(stream, &shard_id(shard), start) {
            Ok(it) => it,
            Err(e @ DataStreamError::Storage(_)) => return Err(e),
            Err(_) => return Ok(None),
        };
        match ds.get_records(&iterator, Some(limit.max(1))).await {
            Ok(out) => Ok(Some(out.records)),
            Err(e @ DataStreamError::Storage(_)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// One record again, for a redelivery; `None` if the stream no longer holds it.
    async fn read_record(
        &self,
        stream: &DataStreamId,
        (shard, seq): RecordKey,
    ) -> Result<Option<crate::data_streams::Record>> {
        let at = StartingPosition::AtSequence(format_sequence(seq));
        let records = self.read_shard(stream, shard, at, 1).await?.unwrap_or_default();
        Ok(records.into_iter().next().filter(|r| parse_sequence(&r.sequence_number) == Some(seq)))
    }

    fn delivered(
        &self,
        meta: &QueueMeta,
        k: RecordKey,
        t: &TrackedRecord,
        rec: crate::data_streams::Record,
    ) -> QueueRecord {
        QueueRecord {
            receipt_handle: self.receipt_handle(meta.uid, k, t.delivery, t.dead),
            record_id: record_id(k),
            partition_key: rec.partition_key,
            data: rec.data,
            arrival_ms: rec.arrival_ms,
            first_receive_ms: t.first_receive_ms,
            receive_count: t.receive_count,
        }
    }

    fn receipt_handle(&self, uid: u64, (shard, seq): RecordKey, delivery: u64, dead: bool) -> String {
        let mut p = Vec::with_capacity(29);
        p.extend_from_slice(&uid.to_be_bytes());
        p.extend_from_slice(&shard.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&delivery.to_be_bytes());
        p.push(u8::from(dead));
        self.inner.data_streams.sign_token(&p)
    }

    /// The (record, delivery) a handle names, if it is this queue's, from the right
    /// side (dead letters or not).
    fn open_handle(&self, uid: u64, handle: &str, dead_letters: bool) -> Result<(RecordKey, u64)> {
        let shown: String = handle.chars().take(64).collect();
        let bad = || invalid(format!("ReceiptHandle {shown} is not a receipt handle of this queue."));
        if handle.is_empty() || handle.len() > 1024 {
            return Err(bad());
        }
        let p = self.inner.data_streams.open_token(handle).map_err(|_| bad())?;
        if p.len() != 29 {
            return Err(bad());
        }
        let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
        if u64_at(0) != uid {
            return Err(bad());
        }
        let dead = p[28] != 0;
        if dead != dead_letters {
            return Err(invalid(if dead {
                format!("ReceiptHandle {shown} is a dead letter's: use the DeadLetterQueueRecords operations.")
            } else {
                format!("ReceiptHandle {shown} is not a dead letter's: use AcknowledgeQueueRecords or UpdateQueueRecordsVisibility.")
            }));
        }
        let shard = u32::from_be_bytes(p[8..12].try_into().unwrap_or([0; 4]));
        Ok(((shard, u64_at(12)), u64_at(20)))
    }

    /// Applies `f` to the record each handle names (a handle from an older delivery is
    /// refused); stores the step durably; each entry's outcome in order.
    async fn per_entry(
        &self,
        scope: &Scope,
        arn: &str,
        handles: &[String],
        dead_letters: bool,
        mut f: impl FnMut(&mut QueueState, RecordKey, TrackedRecord, usize, i64, &mut Progress) -> EntryOutcome,
    ) -> Result<Vec<EntryOutcome>> {
        check_range(handles.len() as u32, 1, MAX_BATCH, "entries")?;
        let handle = self.queue(scope, arn)?;
        let uid = handle.meta.read().unwrap_or_else(|p| p.into_inner()).uid;
        let mut st = handle.state.lock().await;
        let now = self.now_ms();
        let mut step = Progress::default();
        let mut outcomes = Vec::with_capacity(handles.len());
        for (i, h) in handles.iter().enumerate() {
            let outcome = self.open_handle(uid, h, dead_letters).and_then(|(k, delivery)| {
                match st.tracked.get(&k).copied() {
                    // Acknowledged already, or aged out of the stream.
                    None => Err(DataStreamError::ResourceNotFound(format!(
                        "Record {} is no longer tracked by this queue (acknowledged, or expired from the stream).",
                        record_id(k)
                    ))),
                    Some(t) if t.delivery != delivery || t.dead != dead_letters => Err(invalid(format!(
                        "ReceiptHandle for record {} has expired: the record was delivered again since.",
                        record_id(k)
                    ))),
                    Some(t) => f(&mut st, k, t, i, now, &mut step),
                }
            });
            outcomes.push(outcome);
        }
        if !step.is_empty() {
            self.inner.store.apply(uid, &step, true).map_err(storage)?;
            handle.woken.notify_waiters();
        }
        Ok(outcomes)
    }

    /// Acknowledge(DeadLetter)QueueRecords: the records are forgotten by this queue.
    pub async fn acknowledge(
        &self,
        scope: &Scope,
        arn: &str,
        handles: &[String],
        dead_letters: bool,
    ) -> Result<Vec<EntryOutcome>> {
        self.per_entry(scope, arn, handles, dead_letters, |st, k, _, _, _, step| {
            st.drop_record(k, step);
            Ok(())
        })
        .await
    }

    /// Update(DeadLetter)QueueRecordsVisibility: each record in flight stays hidden
    /// for its new timeout from now (0: visible at once).
    pub async fn change_visibility(
        &self,
        scope: &Scope,
        arn: &str,
        entries: &[(String, u32)],
        dead_letters: bool,
    ) -> Result<Vec<EntryOutcome>> {
        for (_, v) in entries {
            check_visibility(*v, "entries.member.visibilityTimeoutSeconds")?;
        }
        let handles: Vec<String> = entries.iter().map(|(h, _)| h.clone()).collect();
        self.per_entry(scope, arn, &handles, dead_letters, |st, k, t, i, now, step| {
            if t.visible_at_ms <= now {
                return Err(invalid(format!(
                    "Record {} is not in flight: its visibility timeout has passed.",
                    record_id(k)
                )));
            }
            let secs = entries.get(i).map_or(0, |(_, v)| *v);
            st.set(k, TrackedRecord { visible_at_ms: now + i64::from(secs) * 1000, ..t }, step);
            Ok(())
        })
        .await
    }

    /// RestoreDeadLetterQueueRecords: back to the normal receive path, receive count 0.
    pub async fn restore(&self, scope: &Scope, arn: &str, handles: &[String]) -> Result<Vec<EntryOutcome>> {
        self.per_entry(scope, arn, handles, true, |st, k, t, _, _, step| {
            st.set(k, TrackedRecord { dead: false, receive_count: 0, visible_at_ms: 0, ..t }, step);
            Ok(())
        })
        .await
    }

    /// (records not dead, dead letters) a queue tracks: for tests and metrics.
    pub async fn tracked(&self, scope: &Scope, arn: &str) -> Result<(usize, usize)> {
        let handle = self.queue(scope, arn)?;
        let st = handle.state.lock().await;
        Ok((st.by_visibility.len(), st.dead_by_visibility.len()))
    }
}

/// `arn:aws:kinesis:REGION:ACCOUNT:queue/ID`.
pub fn queue_arn(meta: &QueueMeta) -> String {
    meta.scope.arn("kinesis", &format!("queue/{}", meta.id))
}

fn check_range(v: u32, min: u32, max: u32, member: &str) -> Result<()> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(DataStreamError::Validation(format!(
            "1 validation error detected: Value '{v}' at '{member}' failed to satisfy constraint: Member must have value between {min} and {max}"
        )))
    }
}

fn check_visibility(v: u32, member: &str) -> Result<()> {
    check_range(v, 0, MAX_VISIBILITY_TIMEOUT_S, member)
}

#[cfg(test)]
mod tests;
