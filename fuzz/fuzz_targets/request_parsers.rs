//! Arbitrary bytes into every parser of request bodies and query strings: no panic, no unbounded
//! allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_server::fuzz::request_body(data);
    if let Ok(query) = std::str::from_utf8(data) {
        strata_server::fuzz::query_string(query);
    }
});
