//! Exclusive locks on a file shared by processes (the registry's and the tokens'), taken
//! with a bounded wait.

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, Instant};

/// Why a lock was not taken.
pub(crate) enum LockFailure {
    Io(std::io::Error),
    /// Another process held it for the whole limit; how long was waited.
    Timeout(Duration),
}

/// Opens (creating) `path` and locks it exclusively, retrying until `limit`; `on_wait`
/// is called once when the wait passes `notice_after`. The lock lasts as long as the
/// returned file.
pub(crate) fn lock_with_timeout(
    path: &Path,
    limit: Duration,
    notice_after: Duration,
    on_wait: impl FnOnce(),
) -> Result<File, LockFailure> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(LockFailure::Io)?;
    let start = Instant::now();
    let mut on_wait = Some(on_wait);
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(LockFailure::Io(e)),
        }
        let waited = start.elapsed();
        if waited >= limit {
            return Err(LockFailure::Timeout(waited));
        }
        if waited >= notice_after
            && let Some(announce) = on_wait.take()
        {
            announce();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
