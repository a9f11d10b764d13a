//! The queue store in sled (`data/queues/`) and a payload log beside it.
//!
//! Two trees: `queues` (`ACCOUNT/REGION/NAME` → [`QueueRecord`] as JSON) and `data`,
//! whose keys are a kind byte, the queue id, then kind-specific bytes:
//!
//! | kind | after the queue id   | value                                                 |
//! |------|----------------------|-------------------------------------------------------|
//! | `M`  | sequence (u64 BE)    | [`StoredMessage`] JSON, with a [`PayloadRef`] instead of its payload |
//! | `D`  | deduplication key    | [`DedupEntry`] JSON                                   |
//!
//! Payloads (body and attributes) are in the [`PayloadLog`] next to the database
//! (`data/queues/payloads/`), written once with the send and read when the message is
//! received; receives, visibility changes and moves rewrite only the small `M` record.
//! A flush syncs the payload log and sled in parallel; concurrent sends share flushes
//! through the flusher thread. The format (3) is checked at open; older ones are
//! upgraded by [`upgrade`], one file per step.

pub mod payload_log;
pub mod upgrade;

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use super::message::{MessagePayload, StoredMessage};
use super::state::DedupEntry;
use super::store::{QueueRecord, QueueStorage, StoredQueue};
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;
use payload_log::{PayloadLog, PayloadRef};

const KIND_MESSAGE: u8 = b'M';
const KIND_DEDUP: u8 = b'D';

fn key(kind: u8, queue: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + rest.len());
    k.push(kind);
    k.extend_from_slice(&queue.to_be_bytes());
    k.extend_from_slice(rest);
    k
}

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> StorageFailure {
    StorageFailure::caused("the queue store (data/queues)", e)
}

/// The queue store's layout (key scheme, JSON records), recorded in it and checked at
/// open (see docs/storage.md). 2: queue records carry their scope and are keyed by
/// `ACCOUNT/REGION/NAME` (1: by name, all in the server's default scope). 3: message
/// payloads in the payload log (2: inside the `M` record).
pub const QUEUES_FORMAT: u32 = 3;
const STORE: &str = "the queue store (data/queues)";

#[derive(Clone)]
pub struct SledQueues {
    db: sled::Db,
    queues: sled::Tree,
    data: sled::Tree,
    payloads: Arc<PayloadLog>,
    flusher: mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), StorageFailure>>>,
}

impl SledQueues {
    /// Opens the store, upgrading an older format first (see [`upgrade`]).
    pub fn open(dir: &Path, default_scope: &Scope) -> Result<Self, StorageFailure> {
        let db = crate::embedded::sled_db::open(dir, 500).map_err(storage)?;
        let format_error = |e| StorageFailure::caused("open the queue store", e);
        let found =
            crate::embedded::sled_db::check_format(&db, "queues", QUEUES_FORMAT, STORE).map_err(format_error)?;
        let queues = db.open_tree("queues").map_err(storage)?;
        let data = db.open_tree("data").map_err(storage)?;
        let payloads = Arc::new(PayloadLog::open(&dir.join("payloads")).map_err(storage)?);
        upgrade::run(found, &queues, &data, &payloads, default_scope)?;
        crate::embedded::sled_db::record_format(&db, "queues", QUEUES_FORMAT, STORE).map_err(format_error)?;
        let (tx, rx) = mpsc::channel::<tokio::sync::oneshot::Sender<Result<(), StorageFailure>>>();
        let flush_db = db.clone();
        let flush_payloads = payloads.clone();
        std::thread::Builder::new()
            .name("queue-flusher".into())
            .spawn(move || {
                // One flush answers every request that queued up while the last ran.
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    // Both syncs at once: a message record durable before its payload
                    // (a crash between the two) reads as a torn payload, which is
                    // dropped at receive; it was not acknowledged, both must finish
                    // first.
                    let r = std::thread::scope(|scope| {
                        let payloads = scope.spawn(|| flush_payloads.sync());
                        let db = flush_db
                            .flush()
                            .map(|_| ())
                            .map_err(|e| StorageFailure::caused("flush the queue store", e));
                        let payloads = payloads
                            .join()
                            .unwrap_or_else(|_| Err(std::io::Error::other("the payload sync panicked")))
                            .map_err(|e| StorageFailure::caused("sync the queue payload log", e));
                        payloads.and(db)
                    });
                    for w in waiting {
                        let _ = w.send(r.clone());
                    }
                }
            })
            .map_err(storage)?;
        Ok(SledQueues { db, queues, data, payloads, flusher: tx })
    }
}

#[async_trait::async_trait]
impl QueueStorage for SledQueues {
    /// Waits until everything written so far is on disk.
    async fn flush(&self) -> Result<(), StorageFailure> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = || StorageFailure::new("the queue flusher stopped");
        self.flusher.send(tx).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    fn next_queue_id(&self) -> Result<u64, StorageFailure> {
        self.db.generate_id().map(|id| id + 1).map_err(storage)
    }

