//! `strata-bench` (also run as `strata bench`): throughput and latency, side by side with the
//! physical limit (DESIGN.md §8).
//!
//! A crate of its own so that the `strata` binary links neither the banking example nor the PostgreSQL
//! client; `strata bench ARGS…` runs the `strata-bench` built beside it with the same arguments.
//!
//! fdatasync latency on a shared machine can change tenfold from one minute to the next, so an absolute
//! number means little. Each append scenario therefore alternates with its raw baseline round by round
//! in one run (baseline, Strata, baseline, Strata, …), and reports the ratio of the two totals.
//!
//! Exit codes: 0 on success; 1 on any error, after printing the error and its causes to stderr;
//! 2 for a command line clap cannot parse.
//!
//! Codemap:
//! - this file: the command line, the workload, and the order in which scenarios and rounds run.
//! - `raw`: the baselines, the same bytes made durable by a trivial loop.
//! - `engine`: the scenarios that drive the embedded engine.
//! - `server`: `strata bench server`, the HTTP API against the HTTP ceiling and PostgreSQL.
//! - `groups`: `strata bench groups`, consumer groups and 1,000 SSE subscribers.
//! - `toolkit`: `strata bench toolkit`, projection rebuilds and command handling (banking domain).
//! - `layout`: the stores the read and open scenarios build — their streams, types and tags.
//! - `drive`: the load loop both sides share (threads, timing, latency samples).
//! - `stats`: measurements and percentiles.
//! - `report`: rows, the table and the JSON lines.
//! - `disk`: settling the file system between measurements, spotting tmpfs.
//! - `memory`: the process's resident memory.

mod cluster;
mod disk;
mod drive;
mod engine;
mod groups;
mod layout;
mod memory;
mod raw;
mod report;
mod server;
mod stats;
mod toolkit;

use anyhow::{Context, Result, ensure};
use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::ConditionalWriter;
use layout::{Build, Layout, ManyStreams};
use raw::RawFile;
use report::{Baseline, Format, Report, Row, Target};
use stats::Measurement;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use strata_core::{EventType, NewEvent, Query, QueryItem, StreamId, Tag};
use strata_storage::format::record_encoded_len;
use strata_storage::{Filter, Store};

/// Size of each event's data: a small JSON document, typical of business events.
pub const PAYLOAD_BYTES: usize = 200;
/// Concurrent writers in `append_concurrent_64`, `append_conditional_64` and their baselines.
const CONCURRENT_WRITERS: u64 = 64;
/// Events per append in `append_batch_1000` and its baseline.
const BATCH_EVENTS: u64 = 1_000;
/// How many times `open_1m` and `open_10m` open their store; the median is reported.
const OPEN_REPEATS: usize = 3;
/// Streams `open_10m` reads whole after its last open, before it takes the resident memory.
const OPEN_10M_READ_STREAMS: u64 = 100;
/// `open_10m` must open its store of 10 M events in at most this many seconds (the median)…
const OPEN_10M_SECONDS_MAX: f64 = 1.0;
/// … and the process must then hold at most this much resident memory, in MiB.
const OPEN_10M_RSS_MIB_MAX: f64 = 256.0;
/// `read_all_scan` must read at least this many events per second.
const SCAN_EVENTS_PER_SEC_MIN: f64 = 10e6;
/// `append_concurrent_64` must reach this fraction of raw group commit.
const CONCURRENT_RATIO_MIN: f64 = 0.8;
/// `append_batch_1000` must reach this fraction of raw batched writes.
const BATCH_RATIO_MIN: f64 = 0.7;
/// A whole read of a 1,000-event stream (`read_stream_1000`) must take at most this long at p99.
const READ_STREAM_P99_US_MAX: f64 = 2_000.0;

/// With the hash chain, `append_concurrent_64` must reach this fraction of itself without it…
const CHAIN_CONCURRENT_RATIO_MIN: f64 = 0.95;
/// … and `append_batch_1000` this one.
const CHAIN_BATCH_RATIO_MIN: f64 = 0.85;

const RAW_GROUP_COMMIT: &str = "raw_group_commit_64";
const CONCURRENT_UNHASHED: &str = "append_concurrent_64_unhashed";
const BATCH_UNHASHED: &str = "append_batch_1000_unhashed";
const CONCURRENT_HASHED: &str = "append_concurrent_64_hashed";
const BATCH_HASHED: &str = "append_batch_1000_hashed";
const RAW_BATCH: &str = "raw_batch_1000";

