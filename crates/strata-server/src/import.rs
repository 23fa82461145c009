//! `POST /v1/import`: events as exported (ids, streams, revisions, recorded times kept), appended
//! in order as one atomic batch. Used by `strata import --url`; a batch already imported is a replay.

use crate::error::ApiError;
use crate::extract::{JsonBody, Params};
use crate::state::AppState;
use crate::wire::RecordedEventJson;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use strata_storage::MultiAppendOutcome;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub events: Vec<RecordedEventJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResponse {
    pub first_position: u64,
    pub last_position: u64,
    /// The batch was imported before; nothing was written.
    pub replayed: bool,
}

/// Imports a batch of exported events.
#[utoipa::path(post, path = "/v1/import", tag = "operations",
    request_body = ImportRequest,
    responses(
        (status = 200, body = ImportResponse),
        (status = 400, description = "invalid_request (times going backwards, a revision gap)"),
        (status = 409, description = "wrong_expected_revision: a stream does not continue where this store's copy ends"),
        (status = 413, description = "payload_too_large"),
    ))]
pub async fn import(
    State(state): State<AppState>,
    params: Params,
    JsonBody(request): JsonBody<ImportRequest>,
) -> Result<Json<ImportResponse>, ApiError> {
    params.finish(&[])?;
    if request.events.is_empty() {
        return Err(strata_core::ValidationError::EmptyBatch.into());
    }
    let events = request
        .events
        .into_iter()
        .enumerate()
        .map(|(at, event)| event.into_recorded().map_err(|error| error.at(&format!("events[{at}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let store = state.store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.import_blocking(events))
        .await
        .map_err(|_| ApiError::internal("the import failed unexpectedly"))??;
    match outcome {
        MultiAppendOutcome::Committed(result) => Ok(Json(ImportResponse {
            first_position: result.first_position.value(),
            last_position: result.last_position.value(),
            replayed: result.replayed,
        })),
        MultiAppendOutcome::WrongExpectedRevision { stream, expected, actual } => {
            Err(crate::append::wrong_expected_revision(&stream, expected, actual))
        }
        MultiAppendOutcome::ConditionFailed { .. } => Err(ApiError::internal("an import has no condition")),
    }
}
