//! IP cameras pulled with `retina`: a source attached to a stream is connected
//! (DESCRIBE / SETUP / PLAY, TCP-interleaved or UDP), its frames go through the same
//! [`Publisher`] as pushed RTSP, and it is reconnected with backoff when the camera
//! drops. Sources persist in `data/sources.json` (mode 0600: it holds camera
//! passwords); their status is kept in memory. Credentials never appear in logs or in
//! what the API returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::publisher::{Publisher, TrackSpec};
use crate::clock::SharedClock;
use crate::codec::{AccessUnit as Unit, CodecKind, CodecParams};
use crate::media::timeline::MediaTime;
use crate::metrics::Metrics;
use crate::scope::Scope;
use crate::video_store::{StoreError, VideoStore};

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A camera that sends nothing for this long is treated as gone.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// `rtsp://host[:port]/path`, without credentials.
    pub url: String,
    /// `tcp` (default) or `udp`.
    #[serde(default = "default_transport")]
    pub transport: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Debug output (logs, `{:?}` of the server config) never shows the password.
impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn default_transport() -> String {
    "tcp".into()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Invalid(String),
    #[error("stream {0} does not exist")]
    NoStream(String),
    #[error("stream {0} has no source")]
    NoSource(String),
    #[error("saving the sources failed: {0}")]
    Storage(String),
}

impl SourceConfig {
    /// Checks the URL and moves credentials written into it (`rtsp://user:pass@…`)
    /// into the fields.
    pub fn normalized(mut self) -> Result<Self, SourceError> {
        let mut url = url::Url::parse(&self.url).map_err(|e| SourceError::Invalid(format!("url: {e}")))?;
        if url.scheme() != "rtsp" {
            return Err(SourceError::Invalid("url must be rtsp://".into()));
        }
        if url.host_str().is_none() {
            return Err(SourceError::Invalid("url has no host".into()));
        }
        if !url.username().is_empty() {
            self.username.get_or_insert_with(|| url.username().to_string());
            if let Some(p) = url.password() {
                self.password.get_or_insert_with(|| p.to_string());
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        self.url = url.to_string();
        if !matches!(self.transport.as_str(), "tcp" | "udp") {
            return Err(SourceError::Invalid(format!("transport '{}' is not tcp or udp", self.transport)));
        }
        Ok(self)
    }
}

/// What a source is doing, as the API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    pub connected: bool,
    pub last_error: Option<String>,
    pub reconnects: u64,
    pub frames: u64,
    pub bytes: u64,
    pub frames_per_second: f64,
    pub bitrate_bps: f64,
    /// When the status last changed, ms since the epoch.
    pub updated_ms: i64,
    #[serde(skip)]
    window: Option<(i64, u64, u64)>,
}

impl SourceStatus {
    fn count(&mut self, bytes: usize, now_ms: i64) {
        self.frames += 1;
        self.bytes += bytes as u64;
        let (at, frames, total) = *self.window.get_or_insert((now_ms, self.frames, self.bytes));
        let dt = now_ms - at;
        if dt >= 2000 {
            self.frames_per_second = (self.frames - frames) as f64 * 1000.0 / dt as f64;
            self.bitrate_bps = (self.bytes - total) as f64 * 8000.0 / dt as f64;
            self.window = Some((now_ms, self.frames, self.bytes));
        }
    }
}

/// The layout of `data/sources.json` (see docs/storage.md): 1 keyed sources by stream
/// name; 2 by `ACCOUNT/REGION/STREAM` ([`Scope::key`]); 3 adds `edges`, the edge
/// configurations that set some of the sources.
pub const SOURCES_FORMAT: u32 = 3;

/// A source set by an edge configuration (Kinesis Video's StartEdgeConfigurationUpdate):
/// which hub and secret it names, and the configuration as given, reported back as is
/// (its schedule, uploader and deletion settings have no effect here: the source is
/// pulled continuously and recorded straight into the stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeOrigin {
    pub hub_device_arn: String,
    pub secret_arn: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub config: serde_json::Value,
}

