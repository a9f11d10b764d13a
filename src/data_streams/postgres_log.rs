//! [`RecordLogs`] in the cluster database: table `record_log_chunks`, one row per
//! append (the frames appended together, back to back, at their segment offset). An
//! append is kept in memory until its segment is synced, which inserts every pending
//! chunk of the log in one transaction; so what a crash loses is what was never
//! synced, hence never acknowledged, as with the embedded files. Segments are numbered
//! per log and roll as the embedded ones do (full, old, or sealed); opening a log reads
//! its chunks back in order and reports every frame.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::record_log::{
    decode_frame, rolls_to, segments_before, Location, LogSegment, NewestSegment, RecordLog, RecordLogs,
    RecoveredFrame, RollPolicy,
};
use crate::postgres::{failed, from_bigint, Database, Param};
use crate::storage_failure::StorageFailure;

const STORE: &str = "the record logs (cluster database)";

/// One append not yet synced.
#[derive(Debug, Clone)]
struct Chunk {
    segment: u32,
    offset: u64,
    arrival_ms: i64,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    len: u64,
    first_arrival_ms: Option<i64>,
    last_arrival_ms: i64,
    sealed: bool,
}

/// The record logs of one node.
pub struct PgRecordLogs {
    db: Database,
}

impl PgRecordLogs {
    pub fn new(db: Database) -> Self {
        PgRecordLogs { db }
    }
}

impl RecordLogs for PgRecordLogs {
    fn open(&self, log: &str, policy: RollPolicy) -> Result<(Box<dyn RecordLog>, Vec<RecoveredFrame>), StorageFailure> {
        let rows = self.db.query(
            STORE,
            "SELECT segment, chunk_offset, arrival_ms, bytes FROM record_log_chunks WHERE log = $1
             ORDER BY segment, chunk_offset",
            vec![Param::Text(log.to_string())],
        )?;
        let mut segments: BTreeMap<u32, Segment> = BTreeMap::new();
        let mut found = Vec::new();
        for r in rows {
            let segment = from_bigint(r.get(0)) as u32;
            let offset = from_bigint(r.get(1));
            let arrival_ms: i64 = r.get(2);
            let bytes: Vec<u8> = r.get(3);
            let s = segments.entry(segment).or_insert(Segment {
                len: 0,
                first_arrival_ms: Some(arrival_ms),
                last_arrival_ms: arrival_ms,
                sealed: false,
            });
            s.len = s.len.max(offset + bytes.len() as u64);
            s.last_arrival_ms = s.last_arrival_ms.max(arrival_ms);
            let mut at = 0;
            while at < bytes.len() {
                match decode_frame(&bytes[at..]) {
                    Ok(Some((f, n))) => {
                        found.push(RecoveredFrame {
                            shard: f.shard,
                            seq: f.seq,
                            arrival_ms: f.arrival_ms,
                            at: Location { segment, offset: offset + at as u64, len: n as u32 },
                        });
                        at += n;
                    }
                    Ok(None) | Err(_) => {
                        // A chunk is written whole or not at all: this is damage, not a
                        // torn append. What follows in the chunk is not reported.
                        tracing::error!(log, segment, offset, "a record-log chunk does not decode to whole frames");
                        s.sealed = true;
                        break;
                    }
                }
            }
        }
        let log = PgRecordLog {
            db: self.db.clone(),
            log: log.to_string(),
            policy,
            segments,
            pending: Arc::new(Mutex::new(Vec::new())),
        };
        Ok((Box::new(log), found))
    }

    fn remove(&self, log: &str) -> Result<(), StorageFailure> {
        self.db
            .execute(STORE, "DELETE FROM record_log_chunks WHERE log = $1", vec![Param::Text(log.into())])
            .map(|_| ())
    }
}

struct PgRecordLog {
    db: Database,
    log: String,
    policy: RollPolicy,
    segments: BTreeMap<u32, Segment>,
    pending: Arc<Mutex<Vec<Chunk>>>,
}

impl PgRecordLog {
    fn segment_handle(&self, segment: u32) -> Arc<dyn LogSegment> {
        Arc::new(PgSegment { db: self.db.clone(), log: self.log.clone(), segment, pending: self.pending.clone() })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Chunk>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn delete_segment(&mut self, segment: u32) -> Result<(), StorageFailure> {
        self.pending().retain(|c| c.segment != segment);
        self.db.transaction(
            STORE,
            vec![(
                "DELETE FROM record_log_chunks WHERE log = $1 AND segment = $2",
                vec![Param::Text(self.log.clone()), Param::uint(u64::from(segment))],
            )],
        )?;
        self.segments.remove(&segment);
        Ok(())
    }
}

impl RecordLog for PgRecordLog {
    fn append(&mut self, frames: &[u8], arrival_ms: i64) -> Result<(u32, u64), StorageFailure> {
        let newest = self.segments.last_key_value().map(|(&id, s)| (id, s.len, s.first_arrival_ms, s.sealed));
        let newest =
            newest.map(|(id, len, first_arrival_ms, sealed)| NewestSegment { id, len, first_arrival_ms, sealed });
        let roll = rolls_to(newest, frames.len() as u64, arrival_ms, &self.policy);
        if let Some(id) = roll {
            self.segments
                .insert(id, Segment { len: 0, first_arrival_ms: None, last_arrival_ms: arrival_ms, sealed: false });
        }
        let Some((&id, seg)) = self.segments.iter_mut().next_back() else {
            return Err(StorageFailure::new("no record segment to append to"));
        };
        let offset = seg.len;
        seg.len += frames.len() as u64;
        seg.first_arrival_ms.get_or_insert(arrival_ms);
        seg.last_arrival_ms = seg.last_arrival_ms.max(arrival_ms);
        self.pending().push(Chunk { segment: id, offset, arrival_ms, bytes: frames.to_vec() });
        Ok((id, offset))
    }

