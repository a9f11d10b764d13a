//! What the store knows about streams and fragments, behind two traits: the
//! [`StreamCatalog`] (one record per stream) and the [`FragmentIndex`] (each stream's
//! fragments, segment summaries, init segments and numbering). They are the store's
//! only way to that knowledge; the fragments' bytes are behind [`super::media`].
//!
//! Both are shaped around what the store does, not around keys: "commit this group's
//! fragments, init segments and segment summaries in one step", "remove these whole
//! segments and never hand out their numbers again". The embedded implementation is
//! [`super::embedded`] (sled); [`conformance`] is what every implementation must pass.
//!
//! Methods are synchronous: the embedded index answers from memory or one page read,
//! and the writer calls them from its own thread. The catalog's changes are `async`, so
//! that waiting for durability happens off the runtime's threads.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::catalog::StreamRecord;
use super::live::TimeKind;
use super::records::{FragmentMeta, SegmentMeta, StreamId};
use super::StoreError;
use crate::scope::{NamePage, Scope};

/// A stored record that cannot be read (damaged, or written by a newer Kinescope):
/// recovery keeps it where it is and copies it to quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRecord {
    /// How the implementation names it (its key), for the quarantine copy's name.
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The segment or fragment number the record is about, when its key tells.
    pub number: Option<u64>,
}

/// The stream records.
#[async_trait::async_trait]
pub trait StreamCatalog: Send + Sync + 'static {
    /// An id no stream has had before (ids are not reused, even after a delete).
    fn new_stream_id(&self) -> Result<StreamId, StoreError>;
    fn get(&self, scope: &Scope, name: &str) -> Result<Option<StreamRecord>, StoreError>;
    /// Adds a record whose scope and name are free (else `StreamExists`); durable once
    /// this returns.
    async fn insert_new(&self, record: &StreamRecord) -> Result<(), StoreError>;
    /// Replaces `old` by `new` if the stored record is still `old` (else `Conflict`);
    /// durable once this returns.
    async fn replace(&self, old: &StreamRecord, new: &StreamRecord) -> Result<(), StoreError>;
    /// Removes `old` if the stored record is still `old` (else `Conflict`); durable
    /// once this returns.
    async fn remove_if(&self, old: &StreamRecord) -> Result<(), StoreError>;
    /// The records of `scope` whose name starts with `prefix`, in name order, after
    /// the name `after`.
    fn list(&self, scope: &Scope, page: NamePage<'_>) -> Result<Vec<StreamRecord>, StoreError>;
    /// Every record of every scope that can be read, and those that cannot (logged,
    /// left where they are).
    fn all_and_unreadable(&self) -> Result<(Vec<StreamRecord>, Vec<UnreadableRecord>), StoreError>;

    fn all(&self) -> Result<Vec<StreamRecord>, StoreError> {
        Ok(self.all_and_unreadable()?.0)
    }
}

/// One writer group's index changes: applied all together or not at all, and
/// durable once applied.
#[derive(Debug, Default)]
pub struct IndexCommit {
    /// (stream, init id, bytes).
    pub inits: Vec<(StreamId, u32, Bytes)>,
    pub fragments: Vec<(StreamId, FragmentMeta)>,
    /// Each segment the group wrote to, as it now stands (replacing its summary).
    pub segments: Vec<(StreamId, SegmentMeta)>,
}

impl IndexCommit {
    pub fn is_empty(&self) -> bool {
        self.inits.is_empty() && self.fragments.is_empty() && self.segments.is_empty()
    }
}

/// The numbers a stream's next fragment and segment take: past every number in use
/// and every number ever removed (a reader holding an old number never meets a new
/// fragment under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextNumbers {
    /// The newest stored fragment's number; 0 when the stream has none.
    pub last_fragment: u64,
    pub fragment: u64,
    pub segment: u64,
}

/// What recovery does to the summary of a segment whose tail it dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentChange {
    /// The segment keeps the fragments before the dropped ones: its new summary.
    Keep(SegmentMeta),
    /// Nothing of the segment is left.
    Remove,
}

/// A position on one of a stream's clocks: (start time µs, fragment number), the order
/// time scans go in.
pub type TimePosition = (i64, u64);

