//! The engine driven directly: durability, buffering, delivery, retries.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use super::settings::*;
use super::*;
use crate::clock::SystemClock;

fn scope() -> Scope {
    Scope::new("123456789012", "us-east-1")
}

fn bucket_destination(interval_secs: u32, compression: Compression) -> Destination {
    Destination::Bucket(BucketDestination {
        role_arn: "arn:aws:iam::123456789012:role/firehose".into(),
        bucket_arn: "arn:aws:s3:::frames".into(),
        prefix: Some("events/".into()),
        buffering: BufferingHints { size_mib: Some(1), interval_secs: Some(interval_secs) },
        compression,
        processing: Some(Processing {
            enabled: true,
            processors: vec![Processor { kind: "AppendDelimiterToRecord".into(), parameters: vec![] }],
        }),
        ..Default::default()
    })
}

fn options() -> DeliveryOptions {
    DeliveryOptions {
        retry_min_ms: 20,
        retry_max_ms: 100,
        queries: query_workers(),
        default_account: scope().account,
        ..Default::default()
    }
}

/// Query workers are the `kinescope` binary, built beside this test binary
/// (`target/debug/deps/…` → `target/debug/kinescope`) whenever the package's tests are.
fn query_workers() -> query_sandbox::QuerySandbox {
    let exe = std::env::current_exe().unwrap();
    let program = exe.parent().and_then(|d| d.parent()).unwrap().join("kinescope");
    assert!(program.exists(), "{} is not built (cargo build --bin kinescope)", program.display());
    let limits = query_sandbox::QueryLimits { record_budget: Duration::from_millis(400), memory_bytes: 1 << 30 };
    query_sandbox::QuerySandbox::new(program, limits)
}

fn objects(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every object under `root`, read and joined in key order.
fn text_under(root: &std::path::Path) -> String {
    objects(root).iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

fn direct() -> Source {
    Source::DirectPut { throughput_hint_mib: None }
}

#[tokio::test]
async fn records_are_delivered_to_the_bucket_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
    let id = DeliveryStreamId::new(&scope(), "detections");
    let arn = engine.create(&id, direct(), bucket_destination(0, Compression::Gzip), BTreeMap::new()).unwrap();
    assert_eq!(arn, "arn:aws:firehose:us-east-1:123456789012:deliverystream/detections");
    let ids = engine.put(&id, &[b"{\"n\":1}", b"{\"n\":2}"]).unwrap().record_ids;
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(engine.wait_delivered(&id, Duration::from_secs(10)).await);
    let files = objects(&dir.path().join("buckets/frames"));
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].strip_prefix(dir.path().join("buckets/frames")).unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("events/20") && name.contains("/detections-1-") && name.ends_with(".gz"), "{name}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&files[0]).unwrap()).read_to_string(&mut text).unwrap();
    assert_eq!(text, "{\"n\":1}\n{\"n\":2}\n");
}

#[tokio::test]
async fn a_buffer_waits_for_its_interval_or_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
    let id = DeliveryStreamId::new(&scope(), "slow");
    engine.create(&id, direct(), bucket_destination(900, Compression::Uncompressed), BTreeMap::new()).unwrap();
    engine.put(&id, &[b"small"]).unwrap();
    assert!(!engine.wait_delivered(&id, Duration::from_millis(300)).await, "held for the interval");
    let big = vec![b'x'; 600_000];
    engine.put(&id, &[&big, &big]).unwrap();
    // 1 MiB is due at once: the oldest records up to that size; the rest waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.describe(&id).unwrap().pending_records != 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let files = objects(&dir.path().join("buckets/frames"));
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].metadata().unwrap().len(), 6 + 600_001);
    assert_eq!(engine.describe(&id).unwrap().pending_bytes, 600_000);
}

