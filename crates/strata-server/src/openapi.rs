//! The OpenAPI 3.1 document (`GET /v1/openapi.json`): the handlers' `#[utoipa::path]` annotations
//! and the `strata_wire` types' schemas, completed here with what every route shares, so that it
//! says exactly what the server does:
//! - every error answer is a `strata_wire::ErrorBody`;
//! - every route can answer 400 (unknown or malformed query parameters) and 500 (`internal`: a bug,
//!   or damage found on read); a route with a body also 408 (the body did not arrive in time) and 413
//!   (larger than the cap); and hyper answers 414 and 431 (a request line or headers too long, no
//!   body) before the router sees the request;
//! - path parameters carry the constraints the server checks (`{stream}`: a stream id, not `$` for
//!   writes; `{name}`: a group name);
//! - the `query` parameter (a DCB query) is JSON, described by its schema.
//!
//! `scripts/schemathesis` holds the server to it.

use serde_json::{Value, json};
use strata_wire::pattern;
use utoipa::OpenApi as _;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Strata", description = "A durable event store: streams, one gapless global log, subscriptions, consumer groups."),
    paths(
        crate::append::append, crate::append::append_multi, crate::import::import, crate::read::read_stream,
        crate::read::read_all, crate::subscribe::subscribe,
        crate::streams::list, crate::streams::info, crate::streams::delete, crate::streams::get_metadata,
        crate::streams::put_metadata,
        crate::system::health, crate::system::info, crate::system::openapi, crate::metrics::metrics,
        crate::scavenge::scavenge, crate::scavenge::verify,
        crate::groups::put, crate::groups::get_group, crate::groups::list, crate::groups::delete, crate::groups::fetch,
        crate::groups::ack, crate::groups::nack, crate::groups::parked, crate::groups::replay_parked,
        crate::groups::get_state, crate::groups::put_state,
    ),
    components(schemas(
        strata_wire::ErrorBody, strata_wire::CaughtUp, strata_wire::FellBehind, strata_wire::RecordedEvent,
        strata_wire::MetadataChanged, strata_wire::StreamDeleted, strata_wire::StreamTombstoned,
        strata_wire::Direction, strata_wire::ReadFrom, strata_wire::ExpectedRevision, strata_wire::Query,
        strata_wire::QueryItem,
    )),
    tags((name = "streams"), (name = "subscriptions"), (name = "groups"), (name = "operations"))
)]
struct ApiDoc;

/// The document as utoipa builds it from the annotations, before [`openapi_json`] completes it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The complete document, as `GET /v1/openapi.json` serves it.
pub fn openapi_json() -> Value {
    let mut document = serde_json::to_value(openapi()).expect("the document renders");
    unsigned_integers(&mut document);
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, operation) in item.iter_mut() {
                complete_operation(method, operation);
            }
        }
    }
    document
}

/// utoipa describes a `u64` as `int64` with minimum 0, but the server takes (and answers) every
/// `u64`: beyond `int64`'s maximum too.
fn unsigned_integers(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if object.get("format").and_then(Value::as_str) == Some("int64")
                && object.get("minimum").and_then(Value::as_u64) == Some(0)
            {
                object.insert("format".to_owned(), json!("uint64"));
                object.entry("maximum").or_insert(json!(u64::MAX));
            }
            object.values_mut().for_each(unsigned_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_integers),
        _ => {}
    }
}

/// One Server-Sent Event of `GET /v1/subscribe`: an event (`id:` its position, `data:` a
/// RecordedEvent), `caught_up`, `fell_behind` or `error`, each `data:` JSON of its schema.
fn subscription_event_schema() -> Value {
    let data = |schema: &str| {
        json!({
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": { "$ref": format!("#/components/schemas/{schema}") },
        })
    };
    let control = |name: &str, schema: &str| {
        json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": { "event": { "const": name }, "data": data(schema) },
        })
    };
    json!({
        "description": "One Server-Sent Event",
        "oneOf": [
            {
                "type": "object",
                "required": ["id", "data"],
                "properties": {
                    "event": { "const": "message" },
                    "id": { "type": "string", "pattern": "^[0-9]+$", "description": "The event's position" },
                    "data": data("RecordedEvent"),
                },
            },
            control("caught_up", "CaughtUp"),
            control("fell_behind", "FellBehind"),
            control("error", "ErrorBody"),
        ],
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
    })
}

