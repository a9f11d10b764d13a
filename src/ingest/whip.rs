//! WHIP publishers (RFC 9725): a browser (or OBS, or GStreamer's `whipclientsink`) posts
//! an SDP offer that sends H.264 video and/or Opus audio to a stream; the server answers
//! and records what arrives into the stream like any live source. Each RTP packet the
//! peer connection (the `webrtc` crate, with its NACK and RTCP interceptors) delivers
//! goes through the same [`Publisher`] as RTSP's: the codec layer's depacketizers, the
//! track timeline, the chunked muxer, the store. So ListFragments, GetMedia, HLS (and
//! LL-HLS), DASH, GetClip and WHEP read a WHIP stream like any other.
//!
//! Browsers send a keyframe when a stream starts and then only when asked, so the
//! server asks (a Picture Loss Indication) every [`WhipConfig::keyframe_interval`]: that
//! is the stream's fragment (GOP) length. Opus is stored as Opus in ISO BMFF (`Opus`
//! sample entry, `dOps`), which Chromium and Firefox play from MSE; AWS's WebRTC
//! ingestion stores AAC instead.
//!
//! ICE: host candidates on the configured address (non-trickle); a session ends when the
//! peer disconnects, when DELETE asks, when a newer publisher of the same stream
//! arrives, or if it has not connected within [`CONNECT_TIMEOUT`]; at most
//! [`WhipConfig::max_sessions`] at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::shared::marshal::Marshal;
use tokio::sync::{mpsc, watch, Notify};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::publisher::{Publisher, TrackSpec};
use crate::clock::SharedClock;
use crate::codec::{AccessUnit, CodecKind, CodecParams};
use crate::metrics::Metrics;
use crate::video_store::{StoreError, StreamRecord, VideoStore};
use crate::webrtc_peer::{self, Network, Peer, PeerError, Session, Sessions};
use crate::wire::sdp;

/// A publisher that has not connected by then is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest SDP offer taken.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// RTP packets queued from the tracks to the publisher before the readers wait.
const PACKET_QUEUE: usize = 1024;
/// Track indexes in the publisher (and the stored init segment): video first.
const VIDEO: usize = 0;

#[derive(Debug, Clone)]
pub struct WhipConfig {
    /// Where the peer connections listen and what they advertise.
    pub network: Network,
    pub max_sessions: usize,
    /// How often a keyframe is asked for: the fragment length of a WHIP stream.
    pub keyframe_interval: Duration,
    /// Bytes one stored fragment may hold.
    pub max_fragment_bytes: usize,
}

impl Default for WhipConfig {
    fn default() -> Self {
        WhipConfig {
            network: Network::default(),
            max_sessions: 16,
            keyframe_interval: Duration::from_secs(2),
            max_fragment_bytes: crate::media::fmp4_mux::MAX_FRAGMENT_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    /// Every UDP port of the configured range is in use.
    #[error("{0}")]
    NoPort(String),
    #[error("the offer is not usable: {0}")]
    BadOffer(String),
    #[error("{0} publishers are connected already; try later")]
    TooMany(usize),
    #[error("no such WHIP session")]
    NoSession,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("WebRTC: {0}")]
    WebRtc(String),
}

impl From<PeerError> for WhipError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::BadOffer(m) => WhipError::BadOffer(m),
            PeerError::WebRtc(m) => WhipError::WebRtc(m),
            e @ PeerError::NoPort { .. } => WhipError::NoPort(e.to_string()),
        }
    }
}

/// A stream-scoped publishing token: what a WHIP client without SigV4 (OBS) sends as
/// `Authorization: Bearer …`. Signed with a random key kept in `data/whip.key`; bound to
/// the stream's id, so a stream deleted and created again under the same name does not
/// take the old tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishToken {
    #[serde(rename = "sc")]
    pub scope: crate::scope::Scope,
    #[serde(rename = "sn")]
    pub stream: String,
    #[serde(rename = "s")]
    pub stream_id: crate::video_store::StreamId,
    /// µs since the epoch.
    #[serde(rename = "x")]
    pub expires_us: i64,
    /// When it was minted, µs since the epoch (0 in tokens minted before this was
    /// recorded: any revocation takes those).
    #[serde(rename = "i", default)]
    pub issued_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the bearer token is malformed")]
    Malformed,
    #[error("the bearer token's signature does not match")]
    BadSignature,
    #[error("the bearer token expired")]
    Expired,
}

