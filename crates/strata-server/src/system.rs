//! `GET /v1/health`, `GET /v1/info`, `GET /v1/openapi.json`, and the answers to unknown routes and
//! methods.

use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strata_core::limits;

/// 200 while the store accepts writes; 503 when a storage failure made it refuse them (reads go on).
#[utoipa::path(get, path = "/v1/health", tag = "operations",
    responses((status = 200, description = "{\"status\":\"ok\"}"), (status = 503, description = "{\"status\":\"unavailable\",\"reason\":…}")))]
pub async fn health(State(state): State<AppState>) -> Response {
    match state.store.poison_reason() {
        None => Json(json!({ "status": "ok" })).into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "reason": reason })))
            .into_response(),
    }
}

/// The server's version, head position, recovery report and limits.
#[utoipa::path(get, path = "/v1/info", tag = "operations", responses((status = 200, description = "Server facts")))]
pub async fn info(State(state): State<AppState>) -> Json<Value> {
    let report = state.store.recovery_report();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": state.store.dir().display().to_string(),
        "head_position": state.store.head_position().map(|position| position.value()),
        "writes_poisoned": state.store.poison_reason(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "subscriptions_open": state.metrics.subscriptions_open(),
        "recovery": {
            "segments": report.segments,
            "events": report.events,
            "torn_tail_bytes_zeroed": report.torn_tail_bytes_zeroed,
            "torn_tail_saved_to": report.torn_tail_saved_to.as_ref().map(|path| path.display().to_string()),
        },
        "limits": {
            "stream_id_bytes_max": limits::STREAM_ID_BYTES_MAX,
            "event_type_bytes_max": limits::EVENT_TYPE_BYTES_MAX,
            "tag_bytes_max": limits::TAG_BYTES_MAX,
            "tags_per_event_max": limits::TAGS_PER_EVENT_MAX,
            "event_bytes_max_default": limits::EVENT_BYTES_MAX_DEFAULT,
            "append_bytes_max": limits::APPEND_BYTES_MAX,
            "append_events_max": limits::APPEND_EVENTS_MAX,
            "read_events_max": limits::READ_EVENTS_MAX,
            "streams_list_max": limits::STREAMS_LIST_MAX,
            "request_body_bytes_max": crate::extract::REQUEST_BODY_BYTES_MAX,
        },
    }))
}

/// The OpenAPI 3.1 description of this API, generated from the handlers and types.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi())
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
