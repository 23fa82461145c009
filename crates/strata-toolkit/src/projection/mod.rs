//! Projections: named, versioned folds of events into read models, each with a checkpoint.
//!
//! A [`Target`] is where a read model lives. The runner reads the events the projection's filter
//! selects from the target's checkpoint on, hands them to the target in batches, and the target
//! commits each batch's read-model changes **and the new checkpoint in one transaction** — so after
//! a crash at any instant the read model is exactly a fold of the log up to its checkpoint:
//! exactly-once. `sqlite` and `postgres` (features of the same names, on by default) are such targets. A target that cannot commit both
//! together ([`AtLeastOnce`]) stores its checkpoint after the handler's effects: at-least-once, so
//! its handler must be idempotent.
//!
//! Versions: a projection's tables are named with its version (`balances_v2`) and read through a
//! view with the plain name (`balances`). Running version 2 next to version 1 rebuilds it from the
//! start side by side while version 1 serves; when version 2 has caught up, the runner switches the
//! views over in one transaction ([`SwitchOver::WhenCaughtUp`]), or leaves that to
//! [`ProjectionHandle::switch_over`] ([`SwitchOver::Manual`]).
//!
//! Catch-up reads the projection's filter through the store's indexes; live, the runner follows the
//! global log with a subscription and filters it itself, so its checkpoint advances over events it
//! does not need too, and [`ProjectionHandle::wait_for`] answers for any position.

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use crate::store::{EventStore, EventSubscription, StoreError};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use strata_core::{Position, RecordedEvent, Timestamp};
use strata_store::{Filter, ReadFrom, ReadOptions, SubscriptionMessage};
use tokio::sync::watch;

/// Events per batch (one transaction) while catching up.
pub const CATCH_UP_BATCH_EVENTS_MAX: usize = 10_000;

/// While live, a checkpoint is stored at least every this many positions even when none of the
/// events matched (so that a restart does not re-scan a long stretch of others' events).
pub const IDLE_CHECKPOINT_POSITIONS: u64 = 10_000;

/// After a failed batch, the runner waits this long before retrying (doubling up to the max).
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

/// Why a projection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[cfg(feature = "postgres")]
    #[error("postgres: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The projection's handler refused an event.
    #[error("the projection could not apply event {position}: {reason}")]
    Handler { position: Position, reason: String },
    #[error("projection {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("the checkpoint file {path}: {reason}")]
    CheckpointFile { path: PathBuf, reason: String },
    /// The runner is failing (and retrying); this is its last error.
    #[error("projection {name} is failing: {reason}")]
    Failing { name: String, reason: String },
    #[error("projection {name} has stopped")]
    Stopped { name: String },
}

/// A read model's home: stores batches of events and the checkpoint.
pub trait Target: Send + 'static {
    /// The projection's name and version (its checkpoint's key).
    fn name(&self) -> &str;
    fn version(&self) -> u32;

    /// The events the projection needs.
    fn filter(&self) -> Filter;

    /// Creates what the read model needs (idempotently) and returns the checkpoint: the last
    /// position whose events are reflected (`None`: nothing yet).
    fn prepare(&mut self) -> impl Future<Output = Result<Option<Position>, ProjectionError>> + Send;

    /// Applies `events` (matching the filter, ascending, possibly none) and stores `checkpoint`
    /// (≥ every event's position) — in one transaction, for exactly-once.
    fn apply(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Position,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Points the read model's plain names at this version (switch-over). Default: nothing to switch.
    fn activate(&mut self) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        async { Ok(()) }
    }

    /// The version the plain names point at (`None`: none yet). Default: this one.
    fn active_version(&mut self) -> impl Future<Output = Result<Option<u32>, ProjectionError>> + Send {
        let version = self.version();
        async move { Ok(Some(version)) }
    }
}

