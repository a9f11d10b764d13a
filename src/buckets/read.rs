//! Reading directory buckets: an object's metadata and bytes, the buckets an account
//! owns, and listings in key order (S3's ListObjectsV2: prefix, delimiter, a start
//! after a key, pages).
//!
//! A listing walks the bucket's directories in key order: each directory's entries
//! sorted by the key text they stand for (a directory `a` as `a/`, so `a-b` comes
//! before everything under `a/`, as in S3's byte order), skipping subtrees that hold
//! nothing after the start key or under the prefix, and with `/` as the delimiter
//! taking a directory as one common prefix without entering it. Large directories'
//! sorted listings are kept in memory while unchanged ([`DirListings`]), and a page
//! starts by binary search at its start key: a page of a settled bucket costs the
//! page's own stats, whatever the bucket's size. A directory written while it is
//! listed is read afresh each time.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use md5::{Digest, Md5};

use super::{escape_part, BucketError, Buckets};

/// What a listing or a HEAD says of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
    /// A quoted strong validator: changes whenever the object is rewritten.
    pub etag: String,
}

/// The largest object [`Buckets::read_object`] reads whole (and may keep in memory).
pub const SMALL_OBJECT_BYTES: u64 = 1 << 20;
/// The bytes of small objects kept in memory, all buckets together.
pub const SMALL_OBJECT_CACHE_BYTES: usize = 64 << 20;

/// An object as a read finds it: small ones whole, in memory; larger ones opened.
#[derive(Debug)]
pub enum ObjectRead {
    Whole(ObjectInfo, bytes::Bytes),
    Open(std::fs::File, ObjectInfo),
}

/// The file identity a kept copy is valid for: objects are only ever replaced by a
/// rename (a new inode), so inode, size and modification time name one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    ino: u64,
    dev: u64,
    len: u64,
    mtime: (i64, i64),
}

impl Version {
    fn of(meta: &std::fs::Metadata) -> Version {
        use std::os::unix::fs::MetadataExt;
        Version { ino: meta.ino(), dev: meta.dev(), len: meta.len(), mtime: (meta.mtime(), meta.mtime_nsec()) }
    }
}

/// Recently read small objects, by path, first in first out within
/// [`SMALL_OBJECT_CACHE_BYTES`]. Every read checks the file's version first, so a copy
/// is never served for an object that changed.
#[derive(Debug, Default)]
pub struct SmallObjects {
    kept: HashMap<PathBuf, (Version, bytes::Bytes)>,
    order: VecDeque<PathBuf>,
    bytes: usize,
}

impl SmallObjects {
    fn get(&self, path: &Path, version: Version) -> Option<bytes::Bytes> {
        self.kept.get(path).filter(|(v, _)| *v == version).map(|(_, b)| b.clone())
    }

    /// Drops the copy of a deleted object.
    pub(super) fn forget(&mut self, path: &Path) {
        if let Some((_, old)) = self.kept.remove(path) {
            self.bytes -= old.len();
            self.order.retain(|p| p != path);
        }
    }

    fn keep(&mut self, path: PathBuf, version: Version, bytes: bytes::Bytes) {
        self.forget(&path);
        while self.bytes + bytes.len() > SMALL_OBJECT_CACHE_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((_, b)) = self.kept.remove(&oldest) {
                self.bytes -= b.len();
            }
        }
        self.bytes += bytes.len();
        self.order.push_back(path.clone());
        self.kept.insert(path, (version, bytes));
    }
}

/// One ListObjectsV2 page's question.
#[derive(Debug, Clone, Copy)]
pub struct ListRequest<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    /// List what sorts after this key (StartAfter, or where a continuation resumes).
    pub after: Option<&'a str>,
    /// Keys whose text starts with this were given as one common prefix already.
    pub skip_prefix: Option<&'a str>,
    pub max_keys: usize,
}

/// One page: objects and common prefixes, each in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    /// More follow; resume after `last`.
    pub truncated: bool,
    /// The last key or common prefix of the page, and whether it is a prefix.
    pub last: Option<(String, bool)>,
}

