//! The command line: `kinescope serve` and `kinescope put`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::config::{ConfigFile, Overrides, ServerConfig};
use crate::wire::sigv4;

#[derive(Parser, Debug)]
#[command(
    name = "kinescope",
    version,
    about = "Self-hosted video ingestion and playback, wire-compatible with Kinesis Video Streams"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Push a fragmented MP4 file (or stdin) into a stream with PutMedia.
    Put(PutArgs),
    /// Exit 0 if a server answers `GET /health` (the container health check; no shell
    /// or HTTP tool needed in the image).
    Health(HealthArgs),
    /// Internal: evaluates dynamic partitioning's JQ queries for the server, framed over
    /// stdin and stdout, inside the limits the server sets (not for direct use).
    #[command(hide = true)]
    QueryWorker,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The server's HTTP address [default: http://127.0.0.1:4566]
    #[arg(long, env = "KINESCOPE_HEALTH_URL", default_value = "http://127.0.0.1:4566")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// `kinescope health`: `GET URL/health` must answer 200 within the timeout.
pub async fn health(args: HealthArgs) -> Result<(), String> {
    crate::tls_provider::install();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(args.timeout_secs.max(1)))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/health", args.url.trim_end_matches('/'));
    let resp = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url}: {}", resp.status()))
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "KINESCOPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the index and the media files live [default: ./data]
    #[arg(long, env = "KINESCOPE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for every AWS-compatible HTTP API [default: 127.0.0.1:4566]
    #[arg(long, env = "KINESCOPE_HTTP")]
    pub http: Option<SocketAddr>,
    /// Address of the RTSP server [default: 127.0.0.1:8554]
    #[arg(long, env = "KINESCOPE_RTSP")]
    pub rtsp: Option<SocketAddr>,
    /// Address of the HTTPS listener (the same APIs, TLS; the signalling WebSocket is
    /// `wss://` there) [default: none]
    #[arg(long, env = "KINESCOPE_HTTPS")]
    pub https: Option<SocketAddr>,
    /// URL clients reach the HTTPS listener at [default: https://<--https>]
    #[arg(long, env = "KINESCOPE_PUBLIC_HTTPS_URL")]
    pub public_https_url: Option<String>,
    /// Region in ARNs [default: us-east-1]
    #[arg(long, env = "KINESCOPE_REGION")]
    pub region: Option<String>,
    /// Account id in ARNs, 12 digits [default: 000000000000]
    #[arg(long, env = "KINESCOPE_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// URL clients reach this server at (what GetDataEndpoint returns) [default: http://<--http>]
    #[arg(long, env = "KINESCOPE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Accept unauthenticated requests on a non-loopback address when no keys are set.
    #[arg(long, env = "KINESCOPE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// Access-Control-Allow-Origin for the HLS/DASH playback URLs [default: *]
    #[arg(long, env = "KINESCOPE_CORS_ALLOW_ORIGIN")]
    pub cors_allow_origin: Option<String>,
    /// Retention for streams created without DataRetentionInHours [default: 24]
    #[arg(long, env = "KINESCOPE_DEFAULT_RETENTION_HOURS")]
    pub default_retention_hours: Option<u32>,
    /// Access key id requests must be signed with (SigV4).
    #[arg(long, env = "KINESCOPE_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// Secret of --access-key-id.
    #[arg(long, env = "KINESCOPE_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
    /// Enforce Kinesis Data Streams' per-shard throughput limits (1 MiB/s and 1,000
    /// records/s in, 5 reads/s and 2 MiB/s out), to exercise clients' retry logic.
    #[arg(long, env = "KINESCOPE_KINESIS_THROUGHPUT_LIMITS")]
    pub kinesis_throughput_limits: bool,
    /// How long created or resharded data streams report CREATING/UPDATING [default: 0]
    #[arg(long, env = "KINESCOPE_KINESIS_UPDATE_DELAY_MS")]
    pub kinesis_update_delay_ms: Option<i64>,
    /// Create a stream on its first RTSP publish (ANNOUNCE) when it does not exist.
    #[arg(long, env = "KINESCOPE_RTSP_CREATE_STREAMS")]
    pub rtsp_create_streams: bool,
    /// Address WHIP/WHEP peer connections bind, their host candidate [default: 127.0.0.1;
    /// 0.0.0.0: every interface]
    #[arg(long, env = "KINESCOPE_WEBRTC_IP")]
    pub webrtc_ip: Option<std::net::IpAddr>,
    /// Public address a NAT maps to --webrtc-ip one to one, advertised beside it
    #[arg(long, env = "KINESCOPE_WEBRTC_PUBLIC_IP")]
    pub webrtc_public_ip: Option<std::net::IpAddr>,
    /// UDP ports WHIP/WHEP peer connections may use, LOW-HIGH [default: any]
    #[arg(long, env = "KINESCOPE_WEBRTC_UDP_PORTS")]
    pub webrtc_udp_ports: Option<String>,
    /// Address range (ADDRESS/BITS) outbound connections for users' settings (Lambda
    /// processors, HTTP endpoints, camera sources) may reach besides public addresses,
    /// once access keys are set; repeatable, or comma-separated in the variable
    #[arg(long, env = "KINESCOPE_EGRESS_ALLOW", value_delimiter = ',')]
    pub egress_allow: Vec<String>,
    /// Run as one node of a deployment: the PostgreSQL URL every node shares
    /// (postgres://USER[:PASSWORD]@HOST[:PORT]/DB); needs --media
    #[arg(long, env = "KINESCOPE_CLUSTER", hide_env_values = true)]
    pub cluster: Option<String>,
    /// Where fragment bytes go in cluster mode, s3://BUCKET/PREFIX (endpoint, region and
    /// keys from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY)
    #[arg(long, env = "KINESCOPE_MEDIA")]
    pub media: Option<String>,
    /// The URL other nodes reach this node's HTTP listener at [default: http://<--http>]
    #[arg(long, env = "KINESCOPE_NODE_URL")]
    pub node_url: Option<String>,
    /// Seconds the cluster's writer lease lasts unrenewed, 2-300 [default: 10]
    #[arg(long, env = "KINESCOPE_CLUSTER_LEASE_SECS")]
    pub cluster_lease_secs: Option<u64>,
}

