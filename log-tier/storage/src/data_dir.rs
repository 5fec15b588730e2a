//! The data directory's own files: the `flock` that keeps one process per directory, the
//! clean-shutdown marker, and the free-space probe.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{LogError, Result};

/// Present only between a clean `close` and the next `open`.
pub(super) const CLEAN_SHUTDOWN: &str = ".clean_shutdown";

/// Marks a clean shutdown: every partition flushed and its active segment indexed.
pub(super) fn write_clean_marker(dir: &Path) -> Result<()> {
    let path = dir.join(CLEAN_SHUTDOWN);
    File::create(&path)
        .and_then(|f| f.sync_all())
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(|e| LogError::io(format!("writing {}", path.display()), e))
}

/// Takes an exclusive `flock` on `<dir>/.lock` so two processes never share a data directory.
#[allow(unsafe_code)] // one of the workspace's two unsafe calls (the other: `free_bytes`)
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(LogError::Locked(dir.display().to_string()));
    }
    Ok(file)
}

/// Bytes available to unprivileged users on the filesystem holding `dir`.
#[allow(unsafe_code)] // one of the workspace's two unsafe calls (the other: `lock_dir`)
pub(super) fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: statvfs writes into a zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}
