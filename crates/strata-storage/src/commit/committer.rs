//! The committer: the one thread that writes. It takes every append queued since its last fdatasync,
//! checks each against the indexes and the appends before it in the same group — idempotency, then
//! expected revisions, then the DCB condition — writes the accepted ones as one frame, syncs once,
//! publishes them to readers and only then answers (group commit).
//!
//! Because one thread decides every append in position order, and each decision sees the appends
//! admitted before it in the same group, two appends whose checks or conditions conflict can never
//! both commit.

use crate::clock::Clock;
use crate::commit::log::{CommitLog, Proposal, Proposed};
use crate::commit::reply::{AppendReply, Reply};
use crate::error::{AppendError, poison_reason};
use crate::filter::{Matcher, first_common};
use crate::index::{FastMap, IdEntry, IdIndex, Index, Postings, PushEvent, push_posting};
use crate::log::chain::{self, Digest32};
use crate::log::format::{FrameBuilder, RecordChain, RecordFields, hash_new_event, new_event_content_digest};
use crate::store::{AppendCondition, MultiAppendOutcome, MultiAppendResult, StreamAppendResult};
use crate::system;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, RwLock};
use strata_core::{
    EventHash, EventId, EventType, ExpectedRevision, NewEvent, Position, StreamId, StreamRevision, Timestamp,
    ValidationError,
};
use tokio::sync::mpsc;

/// State shared by the writer and every reader.
#[derive(Debug)]
pub(crate) struct Shared {
    pub index: RwLock<Index>,
    /// Set once, at the first failed write or sync; from then on appends are refused.
    pub poisoned: OnceLock<String>,
    /// The index's next position, sent after every commit is published to readers: subscriptions wait
    /// on it instead of polling.
    pub next_position: tokio::sync::watch::Sender<u64>,
    pub stats: crate::stats::EngineStats,
    /// Held by whatever rewrites index runs in place (a merge, a scavenge), so they never overlap.
    pub maintenance: std::sync::Mutex<()>,
    /// The latest events, shared by live subscriptions.
    pub live_tail: crate::subscription::LiveTail,
    /// The store's `$store-created`: read at open, or set by the committer when it writes it (the
    /// first commit of a new store, or the first format-2 commit of a format-1 store).
    pub identity: OnceLock<system::StoreCreated>,
    /// `Options::chain_hashing_off_for_benchmarks`: every hash is zero (the chain's cost, measured).
    pub hashing_off: bool,
}

/// Up to this many of a group's events, a condition checks each of them; beyond, it searches
/// position lists of the group's types and tags (built once, extended as the group grows).
const GROUP_EVENTS_SCANNED_MAX: usize = 256;

/// One validated append, with every event id assigned.
#[derive(Debug)]
pub(crate) struct Request {
    /// The events in the order they get positions, each with its stream.
    pub events: Vec<(StreamId, NewEvent)>,
    /// Each event's content digest (metadata and data, `log::chain`), computed by the caller's
    /// thread so that the committer only hashes headers and links.
    pub content_digests: Vec<Digest32>,
    /// An import's hashes of scavenged placeholders, one entry per event (`None` for the others):
    /// what such a hash covers is gone, so the chain takes it as it is.
    pub carried_hashes: Option<Vec<Option<EventHash>>>,
    /// Expected revisions, also of streams the append does not write; at most one per stream.
    pub checks: Vec<(StreamId, ExpectedRevision)>,
    pub condition: Option<AppendCondition>,
    /// Bytes its records take in a frame.
    pub encoded_bytes: usize,
    /// Whether the client chose any of the ids. When the store generated them all (UUIDv7), the
    /// append cannot be a retry and its ids need no look-up.
    pub client_ids: bool,
    /// A change to a stream's metadata or existence, written as an event of the system stream.
    pub system: Option<SystemOperation>,
    /// An id generated for an event the committer creates (a soft delete's).
    pub generated_id: Option<EventId>,
    /// An import's recorded times, one per event, non-decreasing (checked by `prepare`); `None`:
    /// the events are recorded now.
    pub recorded_times: Option<Vec<Timestamp>>,
    pub reply: Reply,
}

/// What the committer's queue carries: appends to decide, and frames another writer committed to the
/// log, which a replica applies in the log's order (the committer is the one writer of the local log).
// Appends are the hot path and the common variant: boxing them would cost an allocation per append
// for the sake of the rare replicated frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Work {
    Append(Request),
    Replicate(ReplicateRequest),
}

/// A frame the replicated log holds at `sequence` (or a message there that is not one), to apply.
#[derive(Debug)]
pub(crate) struct ReplicateRequest {
    pub sequence: u64,
    pub frame: Vec<u8>,
    pub reply: tokio::sync::oneshot::Sender<Result<Replicated, AppendError>>,
}

/// What a replica did with a message of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replicated {
    /// Its frame continued the local log and is now part of it.
    Applied { first_position: u64, last_position: u64 },
    /// It is not a frame continuing the chain (a stray publish, a frame of another history, one
    /// whose events do not follow the local streams): nothing was written. Every replica skips it
    /// alike, since every replica holds the same log before it.
    Skipped { reason: String },
}

/// What a system request does to its target stream.
#[derive(Debug, Clone)]
pub(crate) enum SystemOperation {
    /// `events` holds the `$metadata` event.
    SetMetadata(StreamId),
    /// The committer writes the `$deleted` event: the target's last revision is only known here.
    SoftDelete(StreamId),
    /// `events` holds the `$tombstone` event.
    Tombstone(StreamId),
    /// `events` hold exported events, system events among them, with their recorded times;
    /// `tombstones` are the streams its `$tombstone` events delete (for the rest of the group).
    Import { tombstones: Vec<StreamId> },
}

impl SystemOperation {
    /// The stream whose metadata or existence the operation changes (an import changes many).
    pub fn target(&self) -> Option<&StreamId> {
        match self {
            SystemOperation::SetMetadata(stream)
            | SystemOperation::SoftDelete(stream)
            | SystemOperation::Tombstone(stream) => Some(stream),
            SystemOperation::Import { .. } => None,
        }
    }
}

