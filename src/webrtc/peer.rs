//! A WebRTC peer connection as the server builds them for WHEP viewers and WHIP
//! publishers (the `webrtc` crate): the codecs it may use, host candidates on one
//! address, the answer to an offer with every candidate in it (non-trickle), and its
//! events as watch channels — gathering, connection state, and the remote tracks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
pub use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};
use webrtc::rtp_transceiver::RtpSender;

pub use webrtc::peer_connection::RTCPeerConnectionState as PeerState;

use crate::codec::{CodecKind, RtpCapability};

/// Where the server's peer connections listen and what they advertise: the address
/// their UDP sockets bind (each connection's host candidate), public addresses a NAT
/// maps to it one to one (advertised as server-reflexive candidates beside it), and the
/// UDP ports they may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub bind_ip: IpAddr,
    pub public_ips: Vec<IpAddr>,
    /// Inclusive; `None`: any ephemeral port.
    pub udp_ports: Option<(u16, u16)>,
    /// The addresses remote candidates may have (empty: any unicast address). The
    /// server sends connectivity checks to each candidate a peer gives, so this also
    /// bounds where a peer can make it send them.
    pub peer_networks: Vec<crate::egress::Cidr>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            public_ips: Vec::new(),
            udp_ports: None,
            peer_networks: vec![],
        }
    }
}

/// Remote candidates one peer connection takes, in its description and trickled
/// together: a browser gives a handful; more only multiplies the checks sent.
pub const MAX_REMOTE_CANDIDATES: usize = 16;

impl Network {
    /// Whether a remote candidate's address may be checked: an IP address (no mDNS
    /// names: the server resolves none) that is unicast and, when the operator listed
    /// networks, inside one of them.
    pub fn admits_candidate_address(&self, address: &str) -> bool {
        let Ok(ip) = address.parse::<IpAddr>() else { return false };
        let unicast = !(ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]));
        unicast && (self.peer_networks.is_empty() || self.peer_networks.iter().any(|n| n.contains(ip)))
    }
}

/// Screens what a remote peer says about its candidates: at most
/// [`MAX_REMOTE_CANDIDATES`] per connection, each admitted by the [`Network`].
#[derive(Debug, Clone)]
pub struct CandidateScreen {
    network: Network,
    taken: usize,
}

impl CandidateScreen {
    pub fn new(network: &Network) -> Self {
        CandidateScreen { network: network.clone(), taken: 0 }
    }

    /// A remote description with only the candidates the screen admits.
    pub fn description(&mut self, sdp: &str) -> String {
        let room = MAX_REMOTE_CANDIDATES.saturating_sub(self.taken);
        let (kept, dropped) =
            crate::wire::sdp::keep_candidates(sdp, room, |a| self.network.admits_candidate_address(a));
        self.taken += crate::wire::sdp::candidate_lines(&kept);
        if dropped > 0 {
            tracing::debug!(dropped, "remote candidates dropped (over the cap, mDNS names or outside peer networks)");
        }
        kept
    }

    /// Whether a trickled candidate may be added.
    pub fn candidate(&mut self, c: &RTCIceCandidateInit) -> bool {
        if c.candidate.trim().is_empty() {
            // The end-of-candidates marker.
            return true;
        }
        let ok = self.taken < MAX_REMOTE_CANDIDATES
            && crate::wire::sdp::candidate_address(&c.candidate)
                .is_some_and(|a| self.network.admits_candidate_address(a));
        if ok {
            self.taken += 1;
        }
        ok
    }
}

/// Parses `LOW-HIGH` (inclusive, LOW ≤ HIGH, not 0).
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.trim().split_once('-')?;
    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
    (a > 0 && a <= b).then_some((a, b))
}

/// Where the next search for a free port in the range starts (spreads connections over
/// the range instead of probing from its start each time).
static NEXT_PORT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Network {
    /// The UDP address a new peer connection binds: an ephemeral port, or the first port
    /// of the range free right now (probed by binding it).
    fn udp_addr(&self) -> Result<String, PeerError> {
        let Some((low, high)) = self.udp_ports else {
            return Ok(std::net::SocketAddr::new(self.bind_ip, 0).to_string());
        };
        let count = usize::from(high - low) + 1;
        let start = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..count {
            let port = low + ((start + i) % count) as u16;
            let addr = std::net::SocketAddr::new(self.bind_ip, port);
            if std::net::UdpSocket::bind(addr).is_ok() {
                return Ok(addr.to_string());
            }
        }
        Err(PeerError::NoPort { low, high })
    }
}

