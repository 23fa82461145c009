//! Consumer groups: `/v1/groups`.

use crate::event::RecordedEvent;
use crate::union::ReadFrom;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// The source of a group: one stream, or the global log with filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum GroupSource {
    /// A user stream (1–256 bytes, no control characters, not starting with `$`).
    Stream(String),
    /// The global log, filtered (all must hold).
    #[serde(deserialize_with = "crate::de::object")]
    All(AllFilter),
}

impl utoipa::PartialSchema for GroupSource {
    fn schema() -> RefOr<Schema> {
        let closed = |object: ObjectBuilder| {
            object.additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
        };
        let stream = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(strata_core::limits::STREAM_ID_BYTES_MAX))
            .pattern(Some(crate::pattern::USER_NAME))
            .description(Some("A user stream: 1–256 bytes, no control characters, not starting with `$`"));
        let stream =
            closed(ObjectBuilder::new().schema_type(Type::Object).property("stream", stream).required("stream"));
        let all = closed(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("all", RefOr::Ref(utoipa::openapi::Ref::from_schema_name("AllFilter")))
                .required("all"),
        );
        let forms = OneOfBuilder::new()
            .item(stream)
            .item(all)
            .description(Some("One stream (`{\"stream\": id}`), or the global log filtered (`{\"all\": {…}}`)"));
        RefOr::T(Schema::OneOf(forms.build()))
    }
}

impl ToSchema for GroupSource {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("GroupSource")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((AllFilter::name().into_owned(), <AllFilter as utoipa::PartialSchema>::schema()));
    }
}

/// The filters of a group over the global log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllFilter {
    /// Streams of this category (the stream id before its first `-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1)]
    pub category: Option<String>,
    /// Any of these event types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = crate::append::event_types)]
    pub types: Vec<String>,
    /// Streams whose id starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1)]
    pub stream_prefix: Option<String>,
    /// Tags the event must all carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = crate::append::query_tags)]
    pub tags: Vec<String>,
}

/// How a group delivers. In answers every field is given; in requests each is optional (default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    /// Deliveries not yet acked, across consumers (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_integer")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub max_in_flight: Option<u64>,
    /// A delivery not acked within this is delivered again (default 30,000).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_integer")]
    #[schema(minimum = 10, maximum = 86_400_000)]
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries after the first before an event is parked (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_integer")]
    #[schema(maximum = 1_000)]
    pub max_retries: Option<u64>,
    /// `round_robin` (default) or `pinned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

/// How a group shares its events among consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Any consumer takes the next ready event, oldest first.
    RoundRobin,
    /// A stream's events go to one consumer, one at a time, in order.
    Pinned,
}

/// `PUT /v1/groups/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGroupRequest {
    pub source: GroupSource,
    /// Where the group starts (default `start`): a position (global log) or a revision (stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ReadFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_object")]
    pub settings: Option<GroupSettings>,
}

/// A group as `GET /v1/groups/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    pub name: String,
    pub source: GroupSource,
    pub from: ReadFrom,
    pub settings: GroupSettings,
    /// Everything up to here is handled: a position (global log) or a revision (stream).
    pub checkpoint: Option<u64>,
    /// Positions / revisions after the checkpoint.
    pub lag_events: u64,
    /// Age of the oldest event not handled in the group's buffer.
    pub lag_seconds: f64,
    pub in_flight: u64,
    pub parked: u64,
    /// Consumers seen within the ack timeout, with the deliveries each holds.
    pub consumers: Vec<GroupConsumer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupConsumer {
    pub consumer: String,
    pub in_flight: u64,
}

/// `GET /v1/groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<Group>,
}

/// `DELETE /v1/groups/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupDeleted {
    pub deleted: String,
}

/// `POST /v1/groups/{name}/fetch` (a long poll).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// This consumer's name: 1–256 bytes, no control characters.
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")]
    pub consumer: String,
    /// At most this many events (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_integer")]
    #[schema(minimum = 1, maximum = 1_000)]
    pub max: Option<u64>,
    /// Wait up to this long for events (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_integer")]
    #[schema(maximum = 60_000)]
    pub wait_ms: Option<u64>,
}

/// `{"deliveries": [{"delivery_id", "attempt", "event"}]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    pub deliveries: Vec<Delivery>,
}

/// One event handed to a consumer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// What to ack or nack.
    pub delivery_id: String,
    /// 1 for the first delivery, counting on through retries.
    pub attempt: u64,
    pub event: RecordedEvent,
}

/// `POST /v1/groups/{name}/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub delivery_ids: Vec<String>,
}

/// What to do with deliveries handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NackAction {
    /// Deliver again (counts as a retry).
    Retry,
    /// Set aside in the parked list.
    Park,
    /// Treat as handled.
    Skip,
}

/// `POST /v1/groups/{name}/nack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackRequest {
    pub delivery_ids: Vec<String>,
    pub action: NackAction,
}

/// What an ack or nack did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AckResponse {
    /// Deliveries acked or nacked.
    pub done: u64,
    /// Ids no longer outstanding (timed out and delivered again, or never given).
    pub unknown: Vec<String>,
    /// Park nacks refused because the parked list is full (those stay to be delivered again).
    pub refused: Vec<String>,
}

/// `GET /v1/groups/{name}/parked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParkedList {
    pub parked: Vec<Parked>,
}

/// A parked event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Parked {
    #[serde(deserialize_with = "crate::de::integer")]
    pub position: u64,
    /// Deliveries it had.
    #[serde(deserialize_with = "crate::de::integer")]
    #[schema(maximum = 4_294_967_295_u64)]
    pub attempts: u64,
    /// Why it was parked.
    pub reason: String,
}

/// A group's whole durable state: `GET /v1/groups/{name}/state` answers it, `PUT
/// /v1/groups/{name}/state` creates a group from it (a restore; `strata backup` keeps one per group).
/// Deliveries in flight are not part of it: they are delivered again after a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupState {
    pub source: GroupSource,
    /// The start the group was created with.
    pub from: ReadFrom,
    /// Every field is given in answers; in a restore each is optional (default).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::de::optional_object")]
    pub settings: Option<GroupSettings>,
    /// The first position (global log) or revision (stream) the group handles: its start, resolved
    /// when it was created.
    #[serde(deserialize_with = "crate::de::integer")]
    pub first: u64,
    /// Everything up to here is handled (`null` or absent: nothing yet).
    #[serde(default, deserialize_with = "crate::de::optional_integer")]
    pub checkpoint: Option<u64>,
    /// The parked events, oldest first (at most 100,000).
    #[serde(default, deserialize_with = "crate::de::objects")]
    #[schema(max_items = 100_000)]
    pub parked: Vec<Parked>,
}

/// `POST /v1/groups/{name}/replay-parked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    pub replayed: u64,
}
