//! A subscriber from position 0 while 8 writers append sees every event once, in order; after a
//! disconnect it resumes with `Last-Event-ID` without a gap or a duplicate.

mod common;

use common::{SseReader, TestServer};
use serde_json::{Value, json};

const WRITERS: u64 = 8;
/// 8 × 80 × 2 = 1,280 events: more than one subscription batch (1,000) to catch up.
const APPENDS_PER_WRITER: u64 = 80;
const EVENTS_PER_APPEND: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_sees_every_event_once_in_order_across_a_reconnect() {
    let server = TestServer::start().await;
    let total = WRITERS * APPENDS_PER_WRITER * EVENTS_PER_APPEND;
    let mut reader = SseReader::open(&server.client, &server.url("/v1/subscribe?from=0"), None).await;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (client, url) = (server.client.clone(), server.url(&format!("/v1/streams/writer-{writer}")));
        writers.push(tokio::spawn(async move {
            for append in 0..APPENDS_PER_WRITER {
                let events: Vec<Value> = (0..EVENTS_PER_APPEND)
                    .map(|n| json!({ "type": "Counted", "data": { "writer": writer, "n": append * EVENTS_PER_APPEND + n } }))
                    .collect();
                let body = json!({ "expected_revision": if append == 0 { json!("no_stream") } else { json!(append * EVENTS_PER_APPEND - 1) }, "events": events });
                let response = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            }
        }));
    }

    // Read half, disconnect, resume from the last id received, read the rest.
    let mut next_position = 0u64;
    let mut next_per_writer = [0u64; WRITERS as usize];
    let mut receive = |sse: common::SseEvent, next_position: &mut u64| {
        if sse.event.as_deref() == Some("caught_up") {
            return;
        }
        let event: Value = serde_json::from_str(&sse.data).unwrap();
        let position = event["position"].as_u64().unwrap();
        assert_eq!(position, *next_position, "a gap or a duplicate in the global order");
        assert_eq!(sse.id.as_deref(), Some(position.to_string().as_str()));
        let writer = event["data"]["writer"].as_u64().unwrap() as usize;
        assert_eq!(event["data"]["n"], next_per_writer[writer], "a writer's events out of order");
        assert_eq!(event["revision"], next_per_writer[writer]);
        next_per_writer[writer] += 1;
        *next_position += 1;
    };
    while next_position < total / 2 {
        let sse = reader.next().await.expect("the subscription ended early");
        receive(sse, &mut next_position);
    }
    drop(reader);
    let mut reader = SseReader::open(&server.client, &server.url("/v1/subscribe"), Some(next_position - 1)).await;
    while next_position < total {
        let sse = reader.next().await.expect("the subscription ended early");
        receive(sse, &mut next_position);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(next_per_writer.iter().all(|&n| n == APPENDS_PER_WRITER * EVENTS_PER_APPEND));
    server.stop().await;
}
