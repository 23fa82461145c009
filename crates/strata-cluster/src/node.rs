//! A cluster node: the local replica, the task that follows the log into it, the lease, the role.
//!
//! Roles move one way at a time: a **follower** applies every message of the log, in order, through
//! [`Store::replicate`]. When the lease has not been renewed for the lease time (its revision
//! unchanged on this node's own monotonic clock), the follower takes it over with a compare-and-set
//! on that revision and becomes a **candidate**: its replication task reads the log to its end, and
//! only then does the node **lead** — its committer's proposals are published
//! ([`crate::log::JetStreamLog`]). Only the replication task turns leadership on, and it does not
//! replicate while leading, so the committer never sees a frame twice. A leader that fails to renew
//! (a failed compare-and-set, or no renewal for the lease time less one interval) steps down and
//! follows again from where it is.

use crate::config::ClusterConfig;
use crate::cursor::{self, Cursor, SharedCursor};
use crate::log::JetStreamLog;
use crate::nats;
use async_nats::jetstream::{self, consumer, kv, stream::Stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use strata_core::Position;
use strata_storage::replica::Replicated;
use strata_storage::{Direction, Options, ReadFrom, Store, format};
use tokio::sync::watch;

const FOLLOWER: u8 = 0;
const CANDIDATE: u8 = 1;
const LEADER: u8 = 2;

/// The lease's key in the bucket.
pub const LEASE_KEY: &str = "leader";
/// The namespace of the log until "Security and tenancy" adds others.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What this node is doing in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Follower,
    /// Holds the lease, catching up to the end of the log before it leads.
    Candidate,
    Leader,
}

/// What the lease's value says: who leads and where its HTTP API is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    pub node_id: String,
    pub url: String,
}

