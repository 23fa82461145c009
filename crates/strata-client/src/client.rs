//! [`Client`]: the HTTP plumbing (URLs, requests, the mapping of answers to outcomes and errors)
//! and its [`EventStore`] implementation.

use crate::subscription::Subscription;
use crate::wire;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Deserialize;
use std::time::Duration;
use strata_core::{ExpectedRevision, NewEvent, Position, StreamId, StreamMetadata, StreamRevision, Timestamp};
use strata_store::{
    AppendOutcome, AppendResult, Filter, MultiAppend, MultiAppendOutcome, ReadFrom, ReadOptions, ReadPage,
};
use strata_store::{EventStore, StoreError};
use strata_wire::{AppendResponse, ErrorBody, ErrorDetail, MultiAppendResponse};

/// A connection attempt that takes longer than this fails (the server is unreachable).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A request (other than a subscription's) that gets no full answer within this time fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What a stream id in a path keeps unencoded: RFC 3986's unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Why [`Client::new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("{url:?} is not a server URL like http://127.0.0.1:2113: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("the HTTP client could not be set up: {0}")]
    Http(String),
}

/// A Strata server — or the nodes of a cluster — reached over its HTTP API. Cloning is cheap: clones
/// share one connection pool and the node in use.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For subscriptions: a connection of its own each, never reused. The server serves a connection
    /// that opens with a subscription at low priority, and closes it when the subscription ends;
    /// requests on pooled connections stay at normal priority.
    live: reqwest::Client,
    /// The servers' URLs, each without a trailing `/` in its path (`/v1/…` is appended to the path).
    bases: std::sync::Arc<[Url]>,
    /// The one requests go to first: the last that answered.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Which failures a request may be sent again (to the next node) after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Only when it was certainly not taken: no connection, or `503 not_leader` / `stale`.
    NotSent,
    /// Also when its outcome is unknown (an append whose every event has its id: a retry is a
    /// replay, exactly once; a read).
    Idempotent,
}

/// How many times a request goes round the nodes before its last failure is the answer: with
/// [`ROUND_PAUSE`], long enough for a cluster to replace a leader that died (a lease time, 5 s by
/// default, and a catch-up).
const ROUNDS: usize = 12;
/// The pause between two rounds.
const ROUND_PAUSE: Duration = Duration::from_secs(1);

/// Why a request got no successful answer.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The server answered with an API error.
    Answer { status: u16, error: Box<ErrorDetail> },
    /// No answer, or one that is not the API's.
    Transport(String),
    /// No connection could be made: the request was not sent.
    NotSent(String),
}

impl Failed {
    /// Whether the next node may be asked, for a request that may be retried as `retry` says.
    fn next_node(&self, retry: Retry) -> bool {
        match self {
            Failed::NotSent(_) => true,
            Failed::Answer { status: 503, error } => {
                matches!(error.code.as_str(), "not_leader" | "stale")
                    || (retry == Retry::Idempotent && error.outcome_unknown == Some(true))
            }
            Failed::Transport(_) => retry == Retry::Idempotent,
            Failed::Answer { .. } => false,
        }
    }
}

impl From<Failed> for StoreError {
    fn from(failed: Failed) -> Self {
        match failed {
            Failed::Answer { status, error } => {
                let error = *error;
                StoreError::Remote { status, code: error.code, message: error.message }
            }
            Failed::Transport(reason) | Failed::NotSent(reason) => StoreError::Transport(reason),
        }
    }
}

/// A request the HTTP API cannot express, refused by the client with the error the server gives
/// for invalid requests.
pub(crate) fn refused(message: String) -> StoreError {
    StoreError::Remote { status: 400, code: "invalid_request".to_owned(), message }
}

/// An answer the client does not understand.
pub(crate) fn undecodable(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Transport(format!("the server's answer to {what} could not be decoded: {reason}"))
}

