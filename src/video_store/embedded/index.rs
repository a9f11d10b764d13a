//! The fragment index in sled: every entry of every stream in one tree (`fragments`),
//! so that one atomic batch can add a fragment's primary entry, its two time entries
//! and its segment's summary together. A key is a one-byte kind, the stream id, then
//! kind-specific big-endian fields, so that sled's byte order is the order we scan in:
//!
//! | kind | key after stream id                | value                     |
//! |------|------------------------------------|---------------------------|
//! | `F`  | fragment number                    | [`FragmentMeta`]          |
//! | `P`  | producer time (µs), fragment number | empty                     |
//! | `S`  | server time (µs), fragment number   | empty                     |
//! | `G`  | segment id                          | [`SegmentMeta`]           |
//! | `I`  | init id                             | init segment bytes        |
//! | `N`  | (none)                              | [`HighWater`]             |

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::storage_failure::StorageFailure;
use crate::video_store::index::{
    FragmentIndex, IndexCommit, NextNumbers, SegmentChange, TimePosition, UnreadableRecord,
};
use crate::video_store::records::{FragmentMeta, HighWater, SegmentMeta, StreamId};
use crate::video_store::{StoreError, TimeKind};

/// The layout of the index (the key scheme and the fixed records), recorded in the
/// database's default tree and checked at open (see docs/storage.md).
pub const INDEX_FORMAT: u32 = 1;

pub const KIND_FRAGMENT: u8 = b'F';
pub const KIND_PRODUCER_TIME: u8 = b'P';
pub const KIND_SERVER_TIME: u8 = b'S';
pub const KIND_SEGMENT: u8 = b'G';
pub const KIND_INIT: u8 = b'I';
pub const KIND_HIGH_WATER: u8 = b'N';
pub const ALL_KINDS: [u8; 6] =
    [KIND_FRAGMENT, KIND_PRODUCER_TIME, KIND_SERVER_TIME, KIND_SEGMENT, KIND_INIT, KIND_HIGH_WATER];

/// `kind` + stream id: the prefix of every key of one kind for one stream.
pub fn prefix(kind: u8, stream: StreamId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = kind;
    k[1..9].copy_from_slice(&stream.to_be_bytes());
    k
}

pub fn key1(kind: u8, stream: StreamId, a: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&prefix(kind, stream));
    k[9..17].copy_from_slice(&a.to_be_bytes());
    k
}

pub fn key2(kind: u8, stream: StreamId, a: u64, b: u64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..17].copy_from_slice(&key1(kind, stream, a));
    k[17..25].copy_from_slice(&b.to_be_bytes());
    k
}

/// Maps a signed time to an unsigned one with the same order (flips the sign bit).
pub fn time_key(t_us: i64) -> u64 {
    (t_us as u64) ^ (1 << 63)
}

