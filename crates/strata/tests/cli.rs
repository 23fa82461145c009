//! The command line, through the binary: export → import → export is byte-identical (on a data
//! directory and against a server), a backup taken while writing restores to a store `verify`
//! accepts, `verify` fails on damage, a directory a server holds is refused with a clear message, and
//! `--url` with several servers passes over one that is not there.

mod common;

use common::{path, start_server, strata, strata_ok};
use serde_json::{Value, json};

/// Appends a varied history: several streams, tags, binary data, metadata, a soft delete, a tombstone.
fn write_history(data: &str) {
    for n in 0..20 {
        let stream = format!("account-{}", n % 3);
        let data_json = format!("{{\"amount\":{n},\"note\":\"ünïcödé \\\"quoted\\\"\"}}");
        strata_ok(&["--data", data, "append", &stream, "--type", "Deposited", &data_json, "--tag", &format!("n:{n}")]);
    }
    strata_ok(&["--data", data, "append", "other-1", "--type", "Noted", "[1,2,3]", "--metadata", "{\"by\":\"cli\"}"]);
    // What the command line cannot write: binary data, metadata, a soft delete, a tombstone.
    let store = strata_storage::Store::open(data).unwrap();
    let blob = strata_core::NewEvent::new(strata_core::EventType::new("Blob").unwrap(), vec![0u8, 159, 146, 150, 255])
        .with_content_type(strata_core::ContentType::new("image/png").unwrap());
    let stream = |name: &str| strata_core::StreamId::new(name).unwrap();
    let any = strata_core::ExpectedRevision::Any;
    let _ = store.append_blocking(stream("blob-1"), any, vec![blob]).unwrap();
    let metadata = strata_core::StreamMetadata { max_count: Some(2), ..Default::default() };
    let _ = store.set_stream_metadata_blocking(stream("account-0"), &metadata).unwrap();
    let _ = store.delete_stream_blocking(stream("account-1"), any).unwrap();
    let _ = store.tombstone_stream_blocking(stream("account-2"), any).unwrap();
}

