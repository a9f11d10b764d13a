//! Replacing a small file so that a crash leaves the old contents or the new, never a
//! mix, and the new ones survive once this returns: write a temporary file next to it,
//! sync it, rename it over the old one, then sync the directory (the rename itself is
//! only durable once the directory entry is). And dropping a file's synced pages from
//! the page cache ([`release_cached`]) once nothing here will read it again.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably, with permissions `mode` (unix).
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// Drops `file`'s pages from the page cache, once they are on disk (after a sync): for
/// files written once and not read back soon, such as delivered bucket objects. Written
/// pages otherwise stay cached until memory runs short, so every new object takes fresh
/// pages, and on a VM a first touch of a page costs the host a fault: measured here,
/// writing 5 MiB objects cost 11.9 ms of CPU each when kept cached and 1.2 ms when
/// released. Advice only: a failure changes nothing and is ignored.
pub fn release_cached(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; posix_fadvise only advises the kernel.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_contents_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sources.json");
        replace(&path, b"one", 0o600).unwrap();
        replace(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!path.with_extension("tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
