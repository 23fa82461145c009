//! Servers for tests (feature `testing`): the HTTP API on a free port of 127.0.0.1 over a store in a
//! temporary directory — embedded, or as the follower node of a two-node cluster on a private
//! nats-server. The HTTP contract tests and the client tests run on both ([`on_every_target!`]),
//! so that what a client sees of a cluster node is checked against what it sees embedded.
//!
//! On a cluster follower, writes sent to it are forwarded to the leader (served over HTTP too) and
//! answered once the follower applied them; reads, subscriptions and `/v1/info` are the follower's
//! own. Nothing here sends traffic beyond 127.0.0.1, and the nats-server is stopped by its PID when
//! the server is dropped.

use crate::ServeOptions;
use crate::cluster::NodeView;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_cluster::testing::{NatsCluster, nats_server_binary, services_required};
use strata_cluster::{ClusterConfig, Node, Role};
use strata_storage::{Options, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `strata serve` over a data directory.
    Embedded,
    /// The follower of a two-node cluster (one nats-server, one JetStream replica, a 1.5 s lease).
    ClusterFollower,
}

/// Declares each named `async fn name(target: Target)` as a test once per [`Target`]:
/// `embedded::name` and `cluster_follower::name`. The cluster's variant skips visibly when no
/// nats-server can be installed, and fails instead when `STRATA_REQUIRE_SERVICES=1`.
#[macro_export]
macro_rules! on_every_target {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::Target::Embedded).await;
                }
            )*
        }
        mod cluster_follower {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::testing::cluster_available(stringify!($name)) {
                        super::$name($crate::testing::Target::ClusterFollower).await;
                    }
                }
            )*
        }
    };
}

/// Whether a nats-server can be run here; says so when a test skips for want of one.
pub fn cluster_available(test: &str) -> bool {
    match nats_server_binary() {
        Ok(_) => true,
        Err(reason) if !services_required() => {
            eprintln!("SKIPPED {test} on a cluster follower: no nats-server 2.15.1: {reason}");
            false
        }
        Err(reason) => panic!("{test}: no nats-server (STRATA_REQUIRE_SERVICES=1): {reason}"),
    }
}

/// A served store of a [`Target`]. Its HTTP server can be stopped and started again on the same
/// address over the same store ([`Served::stop_serving`], [`Served::serve_again`]).
#[derive(Debug)]
pub struct Served {
    address: SocketAddr,
    options: ServeOptions,
    /// The store the server answers from (on a cluster follower: its replica).
    pub store: Store,
    node: Option<Arc<Node>>,
    running: Option<Running>,
    cluster: Option<Leader>,
    _dir: tempfile::TempDir,
}