/// Reads the big-endian u64 at `at` in a key; `None` if the key is too short.
pub fn key_u64(key: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fn time_kind(kind: TimeKind) -> u8 {
    match kind {
        TimeKind::Producer => KIND_PRODUCER_TIME,
        TimeKind::Server => KIND_SERVER_TIME,
    }
}

fn failed(what: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |e| StoreError::Storage(StorageFailure::caused(format!("the fragment index (data/index): {what}"), e))
}

fn decode_fragment(v: &[u8]) -> Result<FragmentMeta, StoreError> {
    FragmentMeta::decode(v).ok_or_else(|| StoreError::Corrupt("a fragment entry of the index".into()))
}

/// Adds the removal of a fragment's three entries to `batch`.
fn remove_fragment(batch: &mut sled::Batch, stream: StreamId, m: &FragmentMeta) {
    let n = m.fragment_number;
    batch.remove(&key1(KIND_FRAGMENT, stream, n)[..]);
    batch.remove(&key2(KIND_PRODUCER_TIME, stream, time_key(m.producer_ts_us), n)[..]);
    batch.remove(&key2(KIND_SERVER_TIME, stream, time_key(m.server_ts_us), n)[..]);
}

pub struct SledFragmentIndex {
    db: sled::Db,
    tree: sled::Tree,
}

impl SledFragmentIndex {
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let tree = db.open_tree("fragments").map_err(failed("opening its tree"))?;
        Ok(SledFragmentIndex { db: db.clone(), tree })
    }

    fn high_water(&self, stream: StreamId) -> Result<HighWater, StoreError> {
        Ok(self
            .tree
            .get(prefix(KIND_HIGH_WATER, stream))
            .map_err(failed("reading a high-water mark"))?
            .and_then(|v| HighWater::decode(&v))
            .unwrap_or_default())
    }

    /// The high-water mark raised past `fragment` and `segment`, as a batch insert.
    fn raise_high_water(
        &self,
        batch: &mut sled::Batch,
        stream: StreamId,
        fragment: u64,
        segment: u64,
    ) -> Result<(), StoreError> {
        let mut hw = self.high_water(stream)?;
        hw.fragment_number = hw.fragment_number.max(fragment);
        hw.segment_id = hw.segment_id.max(segment);
        batch.insert(&prefix(KIND_HIGH_WATER, stream)[..], &hw.encode()[..]);
        Ok(())
    }

    fn apply(&self, batch: sled::Batch, what: &'static str) -> Result<(), StoreError> {
        self.tree.apply_batch(batch).map_err(failed(what))
    }
}

impl FragmentIndex for SledFragmentIndex {
    fn commit(&self, commit: &IndexCommit) -> Result<(), StoreError> {
        if commit.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (stream, init_id, bytes) in &commit.inits {
            batch.insert(&key1(KIND_INIT, *stream, u64::from(*init_id))[..], bytes.as_ref());
        }
        for (stream, meta) in &commit.fragments {
            let n = meta.fragment_number;
            batch.insert(&key1(KIND_FRAGMENT, *stream, n)[..], &meta.encode()[..]);
            batch.insert(&key2(KIND_PRODUCER_TIME, *stream, time_key(meta.producer_ts_us), n)[..], &[][..]);
            batch.insert(&key2(KIND_SERVER_TIME, *stream, time_key(meta.server_ts_us), n)[..], &[][..]);
        }
        for (stream, seg) in &commit.segments {
            batch.insert(&key1(KIND_SEGMENT, *stream, seg.segment_id)[..], &seg.encode()[..]);
        }
        self.apply(batch, "committing a group")?;
        self.db.flush().map_err(failed("flushing a group"))?;
        Ok(())
    }

    fn fragment(&self, stream: StreamId, number: u64) -> Result<Option<FragmentMeta>, StoreError> {
        match self.tree.get(key1(KIND_FRAGMENT, stream, number)).map_err(failed("reading a fragment"))? {
            Some(v) => Ok(Some(decode_fragment(&v)?)),
            None => Ok(None),
        }
    }

    fn fragments_from(&self, stream: StreamId, from: u64, limit: usize) -> Result<Vec<FragmentMeta>, StoreError> {
        let start = key1(KIND_FRAGMENT, stream, from);
        let end = key1(KIND_FRAGMENT, stream, u64::MAX);
        self.tree
            .range(start..=end)
            .take(limit)
            .map(|item| decode_fragment(&item.map_err(failed("scanning fragments"))?.1))
            .collect()
    }

