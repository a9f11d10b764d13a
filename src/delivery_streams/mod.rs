//! The delivery-stream engine: Firehose's delivery streams, with a plain Rust API so the
//! video side can publish into them without HTTP.
//!
//! - [`settings`]: sources and destinations, as the API names them, validated.
//! - [`object_key`]: object keys and prefix expressions (pure).
//! - [`compression`], [`processing`]: what a batch becomes (pure).
//! - [`backlog`]: accepted records on disk until delivered.
//! - [`meta_store`]: stream metadata and delivery checkpoints, behind a trait;
//!   [`embedded`]: their implementation in sled.
//! - [`buckets`]: where `arn:aws:s3:::NAME` writes (a directory by default).
//! - [`http_endpoint`]: Firehose's HTTP endpoint delivery request and response.
//! - [`delivery`]: the task per stream that buffers, delivers and retries.
//!
//! A put returns only after its records are synced to the stream's backlog; the
//! stream's delivery task then takes batches in order (by BufferingHints size or
//! interval, whichever comes first), delivers each, records the checkpoint, and only
//! then forgets them: every acknowledged record is delivered at least once, across
//! crashes. A destination that fails is retried with backoff; records older than the
//! retry window (24 h for a bucket, RetryOptions for an HTTP endpoint) are given up
//! (a bucket) or written under the error prefix (an HTTP endpoint).

pub mod backlog;

pub mod compression;
mod delivery;
pub mod embedded;
pub mod format_conversion;
pub mod http_endpoint;
pub mod jq;
mod kinesis_source;
pub mod lambda;
pub mod meta_store;
pub mod object_key;
pub mod postgres;
pub mod processing;
pub mod query_sandbox;
pub mod settings;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{watch, Notify};

use crate::clock::SharedClock;
use crate::data_streams::embedded::log_files::LogFiles;
use crate::data_streams::record_log::{RecordLogs, RollPolicy};
use crate::metrics::Metrics;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;
use backlog::Backlog;
pub use meta_store::Owner;
use meta_store::{DeliveryMetaStore, Encryption, StreamMeta};
use settings::{Destination, Source};

pub const MAX_RECORD_BYTES: usize = 1_024_000;
pub const MAX_BATCH_RECORDS: usize = 500;
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_STREAMS_PER_REGION: usize = 5_000;
pub const MAX_TAGS: usize = 50;
const MAX_ENCRYPTION_CALLS_PER_DAY: usize = 25;
const DAY_MS: i64 = 86_400_000;

/// A delivery stream: its scope and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryStreamId {
    pub scope: Scope,
    pub name: String,
}

impl std::fmt::Display for DeliveryStreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl DeliveryStreamId {
    pub fn new(scope: &Scope, name: &str) -> Self {
        DeliveryStreamId { scope: scope.clone(), name: name.to_string() }
    }

    /// `arn:aws:firehose:REGION:ACCOUNT:deliverystream/NAME`.
    pub fn arn(&self) -> String {
        self.scope.arn("firehose", &format!("deliverystream/{}", self.name))
    }

    fn key(&self) -> String {
        self.scope.key(&self.name)
    }
}

/// Errors, named as Firehose names them; the API layer maps each to its wire code once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryStreamError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A member breaking its model constraint (AWS's generic ValidationException).
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    ConcurrentModification(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("delivery stream storage failed: {0}")]
    Storage(#[source] StorageFailure),
    #[error(transparent)]
    DiskFull(#[from] crate::disk_space::DiskRefusal),
}

pub type Result<T, E = DeliveryStreamError> = std::result::Result<T, E>;

/// Why the engine could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create {path}: {source}")]
    CreateDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StorageFailure),
    #[error("cannot make the HTTP endpoint client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("the buckets: {0}")]
    Buckets(#[from] crate::buckets::BucketSetupError),
    #[error("cannot open delivery stream {id}: {source}")]
    Stream { id: String, source: DeliveryStreamError },
}

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> DeliveryStreamError {
    DeliveryStreamError::Storage(StorageFailure::caused("the delivery-stream store (data/delivery_streams)", e))
}

fn invalid(msg: impl Into<String>) -> DeliveryStreamError {
    DeliveryStreamError::InvalidArgument(msg.into())
}

