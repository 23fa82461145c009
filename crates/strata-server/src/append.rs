//! `POST /v1/streams/{stream}` and `POST /v1/append`.

use crate::convert::stream_id;
use crate::error::ApiError;
use crate::extract::{JsonBody, Params, StreamPath};
use crate::metrics::AppendResult as Counted;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use std::time::Instant;
use strata_core::ExpectedRevision;
use strata_storage::{AppendCondition, AppendOutcome, MultiAppend, MultiAppendOutcome};
use strata_wire::{AppendRequest, AppendResponse, MultiAppendRequest, MultiAppendResponse, StreamAppend};

/// Appends events to one stream, atomically, if the expected revision holds.
#[utoipa::path(post, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "The stream id")),
    request_body = AppendRequest,
    responses(
        (status = 200, body = AppendResponse, description = "Committed (durably) or replayed"),
        (status = 400, description = "invalid_request"), (status = 409, description = "wrong_expected_revision"),
        (status = 410, description = "stream_deleted"), (status = 413, description = "payload_too_large"),
        (status = 503, description = "unavailable"),
    ))]
pub async fn append(
    State(state): State<AppState>,
    StreamPath(stream): StreamPath,
    params: Params,
    JsonBody(request): JsonBody<AppendRequest>,
) -> Result<Json<AppendResponse>, ApiError> {
    let started = Instant::now();
    params.finish(&[])?;
    let expected = request.expected_revision.unwrap_or_default().into();
    let events = convert_events(request.events, |event, at| {
        if event.stream.is_some() {
            return Err(ApiError::invalid("the stream is in the URL; events here take no stream field").at(at));
        }
        Ok(())
    })?;
    let count = events.len();
    let bytes: usize = events.iter().map(|event| event.size_bytes()).sum();
    let outcome = state.store.append(stream, expected, events).await;
    let result = match outcome {
        Ok(AppendOutcome::Committed(result)) => result,
        Ok(AppendOutcome::WrongExpectedRevision { stream, expected, actual }) => {
            state.metrics.count_append(Counted::Conflict, 0, 0, started);
            return Err(wrong_expected_revision(&stream, expected, actual));
        }
        Err(error) => {
            state.metrics.count_append(Counted::Failed, 0, 0, started);
            return Err(error.into());
        }
    };
    count_committed(&state, result.replayed, count, bytes, started);
    Ok(Json(AppendResponse {
        first_revision: result.first_revision.value(),
        last_revision: result.last_revision.value(),
        first_position: result.first_position.value(),
        last_position: result.last_position.value(),
        recorded_at: result.recorded_at.map(|time| time.to_string()),
        replayed: result.replayed,
    }))
}

/// The HTTP ceiling of `strata bench server`: [`append`]'s parsing and validation of the request,
/// and an answer of the same shape, without the store — the cost of HTTP and JSON alone.
pub async fn append_without_storage(
    StreamPath(_stream): StreamPath,
    params: Params,
    JsonBody(request): JsonBody<AppendRequest>,
) -> Result<Json<AppendResponse>, ApiError> {
    params.finish(&[])?;
    let events = convert_events(request.events, |_, _| Ok(()))?;
    let last = events.len() as u64 - 1;
    Ok(Json(AppendResponse {
        first_revision: 0,
        last_revision: last,
        first_position: 0,
        last_position: last,
        recorded_at: None,
        replayed: false,
    }))
}

/// Appends events to several streams as one atomic batch, with expected-revision checks and an
/// optional DCB condition.
#[utoipa::path(post, path = "/v1/append", tag = "streams",
    request_body = MultiAppendRequest,
    responses(
        (status = 200, body = MultiAppendResponse, description = "Committed (durably) or replayed"),
        (status = 400, description = "invalid_request"),
        (status = 409, description = "wrong_expected_revision or append_condition_failed"),
        (status = 410, description = "stream_deleted"), (status = 413, description = "payload_too_large"),
        (status = 503, description = "unavailable"),
    ))]
