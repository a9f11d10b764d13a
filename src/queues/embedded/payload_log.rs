//! Message payloads (body and attributes) on disk, outside sled: append-only segment
//! files of checksummed records under `data/queues/payloads/`.
//!
//! ```text
//! record = len u32 BE (payload bytes) | crc32 u32 BE (of them) | payload (JSON)
//! ```
//!
//! sled 0.34 keeps in memory about as many bytes as are written to it, whatever its
//! cache capacity (measured: 200 MB of 100 KB values cost 200 MB of RSS), so bodies
//! kept there made a backlog cost memory per byte. Here a queued message costs its
//! metadata only; the payload is read back (one positioned read, CRC-checked) when it is
//! received or moved.
//!
//! Appends go to the active segment, which rolls at [`MAX_SEGMENT_BYTES`]; a restart
//! starts a new one, so no append follows a torn tail. Each segment counts the messages
//! that refer to it (rebuilt at open from the message records); a segment no message
//! refers to any more is deleted. A payload is synced before the message record that
//! refers to it is acknowledged (the store's flusher syncs this log and sled in
//! parallel and answers once both are done); a record sled persisted before its payload
//! was synced may point at torn bytes after a crash, which the CRC catches: such a
//! message was never acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The record layout and segment naming above (see docs/storage.md).
pub const PAYLOAD_LOG_FORMAT: u32 = 1;
/// The active segment rolls once it holds this much.
pub const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: u64 = 8;

pub use crate::queues::store::PayloadRef;

/// The record of `payload` (pure).
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + HEADER as usize);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a record read at a [`PayloadRef`], if it is whole (pure).
pub fn decode_record(record: &[u8], len: u32) -> Option<&[u8]> {
    let header: [u8; 8] = record.get(..8)?.try_into().ok()?;
    let stored_len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let payload = record.get(8..8 + len as usize)?;
    (stored_len == len && crc32fast::hash(payload) == crc).then_some(payload)
}

struct Segment {
    file: Arc<File>,
    len: u64,
    /// Messages that refer to it.
    live: u64,
}

struct LogState {
    segments: BTreeMap<u32, Segment>,
    active: u32,
    /// Segments written to since the last sync.
    dirty: BTreeSet<u32>,
}

pub struct PayloadLog {
    dir: PathBuf,
    state: Mutex<LogState>,
}

fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.payloads"))
}

