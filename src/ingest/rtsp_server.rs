//! The RTSP server on `--rtsp`: publishers push with ANNOUNCE / SETUP (mode=record) /
//! RECORD, as `ffmpeg -f rtsp` and GStreamer's `rtspclientsink` do, over TCP
//! (interleaved) or UDP; viewers DESCRIBE / SETUP / PLAY a live stream over TCP
//! ([`crate::playback::rtsp_play`]). The URL path names the Kinesis Video stream. Requests are
//! parsed by [`crate::wire::rtsp`]; media goes to [`super::rtsp_publish::Publisher`].
//!
//! With access keys configured, ANNOUNCE and SETUP need RTSP Digest authentication
//! (RFC 2617, MD5) with an access key id as the user name and its secret as the password.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::rtp_depacketize::ReorderBuffer;
use super::rtsp_publish::{MediaTime, Publisher, TrackSpec};
use crate::api::auth::Credentials;
use crate::clock::SharedClock;
use crate::playback::rtsp_play::PlayTrack;
use crate::video_store::{NewStream, StoreError, StreamRecord, VideoStore};
use crate::wire::rtsp::{self, Message, Request};
use crate::wire::sdp::{self, MediaDescription};

const REALM: &str = "Kinescope";
/// A publisher silent this long (no RTP, no keep-alive) is ended.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const UDP_REORDER_DEPTH: usize = 64;

#[derive(Clone)]
pub struct RtspServer {
    pub store: VideoStore,
    pub credentials: Arc<Credentials>,
    pub clock: SharedClock,
    /// Create a stream on its first ANNOUNCE when it does not exist.
    pub create_streams: bool,
    /// Digest nonces are derived from this, so they need no state.
    pub nonce_key: [u8; 32],
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl RtspServer {
    pub async fn run(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((sock, peer)) => {
                        let server = self.clone();
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            let span = tracing::info_span!("rtsp", %peer);
                            tracing::Instrument::instrument(server.connection(sock, peer, stop), span).await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "RTSP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
        }
    }

    async fn connection(self, mut sock: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
        let local_ip = sock.local_addr().map(|a| a.ip()).unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let mut session = Session::new(self.clone(), peer, local_ip);
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        let (udp_tx, mut udp_rx) = mpsc::channel::<UdpPacket>(1024);
        session.udp_tx = Some(udp_tx);
        let (play_tx, mut play_rx) = mpsc::channel::<Vec<u8>>(16);
        session.play_tx = Some(play_tx);
        loop {
            // Everything complete in the buffer first; the consumed bytes are dropped
            // once per read, not once per message (a read holds dozens of RTP packets).
            let mut consumed = 0;
            loop {
                match rtsp::parse(&buf[consumed..]) {
                    Ok(Some((msg, n))) => {
                        consumed += n;
                        let reply = session.message(msg).await;
                        if let Some(r) = reply {
                            if sock.write_all(&r).await.is_err() {
                                session.end("connection lost").await;
                                return;
                            }
                        }
                        if session.closed {
                            session.end("TEARDOWN").await;
                            return;
                        }
                    }
                    Ok(None) => {
                        buf.drain(..consumed);
                        break;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "malformed RTSP input; closing");
                        let _ = sock.write_all(&rtsp::response(400, "Bad Request", None, &[], b"")).await;
                        session.end("malformed input").await;
                        return;
                    }
                }
            }
            tokio::select! {
                read = tokio::time::timeout(IDLE_TIMEOUT, sock.read(&mut chunk)) => match read {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        session.end("the publisher went away").await;
                        return;
                    }
                    Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                    Err(_) if session.udp_active() || session.play_task.is_some() => {}
                    Err(_) => {
                        session.end("idle timeout").await;
                        return;
                    }
                },
                Some(packet) = udp_rx.recv() => match packet {
                    UdpPacket::Rtp { track, lost, data } => session.rtp(track, &data, lost).await,
                    UdpPacket::Rtcp { track, data } => session.rtcp(track, &data),
                },
                Some(bytes) = play_rx.recv() => {
                    if sock.write_all(&bytes).await.is_err() {
                        session.end("the viewer went away").await;
                        return;
                    }
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    session.end("server shutting down").await;
                    return;
                }
            }
        }
    }

    fn nonce(&self, at_s: i64) -> String {
        let mut h = Md5::new();
        h.update(self.nonce_key);
        h.update(at_s.to_be_bytes());
        format!("{at_s:x}.{}", hex::encode(h.finalize()))
    }

    fn nonce_ok(&self, nonce: &str) -> bool {
        let Some((at, _)) = nonce.split_once('.') else { return false };
        let Ok(at_s) = i64::from_str_radix(at, 16) else { return false };
        let now = self.clock.now_us() / 1_000_000;
        (now - at_s).abs() < 300 && self.nonce(at_s) == nonce
    }

    /// `None` when the request may go on; else the 401 to send.
    fn check_auth(&self, req: &Request) -> Option<Vec<u8>> {
        if self.credentials.is_anonymous() {
            return None;
        }
        let challenge = || {
            let nonce = self.nonce(self.clock.now_us() / 1_000_000);
            rtsp::response(
                401,
                "Unauthorized",
                req.cseq(),
                &[("WWW-Authenticate", format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=\"MD5\""))],
                b"",
            )
        };
        let Some(auth) = req.header("authorization").and_then(|a| a.strip_prefix("Digest ")) else {
            return Some(challenge());
        };
        let fields = digest_fields(auth);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(user), Some(nonce), Some(uri), Some(response)) =
            (get("username"), get("nonce"), get("uri"), get("response"))
        else {
            return Some(challenge());
        };
        let Some(secret) = self.credentials.secret(user) else { return Some(challenge()) };
        if !self.nonce_ok(nonce) {
            return Some(challenge());
        }
        let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
        let ha1 = md5(format!("{user}:{REALM}:{secret}"));
        let ha2 = md5(format!("{}:{uri}", req.method));
        if md5(format!("{ha1}:{nonce}:{ha2}")) == response {
            None
        } else {
            tracing::info!(user, "RTSP digest mismatch");
            Some(challenge())
        }
    }
}

