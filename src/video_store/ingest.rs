//! Ingest: each stream's live state (created on first use), init segments, and
//! fragments submitted to the writer thread.
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::live::{NextFragment, LIVE_FRAMES};
use super::*;

impl VideoStore {
    pub(super) fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Arc<LiveStream>>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live state of a stream, loaded from the index on first use.
    pub fn live(&self, stream: StreamId) -> Result<Arc<LiveStream>, StoreError> {
        if let Some(l) = self.live_map().get(&stream) {
            return Ok(l.clone());
        }
        let numbers = self.inner.index.next_numbers(stream)?;
        let init = self.inner.index.latest_init(stream)?;
        let live = Arc::new(LiveStream {
            id: stream,
            next_fragment: tokio::sync::Mutex::new(NextFragment { number: numbers.fragment, deleted: false }),
            edge: watch::Sender::new(LiveEdge { last_persisted: numbers.last_fragment, deleted: false }),
            init: tokio::sync::Mutex::new(init),
            frames: tokio::sync::broadcast::channel(LIVE_FRAMES).0,
            parts: Mutex::new(LiveParts::default()),
            parts_changed: watch::Sender::new(0),
            next_number: std::sync::atomic::AtomicU64::new(numbers.fragment),
        });
        Ok(self.live_map().entry(stream).or_insert(live).clone())
    }

    pub(super) async fn send(&self, cmd: WriterCmd) -> Result<(), StoreError> {
        self.inner.writer.send(cmd).await.map_err(|_| StoreError::ShuttingDown)
    }

    /// Records an init segment; returns its id (the current one if the bytes are the
    /// same as the stream's latest init). Durable when this returns.
    pub async fn put_init(&self, stream: StreamId, bytes: Bytes) -> Result<u32, StoreError> {
        let live = self.live(stream)?;
        let mut current = live.init.lock().await;
        if let Some((id, b)) = current.as_ref() {
            if *b == bytes {
                return Ok(*id);
            }
        }
        self.inner.config.disk.check(bytes.len() as u64)?;
        let id = current.as_ref().map_or(1, |(id, _)| id + 1);
        let (reply, rx) = oneshot::channel();
        self.send(WriterCmd::PutInit(writer::InitRequest { stream, init_id: id, bytes: bytes.clone(), reply })).await?;
        rx.await.map_err(|_| StoreError::ShuttingDown)??;
        *current = Some((id, bytes));
        Ok(id)
    }

    /// Numbers a fragment and queues it for the writer. Fragments of one stream are
    /// numbered and written in the order this is called.
    pub async fn submit_fragment(
        &self,
        record: &StreamRecord,
        fragment: NewFragment,
    ) -> Result<PendingFragment, StoreError> {
        let size: usize = fragment.chunks.iter().map(Bytes::len).sum();
        // Refused before the disk fills (see `disk_space`), not when a write fails.
        self.inner.config.disk.check(size as u64 + FRAGMENT_OVERHEAD_BYTES)?;
        // Room in the in-flight budget first (a fragment larger than the whole budget
        // takes all of it): a disk slower than the producers holds them back instead of
        // queueing unbounded memory.
        let want = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.inner.inflight_kib_total);
        let budget =
            self.inner.inflight_kib.clone().acquire_many_owned(want).await.map_err(|_| StoreError::ShuttingDown)?;
        let live = self.live(record.id)?;
        let mut next = live.next_fragment.lock().await;
        if next.deleted {
            return Err(StoreError::StreamNotFound(record.name.clone()));
        }
        let fragment_number = next.number;
        let (reply, persisted) = oneshot::channel();
        // Timestamps travel at millisecond precision; storing them so makes a time a
        // client read from ListFragments find the very fragment it came from.
        let req = AppendRequest {
            stream: record.id,
            fragment_number,
            producer_ts_us: fragment.producer_ts_us.div_euclid(1000) * 1000,
            server_ts_us: fragment.server_ts_us.div_euclid(1000) * 1000,
            duration_us: fragment.duration_us,
            init_id: fragment.init_id,
            flags: if fragment.keyframe { records::FLAG_KEYFRAME } else { 0 },
            chunk_count: fragment.chunks.len().min(usize::from(u16::MAX)) as u16,
            chunks: fragment.chunks,
            segment_max_age_us: self.inner.config.segment_age_for(record),
            live: live.clone(),
            reply,
            _budget: budget,
        };
        self.send(WriterCmd::Append(req)).await?;
        next.number += 1;
        live.next_number.store(next.number, std::sync::atomic::Ordering::Release);
        Ok(PendingFragment { fragment_number, persisted })
    }
}