    fn last_fragments(&self, stream: StreamId, limit: usize) -> Result<Vec<FragmentMeta>, StoreError> {
        let mut out: Vec<FragmentMeta> = self
            .tree
            .scan_prefix(prefix(KIND_FRAGMENT, stream))
            .rev()
            .take(limit)
            .map(|item| decode_fragment(&item.map_err(failed("scanning fragments"))?.1))
            .collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    fn fragments_by_time(
        &self,
        stream: StreamId,
        kind: TimeKind,
        from: TimePosition,
        to: TimePosition,
        limit: usize,
    ) -> Result<Vec<FragmentMeta>, StoreError> {
        let k = time_kind(kind);
        let start = key2(k, stream, time_key(from.0), from.1);
        let end = key2(k, stream, time_key(to.0), to.1);
        let mut out = Vec::new();
        if start > end || limit == 0 {
            return Ok(out);
        }
        for item in self.tree.range(start..=end) {
            let key = item.map_err(failed("scanning a time range"))?.0;
            let Some(n) = key_u64(&key, 17) else { continue };
            // A time entry without its fragment is being swept: skip it.
            if let Some(meta) = self.fragment(stream, n)? {
                out.push(meta);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn fragment_before(
        &self,
        stream: StreamId,
        kind: TimeKind,
        at: TimePosition,
    ) -> Result<Option<FragmentMeta>, StoreError> {
        let k = time_kind(kind);
        let lo = prefix(k, stream).to_vec();
        let at = key2(k, stream, time_key(at.0), at.1).to_vec();
        for item in self.tree.range(lo..=at).rev() {
            let key = item.map_err(failed("scanning a time range"))?.0;
            let Some(n) = key_u64(&key, 17) else { continue };
            if let Some(meta) = self.fragment(stream, n)? {
                return Ok(Some(meta));
            }
        }
        Ok(None)
    }

    fn init(&self, stream: StreamId, init_id: u32) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .tree
            .get(key1(KIND_INIT, stream, u64::from(init_id)))
            .map_err(failed("reading an init segment"))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn latest_init(&self, stream: StreamId) -> Result<Option<(u32, Bytes)>, StoreError> {
        match self.tree.scan_prefix(prefix(KIND_INIT, stream)).next_back() {
            Some(item) => {
                let (k, v) = item.map_err(failed("reading an init segment"))?;
                let id = key_u64(&k, 9).and_then(|id| u32::try_from(id).ok()).unwrap_or(0);
                Ok(Some((id, Bytes::copy_from_slice(&v))))
            }
            None => Ok(None),
        }
    }

    fn next_numbers(&self, stream: StreamId) -> Result<NextNumbers, StoreError> {
        let newest = |kind: u8| -> Result<u64, StoreError> {
            match self.tree.scan_prefix(prefix(kind, stream)).keys().next_back() {
                Some(k) => Ok(key_u64(&k.map_err(failed("reading the numbering"))?, 9).unwrap_or(0)),
                None => Ok(0),
            }
        };
        let last_fragment = newest(KIND_FRAGMENT)?;
        let last_segment = newest(KIND_SEGMENT)?;
        let hw = self.high_water(stream)?;
        Ok(NextNumbers {
            last_fragment,
            fragment: last_fragment.max(hw.fragment_number) + 1,
            segment: last_segment.max(hw.segment_id) + 1,
        })
    }

    fn segments(&self, stream: StreamId) -> Result<(Vec<SegmentMeta>, Vec<UnreadableRecord>), StoreError> {
        let (mut readable, mut unreadable) = (Vec::new(), Vec::new());
        for item in self.tree.scan_prefix(prefix(KIND_SEGMENT, stream)) {
            let (k, v) = item.map_err(failed("scanning segments"))?;
            match SegmentMeta::decode(&v) {
                Some(seg) => readable.push(seg),
                None => {
                    unreadable.push(UnreadableRecord { key: k.to_vec(), value: v.to_vec(), number: key_u64(&k, 9) })
                }
            }
        }
        Ok((readable, unreadable))
    }

    fn segment_count(&self, stream: StreamId) -> Result<usize, StoreError> {
        Ok(self.tree.scan_prefix(prefix(KIND_SEGMENT, stream)).count())
    }

    fn segment_fragments(
        &self,
        stream: StreamId,
        segment: &SegmentMeta,
    ) -> Result<(Vec<FragmentMeta>, Vec<UnreadableRecord>), StoreError> {
        let from = key1(KIND_FRAGMENT, stream, segment.first_fragment);
        let to = key1(KIND_FRAGMENT, stream, segment.last_fragment);
        let (mut held, mut unreadable) = (Vec::new(), Vec::new());
        for item in self.tree.range(from..=to) {
            let (k, v) = item.map_err(failed("scanning a segment's fragments"))?;
            match FragmentMeta::decode(&v) {
                Some(m) if m.segment_id == segment.segment_id => held.push(m),
                Some(_) => {}
                None => {
                    unreadable.push(UnreadableRecord { key: k.to_vec(), value: v.to_vec(), number: key_u64(&k, 9) })
                }
            }
        }
        Ok((held, unreadable))
    }

    fn remove_segments(&self, stream: StreamId, segments: &[SegmentMeta]) -> Result<u64, StoreError> {
        if segments.is_empty() {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let (mut top_fragment, mut top_segment) = (0, 0);
        for seg in segments {
            let from = key1(KIND_FRAGMENT, stream, seg.first_fragment);
            let to = key1(KIND_FRAGMENT, stream, seg.last_fragment);
            for item in self.tree.range(from..=to) {
                let (k, v) = item.map_err(failed("scanning a segment's fragments"))?;
                match FragmentMeta::decode(&v) {
                    Some(m) => {
                        remove_fragment(&mut batch, stream, &m);
                        removed += 1;
                    }
                    None => batch.remove(k),
                }
            }
            batch.remove(&key1(KIND_SEGMENT, stream, seg.segment_id)[..]);
            top_fragment = top_fragment.max(seg.last_fragment);
            top_segment = top_segment.max(seg.segment_id);
        }
        self.raise_high_water(&mut batch, stream, top_fragment, top_segment)?;
        self.apply(batch, "removing segments")?;
        self.db.flush().map_err(failed("flushing a removal"))?;
        Ok(removed)
    }

    fn drop_fragments(
        &self,
        stream: StreamId,
        segment_id: u64,
        dropped: &[FragmentMeta],
        change: SegmentChange,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for m in dropped {
            remove_fragment(&mut batch, stream, m);
        }
        let seg_key = key1(KIND_SEGMENT, stream, segment_id);
        match change {
            SegmentChange::Keep(seg) => batch.insert(&seg_key[..], &seg.encode()[..]),
            SegmentChange::Remove => batch.remove(&seg_key[..]),
        }
        let top = dropped.iter().map(|m| m.fragment_number).max().unwrap_or(0);
        self.raise_high_water(&mut batch, stream, top, segment_id)?;
        self.apply(batch, "dropping fragments")
    }

    fn remove_stream(&self, stream: StreamId) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for kind in ALL_KINDS {
            for key in self.tree.scan_prefix(prefix(kind, stream)).keys() {
                batch.remove(key.map_err(failed("scanning a stream"))?);
            }
        }
        self.apply(batch, "removing a stream")?;
        self.db.flush().map_err(failed("flushing a removal"))?;
        Ok(())
    }

    fn streams(&self) -> Result<BTreeSet<StreamId>, StoreError> {
        let mut out = BTreeSet::new();
        for key in self.tree.iter().keys() {
            if let Some(s) = key_u64(&key.map_err(failed("listing streams"))?, 1) {
                out.insert(s);
            }
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(failed("flushing"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_keep_order_across_zero() {
        let ts = [-2_000_000i64, -1, 0, 1, 1_700_000_000_000_000];
        for w in ts.windows(2) {
            assert!(time_key(w[0]) < time_key(w[1]));
            assert!(key2(b'P', 1, time_key(w[0]), 9) < key2(b'P', 1, time_key(w[1]), 0));
        }
    }

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::video_store::index::conformance::run_index(|| {
            let db = crate::embedded::sled_db::open(dir.path(), 500).unwrap();
            SledFragmentIndex::open(&db).unwrap()
        });
    }
}
