//! Keeping the data directory's filesystem from filling up.
//!
//! sled and the segment writers fail in awkward ways when a write meets ENOSPC half
//! way (an index flush that fails after a change was made in memory, a delete that
//! cannot record itself). So new data is refused *before* the disk is full: every
//! ingest path (PutMedia, RTSP, SQS sends, Kinesis puts) asks [`DiskGuard::check`] with
//! the bytes it is about to write, which refuses once they would leave less than a
//! reserve free (bytes let through count until the next look at the filesystem, so a
//! burst cannot run past it), and the reserve leaves room for what must still work:
//! deletes, retention sweeps, metadata. When space comes back
//! (retention, a deleted stream, the operator), the next check lets data in again; no
//! restart. A filesystem remounted read-only is refused the same way.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one look at the filesystem is trusted (writes between looks are small
/// against the reserve).
const RECHECK: Duration = Duration::from_millis(100);

/// Why new data is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiskRefusal {
    #[error(
        "the data directory's filesystem has {free} bytes free, under the {reserve} bytes kept in reserve; \
         new data is refused until space is freed (retention, deleting streams or queues)"
    )]
    Full { free: u64, reserve: u64 },
    #[error("the data directory's filesystem is read-only; new data is refused until it is writable")]
    ReadOnly,
}

/// Watches the free space under one directory.
#[derive(Debug)]
pub struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    seen: Mutex<Option<Seen>>,
}

/// One look at the filesystem, and the bytes let through since.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    free: u64,
    read_only: bool,
    /// Bytes callers said they would write since the look: they count as used until
    /// the next look sees them (or not) on disk.
    claimed: u64,
    refusing: bool,
}

impl DiskGuard {
    /// Refuses new data once `dir`'s filesystem has fewer than `reserve` bytes free.
    pub fn new(dir: impl Into<PathBuf>, reserve: u64) -> Self {
        DiskGuard { dir: dir.into(), reserve, seen: Mutex::new(None) }
    }

    /// A guard that never refuses (tests and benches on their own temporary dirs).
    pub fn unlimited() -> Self {
        DiskGuard::new("", 0)
    }

    /// Whether `bytes` of new data may be written now; if so they are counted as used
    /// until the filesystem is looked at again.
    pub fn check(&self, bytes: u64) -> Result<(), DiskRefusal> {
        if self.reserve == 0 {
            return Ok(());
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let was_refusing = seen.is_some_and(|s| s.refusing);
        let stale = seen.is_none_or(|s| s.at.elapsed() >= RECHECK);
        if stale {
            match space(&self.dir) {
                Ok(Space { free, read_only }) => {
                    *seen = Some(Seen { at: Instant::now(), free, read_only, claimed: 0, refusing: was_refusing })
                }
                // Cannot tell: let the write try, and fail on its own error if it must.
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the free space");
                    return Ok(());
                }
            }
        }
        let Some(s) = seen.as_mut() else { return Ok(()) };
        let available = s.free.saturating_sub(s.claimed);
        let verdict = if s.read_only {
            Err(DiskRefusal::ReadOnly)
        } else if available < self.reserve.saturating_add(bytes) {
            Err(DiskRefusal::Full { free: available, reserve: self.reserve })
        } else {
            s.claimed = s.claimed.saturating_add(bytes);
            Ok(())
        };
        match (&verdict, was_refusing) {
            (Err(why), false) => tracing::warn!(dir = %self.dir.display(), %why, "refusing new data"),
            (Ok(()), true) => tracing::info!(dir = %self.dir.display(), "space is back; accepting new data"),
            _ => {}
        }
        s.refusing = verdict.is_err();
        verdict
    }
}

struct Space {
    free: u64,
    read_only: bool,
}

/// Free bytes for unprivileged users, and whether the filesystem is mounted read-only.
fn space(dir: &Path) -> std::io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a writable struct of
    // the type statvfs(3) fills; both live across the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field widths differ between platforms
    let free = (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64);
    Ok(Space { free, read_only: stat.f_flag & libc::ST_RDONLY != 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_none_accepts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DiskGuard::new(dir.path(), 1).check(10), Ok(()));
        match DiskGuard::new(dir.path(), u64::MAX).check(0) {
            Err(DiskRefusal::Full { reserve, .. }) => assert_eq!(reserve, u64::MAX),
            other => panic!("{other:?}"),
        }
        assert_eq!(DiskGuard::unlimited().check(u64::MAX), Ok(()));
        let free = space(dir.path()).unwrap().free;
        assert!(free > 0);
        // Bytes let through count as used until the next look: a burst cannot write
        // past the reserve between two looks.
        let guard = DiskGuard::new(dir.path(), 1);
        let half = free / 2;
        assert_eq!(guard.check(half), Ok(()));
        assert!(matches!(guard.check(free - half + 4096), Err(DiskRefusal::Full { .. })));
    }
}
