//! The fragments' bytes, behind [`MediaStore`]: the store's only way to them.
//!
//! Fragments are kept in segments: a segment holds a run of one stream's fragments and
//! is removed whole when retention passes it. The store says what to write, group by
//! group ("these fragments of this stream, durable before you answer"), and where each
//! fragment went comes back as a [`Placement`] for the index. How a segment is kept is
//! the implementation's business: the embedded one ([`super::embedded`]) appends to one
//! file per segment; an object store would write an object per group. [`conformance`]
//! is what every implementation must pass.
//!
//! Architecture invariant (with the index): a fragment's bytes are durable before its
//! index entry is written, and its segment is removed only after its index entries are;
//! so the index never points at bytes that are not there.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::records::{FragmentMeta, SegmentMeta, StreamId};
use super::StoreError;

/// One fragment to write.
#[derive(Debug, Clone)]
pub struct FragmentBytes {
    pub fragment_number: u64,
    pub server_ts_us: i64,
    pub chunks: Vec<Bytes>,
}

/// One stream's share of a writer group.
#[derive(Debug)]
pub struct StreamAppend {
    pub stream: StreamId,
    /// A new segment takes an id from here up (lower ids were used, maybe removed).
    pub next_segment_id: u64,
    /// A segment whose first fragment is older than this (on the server's clock,
    /// measured at the group's first fragment) takes no more: a new one starts.
    pub segment_max_age_us: i64,
    pub fragments: Vec<FragmentBytes>,
}

/// Where a fragment's bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub segment_id: u64,
    pub offset: u64,
    pub len: u32,
    /// CRC-32 of the bytes, checked on every read.
    pub crc: u32,
}

/// What became of one stream's share of a group.
#[derive(Debug)]
pub struct StreamAppended {
    /// One per fragment, in order: where it went, or why it is not durable.
    pub placements: Vec<Result<Placement, StoreError>>,
    /// The segment written to, as it now stands; `None` when nothing was durable.
    pub segment: Option<SegmentMeta>,
}

/// What recovery found of a segment the index lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentCheck {
    Missing,
    /// The first `whole` listed fragments are intact (everything after them was cut
    /// off: `trimmed_bytes`).
    Present {
        whole: usize,
        trimmed_bytes: u64,
    },
}

pub trait MediaStore: Send + Sync + 'static {
    /// Writes each stream's fragments, in order, and makes them durable before it
    /// returns. A group never splits a stream's fragments over two segments: a new
    /// segment starts, if at all, before the stream's first fragment of the group.
    /// Answers in the order of `group`.
    fn append(&self, group: Vec<StreamAppend>) -> Vec<StreamAppended>;
    /// A fragment's bytes (unchecked: the caller checks the CRC). `FragmentNotFound`
    /// when they are not there.
    fn read(&self, stream: StreamId, fragment: &FragmentMeta) -> Result<Bytes, StoreError>;
    /// Removes whole segments (after the index stopped pointing at them).
    fn remove_segments(&self, stream: StreamId, segment_ids: &[u64]) -> Result<(), StoreError>;
    /// Removes everything of a stream.
    fn remove_stream(&self, stream: StreamId) -> Result<(), StoreError>;
    /// Every stored segment, by stream (recovery compares it with the index).
    fn stored(&self) -> Result<BTreeMap<StreamId, Vec<u64>>, StoreError>;
    /// Whether a fragment is whole once `append` has answered for it and nothing can
    /// cut it short afterwards (an object PUT is atomic, and done before the index row
    /// commits): then recovery trusts the index and reads nothing back, so that opening
    /// the store costs the index, not every stored byte or object. What was stored but
    /// never indexed (a writer that died between the two) stays where it is, unserved.
    fn whole_when_stored(&self) -> bool {
        false
    }
    /// Recovery: checks the listed fragments of a segment (in order) from the end back
    /// to the first intact one, and cuts off everything after it.
    fn check_segment(
        &self,
        stream: StreamId,
        segment_id: u64,
        fragments: &[FragmentMeta],
    ) -> Result<SegmentCheck, StoreError>;
}

