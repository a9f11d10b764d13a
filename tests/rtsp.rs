//! The RTSP server driven over a loopback socket by a client written here byte by
//! byte: a publisher's ANNOUNCE / SETUP / RECORD with interleaved H.264 RTP, what it
//! stores, what a viewer's DESCRIBE then gets, and the refusals a broken or hostile
//! client meets. The store is opened on its storage traits (`backend` in
//! `tests/video_store.rs` explains why). ffmpeg and GStreamer publishing and playing
//! are in `tests/integration/test_rtsp.py`.

use std::sync::Arc;
use std::time::Duration;

use kinescope::clock::{SharedClock, SystemClock};
use kinescope::credentials::Credentials;
use kinescope::metrics::Metrics;
use kinescope::rtsp::{RtspLimits, RtspServer};
use kinescope::scope::Scope;
use kinescope::video_store::{StoreConfig, VideoStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// SPS and PPS of a 320x240 High-profile stream (as ffmpeg announces it).
const SPROP: &str = "Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA";

struct Running {
    store: VideoStore,
    addr: std::net::SocketAddr,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start(limits: RtspLimits, create_streams: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    let config = StoreConfig::new(dir.path());
    let backend =
        kinescope::video_store::embedded::open(&config.data_dir, &config.default_scope, config.segment_max_bytes)
            .unwrap();
    let (store, _) = VideoStore::open_with(config, clock.clone(), backend).unwrap();
    let credentials = Arc::new(Credentials::new(Scope::new("000000000000", "us-east-1")));
    let server =
        RtspServer::new(store.clone(), credentials, clock, create_streams, [9; 32], Arc::new(Metrics::default()))
            .with_limits(limits);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(server.run(listener, stopped));
    Running { store, addr, _stop: stop, _dir: dir }
}

struct Client {
    sock: TcpStream,
    cseq: u32,
    buf: Vec<u8>,
}

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        Client { sock: TcpStream::connect(addr).await.unwrap(), cseq: 0, buf: Vec::new() }
    }

    async fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        self.cseq += 1;
        let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.sock.write_all(req.as_bytes()).await.unwrap();
        self.answer().await.expect("an answer")
    }

    /// The next response; `None` when the server closed the connection first.
    async fn answer(&mut self) -> Option<Answer> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                if self.buf.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + length]).to_string();
                    self.buf.drain(..end + 4 + length);
                    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    return Some(Answer { status, headers: head, body });
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(20), self.sock.read(&mut chunk)).await.ok()?.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn interleaved(&mut self, channel: u8, payload: &[u8]) {
        let mut frame = vec![b'$', channel];
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        frame.extend_from_slice(payload);
        self.sock.write_all(&frame).await.unwrap();
    }
}

fn sdp(tracks: usize, encoding: &str) -> String {
    let mut s = String::from("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n");
    for i in 0..tracks {
        s.push_str(&format!(
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 {encoding}/90000\r\n\
             a=fmtp:96 packetization-mode=1; sprop-parameter-sets={SPROP}; profile-level-id=64001E\r\n\
             a=control:streamid={i}\r\n"
        ));
    }
    s
}

