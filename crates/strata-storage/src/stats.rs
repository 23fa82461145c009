//! Counters and latency histograms the engine keeps about itself, for `/metrics` and benchmarks.
//! Lock-free (relaxed atomics): a reader may see a counter a commit ahead of another, never a torn value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (the last bucket, `+Inf`, is implicit).
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    10_000_000,
];

/// A cumulative latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`]).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative), plus one for values above the last bound.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US.partition_point(|&bound| bound < micros);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut counts = [0; LATENCY_BUCKETS_US.len() + 1];
        for (count, bucket) in counts.iter_mut().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            *count = cumulative;
        }
        HistogramSnapshot { cumulative_counts: counts, sum_us: self.sum_us.load(Ordering::Relaxed) }
    }
}

/// A histogram at one moment: `cumulative_counts[i]` values were at most `LATENCY_BUCKETS_US[i]`;
/// the last entry is the total count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub cumulative_counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative_counts[LATENCY_BUCKETS_US.len()]
    }
}

/// What the committer counts.
#[derive(Debug, Default)]
pub(crate) struct EngineStats {
    pub commits: AtomicU64,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub fsync: LatencyHistogram,
    pub index_runs_written: AtomicU64,
    pub index_merges: AtomicU64,
    pub index_failures: AtomicU64,
    pub last_index_failure: std::sync::Mutex<Option<String>>,
    /// Messages of a replicated log that were not frames continuing the chain, skipped.
    pub frames_skipped: AtomicU64,
}

/// The engine's counters since the store was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    /// Frames (commit groups) written and synced.
    pub commits: u64,
    /// Events committed, system events included.
    pub events: u64,
    /// Bytes of frames written to segments.
    pub bytes: u64,
    /// Latency of the fdatasync of each commit.
    pub fsync: HistogramSnapshot,
    /// Index runs written from the in-memory tail, and merges of runs, by the indexer.
    pub index_runs_written: u64,
    pub index_merges: u64,
    /// Failed run writes or merges (each is retried; the indexes stay correct, only memory and the
    /// next open's work grow), and the last one's reason.
    pub index_failures: u64,
    pub last_index_failure: Option<String>,
    /// Messages of a replicated log (cluster mode) skipped for not being frames continuing the
    /// chain: a stray publish, a frame of another history. Every replica skips the same ones.
    pub frames_skipped: u64,
}

impl EngineStats {
    pub fn snapshot(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            fsync: self.fsync.snapshot(),
            index_runs_written: self.index_runs_written.load(Ordering::Relaxed),
            index_merges: self.index_merges.load(Ordering::Relaxed),
            index_failures: self.index_failures.load(Ordering::Relaxed),
            last_index_failure: self.last_index_failure.lock().expect("stats lock").clone(),
            frames_skipped: self.frames_skipped.load(Ordering::Relaxed),
        }
    }

    pub fn record_index_failure(&self, reason: String) {
        tracing::warn!(%reason, "index maintenance failed; it is tried again (the log is unaffected)");
        self.index_failures.fetch_add(1, Ordering::Relaxed);
        *self.last_index_failure.lock().expect("stats lock") = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inclusive_of_their_bound() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_micros(50));
        histogram.record(Duration::from_micros(51));
        histogram.record(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative_counts[0], 1);
        assert_eq!(snapshot.cumulative_counts[1], 2);
        assert_eq!(snapshot.cumulative_counts[LATENCY_BUCKETS_US.len() - 1], 2);
        assert_eq!(snapshot.count(), 3);
        assert_eq!(snapshot.sum_us, 50 + 51 + 60_000_000);
    }
}
