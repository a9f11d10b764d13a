//! Delivery-stream engine benchmark, each figure against a reference run in the same
//! process, interleaved, 3 rounds (median and spread):
//!
//! - **accept**: 4 producers putting 500-record batches of 1 KiB records (each put is
//!   synced before it returns) against the same bytes written with one write +
//!   fdatasync per batch to one file;
//! - **deliver**: the whole backlog delivered into a directory bucket (5 MiB objects,
//!   uncompressed, each written and synced) against reading the same bytes back and
//!   writing them as 5 MiB files with fsync + rename;
//! - **delay**: one record with IntervalInSeconds=1: the time from the put until its
//!   object exists, minus the 1 s interval.

#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinescope::clock::SystemClock;
use kinescope::delivery_streams::settings::{BucketDestination, BufferingHints, Destination, Source};
use kinescope::delivery_streams::{DeliveryOptions, DeliveryStreamEngine, DeliveryStreamId};
use kinescope::scope::Scope;

const RECORD_BYTES: usize = 1024;
const BATCH: usize = 500;
const PRODUCERS: usize = 4;
const ROUNDS: usize = 3;
const OBJECT_BYTES: usize = 5 << 20;

fn destination(bucket: &str, size_mib: u32, interval_secs: u32) -> Destination {
    Destination::Bucket(BucketDestination {
        role_arn: "arn:aws:iam::000000000000:role/bench".into(),
        bucket_arn: format!("arn:aws:s3:::{bucket}"),
        buffering: BufferingHints { size_mib: Some(size_mib), interval_secs: Some(interval_secs) },
        ..Default::default()
    })
}

fn raw_write(dir: &std::path::Path, batches: usize) -> f64 {
    let path = dir.join("raw.bin");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("raw file");
    // The same bytes the backlog writes: the record plus its 30-byte frame header.
    let buf = vec![7u8; BATCH * (RECORD_BYTES + 30)];
    let t = Instant::now();
    for _ in 0..batches {
        f.write_all(&buf).expect("write");
        f.sync_data().expect("sync");
    }
    let rate = (batches * BATCH) as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_file(&path).ok();
    rate
}