/// `k="v", k2=v2` pairs of a Digest header.
fn digest_fields(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else { break };
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, t)) => (v, t),
                None => (q, ""),
            }
        } else {
            after.split_once(',').map_or((after, ""), |(v, t)| (v, t))
        };
        out.push((k.trim().to_ascii_lowercase(), v.to_string()));
        rest = tail.trim_start_matches([',', ' ']);
    }
    out
}

/// What a track's UDP readers hand to the session, in order.
enum UdpPacket {
    Rtp { track: usize, lost: u64, data: Vec<u8> },
    Rtcp { track: usize, data: Vec<u8> },
}

struct SetupTrack {
    media: usize,
    interleaved: Option<u8>,
}

struct Session {
    server: RtspServer,
    peer: SocketAddr,
    local_ip: std::net::IpAddr,
    id: String,
    stream: Option<StreamRecord>,
    media: Vec<MediaDescription>,
    specs: Vec<Option<TrackSpec>>,
    setup: Vec<SetupTrack>,
    publisher: Option<Publisher>,
    udp_tasks: Vec<tokio::task::JoinHandle<()>>,
    udp_tx: Option<mpsc::Sender<UdpPacket>>,
    /// PLAY: what DESCRIBE offered, what SETUP chose, and the task sending it.
    play_offer: Vec<(u32, crate::media::CodecParams)>,
    play_tracks: Vec<PlayTrack>,
    play_tx: Option<mpsc::Sender<Vec<u8>>>,
    play_task: Option<tokio::task::JoinHandle<()>>,
    closed: bool,
}

impl Session {
    fn new(server: RtspServer, peer: SocketAddr, local_ip: std::net::IpAddr) -> Self {
        let id = hex::encode(crate::secrets::random_bytes::<8>().unwrap_or([7; 8]));
        Session {
            server,
            peer,
            local_ip,
            id,
            stream: None,
            media: Vec::new(),
            specs: Vec::new(),
            setup: Vec::new(),
            publisher: None,
            udp_tasks: Vec::new(),
            udp_tx: None,
            play_offer: Vec::new(),
            play_tracks: Vec::new(),
            play_tx: None,
            play_task: None,
            closed: false,
        }
    }

    fn udp_active(&self) -> bool {
        !self.udp_tasks.is_empty() && self.publisher.is_some()
    }

    async fn message(&mut self, msg: Message) -> Option<Vec<u8>> {
        match msg {
            Message::Interleaved { channel, payload } => {
                if let Some(track) = self.setup.iter().position(|s| s.interleaved == Some(channel)) {
                    self.rtp(track, &payload, 0).await;
                } else if let Some(track) =
                    self.setup.iter().position(|s| s.interleaved.map(|c| c.wrapping_add(1)) == Some(channel))
                {
                    self.rtcp(track, &payload);
                }
                None
            }
            Message::Response { .. } => None,
            Message::Request(req) => Some(self.request(req).await),
        }
    }

