//! Server configuration: flags and `KINESCOPE_*` variables over an optional TOML file
//! over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ingest::fragmenter::FragmentLimits;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    /// The account the key acts in (12 digits); the server's `account_id` if absent.
    #[serde(default)]
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_fragment_bytes: Option<u64>,
    pub max_fragment_duration_ms: Option<i64>,
    pub max_tracks: Option<usize>,
    /// HTTP connections served at once; more are answered 503.
    pub http_max_connections: Option<usize>,
    /// Seconds a request's head may take, and an idle keep-alive connection may wait.
    pub http_header_timeout_secs: Option<u64>,
    /// Seconds a request body (PutMedia's stream too) may send nothing.
    pub http_body_idle_timeout_secs: Option<u64>,
    /// Seconds a response write may make no progress before the reader is dropped.
    pub http_write_timeout_secs: Option<u64>,
    /// RTSP connections served at once; more are answered 503.
    pub rtsp_max_connections: Option<usize>,
    /// Seconds an RTSP session may go without a request or media (TCP or UDP).
    pub rtsp_idle_timeout_secs: Option<u64>,
    /// Seconds an RTSP viewer's socket may take no bytes before the viewer is dropped.
    pub rtsp_write_timeout_secs: Option<u64>,
    /// MiB kept free on the data directory's filesystem: new data is refused below it.
    pub disk_reserve_mb: Option<u64>,
    /// MiB of recently read fragments kept in memory for the next viewers [default: 128].
    pub recent_fragments_mb: Option<u64>,
}

/// The TOML file; every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub http: Option<SocketAddr>,
    pub rtsp: Option<SocketAddr>,
    /// The HTTPS listener (off unless set).
    pub https: Option<SocketAddr>,
    /// PEM certificate chain and private key of the HTTPS listener; without them a
    /// self-signed certificate is made once in `data/tls/`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// URL clients reach the HTTPS listener at [default: https://<https>].
    pub public_https_url: Option<String>,
    #[serde(default)]
    pub webrtc: WebRtcFile,
    #[serde(default)]
    pub egress: EgressFile,
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub public_url: Option<String>,
    pub allow_anonymous: Option<bool>,
    /// `Access-Control-Allow-Origin` of the HLS/DASH playback URLs (default `*`).
    pub cors_allow_origin: Option<String>,
    pub default_retention_hours: Option<u32>,
    pub retention_sweep_secs: Option<u64>,
    #[serde(default)]
    pub access_keys: Vec<AccessKey>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub data_streams: DataStreamsFile,
    #[serde(default)]
    pub delivery_streams: DeliveryStreamsFile,
    /// `[images]`: the threads GetImages and image generation decode on.
    #[serde(default)]
    pub images: ImagesFile,
    /// `[buckets.NAME]`: buckets kept in S3-compatible object stores (endpoint, region,
    /// access_key_id, secret_access_key, bucket); others are `data/buckets/NAME/`.
    #[serde(default)]
    pub buckets: std::collections::HashMap<String, crate::buckets::RemoteBucket>,
    /// `[functions.NAME]`: the URL (`url = "…"`) a Firehose Lambda processor with
    /// `arn:aws:lambda:…:function:NAME` calls.
    #[serde(default)]
    pub functions: std::collections::HashMap<String, FunctionFile>,
    /// `[tables.DATABASE.TABLE]`: `columns = [{ name, type }]`, the schema Firehose
    /// format conversion reads where AWS reads a Glue table.
    #[serde(default)]
    pub tables: std::collections::HashMap<String, std::collections::HashMap<String, TableFile>>,
    /// Create a Kinesis Video stream on its first RTSP ANNOUNCE (default false).
    pub rtsp_create_streams: Option<bool>,
    /// `[sources.STREAM]`: IP cameras to pull (url, transport, username, password).
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, crate::ingest::rtsp_pull::SourceConfig>,
    /// `[secrets]`: `"ARN" = "value"`, what an AWS Secrets Manager ARN names where a
    /// request refers to one (an edge configuration's `MediaUriSecretArn`: the camera's
    /// `rtsp://user:password@host/path`).
    #[serde(default)]
    pub secrets: crate::secrets::SecretValues,
    /// `[cluster]`: run as one node of a deployment on PostgreSQL and a bucket.
    #[serde(default)]
    pub cluster: ClusterFile,
}