/// `/v1/info` and `/metrics`' view of the node.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster_name: String,
    pub node_id: String,
    pub role: Role,
    pub leader: Option<LeaseHolder>,
    pub lease_revision: u64,
    /// The log's last sequence as this node last saw it, and the last it applied.
    pub log_last_sequence: u64,
    pub applied_sequence: u64,
    /// Messages of the log not yet applied here.
    pub lag_frames: u64,
    /// How far behind the newest message applied here is (0 when caught up).
    pub lag_seconds: f64,
    /// Milliseconds since this node last heard from the cluster.
    pub last_contact_ms: u64,
    /// Why writes are halted on this node, if they are.
    pub halted: Option<String>,
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Nats(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Open(#[from] strata_storage::OpenError),
}

/// State the node's tasks and its committer's log share.
#[derive(Debug)]
pub struct Shared {
    pub(crate) cursor: SharedCursor,
    /// [`FOLLOWER`], [`CANDIDATE`] or [`LEADER`]: one atomic, so that turning candidate into leader
    /// and stepping down cannot interleave.
    role_state: AtomicU8,
    halted: OnceLock<String>,
    pub(crate) frames_published: AtomicU64,
    /// Frames this node did not decide on the state it decided refusals on: applied from the log by
    /// the replicator or in a conflict, or a settled attempt. A refusal is confirmed only if none
    /// came in while it was decided (`Node::refusal_mark`).
    pub(crate) foreign_applied: AtomicU64,
    status: Mutex<StatusInner>,
    role: watch::Sender<Role>,
    last_contact: Mutex<Instant>,
}

#[derive(Debug, Default)]
struct StatusInner {
    leader: Option<LeaseHolder>,
    lease_revision: u64,
    log_last_sequence: u64,
    /// When the newest message applied here was published (JetStream's time), in µs since the epoch.
    applied_published_us: Option<i64>,
}

impl Shared {
    fn new(cursor: SharedCursor) -> Self {
        Self {
            cursor,
            role_state: AtomicU8::new(FOLLOWER),
            halted: OnceLock::new(),
            frames_published: AtomicU64::new(0),
            foreign_applied: AtomicU64::new(0),
            status: Mutex::default(),
            role: watch::channel(Role::Follower).0,
            last_contact: Mutex::new(Instant::now()),
        }
    }

    /// Why this node may not publish now (`None`: it leads).
    pub(crate) fn refusal(&self) -> Option<String> {
        if let Some(reason) = self.halted.get() {
            return Some(format!("writes are halted on this node: {reason}"));
        }
        (!self.is_leading()).then(|| "this node is not the cluster's leader".to_owned())
    }

    pub(crate) fn is_leading(&self) -> bool {
        self.role_state.load(Ordering::SeqCst) == LEADER
    }

    fn is_candidate(&self) -> bool {
        self.role_state.load(Ordering::SeqCst) == CANDIDATE
    }

    /// Follower → candidate (the lease was won).
    fn become_candidate(&self) -> bool {
        let won = self.role_state.compare_exchange(FOLLOWER, CANDIDATE, Ordering::SeqCst, Ordering::SeqCst).is_ok();
        if won {
            self.role.send_replace(Role::Candidate);
        }
        won
    }

    /// Candidate → leader, unless the node stepped down meanwhile.
    fn promote(&self) -> bool {
        let promoted = self.role_state.compare_exchange(CANDIDATE, LEADER, Ordering::SeqCst, Ordering::SeqCst).is_ok();
        if promoted {
            self.role.send_replace(Role::Leader);
        }
        promoted
    }

    pub(crate) fn step_down(&self, reason: &str) {
        let was = self.role_state.swap(FOLLOWER, Ordering::SeqCst) != FOLLOWER;
        if was {
            tracing::warn!(%reason, "stepping down: this node no longer leads");
        }
        self.role.send_replace(Role::Follower);
    }

    pub(crate) fn halt(&self, reason: &str) {
        if self.halted.set(reason.to_owned()).is_ok() {
            tracing::error!(%reason, "writes halted on this node");
        }
        self.step_down(reason);
    }

    fn touch(&self) {
        *self.last_contact.lock().expect("contact lock") = Instant::now();
    }

    fn role_now(&self) -> Role {
        match self.role_state.load(Ordering::SeqCst) {
            LEADER => Role::Leader,
            CANDIDATE => Role::Candidate,
            _ => Role::Follower,
        }
    }
}

/// A running cluster node.
#[derive(Debug)]
pub struct Node {
    store: Store,
    shared: Arc<Shared>,
    config: ClusterConfig,
    stream: Stream,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    dir: PathBuf,
    /// The consumer groups' state, in the lease's bucket.
    group_states: Arc<crate::groups::KvGroupStates>,
}

impl Node {
    /// Connects, checks the servers and the log, opens the replica in `dir`, catches it up to the end
    /// of the log, and starts following and competing for the lease. Call from a multi-threaded tokio
    /// runtime: the committer's thread waits on it for publishes.
    pub async fn start(config: ClusterConfig, dir: &Path, mut options: Options) -> Result<Node, StartError> {
        config.validate().map_err(StartError::Config)?;
        let (client, connections) = nats::connect(&config).await.map_err(StartError::Nats)?;
        // The server connected to, then (given their monitoring URLs) every server: a frame must fit
        // the smallest `max_payload` of them, since any may lead the stream.
        let connected = nats::check_server(&client).map_err(StartError::Refused)?;
        let monitored = nats::check_monitored_servers(&config.monitoring).await.map_err(StartError::Refused)?;
        let max_payload = monitored.map_or(connected, |smallest| smallest.min(connected));
        // Publishes wait `publish_timeout` for their acknowledgement; administrative requests (a
        // replicated stream created while the servers elect their leaders) get longer.
        let js = jetstream::ContextBuilder::new().timeout(config.publish_timeout).build(client.clone());
        let admin = jetstream::ContextBuilder::new().timeout(ADMIN_TIMEOUT).build(client.clone());
        let stream = retry_while_starting(|| nats::log_stream(&admin, &config, DEFAULT_NAMESPACE)).await?;
        retry_while_starting(|| lease_bucket(&admin, &config)).await?;
        // Renewals wait no longer than a publish: one stuck for longer than the lease would keep a
        // leader from noticing it lost it.
        let bucket = retry_while_starting(|| async {
            js.get_key_value(config.bucket()).await.map_err(|error| format!("get the bucket: {error}"))
        })
        .await?;

        options.frame_bytes_max = Some(nats::frame_bytes_max(max_payload));
        let shared = Arc::new(Shared::new(SharedCursor::new(dir, Cursor::default())));
        let log = {
            let (runtime, js, stream, shared) =
                (tokio::runtime::Handle::current(), js.clone(), stream.clone(), shared.clone());
            let (subject, node_id) = (config.subject(DEFAULT_NAMESPACE), config.node_id.clone());
            move |segments| -> Box<dyn strata_storage::replica::CommitLog> {
                Box::new(JetStreamLog::new(segments, runtime, js, stream, subject, node_id, shared))
            }
        };
        let store = {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || Store::open_replicated(&dir, options, log))
                .await
                .map_err(|error| StartError::Config(format!("opening the replica panicked: {error}")))??
        };
        let start = check_identity_and_resume(&store, &stream, dir).await?;
        shared.cursor.set(start);
        tracing::info!(
            cluster = %config.cluster_name, node = %config.node_id, sequence = start.sequence,
            next_position = start.next_position, "cluster node opened its replica; catching up"
        );

        let (stop, stop_rx) = watch::channel(false);
        // Group saves get the admin timeout's patience (a save that fails is tried again).
        let groups_bucket = retry_while_starting(|| async {
            admin.get_key_value(config.bucket()).await.map_err(|error| format!("get the bucket: {error}"))
        })
        .await?;
        let group_states = Arc::new(crate::groups::KvGroupStates::new(
            groups_bucket,
            config.bucket(),
            tokio::runtime::Handle::current(),
        ));
        let node = Node {
            store,
            shared,
            config,
            stream,
            stop,
            tasks: Mutex::new(Vec::new()),
            dir: dir.to_path_buf(),
            group_states,
        };
        // Catch up before serving (and before competing for the lease).
        let mut replicator = Replicator::new(node.store.clone(), node.shared.clone(), node.stream.clone());
        replicator.catch_up().await.map_err(StartError::Nats)?;
        {
            let mut tasks = node.tasks.lock().expect("tasks lock");
            tasks.push(tokio::spawn(replicator.run(stop_rx.clone())));
            tasks.push(tokio::spawn(lease_loop(node.shared.clone(), node.config.clone(), bucket, stop_rx.clone())));
            tasks.push(tokio::spawn(status_loop(node.shared.clone(), node.stream.clone(), stop_rx.clone())));
            tasks.push(tokio::spawn(check_after_reconnects(
                node.shared.clone(),
                client,
                connections,
                node.config.monitoring.clone(),
                max_payload,
                stop_rx,
            )));
        }
        tracing::info!(cluster = %node.config.cluster_name, node = %node.config.node_id, "cluster node caught up; serving");
        Ok(node)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the consumer groups keep their state on this cluster
    /// ([`strata_storage::ConsumerGroups::open_with`]).
    pub fn group_states(&self) -> Arc<dyn strata_storage::GroupStates> {
        self.group_states.clone()
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn role(&self) -> Role {
        self.shared.role_now()
    }

    /// Waits for the role to change.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.shared.role.subscribe()
    }

    /// The lease holder, as this node last read it.
    pub fn leader(&self) -> Option<LeaseHolder> {
        self.shared.status.lock().expect("status lock").leader.clone()
    }

    pub fn status(&self) -> ClusterStatus {
        let inner = self.shared.status.lock().expect("status lock");
        let applied = self.shared.cursor.get().sequence;
        let lag_frames = inner.log_last_sequence.saturating_sub(applied);
        let lag_seconds = match (lag_frames, inner.applied_published_us) {
            (0, _) | (_, None) => 0.0,
            (_, Some(published)) => (now_micros() - published).max(0) as f64 / 1_000_000.0,
        };
        ClusterStatus {
            cluster_name: self.config.cluster_name.clone(),
            node_id: self.config.node_id.clone(),
            role: self.shared.role_now(),
            leader: inner.leader.clone(),
            lease_revision: inner.lease_revision,
            log_last_sequence: inner.log_last_sequence,
            applied_sequence: applied,
            lag_frames,
            lag_seconds,
            last_contact_ms: self.shared.last_contact.lock().expect("contact lock").elapsed().as_millis() as u64,
            halted: self.shared.halted.get().cloned(),
        }
    }

    /// Why this node must not serve reads (cut off from the cluster for longer than
    /// `max_staleness`), if it must not.
    pub fn stale(&self) -> Option<String> {
        if let Some(reason) = self.shared.halted.get() {
            return Some(format!("this node's replica no longer follows the cluster log: {reason}"));
        }
        if let Some(reason) = self.store.poison_reason() {
            return Some(format!("this node's replica no longer follows the cluster log: {reason}"));
        }
        let silent = self.shared.last_contact.lock().expect("contact lock").elapsed();
        (silent > self.config.max_staleness).then(|| {
            format!(
                "this node has not heard from the cluster for {} s (more than --max-staleness {} s): its replica may be stale",
                silent.as_secs(),
                self.config.max_staleness.as_secs()
            )
        })
    }

    /// Taken before a request is decided: see [`Node::confirm_refusal`].
    pub fn refusal_mark(&self) -> u64 {
        self.shared.foreign_applied.load(Ordering::SeqCst)
    }

    /// Whether a refusal decided after `mark` was decided on the whole log: no frame but this node's
    /// own came in since, and the replica holds the log's last message now (asked of the stream's
    /// leader). Frames this node published meanwhile came after the decision and cannot change it.
    pub async fn confirm_refusal(&self, mark: u64) -> Result<bool, String> {
        let mut stream = self.stream.clone();
        let info = stream.info().await.map_err(|error| format!("read the log's state: {error}"))?;
        let at_head = self.shared.cursor.get().sequence >= info.state.last_sequence;
        Ok(at_head && self.shared.foreign_applied.load(Ordering::SeqCst) == mark)
    }

    /// Waits until the local replica holds `position` (true), or `timeout` passes (false).
    pub async fn wait_for_position(&self, position: u64, timeout: Duration) -> bool {
        let mut next = self.store.watch_next_position();
        let reached = async {
            loop {
                if *next.borrow_and_update() > position {
                    return;
                }
                if next.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, reached).await.is_ok() && *next.borrow() > position
    }

    /// Stops following and leading (a leader releases the lease so another node takes over at
    /// once), saves the cursor, and returns the store (which closes when its last handle goes).
    pub async fn shutdown(&self) -> Store {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = self.tasks.lock().expect("tasks lock").drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        self.shared.step_down("shutting down");
        if let Err(error) = self.shared.cursor.save() {
            tracing::warn!(%error, dir = %self.dir.display(), "could not save the cluster cursor");
        }
        self.store.clone()
    }
}

/// How long administrative JetStream requests may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a starting node keeps asking servers that are still electing their leaders.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds or [`START_PATIENCE`] passes: a cluster whose servers are
/// starting too answers "timed out" or "no responders" for a while.
async fn retry_while_starting<T, F, Fut>(mut attempt: F) -> Result<T, StartError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let began = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(reason) if began.elapsed() < START_PATIENCE && is_transient(&reason) => {
                tracing::info!(%reason, "the NATS cluster is not ready yet; asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(reason) => return Err(StartError::Nats(reason)),
        }
    }
}

fn is_transient(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "timed out",
        "no responders",
        "jetstream not enabled",
        "temporarily unavailable",
        "insufficient resources",
        "no suitable peers",
        // Nodes starting together: the stream or bucket another node created a moment ago is not
        // answered for yet, or creating it too finds it there.
        "stream not found",
        "already in use",
    ]
    .iter()
    .any(|transient| reason.contains(transient))
}