    /// A publisher's RTCP: its sender reports anchor the track on its wall clock.
    fn rtcp(&mut self, track: usize, packet: &[u8]) {
        let Some(p) = self.publisher.as_mut() else { return };
        for sr in crate::wire::rtcp::sender_reports(packet) {
            p.sender_report(track, MediaTime::Rtp(sr.rtp_timestamp), sr.ntp);
        }
    }

    async fn rtp(&mut self, track: usize, packet: &[u8], lost: u64) {
        let Some(p) = self.publisher.as_mut() else { return };
        if let Err(e) = p.packet(track, packet, lost).await {
            tracing::warn!(error = %e, "RTSP publication failed; ending it");
            self.closed = true;
        }
    }

    async fn request(&mut self, req: Request) -> Vec<u8> {
        let cseq = req.cseq().map(str::to_string);
        let cseq = cseq.as_deref();
        let session_hdr = ("Session", format!("{};timeout=60", self.id));
        match req.method.as_str() {
            "OPTIONS" => rtsp::response(
                200,
                "OK",
                cseq,
                &[(
                    "Public",
                    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER".into(),
                )],
                b"",
            ),
            "ANNOUNCE" => {
                if let Some(r) = self.server.check_auth(&req) {
                    return r;
                }
                self.announce(&req).await.unwrap_or_else(|(status, reason, why)| {
                    tracing::info!(status, why = %why, "ANNOUNCE refused");
                    rtsp::response(status, reason, cseq, &[], why.as_bytes())
                })
            }
            "SETUP" => {
                if let Some(r) = self.server.check_auth(&req) {
                    return r;
                }
                match self.setup(&req).await {
                    Ok(transport) => rtsp::response(200, "OK", cseq, &[("Transport", transport), session_hdr], b""),
                    Err((status, reason, why)) => {
                        tracing::info!(status, why = %why, "SETUP refused");
                        rtsp::response(status, reason, cseq, &[], why.as_bytes())
                    }
                }
            }
            "RECORD" => {
                if self.setup.is_empty() || self.stream.is_none() {
                    return rtsp::response(455, "Method Not Valid in This State", cseq, &[], b"SETUP first");
                }
                let Some(stream) = self.stream.clone() else {
                    return rtsp::response(455, "Method Not Valid in This State", cseq, &[], b"ANNOUNCE first");
                };
                let specs: Vec<TrackSpec> = self.setup.iter().filter_map(|s| self.specs[s.media].take()).collect();
                tracing::info!(stream = %stream.name, tracks = specs.len(), "RTSP RECORD");
                self.publisher = Some(Publisher::new(
                    self.server.store.clone(),
                    stream,
                    self.server.clock.clone(),
                    self.server.metrics.clone(),
                    specs,
                ));
                rtsp::response(200, "OK", cseq, &[session_hdr], b"")
            }
            "TEARDOWN" => {
                self.closed = true;
                rtsp::response(200, "OK", cseq, &[session_hdr], b"")
            }
            "GET_PARAMETER" | "SET_PARAMETER" => rtsp::response(200, "OK", cseq, &[session_hdr], b""),
            "DESCRIBE" => {
                if let Some(r) = self.server.check_auth(&req) {
                    return r;
                }
                match self.describe(&req) {
                    Ok(sdp) => rtsp::response(
                        200,
                        "OK",
                        cseq,
                        &[
                            ("Content-Type", "application/sdp".into()),
                            ("Content-Base", format!("{}/", req.uri.trim_end_matches('/'))),
                        ],
                        sdp.as_bytes(),
                    ),
                    Err((status, reason, why)) => rtsp::response(status, reason, cseq, &[], why.as_bytes()),
                }
            }
            "PLAY" => {
                let (Some(stream), Some(tx)) = (self.stream.clone(), self.play_tx.clone()) else {
                    return rtsp::response(
                        455,
                        "Method Not Valid in This State",
                        cseq,
                        &[],
                        b"DESCRIBE and SETUP first",
                    );
                };
                if self.play_tracks.is_empty() {
                    return rtsp::response(455, "Method Not Valid in This State", cseq, &[], b"SETUP first");
                }
                if self.play_task.is_none() {
                    tracing::info!(stream = %stream.name, tracks = self.play_tracks.len(), "RTSP PLAY");
                    let store = self.server.store.clone();
                    let tracks = self.play_tracks.clone();
                    self.play_task = Some(tokio::spawn(crate::playback::rtsp_play::follow(store, stream, tracks, tx)));
                }
                rtsp::response(200, "OK", cseq, &[session_hdr, ("Range", "npt=now-".into())], b"")
            }
            "PAUSE" => rtsp::response(501, "Not Implemented", cseq, &[], b"live streams cannot be paused"),
            _ => rtsp::response(501, "Not Implemented", cseq, &[], b""),
        }
    }

