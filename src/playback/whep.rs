//! WHEP viewers (RFC 9725's egress twin, draft-ietf-wish-whep): a browser posts an SDP
//! offer for a stream and gets an answer; a WebRTC peer connection (the `webrtc` crate)
//! then carries the stream's H.264 video, passed through, from its newest keyframe on.
//!
//! The media comes from the stream's live bus when a live source feeds it (an RTSP
//! publisher or a pulled camera puts each video frame there as it muxes it): frames are
//! sent as they arrive, from the next keyframe, so a viewer is a frame or two behind the
//! camera. Streams fed by PutMedia have no bus; for them the newest stored fragment (a
//! whole GOP, from its keyframe) and every later one are sent, each sample at its own
//! pace, about one GOP behind. Audio
//! (AAC) is not carried: WebRTC has no AAC, and nothing is transcoded. B-frames are sent
//! in decode order as stored (WebRTC decoders expect streams without them).
//!
//! ICE: host candidates on the configured address (non-trickle: the answer carries them);
//! sessions end when the peer disconnects, when DELETE asks, or if not connected within
//! [`CONNECT_TIMEOUT`]; at most [`WhepConfig::max_sessions`] at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::interceptor::Registry;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_H264};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

use crate::codec::{nal, CodecKind, CodecParams};
use crate::video_store::{LiveFrame, StoreError, StreamId, VideoStore};
use crate::wire::fmp4::{parse_init, InitInfo, TrackKind};
use crate::wire::mp4_tracks::fragment_samples;

/// A viewer that has not connected by then is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest SDP offer taken.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
const H264_PAYLOAD_TYPE: u8 = 102;
/// How long a new viewer waits for a keyframe on the live bus before it takes the
/// stored fragments instead (a GOP or two of a live source).
const LIVE_BUS_WAIT: Duration = Duration::from_millis(2500);

#[derive(Debug, Clone)]
pub struct WhepConfig {
    /// The address the peer connections' UDP sockets bind (their host candidates).
    pub bind_ip: IpAddr,
    pub max_sessions: usize,
}

impl Default for WhepConfig {
    fn default() -> Self {
        WhepConfig { bind_ip: IpAddr::from([127, 0, 0, 1]), max_sessions: 64 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    #[error("the offer is not usable: {0}")]
    BadOffer(String),
    #[error("{0} viewers are watching already; try later")]
    TooMany(usize),
    #[error("the stream has no H.264 video to send")]
    NoVideo,
    #[error("no such WHEP session")]
    NoSession,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("WebRTC: {0}")]
    WebRtc(String),
}

fn rtc_error(e: impl std::fmt::Display) -> WhepError {
    WhepError::WebRtc(e.to_string())
}

struct Session {
    pc: Arc<dyn PeerConnection>,
    stop: watch::Sender<bool>,
}

/// The WHEP sessions of one server.
#[derive(Clone)]
pub struct WhepSessions {
    store: VideoStore,
    config: WhepConfig,
    metrics: Arc<crate::metrics::Metrics>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

/// Tells a session's feeder when the peer is gone or connected.
struct Events {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
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
}

impl WhepSessions {
    pub fn new(store: VideoStore, config: WhepConfig, metrics: Arc<crate::metrics::Metrics>) -> Self {
        WhepSessions { store, config, metrics, sessions: Arc::new(Mutex::new(HashMap::new())) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Answers `offer` for `stream`: the session id and the answer SDP.
    pub async fn open(&self, stream: StreamId, offer: String) -> Result<(String, String), WhepError> {
        if self.count() >= self.config.max_sessions {
            return Err(WhepError::TooMany(self.config.max_sessions));
        }
        // Only what can be sent: the stream's newest init must have H.264 video.
        let (params, _) = newest_video(&self.store, stream)?.ok_or(WhepError::NoVideo)?;
        if !matches!(params, CodecParams::H264(_)) {
            return Err(WhepError::NoVideo);
        }
        let offer = RTCSessionDescription::offer(offer).map_err(|e| WhepError::BadOffer(e.to_string()))?;

        let codec = RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(),
            rtcp_feedback: vec![],
        };
        let mut media_engine = MediaEngine::default();
        media_engine
            .register_codec(
                RTCRtpCodecParameters { rtp_codec: codec.clone(), payload_type: H264_PAYLOAD_TYPE },
                RtpCodecKind::Video,
            )
            .map_err(rtc_error)?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine).map_err(rtc_error)?;
        let (gathered, mut gathered_rx) = watch::channel(false);
        let (state, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let runtime = webrtc::runtime::default_runtime().ok_or_else(|| rtc_error("no WebRTC runtime"))?;
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Events { gathered, state }))
            .with_runtime(runtime)
            .with_udp_addrs(vec![format!("{}:0", self.config.bind_ip)])
            .build()
            .await
            .map_err(rtc_error)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let ssrc = rand_ssrc();
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "kinescope".to_string(),
                    "video".to_string(),
                    "video".to_string(),
                    RtpCodecKind::Video,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                        codec,
                        ..Default::default()
                    }],
                ),
            )
            .map_err(rtc_error)?,
        );
        let sender = pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await.map_err(rtc_error)?;
        pc.set_remote_description(offer).await.map_err(|e| WhepError::BadOffer(e.to_string()))?;
        let answer = pc.create_answer(None).await.map_err(|e| WhepError::BadOffer(e.to_string()))?;
        pc.set_local_description(answer).await.map_err(rtc_error)?;
        // Non-trickle: the answer carries every candidate (host candidates gather at once).
        let _ = tokio::time::timeout(Duration::from_secs(5), gathered_rx.wait_for(|g| *g)).await;
        let answer = pc.local_description().await.ok_or_else(|| rtc_error("no local description"))?.sdp;
        let payload_type = sender
            .get_parameters()
            .await
            .map_err(rtc_error)?
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
            .ok_or_else(|| WhepError::BadOffer("the offer accepts no H.264".into()))?;

        let id = uuid::Uuid::new_v4().simple().to_string();
        let (stop, stop_rx) = watch::channel(false);
        self.lock().insert(id.clone(), Session { pc: pc.clone(), stop });
        self.metrics.webrtc_peers.inc();
        let this = self.clone();
        let session_id = id.clone();
        tokio::spawn(async move {
            let fed = feed(&this.store, &this.metrics, stream, &track, ssrc, payload_type, state_rx, stop_rx).await;
            if let Err(e) = fed {
                tracing::debug!(session = %session_id, error = %e, "WHEP session ended");
            }
            this.remove(&session_id).await;
        });
        Ok((id, answer))
    }

    /// Ends a session (DELETE on its resource).
    pub async fn close(&self, id: &str) -> Result<(), WhepError> {
        let session = self.lock().remove(id).ok_or(WhepError::NoSession)?;
        self.metrics.webrtc_peers.dec();
        let _ = session.stop.send(true);
        let _ = session.pc.close().await;
        Ok(())
    }

    async fn remove(&self, id: &str) {
        let session = self.lock().remove(id);
        if let Some(s) = session {
            self.metrics.webrtc_peers.dec();
            let _ = s.pc.close().await;
        }
    }
}