/// When a rebuilt version takes over the plain names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwitchOver {
    /// As soon as it has caught up with the head (and at once when no version is active).
    #[default]
    WhenCaughtUp,
    /// Only when [`ProjectionHandle::switch_over`] is called (or no version is active yet).
    Manual,
}

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    pub name: String,
    pub version: u32,
    /// Every event up to this position is reflected (those the filter selects).
    pub checkpoint: Option<Position>,
    /// The head the runner last saw.
    pub head: Option<Position>,
    /// Events between the checkpoint and that head.
    pub lag_events: u64,
    /// How old the last event applied is, when behind (0 when caught up).
    pub lag_seconds: f64,
    /// Whether this version is the one the plain names point at.
    pub active: bool,
    /// Whether it has caught up with the head at least once since it started.
    pub caught_up: bool,
    /// The last error, while the runner retries after it.
    pub failing: Option<String>,
    pub stopped: bool,
}

enum Control {
    Run,
    SwitchOver,
    Stop,
}

/// A running projection. Dropping the handle leaves the runner running (detached, until its runtime
/// shuts down); [`ProjectionHandle::stop`] stops it.
#[derive(Debug)]
pub struct ProjectionHandle {
    status: watch::Receiver<ProjectionStatus>,
    control: watch::Sender<ControlState>,
    task: tokio::task::JoinHandle<Result<(), ProjectionError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ControlState {
    stop: bool,
    /// How many switch-overs were asked for (the runner remembers how many it has done).
    switch_over_requests: u64,
}

impl ProjectionHandle {
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// Waits until every event up to `position` is reflected in the read model — for tests and for
    /// read-your-writes: append, then `wait_for(result.last_position)`, then query. Returns an error
    /// while the projection is failing or once it has stopped.
    pub async fn wait_for(&self, position: Position) -> Result<(), ProjectionError> {
        let mut status = self.status.clone();
        loop {
            {
                let current = status.borrow_and_update();
                if current.checkpoint.is_some_and(|checkpoint| checkpoint >= position) {
                    return Ok(());
                }
                if let Some(reason) = &current.failing {
                    return Err(ProjectionError::Failing { name: current.name.clone(), reason: reason.clone() });
                }
                if current.stopped {
                    return Err(ProjectionError::Stopped { name: current.name.clone() });
                }
            }
            if status.changed().await.is_err() {
                let name = status.borrow().name.clone();
                return Err(ProjectionError::Stopped { name });
            }
        }
    }

    /// Waits until the projection has caught up once (and, with [`SwitchOver::WhenCaughtUp`], has
    /// switched over).
    pub async fn wait_until_caught_up(&self) -> Result<(), ProjectionError> {
        let mut status = self.status.clone();
        loop {
            {
                let current = status.borrow_and_update();
                if current.caught_up {
                    return Ok(());
                }
                if let Some(reason) = &current.failing {
                    return Err(ProjectionError::Failing { name: current.name.clone(), reason: reason.clone() });
                }
            }
            if status.changed().await.is_err() {
                let name = status.borrow().name.clone();
                return Err(ProjectionError::Stopped { name });
            }
        }
    }

    /// Asks the runner to point the plain names at this version (it does so between batches).
    pub fn switch_over(&self) {
        self.control.send_modify(|control| control.switch_over_requests += 1);
    }