    async fn announce(&mut self, req: &Request) -> Result<Vec<u8>, (u16, &'static str, String)> {
        let name = rtsp::path_of(&req.uri);
        if name.is_empty() {
            return Err((400, "Bad Request", "the URL must name a stream: rtsp://HOST:PORT/STREAM".into()));
        }
        let media = sdp::parse(&req.body).map_err(|e| (400, "Bad Request", e.to_string()))?;
        let mut specs = Vec::new();
        for m in &media {
            let params = sdp::codec_params(m).map_err(|why| (415, "Unsupported Media Type", why))?;
            let kind = params.clone().unwrap_or(match m.encoding.as_str() {
                "H265" => crate::media::CodecParams::H265 { vps: vec![], sps: vec![], pps: vec![] },
                _ => crate::media::CodecParams::H264 { sps: vec![], pps: vec![] },
            });
            specs.push(Some(TrackSpec { params, kind, fmtp: m.fmtp.clone(), clock_rate: m.clock_rate.max(1) }));
        }
        let store = &self.server.store;
        let record = match store.resolve(Some(&name), None) {
            Ok(r) => r,
            Err(StoreError::StreamNotFound(_)) if self.server.create_streams => store
                .create_stream(NewStream { name: name.clone(), ..Default::default() })
                .map_err(|e| (400, "Bad Request", e.to_string()))?,
            Err(StoreError::StreamNotFound(_)) => {
                return Err((404, "Not Found", format!("stream {name} does not exist; create it first")))
            }
            Err(e) => return Err((500, "Internal Server Error", e.to_string())),
        };
        tracing::info!(stream = %name, tracks = media.len(), "RTSP ANNOUNCE");
        self.stream = Some(record);
        self.media = media;
        self.specs = specs;
        Ok(rtsp::response(200, "OK", req.cseq(), &[], b""))
    }

    fn describe(&mut self, req: &Request) -> Result<String, (u16, &'static str, String)> {
        let name = rtsp::path_of(&req.uri);
        let record = match self.server.store.resolve(Some(&name), None) {
            Ok(r) => r,
            Err(StoreError::StreamNotFound(_)) => {
                return Err((404, "Not Found", format!("stream {name} does not exist")))
            }
            Err(e) => return Err((500, "Internal Server Error", e.to_string())),
        };
        let offer = crate::playback::rtsp_play::describe(&self.server.store, &record)
            .map_err(|e| (500, "Internal Server Error", e.to_string()))?
            .filter(|o| !o.is_empty())
            .ok_or((404, "Not Found", format!("stream {name} has no media yet")))?;
        let sdp = sdp::write(
            &name,
            &offer.iter().enumerate().map(|(i, (_, p))| (p.clone(), 96 + i as u8)).collect::<Vec<_>>(),
        );
        self.stream = Some(record);
        self.play_offer = offer;
        Ok(sdp)
    }

    fn setup_play(
        &mut self,
        req: &Request,
        transport: &rtsp::Transport,
    ) -> Result<String, (u16, &'static str, String)> {
        if !transport.tcp {
            return Err((461, "Unsupported Transport", "playing is served over TCP (interleaved) only".into()));
        }
        let i = req
            .uri
            .rsplit_once("trackID=")
            .and_then(|(_, n)| n.trim_end_matches('/').parse::<usize>().ok())
            .unwrap_or(self.play_tracks.len());
        let Some((track_id, codec)) = self.play_offer.get(i).cloned() else {
            return Err((404, "Not Found", format!("no track for {}", req.uri)));
        };
        let (rtp_ch, rtcp_ch) = transport.interleaved.unwrap_or((2 * i as u8, 2 * i as u8 + 1));
        self.play_tracks.push(PlayTrack { track_id, codec, payload_type: 96 + i as u8, channel: rtp_ch });
        Ok(format!("RTP/AVP/TCP;unicast;interleaved={rtp_ch}-{rtcp_ch}"))
    }