/// Mints and checks [`PublishToken`]s.
pub struct PublishTokens {
    signer: crate::secrets::TokenSigner,
}

impl PublishTokens {
    pub fn new(key: [u8; 32]) -> Self {
        PublishTokens { signer: crate::secrets::TokenSigner::new(key) }
    }

    /// The key in `data_dir/whip.key`, created (random, mode 0600) if missing.
    pub fn load_or_create(data_dir: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self::new(crate::secrets::load_or_create_key(&data_dir.join("whip.key"))?))
    }

    pub fn mint(&self, record: &StreamRecord, now_us: i64, expires_us: i64) -> String {
        let token = PublishToken {
            scope: record.scope.clone(),
            stream: record.name.clone(),
            stream_id: record.id,
            expires_us,
            issued_us: now_us,
        };
        self.sign(&token)
    }

    fn sign(&self, token: &PublishToken) -> String {
        self.signer.sign(&serde_json::to_vec(token).unwrap_or_default())
    }

    pub fn open(&self, token: &str, now_us: i64) -> Result<PublishToken, TokenRefusal> {
        let payload = self.signer.open(token).map_err(|e| match e {
            crate::secrets::TokenError::BadSignature => TokenRefusal::BadSignature,
            _ => TokenRefusal::Malformed,
        })?;
        let token: PublishToken = serde_json::from_slice(&payload).map_err(|_| TokenRefusal::Malformed)?;
        if token.expires_us < now_us {
            return Err(TokenRefusal::Expired);
        }
        Ok(token)
    }
}

/// What an offer sends, per media section, in the codecs WebRTC carries
/// ([`CodecKind::webrtc_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OfferedMedia {
    pub video: bool,
    pub audio: bool,
}

/// Reads which media an offer sends: a video section offering the WebRTC video codec,
/// an audio section offering the WebRTC audio codec, not marked `recvonly` or
/// `inactive`. Pure.
pub fn offered_media(offer: &str) -> OfferedMedia {
    let sends = |media: &str| {
        CodecKind::webrtc_for(media)
            .and_then(CodecKind::webrtc)
            .is_some_and(|c| sdp::offers(offer, media, &c.rtpmap()).any(sdp::Direction::sends))
    };
    OfferedMedia { video: sends("video"), audio: sends("audio") }
}

/// What WebRTC sessions carry, said for messages: "H.264 video nor Opus audio".
pub fn webrtc_media_names() -> String {
    let name = |media: &str| CodecKind::webrtc_for(media).map_or("no", CodecKind::label);
    format!("{} video nor {} audio", name("video"), name("audio"))
}

/// The codecs a peer connection needs and the publisher's tracks (video first) for what
/// a peer sends. Video parameters come with the keyframes (the parameter sets browsers
/// send in band); audio's from the negotiation.
pub fn tracks_for(media: OfferedMedia) -> (Vec<CodecKind>, Vec<TrackSpec>) {
    let mut codecs = Vec::new();
    let mut specs = Vec::new();
    for (name, sent) in [("video", media.video), ("audio", media.audio)] {
        let Some((kind, cap)) = CodecKind::webrtc_for(name).filter(|_| sent).and_then(|k| Some((k, k.webrtc()?)))
        else {
            continue;
        };
        codecs.push(kind);
        specs.push(TrackSpec {
            params: CodecParams::for_webrtc(kind, cap.channels),
            kind,
            fmtp: cap.fmtp_map(),
            clock_rate: cap.clock_rate,
        });
    }
    (codecs, specs)
}

/// Where a mixed peer's Opus payloads go.
pub type VoiceSink = Box<dyn FnMut(&[u8]) + Send>;

