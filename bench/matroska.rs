//! Matroska against fragmented MP4, the same media both ways, in one process on one disk.
//!
//! `cargo bench --bench matroska` encodes a test pattern once with ffmpeg (H.264 + AAC,
//! 1 s GOPs), copies it into fragmented MP4 and into live Matroska (`-c copy`, so both
//! carry the same frames), then prints, as MKV/fMP4 ratios of three interleaved rounds
//! (median and spread):
//!
//! * **parse**: the PutMedia demuxers alone (`Fragmenter` vs `MkvFragmenter`), fragments
//!   per second of CPU;
//! * **ingest**: whole PutMedia sessions (`run_session`: demuxer, store, fsync,
//!   acknowledgements), fragments per second;
//! * **GetMedia**: GetMediaForFragmentList of every fragment, answered in Matroska
//!   (Kinesis Video's format) vs fMP4, fragments and bytes per second.
//!
//! Scale the media's length with KINESCOPE_BENCH_SCALE (default 1.0 = 120 s).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use kinescope::clock::{Clock, SystemClock};
use kinescope::ingest::fragmenter::{FragmentLimits, Fragmenter, FragmenterEvent};
use kinescope::ingest::mkv_fragmenter::MkvFragmenter;
use kinescope::ingest::put_media::{run_session, AckEventType, SessionParams, TimecodeType};
use kinescope::metrics::Metrics;
use kinescope::playback::get_media::{self, MediaFormat};
use kinescope::video_store::{NewStream, StoreConfig, VideoStore};

#[path = "common.rs"]
mod common;

const ROUNDS: usize = 3;
const BODY_CHUNK: usize = 64 * 1024;

/// The same encode as fragmented MP4 and as live Matroska.
fn media(dir: &std::path::Path, seconds: usize) -> (Vec<u8>, Vec<u8>) {
    let mp4 = dir.join("bench.mp4");
    let mkv = dir.join("bench.mkv");
    let run = |args: String, out: &std::path::Path| {
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args.split_whitespace())
            .arg(out)
            .status();
        assert!(status.is_ok_and(|s| s.success()), "ffmpeg {args}");
    };
    run(
        format!(
            "-f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t {seconds} \
             -c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -b:v 1500k -pix_fmt yuv420p \
             -c:a aac -movflags frag_keyframe+empty_moov+default_base_moof"
        ),
        &mp4,
    );
    run(format!("-i {} -c copy -f matroska -live 1", mp4.display()), &mkv);
    (std::fs::read(&mp4).expect("mp4"), std::fs::read(&mkv).expect("mkv"))
}

/// Fragments the demuxer makes of `body`, and the time it took.
fn parse(body: &[u8], matroska: bool) -> (usize, Duration) {
    let start = Instant::now();
    let mut events = Vec::new();
    let mut fragments = 0;
    let limits = FragmentLimits::default();
    let (mut fmp4, mut mkv) = (Fragmenter::new(limits), MkvFragmenter::new(limits));
    for piece in body.chunks(BODY_CHUNK) {
        if matroska {
            mkv.push(piece, &mut events).expect("mkv");
        } else {
            fmp4.push(piece, &mut events).expect("fmp4");
        }
        fragments += events.iter().filter(|e| matches!(e, FragmenterEvent::Fragment(_))).count();
        events.clear();
    }
    if matroska {
        mkv.finish(&mut events).expect("mkv end");
    } else {
        fmp4.finish(&mut events).expect("fmp4 end");
    }
    fragments += events.iter().filter(|e| matches!(e, FragmenterEvent::Fragment(_))).count();
    (fragments, start.elapsed())
}

/// One PutMedia session of `body` into a new stream; persisted fragments and the time.
async fn ingest(store: &VideoStore, name: &str, body: &[u8]) -> (usize, Duration) {
    let record = store
        .create_stream(&store.config().default_scope, NewStream { name: name.into(), ..Default::default() })
        .await
        .expect("create stream");
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        body.chunks(BODY_CHUNK).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let params = SessionParams {
        timecode_type: TimecodeType::Relative,
        producer_start_us: Some(SystemClock.now_us()),
        limits: FragmentLimits::default(),
    };
    let start = Instant::now();
    let session = tokio::spawn(run_session(
        store.clone(),
        record,
        params,
        futures_util::stream::iter(chunks),
        tx,
        Arc::new(Metrics::default()),
    ));
    let mut persisted = 0;
    while let Some(ack) = rx.recv().await {
        assert!(ack.event_type != AckEventType::Error, "{ack:?}");
        persisted += usize::from(ack.event_type == AckEventType::Persisted);
    }
    session.await.expect("session");
    (persisted, start.elapsed())
}