/// How long an answer waits for host candidates.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// Remote tracks a peer may announce (a publisher sends one video and one audio track).
const MAX_REMOTE_TRACKS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the offer is not usable: {0}")]
    BadOffer(String),
    #[error("WebRTC: {0}")]
    WebRtc(String),
    #[error("no UDP port is free in {low}-{high}")]
    NoPort { low: u16, high: u16 },
}

fn rtc_error(e: impl std::fmt::Display) -> PeerError {
    PeerError::WebRtc(e.to_string())
}

/// The `webrtc` crate's description of a codec WebRTC carries (what the codec layer
/// says it negotiates), with its kind and payload type.
fn rtp_codec(codec: CodecKind) -> Result<(RTCRtpCodec, u8, RtpCodecKind), PeerError> {
    let cap: RtpCapability =
        codec.webrtc().ok_or_else(|| PeerError::WebRtc(format!("{} is not carried over WebRTC", codec.name())))?;
    let kind = if cap.media == "video" { RtpCodecKind::Video } else { RtpCodecKind::Audio };
    let rtp = RTCRtpCodec {
        mime_type: cap.mime_type(),
        clock_rate: cap.clock_rate,
        channels: cap.channels,
        sdp_fmtp_line: cap.fmtp.to_owned(),
        rtcp_feedback: vec![],
    };
    Ok((rtp, cap.payload_type, kind))
}

/// Tells the peer's owner what happens to it.
struct Events {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Bounded: a peer announcing more tracks than a publisher has loses the extras.
        let _ = self.tracks.try_send(track);
    }
}

/// A peer connection and its events. Dropping it closes the connection (the `webrtc`
/// crate keeps a dropped connection's sockets and tasks running until it is closed), so
/// every path that builds one, a refused offer included, frees what it took.
pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    /// Tracks the remote peer sends, as they open.
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
    gathered: watch::Receiver<bool>,
    public_ips: Vec<IpAddr>,
    /// What the remote side may say about its candidates.
    pub screen: CandidateScreen,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let pc = self.pc.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

impl Peer {
    /// A peer connection on `network` that may use `codecs`.
    pub async fn build(network: &Network, codecs: &[CodecKind]) -> Result<Peer, PeerError> {
        let mut media_engine = MediaEngine::default();
        for codec in codecs {
            let (rtp_codec, payload_type, kind) = rtp_codec(*codec)?;
            media_engine.register_codec(RTCRtpCodecParameters { rtp_codec, payload_type }, kind).map_err(rtc_error)?;
        }
        let registry = register_default_interceptors(Registry::new(), &mut media_engine).map_err(rtc_error)?;
        let (gathered, gathered_rx) = watch::channel(false);
        let (state, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (tracks, tracks_rx) = mpsc::channel(MAX_REMOTE_TRACKS);
        let runtime = webrtc::runtime::default_runtime().ok_or_else(|| rtc_error("no WebRTC runtime"))?;
        // No mDNS: it would open a multicast socket on every interface, and the server
        // neither advertises nor resolves `.local` names.
        let settings = SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled).build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Events { gathered, state, tracks }))
            .with_runtime(runtime)
            .with_udp_addrs(vec![network.udp_addr()?])
            .build()
            .await
            .map_err(rtc_error)?;
        Ok(Peer {
            pc: Arc::new(pc),
            state: state_rx,
            tracks: tracks_rx,
            gathered: gathered_rx,
            public_ips: network.public_ips.clone(),
            screen: CandidateScreen::new(network),
        })
    }

    /// Adds a transceiver that only receives `codec`'s media (video or audio).
    pub async fn receive(&self, codec: CodecKind) -> Result<(), PeerError> {
        let (_, _, kind) = rtp_codec(codec)?;
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
        self.pc.add_transceiver_from_kind(kind, Some(init)).await.map_err(rtc_error)?;
        Ok(())
    }

    /// Applies `offer` and returns the answer with every host candidate in it.
    pub async fn answer(&mut self, offer: String) -> Result<String, PeerError> {
        let offer = self.screen.description(&offer);
        let offer = RTCSessionDescription::offer(offer).map_err(|e| PeerError::BadOffer(e.to_string()))?;
        self.pc.set_remote_description(offer).await.map_err(|e| PeerError::BadOffer(e.to_string()))?;
        let answer = self.pc.create_answer(None).await.map_err(|e| PeerError::BadOffer(e.to_string()))?;
        self.pc.set_local_description(answer).await.map_err(rtc_error)?;
        // Non-trickle: host candidates gather at once.
        let _ = tokio::time::timeout(GATHER_TIMEOUT, self.gathered.wait_for(|g| *g)).await;
        let sdp = self.pc.local_description().await.ok_or_else(|| rtc_error("no local description"))?.sdp;
        Ok(with_public_candidates(&sdp, &self.public_ips))
    }

    /// An offer to receive what the transceivers added ask for, with every host
    /// candidate in it (the server offers when it joins a channel as a viewer).
    pub async fn offer(&mut self) -> Result<String, PeerError> {
        let offer = self.pc.create_offer(None).await.map_err(rtc_error)?;
        self.pc.set_local_description(offer).await.map_err(rtc_error)?;
        let _ = tokio::time::timeout(GATHER_TIMEOUT, self.gathered.wait_for(|g| *g)).await;
        let sdp = self.pc.local_description().await.ok_or_else(|| rtc_error("no local description"))?.sdp;
        Ok(with_public_candidates(&sdp, &self.public_ips))
    }

    /// Waits up to `timeout` for the connection; whether it connected.
    pub async fn connected(&mut self, timeout: Duration) -> bool {
        let settled = |s: &RTCPeerConnectionState| {
            matches!(
                s,
                RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            )
        };
        matches!(
            tokio::time::timeout(timeout, self.state.wait_for(settled)).await,
            Ok(Ok(s)) if *s == RTCPeerConnectionState::Connected
        )
    }
}