/// Each stream's fragments, segment summaries, init segments and numbering.
pub trait FragmentIndex: Send + Sync + 'static {
    /// Applies one group atomically; durable once this returns.
    fn commit(&self, commit: &IndexCommit) -> Result<(), StoreError>;

    fn fragment(&self, stream: StreamId, number: u64) -> Result<Option<FragmentMeta>, StoreError>;
    /// Up to `limit` fragments numbered `from` or later, in number order.
    fn fragments_from(&self, stream: StreamId, from: u64, limit: usize) -> Result<Vec<FragmentMeta>, StoreError>;
    /// The newest `limit` fragments, oldest first.
    fn last_fragments(&self, stream: StreamId, limit: usize) -> Result<Vec<FragmentMeta>, StoreError>;
    /// Up to `limit` fragments whose position on the `kind` clock is in `from..=to`, in
    /// that order.
    fn fragments_by_time(
        &self,
        stream: StreamId,
        kind: TimeKind,
        from: TimePosition,
        to: TimePosition,
        limit: usize,
    ) -> Result<Vec<FragmentMeta>, StoreError>;
    /// The fragment with the greatest position on the `kind` clock at or before `at`.
    fn fragment_before(
        &self,
        stream: StreamId,
        kind: TimeKind,
        at: TimePosition,
    ) -> Result<Option<FragmentMeta>, StoreError>;

    fn init(&self, stream: StreamId, init_id: u32) -> Result<Option<Bytes>, StoreError>;
    /// The init segment with the highest id.
    fn latest_init(&self, stream: StreamId) -> Result<Option<(u32, Bytes)>, StoreError>;
    fn next_numbers(&self, stream: StreamId) -> Result<NextNumbers, StoreError>;

    /// The stream's segment summaries in creation order, and those that cannot be read.
    fn segments(&self, stream: StreamId) -> Result<(Vec<SegmentMeta>, Vec<UnreadableRecord>), StoreError>;
    fn segment_count(&self, stream: StreamId) -> Result<usize, StoreError>;
    /// The fragments `segment` holds (numbered `first_fragment..=last_fragment` and
    /// placed in it), and the records in that range that cannot be read.
    fn segment_fragments(
        &self,
        stream: StreamId,
        segment: &SegmentMeta,
    ) -> Result<(Vec<FragmentMeta>, Vec<UnreadableRecord>), StoreError>;

    /// Removes whole segments with their fragments in one atomic, durable step; their
    /// numbers are never handed out again. Returns how many fragments went.
    fn remove_segments(&self, stream: StreamId, segments: &[SegmentMeta]) -> Result<u64, StoreError>;
    /// Recovery: removes `dropped` (fragments of `segment_id`) and applies `change` to
    /// the segment's summary, in one atomic step; their numbers are never handed out
    /// again. Durable at the next [`FragmentIndex::flush`].
    fn drop_fragments(
        &self,
        stream: StreamId,
        segment_id: u64,
        dropped: &[FragmentMeta],
        change: SegmentChange,
    ) -> Result<(), StoreError>;
    /// Removes everything of the stream; durable once this returns.
    fn remove_stream(&self, stream: StreamId) -> Result<(), StoreError>;
    /// Every stream that has anything in the index.
    fn streams(&self) -> Result<BTreeSet<StreamId>, StoreError>;
    /// Makes every change so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}

/// The behaviour the store relies on, as checks any catalog and index must pass.
/// `open` opens the same store each time (the previous one dropped first): a reopen
/// is a restart.
#[doc(hidden)]
pub mod conformance {
    use std::collections::BTreeMap;

    use super::*;
    use crate::video_store::catalog::{new_version, StreamStatus};

    pub fn record(id: StreamId, scope: &Scope, name: &str) -> StreamRecord {
        StreamRecord {
            id,
            scope: scope.clone(),
            name: name.to_string(),
            arn: scope.arn("kinesisvideo", &format!("stream/{name}/1")),
            device_name: None,
            media_type: None,
            kms_key_id: String::new(),
            version: new_version(),
            status: StreamStatus::Active,
            creation_time_ms: 1,
            data_retention_hours: 24,
            tags: BTreeMap::new(),
            storage_tier: "HOT".into(),
            notification: None,
            image_generation: None,
            frame_metadata_stream: None,
            publish_tokens_not_before_us: 0,
        }
    }

    pub async fn run_catalog<C: StreamCatalog>(open: impl Fn() -> C) {
        ids_are_new(&open());
        insert_replace_remove(&open()).await;
        listing_pages(&open()).await;
        durable_across_a_reopen(&open).await;
    }

    fn ids_are_new<C: StreamCatalog>(c: &C) {
        let a = c.new_stream_id().unwrap();
        let b = c.new_stream_id().unwrap();
        assert!(a > 0 && b > a, "ids grow: {a} then {b}");
    }