impl Request {
    /// The request as it was queued, without its reply: what deciding it again after a conflict needs.
    fn copy_without_reply(&self) -> Request {
        Request {
            events: self.events.clone(),
            content_digests: self.content_digests.clone(),
            carried_hashes: self.carried_hashes.clone(),
            checks: self.checks.clone(),
            condition: self.condition.clone(),
            encoded_bytes: self.encoded_bytes,
            client_ids: self.client_ids,
            system: self.system.clone(),
            generated_id: self.generated_id,
            recorded_times: self.recorded_times.clone(),
            reply: Reply::Nobody,
        }
    }

    /// The id of a soft delete's `$deleted` event, generated with the request.
    fn deleted_event_id(&self) -> EventId {
        self.generated_id.expect("a soft delete carries an id for its event")
    }
}

/// An event written into the current frame, to be indexed once the frame is durable. Its position
/// is the group's first position plus its index in [`Group::events`].
#[derive(Debug)]
struct PendingEvent {
    id: EventId,
    stream: StreamId,
    revision: u64,
    /// Offset of its record from the start of the frame.
    frame_offset: usize,
    recorded_at: Timestamp,
    event: NewEvent,
}

/// One commit group under construction.
struct Group<'a> {
    /// Zero hashes instead of links (`Options::chain_hashing_off_for_benchmarks`).
    hashing_off: bool,
    index: &'a Index,
    committed_ids: &'a IdIndex,
    frame: &'a mut FrameBuilder,
    first_position: u64,
    /// The hash of the last event written so far: the log's before the group, then this group's.
    chain_head: EventHash,
    /// Reused to encode an event's tags for its header digest.
    scratch: Vec<u8>,
    /// The time of the events appended (not imported) in this group.
    recorded_at: Timestamp,
    /// The latest recorded time written in this group so far: an import must not go below it.
    latest_recorded_at: Option<Timestamp>,
    events: Vec<PendingEvent>,
    /// Last revision of each stream written in this group (the group's view on top of the index).
    heads: FastMap<StreamId, u64>,
    /// Last revisions looked up in the index during this group (`None`: no events), so that each
    /// stream costs one look-up, and writing needs none.
    index_heads: FastMap<StreamId, Option<u64>>,
    /// Client-chosen ids written in this group: index into `events`.
    ids: FastMap<EventId, usize>,
    /// Positions of this group's events by type and by tag, for conditions; built only when a
    /// condition needs them, and only for the events not listed yet (`listed`).
    types: FastMap<String, Postings>,
    tags: FastMap<String, Postings>,
    listed: usize,
    /// Streams tombstoned by an append admitted earlier in this group.
    tombstoned: FastMap<StreamId, ()>,
    /// Each request's reply, outcome, and whether the outcome depends on committed state alone (it
    /// wrote nothing and was decided before any event of the group): such an outcome stays true if
    /// the group's frame cannot be written.
    replies: Vec<(Reply, AppendReply, bool)>,
}

impl<'a> Group<'a> {
    fn new(
        index: &'a Index,
        committed_ids: &'a IdIndex,
        frame: &'a mut FrameBuilder,
        recorded_at: Timestamp,
        chain_head: EventHash,
    ) -> Self {
        let first_position = index.next_position();
        frame.start_commit(first_position, Some(chain_head));
        Self {
            hashing_off: false,
            index,
            committed_ids,
            frame,
            first_position,
            chain_head,
            scratch: Vec::new(),
            recorded_at,
            latest_recorded_at: index.last_recorded_at(),
            events: Vec::new(),
            heads: FastMap::default(),
            index_heads: FastMap::default(),
            ids: FastMap::default(),
            types: FastMap::default(),
            tags: FastMap::default(),
            listed: 0,
            tombstoned: FastMap::default(),
            replies: Vec::new(),
        }
    }

    /// Looks up the index's last revision of `stream` once per group.
    fn resolve_head(&mut self, stream: &StreamId) -> Result<(), AppendError> {
        if !self.heads.contains_key(stream) && !self.index_heads.contains_key(stream) {
            let head = self.index.stream_head(stream.as_str()).map_err(index_failure)?;
            self.index_heads.insert(stream.clone(), head.map(StreamRevision::value));
        }
        Ok(())
    }

    /// The last revision of `stream`, including this group's appends; [`Group::resolve_head`] must
    /// have looked it up.
    fn head(&self, stream: &StreamId) -> Option<StreamRevision> {
        match self.heads.get(stream) {
            Some(&revision) => Some(StreamRevision::new(revision)),
            None => self.index_heads.get(stream).expect("heads are resolved before use").map(StreamRevision::new),
        }
    }

    fn lookup_id(&self, id: &EventId) -> Result<Option<IdEntry>, AppendError> {
        match self.ids.get(id) {
            Some(&at) => {
                let event = &self.events[at];
                Ok(Some(IdEntry {
                    stream: event.stream.clone(),
                    revision: StreamRevision::new(event.revision),
                    position: Position::new(self.first_position + at as u64),
                }))
            }
            None => {
                let position = match self.committed_ids.get(id) {
                    Some(position) => Some(position),
                    None => self.index.run_id(id).map_err(index_failure)?,
                };
                position.map(|position| self.index.describe(position).map_err(index_failure)).transpose()
            }
        }
    }

    /// Recognises a retry: every id of the request already committed (or in this group), each in the
    /// stream the request gives it, at consecutive positions. Some but not all of them is an error.
    fn replay(&self, request: &Request) -> Result<Option<MultiAppendResult>, AppendError> {
        let id_of = |at: usize| request.events[at].1.id().expect("ids are assigned before queueing");
        let Some(first) = self.lookup_id(&id_of(0))? else {
            for at in 1..request.events.len() {
                if let Some(entry) = self.lookup_id(&id_of(at))? {
                    return Err(partial_duplicate(id_of(at), entry));
                }
            }
            return Ok(None);
        };
        let mut entries = Vec::with_capacity(request.events.len());
        for (at, (stream, _)) in request.events.iter().enumerate() {
            let entry = if at == 0 { Some(first.clone()) } else { self.lookup_id(&id_of(at))? };
            match entry {
                Some(entry)
                    if entry.stream == *stream && entry.position.value() == first.position.value() + at as u64 =>
                {
                    entries.push(entry);
                }
                Some(entry) => return Err(partial_duplicate(id_of(at), entry)),
                None => return Err(partial_duplicate(id_of(0), first)),
            }
        }
        let mut streams = StreamResults::default();
        for entry in &entries {
            streams.record(&entry.stream, entry.revision);
        }
        // The original append's answer, all of it: its events share one recorded time (an import's
        // may differ; the last is what the original answer named).
        let last_position = entries.last().expect("at least one event").position;
        let recorded_at = match last_position.value().checked_sub(self.first_position) {
            Some(at) => self.events[at as usize].recorded_at,
            None => self.index.recorded_at(last_position.value()).map_err(index_failure)?,
        };
        Ok(Some(MultiAppendResult {
            first_position: first.position,
            last_position,
            streams: streams.results,
            recorded_at: Some(recorded_at),
            replayed: true,
        }))
    }

