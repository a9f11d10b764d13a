//! Engine tests without HTTP: time moved by hand, restarts by reopening the directory.

use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::data_streams::{EngineOptions, NewDataStream, NewRecord, RecordDistribution};

const T0: i64 = 1_700_000_000_000_000;

fn scope() -> Scope {
    Scope::new("123456789012", "us-east-1")
}

fn stream() -> DataStreamId {
    DataStreamId::new(&scope(), "events")
}

/// Both engines on their embedded stores under `dir`.
fn open(dir: &Path, clock: Arc<ManualClock>) -> (DataStreamEngine, StreamQueueEngine) {
    let ds = DataStreamEngine::open(dir, clock, &scope(), EngineOptions::default()).unwrap();
    let q = StreamQueueEngine::open(dir, ds.clone()).unwrap();
    (ds, q)
}

fn on_demand() -> NewDataStream {
    NewDataStream { mode: Some(StreamMode::OnDemand), ..Default::default() }
}

fn queue(name: &str, start: StartKind, dead_letter: Option<DeadLetter>) -> NewQueue {
    NewQueue {
        name: name.into(),
        stream: stream(),
        start,
        start_ms: None,
        visibility_timeout_s: Some(30),
        dead_letter,
        tags: BTreeMap::new(),
    }
}

async fn put(ds: &DataStreamEngine, n: usize) {
    for i in 0..n {
        let r =
            NewRecord { partition_key: format!("k{i}"), data: format!("r{i}").into_bytes(), explicit_hash_key: None };
        ds.put_record(&stream(), r).await.unwrap();
    }
}

fn quick(limit: u32) -> Receive {
    Receive { limit, wait_s: 1, ..Default::default() }
}

fn datas(records: &[QueueRecord]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()).collect();
    v.sort();
    v
}

fn handles(records: &[QueueRecord]) -> Vec<String> {
    records.iter().map(|r| r.receipt_handle.clone()).collect()
}

#[tokio::test]
async fn records_are_delivered_hidden_redelivered_after_the_timeout_and_forgotten_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (ds, q) = open(dir.path(), clock.clone());
    ds.create_stream(&stream(), on_demand()).unwrap();
    put(&ds, 5).await;
    let arn = q.create(&scope(), queue("work", StartKind::TrimHorizon, None)).unwrap().arn;

    let first = q.receive(&scope(), &arn, quick(10)).await.unwrap();
    assert_eq!(datas(&first), ["r0", "r1", "r2", "r3", "r4"], "every record once");
    assert!(first.iter().all(|r| r.receive_count == 1 && r.first_receive_ms == T0 / 1000));
    assert!(first.iter().all(|r| r.record_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())));
    assert!(q.receive(&scope(), &arn, quick(10)).await.unwrap().is_empty(), "in flight: hidden");

    // Two acknowledged; the rest come back once their 30 s pass, with new handles.
    let acked = q.acknowledge(&scope(), &arn, &handles(&first[..2]), false).await.unwrap();
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    clock.advance_us(31_000 * 1000);
    let again = q.receive(&scope(), &arn, quick(10)).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|r| r.receive_count == 2 && r.first_receive_ms == T0 / 1000));
    let ids: BTreeSet<_> = first[2..].iter().map(|r| r.record_id.clone()).collect();
    assert_eq!(again.iter().map(|r| r.record_id.clone()).collect::<BTreeSet<_>>(), ids, "same record ids");

    // The first delivery's handle no longer works; the newest does.
    let stale = q.acknowledge(&scope(), &arn, &handles(&first[2..3]), false).await.unwrap();
    assert!(
        matches!(&stale[0], Err(DataStreamError::InvalidArgument(m)) if m.contains("delivered again")),
        "{stale:?}"
    );
    let ok = q.acknowledge(&scope(), &arn, &handles(&again), false).await.unwrap();
    assert!(ok.iter().all(Result::is_ok));
    clock.advance_us(60_000 * 1000);
    assert!(q.receive(&scope(), &arn, quick(10)).await.unwrap().is_empty(), "acknowledged records stay gone");
    assert_eq!(q.tracked(&scope(), &arn).await.unwrap(), (0, 0));
}

