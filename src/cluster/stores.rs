//! Every engine's storage on the cluster backend: the fenced database and the media
//! bucket, with the keys every node must share (receipt handles, shard iterators,
//! page tokens, playback sessions, STS sessions, publish tokens) kept in the database
//! instead of the data directory.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};

use super::ClusterError;
use crate::postgres::{failed, Database, Param};
use crate::storage_failure::StorageFailure;

/// `s3://BUCKET[/PREFIX]`, where fragment bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLocation {
    pub bucket: String,
    pub prefix: String,
}

impl std::str::FromStr for MediaLocation {
    type Err = ClusterError;

    fn from_str(url: &str) -> Result<Self, ClusterError> {
        let bad = |why: &str| ClusterError::Config(format!("--media '{url}': {why} (expected s3://BUCKET/PREFIX)"));
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad("the bucket name is not valid"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(bad("the prefix may not hold empty, '.' or '..' parts"));
        }
        let prefix = if prefix.is_empty() { "media" } else { prefix };
        Ok(MediaLocation { bucket: bucket.into(), prefix: prefix.into() })
    }
}

/// The bucket client, configured the usual way: `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`, and
/// an endpoint from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` for an S3-compatible
/// server (plain `http://` allowed only when the endpoint says so).
pub fn media_bucket(location: &MediaLocation) -> Result<Arc<dyn ObjectStore>, ClusterError> {
    crate::tls_provider::install();
    // A fragment waits for its PUT before it is acknowledged: a store that does not
    // answer fails the fragment within about half a minute (the producer retries it)
    // instead of holding every stream's ingest for object_store's default three. These
    // go first: the `AWS_*` variables (what `from_env` reads) may override them.
    let mut builder = object_store::aws::AmazonS3Builder::new()
        .with_client_options(
            object_store::ClientOptions::new()
                .with_timeout(std::time::Duration::from_secs(20))
                .with_connect_timeout(std::time::Duration::from_secs(5)),
        )
        .with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        });
    for (name, value) in std::env::vars() {
        if let Some(key) = name.starts_with("AWS_").then(|| name.to_ascii_lowercase().parse().ok()).flatten() {
            builder = builder.with_config(key, value);
        }
    }
    // --media names the bucket (an AWS_BUCKET in the environment does not).
    builder = builder.with_bucket_name(&location.bucket);
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL")).ok();
    if let Some(endpoint) = endpoint.filter(|e| !e.is_empty()) {
        builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
    }
    let region = std::env::var("AWS_REGION").or_else(|_| std::env::var("AWS_DEFAULT_REGION")).ok();
    builder = builder.with_region(region.unwrap_or_else(|| "us-east-1".into()));
    builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| ClusterError::Media(e.to_string()))
}

/// Fails with the store's own words unless the bucket answers (a missing object is
/// an answer), so that a wrong endpoint, bucket or key stops the node at start.
pub async fn check_bucket(store: &Arc<dyn ObjectStore>, location: &MediaLocation) -> Result<(), ClusterError> {
    let probe = object_store::path::Path::from(format!("{}/.kinescope-probe", location.prefix));
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), store.head(&probe)).await;
    match answer {
        Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
        Ok(Err(e)) => Err(ClusterError::Media(format!("s3://{}: {e}", location.bucket))),
        Err(_) => Err(ClusterError::Media(format!("s3://{} did not answer within 30 s", location.bucket))),
    }
}

/// The storage a serving node opens its engines on.
#[derive(Clone)]
pub struct ClusterStores {
    pub db: Database,
    pub media: Arc<dyn ObjectStore>,
    pub media_prefix: String,
}

