//! The video store engine driven directly: durability, recovery from torn files,
//! retention on a manual clock, deletion, and many streams committing together.
//!
//! The engine is opened on its storage traits through `backend()`, so a second backend
//! runs these tests by changing that one function. Tests that damage stored records
//! reach into the embedded implementation on purpose (they say so).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kinescope::clock::{Clock, ManualClock};
use kinescope::scope::NamePage;
use kinescope::video_store::{
    recovery::RecoveryReport, NewFragment, NewStream, RetentionChange, StoreBackend, StoreConfig, StoreError,
    StreamRecord, TimeKind, VideoStore,
};

const T0: i64 = 1_700_000_000_000_000;
const MINUTE: i64 = 60_000_000;

/// Where the store keeps its data: the embedded implementation.
fn backend(config: &StoreConfig) -> StoreBackend {
    kinescope::video_store::embedded::open(&config.data_dir, &config.default_scope, config.segment_max_bytes)
        .expect("open the embedded backend")
}

fn open_config(config: StoreConfig, clock: Arc<ManualClock>) -> (VideoStore, RecoveryReport) {
    let backend = backend(&config);
    VideoStore::open_with(config, clock, backend).expect("open store")
}

fn open(dir: &Path, clock: Arc<ManualClock>) -> (VideoStore, RecoveryReport) {
    let mut config = StoreConfig::new(dir);
    config.segment_max_bytes = 1 << 20;
    open_config(config, clock)
}

fn fragment(i: i64, server_ts_us: i64, size: usize) -> NewFragment {
    let mut body = vec![(i % 251) as u8; size];
    body[0] = 0xAA;
    NewFragment {
        producer_ts_us: T0 + i * 1_000_000,
        server_ts_us,
        duration_us: 1_000_000,
        init_id: 1,
        keyframe: true,
        chunks: vec![Bytes::from(body)],
    }
}

async fn put(store: &VideoStore, stream: &StreamRecord, i: i64, server_ts_us: i64) -> u64 {
    let pending = store.submit_fragment(stream, fragment(i, server_ts_us, 10_000)).await.expect("submit");
    pending.persisted.await.expect("writer answered").expect("persisted").fragment_number
}

async fn create(store: &VideoStore, name: &str, retention: Option<u32>) -> StreamRecord {
    store
        .create_stream(
            &store.config().default_scope,
            NewStream { name: name.into(), data_retention_hours: retention, ..Default::default() },
        )
        .await
        .unwrap()
}

/// Stores `count` fragments in a new stream "cam", then closes the store: the state a
/// crash or restart starts from. Returns their numbers.
async fn stored_then_closed(dir: &Path, clock: &Arc<ManualClock>, count: i64) -> Vec<u64> {
    let (store, _) = open(dir, clock.clone());
    let s = create(&store, "cam", None).await;
    let mut numbers = Vec::new();
    for i in 0..count {
        numbers.push(put(&store, &s, i, T0 + i).await);
    }
    numbers
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(dir.join("media")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn fragments_round_trip_and_time_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (store, _) = open(dir.path(), clock.clone());
    let s = create(&store, "cam", None).await;
    store.put_init(s.id, Bytes::from_static(b"init-bytes")).await.unwrap();
    let mut numbers = Vec::new();
    for i in 0..10 {
        numbers.push(put(&store, &s, i, T0 + i * 1_000_000).await);
    }
    assert!(numbers.windows(2).all(|w| w[1] > w[0]));
    let meta = store.fragment(s.id, numbers[3]).unwrap().unwrap();
    let bytes = store.read_fragment(s.id, &meta).await.unwrap();
    assert_eq!(bytes.len(), 10_000);
    assert_eq!(bytes[1], 3);
    assert_eq!(store.init_segment(s.id, meta.init_id).unwrap().unwrap(), Bytes::from_static(b"init-bytes"));

    let range = store.fragments_in_range(s.id, TimeKind::Producer, T0 + 2_000_000, T0 + 4_000_000, None, 100).unwrap();
    assert_eq!(range.iter().map(|m| m.fragment_number).collect::<Vec<_>>(), numbers[2..=4]);
    // Mid-fragment time finds the fragment containing it.
    let at = store.fragment_at(s.id, TimeKind::Server, T0 + 5_500_000).unwrap().unwrap();
    assert_eq!(at.fragment_number, numbers[5]);
    let after_all = store.fragment_at(s.id, TimeKind::Server, T0 + 60_000_000).unwrap();
    assert!(after_all.is_none());
    // Pagination by position.
    let first = store.fragments_in_range(s.id, TimeKind::Server, T0, T0 + 100_000_000, None, 4).unwrap();
    let last = first.last().unwrap();
    let next = store
        .fragments_in_range(
            s.id,
            TimeKind::Server,
            T0,
            T0 + 100_000_000,
            Some((last.server_ts_us, last.fragment_number)),
            100,
        )
        .unwrap();
    assert_eq!(first.len() + next.len(), 10);
    assert_eq!(next[0].fragment_number, numbers[4]);
}

#[tokio::test]
async fn recovery_truncates_unacknowledged_tails_and_keeps_acknowledged_fragments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let numbers = stored_then_closed(dir.path(), &clock, 5).await;
    // A crash after the data write but before the index: bytes nobody acknowledged.
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let len_before = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::OpenOptions::new().append(true).open(&files[0]).unwrap().write_all(&[0x5A; 7_777]).unwrap();

    let (store, report) = open(dir.path(), clock.clone());
    assert_eq!(report.truncated_bytes, 7_777);
    assert_eq!(report.dropped_fragments, 0);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), len_before);
    let s = store.resolve(&store.config().default_scope, Some("cam"), None).unwrap();
    for n in &numbers {
        let meta = store.fragment(s.id, *n).unwrap().unwrap();
        assert_eq!(store.read_fragment(s.id, &meta).await.unwrap().len(), 10_000);
    }
    // Appends go on after recovery, numbered after everything before.
    let next = put(&store, &s, 5, T0 + 5).await;
    assert!(next > *numbers.last().unwrap());
}

