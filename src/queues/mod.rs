//! The queue engine: SQS's standard and FIFO queues with a plain Rust API, so other
//! modules (the video side's fragment events) enqueue without HTTP.
//!
//! - [`config`]: queue attributes, SQS's ranges and defaults.
//! - [`message`]: stored messages and the checks of what a sender gives.
//! - [`state`]: one queue in memory: visibility, delay, FIFO groups and deduplication,
//!   retention, the dead-letter threshold (pure, clock passed in).
//! - [`store`]: the durable copy behind [`store::QueueStorage`] and its conformance
//!   suite; [`embedded`]: its implementation in sled and a payload log, with
//!   flushes shared by concurrent sends and one file per format upgrade.
//!
//! Every queue's messages are held in memory and mirrored in the store; a send is
//! acknowledged once its record is flushed. Receipt handles are tokens signed with a
//! key in `data/queues.key`, so they cannot be forged or pointed at another message.

mod admin;
pub mod config;
pub mod embedded;
pub mod message;
mod messages;
pub mod move_task;
pub mod postgres;
pub mod state;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::scope::Scope;
use crate::secrets::{load_or_create_key, TokenSigner};
use crate::storage_failure::StorageFailure;
use config::QueueConfig;
use message::{check_attributes, check_body, check_fifo_id, MessageAttribute, StoredMessage};
use state::{DedupEntry, HandleCheck, QueueState, DEDUP_WINDOW_MS};
use store::{QueueRecord, QueueStorage};

/// How long a deleted queue's name stays taken.
pub const DELETED_NAME_HOLD_MS: i64 = 60_000;
/// How often a queue may be purged.
pub const PURGE_INTERVAL_MS: i64 = 60_000;
/// The largest batch (sum of message sizes).
pub const MAX_BATCH_BYTES: usize = 1_048_576;

