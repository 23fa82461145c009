//! The scenarios that drive the embedded engine through its public API, as an application would.

use super::account;
use super::drive::drive;
use super::stats::Measurement;
use anyhow::{Context, Result, ensure};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use strata_core::{ExpectedRevision, NewEvent, Position, StreamId};
use strata_storage::{Direction, Options, ReadFrom, Store};

/// Events per append when building the store that the read and open scenarios use.
const BUILD_APPEND_EVENTS: u64 = 100;
/// Streams the built store spreads its events over, so the stream index has a realistic size.
const BUILD_STREAMS: u64 = 10_000;
/// Threads appending concurrently while building: enough for group commit to merge their appends
/// into large frames, so the build is bound by the disk's bandwidth rather than by fdatasync latency.
const BUILD_THREADS: usize = 16;
/// Events per `read_all` call in the scan.
const READ_BATCH_EVENTS: usize = 10_000;

fn open(dir: &Path) -> Result<Store> {
    Store::open_with(dir, Options::default()).with_context(|| format!("open the store in {}", dir.display()))
}

/// Closes `store`, which waits for its committer and for any segment being zero-filled in the
/// background, then removes its directory: a finished round leaves no IO behind to slow the next one.
fn remove_store(store: Store) -> Result<()> {
    let dir = store.dir().to_path_buf();
    drop(store);
    std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))
}

fn append(store: &Store, stream: &StreamId, events: Vec<NewEvent>) -> Result<()> {
    let outcome = store
        .append_blocking(stream.clone(), ExpectedRevision::Any, events)
        .with_context(|| format!("append to {stream}"))?;
    outcome.committed().with_context(|| format!("an append to {stream} expecting any revision was refused"))?;
    Ok(())
}

/// One writer thread per stream in `streams`, each appending `event` alone to its stream, in a loop.
/// Uses a fresh store in `dir`, removed afterwards.
pub fn append_concurrent(
    dir: &Path,
    streams: &[StreamId],
    event: &NewEvent,
    duration: Duration,
) -> Result<Measurement> {
    let store = open(dir)?;
    let calls = streams.iter().map(|stream| || append(&store, stream, vec![event.clone()])).collect();
    let measurement = drive(calls, 1, duration)?;
    remove_store(store)?;
    Ok(measurement)
}

/// One writer appending `events_per_append` copies of `event` to `stream` per call, in a loop.
/// Uses a fresh store in `dir`, removed afterwards.
pub fn append_batch(
    dir: &Path,
    stream: &StreamId,
    event: &NewEvent,
    events_per_append: u64,
    duration: Duration,
) -> Result<Measurement> {
    let store = open(dir)?;
    let call = || append(&store, stream, vec![event.clone(); events_per_append as usize]);
    let measurement = drive(vec![call], events_per_append, duration)?;
    remove_store(store)?;
    Ok(measurement)
}

/// Creates a store in `dir` holding `events` copies of `event`, spread round-robin over
/// [`BUILD_STREAMS`] streams in appends of [`BUILD_APPEND_EVENTS`].
pub fn build_store(dir: &Path, event: &NewEvent, events: u64) -> Result<Store> {
    let store = open(dir)?;
    let appends = events.div_ceil(BUILD_APPEND_EVENTS);
    let next_append = AtomicU64::new(0);
    let build = || -> Result<()> {
        loop {
            let number = next_append.fetch_add(1, Ordering::Relaxed);
            if number >= appends {
                return Ok(());
            }
            let count = BUILD_APPEND_EVENTS.min(events - number * BUILD_APPEND_EVENTS);
            append(&store, &account(number % BUILD_STREAMS)?, vec![event.clone(); count as usize])?;
        }
    };
    thread::scope(|scope| {
        let mut builders = Vec::with_capacity(BUILD_THREADS);
        for _ in 0..BUILD_THREADS {
            builders.push(thread::Builder::new().spawn_scoped(scope, build).context("spawn a builder thread")?);
        }
        builders.into_iter().try_for_each(|builder| builder.join().expect("builder thread panicked"))
    })?;
    let head = store.head_position().map_or(0, |head| head.value() + 1);
    ensure!(head == events, "built a store of {head} events instead of {events}");
    Ok(store)
}

/// Reads the whole global log forwards, [`READ_BATCH_EVENTS`] at a time, checking that positions are
/// dense and that all `events` are there.
pub fn read_all_pass(store: &Store, events: u64) -> Result<Measurement> {
    let began = Instant::now();
    let mut next = 0;
    loop {
        let batch = store
            .read_all(ReadFrom::At(Position::new(next)), Direction::Forward, READ_BATCH_EVENTS)
            .with_context(|| format!("read the log from position {next}"))?;
        let Some(last) = batch.last() else { break };
        let first = batch[0].position.value();
        ensure!(
            first == next && last.position.value() == next + batch.len() as u64 - 1,
            "a read from position {next} returned positions {first}..={} for {} events",
            last.position,
            batch.len()
        );
        next += batch.len() as u64;
    }
    let elapsed = began.elapsed();
    ensure!(next == events, "read {next} events from a store of {events}");
    Ok(Measurement { events, elapsed, latencies_ns: Vec::new() })
}

/// How long [`Store::open`] takes on the closed store in `dir` of `events` events: recovery reads and
/// verifies every frame and rebuilds the indexes.
pub fn time_open(dir: &Path, events: u64) -> Result<Duration> {
    let began = Instant::now();
    let store = open(dir)?;
    let elapsed = began.elapsed();
    let recovered = store.recovery_report().events;
    ensure!(recovered == events, "recovered {recovered} events from a store of {events}");
    Ok(elapsed)
}
