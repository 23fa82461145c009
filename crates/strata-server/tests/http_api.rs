//! Every endpoint of the HTTP API, through a real server on a free port: what it answers and the
//! errors DESIGN.md §5 lists — on an embedded server and on a cluster's follower node alike.

mod common;

use common::{SseReader, Target, TestServer};
use serde_json::{Value, json};

strata_server::on_every_target! {
    append_then_conflict_then_idempotent_retry,
    reads_render_events_page_and_travel_in_time,
    filtered_reads_of_the_global_log,
    multi_stream_appends_with_checks_and_conditions,
    stream_lifecycle_list_info_metadata_delete_tombstone,
    scavenge_turns_deleted_events_into_placeholders,
    consumer_groups_over_http,
    a_groups_state_is_saved_and_restored,
    operations_endpoints,
    subscriptions_catch_up_then_go_live_and_resume,
    heartbeats_keep_idle_subscriptions_alive,
    system_events_read_as_json_and_import_back,
    pages_of_other_sites_change_nothing_and_read_nothing,
}

fn event(event_type: &str, data: Value) -> Value {
    json!({ "type": event_type, "data": data })
}

async fn append(server: &TestServer, stream: &str, expected: Value, events: Vec<Value>) -> (u16, Value) {
    server.post(&format!("/v1/streams/{stream}"), &json!({ "expected_revision": expected, "events": events })).await
}

