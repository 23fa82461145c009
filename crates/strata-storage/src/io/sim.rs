//! A simulated disk for crash and fault tests (the idea of redb's crash backend).
//!
//! Every file keeps its *written* bytes (what reads see now) apart from its *durable* bytes (what a
//! power loss leaves). `sync_data` makes a file's writes durable; `sync_dir` makes the directory's
//! names durable. [`SimStorage::crash_after_mutations`] makes the N-th mutating operation and all later
//! ones fail, as if the machine lost power there; [`SimStorage::crash_image`] then builds the disk as a
//! reboot would find it: durable names, durable bytes, plus an arbitrary prefix of the unsynced writes,
//! the next one possibly torn at 512-byte sector granularity in any pattern.

use crate::io::{LockGuard, Storage, StorageFile};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

const SECTOR_BYTES: usize = 512;

/// An in-memory file system that can crash. Cloning shares the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct SimState {
    names: BTreeMap<PathBuf, Arc<SimFile>>,
    durable_names: BTreeMap<PathBuf, Arc<SimFile>>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
}

#[derive(Debug)]
struct Faults {
    mutations: AtomicU64,
    crash_after_mutations: AtomicU64,
    crashed: AtomicBool,
    fail_syncs: AtomicBool,
    fail_writes: AtomicBool,
    fail_creates: AtomicBool,
    /// While true, `sync_data` waits: lets tests hold the committer inside a commit.
    syncs_held: Mutex<bool>,
    syncs_released: Condvar,
    syncs_waiting: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            mutations: AtomicU64::new(0),
            crash_after_mutations: AtomicU64::new(u64::MAX),
            crashed: AtomicBool::new(false),
            fail_syncs: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            fail_creates: AtomicBool::new(false),
            syncs_held: Mutex::new(false),
            syncs_released: Condvar::new(),
            syncs_waiting: AtomicU64::new(0),
        }
    }
}

impl Faults {
    /// Counts one mutating operation; fails it (and every later one) once the crash point is reached.
    fn mutate(&self) -> io::Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(crashed());
        }
        let count = self.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        if count >= self.crash_after_mutations.load(Ordering::SeqCst) {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(crashed());
        }
        Ok(())
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated power loss")
}

#[derive(Debug)]
struct SimFile {
    data: Mutex<SimFileData>,
    faults: Arc<Faults>,
}

#[derive(Debug, Default, Clone)]
struct SimFileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order: what a crash may or may not keep.
    pending: Vec<(u64, Vec<u8>)>,
}

