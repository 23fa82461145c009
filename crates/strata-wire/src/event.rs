//! Events on the wire: [`NewEvent`] (appended), [`RecordedEvent`] (read, exported, delivered),
//! [`ImportedEvent`] (imported), and the JSON data of system events.
//!
//! A payload travels as JSON (`data`) when it is JSON, otherwise as base64 (`data_base64`) with its
//! `content_type`: exactly one of the two. The schemas say so with a `oneOf` of the two forms, which
//! the serde derive cannot state; they are built by hand here, next to the fields they describe.

use crate::pattern;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

/// The content type of JSON data (stored as "no content type").
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// The content type of binary data sent without one.
pub const CONTENT_TYPE_BINARY_DEFAULT: &str = "application/octet-stream";

/// A field given as any JSON, `null` included (serde's `Option` would take `null` for "absent").
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

/// An event to append (`POST /v1/streams/{stream}`, `POST /v1/append`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The event's id (a UUID, not nil); give one to make retries idempotent. Generated (UUIDv7)
    /// if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Only in `POST /v1/append`: the stream the event goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload as JSON (stored as given; `null` too). Exactly one of `data` and `data_base64`.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    /// A binary payload, base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// The binary payload's content type (default `application/octet-stream`); only with
    /// `data_base64`. `application/json` stores the decoded bytes as JSON data (they must be JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// A JSON object stored with the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
    /// `key:value` strings, at most 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// An event as stored, as every read, SSE message, group delivery and export line renders it.
/// Answers may carry fields this version does not know; they are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub id: String,
    pub stream: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(deserialize_with = "crate::de::integer")]
    pub revision: u64,
    /// On import, informational: an import appends in order, and keeps positions when the target
    /// is empty.
    #[serde(deserialize_with = "crate::de::integer")]
    pub position: u64,
    /// RFC 3339, UTC, microseconds.
    pub recorded_at: String,
    /// The JSON payload (absent for binary payloads). System events of `$streams` carry their
    /// change as JSON here ([`MetadataChanged`], [`StreamDeleted`], [`StreamTombstoned`]).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    /// A binary payload, base64 (absent for JSON payloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Only with `data_base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// A JSON object; `{}` when the event has none.
    pub metadata: Box<RawValue>,
    pub tags: Vec<String>,
    /// The event's place in the log's hash chain (64 hex digits); `null` for events written before
    /// the chain (log format 1). Optional on import.
    #[serde(default)]
    pub hash: Option<String>,
}

impl RecordedEvent {
    /// Every field name, for [`ImportedEvent`]'s check.
    pub const FIELDS: &'static [&'static str] = &[
        "id",
        "stream",
        "type",
        "revision",
        "position",
        "recorded_at",
        "data",
        "data_base64",
        "content_type",
        "metadata",
        "tags",
        "hash",
    ];
}

/// A [`RecordedEvent`] as `POST /v1/import` takes it: what an export wrote, with unknown fields
/// refused (import is strict like every request; reading answers is not).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct ImportedEvent(pub RecordedEvent);

impl<'de> Deserialize<'de> for ImportedEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        // Kept as text, its keys checked, then read: an import is no hot path.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let keys: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
            serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        if let Some(unknown) = keys.keys().find(|key| !RecordedEvent::FIELDS.contains(&key.as_str())) {
            return Err(D::Error::unknown_field(unknown, RecordedEvent::FIELDS));
        }
        serde_json::from_str::<crate::de::Object<RecordedEvent>>(raw.get())
            .map(|event| ImportedEvent(event.0))
            .map_err(D::Error::custom)
    }
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).description(Some(description))
}

fn name(description: &str, pattern: &str, max: usize) -> ObjectBuilder {
    string(description).min_length(Some(1)).max_length(Some(max)).pattern(Some(pattern))
}

fn integer(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .description(Some(description))
}

fn any_json(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::AnyValue).description(Some(description))
}

fn json_object(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::Object)).description(Some(description))
}

