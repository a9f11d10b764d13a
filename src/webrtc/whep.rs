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
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use tokio::sync::watch;

use super::peer::{self, ArrivalPacer, Network, Peer, PeerError, SampleTrack, Session, Sessions};
use crate::codec::{CodecKind, CodecParams};
use crate::video_store::{LiveFrame, StoreError, StreamId, VideoStore};
use crate::wire::fmp4::{parse_init, InitInfo, TrackKind};
use crate::wire::mp4_tracks::fragment_samples;
use crate::wire::sdp;

/// A viewer that has not connected by then is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest SDP offer taken.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// How long a new viewer waits for a keyframe on the live bus before it takes the
/// stored fragments instead (a GOP or two of a live source).
const LIVE_BUS_WAIT: Duration = Duration::from_millis(2500);

#[derive(Debug, Clone)]
pub struct WhepConfig {
    /// Where the peer connections listen and what they advertise.
    pub network: Network,
    pub max_sessions: usize,
}

impl Default for WhepConfig {
    fn default() -> Self {
        WhepConfig { network: Network::default(), max_sessions: 64 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    #[error("the offer is not usable: {0}")]
    BadOffer(String),
    #[error("{0} viewers are watching already; try later")]
    TooMany(usize),
    #[error("the stream has no video WebRTC carries (H.264) to send")]
    NoVideo,
    #[error("no such WHEP session")]
    NoSession,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Peer(#[from] PeerError),
}

fn rtc_error(e: impl std::fmt::Display) -> WhepError {
    WhepError::Peer(PeerError::WebRtc(e.to_string()))
}

/// The WHEP sessions of one server.
#[derive(Clone)]
pub struct WhepSessions {
    store: VideoStore,
    config: WhepConfig,
    metrics: Arc<crate::metrics::Metrics>,
    sessions: Sessions<()>,
}

impl WhepSessions {
    pub fn new(store: VideoStore, config: WhepConfig, metrics: Arc<crate::metrics::Metrics>) -> Self {
        WhepSessions { store, config, metrics, sessions: Sessions::default() }
    }

    pub fn count(&self) -> usize {
        self.sessions.count()
    }

    /// Answers `offer` for `stream`: the session id and the answer SDP.
    pub async fn open(&self, stream: StreamId, offer: String) -> Result<(String, String), WhepError> {
        // Taken before the first await (see WhipSessions::open); a refused offer gives
        // the place back, and its peer is closed when dropped.
        let place =
            self.sessions.reserve(self.config.max_sessions).ok_or(WhepError::TooMany(self.config.max_sessions))?;
        // Only what can be sent: the stream's newest init must have H.264 video.
        let info = newest_init(&self.store, stream)?.ok_or(WhepError::NoVideo)?;
        // The stream's video must be in the codec WebRTC carries video in (no transcoding).
        let video_codec = info
            .tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .and_then(CodecParams::from_track)
            .map(|p| p.kind())
            .filter(|k| Some(*k) == CodecKind::webrtc_for("video"))
            .ok_or(WhepError::NoVideo)?;
        // Its audio passes through too, when it is in the WebRTC audio codec and the
        // viewer asks for audio.
        let audio_codec = CodecKind::webrtc_for("audio").filter(|a| {
            let stored = info.tracks.iter().any(|t| CodecKind::from_sample_entry(t.sample_entry) == Some(*a));
            stored && a.webrtc().is_some_and(|c| sdp::offers(&offer, "audio", &c.rtpmap()).next().is_some())
        });
        let codecs: Vec<CodecKind> = std::iter::once(video_codec).chain(audio_codec).collect();
        let mut peer = Peer::build(&self.config.network, &codecs).await.map_err(WhepError::from)?;
        let pc = peer.pc.clone();
        let mut video = SampleTrack::add(&pc, video_codec).await?;
        let audio = match audio_codec {
            Some(a) => Some(SampleTrack::add(&pc, a).await?),
            None => None,
        };
        let answer = peer.answer(offer).await?;
        if !video.negotiated().await? {
            return Err(WhepError::BadOffer(format!("the offer accepts no {}", video_codec.label())));
        }
        let mut out = Outputs { video, audio: None };
        if let Some(mut a) = audio {
            if a.negotiated().await? {
                out.audio = Some(a);
            }
        }

        let id = uuid::Uuid::new_v4().simple().to_string();
        let (stop, stop_rx) = watch::channel(false);
        place.fill(id.clone(), Session { pc: pc.clone(), stop, extra: () });
        self.metrics.webrtc_peers.inc();
        let this = self.clone();
        let session_id = id.clone();
        tokio::spawn(async move {
            let fed = feed(&this.store, &this.metrics, stream, &out, peer, stop_rx).await;
            if let Err(e) = fed {
                tracing::debug!(session = %session_id, error = %e, "WHEP session ended");
            }
            this.remove(&session_id).await;
        });
        Ok((id, answer))
    }

    /// Ends a session (DELETE on its resource).
    pub async fn close(&self, id: &str) -> Result<(), WhepError> {
        if !self.remove(id).await {
            return Err(WhepError::NoSession);
        }
        Ok(())
    }

    /// Ends a session if it is still there; whether it was.
    async fn remove(&self, id: &str) -> bool {
        let removed = self.sessions.remove(id).await;
        if removed {
            self.metrics.webrtc_peers.dec();
        }
        removed
    }
}

/// What a viewer is sent on: H.264 video, and Opus audio when the stream has it.
struct Outputs {
    video: SampleTrack,
    audio: Option<SampleTrack>,
}

/// The stream's newest init segment, parsed (`None`: no fragment yet, or an init that
/// does not parse).
fn newest_init(store: &VideoStore, stream: StreamId) -> Result<Option<InitInfo>, StoreError> {
    let Some(last) = store.last_fragment(stream)? else { return Ok(None) };
    let Some(init) = store.init_segment(stream, last.init_id)? else { return Ok(None) };
    Ok(parse_init(&init).ok())
}

/// Sends the stream's video from its newest fragment on, each sample at its pace, until
/// the peer goes, the session is closed or the stream is deleted.
async fn feed(
    store: &VideoStore,
    metrics: &crate::metrics::Metrics,
    stream: StreamId,
    out: &Outputs,
    mut peer: Peer,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WhepError> {
    let connected = peer.connected(CONNECT_TIMEOUT).await;
    metrics.count_peer("whep", connected);
    if !connected {
        return Err(rtc_error("the peer did not connect"));
    }
    let mut state = peer.state.clone();
    let live = store.live(stream)?;
    // A live source (RTSP, a pulled camera) puts its frames on the stream's bus: send
    // them as they come. Otherwise (PutMedia producers), the stored fragments.
    let mut bus = live.subscribe_frames();
    if let Some(first) = next_keyframe(&mut bus, LIVE_BUS_WAIT).await {
        metrics.count_viewer("live_bus");
        return feed_live(metrics, out, bus, first, state, stop).await;
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
        if *stop.borrow() || peer::is_gone(&state.borrow()) {
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
        let VideoInit { info, track_id, timescale, codec, sets } = &inits[&meta.init_id];
        let bytes = store.read_fragment(stream, &meta).await?;
        let samples = fragment_samples(&bytes, info).map_err(|e| rtc_error(e.to_string()))?;
        let video = samples.into_iter().find(|t| t.track_id == *track_id).map(|t| t.samples).unwrap_or_default();
        for s in &video {
            let Some(range) = s.range(bytes.len()) else { continue };
            let leading: &[Vec<u8>] = if s.is_sync() { sets } else { &[] };
            let duration = Duration::from_micros(u64::from(s.duration) * 1_000_000 / u64::from(*timescale));
            let sample = Sample {
                data: Bytes::from(codec.elementary_sample(leading, &bytes[range])),
                duration,
                ..Sample::new(Instant::now())
            };
            out.video.write(&sample).await?;
            metrics.webrtc_frames_out.inc();
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
    codec: CodecKind,
    /// The video track's parameter sets, sent before each keyframe.
    sets: Vec<Vec<u8>>,
}

impl VideoInit {
    fn parse(init: &[u8]) -> Result<Self, WhepError> {
        let info = parse_init(init).map_err(|e| rtc_error(e.to_string()))?;
        let t = info.tracks.iter().find(|t| t.kind == TrackKind::Video).ok_or(WhepError::NoVideo)?;
        let params = CodecParams::from_track(t).ok_or(WhepError::NoVideo)?;
        let (track_id, timescale) = (t.track_id, t.timescale.max(1));
        Ok(VideoInit { info, track_id, timescale, codec: params.kind(), sets: params.parameter_sets() })
    }
}

/// Whether WebRTC carries this frame's codec as video (or as audio).
fn carried(f: &LiveFrame, video: bool) -> bool {
    f.codec.is_video() == video && f.codec.webrtc().is_some()
}

/// The next video keyframe on the live bus, if one comes within `wait`.
async fn next_keyframe(
    bus: &mut tokio::sync::broadcast::Receiver<Arc<LiveFrame>>,
    wait: Duration,
) -> Option<Arc<LiveFrame>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, bus.recv()).await {
            Ok(Ok(f)) if f.keyframe && carried(&f, true) => return Some(f),
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => return None,
        }
    }
}

/// Sends the live bus's frames as they arrive, from `first` (a keyframe). A viewer that
/// falls behind (lags) waits for the next keyframe.
async fn feed_live(
    metrics: &crate::metrics::Metrics,
    out: &Outputs,
    mut bus: tokio::sync::broadcast::Receiver<Arc<LiveFrame>>,
    first: Arc<LiveFrame>,
    mut state: watch::Receiver<peer::PeerState>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WhepError> {
    let mut frame = first;
    let mut pacer = ArrivalPacer::new(Duration::from_millis(40));
    loop {
        let sample = pacer.sample(frame.annex_b());
        out.video.write(&sample).await?;
        metrics.webrtc_frames_out.inc();
        frame = loop {
            tokio::select! {
                got = bus.recv() => match got {
                    Ok(f) if carried(&f, true) => break f,
                    Ok(f) if carried(&f, false) => {
                        if let Some(audio) = &out.audio {
                            let us = f.codec.packet_duration_us(&f.data).unwrap_or(20_000);
                            let sample = Sample {
                                data: f.data.clone(),
                                duration: Duration::from_micros(u64::from(us)),
                                ..Sample::new(Instant::now())
                            };
                            audio.write(&sample).await?;
                        }
                        continue;
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        match next_keyframe(&mut bus, Duration::from_secs(10)).await {
                            Some(k) => break k,
                            None => return Ok(()),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = peer::ended(&mut stop, &mut state) => return Ok(()),
            }
        };
    }
}