/// GetMediaForFragmentList of every fragment of `stream` in `format`, repeated for at
/// least half a second: fragments and bytes sent, and the time.
async fn get_media(store: &VideoStore, stream: u64, format: MediaFormat) -> (usize, usize, Duration) {
    let metas = store.fragments_from(stream, 0, 100_000).expect("index");
    let start = Instant::now();
    let (mut fragments, mut bytes) = (0, 0);
    while start.elapsed() < Duration::from_millis(500) {
        let mut body = Box::pin(get_media::fragment_list(store.clone(), stream, metas.clone(), format));
        while let Some(b) = body.next().await {
            bytes += b.len();
        }
        fragments += metas.len();
    }
    (fragments, bytes, start.elapsed())
}

fn line(what: &str, unit: &str, mkv: Vec<f64>, fmp4: Vec<f64>) {
    let ratios: Vec<f64> = mkv.iter().zip(&fmp4).map(|(a, b)| a / b).collect();
    let (m, _, _) = common::median_spread(mkv);
    let (f, _, _) = common::median_spread(fmp4);
    let (r, lo, hi) = common::median_spread(ratios);
    println!("{what:<34} MKV {m:>10.1} {unit:<8} fMP4 {f:>10.1} {unit:<8} ratio {r:.3} (spread {lo:.3}–{hi:.3})");
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let seconds = common::scaled(120, 8);
    eprintln!("encoding {seconds} s of 640x360 H.264 + AAC with ffmpeg…");
    let (mp4, mkv) = media(tmp.path(), seconds);
    eprintln!("fMP4 {} bytes, Matroska {} bytes", mp4.len(), mkv.len());
    let (store, _) =
        VideoStore::open(StoreConfig::new(tmp.path().join("store")), Arc::new(SystemClock)).expect("store");

    let (mut parse_mkv, mut parse_mp4) = (Vec::new(), Vec::new());
    let (mut ingest_mkv, mut ingest_mp4) = (Vec::new(), Vec::new());
    let mut fed_stream = 0;
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}: parse and ingest…", round + 1);
        // Interleaved, each round starting with the other side.
        for matroska in [round % 2 == 0, round % 2 == 1] {
            let (n, d) = parse(if matroska { &mkv } else { &mp4 }, matroska);
            (if matroska { &mut parse_mkv } else { &mut parse_mp4 }).push(n as f64 / d.as_secs_f64());
            let name = format!("{}-{round}", if matroska { "mkv" } else { "fmp4" });
            let (n, d) = rt.block_on(ingest(&store, &name, if matroska { &mkv } else { &mp4 }));
            (if matroska { &mut ingest_mkv } else { &mut ingest_mp4 }).push(n as f64 / d.as_secs_f64());
            if !matroska {
                fed_stream = store.resolve(&store.config().default_scope, Some(&name), None).expect("stream").id;
            }
        }
    }
    let fragments = store.fragments_from(fed_stream, 0, 100_000).expect("index").len();
    let (mut get_mkv, mut get_mp4) = (Vec::new(), Vec::new());
    let (mut bytes_mkv, mut bytes_mp4) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}: GetMediaForFragmentList of {fragments} fragments…", round + 1);
        for matroska in [round % 2 == 0, round % 2 == 1] {
            let format = if matroska { MediaFormat::Matroska } else { MediaFormat::Mp4 };
            let (sent, bytes, d) = rt.block_on(get_media(&store, fed_stream, format));
            let secs = d.as_secs_f64();
            (if matroska { &mut get_mkv } else { &mut get_mp4 }).push(sent as f64 / secs);
            (if matroska { &mut bytes_mkv } else { &mut bytes_mp4 }).push(bytes as f64 / secs / 1e6);
        }
    }
    println!("Matroska vs fragmented MP4, {seconds} s of media, {ROUNDS} interleaved rounds (medians):");
    line("PutMedia demuxer alone", "frag/s", parse_mkv, parse_mp4);
    line("PutMedia session (store, fsync)", "frag/s", ingest_mkv, ingest_mp4);
    line("GetMediaForFragmentList", "frag/s", get_mkv, get_mp4);
    line("GetMediaForFragmentList", "MB/s", bytes_mkv, bytes_mp4);
}
