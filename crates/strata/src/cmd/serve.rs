//! `strata serve`: the HTTP API over a data directory, until SIGTERM or SIGINT. What it does is
//! logged (`tracing`, to stderr): listening, shutting down, the store closed; the engine logs its
//! recovery and the server its requests (at debug).

use crate::logging::LogFormat;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use strata_server::{LISTEN_DEFAULT, ServeOptions};
use strata_storage::Store;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = LISTEN_DEFAULT)]
    pub listen: String,
    /// How log lines are written to stderr; `RUST_LOG` filters them (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub fn run(args: ServeArgs, data: PathBuf) -> Result<()> {
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the runtime")?;
    let store = Store::open(&data).with_context(|| format!("open the store in {}", data.display()))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listen on {} (is another server running there?)", args.listen))?;
        let address = listener.local_addr().context("read the listening address")?;
        // The recovery figures were logged by the engine as it opened the store.
        tracing::info!(
            %address,
            data = %data.display(),
            head_position = store.head_position().map(|position| position.value()),
            "serving on http://{address}"
        );
        strata_server::serve(store, listener, ServeOptions::default(), shutdown_signal())
            .await
            .context("serve the API")?;
        tracing::info!("stopped serving; closing the store");
        Ok::<_, anyhow::Error>(())
    })?;
    // The runtime's tasks held the last clones of the store: dropping it lets the committer finish
    // what is queued, sync, and release the directory lock.
    drop(runtime);
    tracing::info!("store closed");
    Ok(())
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Every segment file stays open (a descriptor cache comes with the persistent indexes), and every
/// connection takes a descriptor: raise the soft limit to the hard limit, as databases do, so a large
/// store or many subscribers do not hit the common default of 1,024.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an `rlimit` this function owns.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            let wanted = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                tracing::warn!(limit = limit.rlim_cur, "could not raise the open-files limit");
            }
        }
    }
}