    fn rollback(&mut self, segment: u32, len: u64) {
        self.pending().retain(|c| c.segment != segment || c.offset < len);
        let cut = self.db.transaction(
            STORE,
            vec![(
                "DELETE FROM record_log_chunks WHERE log = $1 AND segment = $2 AND chunk_offset >= $3",
                vec![Param::Text(self.log.clone()), Param::uint(u64::from(segment)), Param::uint(len)],
            )],
        );
        if let Some(seg) = self.segments.get_mut(&segment) {
            match cut {
                Ok(_) => seg.len = len,
                Err(e) => {
                    tracing::error!(segment, error = %e, "cutting unsynced records back failed; sealing the segment");
                    seg.sealed = true;
                }
            }
        }
    }

    fn seal_newest(&mut self) {
        if let Some((_, s)) = self.segments.iter_mut().next_back() {
            s.sealed = true;
        }
    }

    fn active(&self) -> Option<Arc<dyn LogSegment>> {
        self.segments.keys().next_back().map(|&id| self.segment_handle(id))
    }

    fn segment(&self, segment: u32) -> Option<Arc<dyn LogSegment>> {
        self.segments.contains_key(&segment).then(|| self.segment_handle(segment))
    }

    fn remove(&mut self, segment: u32) -> Result<bool, StorageFailure> {
        if self.segments.keys().next_back() == Some(&segment) || !self.segments.contains_key(&segment) {
            return Ok(false);
        }
        self.delete_segment(segment)?;
        Ok(true)
    }

    fn drop_older_than(&mut self, horizon_ms: i64) -> Result<Vec<u32>, StorageFailure> {
        let old = segments_before(&self.segments, |s| s.last_arrival_ms, horizon_ms);
        for id in &old {
            self.delete_segment(*id)?;
        }
        Ok(old)
    }
}

/// One segment, for syncing and reading outside the log.
struct PgSegment {
    db: Database,
    log: String,
    segment: u32,
    pending: Arc<Mutex<Vec<Chunk>>>,
}

impl LogSegment for PgSegment {
    /// Inserts every pending append of the log up to this segment, in one transaction.
    fn sync(&self) -> Result<(), StorageFailure> {
        let chunks: Vec<Chunk> = {
            let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.iter().filter(|c| c.segment <= self.segment).cloned().collect()
        };
        if chunks.is_empty() {
            return Ok(());
        }
        let statements = chunks
            .iter()
            .map(|c| {
                (
                    "INSERT INTO record_log_chunks (log, segment, chunk_offset, arrival_ms, bytes) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (log, segment, chunk_offset) DO UPDATE
                     SET arrival_ms = EXCLUDED.arrival_ms, bytes = EXCLUDED.bytes",
                    vec![
                        Param::Text(self.log.clone()),
                        Param::uint(u64::from(c.segment)),
                        Param::uint(c.offset),
                        Param::Int(c.arrival_ms),
                        Param::Bytes(c.bytes.clone()),
                    ],
                )
            })
            .collect();
        self.db.transaction(STORE, statements)?;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|p| !chunks.iter().any(|c| c.segment == p.segment && c.offset == p.offset));
        Ok(())
    }

    fn read(&self, locations: &[Location]) -> Result<Vec<u8>, StorageFailure> {
        let (Some(first), Some(last)) = (locations.first(), locations.last()) else { return Ok(Vec::new()) };
        let rows = self.db.query(
            STORE,
            "SELECT chunk_offset, bytes FROM record_log_chunks
             WHERE log = $1 AND segment = $2 AND chunk_offset <= $4 AND chunk_offset + length(bytes) > $3
             ORDER BY chunk_offset",
            vec![
                Param::Text(self.log.clone()),
                Param::uint(u64::from(self.segment)),
                Param::uint(first.offset),
                Param::uint(last.offset),
            ],
        )?;
        let chunks: Vec<(u64, Vec<u8>)> = rows.into_iter().map(|r| (from_bigint(r.get(0)), r.get(1))).collect();
        let mut out = Vec::with_capacity(locations.iter().map(|l| l.len as usize).sum());
        for l in locations {
            let chunk = chunks
                .iter()
                .rev()
                .find(|(offset, _)| *offset <= l.offset)
                .filter(|(offset, bytes)| l.offset + u64::from(l.len) <= offset + bytes.len() as u64)
                .ok_or_else(|| failed(STORE, std::io::Error::other(format!("no stored frame at {l:?}"))))?;
            let at = (l.offset - chunk.0) as usize;
            out.extend_from_slice(&chunk.1[at..at + l.len as usize]);
        }
        Ok(out)
    }
}