async fn lease_bucket(js: &jetstream::Context, config: &ClusterConfig) -> Result<kv::Store, String> {
    let name = config.bucket();
    if let Ok(bucket) = js.get_key_value(&name).await {
        return Ok(bucket);
    }
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        description: format!("Strata cluster {}: the leader lease and the consumer groups' state", config.cluster_name),
        history: 1,
        storage: jetstream::stream::StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    })
    .await
    .map_err(|error| format!("create the key-value bucket {name}: {error}"))
}

/// Checks that the local replica belongs to this log (its `$store-created` is the log's first event
/// and the frame the saved cursor names ends where the replica does), and says where to follow from.
async fn check_identity_and_resume(store: &Store, stream: &Stream, dir: &Path) -> Result<Cursor, StartError> {
    let local_next = store.head_position().map_or(0, |head| head.value() + 1);
    let mut stream = stream.clone();
    let info = stream.info().await.map_err(|error| StartError::Nats(format!("read the log's state: {error}")))?;
    let (first_sequence, last_sequence) = (info.state.first_sequence, info.state.last_sequence);
    if local_next == 0 {
        return Ok(Cursor { sequence: first_sequence.saturating_sub(1), next_position: 0 });
    }
    let name = info.config.name.clone();
    let local = store.store_created();
    if last_sequence == 0 {
        return Err(StartError::Refused(format!(
            "this node's data directory holds {local_next} events (store {}), but the cluster log {name} is empty: \
             the data belongs to another log — start the node with an empty data directory to join this cluster",
            local.map_or("without an id".to_owned(), |created| created.store_id.to_string()),
        )));
    }
    let first = stream
        .get_raw_message(first_sequence)
        .await
        .map_err(|error| StartError::Nats(format!("read the log's first message: {error}")))?;
    let theirs = first_store_created(&first.payload);
    let same = matches!((&local, &theirs), (Some(ours), Some(theirs)) if ours.store_id == theirs.store_id && ours.genesis == theirs.genesis);
    if !same {
        return Err(StartError::Refused(format!(
            "this node's data directory belongs to another log: its store is {}, the cluster log {name} opens with store {} — \
             start the node with an empty data directory to join this cluster",
            local.map_or("without an id (format 1)".to_owned(), |created| created.store_id.to_string()),
            theirs.map_or("that is not a Strata log".to_owned(), |created| created.store_id.to_string()),
        )));
    }
    // A saved cursor is trusted only if the frame it names ends exactly where the replica does, with
    // the same hash; otherwise the log is read from its start, frames the replica has being checked.
    if let Some(saved) = cursor::load(dir).filter(|saved| saved.next_position == local_next && saved.sequence > 0) {
        if let Ok(message) = stream.get_raw_message(saved.sequence).await {
            if let Some((_, last, hash)) = frame_span(&message.payload) {
                if last + 1 == local_next && local_hash(store, last) == Some(hash) {
                    return Ok(saved);
                }
            }
        }
    }
    tracing::info!(
        local_next,
        "no usable cluster cursor: reading the log from its start, checking what the replica holds"
    );
    Ok(Cursor { sequence: first_sequence.saturating_sub(1), next_position: local_next })
}