    async fn insert_replace_remove<C: StreamCatalog>(c: &C) {
        let scope = Scope::new("111111111111", "us-east-1");
        let other = Scope::new("222222222222", "us-east-1");
        let r = record(c.new_stream_id().unwrap(), &scope, "cam");
        c.insert_new(&r).await.unwrap();
        assert!(matches!(c.insert_new(&r).await, Err(StoreError::StreamExists(_))), "a name is taken once");
        let elsewhere = record(c.new_stream_id().unwrap(), &other, "cam");
        c.insert_new(&elsewhere).await.expect("the same name in another account is another stream");
        assert_eq!(c.get(&scope, "cam").unwrap(), Some(r.clone()));
        assert_eq!(c.get(&other, "cam").unwrap(), Some(elsewhere));

        let mut new = r.clone();
        new.version = new_version();
        new.data_retention_hours = 48;
        c.replace(&r, &new).await.unwrap();
        assert!(matches!(c.replace(&r, &new).await, Err(StoreError::Conflict(_))), "a stale record loses the race");
        assert_eq!(c.get(&scope, "cam").unwrap(), Some(new.clone()));
        assert!(matches!(c.remove_if(&r).await, Err(StoreError::Conflict(_))), "removal checks the version too");
        c.remove_if(&new).await.unwrap();
        assert_eq!(c.get(&scope, "cam").unwrap(), None);
        assert!(c.all().unwrap().iter().any(|x| x.scope == other), "{:?}", c.all().unwrap());
    }

