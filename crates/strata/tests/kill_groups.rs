//! kill -9 of `strata serve` while a consumer group is being consumed by three consumers and written
//! to: after restarts, every event written is delivered and acked at least once — none lost.

mod common;

use common::start_server;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KILLS: usize = 3;

/// The server, killed when dropped — also when an assertion fails (else it would outlive the test).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    fn kill_9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

const CONSUMERS: usize = 3;
/// Each round kills the server once at least this many more deliveries were acked.
const ACKS_BEFORE_KILL: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_and_acked_at_least_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // Positions of acknowledged appends, and positions whose delivery was acked.
    let written: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let acks = Arc::new(AtomicUsize::new(0));
    let deliveries = Arc::new(AtomicUsize::new(0));
    for round in 0..=KILLS {
        let (server, url) = start_server(dir.path());
        let server = Server(server);
        if round == 0 {
            let body = json!({ "source": { "all": { "category": "order" } }, "from": "start",
                "settings": { "max_in_flight": 50, "ack_timeout_ms": 2000 } });
            let answer = client.put(format!("{url}/v1/groups/billing")).json(&body).send().await.unwrap();
            assert_eq!(answer.status(), 200);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        // One writer, in the last round only until it has written a last batch (so the test ends).
        {
            let (client, url, written, stop) = (client.clone(), url.clone(), written.clone(), stop.clone());
            let last_round = round == KILLS;
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                // Batches of 10, faster than the consumers take them: the group always has a backlog.
                let batches = if last_round { 20 } else { 300 };
                while !stop.load(Ordering::Relaxed) && n < batches {
                    let events: Vec<Value> = (0..10)
                        .map(|i| json!({ "type": "Placed", "data": { "round": round, "n": n, "i": i } }))
                        .collect();
                    let url = format!("{url}/v1/streams/order-{}", n % 7);
                    let Ok(response) = client.post(url).json(&json!({ "events": events })).send().await else { return };
                    let Ok(result) = response.json::<Value>().await else { return };
                    let (Some(first), Some(last)) =
                        (result["first_position"].as_u64(), result["last_position"].as_u64())
                    else {
                        return;
                    };
                    written.lock().unwrap().extend(first..=last);
                    n += 1;
                }
            }));
        }
        for consumer in 0..CONSUMERS {
            let (client, url, acked, acks, deliveries, stop) =
                (client.clone(), url.clone(), acked.clone(), acks.clone(), deliveries.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let body = json!({ "consumer": format!("c{consumer}"), "max": 5, "wait_ms": 200 });
                while !stop.load(Ordering::Relaxed) {
                    let Ok(response) = client.post(format!("{url}/v1/groups/billing/fetch")).json(&body).send().await
                    else {
                        return;
                    };
                    let Ok(answer) = response.json::<Value>().await else { return };
                    let Some(batch) = answer["deliveries"].as_array() else { return };
                    deliveries.fetch_add(batch.len(), Ordering::Relaxed);
                    let ids: Vec<Value> = batch.iter().map(|d| d["delivery_id"].clone()).collect();
                    let positions: Vec<u64> = batch.iter().map(|d| d["event"]["position"].as_u64().unwrap()).collect();
                    if ids.is_empty() {
                        continue;
                    }
                    // Handling takes a moment.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let ack = json!({ "delivery_ids": ids });
                    let Ok(response) = client.post(format!("{url}/v1/groups/billing/ack")).json(&ack).send().await
                    else {
                        return;
                    };
                    let Ok(answer) = response.json::<Value>().await else { return };
                    // Only acks the server confirmed count; the rest comes again.
                    if answer["done"].as_u64() == Some(positions.len() as u64) {
                        acked.lock().unwrap().extend(positions);
                        acks.fetch_add(ids.len(), Ordering::Relaxed);
                    }
                }
            }));
        }
        if round < KILLS {
            // Long enough for the group to save its checkpoint a few times (every 100 ms at most).
            let target = acks.load(Ordering::Relaxed) + ACKS_BEFORE_KILL;
            let started = std::time::Instant::now();
            while acks.load(Ordering::Relaxed) < target
                || started.elapsed() < Duration::from_millis(400 + 150 * round as u64)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // SIGKILL: in the middle of appends, deliveries and acks.
            server.kill_9();
            for task in tasks {
                task.await.unwrap();
            }
            continue;
        }
        // The last round: no kill; consume until the group has caught up with everything written.
        let mut writer = Some(tasks.remove(0));
        let mut waited = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if writer.as_ref().is_some_and(|w| w.is_finished()) {
                writer.take().unwrap().await.unwrap();
            }
            let info: Value =
                client.get(format!("{url}/v1/groups/billing")).send().await.unwrap().json().await.unwrap();
            let missing = written.lock().unwrap().difference(&acked.lock().unwrap()).count();
            if writer.is_none() && info["lag_events"] == 0 && info["in_flight"] == 0 && missing == 0 {
                break;
            }
            waited += 1;
            assert!(waited < 1200, "the group did not catch up: {info}, {missing} written events never acked");
        }
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        server.kill_9();
    }
    let written = written.lock().unwrap();
    let acked = acked.lock().unwrap();
    let lost: Vec<&u64> = written.difference(&acked).collect();
    assert!(lost.is_empty(), "written events never delivered and acked: {lost:?}");
    assert!(written.len() > 200, "events were written in the rounds that were killed too: {}", written.len());
    let deliveries = deliveries.load(Ordering::Relaxed);
    eprintln!(
        "{} events written, {} delivered ({} redeliveries across {KILLS} kills)",
        written.len(),
        deliveries,
        deliveries.saturating_sub(acked.len())
    );
}
