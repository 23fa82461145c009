//! `POST /v1/scavenge`: reclaims the space of events reads hide (deleted streams, truncated or
//! expired revisions) in sealed segments, online; see `Store::scavenge_blocking`.

use crate::error::ApiError;
use crate::extract::Params;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use strata_storage::ScavengeError;
use strata_wire::ScavengeResponse;

/// Scavenges the store. Reads and appends go on meanwhile; one scavenge runs at a time.
#[utoipa::path(post, path = "/v1/scavenge", tag = "operations",
    responses(
        (status = 200, body = ScavengeResponse, description = "What the scavenge did"),
        (status = 400, description = "invalid_request"),
        (status = 500, description = "internal: a storage failure or damage stopped the scavenge (what it finished stays)"),
        (status = 503, description = "unavailable: the store refuses writes after a storage failure"),
    ))]
pub async fn scavenge(State(state): State<AppState>, params: Params) -> Result<Json<ScavengeResponse>, ApiError> {
    params.finish(&[])?;
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || store.scavenge_blocking())
        .await
        .map_err(|_| ApiError::internal("the scavenge failed unexpectedly"))?
        .map_err(|error| match error {
            ScavengeError::Poisoned(_) => ApiError::unavailable(error.to_string()),
            other => ApiError::internal(other.to_string()),
        })?;
    Ok(Json(ScavengeResponse {
        segments_scanned: report.segments_scanned,
        segments_rewritten: report.segments_rewritten,
        segments_skipped: report.segments_skipped,
        events_scavenged: report.events_scavenged,
        bytes_before: report.bytes_before,
        bytes_after: report.bytes_after,
    }))
}
