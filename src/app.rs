//! The server process: opens the engines, spawns background tasks, serves HTTP, and
//! shuts down on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use tokio::net::TcpListener;

use crate::api::auth::AuthState;
use crate::api::kinesis::KinesisState;
use crate::api::kvs::KvsState;
use crate::api::page_token::PageTokens;
use crate::api::sqs::{self, SqsState};
use crate::api::{self, AppState};
use crate::clock::{SharedClock, SystemClock};
use crate::config::ServerConfig;
use crate::credentials::Credentials;
use crate::data_streams::DataStreamEngine;
use crate::metrics::Metrics;
use crate::playback::session::SessionSigner;
use crate::queues::QueueEngine;
use crate::scope::Scope;
use crate::video_store::{StoreConfig, VideoStore};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Refused(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::video_store::StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How long in-flight streams get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub async fn run(config: ServerConfig) -> Result<(), AppError> {
    refuse_unauthenticated_network(&config)?;
    let clock: SharedClock = Arc::new(SystemClock);
    std::fs::create_dir_all(&config.data_dir)?;
    let (http, rtsp) = bind_listeners(&config).await?;
    match config.cluster.clone() {
        None => run_embedded(config, clock, http, rtsp).await,
        Some(cluster) => run_cluster_node(config, cluster, clock, http, rtsp).await,
    }
}

fn refuse_unauthenticated_network(config: &ServerConfig) -> Result<(), AppError> {
    if !config.access_keys.is_empty() {
        return Ok(());
    }
    // Every listener: RTSP publishes and plays with the same (absent) keys.
    let https = config.https.as_ref().map(|h| ("HTTPS", h.addr));
    for (listener, addr) in [("HTTP", config.http), ("RTSP", config.rtsp)].into_iter().chain(https) {
        if !addr.ip().is_loopback() && !config.allow_anonymous {
            return Err(AppError::Refused(format!(
                "no access keys are configured, so requests are not authenticated; refusing to listen for \
                 {listener} on {addr} (not a loopback address). Set KINESCOPE_ACCESS_KEY_ID and \
                 KINESCOPE_SECRET_ACCESS_KEY, or pass --allow-anonymous to accept unauthenticated requests \
                 from the network."
            )));
        }
    }
    let loopback = config.http.ip().is_loopback() && config.rtsp.ip().is_loopback();
    tracing::warn!(
        http = %config.http,
        rtsp = %config.rtsp,
        "no access keys configured: requests are accepted without signature checks{}",
        if loopback { " (loopback only)" } else { " (--allow-anonymous)" }
    );
    Ok(())
}

/// The bound HTTP (and HTTPS) listeners, the URLs clients reach them at, and the
/// connection caps that fit the open-file limit.
struct HttpListeners {
    http: TcpListener,
    http_bound: std::net::SocketAddr,
    public_url: String,
    https: Option<Https>,
    limits: api::serve::HttpLimits,
    /// For the readiness line (tests and operators read it).
    rtsp_bound: std::net::SocketAddr,
}

/// The bound RTSP listener and the URL viewers reach it at.
struct RtspListener {
    listener: TcpListener,
    public: String,
    limits: crate::rtsp::RtspLimits,
}

async fn bind_listeners(config: &ServerConfig) -> Result<(HttpListeners, RtspListener), AppError> {
    let http = TcpListener::bind(config.http).await.map_err(|source| AppError::Bind { addr: config.http, source })?;
    let http_bound = http.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{http_bound}"));
    let rtsp = TcpListener::bind(config.rtsp).await.map_err(|source| AppError::Bind { addr: config.rtsp, source })?;
    let rtsp_bound = rtsp.local_addr()?;
    // Where viewers reach RTSP: the public URL's host, else the bound address.
    let rtsp_public = match url::Url::parse(&public_url).ok().and_then(|u| u.host_str().map(str::to_string)) {
        Some(host) if config.public_url.is_some() => format!("rtsp://{host}:{}", rtsp_bound.port()),
        _ => format!("rtsp://{rtsp_bound}"),
    };
    let https = match &config.https {
        Some(h) => Some(bind_https(h, &config.data_dir).await?),
        None => None,
    };
    // Every connection cap at once must leave descriptors for files and outbound sockets.
    let (mut http_limits, mut rtsp_limits) = (config.http_limits, config.rtsp_limits);
    let listeners = if https.is_some() { 2 } else { 1 };
    let mut caps = vec![http_limits.max_connections; listeners];
    caps.push(rtsp_limits.max_connections);
    let fitted = api::serve::fit_to_descriptors(&caps);
    if fitted != caps {
        tracing::warn!(asked = ?caps, fitted = ?fitted, "connection caps lowered to fit the open-file limit (raise `ulimit -n`)");
        http_limits.max_connections = fitted[0];
        rtsp_limits.max_connections = fitted[listeners];
    }
    Ok((
        HttpListeners { http, http_bound, public_url, https, limits: http_limits, rtsp_bound },
        RtspListener { listener: rtsp, public: rtsp_public, limits: rtsp_limits },
    ))
}

/// HTTP serving tasks: the plain listener's and the HTTPS one's.
type Serving = (tokio::task::JoinHandle<()>, Option<tokio::task::JoinHandle<()>>);

impl HttpListeners {
    fn urls(&self, rtsp: &RtspListener) -> PublicUrls {
        PublicUrls {
            public_url: self.public_url.clone(),
            rtsp_public: rtsp.public.clone(),
            https_url: self.https.as_ref().map(|h| h.public_url.clone()),
        }
    }

    /// Serves `app` until `stop`; logs readiness.
    fn serve(
        self,
        app: axum::Router,
        metrics: Arc<Metrics>,
        stop: tokio::sync::watch::Receiver<bool>,
        role: &str,
    ) -> Serving {
        let https_url = self.https.as_ref().map(|h| h.public_url.clone());
        tracing::info!(
            http = %self.http_bound,
            rtsp = %self.rtsp_bound,
            https = %https_url.as_deref().unwrap_or("off"),
            public_url = %self.public_url,
            role,
            "kinescope ready"
        );
        let limits = self.limits;
        let https_task = self.https.map(|h| {
            tokio::spawn(api::serve::serve(
                h.listener,
                app.clone(),
                limits,
                metrics.clone(),
                stop.clone(),
                Some(h.acceptor),
            ))
        });
        (tokio::spawn(api::serve::serve(self.http, app, limits, metrics, stop, None)), https_task)
    }
}

/// Where the engines keep their state.
enum Storage {
    /// sled and files in the data directory.
    Embedded,
    /// The cluster's database and bucket.
    Cluster(crate::cluster::ClusterStores),
}

impl Storage {
    /// The key `name`: `data/NAME.key`, or the deployment's in the cluster database.
    fn key(&self, data_dir: &std::path::Path, name: &str) -> Result<[u8; 32], AppError> {
        match self {
            Storage::Embedded => Ok(crate::secrets::load_or_create_key(&data_dir.join(format!("{name}.key")))?),
            Storage::Cluster(s) => s.key(name).map_err(|e| AppError::Refused(format!("the cluster key '{name}': {e}"))),
        }
    }
}

/// What the URLs handed to clients are built from.
struct PublicUrls {
    public_url: String,
    rtsp_public: String,
    https_url: Option<String>,
}

/// The engines and servers of a node that writes, and what stops them.
struct Node {
    app: axum::Router,
    signaling_hub: crate::signaling::hub::Hub,
    store: VideoStore,
    delivery_streams: crate::delivery_streams::DeliveryStreamEngine,
    sources: crate::ingest::rtsp_pull::SourceManager,
    events: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Opens every engine on `storage`, starts the background tasks and the RTSP server
/// (on `rtsp_listener`), and builds the HTTP app.
#[allow(clippy::too_many_arguments)]
fn start_node(
    config: &ServerConfig,
    storage: &Storage,
    clock: SharedClock,
    urls: &PublicUrls,
    http_limits: api::serve::HttpLimits,
    rtsp_listener: RtspListener,
    metrics: Arc<Metrics>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
) -> Result<Node, AppError> {
    let default_scope = Scope::new(&config.account_id, &config.region);
    let disk = Arc::new(crate::disk_space::DiskGuard::new(&config.data_dir, config.disk_reserve_bytes));
    let mut store_config = StoreConfig::new(&config.data_dir);
    store_config.default_scope = default_scope.clone();
    store_config.disk = disk.clone();
    store_config.default_retention_hours = config.default_retention_hours;
    store_config.recent_fragment_bytes = config.recent_fragment_bytes;
    let (store, report) = match storage {
        Storage::Embedded => VideoStore::open(store_config, clock.clone())?,
        Storage::Cluster(s) => VideoStore::open_with(store_config, clock.clone(), s.video_backend())?,
    };
    tracing::info!(
        data_dir = %config.data_dir.display(),
        streams = report.streams,
        segments = report.segments,
        fragments = report.fragments,
        truncated_bytes = report.truncated_bytes,
        dropped_fragments = report.dropped_fragments,
        removed_files = report.removed_files,
        unreadable_records = report.unreadable_records,
        "store opened"
    );
    if report.unreadable_records > 0 {
        tracing::warn!(
            unreadable_records = report.unreadable_records,
            quarantine = %config.data_dir.join("quarantine").display(),
            "records the store cannot read were kept as they are and copied to quarantine; nothing of theirs was deleted"
        );
    }
    let public_url = urls.public_url.clone();
    let signaling_hub = crate::signaling::hub::Hub::new(clock.clone(), Default::default());
    let queues = match storage {
        Storage::Embedded => QueueEngine::open(&config.data_dir, clock.clone(), &default_scope),
        Storage::Cluster(s) => {
            QueueEngine::open_with(s.queues(), storage.key(&config.data_dir, "queues")?, clock.clone())
        }
    }
    .map_err(|e| AppError::Refused(format!("cannot open the queues: {e}")))?
    .with_disk_guard(disk.clone());
    let data_stream_options = crate::data_streams::EngineOptions { disk: disk.clone(), ..config.data_streams.clone() };
    let data_streams = match storage {
        Storage::Embedded => {
            DataStreamEngine::open(&config.data_dir, clock.clone(), &default_scope, data_stream_options)
        }
        Storage::Cluster(s) => DataStreamEngine::open_with(
            s.data_stream_meta(),
            s.record_logs(),
            storage.key(&config.data_dir, "data_streams")?,
            clock.clone(),
            data_stream_options,
        ),
    }
    .map_err(|e| AppError::Refused(format!("cannot open the data streams: {e}")))?;
    let stream_queues = match storage {
        Storage::Embedded => crate::stream_queues::StreamQueueEngine::open(&config.data_dir, data_streams.clone()),
        Storage::Cluster(s) => {
            crate::stream_queues::StreamQueueEngine::open_with(s.stream_queues(), data_streams.clone())
        }
    }
    .map_err(|e| AppError::Refused(format!("cannot open the stream queues: {e}")))?;
    let signaling = match storage {
        Storage::Embedded => crate::signaling::SignalingEngine::open(&config.data_dir, clock.clone())
            .map_err(|e| AppError::Refused(format!("cannot open the signalling channels: {e}")))?,
        Storage::Cluster(s) => crate::signaling::SignalingEngine::with_store(s.channels(), clock.clone()),
    };
    metrics.recovery_unreadable_records.set(report.unreadable_records as i64);
    let delivery_options = crate::delivery_streams::DeliveryOptions {
        disk: disk.clone(),
        egress: config.egress.clone(),
        default_account: config.account_id.clone(),
        metrics: Some(metrics.clone()),
        data_streams: Some(data_streams.clone()),
        ..config.delivery_streams.clone()
    };
    let delivery_streams = match storage {
        Storage::Embedded => {
            crate::delivery_streams::DeliveryStreamEngine::open(&config.data_dir, clock.clone(), delivery_options)
        }
        Storage::Cluster(s) => crate::delivery_streams::DeliveryStreamEngine::open_with(
            &config.data_dir,
            s.delivery_meta(),
            s.record_logs(),
            clock.clone(),
            delivery_options,
        ),
    }
    .map_err(|e| AppError::Refused(format!("cannot open the delivery streams: {e}")))?;
    let sources = crate::ingest::rtsp_pull::SourceManager::start(
        &config.data_dir,
        store.clone(),
        clock.clone(),
        metrics.clone(),
        &default_scope,
        config.sources.clone(),
        config.egress.clone(),
    )
    .map_err(|e| AppError::Refused(format!("cannot start the camera sources: {e}")))?;
    let credentials = Arc::new(
        config
            .access_keys
            .iter()
            .fold(Credentials::new(default_scope.clone()), |c, k| c.with_key(&k.id, &k.secret, k.account_id.clone())),
    );
    let pages = PageTokens::new(storage.key(&config.data_dir, "page_tokens")?);
    let image_pool = crate::images::RenderPool::start(
        config.images.threads,
        config.images.queue,
        config.images.queue_bytes,
        metrics.clone(),
    )?;
    let images = crate::images::ImageService::new(store.clone(), image_pool, metrics.clone());
    let whip = crate::webrtc::whip::WhipSessions::new(
        store.clone(),
        clock.clone(),
        crate::webrtc::whip::WhipConfig { network: config.webrtc_network.clone(), ..Default::default() },
        metrics.clone(),
    );
    let publish_tokens = Arc::new(crate::webrtc::whip::PublishTokens::new(storage.key(&config.data_dir, "whip")?));
    let kvs = KvsState {
        store: store.clone(),
        metrics: metrics.clone(),
        public_url: public_url.clone(),
        limits: config.limits,
        sessions: Arc::new(SessionSigner::new(storage.key(&config.data_dir, "playback")?)),
        cors_allow_origin: HeaderValue::from_str(&config.cors_allow_origin).map_err(|_| {
            AppError::Refused(format!("cors_allow_origin '{}' is not a valid header value", config.cors_allow_origin))
        })?,
        sources: sources.clone(),
        signaling,
        webrtc: api::kvs::signaling::SignalingSettings::new(
            &public_url,
            urls.https_url.as_deref(),
            config.turn.clone(),
            signaling_hub.clone(),
            stop_rx.clone(),
        ),
        pages: pages.clone(),
        images: images.clone(),
        secrets: Arc::new(config.secrets.clone()),
        data_streams: data_streams.clone(),
        buckets: delivery_streams.buckets().clone(),
        rtsp_url: Some(urls.rtsp_public.clone()),
        whep: crate::webrtc::whep::WhepSessions::new(
            store.clone(),
            crate::webrtc::whep::WhepConfig { network: config.webrtc_network.clone(), ..Default::default() },
            metrics.clone(),
        ),
        publish_tokens: publish_tokens.clone(),
        storage_sessions: crate::webrtc::storage_session::StorageSessions::new(
            signaling_hub.clone(),
            whip.recorder(),
            config.webrtc_network.clone(),
        ),
        whip,
        scope: default_scope.clone(),
    };
    let mut state = AppState::new(
        kvs,
        Some(SqsState {
            engine: queues.clone(),
            base_url: public_url.clone(),
            pages: pages.clone(),
            scope: default_scope.clone(),
        }),
        Some(KinesisState {
            engine: data_streams.clone(),
            stream_queues: stream_queues.clone(),
            channels: crate::stream_channels::ChannelEngine::new(delivery_streams.clone(), data_streams.clone()),
            pages,
            scope: default_scope.clone(),
        }),
        AuthState {
            credentials: credentials.clone(),
            clock: clock.clone(),
            query_namespace: sqs::XML_NAMESPACE,
            publish_tokens: Some(publish_tokens),
            sessions: Arc::new(crate::sts::SessionIssuer::new(storage.key(&config.data_dir, "sts")?)),
            anonymous_hosts: config
                .public_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_string))
                .into_iter()
                .collect(),
        },
    )
    .with_firehose(crate::api::firehose::FirehoseState {
        engine: delivery_streams.clone(),
        scope: default_scope.clone(),
    });

    let targets = crate::stream_events::EventTargets {
        store: store.clone(),
        images,
        queues: queues.clone(),
        data_streams: data_streams.clone(),
        delivery_streams: delivery_streams.clone(),
        metrics: metrics.clone(),
    };
    let events = match storage {
        Storage::Embedded => crate::stream_events::start(targets, &config.data_dir, stop_rx.clone())
            .map_err(|e| AppError::Refused(format!("cannot start the stream events: {e}")))?,
        Storage::Cluster(s) => crate::stream_events::start_with(targets, s.event_cursors(), stop_rx.clone()),
    };
    let rtsp = crate::rtsp::RtspServer::new(
        store.clone(),
        credentials,
        clock.clone(),
        config.rtsp_create_streams,
        crate::secrets::random_bytes::<32>()?,
        metrics.clone(),
    )
    .with_limits(rtsp_listener.limits);
    let background = vec![
        tokio::spawn(sweep_retention(store.clone(), Duration::from_secs(config.retention_sweep_secs))),
        tokio::spawn(sweep_queues(queues.clone())),
        tokio::spawn(rtsp.run(rtsp_listener.listener, stop_rx)),
        tokio::spawn(sweep_data_streams(data_streams.clone())),
    ];
    state.http = http_limits;
    Ok(Node { app: api::router(state), signaling_hub, store, delivery_streams, sources, events, background })
}

