//! Images benchmark: the work GetImages and image generation do, against the `ffmpeg`
//! CLI doing the same work on the same fragments in the same run.
//!
//! `cargo bench --bench images` prints, per round (three, interleaved) and as the
//! median with its spread:
//!
//! 1. images per second on one core, keyframe decode + scale to 640 wide + JPEG
//!    (quality 80), for 1280x720 H.264 GOPs, against (a) `ffmpeg -threads 1` run once
//!    per image on a file holding that GOP (what a script calling the CLI does) and
//!    (b) one `ffmpeg -threads 1 -skip_frame nokey` run over all the GOPs (the CLI at
//!    its best: one process, keyframes only);
//! 2. ingest throughput while image generation (5 images a second of another
//!    stream's video) keeps the image threads busy, against ingest with them idle,
//!    fragments submitted as fast as the store takes them, the image threads sized as
//!    the server sizes them;
//! 3. event delay: from a fragment's PERSISTED to its event accepted by a queue
//!    (p50/p99), with fragments arriving like a camera's (one every 100 ms).
//!
//! Scale with KINESCOPE_BENCH_SCALE (default 1.0).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kinescope::clock::SystemClock;
use kinescope::images::plan::plan_fragment;
use kinescope::images::render::render;
use kinescope::images::{ImageFormat, ImageService, OutputSpec, RenderPool};
use kinescope::ingest::fragmenter::{FragmentLimits, Fragmenter, FragmenterEvent};
use kinescope::metrics::Metrics;
use kinescope::queues::{QueueEngine, QueueId, ReceiveRequest};
use kinescope::stream_events::EventTargets;
use kinescope::video_store::{
    ImageGenerationSettings, NewFragment, NewStream, NotificationSettings, StoreConfig, VideoStore,
};

#[path = "common.rs"]
mod common;

const OUTPUT: OutputSpec = OutputSpec { format: ImageFormat::Jpeg, jpeg_quality: 80, width: Some(640), height: None };

