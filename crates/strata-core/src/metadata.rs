//! Per-stream metadata: rules applied when the stream is read.

use crate::position::StreamRevision;
use bytes::Bytes;

/// What a stream's reads show, and free application data. Stream reads skip revisions before
/// `truncate_before`, all but the last `max_count` events, and events older than `max_age_seconds`.
/// The global log (`$all`) is not affected until scavenging reclaims the space.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamMetadata {
    pub max_age_seconds: Option<u64>,
    pub max_count: Option<u64>,
    pub truncate_before: Option<StreamRevision>,
    /// The application's own metadata (the server stores a JSON object here).
    pub custom: Bytes,
}
