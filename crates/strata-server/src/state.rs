//! What every handler shares.

use crate::error::ApiError;
use crate::metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_storage::{ConsumerGroups, Store};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// How often the server saves the checkpoints of consumer groups that changed (acks save on their own
/// at most every 100 ms; this catches groups that went idle).
const GROUP_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

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
    /// The consumer groups, loaded at their first use (a command that never touches them never
    /// reads their files).
    groups: Arc<tokio::sync::OnceCell<ConsumerGroups>>,
    /// Tasks [`crate::serve`] waits for before it returns: the subscriptions' readers on the delivery
    /// pool (each ends when its connection is gone) and the groups' checkpoint saver (it saves once
    /// more at shutdown).
    pub(crate) tasks: TaskTracker,
    /// The SSE messages of the latest events, shared by every subscription.
    pub(crate) rendered: Arc<crate::subscribe::RenderedEvents>,
    /// Cluster mode: the node this server runs on (`None`: embedded).
    pub cluster: Option<Arc<dyn crate::cluster::ClusterView>>,
    /// Cluster mode: where the consumer groups keep their state (`None`: the data directory).
    pub group_states: Option<Arc<dyn strata_storage::GroupStates>>,
    /// Cluster mode: idle connections to the leader, for forwards.
    pub(crate) leader_connections: Arc<crate::cluster::LeaderConnections>,
    /// The hosts and origins browsers may use beyond the server's own ([`crate::browser`]).
    pub browser: Arc<crate::browser::BrowserPolicy>,
}

impl AppState {
    pub fn new(store: Store, heartbeat: Duration, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            store,
            metrics: Arc::default(),
            heartbeat,
            started: Instant::now(),
            shutdown,
            groups: Arc::default(),
            tasks: TaskTracker::new(),
            rendered: Arc::default(),
            cluster: None,
            group_states: None,
            leader_connections: Arc::default(),
            browser: Arc::default(),
        }
    }

    /// The store's consumer groups.
    pub async fn groups(&self) -> Result<ConsumerGroups, ApiError> {
        let groups = self
            .groups
            .get_or_try_init(|| async {
                let (store, states) = (self.store.clone(), self.group_states.clone());
                let groups = tokio::task::spawn_blocking(move || match states {
                    Some(states) => ConsumerGroups::open_with(&store, states),
                    None => ConsumerGroups::open(&store),
                })
                .await
                .map_err(|_| ApiError::internal("loading the consumer groups failed unexpectedly"))?
                .map_err(ApiError::from)?;
                // A cluster's leader claims the groups it loaded (see `ConsumerGroups::reload`).
                let leading = self
                    .cluster
                    .as_ref()
                    .is_some_and(|cluster| cluster.write_route() == crate::cluster::WriteRoute::Local);
                if leading {
                    groups.claim_loaded().await.map_err(ApiError::from)?;
                }
                // Checkpoints of idle groups are saved every second, and once more at shutdown.
                let (flushed, shutdown) = (groups.clone(), self.shutdown_signal());
                self.tasks.spawn(async move {
                    tokio::pin!(shutdown);
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep(GROUP_FLUSH_INTERVAL) => log_flush(flushed.flush().await),
                            () = &mut shutdown => { log_flush(flushed.flush().await); return; }
                        }
                    }
                });
                Ok::<_, ApiError>(groups)
            })
            .await?;
        Ok(groups.clone())
    }

    /// Cluster mode: loads the groups again from the cluster (this node started leading — then it
    /// claims them — or stopped), if they were loaded; the next use loads them otherwise.
    pub async fn reload_groups(&self, leading: bool) -> Result<(), strata_storage::GroupError> {
        match self.groups.get() {
            Some(groups) => groups.reload(leading).await,
            None => Ok(()),
        }
    }

    /// The consumer groups if they were loaded (for metrics, which must not load them).
    pub fn loaded_groups(&self) -> Option<ConsumerGroups> {
        self.groups.get().cloned()
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

/// A failed save of the groups' checkpoints is tried again at the next interval; it is logged, since
/// consumers would be sent again what they acked since the last save if the server stopped now.
fn log_flush(flushed: Result<(), strata_storage::GroupError>) {
    if let Err(error) = flushed {
        tracing::warn!(%error, "saving the consumer groups' checkpoints failed; trying again");
    }
}