    /// Stops the runner after the batch in progress; returns its error, if it ended on one.
    pub async fn stop(self) -> Result<(), ProjectionError> {
        self.control.send_modify(|control| control.stop = true);
        match self.task.await {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

/// How a projection runs.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub switch_over: SwitchOver,
    /// Events per batch (one transaction) while catching up.
    pub catch_up_batch_events: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { switch_over: SwitchOver::default(), catch_up_batch_events: CATCH_UP_BATCH_EVENTS_MAX }
    }
}

impl ProjectionStatus {
    /// The status of `target`'s projection before it has done anything.
    fn starting<T: Target>(target: &T) -> Self {
        ProjectionStatus {
            name: target.name().to_owned(),
            version: target.version(),
            checkpoint: None,
            head: None,
            lag_events: 0,
            lag_seconds: 0.0,
            active: false,
            caught_up: false,
            failing: None,
            stopped: false,
        }
    }
}

/// Starts `target`'s projection of `store` on the current tokio runtime: catch-up, then live.
pub fn start<S: EventStore, T: Target>(store: S, target: T, options: RunOptions) -> ProjectionHandle {
    let (status_sender, status) = watch::channel(ProjectionStatus::starting(&target));
    let (control, control_receiver) = watch::channel(ControlState::default());
    let task = tokio::spawn(async move {
        let mut runner = Runner {
            store,
            target,
            options,
            status: status_sender,
            control: control_receiver,
            control_closed: false,
            switch_overs_done: 0,
        };
        let result = runner.run().await;
        runner.status.send_modify(|status| status.stopped = true);
        result
    });
    ProjectionHandle { status, control, task }
}

/// Brings `target` up to the store's current head and returns its checkpoint — a one-shot rebuild
/// or catch-up (switching over when done, as [`SwitchOver::WhenCaughtUp`] would).
pub async fn run_until_caught_up<S: EventStore, T: Target>(
    store: S,
    target: T,
    options: RunOptions,
) -> Result<Option<Position>, ProjectionError> {
    let (status_sender, _status) = watch::channel(ProjectionStatus::starting(&target));
    let (_control, control) = watch::channel(ControlState::default());
    let mut runner =
        Runner { store, target, options, status: status_sender, control, control_closed: false, switch_overs_done: 0 };
    let mut checkpoint = runner.target.prepare().await?;
    if runner.target.active_version().await?.is_none() {
        runner.maybe_activate(false).await?;
    }
    checkpoint = runner.catch_up(checkpoint).await?;
    runner.maybe_activate(false).await?;
    Ok(checkpoint)
}

struct Runner<S, T> {
    store: S,
    target: T,
    options: RunOptions,
    status: watch::Sender<ProjectionStatus>,
    control: watch::Receiver<ControlState>,
    /// The handle was dropped: no more control messages can come (and `changed` would return at once).
    control_closed: bool,
    switch_overs_done: u64,
}

impl<S: EventStore, T: Target> Runner<S, T> {
    async fn run(&mut self) -> Result<(), ProjectionError> {
        let mut delay = RETRY_DELAY_MIN;
        loop {
            let attempt = std::time::Instant::now();
            match self.run_once().await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    // A failure after a long healthy run is a new incident: its retries start fast again.
                    if attempt.elapsed() > RETRY_DELAY_MAX * 12 {
                        delay = RETRY_DELAY_MIN;
                    }
                    // Store and database errors are usually passing (a restart, a network blip):
                    // retry from the stored checkpoint, and say so in the status meanwhile.
                    let reason = error.to_string();
                    self.status.send_modify(|status| status.failing = Some(reason));
                    let stop = self.wait_or_stop(delay).await;
                    if stop {
                        return Err(error);
                    }
                    delay = (delay * 2).min(RETRY_DELAY_MAX);
                }
            }
        }
    }

    /// Sleeps `delay` unless asked to stop first; returns whether to stop.
    async fn wait_or_stop(&mut self, delay: Duration) -> bool {
        if self.control.borrow().stop {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => self.control.borrow().stop,
            changed = self.control.changed(), if !self.control_closed => {
                self.control_closed = changed.is_err();
                if self.control_closed {
                    tokio::time::sleep(delay).await;
                }
                self.control.borrow().stop
            }
        }
    }

    fn control(&self) -> Control {
        let control = *self.control.borrow();
        if control.stop {
            Control::Stop
        } else if control.switch_over_requests > self.switch_overs_done {
            Control::SwitchOver
        } else {
            Control::Run
        }
    }

    async fn run_once(&mut self) -> Result<(), ProjectionError> {
        let checkpoint = self.target.prepare().await?;
        // With no version active yet, this one is at once (its tables fill as it catches up).
        if self.target.active_version().await?.is_none() {
            self.maybe_activate(false).await?;
        }
        let checkpoint = self.catch_up(checkpoint).await?;
        // Stopped before catching up: a rebuild that has not caught up must not take over.
        if matches!(self.control(), Control::Stop) {
            return Ok(());
        }
        self.maybe_activate(false).await?;
        self.status.send_modify(|status| {
            status.caught_up = true;
            status.failing = None;
        });
        self.live(checkpoint).await
    }

