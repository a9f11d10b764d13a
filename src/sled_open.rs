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
