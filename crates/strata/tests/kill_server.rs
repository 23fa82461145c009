//! kill -9 of `strata serve` under 64 concurrent HTTP writers: after a restart every acknowledged
//! event is present exactly once, at the position it was acknowledged with, and positions are gapless.

mod common;

use common::start_server;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 64;
const ROUNDS: usize = 3;
/// Each round kills the server once at least this many appends were acknowledged in it.
const ACKS_BEFORE_KILL: usize = 400;

/// Every event of the log, in order.
async fn read_all(client: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let page: Value =
            client.get(format!("{url}/v1/all?from={from}&limit=10000")).send().await.unwrap().json().await.unwrap();
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => return events,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // Event id → the position its append was acknowledged with.
    let acknowledged: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    for round in 0..ROUNDS {
        let (mut server, url) = start_server(dir.path());
        let acked_this_round = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let (client, url, acknowledged, acked) =
                (client.clone(), url.clone(), acknowledged.clone(), acked_this_round.clone());
            writers.push(tokio::spawn(async move {
                loop {
                    let id = uuid::Uuid::new_v4().to_string();
                    let body = json!({ "events": [{ "id": id, "type": "Written", "data": { "round": round, "writer": writer } }] });
                    let url = format!("{url}/v1/streams/writer-{writer}");
                    // A connection error means the server is gone: the outcome of this append is unknown.
                    let Ok(response) = client.post(url).json(&body).send().await else { return };
                    if response.status() != 200 {
                        return;
                    }
                    let Ok(result) = response.json::<Value>().await else { return };
                    acknowledged.lock().unwrap().insert(id, result["first_position"].as_u64().unwrap());
                    acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        while acked_this_round.load(std::sync::atomic::Ordering::Relaxed) < ACKS_BEFORE_KILL {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // SIGKILL: no shutdown, no flush, in the middle of commits.
        server.kill().unwrap();
        server.wait().unwrap();
        for writer in writers {
            writer.await.unwrap();
        }

        let (mut server, url) = start_server(dir.path());
        let events = read_all(&client, &url).await;
        let mut seen: HashMap<&str, u64> = HashMap::new();
        for (at, event) in events.iter().enumerate() {
            assert_eq!(event["position"], at as u64, "round {round}: positions have a gap");
            let id = event["id"].as_str().unwrap();
            assert!(seen.insert(id, at as u64).is_none(), "round {round}: event {id} is stored twice");
        }
        let acknowledged = acknowledged.lock().unwrap();
        for (id, position) in acknowledged.iter() {
            assert_eq!(seen.get(id.as_str()), Some(position), "round {round}: acknowledged event {id} lost or moved");
        }
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

/// SIGTERM: the server stops accepting, answers what is in flight, closes the store and exits 0;
/// every append it acknowledged is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_appends_and_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let (mut server, url) = start_server(dir.path());
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..16 {
        let (client, url, acknowledged) = (client.clone(), url.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let id = uuid::Uuid::new_v4().to_string();
                let body = json!({ "events": [{ "id": id, "type": "Written", "data": {} }] });
                let Ok(response) = client.post(format!("{url}/v1/streams/w-{writer}")).json(&body).send().await else {
                    return;
                };
                if response.status() != 200 {
                    return;
                }
                acknowledged.lock().unwrap().push(id);
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || server.wait().unwrap()).await.unwrap();
    assert!(status.success(), "strata serve exited with {status} on SIGTERM");
    for writer in writers {
        writer.await.unwrap();
    }
    let (mut server, url) = start_server(dir.path());
    let events = read_all(&client, &url).await;
    let stored: std::collections::HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(stored.len(), events.len(), "no event twice");
    for id in acknowledged.lock().unwrap().iter() {
        assert!(stored.contains(id.as_str()), "acknowledged event {id} lost");
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