/// The engine's options.
#[derive(Clone)]
pub struct DeliveryOptions {
    /// Backlog files roll by size or age, so delivered records go by whole files.
    pub roll: RollPolicy,
    /// Puts are refused (ServiceUnavailableException, which clients retry) while a
    /// stream has this many records or bytes waiting: a destination that is down
    /// cannot make the server hold more than this.
    pub max_backlog_records: usize,
    pub max_backlog_bytes: u64,
    /// Accept `http://` HTTP endpoint URLs (AWS requires https; tests and local
    /// receivers may not have a certificate).
    pub allow_http_endpoints: bool,
    /// Backoff between delivery attempts: doubles from `retry_min_ms` to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub disk: Arc<crate::disk_space::DiskGuard>,
    pub metrics: Option<Arc<Metrics>>,
    /// The data streams KinesisStreamAsSource delivery streams read.
    pub data_streams: Option<crate::data_streams::DataStreamEngine>,
    /// Buckets kept in S3-compatible object stores (the rest are directories).
    pub remote_buckets: HashMap<String, crate::buckets::RemoteBucket>,
    /// Lambda processors' functions by name (`arn:aws:lambda:…:function:NAME`) → URL.
    pub functions: HashMap<String, String>,
    /// Format conversion's tables (`DATABASE.TABLE` → columns), where AWS has Glue.
    pub tables: HashMap<String, Vec<format_conversion::Column>>,
    /// Where dynamic partitioning's JQ queries run (worker processes) and their limits.
    pub queries: query_sandbox::QuerySandbox,
    /// How many query workers may run at once, across streams.
    pub max_query_workers: usize,
    /// Where Lambda processors and HTTP endpoints may be.
    pub egress: crate::egress::EgressPolicy,
    /// The server's account: owner of buckets that predate the ownership record.
    pub default_account: String,
}

impl std::fmt::Debug for DeliveryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryOptions")
            .field("roll", &self.roll)
            .field("max_backlog_records", &self.max_backlog_records)
            .field("max_backlog_bytes", &self.max_backlog_bytes)
            .field("allow_http_endpoints", &self.allow_http_endpoints)
            .field("retry_min_ms", &self.retry_min_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("remote_buckets", &self.remote_buckets.keys())
            .field("functions", &self.functions)
            .field("tables", &self.tables.keys())
            .field("queries", &self.queries)
            .field("max_query_workers", &self.max_query_workers)
            .field("egress", &self.egress)
            .finish_non_exhaustive()
    }
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            roll: RollPolicy { max_bytes: 64 << 20, max_age_ms: 600_000 },
            max_backlog_records: 1_000_000,
            max_backlog_bytes: 8 << 30,
            allow_http_endpoints: false,
            retry_min_ms: 500,
            retry_max_ms: 10_000,
            disk: Arc::new(crate::disk_space::DiskGuard::unlimited()),
            metrics: None,
            data_streams: None,
            remote_buckets: HashMap::new(),
            functions: HashMap::new(),
            tables: HashMap::new(),
            queries: query_sandbox::QuerySandbox::this_executable(query_sandbox::QueryLimits::default()),
            max_query_workers: 4,
            egress: crate::egress::EgressPolicy::open(),
            default_account: "000000000000".into(),
        }
    }
}

/// What Describe reports of a stream.
#[derive(Debug, Clone)]
pub struct StreamView {
    pub meta: StreamMeta,
    pub arn: String,
    pub pending_records: usize,
    pub pending_bytes: u64,
}

/// What a put returns: the records' ids, and whether the stream encrypts (Firehose's
/// `Encrypted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub record_ids: Vec<String>,
    pub encrypted: bool,
}

/// Why records were not appended.
enum Refused {
    /// The backlog already holds this many records (bytes): past its limits.
    Full {
        records: usize,
        bytes: u64,
    },
    Storage(StorageFailure),
}