/// `[cluster]` in the file (see `docs/scale-out.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`; the embedded stores when unset.
    pub database: Option<String>,
    /// `s3://BUCKET/PREFIX`, where fragment bytes go (the S3 endpoint, region and keys
    /// from the `AWS_*` variables).
    pub media: Option<String>,
    /// The URL other nodes reach this node's HTTP listener at [default: http://<http>].
    pub node_url: Option<String>,
    /// Seconds the writer lease lasts unrenewed, 2–300 [default: 10].
    pub lease_secs: Option<u64>,
}

/// `[webrtc]`: what GetIceServerConfig hands out, and where the server's own peer
/// connections (WHIP, WHEP, storage sessions) listen.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcFile {
    /// TURN server URIs (`turn:host:3478?transport=udp`, `turns:…`).
    #[serde(default)]
    pub turn_uris: Vec<String>,
    /// The secret the TURN server checks credentials with (coturn's
    /// `static-auth-secret` with `use-auth-secret`).
    pub turn_secret: Option<String>,
    /// Lifetime of the credentials, 30–86400 s [default: 3600].
    pub turn_ttl_secs: Option<u32>,
    /// The address WHIP, WHEP and storage-session peer connections bind (their host
    /// candidate) [default: 127.0.0.1; 0.0.0.0 for every interface].
    pub bind_ip: Option<std::net::IpAddr>,
    /// Public addresses a NAT maps to `bind_ip` one to one, advertised beside it.
    #[serde(default)]
    pub public_ips: Vec<std::net::IpAddr>,
    /// The UDP ports peer connections may use, `LOW-HIGH` [default: any].
    pub udp_ports: Option<String>,
    /// Address ranges (`ADDRESS/BITS`) remote ICE candidates may be in [default: any
    /// unicast address]: the server sends connectivity checks only there.
    #[serde(default)]
    pub peer_networks: Vec<String>,
}

/// `[egress]`: where the server's own outbound connections (Lambda processors, HTTP
/// endpoints, camera sources) may go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressFile {
    /// Address ranges allowed besides public addresses once access keys are configured
    /// (`["127.0.0.1/32", "10.20.0.0/16"]`); without keys every address is allowed.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// The HTTPS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    pub addr: SocketAddr,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub public_url: Option<String>,
}

/// `[data_streams]`: the Kinesis Data Streams engine's options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStreamsFile {
    /// Enforce AWS's per-shard throughput limits (default false).
    pub throughput_limits: Option<bool>,
    /// How long created or resharded streams report CREATING/UPDATING (default 0).
    pub update_delay_ms: Option<i64>,
    /// The account's shard limit (default 10,000).
    pub shard_limit: Option<u32>,
}

/// `[tables.DATABASE.TABLE]`: a table's columns.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFile {
    pub columns: Vec<crate::delivery_streams::format_conversion::Column>,
}

/// `[functions.NAME]`: where a Lambda processor's function is served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionFile {
    pub url: String,
}

/// `[delivery_streams]`: the Firehose engine's options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryStreamsFile {
    /// Accept `http://` HTTP endpoint destinations (AWS requires https; default false).
    pub allow_http_endpoints: Option<bool>,
    /// Records one stream may hold for its destination before puts get
    /// ServiceUnavailableException (default 1,000,000).
    pub max_backlog_records: Option<usize>,
    /// Bytes one stream may hold for its destination (default 8 GiB).
    pub max_backlog_mib: Option<u64>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }
}

