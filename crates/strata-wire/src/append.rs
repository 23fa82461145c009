//! `POST /v1/streams/{stream}` and `POST /v1/append`: requests, answers, DCB queries.

use crate::event::NewEvent;
use crate::pattern;
use crate::union::ExpectedRevision;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/streams/{stream}`: events to one stream, atomically.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// The precondition (default `any`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<ExpectedRevision>,
    /// 1 to 10,000 events, at most 16 MiB together (each at most 1 MiB of data and metadata).
    #[schema(schema_with = new_events_to_one_stream)]
    #[serde(deserialize_with = "crate::de::objects")]
    pub events: Vec<NewEvent>,
}

fn new_events_to_one_stream() -> utoipa::openapi::schema::Array {
    events_schema(false)
}

fn new_events_with_streams() -> utoipa::openapi::schema::Array {
    events_schema(true)
}

fn events_schema(with_stream: bool) -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(NewEvent::schema_for(with_stream))
        .min_items(Some(1))
        .max_items(Some(strata_core::limits::APPEND_EVENTS_MAX))
        .description(Some("1 to 10,000 events with distinct ids, at most 16 MiB together (each at most 1 MiB)"))
        .build()
}

/// `POST /v1/append`: several streams in one atomic append.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiAppendRequest {
    /// Each with its `stream`; they get positions in this order.
    #[schema(schema_with = new_events_with_streams)]
    #[serde(deserialize_with = "crate::de::objects")]
    pub events: Vec<NewEvent>,
    /// Expected revisions, also of streams the append does not write; one per stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "crate::de::objects")]
    pub checks: Vec<Check>,
    /// A DCB condition.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_object")]
    pub condition: Option<Condition>,
}

/// An expected-revision check of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^$\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub stream: String,
    pub expected_revision: ExpectedRevision,
}

/// A DCB condition: the append fails with `409 append_condition_failed` if an event matching
/// `query` exists after position `after` (anywhere, without `after`). `after` must not be beyond the
/// head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(deserialize_with = "crate::de::object")]
    pub query: Query,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_integer")]
    pub after: Option<u64>,
}

/// A DCB query: items are OR-ed; within an item the type must be one of `types` (when given) and
/// the event must carry every tag of `tags` (when given). At least one item (an item with neither
/// types nor tags matches every event).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "crate::de::objects")]
    pub items: Vec<QueryItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryItem {
    #[serde(default)]
    #[schema(schema_with = event_types)]
    pub types: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = query_tags)]
    pub tags: Vec<String>,
}

pub(crate) fn event_types() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .min_length(Some(1))
                .max_length(Some(strata_core::limits::EVENT_TYPE_BYTES_MAX))
                .pattern(Some(pattern::NAME)),
        )
        .description(Some("Any of these event types (1–256 bytes, no control characters)"))
        .build()
}

pub(crate) fn query_tags() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .min_length(Some(3))
                .max_length(Some(strata_core::limits::TAG_BYTES_MAX))
                .pattern(Some(pattern::TAG)),
        )
        .description(Some("All of these tags (`key:value`)"))
        .build()
}

/// What a single-stream append produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppendResponse {
    pub first_revision: u64,
    pub last_revision: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// When the events were recorded (RFC 3339, UTC, microseconds); `null` for a replay.
    #[serde(default)]
    pub recorded_at: Option<String>,
    /// The events were already committed by an earlier request with the same ids; nothing was written.
    pub replayed: bool,
}

/// What a multi-stream append produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MultiAppendResponse {
    pub first_position: u64,
    pub last_position: u64,
    pub streams: Vec<StreamAppend>,
    /// When the events were recorded (RFC 3339, UTC, microseconds); `null` for a replay.
    #[serde(default)]
    pub recorded_at: Option<String>,
    pub replayed: bool,
}

/// The revisions one stream of a multi-stream append got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamAppend {
    pub stream: String,
    pub first_revision: u64,
    pub last_revision: u64,
}

impl From<&strata_core::Query> for Query {
    fn from(query: &strata_core::Query) -> Self {
        let items = query
            .items
            .iter()
            .map(|item| QueryItem {
                types: item.types.iter().map(|name| name.as_str().to_owned()).collect(),
                tags: item.tags.iter().map(|tag| tag.as_str().to_owned()).collect(),
            })
            .collect();
        Query { items }
    }
}
