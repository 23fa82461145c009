//! The indexes: position → record location and time, stream → revisions, event id → position,
//! category / event type / tag → positions, and the system state (stream metadata, deletes).
//!
//! They live in levels, oldest positions first:
//! - **runs** ([`Run`], `run.rs`): immutable files under `index/`, each covering a range of positions,
//!   read on demand — only a small summary of each is in memory;
//! - the **frozen** memtable: a full in-memory tail handed to the indexer thread, which writes it as
//!   a run (it stays readable here until the run replaces it);
//! - the **tail** memtable: the positions committed since, extended by the committer after each commit.
//!
//! A store opens by loading its runs' summaries and reading only the log past the last run, so opening
//! costs the same for ten events and ten million; memory holds the tail (at most about two runs'
//! worth of events, [`crate::Options::index_run_events`]) plus per run a checksum per 4 KiB block,
//! the first key and id of each block and Bloom filters — about 2 bytes per event all told.
//!
//! Growth never stalls commits for long: the committer extends the tail under the index's write lock
//! in fixed-size chunks (never a reallocating copy of a whole table). The event-id map ([`IdIndex`])
//! of the memtables is the committer's alone — readers never need it.

pub(crate) mod indexer;
pub(crate) mod run;

use crate::error::StorageError;
use crate::index::run::{KeyEntry, KeyIter, KeyKind, KeyVisitor, Run, RunList, RunSource};
use crate::io::StorageFile;
use crate::system::{self, SystemChange};
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use strata_core::{EventId, Position, StreamId, StreamMetadata, StreamRevision, Timestamp};

pub(crate) use crate::index::run::Location;

/// Seeded per process, so ids chosen by clients cannot be aimed at one hash bucket.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

const ID_SHARDS: usize = 64;
const LOCATION_CHUNK: usize = 1 << 16;

/// One stream's revisions in a memtable.
#[derive(Debug)]
pub(crate) struct StreamEntry {
    pub id: StreamId,
    /// The revision of the stream's first event in this memtable.
    pub base_revision: u64,
    /// Position of each revision from `base_revision` on: `positions.get(r - base_revision)`.
    /// Strictly increasing; chunked, so a stream of millions of events never moves as it grows.
    pub positions: Postings,
}

/// A segment file readers may read from.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub file: Arc<dyn StorageFile>,
    pub path: PathBuf,
    pub len_bytes: u64,
    /// The position of the segment's first event (from its header).
    pub first_position: u64,
}

/// Stream metadata, soft deletes and tombstones, from the events of the system stream. Held whole in
/// memory (it grows with the streams that have metadata or were deleted, not with events) and saved
/// in every run as of the run's end.
#[derive(Debug, Default, Clone)]
pub(crate) struct SystemState {
    metadata: FastMap<String, StreamMetadata>,
    /// Soft deletes: the revision before which a stream reads as deleted. Kept apart from the
    /// metadata, so that setting metadata later cannot bring deleted events back.
    deleted_before: FastMap<String, u64>,
    tombstoned: FastMap<String, ()>,
}

const STATE_METADATA: u8 = 1;
const STATE_DELETED: u8 = 2;
const STATE_TOMBSTONE: u8 = 3;

impl SystemState {
    /// Applies an event of the system stream; other events are ignored. An error when its data does
    /// not decode (recovery reports corruption).
    pub fn apply(&mut self, stream: &str, event_type: &str, data: &[u8]) -> Result<(), String> {
        if stream != system::SYSTEM_STREAM {
            return Ok(());
        }
        match system::decode(event_type, data)? {
            None => {}
            Some(SystemChange::Metadata { stream, metadata }) => {
                self.metadata.insert(stream, metadata);
            }
            Some(SystemChange::Deleted { stream, truncate_before }) => {
                let before = self.deleted_before.entry(stream).or_default();
                *before = (*before).max(truncate_before);
            }
            Some(SystemChange::Tombstone { stream }) => {
                self.tombstoned.insert(stream, ());
            }
        }
        Ok(())
    }

    /// `kind u8 | len u32 | system event data` per entry, the data as the system stream encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut entry = |kind: u8, data: Vec<u8>| {
            out.push(kind);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&data);
        };
        for (stream, metadata) in &self.metadata {
            entry(STATE_METADATA, system::encode_metadata(stream, metadata));
        }
        for (stream, &before) in &self.deleted_before {
            entry(STATE_DELETED, system::encode_deleted(stream, before));
        }
        for stream in self.tombstoned.keys() {
            entry(STATE_TOMBSTONE, system::encode_tombstone(stream));
        }
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<Self, String> {
        let mut state = SystemState::default();
        while !bytes.is_empty() {
            if bytes.len() < 5 {
                return Err("system state cut short".to_owned());
            }
            let kind = bytes[0];
            let len = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes")) as usize;
            let data = bytes.get(5..5 + len).ok_or("system state cut short")?;
            let event_type = match kind {
                STATE_METADATA => system::METADATA_TYPE,
                STATE_DELETED => system::DELETED_TYPE,
                STATE_TOMBSTONE => system::TOMBSTONE_TYPE,
                _ => return Err(format!("unknown system state entry {kind}")),
            };
            state.apply(system::SYSTEM_STREAM, event_type, data)?;
            bytes = &bytes[5 + len..];
        }
        Ok(state)
    }
}

/// Event id → position of the events in the memtables (and, in the committer, of the group being
/// committed), for idempotent retries and unique ids: `current` for the tail, `previous` for the
/// frozen memtable until its run is installed. Older ids are found in the runs.
#[derive(Debug, Default)]
pub(crate) struct IdIndex {
    current: IdMap,
    previous: IdMap,
}