/// A reqwest error with its causes ("error sending request …: client error (Connect): tcp connect
/// error: Connection refused").
fn transport(error: reqwest::Error) -> Failed {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    if error.is_connect() { Failed::NotSent(message) } else { Failed::Transport(message) }
}

impl Client {
    /// A client of the server at `base_url` (`http://127.0.0.1:2113`, or a path under which a proxy
    /// serves the API). Nothing is sent until the first request.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Self::with_urls(&[base_url])
    }

    /// A client of a cluster: requests go to the node that last answered, and move on to the next
    /// when one is down, not leading without a leader to forward to, or stale. Appends give every
    /// event an id before the first try, so an append retried after an unknown outcome is exactly
    /// once.
    pub fn with_urls(base_urls: &[&str]) -> Result<Client, ClientError> {
        Self::with_urls_trusting(base_urls, None)
    }

    /// [`Client::with_urls`] for `https://` servers whose certificates chain to the CA certificates in
    /// `ca_pem` (PEM) — a private CA — as well as to the system's roots.
    pub fn with_urls_trusting(base_urls: &[&str], ca_pem: Option<&[u8]>) -> Result<Client, ClientError> {
        if base_urls.is_empty() {
            return Err(ClientError::InvalidUrl { url: String::new(), reason: "give at least one URL".to_owned() });
        }
        let bases = base_urls.iter().map(|url| parse_base(url)).collect::<Result<Vec<_>, _>>()?;
        let roots = match ca_pem {
            None => Vec::new(),
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|roots| !roots.is_empty())
                .ok_or_else(|| ClientError::Http("the CA certificates hold no PEM certificate".to_owned()))?,
        };
        let builder = || {
            let builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
            roots.iter().cloned().fold(builder, reqwest::ClientBuilder::add_root_certificate)
        };
        let http = builder().build().map_err(|error| ClientError::Http(error.to_string()))?;
        let live = builder().pool_max_idle_per_host(0).build().map_err(|error| ClientError::Http(error.to_string()))?;
        Ok(Client { http, live, bases: bases.into(), current: Default::default() })
    }

    /// The URL of the server requests go to now (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        self.base().as_str().trim_end_matches('/')
    }

    fn base(&self) -> &Url {
        &self.bases[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()]
    }

    /// The URL of `path` (which starts with `/v1/` and is percent-encoded) with `params`.
    pub(crate) fn url(&self, path: &str, params: &[(&str, String)]) -> Url {
        url_at(self.base(), path, params)
    }

    /// Sends the request `build` makes for a node's base URL, moving on to the next node as `retry`
    /// allows, up to [`ROUNDS`] times round them; returns the whole answer.
    async fn request(&self, retry: Retry, build: impl Fn(&Url) -> RequestBuilder) -> Result<Bytes, Failed> {
        let nodes = self.bases.len();
        let first = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let mut last = None;
        for attempt in 0..nodes * ROUNDS {
            if attempt > 0 && attempt % nodes == 0 {
                tokio::time::sleep(ROUND_PAUSE).await;
            }
            let at = (first + attempt) % nodes;
            let answer = match self.send(build(&self.bases[at]).timeout(REQUEST_TIMEOUT)).await {
                Ok(response) => response.bytes().await.map_err(transport),
                Err(failed) => Err(failed),
            };
            match answer {
                Ok(body) => {
                    self.current.store(at, std::sync::atomic::Ordering::Relaxed);
                    return Ok(body);
                }
                Err(failed) if nodes > 1 && failed.next_node(retry) => last = Some(failed),
                Err(failed) => return Err(failed),
            }
        }
        Err(last.expect("at least one attempt"))
    }
}

/// A server URL checked and without a trailing `/` in its path.
fn parse_base(base_url: &str) -> Result<Url, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl { url: base_url.to_owned(), reason: reason.to_owned() };
    let mut base = Url::parse(base_url).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if base.host().is_none() || base.query().is_some() || base.fragment().is_some() {
        return Err(invalid("give a host (and optionally a path), without a query or fragment"));
    }
    let path = base.path().trim_end_matches('/').to_owned();
    base.set_path(&path);
    Ok(base)
}

