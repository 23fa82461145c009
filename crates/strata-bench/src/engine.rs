//! The scenarios that drive the embedded engine through its public API, as an application would.

use super::drive::drive;
use super::layout::{self, Build, HOT_STREAM_EVENTS_MAX};
use super::report;
use super::stats::Measurement;
use anyhow::{Context, Result, bail, ensure};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use strata_core::{ExpectedRevision, NewEvent, Position, Query, StreamId};
use strata_storage::{
    AppendCondition, Direction, Filter, MultiAppend, MultiAppendOutcome, Options, ReadFrom, ReadOptions, Store,
};

/// Threads appending concurrently while building: enough for group commit to merge their appends
/// into large frames, so the build is bound by the disk's bandwidth rather than by fdatasync latency.
const BUILD_THREADS: usize = 16;
/// How often a build says how far it got.
const BUILD_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How often the thread waiting for the builders looks whether they are done.
const BUILD_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Events per `read_all` call in the scans, filtered or not.
const READ_BATCH_EVENTS: usize = 10_000;

/// `--unhashed`: the stores this run opens skip the hash chain.
pub static UNHASHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the stores of this run are hashed: not with `--unhashed`.
pub fn hashed() -> bool {
    !UNHASHED.load(std::sync::atomic::Ordering::Relaxed)
}

fn open(dir: &Path) -> Result<Store> {
    open_chained(dir, hashed())
}

/// Opens a store with the hash chain or (`hashed == false`) with every hash zero.
fn open_chained(dir: &Path, hashed: bool) -> Result<Store> {
    let options = Options { chain_hashing_off_for_benchmarks: !hashed, ..Options::default() };
    Store::open_with(dir, options).with_context(|| format!("open the store in {}", dir.display()))
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
    hashed: bool,
) -> Result<Measurement> {
    let store = open_chained(dir, hashed)?;
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
    hashed: bool,
) -> Result<Measurement> {
    let store = open_chained(dir, hashed)?;
    let call = || append(&store, stream, vec![event.clone(); events_per_append as usize]);
    let measurement = drive(vec![call], events_per_append, duration)?;
    remove_store(store)?;
    Ok(measurement)
}

/// One writer thread per entry of `writers`, each appending its event alone to its stream, in a loop,
/// under a DCB condition: that no event matching its query exists after the writer's own previous
/// append. Only the writer itself appends such events, so the condition always holds; what is measured
/// is the committer evaluating it. Uses a fresh store in `dir`, removed afterwards.
pub fn append_conditional(dir: &Path, writers: &[ConditionalWriter], duration: Duration) -> Result<Measurement> {
    let store = open(dir)?;
    let calls = writers
        .iter()
        .map(|writer| {
            let store = &store;
            // Where the writer's previous append went: its condition looks for matching events after it.
            let mut after = None;
            move || {
                let append = MultiAppend {
                    events: vec![(writer.stream.clone(), writer.event.clone())],
                    checks: Vec::new(),
                    condition: Some(AppendCondition { query: writer.query.clone(), after }),
                };
                let stream = &writer.stream;
                match store.append_multi_blocking(append).with_context(|| format!("append to {stream}"))? {
                    MultiAppendOutcome::Committed(result) => {
                        after = Some(result.last_position);
                        Ok(())
                    }
                    refused => bail!("a conditional append to {stream} after {after:?} was refused: {refused:?}"),
                }
            }
        })
        .collect();
    let measurement = drive(calls, 1, duration)?;
    remove_store(store)?;
    Ok(measurement)
}

/// A writer of `append_conditional_64`: what it appends, where, and the query its condition checks.
#[derive(Debug)]
pub struct ConditionalWriter {
    pub stream: StreamId,
    pub event: NewEvent,
    pub query: Query,
}

/// Creates a store in `dir` holding the events of `layout`, appended by [`BUILD_THREADS`] threads.
/// A build that takes a while says every [`BUILD_PROGRESS_INTERVAL`] how far it got, on stderr.
pub fn build_store(dir: &Path, layout: &impl Build) -> Result<Store> {
    let store = open(dir)?;
    let next_append = AtomicU64::new(0);
    // Set by a builder that failed, so that the others stop rather than finish a build of minutes.
    let failed = AtomicBool::new(false);
    let build = || -> Result<()> {
        while !failed.load(Ordering::Relaxed) {
            let number = next_append.fetch_add(1, Ordering::Relaxed);
            if number >= layout.appends() {
                break;
            }
            build_append(&store, layout, number).inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
        }
        Ok(())
    };
    let began = Instant::now();
    thread::scope(|scope| {
        let mut builders = Vec::with_capacity(BUILD_THREADS);
        for _ in 0..BUILD_THREADS {
            let spawned = thread::Builder::new().spawn_scoped(scope, build);
            builders.push(
                spawned.inspect_err(|_| failed.store(true, Ordering::Relaxed)).context("spawn a builder thread")?,
            );
        }
        let mut reported = began;
        while !builders.iter().all(|builder| builder.is_finished()) {
            thread::sleep(BUILD_POLL_INTERVAL);
            if reported.elapsed() >= BUILD_PROGRESS_INTERVAL {
                reported = Instant::now();
                let (written, seconds) = (events_in(&store), began.elapsed().as_secs_f64());
                let total = report::thousands(layout.events() as f64);
                eprintln!(
                    "  {:>width$} of {total} events written in {seconds:.0} s ({} events/s)",
                    report::thousands(written as f64),
                    report::thousands(written as f64 / seconds),
                    width = total.len()
                );
            }
        }
        builders.into_iter().try_for_each(|builder| builder.join().expect("builder thread panicked"))
    })?;
    let head = events_in(&store);
    ensure!(head == layout.events(), "built a store of {head} events instead of {}", layout.events());
    Ok(store)
}

