//! The video store: streams, their fragments, and the bytes behind them.
//!
//! One engine with a plain Rust API. It knows nothing of HTTP or AWS shapes: the API
//! layer adapts it. Layout on disk, under the data directory:
//!
//! ```text
//! index/                 sled: the catalog tree and the fragment index tree
//! media/<stream id>/     append-only segment files, <segment id>.seg
//! ```
//!
//! * [`catalog`]: stream records. [`records`]: index keys and values.
//! * [`segment`]: the segment file format. [`writer`]: the thread that appends, syncs and
//!   indexes in groups, deletes and sweeps. [`recovery`]: the check run at open.
//!
//! Architecture invariant: an index entry is written only after its bytes are synced,
//! and deleted before its bytes are; so the index never points at bytes that are not
//! there, whatever moment the process dies at.

pub mod catalog;
pub mod live_parts;
mod recent;
pub mod records;
pub mod recovery;
pub mod segment;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use catalog::{
    parse_bucket_uri, EventDestination, ImageGenerationSettings, NotificationSettings, StreamRecord, StreamStatus,
};
pub use live_parts::{LivePart, PartLookup, PartedFragment};
pub use records::{FragmentMeta, StreamId};
pub use writer::SweepStats;

use crate::clock::SharedClock;
use crate::disk_space::{DiskGuard, DiskRefusal};
use crate::scope::Scope;
use live_parts::LiveParts;
use records::{key1, key2, prefix, time_from_key, time_key};
use writer::{AppendRequest, Writer, WriterCmd};

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
    #[error("index error: {0}")]
    Index(#[from] sled::Error),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Format(#[from] crate::sled_open::FormatError),
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

    fn media_root(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    /// Segments roll often enough that retention can drop whole files on time: at most
    /// an eighth of the retention, and at most `segment_max_age_us`.
    fn segment_age_for(&self, record: &StreamRecord) -> i64 {
        (record.retention_us(self.live_buffer_us) / 8).clamp(1_000_000, self.segment_max_age_us)
    }
}

/// Which of a fragment's two clocks a time selector means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    Producer,
    Server,
}

/// A stream's live edge as readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveEdge {
    /// The highest fragment number persisted so far (0: none).
    pub last_persisted: u64,
    /// The stream was deleted: stop following it.
    pub deleted: bool,
}

/// What the index knows of one stream's live edge. Created on first use; kept (as a
/// tombstone) after the stream is deleted, so late producers are refused.
pub struct LiveStream {
    pub id: StreamId,
    /// The next fragment number to hand out; also the lock that orders appends.
    next_fragment: tokio::sync::Mutex<NextFragment>,
    edge: watch::Sender<LiveEdge>,
    init: tokio::sync::Mutex<Option<(u32, Bytes)>>,
    /// Video (and Opus) frames as a live source (an RTSP or WHIP publisher, a pulled camera) muxes them,
    /// for viewers that cannot wait for a whole fragment (WHEP). Bounded: a reader that
    /// falls behind lags, and waits for the next keyframe.
    frames: tokio::sync::broadcast::Sender<Arc<LiveFrame>>,
    /// The chunks of the fragment being received and the few before it (LL-HLS parts).
    parts: Mutex<LiveParts>,
    /// Bumped whenever `parts` changes: what blocking playlist reloads wait on.
    parts_changed: watch::Sender<u64>,
    /// The number the next submitted fragment will get (mirrors `next_fragment`).
    next_number: std::sync::atomic::AtomicU64,
}

/// One frame on a stream's live bus: video, or Opus audio.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub codec: crate::codec::CodecKind,
    /// As stored: length-prefixed NAL units (video), one Opus packet (audio).
    pub data: Bytes,
    pub keyframe: bool,
    /// On keyframes: the parameter sets a decoder needs first (H.264: SPS, PPS).
    pub parameter_sets: Vec<Vec<u8>>,
}

impl LiveFrame {
    /// A video frame as a decoder or RTP packetizer takes it: Annex B, led by its
    /// parameter sets on a keyframe.
    pub fn annex_b(&self) -> Bytes {
        Bytes::from(crate::codec::nal::to_annex_b(&self.parameter_sets, &self.data))
    }
}

/// Frames a live-bus reader may fall behind by before it lags (about 7 s of 25 fps video
/// with 20 ms Opus packets).
const LIVE_FRAMES: usize = 512;