fn first_store_created(frame: &[u8]) -> Option<strata_storage::StoreCreated> {
    let (_, keys) = format::decode_frame(frame).ok()?;
    let first = keys.first()?;
    (first.stream == strata_storage::STORE_STREAM && first.event_type == strata_storage::STORE_CREATED_TYPE)
        .then(|| strata_storage::StoreCreated::decode(first.data).ok())
        .flatten()
}

/// A commit frame's first and last position and its last hash.
fn frame_span(frame: &[u8]) -> Option<(u64, u64, strata_core::EventHash)> {
    let (body, keys) = format::decode_frame(frame).ok()?;
    let format::FrameBody::Commit { first_position, event_count, .. } = body else { return None };
    let hash = keys.last()?.chain.hash()?;
    Some((first_position, first_position + u64::from(event_count) - 1, hash))
}

fn local_hash(store: &Store, position: u64) -> Option<strata_core::EventHash> {
    let events = store.read_all(ReadFrom::At(Position::new(position)), Direction::Forward, 1).ok()?;
    events.first().filter(|event| event.position.value() == position).and_then(|event| event.hash)
}

/// Applies the log to the local replica, and takes leadership over when the lease loop won it.
struct Replicator {
    store: Store,
    shared: Arc<Shared>,
    stream: Stream,
}

