//! The queue engine: SQS's standard and FIFO queues with a plain Rust API, so other
//! modules (the video side's fragment events) enqueue without HTTP.
//!
//! - [`config`]: queue attributes, SQS's ranges and defaults.
//! - [`message`]: stored messages and the checks of what a sender gives.
//! - [`state`]: one queue in memory: visibility, delay, FIFO groups and deduplication,
//!   retention, the dead-letter threshold (pure, clock passed in).
//! - [`store`]: the durable copy in sled, with flushes shared by concurrent sends.
//!
//! Every queue's messages are held in memory and mirrored in sled; a send is
//! acknowledged once its record is flushed. Receipt handles are tokens signed with a
//! key in `data/queues.key`, so they cannot be forged or pointed at another message.

pub mod config;
pub mod message;
pub mod move_task;
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
use crate::secrets::{load_or_create_key, TokenSigner};
use config::QueueConfig;
use message::{check_attributes, check_body, check_fifo_id, MessageAttribute, StoredMessage};
use state::{DedupEntry, HandleCheck, QueueState, DEDUP_WINDOW_MS};
use store::{QueueRecord, QueueStore};

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
    #[error("The receipt handle provided is not valid: {0}")]
    ReceiptHandleIsInvalid(String),
    #[error("Message does not exist or is not available for visibility timeout change.")]
    MessageNotInflight,
    #[error("Only one PurgeQueue operation on {0} is allowed every 60 seconds.")]
    PurgeQueueInProgress(String),
    #[error("{0}")]
    OverLimit(String),
    #[error("Maximum number of entries per request are 10. You have sent {0}.")]
    TooManyEntriesInBatchRequest(usize),
    #[error("There should be at least one entry in the request.")]
    EmptyBatchRequest,
    #[error("Id {0} repeated.")]
    BatchEntryIdsNotDistinct(String),
    #[error("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long: '{0}'")]
    InvalidBatchEntryId(String),
    #[error("Batch requests cannot be longer than 1048576 bytes. You have sent {0} bytes.")]
    BatchRequestTooLong(usize),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("queue storage failed: {0}")]
    Storage(String),
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
    store: QueueStore,
    /// Message move tasks, newest last, per source queue name.
    tasks: Mutex<HashMap<String, Vec<Arc<move_task::MoveTask>>>>,
    /// (queue, ReceiveRequestAttemptId) → what that receive returned.
    attempts: Mutex<HashMap<(String, String), Attempt>>,
    clock: SharedClock,
    region: String,
    account: String,
    receipts: TokenSigner,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    deleted_names: Mutex<HashMap<String, i64>>,
    create_lock: Mutex<()>,
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
        return Err(QueueError::InvalidParameterValue(format!(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length: '{name}'"
        )));
    }
    Ok(name.ends_with(".fifo"))
}

