//! The in-memory indexes: position → record location, stream → positions, event id → position.
//!
//! Built by one sequential pass over the log at open and extended by the writer after each commit.
//! They cost about 50 bytes per event; persistent, bounded-memory indexes are the next step
//! (see `docs/design.md`, "Indexes").

use crate::io::StorageFile;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use strata_core::{EventId, Position, StreamId, StreamRevision, Timestamp};

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
    /// Position of each revision: `positions[r]` is where revision r lies. Strictly increasing.
    pub positions: Vec<u64>,
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
/// `locations.len()` is the next position; every stream's positions are strictly increasing and
/// their union is `0..locations.len()`; `ids` maps every committed event id to its position.
#[derive(Debug, Default)]
pub(crate) struct Index {
    locations: Vec<Location>,
    streams: Vec<StreamEntry>,
    stream_numbers: HashMap<StreamId, u32>,
    ids: HashMap<EventId, u64>,
    last_recorded_at: Option<Timestamp>,
    pub segments: Vec<SegmentFile>,
}

/// Where a committed event id lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdEntry {
    pub stream: StreamId,
    pub revision: StreamRevision,
    pub position: Position,
}

impl Index {
    pub fn next_position(&self) -> u64 {
        self.locations.len() as u64
    }

    pub fn last_recorded_at(&self) -> Option<Timestamp> {
        self.last_recorded_at
    }

    pub fn location(&self, position: u64) -> Option<Location> {
        self.locations.get(position as usize).copied()
    }

    pub fn locations(&self, range: std::ops::Range<u64>) -> &[Location] {
        &self.locations[range.start as usize..range.end as usize]
    }

    pub fn stream(&self, stream: &str) -> Option<&StreamEntry> {
        self.stream_numbers.get(stream).map(|&number| &self.streams[number as usize])
    }

    /// The last revision of `stream`, or `None` when it has no events.
    pub fn stream_head(&self, stream: &str) -> Option<StreamRevision> {
        let entry = self.stream(stream)?;
        entry.positions.len().checked_sub(1).map(|last| StreamRevision::new(last as u64))
    }

    pub fn lookup_id(&self, id: &EventId) -> Option<IdEntry> {
        let position = *self.ids.get(id)?;
        let location = self.locations[position as usize];
        let entry = &self.streams[location.stream as usize];
        let revision = entry.positions.binary_search(&position).expect("an indexed event is in its stream");
        Some(IdEntry {
            stream: entry.id.clone(),
            revision: StreamRevision::new(revision as u64),
            position: Position::new(position),
        })
    }

    /// Adds the next event. An error (recovery reports it as corruption) when the record's position,
    /// revision, id or time disagree with what is indexed already.
    pub fn push(&mut self, event: PushEvent<'_>) -> Result<(), String> {
        if event.position != self.next_position() {
            return Err(format!(
                "event at position {} where position {} was expected",
                event.position,
                self.next_position()
            ));
        }
        if self.last_recorded_at.is_some_and(|last| event.recorded_at < last) {
            return Err(format!("recorded time goes backwards at position {}", event.position));
        }
        let number = match self.stream_numbers.get(event.stream) {
            Some(&number) => number,
            None => {
                let id = StreamId::new(event.stream).map_err(|error| format!("invalid stream id: {error}"))?;
                let number = u32::try_from(self.streams.len()).map_err(|_| "more than 2^32 streams".to_owned())?;
                self.streams.push(StreamEntry { id: id.clone(), positions: Vec::new() });
                self.stream_numbers.insert(id, number);
                number
            }
        };
        let entry = &mut self.streams[number as usize];
        if event.revision != entry.positions.len() as u64 {
            return Err(format!(
                "event at position {} has revision {} in stream {}, expected {}",
                event.position,
                event.revision,
                entry.id,
                entry.positions.len()
            ));
        }
        if self.ids.insert(event.id, event.position).is_some() {
            return Err(format!("event id {} at position {} is used twice", event.id, event.position));
        }
        entry.positions.push(event.position);
        self.locations.push(Location { segment: event.segment, offset: event.offset, stream: number });
        self.last_recorded_at = Some(event.recorded_at);
        Ok(())
    }
}

/// One event to index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushEvent<'a> {
    pub position: u64,
    pub revision: u64,
    pub id: EventId,
    pub stream: &'a str,
    pub recorded_at: Timestamp,
    pub segment: u32,
    pub offset: u32,
}
