//! The session's own signalling client, in-process through the hub: its offer as a
//! KVS `SDP_OFFER`, and what the peer sends back (the answer, trickled candidates)
//! applied to the peer connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::signaling::hub::Outbound;
use crate::webrtc::peer::{self, RTCIceCandidateInit};
use crate::wire::kvs_signaling::{self, Action, ClientMessage};

/// Candidates applied before the answer arrives are held, up to this many.
const MAX_EARLY_CANDIDATES: usize = 64;

/// The session's offer, as a viewer's `SDP_OFFER`.
pub(super) fn offer_message(sdp: &str) -> ClientMessage {
    ClientMessage {
        action: Action::SdpOffer,
        recipient_client_id: None,
        message_payload: kvs_signaling::session_description_payload("offer", sdp),
        correlation_id: None,
    }
}

/// The peer's answer, unless `wait` passes or the leg is stopped (replaced) first.
pub(super) async fn answered(
    answer: oneshot::Receiver<String>,
    wait: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    tokio::select! {
        got = tokio::time::timeout(wait, answer) => got.ok().and_then(Result::ok),
        _ = stop.wait_for(|s| *s) => None,
    }
}

/// Applies what a peer sends the session: the answer (handed to `answer`, once) and
/// trickled candidates (held until the answer is applied).
pub(super) async fn apply_messages(
    mut outbox: mpsc::Receiver<Outbound>,
    pc: Arc<dyn webrtc::peer_connection::PeerConnection>,
    mut screen: peer::CandidateScreen,
    answer: oneshot::Sender<String>,
) {
    let mut answer = Some(answer);
    let mut early: Vec<RTCIceCandidateInit> = Vec::new();
    while let Some(out) = outbox.recv().await {
        let Outbound::Message(d) = out else { return };
        let Some(payload) = d.payload_bytes() else { continue };
        match d.action {
            Action::SdpAnswer => {
                let Some(sdp) = kvs_signaling::session_description(&payload, "answer") else { continue };
                if answer.is_none() {
                    continue;
                }
                let screened = screen.description(&sdp);
                let Ok(desc) = rtc::peer_connection::sdp::RTCSessionDescription::answer(screened) else { continue };
                if let Err(e) = pc.set_remote_description(desc).await {
                    tracing::info!(error = %e, "an answer was refused");
                    continue;
                }
                for c in early.drain(..) {
                    let _ = pc.add_ice_candidate(c).await;
                }
                if let Some(tx) = answer.take() {
                    let _ = tx.send(sdp);
                }
            }
            Action::IceCandidate => {
                let Ok(c) = serde_json::from_slice::<RTCIceCandidateInit>(&payload) else { continue };
                if !screen.candidate(&c) {
                    continue;
                }
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
