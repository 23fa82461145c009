//! The log: `tracing` events from every crate, to stderr, filtered like `RUST_LOG` (default `info`
//! for `serve`, `warn` for the other commands, whose output is their answer), as text or JSON lines.
//!
//! The libraries only emit events; this is the one place a subscriber is installed. What they log
//! never holds event data, metadata or credentials (see `docs/api.md`, "Logs").

use anyhow::{Context, Result};
use clap::ValueEnum;
use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event: time, level, target, message, fields.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields.
    Json,
}

/// Installs the subscriber: events at `default` and above unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat, default: LevelFilter) -> Result<()> {
    let filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .from_env()
        .context("RUST_LOG is not a valid filter (like `info` or `warn,strata_server=debug`)")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
    Ok(())
}