impl Node {
    /// Stops the node's work after the stop signal went out: signalling clients told,
    /// HTTP given its grace, events finished, deliveries and the store flushed.
    async fn shutdown(self, (server, https_task): Serving) -> Result<(), AppError> {
        // Signalling clients are told GO_AWAY (so they reconnect elsewhere or later) before
        // the process goes; give their sockets a moment to carry it.
        let go_away_deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.signaling_hub.connections() > 0 && tokio::time::Instant::now() < go_away_deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Long-lived streams (GetMedia followers) would hold graceful shutdown forever.
        if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
            tracing::info!("streams still open after {SHUTDOWN_GRACE:?}; closing them");
        }
        if let Some(t) = https_task {
            t.abort();
        }
        for task in &self.background {
            task.abort();
        }
        self.sources.stop_all();
        // Followers stop between events; what they had not finished is sent again at start.
        if tokio::time::timeout(Duration::from_secs(5), self.events).await.is_err() {
            tracing::warn!("stream events still being sent after 5 s; they resume at the next start");
        }
        self.delivery_streams.shutdown().await;
        self.store.flush()?;
        Ok(())
    }
}

/// The embedded default: this process alone, on its data directory.
async fn run_embedded(
    config: ServerConfig,
    clock: SharedClock,
    http: HttpListeners,
    rtsp: RtspListener,
) -> Result<(), AppError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let urls = http.urls(&rtsp);
    let node =
        start_node(&config, &Storage::Embedded, clock, &urls, http.limits, rtsp, metrics.clone(), stop_rx.clone())?;
    let serving = http.serve(node.app.clone(), metrics, stop_rx, "standalone");
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    node.shutdown(serving).await?;
    tracing::info!("stopped");
    Ok(())
}

