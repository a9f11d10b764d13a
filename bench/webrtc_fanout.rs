//! WHEP fan-out: N viewers of one live stream against the floor, the same frames
//! packetized into RTP and sent over plain UDP sockets to N receivers, in the same run.
//!
//! The stream: 25 frames/s of 10 KB H.264 (2 Mbit/s, a keyframe a second) put on the
//! stream's live bus, as an RTSP or WHIP publisher puts them. WHEP: N viewer peer
//! connections built in this process with the same `webrtc` crate (ICE, DTLS-SRTP over
//! loopback), each offering to receive video, answered by `WhepSessions::open`, counting
//! the frames their track delivers (RTP packets with the marker bit). Floor: one UDP socket sends each RTP packet to N
//! receiver sockets, which count the frames. Both sides' receivers run in this process, so the
//! CPU figure covers sending and receiving: the WebRTC receivers' SRTP is counted too.
//! For each N, the two sides alternate, three rounds; the figure is this process's CPU
//! time (user + system, /proc/self/stat) per viewer, as viewers per core, and the share
//! of packets delivered.
//!
//!   cargo bench --bench webrtc_fanout        (KINESCOPE_BENCH_SCALE=0.5 for shorter runs)

#[path = "common.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kinescope::clock::SystemClock;
use kinescope::codec::{self, CodecKind, CodecParams};
use kinescope::ingest::fragmenter::{FragmentLimits, Fragmenter, FragmenterEvent};
use kinescope::metrics::Metrics;
use kinescope::video_store::{LiveFrame, NewFragment, NewStream, StoreConfig, VideoStore};
use kinescope::webrtc::peer::{Network, Peer};
use kinescope::webrtc::whep::{WhepConfig, WhepSessions};
use kinescope::wire::fmp4::{parse_init, TrackKind};
use rtc::peer_connection::sdp::RTCSessionDescription;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

const FPS: u64 = 25;
const FRAME_BYTES: usize = 10_000;

/// This process's CPU time so far (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10) // CLK_TCK = 100 on Linux
}

/// A frame: length-prefixed NAL units, an IDR every second.
fn frame(i: u64) -> Bytes {
    let key = i % FPS == 0;
    let mut nal = vec![if key { 0x65 } else { 0x41 }, 0x88];
    nal.resize(FRAME_BYTES - 4, (i % 251) as u8);
    let mut out = Vec::with_capacity(FRAME_BYTES);
    codec::nal::push_length_prefixed(&mut out, &nal);
    Bytes::from(out)
}

struct Outcome {
    cpu: Duration,
    wall: Duration,
    delivered: f64,
}

