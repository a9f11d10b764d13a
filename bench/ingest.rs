//! Ingest benchmark for the video store, driven through the engine's own API.
//!
//! `cargo bench --bench ingest` prints, each as a ratio against a reference measured in
//! the same run on the same disk:
//!
//! * ingest throughput, 1 stream and 100 concurrent streams (MB/s, fragments/s), against
//!   raw sequential write + fdatasync of the same fragment bytes to one file;
//! * PERSISTED-ack latency p50/p99 and put-to-get delay p50/p99 (persisted → delivered
//!   to a GetMedia reader waiting at the live edge), with 100 streams paced like cameras;
//! * memory per idle stream.
//!
//! Scale with KINESCOPE_BENCH_SCALE (default 1.0; 0.1 for a quick look).

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use kinescope::clock::SystemClock;
use kinescope::playback::get_media::{self, StartAt, METADATA_UUID};
use kinescope::video_store::{NewFragment, NewStream, StoreConfig, StreamRecord, VideoStore};

/// A 2 Mbit/s camera with a 1 s GOP makes fragments of about this size.
const FRAGMENT_BYTES: usize = 256 * 1024;

#[path = "common.rs"]
mod common;

fn scaled(n: usize) -> usize {
    common::scaled(n, 2)
}

fn payload(seed: u64) -> Bytes {
    // Incompressible-looking bytes (a xorshift stream), so no layer can cheat.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(FRAGMENT_BYTES);
    while v.len() < FRAGMENT_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(FRAGMENT_BYTES);
    Bytes::from(v)
}

fn fragment(p: &Bytes, i: i64) -> NewFragment {
    let now = SystemClock.now_us_static();
    NewFragment {
        producer_ts_us: now + i,
        server_ts_us: now,
        duration_us: 1_000_000,
        init_id: 1,
        keyframe: true,
        chunks: vec![p.clone()],
    }
}

trait NowStatic {
    fn now_us_static(&self) -> i64;
}
impl NowStatic for SystemClock {
    fn now_us_static(&self) -> i64 {
        use kinescope::clock::Clock;
        self.now_us()
    }
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The reference: the same bytes written sequentially to one file, fdatasync after each
/// fragment (what "durable before acknowledged" costs with no store at all).
fn raw_write_fsync(dir: &std::path::Path, fragments: usize, p: &Bytes) -> Duration {
    let path = dir.join("raw.bin");
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&path).expect("raw file");
    let start = Instant::now();
    for _ in 0..fragments {
        f.write_all(p).expect("raw write");
        f.sync_data().expect("raw fsync");
    }
    let d = start.elapsed();
    drop(f);
    let _ = std::fs::remove_file(path);
    d
}

fn open_store(dir: &std::path::Path) -> VideoStore {
    let (store, _) = VideoStore::open(StoreConfig::new(dir), Arc::new(SystemClock)).expect("open store");
    store
}

fn create(rt: &tokio::runtime::Runtime, store: &VideoStore, name: &str) -> StreamRecord {
    rt.block_on(
        store.create_stream(&store.config().default_scope, NewStream { name: name.into(), ..Default::default() }),
    )
    .expect("create stream")
}

/// Streams × fragments submitted as fast as PutMedia would (pipelined, acks awaited in
/// order). Returns the elapsed time and every ack latency.
async fn ingest(
    store: &VideoStore,
    streams: &[StreamRecord],
    per_stream: usize,
    p: &Bytes,
) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in streams {
        let (store, s, p) = (store.clone(), s.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let waiter = tokio::spawn(async move {
                let mut lat = Vec::new();
                while let Some((t0, pending)) = rx.recv().await {
                    let pending: kinescope::video_store::PendingFragment = pending;
                    pending.persisted.await.expect("writer").expect("persisted");
                    lat.push(Instant::now() - t0);
                }
                lat
            });
            for i in 0..per_stream {
                let t0 = Instant::now();
                let pending = store.submit_fragment(&s, fragment(&p, i as i64)).await.expect("submit");
                tx.send((t0, pending)).await.expect("waiter");
            }
            drop(tx);
            waiter.await.expect("waiter task")
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("stream task"));
    }
    (start.elapsed(), lat)
}

