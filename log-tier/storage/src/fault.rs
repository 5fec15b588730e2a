//! Fault injection for tests: make segment writes under a directory fail as if the disk were
//! full (the fallback when a test cannot mount a small tmpfs), or make fsyncs fail (EIO).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static ARMED: AtomicBool = AtomicBool::new(false);
static FULL_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static SYNC_ARMED: AtomicBool = AtomicBool::new(false);
static SYNC_FAIL_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The error an fsync of files in `dir` should fail with now, if a test injected one.
pub(crate) fn sync_error(dir: &Path) -> Option<io::Error> {
    if !SYNC_ARMED.load(Ordering::Relaxed) {
        return None;
    }
    let dirs = SYNC_FAIL_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    dirs.iter()
        .any(|d| dir.starts_with(d))
        .then(|| io::Error::from_raw_os_error(libc::EIO))
}

/// Makes every segment fsync under `dir` fail with EIO until reset (tests only).
#[cfg(test)]
pub(crate) fn set_sync_fails(dir: &Path, fail: bool) {
    let mut dirs = SYNC_FAIL_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    dirs.retain(|d| d != dir);
    if fail {
        dirs.push(dir.to_path_buf());
    }
    SYNC_ARMED.store(!dirs.is_empty(), Ordering::Relaxed);
}

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
