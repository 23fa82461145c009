//! The `strata` command line.
//!
//! Codemap:
//! - `cmd`: one file per command (`serve`, …).
//! - `bench`: `strata bench engine`, the embedded engine measured against the physical limit.
//!
//! Exit codes: 0 on success; 1 on any error, after printing the error and its causes to stderr;
//! 2 for a command line clap cannot parse.

mod bench;
mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "strata", version, about = "Strata: a durable event store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API over a data directory (stops cleanly on SIGTERM / Ctrl-C).
    Serve(cmd::serve::ServeArgs),
    /// Measure throughput and latency side by side with the physical limit of this machine.
    Bench(bench::BenchArgs),
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
        Command::Serve(args) => cmd::serve::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
