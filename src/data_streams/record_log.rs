//! A stream's records on disk: append-only segment files of checksummed frames.
//!
//! ```text
//! frame = len u32 BE (bytes after the crc) | crc32 u32 BE (of those bytes)
//!       | shard u32 | sequence u64 | arrival_ms i64 | key_len u16 | partition key | data
//! ```
//!
//! The frame codec ([`encode_frame`], [`decode_frame`]) is pure. A stream's frames are
//! kept by a [`RecordLog`]: appended in segments, synced, read back by location, and
//! dropped a whole segment at a time. The data streams keep their records in one, the
//! delivery streams their backlogs. [`RecordLogs`] opens a log by name, recovering
//! every whole frame it holds; it is both engines' only way to their records. The
//! embedded implementation is [`super::embedded::log_files`] (append-only files);
//! [`conformance`] is what every implementation must pass.

use std::sync::Arc;

use crate::storage_failure::StorageFailure;

/// The frame layout above and the segment naming, recorded in the stream metadata's
/// database and checked at open (see docs/storage.md).
pub const RECORD_LOG_FORMAT: u32 = 1;

/// Bytes of a frame before its partition key.
pub const FRAME_HEADER: usize = 4 + 4 + 4 + 8 + 8 + 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub shard: u32,
    pub seq: u64,
    pub arrival_ms: i64,
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("frame is malformed: {0}")]
    Malformed(&'static str),
}

pub fn frame_len(partition_key: &str, data: &[u8]) -> usize {
    FRAME_HEADER + partition_key.len() + data.len()
}

pub fn encode_frame(out: &mut Vec<u8>, f: &Frame) {
    let body_len = frame_len(f.partition_key, f.data) - 8;
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.extend_from_slice(&f.shard.to_be_bytes());
    out.extend_from_slice(&f.seq.to_be_bytes());
    out.extend_from_slice(&f.arrival_ms.to_be_bytes());
    out.extend_from_slice(&(f.partition_key.len() as u16).to_be_bytes());
    out.extend_from_slice(f.partition_key.as_bytes());
    out.extend_from_slice(f.data);
    let crc = crc32fast::hash(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// The frame at the start of `bytes` and its length, `Ok(None)` if `bytes` holds only
/// part of one.
pub fn decode_frame(bytes: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if bytes.len() < 8 {
        return Ok(None);
    }
    let body_len = u32::from_be_bytes(be(bytes, 0)) as usize;
    if body_len < FRAME_HEADER - 8 {
        return Err(FrameError::Malformed("length shorter than a header"));
    }
    let Some(total) = body_len.checked_add(8) else { return Err(FrameError::Malformed("length overflows")) };
    if bytes.len() < total {
        return Ok(None);
    }
    let body = &bytes[8..total];
    if crc32fast::hash(body) != u32::from_be_bytes(be(bytes, 4)) {
        return Err(FrameError::Checksum);
    }
    let key_len = u16::from_be_bytes(be(body, 20)) as usize;
    let rest = &body[22..];
    if key_len > rest.len() {
        return Err(FrameError::Malformed("partition key runs past the frame"));
    }
    let partition_key =
        std::str::from_utf8(&rest[..key_len]).map_err(|_| FrameError::Malformed("partition key is not UTF-8"))?;
    let frame = Frame {
        shard: u32::from_be_bytes(be(body, 0)),
        seq: u64::from_be_bytes(be(body, 4)),
        arrival_ms: i64::from_be_bytes(be(body, 12)),
        partition_key,
        data: &rest[key_len..],
    };
    Ok(Some((frame, total)))
}

/// Where a frame lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

/// When the newest segment is closed and a new one started.
#[derive(Debug, Clone, Copy)]
pub struct RollPolicy {
    pub max_bytes: u64,
    pub max_age_ms: i64,
}

impl Default for RollPolicy {
    fn default() -> Self {
        RollPolicy { max_bytes: 64 << 20, max_age_ms: 3_600_000 }
    }
}

/// The newest segment of a log as the roll decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct NewestSegment {
    pub id: u32,
    pub len: u64,
    pub first_arrival_ms: Option<i64>,
    pub sealed: bool,
}

/// The segment an append of `len` bytes arriving at `arrival_ms` must start: a new
/// one (its id) when there is none, or the newest is sealed, full or older than the
/// policy allows; `None` to append to the newest.
pub fn rolls_to(newest: Option<NewestSegment>, len: u64, arrival_ms: i64, policy: &RollPolicy) -> Option<u32> {
    match newest {
        None => Some(1),
        Some(s) => {
            let old = s.first_arrival_ms.is_some_and(|t| arrival_ms - t > policy.max_age_ms);
            let full = s.len > 0 && (s.len + len > policy.max_bytes || old);
            (full || s.sealed).then_some(s.id + 1)
        }
    }
}

/// The segments (by id) that retention at `horizon_ms` drops: every one but the
/// newest whose records all arrived before it.
pub fn segments_before<S>(
    segments: &std::collections::BTreeMap<u32, S>,
    last_arrival_ms: impl Fn(&S) -> i64,
    horizon_ms: i64,
) -> Vec<u32> {
    let newest = segments.keys().next_back().copied();
    segments
        .iter()
        .filter(|(id, s)| Some(**id) != newest && last_arrival_ms(s) < horizon_ms)
        .map(|(id, _)| *id)
        .collect()
}

/// One frame found when a log is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredFrame {
    pub shard: u32,
    pub seq: u64,
    pub arrival_ms: i64,
    pub at: Location,
}

