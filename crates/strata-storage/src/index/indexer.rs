//! The indexer thread: writes each frozen memtable as an index run and merges runs, off the
//! committer's path. The committer only hands it a full tail (see `Index::freeze`); readers keep
//! reading the frozen memtable until the run replaces it, and the replaced runs until their last
//! reader lets go.
//!
//! Merging keeps the number of runs logarithmic: whenever the newest [`MERGE_FAN_IN`] runs are of
//! the same size tier (tiers grow by a factor of [`MERGE_FAN_IN`]), they become one run. Each event
//! is thus rewritten about log₄(events / run size) times over the life of a store.

use crate::commit::committer::Shared;
use crate::index::run::{self, MergeSource, Run};
use crate::index::{Frozen, FrozenSource};
use crate::io::Storage;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How many runs of one tier are merged into one.
pub(crate) const MERGE_FAN_IN: usize = 4;
/// How long the indexer waits before trying a failed run write again (a full disk, say).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The committer's side: where frozen memtables go.
#[derive(Debug)]
pub(crate) struct Handle {
    /// Events a tail collects before it is frozen.
    pub run_events: u64,
    sender: mpsc::Sender<Arc<Frozen>>,
}

impl Handle {
    pub fn send(&self, frozen: Arc<Frozen>) {
        // The indexer outlives the committer (the store joins it after), so the send cannot fail
        // unless the indexer panicked; the frozen memtable then stays readable in memory.
        let _ = self.sender.send(frozen);
    }
}

/// The indexer's threads: one writes frozen memtables as runs (never waiting for a merge, so the
/// tail stays bounded), one merges runs.
pub(crate) struct Threads {
    pub writer: JoinHandle<()>,
    pub merger: JoinHandle<()>,
}

/// Starts the indexer for the runs in `dir`.
pub(crate) fn start(
    shared: Arc<Shared>,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    run_events: u64,
    cancel: Arc<AtomicBool>,
) -> std::io::Result<(Handle, Threads)> {
    let (sender, receiver) = mpsc::channel();
    let (merge_wanted, merge_requests) = mpsc::channel::<()>();
    let merger = {
        let (shared, storage, dir, cancel) = (shared.clone(), storage.clone(), dir.clone(), cancel.clone());
        std::thread::Builder::new().name("strata-merger".to_owned()).spawn(move || {
            // SAFETY: setpriority has no memory-safety preconditions; its failure is harmless.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            // Ends when the writer thread drops its sender (the store is closing).
            while merge_requests.recv().is_ok() {
                merge(&shared, &storage, &dir, run_events, &cancel);
            }
        })?
    };
    let writer = std::thread::Builder::new().name("strata-indexer".to_owned()).spawn(move || {
        // Writing runs is bulk work that must not take the CPU from the committer.
        // SAFETY: setpriority has no memory-safety preconditions; its failure is harmless.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        // Runs written at recovery may want merging.
        let _ = merge_wanted.send(());
        while let Ok(frozen) = receiver.recv() {
            write_frozen(&shared, &storage, &dir, frozen, &cancel);
            let _ = merge_wanted.send(());
        }
        // The committer has stopped: write what is left, so that the next open reads nothing from
        // the log. One attempt: a failure only means the next open reads more. Not over a log the
        // committer could not make durable (a poisoned store): the next open reads it instead.
        let frozen = match shared.poisoned.get() {
            Some(_) => None,
            None => shared.index.write().expect("index lock poisoned").freeze(1),
        };
        if let Some(frozen) = frozen {
            cancel.store(true, Ordering::Relaxed);
            write_frozen(&shared, &storage, &dir, frozen, &cancel);
        }
    })?;
    Ok((Handle { run_events, sender }, Threads { writer, merger }))
}

/// Writes `frozen` as a run and installs it, trying again while it fails (unless cancelled).
fn write_frozen(shared: &Shared, storage: &Arc<dyn Storage>, dir: &Path, frozen: Arc<Frozen>, cancel: &AtomicBool) {
    loop {
        match run::write_run(storage, dir, &mut FrozenSource(frozen.clone())) {
            Ok(run) => {
                shared.index.write().expect("index lock poisoned").install_run(Arc::new(run));
                shared.stats.index_runs_written.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(error) => {
                shared.stats.record_index_failure(format!("writing an index run in {}: {error}", dir.display()));
                // Wait before trying again, but not past the store's close.
                let started = std::time::Instant::now();
                while started.elapsed() < RETRY_AFTER {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// The size tier of a run of `events`: 0 below `MERGE_FAN_IN × run_events`, then one more per factor.
fn tier(events: u64, run_events: u64) -> u32 {
    let mut tier = 0;
    let mut size = run_events.max(1).saturating_mul(MERGE_FAN_IN as u64);
    while events >= size && size < u64::MAX {
        size = size.saturating_mul(MERGE_FAN_IN as u64);
        tier += 1;
    }
    tier
}

/// The runs to merge next: [`MERGE_FAN_IN`] neighbours of one tier, the newest such group first (so
/// that runs written in a row — at recovery, say — are merged too, not only the newest).
fn pick(runs: &[Arc<Run>], run_events: u64) -> Option<Vec<Arc<Run>>> {
    let tiers: Vec<u32> = runs.iter().map(|run| tier(run.len(), run_events)).collect();
    (MERGE_FAN_IN..=runs.len())
        .rev()
        .map(|end| end - MERGE_FAN_IN..end)
        .find(|window| tiers[window.clone()].iter().all(|&t| t == tiers[window.start]))
        .map(|window| runs[window].to_vec())
}

fn merge(shared: &Shared, storage: &Arc<dyn Storage>, dir: &Path, run_events: u64, cancel: &AtomicBool) {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let _maintenance = shared.maintenance.lock().expect("maintenance lock poisoned");
        let picked = pick(shared.index.read().expect("index lock poisoned").runs(), run_events);
        let Some(runs) = picked else { return };
        let merged = run::write_run(storage, dir, &mut MergeSource { runs, cancel });
        match merged {
            Ok(merged) => {
                let replaced = shared.index.write().expect("index lock poisoned").replace_runs(Arc::new(merged));
                for run in replaced {
                    run.remove();
                }
                shared.stats.index_merges.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                if !cancel.load(Ordering::Relaxed) {
                    shared.stats.record_index_failure(format!("merging index runs in {}: {error}", dir.display()));
                }
                // The runs stay as they are; the next run written tries again.
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_grow_by_the_fan_in() {
        assert_eq!(tier(1, 100), 0);
        assert_eq!(tier(399, 100), 0);
        assert_eq!(tier(400, 100), 1);
        assert_eq!(tier(1_599, 100), 1);
        assert_eq!(tier(1_600, 100), 2);
        assert_eq!(tier(u64::MAX, 100), tier(u64::MAX - 1, 100));
    }
}