/// The URL of `path` under `base`, with `params`.
fn url_at(base: &Url, path: &str, params: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    url
}

impl Client {
    /// A subscription request, on a connection of its own.
    pub(crate) fn subscribe(&self, url: Url) -> RequestBuilder {
        self.live.get(url).header("accept", "text/event-stream")
    }

    /// Sends `request`; a success answer is returned as it is, anything else becomes a [`Failed`].
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Response, Failed> {
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.map_err(transport)?;
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(body) => Err(Failed::Answer { status: status.as_u16(), error: Box::new(body.error) }),
            Err(_) => {
                let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                Err(Failed::Transport(format!(
                    "the server answered {status} with a body that is not an API error: {start:?}"
                )))
            }
        }
    }

    /// GETs `path` with `params` (from the next node when one cannot answer).
    async fn read(&self, path: &str, params: &[(&str, String)]) -> Result<Bytes, Failed> {
        self.request(Retry::Idempotent, |base| self.http.get(url_at(base, path, params))).await
    }

    /// Sends `body` as JSON to `path`.
    async fn send_json(
        &self,
        retry: Retry,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Bytes, Failed> {
        let body = serde_json::to_vec(body).expect("request bodies serialize");
        self.request(retry, |base| {
            self.http
                .request(method.clone(), url_at(base, path, &[]))
                .header("content-type", "application/json")
                .body(body.clone())
        })
        .await
    }

    /// `/v1/streams/{stream}` (and `suffix`), the stream id percent-encoded.
    fn stream_path(stream: &StreamId, suffix: &str) -> Result<String, StoreError> {
        // URLs drop `.` and `..` segments (encoded or not) before they are sent.
        if matches!(stream.as_str(), "." | "..") {
            return Err(refused(format!("stream id {stream:?} cannot be addressed in a URL path")));
        }
        Ok(format!("/v1/streams/{}{suffix}", utf8_percent_encode(stream.as_str(), PATH_SEGMENT)))
    }
}

/// Gives `event` an id (UUIDv7) if it has none, before the first try: a retry of the append is then
/// a replay, never a second append.
fn with_id(event: &mut NewEvent) {
    event.id_or_insert_with(|| strata_core::EventId::from_uuid(uuid::Uuid::now_v7()));
}

/// Decodes a success answer.
fn decode<'a, T: Deserialize<'a>>(what: &str, body: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|error| undecodable(what, error))
}

/// A failed append's outcome: a conflict the server reports is a value, not an error.
fn conflict(failed: Failed) -> Result<MultiAppendOutcome, StoreError> {
    if let Failed::Answer { status: 409, error } = &failed {
        match error.code.as_str() {
            "wrong_expected_revision" => {
                let (stream, expected, actual) =
                    wire::conflict(error).ok_or_else(|| undecodable("an append", "a conflict without its details"))?;
                return Ok(MultiAppendOutcome::WrongExpectedRevision { stream, expected, actual });
            }
            "append_condition_failed" => {
                let position =
                    error.position.ok_or_else(|| undecodable("an append", "a condition without position"))?;
                return Ok(MultiAppendOutcome::ConditionFailed { position: Position::new(position) });
            }
            _ => {}
        }
    }
    Err(failed.into())
}

impl EventStore for Client {
    type Subscription = Subscription;

    async fn append_multi(&self, mut append: MultiAppend) -> Result<MultiAppendOutcome, StoreError> {
        for (_, event) in &mut append.events {
            with_id(event);
        }
        let body = wire::multi_append_request(&append)?;
        match self.send_json(Retry::Idempotent, Method::POST, "/v1/append", &body).await {
            Ok(answer) => {
                let answer: MultiAppendResponse = decode("an append", &answer)?;
                let result = wire::multi_append_result(answer).map_err(|e| undecodable("an append", e))?;
                Ok(MultiAppendOutcome::Committed(result))
            }
            Err(failed) => conflict(failed),
        }
    }

