//! Deciders and the command handler: load (snapshot + following events), decide, append with
//! `Exact(revision)`, retry on conflict; idempotency keys; snapshots; time travel.
//!
//! A [`Decider`] is pure: no IO, no clock, no store. [`CommandHandler`] is the only part that talks
//! to the store. One stream holds one decider instance's events (an "aggregate": `account-42`).

use crate::event::{Codec, CodecError, DomainEvent, EventMeta};
use crate::store::{EventStore, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use strata_core::{
    EventId, EventType, ExpectedRevision, NewEvent, Position, RecordedEvent, StreamId, StreamMetadata, StreamRevision,
    Timestamp,
};
use strata_store::{AppendOutcome, ReadFrom, ReadOptions};

/// The decision logic of one kind of aggregate, as pure functions.
pub trait Decider {
    type Command;
    type Event: DomainEvent;
    type State: Clone + Send + Sync + 'static;
    type Error: fmt::Display;

    /// The state of an aggregate with no events.
    fn initial_state() -> Self::State;

    /// The events `command` produces in `state` (none: nothing to do), or why it is refused.
    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error>;

    /// The state after `event`.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Whether the aggregate is finished: the handler refuses further commands
    /// ([`CommandError::Terminal`]).
    fn is_terminal(_state: &Self::State) -> bool {
        false
    }
}

/// How many command ids a stream remembers for idempotency (carried in its snapshots).
pub const RECENT_COMMANDS_MAX: usize = 100;

/// Conflicts retried before [`CommandError::TooManyConflicts`], by default.
pub const CONFLICT_RETRIES_DEFAULT: u32 = 10;

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E: fmt::Display> {
    /// The decider refused the command; nothing was written.
    #[error("the command was refused: {0}")]
    Rejected(E),
    /// The stream's state is terminal; nothing was written.
    #[error("stream {stream} is finished (its state is terminal); it takes no more commands")]
    Terminal { stream: StreamId },
    /// Others kept writing to the stream between this handler's load and append.
    #[error("stream {stream} changed under the command {attempts} times in a row; nothing was written")]
    TooManyConflicts { stream: StreamId, attempts: u32 },
    /// The stream reads as empty but has events: it was soft-deleted, or its metadata (max count, max
    /// age, truncation) hides all of them. The toolkit folds whole streams; an aggregate's stream
    /// must not hide its history.
    #[error(
        "stream {stream} reads as empty but its last revision is {actual}: it was deleted or its metadata hides \
         its events, so its state cannot be loaded; nothing was written"
    )]
    HiddenHistory { stream: StreamId, actual: StreamRevision },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Options of one command.
#[derive(Debug, Clone, Default)]
pub struct CommandOptions {
    /// The command's idempotency key: handling the same key again on the same stream writes nothing
    /// and reports [`Handled::already_handled`]. The events get ids derived from it, so a retry after
    /// a lost answer is deduplicated by the store too.
    pub idempotency_key: Option<String>,
}

impl CommandOptions {
    pub fn idempotent(key: impl Into<String>) -> Self {
        Self { idempotency_key: Some(key.into()) }
    }
}

/// What a handled command did.
pub struct Handled<D: Decider> {
    /// The events appended (empty: the decider decided nothing, or the command was handled before).
    pub events: Vec<D::Event>,
    /// The state after them.
    pub state: D::State,
    /// The stream's last revision after the command (`None`: still no events).
    pub revision: Option<StreamRevision>,
    /// The position of the last event appended.
    pub position: Option<Position>,
    /// The idempotency key was handled before on this stream; nothing was written now.
    pub already_handled: bool,
}

impl<D: Decider> fmt::Debug for Handled<D>
where
    D::Event: fmt::Debug,
    D::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handled")
            .field("events", &self.events)
            .field("state", &self.state)
            .field("revision", &self.revision)
            .field("position", &self.position)
            .field("already_handled", &self.already_handled)
            .finish()
    }
}

/// A loaded aggregate.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub state: S,
    /// The stream's last revision folded into `state` (`None`: no events).
    pub revision: Option<StreamRevision>,
    /// The position and recorded time of that last event.
    pub position: Option<Position>,
    pub recorded_at: Option<Timestamp>,
    /// Whether a snapshot was used, and how many events were folded after it.
    pub from_snapshot: bool,
    pub events_folded: u64,
    /// Idempotency keys of the most recent commands (at most [`RECENT_COMMANDS_MAX`]).
    pub(crate) recent_commands: VecDeque<String>,
}

/// Which moment of a stream to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Everything committed.
    Now,
    /// The stream up to and including this revision.
    Revision(StreamRevision),
    /// The stream as it was when this position was the store's head.
    Position(Position),
    /// The stream as it was at this time.
    Time(Timestamp),
}