#[tokio::test]
async fn a_record_received_too_often_becomes_a_dead_letter_and_can_be_restored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (ds, q) = open(dir.path(), clock.clone());
    ds.create_stream(&stream(), on_demand()).unwrap();
    put(&ds, 1).await;
    let arn = q.create(&scope(), queue("dlq", StartKind::TrimHorizon, Some(DeadLetter::BuiltIn(2)))).unwrap().arn;
    for n in 1..=2 {
        let got = q.receive(&scope(), &arn, quick(1)).await.unwrap();
        assert_eq!(got[0].receive_count, n);
        clock.advance_us(31_000 * 1000);
    }
    assert!(q.receive(&scope(), &arn, quick(10)).await.unwrap().is_empty(), "a dead letter is not redelivered");
    let dead_letter = Receive { dead_letters: true, ..quick(10) };
    let dead = q.receive(&scope(), &arn, dead_letter).await.unwrap();
    assert_eq!(datas(&dead), ["r0"]);
    let wrong_side = q.acknowledge(&scope(), &arn, &handles(&dead), false).await.unwrap();
    assert!(
        matches!(&wrong_side[0], Err(DataStreamError::InvalidArgument(_))),
        "a dead letter's handle on the live path"
    );

    let restored = q.restore(&scope(), &arn, &handles(&dead)).await.unwrap();
    assert!(restored[0].is_ok(), "{restored:?}");
    let back = q.receive(&scope(), &arn, quick(10)).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].receive_count, 1, "restoring resets the receive count");
}

#[tokio::test]
async fn visibility_changes_count_from_now_and_zero_shows_the_record_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (ds, q) = open(dir.path(), clock.clone());
    ds.create_stream(&stream(), on_demand()).unwrap();
    put(&ds, 2).await;
    let arn = q.create(&scope(), queue("vis", StartKind::TrimHorizon, None)).unwrap().arn;
    let got = q.receive(&scope(), &arn, quick(10)).await.unwrap();
    let entries = vec![(got[0].receipt_handle.clone(), 0), (got[1].receipt_handle.clone(), 300)];
    let out = q.change_visibility(&scope(), &arn, &entries, false).await.unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let now_visible = q.receive(&scope(), &arn, quick(10)).await.unwrap();
    assert_eq!(now_visible.len(), 1);
    assert_eq!(now_visible[0].record_id, got[0].record_id);
    clock.advance_us(100_000 * 1000);
    let first_again = q.receive(&scope(), &arn, quick(10)).await.unwrap();
    assert_eq!(first_again.len(), 1, "the first one's 30 s have passed");
    q.acknowledge(&scope(), &arn, &handles(&first_again), false).await.unwrap();
    clock.advance_us(250_000 * 1000);
    assert_eq!(q.receive(&scope(), &arn, quick(10)).await.unwrap().len(), 1, "the second one's 300 s have passed");
}

#[tokio::test]
async fn latest_skips_what_was_there_and_the_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let arn = {
        let (ds, q) = open(dir.path(), clock.clone());
        ds.create_stream(&stream(), on_demand()).unwrap();
        put(&ds, 3).await;
        clock.advance_us(10 * 1000);
        let arn = q.create(&scope(), queue("latest", StartKind::Latest, None)).unwrap().arn;
        clock.advance_us(10 * 1000);
        put(&ds, 4).await;
        let got = q.receive(&scope(), &arn, quick(2)).await.unwrap();
        assert_eq!(got.len(), 2);
        q.acknowledge(&scope(), &arn, &handles(&got), false).await.unwrap();
        arn
    };
    let (ds, q) = open(dir.path(), clock.clone());
    let rest = q.receive(&scope(), &arn, quick(10)).await.unwrap();
    assert_eq!(rest.len(), 2, "the two not yet received, not the three from before the queue");
    assert_eq!(q.describe(&scope(), &arn).unwrap().meta.name, "latest");
    assert_eq!(q.count_for_stream(&stream()), 1);
    drop(ds);
}

