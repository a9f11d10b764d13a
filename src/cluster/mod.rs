//! One node of a deployment whose nodes share a PostgreSQL database and an
//! S3-compatible bucket (`serve --cluster URL --media s3://BUCKET/PREFIX`).
//!
//! Today's model is a writer and followers: one node at a time holds the writer lease
//! ([`lease`]) and opens the engines on the shared storage ([`stores`]); every other
//! node passes the requests it receives to it ([`forward`]), so any node answers every
//! API and playback URL. When the writer dies its lease expires and another node takes
//! it (a new epoch), opens the engines from what the database and the bucket hold, and
//! serves; the fence in the schema refuses every change from the node whose epoch has
//! passed, so two writers never both change the data. A writer that loses its lease
//! stops (its in-memory state is no longer the truth); run nodes under a supervisor
//! that restarts them. `docs/scale-out.md` gives the failure model and what is left.

pub mod forward;
pub mod lease;
pub mod stores;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;

pub use stores::{ClusterStores, MediaLocation};

/// `serve --cluster …` as configured.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    pub database: String,
    pub media: MediaLocation,
    /// The URL other nodes reach this node's HTTP listener at [default: http://<bound address>].
    pub node_url: Option<String>,
    /// How long the writer lease lasts unrenewed (a dead writer's requests fail this long).
    pub lease_ttl: Duration,
}

pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Database(#[from] crate::postgres::OpenError),
    #[error("the media bucket: {0}")]
    Media(String),
    #[error(transparent)]
    Storage(#[from] crate::storage_failure::StorageFailure),
}

/// The HTTP service of a cluster node: the node's own API once it writes, the
/// forwarder until then.
pub struct NodeService {
    app: RwLock<Option<Router>>,
    forwarder: forward::Forwarder,
}

impl NodeService {
    pub fn new(forwarder: forward::Forwarder) -> Arc<Self> {
        Arc::new(NodeService { app: RwLock::new(None), forwarder })
    }

    /// From now on, requests are answered by `app` (this node writes).
    pub fn serve_locally(&self, app: Router) {
        *self.app.write().unwrap_or_else(|p| p.into_inner()) = Some(app);
    }

    /// The router the listeners serve.
    pub fn router(self: &Arc<Self>) -> Router {
        let node = self.clone();
        Router::new().fallback(move |req: Request<Body>| {
            let node = node.clone();
            async move {
                let app = node.app.read().unwrap_or_else(|p| p.into_inner()).clone();
                match app {
                    Some(app) => match tower::ServiceExt::oneshot(app, req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    },
                    None => node.forwarder.forward(req).await,
                }
            }
        })
    }
}

/// A node name unique to this process: the host's name and random bits.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "node".to_string() } else { host };
    let bits = crate::secrets::random_bytes::<4>().map(u32::from_be_bytes).unwrap_or_else(|_| std::process::id());
    format!("{host}-{bits:08x}")
}