/// Measure throughput and latency side by side with the physical limit of this machine.
#[derive(Debug, Parser)]
#[command(name = "strata-bench", version)]
struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The embedded engine: appends against the raw write + fdatasync limit, reads, and recovery.
    Engine(EngineArgs),
    /// The HTTP server against the HTTP ceiling and PostgreSQL: appends, catch-up reads, SSE latency.
    Server(server::ServerArgs),
    /// Consumer groups (acked events/s with 1, 4, 16 consumers; commit-to-delivery latency) and
    /// 1,000 SSE subscribers against the writers' throughput.
    Groups(groups::GroupsArgs),
    /// The event-sourcing toolkit: projection rebuilds into SQLite and PostgreSQL, 64 concurrent
    /// commands on hot and cold aggregates.
    Toolkit(toolkit::ToolkitArgs),
    /// Cluster mode: 3 nats-server and 3 strata nodes on this machine (appends against the
    /// JetStream compare-and-set chain, an embedded server and PostgreSQL; failover; follower lag).
    Cluster(cluster::ClusterArgs),
}

/// What every benchmark takes: output, where to work, and how long to measure.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where to create the temporary working directory; it must be on the disk to measure.
    /// [default: the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Length of each measurement round, in seconds.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Rounds per scenario; the baselines and Strata take turns, one of each per round.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
}

#[derive(Debug, Args)]
struct EngineArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Events in the store that the read scenarios read and open_1m opens.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Events in the store that open_10m builds and opens, in appends of 10 to one stream, over up to
    /// 1,000,000 streams.
    #[arg(long = "events-10m", value_name = "N", default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events_10m: u64,
    /// A scenario to run (repeatable). [default: all but open_10m]
    #[arg(long = "scenario", value_name = "NAME", value_enum)]
    scenarios: Vec<Scenario>,
    /// Stores without the hash chain (every hash zero; `Options::chain_hashing_off_for_benchmarks`),
    /// to measure what the chain costs: compare with a run without this flag.
    #[arg(long)]
    unhashed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 64 threads, each appending single events to its own stream.
    #[value(name = "append_concurrent_64")]
    AppendConcurrent64,
    /// 64 threads, each appending single events under a DCB condition on its own earlier events.
    #[value(name = "append_conditional_64")]
    AppendConditional64,
    /// One thread appending 1,000 events per call.
    #[value(name = "append_batch_1000")]
    AppendBatch1000,
    /// A full forward read of the global log.
    #[value(name = "read_all_scan")]
    ReadAllScan,
    /// Whole reads of 1,000-event streams whose events are spread through the log.
    #[value(name = "read_stream_1000")]
    ReadStream1000,
    /// Full reads of the log filtered by a category, an event type and a tag (a row each).
    #[value(name = "read_filtered")]
    ReadFiltered,
    /// Opening (recovering) the store the read scenarios read.
    #[value(name = "open_1m")]
    Open1m,
    /// Opening a store of 10 M events in 1 M streams, then the resident memory. Only when named: it
    /// takes minutes and about 3 GB of disk.
    #[value(name = "open_10m")]
    Open10m,
    /// What the hash chain costs: `append_concurrent_64` and `append_batch_1000`, each in rounds that
    /// alternate with the same scenario on a store without the chain (every hash zero). Only when named.
    #[value(name = "chain_cost")]
    ChainCost,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::AppendConcurrent64 => "append_concurrent_64",
            Scenario::AppendConditional64 => "append_conditional_64",
            Scenario::AppendBatch1000 => "append_batch_1000",
            Scenario::ReadAllScan => "read_all_scan",
            Scenario::ReadStream1000 => "read_stream_1000",
            Scenario::ReadFiltered => "read_filtered",
            Scenario::Open1m => "open_1m",
            Scenario::Open10m => "open_10m",
            Scenario::ChainCost => "chain_cost",
        }
    }

    /// Whether the scenario runs when none is named: all do but those too slow for every run.
    fn by_default(self) -> bool {
        !matches!(self, Scenario::Open10m | Scenario::ChainCost)
    }
}