/// Errors, named as SQS names them; the API layer maps each to its wire code once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("The specified queue does not exist.")]
    QueueDoesNotExist,
    #[error("A queue already exists with the same name and a different value for attribute(s) {0}")]
    QueueNameExists(String),
    #[error("You must wait 60 seconds after deleting a queue before you can create another with the same name.")]
    QueueDeletedRecently,
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidAttributeName(String),
    #[error("{0}")]
    InvalidAttributeValue(String),
    #[error("{0}")]
    InvalidMessageContents(String),
    /// The handle as given (batch results quote it).
    #[error("The input receipt handle is invalid.")]
    ReceiptHandleIsInvalid(String),
    #[error("Message does not exist or is not available for visibility timeout change.")]
    MessageNotInflight,
    /// The queue's name.
    #[error("Only one PurgeQueue operation on {0} is allowed every 60 seconds.")]
    PurgeQueueInProgress(String),
    #[error("{0}")]
    OverLimit(String),
    #[error("Maximum number of entries per request are 10. You have sent {0}.")]
    TooManyEntriesInBatchRequest(usize),
    /// The batch operation's name (`SendMessageBatch`).
    #[error("There should be at least one {0}RequestEntry in the request.")]
    EmptyBatchRequest(&'static str),
    #[error("Id {0} repeated.")]
    BatchEntryIdsNotDistinct(String),
    #[error("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")]
    InvalidBatchEntryId(String),
    #[error("Batch requests cannot be longer than 1048576 bytes. You have sent {0} bytes.")]
    BatchRequestTooLong(usize),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("queue storage failed: {0}")]
    Storage(#[from] StorageFailure),
    #[error(transparent)]
    DiskFull(#[from] crate::disk_space::DiskRefusal),
}

/// SQS's text for a parameter that is not valid for the queue's type (sic).
pub const NOT_FOR_THIS_QUEUE_TYPE: &str = "The request include parameter that is not valid for this queue type.";

/// SQS's text for a bad parameter value: `Value V for parameter P is invalid. Reason: R`.
pub fn invalid_value(value: impl std::fmt::Display, parameter: &str, reason: &str) -> QueueError {
    QueueError::InvalidParameterValue(format!("Value {value} for parameter {parameter} is invalid. Reason: {reason}"))
}

/// One message to send.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    pub body: String,
    pub delay_s: Option<u32>,
    pub attributes: BTreeMap<String, MessageAttribute>,
    pub system_attributes: BTreeMap<String, MessageAttribute>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    pub md5_of_system_attributes: Option<String>,
    pub sequence_number: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ReceiveRequest {
    pub max_messages: u32,
    pub visibility_timeout_s: Option<u32>,
    pub wait_time_s: Option<u32>,
    /// FIFO: a retried receive with the same id within 5 minutes gets the same
    /// messages and receipt handles, while they are still in flight.
    pub attempt_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub message: StoredMessage,
    pub receipt_handle: String,
}

/// What a receipt handle carries.
#[derive(Serialize, Deserialize)]
struct Receipt {
    q: u64,
    s: u64,
    r: u32,
}

/// One live queue.
struct Queue {
    record: Mutex<QueueRecord>,
    state: Mutex<QueueState>,
    /// Woken when a message may have become receivable.
    notify: Notify,
    deleted: AtomicBool,
    /// FIFO sends hold this from their deduplication check until their messages are
    /// durable, so a duplicate is answered only with a message that is stored.
    fifo_send: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A FIFO receive remembered for retries with the same ReceiveRequestAttemptId.
struct Attempt {
    expires_ms: i64,
    received: Vec<ReceivedMessage>,
}

struct Inner {
    store: Arc<dyn QueueStorage>,
    /// Message move tasks, newest last, per source queue name.
    tasks: Mutex<HashMap<String, Vec<Arc<move_task::MoveTask>>>>,
    /// (queue, ReceiveRequestAttemptId) → what that receive returned.
    attempts: Mutex<HashMap<(String, String), Attempt>>,
    clock: SharedClock,
    receipts: TokenSigner,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    deleted_names: Mutex<HashMap<String, i64>>,
    create_lock: Mutex<()>,
    /// Refuses sends before the filesystem fills up.
    disk: Arc<crate::disk_space::DiskGuard>,
}

/// A queue: the scope (account, region) it lives in and its name. Displayed as its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueId {
    pub scope: Scope,
    pub name: String,
}

impl QueueId {
    pub fn new(scope: &Scope, name: &str) -> Self {
        QueueId { scope: scope.clone(), name: name.to_string() }
    }

    /// `arn:aws:sqs:REGION:ACCOUNT:NAME`.
    pub fn arn(&self) -> String {
        self.scope.arn("sqs", &self.name)
    }

    /// The queue an SQS ARN names.
    pub fn from_arn(arn: &str) -> Option<Self> {
        let (scope, name) = Scope::parse_arn(arn, "sqs")?;
        (!name.contains(':')).then(|| QueueId { scope, name: name.to_string() })
    }

    /// Its key in the engine's maps and the store.
    pub fn key(&self) -> String {
        self.scope.key(&self.name)
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The queue engine. Cheap to clone.
#[derive(Clone)]
pub struct QueueEngine {
    inner: Arc<Inner>,
}

/// A FIFO message's SequenceNumber: 20 digits, increasing with the queue's sequence.
fn fifo_sequence_number(seq: u64) -> String {
    (10_000_000_000_000_000_000u128 + u128::from(seq)).to_string()
}

pub fn validate_queue_name(name: &str) -> Result<bool, QueueError> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    if name.is_empty()
        || name.len() > 80
        || base.is_empty()
        || !base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(QueueError::InvalidParameterValue(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length".into(),
        ));
    }
    Ok(name.ends_with(".fifo"))
}

impl QueueEngine {
    /// Opens (or creates) the queues under `data_dir/queues` and loads them; queues
    /// stored before scopes were recorded belong to `default_scope`.
    pub fn open(data_dir: &Path, clock: SharedClock, default_scope: &Scope) -> Result<Self, QueueError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| QueueError::Storage(StorageFailure::caused("create the data directory", e)))?;
        let store: Arc<dyn QueueStorage> =
            Arc::new(embedded::SledQueues::open(&data_dir.join("queues"), default_scope)?);
        let key = load_or_create_key(&data_dir.join("queues.key"))
            .map_err(|e| QueueError::Storage(StorageFailure::caused("load data/queues.key", e)))?;
        Self::open_with(store, key, clock)
    }

    /// Opens the queues kept in `store` and loads them. `receipt_key` signs receipt
    /// handles: the same key across restarts (and across nodes sharing a store) keeps
    /// handles valid.
    pub fn open_with(
        store: Arc<dyn QueueStorage>,
        receipt_key: [u8; 32],
        clock: SharedClock,
    ) -> Result<Self, QueueError> {
        let key = receipt_key;
        let mut queues = HashMap::new();
        for record in store.queues()? {
            let mut state = QueueState::new(record.config.clone());
            let stored = store.load(record.id)?;
            for m in stored.messages {
                state.restore(m);
            }
            for (k, e) in stored.dedup {
                state.restore_dedup(k, e);
            }
            queues.insert(
                record.queue_id().key(),
                Arc::new(Queue {
                    record: Mutex::new(record),
                    state: Mutex::new(state),
                    notify: Notify::new(),
                    deleted: AtomicBool::new(false),
                    fifo_send: tokio::sync::Mutex::new(()),
                }),
            );
        }
        // Every stored message has retained its payload segment: the rest are garbage.
        store.sweep_payloads();
        Ok(QueueEngine {
            inner: Arc::new(Inner {
                store,
                clock,
                receipts: TokenSigner::new(key),
                tasks: Mutex::new(HashMap::new()),
                attempts: Mutex::new(HashMap::new()),
                queues: RwLock::new(queues),
                deleted_names: Mutex::new(HashMap::new()),
                create_lock: Mutex::new(()),
                disk: Arc::new(crate::disk_space::DiskGuard::unlimited()),
            }),
        })
    }

    /// Refuses sends once `disk` says the filesystem is nearly full. Call right after
    /// [`QueueEngine::open`], before the engine is shared.
    pub fn with_disk_guard(mut self, disk: Arc<crate::disk_space::DiskGuard>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.disk = disk,
            None => tracing::error!("the disk guard was set on a queue engine already shared; ignored"),
        }
        self
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_us() / 1000
    }

    fn queue(&self, id: &QueueId) -> Result<Arc<Queue>, QueueError> {
        self.inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id.key())
            .cloned()
            .ok_or(QueueError::QueueDoesNotExist)
    }

    fn queue_by_arn(&self, arn: &str) -> Option<(QueueId, Arc<Queue>)> {
        let id = QueueId::from_arn(arn)?;
        self.queue(&id).ok().map(|q| (id, q))
    }

    /// Removes messages past retention and deduplication entries past their window.
    pub fn sweep(&self) -> Result<usize, QueueError> {
        let now = self.now_ms();
        let queues: Vec<Arc<Queue>> =
            self.inner.queues.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut removed = 0;
        for q in queues {
            let id = lock(&q.record).id;
            let (gone, dedup) = {
                let mut s = lock(&q.state);
                (s.expire(now), s.expire_dedup(now))
            };
            removed += gone.len();
            if !gone.is_empty() {
                self.inner.store.remove_messages(id, &gone)?;
            }
            if !dedup.is_empty() {
                self.inner.store.remove_dedup(id, &dedup)?;
            }
        }
        lock(&self.inner.deleted_names).retain(|_, at| now - *at < DELETED_NAME_HOLD_MS);
        Ok(removed)
    }
}