impl PayloadLog {
    /// Opens the log in `dir` (created if missing) and starts a new active segment.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".payloads")).and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let file = OpenOptions::new().read(true).write(true).open(entry.path())?;
            let len = file.metadata()?.len();
            segments.insert(id, Segment { file: Arc::new(file), len, live: 0 });
        }
        let active = segments.keys().next_back().map_or(1, |id| id + 1);
        let log = PayloadLog {
            dir: dir.to_path_buf(),
            state: Mutex::new(LogState { segments, active, dirty: BTreeSet::new() }),
        };
        log.start_segment(&mut log.lock(), active)?;
        Ok(log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_segment(&self, state: &mut LogState, id: u32) -> io::Result<()> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(segment_path(&self.dir, id))?;
        File::open(&self.dir)?.sync_all()?;
        state.segments.insert(id, Segment { file: Arc::new(file), len: 0, live: 0 });
        state.active = id;
        Ok(())
    }

    /// Appends a payload (not yet synced). It counts as referred to only once the
    /// caller says so ([`PayloadLog::retain`]).
    pub fn append(&self, payload: &[u8]) -> io::Result<PayloadRef> {
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("payload over 4 GiB"))?;
        let record = encode_record(payload);
        let mut state = self.lock();
        let active = state.active;
        if state.segments.get(&active).is_some_and(|s| s.len >= MAX_SEGMENT_BYTES) {
            self.start_segment(&mut state, active + 1)?;
        }
        let id = state.active;
        let seg = state.segments.get_mut(&id).ok_or_else(|| io::Error::other("no active payload segment"))?;
        let offset = seg.len;
        // On failure the bytes past `len` are never referred to; the next append
        // overwrites them.
        seg.file.write_all_at(&record, offset)?;
        seg.len += record.len() as u64;
        state.dirty.insert(id);
        Ok(PayloadRef { segment: id, offset, len })
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> io::Result<()> {
        let files: Vec<Arc<File>> = {
            let mut state = self.lock();
            let dirty = std::mem::take(&mut state.dirty);
            dirty.iter().filter_map(|id| state.segments.get(id).map(|s| s.file.clone())).collect()
        };
        for f in files {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The payload at `r`, or `None` if its bytes are not whole (a record never synced).
    pub fn read(&self, r: PayloadRef) -> io::Result<Option<Vec<u8>>> {
        let file = match self.lock().segments.get(&r.segment) {
            Some(s) if r.offset + HEADER + u64::from(r.len) <= s.len => s.file.clone(),
            _ => return Ok(None),
        };
        let mut buf = vec![0u8; (HEADER + u64::from(r.len)) as usize];
        file.read_exact_at(&mut buf, r.offset)?;
        Ok(decode_record(&buf, r.len).map(<[u8]>::to_vec))
    }

    /// One more message refers to `r` (a new one, or at open each stored one).
    pub fn retain(&self, r: PayloadRef) {
        if let Some(s) = self.lock().segments.get_mut(&r.segment) {
            s.live += 1;
        }
    }

    /// A message that referred to `r` is gone; a segment nothing refers to is deleted.
    pub fn release(&self, r: PayloadRef) {
        let mut state = self.lock();
        let active = state.active;
        let Some(s) = state.segments.get_mut(&r.segment) else { return };
        s.live = s.live.saturating_sub(1);
        if s.live == 0 && r.segment != active {
            state.segments.remove(&r.segment);
            self.delete(r.segment);
        }
    }

    /// Deletes the segments no message refers to (after open has retained every
    /// stored message's payload).
    pub fn sweep_unreferenced(&self) {
        let mut state = self.lock();
        let active = state.active;
        let unreferenced: Vec<u32> =
            state.segments.iter().filter(|(id, s)| s.live == 0 && **id != active).map(|(id, _)| *id).collect();
        for id in unreferenced {
            state.segments.remove(&id);
            self.delete(id);
        }
    }

    fn delete(&self, id: u32) {
        if let Err(e) = std::fs::remove_file(segment_path(&self.dir, id)) {
            tracing::warn!(segment = id, error = %e, "an unreferenced payload segment could not be removed");
        }
    }

    /// Segment files on disk (for tests and diagnostics).
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_caught() {
        let r = encode_record(b"hello");
        assert_eq!(decode_record(&r, 5), Some(&b"hello"[..]));
        let mut bad = r.clone();
        bad[10] ^= 1;
        assert_eq!(decode_record(&bad, 5), None);
        assert_eq!(decode_record(&r[..7], 5), None);
        assert_eq!(decode_record(&r, 4), None);
    }

    #[test]
    fn payloads_are_read_back_and_unreferenced_segments_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let a = log.append(b"first").unwrap();
        let b = log.append(b"second").unwrap();
        log.sync().unwrap();
        log.retain(a);
        log.retain(b);
        assert_eq!(log.read(b).unwrap().as_deref(), Some(&b"second"[..]));
        drop(log);
        // After a restart: a new active segment; the old one lives while referred to.
        let log = PayloadLog::open(dir.path()).unwrap();
        log.retain(a);
        log.retain(b);
        log.sweep_unreferenced();
        assert_eq!(log.segment_count(), 2);
        assert_eq!(log.read(a).unwrap().as_deref(), Some(&b"first"[..]));
        log.release(a);
        assert_eq!(log.segment_count(), 2);
        log.release(b);
        assert_eq!(log.segment_count(), 1, "the old segment went with its last message");
        assert_eq!(log.read(a).unwrap(), None);
        // A reference past the bytes on disk (a record never synced) reads as gone.
        let c = log.append(b"third").unwrap();
        assert_eq!(log.read(PayloadRef { len: c.len + 100, ..c }).unwrap(), None);
    }
}
