//! Kinesis Video WebRTC ingestion (`kinesis-video-webrtc-storage`): a storage session
//! per signalling channel that records the channel's master into the stream its media
//! storage configuration names, and that viewers may join to talk with the master.
//!
//! - **JoinStorageSession**: the server joins the channel as a viewer
//!   (`kinescope-storage-…`) and offers the master to receive its camera (H.264) and
//!   microphone (Opus), sending back what the joined viewers say. The video is recorded
//!   through the same [`Recorder`] as a WHIP publisher, so the stream reads like any
//!   camera. A newer join replaces the master's older one.
//! - **JoinStorageSessionAsViewer**: the session claims a connected viewer
//!   ([`crate::signaling::hub::ViewerClaim`]) and offers it the master's video (from
//!   the stream's live bus, as it is recorded, from a keyframe the master is asked for
//!   as the viewer connects) and the session's audio; the viewer may
//!   send its microphone. A viewer that joins before the master waits for it. A newer
//!   join of the same client id replaces the older.
//! - **Audio**: every participant's Opus is decoded and mixed ([`crate::media::audio_mix`],
//!   [`crate::media::opus_pcm`]) every 20 ms: the recording keeps everyone (one Opus
//!   track, mono), and each participant hears everyone but itself. (AWS stores AAC; we
//!   store Opus, see the README.)
//!
//! The exchange is the KVS signalling protocol, in-process through the hub: the peers
//! (the KVS WebRTC SDK, unchanged) see an ordinary `SDP_OFFER` carrying every host
//! candidate, and answer with an `SDP_ANSWER` and trickled `ICE_CANDIDATE`s. An offer to
//! a master that is not connected waits in the channel for its message TTL, as any
//! viewer's would. The session ends when its last participant goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};

use super::peer::PeerError;
use super::peer::{self, ArrivalPacer, Network, Peer, SampleTrack};
use super::recorder::{
    offered_media, tracks_for, webrtc_media_names, MixLink, OfferedMedia, Publication, RecordError, Recorder,
    CONNECT_TIMEOUT,
};
use crate::codec::{CodecKind, CodecParams};
use crate::media::opus_pcm::OpusPcmError;
use crate::signaling::hub::{Hub, HubError, Outbound, Role};
use crate::video_store::StreamRecord;