/// What a peer's recording is: the stream, the tracks it sends, and the mix its audio
/// joins, if any.
pub struct Publication {
    pub stream: StreamRecord,
    pub specs: Vec<TrackSpec>,
    pub media: OfferedMedia,
    pub mix: Option<MixLink>,
    /// Asks the peer for a keyframe now (a viewer arrived), besides the periodic asks.
    pub keyframe_requests: Option<Arc<Notify>>,
}

/// A peer whose audio is mixed with others' (a multi-party storage session): its Opus
/// goes to the mix instead of the recording, and the recording's audio track is the mix.
pub struct MixLink {
    /// Takes each Opus payload the peer sends.
    pub voice: VoiceSink,
    /// The mix to record: 20 ms Opus packets, each at its time in 48 kHz units since
    /// the recording began (a packet the recorder could not take leaves a gap, not a
    /// shift).
    pub mixed: mpsc::Receiver<(i64, Vec<u8>)>,
}

/// Records a connected peer's tracks into a stream: what WHIP publishers and storage
/// sessions share.
#[derive(Clone)]
pub struct Recorder {
    pub store: VideoStore,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// How often a keyframe is asked for.
    pub keyframe_interval: Duration,
    pub max_fragment_bytes: usize,
}

impl Recorder {
    /// Waits for the peer to connect, then records its tracks until it goes, `stop`
    /// turns, or the stream is deleted; the last fragment is stored at the end.
    pub async fn record(
        &self,
        role: &'static str,
        publication: Publication,
        mut peer: Peer,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), WhipError> {
        let Publication { stream: record, specs, media, mut mix, keyframe_requests } = publication;
        let connected = tokio::select! {
            c = peer.connected(CONNECT_TIMEOUT) => c,
            _ = stop.changed() => return Ok(()),
        };
        self.metrics.count_peer(role, connected);
        if !connected {
            return Err(WhipError::WebRtc("the peer did not connect".into()));
        }
        tracing::info!(stream = %record.name, video = media.video, audio = media.audio, "WebRTC publisher connected");
        let mut publisher = Publisher::new(self.store.clone(), record, self.clock.clone(), self.metrics.clone(), specs)
            .with_max_fragment_bytes(self.max_fragment_bytes);
        let (packets, mut incoming) = mpsc::channel::<(usize, Bytes)>(PACKET_QUEUE);
        let mut sequences: HashMap<usize, u16> = HashMap::new();
        let audio_index = usize::from(media.video);
        let mut readers = Vec::new();
        let mut state = peer.state.clone();
        let result = loop {
            tokio::select! {
                got = incoming.recv() => {
                    let Some((track, packet)) = got else { break Ok(()) };
                    self.metrics.webrtc_rtp_in.inc();
                    let Some(lost) = lost_before(&mut sequences, track, &packet) else { continue };
                    if let Some(link) = mix.as_mut().filter(|_| media.audio && track == audio_index) {
                        if let Ok(p) = crate::wire::rtp::parse(&packet) {
                            (link.voice)(p.payload);
                        }
                        continue;
                    }
                    if let Err(e) = publisher.packet(track, &packet, lost).await {
                        break Err(WhipError::WebRtc(format!("recording: {e}")));
                    }
                }
                Some((elapsed, opus)) = next_mixed(&mut mix) => {
                    let unit = AccessUnit { rtp_ts: 0, data: opus, keyframe: true, parameter_sets: Vec::new() };
                    if let Err(e) = publisher.frame(audio_index, elapsed, 0, unit).await {
                        break Err(WhipError::WebRtc(format!("recording: {e}")));
                    }
                }
                track = peer.tracks.recv() => {
                    let Some(track) = track else { continue };
                    let index = match track.kind().await {
                        RtpCodecKind::Video if media.video => VIDEO,
                        RtpCodecKind::Audio if media.audio => audio_index,
                        _ => continue,
                    };
                    let asked = keyframe_requests.clone();
                    readers.push(tokio::spawn(read_track(track, index, packets.clone(), self.keyframe_interval, asked)));
                }
                _ = webrtc_peer::ended(&mut stop, &mut state) => break Ok(()),
            }
        };
        for r in readers {
            r.abort();
        }
        let stats = publisher.finish().await.map_err(|e| WhipError::WebRtc(format!("recording: {e}")))?;
        tracing::info!(fragments = stats.fragments, samples = stats.samples, "WebRTC recording finished");
        result
    }
}

