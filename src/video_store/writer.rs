//! The one thread that writes: hands fragments to the media store, which makes them
//! durable, then records them in the index, in groups.
//!
//! Group commit: the writer takes every request waiting in its queue, gives them to
//! the [`MediaStore`] as one group (which syncs each touched segment once), commits one
//! [`IndexCommit`] for all of them, and only then answers. Concurrent streams thus
//! share the cost of the syncs and flushes instead of queueing on the disk one by one.
//!
//! Order of durability, the invariant recovery relies on: a fragment's bytes are synced
//! before its index entry is written, and its index entry is flushed before anybody is
//! told it is persisted. Deletions go the other way: index entries first, files after.
//!
//! Deleting streams and sweeping retention also run here, so no file is removed while
//! it is being appended to.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::index::{FragmentIndex, IndexCommit};
use super::media::{FragmentBytes, MediaStore, StreamAppend};
use super::records::{FragmentMeta, SegmentMeta, StreamId};
use super::{LiveStream, StoreError};
use crate::storage_failure::StorageFailure;

pub(crate) struct AppendRequest {
    pub stream: StreamId,
    pub fragment_number: u64,
    pub producer_ts_us: i64,
    pub server_ts_us: i64,
    pub duration_us: i64,
    pub init_id: u32,
    pub flags: u16,
    pub chunk_count: u16,
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

pub(crate) struct Writer {
    index: Arc<dyn FragmentIndex>,
    media: Arc<dyn MediaStore>,
    /// Each stream's next segment id, learnt from the index on first use.
    next_segment: HashMap<StreamId, u64>,
}

/// The most requests one group takes; more wait for the next group.
const MAX_GROUP: usize = 1024;

/// The same failure, for every request that shared it.
fn shared(e: &StoreError) -> StoreError {
    match e {
        StoreError::Storage(f) => StoreError::Storage(f.clone()),
        StoreError::Io(io) => StoreError::Io(io::Error::new(io.kind(), io.to_string())),
        other => StoreError::Storage(StorageFailure::new(other.to_string())),
    }
}

impl Writer {
    pub fn new(index: Arc<dyn FragmentIndex>, media: Arc<dyn MediaStore>) -> Self {
        Writer { index, media, next_segment: HashMap::new() }
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
        if let Some(n) = self.next_segment.get(&stream) {
            return Ok(*n);
        }
        let n = self.index.next_numbers(stream)?.segment;
        self.next_segment.insert(stream, n);
        Ok(n)
    }

