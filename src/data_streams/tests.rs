//! Engine tests without HTTP: time moved by hand, crashes simulated by reopening the
//! directory with damaged files.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;

const T0: i64 = 1_700_000_000_000_000;

/// The engine on its storage traits, kept under `dir` by the embedded implementations:
/// a second implementation runs these tests by changing this one function.
fn open(dir: &Path, clock: Arc<ManualClock>) -> DataStreamEngine {
    let root = dir.join("data_streams");
    let meta = Arc::new(super::embedded::SledDataStreamMeta::open(&root, &scope()).unwrap());
    let logs = Arc::new(super::embedded::log_files::LogFiles::new(&root));
    DataStreamEngine::open_with(meta, logs, [3; 32], clock, EngineOptions::default()).unwrap()
}

fn scope() -> Scope {
    Scope::new("123456789012", "us-east-1")
}

fn s() -> DataStreamId {
    DataStreamId::new(&scope(), "s")
}

fn rec(pk: &str, data: &str) -> NewRecord {
    NewRecord { partition_key: pk.into(), data: data.as_bytes().to_vec(), explicit_hash_key: None }
}

async fn read_all(e: &DataStreamEngine, id: &DataStreamId, shard: &str) -> Vec<Record> {
    let mut it = Some(e.get_shard_iterator(id, shard, StartingPosition::TrimHorizon).unwrap());
    let mut out = Vec::new();
    while let Some(i) = it {
        let r = e.get_records(&i, None).await.unwrap();
        let empty = r.records.is_empty();
        out.extend(r.records);
        it = r.next_iterator;
        if empty {
            break;
        }
    }
    out
}

#[tokio::test]
async fn a_torn_tail_is_dropped_on_reopen_and_acknowledged_records_stay() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let e = open(dir.path(), clock.clone());
    e.create_stream(&s(), NewDataStream { shard_count: Some(1), ..Default::default() }).unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(e.put_record(&s(), rec("k", &format!("r{i}"))).await.unwrap());
    }
    drop(e);
    // A crash in the middle of the next append leaves half a frame behind.
    let seg = std::fs::read_dir(dir.path().join("data_streams"))
        .unwrap()
        .filter_map(|d| d.ok())
        .find(|d| d.path().is_dir() && d.file_name() != "meta")
        .unwrap()
        .path()
        .join("0000000001.log");
    let mut torn = Vec::new();
    record_log::encode_frame(
        &mut torn,
        &record_log::Frame { shard: 0, seq: 999, arrival_ms: 0, partition_key: "k", data: b"never acked" },
    );
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&seg, &bytes).unwrap();

    let e = open(dir.path(), clock);
    let got = read_all(&e, &s(), "shardId-000000000000").await;
    assert_eq!(got.len(), 20);
    for (a, r) in acked.iter().zip(&got) {
        assert_eq!(a.sequence_number, r.sequence_number);
    }
    // Appends continue after the cut, with higher numbers.
    let next = e.put_record(&s(), rec("k", "after")).await.unwrap();
    assert!(next.sequence_number > acked[19].sequence_number);
    assert_eq!(read_all(&e, &s(), "shardId-000000000000").await.last().unwrap().data, b"after");
}

#[tokio::test]
async fn iterators_expire_after_five_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let e = open(dir.path(), clock.clone());
    e.create_stream(&s(), NewDataStream { shard_count: Some(1), ..Default::default() }).unwrap();
    let it = e.get_shard_iterator(&s(), "shardId-000000000000", StartingPosition::Latest).unwrap();
    clock.advance_us(299_000_000);
    let next = e.get_records(&it, None).await.unwrap().next_iterator.unwrap();
    clock.advance_us(2_000_000);
    assert!(matches!(e.get_records(&it, None).await, Err(DataStreamError::ExpiredIterator(_))));
    // The iterator a read returns is fresh.
    assert!(e.get_records(&next, None).await.is_ok());
}

#[tokio::test]
async fn retention_hides_old_records_and_the_sweep_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let e = open(dir.path(), clock.clone());
    e.create_stream(&s(), NewDataStream { shard_count: Some(2), ..Default::default() }).unwrap();
    for i in 0..10 {
        e.put_record(&s(), rec(&format!("k{i}"), "old")).await.unwrap();
    }
    clock.advance_us(23 * 3_600_000_000);
    e.put_record(&s(), rec("k1", "new")).await.unwrap();
    clock.advance_us(2 * 3_600_000_000);
    let mut seen = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        seen.extend(read_all(&e, &s(), shard).await.into_iter().map(|r| r.data));
    }
    assert_eq!(seen, vec![b"new".to_vec()]);
    assert_eq!(e.sweep().unwrap(), 10);
    assert_eq!(e.stored_records(&s()).unwrap(), 1);
}

#[tokio::test]
async fn at_timestamp_and_sequence_positions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let e = open(dir.path(), clock.clone());
    e.create_stream(&s(), NewDataStream { shard_count: Some(1), ..Default::default() }).unwrap();
    let a = e.put_record(&s(), rec("k", "a")).await.unwrap();
    clock.advance_us(1_000_000);
    let b = e.put_record(&s(), rec("k", "b")).await.unwrap();
    let sid = "shardId-000000000000";
    let at = |p| e.get_shard_iterator(&s(), sid, p).unwrap();
    let first = |it: String| {
        let e = e.clone();
        async move { e.get_records(&it, Some(1)).await.unwrap().records.first().map(|r| r.data.clone()) }
    };
    assert_eq!(first(at(StartingPosition::AtTimestamp(T0 / 1000 + 500))).await, Some(b"b".to_vec()));
    assert_eq!(first(at(StartingPosition::AtTimestamp(0))).await, Some(b"a".to_vec()));
    assert_eq!(first(at(StartingPosition::AfterSequence(a.sequence_number.clone()))).await, Some(b"b".to_vec()));
    assert_eq!(first(at(StartingPosition::AtSequence(b.sequence_number.clone()))).await, Some(b"b".to_vec()));
    assert_eq!(first(at(StartingPosition::AfterSequence(b.sequence_number))).await, None);
}

#[tokio::test]
async fn a_subscription_pushes_new_records_and_ends_at_a_closed_shard() {
    let dir = tempfile::tempdir().unwrap();
    let e = DataStreamEngine::open(dir.path(), Arc::new(crate::clock::SystemClock), &scope(), EngineOptions::default())
        .unwrap();
    e.create_stream(&s(), NewDataStream { shard_count: Some(1), ..Default::default() }).unwrap();
    let c = e.register_consumer(&s(), "app", BTreeMap::new()).unwrap();
    let mut sub = e.subscribe(&c.arn, "shardId-000000000000", StartingPosition::Latest).unwrap();
    let e2 = e.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        e2.put_record(&s(), rec("k", "pushed")).await.unwrap();
        e2.split_shard(&s(), "shardId-000000000000", 1 << 100).unwrap();
    });
    let ev = sub.next_event().await.unwrap().unwrap();
    assert_eq!(ev.records[0].data, b"pushed");
    assert_eq!(ev.continuation_sequence_number, ev.records[0].sequence_number);
    let mut end = sub.next_event().await.unwrap().unwrap();
    while end.child_shards.is_empty() {
        end = sub.next_event().await.unwrap().unwrap();
    }
    assert_eq!(end.child_shards.len(), 2);
    assert!(sub.next_event().await.is_none());
}
