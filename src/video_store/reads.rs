//! Reads: index scans (by number, by time, ranges) and fragment bytes (from the
//! recently-read cache, else the media store), checked against their CRC.

use bytes::Bytes;

use super::*;

/// Fragments younger than this are assumed to be in the page cache (see
/// [`VideoStore::read_fragment`]).
const HOT_FRAGMENT_AGE_US: i64 = 5 * 60 * 1_000_000;

impl VideoStore {
    pub fn fragment(&self, stream: StreamId, number: u64) -> Result<Option<FragmentMeta>, StoreError> {
        self.inner.index.fragment(stream, number)
    }

    /// Up to `limit` fragments numbered `from` or later, in number order.
    pub fn fragments_from(&self, stream: StreamId, from: u64, limit: usize) -> Result<Vec<FragmentMeta>, StoreError> {
        self.inner.index.fragments_from(stream, from, limit)
    }

    pub fn first_fragment(&self, stream: StreamId) -> Result<Option<FragmentMeta>, StoreError> {
        Ok(self.fragments_from(stream, 0, 1)?.into_iter().next())
    }

    pub fn last_fragment(&self, stream: StreamId) -> Result<Option<FragmentMeta>, StoreError> {
        Ok(self.last_fragments(stream, 1)?.pop())
    }

    /// The newest `limit` fragments, oldest first.
    pub fn last_fragments(&self, stream: StreamId, limit: usize) -> Result<Vec<FragmentMeta>, StoreError> {
        self.inner.index.last_fragments(stream, limit)
    }

    /// Fragments whose `kind` start time is in `[start_us, end_us]`, in time order,
    /// after the position `after` (time, fragment number) when given.
    pub fn fragments_in_range(
        &self,
        stream: StreamId,
        kind: TimeKind,
        start_us: i64,
        end_us: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<FragmentMeta>, StoreError> {
        let from = match after {
            Some((t, n)) if n == u64::MAX => (t.saturating_add(1), 0),
            Some((t, n)) => (t, n + 1),
            None => (start_us, 0),
        };
        self.inner.index.fragments_by_time(stream, kind, from, (end_us, u64::MAX), limit)
    }

    /// The fragment that contains time `t_us`, else the first that starts after it.
    pub fn fragment_at(&self, stream: StreamId, kind: TimeKind, t_us: i64) -> Result<Option<FragmentMeta>, StoreError> {
        if let Some(meta) = self.inner.index.fragment_before(stream, kind, (t_us, u64::MAX))? {
            if meta.start_us(kind) + meta.duration_us > t_us {
                return Ok(Some(meta));
            }
        }
        Ok(self.fragments_in_range(stream, kind, t_us, i64::MAX, None, 1)?.into_iter().next())
    }

    /// The fragment holding the time `t_us` on the `kind` clock, or none (a gap). API
    /// timestamps have millisecond precision and fragment starts microseconds, so a time
    /// less than a millisecond before a fragment's start asks for that fragment.
    pub fn fragment_holding(
        &self,
        stream: StreamId,
        kind: TimeKind,
        t_us: i64,
    ) -> Result<Option<FragmentMeta>, StoreError> {
        const TIMESTAMP_PRECISION_US: i64 = 1_000;
        Ok(self.fragment_at(stream, kind, t_us)?.filter(|m| m.start_us(kind) - TIMESTAMP_PRECISION_US <= t_us))
    }

    /// The bytes of a stored fragment: one positioned read.
    ///
    /// A fragment stored in the last few minutes is read on the calling task: it sits
    /// in the page cache, and a hand-off to a blocking thread costs more than the copy
    /// (bench/serve_segments.sh on a 2-vCPU VM: 0.50-0.58 of nginx's rate with the
    /// hand-off, 0.67-1.18 over four runs without). Older fragments may need the disk,
    /// so they go to a blocking thread rather than stall a runtime worker.
    pub async fn read_fragment(&self, stream: StreamId, meta: &FragmentMeta) -> Result<Bytes, StoreError> {
        if let Some(b) = self.inner.recent.get(stream, meta.fragment_number) {
            return Ok(b);
        }
        if self.inner.clock.now_us().saturating_sub(meta.server_ts_us) < HOT_FRAGMENT_AGE_US {
            // Live readers come in crowds: the next ones get these very bytes.
            let b = self.read_fragment_now(stream, meta)?;
            self.inner.recent.insert(stream, meta.fragment_number, b.clone());
            return Ok(b);
        }
        let store = self.clone();
        let meta = *meta;
        tokio::task::spawn_blocking(move || store.read_fragment_now(stream, &meta))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }

    pub(super) fn read_fragment_now(&self, stream: StreamId, meta: &FragmentMeta) -> Result<Bytes, StoreError> {
        let buf = self.inner.media.read(stream, meta)?;
        // Bytes that rotted on disk are never served as media.
        if crc32fast::hash(&buf) != meta.crc {
            tracing::error!(
                stream,
                fragment = meta.fragment_number,
                segment = meta.segment_id,
                "fragment fails its CRC"
            );
            return Err(StoreError::Corrupt(format!("fragment {} fails its CRC", meta.fragment_number)));
        }
        Ok(buf)
    }

    pub fn init_segment(&self, stream: StreamId, init_id: u32) -> Result<Option<Bytes>, StoreError> {
        self.inner.index.init(stream, init_id)
    }

    /// Counts of what is stored, for metrics and tests.
    pub fn segment_count(&self, stream: StreamId) -> usize {
        self.inner.index.segment_count(stream).unwrap_or(0)
    }
}
