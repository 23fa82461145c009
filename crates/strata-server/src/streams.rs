//! Stream lifecycle: `GET /v1/streams` (list), `GET /v1/streams/{stream}/info`,
//! `DELETE /v1/streams/{stream}` (soft, or `hard=true` for a tombstone), and the stream's metadata
//! (`GET|PUT /v1/streams/{stream}/metadata`).

use crate::append::wrong_expected_revision;
use crate::error::ApiError;
use crate::extract::{JsonBody, Params, StreamPath};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use strata_core::limits::STREAMS_LIST_MAX;
use strata_core::{StreamMetadata, StreamRevision};
use strata_storage::{MultiAppendOutcome, ReadError};
use strata_wire::{DeleteResponse, StreamInfo, StreamList};

/// Streams per page when the request gives no `limit`.
pub const LIST_LIMIT_DEFAULT: usize = 100;

/// Lists streams by id, in byte order, with a prefix and paging.
#[utoipa::path(get, path = "/v1/streams", tag = "streams",
    params(strata_wire::ListParams),
    responses((status = 200, body = StreamList, description = "Stream ids"), (status = 400, description = "invalid_request")))]
pub async fn list(State(state): State<AppState>, mut params: Params) -> Result<Json<StreamList>, ApiError> {
    let prefix = params.take("prefix")?.unwrap_or_default();
    let after = params.take("after")?;
    let limit = match params.take_u64("limit")? {
        None => LIST_LIMIT_DEFAULT,
        Some(limit) if (1..=STREAMS_LIST_MAX as u64).contains(&limit) => limit as usize,
        Some(limit) => {
            return Err(ApiError::invalid(format!("limit must be between 1 and {STREAMS_LIST_MAX}, got {limit}")));
        }
    };
    params.finish(&["prefix", "after", "limit"])?;
    let streams: Vec<String> =
        state.store.list_streams(&prefix, after.as_deref(), limit)?.into_iter().map(|id| id.to_string()).collect();
    let next = if streams.len() == limit { streams.last().cloned() } else { None };
    Ok(Json(StreamList { streams, next }))
}

/// Facts about a stream: revisions, event count, positions, first and last recorded time.
#[utoipa::path(get, path = "/v1/streams/{stream}/info", tag = "streams",
    params(("stream" = String, Path, description = "The stream id")),
    responses(
        (status = 200, body = StreamInfo, description = "The stream's facts"),
        (status = 400, description = "invalid_request"),
        (status = 404, description = "stream_not_found"), (status = 410, description = "stream_deleted"),
    ))]
pub async fn info(
    State(state): State<AppState>,
    StreamPath(stream): StreamPath,
    params: Params,
) -> Result<Json<StreamInfo>, ApiError> {
    params.finish(&[])?;
    if state.store.is_tombstoned(stream.as_str()) {
        return Err(ReadError::StreamDeleted { stream }.into());
    }
    let Some(info) = state.store.stream_info(stream.as_str())? else {
        return Err(ReadError::StreamNotFound { stream }.into());
    };
    Ok(Json(StreamInfo {
        stream: info.stream.to_string(),
        first_revision: info.first_revision.value(),
        last_revision: info.last_revision.value(),
        event_count: info.event_count,
        first_position: info.first_position.value(),
        last_position: info.last_position.value(),
        first_recorded_at: info.first_recorded_at.to_string(),
        last_recorded_at: info.last_recorded_at.to_string(),
    }))
}