async fn append_then_conflict_then_idempotent_retry(target: Target) {
    let server = TestServer::on(target).await;
    let id = "0195f1c2-1111-7000-8000-000000000001";
    let body = json!({ "expected_revision": "no_stream", "events": [
        { "id": id, "type": "Opened", "data": { "owner": "ada" }, "metadata": { "by": "test" }, "tags": ["account:1"] },
        event("Deposited", json!({ "amount": 10 })),
    ]});
    let (status, mut result) = server.post("/v1/streams/account-1", &body).await;
    assert_eq!(status, 200, "{result}");
    let recorded_at = result.as_object_mut().unwrap().remove("recorded_at").unwrap();
    assert!(recorded_at.as_str().unwrap().parse::<strata_core::Timestamp>().is_ok(), "{recorded_at}");
    assert_eq!(
        result,
        json!({ "first_revision": 0, "last_revision": 1, "first_position": 1, "last_position": 2, "replayed": false })
    );

    // The same expectation again is a conflict that names the stream, the expectation and the truth.
    let (status, error) = append(&server, "account-1", json!("no_stream"), vec![event("X", json!(1))]).await;
    assert_eq!(status, 409);
    assert_eq!(error["error"]["code"], "wrong_expected_revision");
    assert_eq!(error["error"]["stream"], "account-1");
    assert_eq!(error["error"]["expected"], "no_stream");
    assert_eq!(error["error"]["actual"], 1);
    let (status, error) = append(&server, "account-9", json!(4), vec![event("X", json!(1))]).await;
    assert_eq!((status, &error["error"]["actual"]), (409, &json!("no_stream")));
    let (status, error) = append(&server, "account-9", json!("stream_exists"), vec![event("X", json!(1))]).await;
    assert_eq!((status, &error["error"]["expected"]), (409, &json!("stream_exists")));

    // A retry of an append with ids answers the original result and writes nothing.
    let retry = json!({ "expected_revision": "no_stream", "events": [
        { "id": "0195f1c2-1111-7000-8000-000000000002", "type": "Opened", "data": { "owner": "bob" } },
    ]});
    let (status, first) = server.post("/v1/streams/account-2", &retry).await;
    assert_eq!((status, &first["replayed"]), (200, &json!(false)), "{first}");
    let (status, again) = server.post("/v1/streams/account-2", &retry).await;
    // The replay answers the original result, all of it: its recorded time too.
    assert_eq!((status, &again["replayed"], &again["recorded_at"]), (200, &json!(true), &first["recorded_at"]));
    assert_eq!(first["first_position"], again["first_position"]);
    // … and an id reused for a different event is refused, naming it.
    let (status, error) = server
        .post(
            "/v1/streams/account-1",
            &json!({ "events": [
                { "id": id, "type": "Other", "data": {} }, event("New", json!({})),
            ]}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["event_id"], id);

    // Exact revisions and "any".
    let (status, _) = append(&server, "account-1", json!(1), vec![event("Withdrawn", json!({ "amount": 3 }))]).await;
    assert_eq!(status, 200);
    let (status, result) = append(&server, "account-1", json!("any"), vec![event("Deposited", json!(5))]).await;
    assert_eq!((status, &result["first_revision"]), (200, &json!(3)));
    let (status, result) =
        server.post("/v1/streams/account-1", &json!({ "events": [event("Deposited", json!(5))] })).await;
    assert_eq!((status, &result["first_revision"]), (200, &json!(4)), "expected_revision defaults to any");
    server.stop().await;
}

async fn reads_render_events_page_and_travel_in_time(target: Target) {
    let server = TestServer::on(target).await;
    for n in 0..5 {
        let (status, _) = append(&server, "order-1", json!("any"), vec![event("Step", json!({ "n": n }))]).await;
        assert_eq!(status, 200);
    }
    let null = json!({ "events": [{ "type": "Nothing", "data": null }] });
    assert_eq!(server.post("/v1/streams/null-1", &null).await.0, 200, "null is JSON data");
    let (_, page) = server.get("/v1/streams/null-1").await;
    assert_eq!(page["events"][0]["data"], Value::Null);
    assert!(page["events"][0].as_object().unwrap().contains_key("data"));
    let binary = json!({ "events": [{ "type": "Blob", "data_base64": "AAEC/w==", "content_type": "image/png" }] });
    assert_eq!(server.post("/v1/streams/blob-1", &binary).await.0, 200);

    let (status, page) = server.get("/v1/streams/order-1").await;
    assert_eq!(status, 200);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(page["next"], Value::Null, "the page reached the end");
    let first = &events[0];
    assert_eq!(first["stream"], "order-1");
    assert_eq!(first["type"], "Step");
    assert_eq!(first["revision"], 0);
    assert_eq!(first["position"], 1, "position 0 is the store's $store-created");
    assert_eq!(first["data"], json!({ "n": 0 }));
    assert_eq!(first["metadata"], json!({}));
    assert_eq!(first["tags"], json!([]));
    uuid::Uuid::parse_str(first["id"].as_str().unwrap()).unwrap();
    let recorded_at = first["recorded_at"].as_str().unwrap();
    assert!(recorded_at.ends_with('Z') && recorded_at.len() == 27, "RFC 3339 with microseconds: {recorded_at}");

    // Paging forwards and backwards with `next`.
    let (_, page) = server.get("/v1/streams/order-1?from=1&limit=2").await;
    let revisions: Vec<_> = page["events"].as_array().unwrap().iter().map(|e| e["revision"].clone()).collect();
    assert_eq!((revisions, &page["next"]), (vec![json!(1), json!(2)], &json!(3)));
    let (_, page) = server.get("/v1/streams/order-1?direction=backward&limit=2").await;
    let revisions: Vec<_> = page["events"].as_array().unwrap().iter().map(|e| e["revision"].clone()).collect();
    assert_eq!((revisions, &page["next"]), (vec![json!(4), json!(3)], &json!(2)));
    let (_, page) = server.get("/v1/all?from=end&direction=backward&limit=1").await;
    assert_eq!(page["events"][0]["type"], "Blob");
    assert_eq!(page["events"][0]["data_base64"], "AAEC/w==");
    assert_eq!(page["events"][0]["content_type"], "image/png");
    assert!(page["events"][0].get("data").is_none());

    // As of a position and as of a time.
    let (_, page) = server.get("/v1/streams/order-1?until_position=3").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let (_, page) = server.get("/v1/all?until_position=0").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let (_, all) = server.get("/v1/all").await;
    let third_time = all["events"][3]["recorded_at"].as_str().unwrap().to_owned();
    let (_, page) = server.get(&format!("/v1/streams/order-1?until_time={third_time}")).await;
    let count = page["events"].as_array().unwrap().len();
    assert!((3..=5).contains(&count), "events recorded at or before the third one's time: {count}");
    let (status, error) = server.get("/v1/streams/order-1?until_time=1999-01-01T00:00:00Z").await;
    assert_eq!((status, &error["error"]["code"]), (404, &json!("stream_not_found")), "no events yet then");
    let (status, page) = server.get("/v1/all?until_time=1999-01-01T00:00:00%2B01:00").await;
    assert_eq!((status, page["events"].as_array().unwrap().len()), (200, 0));

    // `min_position`: what the node holds answers at once. A position beyond its head is refused at
    // once by a standalone server (never acknowledged there); a cluster node waits (bounded) for
    // its replica to reach it — here until the leader commits it.
    let started = std::time::Instant::now();
    let (status, page) = server.get("/v1/streams/order-1?min_position=7").await;
    assert_eq!((status, page["events"].as_array().unwrap().len()), (200, 5));
    match server.target() {
        Target::Embedded => {
            let (status, error) = server.get("/v1/all?min_position=8").await;
            assert_eq!((status, &error["error"]["code"]), (400, &json!("invalid_request")), "{error}");
            assert_eq!(error["error"]["position"], 8);
            assert!(error["error"]["message"].as_str().unwrap().contains("next position is 8"), "{error}");
            let (status, _) = server.get("/v1/subscribe?min_position=18446744073709551614").await;
            assert_eq!(status, 400);
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "nothing waited");
        }
        Target::ClusterFollower => {
            let waiting = tokio::spawn({
                let (client, url) = (server.client.clone(), server.url("/v1/all?min_position=8"));
                async move { client.get(url).send().await.unwrap() }
            });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "a read with min_position beyond the replica waits");
            let body = json!({ "expected_revision": "any", "events": [event("Later", json!(8))] });
            let committed = server.client.post(server.deciding_url("/v1/streams/late-1")).json(&body).send().await;
            assert_eq!(committed.unwrap().status(), 200, "appended on the leader");
            let answered = waiting.await.unwrap();
            assert_eq!(answered.status(), 200);
            let page: Value = answered.json().await.unwrap();
            assert_eq!(page["events"][8]["stream"], "late-1", "{page}");
        }
    }

    let (status, error) = server.get("/v1/streams/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(error["error"]["code"], "stream_not_found");
    assert_eq!(error["error"]["stream"], "nothing-here");
    server.stop().await;
}

