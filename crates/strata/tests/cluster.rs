//! Cluster mode with real processes: a private 3-server NATS cluster (nats-server 2.15.1, R3,
//! `sync_interval: always`) and three `strata serve --cluster` nodes, driven over HTTP by 64 writers
//! that retry an append (same event id) on another node until it is acknowledged. The faults are
//! real: kill -9 of the Strata leader, kill -9 of the JetStream stream leader, SIGSTOP of the leader
//! past its lease. After each, every acknowledged event is in the log exactly once at the position
//! it was acknowledged with, positions are gapless, and every replica holds the same log (same
//! hashes). The client and the command line, given every node, move on when one is gone; a backup
//! of the cluster (its consumer group included) restores into an empty cluster, which exports
//! byte for byte what the first one did, and the group resumes there. Skips visibly
//! without a nats-server (fails with `STRATA_REQUIRE_SERVICES=1`). Network faults go through TCP
//! proxies of the test's own between each node and each NATS server: the leader cut off from NATS
//! while its clients still reach it, and two of the three NATS servers down; and through proxies
//! on the NATS servers' own routes: one NATS server cut off from the other two.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_cluster::testing::{NatsCluster, cluster_or_skip_with, free_port};

const LEASE: &str = "2s";
const WRITERS: usize = 64;

/// One `strata serve --cluster` process.
struct StrataNode {
    id: String,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// The NATS servers as this node reaches them (through the test's proxies), if not directly.
    nats_urls: Option<Vec<String>>,
}

