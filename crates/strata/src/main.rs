//! The `strata` command line.
//!
//! Codemap:
//! - `cmd`: one file per command (`serve`, …).
//! - `logging`: the `tracing` subscriber (`RUST_LOG`, `serve --log-format text|json`), to stderr.
//!   `bench` only runs the `strata-bench` binary built beside this one (`crates/strata-bench`).
//!
//! Exit codes: 0 on success; 1 on any error, after printing the error and its causes to stderr;
//! 2 for a command line clap cannot parse. `strata bench` becomes `strata-bench`, so its exit code
//! is the benchmark's.

mod cmd;
mod logging;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tracing_subscriber::filter::LevelFilter;

#[derive(Debug, Parser)]
#[command(name = "strata", version, about = "Strata: a durable event store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: cmd::target::TargetArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API over a data directory (stops cleanly on SIGTERM / Ctrl-C).
    Serve(Box<cmd::serve::ServeArgs>),
    /// Append one event to a stream.
    Append(cmd::events::AppendArgs),
    /// Read a stream's events.
    Read(cmd::events::ReadArgs),
    /// Read the global log, optionally filtered.
    ReadAll(cmd::events::ReadAllArgs),
    /// Follow the global log (or a stream) live.
    Tail(cmd::events::TailArgs),
    /// List streams.
    Streams(cmd::events::StreamsArgs),
    /// Facts about one stream.
    Info(cmd::events::InfoArgs),
    /// Write every event, as NDJSON, to a file or standard output (a consistent snapshot).
    Export(cmd::archive::ExportArgs),
    /// Append the events of an export, keeping ids, order and recorded times (resumable).
    Import(cmd::archive::ImportArgs),
    /// Back up a consistent snapshot, online, to a directory.
    Backup(cmd::archive::BackupArgs),
    /// Restore a backup into an empty data directory.
    Restore(cmd::archive::RestoreArgs),
    /// Check checksums, positions, ids, revisions and indexes; exit 1 on damage.
    Verify,
    /// Reclaim the space of deleted, truncated and expired events (online; they become placeholders).
    Scavenge,
    /// Consumer groups: create, list, consume, ack, park and replay.
    #[command(subcommand)]
    Groups(cmd::groups::GroupsCommand),
    /// Measure throughput and latency side by side with the physical limit of this machine (runs
    /// the `strata-bench` built beside this binary: `cargo build --release -p strata-bench`).
    #[command(disable_help_flag = true)]
    Bench(cmd::bench::BenchArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain, one cause per line, and no backtrace: an error here is about the machine or the
            // arguments (a full disk, a missing directory), not a bug to debug.
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            logging::init(args.log_format, LevelFilter::INFO)?;
            cmd::serve::run(*args, cli.target.data)
        }
        Command::Bench(args) => cmd::bench::run(args),
        command => {
            // A command's answer is its output; the log shows only what went wrong, unless asked.
            logging::init(logging::LogFormat::Text, LevelFilter::WARN)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            let json = cli.target.json;
            runtime.block_on(async {
                let target = cmd::target::Target::open(&cli.target)?;
                match command {
                    Command::Append(args) => cmd::events::append(&target, args, json).await,
                    Command::Read(args) => cmd::events::read(&target, args, json).await,
                    Command::ReadAll(args) => cmd::events::read_all(&target, args, json).await,
                    Command::Tail(args) => cmd::events::tail(&target, args, json).await,
                    Command::Streams(args) => cmd::events::streams(&target, args, json).await,
                    Command::Info(args) => cmd::events::info(&target, args, json).await,
                    Command::Export(args) => cmd::archive::export(&target, args, json).await,
                    Command::Import(args) => cmd::archive::import(&target, args, json).await,
                    Command::Backup(args) => cmd::archive::backup(&target, args, json).await,
                    Command::Restore(args) => cmd::archive::restore(&target, args, json).await,
                    Command::Verify => cmd::archive::verify(&target, json).await,
                    Command::Scavenge => cmd::archive::scavenge(&target, json).await,
                    Command::Groups(command) => cmd::groups::run(&target, command, json).await,
                    Command::Serve(_) | Command::Bench(_) => unreachable!("handled above"),
                }
            })
        }
    }
}