/// `data/sources.json`: the format, then each stream's source by its scoped key, and
/// the edge origin of those an edge configuration set.
#[derive(Serialize, Deserialize)]
struct SourcesFile {
    format: u32,
    sources: BTreeMap<String, SourceConfig>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    edges: BTreeMap<String, EdgeOrigin>,
}

/// Reads `sources.json` into sources (and edge origins) by scoped key. Format 1 (a
/// bare map, or `"format": 1`) keyed them by stream name: those streams are
/// `default_scope`'s. A newer format is refused, never misread.
fn read_sources_file(bytes: &[u8], default_scope: &Scope) -> Result<SourcesFile, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let (found, sources) = match v.get("format") {
        Some(serde_json::Value::Number(n)) => {
            let found = n.as_u64().unwrap_or(u64::MAX);
            if found == 0 || found > u64::from(SOURCES_FORMAT) {
                return Err(format!(
                    "format {n}, but this Kinescope reads format {SOURCES_FORMAT} at most (see docs/storage.md)"
                ));
            }
            (found, serde_json::from_value::<SourcesFile>(v).map_err(|e| e.to_string())?)
        }
        _ => (
            1,
            SourcesFile {
                format: 1,
                sources: serde_json::from_value(v).map_err(|e| e.to_string())?,
                edges: BTreeMap::new(),
            },
        ),
    };
    if found >= 2 {
        if let Some(bad) = sources.sources.keys().chain(sources.edges.keys()).find(|k| Scope::split_key(k).is_none()) {
            return Err(format!("'{bad}' is not an ACCOUNT/REGION/STREAM key"));
        }
        return Ok(sources);
    }
    let by_name = sources.sources.into_iter().map(|(name, config)| (default_scope.key(&name), config)).collect();
    Ok(SourcesFile { format: found as u32, sources: by_name, edges: BTreeMap::new() })
}

/// A source as the API shows it: where, how, and what it is doing; no credentials.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatusView {
    pub url: String,
    pub transport: String,
    pub authenticated: bool,
    pub status: SourceStatus,
}

struct Running {
    config: SourceConfig,
    edge: Option<EdgeOrigin>,
    status: Arc<Mutex<SourceStatus>>,
    task: tokio::task::JoinHandle<()>,
}

/// Every stream's camera source, by the stream's scoped key ([`Scope::key`]).
#[derive(Clone)]
pub struct SourceManager {
    inner: Arc<Mutex<BTreeMap<String, Running>>>,
    /// Held from taking a snapshot of the sources to having it on disk, so saves land
    /// in the order their changes were made.
    saving: Arc<tokio::sync::Mutex<()>>,
    path: PathBuf,
    store: VideoStore,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    /// Where cameras may be: a source's address outside it is refused.
    egress: crate::egress::EgressPolicy,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SourceManager {
    /// Loads `data/sources.json` and starts every source in it and in `extra` (the
    /// config file's, by stream name in `default_scope`; they win).
    pub fn start(
        data_dir: &Path,
        store: VideoStore,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        default_scope: &Scope,
        extra: BTreeMap<String, SourceConfig>,
        egress: crate::egress::EgressPolicy,
    ) -> Result<Self, SourceError> {
        let path = data_dir.join("sources.json");
        let (mut saved, mut edges) = match std::fs::read(&path) {
            Ok(b) => {
                let file = read_sources_file(&b, default_scope)
                    .map_err(|e| SourceError::Storage(format!("{}: {e}", path.display())))?;
                (file.sources, file.edges)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), BTreeMap::new()),
            Err(e) => return Err(SourceError::Storage(e.to_string())),
        };
        for (name, config) in extra {
            let key = default_scope.key(&name);
            edges.remove(&key);
            saved.insert(key, config);
        }
        let m = SourceManager {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            saving: Arc::new(tokio::sync::Mutex::new(())),
            path,
            store,
            clock,
            metrics,
            egress,
        };
        for (key, config) in saved {
            let Some((scope, stream)) = Scope::split_key(&key) else { continue };
            if let Err(e) = m.attach(&scope, stream, config, edges.remove(&key)) {
                tracing::warn!(stream = %key, error = %e, "camera source not started");
            }
        }
        Ok(m)
    }

