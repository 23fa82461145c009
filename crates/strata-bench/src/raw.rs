//! The physical limit (DESIGN.md §8): the bytes Strata writes for the same events, written and made
//! durable by the simplest loop that gives the same guarantee — `pwrite` + `fdatasync` into a
//! preallocated file, with no format, no index, no checks.

use super::drive::drive;
use super::stats::Measurement;
use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::{self, Thread};
use std::time::Duration;
use strata_storage::SEGMENT_SIZE_BYTES_DEFAULT;

/// As large as a Strata segment, so both sides write into the same amount of preallocated space.
const FILE_SIZE_BYTES: u64 = SEGMENT_SIZE_BYTES_DEFAULT;
/// Zeros are written in chunks of this size, as Strata does when it prepares a segment.
const ZERO_CHUNK_BYTES: u64 = 1 << 20;

/// A preallocated file written round-robin: each write goes after the last one, and back to the start
/// when it would not fit before the end.
#[derive(Debug)]
pub struct RawFile {
    file: File,
    path: PathBuf,
    offset: u64,
}

impl RawFile {
    /// Creates the file and preallocates it the way Strata preallocates a segment: zeros really written
    /// over the whole size, then one fdatasync. Strata does this because on ext4 an fdatasync into
    /// written blocks is about 1.7x faster than into `fallocate`d (unwritten) extents, whose conversion
    /// to written must be journalled; a baseline that preallocated differently would measure the file
    /// system's choice, not the engine.
    pub fn create(path: &Path) -> Result<RawFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("create {}", path.display()))?;
        let zeros = vec![0u8; ZERO_CHUNK_BYTES as usize];
        let mut offset = 0;
        while offset < FILE_SIZE_BYTES {
            let chunk = (FILE_SIZE_BYTES - offset).min(ZERO_CHUNK_BYTES);
            file.write_all_at(&zeros[..chunk as usize], offset)
                .with_context(|| format!("zero-fill {} at byte {offset}", path.display()))?;
            offset += chunk;
        }
        file.sync_data().with_context(|| format!("fdatasync {}", path.display()))?;
        Ok(RawFile { file, path: path.to_path_buf(), offset: 0 })
    }

    /// Writes `bytes` at the next offset and waits until they are durable.
    fn write_durably(&mut self, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        assert!(len <= FILE_SIZE_BYTES, "a raw write of {len} bytes does not fit the file");
        if self.offset + len > FILE_SIZE_BYTES {
            self.offset = 0;
        }
        self.file.write_all_at(bytes, self.offset).with_context(|| format!("write {}", self.path.display()))?;
        self.file.sync_data().with_context(|| format!("fdatasync {}", self.path.display()))?;
        self.offset += len;
        Ok(())
    }
}

/// One writer writing `batch` (the records of a whole append) with one write and one fdatasync, in a
/// loop, for `duration`. Each write counts `events_per_batch` events.
pub fn batch(file: &mut RawFile, batch: &[u8], events_per_batch: u64, duration: Duration) -> Result<Measurement> {
    drive(vec![|| file.write_durably(batch)], events_per_batch, duration)
}

/// Group commit with one writer thread per entry of `events`: each submits its event's bytes and waits
/// for the acknowledgement, in a loop; one committer thread writes everything submitted since its
/// last fdatasync with one write and one fdatasync, then acknowledges all of it. This is the least
/// work that makes many concurrent small appends durable, hence the limit Strata's committer is held to.
pub fn group_commit(file: &mut RawFile, events: &[Vec<u8>], duration: Duration) -> Result<Measurement> {
    let queue = CommitQueue::new(events.len());
    thread::scope(|scope| {
        let committer = thread::Builder::new()
            .name("raw-committer".to_owned())
            .spawn_scoped(scope, || queue.run_committer(file))
            .context("spawn the raw committer thread")?;
        let queue = &queue;
        let calls = events.iter().enumerate().map(|(writer, bytes)| move || queue.commit(writer, bytes)).collect();
        let measured = drive(calls, 1, duration);
        queue.close();
        // The committer's error is the cause; the writers' errors only say that it failed.
        committer.join().expect("raw committer panicked")?;
        measured
    })
}

