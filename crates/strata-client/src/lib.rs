//! A client for Strata's HTTP API (`docs/api.md`): [`Client`] implements the toolkit's
//! [`EventStore`](strata_store::EventStore), so application code written against the embedded
//! store runs unchanged against a server.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_store::EventStore;
//! let client = strata_client::Client::new("http://127.0.0.1:2113")?;
//! let head = client.head_position().await?;
//! # Ok(()) }
//! ```
//!
//! Codemap:
//! - `client`: [`Client`] — URLs (stream ids percent-encoded), requests, the mapping of answers to
//!   outcomes and errors, and the [`EventStore`](strata_store::EventStore) methods, each one request
//!   (`position_at` is a backward read of `/v1/all` with `until_time`, the API having no endpoint for it).
//! - `subscription`: [`Subscription`] — `GET /v1/subscribe` (Server-Sent Events) as the engine's
//!   subscription messages; resumes a dropped connection with `Last-Event-ID`.
//! - `wire`: the engine's types to and from the API's JSON shapes, which `strata_wire` defines (the
//!   same types the server parses and renders) — events and appends out; recorded events, pages,
//!   append answers and error bodies in — and the query parameters of reads and filters.
//!
//! # Errors and outcomes
//! As with the embedded store, a failed expected revision or DCB condition is an outcome
//! (`WrongExpectedRevision` with the stream's actual revision, `ConditionFailed` with the position of
//! the first matching event), and a read of a stream that does not exist is an empty page. Any other
//! API error is [`StoreError::Remote`](strata_store::StoreError::Remote) with the answer's status,
//! code and message (a tombstoned stream, for one, is `410 stream_deleted` rather than the embedded
//! store's `ReadError::StreamDeleted`). No answer, or one that is not the API's, is
//! [`StoreError::Transport`](strata_store::StoreError::Transport): whether an append that failed
//! so was committed is unknown — retry it with the same event ids. Requests the API cannot express
//! are refused by the client itself as `Remote { status: 400, code: "invalid_request" }`: metadata
//! that is not a JSON object, and the stream ids `.` and `..` in paths.
//!
//! # What the HTTP API carries differently from the embedded store
//! Recorded events read through the client equal the embedded store's, field for field, except:
//! - Data stored without a content type that is not JSON is sent by the server as binary: the client
//!   reads it with `application/octet-stream`. Such data appended through the client is stored so.
//! - JSON data is read as the JSON value's own text: whitespace around it, which the engine stores
//!   if it was given, is not read back (appends keep it: such data is sent as base64 marked JSON).
//! - A content type of `application/json` is stored as none (the data must then be JSON).
//! - Metadata must be a JSON object; whitespace around it is dropped, and `{}` means none (the
//!   server renders empty metadata as `{}`, so metadata stored as `{}` reads as empty).
//! - System events of `$streams` (metadata, deletes, tombstones) read as their JSON (`data`, no
//!   content type), as the API renders them, not as the engine's binary encoding.
//! - In a subscription, a carriage return in JSON data's whitespace arrives as a line feed (`\r\n` as
//!   two): Server-Sent Events end lines at `\r` as well as `\n`, and cannot carry either in data.
//! - A subscription from [`ReadFrom::End`](strata_store::ReadFrom::End) starts at the head when it
//!   first connects (its first `next`), not when `subscribe_all` returns. Its batches of events are
//!   cut where the network cuts them, up to the engine's 1,000 events.

mod client;
mod subscription;
mod wire;

pub use client::{CONNECT_TIMEOUT, Client, ClientError, REQUEST_TIMEOUT};
pub use subscription::{RECONNECT_ATTEMPTS_MAX, SUBSCRIPTION_IDLE_TIMEOUT, Subscription};