    /// One group: the bytes made durable by the media store, then the index entries
    /// committed in one step, then the answers.
    fn commit(&mut self, mut appends: Vec<AppendRequest>, inits: Vec<InitRequest>) {
        if appends.is_empty() && inits.is_empty() {
            return;
        }
        let mut results: Vec<Option<Result<FragmentMeta, StoreError>>> = appends.iter().map(|_| None).collect();
        // One share per stream, its fragments in the order they came.
        let mut shares: Vec<(StreamAppend, Vec<usize>)> = Vec::new();
        let mut share_of: HashMap<StreamId, usize> = HashMap::new();
        for (i, req) in appends.iter_mut().enumerate() {
            let k = match share_of.get(&req.stream) {
                Some(k) => *k,
                None => {
                    let next_segment_id = match self.next_segment_id(req.stream) {
                        Ok(n) => n,
                        Err(e) => {
                            results[i] = Some(Err(e));
                            continue;
                        }
                    };
                    let share = StreamAppend {
                        stream: req.stream,
                        next_segment_id,
                        segment_max_age_us: req.segment_max_age_us,
                        fragments: Vec::new(),
                    };
                    shares.push((share, Vec::new()));
                    share_of.insert(req.stream, shares.len() - 1);
                    shares.len() - 1
                }
            };
            shares[k].0.fragments.push(FragmentBytes {
                fragment_number: req.fragment_number,
                server_ts_us: req.server_ts_us,
                chunks: std::mem::take(&mut req.chunks),
            });
            shares[k].1.push(i);
        }
        let (group, members): (Vec<StreamAppend>, Vec<Vec<usize>>) = shares.into_iter().unzip();
        let streams: Vec<(StreamId, u64)> = group.iter().map(|s| (s.stream, s.next_segment_id)).collect();
        let written = if group.is_empty() { Vec::new() } else { self.media.append(group) };

        let mut commit = IndexCommit::default();
        for init in &inits {
            commit.inits.push((init.stream, init.init_id, init.bytes.clone()));
        }
        for (((stream, offered), members), appended) in streams.into_iter().zip(members).zip(written) {
            // A new segment may have taken the offered id even if nothing in it became
            // durable (its file is left empty): never offer that id again.
            let next = appended.segment.map_or(offered + 1, |seg| seg.segment_id + 1);
            let entry = self.next_segment.entry(stream).or_insert(next);
            *entry = (*entry).max(next);
            if let Some(seg) = appended.segment {
                commit.segments.push((stream, seg));
            }
            for (i, placed) in members.into_iter().zip(appended.placements) {
                let req = &appends[i];
                results[i] = Some(placed.map(|p| FragmentMeta {
                    fragment_number: req.fragment_number,
                    producer_ts_us: req.producer_ts_us,
                    server_ts_us: req.server_ts_us,
                    duration_us: req.duration_us,
                    segment_id: p.segment_id,
                    offset: p.offset,
                    len: p.len,
                    crc: p.crc,
                    init_id: req.init_id,
                    chunk_count: req.chunk_count,
                    flags: req.flags,
                }));
            }
        }
        for (req, r) in appends.iter().zip(&results) {
            if let Some(Ok(meta)) = r {
                commit.fragments.push((req.stream, *meta));
            }
        }
        let index_result = self.index.commit(&commit);
        if let Err(e) = &index_result {
            tracing::error!(error = %e, "index commit failed; nothing in this group is persisted");
        }

        for init in inits {
            let _ = init.reply.send(match &index_result {
                Ok(()) => Ok(()),
                Err(e) => Err(shared(e)),
            });
        }
        for (req, r) in appends.into_iter().zip(results) {
            let r = match (&index_result, r) {
                (Err(e), _) => Err(shared(e)),
                (Ok(()), Some(r)) => r,
                (Ok(()), None) => Err(StoreError::Corrupt("a fragment the media store did not answer for".into())),
            };
            if let Ok(meta) = &r {
                req.live.notify_persisted(meta.fragment_number);
            }
            let _ = req.reply.send(r);
        }
    }

    fn delete_stream(&mut self, stream: StreamId) -> Result<(), StoreError> {
        self.next_segment.remove(&stream);
        // Index entries first, bytes after: the index never points at missing bytes.
        self.index.remove_stream(stream)?;
        self.media.remove_stream(stream)
    }

    /// Removes every segment of `stream` whose newest fragment arrived before
    /// `cutoff_us`, index entries first.
    fn sweep(&mut self, stream: StreamId, cutoff_us: i64) -> Result<SweepStats, StoreError> {
        let (segments, _) = self.index.segments(stream)?;
        // Segments are in creation order; later ones hold newer fragments.
        let expired: Vec<SegmentMeta> = segments.into_iter().take_while(|s| s.max_server_ts_us < cutoff_us).collect();
        if expired.is_empty() {
            return Ok(SweepStats::default());
        }
        let fragments = self.index.remove_segments(stream, &expired)?;
        let ids: Vec<u64> = expired.iter().map(|s| s.segment_id).collect();
        if let Err(e) = self.media.remove_segments(stream, &ids) {
            tracing::warn!(stream, error = %e, "could not remove swept segments; recovery will");
        }
        Ok(SweepStats { segments: expired.len() as u64, fragments, bytes: expired.iter().map(|s| s.bytes).sum() })
    }
}
