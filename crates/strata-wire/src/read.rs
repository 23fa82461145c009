//! Reads and subscriptions: [`ReadPage`], and the query parameters of `GET /v1/streams/{stream}`,
//! `GET /v1/all`, `GET /v1/subscribe`, `GET /v1/streams` and `DELETE /v1/streams/{stream}`. The
//! server parses query strings strictly (unknown parameters are refused); these structs are what
//! the parameters mean, for the OpenAPI document and for clients that build query strings.

use crate::event::RecordedEvent;
use crate::union::{Direction, ExpectedRevision, ReadFrom};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A page of `GET /v1/streams/{stream}` or `GET /v1/all`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadPage {
    pub events: Vec<RecordedEvent>,
    /// Where the next page starts (a revision for a stream, a position for the log); `null` when this
    /// page reached the end (forward: the head; backward: the beginning). A page also ends early at
    /// about 16 MiB of events.
    pub next: Option<u64>,
}

/// A comma-separated list of event types (the parameter may also be repeated).
const TYPES_PATTERN: &str =
    r"^,*(?:[^,\u0000-\u001F\u007F-\u009F]{1,256}(?:,+[^,\u0000-\u001F\u007F-\u009F]{1,256})*)?,*$";
/// A comma-separated list of tags (the parameter may also be repeated).
const TAGS_PATTERN: &str = r"^,*(?:[^:,\u0000-\u001F\u007F-\u009F]+:[^,\u0000-\u001F\u007F-\u009F]+(?:,+[^:,\u0000-\u001F\u007F-\u009F]+:[^,\u0000-\u001F\u007F-\u009F]+)*)?,*$";

fn types_param() -> utoipa::openapi::schema::Array {
    list_param(TYPES_PATTERN, "Event types (any of): comma-separated and/or repeated; each 1–256 bytes")
}

fn tags_param() -> utoipa::openapi::schema::Array {
    list_param(TAGS_PATTERN, "Tags the event must all carry (`key:value`): comma-separated and/or repeated")
}

fn list_param(pattern: &str, description: &str) -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .pattern(Some(pattern)),
        )
        .description(Some(description))
        .build()
}

/// `from`, `direction`, `limit`, `until_position`, `until_time`: where a read starts, which way it
/// goes, how much it returns, and "as of" when.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `start`, `end`, or a revision (stream) / position (log), inclusive. Default: `start` forwards,
    /// `end` backwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ReadFrom>,
    /// `forward` (default) or `backward`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// At most this many events (default 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 100_000)]
    pub limit: Option<u64>,
    /// Read the store as it was when this position was the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_position: Option<u64>,
    /// Read the store as it was at this time (RFC 3339, any offset): events recorded at or before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(format = DateTime)]
    pub until_time: Option<String>,
    /// Cluster mode: wait (up to 10 s, then 503) until this node's store holds this position
    /// (read-your-writes on a node other than the one that wrote). A standalone server answers 400
    /// at once for a position beyond its head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<u64>,
}

/// The filters of the global log (`/v1/all`, `/v1/subscribe` without `stream`); all must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Streams of this category (the stream id before its first `-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1)]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[param(schema_with = types_param, explode = true, style = Form)]
    pub types: Vec<String>,
    /// Streams whose id starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[param(schema_with = tags_param, explode = true, style = Form)]
    pub tags: Vec<String>,
    /// A DCB query as JSON (`{"items":[{"types":[…],"tags":[…]}]}`); a tag holding a comma can only be
    /// filtered so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<crate::append::Query>)]
    pub query: Option<String>,
}

/// `GET /v1/subscribe`: a stream, or the global log (with [`FilterParams`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscribeParams {
    /// Subscribe to this stream (then no filters); otherwise to the global log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")]
    pub stream: Option<String>,
    /// `start` (default), `end`, or a revision (stream) / position (log), inclusive. A
    /// `Last-Event-ID` header overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ReadFrom>,
    /// Cluster mode: wait (up to 10 s, then 503) until this node's store holds this position before
    /// subscribing; a `Last-Event-ID` implies it. A standalone server answers 400 at once for a
    /// position beyond its head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<u64>,
}

/// `GET /v1/streams`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only streams whose id starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Only streams after this id (the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<u64>,
}

/// `DELETE /v1/streams/{stream}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// `true`: a tombstone, never writable or readable again. Default `false` (a soft delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard: Option<bool>,
    /// The precondition (default `any`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<ExpectedRevision>,
}
