//! The one thread that writes records: it takes every put waiting, routes each record
//! to its shard and numbers it under the stream's lock, appends the frames, syncs each
//! touched file once for the whole group, then publishes the records to the index and
//! answers the puts. A record is visible to readers only once it is on disk.

use crate::storage_failure::StorageFailure;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::keys::hash_of_partition_key;
use super::record_log::{encode_frame, frame_len, Frame, Location, LogSegment};
use super::{DataStreamError, IndexEntry, NewRecord, StreamHandle};
use crate::clock::SharedClock;

/// (shard index, sequence counter) of a placed record, or why it was refused.
pub type Placement = Result<(u32, u64), DataStreamError>;

struct Job {
    stream: Arc<StreamHandle>,
    records: Vec<NewRecord>,
    reply: oneshot::Sender<Result<Vec<Placement>, DataStreamError>>,
}

pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Job>,
}

/// Jobs taken in one group at most.
const GROUP: usize = 512;
/// Puts waiting for the writer before callers wait too (each holds at most a 10 MiB
/// request, so the queue's memory is bounded).
const QUEUE: usize = 256;

impl WriterHandle {
    pub fn start(clock: SharedClock, throttled: bool) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new().name("data-stream-writer".into()).spawn(move || run(rx, clock, throttled))?;
        Ok(WriterHandle { tx })
    }

    pub async fn put(
        &self,
        stream: Arc<StreamHandle>,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Placement>, DataStreamError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { stream, records, reply })
            .await
            .map_err(|_| DataStreamError::Storage(StorageFailure::new("the record writer has stopped")))?;
        rx.await.map_err(|_| DataStreamError::Storage(StorageFailure::new("the record writer dropped a put")))?
    }
}

/// What phase one leaves for phase three.
struct Written {
    job: Job,
    placements: Vec<Placement>,
    entries: Vec<(u32, IndexEntry)>,
    segment: Option<Arc<dyn LogSegment>>,
    /// Where this job's frames start: (segment, offset), to cut back to if the sync fails.
    start: Option<(u32, u64)>,
}

fn run(mut rx: mpsc::Receiver<Job>, clock: SharedClock, throttled: bool) {
    let mut buf = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut written = Vec::with_capacity(jobs.len());
        for job in jobs {
            match append(&job, &clock, throttled, &mut buf) {
                Ok((placements, entries, segment, start)) => {
                    written.push(Written { job, placements, entries, segment, start })
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        // One sync per segment for the whole group.
        let mut synced: Vec<(*const (), Result<(), StorageFailure>)> = Vec::new();
        for w in &written {
            let Some(f) = &w.segment else { continue };
            if !synced.iter().any(|(p, _)| *p == identity(f)) {
                synced.push((identity(f), f.sync()));
            }
        }
        // Unsynced frames are cut back, newest first, so they cannot reappear at restart
        // as records nobody was told about (jobs of one stream share its file).
        for w in written.iter().rev() {
            let sync = w.segment.as_ref().and_then(|f| synced.iter().find(|(p, _)| *p == identity(f)));
            if let (Some((_, Err(_))), Some((segment, offset))) = (sync, w.start) {
                w.job.stream.lock().log.rollback(segment, offset);
            }
        }
        for w in written {
            let sync = w.segment.as_ref().and_then(|f| synced.iter().find(|(p, _)| *p == identity(f)));
            let failed = sync.and_then(|(_, r)| r.as_ref().err().cloned());
            publish(&w.job.stream, &w.entries, failed.is_none());
            let _ = match failed {
                None => w.job.reply.send(Ok(w.placements)),
                Some(e) => {
                    tracing::error!(error = %e, "syncing data-stream records failed");
                    w.job.reply.send(Err(DataStreamError::Storage(e)))
                }
            };
        }
    }
}

/// Which segment a job wrote to (jobs of one stream share their newest segment).
fn identity(segment: &Arc<dyn LogSegment>) -> *const () {
    Arc::as_ptr(segment) as *const ()
}

type Appended = (Vec<Placement>, Vec<(u32, IndexEntry)>, Option<Arc<dyn LogSegment>>, Option<(u32, u64)>);

/// Phase one: route, number and append one job's records under its stream's lock.
fn append(job: &Job, clock: &SharedClock, throttled: bool, buf: &mut Vec<u8>) -> Result<Appended, DataStreamError> {
    let mut state = job.stream.lock();
    if state.deleted {
        return Err(DataStreamError::ResourceNotFound(format!("Stream {} was deleted.", state.meta.name)));
    }
    let now = clock.now_ms();
    let arrival = now.max(state.last_arrival_ms);
    state.last_arrival_ms = arrival;
    buf.clear();
    let mut placements = Vec::with_capacity(job.records.len());
    let mut entries = Vec::with_capacity(job.records.len());
    for r in &job.records {
        let hash = r.explicit_hash_key.unwrap_or_else(|| hash_of_partition_key(&r.partition_key));
        let shard = state.meta.shard_map.route(hash);
        let len = frame_len(&r.partition_key, &r.data);
        if throttled && !state.throttles[shard as usize].admit_write(r.data.len() + r.partition_key.len(), now) {
            placements.push(Err(DataStreamError::ProvisionedThroughputExceeded(format!(
                "Rate exceeded for shard {} in stream {}.",
                super::keys::shard_id(shard),
                state.meta.name
            ))));
            continue;
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        // The offset within this append; the segment's base is added once it is known.
        let offset = buf.len() as u64;
        encode_frame(buf, &Frame { shard, seq, arrival_ms: arrival, partition_key: &r.partition_key, data: &r.data });
        placements.push(Ok((shard, seq)));
        entries.push((
            shard,
            IndexEntry { seq, arrival_ms: arrival, at: Location { segment: 0, offset, len: len as u32 } },
        ));
    }
    if entries.is_empty() {
        return Ok((placements, entries, None, None));
    }
    let (segment, base) = state.log.append(buf, arrival).map_err(|e| {
        tracing::error!(stream = %state.meta.name, error = %e, "appending data-stream records failed");
        DataStreamError::Storage(e)
    })?;
    for (shard, e) in entries.iter_mut() {
        e.at.segment = segment;
        e.at.offset += base;
        state.shards[*shard as usize].pending += 1;
    }
    Ok((placements, entries, state.log.active(), Some((segment, base))))
}

/// Phase three: make synced records visible (or just release the pending marks).
fn publish(stream: &StreamHandle, entries: &[(u32, IndexEntry)], visible: bool) {
    if entries.is_empty() {
        return;
    }
    {
        let mut state = stream.lock();
        for (shard, e) in entries {
            let recs = &mut state.shards[*shard as usize];
            recs.pending = recs.pending.saturating_sub(1);
            if visible && recs.entries.back().is_none_or(|last| last.seq < e.seq) {
                recs.entries.push_back(*e);
            }
        }
    }
    stream.notify();
}
