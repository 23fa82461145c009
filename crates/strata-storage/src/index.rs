//! The in-memory indexes: position → record location, stream → positions, event id → position,
//! category / event type / tag → positions, recorded time → position, stream metadata and tombstones.
//!
//! Built by one sequential pass over the log at open and extended by the committer after each commit.
//! They cost about 115 bytes per event (measured with `open_10m`); persistent, bounded-memory indexes are the next step
//! (see `docs/design.md`, "Indexes").
//!
//! Growth never stalls commits for long: the committer extends the [`Index`] under its write lock, so
//! the position table grows in fixed-size chunks (never a reallocating copy of the whole table). The
//! event-id map ([`IdIndex`]) is the committer's alone — readers never need it — and is split into
//! shards that rehash one at a time.

use crate::io::StorageFile;
use crate::system::{self, SystemChange};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use strata_core::{EventId, Position, StreamId, StreamMetadata, StreamRevision, Timestamp};

/// Seeded per process, so ids chosen by clients cannot be aimed at one hash bucket.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

const ID_SHARDS: usize = 64;
const LOCATION_CHUNK: usize = 1 << 16;

/// Where one event's record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u32,
    /// Byte offset of the record in its segment (segments are at most 4 GiB).
    pub offset: u32,
    /// Index of the event's stream in [`Index::streams`].
    pub stream: u32,
}

#[derive(Debug)]
pub(crate) struct StreamEntry {
    pub id: StreamId,
    /// Position of each revision: `positions.get(r)` is where revision r lies. Strictly increasing;
    /// chunked like the posting lists, so a stream of millions of events never moves as it grows.
    pub positions: Postings,
}

/// A segment file readers may read from.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub file: Arc<dyn StorageFile>,
    pub path: PathBuf,
    pub len_bytes: u64,
}

/// Everything committed, and nothing else: readers see exactly the events in `locations`.
///
/// # Invariants
/// `locations` holds one entry per position, `0..next_position()`; every stream's positions are
/// strictly increasing and their union is `0..next_position()`.
#[derive(Debug, Default)]
pub(crate) struct Index {
    locations: Vec<Box<[Location]>>,
    len: u64,
    streams: Chunked<StreamEntry>,
    stream_numbers: FastMap<StreamId, u32>,
    /// Every stream name, sorted, for listings by prefix.
    pub stream_names: std::collections::BTreeSet<StreamId>,
    last_recorded_at: Option<Timestamp>,
    /// Where recorded time changes: `(first position, time)`, times non-decreasing. One entry per
    /// commit group at most (a group shares one time), so "as of a time" is a binary search.
    times: Chunked<(u64, Timestamp)>,
    /// Secondary indexes for filtered reads: positions, ascending, per category, event type and tag.
    pub categories: FastMap<String, Postings>,
    pub event_types: FastMap<String, Postings>,
    pub tags: FastMap<String, Postings>,
    /// Per-stream metadata and deletions, from the events of the system stream.
    metadata: FastMap<String, StreamMetadata>,
    /// Soft deletes: the revision before which a stream reads as deleted. Kept apart from the
    /// metadata, so that setting metadata later cannot bring deleted events back.
    deleted_before: FastMap<String, u64>,
    tombstoned: FastMap<String, ()>,
    pub segments: Vec<SegmentFile>,
}

/// Event id → position of every committed event (and, in the committer, of the group being
/// committed), for idempotent retries and unique ids.
#[derive(Debug)]
pub(crate) struct IdIndex {
    shards: Box<[FastMap<EventId, u64>]>,
    /// Picks the shard. Seeded, because clients choose id bytes and could otherwise crowd one shard.
    shard_hasher: foldhash::fast::RandomState,
}

