//! All file IO of the engine goes through [`Storage`] and [`StorageFile`], so that tests can swap the
//! real file system ([`OsStorage`]) for a simulated disk that loses unsynced bytes at a crash
//! ([`crate::io::sim::SimStorage`]).

pub mod sim;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file system: the few operations the engine needs.
pub trait Storage: Send + Sync + fmt::Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and writing, creating it (empty) when `create` is set.
    fn open_file(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` for as long as the returned guard lives; fails at once
    /// with [`io::ErrorKind::WouldBlock`] when another holder has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// Held while a data directory is in use; dropping it releases the lock.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// One open file.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every written byte durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Asks the system to start writing `len` bytes at `offset` to disk now, without waiting, so that
    /// a later `sync_data` finds the work under way. Advisory: it guarantees nothing.
    fn start_writeback(&self, _offset: u64, _len: u64) {}
    fn len_bytes(&self) -> io::Result<u64>;
    /// Grows the file to `len_bytes` of zeros that are really written (not sparse, not unwritten
    /// extents), so that later appends overwrite allocated blocks and `fdatasync` need not journal
    /// block allocation. Does not sync.
    fn extend_zeroed(&self, len_bytes: u64) -> io::Result<()>;
    /// Grows the file to `len_bytes` that read as zeros, reserving the space (`fallocate`) without
    /// writing it: instant, but each later `fdatasync` also commits the extent conversion. Does not sync.
    fn allocate(&self, len_bytes: u64) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with [`io::ErrorKind::UnexpectedEof`].
pub fn read_exact_at(file: &dyn StorageFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"));
            }
            Ok(read) => {
                buf = &mut buf[read..];
                offset += read as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

#[derive(Debug)]
struct OsFile {
    file: File,
}

#[derive(Debug)]
struct OsLock {
    _file: File,
}

impl LockGuard for OsLock {}

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
        Ok(Arc::new(OsFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        // SAFETY: flock on a file descriptor we own; it has no memory-safety preconditions.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::new(OsLock { _file: file }))
    }
}

impl StorageFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        // SAFETY: sync_file_range on a file descriptor we own; no memory is passed. Errors are ignored
        // on purpose: the fdatasync that follows reports any real failure.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        let len = i64::try_from(len_bytes).map_err(|_| io::Error::other("file size out of range"))?;
        // SAFETY: fallocate on a file descriptor we own; no memory is passed.
        if unsafe { libc::fallocate(self.file.as_raw_fd(), 0, 0, len) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EOPNOTSUPP) {
            // A file system without fallocate: a sparse file reads as zeros too.
            return self.file.set_len(len_bytes.max(self.len_bytes()?));
        }
        Err(error)
    }

    fn extend_zeroed(&self, len_bytes: u64) -> io::Result<()> {
        const CHUNK_BYTES: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK_BYTES as usize];
        let mut offset = self.len_bytes()?;
        while offset < len_bytes {
            let chunk = (len_bytes - offset).min(CHUNK_BYTES) as usize;
            self.file.write_all_at(&zeros[..chunk], offset)?;
            offset += chunk as u64;
        }
        Ok(())
    }
}

/// Joins a directory and a file name (a tiny helper so call sites read as what they do).
pub(crate) fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
