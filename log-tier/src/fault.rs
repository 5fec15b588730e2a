//! Fault injection for tests: make segment writes fail as if the disk were full.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static FAIL_WRITES: AtomicBool = AtomicBool::new(false);

/// The error a write should fail with now, if a test injected one.
pub(crate) fn write_error() -> Option<io::Error> {
    FAIL_WRITES
        .load(Ordering::Relaxed)
        .then(|| io::Error::from_raw_os_error(libc::ENOSPC))
}

/// Makes every segment write fail with ENOSPC until reset (tests only; process-wide).
#[cfg(test)]
#[allow(dead_code)]
pub(crate) fn set_disk_full(full: bool) {
    FAIL_WRITES.store(full, Ordering::Relaxed);
}
