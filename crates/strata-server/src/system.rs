//! `GET /v1/health`, `GET /v1/info`, `GET /v1/openapi.json`, and the answers to unknown routes and
//! methods.

use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use strata_core::limits;
use strata_wire::{Health, HealthStatus, Info, InfoLimits, InfoRecovery};

/// 200 while the store accepts writes; 503 when a storage failure made it refuse them (reads go on).
#[utoipa::path(get, path = "/v1/health", tag = "operations",
    responses(
        (status = 200, body = Health, description = "`{\"status\":\"ok\"}`"),
        (status = 503, body = Health, description = "`{\"status\":\"unavailable\",\"reason\":…}`: writes are refused"),
    ))]
pub async fn health(State(state): State<AppState>) -> Response {
    match state.store.poison_reason() {
        None => Json(Health { status: HealthStatus::Ok, reason: None }).into_response(),
        Some(reason) => {
            let health = Health { status: HealthStatus::Unavailable, reason: Some(reason.to_owned()) };
            (StatusCode::SERVICE_UNAVAILABLE, Json(health)).into_response()
        }
    }
}

/// The server's version, head position, recovery report and limits.
#[utoipa::path(get, path = "/v1/info", tag = "operations", responses((status = 200, body = Info, description = "Server facts")))]
pub async fn info(State(state): State<AppState>) -> Json<Info> {
    let report = state.store.recovery_report();
    let bytes = |limit: usize| limit as u64;
    Json(Info {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        data_dir: state.store.dir().display().to_string(),
        head_position: state.store.head_position().map(|position| position.value()),
        writes_poisoned: state.store.poison_reason().map(str::to_owned),
        uptime_seconds: state.started.elapsed().as_secs(),
        subscriptions_open: state.metrics.subscriptions_open(),
        recovery: InfoRecovery {
            segments: report.segments as u64,
            events: report.events,
            torn_tail_bytes_zeroed: report.torn_tail_bytes_zeroed,
            torn_tail_saved_to: report.torn_tail_saved_to.as_ref().map(|path| path.display().to_string()),
        },
        limits: InfoLimits {
            stream_id_bytes_max: bytes(limits::STREAM_ID_BYTES_MAX),
            event_type_bytes_max: bytes(limits::EVENT_TYPE_BYTES_MAX),
            tag_bytes_max: bytes(limits::TAG_BYTES_MAX),
            tags_per_event_max: bytes(limits::TAGS_PER_EVENT_MAX),
            event_bytes_max_default: bytes(limits::EVENT_BYTES_MAX_DEFAULT),
            append_bytes_max: bytes(limits::APPEND_BYTES_MAX),
            append_events_max: bytes(limits::APPEND_EVENTS_MAX),
            read_events_max: bytes(limits::READ_EVENTS_MAX),
            streams_list_max: bytes(limits::STREAMS_LIST_MAX),
            request_body_bytes_max: bytes(crate::extract::REQUEST_BODY_BYTES_MAX),
        },
        cluster: state.cluster.as_ref().map(|cluster| cluster.info()),
    })
}

/// The OpenAPI 3.1 description of this API, generated from the handlers and the `strata-wire` types.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, content_type = "application/json", body = Object, description = "OpenAPI 3.1")))]
pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi_json())
}

pub async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request",
        format!("there is no {method} {}; the API is described at /v1/openapi.json", uri.path()),
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        format!("{} does not take {method}; the API is described at /v1/openapi.json", uri.path()),
    )
}
