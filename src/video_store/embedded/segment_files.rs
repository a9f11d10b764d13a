//! Fragment bytes in append-only segment files (`data/media/<stream>/<segment>.seg`, the
//! record format in [`super::segment`]): the embedded [`MediaStore`].
//!
//! A group is written in one pass: every stream's records appended to its open
//! segment, then every touched file synced once, in parallel across files, so that
//! concurrent streams share the cost of the syncs. A stream whose write or sync fails
//! is cut back to where it was before the group (or its new segment emptied and
//! abandoned), so no record its index does not know of is followed by one it does.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;

use super::file_cache::FileCache;
use super::segment::{self, RecordHeader, RECORD_HEADER_LEN};
use crate::video_store::media::{MediaStore, Placement, SegmentCheck, StreamAppend, StreamAppended};
use crate::video_store::records::{FragmentMeta, SegmentMeta, StreamId};
use crate::video_store::StoreError;

struct OpenSegment {
    file: File,
    len: u64,
    meta: SegmentMeta,
    /// A failed write could not be cut back: the file may hold bytes past `len`, so
    /// nothing more is written to it; the next group rolls to a new segment (recovery
    /// trims this one at the next start).
    broken: bool,
}

pub struct SegmentFiles {
    root: PathBuf,
    segment_max_bytes: u64,
    files: FileCache,
    /// Each stream's segment open for appends. Only the store's writer appends, so
    /// this lock is never contended on the write path.
    open: Mutex<HashMap<StreamId, OpenSegment>>,
}

impl SegmentFiles {
    pub(super) fn open(root: PathBuf, segment_max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(SegmentFiles { root, segment_max_bytes, files: FileCache::default(), open: Mutex::new(HashMap::new()) })
    }

