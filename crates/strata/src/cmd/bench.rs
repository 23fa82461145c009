//! `strata bench ARGS…`: runs the `strata-bench` binary built beside this one with the same
//! arguments. The benchmarks live in their own crate (`crates/strata-bench`) so that `strata` links
//! neither the banking example nor the PostgreSQL client.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The name of the benchmark binary, looked for in the directory of the running `strata`.
const BENCH_BINARY: &str = "strata-bench";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What `strata-bench` takes: `engine|server|groups|toolkit|cluster`, `--json`, `--rounds N`,
    /// `--scenario NAME`, … (`strata bench --help` shows its help).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// Replaces this process with `strata-bench ARGS…`: its standard streams, signals and exit code are
/// then the benchmark's own, as if it had been run directly.
pub fn run(args: BenchArgs) -> Result<()> {
    let binary = bench_binary()?;
    let error = std::process::Command::new(&binary).args(&args.args).exec();
    // `exec` returns only when it failed.
    Err(error).with_context(|| format!("run {}", binary.display()))
}

/// `strata-bench` beside the running executable, or an error that says how to build it.
fn bench_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("find the path of the running strata")?;
    let dir = exe.parent().context("the running strata has no directory")?;
    let binary = dir.join(BENCH_BINARY);
    if !binary.is_file() {
        // A debug `strata` (target/debug) looks for a debug `strata-bench`.
        let build = if dir.ends_with("debug") {
            "cargo build -p strata-bench"
        } else {
            "cargo build --release -p strata-bench"
        };
        bail!(
            "the benchmarks are a separate binary, {BENCH_BINARY}, and there is none in {}: build it with \
             `{build}` (or run them directly: `cargo run --release -p strata-bench -- engine`)",
            dir.display()
        );
    }
    Ok(binary)
}