    /// Writes the sources as they are now to `sources.json`, the fsyncs off the
    /// runtime's threads.
    async fn save(&self) -> Result<(), SourceError> {
        let _order = self.saving.lock().await;
        let file = {
            let all = lock(&self.inner);
            SourcesFile {
                format: SOURCES_FORMAT,
                sources: all.iter().map(|(k, r)| (k.clone(), r.config.clone())).collect(),
                edges: all.iter().filter_map(|(k, r)| Some((k.clone(), r.edge.clone()?))).collect(),
            }
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| SourceError::Storage(e.to_string()))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || crate::durable_file::replace(&path, &bytes, 0o600))
            .await
            .map_err(|e| SourceError::Storage(e.to_string()))?
            .map_err(|e| SourceError::Storage(e.to_string()))
    }

    /// Attaches (or replaces) the source of `stream` (of `scope`), starts pulling it,
    /// and saves the sources.
    pub async fn set(&self, scope: &Scope, stream: &str, config: SourceConfig) -> Result<(), SourceError> {
        self.attach(scope, stream, config, None)?;
        self.save().await
    }

    /// Attaches (or replaces) the source an edge configuration names, keeping its origin
    /// (its first creation time survives updates), and saves the sources.
    pub async fn set_from_edge(
        &self,
        scope: &Scope,
        stream: &str,
        config: SourceConfig,
        mut edge: EdgeOrigin,
    ) -> Result<EdgeOrigin, SourceError> {
        if let Some((earlier, _)) = self.edge(scope, stream) {
            edge.created_ms = earlier.created_ms;
        }
        self.attach(scope, stream, config, Some(edge.clone()))?;
        self.save().await?;
        Ok(edge)
    }

    /// The edge origin of a stream's source, if an edge configuration set it, and the
    /// source's status.
    pub fn edge(&self, scope: &Scope, stream: &str) -> Option<(EdgeOrigin, SourceStatus)> {
        let all = lock(&self.inner);
        let r = all.get(&scope.key(stream))?;
        let status = lock(&r.status).clone();
        Some((r.edge.clone()?, status))
    }

    /// Every source of `scope` an edge configuration set: (stream, origin, status), by
    /// stream name.
    pub fn edges(&self, scope: &Scope) -> Vec<(String, EdgeOrigin, SourceStatus)> {
        let prefix = scope.key_prefix();
        let all = lock(&self.inner);
        all.range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, r)| {
                let (_, stream) = Scope::split_key(k)?;
                let status = lock(&r.status).clone();
                Some((stream.to_string(), r.edge.clone()?, status))
            })
            .collect()
    }

    /// Attaches (or replaces) a source and starts pulling it, without saving.
    fn attach(
        &self,
        scope: &Scope,
        stream: &str,
        config: SourceConfig,
        edge: Option<EdgeOrigin>,
    ) -> Result<(), SourceError> {
        let config = config.normalized()?;
        let url = url::Url::parse(&config.url).map_err(|e| SourceError::Invalid(format!("url: {e}")))?;
        self.egress.check_url(&url, &["rtsp"]).map_err(|e| SourceError::Invalid(e.to_string()))?;
        match self.store.resolve(scope, Some(stream), None) {
            Ok(_) => {}
            Err(StoreError::StreamNotFound(_)) => return Err(SourceError::NoStream(stream.to_string())),
            Err(e) => return Err(SourceError::Storage(e.to_string())),
        }
        let status = Arc::new(Mutex::new(SourceStatus::default()));
        let task = tokio::spawn(pull_loop(
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            (scope.clone(), stream.to_string()),
            config.clone(),
            status.clone(),
            self.egress.clone(),
        ));
        if let Some(old) = lock(&self.inner).insert(scope.key(stream), Running { config, edge, status, task }) {
            old.task.abort();
        }
        Ok(())
    }

    pub async fn remove(&self, scope: &Scope, stream: &str) -> Result<(), SourceError> {
        let old =
            lock(&self.inner).remove(&scope.key(stream)).ok_or_else(|| SourceError::NoSource(stream.to_string()))?;
        old.task.abort();
        self.save().await
    }

    /// A stream's source as the API shows it (credentials never included), and its
    /// status.
    pub fn get(&self, scope: &Scope, stream: &str) -> Option<SourceStatusView> {
        let all = lock(&self.inner);
        let r = all.get(&scope.key(stream))?;
        let status = lock(&r.status).clone();
        Some(SourceStatusView {
            url: r.config.url.clone(),
            transport: r.config.transport.clone(),
            authenticated: r.config.username.is_some(),
            status,
        })
    }

    pub fn stop_all(&self) {
        for r in lock(&self.inner).values() {
            r.task.abort();
        }
    }
}