/// `sdp` with a server-reflexive candidate for each public address after each UDP host
/// candidate: same port, lower priority, `raddr`/`rport` naming the host candidate. The
/// remote peer's checks to the public address reach the host socket through the 1:1 NAT,
/// and ICE answers them like any other (the `webrtc` crate does not apply its
/// `nat_1to1_ips` setting to gathering, so the answer is written here). Pure.
pub fn with_public_candidates(sdp: &str, public_ips: &[IpAddr]) -> String {
    if public_ips.is_empty() {
        return sdp.to_string();
    }
    let mut out = String::with_capacity(sdp.len() + 256);
    for line in sdp.split_inclusive('\n') {
        out.push_str(line);
        let fields: Vec<&str> = line.trim_end().split(' ').collect();
        // a=candidate:FOUNDATION COMPONENT udp PRIORITY IP PORT typ host …
        let [foundation, component, proto, _, ip, port, "typ", "host", ..] = fields[..] else { continue };
        if !foundation.starts_with("a=candidate:") || !proto.eq_ignore_ascii_case("udp") {
            continue;
        }
        let Ok(component_id) = component.parse::<u32>() else { continue };
        for (i, public) in public_ips.iter().enumerate() {
            // RFC 8445 5.1.2.1: type preference 100 for server-reflexive.
            let priority = (100u32 << 24) | ((65_535 - i as u32) << 8) | (256 - component_id.min(256));
            out.push_str(&format!(
                "a=candidate:{}nat{i} {component} udp {priority} {public} {port} typ srflx raddr {ip} rport {port}\r\n",
                &foundation["a=candidate:".len()..]
            ));
        }
    }
    out
}

/// A track the server sends samples on (H.264 access units in Annex B, Opus packets):
/// its SSRC, and the payload type the peer agreed to once the exchange is done.
pub struct SampleTrack {
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    payload_type: u8,
}

