//! The request log: one line per request at debug (target `strata_server::request_log`) with the
//! method, the path, the status, the latency in µs (until the response's head: for a subscription,
//! until its stream starts) and the response's bytes when its length is known.
//!
//! # Invariants
//! - Never a header (an `Authorization` header is a credential), a body or a query string: bodies
//!   hold event data and metadata, query strings tags and filters. The path is logged without its
//!   query.
//! - At any level above debug it costs one check of the filter per request: nothing is measured.

use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let latency_us = started.elapsed().as_micros() as u64;
    let bytes = response.body().size_hint().exact();
    tracing::debug!(%method, %path, status = response.status().as_u16(), latency_us, bytes, "request");
    response
}
