//! `POST /v1/scavenge`: reclaims the space of events reads hide (deleted streams, truncated or
//! expired revisions) in sealed segments, online; see `Store::scavenge_blocking`. And
//! `POST /v1/verify`: recomputes the log's hash chain, online; see `Store::verify_chain_blocking`.

use crate::error::ApiError;
use crate::extract::Params;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use strata_storage::{ChainError, ScavengeError};
use strata_wire::{ScavengeResponse, VerifyResponse};

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

/// Reads the whole log and recomputes its hash chain. Appends go on meanwhile (they are not read).
#[utoipa::path(post, path = "/v1/verify", tag = "operations",
    responses(
        (status = 200, body = VerifyResponse, description = "The chain verifies"),
        (status = 400, description = "invalid_request"),
        (status = 500, description = "internal: the chain does not verify (the message names the segment, offset and what breaks), or a storage failure"),
    ))]
pub async fn verify(State(state): State<AppState>, params: Params) -> Result<Json<VerifyResponse>, ApiError> {
    params.finish(&[])?;
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || store.verify_chain_blocking())
        .await
        .map_err(|_| ApiError::internal("the verification failed unexpectedly"))?
        .map_err(|error: ChainError| ApiError::internal(error.to_string()))?;
    Ok(Json(VerifyResponse {
        events: report.events,
        format_1_events: report.format_1_events,
        verified_events: report.verified_events,
        carried_placeholders: report.carried_placeholders,
        store_id: report.store.map(|store| store.store_id.to_string()),
        genesis: report.store.map(|store| store.genesis.to_string()),
        head_hash: report.head.map(|hash| hash.to_string()),
    }))
}
