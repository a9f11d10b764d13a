//! RTSP ingest under load: N concurrent publishers pushing ~2 Mbit/s H.264 (25 fps, 1 s
//! GOP: a 50 KB IDR and 8 KB P-frames, no B-frames, with the SPS of x264 `-bf 0`, as RTP
//! over interleaved TCP) into the RTSP server,
//! for N = 10, 100 and 500 (`KINESCOPE_BENCH_SCALE` scales the counts). For each N:
//! server CPU per stream (the server's threads only: the load generator runs on its own
//! named threads), memory per stream (RSS growth), fragments missing (GOPs sent but not
//! persisted) and the PERSISTED delay (the GOP's closing keyframe sent → the fragment
//! durable). The reference, in the same run: the same fragments submitted straight to the
//! store by N producers at the same pace, without RTSP, RTP or muxing.

#[path = "common.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kinescope::clock::{Clock, SystemClock};
use kinescope::credentials::Credentials;
use kinescope::rtsp::RtspServer;
use kinescope::video_store::{NewFragment, NewStream, StoreConfig, VideoStore};
use kinescope::wire::{rtp, rtsp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FPS: u32 = 25;
const IDR_BYTES: usize = 50_000;
const P_BYTES: usize = 8_000;
const MTU_PAYLOAD: usize = 1400;
const SDP: &str = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqyyAUBf8uAiAAADAAIAAAMAZR4sXJA=,aOvDyyLA\r\na=control:streamid=0\r\n";

/// CPU seconds (user + system) of this process's threads, split by whether the
/// thread's name starts with `gen-` (the load generator).
fn cpu_split() -> (f64, f64) {
    let tick = 100.0; // USER_HZ on Linux
    let (mut server, mut generator) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return (0.0, 0.0) };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let secs = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
            / tick;
        if comm.starts_with("gen-") {
            generator += secs;
        } else {
            server += secs;
        }
    }
    (server, generator)
}

/// One frame's RTP packets (FU-A above the MTU), timestamps filled in at send time.
fn packetize(nal: &[u8]) -> Vec<Vec<u8>> {
    if nal.len() <= MTU_PAYLOAD {
        return vec![nal.to_vec()];
    }
    let (h, body) = (nal[0], &nal[1..]);
    let pieces: Vec<&[u8]> = body.chunks(MTU_PAYLOAD).collect();
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut fu = vec![(h & 0xe0) | 28, h & 0x1f];
            if i == 0 {
                fu[1] |= 0x80;
            }
            if i + 1 == pieces.len() {
                fu[1] |= 0x40;
            }
            fu.extend_from_slice(p);
            fu
        })
        .collect()
}

