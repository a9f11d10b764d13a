//! The stream queues in sled (`data/stream_queues`), one tree so that every step is one
//! atomic batch: `q` + uid → the queue's JSON record; `c` + uid + shard → the last
//! sequence counter read; `r` + uid + shard + counter → a tracked record (fixed 37
//! bytes, big-endian). Format 1 (`format/stream_queues`), checked at open.

use std::collections::BTreeMap;
use std::path::Path;

use super::store::{Progress, QueueMeta, StoredQueue, StreamQueueStore, TrackedRecord};
use crate::storage_failure::StorageFailure;

pub const FORMAT: u32 = 1;
const STORE: &str = "the stream queues (data/stream_queues)";
const RECORD_LEN: usize = 37;

pub struct SledStreamQueues {
    db: sled::Db,
    tree: sled::Tree,
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StorageFailure {
    StorageFailure::caused(STORE, e)
}

fn key(tag: u8, uid: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + rest.len());
    k.push(tag);
    k.extend_from_slice(&uid.to_be_bytes());
    k.extend_from_slice(rest);
    k
}

fn record_key(uid: u64, shard: u32, seq: u64) -> Vec<u8> {
    let mut rest = [0u8; 12];
    rest[..4].copy_from_slice(&shard.to_be_bytes());
    rest[4..].copy_from_slice(&seq.to_be_bytes());
    key(b'r', uid, &rest)
}

fn encode(t: &TrackedRecord) -> [u8; RECORD_LEN] {
    let mut v = [0u8; RECORD_LEN];
    v[0..8].copy_from_slice(&t.arrival_ms.to_be_bytes());
    v[8..12].copy_from_slice(&t.receive_count.to_be_bytes());
    v[12..20].copy_from_slice(&t.first_receive_ms.to_be_bytes());
    v[20..28].copy_from_slice(&t.visible_at_ms.to_be_bytes());
    v[28..36].copy_from_slice(&t.delivery.to_be_bytes());
    v[36] = u8::from(t.dead);
    v
}

fn decode(v: &[u8]) -> Option<TrackedRecord> {
    if v.len() != RECORD_LEN {
        return None;
    }
    let i64_at = |i: usize| v[i..i + 8].try_into().ok().map(i64::from_be_bytes);
    Some(TrackedRecord {
        arrival_ms: i64_at(0)?,
        receive_count: u32::from_be_bytes(v[8..12].try_into().ok()?),
        first_receive_ms: i64_at(12)?,
        visible_at_ms: i64_at(20)?,
        delivery: u64::from_be_bytes(v[28..36].try_into().ok()?),
        dead: v[36] != 0,
    })
}

fn unreadable(what: String) -> StorageFailure {
    StorageFailure::new(format!("{STORE}: {what}"))
}

impl SledStreamQueues {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        use crate::embedded::sled_db::check_and_record_format;
        let db = crate::embedded::sled_db::open(dir, 500).map_err(|e| std::io::Error::other(e.to_string()))?;
        check_and_record_format(&db, "stream_queues", FORMAT, STORE).map_err(std::io::Error::other)?;
        let tree = db.open_tree("queues").map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(SledStreamQueues { db, tree })
    }
}

impl StreamQueueStore for SledStreamQueues {
    fn load(&self) -> Result<Vec<StoredQueue>, StorageFailure> {
        let mut queues: BTreeMap<u64, StoredQueue> = BTreeMap::new();
        let mut cursors: BTreeMap<u64, BTreeMap<u32, u64>> = BTreeMap::new();
        let mut tracked: BTreeMap<u64, BTreeMap<(u32, u64), TrackedRecord>> = BTreeMap::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(failed)?;
            let uid = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            let Some(uid) = uid else { return Err(unreadable(format!("a key of {} bytes", k.len()))) };
            match (k[0], k.len()) {
                (b'q', 9) => {
                    let meta: QueueMeta = serde_json::from_slice(&v).map_err(failed)?;
                    queues.insert(uid, StoredQueue { meta, cursors: BTreeMap::new(), tracked: BTreeMap::new() });
                }
                (b'c', 13) => {
                    let shard = u32::from_be_bytes([k[9], k[10], k[11], k[12]]);
                    let seq = v
                        .as_ref()
                        .try_into()
                        .map(u64::from_be_bytes)
                        .map_err(|_| unreadable(format!("queue {uid}: a cursor of {} bytes", v.len())))?;
                    cursors.entry(uid).or_default().insert(shard, seq);
                }
                (b'r', 21) => {
                    let shard = u32::from_be_bytes([k[9], k[10], k[11], k[12]]);
                    let seq = u64::from_be_bytes(k[13..21].try_into().unwrap_or([0; 8]));
                    let t = decode(&v)
                        .ok_or_else(|| unreadable(format!("queue {uid}: a tracked record of {} bytes", v.len())))?;
                    tracked.entry(uid).or_default().insert((shard, seq), t);
                }
                (tag, len) => return Err(unreadable(format!("a key tagged {tag} of {len} bytes"))),
            }
        }
        for (uid, c) in cursors {
            if let Some(q) = queues.get_mut(&uid) {
                q.cursors = c;
            }
        }
        for (uid, t) in tracked {
            if let Some(q) = queues.get_mut(&uid) {
                q.tracked = t;
            }
        }
        Ok(queues.into_values().collect())
    }

    fn save(&self, meta: &QueueMeta) -> Result<(), StorageFailure> {
        let v = serde_json::to_vec(meta).map_err(failed)?;
        self.tree.insert(key(b'q', meta.uid, &[]), v).map_err(failed)?;
        self.db.flush().map_err(failed)?;
        Ok(())
    }

    fn apply(&self, uid: u64, progress: &Progress, durable: bool) -> Result<(), StorageFailure> {
        let mut batch = sled::Batch::default();
        for (shard, seq) in &progress.cursors {
            batch.insert(key(b'c', uid, &shard.to_be_bytes()), &seq.to_be_bytes());
        }
        for ((shard, seq), t) in &progress.tracked {
            batch.insert(record_key(uid, *shard, *seq), encode(t).to_vec());
        }
        for (shard, seq) in &progress.dropped {
            batch.remove(record_key(uid, *shard, *seq));
        }
        self.tree.apply_batch(batch).map_err(failed)?;
        if durable {
            self.db.flush().map_err(failed)?;
        }
        Ok(())
    }

    fn delete(&self, uid: u64) -> Result<(), StorageFailure> {
        let mut batch = sled::Batch::default();
        batch.remove(key(b'q', uid, &[]));
        for tag in [b'c', b'r'] {
            for k in self.tree.scan_prefix(key(tag, uid, &[])).keys() {
                batch.remove(k.map_err(failed)?);
            }
        }
        self.tree.apply_batch(batch).map_err(failed)?;
        self.db.flush().map_err(failed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sled_stream_queues_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::super::store::conformance::run(|| super::SledStreamQueues::open(dir.path()).unwrap());
    }

    #[test]
    fn a_store_in_a_newer_format_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        drop(super::SledStreamQueues::open(dir.path()).unwrap());
        let db = crate::embedded::sled_db::open(dir.path(), 500).unwrap();
        db.insert("format/stream_queues", &2u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let text = super::SledStreamQueues::open(dir.path()).err().expect("refused").to_string();
        assert!(text.contains("stream queues") && text.contains("format 2"), "{text}");
    }
}
