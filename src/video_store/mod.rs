//! The video store: streams, their fragments, and the bytes behind them.
//!
//! One engine with a plain Rust API. It knows nothing of HTTP or AWS shapes: the API
//! layer adapts it. It reaches its data only through three traits, a
//! [`StoreBackend`]: the [`index::StreamCatalog`] (stream records), the
//! [`index::FragmentIndex`] (fragments, segment summaries, init segments, numbering)
//! and the [`media::MediaStore`] (the fragments' bytes). The embedded implementation
//! ([`embedded`]) keeps them under the data directory:
//!
//! ```text
//! index/                 sled: the catalog tree and the fragment index tree
//! media/<stream id>/     append-only segment files, <segment id>.seg
//! ```
//!
//! * [`catalog`]: stream records. [`records`]: fragment and segment records.
//! * [`writer`]: the thread that writes in groups (media store, then one index
//!   commit), deletes and sweeps. [`recovery`]: the check run at open.
//! * The store's API, by concern: `streams` (create, resolve, list, change, delete),
//!   `ingest` (a stream's live state, init segments, submitting fragments), `reads`
//!   (index scans and fragment bytes), `retention` (sweeps); the live bus (`live`: live
//!   edge, frames, LL-HLS parts) and recently read fragments (`recent`) beside them.
//!
//! Architecture invariant: an index entry is written only after its bytes are durable,
//! and deleted before its bytes are; so the index never points at bytes that are not
//! there, whatever moment the process dies at.

pub mod catalog;
pub mod embedded;
pub mod index;
mod ingest;
mod live;
pub mod live_parts;
pub mod media;
pub mod object_media;
pub mod postgres_index;
mod reads;
mod recent;
pub mod records;
pub mod recovery;
mod retention;
mod streams;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use catalog::{
    parse_bucket_uri, EventDestination, ImageGenerationSettings, NotificationSettings, StreamRecord, StreamStatus,
};
pub use live::{LiveEdge, LiveFrame, LiveStream, PartSink, TimeKind};
pub use live_parts::{LivePart, PartLookup, PartedFragment};
pub use records::{FragmentMeta, StreamId};
pub use writer::SweepStats;

use crate::clock::SharedClock;
use crate::disk_space::{DiskGuard, DiskRefusal};
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;
use index::{FragmentIndex, StreamCatalog};
use live_parts::LiveParts;
use media::MediaStore;
use writer::{AppendRequest, Writer, WriterCmd};

/// Room on disk a fragment takes beyond its bytes (record framing, index entries):
/// what the free-space check adds.
const FRAGMENT_OVERHEAD_BYTES: u64 = 256;

/// Where the store keeps what it knows: the only way the engine reaches its data.
#[derive(Clone)]
pub struct StoreBackend {
    pub catalog: Arc<dyn StreamCatalog>,
    pub index: Arc<dyn FragmentIndex>,
    pub media: Arc<dyn MediaStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("The requested stream is not found or not active: {0}")]
    StreamNotFound(String),
    #[error("The stream {0} already exists")]
    StreamExists(String),
    #[error("The stream version {given} does not match the current version {current}")]
    VersionMismatch { given: String, current: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("a stream can have at most {max} tags; this change would give it {would_have}")]
    TooManyTags { max: usize, would_have: usize },
    #[error("the stream {0} changed meanwhile; retry")]
    Conflict(String),
    #[error("fragment {0} is not stored")]
    FragmentNotFound(u64),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The catalog, the index or the media store failed (the cause is the source).
    #[error("{0}")]
    Storage(#[from] StorageFailure),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    DiskFull(#[from] DiskRefusal),
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// The account and region of streams created before stores were scoped (format 1
    /// catalogs); new streams take the scope of the request that creates them.
    pub default_scope: Scope,
    /// Retention when CreateStream does not say (hours).
    pub default_retention_hours: u32,
    /// How long a stream with retention 0 keeps fragments for live readers.
    pub live_buffer_us: i64,
    pub segment_max_bytes: u64,
    /// Longest time a segment file stays open for appends.
    pub segment_max_age_us: i64,
    /// Requests waiting for the writer before producers wait too.
    pub writer_queue: usize,
    /// Fragment bytes accepted but not yet persisted before producers wait too.
    pub max_inflight_bytes: u64,
    /// Refuses new fragments before the filesystem fills up.
    pub disk: Arc<DiskGuard>,
    /// Recently read fragments kept in memory for the next readers (bytes).
    pub recent_fragment_bytes: usize,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            default_scope: Scope::new("000000000000", "us-east-1"),
            default_retention_hours: 24,
            live_buffer_us: 5 * 60 * 1_000_000,
            segment_max_bytes: 128 * 1024 * 1024,
            segment_max_age_us: 3600 * 1_000_000,
            writer_queue: 4096,
            max_inflight_bytes: 256 * 1024 * 1024,
            disk: Arc::new(DiskGuard::unlimited()),
            recent_fragment_bytes: 128 * 1024 * 1024,
        }
    }

    /// Segments roll often enough that retention can drop whole files on time: at most
    /// an eighth of the retention, and at most `segment_max_age_us`.
    fn segment_age_for(&self, record: &StreamRecord) -> i64 {
        (record.retention_us(self.live_buffer_us) / 8).clamp(1_000_000, self.segment_max_age_us)
    }
}