async fn request(sock: &mut tokio::net::TcpStream, text: String) -> String {
    sock.write_all(text.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut b).await.expect("read");
        assert!(n > 0, "server closed");
        buf.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Pushes for `seconds`; records when each keyframe was sent.
async fn publisher(url: String, name: String, seconds: u64, keyframes: Arc<Mutex<Vec<Instant>>>) {
    let host = url.trim_start_matches("rtsp://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&host).await.expect("connect");
    let r = request(
        &mut sock,
        format!("ANNOUNCE {url}/{name} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {}\r\n\r\n{SDP}", SDP.len()),
    )
    .await;
    assert!(r.starts_with("RTSP/1.0 200"), "{r}");
    let r = request(
        &mut sock,
        format!("SETUP {url}/{name}/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n"),
    )
    .await;
    assert!(r.starts_with("RTSP/1.0 200"), "{r}");
    request(&mut sock, format!("RECORD {url}/{name} RTSP/1.0\r\nCSeq: 3\r\n\r\n")).await;
    let mut idr = vec![0x65u8];
    idr.resize(IDR_BYTES, 0x5a);
    let mut p = vec![0x41u8];
    p.resize(P_BYTES, 0xa5);
    let (idr, p) = (packetize(&idr), packetize(&p));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
    let (mut seq, mut out) = (0u16, Vec::with_capacity(64 * 1024));
    for frame in 0..(seconds * u64::from(FPS)) {
        tick.tick().await;
        let key = frame % u64::from(FPS) == 0;
        let ts = (frame * 90_000 / u64::from(FPS)) as u32;
        out.clear();
        let pieces = if key { &idr } else { &p };
        for (i, piece) in pieces.iter().enumerate() {
            let mut pkt = Vec::with_capacity(piece.len() + 12);
            rtp::write(&mut pkt, 96, i + 1 == pieces.len(), seq, ts, 7, piece);
            seq = seq.wrapping_add(1);
            out.extend_from_slice(&rtsp::interleaved(0, &pkt));
        }
        if key {
            keyframes.lock().expect("lock").push(Instant::now());
        }
        if sock.write_all(&out).await.is_err() {
            return;
        }
    }
    let _ = request(&mut sock, format!("TEARDOWN {url}/{name} RTSP/1.0\r\nCSeq: 4\r\n\r\n")).await;
}

/// The same bytes as fragments straight into the store, one per second.
async fn direct(store: VideoStore, name: String, seconds: u64, keyframes: Arc<Mutex<Vec<Instant>>>) {
    let record = store.resolve(&store.config().default_scope, Some(&name), None).expect("stream");
    let init = kinescope::media::fmp4_mux::FragmentMuxer::new(vec![kinescope::codec::CodecParams::H264(
        kinescope::codec::h264::Params {
            sps: vec![
                0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
                0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
            ],
            pps: vec![0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0],
        },
    )])
    .init_segment()
    .expect("init");
    let init_id = store.put_init(record.id, Bytes::from(init)).await.expect("init");
    let body = Bytes::from(vec![0x5au8; IDR_BYTES + (FPS as usize - 1) * P_BYTES]);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for _ in 0..seconds {
        tick.tick().await;
        keyframes.lock().expect("lock").push(Instant::now());
        let now = SystemClock.now_us();
        store
            .submit_fragment(
                &record,
                NewFragment {
                    producer_ts_us: now,
                    server_ts_us: now,
                    duration_us: 1_000_000,
                    init_id,
                    keyframe: true,
                    chunks: vec![body.clone()],
                },
            )
            .await
            .expect("submit");
    }
}

struct Row {
    n: usize,
    rtsp: Measure,
    direct: Measure,
}

struct Measure {
    cpu_per_stream: f64,
    mem_per_stream: f64,
    missing: i64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run(
    store: &VideoStore,
    rtsp_url: &str,
    n: usize,
    seconds: u64,
    via_rtsp: bool,
    tag: &str,
    gen: &tokio::runtime::Handle,
) -> Measure {
    let names: Vec<String> = (0..n).map(|i| format!("{tag}-{n}-{i}")).collect();
    let mut watchers = Vec::new();
    let mut keyframes = Vec::new();
    for name in &names {
        let record = store
            .create_stream(&store.config().default_scope, NewStream { name: name.clone(), ..Default::default() })
            .await
            .expect("create");
        let live = store.live(record.id).expect("live");
        let persisted: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let p = persisted.clone();
        let mut rx = live.subscribe();
        watchers.push((
            tokio::spawn(async move {
                let mut last = 0;
                while rx.changed().await.is_ok() {
                    let edge = rx.borrow_and_update().last_persisted;
                    for _ in last..edge {
                        p.lock().expect("lock").push(Instant::now());
                    }
                    last = edge;
                    if rx.borrow().deleted {
                        return;
                    }
                }
            }),
            persisted,
        ));
        keyframes.push(Arc::new(Mutex::new(Vec::new())));
    }
    let rss0 = common::rss_bytes();
    let (cpu0, _) = cpu_split();
    let t0 = Instant::now();
    let tasks: Vec<_> = names
        .iter()
        .zip(&keyframes)
        .map(|(name, k)| {
            let (name, k) = (name.clone(), k.clone());
            if via_rtsp {
                gen.spawn(publisher(rtsp_url.to_string(), name, seconds, k))
            } else {
                gen.spawn(direct(store.clone(), name, seconds, k))
            }
        })
        .collect();
    // Sample memory in the middle of the run, when every stream is live.
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    let rss_mid = common::rss_bytes();
    for t in tasks {
        t.await.expect("publisher");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu1, _) = cpu_split();
    let wall = t0.elapsed().as_secs_f64();
    let mut delays = Vec::new();
    let mut missing = 0i64;
    for ((_, persisted), k) in watchers.iter().zip(&keyframes) {
        let p = persisted.lock().expect("lock");
        let k = k.lock().expect("lock");
        // RTSP: GOP i is cut (and persisted) once keyframe i+1 is sent; the last GOP at
        // TEARDOWN. Direct: fragment i is submitted at "keyframe" i.
        let expected = k.len() as i64;
        missing += (expected - p.len() as i64).max(0);
        for (i, at) in p.iter().enumerate() {
            let sent = if via_rtsp { k.get(i + 1) } else { k.get(i) };
            if let Some(s) = sent {
                delays.push(at.saturating_duration_since(*s));
            }
        }
    }
    for (w, _) in watchers {
        w.abort();
    }
    delays.sort();
    let pct =
        |q: f64| delays.get(((delays.len().max(1) - 1) as f64 * q) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Measure {
        cpu_per_stream: (cpu1 - cpu0) / wall / n as f64 * 100.0,
        mem_per_stream: rss_mid.saturating_sub(rss0) as f64 / n as f64,
        missing,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let gen = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gen-load")
        .enable_all()
        .build()
        .expect("generator runtime");
    let seconds = common::scaled(10, 4) as u64;
    let counts: Vec<usize> = [10, 100, 500].iter().map(|n| common::scaled(*n, 2)).collect();
    println!(
        "kinescope RTSP publisher benchmark — ~2 Mbit/s H.264 each, {seconds} s per step, data in {}",
        tmp.path().display()
    );
    let rows = rt.block_on(async {
        let (store, _) = VideoStore::open(StoreConfig::new(tmp.path()), Arc::new(SystemClock)).expect("store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("rtsp://{}", listener.local_addr().expect("addr"));
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = RtspServer::new(
            store.clone(),
            Arc::new(Credentials::new(store.config().default_scope.clone())),
            Arc::new(SystemClock),
            false,
            [3; 32],
            Arc::new(kinescope::metrics::Metrics::default()),
        );
        tokio::spawn(server.run(listener, stop_rx));
        let mut rows = Vec::new();
        for (i, &n) in counts.iter().enumerate() {
            eprintln!("[{}/{}] {n} RTSP publishers…", i + 1, counts.len());
            let rtsp = run(&store, &url, n, seconds, true, "rtsp", gen.handle()).await;
            eprintln!("[{}/{}] {n} direct producers (reference)…", i + 1, counts.len());
            let direct = run(&store, &url, n, seconds, false, "direct", gen.handle()).await;
            rows.push(Row { n, rtsp, direct });
        }
        rows
    });
    println!("\n| publishers | server CPU per stream (% of a core) | reference | ratio | memory per stream | missing fragments | PERSISTED delay p50 / p99 | reference p50 / p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} % | {:.2} % | {:.1} | {:.0} KiB | {} | {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
            r.n,
            r.rtsp.cpu_per_stream,
            r.direct.cpu_per_stream,
            r.rtsp.cpu_per_stream / r.direct.cpu_per_stream.max(1e-9),
            r.rtsp.mem_per_stream / 1024.0,
            r.rtsp.missing,
            r.rtsp.p50_ms,
            r.rtsp.p99_ms,
            r.direct.p50_ms,
            r.direct.p99_ms
        );
    }
}