#[derive(Debug)]
struct IdMap {
    shards: Box<[FastMap<EventId, u64>]>,
    /// Picks the shard. Seeded, because clients choose id bytes and could otherwise crowd one shard.
    shard_hasher: foldhash::fast::RandomState,
}

impl Default for IdMap {
    fn default() -> Self {
        Self {
            shards: (0..ID_SHARDS).map(|_| FastMap::default()).collect(),
            shard_hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl IdMap {
    fn shard(&self, id: &EventId) -> usize {
        use std::hash::BuildHasher;
        (self.shard_hasher.hash_one(id) >> 58) as usize % ID_SHARDS
    }
}

impl IdIndex {
    pub fn get(&self, id: &EventId) -> Option<u64> {
        [&self.current, &self.previous].into_iter().find_map(|map| map.shards[map.shard(id)].get(id).copied())
    }

    /// Records `id` at `position`; an error when the id is known already.
    pub fn insert(&mut self, id: EventId, position: u64) -> Result<(), String> {
        if self.previous.shards[self.previous.shard(&id)].contains_key(&id) {
            return Err(format!("event id {id} at position {position} is used twice"));
        }
        let shard = self.current.shard(&id);
        match self.current.shards[shard].insert(id, position) {
            None => Ok(()),
            Some(_) => Err(format!("event id {id} at position {position} is used twice")),
        }
    }

    /// The tail was frozen: its ids become the previous generation; the generation before (whose run
    /// is installed, or the tail could not have been frozen) is dropped.
    pub fn rotate(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

/// Where a committed event id lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdEntry {
    pub stream: StreamId,
    pub revision: StreamRevision,
    pub position: Position,
}

/// One event to index, in a stream resolved by [`Index::stream_number`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushEvent<'a> {
    pub position: u64,
    pub revision: u64,
    pub stream: u32,
    pub id: EventId,
    pub event_type: &'a str,
    pub recorded_at: Timestamp,
    pub segment: u32,
    pub offset: u32,
}

/// The in-memory indexes of the positions `base..len`.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    base: u64,
    len: u64,
    /// Location and stream number of each position.
    locations: Vec<Box<[(Location, u32)]>>,
    ids: Chunked<EventId>,
    streams: Chunked<StreamEntry>,
    stream_numbers: FastMap<StreamId, u32>,
    /// The names of the streams with events here, sorted, for listings by prefix.
    stream_names: BTreeSet<StreamId>,
    /// Where recorded time changes: `(first position, time)`, times non-decreasing. One entry per
    /// commit group at most (a group shares one time), so "as of a time" is a binary search.
    times: Chunked<(u64, Timestamp)>,
    /// Secondary indexes for filtered reads: positions, ascending, per category, event type and tag.
    categories: FastMap<String, Postings>,
    event_types: FastMap<String, Postings>,
    tags: FastMap<String, Postings>,
}

impl Memtable {
    fn new(base: u64) -> Self {
        Self { base, len: base, ..Self::default() }
    }

    fn is_empty(&self) -> bool {
        self.len == self.base
    }

    fn location(&self, position: u64) -> (Location, u32) {
        let at = (position - self.base) as usize;
        self.locations[at / LOCATION_CHUNK][at % LOCATION_CHUNK]
    }

    fn recorded_at(&self, position: u64) -> Timestamp {
        let at = self.times.partition_point(|&(first_position, _)| first_position <= position);
        self.times.get(at.checked_sub(1).expect("a committed position has a time")).expect("within the table").1
    }

    /// The last position here recorded at or before `time`.
    fn position_at(&self, time: Timestamp) -> Option<u64> {
        let after = self.times.partition_point(|&(_, recorded_at)| recorded_at <= time);
        let end = self.times.get(after).map_or(self.len, |&(first_position, _)| first_position);
        (after > 0).then(|| end - 1)
    }

    fn stream(&self, stream: &str) -> Option<(u32, &StreamEntry)> {
        let &number = self.stream_numbers.get(stream)?;
        Some((number, self.streams.get(number as usize).expect("a known stream number")))
    }

    fn stream_entry(&self, number: u32) -> &StreamEntry {
        self.streams.get(number as usize).expect("a known stream number")
    }

    fn lists(&self, kind: KeyKind) -> &FastMap<String, Postings> {
        match kind {
            KeyKind::Category => &self.categories,
            KeyKind::EventType => &self.event_types,
            KeyKind::Tag => &self.tags,
            KeyKind::Stream => unreachable!("streams have entries, not lists"),
        }
    }

    fn describe(&self, position: u64) -> IdEntry {
        let (_, number) = self.location(position);
        let entry = self.stream_entry(number);
        let at = entry.positions.partition_point(|p| p < position);
        assert_eq!(entry.positions.get(at), Some(position), "an indexed event is in its stream");
        IdEntry {
            stream: entry.id.clone(),
            revision: StreamRevision::new(entry.base_revision + at as u64),
            position: Position::new(position),
        }
    }
}

/// A memtable handed to the indexer, with the system state as of its end.
#[derive(Debug)]
pub(crate) struct Frozen {
    pub mem: Memtable,
    pub system: SystemState,
}

/// One level's share of a stream's revisions.
#[derive(Debug, Clone)]
struct StreamPart {
    base: u64,
    count: u64,
    last: u64,
    source: PartSource,
}

#[derive(Debug, Clone)]
enum PartSource {
    Run(Arc<Run>, KeyEntry),
    Frozen(Arc<Frozen>, u32),
    Tail(u32),
}

/// A stream's revisions across the levels, found under the index lock and valid only under it.
#[derive(Debug)]
pub(crate) struct StreamRef {
    pub id: StreamId,
    parts: Vec<StreamPart>,
}

impl StreamRef {
    /// How many revisions the stream has (its last revision plus one).
    pub fn revisions(&self) -> u64 {
        self.parts.last().map_or(0, |part| part.base + part.count)
    }

    pub fn last_position(&self) -> u64 {
        self.parts.last().expect("a stream has events").last
    }
}

/// Everything committed, and nothing else: readers see exactly the events below `next_position()`.
///
/// # Invariants
/// The runs, the frozen memtable and the tail cover `0..next_position()` contiguously, in that
/// order; every stream's revisions are dense across them, its positions strictly increasing.
#[derive(Debug, Default)]
pub(crate) struct Index {
    runs: Vec<Arc<Run>>,
    frozen: Option<Arc<Frozen>>,
    tail: Memtable,
    system: SystemState,
    /// Counts the system events applied since open: the scavenger checks that what it decided from
    /// the system state still holds when it swaps files in.
    system_version: u64,
    last_recorded_at: Option<Timestamp>,
    pub segments: Vec<SegmentFile>,
}

/// Where a position's indexes are.
enum Level<'a> {
    Run(&'a Arc<Run>),
    Mem(&'a Memtable),
}

impl Index {
    /// An index whose runs cover `0..end` of the log, with the system state as of `end`.
    pub fn with_runs(runs: Vec<Arc<Run>>, system: SystemState) -> Self {
        let end = runs.last().map_or(0, |run| run.end);
        let last_recorded_at = runs.last().map(|run| run.last_time);
        Self { runs, tail: Memtable::new(end), system, last_recorded_at, ..Self::default() }
    }

    pub fn next_position(&self) -> u64 {
        self.tail.len
    }

    pub fn last_recorded_at(&self) -> Option<Timestamp> {
        self.last_recorded_at
    }

    pub fn runs(&self) -> &[Arc<Run>] {
        &self.runs
    }

    fn level(&self, position: u64) -> Level<'_> {
        if position >= self.tail.base {
            return Level::Mem(&self.tail);
        }
        if let Some(frozen) = self.frozen.as_ref().filter(|frozen| position >= frozen.mem.base) {
            return Level::Mem(&frozen.mem);
        }
        let at = self.runs.partition_point(|run| run.end <= position);
        Level::Run(&self.runs[at])
    }

    /// The last position recorded at or before `time`, or `None` if nothing was.
    pub fn position_at(&self, time: Timestamp) -> Result<Option<u64>, StorageError> {
        for mem in [Some(&self.tail), self.frozen.as_ref().map(|frozen| &frozen.mem)].into_iter().flatten() {
            if let Some(position) = mem.position_at(time) {
                return Ok(Some(position));
            }
        }
        for run in self.runs.iter().rev() {
            if let Some(position) = run.position_at(time)? {
                return Ok(Some(position));
            }
        }
        Ok(None)
    }

    /// The recorded time of a committed position.
    pub fn recorded_at(&self, position: u64) -> Result<Timestamp, StorageError> {
        match self.level(position) {
            Level::Mem(mem) => Ok(mem.recorded_at(position)),
            Level::Run(run) => run.position(position).map(|(_, time)| time),
        }
    }

    pub fn location(&self, position: u64) -> Result<Option<Location>, StorageError> {
        if position >= self.next_position() {
            return Ok(None);
        }
        match self.level(position) {
            Level::Mem(mem) => Ok(Some(mem.location(position).0)),
            Level::Run(run) => run.position(position).map(|(location, _)| Some(location)),
        }
    }

    /// The locations of `range` (which must lie within `0..next_position()`), appended to `out`.
    pub fn copy_locations(
        &self,
        range: std::ops::Range<u64>,
        out: &mut Vec<(u64, Location)>,
    ) -> Result<(), StorageError> {
        assert!(range.end <= self.next_position(), "locations past the head");
        let mut position = range.start;
        while position < range.end {
            match self.level(position) {
                Level::Run(run) => {
                    let end = range.end.min(run.end);
                    run.positions(position..end, &mut |p, location, _| out.push((p, location)))?;
                    position = end;
                }
                Level::Mem(mem) => {
                    let at = (position - mem.base) as usize;
                    let chunk = &mem.locations[at / LOCATION_CHUNK];
                    let start = at % LOCATION_CHUNK;
                    let take = (LOCATION_CHUNK - start).min((range.end.min(mem.len) - position) as usize);
                    out.extend(chunk[start..start + take].iter().enumerate().map(|(i, l)| (position + i as u64, l.0)));
                    position += take as u64;
                }
            }
        }
        Ok(())
    }

    /// Applies an event of the system stream (metadata, soft delete, tombstone).
    pub fn apply_system_event(&mut self, stream: &str, event_type: &str, data: &[u8]) -> Result<(), String> {
        if stream == system::SYSTEM_STREAM {
            self.system_version += 1;
        }
        self.system.apply(stream, event_type, data)
    }

    pub fn system_version(&self) -> u64 {
        self.system_version
    }

    /// The position where the runs end: everything below is in files.
    pub fn runs_end(&self) -> u64 {
        self.runs.last().map_or(0, |run| run.end)
    }

    /// Replaces one run by another covering the same positions (the scavenger's).
    pub fn replace_run(&mut self, old: &Arc<Run>, new: Arc<Run>) {
        let at = self.runs.iter().position(|run| Arc::ptr_eq(run, old)).expect("the replaced run is installed");
        assert_eq!((new.start, new.end), (old.start, old.end), "a replacement covers the same positions");
        self.runs[at] = new;
    }

    pub fn metadata(&self, stream: &str) -> Option<&StreamMetadata> {
        self.system.metadata.get(stream)
    }

    pub fn is_tombstoned(&self, stream: &str) -> bool {
        self.system.tombstoned.contains_key(stream)
    }

    /// `stream`'s revisions across the levels, or `None` when it has no events.
    pub fn stream(&self, stream: &str) -> Result<Option<StreamRef>, StorageError> {
        let mut parts = Vec::new();
        if let Some((number, entry)) = self.tail.stream(stream) {
            parts.push(mem_part(entry, PartSource::Tail(number)));
        }
        if let Some(frozen) = &self.frozen
            && let Some((number, entry)) = frozen.mem.stream(stream)
        {
            parts.push(mem_part(entry, PartSource::Frozen(frozen.clone(), number)));
        }
        for run in self.runs.iter().rev() {
            // Revision 0 found: older runs cannot have the stream.
            if parts.last().is_some_and(|part| part.base == 0) {
                break;
            }
            if let Some(entry) = run.key(KeyKind::Stream, stream)? {
                parts.push(StreamPart {
                    base: entry.base,
                    count: entry.count,
                    last: entry.last,
                    source: PartSource::Run(run.clone(), entry),
                });
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        parts.reverse();
        let id = StreamId::new(stream).expect("an indexed stream has a valid name");
        Ok(Some(StreamRef { id, parts }))
    }

    /// The last revision of `stream`, or `None` when it has no events.
    pub fn stream_head(&self, stream: &str) -> Result<Option<StreamRevision>, StorageError> {
        let last = |base: u64, count: u64| Some(StreamRevision::new(base + count - 1));
        if let Some((_, entry)) = self.tail.stream(stream) {
            return Ok(last(entry.base_revision, entry.positions.len() as u64));
        }
        if let Some((_, entry)) = self.frozen.as_ref().and_then(|frozen| frozen.mem.stream(stream)) {
            return Ok(last(entry.base_revision, entry.positions.len() as u64));
        }
        for run in self.runs.iter().rev() {
            if let Some(entry) = run.key(KeyKind::Stream, stream)? {
                return Ok(last(entry.base, entry.count));
            }
        }
        Ok(None)
    }

    /// The positions and locations of `stream`'s revisions `range`, appended to `out`.
    pub fn stream_positions(
        &self,
        stream: &StreamRef,
        range: std::ops::Range<u64>,
        out: &mut Vec<(u64, Location)>,
    ) -> Result<(), StorageError> {
        for part in &stream.parts {
            let start = range.start.max(part.base);
            let end = range.end.min(part.base + part.count);
            if start >= end {
                continue;
            }
            let (from, to) = (start - part.base, end - part.base);
            match &part.source {
                PartSource::Run(run, entry) => run.stream_postings(entry, from..to, &mut |p, l| out.push((p, l)))?,
                PartSource::Frozen(frozen, number) => mem_positions(&frozen.mem, *number, from..to, out),
                PartSource::Tail(number) => mem_positions(&self.tail, *number, from..to, out),
            }
        }
        Ok(())
    }

    /// The position of `stream`'s `revision` (which it must have).
    pub fn stream_position(&self, stream: &StreamRef, revision: u64) -> Result<u64, StorageError> {
        let mut out = Vec::with_capacity(1);
        self.stream_positions(stream, revision..revision + 1, &mut out)?;
        Ok(out.first().expect("a revision of the stream").0)
    }

    /// How many of `stream`'s revisions, from the first, have positions for which `before` holds
    /// (it holds for a prefix of them), like `slice::partition_point`.
    pub fn stream_partition_point(
        &self,
        stream: &StreamRef,
        before: impl Fn(u64) -> Result<bool, StorageError>,
    ) -> Result<u64, StorageError> {
        for part in &stream.parts {
            if before(part.last)? {
                continue;
            }
            let (mut low, mut high) = (part.base, part.base + part.count - 1);
            // Invariant: `before` fails at `high`; everything below `low` satisfies it.
            while low < high {
                let middle = low + (high - low) / 2;
                if before(self.stream_position(stream, middle)?)? {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            return Ok(low);
        }
        Ok(stream.revisions())
    }

    /// The first revision of `stream` that reads show at time `now`: after a soft delete, and under
    /// its metadata as it is today (also for reads as of the past).
    pub fn first_visible_revision(&self, stream: &StreamRef, now: Timestamp) -> Result<u64, StorageError> {
        let revisions = stream.revisions();
        let name = stream.id.as_str();
        let deleted_before = self.system.deleted_before.get(name).copied().unwrap_or(0);
        let Some(metadata) = self.system.metadata.get(name) else { return Ok(deleted_before.min(revisions)) };
        let mut first = metadata.truncate_before.map_or(0, StreamRevision::value).max(deleted_before);
        if let Some(max_count) = metadata.max_count {
            first = first.max(revisions.saturating_sub(max_count));
        }
        if let Some(max_age) = metadata.max_age_seconds {
            let cutoff =
                now.as_micros().saturating_sub(i64::try_from(max_age.saturating_mul(1_000_000)).unwrap_or(i64::MAX));
            let young = self.stream_partition_point(stream, |p| Ok(self.recorded_at(p)?.as_micros() < cutoff))?;
            first = first.max(young);
        }
        Ok(first.min(revisions))
    }

    /// The position of a committed event id found in the runs (the committer's [`IdIndex`] has the rest).
    pub fn run_id(&self, id: &EventId) -> Result<Option<u64>, StorageError> {
        for run in self.runs.iter().rev() {
            if let Some(position) = run.id(id)? {
                return Ok(Some(position));
            }
        }
        Ok(None)
    }

    /// The stream and revision of the event at a committed `position`. For a position in a run, the
    /// record is read from the log.
    pub fn describe(&self, position: u64) -> Result<IdEntry, crate::error::ReadError> {
        match self.level(position) {
            Level::Mem(mem) => Ok(mem.describe(position)),
            Level::Run(run) => {
                let (location, _) = run.position(position)?;
                let event = crate::read::read_event_at(&self.segments, location, position)?;
                Ok(IdEntry { stream: event.stream, revision: event.revision, position: event.position })
            }
        }
    }

    /// The name of the stream of the event at a committed `position`.
    pub fn stream_name_at(&self, position: u64) -> Result<StreamId, crate::error::ReadError> {
        match self.level(position) {
            Level::Mem(mem) => Ok(mem.stream_entry(mem.location(position).1).id.clone()),
            Level::Run(_) => self.describe(position).map(|entry| entry.stream),
        }
    }

    /// The position lists of a category, event type or tag, one per level that has it.
    pub fn lists(&self, kind: KeyKind, name: &str) -> Result<Vec<PostingList<'_>>, StorageError> {
        let mut lists = Vec::new();
        for run in &self.runs {
            if let Some(entry) = run.key(kind, name)? {
                lists.push(PostingList::Run(RunList::new(run.clone(), kind, entry)));
            }
        }
        for mem in [self.frozen.as_ref().map(|frozen| &frozen.mem), Some(&self.tail)].into_iter().flatten() {
            let list = match kind {
                KeyKind::Stream => mem.stream(name).map(|(_, entry)| &entry.positions),
                _ => mem.lists(kind).get(name),
            };
            lists.extend(list.map(PostingList::Mem));
        }
        Ok(lists)
    }

    /// Names of streams with events, in byte order, from `start` on.
    pub fn stream_names(&self, start: Bound<&str>) -> StreamNames<'_> {
        let from = match start {
            Bound::Included(name) | Bound::Excluded(name) => name,
            Bound::Unbounded => "",
        };
        let mut sources: Vec<NameSource<'_>> =
            self.runs.iter().map(|run| NameSource::Run(run.keys_from(KeyKind::Stream, from))).collect();
        for mem in [self.frozen.as_ref().map(|frozen| &frozen.mem), Some(&self.tail)].into_iter().flatten() {
            let range = mem.stream_names.range::<str, _>((start, Bound::Unbounded));
            sources.push(NameSource::Mem(Box::new(range.map(|name| name.as_str().to_owned()))));
        }
        let excluded = match start {
            Bound::Excluded(name) => Some(name.to_owned()),
            _ => None,
        };
        StreamNames { heads: vec![None; sources.len()], sources, started: false, excluded }
    }

    /// The number of `stream` in the tail, registering it there if it is new with `base_revision` as
    /// the revision of its first event here. `stream` is copied (never kept as a slice of a read
    /// buffer, which it would pin in memory).
    pub fn stream_number(&mut self, stream: &str, base_revision: u64) -> Result<u32, String> {
        let tail = &mut self.tail;
        if let Some(&number) = tail.stream_numbers.get(stream) {
            return Ok(number);
        }
        let id = StreamId::new(stream).map_err(|error| format!("invalid stream id: {error}"))?;
        let number = u32::try_from(tail.streams.len()).map_err(|_| "more than 2^32 streams".to_owned())?;
        tail.streams.push(StreamEntry { id: id.clone(), base_revision, positions: Postings::default() });
        tail.stream_names.insert(id.clone());
        tail.stream_numbers.insert(id, number);
        Ok(number)
    }

    /// [`Index::stream_number`], checking (for a stream new to the tail) that `revision` follows the
    /// stream's last revision in the runs — recovery's check that the log and the runs agree.
    pub fn stream_number_checked(&mut self, stream: &str, revision: u64) -> Result<u32, String> {
        if !self.tail.stream_numbers.contains_key(stream) {
            let head = self.stream_head(stream).map_err(|error| format!("reading the index runs failed: {error}"))?;
            let expected = head.map_or(0, |head| head.value() + 1);
            if revision != expected {
                return Err(format!("stream {stream} continues at revision {revision}, expected {expected}"));
            }
        }
        self.stream_number(stream, revision)
    }

    /// Indexes one record read from the log — by recovery, or from a frame another writer committed —
    /// in stream number `stream` (from [`Index::stream_number_checked`]): its event id, its
    /// postings, and the system state it changes. The record lies at `offset` of `segment`.
    pub fn push_record(
        &mut self,
        ids: &mut IdIndex,
        key: &crate::log::format::RecordKey<'_>,
        stream: u32,
        segment: u32,
        offset: u64,
    ) -> Result<(), String> {
        ids.insert(key.id, key.position)?;
        let offset = u32::try_from(offset).map_err(|_| "offset beyond 4 GiB".to_owned())?;
        self.push(
            PushEvent {
                position: key.position,
                revision: key.revision,
                stream,
                id: key.id,
                event_type: key.event_type,
                recorded_at: key.recorded_at,
                segment,
                offset,
            },
            key.tags(),
        )?;
        self.apply_system_event(key.stream, key.event_type, key.data)
    }

    /// Adds the next event to the tail. An error (recovery reports it as corruption) when the record's
    /// position, revision or time disagree with what is indexed already.
    pub fn push<'t>(&mut self, event: PushEvent<'_>, tags: impl Iterator<Item = &'t str>) -> Result<(), String> {
        let tail = &mut self.tail;
        if event.position != tail.len {
            return Err(format!("event at position {} where position {} was expected", event.position, tail.len));
        }
        if self.last_recorded_at.is_some_and(|last| event.recorded_at < last) {
            return Err(format!("recorded time goes backwards at position {}", event.position));
        }
        let entry = tail.streams.get_mut(event.stream as usize).expect("a known stream number");
        let expected = entry.base_revision + entry.positions.len() as u64;
        if event.revision != expected {
            return Err(format!(
                "event at position {} has revision {} in stream {}, expected {expected}",
                event.position, event.revision, entry.id
            ));
        }
        entry.positions.push(event.position);
        let category = entry.id.category();
        push_posting(&mut tail.categories, category, event.position);
        // A scavenged event's placeholder keeps its stream and revision, not its type or tags.
        if event.event_type != system::SCAVENGED_TYPE {
            push_posting(&mut tail.event_types, event.event_type, event.position);
            for tag in tags {
                push_posting(&mut tail.tags, tag, event.position);
            }
        }
        if self.last_recorded_at != Some(event.recorded_at) || tail.times.len() == 0 {
            tail.times.push((event.position, event.recorded_at));
        }
        let location = (Location { segment: event.segment, offset: event.offset }, event.stream);
        let slot = (tail.len - tail.base) as usize % LOCATION_CHUNK;
        if slot == 0 {
            tail.locations.push(vec![location; LOCATION_CHUNK].into_boxed_slice());
        } else {
            tail.locations.last_mut().expect("a chunk exists")[slot] = location;
        }
        tail.ids.push(event.id);
        tail.len += 1;
        self.last_recorded_at = Some(event.recorded_at);
        Ok(())
    }

    /// Hands the tail to the indexer when it holds at least `events` events and no earlier frozen
    /// memtable is still being written.
    /// Whether [`Index::freeze`] would freeze the tail now.
    pub fn tail_is_full(&self, events: u64) -> bool {
        self.frozen.is_none() && self.tail.len - self.tail.base >= events.max(1)
    }

    pub fn freeze(&mut self, events: u64) -> Option<Arc<Frozen>> {
        if !self.tail_is_full(events) {
            return None;
        }
        let len = self.tail.len;
        let tail = std::mem::replace(&mut self.tail, Memtable::new(len));
        let frozen = Arc::new(Frozen { mem: tail, system: self.system.clone() });
        self.frozen = Some(frozen.clone());
        Some(frozen)
    }

    /// Takes a frozen memtable back into the tail (its run could not be written at recovery).
    pub fn thaw(&mut self) {
        let frozen = self.frozen.take().expect("a frozen memtable");
        assert!(self.tail.is_empty(), "nothing was added since the freeze");
        self.tail = Arc::try_unwrap(frozen).expect("recovery holds the only reference").mem;
    }

    /// Replaces the frozen memtable with the run written from it.
    pub fn install_run(&mut self, run: Arc<Run>) {
        let frozen = self.frozen.take().expect("a frozen memtable to replace");
        assert_eq!((run.start, run.end), (frozen.mem.base, frozen.mem.len), "the run covers the frozen memtable");
        self.runs.push(run);
    }

    /// Replaces the runs that `merged` covers with it; returns them (their files can go).
    pub fn replace_runs(&mut self, merged: Arc<Run>) -> Vec<Arc<Run>> {
        let first = self.runs.iter().position(|run| run.start == merged.start).expect("merged runs are installed");
        let count = self.runs[first..].iter().position(|run| run.end == merged.end).expect("merged runs end") + 1;
        self.runs.splice(first..first + count, [merged]).collect()
    }
}

fn mem_part(entry: &StreamEntry, source: PartSource) -> StreamPart {
    StreamPart {
        base: entry.base_revision,
        count: entry.positions.len() as u64,
        last: entry.positions.last().expect("a stream entry has an event"),
        source,
    }
}

fn mem_positions(mem: &Memtable, number: u32, range: std::ops::Range<u64>, out: &mut Vec<(u64, Location)>) {
    let entry = mem.stream_entry(number);
    for positions in entry.positions.slices(range.start as usize..range.end as usize) {
        out.extend(positions.iter().map(|&p| (p, mem.location(p).0)));
    }
}

/// A sorted position list, in memory or in a run.
#[derive(Debug)]
pub(crate) enum PostingList<'a> {
    Mem(&'a Postings),
    Run(RunList),
}

/// A list that leapfrog searches can step through.
pub(crate) trait SortedList {
    fn first_at_or_after(&self, at: u64) -> Option<u64>;
    fn last_at_or_before(&self, at: u64) -> Option<u64>;
}

impl SortedList for &Postings {
    fn first_at_or_after(&self, at: u64) -> Option<u64> {
        Postings::first_at_or_after(self, at)
    }

    fn last_at_or_before(&self, at: u64) -> Option<u64> {
        Postings::last_at_or_before(self, at)
    }
}

impl SortedList for PostingList<'_> {
    fn first_at_or_after(&self, at: u64) -> Option<u64> {
        match self {
            PostingList::Mem(list) => list.first_at_or_after(at),
            PostingList::Run(list) => list.first_at_or_after(at),
        }
    }

    fn last_at_or_before(&self, at: u64) -> Option<u64> {
        match self {
            PostingList::Mem(list) => list.last_at_or_before(at),
            PostingList::Run(list) => list.last_at_or_before(at),
        }
    }
}

impl PostingList<'_> {
    /// The error a run list met (it then answered `None`), if any.
    pub fn take_error(&self) -> Option<StorageError> {
        match self {
            PostingList::Mem(_) => None,
            PostingList::Run(list) => list.take_error(),
        }
    }
}

enum NameSource<'a> {
    Run(KeyIter),
    Mem(Box<dyn Iterator<Item = String> + 'a>),
}

/// Stream names merged from every level, each once, in order.
pub(crate) struct StreamNames<'a> {
    sources: Vec<NameSource<'a>>,
    heads: Vec<Option<String>>,
    started: bool,
    excluded: Option<String>,
}