/// The behaviour the store relies on, as checks any [`MediaStore`] must pass. `open`
/// opens the same store each time (the previous one dropped first).
#[doc(hidden)]
pub mod conformance {
    use super::*;

    fn fragment(n: u64, ts: i64, body: &str) -> FragmentBytes {
        let half = body.len() / 2;
        FragmentBytes {
            fragment_number: n,
            server_ts_us: ts,
            chunks: vec![
                Bytes::copy_from_slice(&body.as_bytes()[..half]),
                Bytes::copy_from_slice(&body.as_bytes()[half..]),
            ],
        }
    }

    fn append(stream: StreamId, next_segment_id: u64, fragments: Vec<FragmentBytes>) -> StreamAppend {
        StreamAppend { stream, next_segment_id, segment_max_age_us: 60_000_000, fragments }
    }

    /// The index entry the store would write for a placement.
    pub fn meta(n: u64, ts: i64, p: Placement) -> FragmentMeta {
        FragmentMeta {
            fragment_number: n,
            producer_ts_us: ts,
            server_ts_us: ts,
            duration_us: 1,
            segment_id: p.segment_id,
            offset: p.offset,
            len: p.len,
            crc: p.crc,
            init_id: 1,
            chunk_count: 2,
            flags: 0,
        }
    }

    fn placed(a: &StreamAppended) -> Vec<Placement> {
        a.placements.iter().map(|p| *p.as_ref().expect("written")).collect()
    }

    pub fn run<M: MediaStore>(open: impl Fn() -> M) {
        written_then_read_back(&open);
        segments_roll_on_age(&open());
        removal(&open());
        recovery_cuts_what_is_not_whole(&open());
        assert!(open().append(Vec::new()).is_empty(), "an empty group is fine");
    }

    fn written_then_read_back<M: MediaStore>(open: &impl Fn() -> M) {
        let metas = {
            let m = open();
            let out = m.append(vec![
                append(1, 1, vec![fragment(1, 10, "first fragment"), fragment(2, 20, "second")]),
                append(2, 1, vec![fragment(1, 10, "another stream")]),
            ]);
            assert_eq!(out.len(), 2, "one answer per stream, in order");
            let p = placed(&out[0]);
            assert_eq!(p.len(), 2);
            assert_eq!(p[0].segment_id, p[1].segment_id, "one group, one segment");
            assert_eq!(p[0].crc, crc32fast::hash(b"first fragment"));
            let seg = out[0].segment.expect("a segment summary");
            assert_eq!((seg.segment_id, seg.first_fragment, seg.last_fragment, seg.fragment_count), (1, 1, 2, 2));
            assert_eq!((seg.min_server_ts_us, seg.max_server_ts_us), (10, 20));
            let more = m.append(vec![append(1, 2, vec![fragment(3, 30, "third")])]);
            let seg = more[0].segment.expect("a segment summary");
            assert_eq!((seg.segment_id, seg.first_fragment, seg.fragment_count), (1, 1, 3), "a young segment grows");
            let other = placed(&out[1]);
            vec![
                (1, meta(1, 10, p[0]), "first fragment"),
                (1, meta(2, 20, p[1]), "second"),
                (1, meta(3, 30, placed(&more[0])[0]), "third"),
                (2, meta(1, 10, other[0]), "another stream"),
            ]
        };
        let m = open();
        for (stream, meta, body) in metas {
            assert_eq!(m.read(stream, &meta).unwrap(), body.as_bytes(), "durable across a reopen");
        }
        let stored = m.stored().unwrap();
        assert_eq!(stored.get(&1).map(Vec::as_slice), Some(&[1][..]));
    }

