//! Strata's HTTP API (DESIGN.md §5): `strata serve` over an embedded [`Store`].
//!
//! Codemap — one file per operation at the edge, each parsing its request, calling the engine and
//! rendering its answer:
//! - `append`: `POST /v1/streams/{stream}`, `POST /v1/append` (multi-stream, checks, DCB condition).
//! - `read`: `GET /v1/streams/{stream}`, `GET /v1/all` (filters, as-of).
//! - `subscribe`: `GET /v1/subscribe` (Server-Sent Events over the engine's subscriptions).
//! - `streams`: listing, stream info, soft and hard delete, metadata.
//! - `import`: `POST /v1/import` (exported events, keeping ids and recorded times).
//! - `system`: health, info, OpenAPI, unknown routes; `metrics`: `GET /metrics`.
//! - `render`: recorded events as JSON, by hand (the hot path of reads and SSE), exactly the
//!   `strata_wire::RecordedEvent` shape; `convert`: the wire's shapes into the engine's types.
//! - `extract`: bodies (capped, time-limited, parsed into `strata_wire` types), strict query
//!   strings, stream ids from paths; `error`: the one place failures become status codes.
//! - `openapi`: the OpenAPI document, generated from the handlers' annotations and the
//!   `strata_wire` types, completed with what every route shares (error bodies, path parameters).
//!
//! The JSON shapes themselves are `strata_wire`'s, shared with the client and the CLI.
//! - `request_log`: a line per request at debug (method, path, status, latency, bytes).
//! - `browser`: browser safety, before routing — `Host` (DNS rebinding), `Origin` and form content
//!   types on requests that change state (CSRF), CORS for `--cors-origin` only.
//! - `cluster`: which node answers what on a cluster node (`cluster::NodeView`, feature `cluster`,
//!   over a `strata_cluster::Node`); `testing` (feature `testing`): servers for tests, embedded or
//!   a cluster's follower, and `on_every_target!`, which runs a test on both.
//!
//! Logs go through `tracing` (the binary installs the subscriber): requests at debug; shutdown at
//! info; connection and accept failures at warn (a client that went away at debug).
//!
//! # Invariants
//! - Only this crate knows HTTP; the engine knows nothing of it.
//! - Every request body is capped ([`extract::REQUEST_BODY_BYTES_MAX`]) before it is parsed, and
//!   every failure is answered as `{"error": {"code", "message", …}}`; a panic in a handler is
//!   answered with 500 `internal` and does not take the server down.
//! - Logs never hold event data, metadata, query strings, headers or credentials.

mod append;
pub mod browser;
pub mod cluster;
mod convert;
pub mod delivery;
mod error;
pub mod extract;
#[doc(hidden)]
pub mod fuzz;
mod groups;
mod import;
mod metrics;
mod openapi;
mod read;
pub mod render;
mod request_log;
mod scavenge;
mod state;
mod streams;
mod subscribe;
mod system;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use convert::parse_exported_event;
pub use error::ApiError;
pub use openapi::{openapi, openapi_json};
pub use state::AppState;

use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::time::Duration;
use strata_storage::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The address `strata serve` listens on by default.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:2113";
/// A client must send a request's headers within this time, or the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Interval of SSE heartbeats.
    pub heartbeat: Duration,
    /// On shutdown, how long in-flight requests get to finish before connections are dropped.
    pub shutdown_grace: Duration,
    /// The hosts (`--allowed-hosts`) and origins (`--cors-origin`) browsers may use beyond loopback
    /// names, IP addresses and the server's own origin ([`browser`]).
    pub browser: browser::BrowserPolicy,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) instead of plain HTTP/1.1 ([`tls`]).
    pub tls: Option<std::sync::Arc<tls::Tls>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            browser: browser::BrowserPolicy::default(),
            tls: None,
        }
    }
}

