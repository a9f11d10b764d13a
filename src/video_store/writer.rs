//! The one thread that writes: appends fragments to segment files, makes them durable,
//! then records them in the index, in groups.
//!
//! Group commit: the writer takes every request waiting in its queue, writes them all,
//! syncs each touched file once (in parallel across files), applies one atomic index
//! batch and flushes the index once, and only then answers. Concurrent streams thus
//! share the cost of the flushes instead of queueing on the disk one by one.
//!
//! Order of durability, the invariant recovery relies on: a fragment's bytes are synced
//! before its index entry is written, and its index entry is flushed before anybody is
//! told it is persisted. Deletions go the other way: index entries first, files after.
//!
//! Deleting streams and sweeping retention also run here, so no file is removed while
//! it is being appended to.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::records::{self, key1, key2, prefix, time_key, FragmentMeta, HighWater, SegmentMeta, StreamId};
use super::segment::{self, RecordHeader, RECORD_HEADER_LEN};
use super::{FileCache, LiveStream, StoreError};

pub(crate) struct AppendRequest {
    pub stream: StreamId,
    pub fragment_number: u64,
    pub producer_ts_us: i64,
    pub server_ts_us: i64,
    pub duration_us: i64,
    pub init_id: u32,
    pub flags: u16,
    pub chunks: Vec<Bytes>,
    pub segment_max_age_us: i64,
    pub live: Arc<LiveStream>,
    pub reply: oneshot::Sender<Result<FragmentMeta, StoreError>>,
    /// The fragment's share of the store's in-flight byte budget, returned when the
    /// request is dropped (answered).
    pub _budget: tokio::sync::OwnedSemaphorePermit,
}

pub(crate) struct InitRequest {
    pub stream: StreamId,
    pub init_id: u32,
    pub bytes: Bytes,
    pub reply: oneshot::Sender<Result<(), StoreError>>,
}

/// What a retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub segments: u64,
    pub fragments: u64,
    pub bytes: u64,
}

pub(crate) enum WriterCmd {
    Append(AppendRequest),
    PutInit(InitRequest),
    DeleteStream { stream: StreamId, reply: oneshot::Sender<Result<(), StoreError>> },
    Sweep { stream: StreamId, cutoff_us: i64, reply: oneshot::Sender<Result<SweepStats, StoreError>> },
}

struct OpenSegment {
    file: File,
    len: u64,
    meta: SegmentMeta,
    /// A failed write could not be cut back: the file may hold bytes past `len`, so
    /// nothing more is written to it; the next group rolls to a new segment (recovery
    /// trims this one at the next start).
    broken: bool,
}

pub(crate) struct Writer {
    pub db: sled::Db,
    pub index: sled::Tree,
    pub media_root: PathBuf,
    pub segment_max_bytes: u64,
    pub files: Arc<FileCache>,
    open: HashMap<StreamId, OpenSegment>,
    next_segment: HashMap<StreamId, u64>,
}

/// The most requests one group takes; more wait for the next group.
const MAX_GROUP: usize = 1024;

impl Writer {
    pub fn new(
        db: sled::Db,
        index: sled::Tree,
        media_root: PathBuf,
        segment_max_bytes: u64,
        files: Arc<FileCache>,
    ) -> Self {
        Writer { db, index, media_root, segment_max_bytes, files, open: HashMap::new(), next_segment: HashMap::new() }
    }