    /// Reads the filtered events from after `checkpoint` up to the head (which moves on while it
    /// reads), batch by batch; returns the new checkpoint.
    async fn catch_up(&mut self, mut checkpoint: Option<Position>) -> Result<Option<Position>, ProjectionError> {
        let filter = self.target.filter();
        self.publish(checkpoint, None, None);
        loop {
            let Some(head) = self.store.head_position().await? else { return Ok(checkpoint) };
            if checkpoint.is_some_and(|checkpoint| checkpoint >= head) {
                self.publish(checkpoint, Some(head), None);
                return Ok(checkpoint);
            }
            let from = ReadFrom::At(checkpoint.map_or(Position::ZERO, Position::next));
            let batch = self.options.catch_up_batch_events.clamp(1, strata_core::limits::READ_EVENTS_MAX);
            let options = ReadOptions::forward(batch).until_position(head);
            let page = self.store.read_all(from, options, &filter).await?;
            // A page that ends early covers up to its last event; one that reached the end of what
            // it could see covers everything up to the head it was bounded by.
            let covered = match (page.more, page.events.last()) {
                (true, Some(last)) => last.position,
                _ => head,
            };
            self.target.apply(&page.events, covered).await?;
            checkpoint = Some(covered);
            self.publish(checkpoint, Some(head), page.events.last().map(|event| event.recorded_at));
            if matches!(self.control(), Control::Stop) {
                return Ok(checkpoint);
            }
        }
    }

    async fn live(&mut self, mut checkpoint: Option<Position>) -> Result<(), ProjectionError> {
        let filter = self.target.filter();
        let from = ReadFrom::At(checkpoint.map_or(Position::ZERO, Position::next));
        let mut subscription = self.store.subscribe_all(from, Filter::default());
        let mut stored = checkpoint;
        loop {
            match self.control() {
                Control::Stop => {
                    if stored != checkpoint
                        && let Some(checkpoint) = checkpoint
                    {
                        self.target.apply(&[], checkpoint).await?;
                    }
                    return Ok(());
                }
                Control::SwitchOver => self.maybe_activate(true).await?,
                Control::Run => {}
            }
            let message = tokio::select! {
                // Control first: a switch-over or stop asked for before an event arrived is seen
                // before that event is applied.
                biased;
                changed = self.control.changed(), if !self.control_closed => {
                    // A dropped handle leaves the runner running, without control.
                    self.control_closed = changed.is_err();
                    continue;
                }
                message = subscription.next() => message?,
            };
            let SubscriptionMessage::Events(events) = message else { continue };
            let last = events.last().expect("subscription batches are never empty");
            let covered = last.position;
            let recorded_at = last.recorded_at;
            let matching: Vec<RecordedEvent> = events.into_iter().filter(|event| filter.matches(event)).collect();
            let idle_for = covered.value() - stored.map_or(0, |stored| stored.value());
            if !matching.is_empty() || idle_for >= IDLE_CHECKPOINT_POSITIONS {
                self.target.apply(&matching, covered).await?;
                stored = Some(covered);
            }
            checkpoint = Some(covered);
            let head = self.store.head_position().await?;
            self.publish(checkpoint, head, Some(recorded_at));
        }
    }

    /// Switches the plain names to this version if none is active, if asked to (`requested`), or
    /// if this version is newer and the policy switches when caught up.
    async fn maybe_activate(&mut self, requested: bool) -> Result<(), ProjectionError> {
        let version = self.target.version();
        let active = self.target.active_version().await?;
        let switch = match active {
            None => true,
            Some(active) if active == version => false,
            Some(active) => requested || (active < version && self.options.switch_over == SwitchOver::WhenCaughtUp),
        };
        if switch {
            self.target.activate().await?;
        }
        let is_active = switch || active == Some(version);
        self.status.send_modify(|status| status.active = is_active);
        if requested {
            self.switch_overs_done = self.control.borrow().switch_over_requests;
        }
        Ok(())
    }