#[tokio::test]
async fn recovery_drops_index_entries_whose_bytes_are_not_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let numbers = stored_then_closed(dir.path(), &clock, 4).await;
    // Outside damage: the file loses the second half of its last record.
    let file = &segment_files(dir.path())[0];
    let len = std::fs::metadata(file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len - 5_000).unwrap();

    let (store, report) = open(dir.path(), clock.clone());
    assert_eq!(report.dropped_fragments, 1);
    let s = store.resolve(&store.config().default_scope, Some("cam"), None).unwrap();
    assert!(store.fragment(s.id, numbers[3]).unwrap().is_none());
    for n in &numbers[..3] {
        let meta = store.fragment(s.id, *n).unwrap().unwrap();
        assert!(store.read_fragment(s.id, &meta).await.is_ok());
    }
    // The torn bytes were cut away: the file ends where the last whole record does.
    let last = store.fragment(s.id, numbers[2]).unwrap().unwrap();
    assert_eq!(std::fs::metadata(file).unwrap().len(), last.record_end());

    // A corrupted payload byte in a record is caught by its CRC.
    drop(store);
    let mut bytes = std::fs::read(file).unwrap();
    let pos = last.offset as usize + 10;
    bytes[pos] ^= 0xff;
    std::fs::write(file, &bytes).unwrap();
    let (store, report) = open(dir.path(), clock);
    assert_eq!(report.dropped_fragments, 1);
    assert!(store.fragment(s.id, numbers[2]).unwrap().is_none());
    assert!(store.fragment(s.id, numbers[1]).unwrap().is_some());
    // The dropped numbers are not handed out again.
    let next = put(&store, &s, 9, T0 + 9).await;
    assert!(next > numbers[3], "{next} reuses a dropped fragment number");
}

#[tokio::test]
async fn recovery_drops_segments_whose_file_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    stored_then_closed(dir.path(), &clock, 3).await;
    std::fs::remove_file(&segment_files(dir.path())[0]).unwrap();
    let (store, report) = open(dir.path(), clock);
    assert_eq!(report.dropped_fragments, 3);
    let s = store.resolve(&store.config().default_scope, Some("cam"), None).unwrap();
    assert!(store.first_fragment(s.id).unwrap().is_none());
}

#[tokio::test]
async fn segment_files_roll_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (store, _) = open(dir.path(), clock);
    let s = create(&store, "cam", None).await;
    // 1 MiB segments, 10 kB fragments: a new file about every 100 fragments.
    for i in 0..250 {
        put(&store, &s, i, T0 + i).await;
    }
    assert_eq!(store.segment_count(s.id), 3);
    for f in segment_files(dir.path()) {
        assert!(std::fs::metadata(f).unwrap().len() <= (1 << 20) + 10_032);
    }
}