impl StreamNames<'_> {
    fn advance(&mut self, at: usize) -> Result<(), StorageError> {
        self.heads[at] = match &mut self.sources[at] {
            NameSource::Run(keys) => keys.next_key()?.map(|(_, name, _)| name),
            NameSource::Mem(names) => names.next(),
        };
        Ok(())
    }
}

impl Iterator for StreamNames<'_> {
    type Item = Result<StreamId, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            for at in 0..self.sources.len() {
                if let Err(error) = self.advance(at) {
                    return Some(Err(error));
                }
            }
        }
        loop {
            let smallest = self.heads.iter().flatten().min()?.clone();
            for at in 0..self.sources.len() {
                if self.heads[at].as_ref() == Some(&smallest)
                    && let Err(error) = self.advance(at)
                {
                    return Some(Err(error));
                }
            }
            if self.excluded.as_ref() == Some(&smallest) {
                continue;
            }
            return Some(Ok(StreamId::new(smallest).expect("indexed stream names are valid")));
        }
    }
}

/// A frozen memtable as a run's source.
pub(crate) struct FrozenSource(pub Arc<Frozen>);

impl RunSource for FrozenSource {
    fn start(&self) -> u64 {
        self.0.mem.base
    }

    fn end(&self) -> u64 {
        self.0.mem.len
    }