fn apply_write(target: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let offset = offset as usize;
    if target.len() < offset + bytes.len() {
        target.resize(offset + bytes.len(), 0);
    }
    target[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// A small deterministic generator (xorshift64*), so a crash image is a function of its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}

impl SimStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `count`-th mutating operation from now on (writes, syncs, renames, removals, creations)
    /// and every later one fail as if the power went out.
    pub fn crash_after_mutations(&self, count: u64) {
        let done = self.faults.mutations.load(Ordering::SeqCst);
        self.faults.crash_after_mutations.store(done + count.max(1), Ordering::SeqCst);
    }

    /// How many mutating operations have run so far.
    pub fn mutations(&self) -> u64 {
        self.faults.mutations.load(Ordering::SeqCst)
    }

    /// After [`SimStorage::crash_after_mutations`] fired: the *process* died, not the machine. The
    /// disk works again and keeps everything written, synced or not (the page cache survives a
    /// process crash); a later [`SimStorage::crash_image`] still loses what was never synced.
    pub fn restart_process(&self) {
        self.faults.crash_after_mutations.store(u64::MAX, Ordering::SeqCst);
        self.faults.crashed.store(false, Ordering::SeqCst);
    }

    pub fn has_crashed(&self) -> bool {
        self.faults.crashed.load(Ordering::SeqCst)
    }

    /// Makes every `sync_data` fail with an IO error, dropping the file's unsynced writes from what a
    /// crash can keep (Linux marks such pages clean); the disk stays usable otherwise.
    pub fn fail_syncs(&self, fail: bool) {
        self.faults.fail_syncs.store(fail, Ordering::SeqCst);
    }

    /// While held, every `sync_data` waits (the disk is slow), so appends queue up behind a commit.
    pub fn hold_syncs(&self, held: bool) {
        *self.faults.syncs_held.lock().unwrap() = held;
        self.faults.syncs_released.notify_all();
    }

    /// How many `sync_data` calls are waiting on [`SimStorage::hold_syncs`].
    pub fn syncs_waiting(&self) -> u64 {
        self.faults.syncs_waiting.load(Ordering::SeqCst)
    }

    /// Makes the creation of new files fail, as on a full disk (existing files stay writable).
    pub fn fail_creates(&self, fail: bool) {
        self.faults.fail_creates.store(fail, Ordering::SeqCst);
    }

    /// Makes every file write fail with an IO error.
    pub fn fail_writes(&self, fail: bool) {
        self.faults.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// The disk as a machine would find it after losing power now. The image is a new, healthy
    /// storage; this one is left as it is.
    pub fn crash_image(&self, seed: u64) -> SimStorage {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let state = self.state.lock().unwrap();
        let image = SimStorage::new();
        let mut image_state = image.state.lock().unwrap();
        image_state.dirs = state.dirs.clone();
        let mut images_by_file: Vec<(*const SimFile, Arc<SimFile>)> = Vec::new();
        for (path, file) in &state.durable_names {
            let key = Arc::as_ptr(file);
            let imaged = match images_by_file.iter().find(|(k, _)| *k == key) {
                Some((_, imaged)) => imaged.clone(),
                None => {
                    let data = file.data.lock().unwrap();
                    let mut bytes = data.durable.clone();
                    let kept = rng.below(data.pending.len() as u64 + 1) as usize;
                    for (offset, write) in &data.pending[..kept] {
                        apply_write(&mut bytes, *offset, write);
                    }
                    if let Some((offset, write)) = data.pending.get(kept) {
                        tear_write(&mut rng, &mut bytes, *offset, write);
                    }
                    let imaged = Arc::new(SimFile {
                        data: Mutex::new(SimFileData { current: bytes.clone(), durable: bytes, pending: Vec::new() }),
                        faults: image.faults.clone(),
                    });
                    images_by_file.push((key, imaged.clone()));
                    imaged
                }
            };
            image_state.names.insert(path.clone(), imaged.clone());
            image_state.durable_names.insert(path.clone(), imaged);
        }
        drop(image_state);
        image
    }

    /// The current (written, not necessarily durable) bytes of a file; for tests that inspect or damage files.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock().unwrap();
        state.names.get(path).map(|file| file.data.lock().unwrap().current.clone())
    }

    /// Overwrites bytes of a file as durable, bypassing faults; for corruption tests.
    pub fn corrupt(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let state = self.state.lock().unwrap();
        let file = state.names.get(path).expect("no such file");
        let mut data = file.data.lock().unwrap();
        apply_write(&mut data.current, offset, bytes);
        apply_write(&mut data.durable, offset, bytes);
    }
}

/// Applies a random subset of the disk sectors the write covers (a prefix of them, or any pattern):
/// a torn write, as a disk that writes sectors atomically but not whole requests may leave it.
fn tear_write(rng: &mut Rng, bytes: &mut Vec<u8>, offset: u64, write: &[u8]) {
    let prefix_only = rng.below(2) == 0;
    let first_sector = offset / SECTOR_BYTES as u64;
    let end = offset + write.len() as u64;
    let sectors = end.div_ceil(SECTOR_BYTES as u64) - first_sector;
    let prefix_sectors = rng.below(sectors + 1);
    for index in 0..sectors {
        let keep = if prefix_only { index < prefix_sectors } else { rng.below(2) == 0 };
        if keep {
            let sector_start = ((first_sector + index) * SECTOR_BYTES as u64).max(offset);
            let sector_end = ((first_sector + index + 1) * SECTOR_BYTES as u64).min(end);
            let part = &write[(sector_start - offset) as usize..(sector_end - offset) as usize];
            apply_write(bytes, sector_start, part);
        }
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<SimState>>,
    path: PathBuf,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.state.lock().unwrap().locks.remove(&self.path);
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.state.lock().unwrap().dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock().unwrap();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
            .collect())
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.state.lock().unwrap();
        if let Some(file) = state.names.get(path) {
            return Ok(file.clone());
        }
        if !create {
            return Err(not_found(path));
        }
        if self.faults.fail_creates.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated: no space left on device"));
        }
        self.faults.mutate()?;
        let file = Arc::new(SimFile { data: Mutex::new(SimFileData::default()), faults: self.faults.clone() });
        state.names.insert(path.to_path_buf(), file.clone());
        Ok(file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.mutate()?;
        let mut state = self.state.lock().unwrap();
        let file = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.mutate()?;
        let mut state = self.state.lock().unwrap();
        state.names.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.mutate()?;
        let mut state = self.state.lock().unwrap();
        state.durable_names.retain(|path, _| path.parent() != Some(dir));
        let in_dir: Vec<_> = state
            .names
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(p, f)| (p.clone(), f.clone()))
            .collect();
        state.durable_names.extend(in_dir);
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut state = self.state.lock().unwrap();
        if !state.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "locked"));
        }
        Ok(Box::new(SimLock { state: self.state.clone(), path: path.to_path_buf() }))
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let data = self.data.lock().unwrap();
        let offset = offset as usize;
        if offset >= data.current.len() {
            return Ok(0);
        }
        let available = (data.current.len() - offset).min(buf.len());
        buf[..available].copy_from_slice(&data.current[offset..offset + available]);
        Ok(available)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.faults.mutate()?;
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated write failure"));
        }
        let mut data = self.data.lock().unwrap();
        apply_write(&mut data.current, offset, buf);
        data.pending.push((offset, buf.to_vec()));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.mutate()?;
        let mut held = self.faults.syncs_held.lock().unwrap();
        while *held {
            self.faults.syncs_waiting.fetch_add(1, Ordering::SeqCst);
            held = self.faults.syncs_released.wait(held).unwrap();
            self.faults.syncs_waiting.fetch_sub(1, Ordering::SeqCst);
        }
        drop(held);
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            // As Linux does after a failed writeback: the pages stay readable but are marked clean, so
            // these writes will never reach the disk unless written again.
            self.data.lock().unwrap().pending.clear();
            return Err(io::Error::other("simulated fsync failure"));
        }
        let mut data = self.data.lock().unwrap();
        let pending = std::mem::take(&mut data.pending);
        for (offset, write) in &pending {
            apply_write(&mut data.durable, *offset, write);
        }
        Ok(())
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.data.lock().unwrap().current.len() as u64)
    }

    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.extend_zeroed(len_bytes)
    }

    fn extend_zeroed(&self, len_bytes: u64) -> io::Result<()> {
        let current = self.len_bytes()?;
        if len_bytes > current {
            self.write_all_at(&vec![0; (len_bytes - current) as usize], current)?;
        }
        Ok(())
    }
}
