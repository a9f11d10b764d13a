//! One delivery stream's accepted, not yet delivered records: a [`RecordLog`] of the data
//! streams' checksummed frames (embedded: `data/delivery_streams/<uid>/`), one frame per
//! record with its serial number and arrival time, and in memory the queue of pending
//! records in serial order.
//!
//! Invariants:
//! - A record is in the queue only once its bytes are synced, so an acknowledged record
//!   survives a crash, and on open a torn tail is cut (never acknowledged). Concurrent
//!   puts share syncs: [`Backlog::write`] appends under the caller's lock and hands back
//!   a ticket; the caller syncs the ticket's segment outside the lock, then
//!   [`Backlog::synced`] queues every record written up to that ticket (a sync covers
//!   all writes before it, and segments before the newest were synced when they rolled).
//! - Delivery is in serial order, so one number, `delivered_through`, says what is done
//!   (kept in the metadata store after each delivery); on open, frames at or below it
//!   are skipped and whole segments of them removed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::data_streams::record_log::{
    decode_frame, encode_frame, Frame, Location, LogSegment, RecordLog, RecordLogs, RollPolicy,
};
use crate::storage_failure::StorageFailure;

/// A record waiting for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub serial: u64,
    pub arrival_ms: i64,
    pub at: Location,
    pub data_len: u32,
}

/// The segments a batch is read from, each with the batch's locations in it.
pub type SegmentReads = Vec<(Arc<dyn LogSegment>, Vec<Location>)>;

/// A write waiting for its sync: syncing `segment` makes it, and every write before it,
/// durable.
pub struct WriteTicket {
    pub id: u64,
    pub segment: Arc<dyn LogSegment>,
}

pub struct Backlog {
    log: Box<dyn RecordLog>,
    queue: VecDeque<Pending>,
    /// Written, not yet known synced, with the id of the write that wrote them.
    unsynced: VecDeque<(u64, Pending)>,
    writes: u64,
    queued_bytes: u64,
    next_serial: u64,
    /// The highest serial in each segment file.
    segment_last: BTreeMap<u32, u64>,
}

