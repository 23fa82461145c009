//! Entry points for fuzzing the parsers of untrusted request bytes (`fuzz/fuzz_targets/request_parsers.rs`
//! and the property test in `tests/parsers.rs`): they must never panic, whatever the input.

use crate::extract::Params;

/// Parses `data` as each JSON request body the API takes, and converts what parses.
pub fn request_body(data: &[u8]) {
    use crate::convert;
    use crate::extract::parse_json;
    if let Ok(request) = parse_json::<strata_wire::AppendRequest>(data) {
        for event in request.events {
            let _ = convert::new_event(event);
        }
    }
    if let Ok(request) = parse_json::<strata_wire::MultiAppendRequest>(data) {
        for event in request.events {
            let _ = convert::new_event(event);
        }
        for check in request.checks {
            let _ = convert::stream_id(check.stream, "stream");
        }
        if let Some(condition) = request.condition {
            let _ = convert::query(condition.query);
        }
    }
    if let Ok(request) = parse_json::<strata_wire::ImportRequest>(data) {
        for event in request.events {
            let _ = convert::recorded_event(event.0);
        }
    }
    let _ = convert::parse_exported_event(data);
    let _ = parse_json::<strata_wire::StreamMetadata>(data);
    let _ = parse_json::<strata_wire::PutGroupRequest>(data);
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