fn rand_ssrc() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The video parameters of the stream's newest init segment, and that init's id.
fn newest_video(store: &VideoStore, stream: StreamId) -> Result<Option<(CodecParams, u32)>, StoreError> {
    let Some(last) = store.last_fragment(stream)? else { return Ok(None) };
    let Some(init) = store.init_segment(stream, last.init_id)? else { return Ok(None) };
    let Ok(info) = parse_init(&init) else { return Ok(None) };
    Ok(info
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .and_then(CodecParams::from_track)
        .map(|p| (p, last.init_id)))
}

/// Sends the stream's video from its newest fragment on, each sample at its pace, until
/// the peer goes, the session is closed or the stream is deleted.
#[allow(clippy::too_many_arguments)]
async fn feed(
    store: &VideoStore,
    metrics: &crate::metrics::Metrics,
    stream: StreamId,
    track: &TrackLocalStaticSample,
    ssrc: u32,
    payload_type: u8,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WhepError> {
    // Wait for the peer.
    let wanted = |s: &RTCPeerConnectionState| {
        matches!(s, RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)
    };
    let connected = match tokio::time::timeout(CONNECT_TIMEOUT, state.wait_for(wanted)).await {
        Ok(Ok(s)) => *s == RTCPeerConnectionState::Connected,
        _ => false,
    };
    if !connected {
        return Err(rtc_error("the peer did not connect"));
    }
    let live = store.live(stream)?;
    // A live source (RTSP, a pulled camera) puts its frames on the stream's bus: send
    // them as they come. Otherwise (PutMedia producers), the stored fragments.
    let mut bus = live.subscribe_frames();
    if let Some(first) = next_keyframe(&mut bus, LIVE_BUS_WAIT).await {
        metrics.count_viewer("live_bus");
        return feed_live(track, ssrc, payload_type, bus, first, state, stop).await;
    }
    drop(bus);
    metrics.count_viewer("fragments");
    let mut edge = live.subscribe();
    let mut next = match store.last_fragment(stream)? {
        Some(m) => m.fragment_number,
        None => return Err(WhepError::NoVideo),
    };
    let mut deadline = tokio::time::Instant::now();
    let mut inits: HashMap<u32, VideoInit> = HashMap::new();
    loop {
        let gone = |s: &RTCPeerConnectionState| {
            matches!(
                s,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed | RTCPeerConnectionState::Disconnected
            )
        };
        if *stop.borrow() || gone(&state.borrow()) {
            return Ok(());
        }
        let Some(meta) = store.fragment(stream, next)? else {
            // Not stored yet: wait for the live edge (or retention took it: jump ahead).
            if edge.borrow().deleted {
                return Ok(());
            }
            if let Some(last) = store.last_fragment(stream)? {
                if last.fragment_number > next {
                    next = last.fragment_number;
                    continue;
                }
            }
            tokio::select! {
                r = edge.changed() => if r.is_err() { return Ok(()) },
                _ = stop.changed() => {}
                _ = state.changed() => {}
            }
            continue;
        };
        // Fallen more than two fragments behind: skip to the newest keyframe.
        if let Some(last) = store.last_fragment(stream)? {
            if last.fragment_number > next + 2 {
                next = last.fragment_number;
                deadline = tokio::time::Instant::now();
                continue;
            }
        }
        if let std::collections::hash_map::Entry::Vacant(v) = inits.entry(meta.init_id) {
            let init = store.init_segment(stream, meta.init_id)?.unwrap_or_default();
            v.insert(VideoInit::parse(&init)?);
        }
        let VideoInit { info, track_id, timescale, sets } = &inits[&meta.init_id];
        let bytes = store.read_fragment(stream, &meta).await?;
        let samples = fragment_samples(&bytes, info).map_err(|e| rtc_error(e.to_string()))?;
        let video = samples.into_iter().find(|t| t.track_id == *track_id).map(|t| t.samples).unwrap_or_default();
        for s in &video {
            let Some(range) = s.range(bytes.len()) else { continue };
            let leading: &[Vec<u8>] = if s.is_sync() { sets } else { &[] };
            let duration = Duration::from_micros(u64::from(s.duration) * 1_000_000 / u64::from(*timescale));
            let sample = Sample {
                data: Bytes::from(nal::to_annex_b(leading, &bytes[range])),
                duration,
                ..Sample::new(Instant::now())
            };
            track.sample_writer(ssrc, payload_type).write_sample(&sample).await.map_err(rtc_error)?;
            deadline += duration;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
        // Samples written late (a slow start) are not made up for by bursting later.
        let now = tokio::time::Instant::now();
        if deadline < now {
            deadline = now;
        }
        next += 1;
    }
}

/// An init segment as the fragment feeder needs it, parsed once per init.
struct VideoInit {
    info: InitInfo,
    track_id: u32,
    timescale: u32,
    /// The video track's parameter sets, sent before each keyframe.
    sets: Vec<Vec<u8>>,
}

impl VideoInit {
    fn parse(init: &[u8]) -> Result<Self, WhepError> {
        let info = parse_init(init).map_err(|e| rtc_error(e.to_string()))?;
        let t = info.tracks.iter().find(|t| t.kind == TrackKind::Video).ok_or(WhepError::NoVideo)?;
        let sets = CodecParams::from_track(t).map(|p| p.parameter_sets()).unwrap_or_default();
        let (track_id, timescale) = (t.track_id, t.timescale.max(1));
        Ok(VideoInit { info, track_id, timescale, sets })
    }
}

/// The next H.264 keyframe on the live bus, if one comes within `wait`.
async fn next_keyframe(
    bus: &mut tokio::sync::broadcast::Receiver<Arc<LiveFrame>>,
    wait: Duration,
) -> Option<Arc<LiveFrame>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, bus.recv()).await {
            Ok(Ok(f)) if f.keyframe && f.codec == CodecKind::H264 => return Some(f),
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => return None,
        }
    }
}

