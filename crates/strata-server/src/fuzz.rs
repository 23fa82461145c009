//! Entry points for fuzzing the parsers of untrusted request bytes (`fuzz/fuzz_targets/request_parsers.rs`
//! and the property test in `tests/parsers.rs`): they must never panic, whatever the input.

use crate::extract::Params;

/// Parses `data` as each JSON request body the API takes, and converts what parses.
pub fn request_body(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<crate::wire::AppendRequest>(data) {
        let _ = crate::wire::expected_revision(request.expected_revision.as_ref());
        for event in request.events {
            let _ = event.into_event();
        }
    }
    if let Ok(request) = serde_json::from_slice::<crate::wire::MultiAppendRequest>(data) {
        for event in request.events {
            let _ = event.into_event();
        }
        for check in request.checks {
            let _ = crate::wire::expected_revision(Some(&check.expected_revision));
            let _ = crate::wire::stream_id(check.stream, "stream");
        }
        if let Some(condition) = request.condition {
            let _ = condition.query.into_query();
        }
    }
    if let Ok(request) = serde_json::from_slice::<crate::import::ImportRequest>(data) {
        for event in request.events {
            let _ = event.into_recorded();
        }
    }
    let _ = crate::wire::parse_exported_event(data);
    let _ = serde_json::from_slice::<crate::streams::MetadataJson>(data);
}

/// Parses `query` as a query string the way each reading endpoint does.
pub fn query_string(query: &str) {
    if let Ok(mut params) = Params::parse(query) {
        let _ = crate::read::page_params(&mut params);
        let _ = crate::read::filter_params(&mut params);
        let _ = params.take("stream");
        let _ = params.take_u64("limit");
        let _ = params.finish(&["from"]);
    }
}