impl ClusterStores {
    /// The video store's catalog, index and media. Media requests run on the
    /// database's runtime (never on a runtime whose workers wait for them).
    pub fn video_backend(&self) -> crate::video_store::StoreBackend {
        use crate::video_store::{object_media::ObjectMedia, postgres_index};
        crate::video_store::StoreBackend {
            catalog: Arc::new(postgres_index::PgStreamCatalog::new(self.db.clone())),
            index: Arc::new(postgres_index::PgFragmentIndex::new(self.db.clone())),
            media: Arc::new(ObjectMedia::new(self.media.clone(), &self.media_prefix, self.db.handle())),
        }
    }

    /// What a writer does once, at takeover, before opening the engines: segment ids
    /// of its own epoch (`epoch << 32` up), so that a former writer's late object PUTs
    /// (the fence covers the database, not the bucket) land under other keys.
    pub fn begin_epoch(&self, epoch: u64) -> Result<(), crate::video_store::StoreError> {
        crate::video_store::postgres_index::PgFragmentIndex::new(self.db.clone()).start_segments_at(epoch << 32)
    }

    pub fn queues(&self) -> Arc<dyn crate::queues::store::QueueStorage> {
        Arc::new(crate::queues::postgres::PgQueues::new(self.db.clone()))
    }

    pub fn data_stream_meta(&self) -> Arc<dyn crate::data_streams::meta_store::DataStreamMetaStore> {
        Arc::new(crate::data_streams::postgres::PgDataStreamMeta::new(self.db.clone()))
    }

    pub fn record_logs(&self) -> Arc<dyn crate::data_streams::record_log::RecordLogs> {
        Arc::new(crate::data_streams::postgres_log::PgRecordLogs::new(self.db.clone()))
    }

    pub fn delivery_meta(&self) -> Arc<dyn crate::delivery_streams::meta_store::DeliveryMetaStore> {
        Arc::new(crate::delivery_streams::postgres::PgDeliveryMeta::new(self.db.clone()))
    }

    pub fn stream_queues(&self) -> Arc<dyn crate::stream_queues::store::StreamQueueStore> {
        Arc::new(crate::stream_queues::postgres::PgStreamQueues::new(self.db.clone()))
    }

    pub fn channels(&self) -> Arc<dyn crate::signaling::channel_store::ChannelStore> {
        Arc::new(crate::signaling::postgres::PgChannels::new(self.db.clone()))
    }

    pub fn event_cursors(&self) -> Arc<dyn crate::stream_events::cursors::CursorStore> {
        Arc::new(crate::stream_events::postgres::PgCursors::new(self.db.clone()))
    }

    /// The deployment's key `name`, made (random) by the first node that asks.
    pub fn key(&self, name: &str) -> Result<[u8; 32], StorageFailure> {
        const STORE: &str = "the cluster keys";
        let fresh = crate::secrets::random_bytes::<32>().map_err(|e| StorageFailure::caused(STORE, e))?;
        self.db.execute(
            STORE,
            "INSERT INTO cluster_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            vec![Param::Text(name.into()), Param::Bytes(fresh.to_vec())],
        )?;
        let rows =
            self.db.query(STORE, "SELECT key FROM cluster_keys WHERE name = $1", vec![Param::Text(name.into())])?;
        let key: Vec<u8> = rows.first().map(|r| r.get(0)).ok_or_else(|| StorageFailure::new(STORE))?;
        key.try_into()
            .map_err(|_| failed(STORE, std::io::Error::other(format!("cluster key '{name}' is not 32 bytes"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_urls_name_a_bucket_and_a_prefix() {
        let l: MediaLocation = "s3://video-archive/site-a/cams/".parse().unwrap();
        assert_eq!(l, MediaLocation { bucket: "video-archive".into(), prefix: "site-a/cams".into() });
        let l: MediaLocation = "s3://video-archive".parse().unwrap();
        assert_eq!(l.prefix, "media");
        for bad in ["http://b/p", "s3://", "s3://Upper/p", "s3://ab/p", "s3://bucket/a/../b", "s3://bucket/a//b"] {
            assert!(bad.parse::<MediaLocation>().is_err(), "{bad}");
        }
    }
}