impl SampleTrack {
    /// Adds a track sending `codec` to `pc` (a send-and-receive transceiver: the peer
    /// may send on it too).
    pub async fn add(pc: &Arc<dyn PeerConnection>, codec: CodecKind) -> Result<Self, PeerError> {
        let (codec, _, kind) = rtp_codec(codec)?;
        let ssrc = random_ssrc();
        let label = if kind == RtpCodecKind::Video { "video" } else { "audio" };
        let encoding = RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        };
        let stream = MediaStreamTrack::new("kinescope".into(), label.into(), label.into(), kind, vec![encoding]);
        let track = Arc::new(TrackLocalStaticSample::new(Instant::now(), stream).map_err(rtc_error)?);
        let sender = pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await.map_err(rtc_error)?;
        Ok(SampleTrack { track, sender, ssrc, payload_type: 0 })
    }

    /// Takes the payload type the completed exchange gave the codec; `false` when the
    /// peer kept none (it will not receive this track).
    pub async fn negotiated(&mut self) -> Result<bool, PeerError> {
        let params = self.sender.get_parameters().await.map_err(rtc_error)?;
        match params.rtp_parameters.codecs.first() {
            Some(c) => {
                self.payload_type = c.payload_type;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub async fn write(&self, sample: &Sample) -> Result<(), PeerError> {
        self.track.sample_writer(self.ssrc, self.payload_type).write_sample(sample).await.map_err(rtc_error)
    }
}

/// Samples of a live source, timed by arrival: each one's duration is the time since the
/// one before (the RTP clock advances as the source's frames came), the first one's
/// `first`.
pub struct ArrivalPacer {
    last: Option<Instant>,
    first: Duration,
}

impl ArrivalPacer {
    pub fn new(first: Duration) -> Self {
        ArrivalPacer { last: None, first }
    }

    pub fn sample(&mut self, data: Bytes) -> Sample {
        let now = Instant::now();
        let duration = self.last.map_or(self.first, |t| now.duration_since(t).max(Duration::from_millis(1)));
        self.last = Some(now);
        Sample { data, duration, ..Sample::new(now) }
    }
}

/// Whether a connection state means the peer is gone.
pub fn is_gone(state: &RTCPeerConnectionState) -> bool {
    matches!(
        state,
        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed | RTCPeerConnectionState::Disconnected
    )
}

/// Peer connections by session id (WHIP publishers, WHEP viewers): each with its stop
/// switch and what its owner keeps beside (`T`). Ending one (`remove`) closes its
/// connection and tells its task to stop.
pub struct Sessions<T> {
    table: Arc<std::sync::Mutex<Table<T>>>,
}

struct Table<T> {
    live: std::collections::HashMap<String, Session<T>>,
    /// Places taken by sessions still being set up (between the cap's check and their
    /// insertion, across awaits): they count against the cap.
    reserved: usize,
}

/// A place in [`Sessions`] held for a session being set up; given back if dropped
/// before [`Reservation::fill`].
pub struct Reservation<T> {
    sessions: Sessions<T>,
    filled: bool,
}

impl<T> Reservation<T> {
    /// The session takes its place.
    pub fn fill(mut self, id: String, session: Session<T>) {
        let mut t = self.sessions.lock();
        t.reserved -= 1;
        t.live.insert(id, session);
        self.filled = true;
    }
}

impl<T> Drop for Reservation<T> {
    fn drop(&mut self) {
        if !self.filled {
            self.sessions.lock().reserved -= 1;
        }
    }
}

/// One entry of [`Sessions`].
pub struct Session<T> {
    pub pc: Arc<dyn PeerConnection>,
    pub stop: watch::Sender<bool>,
    pub extra: T,
}

impl<T> Clone for Sessions<T> {
    fn clone(&self) -> Self {
        Sessions { table: self.table.clone() }
    }
}

impl<T> Default for Sessions<T> {
    fn default() -> Self {
        Sessions { table: Arc::new(std::sync::Mutex::new(Table { live: Default::default(), reserved: 0 })) }
    }
}

impl<T> Sessions<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table<T>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions live and being set up.
    pub fn count(&self) -> usize {
        let t = self.lock();
        t.live.len() + t.reserved
    }

    /// A place for a new session, if fewer than `max` are live or being set up: checked
    /// and taken in one step, so concurrent offers cannot all pass the check.
    pub fn reserve(&self, max: usize) -> Option<Reservation<T>> {
        let mut t = self.lock();
        if t.live.len() + t.reserved >= max {
            return None;
        }
        t.reserved += 1;
        Some(Reservation { sessions: self.clone(), filled: false })
    }

    /// Tells the session's task to stop; whether there was such a session.
    pub fn stop(&self, id: &str) -> bool {
        self.lock().live.get(id).map(|s| s.stop.send(true)).is_some()
    }

    /// Tells every session whose `extra` matches to stop.
    pub fn stop_where(&self, matches: impl Fn(&T) -> bool) {
        for s in self.lock().live.values().filter(|s| matches(&s.extra)) {
            let _ = s.stop.send(true);
        }
    }

    /// Ends a session: out of the table, told to stop, its connection closed; whether
    /// there was such a session.
    pub async fn remove(&self, id: &str) -> bool {
        let Some(s) = self.lock().live.remove(id) else { return false };
        let _ = s.stop.send(true);
        let _ = s.pc.close().await;
        true
    }
}

/// Resolves once `stop` is set (or its sender dropped) or the peer is gone: the end of a
/// session's media loop.
pub async fn ended(stop: &mut watch::Receiver<bool>, state: &mut watch::Receiver<RTCPeerConnectionState>) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = state.wait_for(is_gone) => {}
    }
}

