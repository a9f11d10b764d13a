//! The stream queues' state in the cluster database: tables `stream_queues` (one
//! record per queue, JSON, by uid), `stream_queue_cursors` (per queue and shard) and
//! `stream_queue_records` (the tracked records: counters, not data). A step is one
//! transaction, committed before it returns whatever `durable` asks (a commit is the
//! database's durability; there is no cheaper "not yet durable" write to offer).

use std::collections::BTreeMap;

use super::store::{Progress, QueueMeta, StoredQueue, StreamQueueStore, TrackedRecord};
use crate::postgres::{failed, from_bigint, Database, Param};
use crate::storage_failure::StorageFailure;

const STORE: &str = "the stream queues (cluster database)";

pub struct PgStreamQueues {
    db: Database,
}

impl PgStreamQueues {
    pub fn new(db: Database) -> Self {
        PgStreamQueues { db }
    }
}

impl StreamQueueStore for PgStreamQueues {
    fn load(&self) -> Result<Vec<StoredQueue>, StorageFailure> {
        let metas = self.db.query(STORE, "SELECT uid, record FROM stream_queues ORDER BY uid", Vec::new())?;
        let mut out = Vec::with_capacity(metas.len());
        for row in metas {
            let uid = Param::Int(row.get::<_, i64>(0));
            let meta: QueueMeta = serde_json::from_slice(&row.get::<_, Vec<u8>>(1)).map_err(|e| failed(STORE, e))?;
            let cursors: BTreeMap<u32, u64> = self
                .db
                .query(STORE, "SELECT shard, seq FROM stream_queue_cursors WHERE uid = $1", vec![uid.clone()])?
                .iter()
                .map(|r| (from_bigint(r.get(0)) as u32, from_bigint(r.get(1))))
                .collect();
            let mut tracked = BTreeMap::new();
            for r in
                self.db.query(STORE, "SELECT shard, seq, record FROM stream_queue_records WHERE uid = $1", vec![uid])?
            {
                let t: TrackedRecord = serde_json::from_slice(&r.get::<_, Vec<u8>>(2)).map_err(|e| failed(STORE, e))?;
                tracked.insert((from_bigint(r.get(0)) as u32, from_bigint(r.get(1))), t);
            }
            out.push(StoredQueue { meta, cursors, tracked });
        }
        Ok(out)
    }

    fn save(&self, meta: &QueueMeta) -> Result<(), StorageFailure> {
        let v = serde_json::to_vec(meta).map_err(|e| failed(STORE, e))?;
        self.db
            .transaction(
                STORE,
                vec![(
                    "INSERT INTO stream_queues (uid, record) VALUES ($1, $2)
                     ON CONFLICT (uid) DO UPDATE SET record = EXCLUDED.record",
                    vec![Param::uint(meta.uid), Param::Bytes(v)],
                )],
            )
            .map(|_| ())
    }

    fn apply(&self, uid: u64, progress: &Progress, _durable: bool) -> Result<(), StorageFailure> {
        if progress.is_empty() {
            return Ok(());
        }
        let mut statements = Vec::new();
        for (shard, seq) in &progress.cursors {
            statements.push((
                "INSERT INTO stream_queue_cursors (uid, shard, seq) VALUES ($1, $2, $3)
                 ON CONFLICT (uid, shard) DO UPDATE SET seq = EXCLUDED.seq",
                vec![Param::uint(uid), Param::uint(u64::from(*shard)), Param::uint(*seq)],
            ));
        }
        for ((shard, seq), t) in &progress.tracked {
            statements.push((
                "INSERT INTO stream_queue_records (uid, shard, seq, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (uid, shard, seq) DO UPDATE SET record = EXCLUDED.record",
                vec![
                    Param::uint(uid),
                    Param::uint(u64::from(*shard)),
                    Param::uint(*seq),
                    Param::Bytes(serde_json::to_vec(t).map_err(|e| failed(STORE, e))?),
                ],
            ));
        }
        for (shard, seq) in &progress.dropped {
            statements.push((
                "DELETE FROM stream_queue_records WHERE uid = $1 AND shard = $2 AND seq = $3",
                vec![Param::uint(uid), Param::uint(u64::from(*shard)), Param::uint(*seq)],
            ));
        }
        self.db.transaction(STORE, statements).map(|_| ())
    }

    fn delete(&self, uid: u64) -> Result<(), StorageFailure> {
        let id = Param::uint(uid);
        self.db
            .transaction(
                STORE,
                vec![
                    ("DELETE FROM stream_queue_records WHERE uid = $1", vec![id.clone()]),
                    ("DELETE FROM stream_queue_cursors WHERE uid = $1", vec![id.clone()]),
                    ("DELETE FROM stream_queues WHERE uid = $1", vec![id]),
                ],
            )
            .map(|_| ())
    }
}
