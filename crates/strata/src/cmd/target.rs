//! Where a command sends its requests: a running server (`--url`), or the data directory opened in
//! this process and served by the same API code without a network (`tower::ServiceExt::oneshot` on
//! the router). Either way a command speaks the HTTP API, so both modes behave the same — and the
//! directory lock keeps a command from opening a directory a server holds.

use anyhow::{Context, Result, anyhow, bail};
use axum::body::Body;
use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::pin::Pin;
use strata_storage::{OpenError, Store};
use tower::ServiceExt;

#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// A running server, like http://127.0.0.1:2113; without it the command opens the data directory.
    #[arg(long, env = "STRATA_URL", global = true)]
    pub url: Option<String>,
    /// The data directory to open when no --url is given (no server may hold it).
    #[arg(long, default_value = "./strata-data", global = true)]
    pub data: PathBuf,
    /// Print JSON (one object per line) instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
}

pub type ByteStream = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes>> + Send>>;

pub enum Target {
    Remote { url: String, client: reqwest::Client },
    Local { router: axum::Router, store: Store, _shutdown: tokio::sync::watch::Sender<bool> },
}

/// An answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// The body as the API's answer `T` (a `strata_wire` type).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("the answer is not the API's JSON (status {})", self.status))
    }

    /// The body of a 2xx answer, or the API's error as an error.
    pub fn ok<T: DeserializeOwned>(self) -> Result<T> {
        if (200..300).contains(&self.status) {
            return self.json();
        }
        Err(api_error(self.status, &self.body))
    }
}

/// The API's `{"error": {"code", "message"}}` as a readable error.
pub fn api_error(status: u16, body: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<strata_wire::ErrorBody>(body) {
        Ok(body) => anyhow!("{} ({status} {})", body.error.message, body.error.code),
        Err(_) => anyhow!("the server answered {status}: {}", String::from_utf8_lossy(body)),
    }
}

/// Sends `body` as JSON.
pub fn json_body(body: &impl serde::Serialize) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(body).expect("request bodies render"))
}

impl Target {
    pub fn open(args: &TargetArgs) -> Result<Target> {
        if let Some(url) = &args.url {
            let url = url.trim_end_matches('/').to_owned();
            let client = reqwest::Client::builder().build().context("create the HTTP client")?;
            return Ok(Target::Remote { url, client });
        }
        let store = Store::open(&args.data).map_err(|error| match error {
            OpenError::Locked { .. } => {
                anyhow!("{error}; or talk to the process holding it: pass --url http://<its address>")
            }
            other => anyhow!(other).context(format!("open the store in {}", args.data.display())),
        })?;
        let (shutdown, watch) = tokio::sync::watch::channel(false);
        let state = strata_server::AppState::new(store.clone(), std::time::Duration::from_secs(15), watch);
        Ok(Target::Local { router: strata_server::router(state), store, _shutdown: shutdown })
    }

    /// Sends a request; `body` is JSON.
    pub async fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Answer> {
        let mut stream = self.send_streaming(method, path, body, None).await?;
        let status = stream.0;
        let mut collected = Vec::new();
        while let Some(chunk) = stream.1.next().await {
            collected.extend_from_slice(&chunk?);
        }
        Ok(Answer { status, body: collected.into() })
    }

    /// `GET path`, answered with `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send("GET", path, None).await?.ok()
    }

    /// Sends a request and returns the status and the body as a stream (for SSE).
    pub async fn send_streaming(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        last_event_id: Option<u64>,
    ) -> Result<(u16, ByteStream)> {
        match self {
            Target::Remote { url, client } => {
                let method = reqwest::Method::from_bytes(method.as_bytes())?;
                let mut request = client.request(method, format!("{url}{path}"));
                if let Some(body) = body {
                    request = request.header("content-type", "application/json").body(body);
                }
                if let Some(id) = last_event_id {
                    request = request.header("last-event-id", id.to_string());
                }
                let response = request.send().await.with_context(|| format!("send the request to {url}"))?;
                let status = response.status().as_u16();
                Ok((status, Box::pin(response.bytes_stream().map(|chunk| chunk.map_err(anyhow::Error::from)))))
            }
            Target::Local { router, .. } => {
                let mut request = axum::http::Request::builder().method(method).uri(path);
                if let Some(id) = last_event_id {
                    request = request.header("last-event-id", id.to_string());
                }
                let request = request.body(body.map_or_else(Body::empty, Body::from))?;
                let response = router.clone().oneshot(request).await.map_err(|never| match never {})?;
                let status = response.status().as_u16();
                let stream = response.into_body().into_data_stream().map(|chunk| chunk.map_err(anyhow::Error::from));
                Ok((status, Box::pin(stream)))
            }
        }
    }

    /// The store, when the command opened the directory itself.
    pub fn local_store(&self) -> Option<&Store> {
        match self {
            Target::Local { store, .. } => Some(store),
            Target::Remote { .. } => None,
        }
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Fails with the message of an unexpected status.
pub fn expect_status(status: u16, body: &[u8], expected: u16) -> Result<()> {
    if status != expected {
        bail!(api_error(status, body));
    }
    Ok(())
}