/// Every route of the API with its handlers (the OpenAPI document must describe each: a test walks
/// both).
fn routes() -> Vec<(&'static str, axum::routing::MethodRouter<AppState>)> {
    vec![
        ("/v1/streams", get(streams::list)),
        ("/v1/streams/{stream}", post(append::append).get(read::read_stream).delete(streams::delete)),
        ("/v1/streams/{stream}/info", get(streams::info)),
        ("/v1/streams/{stream}/metadata", get(streams::get_metadata).put(streams::put_metadata)),
        ("/v1/append", post(append::append_multi)),
        ("/v1/import", post(import::import)),
        ("/v1/scavenge", post(scavenge::scavenge)),
        ("/v1/verify", post(scavenge::verify)),
        ("/v1/groups", get(groups::list)),
        ("/v1/groups/{name}", axum::routing::put(groups::put).get(groups::get_group).delete(groups::delete)),
        ("/v1/groups/{name}/fetch", post(groups::fetch)),
        ("/v1/groups/{name}/ack", post(groups::ack)),
        ("/v1/groups/{name}/nack", post(groups::nack)),
        ("/v1/groups/{name}/parked", get(groups::parked)),
        ("/v1/groups/{name}/replay-parked", post(groups::replay_parked)),
        ("/v1/groups/{name}/state", get(groups::get_state).put(groups::put_state)),
        ("/v1/all", get(read::read_all)),
        ("/v1/subscribe", get(subscribe::subscribe)),
        ("/v1/health", get(system::health)),
        ("/v1/info", get(system::info)),
        ("/v1/openapi.json", get(system::openapi)),
        ("/metrics", get(metrics::metrics)),
    ]
}

/// The API's routes over `state`.
pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
        .fallback(system::unknown_route)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_panic| {
            use axum::response::IntoResponse;
            // The panic's message went to stderr through the panic hook; it may quote anything the
            // handler held, so it stays out of the log.
            tracing::error!("a request handler panicked; answered 500");
            ApiError::internal("the server failed to answer this request (a bug; it is logged)").into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cluster::route))
        .layer(axum::middleware::from_fn_with_state(state.clone(), browser::guard))
        .layer(axum::middleware::from_fn(request_log::log_request))
        .with_state(state)
}

/// A router that answers `POST /v1/streams/{stream}` like the API but stores nothing: the ceiling
/// `strata bench server` compares the server with (the same stack, HTTP and JSON only).
pub fn ceiling_router() -> Router {
    Router::new()
        .route("/v1/streams/{stream}", post(append::append_without_storage))
        .fallback(system::unknown_route)
        .layer(axum::middleware::from_fn(request_log::log_request))
}

/// Serves the API on `listener` until `shutdown` resolves; then stops accepting, ends subscriptions,
/// lets in-flight requests finish (up to `options.shutdown_grace`), drops the connections left and
/// returns once every task that served them, every subscription's reader and the groups' last
/// checkpoint save have ended. The store closes when its last clone is dropped: work the server
/// handed to blocking threads (a scavenge, an import, a read in progress) may still hold one after
/// `serve` returns, and in-flight commits finish first.
pub async fn serve(
    store: Store,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_node(store, None, listener, options, shutdown).await
}

