//! Opening a sled database, the one way every embedded store does it.
//!
//! sled releases its directory lock when the last reference to a database goes, and
//! its background flusher may hold one a moment after the owner dropped its handle.
//! An engine reopened right after a close (a restart in the same process, the tests)
//! can therefore meet its own previous lock: that case is retried briefly; any other
//! error is returned at once.

use std::path::Path;
use std::time::{Duration, Instant};

const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Each database's page cache.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

pub fn open(path: &Path, flush_every_ms: u64) -> sled::Result<sled::Db> {
    let started = Instant::now();
    loop {
        // sled's page cache defaults to 1 GiB per database, which a backlog of queued
        // bodies or a large index would fill: RSS is bounded by this instead.
        let config = sled::Config::new().path(path).flush_every_ms(Some(flush_every_ms)).cache_capacity(CACHE_BYTES);
        match config.open() {
            Err(sled::Error::Io(e)) if is_lock_contention(&e) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn is_lock_contention(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// A store's on-disk format that this build does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "{store} is in format {found}, but this Kinescope reads format {supported} at most; \
         run the Kinescope that wrote it (or a newer one), or restore a backup (see docs/storage.md)"
    )]
    Newer { store: String, found: u32, supported: u32 },
    #[error("{store} has an unreadable format marker ({detail}); it is not a store this Kinescope wrote")]
    Unreadable { store: String, detail: String },
    #[error("{store}: reading or recording its format failed: {detail}")]
    Io { store: String, detail: String },
}

/// The format version of one component of a sled database (`format/<component>` in its
/// default tree). The caller upgrades what is older than `current`, then records
/// `current` with [`record_format`].
///
/// A database with no marker was written before markers existed (or is new and
/// empty): that layout is format 1. A marker newer than `current` is refused, never
/// misread. `store` names the store in messages (`"the fragment index (data/index)"`).
pub fn check_format(db: &sled::Db, component: &str, current: u32, store: &str) -> Result<u32, FormatError> {
    let key = format!("format/{component}");
    let io = |e: sled::Error| FormatError::Io { store: store.to_string(), detail: e.to_string() };
    match db.get(&key).map_err(io)? {
        Some(v) => {
            let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| FormatError::Unreadable {
                store: store.to_string(),
                detail: format!("{} bytes where a version has 4", v.len()),
            })?;
            let found = u32::from_be_bytes(bytes);
            if found > current || found == 0 {
                return Err(FormatError::Newer { store: store.to_string(), found, supported: current });
            }
            Ok(found)
        }
        None => Ok(1),
    }
}

/// Records `version` as the format of `component` (after any upgrade to it).
pub fn record_format(db: &sled::Db, component: &str, version: u32, store: &str) -> Result<(), FormatError> {
    let io = |e: sled::Error| FormatError::Io { store: store.to_string(), detail: e.to_string() };
    db.insert(format!("format/{component}"), &version.to_be_bytes()).map_err(io)?;
    db.flush().map_err(io)?;
    Ok(())
}

/// [`check_format`] for a store with no upgrade to run (every format up to `current`
/// reads as is), then [`record_format`].
pub fn check_and_record_format(db: &sled::Db, component: &str, current: u32, store: &str) -> Result<u32, FormatError> {
    let found = check_format(db, component, current, store)?;
    record_format(db, component, current, store)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recorded_then_checked_and_newer_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), 500).unwrap();
        assert_eq!(check_format(&db, "index", 2, "the index"), Ok(1), "no marker: format 1");
        record_format(&db, "index", 2, "the index").unwrap();
        assert_eq!(check_format(&db, "index", 2, "the index"), Ok(2));
        assert_eq!(check_and_record_format(&db, "index", 2, "the index"), Ok(2));
        db.insert("format/index", &7u32.to_be_bytes()).unwrap();
        let e = check_format(&db, "index", 2, "the index (data/index)").unwrap_err();
        assert_eq!(e, FormatError::Newer { store: "the index (data/index)".into(), found: 7, supported: 2 });
        assert!(e.to_string().contains("format 7") && e.to_string().contains("reads format 2 at most"));
        db.insert("format/index", b"x".as_ref()).unwrap();
        assert!(matches!(check_format(&db, "index", 1, "the index"), Err(FormatError::Unreadable { .. })));
    }
}