/// One node of a deployment (see `cluster`): it forwards requests until it holds the
/// writer lease, then opens the engines on the shared storage and serves them until it
/// is stopped or loses the lease (an error: the process ends, its supervisor restarts
/// it as a follower).
async fn run_cluster_node(
    config: ServerConfig,
    cluster: crate::cluster::ClusterConfig,
    clock: SharedClock,
    http: HttpListeners,
    rtsp: RtspListener,
) -> Result<(), AppError> {
    use crate::cluster::{forward::Forwarder, lease, ClusterStores, NodeService};
    let refused = |what: &str, e: &dyn std::fmt::Display| AppError::Refused(format!("{what}: {e}"));
    if http.http_bound.ip().is_unspecified() && cluster.node_url.is_none() {
        return Err(AppError::Refused(format!(
            "the HTTP listener is bound to {}, which other nodes cannot reach: set --node-url to this node's address",
            http.http_bound
        )));
    }
    let address = cluster.node_url.clone().unwrap_or_else(|| format!("http://{}", http.http_bound));
    let url = cluster.database.clone();
    let db = tokio::task::spawn_blocking(move || crate::postgres::Database::open(&url))
        .await
        .map_err(|e| refused("opening the cluster database", &e))?
        .map_err(|e| refused("the cluster database", &e))?;
    let media = crate::cluster::stores::media_bucket(&cluster.media).map_err(|e| refused("--media", &e))?;
    crate::cluster::stores::check_bucket(&media, &cluster.media).await.map_err(|e| refused("--media", &e))?;
    let node_name = crate::cluster::node_name();
    let lease = lease::WriterLease::new(db, &node_name, &address, cluster.lease_ttl);
    let metrics = Arc::new(Metrics::default());
    let forwarder = Forwarder::new(lease.clone(), metrics.clone()).map_err(|e| refused("--cluster", &e))?;
    let service = NodeService::new(forwarder);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let urls = http.urls(&rtsp);
    let limits = http.limits;
    // A follower does not serve RTSP: its port refuses connections (at once, rather
    // than leaving them unanswered), so that RTSP clients and a TCP load balancer's
    // checks find the writer. The port is bound again at takeover.
    let rtsp_bound = rtsp.listener.local_addr()?;
    let RtspListener { listener: rtsp_listener, public: rtsp_public, limits: rtsp_limits } = rtsp;
    drop(rtsp_listener);
    tracing::info!(node = %node_name, address = %address, "joining the cluster as a follower");
    let serving = http.serve(service.router(), metrics.clone(), stop_rx.clone(), "cluster node");
    let epoch = tokio::select! {
        epoch = lease::take_when_free(&lease) => epoch,
        () = shutdown_signal() => {
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, serving.0).await;
            return Ok(());
        }
    };
    tracing::info!(node = %node_name, epoch, "this node holds the writer lease; opening the engines");
    let url = cluster.database.clone();
    let fenced = tokio::task::spawn_blocking(move || crate::postgres::Database::open_fenced(&url, epoch))
        .await
        .map_err(|e| refused("opening the cluster database", &e))?
        .map_err(|e| refused("the cluster database", &e))?;
    let stores = ClusterStores { db: fenced, media, media_prefix: cluster.media.prefix.clone() };
    let started = async {
        stores.begin_epoch(epoch)?;
        let storage = Storage::Cluster(stores);
        let listener =
            TcpListener::bind(rtsp_bound).await.map_err(|source| AppError::Bind { addr: rtsp_bound, source })?;
        let rtsp = RtspListener { listener, public: rtsp_public, limits: rtsp_limits };
        start_node(&config, &storage, clock, &urls, limits, rtsp, metrics.clone(), stop_rx.clone())
    };
    let node = match started.await {
        Ok(node) => node,
        Err(e) => {
            // Another node may try at once rather than after the lease expires.
            if let Err(release) = lease.release(epoch).await {
                tracing::warn!(error = %release, "the writer lease could not be released; it expires on its own");
            }
            return Err(e);
        }
    };
    service.serve_locally(node.app.clone());
    metrics.cluster_writer.set(1);
    metrics.cluster_epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
    tracing::info!(node = %node_name, epoch, "serving as the cluster's writer");
    let lost = tokio::select! {
        reason = lease::keep(lease.clone(), epoch) => Some(reason),
        () = shutdown_signal() => None,
    };
    match &lost {
        Some(reason) => tracing::error!(reason = %reason, "stopping: this node may no longer write"),
        None => tracing::info!("shutting down"),
    }
    let _ = stop_tx.send(true);
    let stopped = node.shutdown(serving).await;
    match lost {
        Some(reason) => {
            if let Err(e) = stopped {
                tracing::warn!(error = %e, "stopping after the lease was lost");
            }
            Err(AppError::Refused(reason))
        }
        None => {
            stopped?;
            // The next node need not wait for the lease to expire.
            if let Err(e) = lease.release(epoch).await {
                tracing::warn!(error = %e, "the writer lease could not be released; it expires on its own");
            }
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// The HTTPS listener, bound, with its certificate and the URL clients reach it at.
struct Https {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    public_url: String,
}

async fn bind_https(h: &crate::config::HttpsConfig, data_dir: &std::path::Path) -> Result<Https, AppError> {
    let listener = TcpListener::bind(h.addr).await.map_err(|source| AppError::Bind { addr: h.addr, source })?;
    let bound = listener.local_addr()?;
    let public_url = h.public_url.clone().unwrap_or_else(|| format!("https://{bound}"));
    let source = match (&h.cert, &h.key) {
        (Some(cert), Some(key)) => api::tls::CertSource::Files { cert, key },
        _ => {
            let host = url::Url::parse(&public_url).ok().and_then(|u| u.host_str().map(str::to_string));
            let names = host.into_iter().chain([bound.ip().to_string()]).collect();
            api::tls::CertSource::SelfSigned { dir: &data_dir.join("tls"), names }
        }
    };
    let acceptor = api::tls::acceptor(source).map_err(|e| AppError::Refused(format!("HTTPS listener: {e}")))?;
    Ok(Https { listener, acceptor, public_url })
}

async fn sweep_retention(store: VideoStore, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        // The first tick is immediate: retention applies at start as well.
        tick.tick().await;
        match store.sweep_expired().await {
            Ok(s) if s.segments > 0 => {
                tracing::info!(
                    segments = s.segments,
                    fragments = s.fragments,
                    bytes = s.bytes,
                    "retention sweep removed data"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Removes queue messages past retention and FIFO deduplication entries past their
/// window, every second.
async fn sweep_queues(queues: QueueEngine) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        match queues.sweep() {
            Ok(0) => {}
            Ok(n) => tracing::debug!(messages = n, "queue retention sweep"),
            Err(e) => tracing::warn!(error = %e, "queue retention sweep failed"),
        }
    }
}

/// Drops data-stream records past retention, whole segment files at a time.
async fn sweep_data_streams(engine: DataStreamEngine) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.sweep()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(records = n, "data stream retention sweep"),
            Ok(Err(e)) => tracing::warn!(error = %e, "data stream retention sweep failed"),
            Err(e) => tracing::warn!(error = %e, "data stream retention sweep panicked"),
        }
    }
}
