//! What the benchmark needs from the file system beyond `std`: quieting it between measurements, and
//! recognising a directory where fdatasync costs nothing.

use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;

/// Flushes the dirty pages and pending journal commits of the file system holding `dir`, so that a
/// measurement does not pay for the writes and deletions of the one before it.
pub fn settle(dir: &Path) -> Result<()> {
    let handle = File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor belongs to `handle`, which stays open for the whole call.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("syncfs {}", dir.display()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        drop(handle);
        // SAFETY: `sync` takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }
    Ok(())
}

/// Warns on stderr when `dir` is on tmpfs, where data never reaches a disk and fdatasync returns at
/// once: the numbers would say nothing about durable writes. The default directory, the system's
/// temporary directory, is tmpfs on many Linux systems.
pub fn warn_if_volatile(dir: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(handle) = File::open(dir) else { return };
        // SAFETY: `statfs` is plain old data, for which all zeros is a valid value.
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor belongs to `handle`, open for the whole call, and `stat` is writable.
        if unsafe { libc::fstatfs(handle.as_raw_fd(), &mut stat) } != 0 {
            return;
        }
        // The field's and the constant's integer types differ between architectures.
        #[allow(clippy::unnecessary_cast)]
        let is_tmpfs = stat.f_type as i64 == libc::TMPFS_MAGIC as i64;
        if is_tmpfs {
            eprintln!(
                "warning: {} is on tmpfs, where fdatasync does nothing; pass --dir on the disk to measure",
                dir.display()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
}
