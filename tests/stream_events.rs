//! The stream-event follower driven through the engines: FRAGMENT events for a stream's
//! fragments reach a queue, and a cursor that cannot be read stops the follower instead
//! of restarting it at the live edge (which skipped every event in between, unlogged).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kinescope::api::harness::Harness;
use kinescope::clock::{Clock, SharedClock, SystemClock};
use kinescope::ingest::fragmenter::{FragmentLimits, Fragmenter, FragmenterEvent};
use kinescope::metrics::Metrics;
use kinescope::queues::{QueueId, ReceiveRequest};
use kinescope::stream_events::EventTargets;
use kinescope::video_store::{NewFragment, NotificationSettings, StreamRecord, VideoStore};

/// The fixture's fragments: the init segment and each fragment's chunks.
fn fixture() -> (bytes::Bytes, Vec<Vec<bytes::Bytes>>) {
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mp4")).unwrap();
    let mut f = Fragmenter::new(FragmentLimits::default());
    let mut events = Vec::new();
    f.push(&file, &mut events).unwrap();
    f.finish(&mut events).unwrap();
    let (mut init, mut chunks) = (None, Vec::new());
    for e in events {
        match e {
            FragmenterEvent::Init(i) => init = Some(i.bytes),
            FragmenterEvent::Fragment(a) => chunks.push(a.chunks),
            _ => {}
        }
    }
    (init.unwrap(), chunks)
}

async fn store_fragments(store: &VideoStore, record: &StreamRecord, init_id: u32, chunks: &[Vec<bytes::Bytes>]) {
    for c in chunks {
        let now = SystemClock.now_us();
        let f = NewFragment {
            producer_ts_us: now,
            server_ts_us: now,
            duration_us: 1_000_000,
            init_id,
            keyframe: true,
            chunks: c.clone(),
        };
        store.submit_fragment(record, f).await.unwrap().persisted.await.unwrap().unwrap();
    }
}

/// Fragment numbers of the FRAGMENT events in the queue, as they arrive, until `n`.
async fn events(queues: &kinescope::queues::QueueEngine, queue: &QueueId, n: usize, wait: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while seen.len() < n && tokio::time::Instant::now() < deadline {
        let req = ReceiveRequest {
            max_messages: 10,
            visibility_timeout_s: Some(300),
            wait_time_s: Some(1),
            attempt_id: None,
        };
        for m in queues.receive(queue, req).await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&m.message.body).unwrap();
            seen.push(v["fragmentNumber"].as_str().unwrap_or_default().to_string());
        }
    }
    seen
}

fn start(
    dir: &Path,
    h: &Harness,
    metrics: &Arc<Metrics>,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let pool = kinescope::images::RenderPool::start(1, 4, 64 << 20, metrics.clone()).unwrap();
    let delivery = h.delivery_streams.clone();
    let targets = EventTargets {
        store: h.store.clone(),
        images: kinescope::images::ImageService::new(h.store.clone(), pool, metrics.clone()),
        queues: h.queues.clone(),
        data_streams: h.data_streams.clone(),
        delivery_streams: delivery,
        metrics: metrics.clone(),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = kinescope::stream_events::start(targets, dir, stop_rx).unwrap();
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_cannot_be_read_stops_the_follower_and_no_event_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    let h = Harness::open(dir.path(), clock.clone(), &[]);
    let scope = h.store.config().default_scope.clone();
    let queue = QueueId::new(&scope, "events");
    h.queues.create_queue(&queue, &BTreeMap::new(), &BTreeMap::new()).await.unwrap();
    h.store
        .create_stream(&scope, kinescope::video_store::NewStream { name: "cam".into(), ..Default::default() })
        .await
        .unwrap();
    let uri = scope.arn("sqs", "events");
    let record = h
        .store
        .set_notification(&scope, Some("cam"), None, Some(NotificationSettings { status: "ENABLED".into(), uri }))
        .await
        .unwrap();
    let (init, chunks) = fixture();
    let init_id = h.store.put_init(record.id, init).await.unwrap();
    let metrics = Arc::new(Metrics::default());

    // Two fragments, two events.
    let (stop, task) = start(dir.path(), &h, &metrics);
    tokio::time::sleep(Duration::from_millis(300)).await;
    store_fragments(&h.store, &record, init_id, &chunks[..2]).await;
    let first = events(&h.queues, &queue, 2, Duration::from_secs(30)).await;
    assert_eq!(first.len(), 2, "{first:?}");
    stop.send(true).unwrap();
    task.await.unwrap();

    // The cursor is damaged; two fragments arrive meanwhile.
    let cursors = kinescope::embedded::sled_db::open(&dir.path().join("stream_events"), 500).unwrap();
    let key = record.id.to_be_bytes();
    let good = cursors.get(key).unwrap().expect("the follower kept a cursor");
    cursors.insert(key, &b"\xff not a cursor"[..]).unwrap();
    cursors.flush().unwrap();
    drop(cursors);
    store_fragments(&h.store, &record, init_id, &chunks[2..4]).await;

    // The follower stops, loudly, rather than jumping to the live edge.
    let (stop, task) = start(dir.path(), &h, &metrics);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.event_followers_stopped.get() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metrics.event_followers_stopped.get(), 1);
    assert!(
        events(&h.queues, &queue, 1, Duration::from_secs(3)).await.is_empty(),
        "nothing published past a cursor it cannot read"
    );
    stop.send(true).unwrap();
    task.await.unwrap();

    // Mended, it goes on where it was: the two fragments stored meanwhile are not skipped.
    let cursors = kinescope::embedded::sled_db::open(&dir.path().join("stream_events"), 500).unwrap();
    cursors.insert(key, good).unwrap();
    cursors.flush().unwrap();
    drop(cursors);
    let (stop, task) = start(dir.path(), &h, &metrics);
    let later = events(&h.queues, &queue, 2, Duration::from_secs(30)).await;
    assert_eq!(later.len(), 2, "{later:?}");
    let numbers: Vec<u64> = first.iter().chain(&later).map(|n| n.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    stop.send(true).unwrap();
    task.await.unwrap();
}