/// A stream being served: its settings, its backlog and its delivery task's controls.
struct LiveStream {
    meta: RwLock<StreamMeta>,
    backlog: Mutex<Backlog>,
    /// The backlog's name in the record logs.
    log: String,
    wake: Notify,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct Inner {
    /// The backlogs: the engine's only way to undelivered records.
    logs: Arc<dyn RecordLogs>,
    meta: Arc<dyn DeliveryMetaStore>,
    clock: SharedClock,
    buckets: crate::buckets::Buckets,
    options: DeliveryOptions,
    streams: RwLock<HashMap<String, Arc<LiveStream>>>,
    /// Serializes control-plane changes (create, delete, update).
    control: Mutex<()>,
    http: reqwest::Client,
    /// Bounds the query workers alive at once (`max_query_workers`).
    query_slots: tokio::sync::Semaphore,
    /// KiB of batches being delivered, across streams ([`BATCH_MEMORY_BYTES`]).
    batch_memory: tokio::sync::Semaphore,
}

/// The record bytes all streams' deliveries may hold in memory at once: a batch waits
/// for its share (a batch larger than the whole takes all of it).
pub const BATCH_MEMORY_BYTES: u64 = 512 << 20;

impl Inner {
    /// Each record's partition keys, by the stream's query, in a worker process; the
    /// records come back with them (lent to the worker's feeder, not copied).
    async fn partition_keys(
        &self,
        query: &str,
        records: Vec<Vec<u8>>,
    ) -> std::result::Result<(Vec<Vec<u8>>, Vec<query_sandbox::KeysOutcome>), query_sandbox::SandboxError> {
        let _slot = self.query_slots.acquire().await;
        let (sandbox, query) = (self.options.queries.clone(), query.to_string());
        tokio::task::spawn_blocking(move || {
            let records = Arc::new(records);
            let outcomes = sandbox.keys(&query, records.clone())?;
            // The workers' feeder threads are joined by now: this is the only holder.
            let records = Arc::try_unwrap(records).unwrap_or_else(|shared| (*shared).clone());
            Ok((records, outcomes))
        })
        .await
        .unwrap_or_else(|e| Err(query_sandbox::SandboxError::Query(format!("the query task failed: {e}"))))
    }
}

impl LiveStream {
    /// Appends records to the backlog, refused if it would hold more than `limits`
    /// (records, bytes); returns their serials once synced. The sync runs outside the
    /// lock, so concurrent appends share syncs; then every record written up to it is
    /// queued, in order, and the delivery task woken.
    fn append(&self, records: &[&[u8]], now_ms: i64, limits: (usize, u64)) -> Result<Vec<u64>, Refused> {
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        let (ticket, serials) = {
            let mut b = lock(&self.backlog);
            if b.len() + records.len() > limits.0 || b.queued_bytes() + bytes > limits.1 {
                return Err(Refused::Full { records: b.len(), bytes: b.queued_bytes() });
            }
            b.write(records, now_ms).map_err(Refused::Storage)?
        };
        let synced = ticket.segment.sync();
        let mut b = lock(&self.backlog);
        match synced {
            Ok(()) => b.synced(ticket.id),
            Err(e) => {
                b.sync_failed();
                return Err(Refused::Storage(e));
            }
        }
        drop(b);
        self.wake.notify_one();
        Ok(serials)
    }
}

impl Inner {
    /// The schema and Parquet compression of a destination converting to Parquet.
    fn conversion(
        &self,
        b: &settings::BucketDestination,
    ) -> Result<Option<(Arc<arrow_schema::Schema>, parquet::basic::Compression)>, String> {
        let Some(c) = b.conversion()? else { return Ok(None) };
        let key = format!("{}.{}", c.database, c.table);
        let columns = self.options.tables.get(&key).ok_or_else(|| {
            format!(
                "No schema is configured for table {key} (Kinescope reads it from [tables.{}.{}] columns = [...] where AWS reads Glue).",
                c.database, c.table
            )
        })?;
        let schema = format_conversion::schema(columns).map_err(|e| format!("[tables.{key}]: {e}"))?;
        Ok(Some((schema, format_conversion::parquet_compression(c.compression.as_deref())?)))
    }

    /// The URL a Lambda processor's `LambdaArn` is called at.
    /// The URL a Lambda processor calls, if the egress policy lets the server call it.
    fn function_url(&self, arn: &str) -> Result<String, String> {
        let url = self.configured_function_url(arn)?;
        self.check_outbound(&url)?;
        Ok(url)
    }

    /// Whether the server may call `url` (scheme and a literal address; names are
    /// checked as they resolve).
    fn check_outbound(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        self.options.egress.check_url(&parsed, &["http", "https"]).map_err(|e| format!("'{url}': {e}"))
    }

    fn configured_function_url(&self, arn: &str) -> Result<String, String> {
        if arn.starts_with("http://") || arn.starts_with("https://") {
            return Ok(arn.to_string());
        }
        let name = arn
            .strip_prefix("arn:")
            .and_then(|rest| rest.split(":function:").nth(1))
            .map(|n| n.split(':').next().unwrap_or(n))
            .ok_or_else(|| format!("LambdaArn '{arn}' is not a Lambda function ARN or an http(s) URL."))?;
        self.options.functions.get(name).cloned().ok_or_else(|| {
            format!("No URL is configured for function '{name}' ([functions.{name}] url = \"…\" in the configuration file).")
        })
    }
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct DeliveryStreamEngine {
    inner: Arc<Inner>,
}

impl DeliveryStreamEngine {
    /// Opens the store under `data_dir/delivery_streams`, buckets under
    /// `data_dir/buckets`, and starts a delivery task per stream (call within a tokio
    /// runtime).
    pub fn open(data_dir: &Path, clock: SharedClock, options: DeliveryOptions) -> Result<Self, OpenError> {
        let dir = data_dir.join("delivery_streams");
        std::fs::create_dir_all(&dir).map_err(|source| OpenError::CreateDir { path: dir.clone(), source })?;
        let meta: Arc<dyn DeliveryMetaStore> = Arc::new(embedded::SledDeliveryMeta::open(&dir)?);
        let logs: Arc<dyn RecordLogs> = Arc::new(LogFiles::new(&dir));
        Self::open_with(data_dir, meta, logs, clock, options)
    }