#[tokio::test]
async fn queues_read_on_demand_streams_in_their_own_scope_and_refuse_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (ds, q) = open(dir.path(), clock);
    ds.create_stream(&stream(), NewDataStream { shard_count: Some(1), ..Default::default() }).unwrap();
    let e = q.create(&scope(), queue("p", StartKind::Latest, None)).unwrap_err();
    assert!(matches!(e, DataStreamError::InvalidArgument(ref m) if m.contains("PROVISIONED")), "{e}");
    ds.delete_stream(&stream(), false).unwrap();
    ds.create_stream(&stream(), on_demand()).unwrap();
    let other = Scope::new("210987654321", "us-east-1");
    assert!(matches!(q.create(&other, queue("x", StartKind::Latest, None)), Err(DataStreamError::ResourceNotFound(_))));
    let bad = NewQueue { visibility_timeout_s: Some(50_000), ..queue("v", StartKind::Latest, None) };
    assert!(matches!(q.create(&scope(), bad), Err(DataStreamError::Validation(_))));
    let bad = queue("d", StartKind::Latest, Some(DeadLetter::BuiltIn(0)));
    assert!(matches!(q.create(&scope(), bad), Err(DataStreamError::Validation(_))));
    let bad = NewQueue { start_ms: Some(1), ..queue("t", StartKind::Latest, None) };
    assert!(matches!(q.create(&scope(), bad), Err(DataStreamError::Validation(_))));
    let arn = q.create(&scope(), queue("ok", StartKind::Latest, None)).unwrap().arn;
    assert!(matches!(q.create(&scope(), queue("ok", StartKind::Latest, None)), Err(DataStreamError::ResourceInUse(_))));
    assert!(matches!(q.describe(&other, &arn), Err(DataStreamError::ResourceNotFound(_))), "another account's");
    let forged = q.acknowledge(&scope(), &arn, &["AAAA".to_string()], false).await.unwrap();
    assert!(matches!(forged[0], Err(DataStreamError::InvalidArgument(_))));
    let too_many = Receive { limit: 11, ..quick(1) };
    assert!(matches!(q.receive(&scope(), &arn, too_many).await, Err(DataStreamError::Validation(_))));
    q.delete(&scope(), &arn).unwrap();
    assert!(matches!(q.describe(&scope(), &arn), Err(DataStreamError::ResourceNotFound(_))));
    assert_eq!(q.count_for_stream(&stream()), 0);
}

#[tokio::test]
async fn a_long_poll_returns_when_a_record_is_put() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, q) = {
        let ds =
            DataStreamEngine::open(dir.path(), Arc::new(crate::clock::SystemClock), &scope(), EngineOptions::default())
                .unwrap();
        let q = StreamQueueEngine::open(dir.path(), ds.clone()).unwrap();
        (ds, q)
    };
    ds.create_stream(&stream(), NewDataStream { distribution: Some(RecordDistribution::Auto), ..on_demand() }).unwrap();
    let arn = q.create(&scope(), queue("poll", StartKind::Latest, None)).unwrap().arn;
    let waiting = {
        let q = q.clone();
        let arn = arn.clone();
        tokio::spawn(async move { q.receive(&scope(), &arn, Receive { wait_s: 20, ..Default::default() }).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // No partition key: the stream places the record itself.
    ds.put_record(&stream(), NewRecord { data: b"late".to_vec(), ..Default::default() }).await.unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(datas(&got), ["late"]);
    assert_eq!(got[0].partition_key, "", "no key given, none returned");
}
