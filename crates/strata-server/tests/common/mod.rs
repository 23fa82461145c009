//! A real server on a free port of 127.0.0.1, over a store in a temp dir, and a small SSE reader.
#![allow(dead_code)] // Each test file uses part of this.

use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use strata_server::ServeOptions;
use strata_server::testing::Served;
use strata_storage::Store;

pub use strata_server::testing::Target;

/// A server of a [`Target`] ([`strata_server::testing::Served`]) and a client to talk to it.
pub struct TestServer {
    pub url: String,
    pub client: reqwest::Client,
    /// The store the server answers from (on a cluster follower: its replica).
    pub store: Store,
    served: Served,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServeOptions::default()).await
    }

    pub async fn start_with(options: ServeOptions) -> Self {
        Self::start_on(Target::Embedded, options, strata_storage::Options::default()).await
    }

    /// A server of `target` with the default options.
    pub async fn on(target: Target) -> Self {
        Self::start_on(target, ServeOptions::default(), strata_storage::Options::default()).await
    }

    /// A server of `target` (on a cluster follower, both nodes have `options` and `store_options`).
    pub async fn start_on(target: Target, options: ServeOptions, store_options: strata_storage::Options) -> Self {
        let served = Served::start(target, options, store_options).await;
        Self { url: served.url(), client: reqwest::Client::new(), store: served.store.clone(), served }
    }

    /// `path` on the node that decides writes: this server when embedded, the leader on a cluster.
    pub fn deciding_url(&self, path: &str) -> String {
        format!("{}{path}", self.served.deciding_url())
    }

    pub fn target(&self) -> Target {
        self.served.target()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends a request with a raw body; returns the status and the body as JSON (`Null` if not JSON).
    pub async fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_vec());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("POST", path, Some(body.to_string().as_bytes())).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("PUT", path, Some(body.to_string().as_bytes())).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send("DELETE", path, None).await
    }

    /// Stops the server the way SIGTERM does, and waits until it has (on a cluster follower: both
    /// nodes' servers, then both nodes).
    pub async fn stop(self) {
        self.served.stop().await;
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads an SSE response event by event.
pub struct SseReader {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    pub comments: usize,
}

impl SseReader {
    pub async fn open(client: &reqwest::Client, url: &str, last_event_id: Option<u64>) -> Self {
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { stream: Box::pin(response.bytes_stream()), buffer: Vec::new(), comments: 0 }
    }

    /// The next event (comments are counted, not returned); `None` when the server ends the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let mut event = SseEvent { id: None, event: None, data: String::new() };
                let mut data_lines = Vec::new();
                let mut comment_only = true;
                for line in text.lines() {
                    if line.is_empty() || line.starts_with(':') {
                        continue;
                    }
                    comment_only = false;
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = Some(value.to_owned()),
                        "data" => data_lines.push(value.to_owned()),
                        _ => {}
                    }
                }
                if comment_only {
                    self.comments += 1;
                    continue;
                }
                event.data = data_lines.join("\n");
                return Some(event);
            }
            match tokio::time::timeout(Duration::from_secs(30), self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(error))) => panic!("the SSE response broke: {error:?}"),
                Ok(None) => return None,
                Err(_) => panic!("no SSE data for 30 s"),
            }
        }
    }
}
