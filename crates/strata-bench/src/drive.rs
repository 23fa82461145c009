//! Load generation: one OS thread per call, each calling it in a loop until time is up, timing every call.
//!
//! The raw baselines and the engine scenarios go through this one loop, so that both sides of a ratio
//! pay for the same harness: the same threads, the same clock reads, the same sample bookkeeping.

use super::stats::Measurement;
use anyhow::{Context, Result};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How often the timing thread looks whether a caller failed, so an error does not wait out the round.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Runs each of `calls` on its own thread, in a loop, for `duration`; every call stands for
/// `events_per_call` events. Calls in flight when time is up are finished and counted, and the elapsed
/// time runs until the last of them returns, so no work is counted without its time.
pub fn drive<F>(calls: Vec<F>, events_per_call: u64, duration: Duration) -> Result<Measurement>
where
    F: FnMut() -> Result<()> + Send,
{
    let stop = AtomicBool::new(false);
    // The starting gate: held for writing until every thread is spawned, so that all of them start
    // together and thread creation is not timed. A read lock is how a thread waits at the gate.
    let gate = RwLock::new(());
    thread::scope(|scope| {
        let closed_gate = gate.write().expect("gate lock poisoned");
        let mut threads = Vec::with_capacity(calls.len());
        for (number, mut call) in calls.into_iter().enumerate() {
            let (stop, gate) = (&stop, &gate);
            let spawned = thread::Builder::new().name(format!("bench-{number}")).spawn_scoped(scope, move || {
                drop(gate.read().expect("gate lock poisoned"));
                let mut latencies_ns = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    if let Err(error) = call() {
                        stop.store(true, Ordering::Relaxed);
                        return Err(error);
                    }
                    latencies_ns.push(began.elapsed().as_nanos() as u64);
                }
                Ok(latencies_ns)
            });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(error) => {
                    // Threads already spawned see the stop flag as soon as the gate opens (dropped here).
                    stop.store(true, Ordering::Relaxed);
                    return Err(error).context("spawn a benchmark thread");
                }
            }
        }
        drop(closed_gate);
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let Some(left) = duration.checked_sub(start.elapsed()).filter(|left| !left.is_zero()) else { break };
            thread::sleep(left.min(POLL_INTERVAL));
        }
        stop.store(true, Ordering::Relaxed);
        let mut measurement = Measurement::default();
        let mut first_error = None;
        for thread in threads {
            match thread.join().expect("benchmark thread panicked") {
                Ok(latencies_ns) => {
                    measurement.events += latencies_ns.len() as u64 * events_per_call;
                    measurement.latencies_ns.extend(latencies_ns);
                }
                Err(error) => first_error = first_error.or(Some(error)),
            }
        }
        measurement.elapsed = start.elapsed();
        match first_error {
            Some(error) => Err(error),
            None => Ok(measurement),
        }
    })
}