#[tokio::test]
async fn undelivered_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = DeliveryStreamId::new(&scope(), "durable");
    {
        let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
        engine.create(&id, direct(), bucket_destination(900, Compression::Uncompressed), BTreeMap::new()).unwrap();
        for i in 0..50 {
            engine.put(&id, &[format!("r{i}").as_bytes()]).unwrap();
        }
        engine.shutdown().await;
    }
    // Reopened with a short interval: everything accepted before is delivered once.
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
    assert_eq!(engine.describe(&id).unwrap().pending_records, 50);
    engine
        .update_destination(&id, 1, "destinationId-000000000001", |current| {
            let mut next = current.clone();
            if let Destination::Bucket(b) = &mut next {
                b.buffering = BufferingHints { size_mib: Some(1), interval_secs: Some(0) };
            }
            Ok(next)
        })
        .unwrap();
    assert!(engine.wait_delivered(&id, Duration::from_secs(10)).await);
    let text: String =
        objects(&dir.path().join("buckets/frames")).iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, (0..50).map(|i| format!("r{i}")).collect::<Vec<_>>());
    assert_eq!(engine.describe(&id).unwrap().meta.version, 2);
}

#[tokio::test]
async fn a_bucket_that_fails_is_retried_until_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
    let id = DeliveryStreamId::new(&scope(), "retry");
    std::fs::create_dir_all(dir.path().join("buckets")).unwrap();
    std::fs::write(dir.path().join("buckets/frames"), b"not a directory").unwrap();
    engine.create(&id, direct(), bucket_destination(0, Compression::Uncompressed), BTreeMap::new()).unwrap();
    engine.put(&id, &[b"kept"]).unwrap();
    assert!(!engine.wait_delivered(&id, Duration::from_millis(300)).await);
    std::fs::remove_file(dir.path().join("buckets/frames")).unwrap();
    assert!(engine.wait_delivered(&id, Duration::from_secs(10)).await);
    let files = objects(&dir.path().join("buckets/frames"));
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"kept\n");
}

#[tokio::test]
async fn a_full_backlog_refuses_puts_with_slow_down() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DeliveryOptions { max_backlog_records: 3, ..options() };
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), opts).unwrap();
    let id = DeliveryStreamId::new(&scope(), "full");
    engine.create(&id, direct(), bucket_destination(900, Compression::Uncompressed), BTreeMap::new()).unwrap();
    engine.put(&id, &[b"1", b"2", b"3"]).unwrap();
    assert!(matches!(engine.put(&id, &[b"4"]), Err(DeliveryStreamError::ServiceUnavailable(_))));
}

#[tokio::test]
async fn control_plane_errors_are_firehoses() {
    let dir = tempfile::tempdir().unwrap();
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
    let id = DeliveryStreamId::new(&scope(), "one");
    let d = bucket_destination(0, Compression::Uncompressed);
    engine.create(&id, direct(), d.clone(), BTreeMap::new()).unwrap();
    assert!(matches!(
        engine.create(&id, direct(), d.clone(), BTreeMap::new()),
        Err(DeliveryStreamError::ResourceInUse(_))
    ));
    let bad = DeliveryStreamId::new(&scope(), "no spaces");
    assert!(matches!(
        engine.create(&bad, direct(), d.clone(), BTreeMap::new()),
        Err(DeliveryStreamError::InvalidArgument(_))
    ));
    assert!(matches!(
        engine.update_destination(&id, 7, "destinationId-000000000001", |d| Ok(d.clone())),
        Err(DeliveryStreamError::ConcurrentModification(_))
    ));
    let (names, more) = engine.list(&scope(), None, None, 10);
    assert_eq!((names, more), (vec!["one".to_string()], false));
    engine.delete(&id).unwrap();
    assert!(matches!(engine.describe(&id), Err(DeliveryStreamError::ResourceNotFound(_))));
    assert!(matches!(engine.put(&id, &[b"x"]), Err(DeliveryStreamError::ResourceNotFound(_))));
}