fn complete_operation(method: &str, operation: &mut Value) {
    let has_body = operation.get("requestBody").is_some();
    if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
        for parameter in parameters {
            complete_parameter(method, parameter);
        }
    }
    let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { return };
    if let Some(stream) = responses.get_mut("200").and_then(|ok| ok.pointer_mut("/content/text~1event-stream")) {
        stream["schema"] = subscription_event_schema();
    }
    let mut shared = vec![
        ("400", "invalid_request: a malformed request (unknown or malformed query parameters, a bad body)"),
        ("500", "internal: a bug, or damage found while reading (`strata verify`)"),
        // Every route of a cluster node can be refused for the cluster's sake; reads also when a
        // `min_position` is not reached in time.
        (
            "503",
            "unavailable; in cluster mode also not_leader (no leader reachable, nothing sent; `leader_url` says where to send it) or stale (this node is cut off from the cluster)",
        ),
    ];
    // Browser safety (`browser`), before routing.
    let changes_state = !matches!(method, "get" | "head" | "options");
    shared.push((
        "403",
        if changes_state {
            "host_not_allowed: the Host names neither a loopback host, an IP address nor one of --allowed-hosts (DNS rebinding); origin_not_allowed: the request comes from a web page of another origin than the server's and not one of --cors-origin; nothing was done"
        } else {
            "host_not_allowed: the Host names neither a loopback host, an IP address nor one of --allowed-hosts (DNS rebinding)"
        },
    ));
    if changes_state {
        shared.push((
            "415",
            "unsupported_media_type: a body not sent as Content-Type: application/json, or a request declaring a form's or text/plain content type; nothing was done",
        ));
    }
    if has_body {
        shared.push(("408", "invalid_request: the body did not arrive within 30 s"));
        shared.push(("413", "payload_too_large: the body is larger than 24 MiB, or an event or the append too large"));
    }
    for (status, description) in shared {
        responses.entry(status).or_insert_with(|| error_response(description));
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.as_str() >= "400";
        if is_error && response.get("content").is_none() {
            let description = response["description"].as_str().unwrap_or_default().to_owned();
            *response = error_response(&description);
        }
    }
    // Answered by the HTTP layer before the API sees the request, without a body.
    responses.insert(
        "414".to_owned(),
        json!({ "description": "The request line is longer than the server reads (about 400 KiB; 64 KiB for a subscription); no body" }),
    );
    responses.insert(
        "431".to_owned(),
        json!({ "description": "The request's headers are larger than the server reads; no body" }),
    );
}

fn complete_parameter(method: &str, parameter: &mut Value) {
    let (Some(name), Some(place)) = (parameter["name"].as_str(), parameter["in"].as_str()) else { return };
    match (place, name) {
        ("path", "stream") => {
            let pattern = if method == "get" { pattern::NAME } else { pattern::USER_NAME };
            parameter["schema"] = json!({
                "type": "string", "minLength": 1, "maxLength": strata_core::limits::STREAM_ID_BYTES_MAX,
                "pattern": pattern,
            });
            parameter["description"] = json!(if method == "get" {
                "The stream id: 1–256 bytes of UTF-8, no control characters"
            } else {
                "The stream id: 1–256 bytes of UTF-8, no control characters, not starting with `$` (reserved)"
            });
        }
        ("path", "name") => {
            parameter["schema"] = json!({ "type": "string", "pattern": r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$" });
            parameter["description"] =
                json!("The group's name: 1–128 ASCII letters, digits, `-`, `_`, `.`, not starting with `.`");
        }
        ("query", "query") => {
            // A DCB query is JSON in the parameter: described by its schema, not as a string.
            let schema = parameter.as_object_mut().and_then(|object| object.remove("schema"));
            let schema = match schema {
                Some(Value::Object(mut schema)) => {
                    // `Option<Query>` comes as `oneOf [null, Query]`; the parameter is simply absent.
                    match schema.remove("oneOf") {
                        Some(Value::Array(items)) => {
                            items.into_iter().find(|item| item.get("$ref").is_some()).unwrap_or(Value::Object(schema))
                        }
                        _ => Value::Object(schema),
                    }
                }
                _ => json!({ "$ref": "#/components/schemas/Query" }),
            };
            parameter["content"] = json!({ "application/json": { "schema": schema } });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    /// Every route of the router, with every method it takes, is in the document with its path
    /// parameters declared; and every documented operation is routed.
    #[tokio::test]
    async fn the_document_declares_every_route_of_the_router() {
        let dir = tempfile::tempdir().unwrap();
        let store = strata_storage::Store::open(dir.path()).unwrap();
        let (_shutdown, watch) = tokio::sync::watch::channel(false);
        let router = crate::router(crate::AppState::new(store, std::time::Duration::from_secs(15), watch));
        let document = openapi_json();
        let paths = document["paths"].as_object().unwrap();
        let mut routed = Vec::new();
        for (path, _) in crate::routes() {
            let concrete = path.replace("{stream}", "s-1").replace("{name}", "g-1");
            for method in ["GET", "POST", "PUT", "DELETE"] {
                // A subscription answers a stream that never ends: only its status is read.
                let request = axum::http::Request::builder()
                    .method(method)
                    .uri(&concrete)
                    .body(axum::body::Body::from("{"))
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED {
                    routed.push((path, method.to_lowercase()));
                }
            }
        }
        for (path, method) in &routed {
            let operation = paths
                .get(*path)
                .and_then(|item| item.get(method.as_str()))
                .unwrap_or_else(|| panic!("{method} {path} is routed but not documented"));
            for parameter in path.split('/').filter_map(|part| part.strip_prefix('{')?.strip_suffix('}')) {
                let declared = operation["parameters"].as_array().is_some_and(|parameters| {
                    parameters.iter().any(|p| p["name"] == parameter && p["in"] == "path" && p["required"] == true)
                });
                assert!(declared, "{method} {path} does not declare its path parameter {parameter}");
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let bodiless = ["414", "431"].contains(&status.as_str()) || (*path == "/v1/health" && status == "503");
                if status.as_str() >= "400" && !bodiless {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
        let documented: usize = paths.values().map(|item| item.as_object().unwrap().len()).sum();
        assert_eq!(documented, routed.len(), "documented operations that are not routed: {routed:?}");
        // Every reference resolves.
        let text = document.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(document["components"]["schemas"].get(name).is_some(), "{name} is referenced but not defined");
        }
    }
}
