//! `strata serve`: the HTTP API over a data directory, until SIGTERM or SIGINT. What it does is
//! logged (`tracing`, to stderr): listening, shutting down, the store closed; the engine logs its
//! recovery and the server its requests (at debug).

use crate::logging::LogFormat;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_server::cluster::NodeView;
use strata_server::tls::{Tls, TlsFiles};
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
    /// Host names the server answers besides loopback names and IP addresses, comma-separated (DNS
    /// rebinding protection; `*` for any, behind a proxy that checks the host). A cluster node adds
    /// its --advertise host itself.
    #[arg(long, value_delimiter = ',', value_name = "HOSTS")]
    pub allowed_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`, comma-separated) whose pages may use the API: CORS
    /// answers, and requests that change state. Without it only the server's own origin may.
    #[arg(long = "cors-origin", value_delimiter = ',', value_name = "ORIGINS")]
    pub cors_origins: Vec<String>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain; read again on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates chaining to these PEM CA certificates (mTLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback (behind a proxy that terminates TLS, or on
    /// a network you trust): without it, such an address needs --tls-cert.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl ServeArgs {
    /// What browsers may use ([`strata_server::browser`]): the listed hosts and origins, and a
    /// cluster node's own advertised host (its peers forward to it under that name).
    fn browser_policy(&self) -> Result<strata_server::browser::BrowserPolicy> {
        let mut hosts = self.allowed_hosts.clone();
        // The name it listens on is one it is reached by (and the default advertised URL's).
        hosts.push(self.listen.clone());
        if let Some(advertise) = &self.cluster.advertise {
            let authority = advertise.split_once("://").map_or(advertise.as_str(), |(_, rest)| rest);
            hosts.push(authority.split('/').next().unwrap_or_default().to_owned());
        }
        strata_server::browser::BrowserPolicy::new(&hosts, &self.cors_origins).map_err(anyhow::Error::msg)
    }
}

/// Cluster mode: the log on a NATS JetStream cluster (docs/design.md, "Cluster mode"; README,
/// "Running a cluster"). Without `--cluster` nothing of this applies.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// NATS servers, comma-separated (`nats://H1:4222,nats://H2:4222,nats://H3:4222`): run as a node
    /// of a cluster whose log is on their JetStream.
    #[arg(long, value_delimiter = ',', value_name = "URLS")]
    pub cluster: Vec<String>,
    /// The cluster's name (names its JetStream stream and bucket).
    #[arg(long, default_value = "strata", requires = "cluster")]
    pub cluster_name: String,
    /// This node's id, unique in the cluster.
    #[arg(long, requires = "cluster")]
    pub node_id: Option<String>,
    /// The URL other nodes and clients reach this node at (default: http://<listen>).
    #[arg(long, requires = "cluster")]
    pub advertise: Option<String>,
    /// JetStream replicas of the log (1 for a single development NATS server).
    #[arg(long, default_value_t = strata_cluster::config::REPLICAS_DEFAULT, requires = "cluster")]
    pub cluster_replicas: usize,
    /// A follower takes the lease over when it has not been renewed for this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration, requires = "cluster")]
    pub lease: Duration,
    /// A follower cut off from the cluster for longer than this answers reads with 503.
    #[arg(long, default_value = "30s", value_parser = parse_duration, requires = "cluster")]
    pub max_staleness: Duration,
    /// The NATS servers' monitoring URLs (comma-separated): refuse any that does not sync always.
    #[arg(long, value_delimiter = ',', requires = "cluster")]
    pub nats_monitoring: Vec<String>,
    /// NATS user (with --nats-password).
    #[arg(long, env = "STRATA_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    #[arg(long, env = "STRATA_NATS_PASSWORD", hide_env_values = true, requires = "nats_user")]
    pub nats_password: Option<String>,
    /// NATS token.
    #[arg(long, env = "STRATA_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// NATS NKey seed file.
    #[arg(long)]
    pub nats_nkey_file: Option<PathBuf>,
    /// NATS credentials (.creds) file.
    #[arg(long)]
    pub nats_creds: Option<PathBuf>,
    /// Require TLS to NATS.
    #[arg(long)]
    pub nats_tls: bool,
    /// CA certificate (PEM) to verify the NATS servers with.
    #[arg(long)]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for NATS servers that verify clients.
    #[arg(long, requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    #[arg(long, requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 = number.parse().map_err(|_| format!("{text:?}: a duration like 500ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" | "" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?}: a duration like 500ms, 5s or 2m")),
    }
}