type SerializeState<S> = Arc<dyn Fn(&S) -> Result<Value, serde_json::Error> + Send + Sync>;
type DeserializeState<S> = Arc<dyn Fn(Value) -> Result<S, serde_json::Error> + Send + Sync>;

/// Snapshots of one decider's state: taken every `every` events, tagged with the state's schema version.
struct Snapshots<S> {
    every: u64,
    state_version: u32,
    serialize: SerializeState<S>,
    deserialize: DeserializeState<S>,
}

impl<S> Clone for Snapshots<S> {
    fn clone(&self) -> Self {
        Self {
            every: self.every,
            state_version: self.state_version,
            serialize: self.serialize.clone(),
            deserialize: self.deserialize.clone(),
        }
    }
}

/// The stored type of snapshot events.
pub const SNAPSHOT_EVENT_TYPE: &str = "Snapshot";

/// The stream that holds `stream`'s snapshots: `snapshot-{stream}` (its own category, so that
/// subscriptions to the aggregate's category never see snapshots). It keeps only the latest one
/// (`max_count: 1`); older ones are hidden and scavenged.
pub fn snapshot_stream(stream: &StreamId) -> Result<StreamId, strata_core::ValidationError> {
    StreamId::new(format!("snapshot-{stream}"))
}

/// A snapshot as stored (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotRecord {
    state_version: u32,
    /// The last revision, position and recorded time (µs) folded into `state`.
    revision: u64,
    position: u64,
    recorded_at_us: i64,
    state: Value,
    recent_commands: Vec<String>,
}

/// Loads, decides and appends commands for one [`Decider`] over an [`EventStore`].
pub struct CommandHandler<D: Decider, S> {
    store: S,
    codec: Codec<D::Event>,
    conflict_retries: u32,
    snapshots: Option<Snapshots<D::State>>,
    _decider: PhantomData<fn() -> D>,
}

impl<D: Decider, S: Clone> Clone for CommandHandler<D, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            codec: self.codec.clone(),
            conflict_retries: self.conflict_retries,
            snapshots: self.snapshots.clone(),
            _decider: PhantomData,
        }
    }
}

impl<D: Decider, S> fmt::Debug for CommandHandler<D, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandHandler")
            .field("decider", &std::any::type_name::<D>())
            .field("conflict_retries", &self.conflict_retries)
            .field("snapshot_every", &self.snapshots.as_ref().map(|s| s.every))
            .finish_non_exhaustive()
    }
}

impl<D: Decider, S: EventStore> CommandHandler<D, S> {
    pub fn new(store: S, codec: Codec<D::Event>) -> Self {
        Self { store, codec, conflict_retries: CONFLICT_RETRIES_DEFAULT, snapshots: None, _decider: PhantomData }
    }