/// Storage sessions at once (one per channel).
pub const MAX_SESSIONS: usize = 16;
/// Mixed packets waiting for the recorder (a second).
const RECORDING_QUEUE: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} storage sessions are running already; try later")]
    TooMany(usize),
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The peer connection could not be made (no UDP port, a refused description, …).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A signalling message of the session's was refused by the channel.
    #[error("the channel refused the session's message: {0}")]
    Signaling(String),
    /// The peer sent no answer in time, or never connected.
    #[error("the {0}")]
    NoAnswer(&'static str),
    #[error("the {0} sends neither {1}")]
    NothingToRecord(&'static str, String),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("audio: {0}")]
    Audio(#[from] OpusPcmError),
    #[error(transparent)]
    Store(#[from] crate::video_store::StoreError),
}

mod mixer;
mod signaling_leg;

use mixer::{lock_mixing, read_voice, run_mixer, Mixing};
use signaling_leg::{answered, apply_messages, offer_message};

/// Who takes part in a session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Party {
    Master,
    Viewer(String),
}

/// A participant's place: its id (to tell a replaced one from its successor) and stop switch.
type Leg = (u64, watch::Sender<bool>);

/// What a session's legs share: the audio mix, and the master's keyframe requests (a
/// viewer that arrives asks for one rather than wait for the periodic ask).
#[derive(Clone)]
struct Shared {
    mixing: Arc<Mutex<Mixing>>,
    keyframes: Arc<Notify>,
}

/// One channel's session.
struct Call {
    shared: Shared,
    master: Option<Leg>,
    viewers: HashMap<String, Leg>,
    mixer: tokio::task::AbortHandle,
}

/// The storage sessions of one server.
#[derive(Clone)]
pub struct StorageSessions {
    hub: Hub,
    recorder: Recorder,
    network: Network,
    calls: Arc<Mutex<HashMap<String, Call>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl StorageSessions {
    pub fn new(hub: Hub, recorder: Recorder, network: Network) -> Self {
        StorageSessions {
            hub,
            recorder,
            network,
            calls: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Call>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions running.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Puts a new leg for `party` in the channel's session (started if there is none),
    /// stopping the leg it replaces; in one step, so a leg leaving meanwhile cannot end
    /// the session under it. Returns what the session shares, the leg's id and its stop
    /// switch.
    fn enter(&self, channel_arn: &str, party: &Party) -> Result<(Shared, u64, watch::Receiver<bool>), StorageError> {
        let mut calls = self.lock();
        if !calls.contains_key(channel_arn) && calls.len() >= MAX_SESSIONS {
            return Err(StorageError::TooMany(MAX_SESSIONS));
        }
        let call = calls.entry(channel_arn.to_string()).or_insert_with(|| {
            let shared = Shared { mixing: Arc::new(Mutex::new(Mixing::default())), keyframes: Arc::new(Notify::new()) };
            let mixer = tokio::spawn(run_mixer(shared.mixing.clone())).abort_handle();
            Call { shared, master: None, viewers: HashMap::new(), mixer }
        });
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (stop, stop_rx) = watch::channel(false);
        let older = match party {
            Party::Master => call.master.replace((id, stop)),
            Party::Viewer(v) => call.viewers.insert(v.clone(), (id, stop)),
        };
        if let Some((_, older)) = older {
            let _ = older.send(true);
        }
        Ok((call.shared.clone(), id, stop_rx))
    }

    /// Takes a finished leg out; the session ends with its last one.
    fn leave(&self, channel_arn: &str, party: &Party, id: u64) {
        let mut calls = self.lock();
        let Some(call) = calls.get_mut(channel_arn) else { return };
        let current = match party {
            Party::Master => call.master.as_ref().is_some_and(|(i, _)| *i == id),
            Party::Viewer(v) => call.viewers.get(v).is_some_and(|(i, _)| *i == id),
        };
        if !current {
            return;
        }
        match party {
            Party::Master => call.master = None,
            Party::Viewer(v) => {
                call.viewers.remove(v);
            }
        }
        lock_mixing(&call.shared.mixing).leave(party);
        if call.master.is_none() && call.viewers.is_empty() {
            call.mixer.abort();
            calls.remove(channel_arn);
        }
    }

    /// JoinStorageSession: joins `channel_arn` as a viewer and offers its master to be
    /// recorded into `stream`; returns once the offer is sent (or held for an absent
    /// master for `ttl_s`). The recording runs until the master goes.
    pub async fn join(&self, channel_arn: &str, ttl_s: u32, stream: StreamRecord) -> Result<(), StorageError> {
        let (shared, id, stop_rx) = self.enter(channel_arn, &Party::Master)?;
        let (membership, outbox, peer, audio_out) = match self.offer_master(channel_arn, ttl_s).await {
            Ok(j) => j,
            Err(e) => {
                self.leave(channel_arn, &Party::Master, id);
                return Err(e);
            }
        };
        let this = self.clone();
        let channel = channel_arn.to_string();
        let answer_wait = Duration::from_secs(u64::from(ttl_s) + 30);
        tokio::spawn(async move {
            let (answer_tx, answer_rx) = oneshot::channel();
            // The channel's messages for this viewer, for the session's life.
            let signalling = tokio::spawn(apply_messages(outbox, peer.pc.clone(), peer.screen.clone(), answer_tx));
            let pc = peer.pc.clone();
            let name = stream.name.clone();
            let mut stop = stop_rx;
            let outcome = match answered(answer_rx, answer_wait, &mut stop).await {
                Some(answer) => this.record_master(&shared, stream, peer, audio_out, &answer, stop).await,
                None => Err(StorageError::NoAnswer("master did not answer")),
            };
            match outcome {
                Ok(()) => tracing::info!(channel = %channel, stream = %name, "storage session's master left"),
                Err(e) => {
                    tracing::info!(channel = %channel, stream = %name, error = %e, "storage session's master left")
                }
            }
            signalling.abort();
            let _ = pc.close().await;
            drop(membership);
            this.leave(&channel, &Party::Master, id);
        });
        Ok(())
    }

    /// The session's viewer membership and its offer to the master, sent.
    async fn offer_master(
        &self,
        channel_arn: &str,
        ttl_s: u32,
    ) -> Result<(crate::signaling::hub::Membership, mpsc::Receiver<Outbound>, Peer, SampleTrack), StorageError> {
        let client_id = format!("kinescope-storage-{}", uuid::Uuid::new_v4().simple());
        let (membership, outbox) = self.hub.join(channel_arn, Role::Viewer, &client_id)?;
        // Offer to receive both (the answer says what the master sends) and to send the
        // viewers' voices back on the audio transceiver.
        let (codecs, _) = tracks_for(OfferedMedia { video: true, audio: true });
        let peer = Peer::build(&self.network, &codecs).await?;
        let (video, audio) = webrtc_codecs()?;
        peer.receive(video).await?;
        let audio_out = SampleTrack::add(&peer.pc, audio).await?;
        let mut peer = peer;
        let offer = peer.offer().await?;
        self.hub.send(&membership, offer_message(&offer), ttl_s).map_err(|r| StorageError::Signaling(r.description))?;
        Ok((membership, outbox, peer, audio_out))
    }

    /// Records the master once it answered: its video as sent, its voice into the mix,
    /// the mix as the recording's audio; it hears the viewers.
    async fn record_master(
        &self,
        shared: &Shared,
        stream: StreamRecord,
        peer: Peer,
        mut audio_out: SampleTrack,
        answer: &str,
        stop: watch::Receiver<bool>,
    ) -> Result<(), StorageError> {
        let mixing = &shared.mixing;
        let media = offered_media(answer);
        let (_, mut specs) = tracks_for(media);
        if specs.is_empty() {
            return Err(StorageError::NothingToRecord("master", webrtc_media_names()));
        }
        let mix = if media.audio {
            // The recorded audio is the mix (one channel).
            if let Some(spec) = specs.iter_mut().find(|s| !s.kind.is_video()) {
                spec.params = CodecParams::mixed_audio();
            }
            let (tx, rx) = mpsc::channel(RECORDING_QUEUE);
            lock_mixing(mixing).record(tx)?;
            let voices = mixing.clone();
            Some(MixLink { voice: Box::new(move |p| lock_mixing(&voices).voice(&Party::Master, p)), mixed: rx })
        } else {
            None
        };
        if audio_out.negotiated().await? {
            lock_mixing(mixing).listen(Party::Master, audio_out)?;
        }
        let keyframe_requests = Some(shared.keyframes.clone());
        let publication = Publication { stream, specs, media, mix, keyframe_requests };
        Ok(self.recorder.record("storage_session", publication, peer, stop).await?)
    }

    /// JoinStorageSessionAsViewer: claims the connected viewer `client_id` of
    /// `channel_arn` and offers it a place in the session (the master's video, everyone
    /// else's voices; its own voice taken). Returns once the offer is sent.
    pub async fn join_as_viewer(
        &self,
        channel_arn: &str,
        client_id: &str,
        stream: StreamRecord,
    ) -> Result<(), StorageError> {
        let (claim, outbox) = self.hub.claim_viewer(channel_arn, client_id)?;
        let party = Party::Viewer(client_id.to_string());
        let (shared, id, stop_rx) = self.enter(channel_arn, &party)?;
        let (peer, video_out, audio_out) = match self.offer_viewer(&claim).await {
            Ok(o) => o,
            Err(e) => {
                self.leave(channel_arn, &party, id);
                return Err(e);
            }
        };
        let this = self.clone();
        let channel = channel_arn.to_string();
        tokio::spawn(async move {
            let (answer_tx, answer_rx) = oneshot::channel();
            let signalling = tokio::spawn(apply_messages(outbox, peer.pc.clone(), peer.screen.clone(), answer_tx));
            let pc = peer.pc.clone();
            let leg = ViewerLeg { party: party.clone(), shared, video_out, audio_out };
            let mut stop = stop_rx;
            let outcome = match answered(answer_rx, CONNECT_TIMEOUT, &mut stop).await {
                Some(_) => this.run_viewer(leg, &stream, peer, stop).await,
                None => Err(StorageError::NoAnswer("viewer did not answer")),
            };
            match outcome {
                Ok(()) => tracing::info!(channel = %channel, viewer = ?party, "storage session's viewer left"),
                Err(e) => {
                    tracing::info!(channel = %channel, viewer = ?party, error = %e, "storage session's viewer left")
                }
            }
            signalling.abort();
            let _ = pc.close().await;
            drop(claim);
            this.leave(&channel, &party, id);
        });
        Ok(())
    }

    /// A peer for a viewer (the master's video out; audio both ways) and its offer, sent.
    async fn offer_viewer(
        &self,
        claim: &crate::signaling::hub::ViewerClaim,
    ) -> Result<(Peer, SampleTrack, SampleTrack), StorageError> {
        let (codecs, _) = tracks_for(OfferedMedia { video: true, audio: true });
        let mut peer = Peer::build(&self.network, &codecs).await?;
        let (video, audio) = webrtc_codecs()?;
        let video_out = SampleTrack::add(&peer.pc, video).await?;
        let audio_out = SampleTrack::add(&peer.pc, audio).await?;
        let offer = peer.offer().await?;
        self.hub.send_to_claimed(claim, offer_message(&offer)).map_err(|r| StorageError::Signaling(r.description))?;
        Ok((peer, video_out, audio_out))
    }

    /// A viewer after its answer: the master's video from the stream's live bus, the mix
    /// without its own voice, its voice into the mix; until it goes or is replaced.
    async fn run_viewer(
        &self,
        mut leg: ViewerLeg,
        stream: &StreamRecord,
        mut peer: Peer,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), StorageError> {
        let connected = tokio::select! {
            c = peer.connected(CONNECT_TIMEOUT) => c,
            _ = stop.changed() => return Ok(()),
        };
        self.recorder.metrics.count_peer("storage_viewer", connected);
        if !connected {
            return Err(StorageError::NoAnswer("viewer did not connect"));
        }
        let sends_video = leg.video_out.negotiated().await?;
        if leg.audio_out.negotiated().await? {
            lock_mixing(&leg.shared.mixing).listen(leg.party.clone(), leg.audio_out)?;
        }
        let mut bus = self.recorder.store.live(stream.id)?.subscribe_frames();
        // The master's next keyframe now rather than at its next periodic ask.
        leg.shared.keyframes.notify_one();
        let mut pacer = ArrivalPacer::new(Duration::from_millis(40));
        // A viewer starts (and restarts after falling behind) at a keyframe.
        let mut want_keyframe = true;
        let mut readers = Vec::new();
        let mut state = peer.state.clone();
        let result = loop {
            tokio::select! {
                frame = bus.recv() => match frame {
                    Ok(f) if sends_video && f.codec.webrtc().is_some() && f.codec.is_video() && (f.keyframe || !want_keyframe) => {
                        want_keyframe = false;
                        if let Err(e) = leg.video_out.write(&pacer.sample(f.annex_b())).await {
                            break Err(StorageError::from(e));
                        }
                        self.recorder.metrics.webrtc_frames_out.inc();
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        want_keyframe = true;
                        leg.shared.keyframes.notify_one();
                    }
                    // The stream was deleted.
                    Err(broadcast::error::RecvError::Closed) => break Ok(()),
                },
                track = peer.tracks.recv() => {
                    let Some(track) = track else { continue };
                    if track.kind().await == RtpCodecKind::Audio {
                        readers.push(tokio::spawn(read_voice(track, leg.party.clone(), leg.shared.mixing.clone())));
                    }
                }
                _ = peer::ended(&mut stop, &mut state) => break Ok(()),
            }
        };
        for r in readers {
            r.abort();
        }
        result
    }
}

/// What a viewer's task holds.
struct ViewerLeg {
    party: Party,
    shared: Shared,
    video_out: SampleTrack,
    audio_out: SampleTrack,
}

/// The video and audio codecs WebRTC sessions carry.
fn webrtc_codecs() -> Result<(CodecKind, CodecKind), StorageError> {
    match (CodecKind::webrtc_for("video"), CodecKind::webrtc_for("audio")) {
        (Some(v), Some(a)) => Ok((v, a)),
        _ => Err(StorageError::Peer(PeerError::WebRtc("no WebRTC codec for video or audio".into()))),
    }
}