    async fn listing_pages<C: StreamCatalog>(c: &C) {
        let scope = Scope::new("333333333333", "eu-west-1");
        for name in ["door-2", "yard", "door-1", "door-3"] {
            c.insert_new(&record(c.new_stream_id().unwrap(), &scope, name)).await.unwrap();
        }
        let names = |v: Vec<StreamRecord>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(c.list(&scope, NamePage { prefix: "", after: None, limit: 10 }).unwrap()),
            ["door-1", "door-2", "door-3", "yard"]
        );
        assert_eq!(
            names(c.list(&scope, NamePage { prefix: "door", after: None, limit: 2 }).unwrap()),
            ["door-1", "door-2"]
        );
        assert_eq!(
            names(c.list(&scope, NamePage { prefix: "door", after: Some("door-2"), limit: 10 }).unwrap()),
            ["door-3"]
        );
        assert_eq!(names(c.list(&scope, NamePage { prefix: "", after: Some("a"), limit: 1 }).unwrap()), ["door-1"]);
        assert!(c
            .list(&Scope::new("333333333333", "us-west-2"), NamePage { prefix: "", after: None, limit: 10 })
            .unwrap()
            .is_empty());
    }

    async fn durable_across_a_reopen<C: StreamCatalog>(open: &impl Fn() -> C) {
        let scope = Scope::new("444444444444", "us-east-1");
        let (r, id) = {
            let c = open();
            let r = record(c.new_stream_id().unwrap(), &scope, "kept");
            c.insert_new(&r).await.unwrap();
            (r, c.new_stream_id().unwrap())
        };
        let c = open();
        assert_eq!(c.get(&scope, "kept").unwrap(), Some(r), "an insert that returned survives a restart");
        assert!(c.new_stream_id().unwrap() > id, "ids are not handed out again after a restart");
    }

    pub fn fragment(number: u64, producer_ts_us: i64, server_ts_us: i64, segment_id: u64) -> FragmentMeta {
        FragmentMeta {
            fragment_number: number,
            producer_ts_us,
            server_ts_us,
            duration_us: 1_000_000,
            segment_id,
            offset: number * 100,
            len: 60,
            crc: number as u32,
            init_id: 1,
            chunk_count: 1,
            flags: 0,
        }
    }

    fn segment(id: u64, fragments: &[FragmentMeta]) -> SegmentMeta {
        SegmentMeta {
            segment_id: id,
            first_fragment: fragments[0].fragment_number,
            last_fragment: fragments[fragments.len() - 1].fragment_number,
            fragment_count: fragments.len() as u64,
            min_server_ts_us: fragments.iter().map(|f| f.server_ts_us).min().unwrap_or(0),
            max_server_ts_us: fragments.iter().map(|f| f.server_ts_us).max().unwrap_or(0),
            created_us: fragments[0].server_ts_us,
            bytes: fragments[fragments.len() - 1].record_end(),
        }
    }

    /// Commits fragments `numbers` of `stream` into segment `seg`, whose first fragment
    /// is `seg_first` (one group). Fragment `n` starts at `n` s on the server's clock
    /// and `n - 5` s on the producer's.
    fn commit_group<I: FragmentIndex>(
        i: &I,
        stream: StreamId,
        seg: u64,
        seg_first: u64,
        numbers: std::ops::RangeInclusive<u64>,
    ) {
        let make = |n: u64| fragment(n, n as i64 * 1_000_000 - 5_000_000, n as i64 * 1_000_000, seg);
        let whole: Vec<FragmentMeta> = (seg_first..=*numbers.end()).map(make).collect();
        let commit = IndexCommit {
            inits: vec![],
            fragments: numbers.map(|n| (stream, make(n))).collect(),
            segments: vec![(stream, segment(seg, &whole))],
        };
        i.commit(&commit).unwrap();
    }

    pub fn run_index<I: FragmentIndex>(open: impl Fn() -> I) {
        empty_stream(&open());
        commit_and_scan(&open());
        time_scans(&open());
        inits(&open());
        retention_keeps_numbers(&open());
        recovery_drops_a_tail(&open());
        stream_removal(&open());
        durable_across_a_reopen_index(&open);
    }

    fn empty_stream<I: FragmentIndex>(i: &I) {
        let s = 100;
        assert_eq!(i.fragment(s, 1).unwrap(), None);
        assert!(i.fragments_from(s, 0, 10).unwrap().is_empty());
        assert!(i.last_fragments(s, 10).unwrap().is_empty());
        assert_eq!(i.latest_init(s).unwrap(), None);
        assert_eq!(i.segment_count(s).unwrap(), 0);
        assert_eq!(i.next_numbers(s).unwrap(), NextNumbers { last_fragment: 0, fragment: 1, segment: 1 });
        assert!(i.commit(&IndexCommit::default()).is_ok(), "an empty group commits");
    }

    fn commit_and_scan<I: FragmentIndex>(i: &I) {
        let (s, other) = (1, 2);
        commit_group(i, s, 1, 1, 1..=3);
        commit_group(i, s, 1, 1, 4..=5);
        commit_group(i, other, 1, 1, 1..=1);
        assert_eq!(i.fragment(s, 4).unwrap().map(|f| f.fragment_number), Some(4));
        let numbers = |v: Vec<FragmentMeta>| v.iter().map(|f| f.fragment_number).collect::<Vec<_>>();
        assert_eq!(numbers(i.fragments_from(s, 2, 2).unwrap()), [2, 3]);
        assert_eq!(numbers(i.fragments_from(s, 0, 100).unwrap()), [1, 2, 3, 4, 5], "streams do not mix");
        assert_eq!(numbers(i.last_fragments(s, 2).unwrap()), [4, 5], "the newest, oldest first");
        let (segments, unreadable) = i.segments(s).unwrap();
        assert!(unreadable.is_empty());
        assert_eq!(segments.len(), 1, "a later group's summary replaces the segment's");
        assert_eq!((segments[0].first_fragment, segments[0].last_fragment, segments[0].fragment_count), (1, 5, 5));
        let (held, _) = i.segment_fragments(s, &segments[0]).unwrap();
        assert_eq!(numbers(held), [1, 2, 3, 4, 5]);
        assert_eq!(i.next_numbers(s).unwrap(), NextNumbers { last_fragment: 5, fragment: 6, segment: 2 });
        assert!(i.streams().unwrap().is_superset(&BTreeSet::from([s, other])));
    }

    fn time_scans<I: FragmentIndex>(i: &I) {
        let s = 3;
        // Server times 1..=6 s; producer times 5 s earlier (negative for the first ones).
        commit_group(i, s, 1, 1, 1..=6);
        let numbers = |v: Vec<FragmentMeta>| v.iter().map(|f| f.fragment_number).collect::<Vec<_>>();
        let server = |a: i64, b: i64| i.fragments_by_time(s, TimeKind::Server, (a, 0), (b, u64::MAX), 100).unwrap();
        assert_eq!(numbers(server(2_000_000, 4_000_000)), [2, 3, 4], "both ends included");
        assert_eq!(
            numbers(i.fragments_by_time(s, TimeKind::Server, (2_000_000, 3), (i64::MAX, u64::MAX), 2).unwrap()),
            [3, 4],
            "a page resumes after a position, and stops at the limit"
        );
        let producer = i.fragments_by_time(s, TimeKind::Producer, (-4_000_000, 0), (0, u64::MAX), 100).unwrap();
        assert_eq!(numbers(producer), [1, 2, 3, 4, 5], "negative times sort before positive ones");
        let before = i.fragment_before(s, TimeKind::Server, (4_500_000, u64::MAX)).unwrap();
        assert_eq!(before.map(|f| f.fragment_number), Some(4));
        assert_eq!(i.fragment_before(s, TimeKind::Server, (999_999, u64::MAX)).unwrap(), None);
        assert_eq!(
            i.fragment_before(s, TimeKind::Producer, (-4_000_000, u64::MAX)).unwrap().map(|f| f.fragment_number),
            Some(1)
        );
    }

    fn inits<I: FragmentIndex>(i: &I) {
        let s = 4;
        let commit = IndexCommit {
            inits: vec![(s, 1, Bytes::from_static(b"one")), (s, 2, Bytes::from_static(b"two"))],
            ..IndexCommit::default()
        };
        i.commit(&commit).unwrap();
        assert_eq!(i.init(s, 1).unwrap(), Some(Bytes::from_static(b"one")));
        assert_eq!(i.latest_init(s).unwrap(), Some((2, Bytes::from_static(b"two"))));
        assert_eq!(i.init(s + 1, 1).unwrap(), None);
    }

    fn retention_keeps_numbers<I: FragmentIndex>(i: &I) {
        let s = 5;
        commit_group(i, s, 1, 1, 1..=2);
        commit_group(i, s, 2, 3, 3..=4);
        let (segments, _) = i.segments(s).unwrap();
        assert_eq!(segments.iter().map(|g| g.segment_id).collect::<Vec<_>>(), [1, 2], "creation order");
        assert_eq!(i.remove_segments(s, &segments).unwrap(), 4);
        assert!(i.fragments_from(s, 0, 10).unwrap().is_empty());
        assert!(i.fragments_by_time(s, TimeKind::Server, (i64::MIN, 0), (i64::MAX, u64::MAX), 10).unwrap().is_empty());
        assert_eq!(i.segment_count(s).unwrap(), 0);
        assert_eq!(
            i.next_numbers(s).unwrap(),
            NextNumbers { last_fragment: 0, fragment: 5, segment: 3 },
            "numbers of removed fragments and segments are not handed out again"
        );
    }

    fn recovery_drops_a_tail<I: FragmentIndex>(i: &I) {
        let s = 6;
        commit_group(i, s, 1, 1, 1..=4);
        let dropped: Vec<FragmentMeta> = i.fragments_from(s, 3, 10).unwrap();
        let kept = i.fragments_from(s, 1, 2).unwrap();
        let mut summary = segment(1, &kept);
        summary.bytes = kept[1].record_end();
        i.drop_fragments(s, 1, &dropped, SegmentChange::Keep(summary)).unwrap();
        i.flush().unwrap();
        assert_eq!(i.last_fragments(s, 10).unwrap(), kept);
        assert_eq!(i.segments(s).unwrap().0, vec![summary]);
        assert!(
            i.fragments_by_time(s, TimeKind::Producer, (i64::MIN, 0), (i64::MAX, u64::MAX), 10).unwrap().len() == 2
        );
        assert_eq!(i.next_numbers(s).unwrap().fragment, 5, "dropped numbers are not handed out again");
        i.drop_fragments(s, 1, &kept, SegmentChange::Remove).unwrap();
        assert_eq!(i.segment_count(s).unwrap(), 0);
        assert_eq!(i.next_numbers(s).unwrap().segment, 2);
    }

    fn stream_removal<I: FragmentIndex>(i: &I) {
        let (s, other) = (7, 8);
        commit_group(i, s, 1, 1, 1..=2);
        commit_group(i, other, 1, 1, 1..=2);
        i.commit(&IndexCommit { inits: vec![(s, 1, Bytes::from_static(b"i"))], ..IndexCommit::default() }).unwrap();
        i.remove_stream(s).unwrap();
        assert!(i.fragments_from(s, 0, 10).unwrap().is_empty());
        assert_eq!(i.latest_init(s).unwrap(), None);
        assert!(!i.streams().unwrap().contains(&s));
        assert_eq!(i.fragments_from(other, 0, 10).unwrap().len(), 2, "other streams keep theirs");
    }

    fn durable_across_a_reopen_index<I: FragmentIndex>(open: &impl Fn() -> I) {
        let s = 9;
        {
            let i = open();
            commit_group(&i, s, 1, 1, 1..=3);
        }
        let i = open();
        assert_eq!(i.fragments_from(s, 0, 10).unwrap().len(), 3, "a commit that returned survives a restart");
        assert_eq!(i.next_numbers(s).unwrap().fragment, 4);
    }
}