async fn filtered_reads_of_the_global_log(target: Target) {
    let server = TestServer::on(target).await;
    let tagged = |event_type: &str, tags: &[&str]| json!({ "type": event_type, "data": {}, "tags": tags });
    append(&server, "user-1", json!("any"), vec![tagged("Registered", &["user:1", "tenant:a"])]).await;
    append(&server, "user-2", json!("any"), vec![tagged("Registered", &["user:2", "tenant:b"])]).await;
    append(&server, "course-1", json!("any"), vec![tagged("Created", &["course:1", "tenant:a"])]).await;
    append(&server, "user-1", json!("any"), vec![tagged("Renamed", &["user:1", "tenant:a"])]).await;

    let streams_of = |page: &Value| -> Vec<String> {
        page["events"].as_array().unwrap().iter().map(|e| e["stream"].as_str().unwrap().to_owned()).collect()
    };
    let (_, page) = server.get("/v1/all?category=user").await;
    assert_eq!(streams_of(&page), ["user-1", "user-2", "user-1"]);
    let (_, page) = server.get("/v1/all?types=Created,Renamed").await;
    assert_eq!(streams_of(&page), ["course-1", "user-1"]);
    let (_, page) = server.get("/v1/all?types=Created&types=Renamed").await;
    assert_eq!(streams_of(&page), ["course-1", "user-1"]);
    let (_, page) = server.get("/v1/all?tags=tenant:a&types=Registered").await;
    assert_eq!(streams_of(&page), ["user-1"]);
    let (_, page) = server.get("/v1/all?stream_prefix=user-").await;
    assert_eq!(streams_of(&page).len(), 3);
    let query = r#"{"items":[{"tags":["user:2"]},{"types":["Created"]}]}"#;
    let encoded: String = query.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, page) = server.get(&format!("/v1/all?query={encoded}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(streams_of(&page), ["user-2", "course-1"]);
    let (_, page) = server.get("/v1/all?category=user&direction=backward&limit=1").await;
    assert_eq!((streams_of(&page), &page["next"]), (vec!["user-1".to_owned()], &json!(3)));
    server.stop().await;
}

async fn multi_stream_appends_with_checks_and_conditions(target: Target) {
    let server = TestServer::on(target).await;
    let transfer = json!({
        "events": [
            { "stream": "account-a", "type": "Withdrawn", "data": { "amount": 5 }, "tags": ["transfer:1"] },
            { "stream": "account-b", "type": "Deposited", "data": { "amount": 5 }, "tags": ["transfer:1"] },
        ],
        "checks": [
            { "stream": "account-a", "expected_revision": "no_stream" },
            { "stream": "ledger", "expected_revision": "no_stream" },
        ],
        "condition": { "query": { "items": [{ "types": ["TransferRefused"] }] } },
    });
    let (status, result) = server.post("/v1/append", &transfer).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["first_position"], 1);
    assert_eq!(result["last_position"], 2);
    assert_eq!(
        result["streams"],
        json!([
            { "stream": "account-a", "first_revision": 0, "last_revision": 0 },
            { "stream": "account-b", "first_revision": 0, "last_revision": 0 },
        ])
    );
    // A check on a stream the append does not write.
    let guarded = json!({
        "events": [{ "stream": "account-c", "type": "Opened", "data": {} }],
        "checks": [{ "stream": "account-a", "expected_revision": 7 }],
    });
    let (status, error) = server.post("/v1/append", &guarded).await;
    assert_eq!(status, 409);
    assert_eq!(error["error"]["code"], "wrong_expected_revision");
    assert_eq!((&error["error"]["stream"], &error["error"]["actual"]), (&json!("account-a"), &json!(0)));
    // A DCB condition: a unique username.
    let claim = |name: &str, after: Option<u64>| {
        let mut condition =
            json!({ "query": { "items": [{ "types": ["UsernameClaimed"], "tags": [format!("username:{name}")] }] } });
        if let Some(after) = after {
            condition["after"] = json!(after);
        }
        json!({
            "events": [{ "stream": format!("user-{name}"), "type": "UsernameClaimed", "data": {}, "tags": [format!("username:{name}")] }],
            "condition": condition,
        })
    };
    assert_eq!(server.post("/v1/append", &claim("ada", None)).await.0, 200);
    let (status, error) = server.post("/v1/append", &claim("ada", None)).await;
    assert_eq!(status, 409);
    assert_eq!(error["error"]["code"], "append_condition_failed");
    assert_eq!(error["error"]["position"], 3);
    let (status, _) = server.post("/v1/append", &claim("ada", Some(3))).await;
    assert_eq!(status, 200, "nothing matches after position 3");
    let (status, error) = server.post("/v1/append", &claim("bob", Some(99))).await;
    assert_eq!(status, 400, "a condition beyond the head is a mistake: {error}");
    let (_, page) = server.get("/v1/all").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 5, "failed appends wrote nothing ($store-created, then 4)");
    server.stop().await;
}

