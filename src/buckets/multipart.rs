//! Multipart uploads of directory buckets: an object sent in numbered parts (what the
//! aws CLI and the SDKs' transfer managers do past 8 MiB), each part durable on its
//! own, put together in part order into the object when the upload completes.
//!
//! An upload lives in `data/buckets/.uploads/ID/` (a hidden name no bucket can take):
//! `upload.json` (bucket, key, account, when) and one file per part (`part-00001`),
//! written through the same temporary-file-and-rename path as objects. Completing
//! copies the named parts into a new object (made durable, then renamed into place)
//! and removes the upload; aborting removes it. Uploads nobody completes or aborts
//! stay, listed by [`Buckets::uploads`], until aborted: nothing is deleted at
//! start-up.

use std::io::Read;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::read::ObjectInfo;
use super::{BucketError, Buckets, ObjectWriter};

/// The most parts an upload has (S3's limit).
pub const MAX_PARTS: u32 = 10_000;
/// The smallest part but the last (S3's limit).
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// The largest part (S3's limit).
pub const MAX_PART_BYTES: u64 = 5 << 30;
/// The largest object an upload completes into (S3's limit).
pub const MAX_UPLOAD_BYTES: u64 = 5 << 40;

/// One multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    #[serde(skip)]
    pub id: String,
    pub bucket: String,
    pub key: String,
    /// The account that started it (the bucket's owner).
    pub account: String,
    /// Seconds since the epoch.
    pub initiated: u64,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    pub modified: SystemTime,
}

