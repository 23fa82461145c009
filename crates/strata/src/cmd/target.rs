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
    /// A running server, like http://127.0.0.1:2113, or a cluster's nodes separated by commas (a
    /// request moves on to the next node when one is down, has no leader or is stale); without it the
    /// command opens the data directory.
    #[arg(long, env = "STRATA_URL", global = true)]
    pub url: Option<String>,
    /// Trust https:// servers whose certificates chain to these PEM CA certificates (a private CA),
    /// besides the system's roots.
    #[arg(long, env = "STRATA_TLS_CA", value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// The data directory to open when no --url is given (no server may hold it).
    #[arg(long, default_value = "./strata-data", global = true)]
    pub data: PathBuf,
    /// Print JSON (one object per line) instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
}

pub type ByteStream = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes>> + Send>>;

pub enum Target {
    Remote(Remote),
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

/// One server, or the nodes of a cluster.
///
/// A request goes to the node that answered last. It moves on to the next one only when nothing was
/// written: the connection could not be made (nothing was sent), or the node answered `503
/// not_leader` (no leader to forward to; nothing written) or `503 stale` (its replica may be stale).
/// A read (GET) moves on after any error.
/// After an error once the request was sent the outcome is unknown, and the command says so rather
/// than send it again. When every node refused, it tries them all again, a second apart
/// (`ROUNDS`: a takeover takes the lease time and a catch-up).
pub struct Remote {
    urls: Vec<String>,
    client: reqwest::Client,
    current: std::sync::atomic::AtomicUsize,
}

/// Rounds over the nodes before a command gives up (a second apart).
const ROUNDS: usize = 10;

impl Remote {
    fn new(urls: &str, tls_ca: Option<&std::path::Path>) -> Result<Remote> {
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect();
        if urls.is_empty() {
            bail!("--url names no server");
        }
        if let Some(url) = urls.iter().find(|url| !url.starts_with("http://") && !url.starts_with("https://")) {
            bail!("--url {url:?} is not an http:// or https:// URL");
        }
        let mut client = reqwest::Client::builder();
        if let Some(path) = tls_ca {
            let pem = std::fs::read(path).with_context(|| format!("read --tls-ca {}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--tls-ca {} holds no PEM certificates", path.display()))?;
            if roots.is_empty() {
                bail!("--tls-ca {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
            }
            client = roots.into_iter().fold(client, reqwest::ClientBuilder::add_root_certificate);
        }
        let client = client.build().context("create the HTTP client")?;
        Ok(Remote { urls, client, current: std::sync::atomic::AtomicUsize::new(0) })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        last_event_id: Option<u64>,
    ) -> Result<(u16, ByteStream)> {
        use std::sync::atomic::Ordering::Relaxed;
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let body = body.map(Bytes::from);
        let mut refused = Vec::new();
        for round in 0..ROUNDS {
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            refused.clear();
            let first = self.current.load(Relaxed);
            for turn in 0..self.urls.len() {
                let at = (first + turn) % self.urls.len();
                let url = &self.urls[at];
                let mut request = self.client.request(method.clone(), format!("{url}{path}"));
                if let Some(body) = &body {
                    request = request.header("content-type", "application/json").body(body.clone());
                }
                if let Some(id) = last_event_id {
                    request = request.header("last-event-id", id.to_string());
                }
                let response = match request.send().await {
                    Ok(response) => response,
                    // Not connected: nothing was sent. A read may be sent again whatever happened.
                    Err(error) if error.is_connect() || method == reqwest::Method::GET => {
                        refused.push(format!(
                            "{url}: {}",
                            anyhow!(error).chain().last().map(ToString::to_string).unwrap_or_default()
                        ));
                        continue;
                    }
                    Err(error) => {
                        return Err(anyhow!(error).context(format!(
                            "send the request to {url} (the connection failed after it was sent: \
                             whether a write took effect is unknown)"
                        )));
                    }
                };
                let status = response.status().as_u16();
                if status == 503 {
                    let answer = response.bytes().await.with_context(|| format!("read the answer of {url}"))?;
                    let code = serde_json::from_slice::<strata_wire::ErrorBody>(&answer).map(|body| body.error.code);
                    if matches!(code.as_deref(), Ok("not_leader" | "stale")) {
                        refused.push(format!("{url}: {}", api_error(status, &answer)));
                        continue;
                    }
                    self.current.store(at, Relaxed);
                    return Ok((status, Box::pin(futures_util::stream::once(async move { Ok(answer) }))));
                }
                self.current.store(at, Relaxed);
                return Ok((status, Box::pin(response.bytes_stream().map(|chunk| chunk.map_err(anyhow::Error::from)))));
            }
            if self.urls.len() == 1 && refused.iter().all(|reason| !reason.contains("not_leader")) {
                // One server that is not there: say so at once (a cluster's takeover is worth waiting for).
                break;
            }
        }
        bail!("no server took the request (nothing was written): {}", refused.join("; "))
    }
}

impl Target {
    pub fn open(args: &TargetArgs) -> Result<Target> {
        if let Some(urls) = &args.url {
            return Ok(Target::Remote(Remote::new(urls, args.tls_ca.as_deref())?));
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
            Target::Remote(remote) => remote.send(method, path, body, last_event_id).await,
            Target::Local { router, .. } => {
                let mut request = axum::http::Request::builder().method(method).uri(path);
                if let Some(id) = last_event_id {
                    request = request.header("last-event-id", id.to_string());
                }
                if body.is_some() {
                    request = request.header("content-type", "application/json");
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
            Target::Remote(_) => None,
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