/// One segment of a log, usable without the log: the writer syncs it outside the
/// stream's lock, readers read it on a blocking thread.
pub trait LogSegment: Send + Sync {
    /// Makes every frame appended to this segment so far durable.
    fn sync(&self) -> Result<(), StorageFailure>;
    /// The frames at `locations` (all in this segment, in order), back to back;
    /// blocking.
    fn read(&self, locations: &[Location]) -> Result<Vec<u8>, StorageFailure>;
}

/// One stream's log.
pub trait RecordLog: Send {
    /// Appends encoded frames that arrived at `arrival_ms` (not durable until the
    /// segment is synced), rolling first if the newest segment is full, old or sealed.
    /// Returns the segment and the offset of the first byte.
    fn append(&mut self, frames: &[u8], arrival_ms: i64) -> Result<(u32, u64), StorageFailure>;
    /// Cuts segment `segment` back to `len` bytes: what was appended after it was never
    /// synced, so never acknowledged, and must not come back at the next open. If the
    /// cut fails, the segment takes no more appends.
    fn rollback(&mut self, segment: u32, len: u64);
    /// The newest segment takes no more appends (a sync of it failed: what it holds
    /// past the last good sync is unknown); the next append starts a new one.
    fn seal_newest(&mut self);
    /// The newest segment, to sync.
    fn active(&self) -> Option<Arc<dyn LogSegment>>;
    fn segment(&self, segment: u32) -> Option<Arc<dyn LogSegment>>;
    /// Removes segment `segment` unless it is the newest (appends go there); returns
    /// whether it was removed.
    fn remove(&mut self, segment: u32) -> Result<bool, StorageFailure>;
    /// Removes every segment but the newest whose frames all arrived before
    /// `horizon_ms`; returns their ids.
    fn drop_older_than(&mut self, horizon_ms: i64) -> Result<Vec<u32>, StorageFailure>;
}

/// Where the logs are, by name (a stream's uid).
pub trait RecordLogs: Send + Sync {
    /// Opens (or creates) a log, cutting what is not whole, and reports every whole
    /// frame in order.
    fn open(&self, log: &str, policy: RollPolicy) -> Result<(Box<dyn RecordLog>, Vec<RecoveredFrame>), StorageFailure>;
    /// Removes a log and everything in it.
    fn remove(&self, log: &str) -> Result<(), StorageFailure>;
}

/// The behaviour the engines rely on, as checks any [`RecordLogs`] must pass. `open`
/// opens the same store each time (the previous one dropped first).
#[doc(hidden)]
pub mod conformance {
    use super::*;

    fn frame(seq: u64, arrival_ms: i64, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(&mut v, &Frame { shard: (seq % 3) as u32, seq, arrival_ms, partition_key: "pk", data });
        v
    }

    /// Appends frames `seqs` in one call and syncs; returns their locations.
    fn put(log: &mut dyn RecordLog, seqs: std::ops::RangeInclusive<u64>, arrival_ms: i64) -> Vec<Location> {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        for seq in seqs {
            let start = bytes.len();
            bytes.extend(frame(seq, arrival_ms, format!("record {seq}").as_bytes()));
            spans.push((start, bytes.len() - start));
        }
        let (segment, offset) = log.append(&bytes, arrival_ms).unwrap();
        log.active().expect("a newest segment").sync().unwrap();
        spans.into_iter().map(|(s, n)| Location { segment, offset: offset + s as u64, len: n as u32 }).collect()
    }

    fn read_seqs(log: &dyn RecordLog, at: &[Location]) -> Vec<u64> {
        let mut out = Vec::new();
        for l in at {
            let bytes = log.segment(l.segment).expect("segment").read(std::slice::from_ref(l)).unwrap();
            let (f, n) = decode_frame(&bytes).unwrap().unwrap();
            assert_eq!(n, bytes.len());
            assert_eq!(f.data, format!("record {}", f.seq).as_bytes());
            out.push(f.seq);
        }
        out
    }