    async fn setup(&mut self, req: &Request) -> Result<String, (u16, &'static str, String)> {
        let offered = !self.play_offer.is_empty();
        if offered {
            let transport = req.header("transport").and_then(rtsp::parse_transport).ok_or((
                461,
                "Unsupported Transport",
                "only RTP/AVP over TCP".to_string(),
            ))?;
            return self.setup_play(req, &transport);
        }
        if self.media.is_empty() {
            return Err((455, "Method Not Valid in This State", "ANNOUNCE first".into()));
        }
        let transport = req.header("transport").and_then(rtsp::parse_transport).ok_or((
            461,
            "Unsupported Transport",
            "only RTP/AVP over TCP or UDP".to_string(),
        ))?;
        if !transport.record {
            return Err((461, "Unsupported Transport", "this server takes publishers: mode=record".into()));
        }
        let media = self
            .media
            .iter()
            .position(|m| m.control.as_deref().is_some_and(|c| req.uri.ends_with(c)))
            .unwrap_or(self.setup.len());
        if media >= self.media.len() || self.setup.iter().any(|s| s.media == media) {
            return Err((404, "Not Found", format!("no announced track for {}", req.uri)));
        }
        let track = self.setup.len();
        if transport.tcp {
            let (rtp_ch, rtcp_ch) = transport.interleaved.unwrap_or((2 * track as u8, 2 * track as u8 + 1));
            self.setup.push(SetupTrack { media, interleaved: Some(rtp_ch) });
            return Ok(format!("RTP/AVP/TCP;unicast;interleaved={rtp_ch}-{rtcp_ch};mode=record"));
        }
        let (client_rtp, client_rtcp) =
            transport.client_port.ok_or((461, "Unsupported Transport", "UDP needs client_port".to_string()))?;
        let rtp_sock =
            UdpSocket::bind((self.local_ip, 0)).await.map_err(|e| (500, "Internal Server Error", e.to_string()))?;
        let rtcp_sock =
            UdpSocket::bind((self.local_ip, 0)).await.map_err(|e| (500, "Internal Server Error", e.to_string()))?;
        let (sp, sp2) = (
            rtp_sock.local_addr().map_err(|e| (500, "Internal Server Error", e.to_string()))?.port(),
            rtcp_sock.local_addr().map_err(|e| (500, "Internal Server Error", e.to_string()))?.port(),
        );
        let tx = self.udp_tx.clone().ok_or((500, "Internal Server Error", "no packet channel".to_string()))?;
        let peer_ip = self.peer.ip();
        let rtcp_tx = tx.clone();
        self.udp_tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = rtcp_sock.recv_from(&mut buf).await {
                if from.ip() == peer_ip
                    && rtcp_tx.send(UdpPacket::Rtcp { track, data: buf[..n].to_vec() }).await.is_err()
                {
                    return;
                }
            }
        }));
        self.udp_tasks.push(tokio::spawn(async move {
            let mut reorder = ReorderBuffer::new(UDP_REORDER_DEPTH);
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = rtp_sock.recv_from(&mut buf).await {
                if from.ip() != peer_ip || n < 12 {
                    continue;
                }
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                for (lost, p) in reorder.push(seq, buf[..n].to_vec()) {
                    if tx.send(UdpPacket::Rtp { track, lost, data: p }).await.is_err() {
                        return;
                    }
                }
            }
        }));
        self.setup.push(SetupTrack { media, interleaved: None });
        Ok(format!("RTP/AVP/UDP;unicast;client_port={client_rtp}-{client_rtcp};server_port={sp}-{sp2};mode=record"))
    }

    async fn end(&mut self, why: &str) {
        for t in self.udp_tasks.drain(..) {
            t.abort();
        }
        if let Some(t) = self.play_task.take() {
            t.abort();
            tracing::info!(why, "RTSP viewer left");
        }
        if let Some(mut p) = self.publisher.take() {
            match p.finish().await {
                Ok(stats) => tracing::info!(
                    why,
                    fragments = stats.fragments,
                    samples = stats.samples,
                    waiting_dropped = stats.waiting_dropped,
                    packets = stats.depacketize.packets,
                    lost = stats.depacketize.lost,
                    dropped_units = stats.depacketize.dropped_units,
                    malformed = stats.depacketize.malformed,
                    "RTSP publication ended"
                ),
                Err(e) => tracing::warn!(why, error = %e, "RTSP publication ended with an error"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_header_fields() {
        let f =
            digest_fields(r#"username="AKID", realm="Kinescope", nonce="5f.ab", uri="rtsp://h/s", response="00ff""#);
        assert_eq!(f[0], ("username".into(), "AKID".into()));
        assert_eq!(f[4], ("response".into(), "00ff".into()));
        assert_eq!(digest_fields("a=1,b=\"x, y\""), vec![("a".into(), "1".into()), ("b".into(), "x, y".into())]);
    }
}