/// Why an upload could not complete (S3's codes at the edge).
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")]
    NoSuchUpload,
    #[error("One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {0})")]
    InvalidPart(u32),
    #[error("The list of parts was not in ascending order. Parts must be ordered by part number.")]
    InvalidPartOrder,
    #[error(
        "Your proposed upload is smaller than the minimum allowed size (part {0} is under 5 MiB and not the last)"
    )]
    EntityTooSmall(u32),
    #[error("Your proposed upload exceeds the maximum allowed object size")]
    EntityTooLarge,
    /// The object would eat into the data directory's disk reserve.
    #[error("{0}")]
    NoSpace(String),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An upload id as this server makes them: 32 lower-case hex digits (so an id never
/// names a path).
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Buckets {
    fn uploads_dir(&self) -> PathBuf {
        self.root.join(".uploads")
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }

    /// Starts an upload of `key` into `bucket` for `account`; returns its id. Blocking.
    pub fn create_upload(&self, bucket: &str, key: &str, account: &str) -> Result<String, BucketError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let initiated = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let upload =
            Upload { id: id.clone(), bucket: bucket.into(), key: key.into(), account: account.into(), initiated };
        let record = serde_json::to_vec(&upload).map_err(std::io::Error::other)?;
        let mut w =
            ObjectWriter::to_path(self.upload_dir(&id).join("upload.json"), &self.uploads_dir(), &self.root, true)?;
        w.write(&record)?;
        w.commit()?;
        Ok(id)
    }

    /// The upload `id`, if it is in progress.
    pub fn upload(&self, id: &str) -> Result<Option<Upload>, BucketError> {
        if !valid_upload_id(id) {
            return Ok(None);
        }
        match std::fs::read(self.upload_dir(id).join("upload.json")) {
            Ok(bytes) => {
                let mut u: Upload = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                u.id = id.to_string();
                Ok(Some(u))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A writer of part `number` of upload `id` (replacing an earlier one of that
    /// number when committed). Blocking.
    pub fn begin_part(&self, id: &str, number: u32) -> std::io::Result<ObjectWriter> {
        if !valid_upload_id(id) || !(1..=MAX_PARTS).contains(&number) {
            return Err(std::io::Error::other("no such upload or part number"));
        }
        // The upload's directory must be there already (an aborted upload takes no parts).
        let dir = self.upload_dir(id);
        ObjectWriter::to_path(dir.join(format!("part-{number:05}")), &dir, &self.root, false)
    }

    /// The parts of upload `id` so far, by number.
    pub fn parts(&self, id: &str) -> Result<Vec<Part>, BucketError> {
        let mut parts = Vec::new();
        if !valid_upload_id(id) {
            return Ok(parts);
        }
        for entry in std::fs::read_dir(self.upload_dir(id))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(number) = name.strip_prefix("part-").and_then(|n| n.parse::<u32>().ok()) else { continue };
            let meta = entry.metadata()?;
            let info = super::read::info(String::new(), &meta);
            parts.push(Part { number, size: info.size, etag: info.etag, modified: info.modified });
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Puts the named parts (number, ETag), in ascending order, together into the
    /// upload's object, made durable and in place; the upload is gone after. Blocking
    /// (it copies the parts).
    pub fn complete_upload(&self, id: &str, named: &[(u32, String)]) -> Result<ObjectInfo, CompleteError> {
        let upload = self.upload(id)?.ok_or(CompleteError::NoSuchUpload)?;
        if named.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(CompleteError::InvalidPartOrder);
        }
        let have = self.parts(id)?;
        let mut chosen = Vec::with_capacity(named.len());
        let mut total = 0u64;
        for (i, (number, etag)) in named.iter().enumerate() {
            let part = have
                .iter()
                .find(|p| p.number == *number && p.etag.trim_matches('"') == etag.trim_matches('"'))
                .ok_or(CompleteError::InvalidPart(*number))?;
            if i + 1 < named.len() && part.size < MIN_PART_BYTES {
                return Err(CompleteError::EntityTooSmall(*number));
            }
            total += part.size;
            chosen.push(part.number);
        }
        if total > MAX_UPLOAD_BYTES {
            return Err(CompleteError::EntityTooLarge);
        }
        self.check_space(total).map_err(|e| CompleteError::NoSpace(e.to_string()))?;
        let mut w = self.begin_put(&upload.bucket, &upload.key)?;
        let mut buf = vec![0u8; 1 << 20];
        for number in chosen {
            let mut f = std::fs::File::open(self.upload_dir(id).join(format!("part-{number:05}")))?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                w.write(&buf[..n])?;
            }
        }
        w.commit()?;
        self.abort_upload(id)?;
        self.object_info(&upload.bucket, &upload.key)?
            .ok_or_else(|| CompleteError::Io(std::io::Error::other("the completed object vanished")))
    }

    /// Removes upload `id` and its parts (nothing if there is none). Blocking.
    pub fn abort_upload(&self, id: &str) -> std::io::Result<()> {
        if !valid_upload_id(id) {
            return Ok(());
        }
        match std::fs::remove_dir_all(self.upload_dir(id)) {
            Ok(()) => std::fs::File::open(self.uploads_dir())?.sync_all(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The uploads in progress into `bucket`, by key then initiation.
    pub fn uploads(&self, bucket: &str) -> Result<Vec<Upload>, BucketError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(self.uploads_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let id = entry?.file_name().to_string_lossy().into_owned();
            if let Some(u) = self.upload(&id)? {
                if u.bucket == bucket {
                    out.push(u);
                }
            }
        }
        out.sort_by(|a, b| (&a.key, a.initiated, &a.id).cmp(&(&b.key, b.initiated, &b.id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets() -> (tempfile::TempDir, Buckets) {
        let dir = tempfile::tempdir().unwrap();
        let b = Buckets::in_directory(dir.path().join("buckets"), "000000000000").unwrap();
        b.put("frames", "existing", b"x").unwrap();
        (dir, b)
    }

    fn part(b: &Buckets, id: &str, number: u32, bytes: &[u8]) -> String {
        let mut w = b.begin_part(id, number).unwrap();
        w.write(bytes).unwrap();
        w.commit().unwrap();
        b.parts(id).unwrap().into_iter().find(|p| p.number == number).unwrap().etag
    }

    #[test]
    fn parts_complete_in_order_into_one_object_and_the_upload_is_gone() {
        let (_d, b) = buckets();
        let id = b.create_upload("frames", "big/clip.mp4", "000000000000").unwrap();
        assert_eq!(b.uploads("frames").unwrap()[0].key, "big/clip.mp4");
        let first = vec![1u8; MIN_PART_BYTES as usize];
        let e2 = part(&b, &id, 2, b"tail");
        let e1 = part(&b, &id, 1, &first);
        // Listings of the bucket do not show the upload or its parts.
        let page = b
            .list(
                "frames",
                crate::buckets::read::ListRequest {
                    prefix: "",
                    delimiter: None,
                    after: None,
                    skip_prefix: None,
                    max_keys: 10,
                },
            )
            .unwrap();
        assert_eq!(page.objects.len(), 1);
        let info = b.complete_upload(&id, &[(1, e1), (2, e2)]).unwrap();
        assert_eq!(info.size, MIN_PART_BYTES + 4);
        let bytes = std::fs::read(b.object_path("frames", "big/clip.mp4")).unwrap();
        assert_eq!(&bytes[bytes.len() - 4..], b"tail");
        assert!(b.upload(&id).unwrap().is_none() && b.uploads("frames").unwrap().is_empty());
        assert!(matches!(b.complete_upload(&id, &[]), Err(CompleteError::NoSuchUpload)));
    }

    #[test]
    fn completion_checks_parts_order_etags_and_sizes() {
        let (_d, b) = buckets();
        let id = b.create_upload("frames", "k", "000000000000").unwrap();
        let e1 = part(&b, &id, 1, b"small");
        let e2 = part(&b, &id, 2, b"last");
        assert!(matches!(
            b.complete_upload(&id, &[(2, e2.clone()), (1, e1.clone())]),
            Err(CompleteError::InvalidPartOrder)
        ));
        assert!(matches!(b.complete_upload(&id, &[(1, "\"nope\"".into())]), Err(CompleteError::InvalidPart(1))));
        assert!(matches!(b.complete_upload(&id, &[(3, e2.clone())]), Err(CompleteError::InvalidPart(3))));
        assert!(matches!(b.complete_upload(&id, &[(1, e1.clone()), (2, e2)]), Err(CompleteError::EntityTooSmall(1))));
        // A single small part is a whole object.
        assert_eq!(b.complete_upload(&id, &[(1, e1)]).unwrap().size, 5);
        // Ids that are not this server's name nothing.
        assert!(b.upload("../../x").unwrap().is_none());
        assert!(b.begin_part("../../x", 1).is_err());
        assert!(b.begin_part(&uuid::Uuid::new_v4().simple().to_string(), 0).is_err());
    }

    #[test]
    fn an_aborted_upload_leaves_nothing() {
        let (_d, b) = buckets();
        let id = b.create_upload("frames", "k", "000000000000").unwrap();
        part(&b, &id, 1, b"data");
        b.abort_upload(&id).unwrap();
        b.abort_upload(&id).unwrap();
        assert!(b.upload(&id).unwrap().is_none());
        assert!(b.object_info("frames", "k").unwrap().is_none());
    }
}