    fn positions(&mut self, out: &mut dyn FnMut(Location, Timestamp)) -> std::io::Result<()> {
        let mem = &self.0.mem;
        let mut times = 0;
        for position in mem.base..mem.len {
            while mem.times.get(times + 1).is_some_and(|&(first, _)| first <= position) {
                times += 1;
            }
            out(mem.location(position).0, mem.times.get(times).expect("a time").1);
        }
        Ok(())
    }

    fn keys(&mut self, out: KeyVisitor<'_>) -> std::io::Result<()> {
        let mem = &self.0.mem;
        for name in &mem.stream_names {
            let (_, entry) = mem.stream(name.as_str()).expect("a listed stream");
            let mut postings =
                entry.positions.slices(0..entry.positions.len()).flatten().map(|&p| (p, mem.location(p).0.pack()));
            out(KeyKind::Stream, name.as_str(), entry.base_revision, &mut postings);
        }
        for kind in [KeyKind::Category, KeyKind::EventType, KeyKind::Tag] {
            let lists = mem.lists(kind);
            let mut names: Vec<&String> = lists.keys().collect();
            names.sort_unstable();
            for name in names {
                let list = &lists[name];
                let mut postings = list.slices(0..list.len()).flatten().map(|&p| (p, 0));
                out(kind, name, 0, &mut postings);
            }
        }
        Ok(())
    }

