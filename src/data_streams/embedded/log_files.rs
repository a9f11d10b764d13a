//! Record logs in append-only segment files: the embedded [`RecordLogs`]. Each log is a
//! directory (`data/data_streams/<uid>/`, `data/delivery_streams/<uid>/`) of segments
//! named `<id>.log`, holding frames back to back. Appends go to the newest segment,
//! which rolls by size or age so that retention drops whole files; on open every
//! segment is scanned and cut at its first torn or corrupt frame, so nothing rebuilt
//! from them points at bytes that are not whole.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data_streams::record_log::{
    decode_frame, rolls_to, segments_before, Location, LogSegment, NewestSegment, RecordLog, RecordLogs,
    RecoveredFrame, RollPolicy,
};
use crate::storage_failure::StorageFailure;

/// Logs as directories under one root.
pub struct LogFiles {
    root: PathBuf,
}

impl LogFiles {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LogFiles { root: root.into() }
    }
}

impl RecordLogs for LogFiles {
    fn open(&self, log: &str, policy: RollPolicy) -> Result<(Box<dyn RecordLog>, Vec<RecoveredFrame>), StorageFailure> {
        let dir = self.root.join(log);
        let (log, frames) = SegmentLog::open(&dir, policy)
            .map_err(|e| StorageFailure::caused(format!("open the record log {}", dir.display()), e))?;
        Ok((Box::new(log), frames))
    }

    fn remove(&self, log: &str) -> Result<(), StorageFailure> {
        let dir = self.root.join(log);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StorageFailure::caused(format!("remove the record log {}", dir.display()), e))
            }
            _ => Ok(()),
        }
    }
}

/// A segment file, shared with the writer (which syncs it) and readers.
struct SegmentFile(File);

impl LogSegment for SegmentFile {
    fn sync(&self) -> Result<(), StorageFailure> {
        self.0.sync_data().map_err(|e| StorageFailure::caused("sync a record segment", e))
    }

    fn read(&self, locations: &[Location]) -> Result<Vec<u8>, StorageFailure> {
        read_frames(&self.0, locations).map_err(|e| StorageFailure::caused("read a record segment", e))
    }
}

struct Segment {
    file: Arc<SegmentFile>,
    len: u64,
    first_arrival_ms: Option<i64>,
    last_arrival_ms: i64,
    /// A cut back after a failed write or sync failed too: the file may hold bytes past
    /// `len`, so nothing more is appended to it (recovery trims it at the next start).
    sealed: bool,
}

pub struct SegmentLog {
    dir: PathBuf,
    segments: BTreeMap<u32, Segment>,
    policy: RollPolicy,
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
                Segment {
                    file: Arc::new(SegmentFile(file)),
                    len: at as u64,
                    first_arrival_ms,
                    last_arrival_ms,
                    sealed: false,
                },
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
            Segment {
                file: Arc::new(SegmentFile(file)),
                len: 0,
                first_arrival_ms: None,
                last_arrival_ms: 0,
                sealed: false,
            },
        );
        Ok(())
    }

    /// Appends encoded frames that arrived at `arrival_ms` (not yet synced), rolling
    /// first if the newest segment is full or old. Returns the segment and the offset of
    /// the first byte.
    fn append_frames(&mut self, frames: &[u8], arrival_ms: i64) -> std::io::Result<(u32, u64)> {
        let newest = self.segments.last_key_value().map(|(&id, s)| (id, s.len, s.first_arrival_ms, s.sealed));
        let newest =
            newest.map(|(id, len, first_arrival_ms, sealed)| NewestSegment { id, len, first_arrival_ms, sealed });
        let roll = rolls_to(newest, frames.len() as u64, arrival_ms, &self.policy);
        if let Some(id) = roll {
            if let Some((_, s)) = self.segments.last_key_value() {
                s.file.0.sync_data()?;
            }
            self.start_segment(id)?;
        }
        let Some((&id, seg)) = self.segments.iter_mut().next_back() else {
            return Err(std::io::Error::other("no segment to append to"));
        };
        let offset = seg.len;
        if let Err(e) = (&seg.file.0).write_all(frames) {
            // Leave no half-written frames behind the ones a later append will add.
            if let Err(cut) = seg.file.0.set_len(offset) {
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
}

impl RecordLog for SegmentLog {
    fn append(&mut self, frames: &[u8], arrival_ms: i64) -> Result<(u32, u64), StorageFailure> {
        self.append_frames(frames, arrival_ms).map_err(|e| StorageFailure::caused("append to a record segment", e))
    }

    /// Cuts segment `id` back to `len` bytes: the frames after it were written but
    /// their sync failed, so they were never acknowledged and must not come back at the
    /// next start. If the cut fails, the segment takes no more appends.
    fn rollback(&mut self, id: u32, len: u64) {
        let Some(seg) = self.segments.get_mut(&id) else { return };
        match seg.file.0.set_len(len) {
            Ok(()) => seg.len = len,
            Err(e) => {
                tracing::error!(segment = id, error = %e, "cutting unsynced records back failed; sealing the segment");
                seg.sealed = true;
            }
        }
    }

    /// Takes no more appends into the newest segment (a sync of it failed: what it
    /// holds past the last good sync is unknown); the next append starts a new one.
    fn seal_newest(&mut self) {
        if let Some((_, seg)) = self.segments.iter_mut().next_back() {
            seg.sealed = true;
        }
    }

    fn active(&self) -> Option<Arc<dyn LogSegment>> {
        self.segments.last_key_value().map(|(_, s)| s.file.clone() as Arc<dyn LogSegment>)
    }

    fn segment(&self, segment: u32) -> Option<Arc<dyn LogSegment>> {
        self.segments.get(&segment).map(|s| s.file.clone() as Arc<dyn LogSegment>)
    }

    /// Deletes segment `id` unless it is the newest (appends go there); returns whether
    /// it was deleted.
    fn remove(&mut self, id: u32) -> Result<bool, StorageFailure> {
        if self.segments.last_key_value().is_none_or(|(newest, _)| *newest == id) || !self.segments.contains_key(&id) {
            return Ok(false);
        }
        std::fs::remove_file(segment_path(&self.dir, id))
            .map_err(|e| StorageFailure::caused("remove a record segment", e))?;
        self.segments.remove(&id);
        Ok(true)
    }

    /// Deletes every segment but the newest whose records all arrived before
    /// `horizon_ms`; returns the ids dropped.
    fn drop_older_than(&mut self, horizon_ms: i64) -> Result<Vec<u32>, StorageFailure> {
        let old = segments_before(&self.segments, |s| s.last_arrival_ms, horizon_ms);
        for id in &old {
            std::fs::remove_file(segment_path(&self.dir, *id))
                .map_err(|e| StorageFailure::caused("remove a record segment", e))?;
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
    use crate::data_streams::record_log::{encode_frame, Frame, FrameError};

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
        let bytes = log.segment(1).unwrap().read(&[found[1].at]).unwrap();
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

    #[test]
    fn log_files_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        crate::data_streams::record_log::conformance::run(|| LogFiles::new(dir.path()));
    }
}