fn main() -> ExitCode {
    match run(BenchArgs::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // As `strata` does: the chain, one cause per line, no backtrace.
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Engine(args) => run_engine(args),
        BenchCommand::Server(args) => server::run(args),
        BenchCommand::Groups(args) => groups::run(args),
        BenchCommand::Toolkit(args) => toolkit::run(args),
        BenchCommand::Cluster(args) => cluster::run(args),
    }
}

/// What every scenario shares: where to work, how long to measure, and what to write.
#[derive(Debug)]
struct Plan<'a> {
    dir: &'a Path,
    round: Duration,
    rounds: u32,
    /// The event every scenario writes.
    event: NewEvent,
}

fn run_engine(args: EngineArgs) -> Result<()> {
    engine::UNHASHED.store(args.unhashed, std::sync::atomic::Ordering::Relaxed);
    let selected = |scenario: Scenario| {
        if args.scenarios.is_empty() { scenario.by_default() } else { args.scenarios.contains(&scenario) }
    };
    let parent = args.run.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new()
        .prefix("strata-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("create a temporary directory in {}", parent.display()))?;
    disk::warn_if_volatile(temp.path());
    eprintln!(
        "strata bench engine: {} round(s) of {} s per scenario, in {}",
        args.run.rounds,
        args.run.seconds,
        temp.path().display()
    );
    let plan = Plan {
        dir: temp.path(),
        round: Duration::from_secs(args.run.seconds),
        rounds: args.run.rounds,
        event: deposit()?,
    };
    let mut report = Report::new(if args.run.json { Format::Json } else { Format::Table });
    if selected(Scenario::AppendConcurrent64) {
        append_concurrent(&plan, &mut report)?;
    }
    if selected(Scenario::AppendConditional64) {
        append_conditional(&plan, &mut report)?;
    }
    if selected(Scenario::AppendBatch1000) {
        append_batch(&plan, &mut report)?;
    }
    if STORE_SCENARIOS.iter().any(|&scenario| selected(scenario)) {
        read_and_open(&plan, args.events, &selected, &mut report)?;
    }
    if selected(Scenario::Open10m) {
        open_10m(&plan, args.events_10m, &mut report)?;
    }
    if selected(Scenario::ChainCost) {
        ensure!(!args.unhashed, "chain_cost compares hashed stores with unhashed ones itself: leave out --unhashed");
        chain_cost(&plan, &mut report)?;
    }
    report.finish();
    let dir = temp.path().to_path_buf();
    temp.close().with_context(|| format!("remove {}", dir.display()))
}

/// The event every scenario writes: a deposit whose JSON data is exactly [`PAYLOAD_BYTES`] long.
fn deposit() -> Result<NewEvent> {
    const HEAD: &str = r#"{"amount":123,"note":""#;
    const TAIL: &str = r#""}"#;
    let data = format!("{HEAD}{}{TAIL}", "x".repeat(PAYLOAD_BYTES - HEAD.len() - TAIL.len()));
    assert_eq!(data.len(), PAYLOAD_BYTES);
    Ok(NewEvent::new(EventType::new("MoneyDeposited")?, data))
}

fn account(number: u64) -> Result<StreamId> {
    Ok(StreamId::new(format!("account-{number}"))?)
}

/// As many bytes as `event`'s record takes in `stream` — data, names, header and checksum — so that
/// a baseline writes exactly what Strata writes for it (the per-commit frame header aside: 32 bytes).
fn record_bytes(stream: &StreamId, event: &NewEvent) -> Vec<u8> {
    event.data().iter().copied().cycle().take(record_encoded_len(stream, event)).collect()
}

/// The totals of a baseline and of Strata, measured in alternating rounds.
struct Paired {
    baseline: Measurement,
    strata: Measurement,
    round_ratios: Vec<f64>,
}

impl Plan<'_> {
    /// Runs `baseline` then `strata`, `rounds` times, so that each Strata round is compared with the
    /// baseline measured just before it. The file system is settled before each measurement.
    fn alternate(
        &self,
        names: [&str; 2],
        mut baseline: impl FnMut(u32) -> Result<Measurement>,
        mut strata: impl FnMut(u32) -> Result<Measurement>,
    ) -> Result<Paired> {
        let mut paired =
            Paired { baseline: Measurement::default(), strata: Measurement::default(), round_ratios: vec![] };
        for round in 0..self.rounds {
            disk::settle(self.dir)?;
            let mut raw = baseline(round).with_context(|| format!("{} round {}", names[0], round + 1))?;
            progress(round, self.rounds, names[0], &mut raw, None);
            disk::settle(self.dir)?;
            let mut engine = strata(round).with_context(|| format!("{} round {}", names[1], round + 1))?;
            let ratio = engine.events_per_sec() / raw.events_per_sec();
            progress(round, self.rounds, names[1], &mut engine, Some(ratio));
            paired.round_ratios.push(ratio);
            paired.baseline.absorb(raw);
            paired.strata.absorb(engine);
        }
        Ok(paired)
    }
}

