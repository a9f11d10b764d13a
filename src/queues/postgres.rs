//! The queues' state in the cluster database, behind the same [`QueueStorage`] the
//! embedded store implements: tables `queues` (one record per queue, JSON),
//! `queue_messages` (one row per message: its record without the payload, and the id
//! of its payload row), `queue_payloads` (body and attributes, written once with the
//! send) and `queue_dedup` (deduplication entries); queue ids and payload ids from
//! sequences. Each trait call is one transaction, committed before it returns, so
//! [`QueueStorage::flush`] has nothing left to do. A message's [`PayloadRef`] carries
//! its payload row's id (`offset`), which moves with it to another queue.
//!
//! This keeps the engine's state durable in PostgreSQL as the engine is built today
//! (one process owns a queue's in-memory state); serving one queue from several nodes
//! at once needs the engine's receive itself in the database (`FOR UPDATE SKIP
//! LOCKED`), which is not done yet.

use super::message::{MessagePayload, StoredMessage};
use super::state::DedupEntry;
use super::store::{PayloadRef, QueueRecord, QueueStorage, StoredQueue};
use crate::postgres::{failed, from_bigint, Database, Param};
use crate::storage_failure::StorageFailure;

const STORE: &str = "the queue store (cluster database)";

pub struct PgQueues {
    db: Database,
}

