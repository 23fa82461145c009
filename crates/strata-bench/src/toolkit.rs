//! `strata bench toolkit`: the event-sourcing toolkit over the embedded engine, with the banking
//! example's domain (`examples/banking`).
//!
//! - `projection_rebuild_sqlite` / `projection_rebuild_postgres`: rebuilding the balance read model
//!   from position 0 over a store of 1 M deposits and withdrawals in 10,000 accounts, one
//!   transaction per 10,000 events (events/s). The baseline `projection_read_1m` is the same
//!   filtered read with no read model at all — the ceiling any projection has on this store.
//! - `command_handling_64_{hot,cold}`: 64 concurrent commands (load, decide, append with
//!   `Exact(revision)`; snapshots every 50 events), commands/s in `events_per_sec` and their
//!   latency. Hot: each task on its own account, opened just before and growing during the round
//!   (its events and snapshot in memory). Cold: each command on a random one of the 10,000
//!   accounts of the 1 M store (100 events each, spread through the log, read from disk). The
//!   baseline `append_64_no_decide` is the same 64 tasks appending the same deposit with no load and
//!   no decision.

use super::report::{Baseline, Format, Report, Row};
use super::server::progress;
use super::stats::Measurement;
use anyhow::{Context, Result, bail};
use banking::{Account, AccountCommand, AccountEvent, BalancesPostgres, BalancesSqlite, account_stream, codec};
use clap::Args;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use strata_core::{ExpectedRevision, Position, StreamId};
use strata_storage::{MultiAppend, ReadFrom, ReadOptions, Store};
use strata_toolkit::projection::postgres::PostgresTarget;
use strata_toolkit::projection::sqlite::SqliteTarget;
use strata_toolkit::projection::{self, RunOptions, Target};
use strata_toolkit::{CommandHandler, CommandOptions, EventStore};

const SCENARIOS: [&str; 4] =
    ["projection_rebuild_sqlite", "projection_rebuild_postgres", "command_handling_64_hot", "command_handling_64_cold"];
/// Accounts in the rebuild store.
const ACCOUNTS: u64 = 10_000;
/// Concurrent command handlers.
const HANDLERS: usize = 64;
/// The command handlers snapshot every this many events, so a hot account's load stays bounded as
/// it grows during the round.
const SNAPSHOT_EVERY: u64 = 50;
/// A PostgreSQL schema of the bench's own, dropped and created again for each rebuild.
const POSTGRES_SCHEMA: &str = "strata_bench_toolkit";

#[derive(Debug, Args)]
pub struct ToolkitArgs {
    #[command(flatten)]
    run: super::RunArgs,
    /// Events in the store the rebuilds read and the cold commands load from.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// The PostgreSQL server of projection_rebuild_postgres (libpq-style).
    #[arg(long, default_value = "host=127.0.0.1 port=5432 user=postgres dbname=test")]
    postgres: String,
    /// A scenario to run (repeatable): projection_rebuild_sqlite, projection_rebuild_postgres,
    /// command_handling_64_hot, command_handling_64_cold. [default: all]
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
}

