//! `POST /v1/import`: events as exported (ids, streams, revisions, recorded times kept), appended
//! in order as one atomic batch. Used by `strata import --url`; a batch already imported is a replay.

use crate::error::ApiError;
use crate::extract::{JsonBody, Params};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use strata_storage::MultiAppendOutcome;
use strata_wire::{ImportRequest, ImportResponse};

/// Imports a batch of exported events.
#[utoipa::path(post, path = "/v1/import", tag = "operations",
    request_body = ImportRequest,
    responses(
        (status = 200, body = ImportResponse, description = "Imported, or replayed"),
        (status = 400, description = "invalid_request: not an export, or not one that continues this store (times \
            going backwards or ahead of the clock, a revision gap, `$` names other than the system events of `$streams`)"),
        (status = 409, description = "wrong_expected_revision: a stream does not continue where this store's copy ends"),
        (status = 410, description = "stream_deleted: an event of a stream tombstoned here"),
        (status = 413, description = "payload_too_large"),
        (status = 503, description = "unavailable"),
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
        .map(|(at, event)| crate::convert::recorded_event(event.0).map_err(|error| error.at(&format!("events[{at}]"))))
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