/// The key text a stored file or directory name stands for (the inverse of
/// `escape_part`).
fn unescape_part(name: &str) -> String {
    match name {
        "%2F" => String::new(),
        "%2E" => ".".into(),
        "%2E%2E" => "..".into(),
        n => n.replace("%00", "\0"),
    }
}

/// A writer's temporary file (`.NAME.UUID.tmp`), never an object.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp") && name.len() > 37
}

fn etag(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = Md5::new();
    h.update(meta.len().to_be_bytes());
    h.update(meta.mtime().to_be_bytes());
    h.update(meta.mtime_nsec().to_be_bytes());
    h.update(meta.ino().to_be_bytes());
    format!("\"{}\"", hex::encode(h.finalize()))
}

/// What a file's metadata says of the object it holds.
pub fn info(key: String, meta: &std::fs::Metadata) -> ObjectInfo {
    ObjectInfo { key, size: meta.len(), modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), etag: etag(meta) }
}

/// Walk state of one listing.
struct Walk<'a> {
    req: ListRequest<'a>,
    page: ListPage,
    listings: &'a std::sync::Mutex<DirListings>,
}

/// One directory entry as a listing sorts it: the key text it stands for (a
/// directory's with its `/`), its name on disk, whether it is a directory.
#[derive(Debug)]
struct DirEntry {
    key: String,
    name: std::ffi::OsString,
    is_dir: bool,
}

/// Directories of at least this many entries keep their sorted listing in memory.
pub const LISTING_CACHE_MIN_ENTRIES: usize = 1000;
/// The most entries kept in memory, all directories together.
pub const LISTING_CACHE_ENTRIES: usize = 1_000_000;

/// Sorted listings of large directories, valid while the directory's modification
/// time is the one read with them. Creating, renaming or removing an entry sets that
/// time to the (coarse) current time, so a listing is kept only when its directory
/// was last changed a second or more before it was read: any later change then moves
/// the time visibly. A directory written continuously is read afresh each time.
#[derive(Debug, Default)]
pub struct DirListings {
    kept: HashMap<PathBuf, (SystemTime, std::sync::Arc<Vec<DirEntry>>)>,
    order: VecDeque<PathBuf>,
    entries: usize,
}

impl DirListings {
    fn get(&self, dir: &Path, modified: SystemTime) -> Option<std::sync::Arc<Vec<DirEntry>>> {
        self.kept.get(dir).filter(|(m, _)| *m == modified).map(|(_, l)| l.clone())
    }

    fn keep(&mut self, dir: PathBuf, modified: SystemTime, listing: std::sync::Arc<Vec<DirEntry>>) {
        if let Some((_, old)) = self.kept.remove(&dir) {
            self.entries -= old.len();
            self.order.retain(|p| p != &dir);
        }
        while self.entries + listing.len() > LISTING_CACHE_ENTRIES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((_, l)) = self.kept.remove(&oldest) {
                self.entries -= l.len();
            }
        }
        self.entries += listing.len();
        self.order.push_back(dir.clone());
        self.kept.insert(dir, (modified, listing));
    }
}

/// `dir`'s entries sorted by key (temporary files left out), from the cache when the
/// directory has not changed since they were read.
fn sorted_entries(
    dir: &Path,
    listings: &std::sync::Mutex<DirListings>,
) -> Result<std::sync::Arc<Vec<DirEntry>>, BucketError> {
    let modified = std::fs::metadata(dir)?.modified()?;
    let lock = || listings.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = lock().get(dir, modified) {
        return Ok(l);
    }
    // The entries' types come with the directory (no stat per entry on the common
    // filesystems).
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if is_temporary(&text) {
            continue;
        }
        let kind = entry.file_type()?;
        let mut key = unescape_part(&text);
        if kind.is_dir() {
            key.push('/');
        } else if !kind.is_file() {
            continue;
        }
        entries.push(DirEntry { key, name, is_dir: kind.is_dir() });
    }
    entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let entries = std::sync::Arc::new(entries);
    let settled = SystemTime::now().duration_since(modified).is_ok_and(|age| age >= std::time::Duration::from_secs(1));
    if entries.len() >= LISTING_CACHE_MIN_ENTRIES && settled && std::fs::metadata(dir)?.modified()? == modified {
        lock().keep(dir.to_path_buf(), modified, entries.clone());
    }
    Ok(entries)
}