    fn queues(&self) -> Result<Vec<QueueRecord>, StorageFailure> {
        self.queues
            .iter()
            .values()
            .map(|v| v.map_err(storage).and_then(|v| serde_json::from_slice(&v).map_err(storage)))
            .collect()
    }

    fn put_queue(&self, q: &QueueRecord) -> Result<(), StorageFailure> {
        self.queues.insert(q.queue_id().key(), serde_json::to_vec(q).map_err(storage)?).map_err(storage)?;
        Ok(())
    }

    /// Removes a queue and everything in it.
    fn delete_queue(&self, q: &QueueRecord) -> Result<(), StorageFailure> {
        let mut batch = sled::Batch::default();
        let mut refs = Vec::new();
        for kind in [KIND_MESSAGE, KIND_DEDUP] {
            for item in self.data.scan_prefix(key(kind, q.id, &[])) {
                let (k, v) = item.map_err(storage)?;
                if kind == KIND_MESSAGE {
                    refs.extend(payload_ref_of(&v));
                }
                batch.remove(k);
            }
        }
        self.data.apply_batch(batch).map_err(storage)?;
        self.queues.remove(q.queue_id().key()).map_err(storage)?;
        refs.into_iter().for_each(|r| self.payloads.release(r));
        Ok(())
    }

    /// Every message and deduplication entry of a queue (at start-up).
    fn load(&self, queue: u64) -> Result<StoredQueue, StorageFailure> {
        let mut messages = Vec::new();
        for item in self.data.scan_prefix(key(KIND_MESSAGE, queue, &[])) {
            let (_, v) = item.map_err(storage)?;
            let m: StoredMessage = serde_json::from_slice(&v).map_err(storage)?;
            if let Some(r) = m.payload_ref {
                self.payloads.retain(r);
            }
            messages.push(m);
        }
        let mut dedup = Vec::new();
        for item in self.data.scan_prefix(key(KIND_DEDUP, queue, &[])) {
            let (k, v) = item.map_err(storage)?;
            let id = String::from_utf8_lossy(&k[9..]).into_owned();
            dedup.push((id, serde_json::from_slice(&v).map_err(storage)?));
        }
        Ok(StoredQueue { messages, dedup })
    }

    /// Writes new messages (with their payloads, which go to the payload log; each
    /// message gets its [`PayloadRef`]) and deduplication entries in one atomic batch.
    fn write_new(
        &self,
        queue: u64,
        messages: &mut [StoredMessage],
        dedup: &[(&str, &DedupEntry)],
    ) -> Result<(), StorageFailure> {
        let mut appended = Vec::with_capacity(messages.len());
        let result = (|| {
            for m in messages.iter_mut() {
                let payload = serde_json::to_vec(&m.payload()).map_err(storage)?;
                let r = self.payloads.append(&payload).map_err(storage)?;
                self.payloads.retain(r);
                appended.push(r);
                m.payload_ref = Some(r);
            }
            self.write(queue, &messages.iter().collect::<Vec<_>>(), dedup)
        })();
        if result.is_err() {
            appended.into_iter().for_each(|r| self.payloads.release(r));
        }
        result
    }

    /// Writes messages' records (their payloads are already in the log) and
    /// deduplication entries in one atomic batch.
    fn write(
        &self,
        queue: u64,
        messages: &[&StoredMessage],
        dedup: &[(&str, &DedupEntry)],
    ) -> Result<(), StorageFailure> {
        let mut batch = sled::Batch::default();
        for m in messages {
            let meta = serde_json::to_vec(&m.without_payload()).map_err(storage)?;
            batch.insert(key(KIND_MESSAGE, queue, &m.seq.to_be_bytes()), meta);
        }
        for (k, e) in dedup {
            batch.insert(key(KIND_DEDUP, queue, k.as_bytes()), serde_json::to_vec(e).map_err(storage)?);
        }
        self.data.apply_batch(batch).map_err(storage)
    }

    fn remove_messages(&self, queue: u64, seqs: &[u64]) -> Result<(), StorageFailure> {
        let mut batch = sled::Batch::default();
        let mut refs = Vec::new();
        for s in seqs {
            let k = key(KIND_MESSAGE, queue, &s.to_be_bytes());
            if let Some(v) = self.data.get(&k).map_err(storage)? {
                refs.extend(payload_ref_of(&v));
            }
            batch.remove(k);
        }
        self.data.apply_batch(batch).map_err(storage)?;
        refs.into_iter().for_each(|r| self.payloads.release(r));
        Ok(())
    }

