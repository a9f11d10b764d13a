//! A WebRTC peer connection as the server builds them for WHEP viewers and WHIP
//! publishers (the `webrtc` crate): the codecs it may use, host candidates on one
//! address, the answer to an offer with every candidate in it (non-trickle), and its
//! events as watch channels — gathering, connection state, and the remote tracks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

pub use webrtc::peer_connection::RTCPeerConnectionState as PeerState;

/// The payload types the server offers and answers with.
pub const H264_PAYLOAD_TYPE: u8 = 102;
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
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
}

fn rtc_error(e: impl std::fmt::Display) -> PeerError {
    PeerError::WebRtc(e.to_string())
}

/// H.264, constrained baseline, packetization mode 1: what browsers send and decode
/// without B-frames.
pub fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Opus, 48 kHz stereo (RFC 7587).
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
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

/// A peer connection and its events.
pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    /// Tracks the remote peer sends, as they open.
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
    gathered: watch::Receiver<bool>,
}

impl Peer {
    /// A peer connection whose UDP sockets bind `bind_ip` and that may use `codecs`.
    pub async fn build(bind_ip: IpAddr, codecs: &[(RTCRtpCodec, u8, RtpCodecKind)]) -> Result<Peer, PeerError> {
        let mut media_engine = MediaEngine::default();
        for (codec, payload_type, kind) in codecs {
            media_engine
                .register_codec(RTCRtpCodecParameters { rtp_codec: codec.clone(), payload_type: *payload_type }, *kind)
                .map_err(rtc_error)?;
        }
        let registry = register_default_interceptors(Registry::new(), &mut media_engine).map_err(rtc_error)?;
        let (gathered, gathered_rx) = watch::channel(false);
        let (state, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (tracks, tracks_rx) = mpsc::channel(MAX_REMOTE_TRACKS);
        let runtime = webrtc::runtime::default_runtime().ok_or_else(|| rtc_error("no WebRTC runtime"))?;
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Events { gathered, state, tracks }))
            .with_runtime(runtime)
            .with_udp_addrs(vec![format!("{bind_ip}:0")])
            .build()
            .await
            .map_err(rtc_error)?;
        Ok(Peer { pc: Arc::new(pc), state: state_rx, tracks: tracks_rx, gathered: gathered_rx })
    }

    /// Applies `offer` and returns the answer with every host candidate in it.
    pub async fn answer(&mut self, offer: String) -> Result<String, PeerError> {
        let offer = RTCSessionDescription::offer(offer).map_err(|e| PeerError::BadOffer(e.to_string()))?;
        self.pc.set_remote_description(offer).await.map_err(|e| PeerError::BadOffer(e.to_string()))?;
        let answer = self.pc.create_answer(None).await.map_err(|e| PeerError::BadOffer(e.to_string()))?;
        self.pc.set_local_description(answer).await.map_err(rtc_error)?;
        // Non-trickle: host candidates gather at once.
        let _ = tokio::time::timeout(GATHER_TIMEOUT, self.gathered.wait_for(|g| *g)).await;
        Ok(self.pc.local_description().await.ok_or_else(|| rtc_error("no local description"))?.sdp)
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

/// Whether a connection state means the peer is gone.
pub fn is_gone(state: &RTCPeerConnectionState) -> bool {
    matches!(
        state,
        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed | RTCPeerConnectionState::Disconnected
    )
}

/// A random SSRC for a track the server sends.
pub fn random_ssrc() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
