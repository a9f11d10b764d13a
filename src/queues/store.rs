//! The queues' durable state in sled (`data/queues/`), behind a narrow interface.
//!
//! Two trees: `queues` (name → [`QueueRecord`] as JSON) and `data`, whose keys are a
//! kind byte, the queue id, then kind-specific bytes:
//!
//! | kind | after the queue id   | value                 |
//! |------|----------------------|-----------------------|
//! | `M`  | sequence (u64 BE)    | [`StoredMessage`] JSON |
//! | `D`  | deduplication key    | [`DedupEntry`] JSON    |
//!
//! A send is one atomic batch (the message and its deduplication entry) and is
//! acknowledged only after a flush; concurrent sends share flushes through the
//! `Flusher` thread. Receives, deletes and visibility changes are written without
//! waiting: after a crash such a message is delivered again, which at-least-once
//! delivery allows, but a sent message is never lost.

use super::QueueId;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::config::QueueConfig;
use super::message::StoredMessage;
use super::state::DedupEntry;
use super::QueueError;

/// A queue as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    pub id: u64,
    pub name: String,
    /// The account and region the queue lives in.
    pub scope: Scope,
    pub config: QueueConfig,
    pub tags: BTreeMap<String, String>,
    /// AddPermission labels → (account ids, actions).
    pub permissions: BTreeMap<String, (Vec<String>, Vec<String>)>,
    pub created_s: i64,
    pub modified_s: i64,
}

impl QueueRecord {
    pub fn queue_id(&self) -> QueueId {
        QueueId::new(&self.scope, &self.name)
    }
}

/// What start-up reads back of one queue.
pub struct StoredQueue {
    pub messages: Vec<StoredMessage>,
    /// Deduplication key → entry.
    pub dedup: Vec<(String, DedupEntry)>,
}

const KIND_MESSAGE: u8 = b'M';
const KIND_DEDUP: u8 = b'D';

fn key(kind: u8, queue: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + rest.len());
    k.push(kind);
    k.extend_from_slice(&queue.to_be_bytes());
    k.extend_from_slice(rest);
    k
}

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    QueueError::Storage(StorageFailure::caused("the queue store (data/queues)", e))
}

/// The queue store's layout (key scheme, JSON records), recorded in it and checked at
/// open (see docs/storage.md). 2: queue records carry their scope and are keyed by
/// `ACCOUNT/REGION/NAME` (1: by name, all in the server's default scope).
pub const QUEUES_FORMAT: u32 = 2;
const STORE: &str = "the queue store (data/queues)";

#[derive(Clone)]
pub struct QueueStore {
    db: sled::Db,
    queues: sled::Tree,
    data: sled::Tree,
    flusher: mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), StorageFailure>>>,
}

