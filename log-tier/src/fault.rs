//! Fault injection for tests: make segment writes under a directory fail as if the disk were
//! full (the fallback when a test cannot mount a small tmpfs).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static ARMED: AtomicBool = AtomicBool::new(false);
static FULL_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The error a write to a file in `dir` should fail with now, if a test injected one.
pub(crate) fn write_error(dir: &Path) -> Option<io::Error> {
    if !ARMED.load(Ordering::Relaxed) {
        return None;
    }
    let dirs = FULL_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    dirs.iter()
        .any(|d| dir.starts_with(d))
        .then(|| io::Error::from_raw_os_error(libc::ENOSPC))
}

/// Makes every segment write under `dir` fail with ENOSPC until reset (tests only).
#[cfg(test)]
pub(crate) fn set_disk_full(dir: &Path, full: bool) {
    let mut dirs = FULL_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    dirs.retain(|d| d != dir);
    if full {
        dirs.push(dir.to_path_buf());
    }
    ARMED.store(!dirs.is_empty(), Ordering::Relaxed);
}
