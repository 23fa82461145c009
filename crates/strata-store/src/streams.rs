//! [`StreamInfo`]: what the store knows about one stream.

use strata_core::{Position, StreamId, StreamRevision, Timestamp};

/// Facts about one stream that has events its reads show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream: StreamId,
    /// The first revision reads show (above 0 when metadata or a soft delete hides older ones).
    pub first_revision: StreamRevision,
    pub last_revision: StreamRevision,
    pub event_count: u64,
    pub first_position: Position,
    pub last_position: Position,
    pub first_recorded_at: Timestamp,
    pub last_recorded_at: Timestamp,
}
