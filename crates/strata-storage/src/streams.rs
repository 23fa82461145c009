//! What the store knows about streams: listings and per-stream facts.

use crate::error::ReadError;
use crate::store::Store;
use std::ops::Bound;
use strata_core::limits::STREAMS_LIST_MAX;
use strata_core::{Position, StreamId, StreamRevision};
pub use strata_store::StreamInfo;

impl Store {
    /// Facts about `stream`'s visible events, or `None` when reads would not find it (no events,
    /// all hidden by metadata or a soft delete, or tombstoned).
    pub fn stream_info(&self, stream: &str) -> Result<Option<StreamInfo>, ReadError> {
        let now = self.now();
        let index = self.index();
        if index.is_tombstoned(stream) {
            return Ok(None);
        }
        let Some(entry) = index.stream(stream)? else { return Ok(None) };
        let revisions = entry.revisions();
        let first_visible = index.first_visible_revision(&entry, now)?;
        if first_visible >= revisions {
            return Ok(None);
        }
        let first = index.stream_position(&entry, first_visible)?;
        let last = entry.last_position();
        Ok(Some(StreamInfo {
            stream: entry.id.clone(),
            first_revision: StreamRevision::new(first_visible),
            last_revision: StreamRevision::new(revisions - 1),
            event_count: revisions - first_visible,
            first_position: Position::new(first),
            last_position: Position::new(last),
            first_recorded_at: index.recorded_at(first)?,
            last_recorded_at: index.recorded_at(last)?,
        }))
    }

    /// Names of streams that start with `prefix`, in byte order, after `after` (exclusive; for
    /// paging), at most `limit` (and at most [`STREAMS_LIST_MAX`]). Deleted streams (tombstoned, or
    /// with every event hidden) are left out.
    pub fn list_streams(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<StreamId>, ReadError> {
        let now = self.now();
        let index = self.index();
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut names = Vec::new();
        for name in index.stream_names(start) {
            let name = name?;
            if !name.as_str().starts_with(prefix) || names.len() >= limit.min(STREAMS_LIST_MAX) {
                break;
            }
            if index.is_tombstoned(name.as_str()) {
                continue;
            }
            let entry = index.stream(name.as_str())?.expect("listed streams are indexed");
            if index.first_visible_revision(&entry, now)? < entry.revisions() {
                names.push(name);
            }
        }
        Ok(names)
    }
}
