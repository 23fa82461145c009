//! Cluster mode with real processes: a private 3-server NATS cluster (nats-server 2.15.1, R3,
//! `sync_interval: always`) and three `strata serve --cluster` nodes, driven over HTTP by 64 writers
//! that retry an append (same event id) on another node until it is acknowledged. The faults are
//! real: kill -9 of the Strata leader, kill -9 of the JetStream stream leader, SIGSTOP of the leader
//! past its lease. After each, every acknowledged event is in the log exactly once at the position
//! it was acknowledged with, positions are gapless, and every replica holds the same log (same
//! hashes). The client and the command line, given every node, move on when one is gone; an export
//! of the cluster imports into an empty cluster and exports again byte for byte. Skips visibly
//! without a nats-server (fails with `STRATA_REQUIRE_SERVICES=1`).

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_cluster::testing::{NatsCluster, cluster_or_skip, free_port};

const LEASE: &str = "2s";
const WRITERS: usize = 64;

/// One `strata serve --cluster` process.
struct StrataNode {
    id: String,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
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
            .args(["--cluster", &nats.urls().join(","), "--cluster-name", cluster, "--node-id", &self.id])
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

struct TestCluster {
    nats: NatsCluster,
    nodes: Vec<StrataNode>,
    name: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    async fn start(test: &str) -> Option<TestCluster> {
        let nats = cluster_or_skip(3, test)?;
        let dir = tempfile::tempdir().unwrap();
        let name = test.replace(|c: char| !c.is_ascii_alphanumeric(), "_").chars().take(40).collect::<String>();
        let mut cluster = TestCluster {
            nats,
            nodes: Vec::new(),
            name,
            client: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
            _dir: dir,
        };
        for index in 0..3 {
            cluster.add_node(&format!("s{}", index + 1));
        }
        for index in 0..3 {
            cluster.wait_serving(index, Duration::from_secs(60)).await;
        }
        cluster.wait_leader(Duration::from_secs(30)).await;
        Some(cluster)
    }

