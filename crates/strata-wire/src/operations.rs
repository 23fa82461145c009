//! Operations: health, info, import, scavenge, verify.

use crate::event::ImportedEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// Why the store refuses writes (with `unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    /// A storage failure made the store refuse writes (reads go on); restart to resume writing.
    Unavailable,
}

/// `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Info {
    pub version: String,
    pub data_dir: String,
    /// The last committed position; `null` when the store is empty.
    pub head_position: Option<u64>,
    /// Why the store refuses writes, if it does.
    pub writes_poisoned: Option<String>,
    pub uptime_seconds: u64,
    pub subscriptions_open: i64,
    pub recovery: InfoRecovery,
    pub limits: InfoLimits,
}

/// What the store found when it opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InfoRecovery {
    pub segments: u64,
    pub events: u64,
    pub torn_tail_bytes_zeroed: u64,
    pub torn_tail_saved_to: Option<String>,
}

/// The limits the server enforces (`docs/api.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InfoLimits {
    pub stream_id_bytes_max: u64,
    pub event_type_bytes_max: u64,
    pub tag_bytes_max: u64,
    pub tags_per_event_max: u64,
    pub event_bytes_max_default: u64,
    pub append_bytes_max: u64,
    pub append_events_max: u64,
    pub read_events_max: u64,
    pub streams_list_max: u64,
    pub request_body_bytes_max: u64,
}

/// `POST /v1/import`: exported events (lines of `strata export`), appended in order as one atomic
/// batch keeping ids, revisions and recorded times.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// 1 to 10,000 events.
    #[schema(min_items = 1, max_items = 10_000)]
    pub events: Vec<ImportedEvent>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    pub first_position: u64,
    pub last_position: u64,
    /// The batch was imported before; nothing was written.
    pub replayed: bool,
}

/// What a scavenge did (`POST /v1/scavenge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScavengeResponse {
    /// Sealed segments read to find hidden events (those the index files cover).
    pub segments_scanned: u32,
    /// Segments written again with placeholders for the hidden events.
    pub segments_rewritten: u32,
    /// Segments left for the next scavenge because metadata changed meanwhile.
    pub segments_skipped: u32,
    /// Events replaced by placeholders (`$scavenged`: position, stream, revision, id and time kept).
    pub events_scavenged: u64,
    /// Bytes of the rewritten segments before.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after.
    pub bytes_after: u64,
}

/// What a verification of the hash chain found (`POST /v1/verify`): the whole log up to its head
/// when the verification began, every link recomputed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    /// Events read.
    pub events: u64,
    /// Events written in format 1 before the chain began (covered by its genesis).
    pub format_1_events: u64,
    /// Events whose hash was recomputed and matched (placeholders that kept their header included).
    pub verified_events: u64,
    /// Placeholders whose hash came with an import: the chain goes on from them, their own link
    /// cannot be recomputed.
    pub carried_placeholders: u64,
    /// The store's id (from `$store-created`); `null` before the chain began.
    pub store_id: Option<String>,
    /// The genesis the chain follows; `null` before the chain began.
    pub genesis: Option<String>,
    /// The hash of the last event read; `null` for an empty store or one still all format 1.
    pub head_hash: Option<String>,
}