/// The upgrade to scoped keys, for stores of JSON records keyed by name (format 1):
/// every record without a `"scope"` member gets one and moves to its key
/// `ACCOUNT/REGION/NAME`, in one atomic batch (a crash leaves the old layout, and the
/// upgrade runs again). The scope is the one of the record's `"arn"` when it has one
/// (the account and region it was created in), else `default`. Returns how many
/// records moved.
pub fn upgrade_to_scoped_keys(tree: &sled::Tree, default: &crate::scope::Scope) -> Result<usize, UpgradeError> {
    let mut batch = sled::Batch::default();
    let mut moved = 0;
    for item in tree.iter() {
        let (key, value) = item?;
        let mut record: serde_json::Value = serde_json::from_slice(&value)?;
        if record.get("scope").is_some() {
            continue;
        }
        let name = record.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
        let of_arn = record.get("arn").and_then(|a| a.as_str()).and_then(crate::scope::Scope::of_arn);
        let scope = of_arn.as_ref().unwrap_or(default);
        record["scope"] = serde_json::to_value(scope)?;
        batch.remove(key);
        batch.insert(scope.key(&name).as_bytes(), serde_json::to_vec(&record)?);
        moved += 1;
    }
    tree.apply_batch(batch)?;
    tree.flush()?;
    Ok(moved)
}

/// Why an upgrade could not run.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Index(#[from] sled::Error),
    #[error("a record is not the JSON it should be: {0}")]
    Record(#[from] serde_json::Error),
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;
    use crate::scope::Scope;

    #[test]
    fn records_keyed_by_name_move_to_scoped_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), 500).unwrap();
        let tree = db.open_tree("things").unwrap();
        tree.insert("jobs", br#"{"name":"jobs","id":1}"#.as_ref()).unwrap();
        tree.insert(
            "cam",
            br#"{"name":"cam","arn":"arn:aws:kinesisvideo:eu-west-1:123456789012:stream/cam/1"}"#.as_ref(),
        )
        .unwrap();
        let scope = Scope::new("000000000000", "us-east-1");
        assert_eq!(upgrade_to_scoped_keys(&tree, &scope).unwrap(), 2);
        assert!(tree.get("123456789012/eu-west-1/cam").unwrap().is_some(), "an ARN keeps its own scope");
        assert!(tree.get("jobs").unwrap().is_none());
        let moved: serde_json::Value = serde_json::from_slice(&tree.get(scope.key("jobs")).unwrap().unwrap()).unwrap();
        assert_eq!((moved["id"].as_u64(), moved["scope"]["region"].as_str()), (Some(1), Some("us-east-1")));
        assert_eq!(upgrade_to_scoped_keys(&tree, &scope).unwrap(), 0, "idempotent");
    }
}

/// The values of a tree keyed `ACCOUNT/REGION/NAME` ([`Scope::key`]) whose name starts
/// with `prefix`, in name order, after the name `after`: a listing page starts where the
/// last one ended instead of reading every record before it.
pub fn scoped_values_after<'a>(
    tree: &'a sled::Tree,
    scope: &crate::scope::Scope,
    page: crate::scope::NamePage<'_>,
) -> impl Iterator<Item = sled::Result<sled::IVec>> + 'a {
    let prefix = scope.key(page.prefix).into_bytes();
    let range = match page.after {
        Some(a) => {
            tree.range::<&[u8], _>((std::ops::Bound::Excluded(scope.key(a).as_bytes()), std::ops::Bound::Unbounded))
        }
        None => tree.range::<&[u8], _>(prefix.as_slice()..),
    };
    range
        // Past the prefix (keys sort by it): done. Before it (`after` sorts below the
        // prefix): skip on.
        .skip_while({
            let prefix = prefix.clone();
            move |item| item.as_ref().is_ok_and(|(k, _)| k.as_ref() < prefix.as_slice())
        })
        .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
        .take(page.limit)
        .map(|item| item.map(|(_, v)| v))
}
