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
//!
//! A bucket belongs to one account. A remote bucket's is its `account_id` in the
//! configuration (the server's account if absent); a directory bucket's is recorded in
//! `data/buckets/.owners.json` by the first account that writes to it or names it as a
//! destination (a delivery stream, image generation), and a directory that predates
//! the record belongs to the server's account. Writes and claims by any other account
//! are refused ([`BucketError::AccessDenied`]), as S3 refuses another account's bucket.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};

pub mod multipart;
pub mod read;

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
    /// The account the bucket belongs to [default: the server's account].
    pub account_id: Option<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// The longest object key S3 accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest part of a key between two `/` that a directory bucket can hold as a file
/// or directory name (the filesystem's NAME_MAX, with room for the temporary name).
pub const MAX_KEY_PART_BYTES: usize = 200;

/// Whether `key` can name an object in every kind of bucket: at most
/// [`MAX_KEY_BYTES`], each `/`-separated part at most [`MAX_KEY_PART_BYTES`].
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("an object key is 1 to {MAX_KEY_BYTES} bytes; this one is {}", key.len()));
    }
    match key.split('/').find(|p| p.len() > MAX_KEY_PART_BYTES) {
        Some(p) => Err(format!(
            "a part of an object key between slashes is at most {MAX_KEY_PART_BYTES} bytes; one is {}",
            p.len()
        )),
        None => Ok(()),
    }
}

/// Why an object was not written or a bucket not claimed.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("Access Denied: bucket '{bucket}' belongs to another account")]
    AccessDenied { bucket: String },
    #[error("the object key cannot be written: {0}")]
    InvalidKey(String),
    #[error("the bucket store failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Why the buckets could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum BucketSetupError {
    #[error("{path} is not a bucket ownership record ({source}); fix or move it")]
    UnreadableOwners { path: PathBuf, source: serde_json::Error },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("[buckets.{bucket}] account_id '{account}' must be 12 digits")]
    BadAccount { bucket: String, account: String },
    #[error("[buckets.{bucket}] endpoint: {source}")]
    BadEndpoint { bucket: String, source: url::ParseError },
    #[error("[buckets.{bucket}]: {source}")]
    Store { bucket: String, source: object_store::Error },
}

impl BucketError {
    /// Whether trying again later could succeed (a disk that fills, a store that is
    /// down), as opposed to a write that can never be made.
    pub fn is_transient(&self) -> bool {
        matches!(self, BucketError::Io(_))
    }
}

/// Who owns the directory buckets.
#[derive(Debug)]
struct Owners {
    /// `data/buckets/.owners.json`: bucket → account.
    path: PathBuf,
    claimed: HashMap<String, String>,
    /// The server's account: owner of directories that predate the record.
    default_account: String,
}

/// The buckets of one server.
#[derive(Clone)]
pub struct Buckets {
    root: PathBuf,
    remote: HashMap<String, Arc<dyn ObjectStore>>,
    /// Remote buckets' accounts.
    remote_owners: HashMap<String, String>,
    /// Directory buckets share the data directory's filesystem and its reserve.
    disk: Arc<crate::disk_space::DiskGuard>,
    owners: Arc<std::sync::Mutex<Owners>>,
    /// Recently read small objects, checked against the file on every read.
    small_objects: Arc<std::sync::Mutex<read::SmallObjects>>,
    /// Sorted listings of large, settled directories.
    listings: Arc<std::sync::Mutex<read::DirListings>>,
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets").field("root", &self.root).field("remote", &self.remote.keys()).finish()
    }
}

impl Buckets {
    /// Buckets as directories under `root` (`data/buckets`), owned by
    /// `default_account` unless the ownership record says otherwise.
    pub fn in_directory(root: impl Into<PathBuf>, default_account: &str) -> Result<Self, BucketSetupError> {
        Buckets::with_remote(root, &HashMap::new(), default_account)
    }

    /// Directory buckets refuse writes that would eat into `disk`'s reserve.
    pub fn with_disk(mut self, disk: Arc<crate::disk_space::DiskGuard>) -> Self {
        self.disk = disk;
        self
    }