/// What the writers and the committer share.
///
/// Wake-ups are targeted, as in Strata (a tokio channel and a oneshot per append): a writer wakes the
/// committer only when it is idle, and the committer unparks exactly the writers it acknowledges. A
/// broadcast condition variable would wake all 64 writers to fight over one mutex after every
/// fdatasync — on a two-core machine that costs more than the fdatasync, and the baseline would measure
/// the thundering herd instead of the disk.
#[derive(Debug)]
struct CommitQueue {
    state: Mutex<QueueState>,
    /// Signalled when bytes are queued for an idle committer, or the queue is closed.
    queued: Condvar,
    /// Per writer: set by the committer once the writer's last submission is durable.
    acknowledged: Vec<AtomicBool>,
    /// Set when a write or fdatasync failed; writers give up.
    failed: AtomicBool,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Bytes submitted since the committer last took them.
    pending: Vec<u8>,
    /// The writers whose bytes are in `pending`, and how to wake them.
    waiting: Vec<(usize, Thread)>,
    /// The committer is waiting on `queued` (and must be signalled).
    committer_idle: bool,
    closed: bool,
}

impl CommitQueue {
    fn new(writers: usize) -> CommitQueue {
        CommitQueue {
            state: Mutex::default(),
            queued: Condvar::new(),
            acknowledged: (0..writers).map(|_| AtomicBool::new(false)).collect(),
            failed: AtomicBool::new(false),
        }
    }

    /// Submits `bytes` for `writer` and returns once they are durable.
    fn commit(&self, writer: usize, bytes: &[u8]) -> Result<()> {
        let acknowledged = &self.acknowledged[writer];
        acknowledged.store(false, Ordering::Relaxed);
        {
            let mut state = self.state.lock().expect("raw commit queue lock poisoned");
            state.pending.extend_from_slice(bytes);
            state.waiting.push((writer, thread::current()));
            if state.committer_idle {
                state.committer_idle = false;
                self.queued.notify_one();
            }
        }
        // `park` may return spuriously; the flag is the truth.
        while !acknowledged.load(Ordering::Acquire) {
            thread::park();
        }
        if self.failed.load(Ordering::Acquire) {
            bail!("the raw committer failed");
        }
        Ok(())
    }

    /// Lets the committer stop once it has written what is queued.
    fn close(&self) {
        self.state.lock().expect("raw commit queue lock poisoned").closed = true;
        self.queued.notify_one();
    }

    /// Writes and acknowledges groups until the queue is closed and drained. After a failure it goes on
    /// acknowledging (with `failed` set) without writing, so no writer waits forever; the error is
    /// returned at the end.
    fn run_committer(&self, file: &mut RawFile) -> Result<()> {
        // Swapped with the queue's, so writers fill one pair while the committer writes the other.
        let mut bytes = Vec::new();
        let mut waiting = Vec::new();
        let mut failure = None;
        loop {
            {
                let mut state = self.state.lock().expect("raw commit queue lock poisoned");
                while state.pending.is_empty() && !state.closed {
                    state.committer_idle = true;
                    state = self.queued.wait(state).expect("raw commit queue lock poisoned");
                }
                if state.pending.is_empty() {
                    return failure.map_or(Ok(()), Err);
                }
                std::mem::swap(&mut state.pending, &mut bytes);
                std::mem::swap(&mut state.waiting, &mut waiting);
            }
            if failure.is_none() {
                if let Err(error) = file.write_durably(&bytes) {
                    self.failed.store(true, Ordering::Release);
                    failure = Some(error);
                }
            }
            bytes.clear();
            for (writer, thread) in waiting.drain(..) {
                self.acknowledged[writer].store(true, Ordering::Release);
                thread.unpark();
            }
        }
    }
}