    async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedRevision,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        events.iter_mut().for_each(with_id);
        let body = wire::append_request(expected, &events)?;
        match self.send_json(Retry::Idempotent, Method::POST, &Self::stream_path(&stream, "")?, &body).await {
            Ok(answer) => {
                let answer: AppendResponse = decode("an append", &answer)?;
                let recorded_at = answer.recorded_at.as_deref().map(wire::timestamp).transpose();
                Ok(AppendOutcome::Committed(AppendResult {
                    first_revision: StreamRevision::new(answer.first_revision),
                    last_revision: StreamRevision::new(answer.last_revision),
                    first_position: Position::new(answer.first_position),
                    last_position: Position::new(answer.last_position),
                    recorded_at: recorded_at.map_err(|error| undecodable("an append", error))?,
                    replayed: answer.replayed,
                }))
            }
            Err(failed) => match conflict(failed)? {
                MultiAppendOutcome::WrongExpectedRevision { stream, expected, actual } => {
                    Ok(AppendOutcome::WrongExpectedRevision { stream, expected, actual })
                }
                other => {
                    Err(undecodable("an append", format!("an outcome a single-stream append cannot have: {other:?}")))
                }
            },
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: ReadFrom<StreamRevision>,
        options: ReadOptions,
    ) -> Result<ReadPage, StoreError> {
        let from = match from {
            ReadFrom::Start => ReadFrom::Start,
            ReadFrom::End => ReadFrom::End,
            ReadFrom::At(revision) => ReadFrom::At(revision.value()),
        };
        match self.read(&Self::stream_path(stream, "")?, &wire::page_params(from, &options)).await {
            Ok(body) => {
                let answer = decode("a read", &body)?;
                wire::page(answer, &options, |event| event.revision.value()).map_err(|e| undecodable("a read", e))
            }
            // The toolkit's contract: a stream that does not exist reads as one without events.
            Err(Failed::Answer { status: 404, error }) if error.code == "stream_not_found" => {
                Ok(ReadPage { events: Vec::new(), more: false })
            }
            Err(failed) => Err(failed.into()),
        }
    }

    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        options: ReadOptions,
        filter: &Filter,
    ) -> Result<ReadPage, StoreError> {
        let Some(mut params) = wire::filter_params(filter) else {
            // Nothing matches; the engine still says `more` for a limit of 0, as for any read.
            return Ok(ReadPage { events: Vec::new(), more: options.limit == 0 });
        };
        let from = match from {
            ReadFrom::Start => ReadFrom::Start,
            ReadFrom::End => ReadFrom::End,
            ReadFrom::At(position) => ReadFrom::At(position.value()),
        };
        params.extend(wire::page_params(from, &options));
        let body = self.read("/v1/all", &params).await?;
        let answer = decode("a read", &body)?;
        wire::page(answer, &options, |event| event.position.value()).map_err(|e| undecodable("a read", e))
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        let body = self.read("/v1/info", &[]).await?;
        Ok(decode::<strata_wire::Info>("GET /v1/info", &body)?.head_position.map(Position::new))
    }

    async fn position_at(&self, time: Timestamp) -> Result<Option<Position>, StoreError> {
        // The API has no "position at" endpoint: the last event of the log as of `time` is it.
        let options = ReadOptions::backward(1).until_time(time);
        let page = self.read_all(ReadFrom::End, options, &Filter::default()).await?;
        Ok(page.events.first().map(|event| event.position))
    }

    async fn set_stream_metadata(&self, stream: StreamId, metadata: StreamMetadata) -> Result<(), StoreError> {
        let body = wire::metadata_request(&metadata)?;
        self.send_json(Retry::NotSent, Method::PUT, &Self::stream_path(&stream, "/metadata")?, &body).await?;
        Ok(())
    }

    fn subscribe_all(&self, from: ReadFrom<Position>, filter: Filter) -> Subscription {
        Subscription::new(self.clone(), from, &filter)
    }
}
