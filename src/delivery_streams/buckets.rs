//! Where `arn:aws:s3:::NAME` puts its objects: by default a directory,
//! `data/buckets/NAME/`, one file per object at its key; or, for a bucket named in the
//! configuration (`[buckets.NAME]`), any S3-compatible object store (endpoint, region,
//! credentials) through the `object_store` crate.
//!
//! A key is a path below the bucket's directory, its `/`-separated parts as
//! directories. Parts that would leave the directory or name nothing (`..`, `.`, the
//! empty part of `a//b`) are written percent-escaped (`%2E%2E`, `%2E`, `%2F`), so no
//! key reaches outside its bucket. An object is written to a hidden temporary file,
//! synced, renamed into place and its directories synced: once `put` returns it
//! survives a crash, and a reader never sees half an object.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};

/// A bucket kept in an S3-compatible object store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteBucket {
    /// The store's URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The bucket's name at the store, if not the name in the ARN.
    pub bucket: Option<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// The buckets of one server.
#[derive(Clone)]
pub struct Buckets {
    root: PathBuf,
    remote: HashMap<String, Arc<dyn ObjectStore>>,
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets").field("root", &self.root).field("remote", &self.remote.keys()).finish()
    }
}

impl Buckets {
    /// Buckets as directories under `root` (`data/buckets`).
    pub fn in_directory(root: impl Into<PathBuf>) -> Self {
        Buckets { root: root.into(), remote: HashMap::new() }
    }

    /// Buckets under `root`, except those in `remote`, which live in object stores.
    pub fn with_remote(root: impl Into<PathBuf>, remote: &HashMap<String, RemoteBucket>) -> Result<Self, String> {
        let mut stores: HashMap<String, Arc<dyn ObjectStore>> = HashMap::new();
        for (name, r) in remote {
            let url = url::Url::parse(&r.endpoint).map_err(|e| format!("[buckets.{name}] endpoint: {e}"))?;
            let store = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(r.endpoint.trim_end_matches('/'))
                .with_allow_http(url.scheme() == "http")
                .with_region(&r.region)
                .with_bucket_name(r.bucket.as_deref().unwrap_or(name))
                .with_access_key_id(&r.access_key_id)
                .with_secret_access_key(&r.secret_access_key)
                .with_virtual_hosted_style_request(false)
                .build()
                .map_err(|e| format!("[buckets.{name}]: {e}"))?;
            stores.insert(name.clone(), Arc::new(store));
        }
        Ok(Buckets { root: root.into(), remote: stores })
    }

    /// Writes an object: durably into a directory bucket (blocking work off the
    /// runtime), or with one PUT into an object store.
    pub async fn write(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> std::io::Result<()> {
        if let Some(store) = self.remote.get(bucket) {
            let path = object_store::path::Path::parse(key)
                .map_err(|e| std::io::Error::other(format!("object key '{key}' is not usable: {e}")))?;
            store.put(&path, bytes.into()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
            return Ok(());
        }
        let this = self.clone();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        tokio::task::spawn_blocking(move || this.put(&bucket, &key, &bytes).map(|_| ()))
            .await
            .map_err(std::io::Error::other)?
    }

    /// The file an object of `bucket` at `key` is written to.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        let mut path = self.root.join(escape_part(bucket));
        for part in key.split('/') {
            path.push(escape_part(part));
        }
        path
    }

    /// Writes an object durably; blocking.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.object_path(bucket, key);
        let dir = path.parent().ok_or_else(|| std::io::Error::other("an object key with no directory"))?;
        let bucket_dir = self.root.join(escape_part(bucket));
        let created = first_missing(dir);
        std::fs::create_dir_all(dir)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            // Delivered objects are for other programs, later: their pages need not
            // stay cached (see release_cached for what that saves).
            crate::durable_file::release_cached(&f);
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The new name, and any directory made for it, must be durable too.
        std::fs::File::open(dir)?.sync_all()?;
        if let Some(first) = created {
            let mut d = first.parent();
            while let Some(p) = d {
                std::fs::File::open(p)?.sync_all()?;
                if p == bucket_dir || p == self.root || !p.starts_with(&self.root) {
                    break;
                }
                d = p.parent();
            }
        }
        Ok(path)
    }
}

/// The highest directory of `dir`'s chain that does not exist yet.
fn first_missing(dir: &Path) -> Option<PathBuf> {
    let mut missing = None;
    let mut d = Some(dir);
    while let Some(p) = d {
        if p.exists() {
            break;
        }
        missing = Some(p.to_path_buf());
        d = p.parent();
    }
    missing
}

fn escape_part(part: &str) -> String {
    match part {
        "" => "%2F".into(),
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        p => p.replace('\0', "%00"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_land_at_their_keys_and_never_outside_the_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buckets::in_directory(dir.path().join("buckets"));
        let p = b.put("frames", "2026/11/29/08/events-1-x", b"abc").unwrap();
        assert_eq!(p, dir.path().join("buckets/frames/2026/11/29/08/events-1-x"));
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        let p = b.put("frames", "../../../etc/passwd", b"no").unwrap();
        assert!(p.starts_with(dir.path().join("buckets/frames")), "{}", p.display());
        let p = b.put("frames", "a//./b", b"x").unwrap();
        assert_eq!(p, dir.path().join("buckets/frames/a/%2F/%2E/b"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("buckets/frames/2026/11/29/08"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_bucket_that_is_not_a_directory_fails_the_put() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("buckets")).unwrap();
        std::fs::write(dir.path().join("buckets/frames"), b"in the way").unwrap();
        let b = Buckets::in_directory(dir.path().join("buckets"));
        assert!(b.put("frames", "k", b"x").is_err());
    }
}
