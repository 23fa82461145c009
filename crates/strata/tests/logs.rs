//! The log of `strata serve`, through the binary: with `RUST_LOG=debug --log-format json` every line
//! of stderr is a JSON object, each request has its line (method, path, status), and neither the
//! event data, metadata and tags sent nor an `Authorization` header's credential appear anywhere in
//! it. `--log-format text` writes readable lines; a bad `--log-format` or `RUST_LOG` is refused.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// In the data, metadata and tags of the events sent (and in a query string and a bad body).
const DATA_MARKER: &str = "marker-data-5f0c2e97";
/// In the `Authorization` header of every request.
const CREDENTIAL_MARKER: &str = "marker-credential-b81d4a36";

/// `strata serve` on a free port with `args` and `RUST_LOG` set, and its stderr as lines on a channel.
#[allow(clippy::zombie_processes)] // Each test stops the server and waits for it.
fn serve(data: &Path, rust_log: &str, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strata serve");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines, received) = mpsc::channel();
    // Reads until the server exits, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let _ = lines.send(line.unwrap());
        }
    });
    (child, received)
}

/// The lines logged until one contains "serving on http://", and the URL in it.
fn wait_for_listening(lines: &mpsc::Receiver<String>) -> (Vec<String>, String) {
    let mut seen = Vec::new();
    loop {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("strata serve logged no listening line");
        if let Some(rest) = line.split("serving on http://").nth(1) {
            let address: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
            seen.push(line);
            return (seen, format!("http://{address}"));
        }
        seen.push(line);
    }
}

/// SIGTERM, then every line logged until the exit.
fn stop(mut server: Child, lines: mpsc::Receiver<String>) -> Vec<String> {
    // SAFETY: kill(2) on the child this test started and has not waited for.
    assert_eq!(unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = server.wait().unwrap();
    assert!(status.success(), "strata serve exited with {status} on SIGTERM");
    lines.iter().collect()
}

fn without_stream(mut event: Value) -> Value {
    event.as_object_mut().unwrap().remove("stream");
    event
}

/// Requests that carry the markers: appends (one stream, several), a read filtered by a tag, a
/// metadata update, a body the server refuses; each with the credential in `Authorization`.
async fn send_marked_requests(url: &str) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let bearer = format!("Bearer {CREDENTIAL_MARKER}");
    let event = |stream: &str| {
        json!({
            "stream": stream,
            "type": "Marked",
            "data": { "note": DATA_MARKER },
            "metadata": { "by": DATA_MARKER },
            "tags": [format!("note:{DATA_MARKER}")],
        })
    };
    let requests = [
        client
            .post(format!("{url}/v1/streams/marked-1"))
            .json(&json!({ "events": [without_stream(event("marked-1"))] })),
        client.post(format!("{url}/v1/append")).json(&json!({ "events": [event("marked-2"), event("marked-3")] })),
        client.get(format!("{url}/v1/all?tags=note:{DATA_MARKER}")),
        client.get(format!("{url}/v1/streams/marked-1")),
        client.put(format!("{url}/v1/streams/marked-1/metadata")).json(&json!({ "custom": { "by": DATA_MARKER } })),
        client
            .post(format!("{url}/v1/streams/marked-1"))
            .header("content-type", "application/json")
            .body(format!("{{\"events\": \"{DATA_MARKER}\"}}")),
    ];
    let mut statuses = Vec::new();
    for request in requests {
        let response = request.header("Authorization", &bearer).send().await.unwrap();
        statuses.push(response.status().as_u16());
        let _ = response.bytes().await.unwrap();
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 400], "the requests' answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_has_a_line_per_request_and_no_event_data_or_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (server, lines) = serve(&dir.path().join("data"), "debug", &["--log-format", "json"]);
    let (mut log, url) = wait_for_listening(&lines);
    send_marked_requests(&url).await;
    log.extend(stop(server, lines));

    let log_text = log.join("\n");
    for marker in [DATA_MARKER, CREDENTIAL_MARKER] {
        assert!(!log_text.contains(marker), "the log holds {marker}:\n{log_text}");
    }
    assert!(!log_text.to_lowercase().contains("bearer"), "the log holds an Authorization header:\n{log_text}");
    let entries: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect();
    for entry in &entries {
        assert!(
            entry["timestamp"].is_string() && entry["level"].is_string() && entry["message"].is_string(),
            "{entry}"
        );
    }
    let requests: Vec<&Value> =
        entries.iter().filter(|entry| entry["target"] == "strata_server::request_log").collect();
    let request = |method: &str, path: &str, status: u16| {
        requests.iter().any(|entry| {
            entry["level"] == "DEBUG"
                && entry["method"] == method
                && entry["path"] == path
                && entry["status"] == status
                && entry["latency_us"].is_u64()
        })
    };
    assert!(request("POST", "/v1/streams/marked-1", 200), "no line for the append: {requests:?}");
    assert!(request("POST", "/v1/append", 200), "no line for the multi-stream append: {requests:?}");
    assert!(request("GET", "/v1/all", 200), "no line for the read, or its query string was logged: {requests:?}");
    assert!(request("PUT", "/v1/streams/marked-1/metadata", 200), "no line for the metadata: {requests:?}");
    assert!(request("POST", "/v1/streams/marked-1", 400), "no line for the refused append: {requests:?}");
    assert_eq!(requests.len(), 6, "one line per request: {requests:?}");
    // Start, recovery and stop at info.
    let info = |message: &str| entries.iter().any(|entry| entry["level"] == "INFO" && entry["message"] == message);
    assert!(info("store opened") && info("store closed"), "{log_text}");
    assert!(entries.iter().any(|entry| entry["message"].as_str().unwrap().starts_with("serving on http://")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_log_is_readable_lines_and_debug_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    // An empty RUST_LOG is the default filter: info.
    let (server, lines) = serve(&dir.path().join("data"), "", &["--log-format", "text"]);
    let (mut log, url) = wait_for_listening(&lines);
    let health = reqwest::get(format!("{url}/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    log.extend(stop(server, lines));
    for line in &log {
        assert!(!line.starts_with('{'), "a JSON line in the text log: {line}");
    }
    assert!(log.iter().any(|line| line.contains(" INFO ") && line.contains("store opened")), "{log:?}");
    assert!(!log.iter().any(|line| line.contains("request_log")), "requests are logged at debug only: {log:?}");
}

#[test]
fn a_bad_log_format_or_filter_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "xml", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'xml' for '--log-format") && stderr.contains("text, json"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "=[")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RUST_LOG is not a valid filter"), "{stderr}");
    assert!(!data.exists(), "a refused command line opened the store");
}