    fn open_segments(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, OpenSegment>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The segment `req`'s fragments go into: the open one, unless it is broken, full
    /// or too old at the group's first fragment.
    fn segment_for<'a>(
        &self,
        open: &'a mut HashMap<StreamId, OpenSegment>,
        req: &StreamAppend,
        first_ts_us: i64,
    ) -> Result<&'a mut OpenSegment, StoreError> {
        let roll = match open.get(&req.stream) {
            Some(seg) => {
                seg.broken
                    || seg.len >= self.segment_max_bytes
                    || first_ts_us.saturating_sub(seg.meta.created_us) >= req.segment_max_age_us
            }
            None => true,
        };
        if roll {
            open.remove(&req.stream);
            let id = req.next_segment_id;
            let file = segment::create_segment(&self.root, req.stream, id)?;
            let meta = SegmentMeta {
                segment_id: id,
                created_us: first_ts_us,
                min_server_ts_us: first_ts_us,
                max_server_ts_us: first_ts_us,
                ..SegmentMeta::default()
            };
            open.insert(req.stream, OpenSegment { file, len: 0, meta, broken: false });
        }
        open.get_mut(&req.stream).ok_or_else(|| StoreError::Corrupt("open segment vanished".into()))
    }

    /// Appends one stream's fragments; returns what came of each.
    fn write_stream(
        &self,
        open: &mut HashMap<StreamId, OpenSegment>,
        req: &StreamAppend,
    ) -> Vec<Result<Placement, StoreError>> {
        let Some(first) = req.fragments.first() else { return Vec::new() };
        let seg = match self.segment_for(open, req, first.server_ts_us) {
            Ok(seg) => seg,
            Err(e) => {
                let why = e.to_string();
                return req.fragments.iter().map(|_| Err(StoreError::Io(io::Error::other(why.clone())))).collect();
            }
        };
        let mut out = Vec::with_capacity(req.fragments.len());
        for f in &req.fragments {
            out.push(write_record(seg, f.fragment_number, f.server_ts_us, &f.chunks));
        }
        out
    }

    fn sync_all(&self, open: &HashMap<StreamId, OpenSegment>, streams: &[StreamId]) -> Vec<(StreamId, io::Error)> {
        let files: Vec<(StreamId, &File)> =
            streams.iter().filter_map(|s| open.get(s).map(|seg| (*s, &seg.file))).collect();
        if files.len() <= 1 {
            return files.into_iter().filter_map(|(s, f)| f.sync_data().err().map(|e| (s, e))).collect();
        }
        // The lanes only wait on the disk, so more of them let the filesystem merge more
        // syncs into one journal commit. bench/ingest.rs (100 cameras in lockstep, 2 vCPU,
        // ext4 on virtio) gave an ack p50 between 30 and 87 ms over several runs with 32
        // lanes and 87 ms in the one run with 8; the disk's own burst time moved as much,
        // so the lane count is a reasoned default rather than a proven optimum.
        let lanes = files.len().min(32);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..lanes)
                .map(|lane| {
                    let mine: Vec<(StreamId, &File)> = files.iter().skip(lane).step_by(lanes).copied().collect();
                    scope.spawn(move || {
                        mine.into_iter().filter_map(|(s, f)| f.sync_data().err().map(|e| (s, e))).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    }
}

/// Appends one record to `seg`; on failure cuts the file back (or marks it broken).
fn write_record(
    seg: &mut OpenSegment,
    fragment_number: u64,
    server_ts_us: i64,
    chunks: &[Bytes],
) -> Result<Placement, StoreError> {
    if seg.broken {
        // Until the group ends (its earlier records still get their sync).
        return Err(StoreError::Io(io::Error::other("the segment was closed after a failed write")));
    }
    let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let len32 = u32::try_from(len).map_err(|_| StoreError::InvalidArgument("fragment larger than 4 GiB".into()))?;
    let mut hasher = crc32fast::Hasher::new();
    for c in chunks {
        hasher.update(c);
    }
    let crc = hasher.finalize();
    let header = RecordHeader { payload_len: len32, fragment_number, payload_crc: crc };
    let start = seg.len;
    let result = (|| -> io::Result<()> {
        let mut f = &seg.file;
        f.write_all(&header.encode())?;
        for c in chunks {
            f.write_all(c)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Leave no partial record behind for the next one to follow. If even that
        // fails, the file may hold bytes past `start` that the next record's offset
        // would not account for: stop appending to it (recovery trims it at start).
        if let Err(cut) = seg.file.set_len(start) {
            tracing::error!(segment = seg.meta.segment_id, error = %cut, "cutting a failed write back failed; closing the segment");
            seg.broken = true;
        }
        return Err(e.into());
    }
    seg.len = start + RECORD_HEADER_LEN + len;
    let m = &mut seg.meta;
    if m.fragment_count == 0 {
        m.first_fragment = fragment_number;
        m.min_server_ts_us = server_ts_us;
    }
    m.last_fragment = fragment_number;
    m.fragment_count += 1;
    m.min_server_ts_us = m.min_server_ts_us.min(server_ts_us);
    m.max_server_ts_us = m.max_server_ts_us.max(server_ts_us);
    m.bytes = seg.len;
    Ok(Placement { segment_id: m.segment_id, offset: start + RECORD_HEADER_LEN, len: len32, crc })
}

impl MediaStore for SegmentFiles {
    fn append(&self, group: Vec<StreamAppend>) -> Vec<StreamAppended> {
        let mut open = self.open_segments();
        // Each stream's open segment (length and summary) before this group, to cut
        // back to if its sync fails.
        let before: Vec<Option<(u64, SegmentMeta)>> =
            group.iter().map(|req| open.get(&req.stream).map(|s| (s.len, s.meta))).collect();
        let mut results: Vec<Vec<Result<Placement, StoreError>>> =
            group.iter().map(|req| self.write_stream(&mut open, req)).collect();

        let streams: Vec<StreamId> = group.iter().filter(|r| !r.fragments.is_empty()).map(|r| r.stream).collect();
        let failed_sync = self.sync_all(&open, &streams);
        for (stream, err) in &failed_sync {
            tracing::error!(stream, error = %err, "segment sync failed; rolling the group back for this stream");
            let Some(i) = group.iter().position(|r| r.stream == *stream) else { continue };
            for r in results[i].iter_mut().filter(|r| r.is_ok()) {
                *r = Err(StoreError::Io(io::Error::new(err.kind(), err.to_string())));
            }
            let Some(seg) = open.get_mut(stream) else { continue };
            match before[i] {
                // Same segment as before the group: cut it back to where it was.
                Some((len, meta)) if meta.segment_id == seg.meta.segment_id => {
                    if let Err(cut) = seg.file.set_len(len) {
                        tracing::error!(stream, error = %cut, "cutting unsynced records back failed; closing the segment");
                        open.remove(stream);
                        continue;
                    }
                    seg.len = len;
                    seg.meta = meta;
                }
                // A segment opened in this group: nothing indexed refers to it. Empty it
                // and stop using it; recovery removes the file at the next start.
                _ => {
                    if let Err(cut) = seg.file.set_len(0) {
                        tracing::error!(stream, error = %cut, "emptying an unsynced segment failed");
                    }
                    open.remove(stream);
                }
            }
        }
        group
            .iter()
            .zip(results.iter_mut())
            .map(|(req, placements)| {
                let durable = placements.iter().any(|p| p.is_ok());
                let segment = open.get(&req.stream).filter(|_| durable).map(|s| s.meta);
                StreamAppended { placements: std::mem::take(placements), segment }
            })
            .collect()
    }

    fn read(&self, stream: StreamId, fragment: &FragmentMeta) -> Result<Bytes, StoreError> {
        let not_found = |e: io::Error, kind: io::ErrorKind| {
            if e.kind() == kind {
                StoreError::FragmentNotFound(fragment.fragment_number)
            } else {
                StoreError::Io(e)
            }
        };
        let file = self
            .files
            .get(&self.root, stream, fragment.segment_id)
            .map_err(|e| not_found(e, io::ErrorKind::NotFound))?;
        let buf = segment::read_at(&file, fragment.offset, fragment.len)
            .map_err(|e| not_found(e, io::ErrorKind::UnexpectedEof))?;
        Ok(Bytes::from(buf))
    }

    fn remove_segments(&self, stream: StreamId, segment_ids: &[u64]) -> Result<(), StoreError> {
        {
            let mut open = self.open_segments();
            if open.get(&stream).is_some_and(|o| segment_ids.contains(&o.meta.segment_id)) {
                open.remove(&stream);
            }
        }
        let mut first_error = None;
        for &id in segment_ids {
            self.files.evict(stream, id);
            let path = segment::segment_path(&self.root, stream, id);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a segment file");
                    first_error.get_or_insert(e);
                }
                _ => {}
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    fn remove_stream(&self, stream: StreamId) -> Result<(), StoreError> {
        self.open_segments().remove(&stream);
        self.files.evict_stream(stream);
        match std::fs::remove_dir_all(segment::stream_dir(&self.root, stream)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn stored(&self) -> Result<BTreeMap<StreamId, Vec<u64>>, StoreError> {
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stream) = segment::stream_id_from_dir_name(&name) else { continue };
            let mut ids = Vec::new();
            for file in std::fs::read_dir(entry.path())? {
                if let Some(id) = segment::segment_id_from_name(&file?.file_name().to_string_lossy()) {
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            out.insert(stream, ids);
        }
        Ok(out)
    }

    fn check_segment(
        &self,
        stream: StreamId,
        segment_id: u64,
        fragments: &[FragmentMeta],
    ) -> Result<SegmentCheck, StoreError> {
        let path = segment::segment_path(&self.root, stream, segment_id);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SegmentCheck::Missing),
            Err(e) => return Err(e.into()),
        };
        let file_len = file.metadata()?.len();
        // From the end backwards: drop records that are not whole; stop at the first
        // good one (everything before it was synced before it was).
        let mut whole = fragments.len();
        while whole > 0 {
            let m = &fragments[whole - 1];
            if m.record_end() <= file_len && segment::verify_record(&file, m.offset, m.len, m.fragment_number, m.crc)? {
                break;
            }
            tracing::warn!(
                stream,
                segment = segment_id,
                fragment = m.fragment_number,
                "indexed fragment is not whole on disk"
            );
            whole -= 1;
        }
        let good_end = if whole > 0 { fragments[whole - 1].record_end() } else { 0 };
        let mut trimmed_bytes = 0;
        if file_len > good_end {
            tracing::info!(stream, segment = segment_id, bytes = file_len - good_end, "truncating unacknowledged tail");
            file.set_len(good_end)?;
            file.sync_all()?;
            trimmed_bytes = file_len - good_end;
        }
        Ok(SegmentCheck::Present { whole, trimmed_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::video_store::media::conformance::run(|| SegmentFiles::open(dir.path().join("media"), 1 << 20).unwrap());
    }
}