#[test]
fn export_import_export_is_byte_identical_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("source"), dir.path().join("target"));
    write_history(path(&source));
    let first = strata_ok(&["--data", path(&source), "export"]);
    // 25 events, and the `$store-created` line first.
    assert_eq!(first.iter().filter(|&&b| b == b'\n').count(), 26);
    assert!(
        first.starts_with(b"{")
            && String::from_utf8_lossy(&first).lines().next().unwrap().contains("\"$store-created\"")
    );
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, &first).unwrap();
    strata_ok(&["--data", path(&target), "import", path(&file), "--batch-events", "4"]);
    let second = strata_ok(&["--data", path(&target), "export"]);
    assert_eq!(String::from_utf8(second).unwrap(), String::from_utf8(first.clone()).unwrap());
    // Resumable and idempotent: a second run changes nothing.
    let again = strata_ok(&["--json", "--data", path(&target), "import", path(&file), "--batch-events", "4"]);
    let again: Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(again, json!({ "imported": 0, "already_present": 26 }));
    // The system events took effect in the target too.
    let read = |stream: &str| strata(&["--data", path(&target), "read", stream]);
    assert_eq!(read("account-1").status.code(), Some(1), "soft-deleted");
    assert!(String::from_utf8_lossy(&read("account-2").stderr).contains("deleted for good"));
    let kept = strata_ok(&["--data", path(&target), "--json", "read", "account-0"]);
    assert_eq!(kept.iter().filter(|&&b| b == b'\n').count(), 2, "max_count 2");
    assert_eq!(strata_ok(&["--data", path(&target), "export"]), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_server_export_import_backup_restore_verify_while_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(&dir.path().join("served"));
    let client = reqwest::Client::new();
    // Writers keep appending while the backup and the export run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut appended = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || appended < 50 {
                let body = json!({ "events": [{ "type": "Written", "data": { "n": appended }, "tags": [format!("w:{writer}")] }] });
                let response = client.post(format!("{url}/v1/streams/w-{writer}")).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 200);
                appended += 1;
            }
        }));
    }
    while client.get(format!("{url}/v1/info")).send().await.unwrap().json::<Value>().await.unwrap()["head_position"]
        .as_u64()
        .is_none_or(|head| head < 100)
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let backup = dir.path().join("backup");
    let url_arg = url.clone();
    let backup_arg = backup.clone();
    let output = tokio::task::spawn_blocking(move || {
        strata(&["--url", &url_arg, "--json", "backup", "--output", path(&backup_arg)])
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let events = manifest["events"].as_u64().unwrap();
    assert!(events >= 100, "{manifest}");

    // The backup is the log up to its head position exactly: a consistent snapshot.
    let restored = dir.path().join("restored");
    strata_ok(&["--data", path(&restored), "restore", "--from", path(&backup)]);
    let verified: Value = serde_json::from_slice(&strata_ok(&["--data", path(&restored), "--json", "verify"])).unwrap();
    assert_eq!(verified["events"], events);
    let restored_export = strata_ok(&["--data", path(&restored), "export"]);
    let served_export = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || strata_ok(&["--url", &url, "export"])).await.unwrap()
    };
    assert!(served_export.starts_with(&restored_export), "the backup is a prefix of the log");
    assert!(served_export.len() > restored_export.len(), "the writers went on after the backup");
    let verified = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || strata_ok(&["--url", &url, "--json", "verify"])).await.unwrap()
    };
    assert_eq!(serde_json::from_slice::<Value>(&verified).unwrap()["ok"], true);

    // Import over HTTP into a second server, and export it again: byte-identical.
    let (mut second, second_url) = start_server(&dir.path().join("second"));
    let file = dir.path().join("served.ndjson");
    std::fs::write(&file, &served_export).unwrap();
    let (second_url_arg, file_arg) = (second_url.clone(), file.clone());
    tokio::task::spawn_blocking(move || strata_ok(&["--url", &second_url_arg, "import", path(&file_arg)]))
        .await
        .unwrap();
    let reexported = tokio::task::spawn_blocking(move || strata_ok(&["--url", &second_url, "export"])).await.unwrap();
    assert!(reexported == served_export, "export → import → export over HTTP differs");

    // A directory a server holds is refused, saying what to do.
    let output = strata(&["--data", path(&dir.path().join("served")), "read", "w-0"]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("in use by another process") && message.contains("--url"), "{message}");
    server.kill().unwrap();
    server.wait().unwrap();
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn verify_fails_on_damage_and_restore_refuses_a_damaged_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_history(path(&data));
    strata_ok(&["--data", path(&data), "verify"]);
    let backup = dir.path().join("backup");
    strata_ok(&["--data", path(&data), "backup", "--output", path(&backup)]);

    // A flipped bit in an event record of the segment.
    let segment = std::fs::read_dir(&data)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(6).position(|w| w == b"amount").unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let output = strata(&["--data", path(&data), "verify"]);
    assert_eq!(output.status.code(), Some(1), "verify accepted a damaged store");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("corrupt"), "{message}");

    // A truncated backup is refused before anything is restored.
    let events = backup.join("events.ndjson");
    let mut backed_up = std::fs::read(&events).unwrap();
    backed_up.truncate(backed_up.len() - 10);
    std::fs::write(&events, backed_up).unwrap();
    let restored = dir.path().join("restored");
    let output = strata(&["--data", path(&restored), "restore", "--from", path(&backup)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not match its manifest"));
    assert!(strata_ok(&["--data", path(&restored), "export"]).is_empty(), "nothing was restored");
}

/// `--url` with several servers: a node that is not there is passed over (nothing was sent to it);
/// one server that is not there fails at once, saying nothing was written; a URL that is not HTTP
/// is refused before anything is sent.
#[test]
fn several_urls_move_on_from_a_server_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(&dir.path().join("data"));
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let both = format!("{dead},{url}");
    strata_ok(&["--url", &both, "append", "order-1", "--type", "Placed", r#"{"n":1}"#]);
    strata_ok(&["--url", &both, "append", "order-1", "--type", "Placed", r#"{"n":2}"#]);
    let read = strata_ok(&["--url", &both, "--json", "read", "order-1"]);
    let events: Vec<Value> =
        read.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(events.len(), 2, "each append went once, to the server that is there");
    assert_eq!(events[1]["data"], json!({ "n": 2 }));

    let started = std::time::Instant::now();
    let output = strata(&["--url", &dead, "read", "order-1"]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("no server took the request (nothing was written)") && message.contains(&dead),
        "{message}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "one server that is not there is not retried");

    let output = strata(&["--url", "ftp://127.0.0.1:1", "read", "order-1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not an http:// or https:// URL"));
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Consumer groups by command, and a backup that keeps them.
#[test]
fn consumer_groups_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = path(dir.path());
    for n in 0..5 {
        strata_ok(&["--data", data, "append", &format!("order-{n}"), "--type", "Placed", &format!("{{\"n\":{n}}}")]);
    }
    strata_ok(&["--data", data, "append", "other-1", "--type", "Noise", "{}"]);
    let created = strata_ok(&[
        "--data",
        data,
        "--json",
        "groups",
        "create",
        "billing",
        "--category",
        "order",
        "--max-retries",
        "2",
    ]);
    let created: Value = serde_json::from_slice(&created).unwrap();
    assert_eq!(created["source"], json!({ "all": { "category": "order" } }));
    assert_eq!(created["settings"]["max_retries"], 2);
    let consumed =
        strata_ok(&["--data", data, "--json", "groups", "consume", "billing", "--count", "3", "--wait-ms", "0"]);
    let lines: Vec<Value> =
        consumed.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["event"]["stream"], "order-0");
    let info: Value =
        serde_json::from_slice(&strata_ok(&["--data", data, "--json", "groups", "info", "billing"])).unwrap();
    // Positions 1, 2, 3: position 0 is `$store-created`.
    assert_eq!(info["checkpoint"], 3, "{info}");
    // A backup keeps the group's state; restored, the group resumes after its checkpoint.
    let backup = dir.path().join("backup");
    let manifest: Value =
        serde_json::from_slice(&strata_ok(&["--data", data, "--json", "backup", "--output", path(&backup)])).unwrap();
    assert_eq!(manifest["groups"]["count"], 1, "{manifest}");
    let restored = dir.path().join("restored");
    let answer: Value =
        serde_json::from_slice(&strata_ok(&["--data", path(&restored), "--json", "restore", "--from", path(&backup)]))
            .unwrap();
    assert_eq!(answer["groups"], 1, "{answer}");
    let copy: Value =
        serde_json::from_slice(&strata_ok(&["--data", path(&restored), "--json", "groups", "info", "billing"]))
            .unwrap();
    assert_eq!((copy["checkpoint"].clone(), copy["settings"].clone()), (json!(3), info["settings"].clone()));
    let resumed = strata_ok(&["--data", path(&restored), "groups", "consume", "billing", "--wait-ms", "0"]);
    assert_eq!(String::from_utf8(resumed).unwrap().lines().count(), 2, "the two events after the checkpoint");
    // A damaged groups file is refused before anything is restored.
    let groups_file = backup.join("groups.ndjson");
    let damaged = String::from_utf8(std::fs::read(&groups_file).unwrap()).unwrap().replace("billing", "billinG");
    std::fs::write(&groups_file, damaged).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let output = strata(&["--data", path(&elsewhere), "restore", "--from", path(&backup)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("groups.ndjson does not match its manifest"));
    assert!(strata_ok(&["--data", path(&elsewhere), "export"]).is_empty(), "nothing was restored");
    let rest = strata_ok(&["--data", data, "groups", "consume", "billing", "--wait-ms", "0"]);
    assert_eq!(String::from_utf8(rest).unwrap().lines().count(), 2);
    strata_ok(&["--data", data, "groups", "update", "billing", "--max-in-flight", "7"]);
    let listed: Value = serde_json::from_slice(&strata_ok(&["--data", data, "--json", "groups", "list"])).unwrap();
    assert_eq!(listed["groups"][0]["settings"]["max_in_flight"], 7);
    assert_eq!(listed["groups"][0]["lag_events"], 0);
    let bad = strata(&["--data", data, "groups", "create", "bad name", "--category", "order"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("group name"), "{}", String::from_utf8_lossy(&bad.stderr));
    strata_ok(&["--data", data, "groups", "delete", "billing"]);
    let gone = strata(&["--data", data, "groups", "info", "billing"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no consumer group named billing"));
}

/// System events (metadata, a soft delete, a tombstone) read as JSON in `read-all` and exports —
/// the stream, the revision, the metadata — and every event carries its `hash` (64 hex digits:
/// the chain starts at `$store-created`); the export imports back (the byte-identical round trip is the test above).
#[test]
fn system_events_are_readable_json_in_read_all_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_history(path(&data));
    let lines = |output: Vec<u8>| -> Vec<Value> {
        output.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    };
    let exported = lines(strata_ok(&["--data", path(&data), "export"]));
    let read = lines(strata_ok(&["--data", path(&data), "--json", "read-all", "--limit", "1000"]));
    assert_eq!(exported, read, "read-all --json shows the events as exports write them");
    let system: Vec<&Value> = exported.iter().filter(|event| event["stream"] == "$streams").collect();
    let data_of = |event_type: &str| {
        let event = system.iter().find(|event| event["type"] == event_type).unwrap();
        assert!(event.get("data_base64").is_none() && event.get("content_type").is_none(), "{event}");
        event["data"].clone()
    };
    assert_eq!(
        data_of("$metadata"),
        json!({ "stream": "account-0", "max_age_seconds": null, "max_count": 2, "truncate_before": null, "custom": null })
    );
    assert_eq!(data_of("$deleted"), json!({ "stream": "account-1", "truncate_before": 7 }));
    assert_eq!(data_of("$tombstone"), json!({ "stream": "account-2" }));
    // Log format 2: the chain starts at `$store-created`, so every event's hash is 64 hex digits.
    assert!(
        exported.iter().all(|event| event
            .get("hash")
            .and_then(Value::as_str)
            .is_some_and(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))),
        "every event has its hash"
    );
    assert_eq!(exported[0]["type"], "$store-created");
    assert_eq!(exported[0]["stream"], "$store");
    assert_eq!(exported[0]["position"], 0);
    // The text form shows the JSON too.
    let text = String::from_utf8(strata_ok(&["--data", path(&data), "read-all", "--limit", "1000"])).unwrap();
    assert!(text.contains(r#"{"stream":"account-2"}"#), "{text}");
}
