//! Measurements and the numbers reported from them: rates and latency percentiles.

use std::time::Duration;

/// What timed work produced: how many events in how long, and how long each operation took.
#[derive(Debug, Default)]
pub struct Measurement {
    pub events: u64,
    pub elapsed: Duration,
    /// One sample per operation (an append call, a raw write-and-sync), in nanoseconds, unsorted.
    pub latencies_ns: Vec<u64>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Measurement {
    /// Adds another round. Rates are total events over total time, not a mean of per-round rates, so a
    /// short round weighs no more than its share; percentiles are taken over every sample of every round.
    pub fn absorb(&mut self, round: Measurement) {
        self.events += round.events;
        self.elapsed += round.elapsed;
        self.latencies_ns.extend(round.latencies_ns);
    }

    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Waits for `tasks`, each of which timed its calls (one latency per call, `events_per_call`
    /// events each), and adds them up as one measurement from `started`.
    pub async fn of_tasks(
        tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<u64>>>>,
        events_per_call: usize,
        started: std::time::Instant,
    ) -> anyhow::Result<Measurement> {
        let mut measurement = Measurement::default();
        for task in tasks {
            let latencies = task.await??;
            measurement.events += (latencies.len() * events_per_call) as u64;
            measurement.latencies_ns.extend(latencies);
        }
        measurement.elapsed = started.elapsed();
        Ok(measurement)
    }

    /// The percentiles of the samples, `None` when there are none (a measurement of a whole pass).
    pub fn latency(&mut self) -> Option<Latency> {
        self.latencies_ns.sort_unstable();
        let us = |per_mille| percentile(&self.latencies_ns, per_mille).map(|ns| ns as f64 / 1_000.0);
        Some(Latency { p50_us: us(500)?, p99_us: us(990)?, p999_us: us(999)? })
    }
}

/// The nearest-rank percentile of ascending `sorted` samples: the smallest sample such that at least
/// `per_mille`/1000 of all samples are at most it. Per mille rather than a float percent, so that
/// p99.9 of 1,000 samples is exactly rank 999 and not rank 1,000 through a rounding error.
pub fn percentile(sorted: &[u64], per_mille: u64) -> Option<u64> {
    debug_assert!(per_mille <= 1000, "a percentile is at most 100%");
    debug_assert!(sorted.is_sorted(), "percentile needs sorted samples");
    if sorted.is_empty() {
        return None;
    }
    let rank = (per_mille * sorted.len() as u64).div_ceil(1000).max(1);
    Some(sorted[rank as usize - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_the_nearest_rank() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 500), Some(500));
        assert_eq!(percentile(&samples, 990), Some(990));
        assert_eq!(percentile(&samples, 999), Some(999));
        assert_eq!(percentile(&samples, 1000), Some(1000));
        // Rank 0 does not exist: the lowest percentile is the smallest sample.
        assert_eq!(percentile(&samples, 0), Some(1));
    }

    #[test]
    fn percentile_of_few_samples_rounds_the_rank_up() {
        assert_eq!(percentile(&[], 500), None);
        assert_eq!(percentile(&[7], 999), Some(7));
        // Of 10 samples, p50 is the 5th and p99 and p99.9 are the largest: no sample lies above them.
        let samples: Vec<u64> = (10..=100).step_by(10).collect();
        assert_eq!(percentile(&samples, 500), Some(50));
        assert_eq!(percentile(&samples, 990), Some(100));
        assert_eq!(percentile(&samples, 999), Some(100));
    }

    #[test]
    fn rounds_add_up_to_totals() {
        let mut total = Measurement::default();
        total.absorb(Measurement { events: 300, elapsed: Duration::from_secs(1), latencies_ns: vec![3_000, 1_000] });
        total.absorb(Measurement { events: 100, elapsed: Duration::from_secs(1), latencies_ns: vec![2_000] });
        assert_eq!(total.events_per_sec(), 200.0);
        assert_eq!(total.latency(), Some(Latency { p50_us: 2.0, p99_us: 3.0, p999_us: 3.0 }));
        assert_eq!(Measurement::default().latency(), None);
    }
}
