//! Data-stream engine benchmark: PutRecords (500-record batches) and GetRecords
//! draining on 1 and 8 shards, each against the storage floor measured in the same run
//! (the same bytes written with one write + fdatasync per batch to one file, and read
//! back with one pread per 10,000 records), plus the put-to-push delay of a
//! SubscribeToShard consumer at the tip.

#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinescope::clock::SystemClock;
use kinescope::data_streams::{
    DataStreamEngine, DataStreamId, EngineOptions, NewDataStream, NewRecord, StartingPosition,
};
use kinescope::scope::Scope;

const RECORD_BYTES: usize = 1024;
const BATCH: usize = 500;
const PRODUCERS: usize = 4;

fn batch(seed: usize) -> Vec<NewRecord> {
    (0..BATCH)
        .map(|i| NewRecord {
            partition_key: format!("pk-{seed}-{i}"),
            data: vec![(seed + i) as u8; RECORD_BYTES],
            explicit_hash_key: None,
        })
        .collect()
}

/// Raw floor: `batches` writes of one batch's bytes, each followed by fdatasync.
fn raw_write(dir: &std::path::Path, batches: usize) -> (f64, std::path::PathBuf) {
    let path = dir.join("raw.bin");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("raw file");
    let buf = vec![7u8; BATCH * (RECORD_BYTES + 40)];
    let t = Instant::now();
    for _ in 0..batches {
        f.write_all(&buf).expect("write");
        f.sync_data().expect("sync");
    }
    ((batches * BATCH) as f64 / t.elapsed().as_secs_f64(), path)
}

fn raw_read(path: &std::path::Path) -> f64 {
    let f = std::fs::File::open(path).expect("raw file");
    let len = f.metadata().expect("meta").len() as usize;
    let chunk = 10_000 * (RECORD_BYTES + 40);
    let mut buf = vec![0u8; chunk];
    let t = Instant::now();
    let mut at = 0;
    let mut records = 0;
    while at < len {
        let n = chunk.min(len - at);
        f.read_exact_at(&mut buf[..n], at as u64).expect("read");
        at += n;
        records += n / (RECORD_BYTES + 40);
    }
    records as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let batches_per_producer = common::scaled(40, 2);
    println!(
        "kinescope data-stream engine benchmark — {RECORD_BYTES}-byte records, PutRecords of {BATCH}, {PRODUCERS} producers × {batches_per_producer} batches, data in {}",
        tmp.path().display()
    );
    let scope = Scope::new("000000000000", "us-east-1");
    let engine =
        DataStreamEngine::open(tmp.path(), Arc::new(SystemClock), &scope, EngineOptions::default()).expect("engine");
    let mut rows = Vec::new();
    for shards in [1u32, 8] {
        let name = DataStreamId::new(&scope, &format!("bench-{shards}"));
        engine.create_stream(&name, NewDataStream { shard_count: Some(shards), ..Default::default() }).expect("stream");
        let t = Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let e = engine.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        for b in 0..batches_per_producer {
                            e.put_records(&name, batch(p * 1000 + b)).await.expect("put");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("producer");
            }
        });
        let put_rate = (PRODUCERS * batches_per_producer * BATCH) as f64 / t.elapsed().as_secs_f64();
        eprint!("\r  {shards} shard(s): put {put_rate:.0} records/s");
        let (raw_put, raw_path) = raw_write(tmp.path(), PRODUCERS * batches_per_producer);

        let t = Instant::now();
        let mut drained = 0usize;
        rt.block_on(async {
            for s in 0..shards {
                let shard = format!("shardId-{s:012}");
                let mut it = Some(engine.get_shard_iterator(&name, &shard, StartingPosition::TrimHorizon).expect("it"));
                while let Some(i) = it {
                    let r = engine.get_records(&i, None).await.expect("get");
                    if r.records.is_empty() {
                        break;
                    }
                    drained += r.records.len();
                    it = r.next_iterator;
                }
            }
        });
        let get_rate = drained as f64 / t.elapsed().as_secs_f64();
        let raw_get = raw_read(&raw_path);
        std::fs::remove_file(&raw_path).ok();
        eprintln!(", drained {drained} at {get_rate:.0} records/s");
        let mb = |r: f64| r * RECORD_BYTES as f64 / 1e6;
        rows.push(format!(
            "| PutRecords, {shards} shard(s) | {put_rate:.0} rec/s, {:.1} MB/s | write+fdatasync per batch {raw_put:.0} rec/s | {:.2} |",
            mb(put_rate),
            put_rate / raw_put
        ));
        rows.push(format!(
            "| GetRecords drain, {shards} shard(s) | {get_rate:.0} rec/s, {:.1} MB/s | pread {raw_get:.0} rec/s | {:.2} |",
            mb(get_rate),
            get_rate / raw_get
        ));
    }

    // Put → pushed to a subscriber at the tip.
    let samples = common::scaled(300, 20);
    let delays = rt.block_on(async {
        let tip = DataStreamId::new(&scope, "tip");
        engine.create_stream(&tip, NewDataStream { shard_count: Some(1), ..Default::default() }).expect("stream");
        let c = engine.register_consumer(&tip, "bench", BTreeMap::new()).expect("consumer");
        let mut sub = engine.subscribe(&c.arn, "shardId-000000000000", StartingPosition::Latest).expect("subscribe");
        let mut delays = Vec::with_capacity(samples);
        for i in 0..samples {
            let e = engine.clone();
            let tip = tip.clone();
            let start = Instant::now();
            let put = tokio::spawn(async move {
                e.put_record(
                    &tip,
                    NewRecord { partition_key: "k".into(), data: vec![i as u8; 100], explicit_hash_key: None },
                )
                .await
                .expect("put")
            });
            loop {
                let ev = sub.next_event().await.expect("open").expect("event");
                if !ev.records.is_empty() {
                    break;
                }
            }
            delays.push(start.elapsed());
            put.await.expect("put task");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.sort();
        delays
    });
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    rows.push(format!(
        "| put → pushed to a SubscribeToShard consumer at the tip (put's sync included) | p50 {:.2} ms, p99 {:.2} ms | | |",
        pct(0.5),
        pct(0.99)
    ));
    println!("\n| figure | engine | reference | ratio |\n|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