    fn segments_roll_on_age<M: MediaStore>(m: &M) {
        let s = 3;
        let first = m.append(vec![append(s, 5, vec![fragment(1, 0, "a")])]);
        assert_eq!(placed(&first[0])[0].segment_id, 5, "a new segment takes the id it is given");
        let young = m.append(vec![append(s, 6, vec![fragment(2, 59_000_000, "b")])]);
        assert_eq!(placed(&young[0])[0].segment_id, 5);
        let old = m.append(vec![append(s, 6, vec![fragment(3, 60_000_000, "c"), fragment(4, 200_000_000, "d")])]);
        let p = placed(&old[0]);
        assert_eq!((p[0].segment_id, p[1].segment_id), (6, 6), "rolls at the group's start, not inside it");
        let seg = old[0].segment.expect("summary");
        assert_eq!((seg.segment_id, seg.first_fragment, seg.created_us), (6, 3, 60_000_000));
        assert_eq!(m.stored().unwrap().get(&s).cloned(), Some(vec![5, 6]));
    }

    fn removal<M: MediaStore>(m: &M) {
        let s = 4;
        let a = m.append(vec![append(s, 1, vec![fragment(1, 0, "old")])]);
        let b = m.append(vec![append(s, 2, vec![fragment(2, 100_000_000, "new")])]);
        let (pa, pb) = (placed(&a[0])[0], placed(&b[0])[0]);
        assert_ne!(pa.segment_id, pb.segment_id);
        m.remove_segments(s, &[pa.segment_id]).unwrap();
        assert!(matches!(m.read(s, &meta(1, 0, pa)), Err(StoreError::FragmentNotFound(1))));
        assert_eq!(m.read(s, &meta(2, 100_000_000, pb)).unwrap(), "new".as_bytes());
        m.remove_segments(s, &[pa.segment_id]).expect("removing a removed segment is no error");
        let c = m.append(vec![append(s, 3, vec![fragment(3, 100_000_001, "after")])]);
        assert_eq!(m.read(s, &meta(3, 100_000_001, placed(&c[0])[0])).unwrap(), "after".as_bytes());
        m.remove_stream(s).unwrap();
        assert!(matches!(m.read(s, &meta(2, 100_000_000, pb)), Err(StoreError::FragmentNotFound(2))));
        assert!(!m.stored().unwrap().contains_key(&s));
        let d = m.append(vec![append(s, 9, vec![fragment(4, 1, "reborn")])]);
        assert_eq!(placed(&d[0])[0].segment_id, 9, "a removed stream starts afresh");
    }

    fn recovery_cuts_what_is_not_whole<M: MediaStore>(m: &M) {
        let s = 5;
        let out = m.append(vec![append(s, 1, vec![fragment(1, 0, "kept one"), fragment(2, 1, "kept two")])]);
        let p = placed(&out[0]);
        let good = vec![meta(1, 0, p[0]), meta(2, 1, p[1])];
        // The index lists a third fragment whose bytes never became durable.
        let mut ghost = meta(3, 2, p[1]);
        ghost.offset = p[1].offset + 4096;
        let mut listed = good.clone();
        listed.push(ghost);
        assert_eq!(
            m.check_segment(s, p[0].segment_id, &listed).unwrap(),
            SegmentCheck::Present { whole: 2, trimmed_bytes: 0 }
        );
        // A listed fragment whose bytes differ from what the index says.
        let mut wrong = good.clone();
        wrong[1].crc ^= 1;
        assert!(
            matches!(m.check_segment(s, p[0].segment_id, &wrong).unwrap(), SegmentCheck::Present { whole: 1, trimmed_bytes } if trimmed_bytes > 0)
        );
        assert!(matches!(m.read(s, &good[1]), Err(StoreError::FragmentNotFound(2))), "what was cut is gone");
        assert_eq!(m.read(s, &good[0]).unwrap(), "kept one".as_bytes(), "what is before stays");
        assert_eq!(m.check_segment(s, 999, &good).unwrap(), SegmentCheck::Missing);
    }
}