impl ServeArgs {
    pub fn into_config(self) -> Result<ServerConfig, crate::config::ConfigError> {
        let file = match &self.config {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        ServerConfig::resolve(
            file,
            Overrides {
                data_dir: self.data_dir,
                http: self.http,
                rtsp: self.rtsp,
                https: self.https,
                public_https_url: self.public_https_url,
                region: self.region,
                account_id: self.account_id,
                public_url: self.public_url,
                allow_anonymous: self.allow_anonymous,
                cors_allow_origin: self.cors_allow_origin,
                default_retention_hours: self.default_retention_hours,
                access_key_id: self.access_key_id,
                secret_access_key: self.secret_access_key,
                kinesis_throughput_limits: self.kinesis_throughput_limits,
                kinesis_update_delay_ms: self.kinesis_update_delay_ms,
                rtsp_create_streams: self.rtsp_create_streams,
                webrtc_ip: self.webrtc_ip,
                webrtc_public_ip: self.webrtc_public_ip,
                webrtc_udp_ports: self.webrtc_udp_ports,
                egress_allow: self.egress_allow,
                cluster: self.cluster,
                media: self.media,
                node_url: self.node_url,
                cluster_lease_secs: self.cluster_lease_secs,
            },
        )
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum TimecodeArg {
    Relative,
    Absolute,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Stream to push into.
    #[arg(long)]
    pub stream: String,
    /// Create the stream first if it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Server URL.
    #[arg(long, env = "KINESCOPE_ENDPOINT", default_value = "http://127.0.0.1:4566")]
    pub endpoint: String,
    /// Region to sign requests for.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// How fragment times are to be read.
    #[arg(long, value_enum, default_value = "relative")]
    pub timecode_type: TimecodeArg,
    /// Producer start time, epoch seconds (RELATIVE timecodes count from it) [default: now]
    #[arg(long)]
    pub producer_start_timestamp: Option<f64>,
    /// Print no acknowledgements on stdout (progress still goes to stderr).
    #[arg(long)]
    pub quiet: bool,
    /// Fragmented MP4 file, or - for stdin.
    pub input: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("cannot open {0}: {1}")]
    Open(String, std::io::Error),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("server refused: {status} {body}")]
    Refused { status: u16, body: String },
    #[error("{errors} fragment(s) were refused; {persisted} persisted")]
    FragmentErrors { errors: u64, persisted: u64 },
}

struct Signer {
    key: Option<(String, String)>,
    region: String,
}

impl Signer {
    fn from_env(region: &str) -> Self {
        let var = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok();
        let key = match (
            var("KINESCOPE_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            var("KINESCOPE_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => None,
        };
        Signer { key, region: region.to_string() }
    }

    /// Adds `x-amz-date` and, with credentials, a SigV4 `Authorization` header.
    fn sign(
        &self,
        url: &reqwest::Url,
        path: &str,
        mut headers: Vec<(String, String)>,
        payload_hash: &str,
    ) -> Vec<(String, String)> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        headers.push(("host".into(), host));
        headers.push(("x-amz-date".into(), sigv4::format_amz_date(now)));
        if let Some((id, secret)) = &self.key {
            let parts = sigv4::RequestParts { method: "POST", path, query: "", headers: &headers, payload_hash };
            let auth = sigv4::sign(&parts, id, secret, &self.region, "kinesisvideo");
            headers.push(("authorization".into(), auth));
        }
        headers.retain(|(k, _)| k != "host");
        headers
    }
}

async fn create_stream(
    client: &reqwest::Client,
    base: &reqwest::Url,
    signer: &Signer,
    name: &str,
) -> Result<(), PutError> {
    let body = serde_json::json!({ "StreamName": name }).to_string();
    let url = base.join("/createStream").map_err(|_| PutError::Refused { status: 0, body: "bad endpoint".into() })?;
    let headers = signer.sign(
        &url,
        "/createStream",
        vec![("content-type".into(), "application/json".into())],
        &sigv4::sha256_hex(body.as_bytes()),
    );
    let mut req = client.post(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status == 200 {
        eprintln!("created stream {name}");
        Ok(())
    } else if text.contains("ResourceInUseException") {
        Ok(())
    } else {
        Err(PutError::Refused { status, body: text })
    }
}

pub async fn put(args: PutArgs) -> Result<(), PutError> {
    crate::tls_provider::install();
    let client = reqwest::Client::builder().build()?;
    let base = reqwest::Url::parse(&args.endpoint)
        .map_err(|e| PutError::Refused { status: 0, body: format!("bad endpoint: {e}") })?;
    let signer = Signer::from_env(&args.region);
    if args.create {
        create_stream(&client, &base, &signer, &args.stream).await?;
    }

    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if args.input == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(tokio::fs::File::open(&args.input).await.map_err(|e| PutError::Open(args.input.clone(), e))?)
    };
    let sent = Arc::new(AtomicU64::new(0));
    let sent_in_body = sent.clone();
    let body = futures_util::stream::unfold(input, move |mut input| {
        let sent = sent_in_body.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            match input.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), input))
                }
                Err(e) => Some((Err(e), input)),
            }
        }
    });

    let url = base.join("/putMedia").map_err(|_| PutError::Refused { status: 0, body: "bad endpoint".into() })?;
    let mut headers = vec![
        ("x-amzn-stream-name".to_string(), args.stream.clone()),
        (
            "x-amzn-fragment-timecode-type".to_string(),
            match args.timecode_type {
                TimecodeArg::Relative => "RELATIVE".into(),
                TimecodeArg::Absolute => "ABSOLUTE".into(),
            },
        ),
        ("x-amz-content-sha256".to_string(), sigv4::UNSIGNED_PAYLOAD.to_string()),
    ];
    let start = args.producer_start_timestamp.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
    });
    headers.push(("x-amzn-producer-start-timestamp".to_string(), format!("{start:.3}")));
    let headers = signer.sign(&url, "/putMedia", headers, sigv4::UNSIGNED_PAYLOAD);
    let mut req = client.post(url).body(reqwest::Body::wrap_stream(body));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp.text().await.unwrap_or_default();
        return Err(PutError::Refused { status, body });
    }

    let started = Instant::now();
    let (mut persisted, mut errors) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    let mut pending = Vec::new();
    let mut acks = resp.bytes_stream();
    let mut stdout_closed = false;
    while let Some(chunk) = acks.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line).trim().to_string();
            if text.is_empty() {
                continue;
            }
            let ack: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
            match ack.get("EventType").and_then(|v| v.as_str()) {
                Some("PERSISTED") => persisted += 1,
                Some("ERROR") => {
                    errors += 1;
                    eprintln!("error: {text}");
                }
                _ => {}
            }
            if !args.quiet && !stdout_closed {
                // A reader that went away (`| head`) stops the acknowledgements, not
                // the upload: it goes on, with progress on stderr, and ends as usual.
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                    stdout_closed = true;
                }
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&sent, persisted, errors, started);
        }
    }
    progress(&sent, persisted, errors, started);
    if errors > 0 {
        return Err(PutError::FragmentErrors { errors, persisted });
    }
    Ok(())
}

fn progress(sent: &AtomicU64, persisted: u64, errors: u64, started: Instant) {
    let bytes = sent.load(Ordering::Relaxed) as f64;
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    eprintln!(
        "{persisted} fragments persisted, {errors} refused, {:.2} MB sent, {:.2} MB/s",
        bytes / 1e6,
        bytes / 1e6 / secs
    );
}