impl Default for IdIndex {
    fn default() -> Self {
        Self {
            shards: (0..ID_SHARDS).map(|_| FastMap::default()).collect(),
            shard_hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl IdIndex {
    fn shard(&self, id: &EventId) -> usize {
        use std::hash::BuildHasher;
        (self.shard_hasher.hash_one(id) >> 58) as usize % ID_SHARDS
    }

    pub fn get(&self, id: &EventId) -> Option<u64> {
        self.shards[self.shard(id)].get(id).copied()
    }

    /// Records `id` at `position`; an error when the id is known already.
    pub fn insert(&mut self, id: EventId, position: u64) -> Result<(), String> {
        let shard = self.shard(&id);
        match self.shards[shard].insert(id, position) {
            None => Ok(()),
            Some(_) => Err(format!("event id {id} at position {position} is used twice")),
        }
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
    pub event_type: &'a str,
    pub recorded_at: Timestamp,
    pub segment: u32,
    pub offset: u32,
}

impl Index {
    pub fn next_position(&self) -> u64 {
        self.len
    }

    pub fn last_recorded_at(&self) -> Option<Timestamp> {
        self.last_recorded_at
    }

    /// The last position recorded at or before `time`, or `None` if nothing was.
    pub fn position_at(&self, time: Timestamp) -> Option<u64> {
        let after = self.times.partition_point(|&(_, recorded_at)| recorded_at <= time);
        let end = self.times.get(after).map_or(self.len, |&(first_position, _)| first_position);
        (after > 0).then(|| end - 1)
    }

    /// Applies an event of the system stream (metadata, soft delete, tombstone); other events are
    /// ignored. An error when its data does not decode (recovery reports corruption).
    pub fn apply_system_event(&mut self, stream: &str, event_type: &str, data: &[u8]) -> Result<(), String> {
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

    pub fn metadata(&self, stream: &str) -> Option<&StreamMetadata> {
        self.metadata.get(stream)
    }

    pub fn is_tombstoned(&self, stream: &str) -> bool {
        self.tombstoned.contains_key(stream)
    }

    /// The first revision of `stream` that reads show at time `now`: after a soft delete, and under
    /// its metadata as it is today (also for reads as of the past).
    pub fn first_visible_revision(&self, stream: &StreamEntry, now: Timestamp) -> u64 {
        let revisions = stream.positions.len() as u64;
        let deleted_before = self.deleted_before.get(stream.id.as_str()).copied().unwrap_or(0);
        let Some(metadata) = self.metadata.get(stream.id.as_str()) else { return deleted_before.min(revisions) };
        let mut first = metadata.truncate_before.map_or(0, StreamRevision::value).max(deleted_before);
        if let Some(max_count) = metadata.max_count {
            first = first.max(revisions.saturating_sub(max_count));
        }
        if let Some(max_age) = metadata.max_age_seconds {
            let cutoff =
                now.as_micros().saturating_sub(i64::try_from(max_age.saturating_mul(1_000_000)).unwrap_or(i64::MAX));
            let young = stream.positions.partition_point(|p| self.recorded_at(p).as_micros() < cutoff);
            first = first.max(young as u64);
        }
        first.min(revisions)
    }

    /// The recorded time of a committed position.
    pub fn recorded_at(&self, position: u64) -> Timestamp {
        let at = self.times.partition_point(|&(first_position, _)| first_position <= position);
        self.times.get(at.checked_sub(1).expect("a committed position has a time")).expect("within the table").1
    }

    pub fn stream_name(&self, number: u32) -> &StreamId {
        &self.streams.get(number as usize).expect("a known stream number").id
    }

    pub fn location(&self, position: u64) -> Option<Location> {
        (position < self.len).then(|| {
            let position = position as usize;
            self.locations[position / LOCATION_CHUNK][position % LOCATION_CHUNK]
        })
    }

    /// The locations of `range` (which must lie within `0..next_position()`), appended to `out`.
    pub fn copy_locations(&self, range: std::ops::Range<u64>, out: &mut Vec<(u64, Location)>) {
        assert!(range.end <= self.len, "locations past the head");
        let mut position = range.start;
        while position < range.end {
            let chunk = &self.locations[position as usize / LOCATION_CHUNK];
            let start = position as usize % LOCATION_CHUNK;
            let take = (LOCATION_CHUNK - start).min((range.end - position) as usize);
            out.extend(chunk[start..start + take].iter().enumerate().map(|(i, &l)| (position + i as u64, l)));
            position += take as u64;
        }
    }

    pub fn stream(&self, stream: &str) -> Option<&StreamEntry> {
        self.stream_numbers.get(stream).map(|&number| self.streams.get(number as usize).expect("a known stream number"))
    }

    /// The last revision of `stream`, or `None` when it has no events.
    pub fn stream_head(&self, stream: &str) -> Option<StreamRevision> {
        let entry = self.stream(stream)?;
        entry.positions.len().checked_sub(1).map(|last| StreamRevision::new(last as u64))
    }

    /// The stream and revision of the event at a committed `position`.
    pub fn describe(&self, position: u64) -> IdEntry {
        let location = self.location(position).expect("indexed ids point at indexed positions");
        let entry = self.streams.get(location.stream as usize).expect("a known stream number");
        let revision = entry.positions.partition_point(|p| p < position);
        assert_eq!(entry.positions.get(revision), Some(position), "an indexed event is in its stream");
        IdEntry {
            stream: entry.id.clone(),
            revision: StreamRevision::new(revision as u64),
            position: Position::new(position),
        }
    }

    /// The number of `stream`, registering it if it is new. `stream` is copied (never kept as a
    /// slice of a read buffer, which it would pin in memory).
    pub fn stream_number(&mut self, stream: &str) -> Result<u32, String> {
        if let Some(&number) = self.stream_numbers.get(stream) {
            return Ok(number);
        }
        let id = StreamId::new(stream).map_err(|error| format!("invalid stream id: {error}"))?;
        let number = u32::try_from(self.streams.len()).map_err(|_| "more than 2^32 streams".to_owned())?;
        self.streams.push(StreamEntry { id: id.clone(), positions: Postings::default() });
        self.stream_names.insert(id.clone());
        self.stream_numbers.insert(id, number);
        Ok(number)
    }

    /// Adds the next event. An error (recovery reports it as corruption) when the record's position,
    /// revision or time disagree with what is indexed already.
    pub fn push<'t>(&mut self, event: PushEvent<'_>, tags: impl Iterator<Item = &'t str>) -> Result<(), String> {
        if event.position != self.len {
            return Err(format!("event at position {} where position {} was expected", event.position, self.len));
        }
        if self.last_recorded_at.is_some_and(|last| event.recorded_at < last) {
            return Err(format!("recorded time goes backwards at position {}", event.position));
        }
        let entry = self.streams.get_mut(event.stream as usize).expect("a known stream number");
        if event.revision != entry.positions.len() as u64 {
            let expected = entry.positions.len();
            return Err(format!(
                "event at position {} has revision {} in stream {}, expected {expected}",
                event.position, event.revision, entry.id
            ));
        }
        entry.positions.push(event.position);
        let category = entry.id.category();
        push_posting(&mut self.categories, category, event.position);
        push_posting(&mut self.event_types, event.event_type, event.position);
        for tag in tags {
            push_posting(&mut self.tags, tag, event.position);
        }
        if self.last_recorded_at != Some(event.recorded_at) {
            self.times.push((event.position, event.recorded_at));
        }
        let location = Location { segment: event.segment, offset: event.offset, stream: event.stream };
        let slot = self.len as usize % LOCATION_CHUNK;
        if slot == 0 {
            self.locations.push(vec![location; LOCATION_CHUNK].into_boxed_slice());
        } else {
            self.locations.last_mut().expect("a chunk exists")[slot] = location;
        }
        self.len += 1;
        self.last_recorded_at = Some(event.recorded_at);
        Ok(())
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