    fn ids(&mut self, out: &mut dyn FnMut(&[u8; 16], u64)) -> std::io::Result<()> {
        let mem = &self.0.mem;
        let mut ids: Vec<([u8; 16], u64)> = (mem.base..mem.len)
            .map(|position| (*mem.ids.get((position - mem.base) as usize).expect("an id").as_bytes(), position))
            .collect();
        ids.sort_unstable();
        for (id, position) in &ids {
            out(id, *position);
        }
        Ok(())
    }

    fn system_state(&mut self) -> std::io::Result<Vec<u8>> {
        Ok(self.0.system.encode())
    }

    fn key_count_max(&self) -> u64 {
        let mem = &self.0.mem;
        (mem.stream_names.len() + mem.categories.len() + mem.event_types.len() + mem.tags.len()) as u64
    }

    fn id_count(&self) -> u64 {
        self.0.mem.len - self.0.mem.base
    }
}

pub(crate) fn push_posting(map: &mut FastMap<String, Postings>, key: &str, position: u64) {
    match map.get_mut(key) {
        // An event that carries a tag twice is listed once.
        Some(positions) if positions.last() == Some(position) => {}
        Some(positions) => positions.push(position),
        None => {
            let mut positions = Postings::default();
            positions.push(position);
            map.insert(key.to_owned(), positions);
        }
    }
}