fn tags(description: &str) -> ArrayBuilder {
    let tag = name("`key:value`, both non-empty; at most 256 bytes", pattern::TAG, strata_core::limits::TAG_BYTES_MAX);
    ArrayBuilder::new()
        .items(tag)
        .max_items(Some(strata_core::limits::TAGS_PER_EVENT_MAX))
        .description(Some(description))
}

fn content_type(description: &str) -> ObjectBuilder {
    name(description, pattern::CONTENT_TYPE, strata_core::limits::CONTENT_TYPE_BYTES_MAX)
}

fn base64(description: &str) -> ObjectBuilder {
    string(description).pattern(Some(pattern::BASE64))
}

/// `schema`, or `null` (what serde reads as an absent optional field).
fn or_null(schema: impl Into<RefOr<Schema>>) -> Schema {
    let null = ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null));
    Schema::OneOf(OneOfBuilder::new().item(null).item(schema).build())
}

fn null(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)).description(Some(description))
}

fn closed(object: ObjectBuilder) -> Schema {
    object.additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false))).build().into()
}

impl NewEvent {
    /// The schema of an event appended to `POST /v1/streams/{stream}` (`with_stream: false`) or
    /// `POST /v1/append` (`true`: each event names its stream).
    pub fn schema_for(with_stream: bool) -> RefOr<Schema> {
        let common = || {
            let object = ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Object))
                .property(
                    "id",
                    or_null(
                        string("The event's id (a UUID, not nil): give one to make retries idempotent. Generated if absent")
                            .format(Some(SchemaFormat::Custom("uuid".to_owned()))),
                    ),
                )
                .property(
                    "type",
                    name(
                        "What happened (`MoneyDeposited`): 1–256 bytes, no control characters, not starting with `$`",
                        pattern::USER_NAME,
                        strata_core::limits::EVENT_TYPE_BYTES_MAX,
                    ),
                )
                .required("type")
                .property("metadata", or_null(json_object("A JSON object stored with the event")))
                .property("tags", or_null(tags("Indexed `key:value` strings, at most 32")));
            if with_stream {
                object
                    .property(
                        "stream",
                        name(
                            "The stream the event goes to: 1–256 bytes, no control characters, not starting with `$`",
                            pattern::USER_NAME,
                            strata_core::limits::STREAM_ID_BYTES_MAX,
                        ),
                    )
                    .required("stream")
            } else {
                object.property("stream", null("The stream is the one in the path"))
            }
        };
        let json = common()
            .property("data", any_json("The payload as JSON (stored as given; `null` too)"))
            .required("data")
            .property("data_base64", null("Not with `data`"))
            .property(
                "content_type",
                or_null(string("Only `application/json`, the same as none").enum_values(Some([CONTENT_TYPE_JSON]))),
            );
        let binary = common()
            .property("data_base64", base64("A binary payload: base64, standard alphabet, padded"))
            .required("data_base64")
            .property(
                "content_type",
                or_null(
                    content_type(
                        "The binary payload's content type (default `application/octet-stream`): printable ASCII, at \
                         most 128 bytes. `application/json` stores the bytes as JSON data, so they must then be JSON",
                    )
                    .pattern(Some(r"^(?!application/json$)[!-~]+$")),
                ),
            );
        let forms = OneOfBuilder::new()
            .item(closed(json))
            .item(closed(binary))
            .description(Some("An event to append: its payload as JSON (`data`) or as base64 (`data_base64`)"));
        RefOr::T(Schema::OneOf(forms.build()))
    }
}

impl utoipa::PartialSchema for NewEvent {
    fn schema() -> RefOr<Schema> {
        Self::schema_for(false)
    }
}

impl utoipa::ToSchema for NewEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NewEvent")
    }
}

