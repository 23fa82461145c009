//! Malformed requests: each is answered with a 4xx and a message that says what to fix, and none of
//! them changes what is stored (the whole log and the stream list are compared before and after).

mod common;

use common::TestServer;
use serde_json::json;

struct Case {
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    last_event_id: Option<&'static [u8]>,
    status: u16,
    /// The message must contain this (it names what is wrong).
    says: &'static str,
}

fn case(method: &'static str, path: impl Into<String>, body: Option<&str>, status: u16, says: &'static str) -> Case {
    Case { method, path: path.into(), body: body.map(|b| b.as_bytes().to_vec()), last_event_id: None, status, says }
}

fn append(body: &str, status: u16, says: &'static str) -> Case {
    case("POST", "/v1/streams/s-1", Some(body), status, says)
}

fn multi(body: &str, status: u16, says: &'static str) -> Case {
    case("POST", "/v1/append", Some(body), status, says)
}

fn get(path: &str, status: u16, says: &'static str) -> Case {
    case("GET", path, None, status, says)
}

fn event_with(field: &str) -> String {
    format!(r#"{{"events":[{{"type":"A","data":1,{field}}}]}}"#)
}

fn cases() -> Vec<Case> {
    let long_name = "x".repeat(257);
    let many_tags: Vec<String> = (0..33).map(|n| format!("k:{n}")).collect();
    let ten_thousand_and_one = format!(r#"{{"events":[{}]}}"#, vec![r#"{"type":"A","data":1}"#; 10_001].join(","));
    let big_event = format!(r#"{{"events":[{{"type":"A","data":"{}"}}]}}"#, "x".repeat(1_100_000));
    let id = "0195f1c2-1111-7000-8000-00000000000a";
    let mut cases = vec![
        // Bodies that are not JSON, or not the right JSON.
        append("{", 400, "not valid JSON"),
        append("", 400, "needs a JSON body"),
        append("null", 400, "expected struct"),
        append("[]", 400, "expected struct"),
        append("\"events\"", 400, "expected struct"),
        append(r#"{"events":"#, 400, "not valid JSON"),
        append(r#"{"events":[{"type":"A","data":1}]} trailing"#, 400, "trailing characters"),
        append(r#"{"events":[{"type":"A","data":NaN}]}"#, 400, "not valid JSON"),
        append(r#"{"events":[{"type":"A","data":1},]}"#, 400, "not valid JSON"),
        append(r#"{'events':[]}"#, 400, "not valid JSON"),
        append(r#"{"expected_revision":"Any","events":[{"type":"A","data":1}]}"#, 400, "\"Any\""),
        append(r#"{"events":{}}"#, 400, "expected a sequence"),
        append(r#"{"events":[1]}"#, 400, "expected struct"),
        append(r#"{"events":[]}"#, 400, "at least one event"),
        append(r#"{}"#, 400, "missing field `events`"),
        append(r#"{"events":[{}]}"#, 400, "missing field `type`"),
        append(r#"{"events":[{"type":"A"}]}"#, 400, "needs data"),
        append(&event_with(r#""data_base64":"AA==""#), 400, "not both"),
        append(&event_with(r#""bogus":1"#), 400, "unknown field `bogus`"),
        append(r#"{"events":[{"type":"A","data":1}],"expected":"any"}"#, 400, "unknown field `expected`"),
        append(r#"{"events":[{"type":7,"data":1}]}"#, 400, "invalid type: integer"),
        append(r#"{"events":[{"type":"","data":1}]}"#, 400, "must not be empty"),
        append(r#"{"events":[{"type":"$system","data":1}]}"#, 400, "reserved"),
        append(r#"{"events":[{"type":"A\u0001","data":1}]}"#, 400, "control character"),
        append(r#"{"events":[{"type":"A\nB","data":1}]}"#, 400, "control character"),
        append(&format!(r#"{{"events":[{{"type":"{long_name}","data":1}}]}}"#), 400, "the limit is 256"),
        append(&event_with(r#""id":"not-a-uuid""#), 400, "is not a UUID"),
        append(&event_with(r#""id":"00000000-0000-0000-0000-000000000000""#), 400, "nil UUID"),
        append(&event_with(r#""id":42"#), 400, "invalid type: integer"),
        append(
            &format!(r#"{{"events":[{{"id":"{id}","type":"A","data":1}},{{"id":"{id}","type":"B","data":2}}]}}"#),
            400,
            "appears twice",
        ),
        append(&event_with(r#""tags":["no-colon"]"#), 400, "key:value"),
        append(&event_with(r#""tags":[":value"]"#), 400, "key:value"),
        append(&event_with(r#""tags":["key:"]"#), 400, "key:value"),
        append(&event_with(&format!(r#""tags":{}"#, json!(many_tags))), 400, "the limit is 32"),
        append(&event_with(r#""tags":"a:b""#), 400, "expected a sequence"),
        append(&event_with(r#""tags":[1]"#), 400, "invalid type: integer"),
        append(&event_with(r#""metadata":[1]"#), 400, "metadata must be a JSON object"),
        append(&event_with(r#""metadata":"text""#), 400, "metadata must be a JSON object"),
        append(r#"{"events":[{"type":"A","data_base64":"%%%"}]}"#, 400, "not valid base64"),
        append(r#"{"events":[{"type":"A","data_base64":"AAA"}]}"#, 400, "not valid base64"),
        append(
            r#"{"events":[{"type":"A","data_base64":"eyJh","content_type":"application/json"}]}"#,
            400,
            "is not JSON",
        ),
        append(&event_with(r#""content_type":"image/png""#), 400, "content_type goes with data_base64"),
        append(r#"{"events":[{"type":"A","data_base64":"AA==","content_type":"has space"}]}"#, 400, "content type"),
        append(r#"{"expected_revision":-1,"events":[{"type":"A","data":1}]}"#, 400, "expected_revision must be"),
        append(r#"{"expected_revision":1.5,"events":[{"type":"A","data":1}]}"#, 400, "expected_revision must be"),
        append(
            r#"{"expected_revision":18446744073709551616,"events":[{"type":"A","data":1}]}"#,
            400,
            "expected_revision must be",
        ),
        append(r#"{"expected_revision":"sometimes","events":[{"type":"A","data":1}]}"#, 400, "\"sometimes\""),
        append(r#"{"expected_revision":true,"events":[{"type":"A","data":1}]}"#, 400, "expected_revision must be"),
        append(r#"{"expected_revision":["any"],"events":[{"type":"A","data":1}]}"#, 400, "expected_revision must be"),
        append(r#"{"events":[{"stream":"other","type":"A","data":1}]}"#, 400, "the stream is in the URL"),
        append(&ten_thousand_and_one, 400, "the limit is 10000"),
        append(&big_event, 413, "the limit is 1048576 bytes"),
        case("POST", "/v1/streams/s-1?dry_run=true", Some(r#"{"events":[{"type":"A","data":1}]}"#), 400, "dry_run"),
        // Stream ids in the path.
        case("POST", "/v1/streams/$secret", Some(r#"{"events":[{"type":"A","data":1}]}"#), 400, "reserved"),
        case(
            "POST",
            format!("/v1/streams/{long_name}"),
            Some(r#"{"events":[{"type":"A","data":1}]}"#),
            400,
            "the limit is 256",
        ),
        case("POST", "/v1/streams/a%01b", Some(r#"{"events":[{"type":"A","data":1}]}"#), 400, "control character"),
        case("POST", "/v1/streams/a%FFb", Some(r#"{"events":[{"type":"A","data":1}]}"#), 400, "UTF-8"),
        case("POST", "/v1/streams/a%0Ab", Some(r#"{"events":[{"type":"A","data":1}]}"#), 400, "control character"),
        // Multi-stream appends.
        multi(r#"{"events":[{"type":"A","data":1}]}"#, 400, "needs its stream"),
        multi(r#"{"events":[{"stream":"$x","type":"A","data":1}]}"#, 400, "reserved"),
        multi(r#"{"events":[{"stream":"","type":"A","data":1}]}"#, 400, "must not be empty"),
        multi(r#"{"events":[]}"#, 400, "at least one event"),
        multi(r#"{"events":[],"checks":[{"stream":"s-1","expected_revision":1}]}"#, 400, "at least one event"),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"checks":[{"stream":"s-1","expected_revision":1},{"stream":"s-1","expected_revision":"any"}]}"#,
            400,
            "two expected-revision checks",
        ),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"checks":[{"stream":"s-1"}]}"#,
            400,
            "missing field `expected_revision`",
        ),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"checks":[{"stream":"s-1","expected_revision":-3}]}"#,
            400,
            "checks[0]",
        ),
        multi(r#"{"events":[{"stream":"a","type":"A","data":1}],"checks":{}}"#, 400, "expected a sequence"),
        multi(r#"{"events":[{"stream":"a","type":"A","data":1}],"condition":{"query":{"items":[]}}}"#, 400, "no items"),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"condition":{"query":{}}}"#,
            400,
            "missing field `items`",
        ),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"condition":{"after":3}}"#,
            400,
            "missing field `query`",
        ),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"condition":{"query":{"items":[{}]},"after":-1}}"#,
            400,
            "invalid value: integer `-1`",
        ),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"condition":{"query":{"items":[{}]},"after":1000}}"#,
            400,
            "beyond the head",
        ),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"condition":{"query":{"items":[{"kinds":["A"]}]}}}"#,
            400,
            "unknown field `kinds`",
        ),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"condition":{"query":{"items":[{"types":[""]}]}}}"#,
            400,
            "must not be empty",
        ),
        multi(
            r#"{"events":[{"stream":"a","type":"A","data":1}],"condition":{"query":{"items":[{"tags":["x"]}]}}}"#,
            400,
            "key:value",
        ),
        multi(r#"{"events":[{"stream":"a","type":"A","data":1}],"bogus":true}"#, 400, "unknown field `bogus`"),
        // Reads.
        get("/v1/streams/s-1?from=-1", 400, "must not be negative"),
        get("/v1/streams/s-1?from=abc", 400, "or start / end"),
        get("/v1/streams/s-1?from=99999999999999999999", 400, "too large"),
        get("/v1/streams/s-1?limit=0", 400, "between 1 and 100000"),
        get("/v1/streams/s-1?limit=100001", 400, "between 1 and 100000"),
        get("/v1/streams/s-1?limit=-5", 400, "must not be negative"),
        get("/v1/streams/s-1?limit=1.5", 400, "non-negative integer"),
        get("/v1/streams/s-1?limit=", 400, "non-negative integer"),
        get("/v1/streams/s-1?direction=sideways", 400, "forward or backward"),
        get("/v1/streams/s-1?until_position=x", 400, "until_position"),
        get("/v1/streams/s-1?until_time=yesterday", 400, "RFC 3339"),
        get("/v1/streams/s-1?until_time=2026-13-01T00:00:00Z", 400, "no such date"),
        get("/v1/streams/s-1?until_time=2026-11-26T10:00:00", 400, "offset"),
        get("/v1/streams/s-1?foo=bar", 400, "unknown query parameter \"foo\""),
        get("/v1/streams/s-1?types=A", 400, "unknown query parameter \"types\""),
        get("/v1/streams/s-1?from=1&from=2", 400, "more than once"),
        get("/v1/streams/s-1?from=%FF", 400, "UTF-8"),
        get("/v1/streams/$%01", 400, "control character"),
        get("/v1/all?types=%01", 400, "control character"),
        get("/v1/all?tags=nocolon", 400, "key:value"),
        get("/v1/all?category=", 400, "category must not be empty"),
        get("/v1/all?query=notjson", 400, "query parameter query"),
        get("/v1/all?query=%7B%22items%22%3A%5B%5D%7D", 400, "no items"),
        get("/v1/all?from=start&limit=abc", 400, "non-negative integer"),
        get("/v1/all?stream=s-1", 400, "unknown query parameter \"stream\""),
        get("/v1/streams?limit=0", 400, "between 1 and 10000"),
        get("/v1/streams?limit=10001", 400, "between 1 and 10000"),
        get("/v1/streams?bogus=1", 400, "takes prefix, after, limit"),
        get("/v1/streams/s-1/info?x=1", 400, "takes none"),
        get("/v1/streams/s-1/metadata?x=1", 400, "takes none"),
        get("/v1/subscribe?from=-1", 400, "must not be negative"),
        get("/v1/subscribe?stream=s-1&types=A", 400, "apply to the global log"),
        get("/v1/subscribe?stream=", 400, "must not be empty"),
        get("/v1/subscribe?heartbeat=1", 400, "unknown query parameter"),
        Case { last_event_id: Some(b"abc"), ..get("/v1/subscribe", 400, "Last-Event-ID") },
        Case { last_event_id: Some(b"-4"), ..get("/v1/subscribe", 400, "Last-Event-ID") },
        Case { last_event_id: Some(b"\xff"), ..get("/v1/subscribe", 400, "Last-Event-ID") },
        Case { last_event_id: Some(b"1"), ..get("/v1/subscribe?stream=other-1", 400, "not the position of an event") },
        // Deletes and metadata.
        case("DELETE", "/v1/streams/s-1?hard=maybe", None, 400, "true or false"),
        case("DELETE", "/v1/streams/s-1?expected_revision=-1", None, 400, "must not be negative"),
        case("DELETE", "/v1/streams/s-1?expected_revision=soon", None, 400, "expected_revision must be"),
        case("DELETE", "/v1/streams/s-1?force=yes", None, 400, "takes hard, expected_revision"),
        case("DELETE", "/v1/streams/$streams", None, 400, "reserved"),
        case("PUT", "/v1/streams/s-1/metadata", Some(r#"{"max_count":-1}"#), 400, "invalid value: integer `-1`"),
        case("PUT", "/v1/streams/s-1/metadata", Some(r#"{"max_count":"5"}"#), 400, "invalid type: string"),
        case("PUT", "/v1/streams/s-1/metadata", Some(r#"{"max_size":5}"#), 400, "unknown field `max_size`"),
        case("PUT", "/v1/streams/s-1/metadata", Some(r#"{"custom":[1]}"#), 400, "custom must be a JSON object"),
        case("PUT", "/v1/streams/s-1/metadata", Some(""), 400, "needs a JSON body"),
        case("PUT", "/v1/streams/$streams/metadata", Some("{}"), 400, "reserved"),
        // Routes and methods.
        get("/v1/nothing", 404, "there is no GET /v1/nothing"),
        get("/", 404, "there is no GET /"),
        get("/v1/streams/s-1/unknown", 404, "openapi.json"),
        get("/v2/all", 404, "openapi.json"),
        case("POST", "/v1/streams/", Some("{}"), 404, "openapi.json"),
        case("PATCH", "/v1/streams/s-1", Some("{}"), 405, "does not take PATCH"),
        case("PUT", "/v1/all", Some("{}"), 405, "does not take PUT"),
        case("POST", "/v1/health", Some("{}"), 405, "does not take POST"),
        case("DELETE", "/v1/append", None, 405, "does not take DELETE"),
        get("/v1/append", 405, "does not take GET"),
        case("POST", "/metrics", Some("{}"), 405, "does not take POST"),
        case("DELETE", "/v1/all", None, 405, "does not take DELETE"),
    ];
    // Invalid UTF-8 inside a JSON string.
    let mut invalid_utf8 = br#"{"events":[{"type":"A"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#"","data":1}]}"#);
    cases.push(Case { body: Some(invalid_utf8), ..append("", 400, "not valid JSON") });
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_that_says_what_to_fix_and_change_nothing() {
    let server = TestServer::start().await;
    let body = json!({ "events": [{ "type": "A", "data": 1 }, { "type": "B", "data": 2, "tags": ["k:v"] }] });
    assert_eq!(server.post("/v1/streams/s-1", &body).await.0, 200);
    let export = || async {
        let log = server.client.get(server.url("/v1/all?limit=100000")).send().await.unwrap().text().await.unwrap();
        let streams = server.client.get(server.url("/v1/streams")).send().await.unwrap().text().await.unwrap();
        (log, streams)
    };
    let before = export().await;

    let cases = cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = server.client.request(method, server.url(&case.path));
        if let Some(body) = &case.body {
            request = request.header("content-type", "application/json").body(body.clone());
        }
        if let Some(id) = case.last_event_id {
            request = request.header("last-event-id", reqwest::header::HeaderValue::from_bytes(id).unwrap());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        let code = answer["error"]["code"].as_str().unwrap_or_default();
        let code_ok = match status {
            413 => code == "payload_too_large",
            _ => code == "invalid_request",
        };
        if status != case.status || !code_ok || !message.contains(case.says) {
            let shown: String = text.chars().take(300).collect();
            failures.push(format!(
                "{} {}: expected {} saying {:?}, got {status} {shown}",
                case.method,
                case.path.chars().take(80).collect::<String>(),
                case.status,
                case.says
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    huge_body_is_refused_before_it_is_read(&server).await;
    assert_eq!(export().await, before, "a malformed request changed what is stored");
    server.stop().await;
}

/// A body announced larger than the cap is answered 413 from its headers alone: the client has sent
/// none of it (over raw TCP, because an HTTP client writing the body would see the early answer as
/// a broken pipe).
async fn huge_body_is_refused_before_it_is_read(server: &TestServer) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.url.trim_start_matches("http://");
    let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/streams/s-1 HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{{\"events\":[",
        25 << 20
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), connection.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer without the body: {:?}", String::from_utf8_lossy(&answer));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large") && answer.contains("larger than"), "{answer}");
}

/// JSON nested 100,000 deep is valid JSON: it is stored and read back, and parsing it neither
/// recurses without bound nor takes the server down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_neither_overflows_nor_breaks_the_server() {
    let server = TestServer::start().await;
    let depth = 100_000;
    let data = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!(r#"{{"events":[{{"type":"Deep","data":{data}}}]}}"#);
    let (status, answer) = server.send("POST", "/v1/streams/deep-1", Some(body.as_bytes())).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = server.get("/v1/health").await;
    assert_eq!(status, 200, "the server survived");
    let page = server.client.get(server.url("/v1/streams/deep-1")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("\"data\":{data},")), "read back as stored");
    server.stop().await;
}
