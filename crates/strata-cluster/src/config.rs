//! What a cluster node is told at start (`strata serve --cluster …`).

use std::path::PathBuf;
use std::time::Duration;

/// The default number of JetStream replicas of the log and the lease bucket.
pub const REPLICAS_DEFAULT: usize = 3;
/// A follower takes the lease over when its revision has not changed for this long, on its own
/// monotonic clock.
pub const LEASE_DEFAULT: Duration = Duration::from_secs(5);
/// The leader renews the lease this often.
pub const RENEW_EVERY_DEFAULT: Duration = Duration::from_secs(1);
/// How long a publish waits for JetStream's acknowledgement before its outcome counts as unknown.
pub const PUBLISH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// A follower that has not heard from the cluster for this long answers reads with 503.
pub const MAX_STALENESS_DEFAULT: Duration = Duration::from_secs(30);

/// One node of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://127.0.0.1:4222`, `tls://…`).
    pub servers: Vec<String>,
    /// Names the JetStream stream and bucket (`STRATA_<name>_default`, `strata_<name>`): letters,
    /// digits, `-` and `_`.
    pub cluster_name: String,
    /// Unique within the cluster; shown as the leader.
    pub node_id: String,
    /// The URL other nodes and clients reach this node's HTTP API at (writes sent to a follower are
    /// forwarded to the leader's).
    pub advertise: String,
    /// JetStream replicas of the log and the bucket (3; 1 for a developer's single NATS server).
    pub replicas: usize,
    pub lease: Duration,
    pub renew_every: Duration,
    pub publish_timeout: Duration,
    pub max_staleness: Duration,
    pub auth: NatsAuth,
    pub tls: NatsTls,
    /// The NATS servers' monitoring URLs (`http://127.0.0.1:8222`): when given, a server that does
    /// not sync always is refused.
    pub monitoring: Vec<String>,
}

impl ClusterConfig {
    pub fn new(servers: Vec<String>, cluster_name: &str, node_id: &str, advertise: &str) -> Self {
        Self {
            servers,
            cluster_name: cluster_name.to_owned(),
            node_id: node_id.to_owned(),
            advertise: advertise.to_owned(),
            replicas: REPLICAS_DEFAULT,
            lease: LEASE_DEFAULT,
            renew_every: RENEW_EVERY_DEFAULT,
            publish_timeout: PUBLISH_TIMEOUT_DEFAULT,
            max_staleness: MAX_STALENESS_DEFAULT,
            auth: NatsAuth::None,
            tls: NatsTls::default(),
            monitoring: Vec::new(),
        }
    }

    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("--cluster needs at least one NATS server URL".to_owned());
        }
        let name_ok = |name: &str| {
            !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.cluster_name) {
            return Err(format!(
                "cluster name {:?}: 1 to 64 letters, digits, '-' or '_' (it names a JetStream stream)",
                self.cluster_name
            ));
        }
        if !name_ok(&self.node_id) {
            return Err(format!("node id {:?}: 1 to 64 letters, digits, '-' or '_'", self.node_id));
        }
        // Followers forward writes to the leader's advertised URL over plain HTTP (TLS to the API
        // comes with "Security and tenancy").
        if !self.advertise.starts_with("http://") {
            return Err(format!("--advertise {:?} must be an http:// URL", self.advertise));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!("--cluster-replicas must be between 1 and 5, not {}", self.replicas));
        }
        if self.lease < self.renew_every * 2 {
            return Err(format!(
                "the lease ({:?}) must be at least twice the renewal interval ({:?})",
                self.lease, self.renew_every
            ));
        }
        Ok(())
    }

    /// The JetStream stream holding a namespace's log.
    pub fn stream_name(&self, namespace: &str) -> String {
        format!("STRATA_{}_{namespace}", self.cluster_name)
    }

    /// The one subject of a namespace's log.
    pub fn subject(&self, namespace: &str) -> String {
        format!("strata.{}.{namespace}.log", self.cluster_name)
    }

    /// The key-value bucket of the lease (and, later, of the groups' state).
    pub fn bucket(&self) -> String {
        format!("strata_{}", self.cluster_name)
    }
}

/// How Strata authenticates to NATS (its JetStream account should be its own).
#[derive(Debug, Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// An NKey seed (`SU…`).
    NKey(String),
    /// A `.creds` file (JWT and NKey seed).
    CredsFile(PathBuf),
}

/// TLS to NATS.
#[derive(Debug, Clone, Default)]
pub struct NatsTls {
    pub required: bool,
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}