    /// How many conflicting appends to retry (reload, decide again) before giving up.
    pub fn with_conflict_retries(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// Takes a snapshot of the state every `every` events (after the command that crosses the
    /// multiple), tagged with `state_version`: change it whenever the state's shape changes, and
    /// older snapshots are ignored (the state is folded from the events instead).
    pub fn with_snapshots(mut self, every: u64, state_version: u32) -> Self
    where
        D::State: Serialize + DeserializeOwned,
    {
        assert!(every >= 1, "snapshots every 0 events");
        self.snapshots = Some(Snapshots {
            every,
            state_version,
            serialize: Arc::new(|state: &D::State| serde_json::to_value(state)),
            deserialize: Arc::new(|value: Value| serde_json::from_value(value)),
        });
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn codec(&self) -> &Codec<D::Event> {
        &self.codec
    }

    /// The stream's current state.
    pub async fn load(&self, stream: &StreamId) -> Result<Loaded<D::State>, CommandError<D::Error>> {
        self.load_as_of(stream, AsOf::Now).await
    }

    /// The stream's state at a moment of the past (time travel): as of a revision, a position or a time.
    pub async fn load_as_of(&self, stream: &StreamId, as_of: AsOf) -> Result<Loaded<D::State>, CommandError<D::Error>> {
        let mut options = ReadOptions::forward(strata_core::limits::READ_EVENTS_MAX);
        let mut last_revision = None;
        match as_of {
            AsOf::Now => {}
            AsOf::Revision(revision) => last_revision = Some(revision),
            AsOf::Position(position) => options = options.until_position(position),
            AsOf::Time(time) => options = options.until_time(time),
        }
        let mut loaded = match self.snapshot(stream).await? {
            Some(loaded) if snapshot_usable(&loaded, as_of) => loaded,
            _ => Loaded {
                state: D::initial_state(),
                revision: None,
                position: None,
                recorded_at: None,
                from_snapshot: false,
                events_folded: 0,
                recent_commands: VecDeque::new(),
            },
        };
        let mut from = ReadFrom::At(loaded.revision.map_or(StreamRevision::ZERO, StreamRevision::next));
        loop {
            if let (Some(last), ReadFrom::At(next)) = (last_revision, from) {
                if next > last {
                    break;
                }
                options.limit = options.limit.min((last.value() - next.value() + 1) as usize);
            }
            let page = self.store.read_stream(stream, from, options).await?;
            for event in &page.events {
                self.fold(&mut loaded, event)?;
            }
            match (page.more, page.events.last()) {
                (true, Some(last)) => from = ReadFrom::At(last.revision.next()),
                _ => break,
            }
        }
        Ok(loaded)
    }

    fn fold(&self, loaded: &mut Loaded<D::State>, recorded: &RecordedEvent) -> Result<(), CommandError<D::Error>> {
        let event = self.codec.decode(recorded)?;
        let state = std::mem::replace(&mut loaded.state, D::initial_state());
        loaded.state = D::evolve(state, &event);
        loaded.revision = Some(recorded.revision);
        loaded.position = Some(recorded.position);
        loaded.recorded_at = Some(recorded.recorded_at);
        loaded.events_folded += 1;
        let meta = EventMeta::parse(&recorded.metadata).unwrap_or_default();
        if let Some(command) = meta.command_id {
            remember(&mut loaded.recent_commands, command);
        }
        Ok(())
    }

    /// The latest snapshot of `stream` if snapshots are on and it has the current state version.
    async fn snapshot(&self, stream: &StreamId) -> Result<Option<Loaded<D::State>>, CommandError<D::Error>> {
        let Some(snapshots) = &self.snapshots else { return Ok(None) };
        let Ok(snapshot_stream) = snapshot_stream(stream) else { return Ok(None) };
        let page = self.store.read_stream(&snapshot_stream, ReadFrom::End, ReadOptions::backward(1)).await?;
        let Some(event) = page.events.first() else { return Ok(None) };
        // A snapshot that does not parse, or of another state version, is ignored: the events are the
        // truth and the state is folded from them.
        let Ok(record) = serde_json::from_slice::<SnapshotRecord>(&event.data) else { return Ok(None) };
        if record.state_version != snapshots.state_version {
            return Ok(None);
        }
        let Ok(state) = (snapshots.deserialize)(record.state) else { return Ok(None) };
        Ok(Some(Loaded {
            state,
            revision: Some(StreamRevision::new(record.revision)),
            position: Some(Position::new(record.position)),
            recorded_at: Some(Timestamp::from_micros(record.recorded_at_us)),
            from_snapshot: true,
            events_folded: 0,
            recent_commands: record.recent_commands.into(),
        }))
    }

    /// Handles `command` on `stream`: load, decide, append with `Exact(revision)`; on a conflict
    /// reload and decide again, up to the retry bound.
    pub async fn handle(
        &self,
        stream: &StreamId,
        command: &D::Command,
        options: &CommandOptions,
    ) -> Result<Handled<D>, CommandError<D::Error>> {
        let key = options.idempotency_key.as_deref();
        let mut attempts = 0;
        loop {
            let loaded = self.load(stream).await?;
            if let Some(key) = key
                && loaded.recent_commands.iter().any(|seen| seen == key)
            {
                return Ok(self.unchanged(loaded, true));
            }
            if D::is_terminal(&loaded.state) {
                return Err(CommandError::Terminal { stream: stream.clone() });
            }
            let events = D::decide(command, &loaded.state).map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(self.unchanged(loaded, false));
            }
            let new_events = events
                .iter()
                .enumerate()
                .map(|(at, event)| match key {
                    Some(key) => self.codec.encode_with_id(event, Some(key), command_event_id(stream, key, at)),
                    None => self.codec.encode(event, None),
                })
                .collect::<Result<Vec<NewEvent>, _>>()?;
            let expected = loaded.revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            match self.store.append(stream.clone(), expected, new_events).await? {
                AppendOutcome::Committed(result) => {
                    let mut loaded = loaded;
                    let before = loaded.revision;
                    for event in &events {
                        let state = std::mem::replace(&mut loaded.state, D::initial_state());
                        loaded.state = D::evolve(state, event);
                    }
                    if let Some(key) = key {
                        remember(&mut loaded.recent_commands, key.to_owned());
                    }
                    loaded.revision = Some(result.last_revision);
                    loaded.position = Some(result.last_position);
                    loaded.recorded_at = result.recorded_at;
                    if result.replayed {
                        // The same events were committed by an earlier try whose answer was lost:
                        // what this try folded is not the stream's state; read it.
                        return Ok(self.unchanged(self.load(stream).await?, true));
                    }
                    self.maybe_snapshot(stream, before, &loaded).await;
                    return Ok(Handled {
                        events,
                        state: loaded.state,
                        revision: loaded.revision,
                        position: loaded.position,
                        already_handled: false,
                    });
                }
                AppendOutcome::WrongExpectedRevision { actual, .. } => {
                    if let (None, Some(actual)) = (loaded.revision, actual) {
                        let page = self.store.read_stream(stream, ReadFrom::Start, ReadOptions::forward(1)).await?;
                        if page.events.is_empty() {
                            return Err(CommandError::HiddenHistory { stream: stream.clone(), actual });
                        }
                    }
                    attempts += 1;
                    if attempts > self.conflict_retries {
                        return Err(CommandError::TooManyConflicts { stream: stream.clone(), attempts });
                    }
                }
            }
        }
    }

    fn unchanged(&self, loaded: Loaded<D::State>, already_handled: bool) -> Handled<D> {
        Handled {
            events: Vec::new(),
            state: loaded.state,
            revision: loaded.revision,
            position: loaded.position,
            already_handled,
        }
    }

    /// Writes a snapshot if the command crossed a multiple of `every` events. A failed snapshot
    /// write loses nothing (the events are the truth), so it is not the command's failure.
    async fn maybe_snapshot(&self, stream: &StreamId, before: Option<StreamRevision>, loaded: &Loaded<D::State>) {
        let Some(snapshots) = &self.snapshots else { return };
        // Without the recorded time of the last event (a server that does not send it), a snapshot
        // could claim an earlier time than its state has, and time travel would misuse it: skip it.
        let (Some(revision), Some(position), Some(_)) = (loaded.revision, loaded.position, loaded.recorded_at) else {
            return;
        };
        let count_before = before.map_or(0, |revision| revision.value() + 1);
        let count_after = revision.value() + 1;
        if count_before / snapshots.every == count_after / snapshots.every {
            return;
        }
        let _ = self.write_snapshot(stream, snapshots, revision, position, loaded).await;
    }

    async fn write_snapshot(
        &self,
        stream: &StreamId,
        snapshots: &Snapshots<D::State>,
        revision: StreamRevision,
        position: Position,
        loaded: &Loaded<D::State>,
    ) -> Result<(), StoreError> {
        let Ok(snapshot_stream) = snapshot_stream(stream) else { return Ok(()) };
        let Ok(state) = (snapshots.serialize)(&loaded.state) else { return Ok(()) };
        let record = SnapshotRecord {
            state_version: snapshots.state_version,
            revision: revision.value(),
            position: position.value(),
            recorded_at_us: loaded.recorded_at.map_or(0, Timestamp::as_micros),
            state,
            recent_commands: loaded.recent_commands.iter().cloned().collect(),
        };
        let data = serde_json::to_vec(&record).expect("a snapshot serializes");
        let event = NewEvent::new(EventType::new(SNAPSHOT_EVENT_TYPE).expect("a valid type"), data);
        let outcome = self.store.append(snapshot_stream.clone(), ExpectedRevision::Any, vec![event]).await?;
        if let AppendOutcome::Committed(result) = outcome
            && result.first_revision == StreamRevision::ZERO
        {
            let metadata = StreamMetadata { max_count: Some(1), ..StreamMetadata::default() };
            self.store.set_stream_metadata(snapshot_stream, metadata).await?;
        }
        Ok(())
    }
}

/// Whether a snapshot may start a load as of `as_of`: it must not be later than the moment loaded.
fn snapshot_usable<S>(snapshot: &Loaded<S>, as_of: AsOf) -> bool {
    match as_of {
        AsOf::Now => true,
        AsOf::Revision(revision) => snapshot.revision.is_some_and(|r| r <= revision),
        AsOf::Position(position) => snapshot.position.is_some_and(|p| p <= position),
        AsOf::Time(time) => snapshot.recorded_at.is_some_and(|t| t <= time),
    }
}

pub(crate) fn remember(recent: &mut VecDeque<String>, command: String) {
    if recent.back() == Some(&command) {
        return;
    }
    recent.push_back(command);
    while recent.len() > RECENT_COMMANDS_MAX {
        recent.pop_front();
    }
}

/// The id of the `at`-th event a command with idempotency key `key` appends to `stream`: the same
/// every time the command is retried, so the store recognises a repeated append.
pub fn command_event_id(stream: &StreamId, key: &str, at: usize) -> EventId {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5f6b_3a2e_1c4d_4e8f_9a0b_7c6d_5e4f_3a2b);
    let name = format!("{stream}\u{0}{key}\u{0}{at}");
    EventId::from_uuid(uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()))
}