impl QueueEngine {
    /// Opens (or creates) the queues under `data_dir/queues` and loads them.
    pub fn open(data_dir: &Path, clock: SharedClock, region: &str, account: &str) -> Result<Self, QueueError> {
        std::fs::create_dir_all(data_dir).map_err(|e| QueueError::Storage(e.to_string()))?;
        let store = QueueStore::open(&data_dir.join("queues"))?;
        let key = load_or_create_key(&data_dir.join("queues.key")).map_err(|e| QueueError::Storage(e.to_string()))?;
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
            let name = record.name.clone();
            queues.insert(
                name,
                Arc::new(Queue {
                    record: Mutex::new(record),
                    state: Mutex::new(state),
                    notify: Notify::new(),
                    deleted: AtomicBool::new(false),
                }),
            );
        }
        Ok(QueueEngine {
            inner: Arc::new(Inner {
                store,
                clock,
                region: region.to_string(),
                account: account.to_string(),
                receipts: TokenSigner::new(key),
                tasks: Mutex::new(HashMap::new()),
                attempts: Mutex::new(HashMap::new()),
                queues: RwLock::new(queues),
                deleted_names: Mutex::new(HashMap::new()),
                create_lock: Mutex::new(()),
            }),
        })
    }

    pub fn account(&self) -> &str {
        &self.inner.account
    }

    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{name}", self.inner.region, self.inner.account)
    }

    fn now_ms(&self) -> i64 {
        self.inner.clock.now_us() / 1000
    }

    fn queue(&self, name: &str) -> Result<Arc<Queue>, QueueError> {
        self.inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or(QueueError::QueueDoesNotExist)
    }

    fn queue_by_arn(&self, arn: &str) -> Option<(String, Arc<Queue>)> {
        let name = arn.strip_prefix(&format!("arn:aws:sqs:{}:{}:", self.inner.region, self.inner.account))?;
        self.queue(name).ok().map(|q| (name.to_string(), q))
    }

    /// Checks that a redrive target exists, has the source's type and admits it.
    fn check_redrive(&self, name: &str, config: &QueueConfig) -> Result<(), QueueError> {
        let Some(r) = &config.redrive else { return Ok(()) };
        let (dlq_name, dlq) = self.queue_by_arn(&r.dead_letter_target_arn).ok_or_else(|| {
            QueueError::InvalidParameterValue(format!(
                "Value {} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.",
                r.dead_letter_target_arn
            ))
        })?;
        let dlq_config = lock(&dlq.state).config.clone();
        if dlq_config.fifo != config.fifo {
            return Err(QueueError::InvalidParameterValue(
                "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source.".into(),
            ));
        }
        if dlq_name == name {
            return Err(QueueError::InvalidParameterValue("A queue cannot be its own dead-letter queue".into()));
        }
        if !dlq_config.allows_source(&self.arn(name)) {
            return Err(QueueError::InvalidParameterValue(
                "Value for parameter RedrivePolicy is invalid. Reason: the dead-letter queue's RedriveAllowPolicy does not allow this queue.".into(),
            ));
        }
        Ok(())
    }

    // ---- queues -------------------------------------------------------------------

    /// CreateQueue: creates, or returns quietly when the queue exists with the same
    /// attributes.
    pub async fn create_queue(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        let fifo = validate_queue_name(name)?;
        if attributes.get("FifoQueue").is_some_and(|v| v.eq_ignore_ascii_case("true")) && !fifo {
            return Err(QueueError::InvalidParameterValue("The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.".into()));
        }
        let config = QueueConfig::new(fifo).with(attributes, true)?;
        self.check_redrive(name, &config)?;
        let record = {
            let _guard = lock(&self.inner.create_lock);
            if let Ok(existing) = self.queue(name) {
                let current = lock(&existing.state).config.clone();
                if current == config {
                    return Ok(());
                }
                let differing: Vec<String> = config
                    .to_map()
                    .into_iter()
                    .filter(|(k, v)| current.to_map().get(k) != Some(v))
                    .map(|(k, _)| k)
                    .collect();
                return Err(QueueError::QueueNameExists(differing.join(", ")));
            }
            let now = self.now_ms();
            if let Some(at) = lock(&self.inner.deleted_names).get(name) {
                if now - at < DELETED_NAME_HOLD_MS {
                    return Err(QueueError::QueueDeletedRecently);
                }
            }
            for k in tags.keys() {
                if k.is_empty() || k.len() > 128 {
                    return Err(QueueError::InvalidParameterValue(format!(
                        "Tag key '{k}' must be 1 to 128 characters"
                    )));
                }
            }
            let record = QueueRecord {
                id: self.inner.store.next_queue_id()?,
                name: name.to_string(),
                config: config.clone(),
                tags: tags.clone(),
                permissions: BTreeMap::new(),
                created_s: now / 1000,
                modified_s: now / 1000,
            };
            self.inner.store.put_queue(&record)?;
            self.inner.queues.write().unwrap_or_else(|p| p.into_inner()).insert(
                name.to_string(),
                Arc::new(Queue {
                    record: Mutex::new(record.clone()),
                    state: Mutex::new(QueueState::new(config)),
                    notify: Notify::new(),
                    deleted: AtomicBool::new(false),
                }),
            );
            record
        };
        self.inner.store.flush().await?;
        tracing::info!(queue = %record.name, fifo = record.config.fifo, "queue created");
        Ok(())
    }

    pub async fn delete_queue(&self, name: &str) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let record = lock(&q.record).clone();
        self.inner.queues.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        q.deleted.store(true, Ordering::SeqCst);
        q.notify.notify_waiters();
        lock(&self.inner.deleted_names).insert(name.to_string(), self.now_ms());
        self.inner.store.delete_queue(&record)?;
        self.inner.store.flush().await?;
        tracing::info!(queue = %name, "queue deleted");
        Ok(())
    }

    /// Queue names with `prefix`, sorted.
    pub fn list_queues(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub fn exists(&self, name: &str) -> bool {
        self.queue(name).is_ok()
    }

    /// GetQueueAttributes: `names` may hold `All`.
    pub fn get_attributes(&self, name: &str, names: &[String]) -> Result<BTreeMap<String, String>, QueueError> {
        let q = self.queue(name)?;
        let now = self.now_ms();
        let record = lock(&q.record).clone();
        let (visible, delayed, in_flight, config) = {
            let s = lock(&q.state);
            let (v, d, i) = s.counts(now);
            (v, d, i, s.config.clone())
        };
        let mut all = config.to_map();
        all.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        all.insert("ApproximateNumberOfMessagesDelayed".into(), delayed.to_string());
        all.insert("ApproximateNumberOfMessagesNotVisible".into(), in_flight.to_string());
        all.insert("CreatedTimestamp".into(), record.created_s.to_string());
        all.insert("LastModifiedTimestamp".into(), record.modified_s.to_string());
        all.insert("QueueArn".into(), self.arn(name));
        let known = |n: &str| {
            n == "All"
                || all.contains_key(n)
                || config::READ_ONLY.contains(&n)
                || matches!(
                    n,
                    "Policy"
                        | "RedrivePolicy"
                        | "RedriveAllowPolicy"
                        | "FifoQueue"
                        | "ContentBasedDeduplication"
                        | "KmsMasterKeyId"
                        | "KmsDataKeyReusePeriodSeconds"
                        | "DeduplicationScope"
                        | "FifoThroughputLimit"
                        | "SqsManagedSseEnabled"
                )
        };
        if let Some(bad) = names.iter().find(|n| !known(n)) {
            return Err(QueueError::InvalidAttributeName(format!("Unknown Attribute {bad}.")));
        }
        if names.iter().any(|n| n == "All") {
            return Ok(all);
        }
        Ok(all.into_iter().filter(|(k, _)| names.contains(k)).collect())
    }

    pub async fn set_attributes(&self, name: &str, attributes: &BTreeMap<String, String>) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let current = lock(&q.state).config.clone();
        let config = current.with(attributes, false)?;
        self.check_redrive(name, &config)?;
        let record = {
            let mut r = lock(&q.record);
            r.config = config.clone();
            r.modified_s = self.now_ms() / 1000;
            r.clone()
        };
        lock(&q.state).config = config;
        self.inner.store.put_queue(&record)?;
        self.inner.store.flush().await?;
        q.notify.notify_waiters();
        Ok(())
    }

    async fn update_record(
        &self,
        name: &str,
        change: impl FnOnce(&mut QueueRecord) -> Result<(), QueueError>,
    ) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let record = {
            let mut r = lock(&q.record);
            let mut copy = r.clone();
            change(&mut copy)?;
            *r = copy.clone();
            copy
        };
        self.inner.store.put_queue(&record)?;
        self.inner.store.flush().await
    }

    pub async fn tag_queue(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            r.tags.extend(tags.clone());
            Ok(())
        })
        .await
    }

    pub async fn untag_queue(&self, name: &str, keys: &[String]) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            for k in keys {
                r.tags.remove(k);
            }
            Ok(())
        })
        .await
    }

    pub fn list_tags(&self, name: &str) -> Result<BTreeMap<String, String>, QueueError> {
        Ok(lock(&self.queue(name)?.record).tags.clone())
    }

    pub async fn add_permission(
        &self,
        name: &str,
        label: &str,
        accounts: &[String],
        actions: &[String],
    ) -> Result<(), QueueError> {
        if label.is_empty()
            || label.len() > 80
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(QueueError::InvalidParameterValue(format!(
                "Label '{label}' must be 1 to 80 alphanumerics, hyphens or underscores"
            )));
        }
        if accounts.is_empty() || actions.is_empty() {
            return Err(QueueError::MissingParameter("AWSAccountIds and Actions are required".into()));
        }
        if actions.len() > 7 {
            return Err(QueueError::OverLimit("A policy statement may name at most 7 actions".into()));
        }
        self.update_record(name, |r| {
            if r.permissions.contains_key(label) {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Value {label} for parameter Label is invalid. Reason: Already exists."
                )));
            }
            r.permissions.insert(label.to_string(), (accounts.to_vec(), actions.to_vec()));
            Ok(())
        })
        .await
    }

    pub async fn remove_permission(&self, name: &str, label: &str) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            r.permissions.remove(label).map(|_| ()).ok_or_else(|| {
                QueueError::InvalidParameterValue(format!(
                    "Value {label} for parameter Label is invalid. Reason: can't find label."
                ))
            })
        })
        .await
    }

    /// The permissions granted with AddPermission, as an IAM policy document.
    pub fn policy(&self, name: &str) -> Result<Option<String>, QueueError> {
        let record = lock(&self.queue(name)?.record).clone();
        if record.permissions.is_empty() {
            return Ok(None);
        }
        let statements: Vec<serde_json::Value> = record
            .permissions
            .iter()
            .map(|(label, (accounts, actions))| {
                serde_json::json!({
                    "Sid": label,
                    "Effect": "Allow",
                    "Principal": { "AWS": accounts.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect::<Vec<_>>() },
                    "Action": actions.iter().map(|a| format!("SQS:{a}")).collect::<Vec<_>>(),
                    "Resource": self.arn(name),
                })
            })
            .collect();
        Ok(Some(serde_json::json!({ "Version": "2012-10-17", "Id": format!("{}/SQSDefaultPolicy", self.arn(name)), "Statement": statements }).to_string()))
    }

    pub async fn purge_queue(&self, name: &str) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let now = self.now_ms();
        let (id, removed) = {
            let mut s = lock(&q.state);
            if s.last_purge_ms.is_some_and(|t| now - t < PURGE_INTERVAL_MS) {
                return Err(QueueError::PurgeQueueInProgress(self.arn(name)));
            }
            s.last_purge_ms = Some(now);
            (lock(&q.record).id, s.purge())
        };
        self.inner.store.remove_messages(id, &removed)?;
        self.inner.store.flush().await
    }

    /// Queues whose RedrivePolicy points at `name`.
    pub fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>, QueueError> {
        self.queue(name)?;
        let arn = self.arn(name);
        let queues = self.inner.queues.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<String> = queues
            .iter()
            .filter(|(_, q)| lock(&q.state).config.redrive.as_ref().is_some_and(|r| r.dead_letter_target_arn == arn))
            .map(|(n, _)| n.clone())
            .collect();
        out.sort();
        Ok(out)
    }

    // ---- messages -----------------------------------------------------------------

    /// Checks a message against the queue's rules; returns its size in bytes.
    fn check_send(config: &QueueConfig, req: &SendRequest) -> Result<usize, QueueError> {
        check_body(&req.body)?;
        let size = req.body.len() + check_attributes(&req.attributes)?;
        if size > config.maximum_message_size as usize {
            return Err(QueueError::InvalidParameterValue(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
                config.maximum_message_size
            )));
        }
        for (n, a) in &req.system_attributes {
            if n != "AWSTraceHeader" || a.data_type != "String" {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Message system attribute '{n}' is not supported on send"
                )));
            }
        }
        if let Some(d) = req.delay_s {
            if d > 900 {
                return Err(QueueError::InvalidParameterValue("DelaySeconds must be 0 to 900".into()));
            }
            if config.fifo && d > 0 {
                return Err(QueueError::InvalidParameterValue(
                    "The request include parameter that is not valid for this queue type: DelaySeconds (per-message delay is not allowed on FIFO queues)".into(),
                ));
            }
        }
        if config.fifo {
            let group = req.group_id.as_deref().ok_or_else(|| {
                QueueError::MissingParameter("The request must contain the parameter MessageGroupId.".into())
            })?;
            check_fifo_id("MessageGroupId", group)?;
            match &req.dedup_id {
                Some(d) => check_fifo_id("MessageDeduplicationId", d)?,
                None if config.content_based_deduplication => {}
                None => {
                    return Err(QueueError::InvalidParameterValue(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
                    ))
                }
            }
        } else {
            if req.dedup_id.is_some() {
                return Err(QueueError::InvalidParameterValue(
                    "The request include parameter that is not valid for this queue type: MessageDeduplicationId"
                        .into(),
                ));
            }
            if let Some(g) = &req.group_id {
                check_fifo_id("MessageGroupId", g)?;
            }
        }
        Ok(size)
    }

    /// SendMessage.
    pub async fn send(&self, name: &str, req: SendRequest) -> Result<SendResult, QueueError> {
        self.send_batch(name, vec![req]).await?.pop().unwrap_or(Err(QueueError::EmptyBatchRequest))
    }

    /// Sends several messages with one flush; each gets its own result, in order.
    pub async fn send_batch(
        &self,
        name: &str,
        reqs: Vec<SendRequest>,
    ) -> Result<Vec<Result<SendResult, QueueError>>, QueueError> {
        let q = self.queue(name)?;
        let now = self.now_ms();
        let config = lock(&q.state).config.clone();
        let checked: Vec<Result<usize, QueueError>> = reqs.iter().map(|r| Self::check_send(&config, r)).collect();
        let (queue_id, _) = {
            let r = lock(&q.record);
            (r.id, ())
        };
        let mut results: Vec<Result<SendResult, QueueError>> = Vec::with_capacity(reqs.len());
        let mut new_messages: Vec<StoredMessage> = Vec::new();
        let mut new_dedup: Vec<(String, DedupEntry)> = Vec::new();
        {
            let mut s = lock(&q.state);
            for (req, check) in reqs.into_iter().zip(checked) {
                if let Err(e) = check {
                    results.push(Err(e));
                    continue;
                }
                let dedup_key = config.fifo.then(|| {
                    let id =
                        req.dedup_id.clone().unwrap_or_else(|| crate::wire::sigv4::sha256_hex(req.body.as_bytes()));
                    match config.passthrough.get("DeduplicationScope").map(String::as_str) {
                        Some("messageGroup") => format!("{}\u{0}{id}", req.group_id.clone().unwrap_or_default()),
                        _ => id,
                    }
                });
                let md5_of_body = crate::wire::sqs_md5::md5_hex(req.body.as_bytes());
                if let Some(key) = &dedup_key {
                    if let Some(hit) = s.duplicate_of(key, now) {
                        let probe = StoredMessage {
                            seq: 0,
                            id: hit.message_id.clone(),
                            body: String::new(),
                            attributes: req.attributes.clone(),
                            system_attributes: req.system_attributes.clone(),
                            sent_ms: now,
                            sender_id: String::new(),
                            group_id: None,
                            dedup_id: None,
                            sequence_number: None,
                            receive_count: 0,
                            first_receive_ms: None,
                            visible_at_ms: 0,
                            dead_letter_source_arn: None,
                        };
                        results.push(Ok(SendResult {
                            message_id: hit.message_id,
                            md5_of_body,
                            md5_of_attributes: probe.md5_of_attributes(),
                            md5_of_system_attributes: probe.md5_of_system_attributes(),
                            sequence_number: hit.sequence_number,
                        }));
                        continue;
                    }
                }
                let seq = s.next_seq();
                let delay = req.delay_s.unwrap_or(config.delay_s);
                let m = StoredMessage {
                    seq,
                    id: uuid::Uuid::new_v4().to_string(),
                    body: req.body,
                    attributes: req.attributes,
                    system_attributes: req.system_attributes,
                    sent_ms: now,
                    sender_id: self.inner.account.clone(),
                    group_id: req.group_id,
                    dedup_id: req
                        .dedup_id
                        .clone()
                        .or_else(|| dedup_key.as_ref().map(|_| String::new()))
                        .filter(|d| !d.is_empty()),
                    sequence_number: config.fifo.then(|| fifo_sequence_number(seq)),
                    receive_count: 0,
                    first_receive_ms: None,
                    visible_at_ms: if delay > 0 { now + i64::from(delay) * 1000 } else { 0 },
                    dead_letter_source_arn: None,
                };
                if let Some(key) = dedup_key {
                    let entry = DedupEntry {
                        expires_ms: now + DEDUP_WINDOW_MS,
                        message_id: m.id.clone(),
                        sequence_number: m.sequence_number.clone(),
                    };
                    s.remember_dedup(key.clone(), entry.clone());
                    new_dedup.push((key, entry));
                }
                results.push(Ok(SendResult {
                    message_id: m.id.clone(),
                    md5_of_body: m.md5_of_body(),
                    md5_of_attributes: m.md5_of_attributes(),
                    md5_of_system_attributes: m.md5_of_system_attributes(),
                    sequence_number: m.sequence_number.clone(),
                }));
                new_messages.push(m);
            }
        }
        if new_messages.is_empty() {
            return Ok(results);
        }
        let written = self.inner.store.write(
            queue_id,
            &new_messages.iter().collect::<Vec<_>>(),
            &new_dedup.iter().map(|(k, e)| (k.as_str(), e)).collect::<Vec<_>>(),
        );
        let durable = match written {
            Ok(()) => self.inner.store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = durable {
            tracing::error!(queue = %name, error = %e, "send not persisted");
            return Err(e);
        }
        {
            let mut s = lock(&q.state);
            for m in new_messages {
                s.add(m);
            }
        }
        q.notify.notify_waiters();
        Ok(results)
    }

    fn receipt(&self, queue_id: u64, m: &StoredMessage) -> String {
        let r = Receipt { q: queue_id, s: m.seq, r: m.receive_count };
        self.inner.receipts.sign(&serde_json::to_vec(&r).unwrap_or_default())
    }

    fn open_receipt(&self, queue_id: u64, handle: &str) -> Result<Receipt, QueueError> {
        let bytes = self
            .inner
            .receipts
            .open(handle)
            .map_err(|e| QueueError::ReceiptHandleIsInvalid(format!("{handle} ({e})")))?;
        let r: Receipt =
            serde_json::from_slice(&bytes).map_err(|_| QueueError::ReceiptHandleIsInvalid(handle.to_string()))?;
        if r.q != queue_id {
            return Err(QueueError::ReceiptHandleIsInvalid(format!("{handle} is for another queue")));
        }
        Ok(r)
    }

    /// One attempt to receive: applies retention and dead-lettering on the way.
    fn try_receive(
        &self,
        name: &str,
        q: &Queue,
        max: usize,
        visibility_ms: i64,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let now = self.now_ms();
        let queue_id = lock(&q.record).id;
        let (got, redrive) = {
            let mut s = lock(&q.state);
            let got = s.receive(max, visibility_ms, now);
            (got, s.config.redrive.clone())
        };
        if got.over_limit && got.messages.is_empty() && !lock(&q.state).config.fifo {
            return Err(QueueError::OverLimit("Too many messages in flight (the limit is 120000)".into()));
        }
        if !got.expired.is_empty() {
            self.inner.store.remove_messages(queue_id, &got.expired)?;
        }
        for m in got.to_dead_letter {
            self.dead_letter(name, queue_id, m, redrive.as_ref().map(|r| r.dead_letter_target_arn.as_str()), now)?;
        }
        if !got.messages.is_empty() {
            self.inner.store.write(queue_id, &got.messages.iter().collect::<Vec<_>>(), &[])?;
        }
        Ok(got
            .messages
            .into_iter()
            .map(|m| ReceivedMessage { receipt_handle: self.receipt(queue_id, &m), message: m })
            .collect())
    }

    /// Moves a message that passed maxReceiveCount to the dead-letter queue, keeping
    /// its id, body and first send time.
    fn dead_letter(
        &self,
        name: &str,
        from_id: u64,
        m: StoredMessage,
        target: Option<&str>,
        now: i64,
    ) -> Result<(), QueueError> {
        let Some((dlq_name, dlq)) = target.and_then(|arn| self.queue_by_arn(arn)) else {
            // The dead-letter queue is gone: keep the message where it is.
            tracing::warn!(queue = %name, "dead-letter queue missing; message kept");
            if let Ok(q) = self.queue(name) {
                lock(&q.state).add(StoredMessage { visible_at_ms: 0, ..m });
            }
            return Ok(());
        };
        let moved = self.transfer(from_id, m, &dlq, Some(self.arn(name)))?;
        tracing::debug!(queue = %name, dead_letter_queue = %dlq_name, message = %moved.id, "message moved to the dead-letter queue");
        let _ = now;
        Ok(())
    }

    /// Moves message `m` (stored under queue `from_id`) into `dest`, renumbered and
    /// fresh (no receives), in one atomic store batch; wakes `dest`'s waiters.
    fn transfer(
        &self,
        from_id: u64,
        m: StoredMessage,
        dest: &Queue,
        dead_letter_source_arn: Option<String>,
    ) -> Result<StoredMessage, QueueError> {
        let dest_id = lock(&dest.record).id;
        let from_seq = m.seq;
        let moved = {
            let mut s = lock(&dest.state);
            let seq = s.next_seq();
            let moved = StoredMessage {
                seq,
                receive_count: 0,
                first_receive_ms: None,
                visible_at_ms: 0,
                sequence_number: m.sequence_number.as_ref().map(|_| fifo_sequence_number(seq)),
                dead_letter_source_arn,
                ..m
            };
            s.add(moved.clone());
            moved
        };
        self.inner.store.move_message(from_id, from_seq, dest_id, &moved)?;
        dest.notify.notify_waiters();
        Ok(moved)
    }

    /// ReceiveMessage, long-polling up to the wait time; wakes as soon as a message
    /// may be available.
    pub async fn receive(&self, name: &str, req: ReceiveRequest) -> Result<Vec<ReceivedMessage>, QueueError> {
        let q = self.queue(name)?;
        if !(1..=10).contains(&req.max_messages) {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.",
                req.max_messages
            )));
        }
        let config = lock(&q.state).config.clone();
        let visibility_s = req.visibility_timeout_s.unwrap_or(config.visibility_timeout_s);
        if visibility_s > 43_200 {
            return Err(QueueError::InvalidParameterValue("VisibilityTimeout must be 0 to 43200".into()));
        }
        let wait_s = req.wait_time_s.unwrap_or(config.receive_wait_s);
        if wait_s > 20 {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {wait_s} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )));
        }
        let attempt_key = match &req.attempt_id {
            Some(a) if config.fifo => {
                check_fifo_id("ReceiveRequestAttemptId", a)?;
                let key = (name.to_string(), a.clone());
                if let Some(hit) = self.replay_attempt(&q, &key) {
                    return Ok(hit);
                }
                Some(key)
            }
            _ => None,
        };
        let got = self.receive_waiting(name, &q, &req, visibility_s, wait_s).await?;
        if let Some(key) = attempt_key {
            let now = self.now_ms();
            let mut attempts = lock(&self.inner.attempts);
            attempts.retain(|_, a| a.expires_ms > now);
            attempts.insert(key, Attempt { expires_ms: now + DEDUP_WINDOW_MS, received: got.clone() });
        }
        Ok(got)
    }

    /// The messages an earlier receive with the same attempt id returned, if every one
    /// is still in flight under that receipt.
    fn replay_attempt(&self, q: &Queue, key: &(String, String)) -> Option<Vec<ReceivedMessage>> {
        let now = self.now_ms();
        let attempts = lock(&self.inner.attempts);
        let a = attempts.get(key).filter(|a| a.expires_ms > now)?;
        let s = lock(&q.state);
        a.received
            .iter()
            .all(|r| s.check_handle(r.message.seq, r.message.receive_count) == HandleCheck::Current)
            .then(|| a.received.clone())
    }

    async fn receive_waiting(
        &self,
        name: &str,
        q: &Queue,
        req: &ReceiveRequest,
        visibility_s: u32,
        wait_s: u32,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait_s));
        loop {
            let notified = q.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if q.deleted.load(Ordering::SeqCst) {
                return Err(QueueError::QueueDoesNotExist);
            }
            let got = self.try_receive(name, q, req.max_messages as usize, i64::from(visibility_s) * 1000)?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Sleep until a send wakes us, a hidden message becomes visible, or time is up.
            let mut wake = deadline;
            if let Some(at) = lock(&q.state).next_visible_ms() {
                let ms = (at - self.now_ms()).max(1) as u64;
                wake = wake.min(now + Duration::from_millis(ms));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// DeleteMessage: a stale handle (the message was received again since) succeeds
    /// without deleting, as SQS documents.
    pub fn delete_message(&self, name: &str, handle: &str) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let queue_id = lock(&q.record).id;
        let r = self.open_receipt(queue_id, handle)?;
        let removed = {
            let mut s = lock(&q.state);
            match s.check_handle(r.s, r.r) {
                HandleCheck::Current => s.remove(r.s).is_some(),
                HandleCheck::Stale | HandleCheck::Gone => false,
            }
        };
        if removed {
            self.inner.store.remove_messages(queue_id, &[r.s])?;
            q.notify.notify_waiters();
        }
        Ok(())
    }

    pub fn change_visibility(&self, name: &str, handle: &str, timeout_s: i64) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        if !(0..=43_200).contains(&timeout_s) {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {timeout_s} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
            )));
        }
        let queue_id = lock(&q.record).id;
        let r = self.open_receipt(queue_id, handle)?;
        let now = self.now_ms();
        let changed = {
            let mut s = lock(&q.state);
            if s.check_handle(r.s, r.r) != HandleCheck::Current {
                return Err(QueueError::MessageNotInflight);
            }
            s.change_visibility(r.s, timeout_s * 1000, now)
        };
        if let Some(m) = changed {
            self.inner.store.write(queue_id, &[&m], &[])?;
        }
        q.notify.notify_waiters();
        Ok(())
    }

    // ---- message move tasks --------------------------------------------------------

    fn source_queue(&self, source_arn: &str) -> Result<(String, Arc<Queue>), QueueError> {
        self.queue_by_arn(source_arn).ok_or_else(|| {
            QueueError::ResourceNotFound(format!(
                "The resource that you specified for the SourceArn parameter doesn't exist: {source_arn}"
            ))
        })
    }

    /// StartMessageMoveTask: moves the messages now in dead-letter queue `source_arn`
    /// back to where they came from, or to `destination_arn`.
    pub fn start_move_task(
        &self,
        source_arn: &str,
        destination_arn: Option<&str>,
        rate: Option<u32>,
    ) -> Result<String, QueueError> {
        let (source, q) = self.source_queue(source_arn)?;
        if self.dead_letter_sources(&source)?.is_empty() {
            return Err(QueueError::InvalidParameterValue(format!(
                "Source queue {source_arn} must be configured as a dead-letter queue of another queue."
            )));
        }
        if let Some(d) = destination_arn {
            if self.queue_by_arn(d).is_none() {
                return Err(QueueError::ResourceNotFound(format!(
                    "The resource that you specified for the DestinationArn parameter doesn't exist: {d}"
                )));
            }
        }
        if rate.is_some_and(|r| !(1..=move_task::MAX_RATE).contains(&r)) {
            return Err(QueueError::InvalidParameterValue("MaxNumberOfMessagesPerSecond must be 1 to 500".into()));
        }
        let mut tasks = lock(&self.inner.tasks);
        let list = tasks.entry(source.clone()).or_default();
        if list.iter().any(|t| t.status().0 == move_task::TaskStatus::Running) {
            return Err(QueueError::InvalidParameterValue(format!(
                "There is already a message move task running for {source_arn}."
            )));
        }
        let body = move_task::HandleBody { source: source_arn.to_string(), id: uuid::Uuid::new_v4().to_string() };
        let handle = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&body).unwrap_or_default(),
        );
        let to_move = lock(&q.state).len() as u64;
        let task = Arc::new(move_task::MoveTask {
            handle: handle.clone(),
            source_arn: source_arn.to_string(),
            destination_arn: destination_arn.map(str::to_string),
            rate,
            to_move,
            started_ms: self.now_ms(),
            moved: Default::default(),
            cancel: Default::default(),
            status: Mutex::new((move_task::TaskStatus::Running, None)),
        });
        list.push(task.clone());
        let engine = self.clone();
        tokio::spawn(async move { engine.run_move_task(source, task).await });
        Ok(handle)
    }

    async fn run_move_task(&self, source: String, task: Arc<move_task::MoveTask>) {
        use move_task::TaskStatus;
        let pause = Duration::from_secs_f64(1.0 / f64::from(task.rate.unwrap_or(move_task::MAX_RATE)));
        while task.moved() < task.to_move {
            if task.cancel.load(Ordering::SeqCst) {
                task.set(TaskStatus::Cancelled, None);
                return;
            }
            match self.move_one(&source, task.destination_arn.as_deref()) {
                Ok(true) => {
                    task.moved.fetch_add(1, Ordering::SeqCst);
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(queue = %source, error = %e, "message move task failed");
                    task.set(TaskStatus::Failed, Some(e.to_string()));
                    return;
                }
            }
            tokio::time::sleep(pause).await;
        }
        if let Err(e) = self.inner.store.flush().await {
            task.set(TaskStatus::Failed, Some(e.to_string()));
            return;
        }
        task.set(TaskStatus::Completed, None);
    }

    /// Moves one visible message out of `source`; false when none is left.
    fn move_one(&self, source: &str, destination_arn: Option<&str>) -> Result<bool, QueueError> {
        let src = self.queue(source)?;
        let src_id = lock(&src.record).id;
        let Some(m) = lock(&src.state).take_next_visible(self.now_ms()) else { return Ok(false) };
        let target = destination_arn.map(str::to_string).or_else(|| m.dead_letter_source_arn.clone());
        let Some((dest_name, dest)) = target.as_deref().and_then(|arn| self.queue_by_arn(arn)) else {
            lock(&src.state).add(m);
            return Err(QueueError::ResourceNotFound(format!(
                "the destination queue {} does not exist",
                target.unwrap_or_else(|| "(unknown source)".into())
            )));
        };
        let moved = self.transfer(src_id, m, &dest, None)?;
        tracing::debug!(from = %source, to = %dest_name, message = %moved.id, "message moved back");
        Ok(true)
    }

    /// ListMessageMoveTasks: the most recent tasks of a source queue, newest first.
    pub fn list_move_tasks(&self, source_arn: &str, max: usize) -> Result<Vec<Arc<move_task::MoveTask>>, QueueError> {
        let (source, _) = self.source_queue(source_arn)?;
        let tasks = lock(&self.inner.tasks);
        Ok(tasks.get(&source).map(|l| l.iter().rev().take(max).cloned().collect()).unwrap_or_default())
    }

    /// CancelMessageMoveTask: returns how many messages were moved.
    pub fn cancel_move_task(&self, handle: &str) -> Result<u64, QueueError> {
        let tasks = lock(&self.inner.tasks);
        let task = tasks
            .values()
            .flatten()
            .find(|t| t.handle == handle)
            .ok_or_else(|| QueueError::ResourceNotFound(format!("Task does not exist: {handle}")))?;
        if task.status().0 != move_task::TaskStatus::Running {
            return Err(QueueError::InvalidParameterValue("Only a RUNNING task can be cancelled.".into()));
        }
        task.cancel.store(true, Ordering::SeqCst);
        task.set(move_task::TaskStatus::Cancelling, None);
        Ok(task.moved())
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