impl Backlog {
    /// Opens the backlog kept in `logs` as `log`; records up to `delivered_through` are
    /// done.
    pub fn open(
        logs: &dyn RecordLogs,
        log: &str,
        delivered_through: u64,
        roll: RollPolicy,
    ) -> Result<Self, StorageFailure> {
        let (mut log, frames) = logs.open(log, roll)?;
        let mut queue = VecDeque::new();
        let mut queued_bytes = 0;
        let mut next_serial = delivered_through + 1;
        let mut segment_last: BTreeMap<u32, u64> = BTreeMap::new();
        for f in frames {
            next_serial = next_serial.max(f.seq + 1);
            let last = segment_last.entry(f.at.segment).or_default();
            *last = (*last).max(f.seq);
            if f.seq > delivered_through {
                let data_len = f.at.len - crate::data_streams::record_log::FRAME_HEADER as u32;
                queued_bytes += u64::from(data_len);
                queue.push_back(Pending { serial: f.seq, arrival_ms: f.arrival_ms, at: f.at, data_len });
            }
        }
        for (&segment, &last) in segment_last.clone().iter() {
            if last <= delivered_through && log.remove(segment)? {
                segment_last.remove(&segment);
            }
        }
        Ok(Backlog { log, queue, unsynced: VecDeque::new(), writes: 0, queued_bytes, next_serial, segment_last })
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    pub fn oldest_arrival_ms(&self) -> Option<i64> {
        self.queue.front().map(|p| p.arrival_ms)
    }

    /// Writes `records` (arrived at `now_ms`) and syncs them before it queues them;
    /// returns their serials. Holds `self` across the sync: the tests' one-caller form
    /// of what `LiveStream::append` does with shared syncs.
    #[cfg(test)]
    pub fn append(&mut self, records: &[&[u8]], now_ms: i64) -> Result<Vec<u64>, StorageFailure> {
        let (ticket, serials) = self.write(records, now_ms)?;
        match ticket.segment.sync() {
            Ok(()) => {
                self.synced(ticket.id);
                Ok(serials)
            }
            Err(e) => {
                self.sync_failed();
                Err(e)
            }
        }
    }

    /// Writes `records` (not yet synced, not yet queued); returns the ticket to sync and
    /// their serials.
    pub fn write(&mut self, records: &[&[u8]], now_ms: i64) -> Result<(WriteTicket, Vec<u64>), StorageFailure> {
        let mut bytes = Vec::with_capacity(records.iter().map(|r| r.len() + 40).sum());
        let mut spans = Vec::with_capacity(records.len());
        for (i, data) in records.iter().enumerate() {
            let start = bytes.len();
            let frame =
                Frame { shard: 0, seq: self.next_serial + i as u64, arrival_ms: now_ms, partition_key: "", data };
            encode_frame(&mut bytes, &frame);
            spans.push((start, bytes.len() - start, data.len()));
        }
        let (segment, offset) = self.log.append(&bytes, now_ms)?;
        let written =
            self.log.segment(segment).ok_or_else(|| StorageFailure::new("the segment just written is gone"))?;
        self.writes += 1;
        let id = self.writes;
        let mut serials = Vec::with_capacity(records.len());
        for (start, len, data_len) in spans {
            let serial = self.next_serial;
            self.next_serial += 1;
            let at = Location { segment, offset: offset + start as u64, len: len as u32 };
            self.unsynced.push_back((id, Pending { serial, arrival_ms: now_ms, at, data_len: data_len as u32 }));
            serials.push(serial);
        }
        let last = self.segment_last.entry(segment).or_default();
        *last = (*last).max(self.next_serial - 1);
        Ok((WriteTicket { id, segment: written }, serials))
    }

    /// A sync that began after write `id` succeeded: that write and all before it are
    /// durable; their records join the queue, in order.
    pub fn synced(&mut self, id: u64) {
        while self.unsynced.front().is_some_and(|(w, _)| *w <= id) {
            if let Some((_, p)) = self.unsynced.pop_front() {
                self.queued_bytes += u64::from(p.data_len);
                self.queue.push_back(p);
            }
        }
    }

    /// A sync failed: nothing written since the last good sync is known durable. Those
    /// records are not queued (their puts fail; a restart may still find and deliver
    /// some, which is at least once), and the segment takes no more appends.
    pub fn sync_failed(&mut self) {
        self.unsynced.clear();
        self.log.seal_newest();
    }

    /// The oldest pending records, up to `max_bytes` of data (at least one record).
    pub fn next_batch(&self, max_bytes: u64) -> Vec<Pending> {
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for p in &self.queue {
            if !batch.is_empty() && bytes + u64::from(p.data_len) > max_bytes {
                break;
            }
            bytes += u64::from(p.data_len);
            batch.push(*p);
        }
        batch
    }

    /// What reading `batch` needs: each segment and the batch's locations in it.
    pub fn segments_for(&self, batch: &[Pending]) -> Result<SegmentReads, StorageFailure> {
        let mut out: Vec<(u32, Arc<dyn LogSegment>, Vec<Location>)> = Vec::new();
        for p in batch {
            match out.last_mut() {
                Some((segment, _, locations)) if *segment == p.at.segment => locations.push(p.at),
                _ => {
                    let segment = self.log.segment(p.at.segment).ok_or_else(|| {
                        StorageFailure::new(format!("segment {} of a pending record is gone", p.at.segment))
                    })?;
                    out.push((p.at.segment, segment, vec![p.at]));
                }
            }
        }
        Ok(out.into_iter().map(|(_, f, l)| (f, l)).collect())
    }

    /// Marks every record up to `serial` delivered and removes the segments that hold
    /// only delivered records. The caller has recorded `serial` durably first.
    pub fn delivered_through(&mut self, serial: u64) -> Result<(), StorageFailure> {
        while let Some(p) = self.queue.front() {
            if p.serial > serial {
                break;
            }
            self.queued_bytes -= u64::from(p.data_len);
            self.queue.pop_front();
        }
        let done: Vec<u32> = self.segment_last.iter().filter(|(_, &last)| last <= serial).map(|(&s, _)| s).collect();
        for segment in done {
            if self.log.remove(segment)? {
                self.segment_last.remove(&segment);
            }
        }
        Ok(())
    }
}

/// Reads the data of the records at `locations` of one segment; blocking.
pub fn read_records(segment: &dyn LogSegment, locations: &[Location]) -> Result<Vec<Vec<u8>>, StorageFailure> {
    let bytes = segment.read(locations)?;
    let mut out = Vec::with_capacity(locations.len());
    let mut at = 0;
    while at < bytes.len() {
        match decode_frame(&bytes[at..]) {
            Ok(Some((frame, n))) => {
                out.push(frame.data.to_vec());
                at += n;
            }
            Ok(None) => return Err(StorageFailure::new("a pending record is cut short in the backlog")),
            Err(e) => return Err(StorageFailure::new(format!("a pending record is damaged in the backlog: {e}"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::data_streams::embedded::log_files::LogFiles;

    fn read_all(b: &Backlog, batch: &[Pending]) -> Vec<Vec<u8>> {
        b.segments_for(batch).unwrap().iter().flat_map(|(f, l)| read_records(f.as_ref(), l).unwrap()).collect()
    }

    /// The backlog kept as log "b" under `root`, and that log's directory.
    fn open(root: &std::path::Path, delivered: u64, roll: RollPolicy) -> Backlog {
        Backlog::open(&LogFiles::new(root), "b", delivered, roll).unwrap()
    }

    #[test]
    fn records_survive_reopening_until_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let roll = RollPolicy { max_bytes: 200, max_age_ms: 3_600_000 };
        let mut b = open(dir.path(), 0, roll);
        let serials = b.append(&[b"one", b"two"], 1_000).unwrap();
        assert_eq!(serials, vec![1, 2]);
        for i in 0..20u8 {
            b.append(&[&[i; 30]], 2_000).unwrap();
        }
        assert_eq!(b.len(), 22);
        let batch = b.next_batch(10);
        assert_eq!(batch.len(), 2, "at least one record, then up to the size");
        assert_eq!(read_all(&b, &batch), vec![b"one".to_vec(), b"two".to_vec()]);
        let files_before = std::fs::read_dir(dir.path().join("b")).unwrap().count();
        b.delivered_through(12).unwrap();
        assert_eq!(b.len(), 10);
        assert!(std::fs::read_dir(dir.path().join("b")).unwrap().count() < files_before, "delivered files are deleted");
        drop(b);

        let b = open(dir.path(), 12, roll);
        assert_eq!(b.len(), 10);
        let batch = b.next_batch(u64::MAX);
        assert_eq!(batch[0].serial, 13);
        assert_eq!(read_all(&b, &batch)[0], vec![10u8; 30]);
        let mut b = b;
        assert_eq!(b.append(&[b"next"], 3_000).unwrap(), vec![23]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_never_queued() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = open(dir.path(), 0, RollPolicy::default());
        b.append(&[b"kept"], 1).unwrap();
        drop(b);
        let file = std::fs::read_dir(dir.path().join("b")).unwrap().next().unwrap().unwrap().path();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 40, 1, 2, 3]);
        std::fs::write(&file, bytes).unwrap();
        let b = open(dir.path(), 0, RollPolicy::default());
        assert_eq!(b.len(), 1);
        assert_eq!(read_all(&b, &b.next_batch(u64::MAX)), vec![b"kept".to_vec()]);
    }
}