/// Entries per chunk of the stream table and the time table.
const TABLE_CHUNK: usize = 1 << 14;

/// A table in chunks of [`TABLE_CHUNK`] entries that never move once full: growing it under the
/// index's write lock never copies the table (a million streams' entries are tens of MB).
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<T> Chunked<T> {
    pub fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < TABLE_CHUNK => chunk.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(if self.chunks.is_empty() { 16 } else { TABLE_CHUNK });
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.chunks.last().map_or(0, |chunk| (self.chunks.len() - 1) * TABLE_CHUNK + chunk.len())
    }

    pub fn get(&self, at: usize) -> Option<&T> {
        self.chunks.get(at / TABLE_CHUNK)?.get(at % TABLE_CHUNK)
    }

    pub fn get_mut(&mut self, at: usize) -> Option<&mut T> {
        self.chunks.get_mut(at / TABLE_CHUNK)?.get_mut(at % TABLE_CHUNK)
    }

    /// Like `slice::partition_point`, for a table ordered so that `before` holds for a prefix.
    pub fn partition_point(&self, before: impl Fn(&T) -> bool) -> usize {
        let chunk = self.chunks.partition_point(|chunk| before(&chunk[chunk.len() - 1]));
        match self.chunks.get(chunk) {
            None => self.len(),
            Some(entries) => chunk * TABLE_CHUNK + entries.partition_point(|entry| before(entry)),
        }
    }
}

