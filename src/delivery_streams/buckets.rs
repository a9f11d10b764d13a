//! Where `arn:aws:s3:::NAME` puts its objects: by default a directory,
//! `data/buckets/NAME/`, one file per object at its key.
//!
//! A key is a path below the bucket's directory, its `/`-separated parts as
//! directories. Parts that would leave the directory or name nothing (`..`, `.`, the
//! empty part of `a//b`) are written percent-escaped (`%2E%2E`, `%2E`, `%2F`), so no
//! key reaches outside its bucket. An object is written to a hidden temporary file,
//! synced, renamed into place and its directories synced: once `put` returns it
//! survives a crash, and a reader never sees half an object.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The buckets of one server.
#[derive(Debug, Clone)]
pub struct Buckets {
    root: PathBuf,
}

impl Buckets {
    /// Buckets as directories under `root` (`data/buckets`).
    pub fn in_directory(root: impl Into<PathBuf>) -> Self {
        Buckets { root: root.into() }
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