    /// Buckets under `root`, except those in `remote`, which live in object stores.
    pub fn with_remote(
        root: impl Into<PathBuf>,
        remote: &HashMap<String, RemoteBucket>,
        default_account: &str,
    ) -> Result<Self, BucketSetupError> {
        let root = root.into();
        let path = root.join(".owners.json");
        let claimed: HashMap<String, String> = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(claimed) => claimed,
                Err(source) => return Err(BucketSetupError::UnreadableOwners { path, source }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(source) => return Err(BucketSetupError::Io { path, source }),
        };
        let owners = Owners { path, claimed, default_account: default_account.to_string() };
        let mut stores: HashMap<String, Arc<dyn ObjectStore>> = HashMap::new();
        let mut remote_owners = HashMap::new();
        for (name, r) in remote {
            let account = r.account_id.clone().unwrap_or_else(|| default_account.to_string());
            if !crate::scope::is_account(&account) {
                return Err(BucketSetupError::BadAccount { bucket: name.clone(), account });
            }
            remote_owners.insert(name.clone(), account);
            let url = url::Url::parse(&r.endpoint)
                .map_err(|source| BucketSetupError::BadEndpoint { bucket: name.clone(), source })?;
            let store = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(r.endpoint.trim_end_matches('/'))
                .with_allow_http(url.scheme() == "http")
                .with_region(&r.region)
                .with_bucket_name(r.bucket.as_deref().unwrap_or(name))
                .with_access_key_id(&r.access_key_id)
                .with_secret_access_key(&r.secret_access_key)
                .with_virtual_hosted_style_request(false)
                .build()
                .map_err(|source| BucketSetupError::Store { bucket: name.clone(), source })?;
            stores.insert(name.clone(), Arc::new(store));
        }
        Ok(Buckets {
            root,
            remote: stores,
            remote_owners,
            disk: Arc::new(crate::disk_space::DiskGuard::unlimited()),
            owners: Arc::new(std::sync::Mutex::new(owners)),
            small_objects: Arc::new(std::sync::Mutex::new(read::SmallObjects::default())),
            listings: Arc::new(std::sync::Mutex::new(read::DirListings::default())),
        })
    }

    /// The account `bucket` belongs to, if anyone's yet.
    pub fn owner(&self, bucket: &str) -> Option<String> {
        if let Some(account) = self.remote_owners.get(bucket) {
            return Some(account.clone());
        }
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(account) = owners.claimed.get(bucket) {
            return Some(account.clone());
        }
        self.root.join(escape_part(bucket)).exists().then(|| owners.default_account.clone())
    }