    /// The first event after `condition.after` that matches its query — committed, or admitted
    /// earlier in this group. The caller has checked that `after` lies below the group.
    fn condition_violation(&mut self, condition: &AppendCondition) -> Result<Option<Position>, AppendError> {
        let from = condition.after.map_or(0, |after| after.value() + 1);
        let matcher = Matcher::for_query(self.index, &condition.query).map_err(index_failure)?;
        let committed = matcher.next(from, self.first_position);
        if let Some(error) = matcher.error() {
            return Err(index_failure(error));
        }
        if let Some(position) = committed {
            return Ok(Some(Position::new(position)));
        }
        let skip = from.saturating_sub(self.first_position) as usize;
        if self.events.len().saturating_sub(skip) <= GROUP_EVENTS_SCANNED_MAX {
            // A few events: checking each is cheaper than listing them.
            return Ok(self.events.iter().enumerate().skip(skip).find_map(|(at, pending)| {
                // The committer's own `$store-created` is no event a client decided on.
                if is_store_created(pending) {
                    return None;
                }
                let tags = pending.event.tags().iter().map(|tag| tag.as_str());
                let matches = condition.query.matches(pending.event.event_type().as_str(), tags);
                matches.then(|| Position::new(self.first_position + at as u64))
            }));
        }
        for at in self.listed..self.events.len() {
            let position = self.first_position + at as u64;
            let event = &self.events[at].event;
            push_posting(&mut self.types, event.event_type().as_str(), position);
            for tag in event.tags() {
                push_posting(&mut self.tags, tag.as_str(), position);
            }
        }
        self.listed = self.events.len();
        let end = self.first_position + self.events.len() as u64;
        let from = from.max(self.first_position);
        Ok(condition
            .query
            .items
            .iter()
            .filter_map(|item| {
                let mut constraints = Vec::new();
                if !item.types.is_empty() {
                    constraints.push(item.types.iter().filter_map(|t| self.types.get(t.as_str())).collect());
                }
                for tag in &item.tags {
                    constraints.push(self.tags.get(tag.as_str()).into_iter().collect());
                }
                // A constraint with no list (a type or tag nobody in the group has) matches nothing.
                if constraints.iter().any(|lists: &Vec<&Postings>| lists.is_empty()) {
                    return None;
                }
                first_common(&constraints, from, end, |_| true)
            })
            .min()
            .map(Position::new))
    }

    fn is_tombstoned(&self, stream: &StreamId) -> bool {
        self.tombstoned.contains_key(stream) || self.index.is_tombstoned(stream.as_str())
    }

    /// The first stream the request touches (writes, checks or targets) that is tombstoned.
    fn tombstoned_stream(&self, request: &Request) -> Option<StreamId> {
        let written = request.events.iter().map(|(stream, _)| stream);
        let checked = request.checks.iter().map(|(stream, _)| stream);
        let target = request.system.iter().filter_map(SystemOperation::target);
        written.chain(checked).chain(target).find(|stream| self.is_tombstoned(stream)).cloned()
    }

    fn admit(&mut self, mut request: Request) {
        let independent = self.events.is_empty();
        let replay = if request.client_ids { self.replay(&request) } else { Ok(None) };
        let tombstoned = || self.tombstoned_stream(&request).map(|stream| AppendError::StreamDeleted { stream });
        let replay = match replay {
            Ok(None) => tombstoned().map_or(Ok(None), Err),
            other => other,
        };
        // Recorded time never goes backwards in the log: `position_at` and as-of reads rely on it.
        let replay = match (replay, request.recorded_times.as_ref().and_then(|times| times.first())) {
            (Ok(None), Some(&first)) if self.latest_recorded_at.is_some_and(|latest| first < latest) => {
                let latest = self.latest_recorded_at.expect("checked").to_string();
                Err(ValidationError::RecordedTimeBackwards { recorded_at: first.to_string(), latest }.into())
            }
            (replay, _) => replay,
        };
        let outcome = match replay {
            Err(error) => Err(error),
            Ok(Some(result)) => Ok(MultiAppendOutcome::Committed(result)),
            Ok(None) => self.decide(&mut request),
        };
        let independent = independent && self.events.is_empty();
        self.replies.push((request.reply, outcome, independent));
    }

    /// Looks up the heads of every stream the request checks, writes or targets.
    fn resolve_heads(&mut self, request: &Request) -> Result<(), AppendError> {
        let written = request.events.iter().map(|(stream, _)| stream);
        let checked = request.checks.iter().map(|(stream, _)| stream);
        let target = request.system.iter().filter_map(SystemOperation::target);
        for stream in written.chain(checked).chain(target) {
            self.resolve_head(stream)?;
        }
        Ok(())
    }