/// What `serve` runs with, every value settled.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub rtsp: SocketAddr,
    pub https: Option<HttpsConfig>,
    /// TURN servers GetIceServerConfig hands out, when set.
    pub turn: Option<crate::signaling::TurnServers>,
    /// Where WHIP, WHEP and storage-session peer connections listen.
    pub webrtc_network: crate::webrtc::peer::Network,
    /// Where outbound connections made for users' settings may go.
    pub egress: crate::egress::EgressPolicy,
    pub region: String,
    pub account_id: String,
    /// `None`: derived from the bound HTTP address.
    pub public_url: Option<String>,
    pub allow_anonymous: bool,
    pub cors_allow_origin: String,
    pub default_retention_hours: u32,
    pub retention_sweep_secs: u64,
    pub access_keys: Vec<AccessKey>,
    pub limits: FragmentLimits,
    pub http_limits: crate::api::serve::HttpLimits,
    pub rtsp_limits: crate::rtsp::RtspLimits,
    /// Bytes kept free under the data directory (new data is refused below).
    pub disk_reserve_bytes: u64,
    /// Recently read fragments kept in memory (bytes).
    pub recent_fragment_bytes: usize,
    pub data_streams: crate::data_streams::EngineOptions,
    pub delivery_streams: crate::delivery_streams::DeliveryOptions,
    pub images: ImageSettings,
    pub rtsp_create_streams: bool,
    pub sources: std::collections::BTreeMap<String, crate::ingest::rtsp_pull::SourceConfig>,
    pub secrets: crate::secrets::SecretValues,
    /// One node of a deployment on PostgreSQL and a bucket; `None`: the embedded stores.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// `[images]` in the file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesFile {
    /// Image threads [default: half the CPUs, at least one].
    pub threads: Option<usize>,
    /// Render jobs (one GOP each) that may wait for a thread [default: 64].
    pub queue: Option<usize>,
    /// MiB of media the queued and running jobs may hold [default: 256].
    pub queue_mb: Option<u64>,
}

/// The image threads: few enough that decoding never starves ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSettings {
    pub threads: usize,
    pub queue: usize,
    pub queue_bytes: u64,
}

impl ImageSettings {
    fn from_file(f: &ImagesFile) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        ImageSettings {
            threads: f.threads.unwrap_or(cpus / 2).clamp(1, 256),
            queue: f.queue.unwrap_or(64).clamp(1, 4096),
            queue_bytes: f.queue_mb.unwrap_or(256).clamp(1, 1 << 20) * 1024 * 1024,
        }
    }
}

/// Values given on the command line or in the environment (these win over the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http: Option<SocketAddr>,
    pub rtsp: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub public_https_url: Option<String>,
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub public_url: Option<String>,
    pub allow_anonymous: bool,
    pub cors_allow_origin: Option<String>,
    pub default_retention_hours: Option<u32>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub kinesis_throughput_limits: bool,
    pub kinesis_update_delay_ms: Option<i64>,
    pub rtsp_create_streams: bool,
    pub webrtc_ip: Option<std::net::IpAddr>,
    pub webrtc_public_ip: Option<std::net::IpAddr>,
    pub webrtc_udp_ports: Option<String>,
    /// `--egress-allow`: ranges added to `[egress] allow`.
    pub egress_allow: Vec<String>,
    /// `--cluster`, `--media`, `--node-url`, `--cluster-lease-secs`.
    pub cluster: Option<String>,
    pub media: Option<String>,
    pub node_url: Option<String>,
    pub cluster_lease_secs: Option<u64>,
}

fn cidrs<'a>(what: &str, list: impl IntoIterator<Item = &'a String>) -> Result<Vec<crate::egress::Cidr>, ConfigError> {
    list.into_iter().map(|c| c.parse().map_err(|e: String| ConfigError::Invalid(format!("{what}: {e}")))).collect()
}