/// The WHIP sessions of one server.
#[derive(Clone)]
pub struct WhipSessions {
    recorder: Recorder,
    config: WhipConfig,
    metrics: Arc<Metrics>,
    /// Each publisher's peer, with the ARN of the stream it publishes.
    sessions: Sessions<String>,
}

impl WhipSessions {
    pub fn new(store: VideoStore, clock: SharedClock, config: WhipConfig, metrics: Arc<Metrics>) -> Self {
        let recorder = Recorder {
            store,
            clock,
            metrics: metrics.clone(),
            keyframe_interval: config.keyframe_interval,
            max_fragment_bytes: config.max_fragment_bytes,
        };
        WhipSessions { recorder, config, metrics, sessions: Sessions::default() }
    }

    pub fn count(&self) -> usize {
        self.sessions.count()
    }

    /// How this server records a peer (shared with storage sessions).
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// Answers `offer` for `record`: the session id and the answer SDP. The recording
    /// starts when the peer connects.
    pub async fn open(&self, record: StreamRecord, offer: String) -> Result<(String, String), WhipError> {
        // The place is taken before the first await, so concurrent offers cannot all
        // pass the cap; a refused offer gives it back (and its peer is closed on drop).
        let place =
            self.sessions.reserve(self.config.max_sessions).ok_or(WhipError::TooMany(self.config.max_sessions))?;
        let media = offered_media(&offer);
        if !media.video && !media.audio {
            return Err(WhipError::BadOffer(format!("it sends neither {}", webrtc_media_names())));
        }
        // A newer publisher replaces an older one (a camera that reconnects before its old
        // connection timed out): the older finishes its last fragment and ends.
        self.sessions.stop_where(|arn| *arn == record.arn);
        let (codecs, specs) = tracks_for(media);
        let mut peer = Peer::build(&self.config.network, &codecs).await?;
        for codec in &codecs {
            peer.receive(*codec).await?;
        }
        let answer = peer.answer(offer).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (stop, stop_rx) = watch::channel(false);
        place.fill(id.clone(), Session { pc: peer.pc.clone(), stop, extra: record.arn.clone() });
        self.metrics.webrtc_peers.inc();
        let this = self.clone();
        let session_id = id.clone();
        tokio::spawn(async move {
            let name = record.name.clone();
            match this
                .recorder
                .record(
                    "whip",
                    Publication { stream: record, specs, media, mix: None, keyframe_requests: None },
                    peer,
                    stop_rx,
                )
                .await
            {
                Ok(()) => tracing::info!(session = %session_id, stream = %name, "WHIP publisher ended"),
                Err(e) => tracing::info!(session = %session_id, stream = %name, error = %e, "WHIP publisher ended"),
            }
            this.remove(&session_id).await;
        });
        Ok((id, answer))
    }

    /// Ends a session (DELETE on its resource). The recording task finishes the
    /// publication (its last fragment is stored), then removes the session.
    pub async fn close(&self, id: &str) -> Result<(), WhipError> {
        // The publisher's task ends the session, storing its last fragment first.
        if self.sessions.stop(id) {
            Ok(())
        } else {
            Err(WhipError::NoSession)
        }
    }

    async fn remove(&self, id: &str) {
        if self.sessions.remove(id).await {
            self.metrics.webrtc_peers.dec();
        }
    }
}

/// `notify`'s next notification (never, without one).
async fn notified(notify: Option<&Notify>) {
    match notify {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// The next packet of the mix, if there is one (else never).
async fn next_mixed(mix: &mut Option<MixLink>) -> Option<(i64, Vec<u8>)> {
    match mix {
        Some(link) => link.mixed.recv().await,
        None => std::future::pending().await,
    }
}

/// Packets lost before this one on its track, from the RTP sequence numbers; `None` for
/// a duplicate or one older than the last (the peer connection already reordered what
/// it could).
fn lost_before(last: &mut HashMap<usize, u16>, track: usize, packet: &[u8]) -> Option<u64> {
    let seq = u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]);
    let lost = match last.get(&track) {
        None => 0,
        Some(&prev) => {
            let ahead = seq.wrapping_sub(prev);
            if ahead == 0 || ahead > 0x8000 {
                return None;
            }
            u64::from(ahead - 1)
        }
    };
    last.insert(track, seq);
    Some(lost)
}