async fn stream_lifecycle_list_info_metadata_delete_tombstone(target: Target) {
    let server = TestServer::on(target).await;
    for stream in ["cart-1", "cart-2", "cart-3", "order-1"] {
        append(&server, stream, json!("any"), vec![event("A", json!(1)), event("B", json!(2))]).await;
    }
    let (status, list) = server.get("/v1/streams?prefix=cart-&limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({ "streams": ["cart-1", "cart-2"], "next": "cart-2" }));
    let (_, list) = server.get("/v1/streams?prefix=cart-&limit=2&after=cart-2").await;
    assert_eq!(list, json!({ "streams": ["cart-3"], "next": null }));

    let (status, info) = server.get("/v1/streams/cart-1/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["event_count"], 2);
    assert_eq!((&info["first_revision"], &info["last_revision"]), (&json!(0), &json!(1)));
    assert_eq!((&info["first_position"], &info["last_position"]), (&json!(1), &json!(2)));
    assert!(info["first_recorded_at"].as_str().unwrap() <= info["last_recorded_at"].as_str().unwrap());
    assert_eq!(server.get("/v1/streams/cart-9/info").await.0, 404);

    // Metadata: unset by default, replaced by PUT, applied on read.
    let (status, metadata) = server.get("/v1/streams/cart-1/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(metadata, json!({ "max_age_seconds": null, "max_count": null, "truncate_before": null, "custom": {} }));
    let (status, metadata) =
        server.put("/v1/streams/cart-1/metadata", &json!({ "max_count": 1, "custom": { "owner": "ada" } })).await;
    assert_eq!(status, 200, "{metadata}");
    assert_eq!(metadata["max_count"], 1);
    assert_eq!(metadata["custom"], json!({ "owner": "ada" }));
    let (_, page) = server.get("/v1/streams/cart-1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["revision"], 1);

    // Soft delete: not found, gone from the list; a later append continues after the last revision.
    let (status, deleted) = server.delete("/v1/streams/cart-2").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["hard"], false);
    assert_eq!(server.get("/v1/streams/cart-2").await.0, 404);
    let (_, list) = server.get("/v1/streams?prefix=cart-").await;
    assert_eq!(list["streams"], json!(["cart-1", "cart-3"]));
    let (status, result) = append(&server, "cart-2", json!(1), vec![event("C", json!(3))]).await;
    assert_eq!((status, &result["first_revision"]), (200, &json!(2)));
    let (_, page) = server.get("/v1/streams/cart-2").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(server.delete("/v1/streams/never-written").await.0, 404);
    let (status, error) = server.delete("/v1/streams/cart-3?expected_revision=0").await;
    assert_eq!((status, &error["error"]["actual"]), (409, &json!(1)));

    // Tombstone: 410 for reads, appends, info and metadata, for good.
    let (status, deleted) = server.delete("/v1/streams/cart-3?hard=true&expected_revision=1").await;
    assert_eq!((status, &deleted["hard"]), (200, &json!(true)));
    for (status, body) in [
        server.get("/v1/streams/cart-3").await,
        append(&server, "cart-3", json!("any"), vec![event("D", json!(4))]).await,
        server.get("/v1/streams/cart-3/info").await,
        server.get("/v1/streams/cart-3/metadata").await,
        server.delete("/v1/streams/cart-3").await,
    ] {
        assert_eq!(status, 410, "{body}");
        assert_eq!(body["error"]["code"], "stream_deleted");
        assert_eq!(body["error"]["stream"], "cart-3");
    }
    server.stop().await;
}

async fn scavenge_turns_deleted_events_into_placeholders(target: Target) {
    // Small segments and index runs, so that sealed segments are covered by runs quickly.
    let store_options = strata_storage::Options {
        segment_size_bytes: 8 << 10,
        index_run_events: strata_storage::INDEX_RUN_EVENTS_MIN,
        ..Default::default()
    };
    let server = TestServer::start_on(target, strata_server::ServeOptions::default(), store_options).await;
    for n in 0..60 {
        let stream = if n % 2 == 0 { "gone-1" } else { "kept-1" };
        append(&server, stream, json!("any"), vec![event("Noted", json!({ "n": n, "pad": "x".repeat(200) }))]).await;
    }
    let (status, body) = server.delete("/v1/streams/gone-1").await;
    assert_eq!(status, 200, "{body}");
    for n in 0..60 {
        append(&server, "later-1", json!("any"), vec![event("Noted", json!({ "n": n, "pad": "y".repeat(200) }))]).await;
    }
    let (_, kept_before) = server.get("/v1/streams/kept-1?limit=1000").await;
    let (status, report) = server.post("/v1/scavenge", &json!(null)).await;
    assert_eq!(status, 200, "{report}");
    assert!(report["events_scavenged"].as_u64().unwrap() > 0, "{report}");
    assert!(report["bytes_after"].as_u64().unwrap() < report["bytes_before"].as_u64().unwrap(), "{report}");
    let (_, page) = server.get("/v1/all?limit=1000").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1 + 60 + 1 + 60, "every position is still there ($store-created first): {page}");
    let placeholder = events
        .iter()
        .find(|e| e["type"] == "$scavenged")
        .unwrap_or_else(|| panic!("no placeholder; the first event is {}", events[0]));
    assert_eq!(placeholder["stream"], "gone-1");
    assert_eq!(placeholder["data_base64"], "", "a placeholder carries no data: {placeholder}");
    assert_eq!(placeholder["tags"], json!([]), "{placeholder}");
    assert_eq!(server.get("/v1/streams/kept-1?limit=1000").await.1, kept_before);
    assert_eq!(server.get("/v1/streams/gone-1").await.0, 404);
    server.stop().await;
}

async fn consumer_groups_over_http(target: Target) {
    let server = TestServer::on(target).await;
    for n in 0..6 {
        append(&server, &format!("order-{}", n % 2), json!("any"), vec![event("Placed", json!({ "n": n }))]).await;
    }
    append(&server, "other-1", json!("any"), vec![event("Noise", json!({}))]).await;
    let body = json!({ "source": { "all": { "category": "order" } }, "from": "start",
        "settings": { "max_in_flight": 4, "ack_timeout_ms": 30000, "max_retries": 1, "strategy": "round_robin" } });
    let (status, group) = server.put("/v1/groups/billing", &body).await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["name"], "billing");
    assert_eq!(group["settings"]["max_in_flight"], 4);
    let (status, fetched) = server.post("/v1/groups/billing/fetch", &json!({ "consumer": "a", "max": 10 })).await;
    assert_eq!(status, 200, "{fetched}");
    let deliveries = fetched["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 4, "max_in_flight");
    assert_eq!(deliveries[0]["attempt"], 1);
    assert_eq!(deliveries[0]["event"]["stream"], "order-0");
    assert_eq!(deliveries[0]["event"]["data"], json!({ "n": 0 }));
    let ids: Vec<Value> = deliveries.iter().map(|d| d["delivery_id"].clone()).collect();
    let (status, acked) = server.post("/v1/groups/billing/ack", &json!({ "delivery_ids": ids[..3] })).await;
    assert_eq!((status, acked["done"].clone()), (200, json!(3)), "{acked}");
    let (_, nacked) =
        server.post("/v1/groups/billing/nack", &json!({ "delivery_ids": [ids[3]], "action": "park" })).await;
    assert_eq!(nacked["done"], 1);
    let (_, parked) = server.get("/v1/groups/billing/parked").await;
    assert_eq!(parked["parked"].as_array().unwrap().len(), 1, "{parked}");
    // The last two, then a long poll that an append ends.
    let (_, rest) = server.post("/v1/groups/billing/fetch", &json!({ "consumer": "b", "max": 10 })).await;
    let ids: Vec<Value> = rest["deliveries"].as_array().unwrap().iter().map(|d| d["delivery_id"].clone()).collect();
    assert_eq!(ids.len(), 2);
    server.post("/v1/groups/billing/ack", &json!({ "delivery_ids": ids })).await;
    let poll = {
        let (client, url) = (server.client.clone(), server.url("/v1/groups/billing/fetch"));
        tokio::spawn(async move {
            let body = json!({ "consumer": "b", "max": 10, "wait_ms": 20000 });
            client.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    append(&server, "order-9", json!("any"), vec![event("Placed", json!({ "n": 9 }))]).await;
    let woken = tokio::time::timeout(std::time::Duration::from_secs(10), poll).await.unwrap().unwrap();
    assert_eq!(woken["deliveries"][0]["event"]["stream"], "order-9", "{woken}");
    let id = woken["deliveries"][0]["delivery_id"].clone();
    server.post("/v1/groups/billing/ack", &json!({ "delivery_ids": [id] })).await;
    let (_, info) = server.get("/v1/groups/billing").await;
    assert_eq!(info["parked"], 1, "{info}");
    assert_eq!(info["in_flight"], 0, "{info}");
    // Handled, parked or acked, up to order-9's event at position 8: nothing left.
    assert_eq!((info["checkpoint"].clone(), info["lag_events"].clone()), (json!(8), json!(0)), "{info}");
    let (_, listed) = server.get("/v1/groups").await;
    assert_eq!(listed["groups"].as_array().unwrap().len(), 1);
    // Groups are the leader's, and so are their metrics.
    let metrics = server.client.get(server.deciding_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("strata_group_parked{group=\"billing\"} 1"), "{metrics}");
    let (_, replayed) = server.post("/v1/groups/billing/replay-parked", &json!(null)).await;
    assert_eq!(replayed["replayed"], 1);
    // Bad input is refused with what to fix.
    for (body, code) in [
        (json!({ "source": { "all": {} }, "settings": { "strategy": "random" } }), "invalid_request"),
        (json!({ "source": { "all": {} }, "from": "middle" }), "invalid_request"),
        (json!({ "source": { "all": {} }, "colour": 1 }), "invalid_request"),
        (json!({ "source": { "stream": "$streams" } }), "invalid_request"),
        (json!({ "source": { "stream": "order-1" } }), "group_conflict"),
    ] {
        let (status, answer) = server.put("/v1/groups/billing", &body).await;
        assert_eq!(answer["error"]["code"], code, "{body}: {status} {answer}");
    }
    let (status, answer) = server.put("/v1/groups/bad%20name", &json!({ "source": { "all": {} } })).await;
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!("invalid_request")), "{answer}");
    let (status, _) = server.post("/v1/groups/billing/fetch", &json!({ "consumer": "a", "wait_ms": 600000 })).await;
    assert_eq!(status, 400);
    let (status, _) = server.post("/v1/groups/billing/nack", &json!({ "delivery_ids": [], "action": "later" })).await;
    assert_eq!(status, 400);
    let (status, _) = server.delete("/v1/groups/billing").await;
    assert_eq!(status, 200);
    let (status, answer) = server.get("/v1/groups/billing").await;
    assert_eq!((status, answer["error"]["code"].clone()), (404, json!("group_not_found")));
    server.stop().await;
}

/// `GET /v1/groups/{name}/state` is what `strata backup` keeps; `PUT` it under a name no group has
/// and the group resumes after the checkpoint with the same parked events. A state that refers to
/// events the store does not hold, or a name taken, is refused and creates nothing.
async fn a_groups_state_is_saved_and_restored(target: Target) {
    let server = TestServer::on(target).await;
    for n in 0..5 {
        append(&server, "order-1", json!("any"), vec![event("Placed", json!({ "n": n }))]).await;
    }
    let body = json!({ "source": { "all": { "category": "order" } }, "settings": { "max_retries": 3 } });
    assert_eq!(server.put("/v1/groups/billing", &body).await.0, 200);
    let (_, fetched) = server.post("/v1/groups/billing/fetch", &json!({ "consumer": "a", "max": 3 })).await;
    let ids: Vec<Value> = fetched["deliveries"].as_array().unwrap().iter().map(|d| d["delivery_id"].clone()).collect();
    assert_eq!(ids.len(), 3, "{fetched}");
    // Positions 1 and 3 acked, 2 parked: the checkpoint is 3; 4 and 5 are still to come.
    server.post("/v1/groups/billing/ack", &json!({ "delivery_ids": [ids[0], ids[2]] })).await;
    server.post("/v1/groups/billing/nack", &json!({ "delivery_ids": [ids[1]], "action": "park" })).await;
    let (status, saved) = server.get("/v1/groups/billing/state").await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["first"], 0);
    assert_eq!(saved["checkpoint"], 3, "{saved}");
    assert_eq!(saved["parked"], json!([{ "position": 2, "attempts": 1, "reason": "parked by a consumer" }]));
    assert_eq!(saved["settings"]["max_retries"], 3);

    let (status, restored) = server.put("/v1/groups/billing-copy/state", &saved).await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!((restored["name"].clone(), restored["checkpoint"].clone()), (json!("billing-copy"), json!(3)));
    assert_eq!(restored["parked"], 1);
    assert_eq!(server.get("/v1/groups/billing-copy/state").await.1, saved);
    let (_, resumed) = server.post("/v1/groups/billing-copy/fetch", &json!({ "consumer": "b", "max": 10 })).await;
    let positions: Vec<Value> =
        resumed["deliveries"].as_array().unwrap().iter().map(|d| d["event"]["position"].clone()).collect();
    assert_eq!(positions, [json!(4), json!(5)], "resumes after the checkpoint: {resumed}");
    assert_eq!(server.get("/v1/groups/billing-copy/parked").await.1["parked"], saved["parked"]);

    // Refusals create nothing.
    let (status, answer) = server.put("/v1/groups/billing/state", &saved).await;
    assert_eq!((status, answer["error"]["code"].clone()), (409, json!("group_conflict")), "{answer}");
    let mut ahead = saved.clone();
    ahead["checkpoint"] = json!(6);
    let (status, answer) = server.put("/v1/groups/ahead/state", &ahead).await;
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!("invalid_request")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("restore the events first"), "{answer}");
    let mut parked_ahead = saved.clone();
    parked_ahead["parked"][0]["position"] = json!(99);
    assert_eq!(server.put("/v1/groups/ahead/state", &parked_ahead).await.0, 400);
    let mut unknown = saved.clone();
    unknown["in_flight"] = json!(1);
    assert_eq!(server.put("/v1/groups/ahead/state", &unknown).await.0, 400);
    let (status, answer) = server.get("/v1/groups/ahead").await;
    assert_eq!((status, answer["error"]["code"].clone()), (404, json!("group_not_found")));
    assert_eq!(server.get("/v1/groups/nothing/state").await.0, 404);
    server.stop().await;
}

async fn operations_endpoints(target: Target) {
    let server = TestServer::on(target).await;
    append(&server, "a-1", json!("any"), vec![event("A", json!(1))]).await;
    let (status, health) = server.get("/v1/health").await;
    assert_eq!((status, health), (200, json!({ "status": "ok" })));
    let (status, info) = server.get("/v1/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["head_position"], 1, "$store-created at 0, then the append");
    assert_eq!(info["limits"]["append_events_max"], 10_000);
    assert_eq!(info["writes_poisoned"], Value::Null);

    // Appends are counted by the node that decided them (on a cluster: the leader, not the follower
    // that forwarded them).
    let metrics = server.client.get(server.deciding_url("/metrics")).send().await.unwrap();
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let metrics = metrics.text().await.unwrap();
    for line in [
        "strata_appends_total{result=\"committed\"} 1",
        "strata_events_appended_total 1",
        "strata_append_latency_seconds_count 1",
        "strata_fsync_latency_seconds_bucket{le=\"+Inf\"} 1",
        "strata_head_position 1",
        "strata_subscriptions_open 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }

    let (status, openapi) = server.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/v1/streams/{stream}", "/v1/append", "/v1/all", "/v1/subscribe", "/v1/streams", "/metrics"] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is not documented");
    }
    // The documented event shape is the one reads render.
    // (`RecordedEvent` is one of two forms, JSON or binary data; a key is documented in either.)
    let documented: Vec<&String> = openapi["components"]["schemas"]["RecordedEvent"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|form| form["properties"].as_object().unwrap().keys())
        .collect();
    let (_, page) = server.get("/v1/all").await;
    // Position 0 is the store's $store-created; the append's event follows: both are checked.
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    for event in page["events"].as_array().unwrap() {
        for key in event.as_object().unwrap().keys() {
            assert!(documented.contains(&key), "{key} is rendered but not documented");
        }
    }
    server.stop().await;
}

async fn subscriptions_catch_up_then_go_live_and_resume(target: Target) {
    let server = TestServer::on(target).await;
    append(&server, "a-1", json!("any"), vec![event("A", json!(1)), event("A", json!(2))]).await;
    append(&server, "b-1", json!("any"), vec![event("B", json!(3))]).await;

    let mut all = SseReader::open(&server.client, &server.url("/v1/subscribe?from=0"), None).await;
    let mut stream = SseReader::open(&server.client, &server.url("/v1/subscribe?stream=a-1"), None).await;
    let mut filtered = SseReader::open(&server.client, &server.url("/v1/subscribe?types=B"), None).await;
    // Position 0 is the store's $store-created.
    let created: Value = serde_json::from_str(&all.next().await.unwrap().data).unwrap();
    assert_eq!((&created["position"], &created["type"]), (&json!(0), &json!("$store-created")));
    for position in 1..4 {
        let sse = all.next().await.unwrap();
        assert_eq!(sse.id.as_deref(), Some(position.to_string().as_str()));
        let received: Value = serde_json::from_str(&sse.data).unwrap();
        assert_eq!(received["position"], position);
    }
    assert_eq!(all.next().await.unwrap().event.as_deref(), Some("caught_up"));
    for revision in 0..2 {
        let received: Value = serde_json::from_str(&stream.next().await.unwrap().data).unwrap();
        assert_eq!((&received["stream"], &received["revision"]), (&json!("a-1"), &json!(revision)));
    }
    assert_eq!(stream.next().await.unwrap().event.as_deref(), Some("caught_up"));
    let only: Value = serde_json::from_str(&filtered.next().await.unwrap().data).unwrap();
    assert_eq!(only["type"], "B");
    assert_eq!(filtered.next().await.unwrap().event.as_deref(), Some("caught_up"));

    // Live.
    append(&server, "a-1", json!("any"), vec![event("A", json!(4))]).await;
    append(&server, "b-1", json!("any"), vec![event("B", json!(5))]).await;
    assert_eq!(all.next().await.unwrap().id.as_deref(), Some("4"));
    assert_eq!(all.next().await.unwrap().id.as_deref(), Some("5"));
    let live: Value = serde_json::from_str(&stream.next().await.unwrap().data).unwrap();
    assert_eq!((&live["revision"], &live["position"]), (&json!(2), &json!(4)));
    assert_eq!(filtered.next().await.unwrap().id.as_deref(), Some("5"));
    let (status, _) = server.get("/metrics").await;
    assert_eq!(status, 200);

    // Resume with Last-Event-ID: right after the last event received, for the log and for a stream.
    drop(all);
    let mut resumed = SseReader::open(&server.client, &server.url("/v1/subscribe"), Some(3)).await;
    assert_eq!(resumed.next().await.unwrap().id.as_deref(), Some("4"));
    assert_eq!(resumed.next().await.unwrap().id.as_deref(), Some("5"));
    assert_eq!(resumed.next().await.unwrap().event.as_deref(), Some("caught_up"));
    let mut resumed = SseReader::open(&server.client, &server.url("/v1/subscribe?stream=a-1"), Some(2)).await;
    let resumed_event: Value = serde_json::from_str(&resumed.next().await.unwrap().data).unwrap();
    assert_eq!(resumed_event["revision"], 2);
    let (status, error) = server
        .client
        .get(server.url("/v1/subscribe?stream=a-1"))
        .header("last-event-id", "3")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .unwrap();
    assert_eq!((status, error), (400, ()), "position 3 is an event of b-1");

    // From the end: only new events.
    let mut tail = SseReader::open(&server.client, &server.url("/v1/subscribe?from=end"), None).await;
    assert_eq!(tail.next().await.unwrap().event.as_deref(), Some("caught_up"));
    append(&server, "c-1", json!("any"), vec![event("C", json!(6))]).await;
    assert_eq!(tail.next().await.unwrap().id.as_deref(), Some("6"));

    // A stream tombstoned while subscribed ends with an error event; shutdown ends the others.
    server.delete("/v1/streams/a-1?hard=true").await;
    let ended = stream.next().await.unwrap();
    assert_eq!(ended.event.as_deref(), Some("error"), "{ended:?}");
    assert!(stream.next().await.is_none());
    let tombstone: Value = serde_json::from_str(&tail.next().await.unwrap().data).unwrap();
    assert_eq!((&tombstone["stream"], &tombstone["type"]), (&json!("$streams"), &json!("$tombstone")));
    server.stop().await;
    assert!(tail.next().await.is_none(), "shutdown ends subscriptions");
}

async fn heartbeats_keep_idle_subscriptions_alive(target: Target) {
    let options = strata_server::ServeOptions { heartbeat: std::time::Duration::from_millis(50), ..Default::default() };
    let server = TestServer::start_on(target, options, strata_storage::Options::default()).await;
    let mut idle = SseReader::open(&server.client, &server.url("/v1/subscribe"), None).await;
    assert_eq!(idle.next().await.unwrap().event.as_deref(), Some("caught_up"));
    // Heartbeats are comments; the reader counts those that arrive before the next event.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    append(&server, "a-1", json!("any"), vec![event("A", json!(1))]).await;
    assert_eq!(idle.next().await.unwrap().id.as_deref(), Some("0"));
    assert!(idle.comments >= 1, "no heartbeat in 200 ms at a 50 ms interval");
    server.stop().await;
}

/// System events of `$streams` read as JSON — the stream, the revision, the metadata — in `GET
/// /v1/all` and stream reads, every event carries `hash`, and `POST /v1/import` takes them back:
/// a second store imported from the first reads the same, byte for byte.
async fn system_events_read_as_json_and_import_back(target: Target) {
    let server = TestServer::on(target).await;
    for stream in ["a-1", "b-1", "b-1", "c-1"] {
        append(&server, stream, json!("any"), vec![event("Noted", json!({ "in": stream }))]).await;
    }
    let metadata = json!({ "max_count": 2, "custom": { "owner": "ada" } });
    assert_eq!(server.put("/v1/streams/a-1/metadata", &metadata).await.0, 200);
    assert_eq!(server.delete("/v1/streams/b-1").await.0, 200);
    assert_eq!(server.delete("/v1/streams/c-1?hard=true").await.0, 200);

    let (status, page) = server.get("/v1/all").await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert!(
        events.iter().all(|event| event["hash"]
            .as_str()
            .is_some_and(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))),
        "every event carries its hash: {page}"
    );
    let system: Vec<&Value> = events.iter().filter(|event| event["stream"] == "$streams").collect();
    let datas: Vec<(&Value, &Value)> = system.iter().map(|event| (&event["type"], &event["data"])).collect();
    assert_eq!(
        datas,
        [
            (
                &json!("$metadata"),
                &json!({ "stream": "a-1", "max_age_seconds": null, "max_count": 2, "truncate_before": null,
                    "custom": { "owner": "ada" } })
            ),
            (&json!("$deleted"), &json!({ "stream": "b-1", "truncate_before": 2 })),
            (&json!("$tombstone"), &json!({ "stream": "c-1" })),
        ]
    );
    assert!(system.iter().all(|event| event.get("data_base64").is_none()), "{page}");
    let (_, stream_page) = server.get("/v1/streams/$streams").await;
    assert_eq!(stream_page["events"].as_array().unwrap().iter().map(|e| &e["data"]).collect::<Vec<_>>(), {
        datas.iter().map(|(_, data)| *data).collect::<Vec<_>>()
    });

    let second = TestServer::on(target).await;
    let (status, imported) = second.post("/v1/import", &json!({ "events": events })).await;
    assert_eq!(status, 200, "{imported}");
    let text = |server: &TestServer| {
        let url = server.url("/v1/all");
        let client = server.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(text(&second).await, text(&server).await);
    assert_eq!(second.get("/v1/streams/c-1").await.0, 410, "the tombstone took effect");
    assert_eq!(second.get("/v1/streams/a-1/metadata").await.1["max_count"], 2);
    // The JSON of a system event is checked like any request.
    let mut bad = events.iter().find(|event| event["type"] == "$deleted").unwrap().clone();
    bad["data"] = json!({ "stream": "b-1", "truncate_before": 2, "extra": true });
    let third = TestServer::on(target).await;
    let (status, error) = third.post("/v1/import", &json!({ "events": [bad] })).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("unknown field `extra`"), "{error}");
    third.stop().await;
    second.stop().await;
    server.stop().await;
}