struct NextFragment {
    number: u64,
    deleted: bool,
}

impl LiveStream {
    /// Raises the persisted fragment number and wakes the readers waiting on it.
    fn notify_persisted(&self, n: u64) {
        self.edge.send_if_modified(|cur| {
            if n > cur.last_persisted {
                cur.last_persisted = n;
                true
            } else {
                false
            }
        });
    }

    /// A receiver that changes whenever a fragment of this stream is persisted or the
    /// stream is deleted.
    pub fn subscribe(&self) -> watch::Receiver<LiveEdge> {
        self.edge.subscribe()
    }

    /// Whether anyone reads the live bus (a publisher copies frames only then).
    pub fn has_frame_readers(&self) -> bool {
        self.frames.receiver_count() > 0
    }

    /// Offers a frame to the live bus's readers (none listening: it goes nowhere).
    pub fn publish_frame(&self, frame: LiveFrame) {
        if self.frames.receiver_count() > 0 {
            let _ = self.frames.send(Arc::new(frame));
        }
    }

    /// The frames published from now on.
    pub fn subscribe_frames(&self) -> tokio::sync::broadcast::Receiver<Arc<LiveFrame>> {
        self.frames.subscribe()
    }

    fn parts_lock(&self) -> std::sync::MutexGuard<'_, LiveParts> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn parts_changed(&self) {
        self.parts_changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Makes the caller the producer whose chunks are the stream's parts (see
    /// [`live_parts`]); the previous producer's open fragment is dropped.
    pub fn part_sink(self: &Arc<Self>) -> PartSink {
        let producer = self.parts_lock().claim();
        self.parts_changed();
        PartSink { live: self.clone(), producer }
    }

    /// The parted fragments numbered `from` or later, oldest first.
    pub fn parts_since(&self, from: u64) -> Vec<PartedFragment> {
        self.parts_lock().since(from)
    }

    pub fn part(&self, number: u64, index: usize) -> PartLookup {
        self.parts_lock().part(number, index)
    }

    /// A receiver that changes whenever a part is added, closed or dropped.
    pub fn subscribe_parts(&self) -> watch::Receiver<u64> {
        self.parts_changed.subscribe()
    }
}

/// A producer's claim on its stream's parts (see [`LiveStream::part_sink`]). Dropped, it
/// drops the parts of a fragment it left unfinished.
pub struct PartSink {
    live: Arc<LiveStream>,
    producer: u64,
}

impl PartSink {
    /// A chunk of the fragment being received, as soon as it is complete.
    pub fn push(&self, init_id: u32, part: LivePart) {
        let expected = self.live.next_number.load(std::sync::atomic::Ordering::Acquire);
        if self.live.parts_lock().push(self.producer, expected, init_id, part) {
            self.live.parts_changed();
        }
    }

    /// The fragment being received was submitted and numbered `number`.
    pub fn close(&self, number: u64) {
        self.live.parts_lock().close(self.producer, number);
        self.live.parts_changed();
    }

    /// The fragment being received will not be stored.
    pub fn abandon(&self) {
        self.live.parts_lock().abandon(self.producer);
        self.live.parts_changed();
    }
}

impl Drop for PartSink {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Open segment files for reading, shared by every reader.
#[derive(Default)]
pub struct FileCache {
    files: Mutex<HashMap<(StreamId, u64), Arc<File>>>,
}

const FILE_CACHE_MAX: usize = 1024;

/// Fragments younger than this are assumed to be in the page cache (see
/// [`VideoStore::read_fragment`]).
const HOT_FRAGMENT_AGE_US: i64 = 5 * 60 * 1_000_000;

impl FileCache {
    fn get(&self, root: &std::path::Path, stream: StreamId, segment_id: u64) -> io::Result<Arc<File>> {
        if let Some(f) = self.lock().get(&(stream, segment_id)) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(segment::segment_path(root, stream, segment_id))?);
        let mut files = self.lock();
        if files.len() >= FILE_CACHE_MAX {
            files.clear();
        }
        files.insert((stream, segment_id), f.clone());
        Ok(f)
    }

    fn evict(&self, stream: StreamId, segment_id: u64) {
        self.lock().remove(&(stream, segment_id));
    }