impl Replicator {
    fn new(store: Store, shared: Arc<Shared>, stream: Stream) -> Self {
        Self { store, shared, stream }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut role = self.shared.role.subscribe();
        while !*stop.borrow() {
            if self.shared.halted.get().is_some() {
                // Nothing more is applied here; wait to be stopped.
                if stop.changed().await.is_err() {
                    return;
                }
                continue;
            }
            if self.shared.is_leading() {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = role.changed() => {}
                }
                continue;
            }
            if self.shared.is_candidate() {
                self.take_over().await;
                continue;
            }
            self.follow(&mut stop, &mut role).await;
        }
    }

    /// Follows the log from the cursor until stopped, made candidate, or the subscription fails.
    async fn follow(&mut self, stop: &mut watch::Receiver<bool>, role: &mut watch::Receiver<Role>) {
        let start = self.shared.cursor.get().sequence + 1;
        let config = consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
            ..Default::default()
        };
        let messages = match self.stream.create_consumer(config).await {
            Ok(consumer) => consumer.messages().await.map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, start, "could not follow the log; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
        };
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = role.changed() => {
                    if self.shared.is_candidate() || self.shared.is_leading() {
                        return;
                    }
                }
                message = messages.next() => match message {
                    Some(Ok(message)) => {
                        let Ok(info) = message.info() else { continue };
                        let (sequence, published) = (info.stream_sequence, info.published);
                        let published_us = (published.unix_timestamp_nanos() / 1000) as i64;
                        self.apply(sequence, message.payload.to_vec(), Some(published_us)).await;
                        if self.shared.halted.get().is_some() {
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "following the log failed; following again from the cursor");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return;
                    }
                    None => return,
                },
            }
        }
    }

    /// Applies the message at `sequence`: a frame the replica holds already is checked and passed,
    /// anything else goes through the committer (applied, or skipped alike on every replica).
    async fn apply(&mut self, sequence: u64, frame: Vec<u8>, published_us: Option<i64>) {
        if sequence <= self.shared.cursor.get().sequence {
            return;
        }
        self.shared.touch();
        // A replica that resumes behind its own end (a saved cursor that lagged, or none) meets
        // frames it holds already: the one that continues the log where the cursor says it ends is
        // checked against the replica and passed; one that does not continue the log is a stray and
        // goes to the committer, which skips it like every replica does.
        let local_next = self.store.head_position().map_or(0, |head| head.value() + 1);
        let log_next = self.shared.cursor.get().next_position;
        if let Some((first, last, hash)) =
            frame_span(&frame).filter(|(first, _, _)| *first < local_next && *first == log_next)
        {
            if last < local_next && local_hash(&self.store, last) == Some(hash) {
                self.shared.cursor.set(Cursor { sequence, next_position: last + 1 });
                return;
            }
            self.shared.halt(&format!(
                "the log's frame at sequence {sequence} (positions {first}..={last}) differs from this node's replica: \
                 its history diverged — move its data directory away and let it catch up again"
            ));
            return;
        }
        match self.store.replicate(sequence, frame).await {
            Ok(Replicated::Applied { .. }) => {
                self.shared.status.lock().expect("status lock").applied_published_us = published_us;
            }
            Ok(Replicated::Skipped { .. }) => {}
            Err(error) => self.shared.halt(&format!("the replica could not apply the log: {error}")),
        }
    }

    /// Reads the log to its end (as its stream leader knows it) into the replica.
    async fn catch_up(&mut self) -> Result<(), String> {
        loop {
            let last =
                self.stream.info().await.map_err(|error| format!("read the log's state: {error}"))?.state.last_sequence;
            let cursor = self.shared.cursor.get().sequence;
            if cursor >= last {
                self.shared.status.lock().expect("status lock").log_last_sequence = last;
                // The replica must end where the log does: one that holds more (the log was restored
                // from an older copy, a single-server log lost messages) must never lead.
                let log_next = self.shared.cursor.get().next_position;
                let local_next = self.store.head_position().map_or(0, |head| head.value() + 1);
                if local_next != log_next {
                    let reason = format!(
                        "this node's replica ends at position {local_next} but the cluster log at {log_next}: \
                         the replica holds what the log does not — move its data directory away and let it catch up again"
                    );
                    self.shared.halt(&reason);
                    return Err(reason);
                }
                return Ok(());
            }
            for sequence in cursor + 1..=last {
                match self.stream.get_raw_message(sequence).await {
                    Ok(message) => {
                        let published_us = (message.time.unix_timestamp_nanos() / 1000) as i64;
                        self.apply(sequence, message.payload.to_vec(), Some(published_us)).await;
                    }
                    Err(error)
                        if error.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
                    {
                        self.shared.cursor.set(Cursor { sequence, ..self.shared.cursor.get() });
                    }
                    Err(error) => return Err(format!("read the log at sequence {sequence}: {error}")),
                }
                if let Some(reason) = self.shared.halted.get() {
                    return Err(reason.clone());
                }
            }
        }
    }

    /// The lease is ours: read the log to its end, then lead.
    async fn take_over(&mut self) {
        match self.catch_up().await {
            Ok(()) => {
                if self.shared.promote() {
                    tracing::info!(sequence = self.shared.cursor.get().sequence, "this node leads the cluster");
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, "could not catch up to take the lease over; following again");
                self.shared.step_down(&reason);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Renews the lease while this node holds it; takes it over when it has not changed for the lease
/// time; steps down when a renewal fails its compare-and-set or none succeeds in time.
async fn lease_loop(shared: Arc<Shared>, config: ClusterConfig, bucket: kv::Store, mut stop: watch::Receiver<bool>) {
    let me = serde_json::to_vec(&LeaseHolder { node_id: config.node_id.clone(), url: config.advertise.clone() })
        .expect("a lease holder serializes");
    let me = bytes::Bytes::from(me);
    let tick = (config.renew_every / 4).max(Duration::from_millis(50));
    let mut held: Option<u64> = None; // the revision of our own last write
    let mut renewed = Instant::now();
    let mut observed: Option<(u64, Instant)> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        let holding = shared.is_leading() || shared.is_candidate();
        if !holding {
            if let Some(revision) = held.take() {
                // Stepped down (a failed catch-up, a halt, a lost renewal): hand the lease on at once,
                // if it is still ours, rather than make the others wait out the lease time.
                let _ = bucket.update(LEASE_KEY, bytes::Bytes::new(), revision).await;
            }
        } else if held.is_none() {
            // Leading or candidate without a lease of our own: never, but never lead on it.
            shared.step_down("this node holds no lease");
            continue;
        }
        if let Some(revision) = held {
            if renewed.elapsed() < config.renew_every {
                continue;
            }
            match bucket.update(LEASE_KEY, me.clone(), revision).await {
                Ok(next) => {
                    held = Some(next);
                    renewed = Instant::now();
                    shared.touch();
                    let mut status = shared.status.lock().expect("status lock");
                    status.lease_revision = next;
                    status.leader =
                        Some(LeaseHolder { node_id: config.node_id.clone(), url: config.advertise.clone() });
                }
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    // A renewal whose answer was lost moved the revision already: if the lease still
                    // says this node, it is ours at its new revision.
                    match bucket.entry(LEASE_KEY).await {
                        Ok(Some(entry)) if entry.value == me && entry.revision > revision => {
                            held = Some(entry.revision);
                            renewed = Instant::now();
                        }
                        _ => {
                            held = None;
                            shared.step_down("another node took the lease over");
                        }
                    }
                }
                Err(error) => {
                    if renewed.elapsed() + config.renew_every >= config.lease {
                        held = None;
                        shared.step_down(&format!("the lease could not be renewed in time: {error}"));
                    }
                }
            }
            continue;
        }
        let entry = match bucket.entry(LEASE_KEY).await {
            Ok(entry) => {
                shared.touch();
                entry
            }
            Err(error) => {
                tracing::debug!(%error, "could not read the lease");
                continue;
            }
        };
        if shared.halted.get().is_some() {
            continue;
        }
        let won = match entry {
            None => bucket.create(LEASE_KEY, me.clone()).await.ok(),
            Some(entry) if entry.operation != kv::Operation::Put || entry.value.is_empty() => {
                // Released (or deleted): take it at once.
                bucket.update(LEASE_KEY, me.clone(), entry.revision).await.ok()
            }
            Some(entry) => {
                let holder: Option<LeaseHolder> = serde_json::from_slice(&entry.value).ok();
                {
                    let mut status = shared.status.lock().expect("status lock");
                    status.lease_revision = entry.revision;
                    status.leader = holder;
                }
                match observed {
                    Some((revision, _)) if revision != entry.revision => {
                        observed = Some((entry.revision, Instant::now()));
                        None
                    }
                    None => {
                        observed = Some((entry.revision, Instant::now()));
                        None
                    }
                    Some((_, since)) if since.elapsed() >= config.lease => {
                        bucket.update(LEASE_KEY, me.clone(), entry.revision).await.ok()
                    }
                    Some(_) => None,
                }
            }
        };
        if let Some(revision) = won {
            tracing::info!(revision, "this node took the lease; catching up before it leads");
            held = Some(revision);
            renewed = Instant::now();
            observed = None;
            {
                let mut status = shared.status.lock().expect("status lock");
                status.lease_revision = revision;
                status.leader = Some(LeaseHolder { node_id: config.node_id.clone(), url: config.advertise.clone() });
            }
            if !shared.become_candidate() {
                let _ = bucket.update(LEASE_KEY, bytes::Bytes::new(), revision).await;
                held = None;
            }
        }
    }
    // Hand the lease on at once rather than make the others wait out the lease time.
    if let Some(revision) = held {
        shared.step_down("shutting down");
        if let Err(error) = bucket.update(LEASE_KEY, bytes::Bytes::new(), revision).await {
            tracing::debug!(%error, "could not release the lease");
        }
    }
}

/// Every second: the log's last sequence (for the lag), a halt if the log went backwards, and the
/// cursor saved.
///
/// What this node applied is read before the log is asked: it keeps applying while the answer is on
/// its way, so only an answer below what it had applied when it asked says the log went backwards.
/// Even then the halt waits for a second answer a second later (`BACKWARDS_ANSWERS`): one answer
/// could come from a stream leader elected a moment ago, the cost of halting for nothing is a node
/// that serves no writes until restarted.
/// Runs the start-up checks again whenever the client connects anew (another server, or the same
/// one restarted with another configuration): a server that fails them halts writes here, as it
/// would have refused the start (reads go on; a restart of the node checks again).
async fn check_after_reconnects(
    shared: Arc<Shared>,
    client: async_nats::Client,
    mut connections: tokio::sync::mpsc::UnboundedReceiver<()>,
    monitoring: Vec<String>,
    started_with: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            connected = connections.recv() => {
                if connected.is_none() {
                    return;
                }
                match nats::check_again(&client, &monitoring, started_with).await {
                    Ok(()) => tracing::info!(server = %client.server_info().server_name, "connected to NATS; its checks pass"),
                    Err(reason) => shared.halt(&format!("after connecting to NATS again: {reason}")),
                }
            }
            _ = stop.changed() => return,
        }
    }
}

