//! What the store knows about streams: listings and per-stream facts.

use crate::store::Store;
use std::ops::Bound;
use strata_core::limits::STREAMS_LIST_MAX;
use strata_core::{Position, StreamId, StreamRevision, Timestamp};

/// Facts about one stream that has events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream: StreamId,
    pub last_revision: StreamRevision,
    pub event_count: u64,
    pub first_position: Position,
    pub last_position: Position,
    pub first_recorded_at: Timestamp,
    pub last_recorded_at: Timestamp,
}

impl Store {
    /// Facts about `stream`, or `None` when it has no events.
    pub fn stream_info(&self, stream: &str) -> Option<StreamInfo> {
        let index = self.index();
        let entry = index.stream(stream)?;
        let (&first, &last) = (entry.positions.first()?, entry.positions.last()?);
        Some(StreamInfo {
            stream: entry.id.clone(),
            last_revision: StreamRevision::new(entry.positions.len() as u64 - 1),
            event_count: entry.positions.len() as u64,
            first_position: Position::new(first),
            last_position: Position::new(last),
            first_recorded_at: index.recorded_at(first),
            last_recorded_at: index.recorded_at(last),
        })
    }

    /// Names of streams that start with `prefix`, in byte order, after `after` (exclusive; for
    /// paging), at most `limit` (and at most [`STREAMS_LIST_MAX`]).
    pub fn list_streams(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<StreamId> {
        let index = self.index();
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        index
            .stream_names
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|name| name.as_str().starts_with(prefix))
            .take(limit.min(STREAMS_LIST_MAX))
            .cloned()
            .collect()
    }
}
