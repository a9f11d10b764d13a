//! What every recorded WebRTC peer goes through (WHIP publishers and storage sessions'
//! masters): which media an offer sends and the tracks that makes, then the
//! [`Recorder`]: the peer's RTP (and the session's audio mix) into an
//! [`crate::ingest::publisher::Publisher`], a keyframe asked for (PLI) periodically and
//! on demand, until the peer goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::shared::marshal::Marshal;
use tokio::sync::{mpsc, watch, Notify};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::peer::{self, Peer};
use crate::clock::SharedClock;
use crate::codec::{AccessUnit, CodecKind, CodecParams};
use crate::ingest::publisher::{PublishError, Publisher, TrackSpec};
use crate::metrics::Metrics;
use crate::video_store::{StreamRecord, VideoStore};
use crate::wire::sdp;

/// A peer that has not connected by then is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// RTP packets queued from the tracks to the publisher before the readers wait.
const PACKET_QUEUE: usize = 1024;
/// Track indexes in the publisher (and the stored init segment): video first.
const VIDEO: usize = 0;

/// Why a recording ended in error.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the peer did not connect within {0:?}")]
    NotConnected(Duration),
    #[error("recording: {0}")]
    Recording(#[source] PublishError),
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
    ) -> Result<(), RecordError> {
        let Publication { stream: record, specs, media, mut mix, keyframe_requests } = publication;
        let connected = tokio::select! {
            c = peer.connected(CONNECT_TIMEOUT) => c,
            _ = stop.changed() => return Ok(()),
        };
        self.metrics.count_peer(role, connected);
        if !connected {
            return Err(RecordError::NotConnected(CONNECT_TIMEOUT));
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
                        break Err(RecordError::Recording(e));
                    }
                }
                Some((elapsed, opus)) = next_mixed(&mut mix) => {
                    let unit = AccessUnit { rtp_ts: 0, data: opus, keyframe: true, parameter_sets: Vec::new() };
                    if let Err(e) = publisher.frame(audio_index, elapsed, 0, unit).await {
                        break Err(RecordError::Recording(e));
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
                _ = peer::ended(&mut stop, &mut state) => break Ok(()),
            }
        };
        for r in readers {
            r.abort();
        }
        let stats = publisher.finish().await.map_err(RecordError::Recording)?;
        tracing::info!(fragments = stats.fragments, samples = stats.samples, "WebRTC recording finished");
        result
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
