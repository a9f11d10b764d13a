//! Playback benchmark, driven through the engine and the packagers directly.
//!
//! `cargo bench --bench playback` prints, each against a reference measured in the
//! same run:
//!
//! * ON_DEMAND playlist generation for 1,000 fragments (HLS media playlist, DASH
//!   manifest), against a bare scan of the same 1,000 index entries;
//! * a DASH per-track media segment cut from a stored fragment, against reading the
//!   stored fragment as HLS serves it;
//! * live delay: from a fragment's PERSISTED ack to a freshly built LIVE playlist that
//!   lists it (p50/p99), with fragments arriving like a camera's.
//!
//! Segment serving over HTTP against nginx is `bench/serve_segments.sh`.
//! Scale with KINESCOPE_BENCH_SCALE (default 1.0).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kinescope::clock::SystemClock;
use kinescope::ingest::fragmenter::{FragmentLimits, Fragmenter, FragmenterEvent};
use kinescope::playback::selection::{self, Window};
use kinescope::playback::session::{DiscontinuityMode, PlaybackMode, Protocol, SelectorClock, Session};
use kinescope::playback::{dash, hls};
use kinescope::video_store::{NewFragment, NewStream, StoreConfig, VideoStore};
use kinescope::wire::fmp4::parse_init;
use kinescope::wire::mp4_tracks::{fragment_samples, write_track_fragment};

#[path = "common.rs"]
mod common;

