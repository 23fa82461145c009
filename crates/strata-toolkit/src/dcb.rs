//! Deciders whose consistency boundary is a query (event types and tags) instead of one stream —
//! Dynamic Consistency Boundaries. The handler folds every event matching the command's query,
//! decides, and appends on the condition that no matching event was committed since it read; a
//! transfer between two accounts reads both accounts' events and writes to both streams atomically.

use crate::decider::{CommandError, CommandOptions, Decider, command_event_id, remember};
use crate::event::{Codec, EventMeta};
use crate::store::EventStore;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use strata_core::{NewEvent, Position, Query, StreamId};
use strata_store::{AppendCondition, Filter, MultiAppend, MultiAppendOutcome, ReadFrom, ReadOptions};

/// A [`Decider`] whose state is a fold of the events matching a query.
pub trait DcbDecider: Decider {
    /// The events `command`'s decision depends on (and which must not change under it).
    fn query(command: &Self::Command) -> Query;

    /// The stream an event is appended to.
    fn stream(event: &Self::Event) -> StreamId;
}

/// What a DCB command did.
pub struct DcbHandled<D: Decider> {
    pub events: Vec<D::Event>,
    pub state: D::State,
    /// The position of the last event appended; when nothing was appended, the store's head when
    /// the query was read (the decision saw everything up to it).
    pub position: Option<Position>,
    pub already_handled: bool,
}

impl<D: Decider> fmt::Debug for DcbHandled<D>
where
    D::Event: fmt::Debug,
    D::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DcbHandled")
            .field("events", &self.events)
            .field("state", &self.state)
            .field("position", &self.position)
            .field("already_handled", &self.already_handled)
            .finish()
    }
}

/// Loads, decides and appends commands of a [`DcbDecider`].
pub struct DcbHandler<D: Decider, S> {
    store: S,
    codec: Codec<D::Event>,
    conflict_retries: u32,
    _decider: PhantomData<fn() -> D>,
}

impl<D: Decider, S> fmt::Debug for DcbHandler<D, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DcbHandler").field("decider", &std::any::type_name::<D>()).finish_non_exhaustive()
    }
}

impl<D: Decider, S: Clone> Clone for DcbHandler<D, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            codec: self.codec.clone(),
            conflict_retries: self.conflict_retries,
            _decider: PhantomData,
        }
    }
}

impl<D: DcbDecider, S: EventStore> DcbHandler<D, S> {
    pub fn new(store: S, codec: Codec<D::Event>) -> Self {
        Self { store, codec, conflict_retries: crate::decider::CONFLICT_RETRIES_DEFAULT, _decider: PhantomData }
    }

    pub fn with_conflict_retries(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// The state `query` folds to now, the head position it was read at, and the command ids seen.
    async fn load(
        &self,
        query: &Query,
    ) -> Result<(D::State, Option<Position>, VecDeque<String>), CommandError<D::Error>> {
        let head = self.store.head_position().await?;
        let mut state = D::initial_state();
        let mut recent = VecDeque::new();
        let Some(head) = head else { return Ok((state, None, recent)) };
        let filter = Filter { query: Some(query.clone()), ..Filter::default() };
        let options = ReadOptions::forward(strata_core::limits::READ_EVENTS_MAX).until_position(head);
        let mut from = ReadFrom::Start;
        loop {
            let page = self.store.read_all(from, options, &filter).await?;
            for recorded in &page.events {
                let event = self.codec.decode(recorded)?;
                state = D::evolve(state, &event);
                if let Some(command) = EventMeta::parse(&recorded.metadata).ok().and_then(|meta| meta.command_id) {
                    remember(&mut recent, command);
                }
            }
            match (page.more, page.events.last()) {
                (true, Some(last)) => from = ReadFrom::At(last.position.next()),
                _ => break,
            }
        }
        Ok((state, Some(head), recent))
    }

    /// Handles `command`: fold the events of its query, decide, append on the condition that no
    /// event matching the query was committed since the read; retry on a failed condition.
    pub async fn handle(
        &self,
        command: &D::Command,
        options: &CommandOptions,
    ) -> Result<DcbHandled<D>, CommandError<D::Error>> {
        let query = D::query(command);
        let key = options.idempotency_key.as_deref();
        let mut attempts = 0;
        loop {
            let (state, head, recent) = self.load(&query).await?;
            if key.is_some_and(|key| recent.iter().any(|seen| seen == key)) {
                return Ok(DcbHandled { events: Vec::new(), state, position: head, already_handled: true });
            }
            let events = D::decide(command, &state).map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(DcbHandled { events, state, position: head, already_handled: false });
            }
            let mut append = MultiAppend {
                events: Vec::with_capacity(events.len()),
                checks: Vec::new(),
                condition: Some(AppendCondition { query: query.clone(), after: head }),
            };
            for (at, event) in events.iter().enumerate() {
                let stream = D::stream(event);
                let new_event: NewEvent = match key {
                    Some(key) => self.codec.encode_with_id(event, Some(key), command_event_id(&stream, key, at))?,
                    None => self.codec.encode(event, None)?,
                };
                append.events.push((stream, new_event));
            }
            match self.store.append_multi(append).await? {
                MultiAppendOutcome::Committed(result) if result.replayed => {
                    // An earlier try committed these events and its answer was lost: report the
                    // state as it is now, not this try's fold.
                    let (state, _, _) = self.load(&query).await?;
                    return Ok(DcbHandled {
                        events: Vec::new(),
                        state,
                        position: Some(result.last_position),
                        already_handled: true,
                    });
                }
                MultiAppendOutcome::Committed(result) => {
                    let state = events.iter().fold(state, D::evolve);
                    return Ok(DcbHandled {
                        events,
                        state,
                        position: Some(result.last_position),
                        already_handled: false,
                    });
                }
                MultiAppendOutcome::ConditionFailed { .. } | MultiAppendOutcome::WrongExpectedRevision { .. } => {
                    attempts += 1;
                    if attempts > self.conflict_retries {
                        let stream = D::stream(&events[0]);
                        return Err(CommandError::TooManyConflicts { stream, attempts });
                    }
                }
            }
        }
    }
}
