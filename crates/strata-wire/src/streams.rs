//! Streams: listing, info, deletes, metadata.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// `GET /v1/streams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamList {
    pub streams: Vec<String>,
    /// Pass as `after` for the next page; `null` when this page is the last.
    pub next: Option<String>,
}

/// `GET /v1/streams/{stream}/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamInfo {
    pub stream: String,
    /// The first revision reads show (above 0 when metadata or a soft delete hides older ones).
    pub first_revision: u64,
    pub last_revision: u64,
    pub event_count: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// RFC 3339, UTC, microseconds.
    pub first_recorded_at: String,
    pub last_recorded_at: String,
}

/// `DELETE /v1/streams/{stream}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeleteResponse {
    pub stream: String,
    /// `true` for a tombstone (`hard=true`): the stream can never be written again.
    pub hard: bool,
    /// The position of the system event that records the deletion.
    pub position: u64,
}

/// A stream's metadata: rules applied when it is read, and the application's own JSON. The body of
/// `PUT /v1/streams/{stream}/metadata` (absent or `null`: unset) and the answer of both metadata
/// routes (unset: `null`, `custom` `{}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamMetadata {
    /// Reads skip events older than this.
    #[serde(default, deserialize_with = "crate::de::optional_integer")]
    pub max_age_seconds: Option<u64>,
    /// Reads show only the last this many events.
    #[serde(default, deserialize_with = "crate::de::optional_integer")]
    pub max_count: Option<u64>,
    /// Reads skip revisions before this one.
    #[serde(default, deserialize_with = "crate::de::optional_integer")]
    pub truncate_before: Option<u64>,
    /// Free application data: a JSON object.
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Box<RawValue>>,
}
