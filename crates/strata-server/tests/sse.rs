//! A subscriber from position 0 while 8 writers append sees every event once, in order; after a
//! disconnect it resumes with `Last-Event-ID` without a gap or a duplicate.

mod common;

use common::{SseReader, TestServer};
use serde_json::{Value, json};
use std::time::Duration;

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

    // Read half, disconnect, resume from the last id received, read the rest. Position 0 is the
    // store's `$store-created`, written with the first append: the writers' events are 1..=total.
    let last_position = total;
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
        if position == 0 {
            assert_eq!((&event["stream"], &event["type"]), (&json!("$store"), &json!("$store-created")), "{event}");
            *next_position += 1;
            return;
        }
        let writer = event["data"]["writer"].as_u64().unwrap() as usize;
        assert_eq!(event["data"]["n"], next_per_writer[writer], "a writer's events out of order");
        assert_eq!(event["revision"], next_per_writer[writer]);
        next_per_writer[writer] += 1;
        *next_position += 1;
    };
    while next_position <= last_position / 2 {
        let sse = reader.next().await.expect("the subscription ended early");
        receive(sse, &mut next_position);
    }
    drop(reader);
    let mut reader = SseReader::open(&server.client, &server.url("/v1/subscribe"), Some(next_position - 1)).await;
    while next_position <= last_position {
        let sse = reader.next().await.expect("the subscription ended early");
        receive(sse, &mut next_position);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(next_per_writer.iter().all(|&n| n == APPENDS_PER_WRITER * EVENTS_PER_APPEND));
    server.stop().await;
}

/// A subscriber that stops reading holds its connection open past the grace period; shutting down
/// drops it anyway, and `serve` returns only once nothing of the server holds the store: the data
/// directory can be opened again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_a_stalled_subscriber_and_releases_the_store() {
    use std::io::Write as _;
    use strata_core::{EventType, ExpectedRevision, NewEvent, StreamId};

    let dir = tempfile::tempdir().unwrap();
    let store = strata_storage::Store::open(dir.path()).unwrap();
    // 32 MiB of events: far more than the socket buffers of a subscriber that reads nothing.
    let payload = format!("{{\"padding\":\"{}\"}}", "x".repeat(8 * 1024));
    let store = tokio::task::spawn_blocking(move || {
        for batch in 0..32 {
            let events = (0..128).map(|_| NewEvent::new(EventType::new("Padded").unwrap(), payload.clone())).collect();
            let stream = StreamId::new(format!("padded-{batch}")).unwrap();
            let _ = store.append_blocking(stream, ExpectedRevision::Any, events).unwrap();
        }
        store
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = strata_server::ServeOptions { shutdown_grace: Duration::from_millis(300), ..Default::default() };
    let server = tokio::spawn(strata_server::serve(store, listener, options, async move {
        let _ = stopped.await;
    }));

    let mut stalled = std::net::TcpStream::connect(address).unwrap();
    stalled.write_all(b"GET /v1/subscribe?from=start HTTP/1.1\r\nhost: strata\r\n\r\n").unwrap();
    let reading = reqwest::Client::new();
    let mut reader = SseReader::open(&reading, &format!("http://{address}/v1/subscribe?from=end"), None).await;
    assert_eq!(reader.next().await.unwrap().event.as_deref(), Some("caught_up"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after the grace period")
        .unwrap()
        .unwrap();
    assert!(reader.next().await.is_none(), "shutdown ends the subscription that reads");
    strata_storage::Store::open(dir.path()).expect("no task of the server holds the store after serve returns");
    drop(stalled);
}