    /// Checks, condition and write of a request that is not a replay.
    fn decide(&mut self, request: &mut Request) -> Result<MultiAppendOutcome, AppendError> {
        // An export's `$store-created` names its own store: only an empty store takes it on.
        if matches!(request.system, Some(SystemOperation::Import { .. })) {
            let next = self.first_position + self.events.len() as u64;
            if let Some(at) = request.events.iter().position(|(stream, _)| stream.as_str() == system::STORE_STREAM) {
                if next + at as u64 != 0 {
                    let reason = format!(
                        "{} names the store the export came from; only an empty store takes it on —                          leave it out to import these events into a store that has its own",
                        system::STORE_CREATED_TYPE
                    );
                    return Err(ValidationError::InvalidImport { position: next + at as u64, reason }.into());
                }
            }
        }
        self.resolve_heads(request)?;
        {
            {
                let failed_check = request.checks.iter().find_map(|(stream, expected)| {
                    let actual = self.head(stream);
                    (!expected.is_satisfied_by(actual)).then(|| MultiAppendOutcome::WrongExpectedRevision {
                        stream: stream.clone(),
                        expected: *expected,
                        actual,
                    })
                });
                // A condition can only refer to a position the client read: at most the committed head.
                let after_head = request
                    .condition
                    .as_ref()
                    .and_then(|c| c.after)
                    .filter(|after| after.value() >= self.first_position);
                if let Some(after) = after_head {
                    let head =
                        self.first_position.checked_sub(1).map_or("the log is empty".to_owned(), |h| h.to_string());
                    Err(ValidationError::ConditionAfterHead { after: after.value(), head }.into())
                } else {
                    let failure = match (failed_check, request.condition.as_ref()) {
                        (Some(failure), _) => Some(failure),
                        (None, None) => None,
                        (None, Some(condition)) => self
                            .condition_violation(condition)?
                            .map(|position| MultiAppendOutcome::ConditionFailed { position }),
                    };
                    match (failure, &request.system) {
                        (Some(failure), _) => Ok(failure),
                        (None, Some(SystemOperation::SoftDelete(target))) => match self.head(target) {
                            None => Err(AppendError::StreamNotFound { stream: target.clone() }),
                            Some(head) => {
                                let data = system::encode_deleted(target.as_str(), head.value() + 1);
                                let event =
                                    NewEvent::new(EventType::new(system::DELETED_TYPE).expect("a valid type"), data)
                                        .with_id(request.deleted_event_id());
                                let system_stream = StreamId::new(system::SYSTEM_STREAM).expect("a valid name");
                                self.resolve_head(&system_stream)?;
                                request.content_digests.push(new_event_content_digest(&event));
                                request.events.push((system_stream, event));
                                Ok(MultiAppendOutcome::Committed(self.write(request)))
                            }
                        },
                        (None, system) => {
                            match system {
                                Some(SystemOperation::Tombstone(target)) => {
                                    self.tombstoned.insert(target.clone(), ());
                                }
                                Some(SystemOperation::Import { tombstones }) => {
                                    for target in tombstones {
                                        self.tombstoned.insert(target.clone(), ());
                                    }
                                }
                                _ => {}
                            }
                            Ok(MultiAppendOutcome::Committed(self.write(request)))
                        }
                    }
                }
            }
        }
    }

    fn write(&mut self, request: &mut Request) -> MultiAppendResult {
        let first_position = self.first_position + self.events.len() as u64;
        let mut streams = StreamResults::default();
        // Consecutive events of one stream (the common case) cost one head look-up for the run.
        let mut run: Option<(StreamId, u64, u64)> = None; // stream, first revision, next revision
        let times = request.recorded_times.take();
        let digests = std::mem::take(&mut request.content_digests);
        let carried = request.carried_hashes.take();
        assert_eq!(digests.len(), request.events.len(), "every event has its content digest");
        for (at, (stream, event)) in std::mem::take(&mut request.events).into_iter().enumerate() {
            let revision = match &mut run {
                Some((run_stream, _, next)) if *run_stream == stream => {
                    *next += 1;
                    *next - 1
                }
                _ => {
                    if let Some((run_stream, first, next)) = run.take() {
                        self.end_run(&mut streams, run_stream, first, next);
                    }
                    let revision = self.head(&stream).map_or(0, |revision| revision.value() + 1);
                    run = Some((stream.clone(), revision, revision + 1));
                    revision
                }
            };
            let id = event.id().expect("ids are assigned before queueing");
            let position = self.first_position + self.events.len() as u64;
            let recorded_at = times.as_ref().map_or(self.recorded_at, |times| times[at]);
            // Decision order is chain order: each event's hash covers the one before it.
            let hash = match carried.as_ref().and_then(|hashes| hashes[at]) {
                Some(hash) => hash,
                None if self.hashing_off => EventHash::ZERO,
                None => hash_new_event(
                    &self.chain_head,
                    position,
                    &stream,
                    revision,
                    id,
                    recorded_at,
                    &event,
                    &digests[at],
                    &mut self.scratch,
                ),
            };
            let carried_here = carried.as_ref().is_some_and(|hashes| hashes[at].is_some());
            let chain =
                if carried_here { RecordChain::Placeholder { hash, kept: None } } else { RecordChain::Hashed(hash) };
            self.chain_head = hash;
            let frame_offset = self.frame.push_record(RecordFields {
                position,
                revision,
                recorded_at,
                id,
                stream: &stream,
                event: &event,
                chain,
            });
            if request.client_ids {
                self.ids.insert(id, self.events.len());
            }
            self.events.push(PendingEvent { id, stream, revision, frame_offset, recorded_at, event });
        }
        if let Some((run_stream, first, next)) = run {
            self.end_run(&mut streams, run_stream, first, next);
        }
        let latest = self.events.last().expect("a write writes events").recorded_at;
        self.latest_recorded_at = Some(latest);
        // Appends after an import with times ahead of the clock take its time, not an earlier one.
        self.recorded_at = self.recorded_at.max(latest);
        MultiAppendResult {
            first_position: Position::new(first_position),
            last_position: Position::new(self.first_position + self.events.len() as u64 - 1),
            streams: streams.results,
            recorded_at: Some(latest),
            replayed: false,
        }
    }

    /// Records a run of revisions `first..next` of `stream` in the group's heads and the result.
    fn end_run(&mut self, streams: &mut StreamResults, stream: StreamId, first: u64, next: u64) {
        streams.record(&stream, StreamRevision::new(first));
        streams.record(&stream, StreamRevision::new(next - 1));
        self.heads.insert(stream, next - 1);
    }
}

/// First and last revision written per stream, in order of each stream's first event.
#[derive(Default)]
struct StreamResults {
    results: Vec<StreamAppendResult>,
    by_stream: FastMap<StreamId, usize>,
}

impl StreamResults {
    fn record(&mut self, stream: &StreamId, revision: StreamRevision) {
        match self.by_stream.get(stream) {
            Some(&at) => self.results[at].last_revision = revision,
            None => {
                self.by_stream.insert(stream.clone(), self.results.len());
                self.results.push(StreamAppendResult {
                    stream: stream.clone(),
                    first_revision: revision,
                    last_revision: revision,
                });
            }
        }
    }
}

/// A failed read of the indexes while deciding an append: nothing was written.
fn index_failure(error: impl std::fmt::Display) -> AppendError {
    AppendError::NotWritten { reason: format!("reading the indexes failed: {error}") }
}