#[tokio::test]
async fn retention_removes_whole_files_past_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (store, _) = open(dir.path(), clock.clone());
    // 1 h retention: segments roll every 7.5 minutes (an eighth of it).
    let s = create(&store, "cam", Some(1)).await;
    let mut numbers = Vec::new();
    for (i, minute) in [0, 1, 10, 11, 20, 21].iter().enumerate() {
        numbers.push(put(&store, &s, i as i64, T0 + minute * MINUTE).await);
    }
    assert_eq!(store.segment_count(s.id), 3);
    assert_eq!(segment_files(dir.path()).len(), 3);

    // At 75 minutes, data before minute 15 is past retention: the first two files go.
    clock.set_us(T0 + 75 * MINUTE);
    let stats = store.sweep_expired().await.unwrap();
    assert_eq!((stats.segments, stats.fragments), (2, 4));
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(store.fragment(s.id, numbers[3]).unwrap().is_none());
    assert!(store.fragment(s.id, numbers[4]).unwrap().is_some());
    let listed = store.fragments_in_range(s.id, TimeKind::Producer, 0, i64::MAX, None, 100).unwrap();
    assert_eq!(listed.len(), 2);

    // Decreasing retention applies to stored data at once; numbers are never reused.
    let s2 = store.resolve(&store.config().default_scope, Some("cam"), None).unwrap();
    clock.set_us(T0 + 80 * MINUTE);
    store
        .update_retention(&store.config().default_scope, Some("cam"), None, &s2.version, RetentionChange::Increase(1))
        .await
        .unwrap();
    let s3 = store.resolve(&store.config().default_scope, Some("cam"), None).unwrap();
    store
        .update_retention(&store.config().default_scope, Some("cam"), None, &s3.version, RetentionChange::Decrease(1))
        .await
        .unwrap();
    assert!(store.fragment(s.id, numbers[5]).unwrap().is_some());
    clock.set_us(T0 + 200 * MINUTE);
    store.sweep_expired().await.unwrap();
    assert!(segment_files(dir.path()).is_empty());
    let n = put(&store, &s, 9, clock.now_us()).await;
    assert!(n > numbers[5], "fragment numbers must not be reused after retention removed everything");
}

#[tokio::test]
async fn live_only_streams_keep_a_five_minute_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (store, _) = open(dir.path(), clock.clone());
    let s = create(&store, "live", Some(0)).await;
    let old = put(&store, &s, 0, T0).await;
    let recent = put(&store, &s, 1, T0 + 4 * MINUTE).await;
    clock.set_us(T0 + 6 * MINUTE);
    store.sweep_expired().await.unwrap();
    assert!(store.fragment(s.id, old).unwrap().is_none());
    assert!(store.fragment(s.id, recent).unwrap().is_some());
}

#[tokio::test]
async fn delete_stream_removes_data_and_refuses_late_appends() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (store, _) = open(dir.path(), clock.clone());
    let s = create(&store, "gone", None).await;
    put(&store, &s, 0, T0).await;
    let mut edge = store.live(s.id).unwrap().subscribe();
    store.delete_stream(&store.config().default_scope, &s.arn, Some(&s.version)).await.unwrap();
    assert!(edge.borrow_and_update().deleted);
    assert!(segment_files(dir.path()).is_empty());
    assert!(matches!(
        store.resolve(&store.config().default_scope, Some("gone"), None),
        Err(StoreError::StreamNotFound(_))
    ));
    assert!(matches!(store.submit_fragment(&s, fragment(1, T0, 10)).await, Err(StoreError::StreamNotFound(_))));

    // The same name again is a new stream with nothing in it.
    let again = create(&store, "gone", None).await;
    assert_ne!(again.id, s.id);
    assert!(store.first_fragment(again.id).unwrap().is_none());
    drop(store);
    let (store, report) = open(dir.path(), clock);
    assert_eq!(report.removed_files, 0);
    assert!(store.resolve(&store.config().default_scope, Some("gone"), None).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (store, _) = open(dir.path(), clock.clone());
    let mut streams: Vec<StreamRecord> = Vec::new();
    for i in 0..40 {
        streams.push(create(&store, &format!("cam-{i}"), None).await);
    }
    let mut tasks = Vec::new();
    for s in streams.clone() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..25 {
                pending.push(store.submit_fragment(&s, fragment(i, T0 + i, 4_000)).await.unwrap());
            }
            let mut numbers = Vec::new();
            for p in pending {
                numbers.push(p.persisted.await.unwrap().unwrap().fragment_number);
            }
            numbers
        }));
    }
    for (t, s) in tasks.into_iter().zip(&streams) {
        let numbers = t.await.unwrap();
        assert_eq!(numbers.len(), 25);
        let listed = store.fragments_from(s.id, 0, 100).unwrap();
        assert_eq!(listed.iter().map(|m| m.fragment_number).collect::<Vec<_>>(), numbers);
    }
}