impl QueueStore {
    /// Opens the store; queues of format 1 are moved into `default_scope`.
    pub fn open(dir: &Path, default_scope: &Scope) -> Result<Self, QueueError> {
        let db = crate::sled_open::open(dir, 500).map_err(storage)?;
        let format_error = |e| QueueError::Storage(StorageFailure::caused("open the queue store", e));
        let found = crate::sled_open::check_format(&db, "queues", QUEUES_FORMAT, STORE).map_err(format_error)?;
        let queues = db.open_tree("queues").map_err(storage)?;
        if found < 2 {
            let moved = crate::sled_open::upgrade_to_scoped_keys(&queues, default_scope)
                .map_err(|e| QueueError::Storage(StorageFailure::caused("upgrade the queue store to format 2", e)))?;
            if moved > 0 {
                tracing::info!(queues = moved, account = %default_scope.account, region = %default_scope.region, "queue store upgraded to format 2 (queues scoped by account and region)");
            }
        }
        crate::sled_open::record_format(&db, "queues", QUEUES_FORMAT, STORE).map_err(format_error)?;
        let data = db.open_tree("data").map_err(storage)?;
        let (tx, rx) = mpsc::channel::<tokio::sync::oneshot::Sender<Result<(), StorageFailure>>>();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("queue-flusher".into())
            .spawn(move || {
                // One flush answers every request that queued up while the last ran.
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let r =
                        flush_db.flush().map(|_| ()).map_err(|e| StorageFailure::caused("flush the queue store", e));
                    for w in waiting {
                        let _ = w.send(r.clone());
                    }
                }
            })
            .map_err(storage)?;
        Ok(QueueStore { db, queues, data, flusher: tx })
    }

    /// Waits until everything written so far is on disk.
    pub async fn flush(&self) -> Result<(), QueueError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = || QueueError::Storage(StorageFailure::new("the queue flusher stopped"));
        self.flusher.send(tx).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?.map_err(QueueError::Storage)
    }

    pub fn next_queue_id(&self) -> Result<u64, QueueError> {
        self.db.generate_id().map(|id| id + 1).map_err(storage)
    }

    pub fn queues(&self) -> Result<Vec<QueueRecord>, QueueError> {
        self.queues
            .iter()
            .values()
            .map(|v| v.map_err(storage).and_then(|v| serde_json::from_slice(&v).map_err(storage)))
            .collect()
    }

    pub fn put_queue(&self, q: &QueueRecord) -> Result<(), QueueError> {
        self.queues.insert(q.queue_id().key(), serde_json::to_vec(q).map_err(storage)?).map_err(storage)?;
        Ok(())
    }

    /// Removes a queue and everything in it.
    pub fn delete_queue(&self, q: &QueueRecord) -> Result<(), QueueError> {
        let mut batch = sled::Batch::default();
        for kind in [KIND_MESSAGE, KIND_DEDUP] {
            for k in self.data.scan_prefix(key(kind, q.id, &[])).keys() {
                batch.remove(k.map_err(storage)?);
            }
        }
        self.data.apply_batch(batch).map_err(storage)?;
        self.queues.remove(q.queue_id().key()).map_err(storage)?;
        Ok(())
    }

    /// Every message and deduplication entry of a queue (at start-up).
    pub fn load(&self, queue: u64) -> Result<StoredQueue, QueueError> {
        let mut messages = Vec::new();
        for item in self.data.scan_prefix(key(KIND_MESSAGE, queue, &[])) {
            let (_, v) = item.map_err(storage)?;
            messages.push(serde_json::from_slice(&v).map_err(storage)?);
        }
        let mut dedup = Vec::new();
        for item in self.data.scan_prefix(key(KIND_DEDUP, queue, &[])) {
            let (k, v) = item.map_err(storage)?;
            let id = String::from_utf8_lossy(&k[9..]).into_owned();
            dedup.push((id, serde_json::from_slice(&v).map_err(storage)?));
        }
        Ok(StoredQueue { messages, dedup })
    }

    /// Writes messages (new or changed) and deduplication entries in one atomic batch.
    pub fn write(
        &self,
        queue: u64,
        messages: &[&StoredMessage],
        dedup: &[(&str, &DedupEntry)],
    ) -> Result<(), QueueError> {
        let mut batch = sled::Batch::default();
        for m in messages {
            batch.insert(key(KIND_MESSAGE, queue, &m.seq.to_be_bytes()), serde_json::to_vec(m).map_err(storage)?);
        }
        for (k, e) in dedup {
            batch.insert(key(KIND_DEDUP, queue, k.as_bytes()), serde_json::to_vec(e).map_err(storage)?);
        }
        self.data.apply_batch(batch).map_err(storage)
    }

    pub fn remove_messages(&self, queue: u64, seqs: &[u64]) -> Result<(), QueueError> {
        let mut batch = sled::Batch::default();
        for s in seqs {
            batch.remove(key(KIND_MESSAGE, queue, &s.to_be_bytes()));
        }
        self.data.apply_batch(batch).map_err(storage)
    }

    pub fn remove_dedup(&self, queue: u64, keys: &[String]) -> Result<(), QueueError> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(key(KIND_DEDUP, queue, k.as_bytes()));
        }
        self.data.apply_batch(batch).map_err(storage)
    }

    /// Moves a message from one queue to another atomically (dead-letter, redrive).
    pub fn move_message(&self, from: u64, from_seq: u64, to: u64, m: &StoredMessage) -> Result<(), QueueError> {
        let mut batch = sled::Batch::default();
        batch.remove(key(KIND_MESSAGE, from, &from_seq.to_be_bytes()));
        batch.insert(key(KIND_MESSAGE, to, &m.seq.to_be_bytes()), serde_json::to_vec(m).map_err(storage)?);
        self.data.apply_batch(batch).map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_store_in_a_newer_format_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        drop(QueueStore::open(dir.path(), &Scope::new("123456789012", "us-east-1")).unwrap());
        let db = crate::sled_open::open(dir.path(), 500).unwrap();
        db.insert("format/queues", &5u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let text =
            QueueStore::open(dir.path(), &Scope::new("123456789012", "us-east-1")).err().expect("refused").to_string();
        assert!(text.contains("data/queues") && text.contains("format 5"), "{text}");
    }
}
