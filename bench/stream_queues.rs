//! Stream-queue benchmark, without HTTP: draining a backlog of records from a Kinesis
//! stream queue (ReceiveQueueRecords of 10, then AcknowledgeQueueRecords of the 10), from
//! 1 and 8 concurrent consumers.
//!
//! `cargo bench --bench stream_queues`. The reference, measured in the same process on
//! the same disk, is the SQS queue engine draining the same number of messages of the
//! same size (ReceiveMessage of 10, then DeleteMessage of each): the work a consumer
//! moving from SQS to a stream queue would see. The sides alternate, three rounds each
//! (`KINESCOPE_BENCH_ROUNDS`); the table shows medians and the spread (lowest–highest).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use kinescope::clock::SystemClock;
use kinescope::data_streams::{DataStreamEngine, DataStreamId, EngineOptions, Mode, NewDataStream, NewRecord};
use kinescope::queues::{QueueEngine, QueueId, ReceiveRequest, SendRequest};
use kinescope::scope::Scope;
use kinescope::stream_queues::store::StartKind;
use kinescope::stream_queues::{NewQueue, Receive, StreamQueueEngine};

#[path = "common.rs"]
mod common;
use common::{median_spread, scaled};

const RECORD: usize = 100;

/// Drains `total` records with `consumers` tasks; returns records per second.
async fn drain_stream_queue(q: &StreamQueueEngine, scope: &Scope, arn: &str, total: usize, consumers: usize) -> f64 {
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let (q, scope, arn, done) = (q.clone(), scope.clone(), arn.to_string(), done.clone());
        tasks.push(tokio::spawn(async move {
            while done.load(std::sync::atomic::Ordering::Relaxed) < total {
                let got = q.receive(&scope, &arn, Receive { limit: 10, wait_s: 1, ..Default::default() }).await;
                let got = got.expect("receive");
                if got.is_empty() {
                    let n = done.load(std::sync::atomic::Ordering::Relaxed);
                    assert!(started.elapsed().as_secs() < 120, "the stream-queue drain stalled at {n} of {total}");
                    continue;
                }
                let handles: Vec<String> = got.iter().map(|r| r.receipt_handle.clone()).collect();
                let acked = q.acknowledge(&scope, &arn, &handles, false).await.expect("acknowledge");
                assert!(acked.iter().all(Result::is_ok));
                if done.fetch_add(got.len(), std::sync::atomic::Ordering::Relaxed) + got.len() >= total {
                    return Some(Instant::now());
                }
            }
            None
        }));
    }
    finished(started, total, tasks).await
}

/// Records per second until the consumer that took the last record was done with it
/// (the others may still sit in a long poll: that wait is not the drain's).
async fn finished(started: Instant, total: usize, tasks: Vec<tokio::task::JoinHandle<Option<Instant>>>) -> f64 {
    let mut last = None;
    for t in tasks {
        if let Some(at) = t.await.expect("consumer") {
            last = Some(last.map_or(at, |l: Instant| l.max(at)));
        }
    }
    total as f64 / last.unwrap_or_else(Instant::now).duration_since(started).as_secs_f64()
}

async fn drain_sqs(engine: &QueueEngine, queue: &QueueId, total: usize, consumers: usize) -> f64 {
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let (engine, queue, done) = (engine.clone(), queue.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while done.load(std::sync::atomic::Ordering::Relaxed) < total {
                let req = ReceiveRequest { max_messages: 10, wait_time_s: Some(1), ..Default::default() };
                let got = engine.receive(&queue, req).await.expect("receive");
                if got.is_empty() {
                    // Another consumer took the last ones (or they are in flight): an
                    // empty long poll neither counts nor ends the drain.
                    let n = done.load(std::sync::atomic::Ordering::Relaxed);
                    assert!(started.elapsed().as_secs() < 120, "the SQS drain stalled at {n} of {total}");
                    continue;
                }
                for m in &got {
                    engine.delete_message(&queue, &m.receipt_handle).expect("delete");
                }
                if done.fetch_add(got.len(), std::sync::atomic::Ordering::Relaxed) + got.len() >= total {
                    return Some(Instant::now());
                }
            }
            None
        }));
    }
    finished(started, total, tasks).await
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let scope = Scope::new("000000000000", "us-east-1");
    let clock = Arc::new(SystemClock);
    let ds = DataStreamEngine::open(tmp.path(), clock.clone(), &scope, EngineOptions::default()).expect("streams");
    let queues = StreamQueueEngine::open(tmp.path(), ds.clone()).expect("stream queues");
    let sqs = QueueEngine::open(tmp.path(), clock, &scope).expect("sqs");
    let total = scaled(5_000, 200);
    let rounds: usize = std::env::var("KINESCOPE_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let body = "x".repeat(RECORD);
    println!(
        "kinescope stream-queue benchmark — {total} records of {RECORD} bytes per drain, {rounds} interleaved rounds, data in {}",
        tmp.path().display()
    );
    let stream = DataStreamId::new(&scope, "backlog");
    rt.block_on(async {
        ds.create_stream(&stream, NewDataStream { mode: Some(Mode::OnDemand), ..Default::default() }).expect("stream");
        for chunk in 0..total.div_ceil(500) {
            let n = 500.min(total - chunk * 500);
            let records = (0..n)
                .map(|i| NewRecord { partition_key: format!("k{i}"), data: body.clone().into_bytes(), ..Default::default() })
                .collect();
            ds.put_records(&stream, records).await.expect("put");
        }
        let mut cells = Vec::new();
        for consumers in [1usize, 8] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                println!("[{consumers} consumer(s)] round {}/{rounds}…", round + 1);
                let new = NewQueue {
                    name: format!("drain-{consumers}-{round}"),
                    stream: stream.clone(),
                    start: StartKind::TrimHorizon,
                    start_ms: None,
                    visibility_timeout_s: Some(300),
                    dead_letter: None,
                    tags: BTreeMap::new(),
                };
                let arn = queues.create(&scope, new).expect("queue").arn;
                ours.push(drain_stream_queue(&queues, &scope, &arn, total, consumers).await);
                queues.delete(&scope, &arn).expect("delete queue");
                let q = QueueId::new(&scope, &format!("sqs-{consumers}-{round}"));
                sqs.create_queue(&q, &BTreeMap::new(), &BTreeMap::new()).await.expect("sqs queue");
                for chunk in 0..total.div_ceil(10) {
                    let n = 10.min(total - chunk * 10);
                    let batch = (0..n).map(|_| SendRequest { body: body.clone(), ..Default::default() }).collect();
                    sqs.send_batch(&q, batch).await.expect("send");
                }
                theirs.push(drain_sqs(&sqs, &q, total, consumers).await);
            }
            let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
            cells.push((consumers, median_spread(ours), median_spread(theirs), median_spread(ratios)));
        }
        println!();
        println!("| consumers | stream queue records/s (receive 10 + acknowledge) | SQS engine messages/s (receive 10 + delete) | ratio |");
        println!("|---|---|---|---|");
        for (c, (a, a0, a1), (b, b0, b1), (r, r0, r1)) in cells {
            println!("| {c} | {a:.0} ({a0:.0}–{a1:.0}) | {b:.0} ({b0:.0}–{b1:.0}) | {r:.2} ({r0:.2}–{r1:.2}) |");
        }
    });
}