    /// Makes `bucket` `account`'s if nobody owns it yet (recorded durably); refused if
    /// another account does. Blocking (one small file write on a first claim).
    pub fn claim(&self, account: &str, bucket: &str) -> Result<(), BucketError> {
        if let Some(owner) = self.remote_owners.get(bucket) {
            return if owner == account { Ok(()) } else { Err(BucketError::AccessDenied { bucket: bucket.into() }) };
        }
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        let owner = match owners.claimed.get(bucket) {
            Some(a) => Some(a.clone()),
            None => self.root.join(escape_part(bucket)).exists().then(|| owners.default_account.clone()),
        };
        match owner {
            Some(owner) if owner == account => {
                // A directory that predates the record: write its owner down now.
                if !owners.claimed.contains_key(bucket) {
                    owners.claimed.insert(bucket.to_string(), owner);
                    save_owners(&owners)?;
                }
                Ok(())
            }
            Some(_) => Err(BucketError::AccessDenied { bucket: bucket.into() }),
            None => {
                owners.claimed.insert(bucket.to_string(), account.to_string());
                if let Err(e) = save_owners(&owners) {
                    owners.claimed.remove(bucket);
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    /// Writes an object for `account`: durably into a directory bucket (blocking work
    /// off the runtime), or with one PUT into an object store. Refused if the bucket
    /// is another account's, if the key cannot name an object, or (a directory bucket)
    /// if the data directory's disk reserve would be spent.
    pub async fn write(&self, account: &str, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), BucketError> {
        check_key(key).map_err(BucketError::InvalidKey)?;
        if let Some(store) = self.remote.get(bucket) {
            self.claim(account, bucket)?;
            let path = object_store::path::Path::parse(key)
                .map_err(|e| BucketError::InvalidKey(format!("object key '{key}' is not usable: {e}")))?;
            store.put(&path, bytes.into()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
            return Ok(());
        }
        self.disk.check(bytes.len() as u64).map_err(|e| std::io::Error::new(std::io::ErrorKind::StorageFull, e))?;
        let this = self.clone();
        let (account, bucket, key) = (account.to_string(), bucket.to_string(), key.to_string());
        tokio::task::spawn_blocking(move || {
            this.claim(&account, &bucket)?;
            this.put(&bucket, &key, &bytes).map(|_| ()).map_err(BucketError::from)
        })
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
        let mut w = self.begin_put(bucket, key)?;
        w.write(bytes)?;
        w.commit()
    }

    /// Starts writing an object a piece at a time (blocking I/O): into a hidden
    /// temporary file beside where it goes, made durable and renamed into place by
    /// [`ObjectWriter::commit`]; dropped uncommitted, it leaves nothing behind.
    pub fn begin_put(&self, bucket: &str, key: &str) -> std::io::Result<ObjectWriter> {
        let bucket_dir = self.root.join(escape_part(bucket));
        ObjectWriter::to_path(self.object_path(bucket, key), &bucket_dir, &self.root, true)
    }

    /// Makes a directory bucket for `account` (claimed durably); refused if another
    /// account owns the name. Blocking.
    pub fn create(&self, account: &str, bucket: &str) -> Result<(), BucketError> {
        self.claim(account, bucket)?;
        let dir = self.root.join(escape_part(bucket));
        std::fs::create_dir_all(&dir)?;
        std::fs::File::open(&self.root)?.sync_all()?;
        Ok(())
    }

    /// Removes an object; one that is not there is already removed. Blocking.
    pub fn delete(&self, bucket: &str, key: &str) -> std::io::Result<()> {
        if check_key(key).is_err() {
            return Ok(());
        }
        let path = self.object_path(bucket, key);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {
                std::fs::remove_file(&path)?;
                self.small_objects.lock().unwrap_or_else(|p| p.into_inner()).forget(&path);
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes an empty directory bucket and its owner record, so the name is free
    /// again. `Ok(false)` if it still holds an object. Blocking.
    pub fn remove_empty(&self, bucket: &str) -> Result<bool, BucketError> {
        let dir = self.root.join(escape_part(bucket));
        let holds_object = walkdir_has_file(&dir)?;
        if holds_object {
            return Ok(false);
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.claimed.remove(bucket).is_some() {
            save_owners(&owners)?;
        }
        Ok(true)
    }

    /// Checks that `bytes` more fit above the data directory's disk reserve.
    pub fn check_space(&self, bytes: u64) -> std::io::Result<()> {
        self.disk.check(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::StorageFull, e))
    }
}

/// An object being written (see [`Buckets::begin_put`]).
pub struct ObjectWriter {
    file: Option<std::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    /// The first directory this write made, if any (synced on commit).
    created: Option<PathBuf>,
    bucket_dir: PathBuf,
    root: PathBuf,
}

impl ObjectWriter {
    /// A writer of the file at `path`, under `stop` (the highest directory a commit
    /// syncs) within `root`; with `create_dirs`, the missing directories are made.
    fn to_path(path: PathBuf, stop: &Path, root: &Path, create_dirs: bool) -> std::io::Result<ObjectWriter> {
        let dir = path.parent().ok_or_else(|| std::io::Error::other("a path with no directory"))?.to_path_buf();
        let created = if create_dirs { first_missing(&dir) } else { None };
        if create_dirs {
            std::fs::create_dir_all(&dir)?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&tmp)?;
        Ok(ObjectWriter {
            file: Some(file),
            tmp,
            path,
            dir,
            created,
            bucket_dir: stop.to_path_buf(),
            root: root.to_path_buf(),
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => Err(std::io::Error::other("the object was already committed")),
        }
    }

    /// Makes the object durable and visible at its key; returns its file.
    pub fn commit(mut self) -> std::io::Result<PathBuf> {
        let f = self.file.take().ok_or_else(|| std::io::Error::other("the object was already committed"))?;
        let placed = (|| {
            f.sync_all()?;
            // Delivered objects are for other programs, later: their pages need not
            // stay cached (see release_cached for what that saves).
            crate::durable_file::release_cached(&f);
            drop(f);
            std::fs::rename(&self.tmp, &self.path)
        })();
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e);
        }
        // The new name, and any directory made for it, must be durable too.
        std::fs::File::open(&self.dir)?.sync_all()?;
        if let Some(first) = self.created.take() {
            let mut d = first.parent();
            while let Some(p) = d {
                std::fs::File::open(p)?.sync_all()?;
                if p == self.bucket_dir || p == self.root || !p.starts_with(&self.root) {
                    break;
                }
                d = p.parent();
            }
        }
        Ok(self.path.clone())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Whether any file (an object, or a write in progress) lies under `dir`.
fn walkdir_has_file(dir: &Path) -> std::io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let t = entry.file_type()?;
        if !t.is_dir() || walkdir_has_file(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn save_owners(owners: &Owners) -> Result<(), BucketError> {
    let sorted: std::collections::BTreeMap<&String, &String> = owners.claimed.iter().collect();
    let bytes = serde_json::to_vec_pretty(&sorted).map_err(std::io::Error::other)?;
    if let Some(dir) = owners.path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::durable_file::replace(&owners.path, &bytes, 0o600)?;
    Ok(())
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
    fn a_bucket_is_its_first_accounts_and_refused_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("buckets");
        std::fs::create_dir_all(root.join("legacy")).unwrap();
        let b = Buckets::in_directory(&root, "111111111111").unwrap();
        b.claim("222222222222", "evidence").unwrap();
        assert!(matches!(b.claim("333333333333", "evidence"), Err(BucketError::AccessDenied { .. })));
        b.claim("222222222222", "evidence").unwrap();
        // A directory from before the record is the server's account's.
        assert_eq!(b.owner("legacy").as_deref(), Some("111111111111"));
        assert!(matches!(b.claim("222222222222", "legacy"), Err(BucketError::AccessDenied { .. })));
        assert_eq!(b.owner("nobodys"), None);
        // The record survives a restart.
        let again = Buckets::in_directory(&root, "111111111111").unwrap();
        assert_eq!(again.owner("evidence").as_deref(), Some("222222222222"));
        std::fs::write(root.join(".owners.json"), b"{not json").unwrap();
        assert!(Buckets::in_directory(&root, "111111111111").is_err(), "an unreadable record stops the start");
    }

    #[test]
    fn objects_land_at_their_keys_and_never_outside_the_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buckets::in_directory(dir.path().join("buckets"), "000000000000").unwrap();
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
    fn a_streamed_write_appears_whole_on_commit_and_leaves_nothing_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buckets::in_directory(dir.path().join("buckets"), "000000000000").unwrap();
        let mut w = b.begin_put("up", "a/b.bin").unwrap();
        w.write(b"hel").unwrap();
        assert!(!b.object_path("up", "a/b.bin").exists(), "invisible until committed");
        w.write(b"lo").unwrap();
        assert_eq!(std::fs::read(w.commit().unwrap()).unwrap(), b"hello");
        let mut abandoned = b.begin_put("up", "a/c.bin").unwrap();
        abandoned.write(b"half").unwrap();
        drop(abandoned);
        let names: Vec<String> = std::fs::read_dir(dir.path().join("buckets/up/a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["b.bin"], "no temporary file, no object");
        // Deletes: an object, then one that is not there; an empty bucket is removed.
        b.delete("up", "a/b.bin").unwrap();
        b.delete("up", "a/b.bin").unwrap();
        b.claim("000000000000", "up").unwrap();
        assert!(b.remove_empty("up").unwrap());
        assert_eq!(b.owner("up"), None, "the name is free again");
        b.create("000000000000", "full").unwrap();
        b.put("full", "k", b"x").unwrap();
        assert!(!b.remove_empty("full").unwrap());
    }

    #[test]
    fn a_bucket_that_is_not_a_directory_fails_the_put() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("buckets")).unwrap();
        std::fs::write(dir.path().join("buckets/frames"), b"in the way").unwrap();
        let b = Buckets::in_directory(dir.path().join("buckets"), "000000000000").unwrap();
        assert!(b.put("frames", "k", b"x").is_err());
    }
}