impl ClusterArgs {
    fn config(&self, listen: &str) -> Result<Option<strata_cluster::ClusterConfig>> {
        if self.cluster.is_empty() {
            return Ok(None);
        }
        let node_id = self.node_id.clone().context("--cluster needs --node-id (unique in the cluster)")?;
        let advertise = self.advertise.clone().unwrap_or_else(|| format!("http://{listen}"));
        let mut config =
            strata_cluster::ClusterConfig::new(self.cluster.clone(), &self.cluster_name, &node_id, &advertise);
        config.replicas = self.cluster_replicas;
        config.lease = self.lease;
        config.renew_every = (self.lease / 5).clamp(Duration::from_millis(100), Duration::from_secs(1));
        config.max_staleness = self.max_staleness;
        config.monitoring = self.nats_monitoring.clone();
        let methods = [
            self.nats_user.is_some(),
            self.nats_token.is_some(),
            self.nats_nkey_file.is_some(),
            self.nats_creds.is_some(),
        ];
        if methods.iter().filter(|given| **given).count() > 1 {
            anyhow::bail!(
                "give one way to authenticate to NATS: --nats-user/--nats-password, --nats-token, --nats-nkey-file or --nats-creds"
            );
        }
        config.auth = if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            strata_cluster::NatsAuth::UserPassword { user: user.clone(), password: password.clone() }
        } else if let Some(token) = &self.nats_token {
            strata_cluster::NatsAuth::Token(token.clone())
        } else if let Some(path) = &self.nats_nkey_file {
            let seed =
                std::fs::read_to_string(path).with_context(|| format!("read the NKey seed file {}", path.display()))?;
            strata_cluster::NatsAuth::NKey(seed.trim().to_owned())
        } else if let Some(path) = &self.nats_creds {
            strata_cluster::NatsAuth::CredsFile(path.clone())
        } else {
            strata_cluster::NatsAuth::None
        };
        config.tls = strata_cluster::NatsTls {
            required: self.nats_tls,
            ca_file: self.nats_tls_ca.clone(),
            client_cert: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(Some(config))
    }
}

pub fn run(args: ServeArgs, data: PathBuf) -> Result<()> {
    raise_open_files_limit();
    if args.tls_cert.is_none() && !args.insecure && !is_loopback(&args.listen)? {
        bail!(
            "--listen {} is not a loopback address, and plain HTTP there is readable and writable by anyone on \
             the network path: give --tls-cert and --tls-key to serve HTTPS, or --insecure to serve plain HTTP \
             anyway (behind a proxy that terminates TLS)",
            args.listen
        );
    }
    if args.tls_cert.is_some() && !args.cluster.cluster.is_empty() {
        bail!(
            "--tls-cert is not supported with --cluster yet: the nodes forward writes to the leader over plain \
             HTTP. Terminate TLS in front of each node (a proxy; --insecure off loopback) and give --advertise its URL"
        );
    }
    let browser = args.browser_policy()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: args.tls_client_ca.clone() };
            Some(Arc::new(Tls::load(files).map_err(anyhow::Error::msg).context("set up TLS")?))
        }
        _ => None,
    };
    let options = ServeOptions { browser, tls, ..ServeOptions::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the runtime")?;
    match args.cluster.config(&args.listen)? {
        None => {
            let store = Store::open(&data).with_context(|| format!("open the store in {}", data.display()))?;
            run_server(&runtime, args, options, data, store, None)?;
        }
        Some(config) => {
            let cluster = config.cluster_name.clone();
            let node = runtime
                .block_on(strata_cluster::Node::start(config, &data, strata_storage::Options::default()))
                .with_context(|| format!("start a node of cluster {cluster} on {}", data.display()))?;
            let node = Arc::new(node);
            let store = node.store().clone();
            let view: Arc<dyn strata_server::cluster::ClusterView> = Arc::new(NodeView::new(node.clone()));
            let served = run_server(&runtime, args, options, data, store, Some(view));
            // Stop following and leading (a leader hands its lease on) whatever serving returned.
            drop(runtime.block_on(node.shutdown()));
            served?;
        }
    }
    // The runtime's tasks held the last clones of the store: dropping it lets the committer finish
    // what is queued, sync, and release the directory lock.
    drop(runtime);
    tracing::info!("store closed");
    Ok(())
}

fn run_server(
    runtime: &tokio::runtime::Runtime,
    args: ServeArgs,
    options: ServeOptions,
    data: PathBuf,
    store: Store,
    cluster: Option<Arc<dyn strata_server::cluster::ClusterView>>,
) -> Result<()> {
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listen on {} (is another server running there?)", args.listen))?;
        let address = listener.local_addr().context("read the listening address")?;
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        // Listening for SIGHUP before anyone can know the address: a SIGHUP never ends the server.
        let hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("listen for SIGHUP")?;
        tokio::spawn(reload_tls_on_hangup(hangups, options.tls.clone()));
        // The recovery figures were logged by the engine as it opened the store.
        tracing::info!(
            %address,
            data = %data.display(),
            head_position = store.head_position().map(|position| position.value()),
            "serving on {scheme}://{address}"
        );
        strata_server::serve_node(store, cluster, listener, options, shutdown_signal())
            .await
            .context("serve the API")?;
        tracing::info!("stopped serving; closing the store");
        Ok::<_, anyhow::Error>(())
    })
}

/// Whether every address `listen` names is a loopback one (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback(listen: &str) -> Result<bool> {
    use std::net::ToSocketAddrs as _;
    let addresses: Vec<_> = listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen:?} is not an address (HOST:PORT, e.g. 127.0.0.1:2113)"))?
        .collect();
    Ok(!addresses.is_empty() && addresses.iter().all(|address| address.ip().is_loopback()))
}

/// Reads the TLS files again at each SIGHUP; a reload that fails keeps the certificate in force.
async fn reload_tls_on_hangup(mut hangups: tokio::signal::unix::Signal, tls: Option<Arc<Tls>>) {
    while hangups.recv().await.is_some() {
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP: nothing to reload (no --tls-cert)");
            continue;
        };
        match tls.reload() {
            Ok(()) => tracing::info!(cert = %tls.files().cert.display(), "SIGHUP: TLS certificate and key reloaded"),
            Err(reason) => {
                tracing::warn!(%reason, "SIGHUP: the TLS files could not be reloaded; the ones in force stay")
            }
        }
    }
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
