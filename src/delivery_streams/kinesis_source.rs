//! KinesisStreamAsSource: a task per such delivery stream that reads its data stream
//! through the data-stream engine's API (no HTTP hop) and appends what it reads to the
//! delivery stream's backlog.
//!
//! Each shard is read from where the previous read stopped: after its checkpoint (the
//! last sequence number appended and synced to the backlog, kept in the metadata
//! store), or, for a shard never read, from the delivery stream's creation time
//! (records put before the delivery stream existed are not delivered, as in AWS). The
//! checkpoint is written after the backlog sync: a crash in between reads the records
//! again (at least once). A closed shard read to its end is marked done; its children
//! are found on the next look at the stream's shards. While the backlog is full,
//! reading pauses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{lock, read, Inner, LiveStream};
use crate::data_streams::keys::shard_id;
use crate::data_streams::{DataStreamEngine, DataStreamError, DataStreamId, StartingPosition};
use crate::storage_failure::StorageFailure;

/// How often shards with nothing new are read again.
const POLL: Duration = Duration::from_millis(200);
/// Records per read.
const READ_LIMIT: u32 = 10_000;

pub(super) async fn run(
    inner: Arc<Inner>,
    live: Arc<LiveStream>,
    data_streams: DataStreamEngine,
    source: DataStreamId,
    mut stopped: watch::Receiver<bool>,
) {
    let (uid, name, since_ms) = {
        let m = read(&live.meta);
        (m.uid, m.name.clone(), m.created_ms)
    };
    let mut iterators: HashMap<String, String> = HashMap::new();
    let mut warned = false;
    loop {
        if *stopped.borrow() {
            return;
        }
        let mut read_any = false;
        match data_streams.describe(&source) {
            Err(e) => {
                if !warned {
                    tracing::warn!(stream = %name, source = %source, error = %e, "the source data stream cannot be read; retrying");
                    warned = true;
                }
                iterators.clear();
            }
            Ok(view) => {
                warned = false;
                for shard in &view.shards {
                    let shard = shard_id(shard.index);
                    match read_shard(&inner, &live, &data_streams, &source, uid, &shard, since_ms, &mut iterators).await
                    {
                        Ok(n) => read_any |= n > 0,
                        Err(e) => {
                            tracing::warn!(stream = %name, shard = %shard, error = %e, "reading the source shard failed; retrying");
                            iterators.remove(&shard);
                        }
                    }
                }
            }
        }
        if !read_any {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => {}
            }
        }
    }
}

/// Why reading a shard into the backlog failed (it is tried again on the next pass).
#[derive(Debug, thiserror::Error)]
enum ReadFailure {
    #[error("the source checkpoint: {0}")]
    Checkpoint(#[source] StorageFailure),
    #[error("the source data stream: {0}")]
    DataStream(#[from] DataStreamError),
    #[error("the backlog could not take the records: {0}")]
    Backlog(#[source] StorageFailure),
    #[error("the backlog is full")]
    BacklogFull,
    #[error("the backlog append stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Reads one batch of a shard into the backlog; returns how many records it took.
#[allow(clippy::too_many_arguments)]
async fn read_shard(
    inner: &Inner,
    live: &Arc<LiveStream>,
    data_streams: &DataStreamEngine,
    source: &DataStreamId,
    uid: u64,
    shard: &str,
    since_ms: i64,
    iterators: &mut HashMap<String, String>,
) -> Result<usize, ReadFailure> {
    let checkpoint = inner.meta.source_checkpoint(uid, shard).map_err(ReadFailure::Checkpoint)?;
    if checkpoint.as_deref() == Some(super::meta_store::SHARD_DONE) {
        return Ok(0);
    }
    {
        let b = lock(&live.backlog);
        if b.len() >= inner.options.max_backlog_records || b.queued_bytes() >= inner.options.max_backlog_bytes {
            return Ok(0);
        }
    }
    let iterator = match iterators.get(shard) {
        Some(it) => it.clone(),
        None => {
            let start = match &checkpoint {
                Some(seq) => StartingPosition::AfterSequence(seq.clone()),
                None => StartingPosition::AtTimestamp(since_ms),
            };
            data_streams.get_shard_iterator(source, shard, start)?
        }
    };
    let out = data_streams.get_records(&iterator, Some(READ_LIMIT)).await?;
    let n = out.records.len();
    if let Some(last) = out.records.last().map(|r| r.sequence_number.clone()) {
        // As Firehose does with a Kinesis source: KPL-aggregated records are split into
        // the user records they carry.
        let mut data: Vec<Vec<u8>> = Vec::with_capacity(out.records.len());
        for r in out.records {
            match crate::wire::kpl::deaggregate(&r.data) {
                Some(user) => data.extend(user.into_iter().map(<[u8]>::to_vec)),
                None => data.push(r.data),
            }
        }
        let n = data.len();
        let bytes: usize = data.iter().map(Vec::len).sum();
        let now = inner.clock.now_ms();
        let target = live.clone();
        // Paused above while full, so no limit here: what was read is taken.
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            target.append(&refs, now, (usize::MAX, u64::MAX))
        })
        .await?
        .map_err(|e| match e {
            super::Refused::Storage(e) => ReadFailure::Backlog(e),
            super::Refused::Full { .. } => ReadFailure::BacklogFull,
        })?;
        if let Some(m) = &inner.options.metrics {
            m.count_delivery("incoming", n as u64, bytes as u64);
        }
        inner.meta.set_source_checkpoint(uid, shard, &last).map_err(ReadFailure::Checkpoint)?;
    }
    match out.next_iterator {
        Some(next) => {
            iterators.insert(shard.to_string(), next);
        }
        None => {
            inner
                .meta
                .set_source_checkpoint(uid, shard, super::meta_store::SHARD_DONE)
                .map_err(ReadFailure::Checkpoint)?;
            iterators.remove(shard);
        }
    }
    Ok(n)
}