#[tokio::test]
async fn the_in_flight_byte_budget_holds_producers_back_without_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.max_inflight_bytes = 64 * 1024;
    let (store, _) = open_config(config, Arc::new(ManualClock::new(T0)));
    let s = create(&store, "cam", None).await;
    // Pipelined like PutMedia: submit everything, await later. Each 100 kB fragment is
    // larger than the whole 64 KiB budget, so each waits for the one before to persist.
    let mut pending = Vec::new();
    for i in 0..5 {
        let submit = store.submit_fragment(&s, fragment(i, T0 + i, 100_000));
        pending.push(tokio::time::timeout(std::time::Duration::from_secs(10), submit).await.unwrap().unwrap());
    }
    for p in pending {
        p.persisted.await.unwrap().unwrap();
    }
    assert_eq!(store.fragments_from(s.id, 0, 10).unwrap().len(), 5);
}

#[tokio::test]
async fn a_store_written_in_a_newer_format_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    stored_then_closed(dir.path(), &clock, 1).await;
    for (component, store) in [("index", "data/index"), ("media", "data/media")] {
        let db = kinescope::embedded::sled_db::open(&dir.path().join("index"), 500).unwrap();
        let key = format!("format/{component}");
        let was = db.insert(&key, &9u32.to_be_bytes()).unwrap();
        assert_eq!(was.as_deref(), Some(&1u32.to_be_bytes()[..]), "format 1 was recorded at the first open");
        db.flush().unwrap();
        drop(db);
        let err = VideoStore::open(StoreConfig::new(dir.path()), clock.clone()).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains(store) && text.contains("format 9"), "{text}");
        let db = kinescope::embedded::sled_db::open(&dir.path().join("index"), 500).unwrap();
        db.insert(&key, &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let (store, _) = open(dir.path(), clock);
    assert!(store.resolve(&store.config().default_scope, Some("cam"), None).is_ok(), "format 1 opens again");
}

/// A catalog written before stores were scoped (format 1: records keyed by name, no
/// scope in them) opens with each stream in the scope of its ARN, fragments and all.
#[tokio::test]
async fn a_catalog_keyed_by_name_is_upgraded_to_the_default_scope() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let numbers = stored_then_closed(dir.path(), &clock, 3).await;
    // Rewrite the catalog as format 1 had it.
    let db = kinescope::embedded::sled_db::open(&dir.path().join("index"), 500).unwrap();
    let tree = db.open_tree("streams").unwrap();
    let (key, value) = tree.iter().next().unwrap().unwrap();
    assert_eq!(&key[..], b"000000000000/us-east-1/cam", "format 2 keys by scope and name");
    let mut record: serde_json::Value = serde_json::from_slice(&value).unwrap();
    record.as_object_mut().unwrap().remove("scope");
    tree.remove(&key).unwrap();
    tree.insert("cam", serde_json::to_vec(&record).unwrap()).unwrap();
    db.remove("format/catalog").unwrap();
    db.flush().unwrap();
    drop((tree, db));

    // The server now runs with another default scope: the stream stays in the account
    // and region its ARN names.
    let mut config = StoreConfig::new(dir.path());
    config.default_scope = kinescope::scope::Scope::new("123456789012", "eu-west-1");
    let (store, _) = open_config(config, clock);
    let scope = kinescope::scope::Scope::new("000000000000", "us-east-1");
    let s = store.resolve(&scope, Some("cam"), None).expect("the stream keeps its ARN's scope");
    assert_eq!(s.scope, scope);
    let stored: Vec<u64> = store.fragments_from(s.id, 0, 10).unwrap().iter().map(|m| m.fragment_number).collect();
    assert_eq!(stored, numbers, "its fragments are untouched");
    let other = store.config().default_scope.clone();
    assert!(matches!(store.resolve(&other, Some("cam"), None), Err(StoreError::StreamNotFound(_))));
    assert_eq!(store.list_streams(&scope, NamePage { prefix: "", after: None, limit: 10 }).unwrap().len(), 1);
}