/// Browser safety: what a page of another site can make a visitor's browser send — a foreign or
/// `null` `Origin`, a form's or `text/plain` body, a request under a name of its own that resolves to
/// the server (DNS rebinding) — changes nothing, and its answers carry no CORS header the browser
/// would let the page read them by; the server's own origin and a `--cors-origin` work.
async fn pages_of_other_sites_change_nothing_and_read_nothing(target: Target) {
    let console = "http://console.test:8080";
    let policy = strata_server::browser::BrowserPolicy::new(&[], &[console.to_owned()]).unwrap();
    let options = strata_server::ServeOptions { browser: policy, ..Default::default() };
    let server = TestServer::start_on(target, options, strata_storage::Options::default()).await;
    let seed = append(&server, "order-1", json!("any"), vec![event("Placed", json!({ "n": 1 }))]).await;
    assert_eq!(seed.0, 200, "{}", seed.1);
    let all = |server: &TestServer| {
        let url = server.url("/v1/all");
        let client = server.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let before = all(&server).await;
    let body = json!({ "events": [event("Forged", json!({}))] }).to_string();
    let send = |method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>| {
        let mut request =
            server.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), server.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let cors = response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
            let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
            (status, answer["error"]["code"].as_str().unwrap_or_default().to_owned(), cors)
        }
    };
    let json_type = ("content-type", "application/json");

    // A foreign or opaque origin changes nothing, whatever the request: another site, a sandboxed
    // page, another port, the same host and port under another scheme.
    let other_scheme = server.url.replace("http://", "https://");
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1", other_scheme.as_str()] {
        let from = ("origin", origin);
        for (method, path, body) in [
            ("POST", "/v1/streams/order-1", Some(body.as_str())),
            ("POST", "/v1/append", Some(r#"{"events":[{"stream":"order-1","type":"Forged","data":{}}]}"#)),
            ("PUT", "/v1/streams/order-1/metadata", Some(r#"{"max_count":1}"#)),
            ("DELETE", "/v1/streams/order-1", None),
            ("POST", "/v1/scavenge", None),
            ("POST", "/v1/verify", None),
            ("POST", "/v1/groups/forged/replay-parked", None),
            ("PUT", "/v1/groups/forged", Some(r#"{"source":{"all":{}}}"#)),
        ] {
            let answer = send(method, path, &[from, json_type], body).await;
            assert_eq!(answer, (403, "origin_not_allowed".to_owned(), None), "{method} {path} from {origin}");
        }
        // Reads are answered (a browser keeps them from the page: no CORS header).
        let (status, _, cors) = send("GET", "/v1/all", &[from], None).await;
        assert_eq!((status, cors), (200, None), "GET from {origin}");
        // A preflight from it is refused: the page cannot send JSON or DELETE at all.
        let preflight =
            [from, ("access-control-request-method", "POST"), ("access-control-request-headers", "content-type")];
        assert_eq!(
            send("OPTIONS", "/v1/streams/order-1", &preflight, None).await,
            (403, "origin_not_allowed".to_owned(), None)
        );
    }
    // What a form or a page sends unasked is refused even without an Origin.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        for (path, body) in [("/v1/streams/order-1", Some(body.as_str())), ("/v1/scavenge", None)] {
            let answer = send("POST", path, &[("content-type", content_type)], body).await;
            assert_eq!(answer, (415, "unsupported_media_type".to_owned(), None), "{path} as {content_type}");
        }
    }
    // A body is read only when declared JSON.
    assert_eq!(send("POST", "/v1/streams/order-1", &[], Some(&body)).await.0, 415);
    assert_eq!(send("POST", "/v1/streams/order-1", &[("content-type", "application/xml")], Some(&body)).await.0, 415);
    // A rebinding page reaches the server under the attacker's name: nothing is answered to it.
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let rebound = format!("rebind.evil.example:{port}");
    for (method, path, body) in
        [("GET", "/v1/all", None), ("GET", "/v1/info", None), ("POST", "/v1/streams/order-1", Some(body.as_str()))]
    {
        let answer = send(method, path, &[("host", &rebound), json_type], body).await;
        assert_eq!(answer, (403, "host_not_allowed".to_owned(), None), "{method} {path}");
    }
    assert_eq!(all(&server).await, before, "nothing was written, deleted or scavenged");
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    // Four origins, each refused for eight requests and a preflight.
    for (rule, count) in [("host", 3), ("origin", 36), ("content_type", 6)] {
        let line = format!("strata_browser_refusals_total{{rule=\"{rule}\"}} {count}\n");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    // The server's own origin (a page it served) and a listed one may; loopback names are hosts.
    let own = server.url.clone();
    let answer = send("POST", "/v1/streams/order-1", &[("origin", &own), json_type], Some(&body)).await;
    assert_eq!(answer, (200, String::new(), None));
    let localhost = format!("localhost:{port}");
    assert_eq!(send("GET", "/v1/info", &[("host", &localhost)], None).await.0, 200);
    let preflight = [("origin", console), ("access-control-request-method", "DELETE")];
    let response = server.client.request(reqwest::Method::OPTIONS, server.url("/v1/streams/order-1"));
    let response = preflight.iter().fold(response, |request, (name, value)| request.header(*name, *value));
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), 204);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("access-control-allow-origin"), console);
    assert!(
        header("access-control-allow-methods").contains("DELETE")
            && header("access-control-allow-headers").contains("content-type")
    );
    let answer = send("POST", "/v1/streams/order-1", &[("origin", console), json_type], Some(&body)).await;
    assert_eq!(answer, (200, String::new(), Some(console.to_owned())));
    let (status, page) = server.get("/v1/streams/order-1").await;
    assert_eq!(status, 200);
    let types: Vec<_> =
        page["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(types, ["Placed", "Forged", "Forged"], "the seed, then the own origin's and the listed origin's");
    server.stop().await;
}
