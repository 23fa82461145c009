//! The parsers of untrusted request bytes never panic: JSON bodies and query strings, from random
//! bytes and from near-valid requests with random values spliced in. (The same entry points are a
//! cargo-fuzz target: `fuzz/fuzz_targets/request_parsers.rs`.)

use proptest::prelude::*;

/// JSON-ish fragments that reach deep into the parsers more often than random bytes do.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1.5e3".to_owned()),
        Just("\"$x\"".to_owned()),
        Just("\"a:b\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("\"AAEC\"".to_owned()),
        Just("\"0195f1c2-1111-7000-8000-000000000001\"".to_owned()),
        Just("\"2026-11-26T08:07:55Z\"".to_owned()),
        "\"[ -~]{0,12}\"",
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn near_valid_body() -> impl Strategy<Value = String> {
    (prop::collection::vec(fragment(), 12), any::<u8>()).prop_map(|(f, shape)| match shape % 4 {
        0 => format!(
            r#"{{"expected_revision":{},"events":[{{"id":{},"type":{},"data":{},"metadata":{},"tags":[{}]}}]}}"#,
            f[0], f[1], f[2], f[3], f[4], f[5]
        ),
        1 => format!(
            r#"{{"events":[{{"stream":{},"type":{},"data_base64":{},"content_type":{}}}],"checks":[{{"stream":{},"expected_revision":{}}}],"condition":{{"query":{{"items":[{{"types":[{}],"tags":[{}]}}]}},"after":{}}}}}"#,
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
        ),
        2 => format!(
            r#"{{"events":[{{"id":{},"stream":{},"type":{},"revision":{},"position":{},"recorded_at":{},"data":{},"metadata":{},"tags":[{}]}}]}}"#,
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
        ),
        _ => format!(r#"{{"max_age_seconds":{},"max_count":{},"truncate_before":{},"custom":{}}}"#, f[0], f[1], f[2], f[3]),
    })
}

fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("from"),
        Just("direction"),
        Just("limit"),
        Just("until_position"),
        Just("until_time"),
        Just("category"),
        Just("types"),
        Just("stream_prefix"),
        Just("tags"),
        Just("query"),
        Just("x"),
    ];
    let value = prop_oneof![
        "[ -~]{0,16}",
        "%[0-9A-Fa-f]{2}",
        Just("%FF".to_owned()),
        Just("%7B%22items%22%3A%5B%5D%7D".to_owned())
    ];
    prop::collection::vec((name, value), 0..8)
        .prop_map(|pairs| pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        strata_server::fuzz::request_body(&bytes);
    }

    #[test]
    fn near_valid_bodies_never_panic(body in near_valid_body()) {
        strata_server::fuzz::request_body(body.as_bytes());
    }

    #[test]
    fn query_strings_never_panic(query in query(), raw in "[ -~]{0,64}") {
        strata_server::fuzz::query_string(&query);
        strata_server::fuzz::query_string(&raw);
    }
}