fn set_status(status: &Mutex<SourceStatus>, now_ms: i64, f: impl FnOnce(&mut SourceStatus)) {
    let mut s = lock(status);
    f(&mut s);
    s.updated_ms = now_ms;
}

async fn pull_loop(
    store: VideoStore,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    (scope, stream): (Scope, String),
    config: SourceConfig,
    status: Arc<Mutex<SourceStatus>>,
    egress: crate::egress::EgressPolicy,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let started = clock.now_ms();
        let result = match camera_allowed(&config.url, &egress).await {
            Ok(()) => pull_once(&store, &clock, &metrics, (&scope, &stream), &config, &status).await,
            Err(why) => Err(why),
        };
        let now = clock.now_ms();
        let why = match result {
            Ok(()) => "the camera ended the stream".to_string(),
            Err(e) => e,
        };
        tracing::warn!(stream = %stream, source = %config.url, error = %why, retry_in = ?backoff, "camera source disconnected");
        set_status(&status, now, |s| {
            s.connected = false;
            s.last_error = Some(why);
            s.reconnects += 1;
            s.frames_per_second = 0.0;
            s.bitrate_bps = 0.0;
        });
        // A connection that lasted a while starts the backoff over.
        if now - started > 30_000 {
            backoff = BACKOFF_START;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Whether every address the camera's host resolves to is one the egress policy allows
/// (a name could otherwise lead the server to its own loopback or network).
async fn camera_allowed(url: &str, egress: &crate::egress::EgressPolicy) -> Result<(), String> {
    if egress.is_open() {
        return Ok(());
    }
    let url = url::Url::parse(url).map_err(|e| format!("url: {e}"))?;
    let host = url.host_str().ok_or("the url has no host")?.trim_start_matches('[').trim_end_matches(']');
    let port = url.port().unwrap_or(554);
    let addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| format!("cannot resolve the camera: {e}"))?;
    for a in addrs {
        egress.check(a.ip()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What a failed RTSP exchange with a camera is called in its status: the status code,
/// or the kind of failure, never the bytes the other side sent (a source pointed at
/// some other TCP service must not read that service back to whoever set it).
fn camera_error(e: &retina::Error) -> String {
    if let Some(code) = e.status_code() {
        return format!("the camera answered RTSP status {code}");
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    if first.starts_with("Unable to connect") || first.starts_with("Timeout") {
        // Local socket errors (refused, unreachable, timed out): nothing of the peer's.
        return first.chars().take(160).collect();
    }
    let kind = first.split(':').next().unwrap_or_default().trim();
    match kind {
        "" => "the RTSP exchange with the camera failed".into(),
        k => format!("the RTSP exchange with the camera failed ({})", k.chars().take(60).collect::<String>()),
    }
}

/// What a camera's stream carries, as retina describes it: the codec, and its
/// parameters when known (video parameter sets may only come in band).
fn codec_of(stream: &retina::client::Stream) -> Option<(CodecKind, Option<CodecParams>)> {
    use retina::codec::{ParametersRef, VideoParametersCodec};
    let kind = match (stream.media(), CodecKind::from_sdp_encoding(stream.encoding_name())?) {
        ("video", k) if k.is_video() => k,
        ("audio", k) if !k.is_video() => k,
        _ => return None,
    };
    let params = match stream.parameters() {
        // retina's parameter sets, in the order they come in band.
        Some(ParametersRef::Video(v)) => {
            let sets: Vec<Vec<u8>> = match v.codec_params() {
                VideoParametersCodec::H264 { sps, pps } => vec![sps.to_vec(), pps.to_vec()],
                VideoParametersCodec::H265 { vps, sps, pps } => vec![vps.to_vec(), sps.to_vec(), pps.to_vec()],
                _ => return None,
            };
            CodecParams::from_parameter_sets(kind, &sets)
        }
        Some(ParametersRef::Audio(a)) => {
            CodecParams::from_audio_config(kind, a.extra_data(), a.clock_rate(), a.channels().get())
        }
        _ if kind.is_video() => None,
        // Audio without a configuration: usable only if its codec needs none.
        _ => Some(CodecParams::from_audio_config(
            kind,
            &[],
            stream.clock_rate_hz(),
            stream.channels().map_or(2, |c| c.get()),
        )?),
    };
    Some((kind, params))
}

/// One connection to the camera, until it fails or ends.
async fn pull_once(
    store: &VideoStore,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
    (scope, stream): (&Scope, &str),
    config: &SourceConfig,
    status: &Mutex<SourceStatus>,
) -> Result<(), String> {
    use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions, Transport};
    use retina::codec::CodecItem;

    let record = store.resolve(scope, Some(stream), None).map_err(|e| e.to_string())?;
    let url = url::Url::parse(&config.url).map_err(|e| e.to_string())?;
    let creds = config
        .username
        .clone()
        .map(|username| Credentials { username, password: config.password.clone().unwrap_or_default() });
    let options = SessionOptions::default().creds(creds).user_agent("Kinescope".into());
    let mut session = tokio::time::timeout(FRAME_TIMEOUT, Session::describe(url, options))
        .await
        .map_err(|_| "DESCRIBE timed out".to_string())?
        .map_err(|e| camera_error(&e))?;
    let transport: Transport = config.transport.parse().map_err(|e: retina::Error| e.to_string())?;
    let mut tracks = Vec::new();
    let mut specs = Vec::new();
    for (i, s) in session.streams().iter().enumerate() {
        if let Some((kind, params)) = codec_of(s) {
            specs.push(TrackSpec { params, kind, fmtp: BTreeMap::new(), clock_rate: s.clock_rate_hz() });
            tracks.push(i);
        }
    }
    if tracks.is_empty() {
        return Err("the camera offers no H.264, H.265, AAC or Opus stream".into());
    }
    for &i in &tracks {
        session.setup(i, SetupOptions::default().transport(transport.clone())).await.map_err(|e| camera_error(&e))?;
    }
    let mut demuxed = session
        .play(PlayOptions::default())
        .await
        .map_err(|e| camera_error(&e))?
        .demuxed()
        .map_err(|e| camera_error(&e))?;
    tracing::info!(stream = %stream, source = %config.url, tracks = tracks.len(), "camera source connected");
    set_status(status, clock.now_ms(), |s| {
        s.connected = true;
        s.last_error = None;
    });
    let mut publisher = Publisher::new(store.clone(), record, clock.clone(), metrics.clone(), specs);
    let result = loop {
        let item = match tokio::time::timeout(FRAME_TIMEOUT, demuxed.next()).await {
            Err(_) => break Err(format!("no data from the camera for {FRAME_TIMEOUT:?}")),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(camera_error(&e)),
            Ok(Some(Ok(item))) => item,
        };
        let (stream_id, elapsed, loss, keyframe, data, params) = match item {
            CodecItem::VideoFrame(f) => {
                let params = if f.has_new_parameters() {
                    demuxed.streams().get(f.stream_id()).and_then(codec_of).and_then(|(_, p)| p)
                } else {
                    None
                };
                let loss = u64::from(f.loss());
                (f.stream_id(), f.timestamp().elapsed(), loss, f.is_random_access_point(), f.into_data(), params)
            }
            CodecItem::AudioFrame(f) => {
                (f.stream_id(), f.timestamp().elapsed(), u64::from(f.loss()), true, f.data().to_vec(), None)
            }
            CodecItem::Rtcp(rtcp) => {
                // Sender reports anchor a track on the camera's wall clock.
                let track = tracks.iter().position(|&i| i == rtcp.stream_id());
                if let (Some(track), Some(ts)) = (track, rtcp.rtp_timestamp()) {
                    for pkt in rtcp.pkts() {
                        if let Ok(Some(sr)) = pkt.as_sender_report() {
                            publisher.sender_report(track, MediaTime::Elapsed(ts.elapsed()), sr.ntp_timestamp().0);
                        }
                    }
                }
                continue;
            }
            _ => continue,
        };
        let Some(track) = tracks.iter().position(|&i| i == stream_id) else { continue };
        set_status(status, clock.now_ms(), |s| s.count(data.len(), clock.now_ms()));
        let parameter_sets = params.map(|p| p.parameter_sets()).unwrap_or_default();
        let unit = Unit { rtp_ts: 0, data, keyframe, parameter_sets };
        if let Err(e) = publisher.frame(track, elapsed, loss, unit).await {
            break Err(e.to_string());
        }
    };
    match publisher.finish().await {
        Ok(stats) => {
            tracing::info!(stream = %stream, fragments = stats.fragments, samples = stats.samples, "camera recording paused")
        }
        Err(e) => tracing::warn!(stream = %stream, error = %e, "camera recording ended with an error"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_files_of_every_format_read_and_newer_ones_are_refused() {
        let scope = Scope::new("123456789012", "eu-west-1");
        let key = "123456789012/eu-west-1/door";
        let bare = br#"{"door": {"url": "rtsp://cam/1", "transport": "tcp"}}"#;
        assert_eq!(
            read_sources_file(bare, &scope).unwrap().sources[key].url,
            "rtsp://cam/1",
            "format 1 takes the default scope"
        );
        let v1 = br#"{"format": 1, "sources": {"door": {"url": "rtsp://cam/1", "transport": "tcp"}}}"#;
        assert_eq!(read_sources_file(v1, &scope).unwrap().sources[key].url, "rtsp://cam/1");
        let mut file = read_sources_file(bare, &scope).unwrap();
        file.format = SOURCES_FORMAT;
        let edge = EdgeOrigin {
            hub_device_arn: "arn:aws:iot:eu-west-1:123456789012:thing/hub".into(),
            secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:door".into(),
            created_ms: 1,
            updated_ms: 2,
            config: serde_json::json!({"HubDeviceArn": "arn:aws:iot:eu-west-1:123456789012:thing/hub"}),
        };
        file.edges.insert(key.to_string(), edge.clone());
        let now = serde_json::to_vec(&file).unwrap();
        let other = Scope::new("000000000000", "us-east-1");
        let read = read_sources_file(&now, &other).unwrap();
        assert_eq!(read.sources[key].url, "rtsp://cam/1", "format 2 on keeps its scopes");
        assert_eq!(read.edges[key], edge, "format 3 keeps edge origins");
        let v2 = br#"{"format": 2, "sources": {"123456789012/eu-west-1/door": {"url": "rtsp://cam/1"}}}"#;
        assert!(read_sources_file(v2, &scope).unwrap().edges.is_empty());
        let newer = br#"{"format": 4, "sources": {}, "cameras": []}"#;
        assert!(read_sources_file(newer, &scope).err().unwrap_or_default().contains("format 4"));
        let unscoped = br#"{"format": 2, "sources": {"door": {"url": "rtsp://cam/1", "transport": "tcp"}}}"#;
        assert!(read_sources_file(unscoped, &scope).is_err());
    }
}
