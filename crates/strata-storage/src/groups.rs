//! Consumer groups: server-side, persistent subscriptions shared by competing consumers (the model is
//! KurrentDB's persistent subscriptions and Kafka's consumer groups).
//!
//! A group reads its source — one stream, or the global log through a [`Filter`] — with a
//! [`Subscription`] into a bounded buffer of pending events, and hands them out to the consumers that
//! fetch: round-robin (any consumer takes the next ready event), or pinned by stream (one stream's
//! events go to one consumer at a time, one after another, so its order holds). A delivery is acked,
//! or nacked to be retried, parked or skipped; one not acked within the ack timeout is delivered
//! again; after `max_retries` retries it is parked. Parked events are kept until replayed.
//!
//! The group's checkpoint — the last event of its source before which everything is acked, skipped
//! or parked — is saved, with the parked events and the definition, in `groups/<name>.group` (written
//! to a temporary name, fdatasynced, renamed). After a restart the group goes on from its checkpoint:
//! delivery is at least once. Events are identified by their position in the global log (a stream
//! source's events too), so delivery ids are `<position>.<attempt>`.
//!
//! Memory per group is bounded by the buffer (`max_in_flight` × 2, at least 100 events): a stalled
//! consumer stops the group's reading, never the writers.

use crate::error::StorageError;
use crate::filter::Filter;
use crate::io::{Storage, path_in};
use crate::read::ReadFrom;
use crate::store::Store;
use crate::subscription::Subscription;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_core::{EventType, Position, RecordedEvent, StreamId, StreamRevision, Tag};
pub use strata_store::groups::*;
use tokio::sync::Notify;

/// The directory of group files, in the data directory.
pub const GROUPS_DIR: &str = "groups";
const FILE_MAGIC: &[u8; 8] = b"STRATAGR";
const FILE_SUFFIX: &str = ".group";
/// The checkpoint is saved at most this often while acks come in (and when the groups close).
const SAVE_INTERVAL: Duration = Duration::from_millis(100);

/// Where groups keep their state when it is not the data directory's `groups/` files: a cluster's
/// key-value bucket, shared by every node, so that the node that leads next resumes each group.
///
/// Calls block (like the files' fdatasync they replace); every value is a group's whole encoded
/// state. An implementation writes each key only over the version it last read or wrote, so a save
/// by a node that no longer leads fails instead of overwriting what the leader saved since.
pub trait GroupStates: Send + Sync + std::fmt::Debug {
    /// Every group saved: (name, encoded state, its version).
    fn load_all(&self) -> Result<Vec<(String, Vec<u8>, u64)>, String>;
    /// Saves a group's state over `version` — the one it was loaded or last saved with; `None` for a
    /// group created here, which must not exist yet — and answers the new version. Fails, writing
    /// nothing, when the group's saved version is another.
    fn save(&self, name: &str, state: &[u8], version: Option<u64>) -> Result<u64, String>;
    /// Removes a group's state if its saved version is `version`.
    fn delete(&self, name: &str, version: u64) -> Result<(), String>;
    /// Where the states live, for messages (e.g. `NATS key-value bucket strata_demo`).
    fn describe(&self) -> String;
}

/// The consumer groups of a store. Holds the store open: drop it (and the store) to close.
#[derive(Debug, Clone)]
pub struct ConsumerGroups {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    store: Store,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// `None`: the groups' files in `dir`.
    states: Option<Arc<dyn GroupStates>>,
    groups: std::sync::Mutex<BTreeMap<String, Arc<Group>>>,
    /// Group files that did not load at open (set aside as `<name>.group.damaged`).
    problems: std::sync::Mutex<Vec<String>>,
}

#[derive(Debug)]
struct Group {
    state: tokio::sync::Mutex<GroupState>,
    /// Woken by acks, nacks and replays (events may be ready again).
    changed: Notify,
}

#[derive(Debug)]
struct GroupState {
    spec: GroupSpec,
    /// The first event of the source (position or revision) the group handles.
    first: u64,
    feeder: Subscription,
    /// Events read and not handled, by position.
    pending: BTreeMap<u64, Pending>,
    /// In the source's own terms (a position, or a stream's revision): everything up to it is handled.
    checkpoint: Option<u64>,
    parked: BTreeMap<u64, ParkedEntry>,
    consumers: HashMap<String, Instant>,
    pins: HashMap<StreamId, String>,
    /// Set by a delete: every later call on this state answers `NotFound` and nothing is saved.
    deleted: bool,
    /// Set (with `deleted`) by [`ConsumerGroups::reload`]: calls on this state answer `Unavailable`
    /// (retry: the group was loaded again).
    replaced: bool,
    /// The version of the saved state this one continues ([`GroupStates`]; `None` with files, or
    /// for a group not saved yet).
    version: Option<u64>,
    dirty: bool,
    saved_at: Instant,
}

#[derive(Debug)]
struct Pending {
    event: RecordedEvent,
    /// Deliveries so far.
    attempts: u32,
    in_flight: Option<(String, Instant)>,
    /// A parked event being replayed: handling it removes it from the parked list.
    replay: bool,
}

#[derive(Debug, Clone)]
struct ParkedEntry {
    attempts: u32,
    reason: String,
}

/// A failure of the cluster's group states: nothing was changed there; retry.
fn unavailable(states: &dyn GroupStates, reason: String) -> GroupError {
    GroupError::Unavailable(format!(
        "the consumer groups' state in {} is not available now: {reason}",
        states.describe()
    ))
}

