//! Consumer groups over HTTP (`DESIGN.md` §5): `PUT|GET|DELETE /v1/groups/{name}`, `GET /v1/groups`,
//! `POST /v1/groups/{name}/fetch|ack|nack|replay-parked`, `GET /v1/groups/{name}/parked`.

use crate::error::ApiError;
use crate::extract::{JsonBody, Params};
use crate::read::json_response;
use crate::state::AppState;
use crate::wire::{write_event, write_string};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use strata_core::{EventType, Tag};
use strata_storage::{
    ConsumerGroups, Filter, GroupError, GroupInfo, GroupSettings, GroupSource, GroupSpec, GroupStart, NackAction,
    Strategy,
};
use utoipa::ToSchema;

impl From<GroupError> for ApiError {
    fn from(error: GroupError) -> Self {
        let message = error.to_string();
        match error {
            GroupError::NotFound(name) => {
                ApiError::new(StatusCode::NOT_FOUND, "group_not_found", message).with("group", name.as_str())
            }
            GroupError::Conflict(name) => {
                ApiError::new(StatusCode::CONFLICT, "group_conflict", message).with("group", name.as_str())
            }
            GroupError::Invalid(_) => ApiError::invalid(message),
            GroupError::Read(error) => error.into(),
            _ => ApiError::internal(message),
        }
    }
}

/// The source of a group: one stream, or the global log with filters.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SourceJson {
    Stream(String),
    All(AllFilterJson),
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllFilterJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsJson {
    pub max_in_flight: Option<u64>,
    pub ack_timeout_ms: Option<u64>,
    pub max_retries: Option<u64>,
    /// `round_robin` (default) or `pinned`.
    pub strategy: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGroupRequest {
    pub source: SourceJson,
    /// `start` (default), `end`, or a position (global log) / revision (stream).
    #[schema(value_type = Option<Object>)]
    pub from: Option<Value>,
    pub settings: Option<SettingsJson>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    pub consumer: String,
    /// At most this many events (default 10, at most 1000).
    pub max: Option<u64>,
    /// Wait up to this long for events (default 0, at most 60,000).
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub delivery_ids: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackRequest {
    pub delivery_ids: Vec<String>,
    /// `retry`, `park` or `skip`.
    pub action: String,
}

/// A group as `GET /v1/groups/{name}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupJson {
    pub name: String,
    pub source: SourceJson,
    #[schema(value_type = Object)]
    pub from: Value,
    pub settings: SettingsJson,
    /// Everything up to here is handled: a position (global log) or a revision (stream).
    pub checkpoint: Option<u64>,
    pub lag_events: u64,
    pub lag_seconds: f64,
    pub in_flight: u64,
    pub parked: u64,
    /// Consumers seen within the ack timeout, with the deliveries each holds.
    #[schema(value_type = Vec<Object>)]
    pub consumers: Vec<Value>,
}

/// `{"deliveries": [{"delivery_id", "attempt", "event"}]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FetchResponse {
    #[schema(value_type = Vec<Object>)]
    pub deliveries: Vec<Value>,
}

fn invalid(error: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(error.to_string())
}

fn group_json(info: GroupInfo) -> GroupJson {
    let spec = info.spec;
    let source = match spec.source {
        GroupSource::Stream(stream) => SourceJson::Stream(stream.to_string()),
        GroupSource::All(filter) => SourceJson::All(AllFilterJson {
            category: filter.category,
            types: filter.event_types.iter().map(|t| t.to_string()).collect(),
            stream_prefix: filter.stream_prefix,
            tags: filter.tags.iter().map(|t| t.to_string()).collect(),
        }),
    };
    let from = match spec.start {
        GroupStart::Start => json!("start"),
        GroupStart::End => json!("end"),
        GroupStart::At(at) => json!(at),
    };
    let settings = spec.settings;
    GroupJson {
        name: spec.name,
        source,
        from,
        settings: SettingsJson {
            max_in_flight: Some(settings.max_in_flight as u64),
            ack_timeout_ms: Some(settings.ack_timeout.as_millis() as u64),
            max_retries: Some(u64::from(settings.max_retries)),
            strategy: Some(
                match settings.strategy {
                    Strategy::RoundRobin => "round_robin",
                    Strategy::Pinned => "pinned",
                }
                .to_owned(),
            ),
        },
        checkpoint: info.checkpoint,
        lag_events: info.lag_events,
        lag_seconds: info.lag_seconds,
        in_flight: info.in_flight as u64,
        parked: info.parked as u64,
        consumers: info
            .consumers
            .into_iter()
            .map(|(name, in_flight)| json!({ "consumer": name, "in_flight": in_flight }))
            .collect(),
    }
}