/// Positions in a posting list's chunk; a full chunk is never moved again.
const POSTINGS_CHUNK: usize = 4096;

/// An ascending list of positions (a category's, a type's, a tag's) in chunks of at most
/// [`POSTINGS_CHUNK`], so that appending under the index's write lock never copies more than one
/// chunk: a plain `Vec` of ten million positions would copy 80 MB when it doubles, and every reader
/// and the committer would wait for it. A new list starts small (most tags name one entity and list
/// a few events); only its last chunk grows.
#[derive(Debug, Default)]
pub(crate) struct Postings {
    chunks: Vec<Vec<u64>>,
}

impl Postings {
    pub fn push(&mut self, position: u64) {
        debug_assert!(self.last().is_none_or(|last| last < position), "postings ascend");
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < POSTINGS_CHUNK => chunk.push(position),
            _ => {
                let mut chunk = Vec::with_capacity(if self.chunks.is_empty() { 4 } else { POSTINGS_CHUNK });
                chunk.push(position);
                self.chunks.push(chunk);
            }
        }
    }

    pub fn last(&self) -> Option<u64> {
        self.chunks.last().and_then(|chunk| chunk.last()).copied()
    }

    /// The first position at or after `at`.
    pub fn first_at_or_after(&self, at: u64) -> Option<u64> {
        let chunk = self.chunks.partition_point(|chunk| chunk[chunk.len() - 1] < at);
        let chunk = self.chunks.get(chunk)?;
        Some(chunk[chunk.partition_point(|&position| position < at)])
    }

    /// The last position at or before `at`.
    pub fn last_at_or_before(&self, at: u64) -> Option<u64> {
        let chunk = self.chunks.partition_point(|chunk| chunk[0] <= at).checked_sub(1)?;
        let chunk = &self.chunks[chunk];
        Some(chunk[chunk.partition_point(|&position| position <= at) - 1])
    }

    pub fn len(&self) -> usize {
        self.chunks.last().map_or(0, |chunk| (self.chunks.len() - 1) * POSTINGS_CHUNK + chunk.len())
    }

    /// The `at`-th position. Every chunk but the last is full, so it is found by division.
    pub fn get(&self, at: usize) -> Option<u64> {
        self.chunks.get(at / POSTINGS_CHUNK).and_then(|chunk| chunk.get(at % POSTINGS_CHUNK)).copied()
    }

    /// How many positions satisfy `before` (which holds for a prefix of the list), like
    /// `slice::partition_point`.
    pub fn partition_point(&self, before: impl Fn(u64) -> bool) -> usize {
        let chunk = self.chunks.partition_point(|chunk| before(chunk[chunk.len() - 1]));
        match self.chunks.get(chunk) {
            None => self.len(),
            Some(positions) => chunk * POSTINGS_CHUNK + positions.partition_point(|&p| before(p)),
        }
    }

    /// The positions `range` (by index), in order, as one slice per chunk it touches.
    pub fn slices(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &[u64]> + '_ {
        assert!(range.start <= range.end && range.end <= self.len(), "a range within the list");
        let first_chunk = range.start / POSTINGS_CHUNK;
        let end_chunk = if range.is_empty() { first_chunk } else { (range.end - 1) / POSTINGS_CHUNK + 1 };
        self.chunks[first_chunk..end_chunk].iter().enumerate().map(move |(at, chunk)| {
            let base = (first_chunk + at) * POSTINGS_CHUNK;
            &chunk[range.start.saturating_sub(base)..(range.end - base).min(chunk.len())]
        })
    }

    #[cfg(test)]
    fn to_vec(&self) -> Vec<u64> {
        self.chunks.concat()
    }
}