fn partial_duplicate(event_id: EventId, entry: IdEntry) -> AppendError {
    AppendError::PartialDuplicate { event_id, committed_stream: entry.stream, committed_revision: entry.revision }
}

/// How the group about to be decided starts the chain, when the log has none yet.
enum ChainStart {
    /// The first request imports an export's `$store-created` into this empty store: the store takes
    /// that identity, so the export's chain continues here unchanged.
    Adopt(system::StoreCreated),
    /// The committer writes `$store-created` first.
    Create(system::StoreCreated),
}

/// Decides how a log without a chain starts one: by the import's own `$store-created`, or a new
/// one — for an empty log derived from a fresh store id, for a format-1 log the digest of its events.
fn chain_start(index: &Index, first: &Request, now: Timestamp) -> Result<ChainStart, AppendError> {
    if index.next_position() == 0 {
        if let (Some(SystemOperation::Import { .. }), Some((stream, event))) = (&first.system, first.events.first()) {
            if stream.as_str() == system::STORE_STREAM && event.event_type().as_str() == system::STORE_CREATED_TYPE {
                let created = system::StoreCreated::decode(event.data())
                    .map_err(|reason| AppendError::Invalid(ValidationError::InvalidImport { position: 0, reason }))?;
                if created.format_1_events.is_some() || created.genesis != chain::genesis(&created.store_id) {
                    let reason = "its genesis is not the one its store id gives".to_owned();
                    return Err(ValidationError::InvalidImport { position: 0, reason }.into());
                }
                return Ok(ChainStart::Adopt(created));
            }
        }
        let store_id = uuid::Uuid::new_v4();
        let genesis = chain::genesis(&store_id);
        // An import into a new store keeps its events' times: the store is created at the first.
        let created_at = first.recorded_times.as_ref().and_then(|times| times.first().copied()).unwrap_or(now);
        return Ok(ChainStart::Create(system::StoreCreated {
            store_id,
            genesis,
            format_version: crate::log::format::FORMAT_VERSION,
            created_at: created_at.min(now),
            format_1_events: None,
        }));
    }
    let prefix = format_1_prefix(index)?;
    Ok(ChainStart::Create(system::StoreCreated {
        store_id: uuid::Uuid::new_v4(),
        format_1_events: Some(prefix.events()),
        genesis: prefix.finish(),
        format_version: crate::log::format::FORMAT_VERSION,
        created_at: now,
    }))
}

/// The digest of a format-1 log's events (every record as it is now), computed once: the genesis of
/// the chain that continues it.
fn format_1_prefix(index: &Index) -> Result<chain::PrefixDigest, AppendError> {
    let mut prefix = chain::PrefixDigest::default();
    for position in 0..index.next_position() {
        let location = index
            .location(position)
            .map_err(index_failure)?
            .ok_or_else(|| index_failure(format!("position {position} of the format-1 log has no location")))?;
        let (header, content) =
            crate::read::event_digests_at(&index.segments, location, position).map_err(index_failure)?;
        prefix.push(&header, &content);
    }
    Ok(prefix)
}

fn is_store_created(event: &PendingEvent) -> bool {
    event.stream.as_str() == system::STORE_STREAM && event.event.event_type().as_str() == system::STORE_CREATED_TYPE
}

/// The committer's own append of `$store-created`; nobody waits for its answer.
fn store_created_request(created: &system::StoreCreated) -> Request {
    let stream = StreamId::new(system::STORE_STREAM).expect("a valid name");
    let event_type = EventType::new(system::STORE_CREATED_TYPE).expect("a valid type");
    let event = NewEvent::new(event_type, created.encode()).with_id(EventId::from_uuid(uuid::Uuid::new_v4()));
    Request {
        encoded_bytes: crate::log::format::record_encoded_len(&stream, &event),
        content_digests: vec![new_event_content_digest(&event)],
        events: vec![(stream, event)],
        carried_hashes: None,
        checks: Vec::new(),
        condition: None,
        client_ids: false,
        system: None,
        generated_id: None,
        recorded_times: Some(vec![created.created_at]),
        reply: Reply::Nobody,
    }
}

/// How often the committer asks again about a proposal whose outcome was unknown before it gives up
/// (and poisons the store: only a reopen can tell what the log holds).
const RESOLVE_ATTEMPTS_MAX: u32 = 5;

