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
    /// Cluster mode only: this node's role, the leader, the lease, the replica's lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
}

/// A cluster node's view of the cluster (`GET /v1/info` in cluster mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterInfo {
    pub cluster_name: String,
    pub node_id: String,
    /// `leader`, `candidate` (holds the lease, catching up) or `follower`.
    pub role: String,
    /// The lease holder's node id and advertised URL, as this node last read the lease.
    pub leader_id: Option<String>,
    pub leader_url: Option<String>,
    /// The lease key's revision (it changes with every renewal).
    pub lease_revision: u64,
    /// The cluster log's last sequence as this node last saw it, and the last one applied here.
    pub log_last_sequence: u64,
    pub applied_sequence: u64,
    /// Messages of the log not yet applied here, and how old the oldest of them is.
    pub lag_frames: u64,
    pub lag_seconds: f64,
    /// Milliseconds since this node last heard from the cluster.
    pub last_contact_ms: u64,
    /// Why writes are halted on this node, if they are.
    pub writes_halted: Option<String>,
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
