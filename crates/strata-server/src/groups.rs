//! Consumer groups over HTTP (`DESIGN.md` §5): `PUT|GET|DELETE /v1/groups/{name}`, `GET /v1/groups`,
//! `POST /v1/groups/{name}/fetch|ack|nack|replay-parked`, `GET /v1/groups/{name}/parked`,
//! `GET|PUT /v1/groups/{name}/state` (backup and restore).

use crate::error::ApiError;
use crate::extract::{JsonBody, Params};
use crate::read::json_response;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::time::Duration;
use strata_core::{EventType, Position, Tag};
use strata_storage::{
    ConsumerGroups, Filter, GroupError, GroupInfo, GroupSettings, GroupSource, GroupSpec, GroupStart, NackAction,
    SavedGroup, Strategy,
};
use strata_wire::{
    AckRequest, AckResponse, FetchRequest, FetchResponse, Group, GroupDeleted, GroupList, GroupState, NackRequest,
    ParkedList, PutGroupRequest, Replayed,
};

impl From<GroupError> for ApiError {
    fn from(error: GroupError) -> Self {
        let message = error.to_string();
        match error {
            GroupError::NotFound(name) => ApiError::new(StatusCode::NOT_FOUND, "group_not_found", message)
                .with(|detail| detail.group = Some(name)),
            GroupError::Conflict(name) => {
                ApiError::new(StatusCode::CONFLICT, "group_conflict", message).with(|detail| detail.group = Some(name))
            }
            GroupError::Invalid(_) => ApiError::invalid(message),
            GroupError::Unavailable(_) => ApiError::unavailable(message),
            GroupError::Read(error) => error.into(),
            _ => ApiError::internal(message),
        }
    }
}

fn invalid(error: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(error.to_string())
}

/// A definition as the API shows it: its source, start and settings (every field given).
fn definition_json(
    spec: GroupSpec,
) -> (String, strata_wire::GroupSource, strata_wire::ReadFrom, strata_wire::GroupSettings) {
    let source = match spec.source {
        GroupSource::Stream(stream) => strata_wire::GroupSource::Stream(stream.to_string()),
        GroupSource::All(filter) => strata_wire::GroupSource::All(strata_wire::AllFilter {
            category: filter.category,
            types: filter.event_types.iter().map(|t| t.to_string()).collect(),
            stream_prefix: filter.stream_prefix,
            tags: filter.tags.iter().map(|t| t.to_string()).collect(),
        }),
    };
    let from = match spec.start {
        GroupStart::Start => strata_wire::ReadFrom::Start,
        GroupStart::End => strata_wire::ReadFrom::End,
        GroupStart::At(at) => strata_wire::ReadFrom::At(at),
    };
    let settings = spec.settings;
    let settings = strata_wire::GroupSettings {
        max_in_flight: Some(settings.max_in_flight as u64),
        ack_timeout_ms: Some(settings.ack_timeout.as_millis() as u64),
        max_retries: Some(u64::from(settings.max_retries)),
        strategy: Some(match settings.strategy {
            Strategy::RoundRobin => strata_wire::Strategy::RoundRobin,
            Strategy::Pinned => strata_wire::Strategy::Pinned,
        }),
    };
    (spec.name, source, from, settings)
}

fn group_json(info: GroupInfo) -> Group {
    let (name, source, from, settings) = definition_json(info.spec);
    Group {
        name,
        source,
        from,
        settings,
        checkpoint: info.checkpoint,
        lag_events: info.lag_events,
        lag_seconds: info.lag_seconds,
        in_flight: info.in_flight as u64,
        parked: info.parked as u64,
        consumers: info
            .consumers
            .into_iter()
            .map(|(consumer, in_flight)| strata_wire::GroupConsumer { consumer, in_flight: in_flight as u64 })
            .collect(),
    }
}

fn parked_json(parked: strata_storage::ParkedEvent) -> strata_wire::Parked {
    strata_wire::Parked {
        position: parked.position.value(),
        attempts: u64::from(parked.attempts),
        reason: parked.reason,
    }
}