/// An fdatasync that takes longer than this is logged (at warn): a commit that slow means a disk in
/// trouble or a machine short of IO, and every append of the group waited for it.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The committer loop; returns when every `Store` handle is gone and the queue is drained.
/// `chain_head` is the hash of the log's last event (`None`: the log is empty, or format 1 only).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    shared: Arc<Shared>,
    mut ids: IdIndex,
    mut log: Box<dyn CommitLog>,
    mut queue: mpsc::Receiver<Work>,
    clock: Arc<dyn Clock>,
    frame_capacity_bytes: usize,
    indexer: crate::index::indexer::Handle,
    mut chain_head: Option<EventHash>,
) {
    let mut frame = FrameBuilder::default();
    // Requests taken from the queue but not decided yet: one that did not fit the last frame, or a
    // whole group to decide again after a conflict. They go before the queue, in order.
    let mut deferred: VecDeque<Work> = VecDeque::new();
    let retain = log.may_conflict();
    loop {
        let Some(work) = deferred.pop_front().or_else(|| queue.blocking_recv()) else {
            break;
        };
        let first = match work {
            Work::Append(request) => request,
            Work::Replicate(request) => {
                replicate(&shared, &mut *log, &mut ids, &indexer, &mut chain_head, request);
                continue;
            }
        };
        if let Some(reason) = shared.poisoned.get() {
            first.reply.send(Err(AppendError::Poisoned { reason: reason.clone() }));
            continue;
        }
        let index = shared.index.read().expect("index lock poisoned");
        let recorded_at = index.last_recorded_at().map_or(clock.now(), |last| last.max(clock.now()));
        // A log without a chain starts one with this group: `$store-created` comes first.
        let (previous, creation, created) = match chain_head {
            Some(head) => (head, None, None),
            None => match chain_start(&index, &first, recorded_at) {
                Ok(ChainStart::Adopt(created)) => (created.genesis, None, Some(created)),
                Ok(ChainStart::Create(created)) => {
                    (created.genesis, Some(store_created_request(&created)), Some(created))
                }
                Err(error) => {
                    drop(index);
                    first.reply.send(Err(error));
                    continue;
                }
            },
        };
        let mut group = Group::new(&index, &ids, &mut frame, recorded_at, previous);
        group.hashing_off = shared.hashing_off;
        // What deciding the group again after a conflict needs (the committer's own `$store-created`
        // is not kept: the next decision makes it again if the log still has no chain).
        let mut retained: Vec<Option<Request>> = Vec::new();
        let creation_admitted = creation.is_some();
        if let Some(creation) = creation {
            retained.push(None);
            group.admit(creation);
        }
        let mut frame_bytes = group.frame.len() + first.encoded_bytes;
        retained.push(retain.then(|| first.copy_without_reply()));
        group.admit(first);
        // A chain must start with `$store-created`: if an adopting import was refused, the group ends
        // here, so that no other append starts the chain without it.
        let chain_started = created.is_none() || group.events.first().is_some_and(is_store_created);
        while let Some(work) = chain_started.then(|| deferred.pop_front().or_else(|| queue.try_recv().ok())).flatten() {
            // A frame of the log goes after this group, in the order it came.
            let request = match work {
                Work::Append(request) => request,
                replicate @ Work::Replicate(_) => {
                    deferred.push_front(replicate);
                    break;
                }
            };
            frame_bytes += request.encoded_bytes;
            if frame_bytes > frame_capacity_bytes {
                deferred.push_front(Work::Append(request));
                break;
            }
            retained.push(retain.then(|| request.copy_without_reply()));
            group.admit(request);
        }
        let Group { first_position, events, replies, chain_head: group_head, .. } = group;
        drop(index);
        // `$store-created` goes with the store's first events, never alone: a store nothing was
        // appended to stays empty.
        let only_creation = creation_admitted && events.len() == 1;
        if events.is_empty() || only_creation {
            for (reply, outcome, _) in replies {
                reply.send(outcome);
            }
            continue;
        }
        let frame_bytes = frame.finish();
        let frame_len = frame_bytes.len() as u64;
        let proposed = Proposed { bytes: frame_bytes, first_position, previous };
        // While the disk syncs the frame, index its event ids (the committer's own map: readers never
        // look there, and if the sync fails the store is poisoned and never consults it again). A log
        // that can conflict gets them only once the frame is committed.
        let index_ids = |ids: &mut IdIndex| {
            for (at, event) in events.iter().enumerate() {
                // Client ids were checked at admission; generated ones are fresh UUIDv7s.
                ids.insert(event.id, first_position + at as u64).expect("event ids are unique");
            }
        };
        let sync_started = std::time::Instant::now();
        let mut proposal = log.propose(&proposed, &mut || {
            if !retain {
                index_ids(&mut ids);
            }
        });
        let sync_elapsed = sync_started.elapsed();
        shared.stats.fsync.record(sync_elapsed);
        if sync_elapsed > SLOW_COMMIT {
            let duration_ms = sync_elapsed.as_millis() as u64;
            tracing::warn!(
                duration_ms,
                events = events.len(),
                frame_bytes = frame_len,
                "slow commit (fdatasync over {SLOW_COMMIT:?})"
            );
        }
        // An unknown outcome is asked about again, a bounded number of times, before anything else.
        for _ in 0..RESOLVE_ATTEMPTS_MAX {
            if !matches!(proposal, Proposal::Unknown { .. }) {
                break;
            }
            proposal = log.resolve(&proposed);
        }
        match proposal {
            Proposal::Committed(written) => {
                if retain {
                    index_ids(&mut ids);
                }
                chain_head = Some(group_head);
                if let Some(created) = created.filter(|_| events.first().is_some_and(is_store_created)) {
                    let _ = shared.identity.set(created);
                }
                let mut index = shared.index.write().expect("index lock poisoned");
                if let Some(segment) = written.new_segment {
                    index.segments.push(segment);
                }
                // The committer computed all of this from the index itself: a mismatch is a bug that
                // would corrupt the indexes, so it stops the process rather than go on.
                let mut last_stream: Option<(&StreamId, u32)> = None;
                for (at, pending) in events.iter().enumerate() {
                    let stream = match last_stream {
                        Some((name, number)) if name == &pending.stream => number,
                        _ => index.stream_number(pending.stream.as_str(), pending.revision).expect("a valid stream id"),
                    };
                    last_stream = Some((&pending.stream, stream));
                    let record_offset = written.offset + pending.frame_offset as u64;
                    index
                        .push(
                            PushEvent {
                                position: first_position + at as u64,
                                revision: pending.revision,
                                stream,
                                id: pending.id,
                                event_type: pending.event.event_type().as_str(),
                                recorded_at: pending.recorded_at,
                                segment: written.segment,
                                offset: u32::try_from(record_offset).expect("segments are at most 4 GiB"),
                            },
                            pending.event.tags().iter().map(|tag| tag.as_str()),
                        )
                        .expect("the committer's events extend the index");
                    index
                        .apply_system_event(
                            pending.stream.as_str(),
                            pending.event.event_type().as_str(),
                            pending.event.data(),
                        )
                        .expect("the committer encodes system events itself");
                }
                publish(&shared, index, &indexer, &mut ids, &mut *log);
                let relaxed = std::sync::atomic::Ordering::Relaxed;
                shared.stats.commits.fetch_add(1, relaxed);
                shared.stats.events.fetch_add(events.len() as u64, relaxed);
                shared.stats.bytes.fetch_add(frame_len, relaxed);
                for (reply, outcome, _) in replies {
                    reply.send(outcome);
                }
            }
            Proposal::Conflict { frames } => {
                // Nothing of the group was committed: bring the local log up to the log's head, then
                // decide every request of the group again, in the same order, before anything new.
                let applied = frames.iter().try_for_each(|foreign| {
                    match apply_frame(&shared, &mut *log, &mut ids, &indexer, foreign, chain_head) {
                        Ok(head) => chain_head = Some(head),
                        // Not a frame continuing the chain: every replica skips it alike.
                        Err(ApplyError::Invalid(reason)) => {
                            shared.stats.frames_skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(%reason, "a message of the log that is not a frame continuing the chain was skipped");
                        }
                        Err(ApplyError::Storage(reason)) => return Err(reason),
                    }
                    Ok::<(), String>(())
                });
                log.caught_up(shared.index.read().expect("index lock poisoned").next_position());
                if let Err(reason) = applied {
                    // The log holds what this replica cannot apply: it must not decide on top of it.
                    let reason = format!("a frame of the log could not be applied: {reason}");
                    let _ = shared.poisoned.set(reason.clone());
                    for (reply, _, _) in replies {
                        reply.send(Err(AppendError::NotWritten { reason: reason.clone() }));
                    }
                    continue;
                }
                let again = retained.into_iter().zip(replies).filter_map(|(request, (reply, _, _))| {
                    request.map(|mut request| {
                        request.reply = reply;
                        request
                    })
                });
                for request in again.rev() {
                    deferred.push_front(Work::Append(request));
                }
            }
            Proposal::NotWritten(error) => {
                // Nothing of the frame reached the log, and the log is intact: answer, and let the
                // next group try to create the segment again.
                let reason = poison_reason(&error);
                tracing::error!(%reason, events = events.len(), "a frame was not written; its appends were refused");
                for (reply, outcome, independent) in replies {
                    let not_written = || Err(AppendError::NotWritten { reason: reason.clone() });
                    reply.send(if independent { outcome } else { not_written() });
                }
            }
            // After a failed write or fdatasync the state of the file is unknown (the page cache may
            // have dropped the dirty pages), and so is an outcome the log would not tell: refuse all
            // further writes until the store is reopened and recovery has read back what is there.
            Proposal::Failed(error) => poison(&shared, replies, poison_reason(&error)),
            // A log with other writers keeps the attempt and settles it before anything new is
            // decided (it answers the next proposal with a conflict holding the frame, if it landed):
            // this group hears "unknown", and the store goes on. Nothing of the group was applied here.
            Proposal::Unknown { reason } if retain => {
                let reason = format!("the log did not say whether the frame was committed: {reason}");
                tracing::warn!(%reason, events = events.len(), "appends answered outcome unknown");
                for (reply, outcome, independent) in replies {
                    let unknown = || Err(AppendError::OutcomeUnknown { reason: reason.clone() });
                    reply.send(if independent { outcome } else { unknown() });
                }
            }
            Proposal::Unknown { reason } => {
                poison(&shared, replies, format!("the log did not say whether the frame was committed: {reason}"))
            }
        }
    }
    // The indexer writes the tail as a run once this thread is gone: over durable frames only.
    if let Err(error) = log.sync_local() {
        let reason = format!("the local copy of the log could not be synced at close: {error}");
        tracing::error!(%reason, "the last index run is not written");
        let _ = shared.poisoned.set(reason);
    }
    log.finish();
}