/// The schema of a recorded event; `strict` for import (no other fields; `hash` optional).
fn recorded_event_schema(strict: bool) -> RefOr<Schema> {
    let common = || {
        let object = ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .property("id", string("The event's id (a UUID)").format(Some(SchemaFormat::Custom("uuid".to_owned()))))
            .required("id")
            .property(
                "stream",
                name(
                    "The stream: 1–256 bytes, no control characters (`$` names are the system's)",
                    pattern::NAME,
                    strata_core::limits::STREAM_ID_BYTES_MAX,
                ),
            )
            .required("stream")
            .property(
                "type",
                name(
                    "The event type: 1–256 bytes, no control characters (`$` types are the system's)",
                    pattern::NAME,
                    strata_core::limits::EVENT_TYPE_BYTES_MAX,
                ),
            )
            .required("type")
            .property("revision", integer("The event's revision in its stream (0-based)"))
            .required("revision")
            .property("position", integer("The event's position in the global log (0-based)"))
            .required("position")
            .property(
                "recorded_at",
                string("When the event was committed: RFC 3339, UTC, microseconds")
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .required("recorded_at")
            .property("metadata", json_object("A JSON object; `{}` when the event has none"))
            .required("metadata")
            .property("tags", tags("The event's tags"))
            .required("tags")
            .property(
                "hash",
                or_null(
                    string(
                        "The event's hash in the log's chain: 64 lowercase hex digits; `null` for events \
                                written before the chain",
                    )
                    .pattern(Some(pattern::HASH)),
                ),
            );
        if strict { object } else { object.required("hash") }
    };
    let json = common()
        .property("data", any_json("The payload as JSON (stored as given; `null` too)"))
        .required("data")
        .property("data_base64", null("Not with `data`"))
        .property("content_type", null("Not with `data`"));
    let binary = common()
        .property("data_base64", base64("A binary payload: base64, standard alphabet, padded"))
        .required("data_base64")
        .property("content_type", content_type("The binary payload's content type: printable ASCII, at most 128 bytes"))
        .required("content_type");
    // Answers may grow fields: only an import's events are closed.
    let finish = |object: ObjectBuilder| if strict { closed(object) } else { object.build().into() };
    let description = if strict {
        "An exported event (a line of `strata export`), imported keeping its id, revision and recorded time"
    } else {
        "An event as stored: its payload as JSON (`data`) or as base64 (`data_base64` with `content_type`)"
    };
    let forms = OneOfBuilder::new().item(finish(json)).item(finish(binary)).description(Some(description));
    RefOr::T(Schema::OneOf(forms.build()))
}

impl utoipa::PartialSchema for RecordedEvent {
    fn schema() -> RefOr<Schema> {
        recorded_event_schema(false)
    }
}

impl utoipa::ToSchema for RecordedEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RecordedEvent")
    }
}

impl utoipa::PartialSchema for ImportedEvent {
    fn schema() -> RefOr<Schema> {
        recorded_event_schema(true)
    }
}

impl utoipa::ToSchema for ImportedEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ImportedEvent")
    }
}

/// The data of a `$metadata` event of `$streams`: a stream's metadata was replaced.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataChanged {
    /// The stream whose metadata this is.
    pub stream: String,
    #[serde(default, deserialize_with = "crate::de::optional_integer")]
    pub max_age_seconds: Option<u64>,
    #[serde(default, deserialize_with = "crate::de::optional_integer")]
    pub max_count: Option<u64>,
    #[serde(default, deserialize_with = "crate::de::optional_integer")]
    pub truncate_before: Option<u64>,
    /// The application's metadata as JSON; `null` when empty.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub custom: Option<Box<RawValue>>,
    /// The application's metadata as base64, when it is not JSON (written through the embedded API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_base64: Option<String>,
}

/// The data of a `$deleted` event of `$streams`: a stream was soft-deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamDeleted {
    /// The stream deleted.
    pub stream: String,
    /// Reads of the stream skip the revisions before this one: its last revision then, plus one.
    #[serde(deserialize_with = "crate::de::integer")]
    pub truncate_before: u64,
}

/// The data of a `$tombstone` event of `$streams`: a stream was deleted for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamTombstoned {
    /// The stream tombstoned.
    pub stream: String,
}
