//! Stored fragments out as one fragmented-MP4 byte stream: GetMedia's follower and
//! GetMediaForFragmentList's fixed list.
//!
//! The stream is an init segment, then for each fragment a metadata box and the
//! fragment's bytes as stored; a fragment whose init differs from the last one sent is
//! preceded by its init. The metadata box is a top-level `uuid` box (players skip it)
//! holding JSON: where Kinesis Video puts MKV tags (fragment number, timestamps,
//! continuation token, millis behind now, errors), we put the same names here.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::watch;

use crate::video_store::{FragmentMeta, LiveEdge, StoreError, StreamId, VideoStore};
use crate::wire::bmff;

/// The user type of Kinescope's metadata `uuid` boxes: the ASCII of "kinescope-meta01".
pub const METADATA_UUID: [u8; 16] = *b"kinescope-meta01";

/// Fragments read from the index per step.
const BATCH: usize = 16;

/// A metadata box for one fragment.
pub fn metadata_box(meta: &FragmentMeta, now_us: i64) -> Bytes {
    let n = meta.fragment_number.to_string();
    let payload = json!({
        "AWS_KINESISVIDEO_FRAGMENT_NUMBER": n,
        "AWS_KINESISVIDEO_SERVER_TIMESTAMP": meta.server_ts_us as f64 / 1e6,
        "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP": meta.producer_ts_us as f64 / 1e6,
        "AWS_KINESISVIDEO_CONTINUATION_TOKEN": n,
        "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW": ((now_us - meta.server_ts_us) / 1000).max(0),
    });
    let mut out = Vec::new();
    bmff::write_uuid_box(&mut out, &METADATA_UUID, payload.to_string().as_bytes());
    Bytes::from(out)
}

/// A metadata box that reports an error instead of a fragment.
pub fn error_box(fragment_number: u64, error_id: u32, code: &str) -> Bytes {
    let payload = json!({
        "AWS_KINESISVIDEO_FRAGMENT_NUMBER": fragment_number.to_string(),
        "AWS_KINESISVIDEO_ERROR_ID": error_id,
        "AWS_KINESISVIDEO_ERROR_CODE": code,
    });
    let mut out = Vec::new();
    bmff::write_uuid_box(&mut out, &METADATA_UUID, payload.to_string().as_bytes());
    Bytes::from(out)
}

/// Where a GetMedia starts, resolved against the index at request time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAt {
    /// The first fragment number to send (fragments are sent from here in number order).
    pub fragment_number: u64,
}

/// Serialises fragments one after another, sending each init segment when it changes.
struct Writer {
    store: VideoStore,
    stream: StreamId,
    current_init: Option<u32>,
    out: VecDeque<Bytes>,
}

impl Writer {
    async fn push_fragment(&mut self, meta: &FragmentMeta) -> Result<(), StoreError> {
        let bytes = match self.store.read_fragment(self.stream, meta).await {
            Ok(b) => b,
            Err(StoreError::FragmentNotFound(n)) => {
                // Swept between the index read and the file read.
                self.out.push_back(error_box(n, 4000, "requested fragment not found"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.current_init != Some(meta.init_id) {
            let init = self.store.init_segment(self.stream, meta.init_id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("init {} of fragment {} is missing", meta.init_id, meta.fragment_number))
            })?;
            self.out.push_back(init);
            self.current_init = Some(meta.init_id);
        }
        self.out.push_back(metadata_box(meta, self.store.clock().now_us()));
        self.out.push_back(bytes);
        Ok(())
    }
}

struct Follow {
    writer: Writer,
    next: u64,
    edge: watch::Receiver<LiveEdge>,
    done: bool,
}

/// Streams fragments from `start` on, then follows the live edge until the stream is
/// deleted or the returned stream is dropped (the client went away).
pub fn follow(
    store: VideoStore,
    stream: StreamId,
    start: StartAt,
) -> Result<impl Stream<Item = Bytes> + Send, StoreError> {
    let edge = store.live(stream)?.subscribe();
    let state = Follow {
        writer: Writer { store, stream, current_init: None, out: VecDeque::new() },
        next: start.fragment_number,
        edge,
        done: false,
    };
    Ok(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(b) = s.writer.out.pop_front() {
                return Some((b, s));
            }
            if s.done {
                return None;
            }
            // Mark the edge seen before reading the index, so a fragment persisted in
            // between wakes the wait below.
            let edge = *s.edge.borrow_and_update();
            if edge.deleted {
                return None;
            }
            let batch = match s.writer.store.fragments_from(s.writer.stream, s.next, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "GetMedia index read failed");
                    s.writer.out.push_back(error_box(s.next, 5000, "internal error"));
                    s.done = true;
                    continue;
                }
            };
            if batch.is_empty() {
                if s.edge.changed().await.is_err() {
                    return None;
                }
                continue;
            }
            for meta in &batch {
                s.next = meta.fragment_number + 1;
                if let Err(e) = s.writer.push_fragment(meta).await {
                    tracing::error!(error = %e, fragment = meta.fragment_number, "GetMedia read failed");
                    s.writer.out.push_back(error_box(meta.fragment_number, 5000, "internal error"));
                }
            }
        }
    }))
}

/// Streams exactly the given fragments, in the given order.
pub fn fragment_list(
    store: VideoStore,
    stream: StreamId,
    fragments: Vec<FragmentMeta>,
) -> impl Stream<Item = Bytes> + Send {
    let writer = Writer { store, stream, current_init: None, out: VecDeque::new() };
    futures_util::stream::unfold((writer, fragments.into_iter()), |(mut w, mut it)| async move {
        loop {
            if let Some(b) = w.out.pop_front() {
                return Some((b, (w, it)));
            }
            let meta = it.next()?;
            if let Err(e) = w.push_fragment(&meta).await {
                tracing::error!(error = %e, fragment = meta.fragment_number, "GetMediaForFragmentList read failed");
                w.out.push_back(error_box(meta.fragment_number, 5000, "internal error"));
            }
        }
    })
}