impl PgQueues {
    pub fn new(db: Database) -> Self {
        PgQueues { db }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StorageFailure> {
    serde_json::to_vec(v).map_err(|e| failed(STORE, e))
}

fn message_row(queue: u64, m: &StoredMessage) -> Result<(&'static str, Vec<Param>), StorageFailure> {
    let payload = m.payload_ref.map_or(0, |r| r.offset);
    Ok((
        "INSERT INTO queue_messages (queue, seq, payload, record) VALUES ($1, $2, $3, $4)
         ON CONFLICT (queue, seq) DO UPDATE SET payload = EXCLUDED.payload, record = EXCLUDED.record",
        vec![Param::uint(queue), Param::uint(m.seq), Param::uint(payload), Param::Bytes(json(&m.without_payload())?)],
    ))
}

fn dedup_rows(queue: u64, dedup: &[(&str, &DedupEntry)]) -> Result<Vec<(&'static str, Vec<Param>)>, StorageFailure> {
    dedup
        .iter()
        .map(|(key, entry)| {
            Ok((
                "INSERT INTO queue_dedup (queue, key, entry) VALUES ($1, $2, $3)
                 ON CONFLICT (queue, key) DO UPDATE SET entry = EXCLUDED.entry",
                vec![Param::uint(queue), Param::Text(key.to_string()), Param::Bytes(json(entry)?)],
            ))
        })
        .collect()
}

#[async_trait::async_trait]
impl QueueStorage for PgQueues {
    async fn flush(&self) -> Result<(), StorageFailure> {
        Ok(())
    }

    fn next_queue_id(&self) -> Result<u64, StorageFailure> {
        let rows = self.db.query(STORE, "SELECT nextval('queue_ids')", Vec::new())?;
        rows.first().map(|r| from_bigint(r.get(0))).ok_or_else(|| StorageFailure::new("no queue id"))
    }

    fn queues(&self) -> Result<Vec<QueueRecord>, StorageFailure> {
        let rows = self.db.query(STORE, "SELECT record FROM queues ORDER BY id", Vec::new())?;
        rows.iter().map(|r| serde_json::from_slice(&r.get::<_, Vec<u8>>(0)).map_err(|e| failed(STORE, e))).collect()
    }

    fn put_queue(&self, q: &QueueRecord) -> Result<(), StorageFailure> {
        let statements = vec![(
            "INSERT INTO queues (account, region, name, id, record) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account, region, name) DO UPDATE SET id = EXCLUDED.id, record = EXCLUDED.record",
            vec![
                Param::Text(q.scope.account.clone()),
                Param::Text(q.scope.region.clone()),
                Param::Text(q.name.clone()),
                Param::uint(q.id),
                Param::Bytes(json(q)?),
            ],
        )];
        self.db.transaction(STORE, statements).map(|_| ())
    }

    fn delete_queue(&self, q: &QueueRecord) -> Result<(), StorageFailure> {
        let id = Param::uint(q.id);
        self.db
            .transaction(
                STORE,
                vec![
                    (
                        "DELETE FROM queue_payloads WHERE id IN (SELECT payload FROM queue_messages WHERE queue = $1)",
                        vec![id.clone()],
                    ),
                    ("DELETE FROM queue_messages WHERE queue = $1", vec![id.clone()]),
                    ("DELETE FROM queue_dedup WHERE queue = $1", vec![id.clone()]),
                    (
                        "DELETE FROM queues WHERE account = $1 AND region = $2 AND name = $3 AND id = $4",
                        vec![
                            Param::Text(q.scope.account.clone()),
                            Param::Text(q.scope.region.clone()),
                            Param::Text(q.name.clone()),
                            id,
                        ],
                    ),
                ],
            )
            .map(|_| ())
    }

    fn load(&self, queue: u64) -> Result<StoredQueue, StorageFailure> {
        let rows = self.db.query(
            STORE,
            "SELECT record FROM queue_messages WHERE queue = $1 ORDER BY seq",
            vec![Param::uint(queue)],
        )?;
        let messages = rows
            .iter()
            .map(|r| serde_json::from_slice(&r.get::<_, Vec<u8>>(0)).map_err(|e| failed(STORE, e)))
            .collect::<Result<Vec<StoredMessage>, _>>()?;
        let rows = self.db.query(
            STORE,
            "SELECT key, entry FROM queue_dedup WHERE queue = $1 ORDER BY key",
            vec![Param::uint(queue)],
        )?;
        let dedup = rows
            .iter()
            .map(|r| {
                let entry = serde_json::from_slice(&r.get::<_, Vec<u8>>(1)).map_err(|e| failed(STORE, e))?;
                Ok((r.get::<_, String>(0), entry))
            })
            .collect::<Result<Vec<_>, StorageFailure>>()?;
        Ok(StoredQueue { messages, dedup })
    }

    fn write_new(
        &self,
        queue: u64,
        messages: &mut [StoredMessage],
        dedup: &[(&str, &DedupEntry)],
    ) -> Result<(), StorageFailure> {
        // Payload ids first (a sequence: nothing is written yet), then every row in
        // one transaction.
        let rows = self.db.query(
            STORE,
            "SELECT nextval('queue_payload_ids') FROM generate_series(1, $1::BIGINT)",
            vec![Param::Int(messages.len() as i64)],
        )?;
        let ids: Vec<u64> = rows.iter().map(|r| from_bigint(r.get(0))).collect();
        let mut statements = Vec::with_capacity(messages.len() * 2 + dedup.len());
        for (m, id) in messages.iter_mut().zip(&ids) {
            let payload = json(&m.payload())?;
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            statements.push((
                "INSERT INTO queue_payloads (id, bytes) VALUES ($1, $2)",
                vec![Param::uint(*id), Param::Bytes(payload)],
            ));
            m.payload_ref = Some(PayloadRef { segment: 0, offset: *id, len });
            statements.push(message_row(queue, m)?);
        }
        statements.extend(dedup_rows(queue, dedup)?);
        let written = self.db.transaction(STORE, statements);
        if written.is_err() {
            messages.iter_mut().for_each(|m| m.payload_ref = None);
        }
        written.map(|_| ())
    }

    fn write(
        &self,
        queue: u64,
        messages: &[&StoredMessage],
        dedup: &[(&str, &DedupEntry)],
    ) -> Result<(), StorageFailure> {
        let mut statements = messages.iter().map(|m| message_row(queue, m)).collect::<Result<Vec<_>, _>>()?;
        statements.extend(dedup_rows(queue, dedup)?);
        if statements.is_empty() {
            return Ok(());
        }
        self.db.transaction(STORE, statements).map(|_| ())
    }

    fn remove_messages(&self, queue: u64, seqs: &[u64]) -> Result<(), StorageFailure> {
        if seqs.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = seqs.iter().map(|s| crate::postgres::to_bigint(*s)).collect();
        let statements = vec![
            (
                "DELETE FROM queue_payloads WHERE id IN
                 (SELECT payload FROM queue_messages WHERE queue = $1 AND seq = ANY($2))",
                vec![Param::uint(queue), Param::Ints(seqs.clone())],
            ),
            (
                "DELETE FROM queue_messages WHERE queue = $1 AND seq = ANY($2)",
                vec![Param::uint(queue), Param::Ints(seqs)],
            ),
        ];
        self.db.transaction(STORE, statements).map(|_| ())
    }

    fn remove_dedup(&self, queue: u64, keys: &[String]) -> Result<(), StorageFailure> {
        if keys.is_empty() {
            return Ok(());
        }
        let statements = keys
            .iter()
            .map(|k| {
                (
                    "DELETE FROM queue_dedup WHERE queue = $1 AND key = $2",
                    vec![Param::uint(queue), Param::Text(k.clone())],
                )
            })
            .collect();
        self.db.transaction(STORE, statements).map(|_| ())
    }

    fn move_message(&self, from: u64, from_seq: u64, to: u64, m: &StoredMessage) -> Result<(), StorageFailure> {
        self.db
            .transaction(
                STORE,
                vec![
                    (
                        "DELETE FROM queue_messages WHERE queue = $1 AND seq = $2",
                        vec![Param::uint(from), Param::uint(from_seq)],
                    ),
                    message_row(to, m)?,
                ],
            )
            .map(|_| ())
    }

    fn payload(&self, m: &StoredMessage) -> Result<Option<MessagePayload>, StorageFailure> {
        let Some(r) = m.payload_ref else { return Ok(None) };
        let rows =
            self.db.query(STORE, "SELECT bytes FROM queue_payloads WHERE id = $1", vec![Param::uint(r.offset)])?;
        rows.first()
            .map(|row| serde_json::from_slice(&row.get::<_, Vec<u8>>(0)).map_err(|e| failed(STORE, e)))
            .transpose()
    }

    fn sweep_payloads(&self) {
        // Payloads are removed with their messages, in the same transaction; this
        // catches any a crash between releases left (none are expected).
        let swept = self.db.transaction(
            STORE,
            vec![(
                "DELETE FROM queue_payloads p WHERE NOT EXISTS (SELECT 1 FROM queue_messages m WHERE m.payload = p.id)",
                Vec::new(),
            )],
        );
        if let Err(e) = swept {
            tracing::warn!(error = %e, "sweeping unreferenced queue payloads failed; retried at the next start");
        }
    }
}