/// Forwards a remote track's RTP packets to the recorder; for video, asks for a keyframe
/// every `keyframe_interval`, and whenever `asked` is notified.
async fn read_track(
    track: Arc<dyn TrackRemote>,
    index: usize,
    packets: mpsc::Sender<(usize, Bytes)>,
    keyframe_interval: Duration,
    asked: Option<Arc<Notify>>,
) {
    let media_ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
    // The browser starts with a keyframe: the first request is one interval later.
    let mut keyframes = tokio::time::interval_at(tokio::time::Instant::now() + keyframe_interval, keyframe_interval);
    keyframes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = track.poll() => match event {
                Some(TrackRemoteEvent::OnRtpPacket(p)) => {
                    let Ok(bytes) = p.marshal() else { continue };
                    if packets.send((index, bytes.freeze())).await.is_err() {
                        return;
                    }
                }
                Some(_) => {}
                None => return,
            },
            _ = keyframes.tick(), if index == VIDEO => {
                let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                    return;
                }
            }
            _ = notified(asked.as_deref()), if index == VIDEO => {
                keyframes.reset();
                let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_says_what_it_sends() {
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n";
        assert_eq!(offered_media(offer), OfferedMedia { video: true, audio: true });
        let vp8_only = offer.replace("a=rtpmap:102 H264/90000\r\n", "");
        assert_eq!(offered_media(&vp8_only), OfferedMedia { video: false, audio: true });
        let receiving = offer.replace("a=sendonly", "a=recvonly");
        assert_eq!(offered_media(&receiving), OfferedMedia::default());
        assert_eq!(offered_media("not sdp"), OfferedMedia::default());
    }

    #[test]
    fn publish_tokens_open_only_as_minted_and_in_time() {
        let tokens = PublishTokens::new([7; 32]);
        let t = tokens.sign(&PublishToken {
            scope: crate::scope::Scope::new("123456789012", "us-east-1"),
            stream: "cam".into(),
            stream_id: 3,
            expires_us: 1_000,
            issued_us: 10,
        });
        let opened = tokens.open(&t, 999).unwrap();
        assert_eq!((opened.stream.as_str(), opened.stream_id, opened.issued_us), ("cam", 3, 10));
        assert_eq!(tokens.open(&t, 1_001), Err(TokenRefusal::Expired));
        assert_eq!(PublishTokens::new([8; 32]).open(&t, 0), Err(TokenRefusal::BadSignature));
        let (payload, tag) = t.split_once('.').unwrap();
        let forged = format!("{}x.{tag}", payload);
        assert!(tokens.open(&forged, 0).is_err());
        assert_eq!(tokens.open("garbage", 0), Err(TokenRefusal::Malformed));
    }

    #[test]
    fn lost_packets_are_counted_from_sequence_numbers() {
        let mut last = HashMap::new();
        let p = |seq: u16| {
            let mut b = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            b[2..4].copy_from_slice(&seq.to_be_bytes());
            b
        };
        assert_eq!(lost_before(&mut last, 0, &p(65534)), Some(0));
        assert_eq!(lost_before(&mut last, 0, &p(65535)), Some(0));
        assert_eq!(lost_before(&mut last, 0, &p(2)), Some(2), "wraps");
        assert_eq!(lost_before(&mut last, 0, &p(2)), None, "duplicate");
        assert_eq!(lost_before(&mut last, 0, &p(1)), None, "late");
        assert_eq!(lost_before(&mut last, 1, &p(7)), Some(0), "each track its own");
        assert_eq!(lost_before(&mut last, 0, &[0x80]), None, "too short");
    }
}