/// [`serve`] on a cluster node: writes go to the leader, reads are the local replica's
/// ([`cluster`]).
pub async fn serve_node(
    store: Store,
    cluster: Option<std::sync::Arc<dyn cluster::ClusterView>>,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (shutting_down, shutdown_watch) = watch::channel(false);
    let mut state = AppState::new(store, options.heartbeat, shutdown_watch);
    state.browser = std::sync::Arc::new(options.browser.clone().serving_tls(options.tls.is_some()));
    if let Some(cluster) = &cluster {
        state.group_states = Some(cluster.group_states());
        cluster::reload_groups_when_leadership_changes(&state, cluster.watch_leading());
    }
    state.cluster = cluster;
    let tasks = state.tasks.clone();
    let app = router(state);
    serve_router(app, listener, options, shutdown, Some(shutting_down)).await?;
    // Every connection is gone, so every subscription's reader sees its receiver closed and ends; the
    // groups' saver saves once more and ends.
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// What hyper buffers of a subscription's response before it stops taking chunks (a chunk larger
/// than this is still taken whole). Also the most a subscription request's head may take.
pub const SUBSCRIPTION_WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The kernel send buffer asked for a subscription's socket (Linux doubles it for its bookkeeping).
/// Without a limit the kernel grows it for a subscriber that does not keep up — up to megabytes per
/// connection, megabytes of memory stirred for every thousand subscribers — while the subscription
/// itself holds about one batch; with it, a subscriber behind reads older events from the log.
pub const SUBSCRIPTION_SEND_BUFFER_BYTES: usize = 128 * 1024;

/// Caps the kernel's send buffer of `stream` at [`SUBSCRIPTION_SEND_BUFFER_BYTES`] (best effort: if
/// refused, the kernel's own sizing stays).
fn limit_send_buffer(stream: &std::net::TcpStream) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd as _;
        let bytes = SUBSCRIPTION_SEND_BUFFER_BYTES as libc::c_int;
        // SAFETY: setsockopt on a socket we own, reading a c_int that lives for the call.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const bytes).cast::<libc::c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Whether the first request on a new connection is a subscription (`GET /v1/subscribe`), judged
/// from its first bytes without consuming them; `None` if nothing arrived within the header timeout
/// (or the peek failed): such a connection is closed, as hyper would close it.
async fn opens_a_subscription(stream: &tokio::net::TcpStream) -> Option<bool> {
    const SUBSCRIBE: &[u8] = b"GET /v1/subscribe";
    let mut start = [0u8; SUBSCRIBE.len()];
    match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut start)).await {
        Ok(Ok(read)) => Some(read == SUBSCRIBE.len() && start == *SUBSCRIBE),
        _ => None,
    }
}

/// Serves any router with the accept loop, timeouts and graceful shutdown of [`serve`];
/// `shutting_down` (if any) is set when shutdown begins, to end long-lived responses.
pub async fn serve_router(
    app: Router,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
    shutting_down: Option<watch::Sender<bool>>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    // A subscription's connection closes when its subscription ends: a later request of the client
    // opens a new connection, served at normal priority, instead of queueing behind subscribers.
    // Its write buffer is capped too: hyper takes body chunks until it holds 16 or `max_buf_size`
    // bytes, and a subscriber that does not read should hold little beyond the batch it is sent.
    let mut http_subscription = http.clone();
    http_subscription.keep_alive(false).max_buf_size(SUBSCRIPTION_WRITE_BUFFER_BYTES);
    // Every connection's task, on either runtime, is tracked, and dropped when the grace period ends.
    let (connections, drop_connections) = (TaskTracker::new(), CancellationToken::new());
    tokio::pin!(shutdown);
    let (stop_dispatching, stopping) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accepting a connection failed; trying again in 50 ms");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                if let Some(tls) = &options.tls {
                    let (acceptor, http, watcher) = (tls.acceptor(), http.clone(), graceful.watcher());
                    let tracked = connections.clone();
                    let (mut stopping, dropped) = (stopping.clone(), drop_connections.clone());
                    connections.spawn(async move {
                        // Until the handshake is done it is not yet a connection graceful shutdown waits for.
                        let stream = tokio::select! {
                            stream = tls_handshake(acceptor, stream) => stream,
                            _ = stopping.wait_for(|&stopping| stopping) => return,
                        };
                        let Some(stream) = stream else { return };
                        // Over TLS every connection is served here, subscriptions too (the delivery
                        // pool takes plain connections only: it must see a request's first bytes).
                        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            // Its streams' tasks are tracked like connections (`serve` returns after them).
                            let mut http2 = hyper::server::conn::http2::Builder::new(TrackedExecutor(tracked));
                            // A peer that stops answering pings is dropped.
                            http2
                                .timer(TokioTimer::new())
                                .keep_alive_interval(HTTP2_KEEP_ALIVE_INTERVAL)
                                .keep_alive_timeout(HEADER_READ_TIMEOUT);
                            let connection = http2.serve_connection(TokioIo::new(stream), service);
                            log_connection_end(dropped.run_until_cancelled(watcher.watch(connection)).await);
                        } else {
                            let connection = http.serve_connection(TokioIo::new(stream), service);
                            log_connection_end(dropped.run_until_cancelled(watcher.watch(connection)).await);
                        }
                    });
                    continue;
                }
                let (http, http_subscription) = (http.clone(), http_subscription.clone());
                let (watcher, mut stopping) = (graceful.watcher(), stopping.clone());
                let (connections_inner, dropped) = (connections.clone(), drop_connections.clone());
                connections.spawn(async move {
                    // A connection that opens with a subscription is served whole — reads, rendering,
                    // socket writes — on the low-priority delivery pool, so that subscribers never
                    // take CPU from the appends (see `delivery`). Until its first bytes arrive it is
                    // not yet a connection graceful shutdown waits for: shutting down drops it.
                    let subscription = tokio::select! {
                        subscription = opens_a_subscription(&stream) => subscription,
                        _ = stopping.wait_for(|&stopping| stopping) => return,
                    };
                    let Some(subscription) = subscription else { return };
                    if subscription {
                        // Moved to the pool's own IO driver: deregistered here, registered there.
                        let Ok(stream) = stream.into_std() else { return };
                        limit_send_buffer(&stream);
                        connections_inner.spawn_on(
                            async move {
                                let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { return };
                                let connection = http_subscription.serve_connection(TokioIo::new(stream), service);
                                log_connection_end(dropped.run_until_cancelled(watcher.watch(connection)).await);
                            },
                            delivery::handle(),
                        );
                    } else {
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        log_connection_end(dropped.run_until_cancelled(watcher.watch(connection)).await);
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: no longer accepting connections; answering the requests in flight");
    drop(listener);
    let _ = stop_dispatching.send(true);
    if let Some(shutting_down) = shutting_down {
        let _ = shutting_down.send(true);
    }
    drop(app);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.shutdown_grace) => {
            let grace_ms = options.shutdown_grace.as_millis() as u64;
            tracing::warn!(grace_ms, "some requests did not finish within the grace period; dropping their connections");
        }
    }
    drop_connections.cancel();
    connections.close();
    connections.wait().await;
    tracing::info!("every connection is closed");
    Ok(())
}