#[cfg(test)]
mod postings_tests {
    use super::*;

    #[test]
    fn chunked_lists_search_like_a_slice() {
        let positions: Vec<u64> = (0..20_000u64).map(|n| n * 8 + (n % 7)).collect();
        let mut postings = Postings::default();
        for &position in &positions {
            postings.push(position);
        }
        assert_eq!(postings.to_vec(), positions);
        assert!(postings.chunks.len() > 4, "several chunks");
        for at in (0..161_000u64).step_by(7).chain([0, 1, 159_999, 160_005, u64::MAX]) {
            let first = positions.get(positions.partition_point(|&p| p < at)).copied();
            let last = positions.partition_point(|&p| p <= at).checked_sub(1).map(|i| positions[i]);
            assert_eq!(postings.first_at_or_after(at), first, "first at or after {at}");
            assert_eq!(postings.last_at_or_before(at), last, "last at or before {at}");
        }
        assert_eq!(postings.len(), positions.len());
        for at in [0, 1, 4_095, 4_096, 4_097, 19_999, 20_000] {
            assert_eq!(postings.get(at), positions.get(at).copied(), "get {at}");
        }
        for bound in [0, 5, 32_770, 159_999, 200_000] {
            assert_eq!(postings.partition_point(|p| p < bound), positions.partition_point(|&p| p < bound));
        }
        for range in [4_090..4_100, 0..0, 4_096..4_096, 0..20_000, 8_191..8_193, 19_999..20_000, 12_288..16_384] {
            assert_eq!(
                postings.slices(range.clone()).collect::<Vec<_>>().concat(),
                positions[range.clone()],
                "{range:?}"
            );
        }
        let mut table = Chunked::default();
        for n in 0..(TABLE_CHUNK * 2 + 5) {
            table.push(n * 2);
        }
        assert_eq!(table.len(), TABLE_CHUNK * 2 + 5);
        assert_eq!(table.get(TABLE_CHUNK), Some(&(TABLE_CHUNK * 2)));
        assert_eq!(table.get(TABLE_CHUNK * 2 + 5), None);
        for bound in [0, 1, TABLE_CHUNK * 2, TABLE_CHUNK * 2 + 1, TABLE_CHUNK * 5 + 9, usize::MAX] {
            let expected = (0..TABLE_CHUNK * 2 + 5).filter(|&n| n * 2 < bound).count();
            assert_eq!(table.partition_point(|&value| value < bound), expected, "{bound}");
        }
        assert_eq!(Postings::default().first_at_or_after(0), None);
        assert_eq!(Postings::default().last_at_or_before(9), None);
    }
}
