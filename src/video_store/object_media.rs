//! [`MediaStore`] in an S3-compatible object store (through `object_store`): the
//! fragment bytes of a deployment whose nodes share a bucket, the first piece of the
//! cluster backend.
//!
//! One object per fragment, `PREFIX/STREAM/SEGMENT/FRAGMENT` (each number 16 hex
//! digits, so listings sort by number). An object PUT is atomic, so a fragment's bytes
//! are either whole or absent; a group's PUTs go out together and `append` answers once
//! each has finished (durable, as S3 acknowledges), the placements of the fragments up
//! to the first that failed. A segment is a run of one stream's fragments under one
//! prefix, grown by this writer while younger than the stream's segment age (the open
//! segment's summary lives in this process: after a restart a stream starts a new
//! one); its removal deletes its prefix. A placement's offset is the fragment's byte
//! position in its segment (what the index and its summaries count); reads go by
//! fragment number.
//!
//! The trait is synchronous (the store's writer thread calls it); the requests run on
//! the runtime this store is given, and the calling thread waits for them.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use super::media::{MediaStore, Placement, SegmentCheck, StreamAppend, StreamAppended};
use super::records::{FragmentMeta, SegmentMeta, StreamId};
use super::StoreError;
use crate::storage_failure::StorageFailure;

/// Fragment PUTs of one group in flight at once.
const PUTS_IN_FLIGHT: usize = 16;

/// Fragment bytes as objects (see the module docs).
pub struct ObjectMedia {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: tokio::runtime::Handle,
    /// Each stream's open segment, as it stands.
    open: Mutex<HashMap<StreamId, SegmentMeta>>,
}

impl std::fmt::Debug for ObjectMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectMedia").field("store", &self.store.to_string()).field("prefix", &self.prefix).finish()
    }
}

fn failure(context: impl Into<String>, e: object_store::Error) -> StoreError {
    StoreError::Storage(StorageFailure::caused(context, e))
}

impl ObjectMedia {
    /// Fragments under `prefix` (no leading or trailing `/`) of `store`; requests run
    /// on `runtime`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, runtime: tokio::runtime::Handle) -> Self {
        ObjectMedia { store, prefix: prefix.trim_matches('/').to_string(), runtime, open: Mutex::new(HashMap::new()) }
    }

    fn stream_prefix(&self, stream: StreamId) -> Path {
        Path::from(format!("{}/{stream:016x}", self.prefix))
    }

    fn segment_prefix(&self, stream: StreamId, segment: u64) -> Path {
        Path::from(format!("{}/{stream:016x}/{segment:016x}", self.prefix))
    }

    fn fragment_path(&self, stream: StreamId, segment: u64, fragment: u64) -> Path {
        Path::from(format!("{}/{stream:016x}/{segment:016x}/{fragment:016x}", self.prefix))
    }

    /// Runs `fut` on the store's runtime and waits for it (`blocking::wait_on`; the
    /// runtime must not be one whose workers call this store).
    fn wait<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T, StoreError> {
        crate::blocking::wait_on(&self.runtime, fut).ok_or(StoreError::ShuttingDown)
    }

    fn open_segments(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, SegmentMeta>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (fragment number, size) of every object under a segment, by number.
    fn segment_objects(&self, stream: StreamId, segment: u64) -> Result<Vec<(u64, u64, Path)>, StoreError> {
        let (store, prefix) = (self.store.clone(), self.segment_prefix(stream, segment));
        let metas = self.wait(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })?;
        let metas = metas.map_err(|e| failure("list a media segment", e))?;
        let mut out: Vec<(u64, u64, Path)> = metas
            .into_iter()
            .filter_map(|m| {
                let n = u64::from_str_radix(m.location.filename()?, 16).ok()?;
                Some((n, m.size, m.location))
            })
            .collect();
        out.sort_by_key(|(n, _, _)| *n);
        Ok(out)
    }

    fn delete_prefix(&self, prefix: Path, context: &'static str) -> Result<(), StoreError> {
        let store = self.store.clone();
        let done = self.wait(async move {
            let locations = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
            store.delete_stream(locations).try_collect::<Vec<_>>().await
        })?;
        done.map(|_| ()).map_err(|e| failure(context, e))
    }
}