    fn add_node(&mut self, id: &str) -> usize {
        let base = self._dir.path();
        let mut node = StrataNode {
            id: id.to_owned(),
            port: free_port(),
            dir: base.join(id),
            log: base.join(format!("{id}.log")),
            child: None,
        };
        node.start(&self.nats, &self.name);
        self.nodes.push(node);
        self.nodes.len() - 1
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
            let page: Value = self
                .client
                .get(format!("{url}/v1/all?from={from}&limit=10000"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
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
    let page: Value = client
        .get(format!("{}/v1/streams/order-1?min_position={position}", cluster.nodes[b].url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(cluster.urls(), ledger.clone(), stop.clone());
    wait_acks(&ledger, 500, Duration::from_secs(30)).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let killed_at = Instant::now();
    cluster.nodes[leader].kill();
    // Another node leads, and appends resume.
    let new_leader = cluster.wait_leader(Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    wait_acks(&ledger, 500, Duration::from_secs(30)).await;
    eprintln!(
        "kill -9 of the Strata leader: a new leader and 500 more acknowledgements {:.1} s later; longest pause between acknowledgements {:.1} s",
        killed_at.elapsed().as_secs_f64(),
        ledger.longest_pause.lock().unwrap().as_secs_f64()
    );
    // The killed node comes back on its data and catches up.
    let (nats, name) = (&cluster.nats, cluster.name.clone());
    cluster.nodes[leader].start(nats, &name);
    cluster.wait_serving(leader, Duration::from_secs(60)).await;
    stop_writers(&stop, writers).await;
    let head = head_of(&cluster).await;
    let log = cluster.assert_replicas_agree(head).await;
    assert_exactly_once(&log, &ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_jetstream_stream_leader_under_load_loses_and_duplicates_nothing() {
    let Some(mut cluster) = TestCluster::start("cluster_kill_nats").await else { return };
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(cluster.urls(), ledger.clone(), stop.clone());
    wait_acks(&ledger, 500, Duration::from_secs(30)).await;
    let stream = format!("STRATA_{}_default", cluster.name);
    let nats_leader = cluster.nats.stream_leader(&stream).expect("the log's stream has a leader");
    let killed_at = Instant::now();
    cluster.nats.kill(nats_leader);
    wait_acks(&ledger, 500, Duration::from_secs(60)).await;
    eprintln!(
        "kill -9 of the JetStream stream leader: 500 more acknowledgements {:.1} s later; longest pause between acknowledgements {:.1} s",
        killed_at.elapsed().as_secs_f64(),
        ledger.longest_pause.lock().unwrap().as_secs_f64()
    );
    cluster.nats.start_node(nats_leader).unwrap();
    cluster.nats.wait_ready(nats_leader, Duration::from_secs(30)).unwrap();
    stop_writers(&stop, writers).await;
    let head = head_of(&cluster).await;
    let log = cluster.assert_replicas_agree(head).await;
    assert_exactly_once(&log, &ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_frozen_past_its_lease_is_fenced_and_answers_nothing_false() {
    let Some(mut cluster) = TestCluster::start("cluster_freeze").await else { return };
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(cluster.urls(), ledger.clone(), stop.clone());
    wait_acks(&ledger, 500, Duration::from_secs(30)).await;
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
    wait_acks(&ledger, 500, Duration::from_secs(30)).await;
    // Thawed: it was deposed while frozen; whatever it publishes now is fenced.
    cluster.nodes[leader].signal(libc::SIGCONT);
    wait_acks(&ledger, 300, Duration::from_secs(30)).await;
    let began = Instant::now();
    loop {
        let info = cluster.info(leader).await.expect("the thawed node answers");
        if info["cluster"]["role"] != "leader" || cluster.leader().await == Some(new_leader) {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(15), "the thawed node still says it leads: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_writers(&stop, writers).await;
    let head = head_of(&cluster).await;
    let log = cluster.assert_replicas_agree(head).await;
    // Every answer a client got — from the frozen leader too — is true of the log.
    assert_exactly_once(&log, &ledger);
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
    let cli = move |args: Vec<String>| {
        let joined = joined.clone();
        tokio::task::spawn_blocking(move || {
            let output =
                Command::new(env!("CARGO_BIN_EXE_strata")).arg("--url").arg(&joined).args(&args).output().unwrap();
            assert!(output.status.success(), "strata {args:?}: {}", String::from_utf8_lossy(&output.stderr));
            output.stdout
        })
    };
    cli(["append", "client-1", "--type", "Counted", r#"{"n":40}"#].map(String::from).to_vec()).await.unwrap();
    let read = cli(["--json", "read", "client-1"].map(String::from).to_vec()).await.unwrap();
    let ns: Vec<u64> = read
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice::<Value>(line).unwrap()["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..41).collect::<Vec<u64>>());

    // Export from the cluster (through any node), import into an empty cluster on the same NATS
    // servers: the same log, positions, ids and hashes — its export is byte-identical.
    let export = cli(vec!["export".to_owned()]).await.unwrap();
    assert!(export.split(|&b| b == b'\n').filter(|line| !line.is_empty()).count() > 41);
    let file = cluster._dir.path().join("cluster.ndjson");
    std::fs::write(&file, &export).unwrap();
    let mut other = StrataNode {
        id: "restored-1".to_owned(),
        port: free_port(),
        dir: cluster._dir.path().join("restored-1"),
        log: cluster._dir.path().join("restored-1.log"),
        child: None,
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
    let on_other = move |args: Vec<String>| {
        let url = other_url.clone();
        tokio::task::spawn_blocking(move || {
            let output =
                Command::new(env!("CARGO_BIN_EXE_strata")).arg("--url").arg(&url).args(&args).output().unwrap();
            assert!(output.status.success(), "strata {args:?}: {}", String::from_utf8_lossy(&output.stderr));
            output.stdout
        })
    };
    on_other(vec!["import".to_owned(), file.to_str().unwrap().to_owned()]).await.unwrap();
    let again = on_other(vec!["export".to_owned()]).await.unwrap();
    assert!(again == export, "export → import into an empty cluster → export differs");
    let verified = on_other(vec!["--json".to_owned(), "verify".to_owned()]).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&verified).unwrap()["ok"], true);
    other.kill();
}