    pub fn run<L: RecordLogs>(open: impl Fn() -> L) {
        appended_synced_and_recovered(&open);
        rolled_back_frames_do_not_come_back(&open);
        sealing_and_rolling(&open());
        retention_and_removal(&open);
    }

    fn appended_synced_and_recovered<L: RecordLogs>(open: &impl Fn() -> L) {
        let policy = RollPolicy::default();
        let at = {
            let logs = open();
            let (mut log, found) = logs.open("1", policy).unwrap();
            assert!(found.is_empty(), "a new log is empty");
            let mut at = put(log.as_mut(), 1..=3, 1_000);
            at.extend(put(log.as_mut(), 4..=4, 2_000));
            assert_eq!(read_seqs(log.as_ref(), &at), [1, 2, 3, 4]);
            let (_, other) = logs.open("2", policy).unwrap();
            assert!(other.is_empty(), "logs do not share frames");
            at
        };
        let (log, found) = open().open("1", policy).unwrap();
        assert_eq!(found.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2, 3, 4], "in order, after a restart");
        assert_eq!(found.iter().map(|f| f.at).collect::<Vec<_>>(), at, "where they were written");
        assert_eq!((found[0].shard, found[3].arrival_ms), (1, 2_000));
        // Several neighbours in one read.
        let segment = log.segment(at[0].segment).unwrap();
        let bytes = segment.read(&at[..3]).unwrap();
        assert_eq!(bytes.len(), at[..3].iter().map(|l| l.len as usize).sum::<usize>());
    }

    fn rolled_back_frames_do_not_come_back<L: RecordLogs>(open: &impl Fn() -> L) {
        let policy = RollPolicy::default();
        {
            let logs = open();
            let (mut log, _) = logs.open("3", policy).unwrap();
            put(log.as_mut(), 1..=2, 1);
            let (segment, offset) = log.append(&frame(3, 2, b"record 3"), 2).unwrap();
            // Its sync "failed": the caller cuts it back.
            log.rollback(segment, offset);
            put(log.as_mut(), 4..=4, 3);
        }
        let (_, found) = open().open("3", policy).unwrap();
        assert_eq!(found.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2, 4]);
    }

    fn sealing_and_rolling<L: RecordLogs>(logs: &L) {
        let (mut log, _) = logs.open("4", RollPolicy { max_bytes: 200, max_age_ms: 1_000 }).unwrap();
        let a = put(log.as_mut(), 1..=1, 0);
        log.seal_newest();
        let b = put(log.as_mut(), 2..=2, 1);
        assert!(b[0].segment > a[0].segment, "a sealed segment takes no more");
        let c = put(log.as_mut(), 3..=3, 5_000);
        assert!(c[0].segment > b[0].segment, "an old segment takes no more");
        let mut last = c[0].segment;
        for seq in 4..=12 {
            let at = put(log.as_mut(), seq..=seq, 5_000);
            assert!(at[0].segment >= last);
            last = at[0].segment;
        }
        assert!(last > c[0].segment, "a full segment takes no more");
        assert_eq!(read_seqs(log.as_ref(), &[a[0], b[0], c[0]]), [1, 2, 3]);
    }

    fn retention_and_removal<L: RecordLogs>(open: &impl Fn() -> L) {
        let policy = RollPolicy { max_bytes: 1 << 20, max_age_ms: 1_000 };
        let logs = open();
        let (mut log, _) = logs.open("5", policy).unwrap();
        let old = put(log.as_mut(), 1..=2, 0);
        let newer = put(log.as_mut(), 3..=3, 2_000);
        let newest = put(log.as_mut(), 4..=4, 4_000);
        assert!(!log.remove(newest[0].segment).unwrap(), "the newest segment is never removed");
        assert_eq!(log.drop_older_than(1_000).unwrap(), vec![old[0].segment]);
        assert!(log.segment(old[0].segment).is_none());
        assert_eq!(log.drop_older_than(i64::MAX).unwrap(), vec![newer[0].segment], "all but the newest");
        assert_eq!(read_seqs(log.as_ref(), &newest), [4]);
        drop(log);
        let (_, found) = logs.open("5", policy).unwrap();
        assert_eq!(found.iter().map(|f| f.seq).collect::<Vec<_>>(), [4], "removed segments stay removed");
        logs.remove("5").unwrap();
        logs.remove("5").expect("removing a removed log is no error");
        let (_, found) = logs.open("5", policy).unwrap();
        assert!(found.is_empty());
    }
}