/// Replaces, in the closed store under `dir`, the value of the first record of `tree`
/// whose key starts with `kind` (any record when `kind` is `None`); returns its key.
fn damage_record(dir: &Path, tree: &str, kind: Option<u8>, value: &[u8]) -> Vec<u8> {
    let db = kinescope::embedded::sled_db::open(&dir.join("index"), 500).unwrap();
    let t = db.open_tree(tree).unwrap();
    let key = t
        .iter()
        .keys()
        .map(|k| k.unwrap().to_vec())
        .find(|k| kind.is_none_or(|kind| k.first() == Some(&kind)))
        .expect("a record to damage");
    t.insert(&key, value).unwrap();
    db.flush().unwrap();
    key
}

fn quarantined(dir: &Path, store: &str) -> usize {
    std::fs::read_dir(dir.join("quarantine").join(store)).map_or(0, |d| d.count())
}

#[tokio::test]
async fn a_segment_summary_that_cannot_be_read_deletes_nothing() {
    use kinescope::video_store::embedded::index::KIND_SEGMENT;
    for (what, value) in [("damaged", vec![0xde, 0xad]), ("from a newer format", vec![7u8; 72])] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let numbers = stored_then_closed(dir.path(), &clock, 3).await;
        let files = segment_files(dir.path());
        let len = std::fs::metadata(&files[0]).unwrap().len();
        damage_record(dir.path(), "fragments", Some(KIND_SEGMENT), &value);

        let (store, report) = open(dir.path(), clock.clone());
        assert_eq!(report.unreadable_records, 1, "{what}");
        assert_eq!((report.removed_files, report.dropped_fragments, report.truncated_bytes), (0, 0, 0), "{what}");
        assert_eq!(segment_files(dir.path()), files, "{what}: the segment file is kept");
        assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), len, "{what}: and whole");
        assert_eq!(quarantined(dir.path(), "index"), 1, "{what}: a copy of the record is quarantined");
        let s = store.resolve(&store.config().default_scope, Some("cam"), None).unwrap();
        for n in &numbers {
            let meta = store.fragment(s.id, *n).unwrap().expect("the acknowledged fragment is still indexed");
            assert_eq!(store.read_fragment(s.id, &meta).await.unwrap().len(), 10_000, "{what}");
        }
    }
}

#[tokio::test]
async fn a_fragment_record_that_cannot_be_read_leaves_its_segment_whole() {
    use kinescope::video_store::embedded::index::KIND_FRAGMENT;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    stored_then_closed(dir.path(), &clock, 4).await;
    let files = segment_files(dir.path());
    let len = std::fs::metadata(&files[0]).unwrap().len();
    // Outside damage beside the unreadable record: a torn tail would normally be cut.
    std::fs::OpenOptions::new().append(true).open(&files[0]).unwrap().write_all(&[0x5A; 100]).unwrap();
    damage_record(dir.path(), "fragments", Some(KIND_FRAGMENT), &[1, 2, 3]);
    let (_store, report) = open(dir.path(), clock);
    assert_eq!(report.unreadable_records, 1);
    assert_eq!((report.removed_files, report.dropped_fragments, report.truncated_bytes), (0, 0, 0));
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().len(),
        len + 100,
        "nothing cut while it cannot be told what is safe"
    );
}

#[tokio::test]
async fn an_unreadable_stream_record_takes_no_stream_for_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let numbers = stored_then_closed(dir.path(), &clock, 2).await;
    let files = segment_files(dir.path());
    damage_record(dir.path(), "streams", None, b"{\"written by\": \"a newer Kinescope\"}");
    let (store, report) = open(dir.path(), clock.clone());
    assert_eq!(report.unreadable_records, 1);
    assert_eq!(report.removed_files, 0);
    assert_eq!(segment_files(dir.path()), files, "the stream's media is kept");
    assert_eq!(quarantined(dir.path(), "catalog"), 1);
    assert!(store.streams_with_events().is_ok(), "the other records still read");
    assert!(store.sweep_expired().await.is_ok(), "retention goes on, and takes nothing it cannot account for");
    assert_eq!(segment_files(dir.path()), files);
    assert_eq!(numbers.len(), 2);
}