    fn evict_stream(&self, stream: StreamId) {
        self.lock().retain(|(s, _), _| *s != stream);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(StreamId, u64), Arc<File>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
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
    db: sled::Db,
    catalog: catalog::Catalog,
    index: sled::Tree,
    writer: mpsc::Sender<WriterCmd>,
    live: Mutex<HashMap<StreamId, Arc<LiveStream>>>,
    files: Arc<FileCache>,
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
        if let Err(e) = self.db.flush() {
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
    /// Opens (or creates) the store, runs recovery, and starts the writer thread.
    pub fn open(config: StoreConfig, clock: SharedClock) -> Result<(Self, recovery::RecoveryReport), StoreError> {
        std::fs::create_dir_all(config.media_root())?;
        let db = crate::sled_open::open(&config.data_dir.join("index"), 1000)?;
        crate::sled_open::check_and_record_format(
            &db,
            "index",
            records::INDEX_FORMAT,
            "the fragment index (data/index)",
        )?;
        crate::sled_open::check_and_record_format(
            &db,
            "media",
            segment::MEDIA_FORMAT,
            "the segment files (data/media)",
        )?;
        let catalog = catalog::Catalog::open(&db, &config.default_scope)?;
        let index = db.open_tree("fragments")?;
        let report = recovery::recover(&db, &catalog, &index, &config.media_root())?;
        let files = Arc::new(FileCache::default());
        let (tx, rx) = mpsc::channel(config.writer_queue.max(1));
        let writer =
            Writer::new(db.clone(), index.clone(), config.media_root(), config.segment_max_bytes, files.clone());
        let writer_thread = std::thread::Builder::new().name("fragment-writer".into()).spawn(move || writer.run(rx))?;
        let recent = recent::RecentFragments::new(config.recent_fragment_bytes);
        let inflight_kib_total = u32::try_from(config.max_inflight_bytes / 1024).unwrap_or(u32::MAX).clamp(1, 1 << 30);
        let store = VideoStore {
            inner: Arc::new(StoreInner {
                config,
                clock,
                db,
                catalog,
                index,
                writer: tx,
                live: Mutex::new(HashMap::new()),
                files,
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
        self.inner.db.flush()?;
        Ok(())
    }

    // ---- streams ------------------------------------------------------------------

    /// `arn:PARTITION:kinesisvideo:REGION:ACCOUNT:stream/NAME/CREATION_MS`.
    pub fn stream_arn(scope: &Scope, name: &str, creation_ms: i64) -> String {
        scope.arn("kinesisvideo", &format!("stream/{name}/{creation_ms}"))
    }

    /// Creates a stream in `scope` (the caller's account and region).
    pub async fn create_stream(&self, scope: &Scope, req: NewStream) -> Result<StreamRecord, StoreError> {
        catalog::validate_stream_name(&req.name)?;
        if let Some(d) = &req.device_name {
            catalog::validate_device_name(d)?;
        }
        if let Some(m) = &req.media_type {
            catalog::validate_media_type(m)?;
        }
        if let Some(k) = &req.kms_key_id {
            if k.is_empty() || k.len() > 2048 {
                return Err(StoreError::InvalidArgument("KmsKeyId must be 1 to 2048 characters".into()));
            }
        }
        let retention = req.data_retention_hours.unwrap_or(self.inner.config.default_retention_hours);
        if retention > catalog::MAX_RETENTION_HOURS {
            return Err(StoreError::InvalidArgument(format!(
                "DataRetentionInHours {retention} is above the maximum of {}",
                catalog::MAX_RETENTION_HOURS
            )));
        }
        if req.tags.len() > catalog::MAX_TAGS {
            return Err(StoreError::TooManyTags { max: catalog::MAX_TAGS, would_have: req.tags.len() });
        }
        catalog::validate_tags(&req.tags)?;
        if self.inner.catalog.get(scope, &req.name)?.is_some() {
            return Err(StoreError::StreamExists(req.name));
        }
        let now_ms = self.inner.clock.now_ms();
        let record = StreamRecord {
            id: self.inner.db.generate_id()? + 1,
            arn: Self::stream_arn(scope, &req.name, now_ms),
            scope: scope.clone(),
            name: req.name,
            device_name: req.device_name,
            media_type: req.media_type,
            kms_key_id: req.kms_key_id.unwrap_or_else(|| scope.arn("kms", "alias/aws/kinesisvideo")),
            version: catalog::new_version(),
            status: StreamStatus::Active,
            creation_time_ms: now_ms,
            data_retention_hours: retention,
            tags: req.tags,
            storage_tier: "HOT".into(),
            notification: None,
            image_generation: None,
            frame_metadata_stream: None,
        };
        self.inner.catalog.insert_new(&record)?;
        // Durable before it is acknowledged; the fsync waits off the runtime's threads.
        self.inner.db.flush_async().await?;
        Ok(record)
    }

    /// Finds a stream of `scope` by name, ARN, or both (they must then agree). An ARN
    /// of another account or region names no stream the caller can see.
    pub fn resolve(&self, scope: &Scope, name: Option<&str>, arn: Option<&str>) -> Result<StreamRecord, StoreError> {
        let arn_name = match arn {
            Some(a) => {
                let (arn_scope, name, _) = parse_stream_arn(a)
                    .ok_or_else(|| StoreError::InvalidArgument(format!("'{a}' is not a stream ARN")))?;
                if &arn_scope != scope {
                    return Err(StoreError::StreamNotFound(a.to_string()));
                }
                Some(name)
            }
            None => None,
        };
        let name = match (name, arn_name.as_deref()) {
            (Some(n), Some(a)) if n != a => {
                return Err(StoreError::InvalidArgument("StreamName and StreamARN name different streams".into()))
            }
            (Some(n), _) => n.to_string(),
            (None, Some(a)) => a.to_string(),
            (None, None) => return Err(StoreError::InvalidArgument("StreamName or StreamARN is required".into())),
        };
        let record = self.inner.catalog.get(scope, &name)?.ok_or_else(|| StoreError::StreamNotFound(name.clone()))?;
        if let Some(a) = arn {
            if record.arn != a {
                return Err(StoreError::StreamNotFound(a.to_string()));
            }
        }
        Ok(record)
    }

    /// The streams of `scope` in name order.
    pub fn list_streams(
        &self,
        scope: &Scope,
        name_prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        self.inner.catalog.list(scope, name_prefix, after, limit)
    }

    /// Applies `change` to a stream record under compare-and-swap, retrying on races.
    async fn modify(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        mut change: impl FnMut(&mut StreamRecord) -> Result<(), StoreError>,
    ) -> Result<StreamRecord, StoreError> {
        loop {
            let old = self.resolve(scope, name, arn)?;
            let mut new = old.clone();
            change(&mut new)?;
            match self.inner.catalog.replace(&old, &new) {
                Ok(()) => {
                    self.inner.db.flush_async().await?;
                    return Ok(new);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sets (or with `None` removes) a stream's notification settings.
    pub async fn set_notification(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        settings: Option<NotificationSettings>,
    ) -> Result<StreamRecord, StoreError> {
        self.change_event_settings(scope, name, arn, |r| r.notification = settings.clone()).await
    }

    /// Sets (or with `None` removes) a stream's image-generation settings.
    pub async fn set_image_generation(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        settings: Option<ImageGenerationSettings>,
    ) -> Result<StreamRecord, StoreError> {
        self.change_event_settings(scope, name, arn, |r| r.image_generation = settings.clone()).await
    }

    /// Binds (or with `None` unbinds) the data stream describing a stream's frames.
    pub async fn set_frame_metadata_stream(
        &self,
        scope: &Scope,
        name: &str,
        data_stream_arn: Option<String>,
    ) -> Result<StreamRecord, StoreError> {
        self.modify(scope, Some(name), None, |r| {
            r.frame_metadata_stream = data_stream_arn.clone();
            Ok(())
        })
        .await
    }

    async fn change_event_settings(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        mut change: impl FnMut(&mut StreamRecord),
    ) -> Result<StreamRecord, StoreError> {
        let r = self
            .modify(scope, name, arn, |r| {
                change(r);
                Ok(())
            })
            .await?;
        self.inner.settings_changes.send_modify(|n| *n += 1);
        Ok(r)
    }

    /// Every stream with notification or image-generation settings, of every scope.
    pub fn streams_with_events(&self) -> Result<Vec<StreamRecord>, StoreError> {
        Ok(self
            .inner
            .catalog
            .all()?
            .into_iter()
            .filter(|r| r.notification.is_some() || r.image_generation.is_some())
            .collect())
    }

    /// Changes whenever [`Self::streams_with_events`] may have.
    pub fn settings_changes(&self) -> watch::Receiver<u64> {
        self.inner.settings_changes.subscribe()
    }

    fn check_version(record: &StreamRecord, given: &str) -> Result<(), StoreError> {
        if record.version != given {
            return Err(StoreError::VersionMismatch { given: given.into(), current: record.version.clone() });
        }
        Ok(())
    }

    pub async fn update_stream(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        current_version: &str,
        device_name: Option<String>,
        media_type: Option<String>,
    ) -> Result<StreamRecord, StoreError> {
        if let Some(d) = &device_name {
            catalog::validate_device_name(d)?;
        }
        if let Some(m) = &media_type {
            catalog::validate_media_type(m)?;
        }
        self.modify(scope, name, arn, |r| {
            Self::check_version(r, current_version)?;
            if device_name.is_some() {
                r.device_name = device_name.clone();
            }
            if media_type.is_some() {
                r.media_type = media_type.clone();
            }
            r.version = catalog::new_version();
            Ok(())
        })
        .await
    }

    /// Changes retention; a decrease removes data now past it before returning.
    pub async fn update_retention(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        current_version: &str,
        change: RetentionChange,
    ) -> Result<StreamRecord, StoreError> {
        let record = self
            .modify(scope, name, arn, |r| {
                Self::check_version(r, current_version)?;
                let new = match change {
                    RetentionChange::Increase(h) => r.data_retention_hours.checked_add(h),
                    RetentionChange::Decrease(h) => r.data_retention_hours.checked_sub(h),
                };
                match new {
                    Some(h) if h <= catalog::MAX_RETENTION_HOURS => r.data_retention_hours = h,
                    _ => {
                        return Err(StoreError::InvalidArgument(format!(
                            "the resulting retention must be between 0 and {} hours (current {})",
                            catalog::MAX_RETENTION_HOURS,
                            r.data_retention_hours
                        )))
                    }
                }
                r.version = catalog::new_version();
                Ok(())
            })
            .await?;
        self.sweep_stream(&record).await?;
        Ok(record)
    }

    pub async fn tag_stream(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        catalog::validate_tags(tags)?;
        self.modify(scope, name, arn, |r| {
            let mut merged = r.tags.clone();
            merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            if merged.len() > catalog::MAX_TAGS {
                return Err(StoreError::TooManyTags { max: catalog::MAX_TAGS, would_have: merged.len() });
            }
            r.tags = merged;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub async fn untag_stream(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        keys: &[String],
    ) -> Result<(), StoreError> {
        self.modify(scope, name, arn, |r| {
            for k in keys {
                r.tags.remove(k);
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Deletes a stream: its record at once, then its index entries and files.
    pub async fn delete_stream(
        &self,
        scope: &Scope,
        arn: &str,
        current_version: Option<&str>,
    ) -> Result<(), StoreError> {
        let record = loop {
            let record = self.resolve(scope, None, Some(arn))?;
            if let Some(v) = current_version {
                Self::check_version(&record, v)?;
            }
            match self.inner.catalog.remove_if(&record) {
                Ok(()) => break record,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        };
        self.inner.db.flush_async().await?;
        if record.notification.is_some() || record.image_generation.is_some() {
            self.inner.settings_changes.send_modify(|n| *n += 1);
        }
        // Under the append lock, so no append of this stream can queue behind the delete.
        let live = self.live(record.id)?;
        let rx = {
            let mut next = live.next_fragment.lock().await;
            next.deleted = true;
            let (reply, rx) = oneshot::channel();
            self.send(WriterCmd::DeleteStream { stream: record.id, reply }).await?;
            rx
        };
        live.edge.send_modify(|e| e.deleted = true);
        live.parts_lock().clear();
        live.parts_changed();
        self.inner.recent.remove_stream(record.id);
        rx.await.map_err(|_| StoreError::ShuttingDown)?
    }

    // ---- retention ----------------------------------------------------------------

    async fn sweep_stream(&self, record: &StreamRecord) -> Result<SweepStats, StoreError> {
        let cutoff = self.inner.clock.now_us() - record.retention_us(self.inner.config.live_buffer_us);
        let (reply, rx) = oneshot::channel();
        self.send(WriterCmd::Sweep { stream: record.id, cutoff_us: cutoff, reply }).await?;
        rx.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Removes, for every stream, the whole segment files past its retention.
    pub async fn sweep_expired(&self) -> Result<SweepStats, StoreError> {
        let mut total = SweepStats::default();
        for record in self.inner.catalog.all()? {
            let s = self.sweep_stream(&record).await?;
            total.segments += s.segments;
            total.fragments += s.fragments;
            total.bytes += s.bytes;
        }
        Ok(total)
    }

    // ---- ingest -------------------------------------------------------------------

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Arc<LiveStream>>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live state of a stream, loaded from the index on first use.
    pub fn live(&self, stream: StreamId) -> Result<Arc<LiveStream>, StoreError> {
        if let Some(l) = self.live_map().get(&stream) {
            return Ok(l.clone());
        }
        let index = &self.inner.index;
        let last = match index.scan_prefix(prefix(records::KIND_FRAGMENT, stream)).keys().next_back() {
            Some(k) => records::key_u64(&k?, 9).unwrap_or(0),
            None => 0,
        };
        let hw = index
            .get(prefix(records::KIND_HIGH_WATER, stream))?
            .and_then(|v| records::HighWater::decode(&v))
            .unwrap_or_default();
        let init = match index.scan_prefix(prefix(records::KIND_INIT, stream)).next_back() {
            Some(item) => {
                let (k, v) = item?;
                Some((records::key_u64(&k, 9).unwrap_or(0) as u32, Bytes::copy_from_slice(&v)))
            }
            None => None,
        };
        let live = Arc::new(LiveStream {
            id: stream,
            next_fragment: tokio::sync::Mutex::new(NextFragment {
                number: last.max(hw.fragment_number) + 1,
                deleted: false,
            }),
            edge: watch::Sender::new(LiveEdge { last_persisted: last, deleted: false }),
            init: tokio::sync::Mutex::new(init),
            frames: tokio::sync::broadcast::channel(LIVE_FRAMES).0,
            parts: Mutex::new(LiveParts::default()),
            parts_changed: watch::Sender::new(0),
            next_number: std::sync::atomic::AtomicU64::new(last.max(hw.fragment_number) + 1),
        });
        Ok(self.live_map().entry(stream).or_insert(live).clone())
    }

    async fn send(&self, cmd: WriterCmd) -> Result<(), StoreError> {
        self.inner.writer.send(cmd).await.map_err(|_| StoreError::ShuttingDown)
    }

    /// Records an init segment; returns its id (the current one if the bytes are the
    /// same as the stream's latest init). Durable when this returns.
    pub async fn put_init(&self, stream: StreamId, bytes: Bytes) -> Result<u32, StoreError> {
        let live = self.live(stream)?;
        let mut current = live.init.lock().await;
        if let Some((id, b)) = current.as_ref() {
            if *b == bytes {
                return Ok(*id);
            }
        }
        self.inner.config.disk.check(bytes.len() as u64)?;
        let id = current.as_ref().map_or(1, |(id, _)| id + 1);
        let (reply, rx) = oneshot::channel();
        self.send(WriterCmd::PutInit(writer::InitRequest { stream, init_id: id, bytes: bytes.clone(), reply })).await?;
        rx.await.map_err(|_| StoreError::ShuttingDown)??;
        *current = Some((id, bytes));
        Ok(id)
    }

    /// Numbers a fragment and queues it for the writer. Fragments of one stream are
    /// numbered and written in the order this is called.
    pub async fn submit_fragment(
        &self,
        record: &StreamRecord,
        fragment: NewFragment,
    ) -> Result<PendingFragment, StoreError> {
        let size: usize = fragment.chunks.iter().map(Bytes::len).sum();
        // Refused before the disk fills (see `disk_space`), not when a write fails.
        self.inner.config.disk.check(size as u64 + segment::RECORD_HEADER_LEN)?;
        // Room in the in-flight budget first (a fragment larger than the whole budget
        // takes all of it): a disk slower than the producers holds them back instead of
        // queueing unbounded memory.
        let want = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.inner.inflight_kib_total);
        let budget =
            self.inner.inflight_kib.clone().acquire_many_owned(want).await.map_err(|_| StoreError::ShuttingDown)?;
        let live = self.live(record.id)?;
        let mut next = live.next_fragment.lock().await;
        if next.deleted {
            return Err(StoreError::StreamNotFound(record.name.clone()));
        }
        let fragment_number = next.number;
        let (reply, persisted) = oneshot::channel();
        // Timestamps travel at millisecond precision; storing them so makes a time a
        // client read from ListFragments find the very fragment it came from.
        let req = AppendRequest {
            stream: record.id,
            fragment_number,
            producer_ts_us: fragment.producer_ts_us.div_euclid(1000) * 1000,
            server_ts_us: fragment.server_ts_us.div_euclid(1000) * 1000,
            duration_us: fragment.duration_us,
            init_id: fragment.init_id,
            flags: if fragment.keyframe { records::FLAG_KEYFRAME } else { 0 },
            chunks: fragment.chunks,
            segment_max_age_us: self.inner.config.segment_age_for(record),
            live: live.clone(),
            reply,
            _budget: budget,
        };
        self.send(WriterCmd::Append(req)).await?;
        next.number += 1;
        live.next_number.store(next.number, std::sync::atomic::Ordering::Release);
        Ok(PendingFragment { fragment_number, persisted })
    }

    // ---- reading ------------------------------------------------------------------

    pub fn fragment(&self, stream: StreamId, number: u64) -> Result<Option<FragmentMeta>, StoreError> {
        Ok(self.inner.index.get(key1(records::KIND_FRAGMENT, stream, number))?.and_then(|v| FragmentMeta::decode(&v)))
    }

    /// Up to `limit` fragments numbered `from` or later, in number order.
    pub fn fragments_from(&self, stream: StreamId, from: u64, limit: usize) -> Result<Vec<FragmentMeta>, StoreError> {
        let start = key1(records::KIND_FRAGMENT, stream, from);
        let end = key1(records::KIND_FRAGMENT, stream, u64::MAX);
        let mut out = Vec::new();
        for item in self.inner.index.range(start..=end).take(limit) {
            let (_, v) = item?;
            out.push(FragmentMeta::decode(&v).ok_or_else(|| StoreError::Corrupt("fragment entry".into()))?);
        }
        Ok(out)
    }

    pub fn first_fragment(&self, stream: StreamId) -> Result<Option<FragmentMeta>, StoreError> {
        Ok(self.fragments_from(stream, 0, 1)?.into_iter().next())
    }

    pub fn last_fragment(&self, stream: StreamId) -> Result<Option<FragmentMeta>, StoreError> {
        match self.inner.index.scan_prefix(prefix(records::KIND_FRAGMENT, stream)).next_back() {
            Some(item) => Ok(FragmentMeta::decode(&item?.1)),
            None => Ok(None),
        }
    }

    /// The newest `limit` fragments, oldest first.
    pub fn last_fragments(&self, stream: StreamId, limit: usize) -> Result<Vec<FragmentMeta>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self.inner.index.scan_prefix(prefix(records::KIND_FRAGMENT, stream)).rev().take(limit) {
            let (_, v) = item?;
            out.push(FragmentMeta::decode(&v).ok_or_else(|| StoreError::Corrupt("fragment entry".into()))?);
        }
        out.reverse();
        Ok(out)
    }

    /// Fragments whose `kind` start time is in `[start_us, end_us]`, in time order,
    /// after the position `after` (time, fragment number) when given.
    pub fn fragments_in_range(
        &self,
        stream: StreamId,
        kind: TimeKind,
        start_us: i64,
        end_us: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<FragmentMeta>, StoreError> {
        let k = time_index_kind(kind);
        let end = key2(k, stream, time_key(end_us), u64::MAX);
        let start = match after {
            Some((t, n)) => key2(k, stream, time_key(t), n.saturating_add(1)),
            None => key2(k, stream, time_key(start_us), 0),
        };
        if start > end {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.inner.index.range(start..=end) {
            let key = item?.0;
            let Some(n) = records::key_u64(&key, 17) else { continue };
            // A time entry without its fragment is being swept: skip it.
            if let Some(meta) = self.fragment(stream, n)? {
                out.push(meta);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The fragment that contains time `t_us`, else the first that starts after it.
    pub fn fragment_at(&self, stream: StreamId, kind: TimeKind, t_us: i64) -> Result<Option<FragmentMeta>, StoreError> {
        let k = time_index_kind(kind);
        let lo = prefix(k, stream).to_vec();
        let at = key2(k, stream, time_key(t_us), u64::MAX);
        if let Some(item) = self.inner.index.range(lo..=at.to_vec()).next_back() {
            let key = item?.0;
            if let (Some(n), Some(tk)) = (records::key_u64(&key, 17), records::key_u64(&key, 9)) {
                if let Some(meta) = self.fragment(stream, n)? {
                    if time_from_key(tk) + meta.duration_us > t_us {
                        return Ok(Some(meta));
                    }
                }
            }
        }
        Ok(self.fragments_in_range(stream, kind, t_us, i64::MAX, None, 1)?.into_iter().next())
    }

    /// The fragment holding the time `t_us` on the `kind` clock, or none (a gap). API
    /// timestamps have millisecond precision and fragment starts microseconds, so a time
    /// less than a millisecond before a fragment's start asks for that fragment.
    pub fn fragment_holding(
        &self,
        stream: StreamId,
        kind: TimeKind,
        t_us: i64,
    ) -> Result<Option<FragmentMeta>, StoreError> {
        const TIMESTAMP_PRECISION_US: i64 = 1_000;
        Ok(self.fragment_at(stream, kind, t_us)?.filter(|m| m.start_us(kind) - TIMESTAMP_PRECISION_US <= t_us))
    }

    /// The bytes of a stored fragment: one positioned read.
    ///
    /// A fragment stored in the last few minutes is read on the calling task: it sits
    /// in the page cache, and a hand-off to a blocking thread costs more than the copy
    /// (bench/serve_segments.sh on a 2-vCPU VM: 0.50-0.58 of nginx's rate with the
    /// hand-off, 0.67-1.18 over four runs without). Older fragments may need the disk,
    /// so they go to a blocking thread rather than stall a runtime worker.
    pub async fn read_fragment(&self, stream: StreamId, meta: &FragmentMeta) -> Result<Bytes, StoreError> {
        if let Some(b) = self.inner.recent.get(stream, meta.fragment_number) {
            return Ok(b);
        }
        if self.inner.clock.now_us().saturating_sub(meta.server_ts_us) < HOT_FRAGMENT_AGE_US {
            // Live readers come in crowds: the next ones get these very bytes.
            let b = self.read_fragment_now(stream, meta)?;
            self.inner.recent.insert(stream, meta.fragment_number, b.clone());
            return Ok(b);
        }
        let store = self.clone();
        let meta = *meta;
        tokio::task::spawn_blocking(move || store.read_fragment_now(stream, &meta))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }

    fn read_fragment_now(&self, stream: StreamId, meta: &FragmentMeta) -> Result<Bytes, StoreError> {
        let root = self.inner.config.media_root();
        let file = self.inner.files.get(&root, stream, meta.segment_id).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::FragmentNotFound(meta.fragment_number),
            _ => StoreError::Io(e),
        })?;
        let buf = segment::read_at(&file, meta.offset, meta.len).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => StoreError::FragmentNotFound(meta.fragment_number),
            _ => StoreError::Io(e),
        })?;
        // Bytes that rotted on disk are never served as media.
        if crc32fast::hash(&buf) != meta.crc {
            tracing::error!(
                stream,
                fragment = meta.fragment_number,
                segment = meta.segment_id,
                "fragment fails its CRC"
            );
            return Err(StoreError::Corrupt(format!("fragment {} fails its CRC", meta.fragment_number)));
        }
        Ok(Bytes::from(buf))
    }

    pub fn init_segment(&self, stream: StreamId, init_id: u32) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .inner
            .index
            .get(key1(records::KIND_INIT, stream, u64::from(init_id)))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    /// Counts of what is stored, for metrics and tests.
    pub fn segment_count(&self, stream: StreamId) -> usize {
        self.inner.index.scan_prefix(prefix(records::KIND_SEGMENT, stream)).count()
    }
}

fn time_index_kind(kind: TimeKind) -> u8 {
    match kind {
        TimeKind::Producer => records::KIND_PRODUCER_TIME,
        TimeKind::Server => records::KIND_SERVER_TIME,
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