/// The floor: each frame's RTP packets sent from one UDP socket to `n` receivers.
async fn udp_fanout(n: usize, seconds: u64) -> Outcome {
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let received = Arc::new(AtomicU64::new(0));
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        addrs.push(sock.local_addr().expect("addr"));
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(len) = sock.recv(&mut buf).await {
                // A frame's last packet carries the marker bit.
                if len > 1 && buf[1] & 0x80 != 0 {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let mut frames = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / FPS));
    let mut seq = 0u16;
    for i in 0..seconds * FPS {
        tick.tick().await;
        let data = frame(i);
        let payloads = codec::packetize(CodecKind::H264, &data);
        let count = payloads.len();
        for (k, p) in payloads.into_iter().enumerate() {
            let mut packet = Vec::with_capacity(p.len() + 12);
            kinescope::wire::rtp::write(&mut packet, 96, k + 1 == count, seq, (i * 3600) as u32, 1, &p);
            seq = seq.wrapping_add(1);
            for a in &addrs {
                let _ = sender.send_to(&packet, a).await;
            }
        }
        frames += 1;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcome = Outcome {
        cpu: cpu_time() - cpu0,
        wall: t0.elapsed(),
        delivered: received.load(Ordering::Relaxed) as f64 / (frames * n as u64).max(1) as f64,
    };
    for t in tasks {
        t.abort();
    }
    outcome
}

/// `n` WHEP viewers of `stream`, connected, then the frames on its live bus.
async fn whep_fanout(store: &VideoStore, stream: u64, params: &CodecParams, n: usize, seconds: u64) -> Outcome {
    let metrics = Arc::new(Metrics::default());
    let whep = WhepSessions::new(store.clone(), WhepConfig { max_sessions: n + 8, ..WhepConfig::default() }, metrics);
    let received = Arc::new(AtomicU64::new(0));
    let mut viewers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..n {
        let video = params.kind();
        let mut peer = Peer::build(&Network::default(), &[video]).await.expect("viewer peer");
        peer.receive(video).await.expect("transceiver");
        let offer = peer.offer().await.expect("offer");
        let (_, answer) = whep.open(stream, offer).await.expect("WHEP answers");
        peer.pc.set_remote_description(RTCSessionDescription::answer(answer).expect("answer")).await.expect("answer");
        viewers.push(peer);
    }
    for peer in &mut viewers {
        assert!(peer.connected(Duration::from_secs(30)).await, "a viewer did not connect");
    }
    // The session feeders wait up to 2.5 s for a keyframe on the bus: start the frames,
    // and count from the first second on.
    let live = store.live(stream).expect("live");
    let sets = params.parameter_sets();
    let feeder = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / FPS));
        for i in 0.. {
            tick.tick().await;
            let key = i % FPS == 0;
            live.publish_frame(LiveFrame {
                codec: CodecKind::H264,
                data: frame(i),
                keyframe: key,
                parameter_sets: if key { sets.clone() } else { Vec::new() },
            });
        }
    });
    for peer in &mut viewers {
        if let Ok(Some(track)) = tokio::time::timeout(Duration::from_secs(10), peer.tracks.recv()).await {
            let received = received.clone();
            readers.push(tokio::spawn(async move {
                while let Some(e) = track.poll().await {
                    if let TrackRemoteEvent::OnRtpPacket(p) = e {
                        if p.header.marker {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, t0, got0) = (cpu_time(), Instant::now(), received.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu, wall, got) = (cpu_time() - cpu0, t0.elapsed(), received.load(Ordering::Relaxed) - got0);
    feeder.abort();
    for r in readers {
        r.abort();
    }
    for peer in viewers {
        let _ = peer.pc.close().await;
    }
    // Frames each viewer should have had over the window (a frame's last packet carries
    // the marker bit).
    let expected = FPS as f64 * wall.as_secs_f64() * n as f64;
    Outcome { cpu, wall, delivered: got as f64 / expected.max(1.0) }
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let seconds = common::scaled(8, 3) as u64;
    rt.block_on(async {
        let (store, _) = VideoStore::open(StoreConfig::new(tmp.path()), Arc::new(SystemClock)).expect("store");
        let scope = store.config().default_scope.clone();
        let record = store
            .create_stream(&scope, NewStream { name: "fanout".into(), ..Default::default() })
            .await
            .expect("stream");
        // The stream needs a stored H.264 fragment (WHEP reads its init's parameters).
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/video_only.mp4")).expect("fixture");
        let mut f = Fragmenter::new(FragmentLimits::default());
        let mut events = Vec::new();
        f.push(&bytes, &mut events).expect("fixture parses");
        f.finish(&mut events).expect("fixture ends");
        let mut init_id = 0;
        let mut params = None;
        for e in events {
            match e {
                FragmenterEvent::Init(i) => {
                    let info = parse_init(&i.bytes).expect("init");
                    params = info.tracks.iter().find(|t| t.kind == TrackKind::Video).and_then(CodecParams::from_track);
                    init_id = store.put_init(record.id, i.bytes).await.expect("init stored");
                }
                FragmenterEvent::Fragment(a) => {
                    let p = store
                        .submit_fragment(
                            &record,
                            NewFragment {
                                producer_ts_us: a.start_us,
                                server_ts_us: a.start_us,
                                duration_us: a.duration_us,
                                init_id,
                                keyframe: a.keyframe,
                                chunks: a.chunks,
                            },
                        )
                        .await
                        .expect("fragment");
                    p.persisted.await.expect("persisted").expect("persisted");
                }
                _ => {}
            }
        }
        let params = params.expect("an H.264 track");
        println!("WHEP fan-out vs plain UDP fan-out: 25 fps x 10 KB H.264 (2 Mbit/s), {seconds} s per cell,");
        println!("receivers in this process; CPU = this process's user+system time (2-vCPU VM)");
        println!("| viewers | side | round | CPU cores | viewers per core | delivered |");
        println!("|---|---|---|---|---|---|");
        let mut summary = Vec::new();
        for n in [25usize, 50, 100] {
            let mut per_core = (Vec::new(), Vec::new());
            for round in 1..=3 {
                let u = udp_fanout(n, seconds).await;
                let w = whep_fanout(&store, record.id, &params, n, seconds).await;
                for (side, o, list) in [("UDP", &u, &mut per_core.0), ("WHEP", &w, &mut per_core.1)] {
                    let cores = o.cpu.as_secs_f64() / o.wall.as_secs_f64();
                    let vpc = n as f64 / cores.max(1e-6);
                    list.push(vpc);
                    println!("| {n} | {side} | {round} | {cores:.3} | {vpc:.0} | {:.1} % |", o.delivered * 100.0);
                }
                eprintln!("  {n} viewers, round {round} done");
            }
            summary.push((n, per_core));
        }
        for (n, (mut udp, mut whep)) in summary {
            udp.sort_by(f64::total_cmp);
            whep.sort_by(f64::total_cmp);
            println!(
                "{n} viewers: WHEP {:.0} viewers/core ({:.0}-{:.0}), UDP floor {:.0} ({:.0}-{:.0}), WHEP/UDP {:.2}",
                whep[1],
                whep[0],
                whep[2],
                udp[1],
                udp[0],
                udp[2],
                whep[1] / udp[1]
            );
        }
    });
}