/// Sends the live bus's frames as they arrive, from `first` (a keyframe). A viewer that
/// falls behind (lags) waits for the next keyframe.
async fn feed_live(
    track: &TrackLocalStaticSample,
    ssrc: u32,
    payload_type: u8,
    mut bus: tokio::sync::broadcast::Receiver<Arc<LiveFrame>>,
    first: Arc<LiveFrame>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WhepError> {
    let mut frame = first;
    let mut last_sent: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // The RTP clock advances by the time since the previous frame.
        let duration =
            last_sent.map_or(Duration::from_millis(40), |t| now.duration_since(t).max(Duration::from_millis(1)));
        last_sent = Some(now);
        let sample = Sample {
            data: Bytes::from(nal::to_annex_b(&frame.parameter_sets, &frame.data)),
            duration,
            ..Sample::new(now)
        };
        track.sample_writer(ssrc, payload_type).write_sample(&sample).await.map_err(rtc_error)?;
        frame = loop {
            tokio::select! {
                got = bus.recv() => match got {
                    Ok(f) if f.codec == CodecKind::H264 => break f,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        match next_keyframe(&mut bus, Duration::from_secs(10)).await {
                            Some(k) => break k,
                            None => return Ok(()),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = stop.changed() => return Ok(()),
                _ = state.changed() => {
                    let s = *state.borrow();
                    if matches!(s, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                        | RTCPeerConnectionState::Disconnected) {
                        return Ok(());
                    }
                }
            }
        };
    }
}