fn scaled(n: usize) -> usize {
    common::scaled(n, 5)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The fixture's init segment and its keyframe fragments.
fn fixture() -> (Bytes, Vec<Vec<Bytes>>) {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mp4")).expect("fixtures/av.mp4");
    let mut f = Fragmenter::new(FragmentLimits::default());
    let mut events = Vec::new();
    f.push(&bytes, &mut events).expect("fixture parses");
    f.finish(&mut events).expect("fixture ends cleanly");
    let mut init = Bytes::new();
    let mut fragments = Vec::new();
    for e in events {
        match e {
            FragmenterEvent::Init(i) => init = i.bytes,
            FragmenterEvent::Fragment(a) => fragments.push(a.chunks),
            _ => {}
        }
    }
    (init, fragments)
}

fn session(mode: PlaybackMode, protocol: Protocol, stream: u64, max: u32) -> Session {
    Session {
        protocol,
        stream,
        stream_name: "bench".into(),
        scope: kinescope::scope::Scope::new("000000000000", "us-east-1"),
        mode,
        clock: SelectorClock::Producer,
        start_us: Some(0),
        end_us: Some(i64::MAX / 2),
        created_us: 0,
        expires_us: i64::MAX,
        max_fragments: max,
        discontinuity: DiscontinuityMode::OnDiscontinuity,
        display_timestamp: false,
        display_fragment_number: false,
        anchor_fragment: 0,
        origin_us: 0,
        nonce: String::new(),
        low_latency: false,
        mpeg_ts: false,
    }
}

/// Median time of `f` over `runs` runs.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let (store, _) = VideoStore::open(StoreConfig::new(tmp.path()), Arc::new(SystemClock)).expect("store");
    let (init, fragments) = fixture();
    let record = rt
        .block_on(
            store
                .create_stream(&store.config().default_scope, NewStream { name: "bench".into(), ..Default::default() }),
        )
        .expect("stream");
    let init_id = rt.block_on(store.put_init(record.id, init.clone())).expect("init");

    // --- 1,000 stored fragments ------------------------------------------------------
    let n = 1000;
    println!("kinescope playback benchmark — data in {}", tmp.path().display());
    println!("[1/3] storing {n} fragments (the fixture's, repeated on a 1 s timeline)…");
    rt.block_on(async {
        let mut pending = Vec::new();
        for i in 0..n {
            let chunks = fragments[i % fragments.len()].clone();
            let f = NewFragment {
                producer_ts_us: 1_700_000_000_000_000 + i as i64 * 1_000_000,
                server_ts_us: 1_700_000_000_000_000 + i as i64 * 1_000_000,
                duration_us: 1_000_000,
                init_id,
                keyframe: true,
                chunks,
            };
            pending.push(store.submit_fragment(&record, f).await.expect("submit").persisted);
        }
        for p in pending {
            p.await.expect("persisted").expect("stored");
        }
    });

    let runs = scaled(50);
    let scan = median(runs, || {
        let metas =
            store.fragments_in_range(record.id, kinescope::video_store::TimeKind::Producer, 0, i64::MAX, None, n);
        assert_eq!(metas.expect("scan").len(), n);
    });
    let on_demand = session(PlaybackMode::OnDemand, Protocol::Hls, record.id, n as u32);
    let mut window: Option<Window> = None;
    let hls_time = median(runs, || {
        let w = selection::window(&store, &on_demand, 0).expect("window");
        let text = hls::media_playlist(&w, &on_demand, "TOKEN", None);
        assert!(text.len() > 1000);
        window = Some(w);
    });
    let info = parse_init(&init).expect("init parses");
    let dash_session = session(PlaybackMode::OnDemand, Protocol::Dash, record.id, n as u32);
    let dash_time = median(runs, || {
        let w = selection::window(&store, &dash_session, 0).expect("window");
        let m = dash::manifest(&w, &dash_session, &|_| Some(info.clone()), "TOKEN", 0).to_xml();
        assert!(m.len() > 1000);
    });
    let hls_len = window.as_ref().map_or(0, |w| w.entries.len());

    // --- a DASH track cut against a plain read ----------------------------------------
    println!("[2/3] DASH per-track segment cut vs the stored fragment as HLS serves it…");
    let metas = store.fragments_from(record.id, 0, 64).expect("metas");
    let reads = scaled(2000);
    let read_time = rt.block_on(async {
        let s = Instant::now();
        for i in 0..reads {
            let m = &metas[i % metas.len()];
            std::hint::black_box(store.read_fragment(record.id, m).await.expect("read"));
        }
        s.elapsed()
    });
    let cut_time = rt.block_on(async {
        let s = Instant::now();
        for i in 0..reads {
            let m = &metas[i % metas.len()];
            let bytes = store.read_fragment(record.id, m).await.expect("read");
            let tracks = fragment_samples(&bytes, &info).expect("samples");
            let mut out = Vec::with_capacity(bytes.len());
            write_track_fragment(&mut out, 1, tracks[0].track_id, 0, &tracks[0].samples, &bytes).expect("cut");
            std::hint::black_box(out);
        }
        s.elapsed()
    });

    // --- live delay -------------------------------------------------------------------
    let live_n = scaled(200);
    println!("[3/3] live: {live_n} fragments at 20/s, each looked for in a fresh LIVE playlist…");
    let live = session(PlaybackMode::Live, Protocol::Hls, record.id, 5);
    let mut delays = rt.block_on(async {
        let mut delays = Vec::with_capacity(live_n);
        for i in 0..live_n {
            let t = 1_700_000_000_000_000 + (n + i) as i64 * 1_000_000;
            let f = NewFragment {
                producer_ts_us: t,
                server_ts_us: t,
                duration_us: 1_000_000,
                init_id,
                keyframe: true,
                chunks: fragments[i % fragments.len()].clone(),
            };
            let pending = store.submit_fragment(&record, f).await.expect("submit");
            let number = pending.fragment_number;
            pending.persisted.await.expect("persisted").expect("stored");
            let acked = Instant::now();
            loop {
                let w = selection::window(&store, &live, 0).expect("live window");
                let text = hls::media_playlist(&w, &live, "TOKEN", None);
                if text.contains(&format!("FragmentNumber={number}\n")) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            delays.push(acked.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        delays
    });
    delays.sort();

    println!();
    println!("| figure | kinescope | reference | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| ON_DEMAND HLS media playlist, {hls_len} fragments | {:.2} ms | index scan {:.2} ms | {:.1} |",
        ms(hls_time),
        ms(scan),
        ms(hls_time) / ms(scan)
    );
    println!(
        "| ON_DEMAND DASH manifest, {n} fragments | {:.2} ms | index scan {:.2} ms | {:.1} |",
        ms(dash_time),
        ms(scan),
        ms(dash_time) / ms(scan)
    );
    println!(
        "| DASH per-track segment (read + cut), {} B fragments | {:.1} µs | read as stored {:.1} µs | {:.2} |",
        metas[0].len,
        cut_time.as_secs_f64() * 1e6 / reads as f64,
        read_time.as_secs_f64() * 1e6 / reads as f64,
        cut_time.as_secs_f64() / read_time.as_secs_f64()
    );
    println!(
        "| PERSISTED → listed in a LIVE playlist | p50 {:.3} ms, p99 {:.3} ms | | |",
        ms(percentile(&delays, 0.5)),
        ms(percentile(&delays, 0.99))
    );
}