/// What a call on a state that is no longer the group's answers.
fn gone(state: &GroupState) -> GroupError {
    if state.replaced {
        GroupError::Unavailable(format!(
            "consumer group {} was loaded again (this node started or stopped leading the cluster): retry",
            state.spec.name
        ))
    } else {
        GroupError::NotFound(state.spec.name.clone())
    }
}

/// What [`ConsumerGroups::put`] and [`ConsumerGroups::restore`] require of a definition.
fn check_spec(spec: &GroupSpec) -> Result<(), GroupError> {
    check_name(&spec.name)?;
    check_settings(&spec.settings)?;
    match &spec.source {
        GroupSource::Stream(stream) => {
            stream.check_not_reserved().map_err(|e| GroupError::Invalid(e.to_string()))?;
        }
        GroupSource::All(filter) => {
            if filter.category.as_deref() == Some("") || filter.stream_prefix.as_deref() == Some("") {
                return Err(GroupError::Invalid("category and stream_prefix must not be empty".to_owned()));
            }
            if filter.query.is_some() {
                return Err(GroupError::Invalid(
                    "a group's source filters by category, types, stream prefix and tags, not a query".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), GroupError> {
    let valid = !name.is_empty()
        && name.len() <= GROUP_NAME_BYTES_MAX
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(GroupError::Invalid(format!(
            "group name {name:?} must be 1 to {GROUP_NAME_BYTES_MAX} ASCII letters, digits, '-', '_' or '.', \
             not starting with '.'"
        )))
    }
}

fn check_settings(settings: &GroupSettings) -> Result<(), GroupError> {
    if !(1..=GROUP_IN_FLIGHT_MAX).contains(&settings.max_in_flight) {
        return Err(GroupError::Invalid(format!(
            "max_in_flight must be between 1 and {GROUP_IN_FLIGHT_MAX}, not {}",
            settings.max_in_flight
        )));
    }
    if settings.ack_timeout < Duration::from_millis(10) || settings.ack_timeout > Duration::from_secs(86_400) {
        return Err(GroupError::Invalid("ack_timeout must be between 10 ms and one day".to_owned()));
    }
    if settings.max_retries > 1_000 {
        return Err(GroupError::Invalid(format!("max_retries must be at most 1000, not {}", settings.max_retries)));
    }
    Ok(())
}

impl ConsumerGroups {
    /// Loads the groups saved in the store's directory.
    pub fn open(store: &Store) -> Result<ConsumerGroups, GroupError> {
        let storage = store.storage();
        let dir = path_in(store.dir(), GROUPS_DIR);
        storage.create_dir_all(&dir).map_err(|e| StorageError::new("create directory", &dir, e))?;
        let registry = Registry::new(store, None);
        let names = registry.storage.list_dir(&dir).map_err(|e| StorageError::new("list", &dir, e))?;
        for name in names {
            if name.ends_with(".tmp") {
                let _ = registry.storage.remove_file(&path_in(&dir, &name));
                continue;
            }
            let Some(group) = name.strip_suffix(FILE_SUFFIX) else { continue };
            let path = path_in(&dir, &name);
            let saved = match load(&*registry.storage, &path) {
                Ok(saved) => saved,
                Err(error) => {
                    // One damaged file must not take every group down: set it aside, say so.
                    let aside = path_in(&dir, &format!("{name}.damaged"));
                    let _ = registry.storage.rename(&path, &aside);
                    tracing::warn!(%error, aside = %aside.display(), "a consumer group's file is damaged; set aside");
                    registry
                        .problems
                        .lock()
                        .expect("problems lock")
                        .push(format!("{error}; moved to {}", aside.display()));
                    continue;
                }
            };
            let state = GroupState::new(store, saved.spec, saved.first, saved.checkpoint, saved.parked);
            registry.groups.lock().expect("groups lock").insert(group.to_owned(), Arc::new(Group::new(state)));
        }
        Ok(ConsumerGroups { inner: Arc::new(registry) })
    }

    /// Loads the groups kept in `states` (a cluster's bucket) instead of the data directory.
    pub fn open_with(store: &Store, states: Arc<dyn GroupStates>) -> Result<ConsumerGroups, GroupError> {
        let groups = ConsumerGroups { inner: Arc::new(Registry::new(store, Some(states))) };
        let loaded = groups.load_states()?;
        *groups.inner.groups.lock().expect("groups lock") = loaded;
        Ok(groups)
    }

    /// The groups as `states` holds them now; a state that does not decode is left out and reported
    /// in [`ConsumerGroups::load_problems`].
    fn load_states(&self) -> Result<BTreeMap<String, Arc<Group>>, GroupError> {
        let Some(states) = &self.inner.states else { return Ok(BTreeMap::new()) };
        let mut loaded = BTreeMap::new();
        for (name, bytes, version) in states.load_all().map_err(|reason| unavailable(&**states, reason))? {
            match decode(&bytes) {
                Ok(saved) => {
                    let mut state =
                        GroupState::new(&self.inner.store, saved.spec, saved.first, saved.checkpoint, saved.parked);
                    state.version = Some(version);
                    loaded.insert(name, Arc::new(Group::new(state)));
                }
                Err(reason) => {
                    tracing::warn!(group = %name, %reason, "a consumer group's saved state is damaged; left out");
                    self.inner
                        .problems
                        .lock()
                        .expect("problems lock")
                        .push(format!("group {name} in {}: damaged state: {reason}", states.describe()));
                }
            }
        }
        Ok(loaded)
    }

    /// Loads every group again from where they are kept, dropping what this process held in memory
    /// (deliveries in flight are delivered again: at least once). A cluster node calls it when it
    /// starts leading (`claim`) or stops. The states held until now stop first — calls on them
    /// answer `Unavailable`, and they are never saved again. With `claim`, each group loaded is
    /// saved once at once, so that any other node still working on an older version (a leader that
    /// has not noticed it was deposed) fails its next save instead of overwriting this one's; a
    /// group changed between the load and the claim is loaded again (up to three times). Groups kept
    /// in files are not reloaded (only this process writes them).
    pub async fn reload(&self, claim: bool) -> Result<(), GroupError> {
        if self.inner.states.is_none() {
            return Ok(());
        }
        let old: Vec<Arc<Group>> = self.inner.groups.lock().expect("groups lock").values().cloned().collect();
        for group in old {
            let mut state = group.state.lock().await;
            state.deleted = true;
            state.replaced = true;
            drop(state);
            group.changed.notify_waiters();
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let this = self.clone();
            let loaded = tokio::task::spawn_blocking(move || this.load_states())
                .await
                .map_err(|_| GroupError::Unavailable("loading the consumer groups failed unexpectedly".to_owned()))??;
            let claimed = if claim { self.claim(&loaded).await } else { Ok(()) };
            match claimed {
                Ok(()) => {
                    *self.inner.groups.lock().expect("groups lock") = loaded;
                    return Ok(());
                }
                Err(error) if attempt >= 3 => return Err(error),
                Err(error) => tracing::info!(%error, "a consumer group changed while loading; loading again"),
            }
        }
    }

    /// Saves each of `groups` once over the version it was loaded with (see [`ConsumerGroups::reload`]).
    async fn claim(&self, groups: &BTreeMap<String, Arc<Group>>) -> Result<(), GroupError> {
        for group in groups.values() {
            let mut state = group.state.lock().await;
            self.inner.save_now(&mut state)?;
        }
        Ok(())
    }

    /// Claims the groups as they were loaded, as [`ConsumerGroups::reload`] with `claim` does but
    /// without loading them again; if one changed since, loads and claims them anew.
    pub async fn claim_loaded(&self) -> Result<(), GroupError> {
        if self.inner.states.is_none() {
            return Ok(());
        }
        let loaded = self.inner.groups.lock().expect("groups lock").clone();
        match self.claim(&loaded).await {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::info!(%error, "a consumer group changed since it was loaded; loading again");
                self.reload(true).await
            }
        }
    }

    /// Creates a group, or changes the settings of an existing one (its source and start cannot
    /// change). Durable when it returns.
    pub async fn put(&self, spec: GroupSpec) -> Result<(), GroupError> {
        check_spec(&spec)?;
        let existing = self.inner.groups.lock().expect("groups lock").get(&spec.name).cloned();
        if let Some(group) = existing {
            let mut state = group.state.lock().await;
            if state.deleted {
                // Deleted or loaded again meanwhile: the caller decides anew.
                return Err(GroupError::Unavailable(format!(
                    "consumer group {} changed while this request waited for it: retry",
                    spec.name
                )));
            }
            if state.spec.source != spec.source || state.spec.start != spec.start {
                return Err(GroupError::Conflict(spec.name));
            }
            state.spec.settings = spec.settings;
            self.save(&mut state)?;
            group.changed.notify_waiters();
            return Ok(());
        }
        let store = &self.inner.store;
        let first = match (&spec.source, spec.start) {
            (_, GroupStart::Start) => 0,
            (_, GroupStart::At(at)) => at,
            (GroupSource::All(_), GroupStart::End) => store.head_position().map_or(0, |head| head.value() + 1),
            (GroupSource::Stream(stream), GroupStart::End) => {
                store.stream_revision(stream.as_str())?.map_or(0, |head| head.value() + 1)
            }
        };
        let mut state = GroupState::new(store, spec.clone(), first, None, BTreeMap::new());
        self.save(&mut state)?;
        self.inner.groups.lock().expect("groups lock").insert(spec.name, Arc::new(Group::new(state)));
        Ok(())
    }

    /// A group's whole durable state ([`SavedGroup`]), as a backup keeps it.
    pub async fn saved(&self, name: &str) -> Result<SavedGroup, GroupError> {
        let group = self.group(name)?;
        let state = group.state.lock().await;
        if state.deleted {
            return Err(gone(&state));
        }
        let parked = state.parked_events();
        Ok(SavedGroup { spec: state.spec.clone(), first: state.first, checkpoint: state.checkpoint, parked })
    }

    /// Creates a group exactly as `saved` describes it (a restore): it resumes after its checkpoint,
    /// with its parked events. Refused with [`GroupError::Conflict`] when a group of that name
    /// exists, and with [`GroupError::Invalid`] when the state refers to events this store does not
    /// hold (restore the events first) or parks more than [`GROUP_PARKED_MAX`]. Durable when it
    /// returns.
    pub async fn restore(&self, saved: SavedGroup) -> Result<(), GroupError> {
        check_spec(&saved.spec)?;
        let store = &self.inner.store;
        let name = saved.spec.name.clone();
        // The next position / revision of the source: what the state may refer to is before it.
        let (next, unit) = match &saved.spec.source {
            GroupSource::All(_) => (store.head_position().map_or(0, |head| head.value() + 1), "position"),
            GroupSource::Stream(stream) => {
                (store.stream_revision(stream.as_str())?.map_or(0, |head| head.value() + 1), "revision")
            }
        };
        let beyond = |what: &str, at: u64| {
            GroupError::Invalid(format!(
                "consumer group {name}'s {what} is {unit} {at}, beyond what this store holds (next {unit} {next}): \
                 restore the events first"
            ))
        };
        if saved.first > next {
            return Err(beyond("first event", saved.first));
        }
        if let Some(checkpoint) = saved.checkpoint.filter(|&checkpoint| checkpoint >= next) {
            return Err(beyond("checkpoint", checkpoint));
        }
        if saved.parked.len() > GROUP_PARKED_MAX {
            return Err(GroupError::Invalid(format!(
                "consumer group {name} parks {} events; at most {GROUP_PARKED_MAX}",
                saved.parked.len()
            )));
        }
        let head = store.head_position().map_or(0, |head| head.value() + 1);
        let mut parked = BTreeMap::new();
        for event in saved.parked {
            if event.position.value() >= head {
                return Err(GroupError::Invalid(format!(
                    "consumer group {name} parks the event at position {}, beyond what this store holds (next \
                     position {head}): restore the events first",
                    event.position.value()
                )));
            }
            parked.insert(event.position.value(), ParkedEntry { attempts: event.attempts, reason: event.reason });
        }
        let mut state = GroupState::new(store, saved.spec, saved.first, saved.checkpoint, parked);
        // Checked and saved under the registry's lock: two restores of one name cannot both save.
        let mut groups = self.inner.groups.lock().expect("groups lock");
        if groups.contains_key(&name) {
            return Err(GroupError::Conflict(name));
        }
        self.save(&mut state)?;
        groups.insert(name, Arc::new(Group::new(state)));
        Ok(())
    }

    /// Deletes a group and its checkpoint and parked events.
    pub async fn delete(&self, name: &str) -> Result<(), GroupError> {
        let group = self.group(name)?;
        let mut state = group.state.lock().await;
        if state.deleted {
            return Err(gone(&state));
        }
        if let Some(states) = &self.inner.states {
            // Deleted in the cluster first: if that fails, the group stays as it was.
            let version = state.version.ok_or_else(|| {
                GroupError::Unavailable(format!("consumer group {name} has not been saved yet: retry"))
            })?;
            states.delete(name, version).map_err(|reason| unavailable(&**states, reason))?;
        }
        state.deleted = true;
        {
            let mut groups = self.inner.groups.lock().expect("groups lock");
            if groups.get(name).is_some_and(|current| Arc::ptr_eq(current, &group)) {
                groups.remove(name);
            }
        }
        group.changed.notify_waiters();
        if self.inner.states.is_some() {
            return Ok(());
        }
        let path = path_in(&self.inner.dir, &format!("{name}{FILE_SUFFIX}"));
        self.inner.storage.remove_file(&path).map_err(|e| StorageError::new("remove", &path, e))?;
        self.inner
            .storage
            .sync_dir(&self.inner.dir)
            .map_err(|e| StorageError::new("sync directory", &self.inner.dir, e))?;
        Ok(())
    }

    /// Group files that did not load at open, and where they were set aside.
    pub fn load_problems(&self) -> Vec<String> {
        self.inner.problems.lock().expect("problems lock").clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.inner.groups.lock().expect("groups lock").keys().cloned().collect()
    }

    fn group(&self, name: &str) -> Result<Arc<Group>, GroupError> {
        let groups = self.inner.groups.lock().expect("groups lock");
        groups.get(name).cloned().ok_or_else(|| GroupError::NotFound(name.to_owned()))
    }

    /// The group's checkpoint, lag, deliveries in flight, parked events and consumers.
    pub async fn info(&self, name: &str) -> Result<GroupInfo, GroupError> {
        let group = self.group(name)?;
        let state = group.state.lock().await;
        let store = &self.inner.store;
        let now = Instant::now();
        let next = match &state.spec.source {
            GroupSource::All(_) => store.head_position().map_or(0, |head| head.value() + 1),
            GroupSource::Stream(stream) => store.stream_revision(stream.as_str())?.map_or(0, |head| head.value() + 1),
        };
        let lag_events = next.saturating_sub(state.checkpoint.map_or(state.first, |c| c + 1));
        let lag_seconds = state.pending.values().next().map_or(0.0, |oldest| {
            let age = store.now().as_micros().saturating_sub(oldest.event.recorded_at.as_micros());
            age.max(0) as f64 / 1e6
        });
        let mut consumers: Vec<(String, usize)> = state
            .consumers
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) <= state.spec.settings.ack_timeout)
            .map(|(consumer, _)| {
                let held = state.pending.values().filter(|p| p.in_flight.as_ref().is_some_and(|f| &f.0 == consumer));
                (consumer.clone(), held.count())
            })
            .collect();
        consumers.sort();
        Ok(GroupInfo {
            spec: state.spec.clone(),
            checkpoint: state.checkpoint,
            lag_events,
            lag_seconds,
            in_flight: state.pending.values().filter(|p| p.in_flight.is_some()).count(),
            parked: state.parked.len(),
            consumers,
        })
    }

    /// Up to `max` events for `consumer`, waiting up to `wait` for some (long poll).
    pub async fn fetch(
        &self,
        name: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, GroupError> {
        if consumer.is_empty() || consumer.len() > 256 || consumer.chars().any(char::is_control) {
            return Err(GroupError::Invalid("consumer must be 1 to 256 bytes without control characters".into()));
        }
        if !(1..=GROUP_FETCH_MAX).contains(&max) {
            return Err(GroupError::Invalid(format!("max must be between 1 and {GROUP_FETCH_MAX}, not {max}")));
        }
        let group = self.group(name)?;
        let deadline = Instant::now() + wait.min(GROUP_WAIT_MAX);
        let mut head = self.inner.store.watch_next_position();
        loop {
            let changed = group.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_expiry = {
                let mut state = group.state.lock().await;
                if state.deleted {
                    return Err(gone(&state));
                }
                let now = Instant::now();
                state.consumers.insert(consumer.to_owned(), now);
                state.expire(now);
                let read = state.fill().await?;
                let deliveries = state.take(consumer, max, now);
                if !deliveries.is_empty() || (now >= deadline && !read) {
                    self.save_if_due(&mut state)?;
                    return Ok(deliveries);
                }
                if read {
                    // More may be readable: go on at once (the lock was let go in between).
                    continue;
                }
                state.next_expiry()
            };
            let until = next_expiry.map_or(deadline, |expiry| expiry.min(deadline));
            tokio::select! {
                _ = head.changed() => {}
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// Marks deliveries handled.
    pub async fn ack(&self, name: &str, delivery_ids: &[String]) -> Result<AckOutcome, GroupError> {
        self.settle(name, delivery_ids, None).await
    }

    /// Hands deliveries back: to be retried, parked or skipped.
    pub async fn nack(
        &self,
        name: &str,
        delivery_ids: &[String],
        action: NackAction,
    ) -> Result<AckOutcome, GroupError> {
        self.settle(name, delivery_ids, Some(action)).await
    }

    async fn settle(
        &self,
        name: &str,
        delivery_ids: &[String],
        action: Option<NackAction>,
    ) -> Result<AckOutcome, GroupError> {
        let group = self.group(name)?;
        let mut state = group.state.lock().await;
        if state.deleted {
            return Err(gone(&state));
        }
        let mut outcome = AckOutcome::default();
        for id in delivery_ids {
            let parsed = id.split_once('.').and_then(|(p, a)| Some((p.parse::<u64>().ok()?, a.parse::<u32>().ok()?)));
            let outstanding = parsed.filter(|&(position, attempt)| {
                state.pending.get(&position).is_some_and(|p| p.in_flight.is_some() && p.attempts == attempt)
            });
            let Some((position, _)) = outstanding else {
                outcome.unknown.push(id.clone());
                continue;
            };
            match action {
                None | Some(NackAction::Skip) => state.handled(position),
                Some(NackAction::Retry) => state.retry(position, "nacked"),
                Some(NackAction::Park) => {
                    if !state.park(position, "parked by a consumer".to_owned()) {
                        outcome.refused.push(id.clone());
                        continue;
                    }
                }
            }
            outcome.done += 1;
        }
        self.save_if_due(&mut state)?;
        drop(state);
        group.changed.notify_waiters();
        Ok(outcome)
    }

    /// The group's parked events, oldest first.
    pub async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, GroupError> {
        let group = self.group(name)?;
        let state = group.state.lock().await;
        Ok(state.parked_events())
    }

    /// Delivers parked events again (each leaves the parked list once handled), as many as the group's
    /// buffer has room for; call again for the rest. Returns how many were queued.
    pub async fn replay_parked(&self, name: &str) -> Result<usize, GroupError> {
        let group = self.group(name)?;
        let mut state = group.state.lock().await;
        if state.deleted {
            return Err(gone(&state));
        }
        let room = state.buffer_max().saturating_sub(state.pending.len());
        let chosen: Vec<(u64, u32)> = state
            .parked
            .iter()
            .filter(|(position, _)| !state.pending.contains_key(position))
            .take(room)
            .map(|(&position, entry)| (position, entry.attempts))
            .collect();
        let store = self.inner.store.clone();
        let positions: Vec<u64> = chosen.iter().map(|&(position, _)| position).collect();
        let events = tokio::task::spawn_blocking(move || {
            positions
                .into_iter()
                .map(|position| store.read_all(ReadFrom::At(Position::new(position)), crate::Direction::Forward, 1))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .expect("replay read panicked")?;
        let mut replayed = 0;
        for ((position, attempts), events) in chosen.into_iter().zip(events) {
            let Some(event) = events.into_iter().next().filter(|e| e.position.value() == position) else { continue };
            // Attempts go on counting, so an id of a delivery before the parking stays stale.
            state.pending.insert(position, Pending { event, attempts, in_flight: None, replay: true });
            replayed += 1;
        }
        drop(state);
        group.changed.notify_waiters();
        Ok(replayed)
    }

    /// Saves every group whose checkpoint or parked events changed since it was last saved.
    pub async fn flush(&self) -> Result<(), GroupError> {
        let groups: Vec<Arc<Group>> = self.inner.groups.lock().expect("groups lock").values().cloned().collect();
        // One group failing to save does not keep the others from being saved.
        let mut first_error = None;
        for group in groups {
            let mut state = group.state.lock().await;
            if state.dirty {
                if let Err(error) = self.save(&mut state) {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn save_if_due(&self, state: &mut GroupState) -> Result<(), GroupError> {
        if state.dirty && state.saved_at.elapsed() >= SAVE_INTERVAL {
            self.save(state)?;
        }
        Ok(())
    }

    fn save(&self, state: &mut GroupState) -> Result<(), GroupError> {
        self.inner.save(state)
    }
}

impl Registry {
    fn new(store: &Store, states: Option<Arc<dyn GroupStates>>) -> Registry {
        Registry {
            store: store.clone(),
            storage: store.storage(),
            dir: path_in(store.dir(), GROUPS_DIR),
            states,
            groups: std::sync::Mutex::new(BTreeMap::new()),
            problems: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn save(&self, state: &mut GroupState) -> Result<(), GroupError> {
        if state.deleted {
            return Ok(());
        }
        self.save_now(state)
    }

    /// Saves `state` (not deleted) where the groups are kept.
    fn save_now(&self, state: &mut GroupState) -> Result<(), GroupError> {
        if let Some(states) = &self.states {
            let version = states
                .save(&state.spec.name, &encode(state), state.version)
                .map_err(|reason| unavailable(&**states, reason))?;
            state.version = Some(version);
            state.dirty = false;
            state.saved_at = Instant::now();
            return Ok(());
        }
        let path = path_in(&self.dir, &format!("{}{FILE_SUFFIX}", state.spec.name));
        save(&*self.storage, &self.dir, state).map_err(|e| StorageError::new("save group to", &path, e))?;
        Ok(())
    }
}

/// Writes the group's file: to a temporary name, fdatasynced, renamed into place, the directory synced.
fn save(storage: &dyn Storage, dir: &std::path::Path, state: &mut GroupState) -> std::io::Result<()> {
    if state.deleted {
        return Ok(());
    }
    let bytes = encode(state);
    let name = &state.spec.name;
    let temp = path_in(dir, &format!("{name}{FILE_SUFFIX}.tmp"));
    // A leftover of a failed save must not leave its tail behind the new bytes.
    let _ = storage.remove_file(&temp);
    let file = storage.open_file(&temp, true)?;
    file.write_all_at(&bytes, 0)?;
    file.sync_data()?;
    storage.rename(&temp, &path_in(dir, &format!("{name}{FILE_SUFFIX}")))?;
    storage.sync_dir(dir)?;
    state.dirty = false;
    state.saved_at = Instant::now();
    Ok(())
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Save what changed since the last save; a group busy in a fetch saves on its next call.
        let groups = self.groups.lock().expect("groups lock");
        for group in groups.values() {
            if let Ok(mut state) = group.state.try_lock()
                && state.dirty
            {
                if let Err(error) = self.save(&mut state) {
                    tracing::warn!(%error, "the consumer groups' last checkpoint save failed");
                }
            }
        }
    }
}

impl Group {
    fn new(state: GroupState) -> Self {
        Self { state: tokio::sync::Mutex::new(state), changed: Notify::new() }
    }
}

impl GroupState {
    /// The parked events, oldest first.
    fn parked_events(&self) -> Vec<ParkedEvent> {
        self.parked
            .iter()
            .map(|(&position, entry)| ParkedEvent {
                position: Position::new(position),
                attempts: entry.attempts,
                reason: entry.reason.clone(),
            })
            .collect()
    }

    fn new(
        store: &Store,
        spec: GroupSpec,
        first: u64,
        checkpoint: Option<u64>,
        parked: BTreeMap<u64, ParkedEntry>,
    ) -> Self {
        let from = checkpoint.map_or(first, |c| c + 1);
        let feeder = match &spec.source {
            GroupSource::All(filter) => store.subscribe_all(ReadFrom::At(Position::new(from)), filter.clone()),
            GroupSource::Stream(stream) => {
                store.subscribe_stream(stream.clone(), ReadFrom::At(StreamRevision::new(from)))
            }
        };
        Self {
            spec,
            first,
            feeder,
            pending: BTreeMap::new(),
            checkpoint,
            parked,
            consumers: HashMap::new(),
            pins: HashMap::new(),
            deleted: false,
            replaced: false,
            version: None,
            dirty: false,
            saved_at: Instant::now(),
        }
    }

    fn buffer_max(&self) -> usize {
        (self.spec.settings.max_in_flight * 2).max(100)
    }

    /// An event's place in the source: its position, or its revision in a stream source.
    fn seq(&self, event: &RecordedEvent) -> u64 {
        match self.spec.source {
            GroupSource::All(_) => event.position.value(),
            GroupSource::Stream(_) => event.revision.value(),
        }
    }

    /// Reads one batch from the source into the buffer, if there is room and something below the
    /// head; `true` when it read one (there may be more). One batch at a time: the state's lock is
    /// held meanwhile, and acks wait for it.
    async fn fill(&mut self) -> Result<bool, GroupError> {
        let mut read = false;
        if self.pending.len() < self.buffer_max()
            && let Some(events) = self.feeder.next_available().await?
        {
            read = true;
            for event in events {
                let position = event.position.value();
                if self.parked.contains_key(&position) {
                    continue;
                }
                self.pending.insert(position, Pending { event, attempts: 0, in_flight: None, replay: false });
            }
        }
        self.advance_checkpoint();
        Ok(read)
    }

    /// Deliveries past their ack timeout become ready again (or parked after `max_retries`).
    fn expire(&mut self, now: Instant) {
        let timeout = self.spec.settings.ack_timeout;
        let holding: std::collections::HashSet<String> =
            self.pending.values().filter_map(|p| p.in_flight.as_ref().map(|f| f.0.clone())).collect();
        self.consumers.retain(|consumer, seen| now.duration_since(*seen) <= timeout || holding.contains(consumer));
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.in_flight.as_ref().is_some_and(|(_, deadline)| *deadline <= now))
            .map(|(&position, _)| position)
            .collect();
        for position in expired {
            self.retry(position, "not acked within the ack timeout");
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.in_flight.as_ref().map(|f| f.1)).min()
    }

    fn in_flight(&self) -> usize {
        self.pending.values().filter(|p| p.in_flight.is_some()).count()
    }

    /// Picks up to `max` ready events for `consumer`, oldest first, within `max_in_flight`.
    fn take(&mut self, consumer: &str, max: usize, now: Instant) -> Vec<Delivery> {
        let settings = self.spec.settings;
        let room = settings.max_in_flight.saturating_sub(self.in_flight()).min(max);
        if room == 0 {
            return Vec::new();
        }
        let active = |seen: &Instant| now.duration_since(*seen) <= settings.ack_timeout;
        let mut chosen = Vec::new();
        // For the pinned strategy: streams with an earlier event in flight or not taken (their order).
        let mut blocked: std::collections::HashSet<StreamId> = std::collections::HashSet::new();
        let mut pin_counts: HashMap<String, usize> = HashMap::new();
        if settings.strategy == Strategy::Pinned {
            // A stream with any event out (a replayed parked event can come before it) waits.
            blocked.extend(self.pending.values().filter(|p| p.in_flight.is_some()).map(|p| p.event.stream.clone()));
            let streams: std::collections::HashSet<&StreamId> =
                self.pending.values().map(|p| &p.event.stream).collect();
            // Pins of departed consumers, and of streams with nothing pending, go.
            self.pins.retain(|stream, owner| streams.contains(stream) && self.consumers.get(owner).is_some_and(active));
            for owner in self.pins.values() {
                *pin_counts.entry(owner.clone()).or_default() += 1;
            }
        }
        for (&position, pending) in &self.pending {
            if chosen.len() >= room {
                break;
            }
            let stream = &pending.event.stream;
            if settings.strategy == Strategy::Pinned {
                if blocked.contains(stream) {
                    continue;
                }
                blocked.insert(stream.clone());
                if pending.in_flight.is_some() {
                    continue;
                }
                let owner = self.pins.get(stream).filter(|owner| self.consumers.get(*owner).is_some_and(active));
                if let Some(owner) = owner
                    && owner != consumer
                {
                    // Nothing of the stream is in flight: it may move to a consumer with fewer streams,
                    // so that consumers that join share the work (order holds: the owner is done).
                    let owner_pins = pin_counts.get(owner.as_str()).copied().unwrap_or(0);
                    let own_pins = pin_counts.get(consumer).copied().unwrap_or(0);
                    if owner_pins <= own_pins + 1 {
                        continue;
                    }
                    *pin_counts.entry(owner.clone()).or_default() -= 1;
                    *pin_counts.entry(consumer.to_owned()).or_default() += 1;
                } else if owner.is_none() {
                    *pin_counts.entry(consumer.to_owned()).or_default() += 1;
                }
            } else if pending.in_flight.is_some() {
                continue;
            }
            chosen.push(position);
        }
        chosen
            .into_iter()
            .map(|position| {
                let pending = self.pending.get_mut(&position).expect("chosen from pending");
                pending.attempts += 1;
                pending.in_flight = Some((consumer.to_owned(), now + settings.ack_timeout));
                if settings.strategy == Strategy::Pinned {
                    self.pins.insert(pending.event.stream.clone(), consumer.to_owned());
                }
                Delivery {
                    delivery_id: format!("{position}.{}", pending.attempts),
                    attempt: pending.attempts,
                    event: pending.event.clone(),
                }
            })
            .collect()
    }

    fn handled(&mut self, position: u64) {
        if let Some(pending) = self.pending.remove(&position)
            && pending.replay
        {
            self.parked.remove(&position);
            self.dirty = true;
        }
        self.advance_checkpoint();
    }

    fn retry(&mut self, position: u64, reason: &str) {
        let max_retries = self.spec.settings.max_retries;
        let Some(pending) = self.pending.get_mut(&position) else { return };
        pending.in_flight = None;
        if pending.attempts > max_retries {
            let reason = format!("{reason} after {} deliveries", pending.attempts);
            // With the parked list full it stays ready: retried, never dropped.
            self.park(position, reason);
        }
    }

    /// Parks the event; `false` (and it stays ready) when the parked list is full.
    fn park(&mut self, position: u64, reason: String) -> bool {
        if self.parked.len() >= GROUP_PARKED_MAX && !self.parked.contains_key(&position) {
            if let Some(pending) = self.pending.get_mut(&position) {
                pending.in_flight = None;
            }
            return false;
        }
        let Some(pending) = self.pending.remove(&position) else { return true };
        self.parked.insert(position, ParkedEntry { attempts: pending.attempts, reason });
        self.dirty = true;
        self.advance_checkpoint();
        true
    }

    /// The checkpoint follows the first event not handled (or, with none, what the source was read up to).
    fn advance_checkpoint(&mut self) {
        let first_open = self.pending.values().find(|p| !p.replay).map(|p| self.seq(&p.event));
        let checkpoint = first_open.unwrap_or_else(|| self.feeder.cursor()).checked_sub(1);
        if checkpoint.is_some() && checkpoint > self.checkpoint {
            self.checkpoint = checkpoint;
            self.dirty = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The group file: magic, then length-prefixed fields, then a CRC32C of everything before it.

struct Saved {
    spec: GroupSpec,
    first: u64,
    checkpoint: Option<u64>,
    parked: BTreeMap<u64, ParkedEntry>,
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn encode(state: &GroupState) -> Vec<u8> {
    let spec = &state.spec;
    let mut out = FILE_MAGIC.to_vec();
    put_str(&mut out, &spec.name);
    match &spec.source {
        GroupSource::Stream(stream) => {
            out.push(1);
            put_str(&mut out, stream.as_str());
        }
        GroupSource::All(filter) => {
            out.push(2);
            put_str(&mut out, filter.category.as_deref().unwrap_or(""));
            put_str(&mut out, filter.stream_prefix.as_deref().unwrap_or(""));
            put_u64(&mut out, filter.event_types.len() as u64);
            for event_type in &filter.event_types {
                put_str(&mut out, event_type.as_str());
            }
            put_u64(&mut out, filter.tags.len() as u64);
            for tag in &filter.tags {
                put_str(&mut out, tag.as_str());
            }
        }
    }
    let (kind, at) = match spec.start {
        GroupStart::Start => (0, 0),
        GroupStart::End => (1, 0),
        GroupStart::At(at) => (2, at),
    };
    out.push(kind);
    put_u64(&mut out, at);
    put_u64(&mut out, state.first);
    put_u64(&mut out, spec.settings.max_in_flight as u64);
    put_u64(&mut out, spec.settings.ack_timeout.as_millis() as u64);
    put_u64(&mut out, u64::from(spec.settings.max_retries));
    out.push(match spec.settings.strategy {
        Strategy::RoundRobin => 0,
        Strategy::Pinned => 1,
    });
    put_u64(&mut out, state.checkpoint.map_or(u64::MAX, |c| c));
    put_u64(&mut out, state.parked.len() as u64);
    for (&position, entry) in &state.parked {
        put_u64(&mut out, position);
        put_u64(&mut out, u64::from(entry.attempts));
        put_str(&mut out, &entry.reason);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let (taken, rest) = self.bytes.split_at_checked(len).ok_or("cut short")?;
        self.bytes = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn str(&mut self) -> Result<String, String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "not UTF-8".to_owned())
    }
}

fn load(storage: &dyn Storage, path: &std::path::Path) -> Result<Saved, GroupError> {
    let file = storage.open_file(path, false).map_err(|e| StorageError::new("open", path, e))?;
    let len = file.len_bytes().map_err(|e| StorageError::new("stat", path, e))? as usize;
    let mut bytes = vec![0u8; len];
    crate::io::read_exact_at(&*file, &mut bytes, 0).map_err(|e| StorageError::new("read", path, e))?;
    decode(&bytes).map_err(|reason| {
        let error = std::io::Error::new(std::io::ErrorKind::InvalidData, format!("damaged group file: {reason}"));
        GroupError::Storage(StorageError::new("load consumer group from", path, error))
    })
}

fn decode(bytes: &[u8]) -> Result<Saved, String> {
    let body = bytes.len().checked_sub(4).map(|at| &bytes[..at]).ok_or("too short")?;
    if crc32c::crc32c(body).to_le_bytes() != bytes[body.len()..] {
        return Err("checksum mismatch".to_owned());
    }
    let mut reader = Reader { bytes: body };
    if reader.take(8)? != FILE_MAGIC {
        return Err("not a group file".to_owned());
    }
    let name = reader.str()?;
    let invalid = |e: strata_core::ValidationError| e.to_string();
    let source = match reader.u8()? {
        1 => GroupSource::Stream(StreamId::new(reader.str()?).map_err(invalid)?),
        2 => {
            let category = Some(reader.str()?).filter(|c| !c.is_empty());
            let stream_prefix = Some(reader.str()?).filter(|p| !p.is_empty());
            let mut event_types = Vec::new();
            for _ in 0..reader.u64()? {
                event_types.push(EventType::new(reader.str()?).map_err(invalid)?);
            }
            let mut tags = Vec::new();
            for _ in 0..reader.u64()? {
                tags.push(Tag::new(reader.str()?).map_err(invalid)?);
            }
            GroupSource::All(Filter { category, event_types, stream_prefix, tags, query: None })
        }
        other => return Err(format!("unknown source kind {other}")),
    };
    let start = match (reader.u8()?, reader.u64()?) {
        (0, _) => GroupStart::Start,
        (1, _) => GroupStart::End,
        (2, at) => GroupStart::At(at),
        (other, _) => return Err(format!("unknown start kind {other}")),
    };
    let first = reader.u64()?;
    let max_in_flight = reader.u64()? as usize;
    let ack_timeout = Duration::from_millis(reader.u64()?);
    let max_retries = u32::try_from(reader.u64()?).map_err(|_| "max_retries out of range")?;
    let strategy = match reader.u8()? {
        0 => Strategy::RoundRobin,
        1 => Strategy::Pinned,
        other => return Err(format!("unknown strategy {other}")),
    };
    let checkpoint = Some(reader.u64()?).filter(|&c| c != u64::MAX);
    let mut parked = BTreeMap::new();
    for _ in 0..reader.u64()? {
        let position = reader.u64()?;
        let attempts = u32::try_from(reader.u64()?).map_err(|_| "attempts out of range")?;
        parked.insert(position, ParkedEntry { attempts, reason: reader.str()? });
    }
    let settings = GroupSettings { max_in_flight, ack_timeout, max_retries, strategy };
    Ok(Saved { spec: GroupSpec { name, source, start, settings }, first, checkpoint, parked })
}
