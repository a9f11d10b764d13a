//! Reading directory buckets: an object's metadata and bytes, the buckets an account
//! owns, and listings in key order (S3's ListObjectsV2: prefix, delimiter, a start
//! after a key, pages).
//!
//! A listing walks the bucket's directories in key order: each directory's entries
//! sorted by the key text they stand for (a directory `a` as `a/`, so `a-b` comes
//! before everything under `a/`, as in S3's byte order), skipping subtrees that hold
//! nothing after the start key or under the prefix, and with `/` as the delimiter
//! taking a directory as one common prefix without entering it. Its cost grows with
//! the directories it reads, not with the page alone (an index of keys would make it
//! flat in bucket size).

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

fn info(key: String, meta: &std::fs::Metadata) -> ObjectInfo {
    ObjectInfo { key, size: meta.len(), modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), etag: etag(meta) }
}

/// Walk state of one listing.
struct Walk<'a> {
    req: ListRequest<'a>,
    page: ListPage,
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
        // The entries' types come with the directory (no stat per entry on the common
        // filesystems); sizes and times are read for the keys a page takes.
        let mut entries: Vec<(String, PathBuf, std::fs::FileType)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temporary(&name) {
                continue;
            }
            let kind = entry.file_type()?;
            let mut key = format!("{key_prefix}{}", unescape_part(&name));
            if kind.is_dir() {
                key.push('/');
            }
            entries.push((key, entry.path(), kind));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, path, kind) in entries {
            if kind.is_dir() {
                if !self.may_hold(&key) {
                    continue;
                }
                // With `/` as the delimiter a directory past the prefix is one common
                // prefix: no need to read it (unless it holds nothing).
                let whole = self.req.delimiter == Some("/")
                    && key.starts_with(self.req.prefix)
                    && key.len() > self.req.prefix.len();
                if whole && std::fs::read_dir(&path)?.next().is_some() {
                    let common = key.clone();
                    if !self.offer_prefix(common) {
                        return Ok(false);
                    }
                    continue;
                }
                if !self.dir(&path, &key)? {
                    return Ok(false);
                }
            } else if kind.is_file() && !self.offer(key, &path)? {
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

    /// One page of `bucket`'s keys (blocking: it reads directories).
    pub fn list(&self, bucket: &str, req: ListRequest<'_>) -> Result<ListPage, BucketError> {
        let mut walk = Walk { req, page: ListPage::default() };
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
}