pub async fn append_multi(
    State(state): State<AppState>,
    params: Params,
    JsonBody(request): JsonBody<MultiAppendRequest>,
) -> Result<Json<MultiAppendResponse>, ApiError> {
    let started = Instant::now();
    params.finish(&[])?;
    let mut streams = Vec::with_capacity(request.events.len());
    for (at, event) in request.events.iter().enumerate() {
        let Some(stream) = &event.stream else {
            return Err(ApiError::invalid("each event needs its stream").at(&format!("events[{at}]")));
        };
        streams.push(stream_id(stream.clone(), &format!("events[{at}].stream"))?);
    }
    let events = convert_events(request.events, |_, _| Ok(()))?;
    let checks = request
        .checks
        .into_iter()
        .enumerate()
        .map(|(at, check)| {
            let place = format!("checks[{at}]");
            Ok((stream_id(check.stream, &format!("{place}.stream"))?, check.expected_revision.into()))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let condition = request
        .condition
        .map(|condition| {
            let query = crate::convert::query(condition.query).map_err(|error| error.at("condition"))?;
            Ok::<_, ApiError>(AppendCondition { query, after: condition.after.map(strata_core::Position::new) })
        })
        .transpose()?;
    let count = events.len();
    let bytes: usize = events.iter().map(|event| event.size_bytes()).sum();
    let append = MultiAppend { events: streams.into_iter().zip(events).collect(), checks, condition };
    let result = match state.store.append_multi(append).await {
        Ok(MultiAppendOutcome::Committed(result)) => result,
        Ok(MultiAppendOutcome::WrongExpectedRevision { stream, expected, actual }) => {
            state.metrics.count_append(Counted::Conflict, 0, 0, started);
            return Err(wrong_expected_revision(&stream, expected, actual));
        }
        Ok(MultiAppendOutcome::ConditionFailed { position }) => {
            state.metrics.count_append(Counted::Conflict, 0, 0, started);
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "append_condition_failed",
                format!(
                    "the append condition failed: the event at position {} matches its query; nothing was written \
                     — read the new events, decide again and retry with a later `after`",
                    position.value()
                ),
            )
            .with(|detail| detail.position = Some(position.value())));
        }
        Err(error) => {
            state.metrics.count_append(Counted::Failed, 0, 0, started);
            return Err(error.into());
        }
    };
    count_committed(&state, result.replayed, count, bytes, started);
    Ok(Json(MultiAppendResponse {
        first_position: result.first_position.value(),
        last_position: result.last_position.value(),
        streams: result
            .streams
            .into_iter()
            .map(|stream| StreamAppend {
                stream: stream.stream.to_string(),
                first_revision: stream.first_revision.value(),
                last_revision: stream.last_revision.value(),
            })
            .collect(),
        recorded_at: result.recorded_at.map(|time| time.to_string()),
        replayed: result.replayed,
    }))
}

/// A replay wrote nothing: it counts as a committed request with no events.
fn count_committed(state: &AppState, replayed: bool, events: usize, bytes: usize, started: Instant) {
    let (events, bytes) = if replayed { (0, 0) } else { (events, bytes) };
    state.metrics.count_append(Counted::Committed, events, bytes, started);
}

/// Converts the events, checking the count first (before converting thousands of them).
fn convert_events(
    events: Vec<strata_wire::NewEvent>,
    check: impl Fn(&strata_wire::NewEvent, &str) -> Result<(), ApiError>,
) -> Result<Vec<strata_core::NewEvent>, ApiError> {
    if events.is_empty() {
        return Err(strata_core::ValidationError::EmptyBatch.into());
    }
    let max = strata_core::limits::APPEND_EVENTS_MAX;
    if events.len() > max {
        return Err(strata_core::ValidationError::TooManyEvents { count: events.len(), max }.into());
    }
    events
        .into_iter()
        .enumerate()
        .map(|(at, event)| {
            let place = format!("events[{at}]");
            check(&event, &place)?;
            crate::convert::new_event(event).map_err(|error| error.at(&place))
        })
        .collect()
}

pub fn wrong_expected_revision(
    stream: &strata_core::StreamId,
    expected: ExpectedRevision,
    actual: Option<strata_core::StreamRevision>,
) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "wrong_expected_revision",
        format!(
            "stream {stream} was expected at {expected} but is at {}; nothing was written — read the stream, \
             decide again and retry",
            strata_core::position::display_actual(actual)
        ),
    )
    .with(|detail| {
        detail.stream = Some(stream.to_string());
        detail.expected = Some(expected.into());
        detail.actual = Some(actual.into());
    })
}
