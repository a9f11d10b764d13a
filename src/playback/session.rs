//! Streaming sessions: what a GetHLSStreamingSessionURL or GetDASHStreamingSessionURL
//! call granted, carried in the URL's `SessionToken`.
//!
//! The token is the session itself, signed: base64url(JSON) `.` base64url(HMAC-SHA256).
//! The key is 32 random bytes kept in the data directory (`playback.key`, created on
//! first start), so sessions survive a restart and nobody without the key can mint,
//! widen or extend one. A 16-byte random nonce makes every token unique. Sessions are
//! stateless on the server: any number of viewers cost nothing until they fetch.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::scope::Scope;
pub use crate::secrets::random_bytes;
use crate::secrets::{self, load_or_create_key, TokenSigner};

use crate::video_store::{StreamId, TimeKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    Hls,
    Dash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlaybackMode {
    Live,
    LiveReplay,
    OnDemand,
}

impl PlaybackMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "LIVE" => Some(Self::Live),
            "LIVE_REPLAY" => Some(Self::LiveReplay),
            "ON_DEMAND" => Some(Self::OnDemand),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscontinuityMode {
    Always,
    Never,
    OnDiscontinuity,
}

impl DiscontinuityMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ALWAYS" => Some(Self::Always),
            "NEVER" => Some(Self::Never),
            "ON_DISCONTINUITY" => Some(Self::OnDiscontinuity),
            _ => None,
        }
    }
}

/// Which clock a session's selector and timestamps use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorClock {
    Producer,
    Server,
}

impl SelectorClock {
    pub fn time_kind(self) -> TimeKind {
        match self {
            SelectorClock::Producer => TimeKind::Producer,
            SelectorClock::Server => TimeKind::Server,
        }
    }
}

/// Everything a session grants. Field names are short: they ride in every URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "p")]
    pub protocol: Protocol,
    #[serde(rename = "s")]
    pub stream: StreamId,
    /// The stream's name: with the id, it tells a recreated stream of the same name apart.
    #[serde(rename = "sn")]
    pub stream_name: String,
    /// The account and region the stream lives in (the caller's who asked for the URL).
    #[serde(rename = "sc")]
    pub scope: Scope,
    #[serde(rename = "m")]
    pub mode: PlaybackMode,
    #[serde(rename = "c")]
    pub clock: SelectorClock,
    /// Selector range, µs since the epoch (ON_DEMAND, LIVE_REPLAY).
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub start_us: Option<i64>,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub end_us: Option<i64>,
    /// When the session was made and when it stops working, µs since the epoch.
    #[serde(rename = "t")]
    pub created_us: i64,
    #[serde(rename = "x")]
    pub expires_us: i64,
    /// Most fragments one playlist or manifest lists.
    #[serde(rename = "n")]
    pub max_fragments: u32,
    #[serde(rename = "d")]
    pub discontinuity: DiscontinuityMode,
    #[serde(rename = "ts", default)]
    pub display_timestamp: bool,
    #[serde(rename = "fn", default)]
    pub display_fragment_number: bool,
    /// LIVE: the stream's newest fragment when the session began, from which
    /// discontinuities are counted.
    #[serde(rename = "f", default)]
    pub anchor_fragment: u64,
    /// Producer time of the session's first fragment (LIVE_REPLAY's DASH origin).
    #[serde(rename = "o", default)]
    pub origin_us: i64,
    #[serde(rename = "r")]
    pub nonce: String,
    /// LIVE HLS with parts and blocking reloads (our `LowLatency` extension).
    #[serde(rename = "ll", default, skip_serializing_if = "std::ops::Not::not")]
    pub low_latency: bool,
    /// HLS segments in MPEG-TS (`ContainerFormat=MPEG_TS`) instead of fMP4.
    #[serde(rename = "cf", default, skip_serializing_if = "std::ops::Not::not")]
    pub mpeg_ts: bool,
}

