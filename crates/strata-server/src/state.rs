//! What every handler shares.

use crate::metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_storage::Store;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Interval of SSE heartbeat comments (they keep proxies from closing idle subscriptions and let
    /// clients notice a dead server).
    pub heartbeat: Duration,
    pub started: Instant,
    /// Becomes `true` when the server shuts down: subscriptions end so connections can close.
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub fn new(store: Store, heartbeat: Duration, shutdown: watch::Receiver<bool>) -> Self {
        Self { store, metrics: Arc::default(), heartbeat, started: Instant::now(), shutdown }
    }

    /// Resolves when the server starts shutting down.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut shutdown = self.shutdown.clone();
        async move {
            // A server whose shutdown sender is gone (one embedded without graceful shutdown) never
            // shuts down on its own: that must not end every subscription at once.
            if shutdown.wait_for(|&shutting_down| shutting_down).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
