//! [`ClusterView`] over a [`strata_cluster::Node`] (feature `cluster`): what the HTTP API asks a
//! cluster node — where writes go, whether reads are stale, `/v1/info`'s `cluster` — answered from
//! the node's status.

use super::{ClusterView, WriteRoute};
use std::sync::Arc;

/// The HTTP API's view of a cluster node.
#[derive(Debug)]
pub struct NodeView(Arc<strata_cluster::Node>);

impl NodeView {
    pub fn new(node: Arc<strata_cluster::Node>) -> Self {
        Self(node)
    }
}

impl ClusterView for NodeView {
    fn write_route(&self) -> WriteRoute {
        let status = self.0.status();
        if let Some(reason) = status.halted {
            return WriteRoute::Unavailable { reason: format!("writes are halted on this node: {reason}") };
        }
        match status.role {
            strata_cluster::Role::Leader => WriteRoute::Local,
            strata_cluster::Role::Candidate => WriteRoute::Unavailable {
                reason: "this node is taking the lease over and catching up; nothing was sent — retry in a moment".to_owned(),
            },
            strata_cluster::Role::Follower => match status.leader.filter(|leader| leader.node_id != status.node_id) {
                Some(leader) => WriteRoute::Forward { leader_url: leader.url },
                None => WriteRoute::Unavailable {
                    reason: "no node leads the cluster now (the lease is being taken over); nothing was sent — retry in a moment"
                        .to_owned(),
                },
            },
        }
    }

    fn stale(&self) -> Option<String> {
        self.0.stale()
    }

    fn info(&self) -> strata_wire::ClusterInfo {
        let status = self.0.status();
        strata_wire::ClusterInfo {
            cluster_name: status.cluster_name,
            node_id: status.node_id,
            role: match status.role {
                strata_cluster::Role::Leader => "leader",
                strata_cluster::Role::Candidate => "candidate",
                strata_cluster::Role::Follower => "follower",
            }
            .to_owned(),
            leader_id: status.leader.as_ref().map(|leader| leader.node_id.clone()),
            leader_url: status.leader.map(|leader| leader.url),
            lease_revision: status.lease_revision,
            log_last_sequence: status.log_last_sequence,
            applied_sequence: status.applied_sequence,
            lag_frames: status.lag_frames,
            lag_seconds: status.lag_seconds,
            last_contact_ms: status.last_contact_ms,
            writes_halted: status.halted,
        }
    }

    fn refusal_mark(&self) -> u64 {
        self.0.refusal_mark()
    }

    fn confirm_refusal(&self, mark: u64) -> futures_util::future::BoxFuture<'_, Result<bool, String>> {
        Box::pin(self.0.confirm_refusal(mark))
    }

    fn group_states(&self) -> Arc<dyn strata_storage::GroupStates> {
        self.0.group_states()
    }

    fn watch_leading(&self) -> tokio::sync::watch::Receiver<bool> {
        // A task of its own turns the node's role into "leads or not" (a candidate does not lead yet).
        let mut role = self.0.watch_role();
        let (leading, watch) = tokio::sync::watch::channel(*role.borrow() == strata_cluster::Role::Leader);
        tokio::spawn(async move {
            while role.changed().await.is_ok() {
                let now = *role.borrow_and_update() == strata_cluster::Role::Leader;
                leading.send_if_modified(|was| std::mem::replace(was, now) != now);
                if leading.is_closed() {
                    return;
                }
            }
        });
        watch
    }
}
