//! The queues' durable state behind [`QueueStorage`], the engine's only way to it: the
//! queue records, each queue's messages (a small record, and a payload written once
//! with the send) and deduplication entries.
//!
//! What the engine relies on: new messages and their deduplication entries are written
//! in one atomic step; a message moves between queues atomically; [`QueueStorage::flush`]
//! returns once everything written before it is durable (a send is acknowledged only
//! after it; receives, deletes and visibility changes are not waited for: after a crash
//! such a message is delivered again, which at-least-once delivery allows, but a sent
//! message is never lost); a payload whose write a crash cut off reads as `None`.
//! The embedded implementation is [`super::embedded`] (sled and a payload log);
//! [`conformance`] is what every implementation must pass.

use super::QueueId;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::QueueConfig;
use super::message::{MessagePayload, StoredMessage};
use super::state::DedupEntry;

/// Where the store keeps a message's payload, when it keeps it apart from the message's
/// record (the embedded store: a payload log segment, the record's offset and payload
/// length). Opaque to the engine, which only hands it back; a store that keeps payloads
/// with their messages leaves it `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

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

/// Where the queues are kept.
#[async_trait::async_trait]
pub trait QueueStorage: Send + Sync + 'static {
    /// Returns once everything written before it is durable.
    async fn flush(&self) -> Result<(), StorageFailure>;
    /// A queue id no queue has had.
    fn next_queue_id(&self) -> Result<u64, StorageFailure>;
    /// Every queue.
    fn queues(&self) -> Result<Vec<QueueRecord>, StorageFailure>;
    /// Creates or replaces a queue's record (by scope and name).
    fn put_queue(&self, q: &QueueRecord) -> Result<(), StorageFailure>;
    /// Removes a queue and everything in it.
    fn delete_queue(&self, q: &QueueRecord) -> Result<(), StorageFailure>;
    /// Every message and deduplication entry of a queue (at start-up).
    fn load(&self, queue: u64) -> Result<StoredQueue, StorageFailure>;
    /// New messages with their payloads (each given its reference) and deduplication
    /// entries, in one atomic step.
    fn write_new(
        &self,
        queue: u64,
        messages: &mut [StoredMessage],
        dedup: &[(&str, &DedupEntry)],
    ) -> Result<(), StorageFailure>;
    /// Rewrites messages' records (their payloads are stored already) and deduplication
    /// entries, in one atomic step.
    fn write(
        &self,
        queue: u64,
        messages: &[&StoredMessage],
        dedup: &[(&str, &DedupEntry)],
    ) -> Result<(), StorageFailure>;
    fn remove_messages(&self, queue: u64, seqs: &[u64]) -> Result<(), StorageFailure>;
    fn remove_dedup(&self, queue: u64, keys: &[String]) -> Result<(), StorageFailure>;
    /// Moves a message to another queue (as `m`, its new sequence) atomically.
    fn move_message(&self, from: u64, from_seq: u64, to: u64, m: &StoredMessage) -> Result<(), StorageFailure>;
    /// The payload of `m`; `None` if it is not whole (a send a crash cut off, never
    /// acknowledged).
    fn payload(&self, m: &StoredMessage) -> Result<Option<MessagePayload>, StorageFailure>;
    /// After every queue was loaded: frees payload space no message refers to.
    fn sweep_payloads(&self);
}

/// The behaviour the engine relies on, as checks any [`QueueStorage`] must pass. `open`
/// opens the same store each time (the previous one dropped first).
#[doc(hidden)]
pub mod conformance {
    use super::*;
    use crate::queues::message::{AttributeValue, MessageAttribute};

    fn queue(id: u64, name: &str) -> QueueRecord {
        QueueRecord {
            id,
            name: name.into(),
            scope: Scope::new("123456789012", "us-east-1"),
            config: QueueConfig::new(false),
            tags: BTreeMap::new(),
            permissions: BTreeMap::new(),
            created_s: 1,
            modified_s: 1,
        }
    }

    /// A message as a send makes one (a string attribute, no payload reference yet).
    pub fn message(seq: u64, body: &str) -> StoredMessage {
        let mut attributes = BTreeMap::new();
        attributes.insert(
            "camera".to_string(),
            MessageAttribute { data_type: "String".into(), value: AttributeValue::String("door".into()) },
        );
        StoredMessage {
            seq,
            id: format!("m{seq}"),
            body: body.into(),
            attributes,
            system_attributes: BTreeMap::new(),
            sent_ms: 1,
            sender_id: "123456789012".into(),
            ..StoredMessage::default()
        }
    }

    pub async fn run<S: QueueStorage>(open: impl Fn() -> S) {
        let (q1, q2);
        {
            let s = open();
            let a = s.next_queue_id().unwrap();
            let b = s.next_queue_id().unwrap();
            assert!(b > a, "queue ids only grow");
            q1 = queue(a, "jobs");
            q2 = queue(b, "dead");
            s.put_queue(&q1).unwrap();
            s.put_queue(&q2).unwrap();
            // New messages and a deduplication entry, atomically; flushed: acknowledged.
            let mut new = vec![message(1, "first"), message(2, "second"), message(3, "third")];
            let entry = DedupEntry { expires_ms: 1_000, message_id: "m1".into(), sequence_number: None };
            s.write_new(q1.id, &mut new, &[("dedup-1", &entry)]).unwrap();
            s.flush().await.unwrap();
            // A receive rewrites a record; a delete removes one; a dead-letter move.
            let mut seen = new[0].clone();
            seen.receive_count = 1;
            s.write(q1.id, &[&seen], &[]).unwrap();
            s.remove_messages(q1.id, &[2]).unwrap();
            let mut moved = new[2].clone();
            moved.seq = 10;
            s.move_message(q1.id, 3, q2.id, &moved).unwrap();
            s.flush().await.unwrap();
        }
        let s = open();
        let queues = s.queues().unwrap();
        assert_eq!(queues.len(), 2, "queue records are durable");
        let jobs = s.load(q1.id).unwrap();
        assert_eq!(jobs.messages.len(), 1);
        assert_eq!((jobs.messages[0].seq, jobs.messages[0].receive_count), (1, 1), "the rewrite is what is kept");
        assert_eq!(jobs.dedup.len(), 1);
        let payload = s.payload(&jobs.messages[0]).unwrap().expect("a flushed payload reads back whole");
        assert_eq!(payload.body, "first");
        assert_eq!(payload.attributes["camera"].value, AttributeValue::String("door".into()));
        let dead = s.load(q2.id).unwrap();
        assert_eq!(dead.messages.len(), 1);
        assert_eq!(dead.messages[0].seq, 10, "moved under its new sequence");
        assert_eq!(s.payload(&dead.messages[0]).unwrap().unwrap().body, "third", "its payload moved with it");
        s.remove_dedup(q1.id, &["dedup-1".into()]).unwrap();
        s.sweep_payloads();
        assert!(s.load(q1.id).unwrap().dedup.is_empty());
        // A deleted queue takes its messages with it.
        s.delete_queue(&q2).unwrap();
        s.flush().await.unwrap();
        drop(s);
        let s = open();
        assert_eq!(s.queues().unwrap().len(), 1);
        assert!(s.load(q2.id).unwrap().messages.is_empty());
        assert!(s.next_queue_id().unwrap() > q2.id, "a reopened store hands out no queue id twice");
    }
}