/// Emits the baseline's row, then Strata's with its ratio to the baseline and its target (if any).
/// A baseline paired with two scenarios gets a row the first time only, so that no two rows share
/// a name; each Strata row still carries the rate of the baseline rounds it alternated with.
fn report_pair(report: &mut Report, names: [&'static str; 2], mut paired: Paired, target: Option<Target>) {
    let baseline = Row::measured(names[0], &mut paired.baseline);
    let mut strata = Row::measured(names[1], &mut paired.strata).against(Baseline {
        scenario: names[0],
        events_per_sec: baseline.events_per_sec,
        round_ratios: paired.round_ratios,
    });
    strata.targets.extend(target);
    if !report.has(names[0]) {
        report.emit(baseline);
    }
    report.emit(strata);
}

fn progress(round: u32, rounds: u32, name: &str, measurement: &mut Measurement, ratio: Option<f64>) {
    let p99 = measurement
        .latency()
        .map_or_else(String::new, |latency| format!("  p99 {} µs", report::micros(latency.p99_us)));
    let ratio = ratio.map_or_else(String::new, |ratio| format!("  ratio {ratio:.2}"));
    let rate = report::thousands(measurement.events_per_sec());
    eprintln!("  round {}/{rounds}  {name:<22} {rate:>12} events/s{p99}{ratio}", round + 1);
}

/// 64 writers, each appending one event at a time to its own stream, against raw group commit.
fn append_concurrent(plan: &Plan, report: &mut Report) -> Result<()> {
    let names = [RAW_GROUP_COMMIT, Scenario::AppendConcurrent64.name()];
    eprintln!("{}: {CONCURRENT_WRITERS} writers, one event per append", names[1]);
    let streams = (0..CONCURRENT_WRITERS).map(account).collect::<Result<Vec<_>>>()?;
    // Each raw writer writes as many bytes as its Strata counterpart's record takes in its stream.
    let raw_events: Vec<Vec<u8>> = streams.iter().map(|stream| record_bytes(stream, &plan.event)).collect();
    let mut raw_file = RawFile::create(&plan.dir.join(format!("{}.raw", names[0])))?;
    let paired = plan.alternate(
        names,
        |_| raw::group_commit(&mut raw_file, &raw_events, plan.round),
        |round| {
            let dir = plan.dir.join(format!("{}-{round}", names[1]));
            engine::append_concurrent(&dir, &streams, &plan.event, plan.round, engine::hashed())
        },
    )?;
    report_pair(report, names, paired, Some(Target::RatioMin(CONCURRENT_RATIO_MIN)));
    Ok(())
}

/// 64 writers like `append_concurrent_64`'s, but each append carries a DCB condition — no event of
/// the writer's type and tag after its previous append — which never fails: what it costs is the
/// committer evaluating 64 conditions per group. Against raw group commit of the same bytes.
fn append_conditional(plan: &Plan, report: &mut Report) -> Result<()> {
    let names = [RAW_GROUP_COMMIT, Scenario::AppendConditional64.name()];
    eprintln!("{}: {CONCURRENT_WRITERS} writers, one event per append, each under a condition", names[1]);
    let writers = (0..CONCURRENT_WRITERS).map(|number| conditional_writer(plan, number)).collect::<Result<Vec<_>>>()?;
    let raw_events: Vec<Vec<u8>> = writers.iter().map(|writer| record_bytes(&writer.stream, &writer.event)).collect();
    // Not the file of `append_concurrent_64`'s baseline, which may exist: each run creates its own.
    let mut raw_file = RawFile::create(&plan.dir.join(format!("{}-{}.raw", names[0], names[1])))?;
    let paired = plan.alternate(
        names,
        |_| raw::group_commit(&mut raw_file, &raw_events, plan.round),
        |round| {
            let dir = plan.dir.join(format!("{}-{round}", names[1]));
            engine::append_conditional(&dir, &writers, plan.round)
        },
    )?;
    report_pair(report, names, paired, None);
    Ok(())
}

/// Writer `number` of `append_conditional_64`: it appends to `account-{number}` events of one of the
/// layout's types, tagged `writer:{number}`, and its condition queries exactly that type and tag.
fn conditional_writer(plan: &Plan, number: u64) -> Result<ConditionalWriter> {
    let event_type = EventType::new(layout::EVENT_TYPES[number as usize % layout::EVENT_TYPES.len()])?;
    let tag = Tag::new(format!("writer:{number}"))?;
    Ok(ConditionalWriter {
        stream: account(number)?,
        event: NewEvent::new(event_type.clone(), plan.event.data().clone()).with_tags(vec![tag.clone()])?,
        query: Query::new(vec![QueryItem { types: vec![event_type], tags: vec![tag] }]),
    })
}

/// The chain's cost: `append_concurrent_64` and `append_batch_1000` against themselves on stores
/// without the chain, in alternating rounds: rows `…_hashed` against `…_unhashed`.
fn chain_cost(plan: &Plan, report: &mut Report) -> Result<()> {
    let names = [CONCURRENT_UNHASHED, CONCURRENT_HASHED];
    eprintln!("{}: {CONCURRENT_WRITERS} writers, one event per append, hashed against unhashed", names[1]);
    let streams = (0..CONCURRENT_WRITERS).map(account).collect::<Result<Vec<_>>>()?;
    let dir = |round: u32, hashed: bool| plan.dir.join(format!("chain-concurrent-{round}-{hashed}"));
    let paired = plan.alternate(
        names,
        |round| engine::append_concurrent(&dir(round, false), &streams, &plan.event, plan.round, false),
        |round| engine::append_concurrent(&dir(round, true), &streams, &plan.event, plan.round, true),
    )?;
    report_pair(report, names, paired, Some(Target::RatioMin(CHAIN_CONCURRENT_RATIO_MIN)));

    let names = [BATCH_UNHASHED, BATCH_HASHED];
    eprintln!("{}: one writer, {BATCH_EVENTS} events per append, hashed against unhashed", names[1]);
    let stream = account(0)?;
    let dir = |round: u32, hashed: bool| plan.dir.join(format!("chain-batch-{round}-{hashed}"));
    let batch = |round, hashed| {
        engine::append_batch(&dir(round, hashed), &stream, &plan.event, BATCH_EVENTS, plan.round, hashed)
    };
    let paired = plan.alternate(names, |round| batch(round, false), |round| batch(round, true))?;
    report_pair(report, names, paired, Some(Target::RatioMin(CHAIN_BATCH_RATIO_MIN)));
    Ok(())
}

/// One writer appending 1,000 events per call, against raw batched writes of the same bytes.
fn append_batch(plan: &Plan, report: &mut Report) -> Result<()> {
    let names = [RAW_BATCH, Scenario::AppendBatch1000.name()];
    eprintln!("{}: one writer, {BATCH_EVENTS} events per append", names[1]);
    let stream = account(0)?;
    let raw_batch = record_bytes(&stream, &plan.event).repeat(BATCH_EVENTS as usize);
    let mut raw_file = RawFile::create(&plan.dir.join(format!("{}.raw", names[0])))?;
    let paired = plan.alternate(
        names,
        |_| raw::batch(&mut raw_file, &raw_batch, BATCH_EVENTS, plan.round),
        |round| {
            let dir = plan.dir.join(format!("{}-{round}", names[1]));
            engine::append_batch(&dir, &stream, &plan.event, BATCH_EVENTS, plan.round, engine::hashed())
        },
    )?;
    report_pair(report, names, paired, Some(Target::RatioMin(BATCH_RATIO_MIN)));
    Ok(())
}

/// The scenarios that read or open the one store built from a [`Layout`]. None has a baseline.
const STORE_SCENARIOS: [Scenario; 4] =
    [Scenario::ReadAllScan, Scenario::ReadStream1000, Scenario::ReadFiltered, Scenario::Open1m];

/// Builds one store of `events` events, runs the selected read scenarios on it, closes it and times
/// opening it (`open_1m`).
fn read_and_open(plan: &Plan, events: u64, selected: &dyn Fn(Scenario) -> bool, report: &mut Report) -> Result<()> {
    let dir = plan.dir.join("store");
    let layout = Layout::new(events, plan.event.data().clone())?;
    eprintln!("building a store of {} events", report::thousands(events as f64));
    let began = Instant::now();
    let store = engine::build_store(&dir, &layout).context("build the store to read")?;
    eprintln!("  built in {:.1} s", began.elapsed().as_secs_f64());
    if selected(Scenario::ReadAllScan) {
        read_all_scan(plan, &store, events, report)?;
    }
    if selected(Scenario::ReadStream1000) {
        read_stream(plan, &store, &layout, report)?;
    }
    if selected(Scenario::ReadFiltered) {
        read_filtered(plan, &store, &layout, report)?;
    }
    // Every handle must be gone before the store can be opened again: the directory is locked.
    drop(store);
    if selected(Scenario::Open1m) {
        open(plan, &dir, events, report)?;
    }
    Ok(())
}

/// `read_all_scan`: whole forward reads of the log, after one that brings it into the page cache.
fn read_all_scan(plan: &Plan, store: &Store, events: u64, report: &mut Report) -> Result<()> {
    let name = Scenario::ReadAllScan.name();
    // The first pass brings the segments into the page cache, so rounds measure the engine, not the disk.
    engine::read_all_pass(store, events).context("warm-up read")?;
    let mut total = Measurement::default();
    for round in 0..plan.rounds {
        let mut pass = engine::read_all_pass(store, events).with_context(|| format!("{name} round {}", round + 1))?;
        progress(round, plan.rounds, name, &mut pass, None);
        total.absorb(pass);
    }
    report.emit(Row::measured(name, &mut total).target(Target::EventsPerSecMin(SCAN_EVENTS_PER_SEC_MIN)));
    Ok(())
}

/// `read_stream_1000`: one reader reading the hot streams whole, in turn, warm; latency per read.
fn read_stream(plan: &Plan, store: &Store, layout: &Layout, report: &mut Report) -> Result<()> {
    let name = Scenario::ReadStream1000.name();
    let (streams, events_per_stream) = (layout.hot_streams(), layout.hot_stream_events());
    ensure!(
        events_per_stream > 0,
        "{name}: a store of {} events is too small for streams spread through it; pass a larger --events",
        layout.events()
    );
    eprintln!(
        "{name}: one reader, whole reads of {} streams of {events_per_stream} events each spread through the log",
        streams.len()
    );
    // Brings the streams' records into the page cache (the build may have left some out).
    for stream in streams {
        engine::read_stream(store, stream, events_per_stream).context("warm-up read")?;
    }
    let mut total = Measurement::default();
    for round in 0..plan.rounds {
        let mut reads = engine::read_streams(store, streams, events_per_stream, plan.round)
            .with_context(|| format!("{name} round {}", round + 1))?;
        progress(round, plan.rounds, name, &mut reads, None);
        total.absorb(reads);
    }
    let row = Row::measured(name, &mut total);
    // The target is for streams of 1,000 events: a shorter stream passing it would prove nothing.
    if events_per_stream == layout::HOT_STREAM_EVENTS_MAX {
        report.emit(row.target(Target::P99UsMax(READ_STREAM_P99_US_MAX)));
    } else {
        eprintln!("{name}: no target for streams of {events_per_stream} events; the store is too small for 1,000");
        report.emit(row);
    }
    Ok(())
}

/// `read_filtered`: full forward reads of the log through a filter on a category, an event type and
/// a tag, each a row of its own, after one pass that warms the page cache.
fn read_filtered(plan: &Plan, store: &Store, layout: &Layout, report: &mut Report) -> Result<()> {
    let (category, event_type, tag) = (layout::CATEGORIES[0], layout::EVENT_TYPES[0], layout::tag(0)?);
    let filters = [
        (
            "read_filtered_category",
            format!("category {category}"),
            Filter { category: Some(category.to_owned()), ..Filter::default() },
        ),
        (
            "read_filtered_type",
            format!("type {event_type}"),
            Filter { event_types: vec![EventType::new(event_type)?], ..Filter::default() },
        ),
        ("read_filtered_tag", format!("tag {tag}"), Filter { tags: vec![tag], ..Filter::default() }),
    ];
    for (name, condition, filter) in filters {
        let expected = layout.count_matching(&filter)?;
        eprintln!(
            "{name}: {} of {} events ({:.1}%) have {condition}",
            report::thousands(expected as f64),
            report::thousands(layout.events() as f64),
            expected as f64 * 100.0 / layout.events() as f64
        );
        engine::read_filtered_pass(store, &filter, expected).context("warm-up read")?;
        let mut total = Measurement::default();
        for round in 0..plan.rounds {
            let mut pass = engine::read_filtered_pass(store, &filter, expected)
                .with_context(|| format!("{name} round {}", round + 1))?;
            progress(round, plan.rounds, name, &mut pass, None);
            total.absorb(pass);
        }
        let seconds = total.elapsed.as_secs_f64() / f64::from(plan.rounds);
        report.emit(Row { seconds: Some(seconds), ..Row::measured(name, &mut total) });
    }
    Ok(())
}

/// `open_1m`: the median time of opening the closed store.
fn open(plan: &Plan, dir: &Path, events: u64, report: &mut Report) -> Result<()> {
    let name = Scenario::Open1m.name();
    let (store, seconds) = open_repeatedly(plan, name, dir, events)?;
    drop(store);
    report.emit(Row::timed(name, events, seconds));
    Ok(())
}

/// `open_10m`: builds a store of many short streams, closes it, and takes the median time of opening
/// it; then, with the store as the last open left it, reads [`OPEN_10M_READ_STREAMS`] of its streams
/// whole and takes the process's resident memory — what a server holds once it has started on a large
/// store and served a few reads.
fn open_10m(plan: &Plan, events: u64, report: &mut Report) -> Result<()> {
    let name = Scenario::Open10m.name();
    let dir = plan.dir.join(name);
    let layout = ManyStreams::new(events, plan.event.data().clone())?;
    eprintln!(
        "{name}: building a store of {} events in {} streams",
        report::thousands(events as f64),
        report::thousands(layout.streams() as f64)
    );
    let began = Instant::now();
    let store = engine::build_store(&dir, &layout).context("build the store to open")?;
    eprintln!("  built in {:.1} s", began.elapsed().as_secs_f64());
    // The only handle: dropping it closes the store and releases the directory's lock.
    drop(store);
    // What the build freed is not the opened store's to account for.
    memory::release_freed();
    if let Some(mib) = memory::resident_mib()? {
        eprintln!("  resident memory before opening: {} MiB", report::thousands(mib));
    }
    let (store, seconds) = open_repeatedly(plan, name, &dir, events)?;
    let streams = layout.sample(OPEN_10M_READ_STREAMS)?;
    let began = Instant::now();
    for (stream, stream_events) in &streams {
        engine::read_stream(&store, stream, *stream_events).context("read a stream of the opened store")?;
    }
    eprintln!("  read {} whole streams in {:.1} ms", streams.len(), began.elapsed().as_secs_f64() * 1e3);
    let rss_mib = memory::resident_mib()?;
    match rss_mib {
        Some(mib) => eprintln!("  resident memory with the store open: {} MiB", report::thousands(mib)),
        None => eprintln!("{name}: no /proc/self/status here, so no resident memory to report"),
    }
    drop(store);
    report.emit(
        Row { rss_mib, ..Row::timed(name, events, seconds) }
            .target(Target::SecondsMax(OPEN_10M_SECONDS_MAX))
            .target(Target::RssMibMax(OPEN_10M_RSS_MIB_MAX)),
    );
    Ok(())
}

/// Opens the closed store in `dir` of `events` events [`OPEN_REPEATS`] times, closing it in between;
/// returns the store the last open left open, and the median time of an open in seconds.
fn open_repeatedly(plan: &Plan, name: &str, dir: &Path, events: u64) -> Result<(Store, f64)> {
    let mut seconds = Vec::with_capacity(OPEN_REPEATS);
    let mut store = None;
    for repeat in 0..OPEN_REPEATS {
        // Every handle must be gone before the store can be opened again: the directory is locked.
        drop(store.take());
        disk::settle(plan.dir)?;
        let (opened, elapsed) =
            engine::time_open(dir, events).with_context(|| format!("{name} repeat {}", repeat + 1))?;
        eprintln!("  open {}/{OPEN_REPEATS}  {name:<22} {:.3} s", repeat + 1, elapsed.as_secs_f64());
        seconds.push(elapsed.as_secs_f64());
        store = Some(opened);
    }
    seconds.sort_by(f64::total_cmp);
    let store = store.expect("OPEN_REPEATS is at least one");
    Ok((store, seconds[seconds.len() / 2]))
}
