//! The RTSP protocol server on `--rtsp` (as MediaMTX keeps `servers/rtsp/` apart from
//! its stream core): publishers push with ANNOUNCE / SETUP (mode=record) / RECORD, as
//! `ffmpeg -f rtsp` and GStreamer's `rtspclientsink` do, over TCP (interleaved) or UDP;
//! viewers DESCRIBE / SETUP / PLAY a live stream over TCP. The URL path names the
//! Kinesis Video stream.
//!
//! - [`connection`]: one TCP connection: bytes parsed by [`crate::wire::rtsp`],
//!   requests answered, the session it becomes (publisher or player).
//! - [`publisher_session`]: ANNOUNCE/SETUP/RECORD → [`crate::ingest::publisher`].
//! - [`player_session`]: DESCRIBE/SETUP/PLAY ← [`crate::playback::rtsp_play`].
//! - [`digest`]: Digest authentication with access keys, when keys are configured.

pub mod connection;
pub mod digest;
pub mod player_session;
pub mod publisher_session;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::credentials::Credentials;
use crate::metrics::Metrics;
use crate::video_store::VideoStore;

/// The limits of the RTSP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtspLimits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// A session with no request, no RTP (TCP or UDP) for this long is ended.
    pub idle_timeout: Duration,
    /// A viewer whose socket takes no bytes for this long is dropped.
    pub write_timeout: Duration,
    /// Tracks one publication may set up.
    pub max_tracks: usize,
    /// Bytes one stored fragment may hold (fragments are cut before it).
    pub max_fragment_bytes: usize,
}

impl Default for RtspLimits {
    fn default() -> Self {
        RtspLimits {
            max_connections: 256,
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_tracks: 3,
            max_fragment_bytes: crate::media::fmp4_mux::MAX_FRAGMENT_BYTES,
        }
    }
}

/// What every connection of the server shares.
#[derive(Clone)]
pub struct RtspServer {
    pub store: VideoStore,
    pub clock: SharedClock,
    /// Create a stream on its first ANNOUNCE when it does not exist.
    pub create_streams: bool,
    pub digest: digest::DigestAuth,
    pub metrics: Arc<Metrics>,
    pub limits: RtspLimits,
}

impl RtspServer {
    pub fn new(
        store: VideoStore,
        credentials: Arc<Credentials>,
        clock: SharedClock,
        create_streams: bool,
        nonce_key: [u8; 32],
        metrics: Arc<Metrics>,
    ) -> Self {
        let digest = digest::DigestAuth::new(credentials, clock.clone(), nonce_key);
        RtspServer { store, clock, create_streams, digest, metrics, limits: RtspLimits::default() }
    }

    pub fn with_limits(mut self, limits: RtspLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Accepts connections until `stop` turns true.
    pub async fn run(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.limits.max_connections.max(1)));
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((mut sock, peer)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            self.metrics.count_refusal("rtsp", "connections");
                            tokio::spawn(async move {
                                use tokio::io::AsyncWriteExt;
                                let busy = crate::wire::rtsp::response(503, "Service Unavailable", None, &[], b"too many connections");
                                let _ = tokio::time::timeout(Duration::from_secs(2), sock.write_all(&busy)).await;
                            });
                            continue;
                        };
                        let server = self.clone();
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            let span = tracing::info_span!("rtsp", %peer);
                            tracing::Instrument::instrument(connection::serve(server, sock, peer, stop), span).await;
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "RTSP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
        }
    }
}

/// An RTSP error answer: status, reason phrase, and a body saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub why: String,
}

impl Refusal {
    pub fn new(status: u16, reason: &'static str, why: impl Into<String>) -> Self {
        Refusal { status, reason, why: why.into() }
    }
    pub fn bad_request(why: impl Into<String>) -> Self {
        Self::new(400, "Bad Request", why)
    }
    pub fn not_found(why: impl Into<String>) -> Self {
        Self::new(404, "Not Found", why)
    }
    pub fn wrong_state(why: impl Into<String>) -> Self {
        Self::new(455, "Method Not Valid in This State", why)
    }
    pub fn unsupported_transport(why: impl Into<String>) -> Self {
        Self::new(461, "Unsupported Transport", why)
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(500, "Internal Server Error", e.to_string())
    }
}