/// The floor of delivery: the records' bytes read from one file and written as
/// 5 MiB objects, each to a temporary name, synced and renamed.
fn raw_deliver(dir: &std::path::Path, records: usize) -> f64 {
    let src = dir.join("raw-src.bin");
    std::fs::write(&src, vec![3u8; records * (RECORD_BYTES + 30)]).expect("source");
    let out = dir.join("raw-objects");
    std::fs::create_dir_all(&out).expect("out");
    let t = Instant::now();
    let bytes = std::fs::read(&src).expect("read");
    for (i, chunk) in bytes.chunks(OBJECT_BYTES).enumerate() {
        let tmp = out.join(format!(".{i}.tmp"));
        let mut f = std::fs::File::create(&tmp).expect("object");
        f.write_all(chunk).expect("write");
        f.sync_all().expect("sync");
        std::fs::rename(&tmp, out.join(format!("{i}"))).expect("rename");
        std::fs::File::open(&out).and_then(|d| d.sync_all()).expect("dir sync");
    }
    let rate = records as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&out).ok();
    std::fs::remove_file(&src).ok();
    rate
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    // The engine spawns its delivery tasks on the runtime it is called in.
    let _runtime = rt.enter();
    let batches_per_producer = common::scaled(30, 2);
    let records = PRODUCERS * batches_per_producer * BATCH;
    println!(
        "kinescope delivery-stream engine benchmark — {RECORD_BYTES}-byte records, PutRecordBatch of {BATCH}, \
         {PRODUCERS} producers × {batches_per_producer} batches per round, {ROUNDS} rounds, data in {}",
        tmp.path().display()
    );
    let scope = Scope::new("000000000000", "us-east-1");
    let engine =
        DeliveryStreamEngine::open(tmp.path(), Arc::new(SystemClock), DeliveryOptions::default()).expect("engine");
    let (mut accept, mut accept_ref, mut deliver, mut deliver_ref) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        // Held (128 MiB, 900 s) so accepting is measured alone; then released at once.
        let id = DeliveryStreamId::new(&scope, &format!("bench-{round}"));
        engine
            .create(
                &id,
                Source::DirectPut { throughput_hint_mib: None },
                destination("bench", 128, 900),
                BTreeMap::new(),
            )
            .expect("stream");
        // The records exist before the clock starts, as the reference's bytes do.
        let batches: Vec<Vec<Vec<Vec<u8>>>> = (0..PRODUCERS)
            .map(|p| {
                (0..batches_per_producer)
                    .map(|b| (0..BATCH).map(|i| vec![(p * 31 + b + i) as u8; RECORD_BYTES]).collect())
                    .collect()
            })
            .collect();
        let t = Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = batches
                .into_iter()
                .map(|mine| {
                    let (e, id) = (engine.clone(), id.clone());
                    tokio::task::spawn_blocking(move || {
                        for data in mine {
                            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
                            e.put(&id, &refs).expect("put");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("producer");
            }
        });
        accept.push(records as f64 / t.elapsed().as_secs_f64());
        accept_ref.push(raw_write(tmp.path(), PRODUCERS * batches_per_producer));

        let t = Instant::now();
        rt.block_on(async {
            engine
                .update_destination(&id, 1, "destinationId-000000000001", |current| {
                    let mut next = current.clone();
                    if let Destination::Bucket(b) = &mut next {
                        b.buffering = BufferingHints { size_mib: Some(5), interval_secs: Some(0) };
                    }
                    Ok(next)
                })
                .expect("release");
            assert!(engine.wait_delivered(&id, Duration::from_secs(600)).await, "delivered");
        });
        deliver.push(records as f64 / t.elapsed().as_secs_f64());
        deliver_ref.push(raw_deliver(tmp.path(), records));
        eprintln!(
            "  round {}: accept {:.0} rec/s (raw {:.0}), deliver {:.0} rec/s (raw {:.0})",
            round + 1,
            accept[round],
            accept_ref[round],
            deliver[round],
            deliver_ref[round]
        );
        engine.delete(&id).expect("delete");
        std::fs::remove_dir_all(tmp.path().join("buckets/bench")).ok();
    }

    let samples = common::scaled(5, 3);
    let delays: Vec<f64> = rt.block_on(async {
        let id = DeliveryStreamId::new(&scope, "delay");
        engine
            .create(&id, Source::DirectPut { throughput_hint_mib: None }, destination("delay", 5, 1), BTreeMap::new())
            .expect("stream");
        let bucket = tmp.path().join("buckets/delay");
        let mut out = Vec::new();
        for i in 0..samples {
            let before = count_files(&bucket);
            let t = Instant::now();
            engine.put(&id, &[format!("sample {i}").as_bytes()]).expect("put");
            while count_files(&bucket) == before {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            out.push(t.elapsed().as_secs_f64() * 1e3 - 1000.0);
            eprint!("\r  delay sample {}/{samples}", i + 1);
        }
        eprintln!();
        out
    });

    let ratio = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
    let (am, _, _) = common::median_spread(accept.clone());
    let (arm, _, _) = common::median_spread(accept_ref.clone());
    let (ar, ar_lo, ar_hi) = common::median_spread(ratio(&accept, &accept_ref));
    let (dm, _, _) = common::median_spread(deliver.clone());
    let (drm, _, _) = common::median_spread(deliver_ref.clone());
    let (dr, dr_lo, dr_hi) = common::median_spread(ratio(&deliver, &deliver_ref));
    let (delay, d_lo, d_hi) = common::median_spread(delays.clone());
    let mb = |r: f64| r * RECORD_BYTES as f64 / 1e6;
    println!("\n| figure (median of {ROUNDS}) | engine | reference, same run | ratio (spread) |\n|---|---|---|---|");
    println!(
        "| accept (PutRecordBatch, synced) | {am:.0} rec/s, {:.1} MB/s | write+fdatasync per batch {arm:.0} rec/s | {ar:.2} ({ar_lo:.2}–{ar_hi:.2}) |",
        mb(am)
    );
    println!(
        "| deliver to a directory bucket | {dm:.0} rec/s, {:.1} MB/s | read + 5 MiB files fsync'd {drm:.0} rec/s | {dr:.2} ({dr_lo:.2}–{dr_hi:.2}) |",
        mb(dm)
    );
    println!(
        "| delivery delay after a 1 s buffer interval ({samples} samples) | {delay:.1} ms ({d_lo:.1}–{d_hi:.1}) | | |"
    );
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                n += 1;
            }
        }
    }
    n
}