fn spec_of(name: String, request: PutGroupRequest) -> Result<GroupSpec, ApiError> {
    let source = match request.source {
        SourceJson::Stream(stream) => GroupSource::Stream(crate::wire::stream_id(stream, "source.stream")?),
        SourceJson::All(filter) => GroupSource::All(Filter {
            category: filter.category,
            event_types: filter.types.into_iter().map(EventType::new).collect::<Result<_, _>>().map_err(invalid)?,
            stream_prefix: filter.stream_prefix,
            tags: filter.tags.into_iter().map(Tag::new).collect::<Result<_, _>>().map_err(invalid)?,
            query: None,
        }),
    };
    let start = match &request.from {
        None => GroupStart::Start,
        Some(Value::String(text)) if text == "start" => GroupStart::Start,
        Some(Value::String(text)) if text == "end" => GroupStart::End,
        Some(value) => GroupStart::At(
            value.as_u64().ok_or_else(|| ApiError::invalid("from must be \"start\", \"end\" or a number"))?,
        ),
    };
    let defaults = GroupSettings::default();
    let settings = request.settings.unwrap_or_default();
    let strategy = match settings.strategy.as_deref() {
        None | Some("round_robin") => Strategy::RoundRobin,
        Some("pinned") => Strategy::Pinned,
        Some(other) => return Err(ApiError::invalid(format!("strategy must be round_robin or pinned, not {other}"))),
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
    responses((status = 200, body = GroupJson), (status = 400, description = "invalid_request"),
        (status = 409, description = "group_conflict: another source or start")))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(request): JsonBody<PutGroupRequest>,
) -> Result<Json<GroupJson>, ApiError> {
    params.finish(&[])?;
    let groups = groups(&state).await?;
    let spec = spec_of(name.clone(), request)?;
    groups.put(spec).await?;
    Ok(Json(group_json(groups.info(&name).await?)))
}

/// A group's checkpoint, lag, deliveries in flight, parked events and consumers.
#[utoipa::path(get, path = "/v1/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = GroupJson), (status = 404, description = "group_not_found")))]
pub async fn get_group(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<GroupJson>, ApiError> {
    params.finish(&[])?;
    Ok(Json(group_json(groups(&state).await?.info(&name).await?)))
}

/// Every group.
#[utoipa::path(get, path = "/v1/groups", tag = "groups", responses((status = 200, description = "{\"groups\": [group]}")))]
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<Value>, ApiError> {
    params.finish(&[])?;
    let groups = groups(&state).await?;
    let mut all = Vec::new();
    for name in groups.names() {
        match groups.info(&name).await {
            Ok(info) => all.push(serde_json::to_value(group_json(info)).expect("a group renders")),
            // Deleted meanwhile.
            Err(GroupError::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Json(json!({ "groups": all })))
}

/// Deletes a group with its checkpoint and parked events.
#[utoipa::path(delete, path = "/v1/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, description = "{\"deleted\": name}"), (status = 404, description = "group_not_found")))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.finish(&[])?;
    groups(&state).await?.delete(&name).await?;
    Ok(Json(json!({ "deleted": name })))
}

/// Up to `max` events for `consumer`, waiting up to `wait_ms` for some (long poll).
#[utoipa::path(post, path = "/v1/groups/{name}/fetch", tag = "groups", request_body = FetchRequest,
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, body = FetchResponse), (status = 404, description = "group_not_found")))]
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
    let mut out = Vec::with_capacity(64 + deliveries.len() * 320);
    out.extend_from_slice(b"{\"deliveries\":[");
    for (at, delivery) in deliveries.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"delivery_id\":");
        write_string(&mut out, &delivery.delivery_id);
        out.extend_from_slice(format!(",\"attempt\":{},\"event\":", delivery.attempt).as_bytes());
        write_event(&mut out, &delivery.event);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(out))
}

/// Marks deliveries handled.
#[utoipa::path(post, path = "/v1/groups/{name}/ack", tag = "groups", request_body = AckRequest,
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, description = "{\"done\": n, \"unknown\": [ids no longer outstanding]}"),
        (status = 404, description = "group_not_found")))]
pub async fn ack(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(request): JsonBody<AckRequest>,
) -> Result<Json<Value>, ApiError> {
    params.finish(&[])?;
    let outcome = groups(&state).await?.ack(&name, &request.delivery_ids).await?;
    Ok(Json(json!({ "done": outcome.done, "unknown": outcome.unknown, "refused": outcome.refused })))
}

/// Hands deliveries back: `retry`, `park` or `skip`.
#[utoipa::path(post, path = "/v1/groups/{name}/nack", tag = "groups", request_body = NackRequest,
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, description = "{\"done\": n, \"unknown\": [ids]}"), (status = 404, description = "group_not_found")))]
pub async fn nack(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(request): JsonBody<NackRequest>,
) -> Result<Json<Value>, ApiError> {
    params.finish(&[])?;
    let action = match request.action.as_str() {
        "retry" => NackAction::Retry,
        "park" => NackAction::Park,
        "skip" => NackAction::Skip,
        other => return Err(ApiError::invalid(format!("action must be retry, park or skip, not {other}"))),
    };
    let outcome = groups(&state).await?.nack(&name, &request.delivery_ids, action).await?;
    Ok(Json(json!({ "done": outcome.done, "unknown": outcome.unknown, "refused": outcome.refused })))
}

/// The group's parked events, oldest first.
#[utoipa::path(get, path = "/v1/groups/{name}/parked", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, description = "{\"parked\": [{position, attempts, reason}]}"), (status = 404, description = "group_not_found")))]
pub async fn parked(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.finish(&[])?;
    let parked = groups(&state).await?.parked(&name).await?;
    let parked: Vec<Value> = parked
        .into_iter()
        .map(|p| json!({ "position": p.position.value(), "attempts": p.attempts, "reason": p.reason }))
        .collect();
    Ok(Json(json!({ "parked": parked })))
}

/// Delivers the parked events again; each leaves the parked list once handled.
#[utoipa::path(post, path = "/v1/groups/{name}/replay-parked", tag = "groups",
    params(("name" = String, Path, description = "The group")),
    responses((status = 200, description = "{\"replayed\": n}"), (status = 404, description = "group_not_found")))]
pub async fn replay_parked(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.finish(&[])?;
    let replayed = groups(&state).await?.replay_parked(&name).await?;
    Ok(Json(json!({ "replayed": replayed })))
}