impl StrataNode {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self, nats: &NatsCluster, cluster: &str) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--data")
            .arg(&self.dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--cluster", &self.nats_urls.clone().unwrap_or_else(|| nats.urls()).join(",")])
            .args(["--cluster-name", cluster, "--node-id", &self.id])
            .args(["--advertise", &self.url(), "--cluster-replicas", &nats.nodes.len().to_string(), "--lease", LEASE])
            .args(["--nats-monitoring", &nats.monitoring_urls().join(",")])
            .env(
                "RUST_LOG",
                std::env::var("STRATA_TEST_NODE_LOG").unwrap_or_else(|_| "info,async_nats=warn".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start strata serve --cluster");
        self.child = Some(child);
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StrataNode {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A frozen process must be thawed to die cleanly.
            // SAFETY: as in `signal`.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        }
        self.kill();
    }
}

/// How many of these tests run a cluster at once: each is 3 nats-server and 3 nodes, and the
/// machine may have 2 cores (six at once made a node miss its 60 s to start).
const CLUSTERS_AT_ONCE: usize = 2;
static RUNNING: Mutex<usize> = Mutex::new(0);
static RUNNING_CHANGED: std::sync::Condvar = std::sync::Condvar::new();

/// A place among the `CLUSTERS_AT_ONCE`, given back when dropped.
struct Slot;

impl Slot {
    async fn take() -> Slot {
        tokio::task::spawn_blocking(|| {
            let mut running = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            while *running >= CLUSTERS_AT_ONCE {
                running = RUNNING_CHANGED.wait(running).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            *running += 1;
        })
        .await
        .unwrap();
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) -= 1;
        RUNNING_CHANGED.notify_one();
    }
}

struct TestCluster {
    nats: NatsCluster,
    nodes: Vec<StrataNode>,
    name: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    /// Declared last, so dropped last: the servers and nodes are gone before another test starts.
    _slot: Slot,
}

impl TestCluster {
    async fn start(test: &str) -> Option<TestCluster> {
        Self::start_with(test, |_, _| None).await
    }

    /// `nats_urls(node, nats)`: how node `node` reaches the NATS servers (`None`: directly).
    async fn start_with(
        test: &str,
        nats_urls: impl FnMut(usize, &NatsCluster) -> Option<Vec<String>>,
    ) -> Option<TestCluster> {
        Self::start_over(test, || NatsCluster::start(3), nats_urls).await
    }

    /// [`TestCluster::start_with`] on the NATS servers `start_nats` starts.
    async fn start_over(
        test: &str,
        start_nats: impl FnOnce() -> Result<NatsCluster, String>,
        mut nats_urls: impl FnMut(usize, &NatsCluster) -> Option<Vec<String>>,
    ) -> Option<TestCluster> {
        let slot = Slot::take().await;
        let nats = cluster_or_skip_with(test, start_nats)?;
        let dir = tempfile::tempdir().unwrap();
        let name = test.replace(|c: char| !c.is_ascii_alphanumeric(), "_").chars().take(40).collect::<String>();
        let mut cluster = TestCluster {
            nats,
            nodes: Vec::new(),
            name,
            client: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
            _dir: dir,
            _slot: slot,
        };
        for index in 0..3 {
            let urls = nats_urls(index, &cluster.nats);
            cluster.add_node_reaching(&format!("s{}", index + 1), urls);
        }
        for index in 0..3 {
            cluster.wait_serving(index, Duration::from_secs(60)).await;
        }
        cluster.wait_leader(Duration::from_secs(30)).await;
        Some(cluster)
    }

    fn add_node(&mut self, id: &str) -> usize {
        self.add_node_reaching(id, None)
    }

    fn add_node_reaching(&mut self, id: &str, nats_urls: Option<Vec<String>>) -> usize {
        let base = self._dir.path();
        let mut node = StrataNode {
            id: id.to_owned(),
            port: free_port(),
            dir: base.join(id),
            log: base.join(format!("{id}.log")),
            child: None,
            nats_urls,
        };
        node.start(&self.nats, &self.name);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// `GET url` answered with JSON (any status).
    async fn get_json(&self, url: &str) -> Value {
        self.client.get(url).send().await.unwrap().json().await.unwrap()
    }

    async fn info(&self, index: usize) -> Option<Value> {
        let response = self.client.get(format!("{}/v1/info", self.nodes[index].url())).send().await.ok()?;
        response.json().await.ok()
    }

    async fn wait_serving(&self, index: usize, within: Duration) {
        let began = Instant::now();
        while self.info(index).await.is_none() {
            assert!(
                began.elapsed() < within,
                "node {} did not serve within {within:?}; its log:\n{}",
                self.nodes[index].id,
                self.nodes[index].log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the one node that says it leads (running nodes only).
    async fn leader(&self) -> Option<usize> {
        let mut leaders = Vec::new();
        for index in 0..self.nodes.len() {
            if self.nodes[index].child.is_none() {
                continue;
            }
            if let Some(info) = self.info(index).await {
                if info["cluster"]["role"] == "leader" {
                    leaders.push(index);
                }
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    }

    async fn wait_leader(&self, within: Duration) -> usize {
        let began = Instant::now();
        loop {
            if let Some(leader) = self.leader().await {
                return leader;
            }
            assert!(began.elapsed() < within, "no single leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(StrataNode::url).collect()
    }

    /// Every event of the log as node `index` holds it.
    async fn read_all(&self, index: usize) -> Vec<Value> {
        let url = self.nodes[index].url();
        let mut events = Vec::new();
        let mut from = 0;
        loop {
            let page: Value = self.get_json(&format!("{url}/v1/all?from={from}&limit=10000")).await;
            events.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["next"].as_u64() {
                Some(next) => from = next,
                None => return events,
            }
        }
    }

    /// Waits until every running node's replica reaches `head`, then checks they hold the same log.
    async fn assert_replicas_agree(&self, head: u64) -> Vec<Value> {
        let mut reference: Option<Vec<Value>> = None;
        for index in 0..self.nodes.len() {
            if self.nodes[index].child.is_none() {
                continue;
            }
            let began = Instant::now();
            loop {
                let info = self.info(index).await.expect("a running node answers");
                if info["head_position"].as_u64().is_some_and(|h| h >= head) {
                    break;
                }
                assert!(
                    began.elapsed() < Duration::from_secs(30),
                    "node {} did not catch up to {head}: {info}",
                    self.nodes[index].id
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let events: Vec<Value> = self
                .read_all(index)
                .await
                .into_iter()
                .filter(|event| event["position"].as_u64().unwrap() <= head)
                .map(|event| json!([event["position"], event["id"], event["hash"]]))
                .collect();
            match &reference {
                None => reference = Some(events),
                Some(expected) => assert!(*expected == events, "node {}'s replica differs", self.nodes[index].id),
            }
        }
        reference.unwrap()
    }
}

/// What the writers saw.
#[derive(Default)]
struct Ledger {
    /// Event id → the position its append was acknowledged with.
    acknowledged: Mutex<HashMap<String, u64>>,
    /// The longest time between two acknowledgements (any writer).
    last_ack: Mutex<Option<Instant>>,
    longest_pause: Mutex<Duration>,
    acks: AtomicU64,
}

impl Ledger {
    fn ack(&self, id: String, position: u64) {
        let now = Instant::now();
        let mut last = self.last_ack.lock().unwrap();
        if let Some(previous) = *last {
            let mut longest = self.longest_pause.lock().unwrap();
            *longest = (*longest).max(now - previous);
        }
        *last = Some(now);
        self.acknowledged.lock().unwrap().insert(id, position);
        self.acks.fetch_add(1, Ordering::Relaxed);
    }
}

/// 64 writers, each appending one event at a time to its own stream on the nodes in turn; an append
/// that is not acknowledged (503, a connection error, a timeout) is retried with the same event id
/// on the next node until it is. They stop when `stop` is set, after finishing the append in hand.
fn spawn_writers(urls: Vec<String>, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    // A frozen node accepts connections and answers nothing: clients give up after a few seconds
    // and try the next node, as a client of a cluster would.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    (0..WRITERS)
        .map(|writer| {
            let (client, urls, ledger, stop) = (client.clone(), urls.clone(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let mut turn = writer;
                while !stop.load(Ordering::Relaxed) {
                    let id = uuid::Uuid::new_v4().to_string();
                    let body = json!({ "events": [{ "id": id, "type": "Written", "data": { "writer": writer } }] });
                    let began = Instant::now();
                    loop {
                        let url = format!("{}/v1/streams/writer-{writer}", urls[turn % urls.len()]);
                        turn += 1;
                        if let Ok(response) = client.post(url).json(&body).send().await {
                            if response.status() == 200 {
                                let result: Value = response.json().await.unwrap();
                                ledger.ack(id.clone(), result["first_position"].as_u64().unwrap());
                                break;
                            }
                            let status = response.status();
                            assert!(
                                status == 503 || status == 502,
                                "writer {writer}: an append answered {status}: {}",
                                response.text().await.unwrap_or_default()
                            );
                        }
                        assert!(
                            began.elapsed() < Duration::from_secs(60),
                            "writer {writer}: no acknowledgement in 60 s"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

/// The writers of `spawn_writers` and what they were acknowledged.
struct Load {
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the writers on every node and waits for `acks` acknowledgements.
    async fn start(cluster: &TestCluster, acks: u64) -> Load {
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writers = spawn_writers(cluster.urls(), ledger.clone(), stop.clone());
        wait_acks(&ledger, acks, Duration::from_secs(30)).await;
        Load { ledger, stop, writers }
    }

    /// Stops the writers and checks the log every node holds: each acknowledged event once at its
    /// acknowledged position, no gaps, every replica the same. The head and the log.
    async fn finish(self, cluster: &TestCluster) -> (u64, Vec<Value>) {
        stop_writers(&self.stop, self.writers).await;
        let head = head_of(cluster).await;
        let log = cluster.assert_replicas_agree(head).await;
        assert_exactly_once(&log, &self.ledger);
        (head, log)
    }
}

/// Every acknowledged event is in `log` once, at its acknowledged position; positions are gapless.
fn assert_exactly_once(log: &[Value], ledger: &Ledger) {
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (at, event) in log.iter().enumerate() {
        assert_eq!(event[0], at as u64, "positions have a gap at {at}");
        let id = event[1].as_str().unwrap().to_owned();
        assert!(seen.insert(id.clone(), at as u64).is_none(), "event {id} is in the log twice");
    }
    let acknowledged = ledger.acknowledged.lock().unwrap();
    for (id, position) in acknowledged.iter() {
        assert_eq!(seen.get(id), Some(position), "acknowledged event {id} is not at position {position}");
    }
}

async fn wait_acks(ledger: &Ledger, at_least: u64, within: Duration) {
    let began = Instant::now();
    let start = ledger.acks.load(Ordering::Relaxed);
    while ledger.acks.load(Ordering::Relaxed) < start + at_least {
        assert!(began.elapsed() < within, "writers made no progress in {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn head_of(cluster: &TestCluster) -> u64 {
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    cluster.info(leader).await.unwrap()["head_position"].as_u64().unwrap()
}

async fn stop_writers(stop: &AtomicBool, writers: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("a writer failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_on_any_node_read_your_writes_and_races_have_one_winner() {
    let Some(cluster) = TestCluster::start("cluster_rw").await else { return };
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let client = &cluster.client;
    // An append sent to a follower is forwarded and acknowledged; the other follower serves it with
    // min_position.
    let response = client
        .post(format!("{}/v1/streams/order-1", cluster.nodes[a].url()))
        .json(&json!({ "events": [{ "type": "Placed", "data": { "total": 10 } }] }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        status,
        200,
        "{answer}; the node: {:?}; its log: {}",
        cluster.info(a).await,
        cluster.nodes[a].log_text()
    );
    let position = answer["last_position"].as_u64().unwrap();
    let page: Value =
        cluster.get_json(&format!("{}/v1/streams/order-1?min_position={position}", cluster.nodes[b].url())).await;
    assert_eq!(page["events"][0]["position"], position, "{page}");
    // Exact expectations race from two nodes, 20 rounds: one winner each time.
    let create = json!({ "expected_revision": "no_stream", "events": [{ "type": "Bumped", "data": {} }] });
    let created =
        client.post(format!("{}/v1/streams/counter", cluster.nodes[a].url())).json(&create).send().await.unwrap();
    assert_eq!(created.status(), 200);
    for round in 0..20u64 {
        // Both expect the head the stream has now: only one can be right once the other committed.
        let body = json!({ "expected_revision": round, "events": [{ "type": "Bumped", "data": { "round": round } }] });
        let first = client.post(format!("{}/v1/streams/counter", cluster.nodes[a].url())).json(&body).send();
        let second = client.post(format!("{}/v1/streams/counter", cluster.nodes[b].url())).json(&body).send();
        let (first, second) = tokio::join!(first, second);
        let mut statuses = [first.unwrap().status().as_u16(), second.unwrap().status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: exactly one of two racing Exact appends commits");
    }
    // DCB conditions race too: each claims "no Claimed event yet"; one wins.
    let claim = json!({
        "events": [{ "stream": "seat-1", "type": "Claimed", "data": {}, "tags": ["seat:1"] }],
        "condition": { "query": { "items": [{ "types": ["Claimed"], "tags": ["seat:1"] }] } }
    });
    let first = client.post(format!("{}/v1/append", cluster.nodes[a].url())).json(&claim).send();
    let second = client.post(format!("{}/v1/append", cluster.nodes[b].url())).json(&claim).send();
    let (first, second) = tokio::join!(first, second);
    let mut statuses = [first.unwrap().status().as_u16(), second.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "exactly one of two racing conditional appends commits");
    let head = head_of(&cluster).await;
    cluster.assert_replicas_agree(head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_strata_leader_under_load_loses_and_duplicates_nothing() {
    let Some(mut cluster) = TestCluster::start("cluster_kill_leader").await else { return };
    let load = Load::start(&cluster, 500).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let killed_at = Instant::now();
    cluster.nodes[leader].kill();
    // Another node leads, and appends resume.
    let new_leader = cluster.wait_leader(Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    wait_acks(&load.ledger, 500, Duration::from_secs(30)).await;
    eprintln!(
        "kill -9 of the Strata leader: a new leader and 500 more acknowledgements {:.1} s later; longest pause between acknowledgements {:.1} s",
        killed_at.elapsed().as_secs_f64(),
        load.ledger.longest_pause.lock().unwrap().as_secs_f64()
    );
    // The killed node comes back on its data and catches up.
    let (nats, name) = (&cluster.nats, cluster.name.clone());
    cluster.nodes[leader].start(nats, &name);
    cluster.wait_serving(leader, Duration::from_secs(60)).await;
    load.finish(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_jetstream_stream_leader_under_load_loses_and_duplicates_nothing() {
    let Some(mut cluster) = TestCluster::start("cluster_kill_nats").await else { return };
    let load = Load::start(&cluster, 500).await;
    let stream = format!("STRATA_{}_default", cluster.name);
    let nats_leader = cluster.nats.stream_leader(&stream).expect("the log's stream has a leader");
    let killed_at = Instant::now();
    cluster.nats.kill(nats_leader);
    wait_acks(&load.ledger, 500, Duration::from_secs(60)).await;
    eprintln!(
        "kill -9 of the JetStream stream leader: 500 more acknowledgements {:.1} s later; longest pause between acknowledgements {:.1} s",
        killed_at.elapsed().as_secs_f64(),
        load.ledger.longest_pause.lock().unwrap().as_secs_f64()
    );
    cluster.nats.start_node(nats_leader).unwrap();
    cluster.nats.wait_ready(nats_leader, Duration::from_secs(30)).unwrap();
    load.finish(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_frozen_past_its_lease_is_fenced_and_answers_nothing_false() {
    let Some(mut cluster) = TestCluster::start("cluster_freeze").await else { return };
    let load = Load::start(&cluster, 500).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    // Frozen in the middle of its commits (publishes in flight, acknowledgements not yet applied).
    cluster.nodes[leader].signal(libc::SIGSTOP);
    // The others take over and writers go on through them.
    let began = Instant::now();
    let new_leader = loop {
        let mut found = None;
        for index in (0..3).filter(|&index| index != leader) {
            if let Some(info) = cluster.info(index).await {
                if info["cluster"]["role"] == "leader" {
                    found = Some(index);
                }
            }
        }
        if let Some(found) = found {
            break found;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "no node took over from the frozen leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_acks(&load.ledger, 500, Duration::from_secs(30)).await;
    // Thawed: it was deposed while frozen; whatever it publishes now is fenced.
    cluster.nodes[leader].signal(libc::SIGCONT);
    wait_acks(&load.ledger, 300, Duration::from_secs(30)).await;
    let began = Instant::now();
    loop {
        let info = cluster.info(leader).await.expect("the thawed node answers");
        if info["cluster"]["role"] != "leader" || cluster.leader().await == Some(new_leader) {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(15), "the thawed node still says it leads: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every answer a client got — from the frozen leader too — is true of the log.
    let (head, _) = load.finish(&cluster).await;
    // A fresh node with an empty data directory joins and catches up.
    let fresh = cluster.add_node("s4");
    cluster.wait_serving(fresh, Duration::from_secs(60)).await;
    cluster.assert_replicas_agree(head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_moves_on_when_a_node_is_down_and_stays_exactly_once() {
    use strata_client::Client;
    use strata_core::{EventType, ExpectedRevision, NewEvent, StreamId};
    use strata_store::{AppendOutcome, EventStore};
    let Some(mut cluster) = TestCluster::start("cluster_client").await else { return };
    let urls = cluster.urls();
    let client = Client::with_urls(&urls.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let stream = StreamId::new("client-1").unwrap();
    let event = |n: u32| NewEvent::new(EventType::new("Counted").unwrap(), format!("{{\"n\":{n}}}").into_bytes());
    for n in 0..20 {
        let outcome = client.append(stream.clone(), ExpectedRevision::Any, vec![event(n)]).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Committed(_)), "{outcome:?}");
    }
    // The node the client talks to goes (the leader, if it was that one); the client moves on.
    let used = urls.iter().position(|url| url == client.base_url()).unwrap();
    cluster.nodes[used].kill();
    for n in 20..40 {
        let outcome = client.append(stream.clone(), ExpectedRevision::Any, vec![event(n)]).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Committed(_)), "{outcome:?}");
    }
    assert_ne!(client.base_url(), urls[used]);
    // Exactly once: the stream holds 40 events, 0..=39, each once.
    let page = client
        .read_stream(&stream, strata_store::ReadFrom::Start, strata_store::ReadOptions::forward(1000))
        .await
        .unwrap();
    let ns: Vec<u64> = page
        .events
        .iter()
        .map(|event| serde_json::from_slice::<Value>(&event.data).unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..40).collect::<Vec<u64>>());

    // The command line, given every node with the one that is gone first, moves on too.
    let mut ordered = vec![urls[used].clone()];
    ordered.extend(urls.iter().filter(|url| **url != urls[used]).cloned());
    let joined = ordered.join(",");
    cli(&joined, &["append", "client-1", "--type", "Counted", r#"{"n":40}"#]).await;
    let read = cli(&joined, &["--json", "read", "client-1"]).await;
    let ns: Vec<u64> = read
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice::<Value>(line).unwrap()["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..41).collect::<Vec<u64>>());

    // A consumer group on the cluster, 10 events consumed (its state is in the cluster's bucket).
    cli(&joined, &["groups", "create", "counting", "--stream", "client-1"]).await;
    cli(&joined, &["groups", "consume", "counting", "--count", "10", "--wait-ms", "0"]).await;
    let group: Value = serde_json::from_slice(&cli(&joined, &["--json", "groups", "info", "counting"]).await).unwrap();
    assert_eq!(group["checkpoint"], 9, "{group}");

    // Export and back up the cluster (through any node); restore the backup into an empty cluster on
    // the same NATS servers: the same log, positions, ids and hashes — its export is byte-identical
    // — and the group resumes there after its checkpoint.
    let export = cli(&joined, &["export"]).await;
    assert!(export.split(|&b| b == b'\n').filter(|line| !line.is_empty()).count() > 41);
    let backup = cluster._dir.path().join("backup");
    let manifest: Value =
        serde_json::from_slice(&cli(&joined, &["--json", "backup", "--output", backup.to_str().unwrap()]).await)
            .unwrap();
    assert_eq!(manifest["groups"]["count"], 1, "{manifest}");
    let mut other = StrataNode {
        id: "restored-1".to_owned(),
        port: free_port(),
        dir: cluster._dir.path().join("restored-1"),
        log: cluster._dir.path().join("restored-1.log"),
        child: None,
        nats_urls: None,
    };
    other.start(&cluster.nats, "restored");
    let other_url = other.url();
    let began = Instant::now();
    loop {
        let info: Option<Value> = match cluster.client.get(format!("{other_url}/v1/info")).send().await {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        if info.is_some_and(|info| info["cluster"]["role"] == "leader") {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the restored cluster's node did not lead:\n{}",
            other.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cli(&other_url, &["restore", "--from", backup.to_str().unwrap()]).await;
    let again = cli(&other_url, &["export"]).await;
    assert!(again == export, "backup → restore into an empty cluster → export differs");
    let restored: Value =
        serde_json::from_slice(&cli(&other_url, &["--json", "groups", "info", "counting"]).await).unwrap();
    assert_eq!((restored["checkpoint"].clone(), restored["lag_events"].clone()), (json!(9), json!(31)), "{restored}");
    let rest = cli(&other_url, &["groups", "consume", "counting", "--wait-ms", "0"]).await;
    assert_eq!(String::from_utf8(rest).unwrap().lines().count(), 31, "revisions 10 to 40, after the checkpoint");
    let verified = cli(&other_url, &["--json", "verify"]).await;
    assert_eq!(serde_json::from_slice::<Value>(&verified).unwrap()["ok"], true);
    other.kill();
}

/// Runs `strata --url <urls> <args>`, which must succeed, off the test's runtime; its output.
async fn cli(urls: &str, args: &[&str]) -> Vec<u8> {
    let urls = urls.to_owned();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_strata")).arg("--url").arg(&urls).args(&args).output().unwrap();
        assert!(output.status.success(), "strata {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    })
    .await
    .unwrap()
}

/// A TCP proxy of the test's own between one Strata node and one NATS server (or between two NATS
/// servers, on a route). `cut` is a silent
/// partition: bytes stop flowing both ways, connections stay open (nobody hears a close), new ones
/// are accepted and hear nothing. `restore` closes what the cut held, so the node reconnects.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    /// Bumped by every cut and every restore: connections watch it.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port; runs on the test's runtime.
    fn start(target_port: u16) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(tokio::sync::watch::channel(0u64).0);
        let task = tokio::spawn({
            let (cut, changes) = (cut.clone(), changes.clone());
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let (cut, mut changed) = (cut.clone(), changes.subscribe());
                    tokio::spawn(async move {
                        if !cut.load(Ordering::SeqCst) {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                            else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                                _ = changed.changed() => {}
                            }
                            // Cut: hold both ends open, silent, until restored.
                            silent_until_restored(&cut, &mut changed, &mut inbound).await;
                            return;
                        }
                        // Accepted during a cut: silent until restored, then closed.
                        silent_until_restored(&cut, &mut changed, &mut inbound).await;
                    });
                }
            }
        });
        Proxy { port, cut, changes, task }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.changes.send_modify(|change| *change += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.changes.send_modify(|change| *change += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// While the proxy is cut: nothing reaches the other side and nothing comes back; what the client
/// sends is read and dropped, so that a client that gives up and closes (a reconnect attempt timing
/// out) frees its connection here instead of holding a descriptor until the cut ends.
async fn silent_until_restored(
    cut: &AtomicBool,
    changed: &mut tokio::sync::watch::Receiver<u64>,
    inbound: &mut tokio::net::TcpStream,
) {
    use tokio::io::AsyncReadExt;
    let mut discard = [0u8; 4096];
    while cut.load(Ordering::SeqCst) {
        tokio::select! {
            change = changed.changed() => if change.is_err() { return },
            read = inbound.read(&mut discard) => if matches!(read, Ok(0) | Err(_)) { return },
        }
    }
}

/// Until a node other than `not` says it leads.
async fn wait_other_leader(cluster: &TestCluster, not: usize, within: Duration) -> usize {
    let began = Instant::now();
    loop {
        for index in (0..cluster.nodes.len()).filter(|&index| index != not) {
            if cluster.info(index).await.is_some_and(|info| info["cluster"]["role"] == "leader") {
                return index;
            }
        }
        assert!(began.elapsed() < within, "no node but {not} leads within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn network_faults_answer_nothing_false_and_everything_resumes() {
    // Nine proxies: node i reaches NATS server j through proxies[i][j].
    let mut proxies: Vec<Vec<Proxy>> = Vec::new();
    let started = TestCluster::start_with("cluster_network_faults", |_, nats| {
        let row: Vec<Proxy> = nats.nodes.iter().map(|server| Proxy::start(server.client_port)).collect();
        let urls = row.iter().map(Proxy::url).collect();
        proxies.push(row);
        Some(urls)
    })
    .await;
    let Some(mut cluster) = started else { return };

    let load = Load::start(&cluster, 300).await;

    // 1. The leader cut off from every NATS server while clients still reach it.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let cut_at = Instant::now();
    for proxy in &proxies[leader] {
        proxy.cut();
    }
    let new_leader = wait_other_leader(&cluster, leader, Duration::from_secs(30)).await;
    wait_acks(&load.ledger, 300, Duration::from_secs(30)).await;
    eprintln!(
        "the leader cut off from NATS: node {new_leader} leads and 300 more acknowledgements {:.1} s later",
        cut_at.elapsed().as_secs_f64()
    );
    // The cut node no longer leads, and still serves reads (it is within --max-staleness).
    let info = cluster.info(leader).await.expect("the cut node answers");
    assert_ne!(info["cluster"]["role"], "leader", "a node cut off from NATS steps down: {info}");
    let url = cluster.nodes[leader].url();
    let read = cluster.client.get(format!("{url}/v1/all?limit=1")).send().await.unwrap();
    assert_eq!(read.status(), 200, "reads go on on the cut node");
    for proxy in &proxies[leader] {
        proxy.restore();
    }

    // 2. Two of the three NATS servers down: no append succeeds, reads go on, then everything
    // resumes. (The writers keep retrying meanwhile.)
    let down = [0, 1];
    for &server in &down {
        cluster.nats.kill(server);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probes: Vec<(usize, String)> = (0..3).map(|node| (node, uuid::Uuid::new_v4().to_string())).collect();
    // All three at once (each may wait for a leader), so the writers' outage stays short.
    let asked: Vec<_> = probes
        .iter()
        .map(|(node, id)| {
            let (client, url, id, node) = (cluster.client.clone(), cluster.nodes[*node].url(), id.clone(), *node);
            tokio::spawn(async move {
                let began = Instant::now();
                let body = json!({ "events": [{ "id": id, "type": "Probed", "data": {} }] });
                let status = match client.post(format!("{url}/v1/streams/probe")).json(&body).send().await {
                    Ok(response) => Some(response.status().as_u16()),
                    Err(_) => None,
                };
                eprintln!(
                    "two NATS servers down: an append on node {node} answered {status:?} in {:.1} s",
                    began.elapsed().as_secs_f64()
                );
                assert!(status.is_none() || status == Some(503), "an append without a NATS quorum answered {status:?}");
                let read = client.get(format!("{url}/v1/all?limit=1")).send().await.unwrap();
                assert_eq!(read.status(), 200, "reads go on on node {node} without a NATS quorum");
            })
        })
        .collect();
    for probe in asked {
        probe.await.expect("a probe failed");
    }
    for &server in &down {
        cluster.nats.start_node(server).unwrap();
    }
    for &server in &down {
        cluster.nats.wait_ready(server, Duration::from_secs(30)).unwrap();
    }
    let restarted_at = Instant::now();
    wait_acks(&load.ledger, 300, Duration::from_secs(60)).await;
    eprintln!(
        "two NATS servers back: 300 more acknowledgements {:.1} s later; longest pause between acknowledgements {:.1} s",
        restarted_at.elapsed().as_secs_f64(),
        load.ledger.longest_pause.lock().unwrap().as_secs_f64()
    );

    let (_, log) = load.finish(&cluster).await;
    // A probe answered 503 may still have landed (its outcome was unknown): at most once.
    for (_, id) in &probes {
        assert!(log.iter().filter(|event| event[1] == id.as_str()).count() <= 1);
    }
}

/// One NATS server cut off from the other two (its routes silent, through proxies of the test's own)
/// while the Strata leader — which reaches only that server — and its clients stay connected: the
/// leader can no longer renew its lease on the minority side and steps down, a node on the majority
/// side leads, the writers go on through it, and once the routes come back the isolated server and
/// node catch up to the same log: nothing acknowledged lost or duplicated, no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_nats_server_cut_off_from_the_other_two_answers_nothing_false_and_everything_resumes() {
    // Six proxies: NATS server i reaches server j's cluster port through routes[&(i, j)] (a start
    // tried again replaces them). Strata node i reaches NATS server i only.
    let mut routes: HashMap<(usize, usize), Proxy> = HashMap::new();
    let start_nats = || {
        NatsCluster::start_with_routes(3, |from, to, port| {
            let proxy = Proxy::start(port);
            let port = proxy.port;
            routes.insert((from, to), proxy);
            port
        })
    };
    let started =
        TestCluster::start_over("cluster_nats_isolated", start_nats, |node, nats| Some(vec![nats.nodes[node].url()]))
            .await;
    let Some(cluster) = started else { return };
    let stream = format!("STRATA_{}_default", cluster.name);

    let load = Load::start(&cluster, 300).await;
    let isolated = cluster.wait_leader(Duration::from_secs(10)).await;
    let cut_at = Instant::now();
    for ((from, to), proxy) in &routes {
        if *from == isolated || *to == isolated {
            proxy.cut();
        }
    }
    let new_leader = wait_other_leader(&cluster, isolated, Duration::from_secs(60)).await;
    let led_after = cut_at.elapsed();
    wait_acks(&load.ledger, 300, Duration::from_secs(60)).await;
    eprintln!(
        "NATS server {isolated} cut off with the Strata leader on it: node {new_leader} leads {:.1} s later, \
         300 more acknowledgements {:.1} s later",
        led_after.as_secs_f64(),
        cut_at.elapsed().as_secs_f64()
    );
    let info = cluster.info(isolated).await.expect("the node on the isolated server answers");
    assert_ne!(info["cluster"]["role"], "leader", "a leader on the minority side steps down: {info}");
    let majority = cluster.nats.stream_last_sequence(new_leader, &stream).expect("the log on the majority side");
    let minority = cluster.nats.stream_last_sequence(isolated, &stream).unwrap_or(0);
    assert!(minority < majority, "the isolated server stopped getting frames ({minority} < {majority})");

    for proxy in routes.values() {
        proxy.restore();
    }
    let restored_at = Instant::now();
    wait_acks(&load.ledger, 300, Duration::from_secs(60)).await;
    let longest_pause = *load.ledger.longest_pause.lock().unwrap();
    let (head, _) = load.finish(&cluster).await;
    // The isolated server caught up with the stream too.
    let expected = cluster.nats.stream_last_sequence(new_leader, &stream).expect("the log's last sequence");
    let began = Instant::now();
    while cluster.nats.stream_last_sequence(isolated, &stream) != Some(expected) {
        assert!(began.elapsed() < Duration::from_secs(30), "the isolated NATS server did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "routes back: every node at head {head} and NATS server {isolated} at sequence {expected} {:.1} s later; \
         longest pause between acknowledgements {:.1} s",
        restored_at.elapsed().as_secs_f64(),
        longest_pause.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_group_resumes_on_the_new_leader_after_kill_9() {
    let Some(mut cluster) = TestCluster::start("cluster_groups").await else { return };
    let urls = cluster.urls();
    let client = cluster.client.clone();
    for n in 0..300 {
        let body = json!({ "events": [{ "type": "Placed", "data": { "n": n } }] });
        let response =
            client.post(format!("{}/v1/streams/order-{}", urls[n % 3], n % 3)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let page: Value = cluster.get_json(&format!("{}/v1/all?category=order&limit=1000&min_position=300", urls[0])).await;
    let expected: HashSet<u64> =
        page["events"].as_array().unwrap().iter().map(|event| event["position"].as_u64().unwrap()).collect();
    assert_eq!(expected.len(), 300);
    // Created through a follower: group requests go to the leader.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let spec = json!({ "source": { "all": { "category": "order" } }, "from": "start", "settings": { "ack_timeout_ms": 2000 } });
    let response = client.put(format!("{}/v1/groups/billing", urls[follower])).json(&spec).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // One consumer, through every node in turn; the leader is killed once 100 events are acked.
    let mut acked: HashSet<u64> = HashSet::new();
    let mut deliveries = 0;
    let (mut turn, mut killed, mut first_after_kill) = (0, None, None);
    let began = Instant::now();
    while !expected.is_subset(&acked) {
        assert!(began.elapsed() < Duration::from_secs(90), "{} of 300 acked after 90 s", acked.len());
        let at = turn % 3;
        turn += 1;
        if Some(at) == killed {
            continue;
        }
        let url = &urls[at];
        let fetch = json!({ "consumer": "c1", "max": 10, "wait_ms": 200 });
        let Ok(response) = client.post(format!("{url}/v1/groups/billing/fetch")).json(&fetch).send().await else {
            continue;
        };
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let fetched: Value = response.json().await.unwrap();
        let batch: Vec<(String, u64)> = fetched["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|delivery| {
                (delivery["delivery_id"].as_str().unwrap().to_owned(), delivery["event"]["position"].as_u64().unwrap())
            })
            .collect();
        deliveries += batch.len();
        if killed.is_some() && first_after_kill.is_none() {
            first_after_kill = batch.iter().map(|(_, position)| *position).min();
        }
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        let ack = json!({ "delivery_ids": ids });
        let Ok(response) = client.post(format!("{url}/v1/groups/billing/ack")).json(&ack).send().await else {
            continue;
        };
        if response.status() != 200 {
            continue;
        }
        let answer: Value = response.json().await.unwrap();
        let unknown: HashSet<&str> =
            answer["unknown"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
        acked.extend(batch.iter().filter(|(id, _)| !unknown.contains(id.as_str())).map(|(_, position)| *position));
        // Slowly before the kill, so that checkpoints are saved (every 100 ms while acks come in).
        if killed.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if killed.is_none() && acked.len() >= 150 {
            let leader = cluster.wait_leader(Duration::from_secs(10)).await;
            cluster.nodes[leader].kill();
            killed = Some(leader);
            eprintln!(
                "killed the leader (node {leader}) {:.1} s in, {} acked",
                began.elapsed().as_secs_f64(),
                acked.len()
            );
        }
    }
    assert!(killed.is_some());
    // The new leader resumed from the checkpoint the old one saved in the cluster, not from the start.
    let resumed = first_after_kill.expect("deliveries after the kill");
    assert!(resumed > 50, "the new leader delivered from position {resumed}: the saved checkpoint was not used");
    eprintln!(
        "a consumer group across kill -9 of the leader: all 300 events acked in {:.1} s, {deliveries} deliveries \
         (at least once), the new leader resumed at position {resumed}",
        began.elapsed().as_secs_f64()
    );
    // The new leader's view of the group: everything handled.
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let info: Value = cluster.get_json(&format!("{}/v1/groups/billing", urls[leader])).await;
    assert_eq!(info["lag_events"], 0, "{info}");
}