    fn publish(&self, checkpoint: Option<Position>, head: Option<Position>, last_applied_at: Option<Timestamp>) {
        self.status.send_modify(|status| {
            status.checkpoint = checkpoint;
            if head.is_some() {
                status.head = head;
            }
            let (head, checkpoint) =
                (status.head.map_or(0, |h| h.value() + 1), checkpoint.map_or(0, |c| c.value() + 1));
            status.lag_events = head.saturating_sub(checkpoint);
            status.lag_seconds = match (status.lag_events, last_applied_at) {
                (0, _) | (_, None) => 0.0,
                (_, Some(at)) => (now_micros() - at.as_micros()).max(0) as f64 / 1e6,
            };
        });
    }
}

/// A PostgreSQL error with the server's message (the error's own display says only "db error").
#[cfg(feature = "postgres")]
fn postgres_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => error.to_string(),
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as i64)
}

/// The version-suffixed names of a projection's tables: `balances` → `balances_v2`.
#[derive(Debug, Clone)]
pub struct Tables {
    version: u32,
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    bases: Vec<String>,
}

impl Tables {
    // Only the SQL targets build their tables' names.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    fn new(name: &str, version: u32, bases: &[&str]) -> Result<Self, ProjectionError> {
        for base in bases {
            if base.is_empty() || !base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ProjectionError::Invalid {
                    name: name.to_owned(),
                    reason: format!("table name {base:?} must be ASCII letters, digits and underscores"),
                });
            }
        }
        Ok(Self { version, bases: bases.iter().map(|base| (*base).to_owned()).collect() })
    }

    /// The name of this version's table `base` (one of the projection's tables).
    pub fn get(&self, base: &str) -> String {
        assert!(self.bases.iter().any(|b| b == base), "{base} is not one of the projection's tables");
        format!("{base}_v{}", self.version)
    }

    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    fn bases(&self) -> &[String] {
        &self.bases
    }
}

/// A checkpoint kept in a file next to a handler whose effects cannot share its transaction (a
/// message broker, an email sender): at-least-once — after a crash, the events since the last
/// stored checkpoint are handled again, so the handler must be idempotent.
pub struct AtLeastOnce<H> {
    name: String,
    filter: Filter,
    checkpoint_file: PathBuf,
    handler: H,
}

impl<H> fmt::Debug for AtLeastOnce<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtLeastOnce").field("name", &self.name).field("checkpoint_file", &self.checkpoint_file).finish()
    }
}

impl<H> AtLeastOnce<H>
where
    H: FnMut(&RecordedEvent) -> Result<(), String> + Send + 'static,
{
    pub fn new(name: impl Into<String>, filter: Filter, checkpoint_file: impl Into<PathBuf>, handler: H) -> Self {
        Self { name: name.into(), filter, checkpoint_file: checkpoint_file.into(), handler }
    }
}

impl<H> Target for AtLeastOnce<H>
where
    H: FnMut(&RecordedEvent) -> Result<(), String> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> Filter {
        self.filter.clone()
    }

    async fn prepare(&mut self) -> Result<Option<Position>, ProjectionError> {
        let path = self.checkpoint_file.clone();
        let error = |reason: String| ProjectionError::CheckpointFile { path: path.clone(), reason };
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Ok(None),
            Ok(text) => text.trim().parse::<u64>().map(|p| Some(Position::new(p))).map_err(|e| error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(e.to_string())),
        }
    }

    async fn apply(&mut self, events: &[RecordedEvent], checkpoint: Position) -> Result<(), ProjectionError> {
        for event in events {
            (self.handler)(event).map_err(|reason| ProjectionError::Handler { position: event.position, reason })?;
        }
        let path = self.checkpoint_file.clone();
        write_file_durably(&path, checkpoint.value().to_string().as_bytes())
            .map_err(|e| ProjectionError::CheckpointFile { path, reason: e.to_string() })
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_file_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