impl ServerConfig {
    pub fn resolve(file: ConfigFile, o: Overrides) -> Result<Self, ConfigError> {
        let cluster = cluster_config(&file.cluster, &o)?;
        let http = o.http.or(file.http).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4566)));
        let mut access_keys = file.access_keys;
        match (o.access_key_id, o.secret_access_key) {
            (Some(id), Some(secret)) => access_keys.push(AccessKey { id, secret, account_id: None }),
            (None, None) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "KINESCOPE_ACCESS_KEY_ID and KINESCOPE_SECRET_ACCESS_KEY must be set together".into(),
                ))
            }
        }
        let account_id = o.account_id.or(file.account_id).unwrap_or_else(|| "000000000000".into());
        for a in std::iter::once(&account_id).chain(access_keys.iter().filter_map(|k| k.account_id.as_ref())) {
            if !crate::scope::is_account(a) {
                return Err(ConfigError::Invalid(format!("account id '{a}' must be 12 digits")));
            }
        }
        let d = FragmentLimits::default();
        let limits = FragmentLimits {
            max_fragment_bytes: file.limits.max_fragment_bytes.unwrap_or(d.max_fragment_bytes),
            max_fragment_duration_us: file
                .limits
                .max_fragment_duration_ms
                .map_or(d.max_fragment_duration_us, |ms| ms * 1000),
            max_tracks: file.limits.max_tracks.unwrap_or(d.max_tracks),
        };
        let h = crate::api::serve::HttpLimits::default();
        let secs = |v: Option<u64>, default: std::time::Duration| {
            v.map_or(default, |s| std::time::Duration::from_secs(s.max(1)))
        };
        let http_limits = crate::api::serve::HttpLimits {
            max_connections: file.limits.http_max_connections.unwrap_or(h.max_connections).max(1),
            header_timeout: secs(file.limits.http_header_timeout_secs, h.header_timeout),
            body_idle_timeout: secs(file.limits.http_body_idle_timeout_secs, h.body_idle_timeout),
            write_timeout: secs(file.limits.http_write_timeout_secs, h.write_timeout),
            http2: h.http2,
        };
        let r = crate::rtsp::RtspLimits::default();
        let rtsp_limits = crate::rtsp::RtspLimits {
            max_connections: file.limits.rtsp_max_connections.unwrap_or(r.max_connections).max(1),
            idle_timeout: secs(file.limits.rtsp_idle_timeout_secs, r.idle_timeout),
            write_timeout: secs(file.limits.rtsp_write_timeout_secs, r.write_timeout),
            max_tracks: limits.max_tracks,
            max_fragment_bytes: usize::try_from(limits.max_fragment_bytes)
                .unwrap_or(usize::MAX)
                .min(crate::media::fmp4_mux::MAX_FRAGMENT_BYTES),
        };
        let ds = crate::data_streams::EngineOptions::default();
        let data_streams = crate::data_streams::EngineOptions {
            throughput_limits: o.kinesis_throughput_limits || file.data_streams.throughput_limits.unwrap_or(false),
            update_delay_ms: o.kinesis_update_delay_ms.or(file.data_streams.update_delay_ms).unwrap_or(0).max(0),
            shard_limit: file.data_streams.shard_limit.unwrap_or(ds.shard_limit),
            ..ds
        };
        let https = o.https.or(file.https).map(|addr| HttpsConfig {
            addr,
            cert: file.tls_cert.clone(),
            key: file.tls_key.clone(),
            public_url: o.public_https_url.clone().or_else(|| file.public_https_url.clone()),
        });
        if https.as_ref().is_some_and(|h| h.cert.is_some() != h.key.is_some()) {
            return Err(ConfigError::Invalid("tls_cert and tls_key go together: set both or neither".into()));
        }
        let turn = match (&file.webrtc.turn_uris[..], &file.webrtc.turn_secret) {
            ([], _) => None,
            (_, None) => return Err(ConfigError::Invalid("[webrtc] turn_uris needs turn_secret".into())),
            (uris, Some(secret)) => {
                let ttl_secs = file.webrtc.turn_ttl_secs.unwrap_or(3600);
                if !(30..=86_400).contains(&ttl_secs) {
                    return Err(ConfigError::Invalid("[webrtc] turn_ttl_secs must be between 30 and 86400".into()));
                }
                Some(crate::signaling::TurnServers { uris: uris.to_vec(), secret: secret.clone(), ttl_secs })
            }
        };
        let udp_ports = match o.webrtc_udp_ports.as_deref().or(file.webrtc.udp_ports.as_deref()) {
            None => None,
            Some(r) => Some(crate::webrtc::peer::parse_port_range(r).ok_or_else(|| {
                ConfigError::Invalid(format!("WebRTC UDP ports '{r}' must be LOW-HIGH, 1 to 65535, LOW at most HIGH"))
            })?),
        };
        let webrtc_network = crate::webrtc::peer::Network {
            bind_ip: o.webrtc_ip.or(file.webrtc.bind_ip).unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
            public_ips: match o.webrtc_public_ip {
                Some(ip) => vec![ip],
                None => file.webrtc.public_ips.clone(),
            },
            udp_ports,
            peer_networks: cidrs("[webrtc] peer_networks", &file.webrtc.peer_networks)?,
        };
        let egress_allow = cidrs("[egress] allow", file.egress.allow.iter().chain(&o.egress_allow))?;
        // Without access keys whoever writes settings is the operator; with them, only
        // public addresses and what the operator lists.
        let egress = if access_keys.is_empty() {
            crate::egress::EgressPolicy::open()
        } else {
            crate::egress::EgressPolicy::public(egress_allow)
        };
        let delivery_defaults = crate::delivery_streams::DeliveryOptions::default();
        let delivery_streams = crate::delivery_streams::DeliveryOptions {
            allow_http_endpoints: file.delivery_streams.allow_http_endpoints.unwrap_or(false),
            max_backlog_records: file
                .delivery_streams
                .max_backlog_records
                .unwrap_or(delivery_defaults.max_backlog_records),
            max_backlog_bytes: file
                .delivery_streams
                .max_backlog_mib
                .map_or(delivery_defaults.max_backlog_bytes, |m| m.saturating_mul(1 << 20)),
            remote_buckets: file.buckets.clone(),
            functions: file.functions.iter().map(|(name, f)| (name.clone(), f.url.clone())).collect(),
            tables: file
                .tables
                .iter()
                .flat_map(|(db, tables)| tables.iter().map(move |(t, f)| (format!("{db}.{t}"), f.columns.clone())))
                .collect(),
            ..delivery_defaults
        };
        Ok(ServerConfig {
            cluster,
            https,
            turn,
            webrtc_network,
            egress,
            data_streams,
            delivery_streams,
            images: ImageSettings::from_file(&file.images),
            rtsp_create_streams: o.rtsp_create_streams || file.rtsp_create_streams.unwrap_or(false),
            sources: file.sources,
            secrets: file.secrets,
            data_dir: o.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")),
            http,
            rtsp: o.rtsp.or(file.rtsp).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8554))),
            region: o.region.or(file.region).unwrap_or_else(|| "us-east-1".into()),
            account_id,
            public_url: o.public_url.or(file.public_url),
            allow_anonymous: o.allow_anonymous || file.allow_anonymous.unwrap_or(false),
            cors_allow_origin: o.cors_allow_origin.or(file.cors_allow_origin).unwrap_or_else(|| "*".into()),
            default_retention_hours: o.default_retention_hours.or(file.default_retention_hours).unwrap_or(24),
            retention_sweep_secs: file.retention_sweep_secs.unwrap_or(60).max(1),
            access_keys,
            limits,
            http_limits,
            rtsp_limits,
            disk_reserve_bytes: file.limits.disk_reserve_mb.unwrap_or(64).saturating_mul(1024 * 1024),
            recent_fragment_bytes: usize::try_from(file.limits.recent_fragments_mb.unwrap_or(128).min(1 << 20))
                .unwrap_or(usize::MAX)
                .saturating_mul(1024 * 1024),
        })
    }
}