fn build_append(store: &Store, layout: &impl Build, number: u64) -> Result<()> {
    let append = MultiAppend { events: layout.append(number)?, checks: Vec::new(), condition: None };
    match store.append_multi_blocking(append).with_context(|| format!("build append {number}"))? {
        MultiAppendOutcome::Committed(_) => Ok(()),
        refused => bail!("build append {number}, without checks or condition, was refused: {refused:?}"),
    }
}

/// Events the build appended to `store` so far: every position after the `$store-created` at 0.
fn events_in(store: &Store) -> u64 {
    store.head_position().map_or(0, |head| head.value())
}

/// Reads the whole global log forwards, [`READ_BATCH_EVENTS`] at a time, checking that positions are
/// dense and that all `events` are there after the `$store-created` at position 0 (which is read and
/// counted too).
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
    ensure!(next == events + 1, "read {next} events from a store of {events} and its $store-created");
    Ok(Measurement { events: next, elapsed, latencies_ns: Vec::new() })
}

/// One reader reading whole streams of `streams`, each `events_per_stream` long, in turn, in a loop,
/// for `duration`: one call reads one stream forwards with a limit of [`HOT_STREAM_EVENTS_MAX`].
pub fn read_streams(
    store: &Store,
    streams: &[StreamId],
    events_per_stream: u64,
    duration: Duration,
) -> Result<Measurement> {
    let mut turn = 0;
    let call = || {
        let stream = &streams[turn % streams.len()];
        turn += 1;
        read_stream(store, stream, events_per_stream)
    };
    drive(vec![call], events_per_stream, duration)
}

/// Reads `stream` from its start, checking that all of its `events` came back, in order.
pub fn read_stream(store: &Store, stream: &StreamId, events: u64) -> Result<()> {
    let read = store
        .read_stream(stream, ReadFrom::Start, Direction::Forward, HOT_STREAM_EVENTS_MAX as usize)
        .with_context(|| format!("read {stream}"))?;
    let last = read.last().map(|event| event.revision.value());
    ensure!(
        read.len() as u64 == events && last == events.checked_sub(1),
        "a read of {stream} returned {} events up to revision {last:?}, not {events}",
        read.len()
    );
    Ok(())
}

/// Reads every event of the global log that matches `filter`, forwards, [`READ_BATCH_EVENTS`] at a
/// time, checking that each matches, that positions ascend, and that `expected` events came back.
pub fn read_filtered_pass(store: &Store, filter: &Filter, expected: u64) -> Result<Measurement> {
    let options = ReadOptions::forward(READ_BATCH_EVENTS);
    let began = Instant::now();
    let mut next = 0;
    let mut matched = 0;
    loop {
        let page = store
            .read_all_with(ReadFrom::At(Position::new(next)), &options, filter)
            .with_context(|| format!("read the log from position {next} with {filter:?}"))?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            let position = event.position.value();
            ensure!(position >= next, "a filtered read from position {next} returned position {position}");
            ensure!(
                layout::matches(filter, &event.stream, &event.event_type, event.tags.iter()),
                "{filter:?} returned the event at position {position}, which does not match it"
            );
            next = position + 1;
        }
        matched += page.len() as u64;
    }
    let elapsed = began.elapsed();
    ensure!(matched == expected, "{filter:?} returned {matched} events; {expected} match it");
    Ok(Measurement { events: matched, elapsed, latencies_ns: Vec::new() })
}

/// Opens the closed store in `dir` of `events` events (after its `$store-created`), and says how
/// long [`Store::open`] took: recovery reads and verifies every frame and rebuilds the indexes.
pub fn time_open(dir: &Path, events: u64) -> Result<(Store, Duration)> {
    let began = Instant::now();
    let store = open(dir)?;
    let elapsed = began.elapsed();
    let recovered = store.recovery_report().events;
    ensure!(recovered == events + 1, "recovered {recovered} events from a store of {events} and its $store-created");
    Ok((store, elapsed))
}
