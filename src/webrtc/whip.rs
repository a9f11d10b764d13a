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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::peer::{Network, Peer, PeerError, Session, Sessions};
use super::recorder::{offered_media, tracks_for, webrtc_media_names, Publication, RecordError, Recorder};
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::video_store::{StoreError, StreamRecord, VideoStore};

/// The largest SDP offer taken.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

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
    #[error("the offer is not usable: {0}")]
    BadOffer(String),
    #[error("{0} publishers are connected already; try later")]
    TooMany(usize),
    #[error("no such WHIP session")]
    NoSession,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Peer(#[from] PeerError),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
