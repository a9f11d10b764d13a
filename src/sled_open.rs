//! Opening a sled database, the one way both engines do it.
//!
//! sled releases its directory lock when the last reference to a database goes, and
//! its background flusher may hold one a moment after the owner dropped its handle.
//! An engine reopened right after a close (a restart in the same process, the tests)
//! can therefore meet its own previous lock: that case is retried briefly; any other
//! error is returned at once.

use std::path::Path;
use std::time::{Duration, Instant};

const LOCK_WAIT: Duration = Duration::from_secs(3);

pub fn open(path: &Path, flush_every_ms: u64) -> sled::Result<sled::Db> {
    let started = Instant::now();
    loop {
        match sled::Config::new().path(path).flush_every_ms(Some(flush_every_ms)).open() {
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

/// Checks the format version of one component of a sled database (`format/<component>`
/// in its default tree), and records it when absent.
///
/// A database with no marker was written before markers existed: that layout is
/// format 1, so it is recorded as 1 (no conversion is needed to get there). A marker
/// newer than `current` is refused, never misread. `store` names the store in messages
/// (`"the fragment index (data/index)"`).
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
            // Upgrades from an older format run here when there is one; format 1 is
            // the first, so there is none yet.
            Ok(found)
        }
        None => {
            db.insert(&key, &current.to_be_bytes()).map_err(io)?;
            db.flush().map_err(io)?;
            Ok(current)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recorded_then_checked_and_newer_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), 500).unwrap();
        assert_eq!(check_format(&db, "index", 1, "the index"), Ok(1), "recorded on first open");
        assert_eq!(check_format(&db, "index", 1, "the index"), Ok(1));
        db.insert("format/index", &7u32.to_be_bytes()).unwrap();
        let e = check_format(&db, "index", 1, "the index (data/index)").unwrap_err();
        assert_eq!(e, FormatError::Newer { store: "the index (data/index)".into(), found: 7, supported: 1 });
        assert!(e.to_string().contains("format 7") && e.to_string().contains("reads format 1 at most"));
        db.insert("format/index", b"x".as_ref()).unwrap();
        assert!(matches!(check_format(&db, "index", 1, "the index"), Err(FormatError::Unreadable { .. })));
    }
}