pub fn run(args: ToolkitArgs) -> Result<()> {
    if let Some(unknown) = args.scenarios.iter().find(|name| !SCENARIOS.contains(&name.as_str())) {
        bail!("unknown scenario {unknown:?}; the scenarios are {}", SCENARIOS.join(", "));
    }
    let selected = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name);
    let parent = args.run.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new().prefix("strata-bench-toolkit-").tempdir_in(&parent)?;
    super::disk::warn_if_volatile(temp.path());
    eprintln!(
        "strata bench toolkit: {} round(s), {} s per command round, {} events, in {}",
        args.run.rounds,
        args.run.seconds,
        args.events,
        temp.path().display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut report = Report::new(if args.run.json { Format::Json } else { Format::Table });
    let store = Store::open(temp.path().join("store")).context("open the store")?;
    eprintln!("building {} events in {ACCOUNTS} accounts", args.events);
    let built = Instant::now();
    build(&store, args.events)?;
    eprintln!("  built in {:.1} s", built.elapsed().as_secs_f64());

    let rebuilds = [("projection_rebuild_sqlite", false), ("projection_rebuild_postgres", true)];
    if rebuilds.iter().any(|(name, _)| selected(name)) {
        let mut read = Measurement::default();
        let mut rows: Vec<(&'static str, Measurement, Vec<f64>)> = Vec::new();
        for (name, postgres) in rebuilds {
            if !selected(name) {
                continue;
            }
            if postgres
                && let Err(error) = runtime.block_on(tokio_postgres::connect(&args.postgres, tokio_postgres::NoTls))
            {
                eprintln!("{name}: PostgreSQL is not reachable ({error}); left out (scripts/start-services starts it)");
                continue;
            }
            eprintln!("{name}: the balance read model rebuilt from position 0");
            let (mut measured, mut ratios) = (Measurement::default(), Vec::new());
            for number in 0..args.run.rounds {
                let mut baseline = runtime.block_on(read_pass(&store))?;
                progress(number, args.run.rounds, "read only", &mut baseline);
                let baseline_rate = baseline.events_per_sec();
                read.absorb(baseline);
                let mut round = if postgres {
                    runtime.block_on(rebuild_postgres(&store, &args.postgres))?
                } else {
                    let path = temp.path().join(format!("balances-{number}.sqlite"));
                    let round =
                        runtime.block_on(rebuild(&store, SqliteTarget::open(&path, BalancesSqlite::new(1))?))?;
                    std::fs::remove_file(&path)?;
                    round
                };
                progress(number, args.run.rounds, "rebuilt", &mut round);
                ratios.push(round.events_per_sec() / baseline_rate);
                measured.absorb(round);
            }
            rows.push((name, measured, ratios));
        }
        let read_row = Row::measured("projection_read_1m", &mut read);
        let read_rate = read_row.events_per_sec;
        report.emit(read_row);
        for (name, mut measured, round_ratios) in rows {
            let baseline = Baseline { scenario: "projection_read_1m", events_per_sec: read_rate, round_ratios };
            report.emit(Row::measured(name, &mut measured).against(baseline));
        }
    }

    let commands = [("command_handling_64_hot", false), ("command_handling_64_cold", true)];
    if commands.iter().any(|(name, _)| selected(name)) {
        let round = Duration::from_secs(args.run.seconds);
        let mut appends = Measurement::default();
        let mut rows: Vec<(&'static str, Measurement, Vec<f64>)> = Vec::new();
        for (name, cold) in commands {
            if !selected(name) {
                continue;
            }
            eprintln!("{name}: {HANDLERS} concurrent commands (load, decide, append)");
            let (mut measured, mut ratios) = (Measurement::default(), Vec::new());
            for number in 0..args.run.rounds {
                let mut baseline = runtime.block_on(appends_only(&store, number, round))?;
                progress(number, args.run.rounds, "appends only", &mut baseline);
                let baseline_rate = baseline.events_per_sec();
                appends.absorb(baseline);
                let mut commands = runtime.block_on(handle_commands(&store, cold, number, round))?;
                progress(number, args.run.rounds, "commands", &mut commands);
                ratios.push(commands.events_per_sec() / baseline_rate);
                measured.absorb(commands);
            }
            rows.push((name, measured, ratios));
        }
        let append_row = Row::measured("append_64_no_decide", &mut appends);
        let append_rate = append_row.events_per_sec;
        report.emit(append_row);
        for (name, mut measured, round_ratios) in rows {
            let baseline = Baseline { scenario: "append_64_no_decide", events_per_sec: append_rate, round_ratios };
            let mut row = Row::measured(name, &mut measured).against(baseline);
            row.mb_per_sec = None;
            report.emit(row);
        }
    }
    report.finish();
    drop(store);
    drop(runtime);
    Ok(())
}

/// [`ACCOUNTS`] accounts opened, then deposits and withdrawals (3 to 1) among them up to `events`
/// events, appended 1,000 at a time.
fn build(store: &Store, events: u64) -> Result<()> {
    let codec = codec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut written = 0;
    // Every account is opened first, so that deposits into it are valid commands.
    for first in (0..ACCOUNTS.min(events)).step_by(1_000) {
        let mut append = MultiAppend::default();
        for number in first..(first + 1_000).min(ACCOUNTS.min(events)) {
            let account = number.to_string();
            let opened = AccountEvent::AccountOpened { account: account.clone(), owner: account.clone() };
            append.events.push((account_stream(&account), codec.encode(&opened, None)?));
        }
        written += append.events.len() as u64;
        let _ = store.append_multi_blocking(append)?;
    }
    while written < events {
        let mut append = MultiAppend::default();
        for _ in 0..(events - written).min(1_000) {
            let account = format!("{}", rng.random_range(0..ACCOUNTS));
            let amount = rng.random_range(1..10_000);
            let event = if rng.random_range(0..4) == 0 {
                AccountEvent::MoneyWithdrawn { account: account.clone(), amount, transfer: None }
            } else {
                AccountEvent::MoneyDeposited { account: account.clone(), amount, transfer: None }
            };
            append.events.push((account_stream(&account), codec.encode(&event, None)?));
        }
        written += append.events.len() as u64;
        let _ = store.append_multi_blocking(append)?;
    }
    Ok(())
}

/// The rebuild's ceiling: the same filtered read, page by page, with nothing done with the events.
async fn read_pass(store: &Store) -> Result<Measurement> {
    let filter = banking::balance_filter();
    let started = Instant::now();
    let mut from = ReadFrom::Start;
    let mut events = 0;
    loop {
        let page =
            EventStore::read_all(store, from, ReadOptions::forward(projection::CATCH_UP_BATCH_EVENTS_MAX), &filter)
                .await?;
        events += page.events.len() as u64;
        match (page.more, page.events.last()) {
            (true, Some(last)) => from = ReadFrom::At(last.position.next()),
            _ => break,
        }
    }
    Ok(Measurement { events, elapsed: started.elapsed(), latencies_ns: Vec::new() })
}

async fn rebuild(store: &Store, target: impl Target) -> Result<Measurement> {
    let started = Instant::now();
    let checkpoint = projection::run_until_caught_up(store.clone(), target, RunOptions::default()).await?;
    let elapsed = started.elapsed();
    let events = checkpoint.map_or(0, |position: Position| position.value() + 1);
    Ok(Measurement { events, elapsed, latencies_ns: Vec::new() })
}

async fn rebuild_postgres(store: &Store, config: &str) -> Result<Measurement> {
    let (client, connection) = tokio_postgres::connect(config, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE; CREATE SCHEMA {POSTGRES_SCHEMA}"))
        .await?;
    let target =
        PostgresTarget::connect(&format!("{config} options=-csearch_path={POSTGRES_SCHEMA}"), BalancesPostgres::new(1))
            .await?;
    let measured = rebuild(store, target).await?;
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE")).await?;
    drop(client);
    let _ = connection.await;
    Ok(measured)
}

/// Runs `HANDLERS` tasks for `round`, each calling `call(task, n)` in a loop; one event per call.
async fn drive<F, Fut>(round: Duration, call: F) -> Result<Measurement>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..HANDLERS)
        .map(|task| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while started.elapsed() < round {
                    let began = Instant::now();
                    call(task, n).await?;
                    latencies.push(began.elapsed().as_nanos() as u64);
                    n += 1;
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    Measurement::of_tasks(tasks, 1, started).await
}

/// The baseline: each task appends the deposit a command would, with no load and no decision.
async fn appends_only(store: &Store, number: u32, round: Duration) -> Result<Measurement> {
    let store = store.clone();
    let codec = codec();
    drive(round, move |task, _| {
        let (store, codec) = (store.clone(), codec.clone());
        async move {
            let account = format!("plain-{number}-{task}");
            let event = AccountEvent::MoneyDeposited { account: account.clone(), amount: 1, transfer: None };
            let events = vec![codec.encode(&event, None)?];
            let _ = store.append(account_stream(&account), ExpectedRevision::Any, events).await?;
            Ok(())
        }
    })
    .await
}

/// 64 tasks handling deposits: each on its own young account (hot), or each on random accounts
/// of the built store (cold).
async fn handle_commands(store: &Store, cold: bool, number: u32, round: Duration) -> Result<Measurement> {
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec())
        .with_conflict_retries(100)
        .with_snapshots(SNAPSHOT_EVERY, 1);
    if !cold {
        for task in 0..HANDLERS {
            let account = format!("hot-{number}-{task}");
            let open = AccountCommand::Open { account: account.clone(), owner: account.clone() };
            handler.handle(&account_stream(&account), &open, &CommandOptions::default()).await?;
        }
    }
    drive(round, move |task, n| {
        let handler = handler.clone();
        async move {
            let (account, stream): (String, StreamId) = if cold {
                let mut rng = rand::rngs::StdRng::seed_from_u64((number as u64) << 40 | (task as u64) << 24 | n);
                let account = format!("{}", rng.random_range(0..ACCOUNTS));
                let stream = account_stream(&account);
                (account, stream)
            } else {
                let account = format!("hot-{number}-{task}");
                let stream = account_stream(&account);
                (account, stream)
            };
            let command = AccountCommand::Deposit { account, amount: 1 };
            handler.handle(&stream, &command, &CommandOptions::default()).await?;
            Ok(())
        }
    })
    .await
}