/// A random SSRC for a track the server sends.
pub fn random_ssrc() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_are_advertised_beside_each_udp_host_candidate() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
            a=candidate:123 1 udp 2130706431 10.0.0.5 50001 typ host\r\n\
            a=candidate:124 1 tcp 2130706431 10.0.0.5 50002 typ host tcptype passive\r\n\
            a=end-of-candidates\r\n";
        let out = with_public_candidates(sdp, &[IpAddr::from([203, 0, 113, 7])]);
        let added: Vec<&str> = out.lines().filter(|l| l.contains("srflx")).collect();
        assert_eq!(
            added,
            ["a=candidate:123nat0 1 udp 1694498815 203.0.113.7 50001 typ srflx raddr 10.0.0.5 rport 50001"]
        );
        assert!(out.starts_with("v=0\r\nm=video") && out.ends_with("a=end-of-candidates\r\n"));
        assert_eq!(with_public_candidates(sdp, &[]), sdp);
    }

    #[test]
    fn reservations_count_against_the_cap_until_filled_or_dropped() {
        let sessions: Sessions<()> = Sessions::default();
        let a = sessions.reserve(2).unwrap();
        let b = sessions.reserve(2).unwrap();
        assert!(sessions.reserve(2).is_none(), "two places are taken while set up");
        drop(a);
        assert_eq!(sessions.count(), 1);
        let c = sessions.reserve(2).unwrap();
        drop((b, c));
        assert_eq!(sessions.count(), 0);
    }

    #[test]
    fn remote_candidates_are_screened() {
        let any = Network::default();
        assert!(any.admits_candidate_address("192.0.2.7") && any.admits_candidate_address("::1"));
        assert!(!any.admits_candidate_address("abcd.local") && !any.admits_candidate_address("224.0.0.1"));
        assert!(!any.admits_candidate_address("0.0.0.0"));
        let lan = Network { peer_networks: vec!["10.0.0.0/8".parse().unwrap()], ..Network::default() };
        assert!(lan.admits_candidate_address("10.9.8.7") && !lan.admits_candidate_address("192.0.2.7"));
        let mut screen = CandidateScreen::new(&any);
        let c = |a: &str| RTCIceCandidateInit {
            candidate: format!("candidate:1 1 udp 2130706431 {a} 5000 typ host"),
            ..Default::default()
        };
        let taken = (0..40).filter(|i| screen.candidate(&c(&format!("192.0.2.{i}")))).count();
        assert_eq!(taken, MAX_REMOTE_CANDIDATES);
        assert!(screen.candidate(&RTCIceCandidateInit::default()), "end of candidates passes");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("50000-50099"), Some((50000, 50099)));
        assert_eq!(parse_port_range(" 7 - 7 "), Some((7, 7)));
        assert_eq!(parse_port_range("9-8"), None);
        assert_eq!(parse_port_range("0-10"), None);
        assert_eq!(parse_port_range("10"), None);
        assert_eq!(parse_port_range("a-b"), None);
    }

    #[test]
    fn a_range_gives_free_ports_inside_it_and_says_when_none_is() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let full = Network { udp_ports: Some((port, port)), ..Network::default() };
        assert!(matches!(full.udp_addr(), Err(PeerError::NoPort { .. })));
        drop(taken);
        let addr: std::net::SocketAddr = full.udp_addr().unwrap().parse().unwrap();
        assert_eq!(addr.port(), port);
        assert_eq!(Network::default().udp_addr().unwrap(), "127.0.0.1:0");
    }
}