    /// Runs until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<WriterCmd>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(cmd) => group.push(cmd),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::new();
            let mut inits = Vec::new();
            for cmd in group {
                match cmd {
                    WriterCmd::Append(a) => appends.push(a),
                    WriterCmd::PutInit(init) => inits.push(init),
                    WriterCmd::DeleteStream { stream, reply } => {
                        self.commit(std::mem::take(&mut appends), std::mem::take(&mut inits));
                        let _ = reply.send(self.delete_stream(stream));
                    }
                    WriterCmd::Sweep { stream, cutoff_us, reply } => {
                        self.commit(std::mem::take(&mut appends), std::mem::take(&mut inits));
                        let _ = reply.send(self.sweep(stream, cutoff_us));
                    }
                }
            }
            self.commit(appends, inits);
        }
        tracing::debug!("fragment writer stopped");
    }

    fn next_segment_id(&mut self, stream: StreamId) -> Result<u64, StoreError> {
        if let Some(n) = self.next_segment.get_mut(&stream) {
            let id = *n;
            *n += 1;
            return Ok(id);
        }
        let last_seg = match self.index.scan_prefix(prefix(records::KIND_SEGMENT, stream)).keys().next_back() {
            Some(k) => records::key_u64(&k?, 9).unwrap_or(0),
            None => 0,
        };
        let hw = self.high_water(stream)?;
        let id = last_seg.max(hw.segment_id) + 1;
        self.next_segment.insert(stream, id + 1);
        Ok(id)
    }

    fn high_water(&self, stream: StreamId) -> Result<HighWater, StoreError> {
        Ok(self
            .index
            .get(prefix(records::KIND_HIGH_WATER, stream))?
            .and_then(|v| HighWater::decode(&v))
            .unwrap_or_default())
    }

    /// The segment `req` goes into, rolling to a new file when the open one is full or
    /// old. `first_in_group` says whether this stream already wrote in this group (a
    /// segment never rolls in the middle of a group, which keeps rollback simple).
    fn segment_for(&mut self, req: &AppendRequest, first_in_group: bool) -> Result<&mut OpenSegment, StoreError> {
        let roll = match self.open.get(&req.stream) {
            Some(seg) => {
                first_in_group
                    && (seg.broken
                        || seg.len >= self.segment_max_bytes
                        || req.server_ts_us.saturating_sub(seg.meta.created_us) >= req.segment_max_age_us)
            }
            None => true,
        };
        if roll {
            self.open.remove(&req.stream);
            let id = self.next_segment_id(req.stream)?;
            let file = segment::create_segment(&self.media_root, req.stream, id)?;
            let meta = SegmentMeta {
                segment_id: id,
                created_us: req.server_ts_us,
                min_server_ts_us: req.server_ts_us,
                max_server_ts_us: req.server_ts_us,
                ..SegmentMeta::default()
            };
            self.open.insert(req.stream, OpenSegment { file, len: 0, meta, broken: false });
        }
        self.open.get_mut(&req.stream).ok_or_else(|| StoreError::Corrupt("open segment vanished".into()))
    }

    fn write_one(&mut self, req: &AppendRequest, first_in_group: bool) -> Result<FragmentMeta, StoreError> {
        let seg = self.segment_for(req, first_in_group)?;
        if seg.broken {
            // Until the group ends (its earlier records still get their sync).
            return Err(StoreError::Io(io::Error::other("the segment was closed after a failed write")));
        }
        let len: u64 = req.chunks.iter().map(|c| c.len() as u64).sum();
        let len32 = u32::try_from(len).map_err(|_| StoreError::InvalidArgument("fragment larger than 4 GiB".into()))?;
        let mut hasher = crc32fast::Hasher::new();
        for c in &req.chunks {
            hasher.update(c);
        }
        let crc = hasher.finalize();
        let header = RecordHeader { payload_len: len32, fragment_number: req.fragment_number, payload_crc: crc };
        let start = seg.len;
        let result = (|| -> io::Result<()> {
            let mut f = &seg.file;
            f.write_all(&header.encode())?;
            for c in &req.chunks {
                f.write_all(c)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Leave no partial record behind for the next one to follow. If even that
            // fails, the file may hold bytes past `start` that the next record's offset
            // would not account for: stop appending to it (recovery trims it at start).
            if let Err(cut) = seg.file.set_len(start) {
                tracing::error!(stream = req.stream, error = %cut, "cutting a failed write back failed; closing the segment");
                seg.broken = true;
            }
            return Err(e.into());
        }
        seg.len = start + RECORD_HEADER_LEN + len;
        let meta = FragmentMeta {
            fragment_number: req.fragment_number,
            producer_ts_us: req.producer_ts_us,
            server_ts_us: req.server_ts_us,
            duration_us: req.duration_us,
            segment_id: seg.meta.segment_id,
            offset: start + RECORD_HEADER_LEN,
            len: len32,
            crc,
            init_id: req.init_id,
            chunk_count: req.chunks.len().min(usize::from(u16::MAX)) as u16,
            flags: req.flags,
        };
        let m = &mut seg.meta;
        if m.fragment_count == 0 {
            m.first_fragment = req.fragment_number;
            m.min_server_ts_us = req.server_ts_us;
        }
        m.last_fragment = req.fragment_number;
        m.fragment_count += 1;
        m.min_server_ts_us = m.min_server_ts_us.min(req.server_ts_us);
        m.max_server_ts_us = m.max_server_ts_us.max(req.server_ts_us);
        m.bytes = seg.len;
        Ok(meta)
    }

    fn commit(&mut self, appends: Vec<AppendRequest>, inits: Vec<InitRequest>) {
        if appends.is_empty() && inits.is_empty() {
            return;
        }
        // Per stream touched: its open segment's length and summary before this group
        // (the summary names the segment, which may roll to a new one in the group).
        let mut before: HashMap<StreamId, Option<(u64, SegmentMeta)>> = HashMap::new();
        let mut results = Vec::with_capacity(appends.len());
        for req in &appends {
            let first = !before.contains_key(&req.stream);
            if first {
                before.insert(req.stream, self.open.get(&req.stream).map(|s| (s.len, s.meta)));
            }
            results.push(self.write_one(req, first));
        }

        // Sync every touched file once, in parallel across files.
        let failed_sync = self.sync_streams(before.keys().copied().collect());
        for (stream, err) in &failed_sync {
            tracing::error!(stream, error = %err, "segment sync failed; rolling the group back for this stream");
            let Some(seg) = self.open.get_mut(stream) else { continue };
            match before.get(stream) {
                // Same segment as before the group: cut it back to where it was.
                Some(Some((len, meta))) if meta.segment_id == seg.meta.segment_id => {
                    if let Err(cut) = seg.file.set_len(*len) {
                        tracing::error!(stream, error = %cut, "cutting unsynced records back failed; closing the segment");
                        self.open.remove(stream);
                        continue;
                    }
                    seg.len = *len;
                    seg.meta = *meta;
                }
                // A segment opened in this group: nothing indexed refers to it. Empty it
                // and stop using it; recovery removes the file at the next start.
                _ => {
                    if let Err(cut) = seg.file.set_len(0) {
                        tracing::error!(stream, error = %cut, "emptying an unsynced segment failed");
                    }
                    self.open.remove(stream);
                }
            }
        }
        for (req, r) in appends.iter().zip(results.iter_mut()) {
            if r.is_ok() {
                if let Some((_, e)) = failed_sync.iter().find(|(s, _)| *s == req.stream) {
                    *r = Err(StoreError::Io(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }

        let mut batch = sled::Batch::default();
        for init in &inits {
            batch.insert(&key1(records::KIND_INIT, init.stream, u64::from(init.init_id))[..], init.bytes.as_ref());
        }
        for (req, r) in appends.iter().zip(&results) {
            if let Ok(meta) = r {
                let n = meta.fragment_number;
                batch.insert(&key1(records::KIND_FRAGMENT, req.stream, n)[..], &meta.encode()[..]);
                batch.insert(
                    &key2(records::KIND_PRODUCER_TIME, req.stream, time_key(meta.producer_ts_us), n)[..],
                    &[][..],
                );
                batch.insert(&key2(records::KIND_SERVER_TIME, req.stream, time_key(meta.server_ts_us), n)[..], &[][..]);
            }
        }
        for stream in before.keys() {
            if let Some(seg) = self.open.get(stream) {
                if seg.meta.fragment_count > 0 {
                    batch
                        .insert(&key1(records::KIND_SEGMENT, *stream, seg.meta.segment_id)[..], &seg.meta.encode()[..]);
                }
            }
        }
        let index_result = self.index.apply_batch(batch).and_then(|_| self.db.flush().map(|_| ()));
        if let Err(e) = &index_result {
            tracing::error!(error = %e, "index batch failed; nothing in this group is persisted");
        }

        for init in inits {
            let _ = init.reply.send(match &index_result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Index(e.clone())),
            });
        }
        for (req, r) in appends.into_iter().zip(results) {
            let r = match (&index_result, r) {
                (Err(e), _) => Err(StoreError::Index(e.clone())),
                (Ok(()), r) => r,
            };
            if let Ok(meta) = &r {
                req.live.notify_persisted(meta.fragment_number);
            }
            let _ = req.reply.send(r);
        }
    }

    fn sync_streams(&self, streams: Vec<StreamId>) -> Vec<(StreamId, io::Error)> {
        let files: Vec<(StreamId, &File)> =
            streams.iter().filter_map(|s| self.open.get(s).map(|seg| (*s, &seg.file))).collect();
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

    fn delete_stream(&mut self, stream: StreamId) -> Result<(), StoreError> {
        self.open.remove(&stream);
        self.next_segment.remove(&stream);
        let mut batch = sled::Batch::default();
        for kind in records::ALL_KINDS {
            for key in self.index.scan_prefix(prefix(kind, stream)).keys() {
                batch.remove(key?);
            }
        }
        self.index.apply_batch(batch)?;
        self.db.flush()?;
        self.files.evict_stream(stream);
        match std::fs::remove_dir_all(segment::stream_dir(&self.media_root, stream)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Removes every segment of `stream` whose newest fragment arrived before
    /// `cutoff_us`, index entries first.
    fn sweep(&mut self, stream: StreamId, cutoff_us: i64) -> Result<SweepStats, StoreError> {
        let mut expired = Vec::new();
        for item in self.index.scan_prefix(prefix(records::KIND_SEGMENT, stream)) {
            let (_, v) = item?;
            let Some(meta) = SegmentMeta::decode(&v) else { continue };
            if meta.max_server_ts_us < cutoff_us {
                expired.push(meta);
            } else {
                // Segments are in creation order; later ones hold newer fragments.
                break;
            }
        }
        if expired.is_empty() {
            return Ok(SweepStats::default());
        }
        let mut stats = SweepStats::default();
        let mut batch = sled::Batch::default();
        let mut hw = self.high_water(stream)?;
        for seg in &expired {
            if self.open.get(&stream).is_some_and(|o| o.meta.segment_id == seg.segment_id) {
                self.open.remove(&stream);
            }
            let from = key1(records::KIND_FRAGMENT, stream, seg.first_fragment);
            let to = key1(records::KIND_FRAGMENT, stream, seg.last_fragment);
            for item in self.index.range(from..=to) {
                let (k, v) = item?;
                batch.remove(k);
                if let Some(m) = FragmentMeta::decode(&v) {
                    let n = m.fragment_number;
                    batch.remove(&key2(records::KIND_PRODUCER_TIME, stream, time_key(m.producer_ts_us), n)[..]);
                    batch.remove(&key2(records::KIND_SERVER_TIME, stream, time_key(m.server_ts_us), n)[..]);
                    stats.fragments += 1;
                }
            }
            batch.remove(&key1(records::KIND_SEGMENT, stream, seg.segment_id)[..]);
            hw.fragment_number = hw.fragment_number.max(seg.last_fragment);
            hw.segment_id = hw.segment_id.max(seg.segment_id);
            stats.segments += 1;
            stats.bytes += seg.bytes;
        }
        batch.insert(&prefix(records::KIND_HIGH_WATER, stream)[..], &hw.encode()[..]);
        self.index.apply_batch(batch)?;
        self.db.flush()?;
        for seg in &expired {
            self.files.evict(stream, seg.segment_id);
            let path = segment::segment_path(&self.media_root, stream, seg.segment_id);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove swept segment; recovery will");
                }
            }
        }
        Ok(stats)
    }
}