    fn remove_dedup(&self, queue: u64, keys: &[String]) -> Result<(), StorageFailure> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(key(KIND_DEDUP, queue, k.as_bytes()));
        }
        self.data.apply_batch(batch).map_err(storage)
    }

    /// Moves a message from one queue to another atomically (dead-letter, redrive);
    /// its payload stays where it is.
    fn move_message(&self, from: u64, from_seq: u64, to: u64, m: &StoredMessage) -> Result<(), StorageFailure> {
        let mut batch = sled::Batch::default();
        batch.remove(key(KIND_MESSAGE, from, &from_seq.to_be_bytes()));
        batch.insert(
            key(KIND_MESSAGE, to, &m.seq.to_be_bytes()),
            serde_json::to_vec(&m.without_payload()).map_err(storage)?,
        );
        self.data.apply_batch(batch).map_err(storage)
    }

    /// The payload of `m`, read back from the log; `None` if it is not whole (a
    /// message whose payload sync a crash cut off: it was never acknowledged).
    fn payload(&self, m: &StoredMessage) -> Result<Option<MessagePayload>, StorageFailure> {
        let Some(r) = m.payload_ref else { return Ok(None) };
        match self.payloads.read(r).map_err(storage)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(storage)?)),
            None => Ok(None),
        }
    }

    /// After every queue was loaded: deletes payload segments no message refers to.
    fn sweep_payloads(&self) {
        self.payloads.sweep_unreferenced();
    }
}

/// The payload reference in a message record's JSON, if any.
fn payload_ref_of(record: &[u8]) -> Option<PayloadRef> {
    serde_json::from_slice::<StoredMessage>(record).ok()?.payload_ref
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn sled_queues_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let scope = crate::scope::Scope::new("123456789012", "us-east-1");
        super::super::super::queues::store::conformance::run(|| super::SledQueues::open(dir.path(), &scope).unwrap())
            .await;
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn a_queue_store_in_a_newer_format_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledQueues::open(dir.path(), &Scope::new("123456789012", "us-east-1")).unwrap());
        let db = crate::embedded::sled_db::open(dir.path(), 500).unwrap();
        db.insert("format/queues", &5u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let text =
            SledQueues::open(dir.path(), &Scope::new("123456789012", "us-east-1")).err().expect("refused").to_string();
        assert!(text.contains("data/queues") && text.contains("format 5"), "{text}");
    }

    use crate::queues::store::conformance::message;

    /// Payloads live in the payload log: metadata updates and moves never rewrite them,
    /// deletes release them, and a format-2 store (payload inside the message record) is
    /// split on open.
    #[test]
    fn payloads_are_kept_apart_and_format_2_is_split() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope::new("123456789012", "us-east-1");
        {
            let store = SledQueues::open(dir.path(), &scope).unwrap();
            let mut sent = [message(1, "hello")];
            store.write_new(7, &mut sent, &[]).unwrap();
            let r = sent[0].payload_ref.expect("a payload reference");
            let loaded = store.load(7).unwrap().messages;
            assert_eq!((loaded.len(), loaded[0].body.as_str()), (1, ""), "the record holds no body");
            assert_eq!(loaded[0].payload_ref, Some(r));
            assert_eq!(store.payload(&loaded[0]).unwrap().map(|p| p.body), Some("hello".into()));
            // Received (metadata rewritten), then moved to another queue.
            store.write(7, &[&StoredMessage { receive_count: 1, ..loaded[0].clone() }], &[]).unwrap();
            let moved = StoredMessage { seq: 5, ..loaded[0].clone() };
            store.move_message(7, 1, 8, &moved).unwrap();
            assert!(store.load(7).unwrap().messages.is_empty());
            let at_8 = store.load(8).unwrap().messages;
            assert_eq!(store.payload(&at_8[0]).unwrap().map(|p| p.body), Some("hello".into()), "moved with it");
            store.remove_messages(8, &[5]).unwrap();
            assert!(store.load(8).unwrap().messages.is_empty());
            // A message record as format 2 wrote it.
            store
                .data
                .insert(key(KIND_MESSAGE, 9, &3u64.to_be_bytes()), serde_json::to_vec(&message(3, "old")).unwrap())
                .unwrap();
            store.db.insert("format/queues", &2u32.to_be_bytes()).unwrap();
            store.db.flush().unwrap();
        }
        let store = SledQueues::open(dir.path(), &scope).unwrap();
        let upgraded = store.load(9).unwrap().messages;
        assert_eq!(upgraded[0].body, "");
        assert_eq!(store.payload(&upgraded[0]).unwrap().map(|p| p.body), Some("old".into()));
    }

    /// A record sled persisted before its payload was synced (a crash in between)
    /// reads as no payload, never as other bytes.
    #[test]
    fn a_payload_cut_off_by_a_crash_reads_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope::new("123456789012", "us-east-1");
        let store = SledQueues::open(dir.path(), &scope).unwrap();
        let mut sent = [message(1, "hello")];
        store.write_new(7, &mut sent, &[]).unwrap();
        let r = sent[0].payload_ref.unwrap();
        let beyond =
            StoredMessage { payload_ref: Some(PayloadRef { offset: r.offset + 1000, ..r }), ..sent[0].clone() };
        assert_eq!(store.payload(&beyond).unwrap(), None);
        let shifted = StoredMessage {
            payload_ref: Some(PayloadRef { offset: r.offset + 1, len: r.len - 1, ..r }),
            ..sent[0].clone()
        };
        assert_eq!(store.payload(&shifted).unwrap(), None);
    }
}