    /// Opens the streams `meta` describes with their backlogs in `logs` (buckets still
    /// under `data_dir/buckets`) and starts their delivery tasks.
    pub fn open_with(
        data_dir: &Path,
        meta: Arc<dyn DeliveryMetaStore>,
        logs: Arc<dyn RecordLogs>,
        clock: SharedClock,
        options: DeliveryOptions,
    ) -> Result<Self, OpenError> {
        crate::tls_provider::install();
        let http = crate::egress::http_client(&options.egress)
            .timeout(std::time::Duration::from_secs(180))
            // Firehose's header names as it writes them, for receivers that match case.
            .http1_title_case_headers()
            .build()
            .map_err(OpenError::HttpClient)?;
        let options_workers = options.max_query_workers.max(1);
        let buckets = crate::buckets::Buckets::with_remote(
            data_dir.join("buckets"),
            &options.remote_buckets,
            &options.default_account,
        )
        .map_err(OpenError::Buckets)?
        .with_disk(options.disk.clone());
        let engine = DeliveryStreamEngine {
            inner: Arc::new(Inner {
                logs,
                meta,
                clock,
                buckets,
                options,
                streams: RwLock::new(HashMap::new()),
                control: Mutex::new(()),
                http,
                query_slots: tokio::sync::Semaphore::new(options_workers),
                batch_memory: tokio::sync::Semaphore::new((BATCH_MEMORY_BYTES >> 10) as usize),
            }),
        };
        for m in engine.inner.meta.all()? {
            let id = DeliveryStreamId::new(&m.scope, &m.name).to_string();
            engine.start(m).map_err(|source| OpenError::Stream { id, source })?;
        }
        Ok(engine)
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Where buckets write: deliveries, and the images streams generate.
    pub fn buckets(&self) -> &crate::buckets::Buckets {
        &self.inner.buckets
    }

    fn start(&self, meta: StreamMeta) -> Result<Arc<LiveStream>> {
        let log = format!("{:016x}", meta.uid);
        let delivered = self.inner.meta.delivered_through(meta.uid).map_err(DeliveryStreamError::Storage)?;
        let backlog = Backlog::open(self.inner.logs.as_ref(), &log, delivered, self.inner.options.roll)
            .map_err(DeliveryStreamError::Storage)?;
        let (stop, stopped) = watch::channel(false);
        let key = meta.scope.key(&meta.name);
        let live = Arc::new(LiveStream {
            meta: RwLock::new(meta),
            backlog: Mutex::new(backlog),
            log,
            wake: Notify::new(),
            stop,
            tasks: Mutex::new(Vec::new()),
        });
        write(&self.inner.streams).insert(key, live.clone());
        let mut tasks = vec![tokio::spawn(delivery::run(self.inner.clone(), live.clone(), stopped.clone()))];
        if let Source::KinesisStream { stream_arn, .. } = &read(&live.meta).source {
            match (&self.inner.options.data_streams, crate::data_streams::DataStreamId::from_arn(stream_arn)) {
                (Some(engine), Ok(source)) => tasks.push(tokio::spawn(kinesis_source::run(
                    self.inner.clone(),
                    live.clone(),
                    engine.clone(),
                    source,
                    stopped,
                ))),
                _ => {
                    tracing::error!(stream_arn = %stream_arn, "a Kinesis-sourced delivery stream has no data stream to read")
                }
            }
        }
        *lock(&live.tasks) = tasks;
        Ok(live)
    }

    /// A stream the delivery-stream operations may reach (not one another resource owns).
    fn live(&self, id: &DeliveryStreamId) -> Result<Arc<LiveStream>> {
        read(&self.inner.streams)
            .get(&id.key())
            .filter(|l| read(&l.meta).owner.is_none())
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// The stream `owner_arn` owns.
    fn owned_live(&self, owner_arn: &str) -> Option<Arc<LiveStream>> {
        read(&self.inner.streams)
            .values()
            .find(|l| read(&l.meta).owner.as_ref().is_some_and(|o| o.arn == owner_arn))
            .cloned()
    }

    // ---- streams another resource owns -------------------------------------------

    /// Creates a stream run for `owner` (a Kinesis channel): named `id` (a name the
    /// delivery-stream operations cannot use, so none collides), checked as any other
    /// stream's settings are, invisible to the delivery-stream operations.
    pub fn create_owned(
        &self,
        id: &DeliveryStreamId,
        owner: Owner,
        source: Source,
        destination: Destination,
    ) -> Result<StreamMeta> {
        self.check_destination(&destination, "", &id.scope.account)?;
        self.check_source(id, &source)?;
        let _control = lock(&self.inner.control);
        if read(&self.inner.streams).contains_key(&id.key()) || self.owned_live(&owner.arn).is_some() {
            return Err(DeliveryStreamError::ResourceInUse(format!("{} already has a delivery stream.", owner.arn)));
        }
        let meta = self.insert(id, source, destination, BTreeMap::new(), Some(owner))?;
        tracing::info!(stream = %id.name, "owned delivery stream created");
        Ok(meta)
    }

    /// The stream `owner_arn` runs, with the owner's record.
    pub fn owned_by(&self, owner_arn: &str) -> Option<StreamMeta> {
        self.owned_live(owner_arn).map(|l| read(&l.meta).clone())
    }

    /// Every stream an owner runs in `scope`, with the owner's records.
    pub fn owned(&self, scope: &Scope) -> Vec<StreamMeta> {
        read(&self.inner.streams)
            .values()
            .map(|l| read(&l.meta).clone())
            .filter(|m| m.owner.is_some() && m.scope == *scope)
            .collect()
    }

    /// Changes an owned stream's owner record and destination in one write.
    pub fn update_owned(
        &self,
        owner_arn: &str,
        change: impl FnOnce(&mut Owner, &mut Destination) -> Result<()>,
    ) -> Result<StreamMeta> {
        let _control = lock(&self.inner.control);
        let live = self
            .owned_live(owner_arn)
            .ok_or_else(|| DeliveryStreamError::ResourceNotFound(format!("{owner_arn} has no delivery stream.")))?;
        let mut meta = read(&live.meta).clone();
        let (Some(owner), destination) = (meta.owner.as_mut(), &mut meta.destination) else {
            return Err(DeliveryStreamError::ResourceNotFound(format!("{owner_arn} has no delivery stream.")));
        };
        change(owner, destination)?;
        self.check_destination(&meta.destination, "", &meta.scope.account)?;
        meta.version += 1;
        meta.updated_ms = self.now_ms();
        self.inner.meta.save(&meta).map_err(DeliveryStreamError::Storage)?;
        *write(&live.meta) = meta.clone();
        live.wake.notify_one();
        Ok(meta)
    }

    /// Deletes an owned stream and its undelivered records.
    pub fn delete_owned(&self, owner_arn: &str) -> Result<()> {
        let live = self
            .owned_live(owner_arn)
            .ok_or_else(|| DeliveryStreamError::ResourceNotFound(format!("{owner_arn} has no delivery stream.")))?;
        let id = {
            let m = read(&live.meta);
            DeliveryStreamId::new(&m.scope, &m.name)
        };
        self.remove(&id, live)
    }

    /// Records a new stream (durable) and starts its tasks.
    fn insert(
        &self,
        id: &DeliveryStreamId,
        source: Source,
        destination: Destination,
        tags: BTreeMap<String, String>,
        owner: Option<Owner>,
    ) -> Result<StreamMeta> {
        let now = self.now_ms();
        let meta = StreamMeta {
            scope: id.scope.clone(),
            name: id.name.clone(),
            uid: self.inner.meta.next_uid().map_err(DeliveryStreamError::Storage)?,
            source,
            destination,
            destination_id: "destinationId-000000000001".into(),
            version: 1,
            created_ms: now,
            updated_ms: now,
            tags,
            encryption: None,
            encryption_calls_ms: Vec::new(),
            owner,
        };
        self.inner.meta.save(&meta).map_err(DeliveryStreamError::Storage)?;
        self.start(meta.clone())?;
        Ok(meta)
    }

    /// Creates a stream; returns its ARN.
    pub fn create(
        &self,
        id: &DeliveryStreamId,
        source: Source,
        destination: Destination,
        tags: BTreeMap<String, String>,
    ) -> Result<String> {
        check_name(&id.name)?;
        self.check_destination(&destination, "", &id.scope.account)?;
        self.check_source(id, &source)?;
        check_tags(&tags)?;
        if tags.len() > MAX_TAGS {
            return Err(invalid(format!("A delivery stream has at most {MAX_TAGS} tags.")));
        }
        let _control = lock(&self.inner.control);
        if read(&self.inner.streams).contains_key(&id.key()) {
            return Err(DeliveryStreamError::ResourceInUse(format!(
                "Firehose {} under accountId {} already exists",
                id.name, id.scope.account
            )));
        }
        let in_scope = read(&self.inner.streams).values().filter(|s| read(&s.meta).scope == id.scope).count();
        if in_scope >= MAX_STREAMS_PER_REGION {
            return Err(DeliveryStreamError::LimitExceeded(format!(
                "You have already consumed your firehose quota of {MAX_STREAMS_PER_REGION} hoses."
            )));
        }
        self.insert(id, source, destination, tags, None)?;
        tracing::info!(stream = %id.name, "delivery stream created");
        Ok(id.arn())
    }

    fn check_source(&self, id: &DeliveryStreamId, source: &Source) -> Result<()> {
        let Source::KinesisStream { stream_arn, role_arn } = source else { return Ok(()) };
        if !role_arn.starts_with("arn:") {
            return Err(invalid("KinesisStreamSourceConfiguration.RoleARN is not an IAM role ARN."));
        }
        let engine =
            self.inner.options.data_streams.as_ref().ok_or_else(|| invalid("This server has no data streams."))?;
        let stream = crate::data_streams::DataStreamId::from_arn(stream_arn)
            .map_err(|_| invalid(format!("KinesisStreamARN '{stream_arn}' is not a Kinesis stream ARN.")))?;
        if stream.scope != id.scope || engine.describe(&stream).is_err() {
            return Err(invalid(format!("The Kinesis stream {stream_arn} does not exist in this account and region.")));
        }
        Ok(())
    }

    fn check_destination(&self, d: &Destination, member: &str, account: &str) -> Result<()> {
        let checked = match d {
            Destination::Bucket(b) => {
                b.check(if member.is_empty() { "extendedS3DestinationConfiguration" } else { member })
            }
            Destination::HttpEndpoint(h) => h.check(
                if member.is_empty() { "httpEndpointDestinationConfiguration" } else { member },
                self.inner.options.allow_http_endpoints,
            ),
        };
        checked.map_err(invalid)?;
        if let Destination::HttpEndpoint(h) = d {
            self.inner.check_outbound(&h.endpoint.url).map_err(invalid)?;
        }
        // Every bucket it writes must be the stream's account's (claimed now if nobody's).
        let backup = match d {
            Destination::Bucket(b) => b.source_backup(),
            Destination::HttpEndpoint(_) => None,
        };
        for b in std::iter::once(d.bucket()).chain(backup) {
            let name = b.bucket_name().map_err(invalid)?;
            self.inner.buckets.claim(account, name).map_err(|e| match e {
                crate::buckets::BucketError::AccessDenied { .. } => invalid(format!(
                    "Access was denied to bucket '{name}' ({}): it belongs to another account.",
                    b.bucket_arn
                )),
                other => storage(other),
            })?;
        }
        if let Destination::Bucket(b) = d {
            if let Some(query) = b.partition_query() {
                // Blocking (a worker runs the query once): the API calls create and
                // update off the runtime's threads.
                self.inner.options.queries.check(query).map_err(|e| invalid(e.to_string()))?;
            }
        }
        if let Some(lambda) = d.processors().iter().find(|p| p.kind == "Lambda") {
            let arn =
                lambda.parameter("LambdaArn").ok_or_else(|| invalid("The Lambda processor needs a LambdaArn."))?;
            self.inner.function_url(arn).map_err(invalid)?;
            if let Some(n) = lambda.parameter("NumberOfRetries") {
                if n.parse::<u32>().map_or(true, |n| n > 300) {
                    return Err(invalid("NumberOfRetries must be 0 to 300."));
                }
            }
            if let Some(mb) = lambda.parameter("BufferSizeInMBs") {
                if mb.parse::<f64>().map_or(true, |mb| !(0.2..=3.0).contains(&mb)) {
                    return Err(invalid("The Lambda processor's BufferSizeInMBs must be 0.2 to 3."));
                }
            }
        }
        if let Destination::Bucket(b) = d {
            self.inner.conversion(b).map_err(invalid)?;
        }
        let b = d.bucket();
        let ext = b.file_extension.clone().unwrap_or_else(|| b.compression.extension().to_string());
        object_key::KeyNaming::new("x", 1, b.prefix.as_deref(), b.error_output_prefix.as_deref(), &ext)
            .map_err(invalid)?;
        Ok(())
    }

    pub fn describe(&self, id: &DeliveryStreamId) -> Result<StreamView> {
        let live = self.live(id)?;
        let meta = read(&live.meta).clone();
        let b = lock(&live.backlog);
        Ok(StreamView { arn: id.arn(), meta, pending_records: b.len(), pending_bytes: b.queued_bytes() })
    }

    /// Names in `scope` in order, after `start_after`, of `source_type` if given;
    /// returns them and whether more follow.
    pub fn list(
        &self,
        scope: &Scope,
        source_type: Option<&str>,
        start_after: Option<&str>,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let mut names: Vec<String> = read(&self.inner.streams)
            .values()
            .map(|s| read(&s.meta).clone())
            .filter(|m| m.owner.is_none())
            .filter(|m| &m.scope == scope && source_type.is_none_or(|t| m.source.type_name() == t))
            .map(|m| m.name)
            .filter(|n| start_after.is_none_or(|after| n.as_str() > after))
            .collect();
        names.sort();
        let more = names.len() > limit;
        names.truncate(limit);
        (names, more)
    }

    /// Deletes a stream and its undelivered records.
    pub fn delete(&self, id: &DeliveryStreamId) -> Result<()> {
        let live = self.live(id)?;
        self.remove(id, live)
    }

    fn remove(&self, id: &DeliveryStreamId, live: Arc<LiveStream>) -> Result<()> {
        let _control = lock(&self.inner.control);
        let meta = read(&live.meta).clone();
        let _ = live.stop.send(true);
        self.inner.meta.remove(&meta).map_err(DeliveryStreamError::Storage)?;
        write(&self.inner.streams).remove(&id.key());
        let pending = lock(&live.backlog).len();
        if let Err(e) = self.inner.logs.remove(&live.log) {
            tracing::warn!(stream = %id.name, error = %e, "the deleted stream's backlog files were not all removed");
        }
        tracing::info!(stream = %id.name, undelivered = pending, "delivery stream deleted");
        Ok(())
    }

    /// Accepts records: synced to the backlog before this returns.
    pub fn put(&self, id: &DeliveryStreamId, records: &[&[u8]]) -> Result<Accepted> {
        let live = self.live(id)?;
        let (uid, encrypted) = {
            let m = read(&live.meta);
            if !matches!(m.source, Source::DirectPut { .. }) {
                return Err(invalid(format!(
                    "This operation is not permitted on KinesisStreamAsSource delivery stream type. ({})",
                    id.arn()
                )));
            }
            (m.uid, m.encryption.as_ref().is_some_and(|e| e.status == "ENABLED"))
        };
        if let Some(r) = records.iter().find(|r| r.len() > MAX_RECORD_BYTES) {
            return Err(invalid(format!("A record is {} bytes; the limit is {MAX_RECORD_BYTES}.", r.len())));
        }
        let bytes: usize = records.iter().map(|r| r.len()).sum();
        self.inner.options.disk.check(bytes as u64 + 64 * records.len() as u64)?;
        let limits = (self.inner.options.max_backlog_records, self.inner.options.max_backlog_bytes);
        let serials = live.append(records, self.now_ms(), limits).map_err(|refused| match refused {
            Refused::Full { records, bytes } => DeliveryStreamError::ServiceUnavailable(format!(
                "Slow down: delivery stream {} has {records} records ({bytes} bytes) waiting for its destination.",
                id.name
            )),
            Refused::Storage(e) => DeliveryStreamError::Storage(e),
        })?;
        if let Some(m) = &self.inner.options.metrics {
            m.count_delivery("incoming", records.len() as u64, bytes as u64);
        }
        Ok(Accepted { record_ids: serials.into_iter().map(|s| record_id(uid, s)).collect(), encrypted })
    }

    /// Whether the stream encrypts (server-side encryption ENABLED); false for a stream
    /// that does not exist.
    pub fn encrypted(&self, id: &DeliveryStreamId) -> bool {
        self.live(id).is_ok_and(|l| read(&l.meta).encryption.as_ref().is_some_and(|e| e.status == "ENABLED"))
    }

    /// Changes the destination to what `change` makes of the current one (it refuses
    /// with its own error), if `current_version` and `destination_id` are still current.
    pub fn update_destination(
        &self,
        id: &DeliveryStreamId,
        current_version: u64,
        destination_id: &str,
        change: impl FnOnce(&Destination) -> Result<Destination>,
    ) -> Result<()> {
        let _control = lock(&self.inner.control);
        // UpdateDestination words it differently from the other operations.
        let live = self.live(id).map_err(|_| {
            DeliveryStreamError::ResourceNotFound(format!(
                "Firehose {} under accountId {} not found.",
                id.name, id.scope.account
            ))
        })?;
        let mut meta = read(&live.meta).clone();
        if meta.version != current_version {
            return Err(DeliveryStreamError::ConcurrentModification(format!(
                "Cannot update firehose: {} since the current version id: {} and specified version id: {} do not match",
                id.name, meta.version, current_version
            )));
        }
        if meta.destination_id != destination_id {
            return Err(invalid(format!("Destination Id {destination_id} not found")));
        }
        let next = change(&meta.destination)?;
        self.check_destination(&next, "", &id.scope.account)?;
        meta.destination = next;
        meta.version += 1;
        meta.updated_ms = self.now_ms();
        self.inner.meta.save(&meta).map_err(DeliveryStreamError::Storage)?;
        *write(&live.meta) = meta;
        live.wake.notify_one();
        Ok(())
    }

    pub fn tag(&self, id: &DeliveryStreamId, tags: BTreeMap<String, String>) -> Result<()> {
        check_tags(&tags)?;
        self.change(id, |m| {
            let mut next = m.tags.clone();
            next.extend(tags);
            if next.len() > MAX_TAGS {
                return Err(DeliveryStreamError::LimitExceeded(format!(
                    "Number of tags would exceed the maximum of {MAX_TAGS} per delivery stream."
                )));
            }
            m.tags = next;
            Ok(())
        })
    }

    pub fn untag(&self, id: &DeliveryStreamId, keys: &[String]) -> Result<()> {
        self.change(id, |m| {
            for k in keys {
                m.tags.remove(k);
            }
            Ok(())
        })
    }

    /// Records server-side encryption as asked (`Some((key_type, key_arn))`) or
    /// stopped (`None`); Kinescope reports it, it does not encrypt the backlog.
    pub fn set_encryption(&self, id: &DeliveryStreamId, to: Option<(String, Option<String>)>) -> Result<()> {
        let now = self.now_ms();
        self.change(id, |m| {
            if !matches!(m.source, Source::DirectPut { .. }) {
                return Err(invalid("Server-side encryption is only for DirectPut delivery streams."));
            }
            m.encryption_calls_ms.retain(|t| now - t < DAY_MS);
            if m.encryption_calls_ms.len() >= MAX_ENCRYPTION_CALLS_PER_DAY {
                return Err(DeliveryStreamError::LimitExceeded(format!(
                    "StartDeliveryStreamEncryption and StopDeliveryStreamEncryption may be called {MAX_ENCRYPTION_CALLS_PER_DAY} times per stream in 24 hours."
                )));
            }
            m.encryption_calls_ms.push(now);
            m.encryption = Some(match to {
                Some((key_type, key_arn)) => Encryption { key_type, key_arn, status: "ENABLED".into() },
                None => Encryption { key_type: "AWS_OWNED_CMK".into(), key_arn: None, status: "DISABLED".into() },
            });
            Ok(())
        })
    }

    fn change(&self, id: &DeliveryStreamId, f: impl FnOnce(&mut StreamMeta) -> Result<()>) -> Result<()> {
        let _control = lock(&self.inner.control);
        let live = self.live(id)?;
        let mut meta = read(&live.meta).clone();
        f(&mut meta)?;
        meta.updated_ms = self.now_ms();
        self.inner.meta.save(&meta).map_err(DeliveryStreamError::Storage)?;
        *write(&live.meta) = meta;
        Ok(())
    }

    /// Waits until `id` has nothing pending (tests and benches), at most `timeout`.
    pub async fn wait_delivered(&self, id: &DeliveryStreamId, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.live(id) {
                Ok(l) if lock(&l.backlog).is_empty() => return true,
                Err(_) => return true,
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Stops every delivery task and waits for them (records not yet delivered stay
    /// in their backlogs for the next start; a delivery under way finishes first).
    pub async fn shutdown(&self) {
        let streams: Vec<Arc<LiveStream>> = read(&self.inner.streams).values().cloned().collect();
        for s in streams {
            let _ = s.stop.send(true);
            let tasks = std::mem::take(&mut *lock(&s.tasks));
            for task in tasks {
                let _ = task.await;
            }
        }
    }
}

/// A record id: the stream's uid and the record's serial, 32 hex digits (opaque to
/// clients, as AWS's are; unique per server).
fn record_id(uid: u64, serial: u64) -> String {
    // By hand rather than format!: a batch makes 500 of them per call.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for v in [uid, serial] {
        for shift in (0..16).rev() {
            out.push(char::from(HEX[((v >> (shift * 4)) & 0xf) as usize]));
        }
    }
    out
}

fn not_found(id: &DeliveryStreamId) -> DeliveryStreamError {
    DeliveryStreamError::ResourceNotFound(format!("Firehose {} under account {} not found.", id.name, id.scope.account))
}

fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(settings::violation(
            name,
            "deliveryStreamName",
            "satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 64",
        )))
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    // The model's patterns: letters, numbers, spaces and `_.:/=+-@%`; keys not `aws:`.
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@%".contains(c);
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.starts_with("aws:") || !k.chars().all(allowed) {
            return Err(DeliveryStreamError::Validation(format!(
                "1 validation error detected: Value '{k}' at 'tags.member.key' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(?!aws:)[\\p{{L}}\\p{{Z}}\\p{{N}}_.:\\/=+\\-@%]*$ and have length between 1 and 128"
            )));
        }
        if v.chars().count() > 256 || !v.chars().all(allowed) {
            return Err(DeliveryStreamError::Validation(format!(
                "1 validation error detected: Value '{v}' at 'tags.member.value' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[\\p{{L}}\\p{{Z}}\\p{{N}}_.:\\/=+\\-@%]*$ and have length less than or equal to 256"
            )));
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