impl Session {
    /// A session over stream 1 ("cam") that never expires, for tests.
    #[cfg(test)]
    pub fn for_test(protocol: Protocol, mode: PlaybackMode) -> Session {
        Session {
            protocol,
            stream: 1,
            stream_name: "cam".into(),
            scope: Scope::new("123456789012", "us-east-1"),
            mode,
            clock: SelectorClock::Producer,
            start_us: None,
            end_us: None,
            created_us: 0,
            expires_us: i64::MAX,
            max_fragments: 1000,
            discontinuity: DiscontinuityMode::Never,
            display_timestamp: false,
            display_fragment_number: false,
            anchor_fragment: 0,
            origin_us: 0,
            nonce: String::new(),
            low_latency: false,
            mpeg_ts: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the session token is malformed")]
    Malformed,
    #[error("the session token's signature does not match")]
    BadSignature,
    #[error("the streaming session expired")]
    Expired,
    #[error("the session token is for a {0:?} session")]
    WrongProtocol(Protocol),
}

/// Signs and checks session tokens.
pub struct SessionSigner {
    signer: TokenSigner,
}

impl SessionSigner {
    pub fn new(key: [u8; 32]) -> Self {
        SessionSigner { signer: TokenSigner::new(key) }
    }

    /// The key in `data_dir/playback.key`, created (random, mode 0600) if missing.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        Ok(Self::new(load_or_create_key(&data_dir.join("playback.key"))?))
    }

    pub fn sign(&self, session: &Session) -> String {
        self.signer.sign(&serde_json::to_vec(session).unwrap_or_default())
    }

    /// The session a token carries, if the signature holds, it has not expired at
    /// `now_us`, and it is for `protocol`.
    pub fn verify(&self, token: &str, protocol: Protocol, now_us: i64) -> Result<Session, TokenError> {
        let json = self.signer.open(token).map_err(|e| match e {
            secrets::TokenError::Malformed => TokenError::Malformed,
            secrets::TokenError::BadSignature => TokenError::BadSignature,
        })?;
        let session: Session = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if session.protocol != protocol {
            return Err(TokenError::WrongProtocol(session.protocol));
        }
        if now_us >= session.expires_us {
            return Err(TokenError::Expired);
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn session() -> Session {
        Session {
            stream: 7,
            start_us: Some(1),
            end_us: Some(2),
            created_us: 100,
            expires_us: 1_000,
            nonce: "00".into(),
            ..Session::for_test(Protocol::Hls, PlaybackMode::OnDemand)
        }
    }

    #[test]
    fn a_signed_session_verifies_until_it_expires() {
        let signer = SessionSigner::new([3; 32]);
        let token = signer.sign(&session());
        assert_eq!(signer.verify(&token, Protocol::Hls, 999), Ok(session()));
        assert_eq!(signer.verify(&token, Protocol::Hls, 1_000), Err(TokenError::Expired));
        assert_eq!(signer.verify(&token, Protocol::Dash, 999), Err(TokenError::WrongProtocol(Protocol::Hls)));
    }

    #[test]
    fn a_widened_or_foreign_token_is_refused() {
        let signer = SessionSigner::new([3; 32]);
        let token = signer.sign(&session());
        let (_, tag) = token.split_once('.').unwrap();
        let mut wider = session();
        wider.expires_us = i64::MAX;
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wider).unwrap()));
        assert_eq!(signer.verify(&forged, Protocol::Hls, 0), Err(TokenError::BadSignature));
        assert_eq!(SessionSigner::new([4; 32]).verify(&token, Protocol::Hls, 0), Err(TokenError::BadSignature));
        assert_eq!(signer.verify("nonsense", Protocol::Hls, 0), Err(TokenError::Malformed));
        assert_eq!(signer.verify("a.!!", Protocol::Hls, 0), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_file_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let token = SessionSigner::load_or_create(dir.path()).unwrap().sign(&session());
        let again = SessionSigner::load_or_create(dir.path()).unwrap();
        assert_eq!(again.verify(&token, Protocol::Hls, 0), Ok(session()));
    }
}