#[tokio::test]
async fn a_data_stream_source_is_read_into_the_bucket() {
    use crate::data_streams::{DataStreamId, NewRecord};
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let (clock, ds, source, opts) = data_stream_source(dir.path(), "frames", 2);
    let engine = DeliveryStreamEngine::open(dir.path(), clock.clone(), opts.clone()).unwrap();
    let id = DeliveryStreamId::new(&scope(), "archive");
    let from = Source::KinesisStream { stream_arn: source.arn(), role_arn: "arn:aws:iam::123456789012:role/r".into() };
    engine.create(&id, from.clone(), bucket_destination(0, Compression::Uncompressed), BTreeMap::new()).unwrap();
    assert!(matches!(engine.put(&id, &[b"direct"]), Err(DeliveryStreamError::InvalidArgument(_))));
    let missing = Source::KinesisStream {
        stream_arn: DataStreamId::new(&scope(), "nope").arn(),
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
    };
    let other = DeliveryStreamId::new(&scope(), "other");
    assert!(matches!(
        engine.create(&other, missing, bucket_destination(0, Compression::Uncompressed), BTreeMap::new()),
        Err(DeliveryStreamError::InvalidArgument(_))
    ));

    let put = |from: usize| {
        (from..from + 20)
            .map(|i| NewRecord {
                partition_key: format!("k{i}"),
                data: format!("r{i}").into_bytes(),
                explicit_hash_key: None,
            })
            .collect::<Vec<_>>()
    };
    ds.put_records(&source, put(0)).await.unwrap();
    let lines = |n: usize| {
        let root = dir.path().join("buckets/frames");
        move || {
            let mut l: Vec<String> = objects(&root)
                .iter()
                .flat_map(|p| std::fs::read_to_string(p).unwrap().lines().map(String::from).collect::<Vec<_>>())
                .collect();
            l.sort();
            l.dedup();
            (l.len() >= n).then_some(l)
        }
    };
    let got = wait(lines(20)).await;
    assert_eq!(got.len(), 20);

    // Across a restart: read on from the checkpoint, nothing twice.
    engine.shutdown().await;
    drop(engine);
    ds.put_records(&source, put(20)).await.unwrap();
    let engine = DeliveryStreamEngine::open(dir.path(), clock, opts).unwrap();
    let got = wait(lines(40)).await;
    assert_eq!(got.len(), 40);
    let total: usize = objects(&dir.path().join("buckets/frames"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum();
    assert_eq!(total, 40, "each record delivered once");
    engine.shutdown().await;
}

async fn wait<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1000 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out");
}

#[tokio::test]
async fn dynamic_partitioning_writes_an_object_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
    let id = DeliveryStreamId::new(&scope(), "parts");
    let Destination::Bucket(mut b) = bucket_destination(0, Compression::Uncompressed) else { unreachable!() };
    b.prefix = Some("camera=!{partitionKeyFromQuery:camera}/".into());
    b.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
    b.partitioning = Some(Partitioning { enabled: true, retry_secs: None });
    let processing = b.processing.as_mut().unwrap();
    processing.processors.push(Processor {
        kind: "MetadataExtraction".into(),
        parameters: vec![
            ProcessorParameter { name: "MetadataExtractionQuery".into(), value: "{camera: .cam}".into() },
            ProcessorParameter { name: "JsonParsingEngine".into(), value: "JQ-1.6".into() },
        ],
    });
    let mut bad = b.clone();
    bad.processing.as_mut().unwrap().processors[1].parameters[0].value = "{camera: .cam".into();
    let other = DeliveryStreamId::new(&scope(), "bad");
    assert!(matches!(
        engine.create(&other, direct(), Destination::Bucket(bad), BTreeMap::new()),
        Err(DeliveryStreamError::InvalidArgument(_))
    ));
    engine.create(&id, direct(), Destination::Bucket(b), BTreeMap::new()).unwrap();
    engine
        .put(&id, &[br#"{"cam":"door","n":1}"#, br#"{"cam":"yard","n":2}"#, br#"{"cam":"door","n":3}"#, b"not json"])
        .unwrap();
    assert!(engine.wait_delivered(&id, Duration::from_secs(10)).await);
    let root = dir.path().join("buckets/frames");
    let read_under = |prefix: &str| text_under(&root.join(prefix));
    assert_eq!(read_under("camera=door"), "{\"cam\":\"door\",\"n\":1}\n{\"cam\":\"door\",\"n\":3}\n");
    assert_eq!(read_under("camera=yard"), "{\"cam\":\"yard\",\"n\":2}\n");
    let failure: serde_json::Value = serde_json::from_str(&read_under("errors/processing-failed")).unwrap();
    assert_eq!(failure["errorCode"], "DynamicPartitioning.MetadataExtractionFailed");
    assert_eq!(failure["rawData"], "bm90IGpzb24=", "the record as it was put: 'not json'");
}

/// A dynamic-partitioning stream whose query is `query`, created on `engine`.
fn partitioned(query: &str) -> Destination {
    let Destination::Bucket(mut b) = bucket_destination(0, Compression::Uncompressed) else { unreachable!() };
    b.prefix = Some("camera=!{partitionKeyFromQuery:camera}/".into());
    b.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
    b.partitioning = Some(Partitioning { enabled: true, retry_secs: None });
    b.processing.as_mut().unwrap().processors.push(Processor {
        kind: "MetadataExtraction".into(),
        parameters: vec![ProcessorParameter { name: "MetadataExtractionQuery".into(), value: query.into() }],
    });
    Destination::Bucket(b)
}

fn failures_under(root: &std::path::Path) -> Vec<serde_json::Value> {
    objects(root)
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn hostile_records_and_queries_fail_alone_and_never_reach_the_server_process() {
    let dir = tempfile::tempdir().unwrap();
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
    // What cannot end or crashes on any record is refused when the stream is created.
    for q in ["def f: [f]; f", "last(range(1e18))", "{c: ([range(1e10)] | length)}", &"(".repeat(6000)] {
        let id = DeliveryStreamId::new(&scope(), "refused");
        match engine.create(&id, direct(), partitioned(q), BTreeMap::new()) {
            Err(DeliveryStreamError::InvalidArgument(why)) => assert!(why.contains("MetadataExtractionQuery"), "{why}"),
            other => panic!("{q}: {other:?}"),
        }
    }
    // A query that loops or recurses for one record only: that record fails, alone.
    let query = "if .slow then last(range(1e18)) elif .boom then (def f: [f]; f) else {camera: .cam} end";
    let id = DeliveryStreamId::new(&scope(), "hostile");
    engine.create(&id, direct(), partitioned(query), BTreeMap::new()).unwrap();
    let deep = "[".repeat(20_000);
    let long_key = format!(r#"{{"cam":"{}"}}"#, "k".repeat(300));
    let records: Vec<&[u8]> = vec![
        br#"{"cam":"door"}"#,
        br#"{"slow":true}"#,
        br#"{"cam":"yard"}"#,
        br#"{"boom":true}"#,
        deep.as_bytes(),
        long_key.as_bytes(),
        br#"{"cam":"door"}"#,
    ];
    engine.put(&id, &records).unwrap();
    assert!(engine.wait_delivered(&id, Duration::from_secs(30)).await);
    let root = dir.path().join("buckets/frames");
    let read_under = |prefix: &str| text_under(&root.join(prefix));
    assert_eq!(read_under("camera=door"), "{\"cam\":\"door\"}\n{\"cam\":\"door\"}\n");
    assert_eq!(read_under("camera=yard"), "{\"cam\":\"yard\"}\n");
    let failures = failures_under(&root.join("errors/processing-failed"));
    let messages: Vec<String> = failures.iter().map(|f| f["errorMessage"].as_str().unwrap().to_string()).collect();
    assert_eq!(failures.len(), 4, "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("time budget")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("crashed")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("nests deeper")), "{messages:?}");
    assert!(failures.iter().any(|f| f["errorCode"] == "DynamicPartitioning.InvalidPartitionKey"), "{messages:?}");
}

#[tokio::test]
async fn partitions_past_the_limit_go_under_the_error_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let engine = DeliveryStreamEngine::open(dir.path(), Arc::new(SystemClock), options()).unwrap();
    let id = DeliveryStreamId::new(&scope(), "many");
    engine.create(&id, direct(), partitioned("{camera: .cam}"), BTreeMap::new()).unwrap();
    let records: Vec<Vec<u8>> =
        (0..delivery::MAX_ACTIVE_PARTITIONS + 20).map(|i| format!(r#"{{"cam":"c{i}"}}"#).into_bytes()).collect();
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    engine.put(&id, &refs).unwrap();
    assert!(engine.wait_delivered(&id, Duration::from_secs(30)).await);
    let root = dir.path().join("buckets/frames");
    let partitions = std::fs::read_dir(&root)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("camera="));
    assert_eq!(partitions.count(), delivery::MAX_ACTIVE_PARTITIONS);
    let over = failures_under(&root.join("errors/activePartitionExceeded"));
    assert_eq!(over.len(), 20);
    assert_eq!(over[0]["errorCode"], "DynamicPartitioning.ActivePartitionsExceeded");
}

#[tokio::test]
async fn kpl_aggregated_records_from_a_data_stream_are_split() {
    use crate::data_streams::NewRecord;
    let dir = tempfile::tempdir().unwrap();
    let (clock, ds, source, opts) = data_stream_source(dir.path(), "kpl", 1);
    let engine = DeliveryStreamEngine::open(dir.path(), clock, opts).unwrap();
    let id = DeliveryStreamId::new(&scope(), "split");
    let from = Source::KinesisStream { stream_arn: source.arn(), role_arn: "arn:aws:iam::123456789012:role/r".into() };
    engine.create(&id, from, bucket_destination(0, Compression::Uncompressed), BTreeMap::new()).unwrap();
    let aggregated = crate::wire::kpl::encode("cam", &[b"one", b"two", b"three"]);
    ds.put_records(
        &source,
        vec![
            NewRecord { partition_key: "cam".into(), data: aggregated, explicit_hash_key: None },
            NewRecord { partition_key: "cam".into(), data: b"plain".to_vec(), explicit_hash_key: None },
        ],
    )
    .await
    .unwrap();
    let root = dir.path().join("buckets/frames");
    let text = wait(|| {
        let t: String = objects(&root).iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
        (t.lines().count() >= 4).then_some(t)
    })
    .await;
    assert_eq!(text, "one\ntwo\nthree\nplain\n");
    engine.shutdown().await;
}

#[test]
fn record_ids_are_the_uid_and_serial_in_hex() {
    assert_eq!(super::record_id(0xab, 0x1234_5678_9abc_def0), "00000000000000ab123456789abcdef0");
    assert_eq!(super::record_id(u64::MAX, 0), format!("{:016x}{:016x}", u64::MAX, 0));
}

/// A data-stream engine in `dir` with a stream `name` of `shards` shards, and delivery
/// options that read from it.
fn data_stream_source(
    dir: &std::path::Path,
    name: &str,
    shards: u32,
) -> (
    crate::clock::SharedClock,
    crate::data_streams::DataStreamEngine,
    crate::data_streams::DataStreamId,
    DeliveryOptions,
) {
    use crate::data_streams::{DataStreamEngine, DataStreamId, EngineOptions};
    let clock: crate::clock::SharedClock = Arc::new(SystemClock);
    let ds = DataStreamEngine::open(dir, clock.clone(), &scope(), EngineOptions::default()).unwrap();
    let source = DataStreamId::new(&scope(), name);
    ds.create_stream(&source, crate::data_streams::NewDataStream { shard_count: Some(shards), ..Default::default() })
        .unwrap();
    let opts = DeliveryOptions { data_streams: Some(ds.clone()), ..options() };
    (clock, ds, source, opts)
}