/// Refuses every later write (the store is poisoned) and answers the group: an outcome decided on
/// committed state alone stays true, every other is unknown.
fn poison(shared: &Shared, replies: Vec<(Reply, AppendReply, bool)>, reason: String) {
    let _ = shared.poisoned.set(reason.clone());
    tracing::error!(%reason, appends = replies.len(), "the store is poisoned: writes are refused until it is reopened");
    for (reply, outcome, independent) in replies {
        let unknown = || Err(AppendError::OutcomeUnknown { reason: reason.clone() });
        reply.send(if independent { outcome } else { unknown() });
    }
}

/// Makes what the index now holds visible: hands a full tail to the indexer (its ids become the
/// previous generation) and wakes the subscriptions.
///
/// An index run is written only over frames the local log holds durably: a replica's frames are not
/// synced one by one (the replicated log is their durable copy), so the log is synced before a full
/// tail goes to the indexer. Were a run to cover frames a power loss then took, their damage would
/// lie under the runs, where recovery does not read.
fn publish<'a>(
    shared: &'a Shared,
    mut index: std::sync::RwLockWriteGuard<'a, Index>,
    indexer: &crate::index::indexer::Handle,
    ids: &mut IdIndex,
    log: &mut dyn CommitLog,
) {
    let next_position = index.next_position();
    if index.tail_is_full(indexer.run_events) {
        // Readers go on meanwhile: only this thread changes the index.
        drop(index);
        let synced = log.sync_local();
        index = shared.index.write().expect("index lock poisoned");
        match synced {
            Ok(()) => {
                if let Some(frozen) = index.freeze(indexer.run_events) {
                    ids.rotate();
                    indexer.send(frozen);
                }
            }
            Err(error) => {
                let reason = format!("the local copy of the log could not be synced: {error}");
                tracing::error!(%reason, "the store is poisoned: it writes nothing more until it is reopened");
                let _ = shared.poisoned.set(reason);
            }
        }
    }
    drop(index);
    shared.next_position.send_replace(next_position);
}

/// Why a frame from the log was not applied.
#[derive(Debug)]
pub(crate) enum ApplyError {
    /// It is not a frame continuing the local log: nothing was written (every replica skips it).
    Invalid(String),
    /// Writing it to the local copy failed: the local log's state is unknown.
    Storage(String),
}

/// Applies a message of the replicated log at `request.sequence` and answers the request.
fn replicate(
    shared: &Shared,
    log: &mut dyn CommitLog,
    ids: &mut IdIndex,
    indexer: &crate::index::indexer::Handle,
    chain_head: &mut Option<EventHash>,
    request: ReplicateRequest,
) {
    if let Some(reason) = shared.poisoned.get() {
        let _ = request.reply.send(Err(AppendError::Poisoned { reason: reason.clone() }));
        return;
    }
    let answer = match apply_frame(shared, log, ids, indexer, &request.frame, *chain_head) {
        Ok(head) => {
            *chain_head = Some(head);
            let (first_position, last_position) = frame_positions(&request.frame);
            log.replicated(request.sequence, Some(last_position + 1));
            Ok(Replicated::Applied { first_position, last_position })
        }
        Err(ApplyError::Invalid(reason)) => {
            shared.stats.frames_skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(sequence = request.sequence, %reason, "a message of the log that is not a frame continuing the chain was skipped");
            log.replicated(request.sequence, None);
            Ok(Replicated::Skipped { reason })
        }
        Err(ApplyError::Storage(reason)) => {
            let reason = format!("a frame of the log could not be written to the local replica: {reason}");
            let _ = shared.poisoned.set(reason.clone());
            tracing::error!(%reason, "the replica is poisoned: it applies nothing more until it is reopened");
            Err(AppendError::Poisoned { reason })
        }
    };
    let _ = request.reply.send(answer);
}

