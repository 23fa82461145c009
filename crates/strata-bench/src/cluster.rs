//! `strata-bench cluster`: cluster mode on this machine — three nats-server 2.15.1 (R3,
//! `sync_interval: always`; started privately, `strata_cluster::testing`) and three
//! `strata serve --cluster` processes (the `strata` binary beside this one), in interleaved rounds:
//!
//! - `cluster_append_concurrent_64`: 64 HTTP clients spread over the three nodes, single-event
//!   appends, against (a) the same clients on one embedded server (`embedded_append_concurrent_64`),
//!   (b) the limit of the design (`jetstream_cas_chain`): one publisher sending frames of the sizes
//!   the cluster's leader wrote in the same round through the same compare-and-set chain, one in
//!   flight, no decision work, (c) PostgreSQL as in `bench server`, and (d) for information
//!   (`jetstream_publish_64`), 64 publishers of single events with no compare-and-set.
//!   `cluster_append_concurrent_64_leader_only`: the same clients all on the leader (no forwarding).
//! - `cluster_failover`: kill -9 of the leader → the first acknowledged append on another node.
//! - `cluster_follower_lag`: an append acknowledged by the leader → the event on a follower's SSE.
//! - `cluster_catch_up`: what a new node costs — a fresh node with an empty data directory joins
//!   and replays the whole log (seeded first with `CATCH_UP_SEED_EVENTS` in batches of 1,000);
//!   events/s until its head is the leader's.
//!
//! Everything shares the machine's 2 cores and one disk: the figures show what the protocol costs
//! here, not what three machines would do.

use super::report::{Baseline, Format, Report, Row, Target};
use super::server::{Postgres, connect, http_appends_spread};
use super::stats::Measurement;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_cluster::testing::{NatsCluster, free_port};
use strata_storage::Store;

const CLIENTS: usize = 64;
const NODES: usize = 3;
/// Targets of issue "Cluster mode".
const CHAIN_RATIO_MIN: f64 = 0.7;
const POSTGRES_RATIO_MIN: f64 = 2.0;
const FAILOVER_SECONDS_MAX: f64 = 10.0;
/// `cluster_follower_lag`: one append every this often.
const LAG_APPEND_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    run: super::RunArgs,
    /// A scenario to run (repeatable): cluster_append_concurrent_64, cluster_failover,
    /// cluster_follower_lag, cluster_catch_up. [default: all]
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// PostgreSQL to compare with (a database the benchmark may create a schema `strata_bench` in).
    #[arg(long, default_value = "host=127.0.0.1 port=5432 user=postgres dbname=test")]
    postgres: String,
}

const SCENARIOS: [&str; 4] =
    ["cluster_append_concurrent_64", "cluster_failover", "cluster_follower_lag", "cluster_catch_up"];
/// `cluster_catch_up`: events added to the log (1,000 per append) before a fresh node joins.
const CATCH_UP_SEED_EVENTS: usize = 300_000;

/// One `strata serve --cluster` process.
struct Node {
    id: String,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn start(&mut self, strata: &Path, nats: &NatsCluster) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let url = format!("http://127.0.0.1:{}", self.port);
        let child = Command::new(strata)
            .arg("--data")
            .arg(&self.dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--advertise", &url])
            .args(["--cluster", &nats.urls().join(","), "--cluster-name", "bench", "--node-id", &self.id])
            .args(["--nats-monitoring", &nats.monitoring_urls().join(",")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", strata.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET path` on `address`, the body as JSON (`None` when it does not answer).
async fn get_json(address: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let mut sender = connect(address).await.ok()?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .body(http_body_util::Full::new(Bytes::new()))
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request)).await.ok()?.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

async fn post(address: SocketAddr, path: &str, body: String) -> Result<(u16, serde_json::Value)> {
    let mut sender = connect(address).await?;
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)))?;
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request)).await??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
}

