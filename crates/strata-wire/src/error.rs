//! [`ErrorBody`]: `{"error": {"code", "message", …details}}`, the one shape of every error answer
//! (and of a subscription's `error` event).

use crate::union::{ActualRevision, ExpectedRevision};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A stable code, a message that says what to fix, and the details programs use (each present only
/// with the codes that have it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid_request`, `stream_not_found`, `stream_deleted`, `wrong_expected_revision`,
    /// `append_condition_failed`, `group_not_found`, `group_conflict`, `payload_too_large`,
    /// `unavailable`, `not_leader` and `stale` (cluster mode), `internal`.
    pub code: String,
    pub message: String,
    /// The stream concerned (`stream_not_found`, `stream_deleted`, `wrong_expected_revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// `wrong_expected_revision`: what the request expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<ExpectedRevision>,
    /// `wrong_expected_revision`: where the stream is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<ActualRevision>,
    /// `append_condition_failed`: the first event matching the condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// An id reused for a different event (`invalid_request`): the id, and where it is committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_revision: Option<u64>,
    /// `unavailable`: the append may or may not have committed (retry with the same event ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_unknown: Option<bool>,
    /// `payload_too_large` for a request body: the largest body taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// `group_not_found`, `group_conflict`: the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Cluster mode, `not_leader` (and a forward without an answer): the leader's advertised URL,
    /// where the request can be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
}

impl ErrorDetail {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), ..Self::default() }
    }
}