/// `streams` cameras each making 4 fragments a second, each followed by a GetMedia reader
/// waiting at the live edge. `staggered`: the cameras' clocks are spread evenly over the
/// 250 ms interval, as independent cameras are; otherwise they all deliver at once.
/// Returns sorted ack latencies and put-to-get delays.
async fn cameras(
    store: &VideoStore,
    streams: &[StreamRecord],
    p: &Bytes,
    seconds: usize,
    staggered: bool,
) -> (Vec<Duration>, Vec<Duration>) {
    let delivered = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<(u64, u64), Instant>::new()));
    let mut readers = Vec::new();
    for s in streams {
        let start =
            StartAt { fragment_number: store.last_fragment(s.id).expect("index").map_or(1, |m| m.fragment_number + 1) };
        let mut follow =
            Box::pin(get_media::follow(store.clone(), s.id, start, get_media::MediaFormat::Mp4).expect("follow"));
        let (delivered, id) = (delivered.clone(), s.id);
        readers.push(tokio::spawn(async move {
            while let Some(b) = follow.next().await {
                if b.len() > 24 && b[8..24] == METADATA_UUID {
                    let v: serde_json::Value = serde_json::from_slice(&b[24..]).unwrap_or_default();
                    if let Some(n) = v["AWS_KINESISVIDEO_FRAGMENT_NUMBER"].as_str().and_then(|n| n.parse().ok()) {
                        delivered.lock().unwrap_or_else(|e| e.into_inner()).insert((id, n), Instant::now());
                    }
                }
            }
        }));
    }
    let mut producers = Vec::new();
    let interval = Duration::from_millis(250);
    for (k, s) in streams.iter().cloned().enumerate() {
        let (store, p) = (store.clone(), p.clone());
        let offset = if staggered { interval * k as u32 / streams.len() as u32 } else { Duration::ZERO };
        producers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
            let mut out = Vec::new();
            for i in 0..seconds * 4 {
                tick.tick().await;
                let t0 = Instant::now();
                let pending = store.submit_fragment(&s, fragment(&p, i as i64)).await.expect("submit");
                let n = pending.fragment_number;
                pending.persisted.await.expect("writer").expect("persisted");
                out.push((s.id, n, t0, Instant::now()));
            }
            out
        }));
    }
    let mut persisted = Vec::new();
    for t in producers {
        persisted.extend(t.await.expect("producer"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in &readers {
        r.abort();
    }
    let delivered = delivered.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut acks: Vec<Duration> = persisted.iter().map(|(_, _, t0, t1)| *t1 - *t0).collect();
    let mut delays: Vec<Duration> = persisted
        .iter()
        .filter_map(|(id, n, _, t1)| delivered.get(&(*id, *n)).map(|d| d.saturating_duration_since(*t1)))
        .collect();
    acks.sort();
    delays.sort();
    (acks, delays)
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let p = payload(7);
    println!(
        "kinescope ingest benchmark — fragments of {} KiB, data in {}",
        FRAGMENT_BYTES / 1024,
        tmp.path().display()
    );

    // --- 1 stream --------------------------------------------------------------------
    let n1 = scaled(400);
    println!("[1/4] 1 stream, {n1} fragments: raw write+fsync reference, then the store…");
    let raw1 = raw_write_fsync(tmp.path(), n1, &p);
    let store = open_store(&tmp.path().join("one"));
    let one = create(&rt, &store, "one");
    let (d1, mut lat1) = rt.block_on(ingest(&store, std::slice::from_ref(&one), n1, &p));
    drop(store);
    lat1.sort();
    let bytes1 = n1 * FRAGMENT_BYTES;

    // --- 100 streams -----------------------------------------------------------------
    let streams_n = 100;
    let per = scaled(12);
    println!("[2/4] {streams_n} streams × {per} fragments, concurrently…");
    let raw100 = raw_write_fsync(tmp.path(), streams_n * per, &p);
    let store = open_store(&tmp.path().join("many"));
    let streams: Vec<StreamRecord> = (0..streams_n).map(|i| create(&rt, &store, &format!("cam-{i}"))).collect();
    let (d100, mut lat100) = rt.block_on(ingest(&store, &streams, per, &p));
    lat100.sort();
    let bytes100 = streams_n * per * FRAGMENT_BYTES;

    // --- paced cameras: ack latency and put-to-get delay -----------------------------
    let seconds = scaled(5);
    println!("[3/4] {streams_n} cameras at 4 fragments/s for {seconds} s, each with a GetMedia reader waiting (staggered, then in lockstep)…");
    let (acks, delays) = rt.block_on(cameras(&store, &streams, &p, seconds, true));
    let (acks_sync, delays_sync) = rt.block_on(cameras(&store, &streams, &p, seconds, false));
    drop(store);

    // --- memory per idle stream ------------------------------------------------------
    let idle = scaled(10_000);
    println!("[4/4] memory of {idle} idle streams, each with a live-edge subscriber…");
    let store = open_store(&tmp.path().join("idle"));
    let before = common::rss_bytes() as usize;
    let mut subs = Vec::with_capacity(idle);
    for i in 0..idle {
        let s = create(&rt, &store, &format!("idle-{i}"));
        subs.push(store.live(s.id).expect("live").subscribe());
    }
    let per_stream = ((common::rss_bytes() as usize).saturating_sub(before)) / idle;
    drop(subs);
    drop(store);

    let r1 = mb_per_s(bytes1, d1) / mb_per_s(bytes1, raw1);
    let r100 = mb_per_s(bytes100, d100) / mb_per_s(bytes100, raw100);
    println!();
    println!("results (ratio = store ÷ raw write+fdatasync of the same bytes, same disk, same run)");
    println!(
        "  ingest   1 stream : {:8.1} MB/s {:7.1} fragments/s   raw {:8.1} MB/s   ratio {:.2}",
        mb_per_s(bytes1, d1),
        n1 as f64 / d1.as_secs_f64(),
        mb_per_s(bytes1, raw1),
        r1
    );
    println!(
        "  ingest 100 streams: {:8.1} MB/s {:7.1} fragments/s   raw {:8.1} MB/s   ratio {:.2}",
        mb_per_s(bytes100, d100),
        (streams_n * per) as f64 / d100.as_secs_f64(),
        mb_per_s(bytes100, raw100),
        r100
    );
    println!(
        "  ack latency, saturated 1 stream   : p50 {}  p99 {}",
        ms(percentile(&lat1, 0.5)),
        ms(percentile(&lat1, 0.99))
    );
    println!(
        "  ack latency, saturated 100 streams: p50 {}  p99 {}",
        ms(percentile(&lat100, 0.5)),
        ms(percentile(&lat100, 0.99))
    );
    let raw_one = raw1 / n1 as u32;
    println!("  raw write+fsync of one fragment   : {} (the reference for the latencies below)", ms(raw_one));
    // Staggered cameras wait for their own fragment; in lockstep each waits for the whole
    // burst of 100, so that burst written raw is the fair reference there.
    for (label, acks, delays, reference) in
        [("staggered", &acks, &delays, raw_one), ("lockstep ", &acks_sync, &delays_sync, raw_one * streams_n as u32)]
    {
        println!(
            "  ack latency, 100 cameras {label}: p50 {}  p99 {}   reference {}  p50 ratio {:.2}",
            ms(percentile(acks, 0.5)),
            ms(percentile(acks, 0.99)),
            ms(reference),
            percentile(acks, 0.5).as_secs_f64() / reference.as_secs_f64()
        );
        println!(
            "  put-to-get,  100 cameras {label}: p50 {}  p99 {}   ({} of {} fragments seen by readers)",
            ms(percentile(delays, 0.5)),
            ms(percentile(delays, 0.99)),
            delays.len(),
            acks.len()
        );
    }
    println!("  memory per idle stream            : {:.1} KiB", per_stream as f64 / 1024.0);
}