/// The index of the node that says it leads.
async fn leader(nodes: &[Node], within: Duration) -> Result<usize> {
    let began = Instant::now();
    loop {
        for (index, node) in nodes.iter().enumerate().filter(|(_, node)| node.child.is_some()) {
            if let Some(info) = get_json(node.address(), "/v1/info").await {
                if info["cluster"]["role"] == "leader" {
                    return Ok(index);
                }
            }
        }
        if began.elapsed() > within {
            bail!("no node leads after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_serving(node: &Node, within: Duration) -> Result<()> {
    let began = Instant::now();
    while get_json(node.address(), "/v1/info").await.is_none() {
        if began.elapsed() > within {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            bail!("node {} did not serve within {within:?}; its log:\n{log}", node.id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A Prometheus counter of `address`'s `/metrics`.
async fn metric(address: SocketAddr, name: &str) -> Option<f64> {
    let mut sender = connect(address).await.ok()?;
    let request = hyper::Request::get("/metrics")
        .header(hyper::header::HOST, "127.0.0.1")
        .body(http_body_util::Full::new(Bytes::new()))
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub fn run(args: ClusterArgs) -> Result<()> {
    if let Some(unknown) = args.scenarios.iter().find(|name| !SCENARIOS.contains(&name.as_str())) {
        bail!("unknown scenario {unknown:?}; the scenarios are {}", SCENARIOS.join(", "));
    }
    let selected = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name);
    let strata = std::env::current_exe()?.with_file_name("strata");
    if !strata.exists() {
        bail!("{} is missing: build it beside strata-bench (cargo build --release -p strata)", strata.display());
    }
    let parent = args.run.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new().prefix("strata-bench-cluster-").tempdir_in(&parent)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut report = Report::new(if args.run.json { Format::Json } else { Format::Table });
    let nats = NatsCluster::start(NODES).map_err(anyhow::Error::msg).context("start 3 nats-server")?;
    let mut nodes: Vec<Node> = (1..=NODES)
        .map(|number| Node {
            id: format!("node-{number}"),
            port: free_port(),
            dir: temp.path().join(format!("node-{number}")),
            log: temp.path().join(format!("node-{number}.log")),
            child: None,
        })
        .collect();
    for node in &mut nodes {
        node.start(&strata, &nats)?;
    }
    runtime.block_on(async {
        for node in &nodes {
            wait_serving(node, Duration::from_secs(60)).await?;
        }
        leader(&nodes, Duration::from_secs(30)).await.map(|_| ())
    })?;
    eprintln!(
        "strata bench cluster: {} round(s) of {} s per scenario; 3 nats-server + 3 strata nodes, in {}",
        args.run.rounds,
        args.run.seconds,
        temp.path().display()
    );
    let round = Duration::from_secs(args.run.seconds);
    let payload = super::server::payload()?;

    if selected("cluster_append_concurrent_64") {
        append_concurrent(&args, &runtime, &nats, &nodes, temp.path(), &payload, round, &mut report)?;
    }
    if selected("cluster_failover") {
        failover(&args, &runtime, &nats, &mut nodes, &strata, &payload, &mut report)?;
    }
    if selected("cluster_follower_lag") {
        follower_lag(&args, &runtime, &nodes, &payload, round, &mut report)?;
    }
    if selected("cluster_catch_up") {
        catch_up(&runtime, &nats, &mut nodes, &strata, temp.path(), &payload, &mut report)?;
    }
    report.finish();
    drop(nodes);
    drop(nats);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn append_concurrent(
    args: &ClusterArgs,
    runtime: &tokio::runtime::Runtime,
    nats: &NatsCluster,
    nodes: &[Node],
    dir: &Path,
    payload: &str,
    round: Duration,
    report: &mut Report,
) -> Result<()> {
    eprintln!("cluster_append_concurrent_64: {CLIENTS} clients over the 3 nodes, one event per append");
    let store = Store::open(dir.join("embedded")).context("open the embedded store")?;
    let embedded = runtime.block_on(super::server::start(strata_server::router(super::server::state(&store))))?;
    let postgres = runtime.block_on(Postgres::connect(&args.postgres));
    if let Err(error) = &postgres {
        eprintln!("  PostgreSQL is not reachable ({error:#}); its row is left out");
    }
    let servers: Vec<async_nats::ServerAddr> =
        nats.urls().iter().map(|url| url.parse()).collect::<Result<_, _>>().context("the NATS URLs")?;
    // The JetStream context spawns its acker: it is made inside the runtime.
    let js = runtime.block_on(async {
        let client = async_nats::connect(servers).await.context("connect to NATS")?;
        let js = async_nats::jetstream::new(client);
        bench_streams(&js).await?;
        Ok::<_, anyhow::Error>(js)
    })?;
    let addresses: Vec<SocketAddr> = nodes.iter().map(Node::address).collect();
    let (mut cluster, mut local, mut chain) = (Measurement::default(), Measurement::default(), Measurement::default());
    let (mut pg, mut raw, mut direct) = (Measurement::default(), Measurement::default(), Measurement::default());
    let (mut to_chain, mut to_pg, mut to_local) = (Vec::new(), Vec::new(), Vec::new());
    for number in 0..args.run.rounds {
        let prefix = format!("cluster-{number}");
        let leader_address = addresses[runtime.block_on(leader(nodes, Duration::from_secs(30)))?];
        let before = runtime.block_on(frame_counters(leader_address));
        let mut measured = runtime.block_on(http_appends_spread(&addresses, &prefix, CLIENTS, 1, payload, round))?;
        let after = runtime.block_on(frame_counters(leader_address));
        let rate = measured.events_per_sec();
        let (commits, events, bytes) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        let frame_bytes = (bytes / commits.max(1.0)) as usize;
        let events_per_frame = events / commits.max(1.0);
        super::server::progress(number, args.run.rounds, "cluster", &mut measured);
        eprintln!("    frames: {commits:.0}, {events_per_frame:.1} events and {frame_bytes} bytes each on average");
        cluster.absorb(measured);

        // The same clients all on the leader: what forwarding (and a follower waiting to apply
        // the write it forwarded) costs, apart from the protocol.
        let mut measured = runtime.block_on(http_appends_spread(
            &[leader_address],
            &format!("{prefix}-direct"),
            CLIENTS,
            1,
            payload,
            round,
        ))?;
        super::server::progress(number, args.run.rounds, "leader only", &mut measured);
        direct.absorb(measured);

        let mut measured = runtime.block_on(cas_chain(&js, frame_bytes.max(64), events_per_frame.max(1.0), round))?;
        super::server::progress(number, args.run.rounds, "cas chain", &mut measured);
        to_chain.push(rate / measured.events_per_sec());
        chain.absorb(measured);

        let mut measured = runtime.block_on(http_appends_spread(&[embedded], &prefix, CLIENTS, 1, payload, round))?;
        super::server::progress(number, args.run.rounds, "embedded", &mut measured);
        to_local.push(rate / measured.events_per_sec());
        local.absorb(measured);

        if let Ok(postgres) = &postgres {
            let mut measured = runtime.block_on(postgres.appends(&prefix, CLIENTS, 1, payload, round))?;
            super::server::progress(number, args.run.rounds, "postgres", &mut measured);
            to_pg.push(rate / measured.events_per_sec());
            pg.absorb(measured);
        }
        let mut measured = runtime.block_on(raw_publishes(&js, payload.len() + 100, round))?;
        super::server::progress(number, args.run.rounds, "raw publishes", &mut measured);
        raw.absorb(measured);
    }
    let chain_row = Row::measured("jetstream_cas_chain", &mut chain);
    let local_row = Row::measured("embedded_append_concurrent_64", &mut local);
    let mut row = Row::measured("cluster_append_concurrent_64", &mut cluster)
        .against(Baseline {
            scenario: "jetstream_cas_chain",
            events_per_sec: chain_row.events_per_sec,
            round_ratios: to_chain,
        })
        .target(Target::RatioMin(CHAIN_RATIO_MIN));
    row.ceiling = Some(Baseline {
        scenario: "embedded_append_concurrent_64",
        events_per_sec: local_row.events_per_sec,
        round_ratios: to_local,
    });
    report.emit(chain_row);
    report.emit(local_row);
    report.emit(Row::measured("jetstream_publish_64", &mut raw));
    report.emit(Row::measured("cluster_append_concurrent_64_leader_only", &mut direct));
    if postgres.is_ok() {
        let pg_row = Row::measured("postgres_append_64", &mut pg);
        let ratio = median(&to_pg);
        row = row.detail("ratio_to_postgres", ratio).detail("target_ratio_to_postgres", POSTGRES_RATIO_MIN);
        report.emit(pg_row);
    }
    report.emit(row);
    Ok(())
}

/// The leader's commits, committed events and committed bytes so far.
async fn frame_counters(leader: SocketAddr) -> (f64, f64, f64) {
    let commits = metric(leader, "strata_commits_total").await.unwrap_or(0.0);
    let events = metric(leader, "strata_committed_events_total").await.unwrap_or(0.0);
    let bytes = metric(leader, "strata_committed_bytes_total").await.unwrap_or(0.0);
    (commits, events, bytes)
}

/// The streams the baselines publish to: configured as the log is (file storage, 3 replicas).
async fn bench_streams(js: &async_nats::jetstream::Context) -> Result<()> {
    for (name, subject) in [("BENCH_CHAIN", "bench.chain"), ("BENCH_RAW", "bench.raw")] {
        let _ = js.delete_stream(name).await;
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: NODES,
            ..Default::default()
        })
        .await
        .with_context(|| format!("create the stream {name}"))?;
    }
    Ok(())
}

/// One publisher, frames of `frame_bytes`, each fenced by the last sequence, one in flight: the
/// commit path of the leader without any decision work. Counts `events_per_frame` per frame.
async fn cas_chain(
    js: &async_nats::jetstream::Context,
    frame_bytes: usize,
    events_per_frame: f64,
    duration: Duration,
) -> Result<Measurement> {
    let mut stream = js.get_stream("BENCH_CHAIN").await?;
    let mut last = stream.info().await?.state.last_sequence;
    let frame = Bytes::from(vec![7u8; frame_bytes]);
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < duration {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Sequence", last.to_string().as_str());
        headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
        let sent = Instant::now();
        let ack = js.publish_with_headers("bench.chain", headers, frame.clone()).await?.await?;
        latencies.push(sent.elapsed().as_nanos() as u64);
        last = ack.sequence;
    }
    let frames = latencies.len() as f64;
    Ok(Measurement { events: (frames * events_per_frame) as u64, elapsed: started.elapsed(), latencies_ns: latencies })
}

/// 64 publishers of single events, no compare-and-set: JetStream with many in flight.
async fn raw_publishes(js: &async_nats::jetstream::Context, bytes: usize, duration: Duration) -> Result<Measurement> {
    let started = Instant::now();
    let message = Bytes::from(vec![7u8; bytes]);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (js, message) = (js.clone(), message.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < duration {
                let sent = Instant::now();
                js.publish("bench.raw", message.clone()).await?.await?;
                latencies.push(sent.elapsed().as_nanos() as u64);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    Measurement::of_tasks(tasks, 1, started).await
}

/// kill -9 of the leader while one writer appends through the other nodes: the time to its first
/// acknowledged append after the kill. The killed node is started again between rounds.
fn failover(
    args: &ClusterArgs,
    runtime: &tokio::runtime::Runtime,
    nats: &NatsCluster,
    nodes: &mut [Node],
    strata: &Path,
    payload: &str,
    report: &mut Report,
) -> Result<()> {
    eprintln!("cluster_failover: kill -9 of the leader, then appends through the other nodes");
    let mut seconds = Vec::new();
    for number in 0..args.run.rounds {
        let leader = runtime.block_on(leader(nodes, Duration::from_secs(30)))?;
        let others: Vec<SocketAddr> =
            nodes.iter().enumerate().filter(|(at, _)| *at != leader).map(|(_, node)| node.address()).collect();
        let killed = Instant::now();
        nodes[leader].kill();
        let body = format!(r#"{{"events":[{{"type":"MoneyDeposited","data":{payload}}}]}}"#);
        let elapsed = runtime.block_on(async {
            let mut turn = 0;
            loop {
                let address = others[turn % others.len()];
                turn += 1;
                if let Ok((200, _)) = post(address, "/v1/streams/failover", body.clone()).await {
                    return Ok::<_, anyhow::Error>(killed.elapsed());
                }
                if killed.elapsed() > Duration::from_secs(60) {
                    bail!("no append was acknowledged within 60 s of the leader's kill");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })?;
        eprintln!(
            "  round {}/{}  first acknowledged append {:.2} s after the kill",
            number + 1,
            args.run.rounds,
            elapsed.as_secs_f64()
        );
        seconds.push(elapsed.as_secs_f64());
        nodes[leader].start(strata, nats)?;
        runtime.block_on(wait_serving(&nodes[leader], Duration::from_secs(60)))?;
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    report.emit(
        Row::timed("cluster_failover", 1, median)
            .detail("max_seconds", seconds[seconds.len() - 1])
            .target(Target::SecondsMax(FAILOVER_SECONDS_MAX)),
    );
    Ok(())
}

/// Appends acknowledged by the leader, each timed until it arrives on a follower's subscription.
fn follower_lag(
    args: &ClusterArgs,
    runtime: &tokio::runtime::Runtime,
    nodes: &[Node],
    payload: &str,
    round: Duration,
    report: &mut Report,
) -> Result<()> {
    eprintln!(
        "cluster_follower_lag: one append every {} ms on the leader, read from a follower's SSE",
        LAG_APPEND_INTERVAL.as_millis()
    );
    let mut total = Measurement::default();
    for number in 0..args.run.rounds {
        let mut measured = runtime.block_on(async {
            let leader = leader(nodes, Duration::from_secs(30)).await?;
            let follower = (leader + 1) % nodes.len();
            lag_round(nodes[leader].address(), nodes[follower].address(), payload, round).await
        })?;
        super::server::progress(number, args.run.rounds, "follower lag", &mut measured);
        total.absorb(measured);
    }
    report.emit(Row::measured("cluster_follower_lag", &mut total));
    Ok(())
}

async fn lag_round(leader: SocketAddr, follower: SocketAddr, payload: &str, duration: Duration) -> Result<Measurement> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let stream = format!("lag-{}", uuid::Uuid::new_v4().simple());
    let acknowledged: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let arrived: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    // The follower's subscription to the stream, from its start.
    let mut sender = connect(follower).await?;
    let request = hyper::Request::get(format!("/v1/subscribe?stream={stream}"))
        .header(hyper::header::HOST, "127.0.0.1")
        .header(hyper::header::ACCEPT, "text/event-stream")
        .body(http_body_util::Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let mut body = response.into_body();
    let reader = {
        let arrived = arrived.clone();
        tokio::spawn(async move {
            let mut text = String::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                let Some(data) = frame.data_ref() else { continue };
                let now = Instant::now();
                text.push_str(&String::from_utf8_lossy(data));
                while let Some(end) = text.find("\n\n") {
                    let message: String = text.drain(..end + 2).collect();
                    if let Some(id) = message.lines().find_map(|line| line.strip_prefix("id: ")) {
                        if let Ok(position) = id.trim().parse::<u64>() {
                            arrived.lock().expect("lock").insert(position, now);
                        }
                    }
                }
            }
        })
    };
    let mut writer = connect(leader).await?;
    let body = format!(r#"{{"events":[{{"type":"MoneyDeposited","data":{payload}}}]}}"#);
    let started = Instant::now();
    while started.elapsed() < duration {
        writer.ready().await?;
        let request = hyper::Request::post(format!("/v1/streams/{stream}"))
            .header(hyper::header::HOST, "127.0.0.1")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(Bytes::from(body.clone())))?;
        let response = writer.send_request(request).await?;
        let status = response.status().as_u16();
        let answer = response.into_body().collect().await?.to_bytes();
        let now = Instant::now();
        if status != 200 {
            bail!("append on the leader answered {status}: {}", String::from_utf8_lossy(&answer));
        }
        let value: serde_json::Value = serde_json::from_slice(&answer)?;
        let position = value["last_position"].as_u64().context("an append without last_position")?;
        acknowledged.lock().expect("lock").insert(position, now);
        tokio::time::sleep(LAG_APPEND_INTERVAL).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    reader.abort();
    let acknowledged = acknowledged.lock().expect("lock");
    let arrived = arrived.lock().expect("lock");
    let mut measurement = Measurement { elapsed: started.elapsed(), ..Default::default() };
    for (position, acked) in acknowledged.iter() {
        let Some(seen) = arrived.get(position) else { bail!("position {position} never reached the follower") };
        // Arriving before the acknowledgement reached the writer counts as no lag.
        measurement.latencies_ns.push(seen.saturating_duration_since(*acked).as_nanos() as u64);
        measurement.events += 1;
    }
    Ok(measurement)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The log seeded with batches of 1,000, then a fresh node joins: the time until it holds the
/// leader's head (it starts, checks the log, replays every frame, then serves).
fn catch_up(
    runtime: &tokio::runtime::Runtime,
    nats: &NatsCluster,
    nodes: &mut Vec<Node>,
    strata: &Path,
    dir: &Path,
    payload: &str,
    report: &mut Report,
) -> Result<()> {
    eprintln!(
        "cluster_catch_up: {CATCH_UP_SEED_EVENTS} events added in batches of 1,000, then a fresh node replays the log"
    );
    let leader_address = nodes[runtime.block_on(leader(nodes, Duration::from_secs(30)))?].address();
    let event = format!(r#"{{"type":"MoneyDeposited","data":{payload}}}"#);
    let body = format!(r#"{{"events":[{}]}}"#, vec![event; 1_000].join(","));
    let head = runtime.block_on(async {
        for batch in 0..CATCH_UP_SEED_EVENTS / 1_000 {
            let (status, answer) =
                post(leader_address, &format!("/v1/streams/seed-{}", batch % 100), body.clone()).await?;
            if status != 200 {
                bail!("a seeding append answered {status}: {answer}");
            }
        }
        let info = get_json(leader_address, "/v1/info").await.context("the leader's /v1/info")?;
        info["head_position"].as_u64().context("the leader's head")
    })?;
    let mut fresh = Node {
        id: "node-fresh".to_owned(),
        port: free_port(),
        dir: dir.join("node-fresh"),
        log: dir.join("node-fresh.log"),
        child: None,
    };
    let started = Instant::now();
    fresh.start(strata, nats)?;
    let address = fresh.address();
    let elapsed = runtime.block_on(async {
        loop {
            if let Some(info) = get_json(address, "/v1/info").await {
                if info["head_position"].as_u64().is_some_and(|at| at >= head) {
                    return Ok(started.elapsed());
                }
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("the fresh node did not reach position {head} within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    let seconds = elapsed.as_secs_f64();
    eprintln!("  {} events replayed in {seconds:.2} s ({:.0} events/s)", head + 1, (head + 1) as f64 / seconds);
    report.emit(Row::timed("cluster_catch_up", head + 1, seconds));
    nodes.push(fresh);
    Ok(())
}