/// How often an idle HTTP/2 connection is pinged; a peer that does not answer within
/// [`HEADER_READ_TIMEOUT`] is dropped.
const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Runs HTTP/2 streams' tasks on the server's tracker of connection tasks.
#[derive(Clone)]
struct TrackedExecutor(TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// The TLS handshake of a new connection: its first byte within the header timeout, then the
/// handshake within as long again; `None` if it failed (logged at
/// debug: scanners and clients that distrust the certificate do that all day). A client that speaks
/// plain HTTP to the TLS port is answered, in plain HTTP, that it must use https.
async fn tls_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    const TLS_HANDSHAKE_RECORD: u8 = 0x16;
    let mut first = [0u8; 1];
    match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => {
            answer_plain_http(stream).await;
            return None;
        }
        _ => return None,
    }
    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake did not finish within the header timeout");
            None
        }
    }
}

/// Tells a plain-HTTP client of a TLS port what to do, and closes the connection.
async fn answer_plain_http(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Take what the client sent first, so that closing does not reset the connection before it reads.
    let mut request = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut request)).await;
    let body = serde_json::to_string(&ApiError::invalid("this server speaks TLS only: use an https:// URL").body())
        .expect("an error body serializes");
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(HEADER_READ_TIMEOUT, stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// Logs how a connection ended (`None`: dropped at the end of the shutdown grace period). A client
/// that went away — reset, closed mid-message, too slow to send its headers — is logged at debug:
/// a server sees that all day. Anything else (a malformed request, an IO failure) at warn.
fn log_connection_end(ended: Option<Result<(), hyper::Error>>) {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let Some(Err(error)) = ended else { return };
    let io_kind = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    let went_away = error.is_incomplete_message()
        || error.is_canceled()
        || error.is_body_write_aborted()
        || error.is_timeout()
        || matches!(io_kind, Some(BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof));
    if went_away {
        tracing::debug!(%error, "connection closed by the client");
    } else {
        tracing::warn!(%error, "connection failed");
    }
}