/// An HTTP server task and what stops it.
#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn start(store: Store, node: Option<&Arc<Node>>, listener: TcpListener, options: ServeOptions) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let view = node.map(|node| Arc::new(NodeView::new(node.clone())) as Arc<dyn crate::cluster::ClusterView>);
        let task = tokio::spawn(crate::serve_node(store, view, listener, options, async move {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the server task ends").expect("the server stops cleanly");
    }
}

/// The rest of a cluster follower's cluster: the leader, served over HTTP for the follower to
/// forward to, and the nats-server.
#[derive(Debug)]
struct Leader {
    url: String,
    node: Arc<Node>,
    running: Running,
    _dir: tempfile::TempDir,
    _nats: NatsCluster,
}

impl Served {
    /// A server of `target`; on a cluster follower both nodes' stores are opened with
    /// `store_options` and both servers run with `options`.
    pub async fn start(target: Target, options: ServeOptions, store_options: Options) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let address = listener.local_addr().expect("the bound address");
        let (store, node, cluster) = match target {
            Target::Embedded => (Store::open_with(dir.path(), store_options).expect("the store opens"), None, None),
            Target::ClusterFollower => {
                let nats = NatsCluster::start(1).expect("a private nats-server starts");
                let leader_dir = tempfile::tempdir().expect("a temporary directory");
                let leader_listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
                let url = format!("http://{}", leader_listener.local_addr().expect("the bound address"));
                let config = node_config(&nats, "leader", &url);
                let leader = Arc::new(
                    Node::start(config, leader_dir.path(), store_options.clone()).await.expect("node 1 starts"),
                );
                wait_for(Duration::from_secs(10), "the first node to lead", || leader.role() == Role::Leader).await;
                let config = node_config(&nats, "follower", &format!("http://{address}"));
                let follower = Arc::new(Node::start(config, dir.path(), store_options).await.expect("node 2 starts"));
                wait_for(Duration::from_secs(10), "the second node to follow the first", || {
                    let status = follower.status();
                    status.role == Role::Follower && status.leader.is_some_and(|leader| leader.node_id == "leader")
                })
                .await;
                let running = Running::start(leader.store().clone(), Some(&leader), leader_listener, options.clone());
                let leader = Leader { url, node: leader, running, _dir: leader_dir, _nats: nats };
                (follower.store().clone(), Some(follower), Some(leader))
            }
        };
        let running = Some(Running::start(store.clone(), node.as_ref(), listener, options.clone()));
        Self { address, options, store, node, running, cluster, _dir: dir }
    }

    pub fn target(&self) -> Target {
        if self.cluster.is_some() { Target::ClusterFollower } else { Target::Embedded }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The server's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The URL of the node that decides writes: this server when embedded, the leader on a cluster.
    pub fn deciding_url(&self) -> String {
        match &self.cluster {
            None => self.url(),
            Some(leader) => leader.url.clone(),
        }
    }

    /// The store that takes appends made directly, in-process: this store when embedded, the
    /// leader's on a cluster (a follower's committer refuses to decide). What is appended there is
    /// in [`Served::store`] once [`Served::replicated`] returns.
    pub fn deciding_store(&self) -> &Store {
        match &self.cluster {
            None => &self.store,
            Some(leader) => leader.node.store(),
        }
    }

    /// Waits until [`Served::store`] holds everything [`Served::deciding_store`] holds (at once
    /// when embedded).
    pub async fn replicated(&self) {
        if let (Some(node), Some(head)) = (&self.node, self.deciding_store().head_position()) {
            let head = head.value();
            assert!(node.wait_for_position(head, Duration::from_secs(10)).await, "position {head} applied");
        }
    }

    /// Stops this server the way SIGTERM does (subscriptions end), and waits until it has; the
    /// store (and on a cluster both nodes) stays.
    pub async fn stop_serving(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Serves again on the same address over the same store.
    pub async fn serve_again(&mut self) {
        assert!(self.running.is_none(), "the server is running");
        let listener = TcpListener::bind(self.address).await.expect("the same address again");
        self.running = Some(Running::start(self.store.clone(), self.node.as_ref(), listener, self.options.clone()));
    }

    /// Stops the server, and on a cluster the leader's server and both nodes.
    pub async fn stop(mut self) {
        self.stop_serving().await;
        if let Some(leader) = self.cluster.take() {
            leader.running.stop().await;
            if let Some(follower) = self.node.take() {
                follower.shutdown().await;
            }
            leader.node.shutdown().await;
        }
    }
}

/// A node of the test cluster: one JetStream replica, a short lease.
fn node_config(nats: &NatsCluster, node: &str, url: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(nats.urls(), "contract", node, url);
    config.replicas = 1;
    config.lease = Duration::from_millis(1500);
    config.renew_every = Duration::from_millis(300);
    config
}

async fn wait_for(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(began.elapsed() < within, "waited {within:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A certificate authority of a test's own (rcgen): the certificates it issues chain to it.
pub struct TestAuthority {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for TestAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAuthority").finish_non_exhaustive()
    }
}

impl TestAuthority {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("a key pair");
        Self { cert: params.self_signed(&key).expect("a self-signed CA"), key }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's certificate, DER (for a rustls root store).
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A certificate for `names` (IP addresses become IP SANs) for a server, or a client (`client`),
    /// and its key: both PEM.
    pub fn issue(&self, names: &[&str], client: bool) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("certificate parameters");
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().expect("a key pair");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("a certificate the CA signed");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a server certificate for `localhost` and 127.0.0.1 and its key into `dir`
    /// (`server.pem`, `server.key`, replacing what is there) and names them for `--tls-cert` and
    /// `--tls-key`.
    pub fn server_files(&self, dir: &std::path::Path) -> crate::tls::TlsFiles {
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"], false);
        std::fs::write(dir.join("server.pem"), cert).expect("write server.pem");
        std::fs::write(dir.join("server.key"), key).expect("write server.key");
        crate::tls::TlsFiles { cert: dir.join("server.pem"), key: dir.join("server.key"), client_ca: None }
    }
}