async fn status_loop(shared: Arc<Shared>, mut stream: Stream, mut stop: watch::Receiver<bool>) {
    const BACKWARDS_ANSWERS: u32 = 2;
    let mut backwards = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let applied = shared.cursor.get().sequence;
        if let Ok(info) = stream.info().await.cloned() {
            shared.touch();
            let last = info.state.last_sequence;
            if last < applied && went_backwards(&stream, &info, applied).await {
                backwards += 1;
                tracing::warn!(last, applied, "the cluster log's last sequence is below what this node applied");
                if backwards >= BACKWARDS_ANSWERS {
                    shared.halt(&format!(
                        "the cluster log's last sequence went backwards (to {last}; this node applied {applied}): the log was reset or replaced"
                    ));
                }
            } else {
                backwards = 0;
            }
            shared.status.lock().expect("status lock").log_last_sequence = last;
        }
        if let Err(error) = shared.cursor.save() {
            tracing::warn!(%error, "could not save the cluster cursor");
        }
    }
}

/// Whether an answer putting the log's end below `applied` means the log went backwards. A NATS
/// server that was cut off from the others and is catching up can answer with what it holds (seen in
/// `one_nats_server_cut_off_…`: "to 19" after 56 applied, for longer than a second); so the answer
/// counts only if it names the stream's leader and the leader no longer has the message this node
/// applied last (the log never loses a message: it is reset or replaced).
async fn went_backwards(stream: &Stream, info: &jetstream::stream::Info, applied: u64) -> bool {
    let from_a_leader =
        info.cluster.as_ref().is_none_or(|cluster| cluster.leader.as_deref().is_some_and(|l| !l.is_empty()));
    if !from_a_leader {
        tracing::warn!(
            last = info.state.last_sequence,
            applied,
            "an answer about the cluster log from no leader; not counted"
        );
        return false;
    }
    match stream.get_raw_message(applied).await {
        Ok(_) => {
            tracing::warn!(
                last = info.state.last_sequence,
                applied,
                "a stale answer about the cluster log's end (the message this node applied last is there); not counted"
            );
            false
        }
        Err(error) if crate::log::is_no_message(&error) => true,
        Err(error) => {
            tracing::warn!(%error, applied, "could not read the message this node applied last; not counted");
            false
        }
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_micros() as i64)
}