/// The first and last position of a frame `apply_frame` accepted.
fn frame_positions(frame: &[u8]) -> (u64, u64) {
    match crate::log::format::decode_frame(frame) {
        Ok((crate::log::format::FrameBody::Commit { first_position, event_count, .. }, _)) => {
            (first_position, first_position + u64::from(event_count) - 1)
        }
        _ => unreachable!("an applied frame is a commit frame"),
    }
}

/// Applies a frame another writer committed to the log, exactly as recovery reads one: it must
/// continue the local log (its first position, the hash it follows, each stream's revisions, fresh
/// event ids, times that do not go back), its records must check out and link — all checked before
/// anything is written — and then it is written to the local copy and indexed. Returns the new
/// chain head.
fn apply_frame(
    shared: &Shared,
    log: &mut dyn CommitLog,
    ids: &mut IdIndex,
    indexer: &crate::index::indexer::Handle,
    frame: &[u8],
    chain_head: Option<EventHash>,
) -> Result<EventHash, ApplyError> {
    let invalid = ApplyError::Invalid;
    let (body, keys) = crate::log::format::decode_frame(frame).map_err(invalid)?;
    let crate::log::format::FrameBody::Commit { first_position, previous, .. } = body else {
        return Err(invalid("a seal frame is not a commit".to_owned()));
    };
    let Some(previous) = previous else {
        return Err(invalid("a format-1 frame cannot continue the chain".to_owned()));
    };
    {
        let index = shared.index.read().expect("index lock poisoned");
        let next = index.next_position();
        if first_position != next {
            return Err(invalid(format!("the frame starts at position {first_position}, the local log at {next}")));
        }
        match chain_head {
            Some(head) if head != previous => {
                return Err(invalid(format!(
                    "the frame follows {previous}, the local log ends at {head}: another history"
                )));
            }
            Some(_) => {}
            None => check_chain_start(&index, &keys, &previous).map_err(invalid)?,
        }
        check_records_continue(&index, ids, &keys).map_err(invalid)?;
    }
    let head = keys.last().and_then(|key| key.chain.hash()).expect("a checked commit frame holds chained records");
    let written = log.apply(frame, first_position).map_err(|error| ApplyError::Storage(error.to_string()))?;
    let mut index = shared.index.write().expect("index lock poisoned");
    if let Some(segment) = written.new_segment {
        index.segments.push(segment);
    }
    let payload = &frame[crate::log::format::FRAME_HEADER_BYTES..];
    // Checked above: a failure here is a bug that would leave the indexes behind the local log.
    for (key, record) in keys.iter().zip(crate::log::format::FrameRecords::new(payload)) {
        let (record_offset, _) = record.expect("a checked frame's records");
        let stream = index.stream_number_checked(key.stream, key.revision).expect("checked before writing");
        let at = written.offset + (crate::log::format::FRAME_HEADER_BYTES + record_offset) as u64;
        index.push_record(ids, key, stream, written.segment, at).expect("checked before writing");
        if key.stream == system::STORE_STREAM && key.event_type == system::STORE_CREATED_TYPE {
            if let Ok(created) = system::StoreCreated::decode(key.data) {
                let _ = shared.identity.set(created);
            }
        }
    }
    publish(shared, index, indexer, ids, log);
    Ok(head)
}

/// A log without a chain yet takes, as its first chained frame, only one that opens with a
/// `$store-created` naming the genesis the frame follows (on an empty log, at position 0; after a
/// format-1 prefix, with the prefix's digest — checked by the first-position rule and recovery).
fn check_chain_start(
    index: &Index,
    keys: &[crate::log::format::RecordKey<'_>],
    previous: &EventHash,
) -> Result<(), String> {
    let first = keys.first().ok_or("an empty frame")?;
    if first.stream != system::STORE_STREAM || first.event_type != system::STORE_CREATED_TYPE {
        return Err(format!(
            "the log has no chain yet and the frame does not open with {}",
            system::STORE_CREATED_TYPE
        ));
    }
    let created = system::StoreCreated::decode(first.data)?;
    if created.genesis != *previous {
        return Err(format!(
            "its {} names genesis {}, the frame follows {previous}",
            system::STORE_CREATED_TYPE,
            created.genesis
        ));
    }
    if index.next_position() > 0 && created.format_1_events != Some(index.next_position()) {
        return Err(format!(
            "its {} covers {:?} format-1 events, the local log holds {}",
            system::STORE_CREATED_TYPE,
            created.format_1_events,
            index.next_position()
        ));
    }
    Ok(())
}

/// Each record of a foreign frame continues its stream, has an id the log has not used, and a time
/// that does not go back: what indexing it will require, checked before anything is written.
fn check_records_continue(
    index: &Index,
    ids: &IdIndex,
    keys: &[crate::log::format::RecordKey<'_>],
) -> Result<(), String> {
    let mut heads: FastMap<&str, u64> = FastMap::default();
    let mut fresh: FastMap<EventId, ()> = FastMap::default();
    let mut last_time = index.last_recorded_at();
    for key in keys {
        let expected = match heads.get(key.stream) {
            Some(next) => *next,
            None => index
                .stream_head(key.stream)
                .map_err(|error| format!("reading the index runs failed: {error}"))?
                .map_or(0, |head| head.value() + 1),
        };
        if key.revision != expected {
            return Err(format!(
                "position {}: stream {} continues at revision {}, expected {expected}",
                key.position, key.stream, key.revision
            ));
        }
        heads.insert(key.stream, expected + 1);
        let known = ids.get(&key.id).is_some()
            || index.run_id(&key.id).map_err(|error| format!("reading the index runs failed: {error}"))?.is_some();
        if known || fresh.insert(key.id, ()).is_some() {
            return Err(format!("position {}: event id {} is used already", key.position, key.id));
        }
        if last_time.is_some_and(|last| key.recorded_at < last) {
            return Err(format!("position {}: its recorded time goes back", key.position));
        }
        // Indexing applies system events: one that does not decode must be refused here.
        if key.stream == system::SYSTEM_STREAM {
            system::decode(key.event_type, key.data).map_err(|error| format!("position {}: {error}", key.position))?;
        }
        if key.stream == system::STORE_STREAM && key.event_type == system::STORE_CREATED_TYPE {
            system::StoreCreated::decode(key.data).map_err(|error| format!("position {}: {error}", key.position))?;
        }
        last_time = Some(key.recorded_at);
    }
    Ok(())
}