fn spec_of(name: String, request: PutGroupRequest) -> Result<GroupSpec, ApiError> {
    let source = match request.source {
        strata_wire::GroupSource::Stream(stream) => {
            GroupSource::Stream(crate::convert::stream_id(stream, "source.stream")?)
        }
        strata_wire::GroupSource::All(filter) => GroupSource::All(Filter {
            category: filter.category,
            event_types: filter.types.into_iter().map(EventType::new).collect::<Result<_, _>>().map_err(invalid)?,
            stream_prefix: filter.stream_prefix,
            tags: filter.tags.into_iter().map(Tag::new).collect::<Result<_, _>>().map_err(invalid)?,
            query: None,
        }),
    };
    let start = match request.from {
        None | Some(strata_wire::ReadFrom::Start) => GroupStart::Start,
        Some(strata_wire::ReadFrom::End) => GroupStart::End,
        Some(strata_wire::ReadFrom::At(at)) => GroupStart::At(at),
    };
    let defaults = GroupSettings::default();
    let settings = request.settings.unwrap_or_default();
    let strategy = match settings.strategy {
        None | Some(strata_wire::Strategy::RoundRobin) => Strategy::RoundRobin,
        Some(strata_wire::Strategy::Pinned) => Strategy::Pinned,
    };
    let max_in_flight = settings.max_in_flight.map_or(defaults.max_in_flight, |n| n.min(usize::MAX as u64) as usize);
    let max_retries = match settings.max_retries {
        None => defaults.max_retries,
        Some(n) => u32::try_from(n).map_err(|_| ApiError::invalid("max_retries is out of range"))?,
    };
    let ack_timeout = settings.ack_timeout_ms.map_or(defaults.ack_timeout, Duration::from_millis);
    Ok(GroupSpec { name, source, start, settings: GroupSettings { max_in_flight, ack_timeout, max_retries, strategy } })
}

async fn groups(state: &AppState) -> Result<ConsumerGroups, ApiError> {
    state.groups().await
}

/// Creates a group, or changes an existing group's settings (its source and start cannot change).
#[utoipa::path(put, path = "/v1/groups/{name}", tag = "groups", request_body = PutGroupRequest,
    params(("name" = String, Path, description = "ASCII letters, digits, '-', '_', '.'")),
    responses((status = 200, body = Group, description = "The group"), (status = 400, description = "invalid_request"),
        (status = 409, description = "group_conflict: another source or start"),
        (status = 413, description = "payload_too_large"), (status = 503, description = "unavailable")))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(request): JsonBody<PutGroupRequest>,
) -> Result<Json<Group>, ApiError> {
    params.finish(&[])?;
    let groups = groups(&state).await?;
    let spec = spec_of(name.clone(), request)?;
    groups.put(spec).await?;
    Ok(Json(group_json(groups.info(&name).await?)))
}

/// A group's checkpoint, lag, deliveries in flight, parked events and consumers.
#[utoipa::path(get, path = "/v1/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = Group, description = "The group"), (status = 400, description = "invalid_request"),
        (status = 404, description = "group_not_found")))]
pub async fn get_group(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Group>, ApiError> {
    params.finish(&[])?;
    Ok(Json(group_json(groups(&state).await?.info(&name).await?)))
}

/// Every group.
#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    responses((status = 200, body = GroupList, description = "Every group"), (status = 400, description = "invalid_request")))]
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<GroupList>, ApiError> {
    params.finish(&[])?;
    let groups = groups(&state).await?;
    let mut all = Vec::new();
    for name in groups.names() {
        match groups.info(&name).await {
            Ok(info) => all.push(group_json(info)),
            // Deleted meanwhile.
            Err(GroupError::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Json(GroupList { groups: all }))
}

/// Deletes a group with its checkpoint and parked events.
#[utoipa::path(delete, path = "/v1/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = GroupDeleted, description = "Deleted"), (status = 400, description = "invalid_request"),
        (status = 404, description = "group_not_found")))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<GroupDeleted>, ApiError> {
    params.finish(&[])?;
    groups(&state).await?.delete(&name).await?;
    Ok(Json(GroupDeleted { deleted: name }))
}

/// Up to `max` events for `consumer`, waiting up to `wait_ms` for some (long poll).
#[utoipa::path(post, path = "/v1/groups/{name}/fetch", tag = "groups", request_body = FetchRequest,
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = FetchResponse, description = "Deliveries (none when nothing came within the wait)"),
        (status = 400, description = "invalid_request"), (status = 404, description = "group_not_found"),
        (status = 413, description = "payload_too_large")))]
pub async fn fetch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(request): JsonBody<FetchRequest>,
) -> Result<Response, ApiError> {
    params.finish(&[])?;
    let groups = groups(&state).await?;
    let max = usize::try_from(request.max.unwrap_or(10)).unwrap_or(usize::MAX);
    let wait = Duration::from_millis(request.wait_ms.unwrap_or(0));
    if wait > strata_storage::GROUP_WAIT_MAX {
        return Err(ApiError::invalid(format!(
            "wait_ms must be at most {}, not {}",
            strata_storage::GROUP_WAIT_MAX.as_millis(),
            wait.as_millis()
        )));
    }
    // A shutdown ends the wait (with nothing: no delivery is taken and then dropped).
    let deliveries = tokio::select! {
        deliveries = groups.fetch(&name, &request.consumer, max, wait) => deliveries?,
        () = state.shutdown_signal() => Vec::new(),
    };
    let out = crate::render::write_deliveries(&deliveries);
    Ok(json_response(out))
}