/// The cluster settings: flags over the file; both the database and the media, or
/// neither.
fn cluster_config(file: &ClusterFile, o: &Overrides) -> Result<Option<crate::cluster::ClusterConfig>, ConfigError> {
    let database = o.cluster.clone().or_else(|| file.database.clone());
    let media = o.media.clone().or_else(|| file.media.clone());
    let (database, media) = match (database, media) {
        (None, None) => return Ok(None),
        (Some(d), Some(m)) => (d, m),
        _ => {
            return Err(ConfigError::Invalid(
                "--cluster (the PostgreSQL URL) and --media (s3://BUCKET/PREFIX) go together".into(),
            ))
        }
    };
    if !(database.starts_with("postgres://") || database.starts_with("postgresql://")) {
        return Err(ConfigError::Invalid("--cluster must be a postgres:// URL".into()));
    }
    let media = media.parse().map_err(|e: crate::cluster::ClusterError| ConfigError::Invalid(e.to_string()))?;
    let lease_secs = o.cluster_lease_secs.or(file.lease_secs);
    if lease_secs.is_some_and(|s| !(2..=300).contains(&s)) {
        return Err(ConfigError::Invalid("the cluster lease must last 2 to 300 seconds".into()));
    }
    let node_url = o.node_url.clone().or_else(|| file.node_url.clone());
    if let Some(u) = &node_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) || url::Url::parse(u).is_err() {
            return Err(ConfigError::Invalid(format!("--node-url '{u}' must be an http:// or https:// URL")));
        }
    }
    Ok(Some(crate::cluster::ClusterConfig {
        database,
        media,
        node_url,
        lease_ttl: lease_secs.map_or(crate::cluster::DEFAULT_LEASE_TTL, std::time::Duration::from_secs),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_settings_need_a_database_and_a_bucket() {
        let file = ClusterFile::default();
        let o = |c: Option<&str>, m: Option<&str>| Overrides {
            cluster: c.map(String::from),
            media: m.map(String::from),
            ..Default::default()
        };
        assert!(cluster_config(&file, &o(None, None)).unwrap().is_none());
        assert!(cluster_config(&file, &o(Some("postgres://k@h/db"), None)).is_err());
        assert!(cluster_config(&file, &o(Some("mysql://k@h/db"), Some("s3://bucket/p"))).is_err());
        let c = cluster_config(&file, &o(Some("postgres://k@h/db"), Some("s3://bucket/p"))).unwrap().unwrap();
        assert_eq!((c.media.bucket.as_str(), c.lease_ttl), ("bucket", crate::cluster::DEFAULT_LEASE_TTL));
    }

    #[test]
    fn flags_win_over_file_over_defaults() {
        let file: ConfigFile = toml::from_str(
            r#"
            http = "127.0.0.1:9000"
            region = "eu-west-1"
            [[access_keys]]
            id = "AK1"
            secret = "S1"
            [limits]
            max_tracks = 2
            "#,
        )
        .unwrap();
        let o = Overrides { region: Some("ap-south-1".into()), ..Default::default() };
        let c = ServerConfig::resolve(file, o).unwrap();
        assert_eq!(c.http.port(), 9000);
        assert_eq!(c.region, "ap-south-1");
        assert_eq!(c.public_url, None);
        assert_eq!(c.access_keys, vec![AccessKey { id: "AK1".into(), secret: "S1".into(), account_id: None }]);
        assert_eq!(c.limits.max_tracks, 2);
        assert_eq!(c.default_retention_hours, 24);
    }

    #[test]
    fn webrtc_network_from_the_file_and_the_flags() {
        let file: ConfigFile = toml::from_str(
            r#"
            [webrtc]
            bind_ip = "0.0.0.0"
            public_ips = ["203.0.113.7"]
            udp_ports = "50000-50099"
            "#,
        )
        .unwrap();
        let c = ServerConfig::resolve(file.clone(), Overrides::default()).unwrap();
        assert_eq!(c.webrtc_network.bind_ip, std::net::IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.webrtc_network.public_ips, vec![std::net::IpAddr::from([203, 0, 113, 7])]);
        assert_eq!(c.webrtc_network.udp_ports, Some((50000, 50099)));
        let o = Overrides { webrtc_udp_ports: Some("7-3".into()), ..Default::default() };
        assert!(ServerConfig::resolve(file, o).is_err(), "a backwards range is refused");
        let c = ServerConfig::resolve(ConfigFile::default(), Overrides::default()).unwrap();
        assert_eq!(c.webrtc_network, crate::webrtc::peer::Network::default());
    }

    #[test]
    fn half_a_key_pair_is_refused() {
        let o = Overrides { access_key_id: Some("AK".into()), ..Default::default() };
        assert!(ServerConfig::resolve(ConfigFile::default(), o).is_err());
        assert!(toml::from_str::<ConfigFile>("bogus = 1").is_err());
    }
}