/// What CreateStream asks for.
#[derive(Debug, Clone, Default)]
pub struct NewStream {
    pub name: String,
    pub device_name: Option<String>,
    pub media_type: Option<String>,
    pub kms_key_id: Option<String>,
    pub data_retention_hours: Option<u32>,
    pub tags: BTreeMap<String, String>,
    /// `HOT` (the default) or `WARM`: stored and reported; both are the same storage here.
    pub storage_tier: Option<String>,
}

/// A fragment to store, as ingest hands it over.
#[derive(Debug, Clone)]
pub struct NewFragment {
    pub producer_ts_us: i64,
    pub server_ts_us: i64,
    pub duration_us: i64,
    pub init_id: u32,
    pub keyframe: bool,
    pub chunks: Vec<Bytes>,
}

/// A fragment that was accepted and numbered; `persisted` resolves once it is durable.
pub struct PendingFragment {
    pub fragment_number: u64,
    pub persisted: oneshot::Receiver<Result<FragmentMeta, StoreError>>,
}

pub enum RetentionChange {
    Increase(u32),
    Decrease(u32),
}

struct StoreInner {
    config: StoreConfig,
    clock: SharedClock,
    catalog: Arc<dyn StreamCatalog>,
    index: Arc<dyn FragmentIndex>,
    media: Arc<dyn MediaStore>,
    writer: mpsc::Sender<WriterCmd>,
    live: Mutex<HashMap<StreamId, Arc<LiveStream>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// In-flight fragment bytes, in KiB permits: bounds the memory queued for the writer.
    inflight_kib: Arc<tokio::sync::Semaphore>,
    inflight_kib_total: u32,
    /// Bumped when a stream's notification or image-generation settings change or a
    /// stream is deleted: what the event publisher watches.
    settings_changes: watch::Sender<u64>,
    recent: recent::RecentFragments,
}

impl Drop for StoreInner {
    /// The last handle is gone: close the writer's queue, let it finish what is queued,
    /// and wait for it, so the index is flushed and its lock released on return.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writer, closed));
        if let Some(handle) = self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if handle.join().is_err() {
                tracing::error!("fragment writer panicked");
            }
        }
        if let Err(e) = self.index.flush() {
            tracing::error!(error = %e, "index flush at close failed");
        }
    }
}

/// The video store engine. Cheap to clone; the last clone dropped closes it.
#[derive(Clone)]
pub struct VideoStore {
    inner: Arc<StoreInner>,
}

impl VideoStore {
    /// Opens (or creates) the store on its embedded implementation, runs recovery, and
    /// starts the writer thread.
    pub fn open(config: StoreConfig, clock: SharedClock) -> Result<(Self, recovery::RecoveryReport), StoreError> {
        let backend = embedded::open(&config.data_dir, &config.default_scope, config.segment_max_bytes)?;
        Self::open_with(config, clock, backend)
    }

    /// Opens the store on `backend`, runs recovery, and starts the writer thread.
    pub fn open_with(
        config: StoreConfig,
        clock: SharedClock,
        backend: StoreBackend,
    ) -> Result<(Self, recovery::RecoveryReport), StoreError> {
        let StoreBackend { catalog, index, media } = backend;
        let report = recovery::recover(catalog.as_ref(), index.as_ref(), media.as_ref(), &config.data_dir)?;
        let (tx, rx) = mpsc::channel(config.writer_queue.max(1));
        let writer = Writer::new(index.clone(), media.clone());
        let writer_thread = std::thread::Builder::new().name("fragment-writer".into()).spawn(move || writer.run(rx))?;
        let recent = recent::RecentFragments::new(config.recent_fragment_bytes);
        let inflight_kib_total = u32::try_from(config.max_inflight_bytes / 1024).unwrap_or(u32::MAX).clamp(1, 1 << 30);
        let store = VideoStore {
            inner: Arc::new(StoreInner {
                config,
                clock,
                catalog,
                index,
                media,
                writer: tx,
                live: Mutex::new(HashMap::new()),
                writer_thread: Mutex::new(Some(writer_thread)),
                inflight_kib: Arc::new(tokio::sync::Semaphore::new(inflight_kib_total as usize)),
                inflight_kib_total,
                settings_changes: watch::Sender::new(0),
                recent,
            }),
        };
        Ok((store, report))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Flushes the index and stops the writer once every clone is dropped; call at
    /// shutdown. Anything already acknowledged is durable regardless.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.index.flush()
    }
}

/// Splits `arn:PARTITION:kinesisvideo:REGION:ACCOUNT:stream/NAME/CREATION_MS` into
/// the scope, the name and the creation time.
pub fn parse_stream_arn(arn: &str) -> Option<(Scope, String, i64)> {
    let (scope, resource) = Scope::parse_arn(arn, "kinesisvideo")?;
    let (name, ms) = resource.strip_prefix("stream/")?.rsplit_once('/')?;
    catalog::validate_stream_name(name).ok()?;
    Some((scope, name.to_string(), ms.parse().ok()?))
}