/// Marks deliveries handled.
#[utoipa::path(post, path = "/v1/groups/{name}/ack", tag = "groups", request_body = AckRequest,
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = AckResponse, description = "What was acked"), (status = 400, description = "invalid_request"),
        (status = 404, description = "group_not_found"), (status = 413, description = "payload_too_large")))]
pub async fn ack(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(request): JsonBody<AckRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    params.finish(&[])?;
    let outcome = groups(&state).await?.ack(&name, &request.delivery_ids).await?;
    Ok(Json(ack_response(outcome)))
}

fn ack_response(outcome: strata_storage::AckOutcome) -> AckResponse {
    AckResponse { done: outcome.done as u64, unknown: outcome.unknown, refused: outcome.refused }
}

/// Hands deliveries back: `retry`, `park` or `skip`.
#[utoipa::path(post, path = "/v1/groups/{name}/nack", tag = "groups", request_body = NackRequest,
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = AckResponse, description = "What was nacked"), (status = 400, description = "invalid_request"),
        (status = 404, description = "group_not_found"), (status = 413, description = "payload_too_large")))]
pub async fn nack(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(request): JsonBody<NackRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    params.finish(&[])?;
    let action = match request.action {
        strata_wire::NackAction::Retry => NackAction::Retry,
        strata_wire::NackAction::Park => NackAction::Park,
        strata_wire::NackAction::Skip => NackAction::Skip,
    };
    let outcome = groups(&state).await?.nack(&name, &request.delivery_ids, action).await?;
    Ok(Json(ack_response(outcome)))
}

/// The group's parked events, oldest first.
#[utoipa::path(get, path = "/v1/groups/{name}/parked", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = ParkedList, description = "The parked events, oldest first"),
        (status = 400, description = "invalid_request"), (status = 404, description = "group_not_found")))]
pub async fn parked(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<ParkedList>, ApiError> {
    params.finish(&[])?;
    let parked = groups(&state).await?.parked(&name).await?;
    Ok(Json(ParkedList { parked: parked.into_iter().map(parked_json).collect() }))
}

/// Delivers the parked events again; each leaves the parked list once handled.
#[utoipa::path(post, path = "/v1/groups/{name}/replay-parked", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = Replayed, description = "How many were delivered again"),
        (status = 400, description = "invalid_request"), (status = 404, description = "group_not_found")))]
pub async fn replay_parked(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Replayed>, ApiError> {
    params.finish(&[])?;
    let replayed = groups(&state).await?.replay_parked(&name).await?;
    Ok(Json(Replayed { replayed: replayed as u64 }))
}

/// The group's whole durable state — definition, first event, checkpoint, parked events — as
/// `strata backup` keeps it.
#[utoipa::path(get, path = "/v1/groups/{name}/state", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = GroupState, description = "The group's durable state"),
        (status = 400, description = "invalid_request"), (status = 404, description = "group_not_found")))]
pub async fn get_state(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<GroupState>, ApiError> {
    params.finish(&[])?;
    let saved = groups(&state).await?.saved(&name).await?;
    let (_, source, from, settings) = definition_json(saved.spec);
    Ok(Json(GroupState {
        source,
        from,
        settings: Some(settings),
        first: saved.first,
        checkpoint: saved.checkpoint,
        parked: saved.parked.into_iter().map(parked_json).collect(),
    }))
}

/// Creates a group from a saved state (a restore): it resumes after the checkpoint with its parked
/// events. The events it refers to must be in the store (restore them first).
#[utoipa::path(put, path = "/v1/groups/{name}/state", tag = "groups", request_body = GroupState,
    params(("name" = String, Path, description = "ASCII letters, digits, '-', '_', '.'")),
    responses((status = 200, body = Group, description = "The group, restored"),
        (status = 400, description = "invalid_request: the state refers to events the store does not hold, or is invalid"),
        (status = 409, description = "group_conflict: a group of this name exists"),
        (status = 413, description = "payload_too_large"), (status = 503, description = "unavailable")))]
pub async fn put_state(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(request): JsonBody<GroupState>,
) -> Result<Json<Group>, ApiError> {
    params.finish(&[])?;
    let groups = groups(&state).await?;
    let (first, checkpoint) = (request.first, request.checkpoint);
    let parked = request
        .parked
        .into_iter()
        .map(|parked| {
            let attempts = u32::try_from(parked.attempts).map_err(|_| ApiError::invalid("attempts is out of range"))?;
            Ok(strata_storage::ParkedEvent {
                position: Position::new(parked.position),
                attempts,
                reason: parked.reason,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let definition = PutGroupRequest { source: request.source, from: Some(request.from), settings: request.settings };
    let spec = spec_of(name.clone(), definition)?;
    groups.restore(SavedGroup { spec, first, checkpoint, parked }).await?;
    Ok(Json(group_json(groups.info(&name).await?)))
}
