//! JoinStorageSession (`kinesis-video-webrtc-storage`), Kinesis Video's WebRTC ingestion:
//! the server joins a signalling channel as a viewer, offers the master to receive its
//! camera (H.264 video, Opus audio), and records what the master sends into the stream
//! the channel's media storage configuration names — through the same [`Recorder`] as a
//! WHIP publisher, so the stream reads like any camera.
//!
//! The exchange is the KVS signalling protocol, in-process through the hub: the master
//! (the KVS WebRTC SDK, unchanged) sees an ordinary viewer with client id
//! `kinescope-storage-…` that sends an `SDP_OFFER` carrying every host candidate, and
//! answers with an `SDP_ANSWER` and trickled `ICE_CANDIDATE`s, which the session applies.
//! An offer to a master that is not connected waits in the channel for its message TTL,
//! as any viewer's would. One session per channel: joining again replaces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, oneshot, watch};

use super::whip::{offered_media, tracks_for, OfferedMedia, Recorder, WhipError};
use crate::signaling::hub::{Hub, HubError, Outbound, Role};
use crate::video_store::StreamRecord;
use crate::webrtc_peer::{Network, Peer, RTCIceCandidateInit};
use crate::wire::kvs_signaling::{self, Action, ClientMessage};

/// Storage sessions at once (one per channel).
pub const MAX_SESSIONS: usize = 16;
/// Candidates applied before the answer arrives are held, up to this many.
const MAX_EARLY_CANDIDATES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} storage sessions are running already; try later")]
    TooMany(usize),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Session(#[from] WhipError),
}

/// Channel ARN → the running session's id and stop switch.
type Running = HashMap<String, (u64, watch::Sender<bool>)>;

/// The storage sessions of one server.
#[derive(Clone)]
pub struct StorageSessions {
    hub: Hub,
    recorder: Recorder,
    network: Network,
    sessions: Arc<Mutex<Running>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl StorageSessions {
    pub fn new(hub: Hub, recorder: Recorder, network: Network) -> Self {
        StorageSessions {
            hub,
            recorder,
            network,
            sessions: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Joins `channel_arn` as a viewer and offers its master to be recorded into
    /// `stream`; returns once the offer is sent (or held for an absent master for
    /// `ttl_s`). The recording runs until the master goes.
    pub async fn join(&self, channel_arn: &str, ttl_s: u32, stream: StreamRecord) -> Result<(), StorageError> {
        {
            let sessions = self.lock();
            if !sessions.contains_key(channel_arn) && sessions.len() >= MAX_SESSIONS {
                return Err(StorageError::TooMany(MAX_SESSIONS));
            }
        }
        let client_id = format!("kinescope-storage-{}", uuid::Uuid::new_v4().simple());
        let (membership, outbox) = self.hub.join(channel_arn, Role::Viewer, &client_id)?;
        // Offer to receive both; the answer says what the master sends.
        let (codecs, _) = tracks_for(OfferedMedia { video: true, audio: true });
        let mut peer = Peer::build(&self.network, &codecs).await.map_err(WhipError::from)?;
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
            peer.pc.add_transceiver_from_kind(kind, Some(init)).await.map_err(|e| WhipError::WebRtc(e.to_string()))?;
        }
        let offer = peer.offer().await.map_err(WhipError::from)?;
        let msg = ClientMessage {
            action: Action::SdpOffer,
            recipient_client_id: None,
            message_payload: kvs_signaling::session_description_payload("offer", &offer),
            correlation_id: None,
        };
        self.hub.send(&membership, msg, ttl_s).map_err(|r| WhipError::WebRtc(r.description))?;

        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (stop, stop_rx) = watch::channel(false);
        if let Some((_, older)) = self.lock().insert(channel_arn.to_string(), (id, stop)) {
            let _ = older.send(true);
        }
        let this = self.clone();
        let channel = channel_arn.to_string();
        let answer_wait = Duration::from_secs(u64::from(ttl_s) + 30);
        tokio::spawn(async move {
            let (answer_tx, answer_rx) = oneshot::channel();
            // The channel's messages for this viewer, for the session's life.
            let signalling = tokio::spawn(apply_messages(outbox, peer.pc.clone(), answer_tx));
            let name = stream.name.clone();
            let outcome = match tokio::time::timeout(answer_wait, answer_rx).await {
                Ok(Ok(answer)) => {
                    let media = offered_media(&answer);
                    let (_, specs) = tracks_for(media);
                    if specs.is_empty() {
                        Err(WhipError::BadOffer("the master sends neither H.264 video nor Opus audio".into()))
                    } else {
                        this.recorder.record("storage_session", stream, peer, specs, media, stop_rx).await
                    }
                }
                _ => Err(WhipError::WebRtc("the master did not answer".into())),
            };
            match outcome {
                Ok(()) => tracing::info!(channel = %channel, stream = %name, "storage session ended"),
                Err(e) => tracing::info!(channel = %channel, stream = %name, error = %e, "storage session ended"),
            }
            signalling.abort();
            drop(membership);
            let mut sessions = this.lock();
            if sessions.get(&channel).is_some_and(|(i, _)| *i == id) {
                sessions.remove(&channel);
            }
        });
        Ok(())
    }
}

/// Applies what the master sends this viewer: the answer (handed to `answer`, once) and
/// trickled candidates (held until the answer is applied).
async fn apply_messages(
    mut outbox: mpsc::Receiver<Outbound>,
    pc: Arc<dyn webrtc::peer_connection::PeerConnection>,
    answer: oneshot::Sender<String>,
) {
    let mut answer = Some(answer);
    let mut early: Vec<RTCIceCandidateInit> = Vec::new();
    while let Some(out) = outbox.recv().await {
        let Outbound::Text(text) = out else { return };
        let Some(d) = kvs_signaling::parse_delivery(&text) else { continue };
        match d.action {
            Action::SdpAnswer => {
                let Some(sdp) = kvs_signaling::session_description(&d.payload, "answer") else { continue };
                let Some(tx) = answer.take() else { continue };
                let Ok(desc) = rtc::peer_connection::sdp::RTCSessionDescription::answer(sdp.clone()) else { continue };
                if let Err(e) = pc.set_remote_description(desc).await {
                    tracing::info!(error = %e, "the master's answer was refused");
                    return;
                }
                for c in early.drain(..) {
                    let _ = pc.add_ice_candidate(c).await;
                }
                let _ = tx.send(sdp);
            }
            Action::IceCandidate => {
                let Ok(c) = serde_json::from_slice::<RTCIceCandidateInit>(&d.payload) else { continue };
                if answer.is_some() {
                    if early.len() < MAX_EARLY_CANDIDATES {
                        early.push(c);
                    }
                } else {
                    let _ = pc.add_ice_candidate(c).await;
                }
            }
            Action::SdpOffer => {}
        }
    }
}