impl Walk<'_> {
    fn full(&self) -> bool {
        self.page.objects.len() + self.page.common_prefixes.len() >= self.req.max_keys
    }

    /// Whether anything under `dir_key` (a key prefix ending in `/`) can be listed.
    fn may_hold(&self, dir_key: &str) -> bool {
        let prefix = self.req.prefix;
        let under_prefix = dir_key.starts_with(prefix) || prefix.starts_with(dir_key);
        // Every key under dir_key sorts after dir_key; skip it when all of them come
        // at or before `after`.
        let after_ok = self.req.after.is_none_or(|a| a.starts_with(dir_key) || a < dir_key);
        let skipped = self.req.skip_prefix.is_some_and(|p| dir_key.starts_with(p));
        under_prefix && after_ok && !skipped
    }

    /// Adds a key (or the common prefix it falls under); false once the page is full.
    /// The file's metadata is read only for a key the page takes.
    fn offer(&mut self, key: String, path: &Path) -> Result<bool, BucketError> {
        if !key.starts_with(self.req.prefix)
            || self.req.after.is_some_and(|a| key.as_str() <= a)
            || self.req.skip_prefix.is_some_and(|p| key.starts_with(p))
        {
            return Ok(true);
        }
        if let Some(d) = self.req.delimiter.filter(|d| !d.is_empty()) {
            if let Some(at) = key[self.req.prefix.len()..].find(d) {
                let common = key[..self.req.prefix.len() + at + d.len()].to_string();
                return Ok(self.offer_prefix(common));
            }
        }
        if self.full() {
            self.page.truncated = true;
            return Ok(false);
        }
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            // Deleted since the directory was read: not listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        self.page.last = Some((key.clone(), false));
        self.page.objects.push(info(key, &meta));
        Ok(true)
    }

    fn offer_prefix(&mut self, common: String) -> bool {
        if self.page.last.as_ref().is_some_and(|(l, is_prefix)| *is_prefix && *l == common) {
            return true;
        }
        // Every key under `common` sorts at or before the start: nothing of it is listed.
        if self.req.after.is_some_and(|a| common.as_str() <= a && !a.starts_with(&common)) {
            return true;
        }
        if self.full() {
            self.page.truncated = true;
            return false;
        }
        self.page.last = Some((common.clone(), true));
        self.page.common_prefixes.push(common);
        true
    }

    /// Lists `dir`, whose entries' keys start with `key_prefix`; false once full.
    fn dir(&mut self, dir: &Path, key_prefix: &str) -> Result<bool, BucketError> {
        let entries = sorted_entries(dir, self.listings)?;
        // Start at the first entry that can be listed: the last one sorting before
        // the start key (or the prefix) may be a directory holding it.
        let lower = match self.req.after {
            Some(a) if a > self.req.prefix => a,
            _ => self.req.prefix,
        };
        let first = match lower.strip_prefix(key_prefix) {
            Some(rest) => entries.partition_point(|e| e.key.as_str() < rest).saturating_sub(1),
            None => 0,
        };
        for e in &entries[first..] {
            let key = format!("{key_prefix}{}", e.key);
            let path = dir.join(&e.name);
            if e.is_dir {
                if !self.may_hold(&key) {
                    continue;
                }
                // With `/` as the delimiter a directory past the prefix is one common
                // prefix: no need to read it (unless it holds nothing).
                let whole = self.req.delimiter == Some("/")
                    && key.starts_with(self.req.prefix)
                    && key.len() > self.req.prefix.len();
                if whole && std::fs::read_dir(&path)?.next().is_some() {
                    if !self.offer_prefix(key) {
                        return Ok(false);
                    }
                    continue;
                }
                if !self.dir(&path, &key)? {
                    return Ok(false);
                }
            } else if !self.offer(key, &path)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Buckets {
    /// Whether `bucket` lives in an external object store (its reads go there).
    pub fn is_remote(&self, bucket: &str) -> bool {
        self.remote.contains_key(bucket)
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(escape_part(bucket))
    }

    /// Whether a directory bucket named `bucket` exists.
    pub fn exists(&self, bucket: &str) -> bool {
        self.bucket_dir(bucket).is_dir()
    }

    /// The buckets `account` owns, by name, with when each was made (remote ones: now
    /// unknown, the epoch).
    pub fn owned_by(&self, account: &str) -> Result<Vec<(String, SystemTime)>, BucketError> {
        let mut out = Vec::new();
        match std::fs::read_dir(&self.root) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    let name = unescape_part(&entry.file_name().to_string_lossy());
                    let meta = entry.metadata()?;
                    if !meta.is_dir() || name.starts_with('.') {
                        continue;
                    }
                    if self.owner(&name).as_deref() == Some(account) {
                        out.push((name, meta.created().or_else(|_| meta.modified()).unwrap_or(SystemTime::UNIX_EPOCH)));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        for (name, owner) in &self.remote_owners {
            if owner == account && !out.iter().any(|(n, _)| n == name) {
                out.push((name.clone(), SystemTime::UNIX_EPOCH));
            }
        }
        out.sort();
        Ok(out)
    }

    /// An object's metadata; `None` if there is none at `key`.
    pub fn object_info(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, BucketError> {
        if super::check_key(key).is_err() {
            return Ok(None);
        }
        match std::fs::metadata(self.object_path(bucket, key)) {
            Ok(meta) if meta.is_file() => Ok(Some(info(key.to_string(), &meta))),
            Ok(_) => Ok(None),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// An object opened for reading, with its metadata (taken from the open file, so
    /// they agree); `None` if there is none at `key`.
    pub fn open_object(&self, bucket: &str, key: &str) -> Result<Option<(std::fs::File, ObjectInfo)>, BucketError> {
        if super::check_key(key).is_err() {
            return Ok(None);
        }
        match std::fs::File::open(self.object_path(bucket, key)) {
            Ok(f) => {
                let meta = f.metadata()?;
                if !meta.is_file() {
                    return Ok(None);
                }
                let info = info(key.to_string(), &meta);
                Ok(Some((f, info)))
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// An object for a GET (blocking): a small one (up to [`SMALL_OBJECT_BYTES`]) whole,
    /// from memory when the kept copy is the file's current version; a larger one
    /// opened. `None` if there is none at `key`.
    pub fn read_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRead>, BucketError> {
        if super::check_key(key).is_err() {
            return Ok(None);
        }
        let path = self.object_path(bucket, key);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Ok(None),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let cache = || self.small_objects.lock().unwrap_or_else(|p| p.into_inner());
        if meta.len() <= SMALL_OBJECT_BYTES {
            if let Some(bytes) = cache().get(&path, Version::of(&meta)) {
                return Ok(Some(ObjectRead::Whole(info(key.to_string(), &meta), bytes)));
            }
        }
        let Some((file, info)) = self.open_object(bucket, key)? else { return Ok(None) };
        if info.size > SMALL_OBJECT_BYTES {
            return Ok(Some(ObjectRead::Open(file, info)));
        }
        // The version of the file opened (it may have been replaced since the stat).
        let version = Version::of(&file.metadata()?);
        let mut buf = vec![0u8; info.size as usize];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, 0)?;
        let bytes = bytes::Bytes::from(buf);
        cache().keep(path, version, bytes.clone());
        Ok(Some(ObjectRead::Whole(info, bytes)))
    }

    /// One page of `bucket`'s keys (blocking: it reads directories).
    pub fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage, BucketError> {
        let mut walk = Walk { req, page: ListPage::default(), listings: &self.listings };
        if req.max_keys == 0 {
            return Ok(walk.page);
        }
        let root = self.bucket_dir(bucket);
        match walk.dir(&root, "") {
            Ok(_) => Ok(walk.page),
            Err(BucketError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(walk.page),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_with(keys: &[&str]) -> (tempfile::TempDir, Buckets) {
        let dir = tempfile::tempdir().unwrap();
        let b = Buckets::in_directory(dir.path().join("buckets"), "000000000000").unwrap();
        for k in keys {
            b.put("frames", k, k.as_bytes()).unwrap();
        }
        (dir, b)
    }

    fn keys(p: &ListPage) -> Vec<&str> {
        p.objects.iter().map(|o| o.key.as_str()).collect()
    }

    fn req(prefix: &str, delimiter: Option<&'static str>, after: Option<&str>, max: usize) -> ListRequest<'static> {
        // Leaked for the test's brevity: a few bytes per call.
        let prefix: &'static str = Box::leak(prefix.to_string().into_boxed_str());
        let after: Option<&'static str> = after.map(|a| &*Box::leak(a.to_string().into_boxed_str()));
        ListRequest { prefix, delimiter, after, skip_prefix: None, max_keys: max }
    }

    #[test]
    fn keys_list_in_s3s_byte_order_whatever_the_directories() {
        let (_d, b) = bucket_with(&["a/b", "a-c", "a0", "a/a/z", "b", "a/c"]);
        let all = b.list("frames", req("", None, None, 1000)).unwrap();
        assert_eq!(keys(&all), ["a-c", "a/a/z", "a/b", "a/c", "a0", "b"]);
        assert!(!all.truncated);
        // Pages resume after the last key.
        let first = b.list("frames", req("", None, None, 2)).unwrap();
        assert_eq!((keys(&first), first.truncated), (vec!["a-c", "a/a/z"], true));
        let next = b.list("frames", req("", None, Some("a/a/z"), 2)).unwrap();
        assert_eq!(keys(&next), ["a/b", "a/c"]);
        // A prefix, and a delimiter that folds directories into common prefixes.
        assert_eq!(keys(&b.list("frames", req("a/", None, None, 1000)).unwrap()), ["a/a/z", "a/b", "a/c"]);
        let folded = b.list("frames", req("a/", Some("/"), None, 1000)).unwrap();
        assert_eq!((keys(&folded), folded.common_prefixes.clone()), (vec!["a/b", "a/c"], vec!["a/a/".to_string()]));
        let top = b.list("frames", req("", Some("/"), None, 1000)).unwrap();
        assert_eq!((keys(&top), top.common_prefixes.clone()), (vec!["a-c", "a0", "b"], vec!["a/".to_string()]));
        // A start inside a common prefix keeps the prefix (keys after it roll up to it).
        let inside = b.list("frames", req("", Some("/"), Some("a/b"), 1000)).unwrap();
        assert_eq!((keys(&inside), inside.common_prefixes.clone()), (vec!["a0", "b"], vec!["a/".to_string()]));
        // Another delimiter than `/`.
        let dashed = b.list("frames", req("", Some("-"), None, 1000)).unwrap();
        assert_eq!(dashed.common_prefixes, ["a-"]);
        assert_eq!(b.list("nobucket", req("", None, None, 10)).unwrap(), ListPage::default());
    }

    #[test]
    fn objects_read_back_with_metadata_and_escaped_parts_list_as_their_keys() {
        let (_d, b) = bucket_with(&["cams/cam1/1.jpg", "x//./y"]);
        let i = b.object_info("frames", "cams/cam1/1.jpg").unwrap().unwrap();
        assert_eq!((i.size, i.etag.len()), (15, 34));
        let (mut f, again) = b.open_object("frames", "cams/cam1/1.jpg").unwrap().unwrap();
        assert_eq!(again, i);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "cams/cam1/1.jpg");
        assert!(b.object_info("frames", "cams/cam1").unwrap().is_none(), "a directory is no object");
        assert!(b.object_info("frames", "cams/cam1/1.jpg/more").unwrap().is_none());
        assert_eq!(keys(&b.list("frames", req("x", None, None, 10)).unwrap()), ["x//./y"]);
        assert!(b.exists("frames") && !b.exists("other"));
        assert_eq!(b.owned_by("000000000000").unwrap().len(), 1);
        assert!(b.owned_by("111111111111").unwrap().is_empty());
    }

    /// Sets a directory's modification time `secs` into the past, as if it had settled.
    fn age(dir: &Path, secs: u64) {
        let t = SystemTime::now() - std::time::Duration::from_secs(secs);
        std::fs::File::open(dir).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn a_kept_listing_of_a_large_directory_follows_every_change() {
        let names: Vec<String> = (0..LISTING_CACHE_MIN_ENTRIES + 10).map(|i| format!("k{i:05}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (dir, b) = bucket_with(&refs);
        let root = dir.path().join("buckets").join("frames");
        age(&root, 5);
        let first = b.list("frames", req("", None, None, 3)).unwrap();
        assert_eq!(keys(&first), ["k00000", "k00001", "k00002"]);
        assert_eq!(b.listings.lock().unwrap().kept.len(), 1, "a settled large directory is kept");
        // A page from the middle starts at its key.
        let middle = b.list("frames", req("", None, Some("k00500"), 2)).unwrap();
        assert_eq!(keys(&middle), ["k00501", "k00502"]);
        // A new key and a deleted one show at once (the directory's time moved).
        b.put("frames", "k00000a", b"new").unwrap();
        b.delete("frames", "k00001").unwrap();
        let again = b.list("frames", req("", None, None, 3)).unwrap();
        assert_eq!(keys(&again), ["k00000", "k00000a", "k00002"]);
        // Just changed: read afresh, not kept.
        assert!(b
            .listings
            .lock()
            .unwrap()
            .kept
            .get(&root)
            .is_none_or(|(m, _)| *m != std::fs::metadata(&root).unwrap().modified().unwrap()));
        // With a prefix and a start key inside a subdirectory, through the kept listing.
        b.put("frames", "k00500d/inner", b"x").unwrap();
        age(&root, 5);
        let inside = b.list("frames", req("k00500d/", None, None, 5)).unwrap();
        assert_eq!(keys(&inside), ["k00500d/inner"]);
        let after_inner = b.list("frames", req("", None, Some("k00500d/inner"), 1)).unwrap();
        assert_eq!(keys(&after_inner), ["k00501"]);
    }

    #[test]
    fn a_kept_small_object_is_served_only_while_the_file_is_unchanged() {
        let (_dir, b) = bucket_with(&["a/one"]);
        let read = |b: &Buckets| match b.read_object("frames", "a/one").unwrap() {
            Some(ObjectRead::Whole(info, bytes)) => (info, bytes),
            other => panic!("{other:?}"),
        };
        let (info, bytes) = read(&b);
        assert_eq!(&bytes[..], b"a/one");
        assert_eq!(read(&b).1, bytes);
        assert_eq!(b.small_objects.lock().unwrap().kept.len(), 1);
        // Replaced with bytes of the same length: a new version, read afresh.
        b.put("frames", "a/one", b"A/ONE").unwrap();
        let (info2, bytes2) = read(&b);
        assert_eq!(&bytes2[..], b"A/ONE");
        assert_ne!(info.etag, info2.etag);
        b.delete("frames", "a/one").unwrap();
        assert!(b.read_object("frames", "a/one").unwrap().is_none());
        assert!(b.small_objects.lock().unwrap().kept.is_empty());
        // Over the size limit: opened, not read.
        let big = vec![7u8; SMALL_OBJECT_BYTES as usize + 1];
        b.put("frames", "big", &big).unwrap();
        assert!(
            matches!(b.read_object("frames", "big").unwrap(), Some(ObjectRead::Open(_, i)) if i.size == big.len() as u64)
        );
    }
}