fn rtp(seq: u16, ts: u32, marker: bool, nal: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, if marker { 0x80 | 96 } else { 96 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(nal);
    p
}

/// ANNOUNCE, SETUP (TCP interleaved 0-1) and RECORD of one H.264 track at `url`.
async fn publish(c: &mut Client, url: &str) {
    let a = c.request("ANNOUNCE", url, &[("Content-Type", "application/sdp")], &sdp(1, "H264")).await;
    assert_eq!(a.status, 200, "{}", a.headers);
    let transport = "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record";
    let a = c.request("SETUP", &format!("{url}/streamid=0"), &[("Transport", transport)], "").await;
    assert_eq!(a.status, 200, "{}", a.headers);
    assert!(a.headers.contains("interleaved=0-1"), "{}", a.headers);
    let session = a.headers.lines().find_map(|l| l.strip_prefix("Session: ")).unwrap().to_string();
    let a = c.request("RECORD", url, &[("Session", &session)], "").await;
    assert_eq!(a.status, 200, "{}", a.headers);
}

/// `seconds` of 25 fps video, a keyframe each second, as single-NAL packets.
async fn send_video(c: &mut Client, seconds: u32) {
    let mut seq = 0u16;
    for frame in 0..seconds * 25 {
        let ts = frame * 3600;
        let nal: Vec<u8> = if frame % 25 == 0 {
            let mut idr = vec![0x65, 0x88];
            idr.extend(std::iter::repeat_n((frame % 251) as u8, 600));
            idr
        } else {
            let mut p = vec![0x41, 0x9a];
            p.extend(std::iter::repeat_n((frame % 251) as u8, 120));
            p
        };
        c.interleaved(0, &rtp(seq, ts, true, &nal)).await;
        seq = seq.wrapping_add(1);
    }
}

#[tokio::test]
async fn a_publisher_over_tcp_is_stored_as_keyframe_fragments_and_described_to_viewers() {
    let server = start(RtspLimits::default(), true).await;
    let url = format!("rtsp://{}/cam", server.addr);
    let mut c = Client::connect(server.addr).await;
    let options = c.request("OPTIONS", &url, &[], "").await;
    assert!(options.headers.contains("ANNOUNCE") && options.headers.contains("RECORD"), "{}", options.headers);
    publish(&mut c, &url).await;
    send_video(&mut c, 4).await;
    let a = c.request("TEARDOWN", &url, &[], "").await;
    assert_eq!(a.status, 200);

    let scope = server.store.config().default_scope.clone();
    let stream = server.store.resolve(&scope, Some("cam"), None).expect("created on ANNOUNCE");
    // The last fragment is written as the publication ends, after TEARDOWN's answer.
    let mut stored = Vec::new();
    for _ in 0..200 {
        stored = server.store.fragments_from(stream.id, 0, 100).unwrap();
        if stored.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored.len(), 4, "one fragment per keyframe: {stored:?}");
    assert!(stored.iter().all(|f| f.keyframe()));
    assert!(stored.iter().all(|f| (900_000..=1_100_000).contains(&f.duration_us)), "{stored:?}");
    let init = server.store.init_segment(stream.id, stored[0].init_id).unwrap().expect("an init segment");
    assert!(init.windows(4).any(|w| w == b"avc1") && init.windows(4).any(|w| w == b"avcC"));
    let first = server.store.read_fragment(stream.id, &stored[0]).await.unwrap();
    assert!(first.windows(4).any(|w| w == b"moof") && first.windows(4).any(|w| w == b"mdat"));

    let mut viewer = Client::connect(server.addr).await;
    let d = viewer.request("DESCRIBE", &url, &[("Accept", "application/sdp")], "").await;
    assert_eq!(d.status, 200, "{}", d.headers);
    assert!(d.body.contains("H264/90000") && d.body.contains("sprop-parameter-sets="), "{}", d.body);
}

#[tokio::test]
async fn broken_and_hostile_publishers_are_refused_with_the_reason() {
    let limits = RtspLimits { max_tracks: 2, ..RtspLimits::default() };
    let server = start(limits, false).await;
    let base = format!("rtsp://{}", server.addr);
    let mut c = Client::connect(server.addr).await;

    let a = c.request("ANNOUNCE", &format!("{base}/"), &[], &sdp(1, "H264")).await;
    assert_eq!(a.status, 400, "no stream named");
    assert!(a.body.contains("must name a stream"), "{}", a.body);
    let a = c.request("ANNOUNCE", &format!("{base}/nosuch"), &[], &sdp(1, "H264")).await;
    assert_eq!(a.status, 404, "streams are not created unless the server is told to");
    let a = c.request("ANNOUNCE", &format!("{base}/nosuch"), &[], &sdp(3, "H264")).await;
    assert_eq!(a.status, 453, "more tracks than allowed: {}", a.body);
    let a = c.request("ANNOUNCE", &format!("{base}/nosuch"), &[], &sdp(1, "MP2T")).await;
    assert_eq!(a.status, 415, "{}", a.body);
    let a = c.request("RECORD", &format!("{base}/nosuch"), &[], "").await;
    assert_eq!(a.status, 455, "RECORD before SETUP");
    let a = c.request("PAUSE", &format!("{base}/nosuch"), &[], "").await;
    assert_eq!(a.status, 501);

    // Bytes that are no RTSP at all: a 400, and the connection is closed.
    c.sock.write_all(b"\x16\x03\x01\x02\x00 not rtsp\r\n\r\n").await.unwrap();
    let a = c.answer().await.expect("an answer before the close");
    assert_eq!(a.status, 400);
    assert!(c.answer().await.is_none(), "closed after malformed input");

    // The server still serves the next client.
    let mut next = Client::connect(server.addr).await;
    assert_eq!(next.request("OPTIONS", &format!("{base}/x"), &[], "").await.status, 200);
}

#[tokio::test]
async fn connections_past_the_limit_are_answered_503_and_idle_ones_are_ended() {
    let limits = RtspLimits { max_connections: 2, idle_timeout: Duration::from_millis(500), ..RtspLimits::default() };
    let server = start(limits, true).await;
    let mut held = vec![Client::connect(server.addr).await, Client::connect(server.addr).await];
    for c in &mut held {
        assert_eq!(c.request("OPTIONS", &format!("rtsp://{}/a", server.addr), &[], "").await.status, 200);
    }
    let mut third = Client::connect(server.addr).await;
    let a = third.answer().await.expect("told why");
    assert_eq!(a.status, 503);
    // The held connections say nothing: the idle timeout ends them and frees the slots.
    for c in &mut held {
        assert!(c.answer().await.is_none(), "an idle connection is closed");
    }
    let mut later = Client::connect(server.addr).await;
    assert_eq!(later.request("OPTIONS", &format!("rtsp://{}/a", server.addr), &[], "").await.status, 200);
}