/// A 1280x720 H.264 test pattern, one GOP a second, cut into its init segment and
/// keyframe fragments.
fn source(dir: &Path, seconds: usize) -> (Bytes, Vec<Bytes>) {
    let path = dir.join("source.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1280x720:rate=25:duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25"])
        .args(["-sc_threshold", "0", "-b:v", "2M", "-movflags", "frag_keyframe+empty_moov+default_base_moof"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the source");
    let bytes = std::fs::read(&path).expect("source");
    let mut f = Fragmenter::new(FragmentLimits::default());
    let mut events = Vec::new();
    f.push(&bytes, &mut events).expect("source parses");
    f.finish(&mut events).expect("source ends");
    let (mut init, mut fragments) = (Bytes::new(), Vec::new());
    for e in events {
        match e {
            FragmenterEvent::Init(i) => init = i.bytes,
            FragmenterEvent::Fragment(a) => fragments.push(Bytes::from(a.chunks.concat())),
            _ => {}
        }
    }
    (init, fragments)
}

fn ours(init: &[u8], fragments: &[Bytes]) -> Duration {
    let started = Instant::now();
    for f in fragments {
        let plan = plan_fragment(init, f, 0, &[0], OUTPUT).expect("plan");
        let image = render(&plan.job).remove(0).expect("image");
        assert!(image.len() > 1000);
    }
    started.elapsed()
}

fn ffmpeg_jpeg_args(cmd: &mut Command) -> &mut Command {
    cmd.args(["-vf", "scale=640:-2", "-q:v", "7", "-y"])
}

fn cli_per_image(files: &[PathBuf], out: &Path) -> Duration {
    let started = Instant::now();
    for f in files {
        let status =
            ffmpeg_jpeg_args(
                Command::new("ffmpeg")
                    .args(["-hide_banner", "-loglevel", "error", "-threads", "1", "-i"])
                    .arg(f)
                    .args(["-threads", "1", "-frames:v", "1"]),
            )
            .arg(out.join("one.jpg"))
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
    }
    started.elapsed()
}

fn cli_batch(all: &Path, out: &Path, n: usize) -> Duration {
    let started = Instant::now();
    let status = ffmpeg_jpeg_args(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-threads", "1", "-skip_frame", "nokey", "-i"])
            .arg(all)
            .args(["-threads", "1", "-fps_mode", "passthrough"]),
    )
    .arg(out.join("batch%05d.jpg"))
    .status()
    .expect("ffmpeg runs");
    assert!(status.success());
    let made = std::fs::read_dir(out).map(|d| d.filter(|e| e.is_ok()).count()).unwrap_or(0);
    assert!(made > n, "the batch wrote an image per GOP");
    started.elapsed()
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let seconds = common::scaled(30, 5);
    println!("kinescope images benchmark — data in {}", tmp.path().display());
    println!("[1/3] {seconds} s of 1280x720 H.264 (1 s GOPs) from ffmpeg's testsrc2…");
    let (init, fragments) = source(tmp.path(), seconds);
    let n = fragments.len();
    let mut files = Vec::new();
    let mut all = init.to_vec();
    for (i, f) in fragments.iter().enumerate() {
        let p = tmp.path().join(format!("gop{i:04}.mp4"));
        std::fs::write(&p, [init.as_ref(), f.as_ref()].concat()).expect("gop file");
        files.push(p);
        all.extend_from_slice(f);
    }
    let all_path = tmp.path().join("all.mp4");
    std::fs::write(&all_path, &all).expect("all");

    let rounds = 3;
    let (mut vs_each, mut vs_batch) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let out = tmp.path().join(format!("out{round}"));
        std::fs::create_dir_all(&out).expect("out dir");
        let a = ours(&init, &fragments);
        let b = cli_per_image(&files, &out);
        let c = cli_batch(&all_path, &out, 0);
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "  round {round}: kinescope {:.1} images/s, ffmpeg per image {:.1}/s, ffmpeg batch keyframes {:.1}/s",
            rate(a),
            rate(b),
            rate(c)
        );
        vs_each.push(rate(a) / rate(b));
        vs_batch.push(rate(a) / rate(c));
    }
    let (m1, lo1, hi1) = common::median_spread(vs_each);
    let (m2, lo2, hi2) = common::median_spread(vs_batch);
    println!("  images/s on one core vs the ffmpeg CLI per image: {m1:.2}x (spread {lo1:.2}-{hi1:.2})");
    println!("  images/s on one core vs one ffmpeg CLI run, keyframes only: {m2:.2}x (spread {lo2:.2}-{hi2:.2})");

    // --- ingest with image generation on and off ------------------------------------
    let ingest_n = common::scaled(300, 30);
    println!(
        "[2/3] ingest while another stream's images are made (every 200 ms) and with the image threads idle,\n      \
         {ingest_n} fragments × 5 passes each, interleaved; each round waits until its images are made…"
    );
    let metrics = Arc::new(Metrics::default());
    let threads = std::thread::available_parallelism().map_or(1, usize::from) / 2;
    let clock = Arc::new(SystemClock);
    let (store, _) = VideoStore::open(StoreConfig::new(tmp.path().join("store")), clock.clone()).expect("store");
    let scope = store.config().default_scope.clone();
    let pool = RenderPool::start(threads.max(1), 64, kinescope::images::pool::DEFAULT_BUDGET_BYTES, metrics.clone())
        .expect("image threads");
    let images = ImageService::new(store.clone(), pool, metrics.clone());
    let queues = QueueEngine::open(&tmp.path().join("q"), clock.clone(), &scope).expect("queues");
    let data_streams = kinescope::data_streams::DataStreamEngine::open(
        &tmp.path().join("ds"),
        clock.clone(),
        &scope,
        Default::default(),
    )
    .expect("data streams");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // The engines spawn tasks when they open: inside the runtime.
    let _entered = rt.enter();
    let publisher = {
        let delivery_streams = kinescope::delivery_streams::DeliveryStreamEngine::open(
            &tmp.path().join("fh"),
            clock.clone(),
            Default::default(),
        )
        .expect("delivery streams");
        let targets = EventTargets {
            store: store.clone(),
            images,
            queues: queues.clone(),
            data_streams,
            delivery_streams,
            metrics: metrics.clone(),
        };
        kinescope::stream_events::start(targets, &tmp.path().join("events"), stop).expect("publisher")
    };
    let queue = QueueId::new(&scope, "events");
    rt.block_on(queues.create_queue(&queue, &Default::default(), &Default::default())).expect("queue");
    let bytes: usize = (0..ingest_n).map(|i| fragments[i % n].len()).sum();
    let images_made = |m: &Metrics| -> u64 {
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix("kinescope_images_total{outcome=\"image\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let mut expected_images = 0u64;
    let (mut on_off, mut t0) = (Vec::new(), 1_700_000_000_000_000i64);
    // Fragments into `record` as fast as the store takes them; the time until all are PERSISTED.
    let ingest = |record: &kinescope::video_store::StreamRecord, t0: &mut i64| -> Duration {
        rt.block_on(async {
            let init_id = store.put_init(record.id, init.clone()).await.expect("init");
            let started = Instant::now();
            let mut pending = Vec::new();
            for i in 0..ingest_n {
                *t0 += 1_000_000;
                let nf = NewFragment {
                    producer_ts_us: *t0,
                    server_ts_us: *t0,
                    duration_us: 1_000_000,
                    init_id,
                    keyframe: true,
                    chunks: vec![fragments[i % n].clone()],
                };
                pending.push(store.submit_fragment(record, nf).await.expect("submit").persisted);
            }
            for p in pending {
                p.await.expect("persisted").expect("stored");
            }
            started.elapsed()
        })
    };
    let new_stream = |name: String| {
        rt.block_on(store.create_stream(&scope, NewStream { name, ..Default::default() })).expect("stream")
    };
    let passes = 5;
    for round in 1..=rounds {
        let mut rates = [0.0; 2];
        for (side, generate) in [(0, false), (1, true)] {
            if generate {
                // A camera stream with image generation gets its fragments first: the image
                // threads are busy with its images while the measured ingest runs.
                let name = format!("camera-{round}");
                let camera = new_stream(name.clone());
                let g = ImageGenerationSettings {
                    status: "ENABLED".into(),
                    image_selector_type: "PRODUCER_TIMESTAMP".into(),
                    uri: "s3://bench".into(),
                    region: scope.region.clone(),
                    sampling_interval_ms: 200,
                    format: "JPEG".into(),
                    format_config: Default::default(),
                    width: Some(640),
                    height: None,
                };
                rt.block_on(store.set_image_generation(&scope, Some(&name), None, Some(g))).expect("settings");
                // The publisher starts its follower on the change; give it a moment.
                std::thread::sleep(Duration::from_millis(200));
                ingest(&camera, &mut t0);
                std::thread::sleep(Duration::from_millis(200));
            }
            let mut took = Duration::ZERO;
            for pass in 0..passes {
                let record = new_stream(format!("ingest-{round}-{side}-{pass}"));
                took += ingest(&record, &mut t0);
            }
            rates[side] = (bytes * passes) as f64 / took.as_secs_f64() / 1e6;
            if generate {
                expected_images += 5 * ingest_n as u64;
                let waited = Instant::now();
                let busy = images_made(&metrics) < expected_images;
                while images_made(&metrics) < expected_images && waited.elapsed() < Duration::from_secs(300) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                println!(
                    "    ({} images: still being made when the measured ingest ended: {busy}; done {:.1} s later)",
                    5 * ingest_n,
                    waited.elapsed().as_secs_f64()
                );
            }
        }
        println!(
            "  round {round}: ingest {:.1} MB/s with the image threads idle, {:.1} MB/s while they make images",
            rates[0], rates[1]
        );
        on_off.push(rates[1] / rates[0]);
    }
    let (m, lo, hi) = common::median_spread(on_off);
    println!("  ingest while images are made vs idle: {m:.2}x (spread {lo:.2}-{hi:.2})");

    // --- event delay -------------------------------------------------------------------
    println!("[3/3] event delay: a fragment every 100 ms into a stream notifying a queue, read by a long poll…");
    let delays = rt.block_on(async {
        let record = store
            .create_stream(&scope, NewStream { name: "delay".into(), ..Default::default() })
            .await
            .expect("stream");
        let n = NotificationSettings { status: "ENABLED".into(), uri: queue.arn() };
        store.set_notification(&scope, Some("delay"), None, Some(n)).await.expect("settings");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Drain what the ingest rounds left (none: their stream had no notification).
        let init_id = store.put_init(record.id, init.clone()).await.expect("init");
        let count = common::scaled(200, 20);
        // Events arrive in order: the k-th message received is the k-th fragment's.
        let reader = {
            let queues = queues.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut at = Vec::with_capacity(count);
                while at.len() < count {
                    let req = ReceiveRequest { max_messages: 10, wait_time_s: Some(5), ..Default::default() };
                    let got = queues.receive(&queue, req).await.expect("receive");
                    if got.is_empty() {
                        break;
                    }
                    let now = Instant::now();
                    at.extend(std::iter::repeat_n(now, got.len()));
                }
                at
            })
        };
        let mut persisted_at = Vec::with_capacity(count);
        for i in 0..count {
            t0 += 1_000_000;
            let nf = NewFragment {
                producer_ts_us: t0,
                server_ts_us: t0,
                duration_us: 1_000_000,
                init_id,
                keyframe: true,
                chunks: vec![fragments[i % fragments.len()].clone()],
            };
            let p = store.submit_fragment(&record, nf).await.expect("submit");
            p.persisted.await.expect("persisted").expect("stored");
            persisted_at.push(Instant::now());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let received_at = reader.await.expect("reader");
        assert_eq!(received_at.len(), count, "every fragment's event came");
        let mut d: Vec<f64> = persisted_at
            .iter()
            .zip(&received_at)
            .map(|(p, r)| r.saturating_duration_since(*p).as_secs_f64() * 1e3)
            .collect();
        d.sort_by(f64::total_cmp);
        d
    });
    let q = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    println!(
        "  PERSISTED to event received ({} events): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
    let _ = stop_tx.send(true);
    let _ = rt.block_on(publisher);
}
