//! A stream's records on disk: append-only segment files of checksummed frames.
//!
//! ```text
//! frame = len u32 BE (bytes after the crc) | crc32 u32 BE (of those bytes)
//!       | shard u32 | sequence u64 | arrival_ms i64 | key_len u16 | partition key | data
//! ```
//!
//! The frame codec ([`encode_frame`], [`decode_frame`]) is pure. [`SegmentLog`] owns the
//! files of one stream (`data/data_streams/<uid>/<segment>.log`): appends go to the
//! newest segment, which rolls by size or age so that retention drops whole files; on
//! open every segment is scanned and cut at its first torn or corrupt frame, so the
//! index rebuilt from them never points at bytes that are not whole.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

struct Segment {
    file: Arc<File>,
    len: u64,
    first_arrival_ms: Option<i64>,
    last_arrival_ms: i64,
    /// A cut back after a failed write or sync failed too: the file may hold bytes past
    /// `len`, so nothing more is appended to it (recovery trims it at the next start).
    sealed: bool,
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

pub struct SegmentLog {
    dir: PathBuf,
    segments: BTreeMap<u32, Segment>,
    policy: RollPolicy,
}

/// One frame found when a log is opened.
pub struct RecoveredFrame {
    pub shard: u32,
    pub seq: u64,
    pub arrival_ms: i64,
    pub at: Location,
}

fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.log"))
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`, cutting each segment at its first bad frame,
    /// and reports every whole frame in file order.
    pub fn open(dir: &Path, policy: RollPolicy) -> std::io::Result<(Self, Vec<RecoveredFrame>)> {
        std::fs::create_dir_all(dir)?;
        let mut ids: Vec<u32> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut frames = Vec::new();
        for id in ids {
            let path = segment_path(dir, id);
            let bytes = std::fs::read(&path)?;
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            let mut at = 0usize;
            let (mut first_arrival_ms, mut last_arrival_ms) = (None, 0);
            while let Ok(Some((f, n))) = decode_frame(&bytes[at..]) {
                frames.push(RecoveredFrame {
                    shard: f.shard,
                    seq: f.seq,
                    arrival_ms: f.arrival_ms,
                    at: Location { segment: id, offset: at as u64, len: n as u32 },
                });
                first_arrival_ms.get_or_insert(f.arrival_ms);
                last_arrival_ms = last_arrival_ms.max(f.arrival_ms);
                at += n;
            }
            if at < bytes.len() {
                tracing::warn!(segment = %path.display(), kept = at, dropped = bytes.len() - at, "cutting a torn or corrupt tail");
                file.set_len(at as u64)?;
                file.sync_all()?;
            }
            segments.insert(
                id,
                Segment { file: Arc::new(file), len: at as u64, first_arrival_ms, last_arrival_ms, sealed: false },
            );
        }
        Ok((SegmentLog { dir: dir.to_path_buf(), segments, policy }, frames))
    }

    fn start_segment(&mut self, id: u32) -> std::io::Result<()> {
        let path = segment_path(&self.dir, id);
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        // The new file's name must survive a crash before anything in it is acknowledged.
        File::open(&self.dir)?.sync_all()?;
        self.segments.insert(
            id,
            Segment { file: Arc::new(file), len: 0, first_arrival_ms: None, last_arrival_ms: 0, sealed: false },
        );
        Ok(())
    }

    /// Appends encoded frames that arrived at `arrival_ms` (not yet synced), rolling
    /// first if the newest segment is full or old. Returns the segment and the offset of
    /// the first byte.
    pub fn append(&mut self, frames: &[u8], arrival_ms: i64) -> std::io::Result<(u32, u64)> {
        let roll = match self.segments.last_key_value() {
            None => Some(1),
            Some((id, s)) => {
                let old = s.first_arrival_ms.is_some_and(|t| arrival_ms - t > self.policy.max_age_ms);
                let full = s.len > 0 && (s.len + frames.len() as u64 > self.policy.max_bytes || old);
                (full || s.sealed).then_some(id + 1)
            }
        };
        if let Some(id) = roll {
            if let Some((_, s)) = self.segments.last_key_value() {
                s.file.sync_data()?;
            }
            self.start_segment(id)?;
        }
        let Some((&id, seg)) = self.segments.iter_mut().next_back() else {
            return Err(std::io::Error::other("no segment to append to"));
        };
        let offset = seg.len;
        if let Err(e) = (&*seg.file).write_all(frames) {
            // Leave no half-written frames behind the ones a later append will add.
            if let Err(cut) = seg.file.set_len(offset) {
                tracing::error!(segment = id, error = %cut, "cutting a failed append back failed; sealing the segment");
                seg.sealed = true;
            }
            return Err(e);
        }
        seg.len += frames.len() as u64;
        seg.first_arrival_ms.get_or_insert(arrival_ms);
        seg.last_arrival_ms = seg.last_arrival_ms.max(arrival_ms);
        Ok((id, offset))
    }

    /// Cuts segment `id` back to `len` bytes: the frames after it were written but
    /// their sync failed, so they were never acknowledged and must not come back at the
    /// next start. If the cut fails, the segment takes no more appends.
    pub fn rollback(&mut self, id: u32, len: u64) {
        let Some(seg) = self.segments.get_mut(&id) else { return };
        match seg.file.set_len(len) {
            Ok(()) => seg.len = len,
            Err(e) => {
                tracing::error!(segment = id, error = %e, "cutting unsynced records back failed; sealing the segment");
                seg.sealed = true;
            }
        }
    }

    /// Takes no more appends into the newest segment (a sync of it failed: what it
    /// holds past the last good sync is unknown); the next append starts a new one.
    pub fn seal_newest(&mut self) {
        if let Some((_, seg)) = self.segments.iter_mut().next_back() {
            seg.sealed = true;
        }
    }

    /// The newest segment's file, to sync outside any lock.
    pub fn active_file(&self) -> Option<Arc<File>> {
        self.segments.last_key_value().map(|(_, s)| s.file.clone())
    }

    pub fn file(&self, segment: u32) -> Option<Arc<File>> {
        self.segments.get(&segment).map(|s| s.file.clone())
    }

    /// Deletes segment `id` unless it is the newest (appends go there); returns whether
    /// it was deleted.
    pub fn remove(&mut self, id: u32) -> std::io::Result<bool> {
        if self.segments.last_key_value().is_none_or(|(newest, _)| *newest == id) || !self.segments.contains_key(&id) {
            return Ok(false);
        }
        std::fs::remove_file(segment_path(&self.dir, id))?;
        self.segments.remove(&id);
        Ok(true)
    }

    /// Deletes every segment but the newest whose records all arrived before
    /// `horizon_ms`; returns the ids dropped.
    pub fn drop_older_than(&mut self, horizon_ms: i64) -> std::io::Result<Vec<u32>> {
        let newest = self.segments.last_key_value().map(|(id, _)| *id);
        let old: Vec<u32> = self
            .segments
            .iter()
            .filter(|(id, s)| Some(**id) != newest && s.last_arrival_ms < horizon_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            std::fs::remove_file(segment_path(&self.dir, *id))?;
            self.segments.remove(id);
        }
        Ok(old)
    }
}

/// Reads the frames at `locations` (of one file, in order), coalescing neighbours into
/// one read; blocking.
pub fn read_frames(file: &File, locations: &[Location]) -> std::io::Result<Vec<u8>> {
    let Some(first) = locations.first() else { return Ok(Vec::new()) };
    let last = locations[locations.len() - 1];
    let contiguous = locations.windows(2).all(|w| w[0].offset + u64::from(w[0].len) == w[1].offset);
    if contiguous {
        let mut buf = vec![0u8; (last.offset + u64::from(last.len) - first.offset) as usize];
        file.read_exact_at(&mut buf, first.offset)?;
        return Ok(buf);
    }
    let mut out = Vec::new();
    for l in locations {
        let at = out.len();
        out.resize(at + l.len as usize, 0);
        file.read_exact_at(&mut out[at..], l.offset)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(&mut v, &Frame { shard: 3, seq, arrival_ms: 1000 + seq as i64, partition_key: "pk", data });
        v
    }

    #[test]
    fn frames_round_trip_and_refuse_damage() {
        let v = frame(7, b"hello");
        let (f, n) = decode_frame(&v).unwrap().unwrap();
        assert_eq!(
            (f.shard, f.seq, f.arrival_ms, f.partition_key, f.data, n),
            (3, 7, 1007, "pk", &b"hello"[..], v.len())
        );
        for cut in 0..v.len() {
            assert_eq!(decode_frame(&v[..cut]), Ok(None), "cut at {cut}");
        }
        let mut bad = v.clone();
        bad[30] ^= 1;
        assert_eq!(decode_frame(&bad), Err(FrameError::Checksum));
        let mut short = v.clone();
        short[..4].copy_from_slice(&3u32.to_be_bytes());
        assert!(decode_frame(&short).is_err());
    }

    #[test]
    fn a_torn_tail_is_cut_on_open_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, found) = SegmentLog::open(dir.path(), RollPolicy::default()).unwrap();
        assert!(found.is_empty());
        let mut two = frame(1, b"a");
        two.extend(frame(2, b"bb"));
        let (seg, off) = log.append(&two, 1002).unwrap();
        assert_eq!((seg, off), (1, 0));
        // A torn third frame, as a crash mid-write leaves it.
        let third = frame(3, b"ccc");
        log.append(&third[..third.len() - 2], 1003).unwrap();
        drop(log);
        let (mut log, found) = SegmentLog::open(dir.path(), RollPolicy::default()).unwrap();
        assert_eq!(found.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 2]);
        let (_, off) = log.append(&frame(4, b"d"), 1004).unwrap();
        assert_eq!(off, two.len() as u64);
        let bytes = read_frames(&log.file(1).unwrap(), &[found[1].at]).unwrap();
        assert_eq!(decode_frame(&bytes).unwrap().unwrap().0.data, b"bb");
    }

    #[test]
    fn segments_roll_by_size_and_old_ones_are_dropped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let policy = RollPolicy { max_bytes: 100, max_age_ms: 1_000_000 };
        let (mut log, _) = SegmentLog::open(dir.path(), policy).unwrap();
        for seq in 0..10 {
            log.append(&frame(seq, &[0; 40]), seq as i64).unwrap();
        }
        let ids: Vec<u32> = log.segments.keys().copied().collect();
        assert!(ids.len() >= 4, "{ids:?}");
        let dropped = log.drop_older_than(5).unwrap();
        assert!(!dropped.is_empty());
        assert!(dropped.iter().all(|id| !segment_path(dir.path(), *id).exists()));
        assert!(log.segments.contains_key(ids.last().unwrap()));
    }
}