impl MediaStore for ObjectMedia {
    fn append(&self, group: Vec<StreamAppend>) -> Vec<StreamAppended> {
        // Every stream's objects of the group go out together.
        let mut plans = Vec::with_capacity(group.len());
        let mut puts = Vec::new();
        {
            let open = self.open_segments();
            for (i, a) in group.iter().enumerate() {
                let first_ts = a.fragments.first().map_or(0, |f| f.server_ts_us);
                let segment = match open.get(&a.stream) {
                    Some(s) if first_ts.saturating_sub(s.created_us) < a.segment_max_age_us => *s,
                    _ => SegmentMeta {
                        segment_id: a.next_segment_id,
                        first_fragment: a.fragments.first().map_or(0, |f| f.fragment_number),
                        last_fragment: 0,
                        fragment_count: 0,
                        min_server_ts_us: first_ts,
                        max_server_ts_us: first_ts,
                        created_us: first_ts,
                        bytes: 0,
                    },
                };
                let mut offset = segment.bytes;
                let mut placements = Vec::with_capacity(a.fragments.len());
                for (j, f) in a.fragments.iter().enumerate() {
                    // The chunks go out as they are (no copy into one buffer).
                    let mut crc = crc32fast::Hasher::new();
                    let mut len = 0usize;
                    for c in &f.chunks {
                        crc.update(c);
                        len += c.len();
                    }
                    let len = u32::try_from(len).unwrap_or(u32::MAX);
                    placements.push(Placement { segment_id: segment.segment_id, offset, len, crc: crc.finalize() });
                    offset += u64::from(len);
                    let path = self.fragment_path(a.stream, segment.segment_id, f.fragment_number);
                    puts.push(((i, j), path, f.chunks.iter().cloned().collect::<PutPayload>()));
                }
                plans.push((segment, placements));
            }
        }
        let store = self.store.clone();
        let results = self.wait(async move {
            futures_util::stream::iter(puts)
                .map(|(at, path, payload)| {
                    let store = store.clone();
                    async move {
                        let r = store.put_opts(&path, payload, PutOptions::default()).await;
                        (at, r.map(|_| ()))
                    }
                })
                .buffer_unordered(PUTS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        });
        let mut failed: HashMap<(usize, usize), StoreError> = HashMap::new();
        match results {
            Ok(rs) => {
                for (at, r) in rs {
                    if let Err(e) = r {
                        failed.insert(at, failure("write a fragment object", e));
                    }
                }
            }
            Err(e) => {
                for (i, a) in group.iter().enumerate() {
                    for j in 0..a.fragments.len() {
                        failed.insert((i, j), StoreError::Storage(StorageFailure::new(e.to_string())));
                    }
                }
            }
        }
        let mut open = self.open_segments();
        let mut out = Vec::with_capacity(group.len());
        for (i, (a, (mut segment, placements))) in group.iter().zip(plans).enumerate() {
            // Durable: the fragments before the first that failed (a later one's bytes
            // may be there, but the index is not told of them: recovery removes them).
            let mut answers = Vec::with_capacity(placements.len());
            let mut broken = false;
            for (j, (f, p)) in a.fragments.iter().zip(placements).enumerate() {
                if broken {
                    answers.push(Err(StoreError::Storage(StorageFailure::new(
                        "an earlier fragment of the group was not written",
                    ))));
                    continue;
                }
                if let Some(e) = failed.remove(&(i, j)) {
                    broken = true;
                    answers.push(Err(e));
                    continue;
                }
                if segment.fragment_count == 0 {
                    segment.first_fragment = f.fragment_number;
                    segment.min_server_ts_us = f.server_ts_us;
                    segment.max_server_ts_us = f.server_ts_us;
                }
                segment.last_fragment = f.fragment_number;
                segment.fragment_count += 1;
                segment.min_server_ts_us = segment.min_server_ts_us.min(f.server_ts_us);
                segment.max_server_ts_us = segment.max_server_ts_us.max(f.server_ts_us);
                segment.bytes = p.offset + u64::from(p.len);
                answers.push(Ok(p));
            }
            let wrote = answers.iter().any(Result::is_ok);
            if segment.fragment_count > 0 {
                open.insert(a.stream, segment);
            }
            out.push(StreamAppended { placements: answers, segment: wrote.then_some(segment) });
        }
        out
    }

    fn read(&self, stream: StreamId, fragment: &FragmentMeta) -> Result<Bytes, StoreError> {
        let (store, path) =
            (self.store.clone(), self.fragment_path(stream, fragment.segment_id, fragment.fragment_number));
        let got = self.wait(async move {
            match store.get_opts(&path, GetOptions::default()).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            }
        })?;
        match got {
            Ok(bytes) => Ok(bytes),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::FragmentNotFound(fragment.fragment_number)),
            Err(e) => Err(failure("read a fragment object", e)),
        }
    }

    fn remove_segments(&self, stream: StreamId, segment_ids: &[u64]) -> Result<(), StoreError> {
        {
            let mut open = self.open_segments();
            if open.get(&stream).is_some_and(|s| segment_ids.contains(&s.segment_id)) {
                open.remove(&stream);
            }
        }
        for &id in segment_ids {
            self.delete_prefix(self.segment_prefix(stream, id), "remove a media segment")?;
        }
        Ok(())
    }

    fn remove_stream(&self, stream: StreamId) -> Result<(), StoreError> {
        self.open_segments().remove(&stream);
        self.delete_prefix(self.stream_prefix(stream), "remove a stream's media")
    }

    fn whole_when_stored(&self) -> bool {
        true
    }

    fn stored(&self) -> Result<BTreeMap<StreamId, Vec<u64>>, StoreError> {
        let (store, prefix) = (self.store.clone(), Path::from(self.prefix.as_str()));
        let metas = self.wait(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })?;
        let metas = metas.map_err(|e| failure("list the media objects", e))?;
        let depth = Path::from(self.prefix.as_str()).parts().count();
        let mut out: BTreeMap<StreamId, Vec<u64>> = BTreeMap::new();
        for m in metas {
            let parts: Vec<String> = m.location.parts().skip(depth).map(|p| p.as_ref().to_string()).collect();
            let [stream, segment, _fragment] = parts.as_slice() else { continue };
            let (Ok(stream), Ok(segment)) = (u64::from_str_radix(stream, 16), u64::from_str_radix(segment, 16)) else {
                continue;
            };
            let segments = out.entry(stream).or_default();
            if segments.last() != Some(&segment) {
                segments.push(segment);
            }
        }
        for segments in out.values_mut() {
            segments.sort_unstable();
            segments.dedup();
        }
        Ok(out)
    }

    fn check_segment(
        &self,
        stream: StreamId,
        segment_id: u64,
        fragments: &[FragmentMeta],
    ) -> Result<SegmentCheck, StoreError> {
        let objects = self.segment_objects(stream, segment_id)?;
        if objects.is_empty() {
            return Ok(SegmentCheck::Missing);
        }
        // From the end back: the last listed fragment whose object holds its bytes.
        let mut whole = 0;
        for (i, f) in fragments.iter().enumerate().rev() {
            if !objects.iter().any(|(n, size, _)| *n == f.fragment_number && *size == u64::from(f.len)) {
                continue;
            }
            match self.read(stream, f) {
                Ok(bytes) if crc32fast::hash(&bytes) == f.crc => {
                    whole = i + 1;
                    break;
                }
                Ok(_) | Err(StoreError::FragmentNotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        // Everything after it goes: listed fragments that are not whole, and objects
        // the index was never told of.
        let keep_through = whole.checked_sub(1).map(|i| fragments[i].fragment_number);
        let mut trimmed_bytes = 0;
        for (n, size, path) in objects {
            if keep_through.is_some_and(|k| n <= k) {
                continue;
            }
            let store = self.store.clone();
            match self.wait(async move { store.delete(&path).await })? {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => trimmed_bytes += size,
                Err(e) => return Err(failure("cut off a media segment's tail", e)),
            }
        }
        Ok(SegmentCheck::Present { whole, trimmed_bytes })
    }
}