/// Deletes a stream: soft (reads say not found, a later append continues after its last revision)
/// or, with `hard=true`, for good (a tombstone).
#[utoipa::path(delete, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "The stream id"), strata_wire::DeleteParams),
    responses(
        (status = 200, body = DeleteResponse, description = "Deleted"),
        (status = 400, description = "invalid_request"),
        (status = 404, description = "stream_not_found: the stream has no events"),
        (status = 409, description = "wrong_expected_revision"),
        (status = 410, description = "stream_deleted: already tombstoned"),
        (status = 503, description = "unavailable"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    StreamPath(stream): StreamPath,
    mut params: Params,
) -> Result<Json<DeleteResponse>, ApiError> {
    let hard = match params.take("hard")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::invalid(format!("hard must be true or false, got {other:?}"))),
    };
    let expected = match params.take("expected_revision")? {
        None => strata_wire::ExpectedRevision::Any,
        Some(text) if text.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
            strata_wire::ExpectedRevision::Exact(crate::extract::parse_u64("expected_revision", &text)?)
        }
        Some(text) => strata_wire::ExpectedRevision::from_name(&text)
            .ok_or_else(|| ApiError::invalid(format!("{}, got {text:?}", strata_wire::ExpectedRevision::EXPLAIN)))?,
    }
    .into();
    params.finish(&["hard", "expected_revision"])?;
    let outcome = if hard {
        state.store.tombstone_stream(stream.clone(), expected).await?
    } else {
        state.store.delete_stream(stream.clone(), expected).await?
    };
    match outcome {
        MultiAppendOutcome::Committed(result) => {
            Ok(Json(DeleteResponse { stream: stream.to_string(), hard, position: result.last_position.value() }))
        }
        MultiAppendOutcome::WrongExpectedRevision { stream, expected, actual } => {
            Err(wrong_expected_revision(&stream, expected, actual))
        }
        _ => Err(ApiError::internal("a deletion outcome this server does not know")),
    }
}

/// Reads a stream's metadata (all unset when none was ever set).
#[utoipa::path(get, path = "/v1/streams/{stream}/metadata", tag = "streams",
    params(("stream" = String, Path, description = "The stream id")),
    responses(
        (status = 200, body = strata_wire::StreamMetadata, description = "The metadata in force"),
        (status = 400, description = "invalid_request"), (status = 410, description = "stream_deleted"),
    ))]
pub async fn get_metadata(
    State(state): State<AppState>,
    StreamPath(stream): StreamPath,
    params: Params,
) -> Result<Json<strata_wire::StreamMetadata>, ApiError> {
    params.finish(&[])?;
    if state.store.is_tombstoned(stream.as_str()) {
        return Err(ReadError::StreamDeleted { stream }.into());
    }
    let metadata = state.store.stream_metadata(stream.as_str()).unwrap_or_default();
    // Custom metadata that is not JSON (written through the embedded API) shows as `{}`.
    let custom = serde_json::from_slice::<serde_json::Value>(&metadata.custom)
        .unwrap_or_else(|_| serde_json::Value::Object(Default::default()));
    let custom = serde_json::value::to_raw_value(&custom).expect("a JSON value renders");
    Ok(Json(strata_wire::StreamMetadata {
        max_age_seconds: metadata.max_age_seconds,
        max_count: metadata.max_count,
        truncate_before: metadata.truncate_before.map(StreamRevision::value),
        custom: Some(custom),
    }))
}

/// Replaces a stream's metadata.
#[utoipa::path(put, path = "/v1/streams/{stream}/metadata", tag = "streams",
    params(("stream" = String, Path, description = "The stream id")),
    request_body = strata_wire::StreamMetadata,
    responses(
        (status = 200, body = strata_wire::StreamMetadata, description = "The metadata now in force"),
        (status = 400, description = "invalid_request"), (status = 410, description = "stream_deleted"),
        (status = 413, description = "payload_too_large"), (status = 503, description = "unavailable"),
    ))]
pub async fn put_metadata(
    State(state): State<AppState>,
    StreamPath(stream): StreamPath,
    params: Params,
    JsonBody(request): JsonBody<strata_wire::StreamMetadata>,
) -> Result<Json<strata_wire::StreamMetadata>, ApiError> {
    params.finish(&[])?;
    let custom = match &request.custom {
        None => bytes::Bytes::new(),
        Some(custom) if custom.get().trim_start().starts_with('{') => {
            bytes::Bytes::copy_from_slice(custom.get().as_bytes())
        }
        Some(custom) => return Err(ApiError::invalid(format!("custom must be a JSON object, got {}", custom.get()))),
    };
    let metadata = StreamMetadata {
        max_age_seconds: request.max_age_seconds,
        max_count: request.max_count,
        truncate_before: request.truncate_before.map(StreamRevision::new),
        custom,
    };
    match state.store.set_stream_metadata(stream.clone(), &metadata).await? {
        MultiAppendOutcome::Committed(_) => get_metadata(State(state), StreamPath(stream), Params::parse("")?).await,
        _ => Err(ApiError::internal("a metadata outcome this server does not know")),
    }
}
