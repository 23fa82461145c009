//! The JSON shapes of the API (DESIGN.md §5) and their conversion to and from the engine's types.
//!
//! Requests are parsed into plain serde structs (unknown fields refused), then converted with
//! messages that name the field and say what to fix. Recorded events are rendered by hand into one
//! buffer: reads of thousands of events are the hot path, and `data` is copied as the stored JSON.

use crate::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use strata_core::{
    ContentType, EventId, EventType, ExpectedRevision, NewEvent, Query, QueryItem, RecordedEvent, StreamId,
    StreamRevision, Tag,
};
use utoipa::ToSchema;

/// The content type of JSON data: stored as "no content type".
const JSON_CONTENT_TYPE: &str = "application/json";
const BINARY_CONTENT_TYPE_DEFAULT: &str = "application/octet-stream";

/// An event to append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEventJson {
    /// The event's id (a UUID); give one to make retries idempotent. Generated (UUIDv7) if absent.
    #[schema(value_type = Option<String>)]
    pub id: Option<String>,
    /// Only in `POST /v1/append`: the stream the event goes to.
    pub stream: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload as JSON (stored as given; `null` too). Exactly one of `data` and `data_base64`.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "present")]
    pub data: Option<Box<RawValue>>,
    /// A binary payload, base64 (standard alphabet, padded).
    pub data_base64: Option<String>,
    /// The binary payload's content type (default `application/octet-stream`); only with `data_base64`.
    pub content_type: Option<String>,
    /// A JSON object stored with the event.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    /// `key:value` strings, at most 32.
    pub tags: Option<Vec<String>>,
}

/// A field given as any JSON, `null` included (serde's `Option` would take `null` for "absent").
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

/// `POST /v1/streams/{stream}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// `"any"` (default), `"no_stream"`, `"stream_exists"` or the stream's last revision.
    #[schema(value_type = Option<Object>)]
    pub expected_revision: Option<Value>,
    pub events: Vec<NewEventJson>,
}

/// `POST /v1/append`: several streams, atomically.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiAppendRequest {
    /// Each with its `stream`; they get positions in this order.
    pub events: Vec<NewEventJson>,
    /// Expected revisions, also of streams the append does not write.
    #[serde(default)]
    pub checks: Vec<CheckJson>,
    pub condition: Option<ConditionJson>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckJson {
    pub stream: String,
    #[schema(value_type = Object)]
    pub expected_revision: Value,
}

/// A DCB condition: the append fails if an event matching `query` exists after position `after`
/// (anywhere, without `after`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionJson {
    pub query: QueryJson,
    pub after: Option<u64>,
}

/// Items are OR-ed; within an item the type must be one of `types` (when given) and the event must
/// carry every tag of `tags` (when given).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryJson {
    pub items: Vec<QueryItemJson>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryItemJson {
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What a single-stream append produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppendResponse {
    pub first_revision: u64,
    pub last_revision: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// When the events were recorded (RFC 3339, UTC, microseconds); `null` for a replay.
    pub recorded_at: Option<String>,
    /// The events were already committed by an earlier request with the same ids; nothing was written.
    pub replayed: bool,
}

/// What a multi-stream append produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct MultiAppendResponse {
    pub first_position: u64,
    pub last_position: u64,
    pub streams: Vec<StreamAppendJson>,
    /// When the events were recorded (RFC 3339, UTC, microseconds); `null` for a replay.
    pub recorded_at: Option<String>,
    pub replayed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamAppendJson {
    pub stream: String,
    pub first_revision: u64,
    pub last_revision: u64,
}

/// A page of events.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Documents the shape `read` renders.
pub struct ReadResponse {
    pub events: Vec<RecordedEventJson>,
    /// Where the next page starts (a revision for a stream, a position for the log); `null` when this
    /// page reached the end (forward: the head; backward: the beginning).
    pub next: Option<u64>,
}

/// Parses an expected revision: `"any"`, `"no_stream"`, `"stream_exists"` or a revision number.
pub fn expected_revision(value: Option<&Value>) -> Result<ExpectedRevision, ApiError> {
    let explain =
        "expected_revision must be \"any\", \"no_stream\", \"stream_exists\" or a revision (a non-negative integer)";
    match value {
        None => Ok(ExpectedRevision::Any),
        Some(Value::String(name)) => match name.as_str() {
            "any" => Ok(ExpectedRevision::Any),
            "no_stream" => Ok(ExpectedRevision::NoStream),
            "stream_exists" => Ok(ExpectedRevision::StreamExists),
            other => Err(ApiError::invalid(format!("{explain}, got {other:?}"))),
        },
        Some(Value::Number(number)) => match number.as_u64() {
            Some(revision) => Ok(ExpectedRevision::Exact(StreamRevision::new(revision))),
            None => Err(ApiError::invalid(format!("{explain}, got {number}"))),
        },
        Some(other) => Err(ApiError::invalid(format!("{explain}, got {other}"))),
    }
}

/// How an expected revision is shown in a conflict.
pub fn expected_json(expected: ExpectedRevision) -> Value {
    match expected {
        ExpectedRevision::Any => json!("any"),
        ExpectedRevision::NoStream => json!("no_stream"),
        ExpectedRevision::StreamExists => json!("stream_exists"),
        ExpectedRevision::Exact(revision) => json!(revision.value()),
    }
}

pub fn actual_json(actual: Option<StreamRevision>) -> Value {
    actual.map_or(json!("no_stream"), |revision| json!(revision.value()))
}

pub fn stream_id(text: String, field: &str) -> Result<StreamId, ApiError> {
    StreamId::new(text).map_err(|error| ApiError::from(error).at(field))
}

impl NewEventJson {
    /// Converts to the engine's event; errors say which field is wrong.
    pub fn into_event(self) -> Result<NewEvent, ApiError> {
        let event_type = EventType::new(self.event_type).map_err(|error| ApiError::from(error).at("type"))?;
        let (data, content_type) = match (self.data, self.data_base64, self.content_type) {
            (Some(_), Some(_), _) => {
                return Err(ApiError::invalid("give either data (JSON) or data_base64 (binary), not both"));
            }
            (None, None, _) => return Err(ApiError::invalid("each event needs data (JSON) or data_base64 (binary)")),
            (Some(data), None, None) => (bytes::Bytes::copy_from_slice(data.get().as_bytes()), None),
            (Some(data), None, Some(content_type)) if content_type == JSON_CONTENT_TYPE => {
                (bytes::Bytes::copy_from_slice(data.get().as_bytes()), None)
            }
            (Some(_), None, Some(_)) => {
                return Err(ApiError::invalid(
                    "content_type goes with data_base64; JSON data needs no content_type (or application/json)",
                ));
            }
            (None, Some(encoded), content_type) => {
                let data = BASE64
                    .decode(encoded.as_bytes())
                    .map_err(|error| ApiError::invalid(format!("data_base64 is not valid base64: {error}")))?;
                let content_type = content_type.unwrap_or_else(|| BINARY_CONTENT_TYPE_DEFAULT.to_owned());
                // JSON sent as base64 is still JSON: stored like `data`, so reads render it as JSON.
                let content_type = if content_type == JSON_CONTENT_TYPE {
                    serde_json::from_slice::<&RawValue>(&data).map_err(|error| {
                        ApiError::invalid(format!("data_base64 says application/json but is not JSON: {error}"))
                    })?;
                    None
                } else {
                    Some(ContentType::new(content_type).map_err(|error| ApiError::from(error).at("content_type"))?)
                };
                (bytes::Bytes::from(data), content_type)
            }
        };
        let mut event = NewEvent::new(event_type, data);
        if let Some(content_type) = content_type {
            event = event.with_content_type(content_type);
        }
        if let Some(id) = self.id {
            let uuid = uuid::Uuid::parse_str(&id)
                .map_err(|error| ApiError::invalid(format!("id {id:?} is not a UUID: {error}")))?;
            if uuid.is_nil() {
                return Err(ApiError::invalid("id must not be the nil UUID"));
            }
            event = event.with_id(EventId::from_uuid(uuid));
        }
        if let Some(metadata) = self.metadata {
            if !metadata.get().trim_start().starts_with('{') {
                return Err(ApiError::invalid(format!("metadata must be a JSON object, got {}", metadata.get())));
            }
            event = event.with_metadata(bytes::Bytes::copy_from_slice(metadata.get().as_bytes()));
        }
        if let Some(tags) = self.tags {
            let tags = tags
                .into_iter()
                .enumerate()
                .map(|(at, tag)| Tag::new(tag).map_err(|error| ApiError::from(error).at(&format!("tags[{at}]"))))
                .collect::<Result<Vec<_>, _>>()?;
            event = event.with_tags(tags)?;
        }
        Ok(event)
    }
}

impl QueryJson {
    pub fn into_query(self) -> Result<Query, ApiError> {
        let items = self
            .items
            .into_iter()
            .enumerate()
            .map(|(at, item)| {
                let place = format!("query.items[{at}]");
                let types = item
                    .types
                    .into_iter()
                    .map(|name| EventType::new(name).map_err(|error| ApiError::from(error).at(&place)))
                    .collect::<Result<_, _>>()?;
                let tags = item
                    .tags
                    .into_iter()
                    .map(|tag| Tag::new(tag).map_err(|error| ApiError::from(error).at(&place)))
                    .collect::<Result<_, _>>()?;
                Ok(QueryItem { types, tags })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        if items.is_empty() {
            return Err(ApiError::invalid(
                "the query has no items; give at least one (an item with no types and no tags matches every event)",
            ));
        }
        Ok(Query::new(items))
    }
}

/// Appends `event` as one JSON object to `out`. The hot path of reads: it writes straight into
/// `out`, with no allocation per event beyond the base64 of binary payloads.
pub fn write_event(out: &mut Vec<u8>, event: &RecordedEvent) {
    use std::io::Write as _;
    out.extend_from_slice(b"{\"id\":\"");
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(event.id.as_uuid().hyphenated().encode_lower(&mut id).as_bytes());
    out.extend_from_slice(b"\",\"stream\":");
    write_name(out, event.stream.as_str());
    out.extend_from_slice(b",\"type\":");
    write_name(out, event.event_type.as_str());
    out.extend_from_slice(b",\"revision\":");
    write_u64(out, event.revision.value());
    out.extend_from_slice(b",\"position\":");
    write_u64(out, event.position.value());
    out.extend_from_slice(b",\"recorded_at\":\"");
    match event.recorded_at.to_rfc3339_bytes() {
        Some(text) => out.extend_from_slice(&text),
        None => {
            let _ = write!(out, "{}", event.recorded_at);
        }
    }
    out.push(b'"');
    // JSON data is copied as stored. Bytes stored without a content type through the embedded API
    // are not checked by the engine, so they are rendered as base64 unless they are valid JSON.
    let json_data = event.content_type.is_none() && is_json(&event.data);
    if json_data {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(&event.data);
    } else {
        out.extend_from_slice(b",\"data_base64\":\"");
        out.extend_from_slice(BASE64.encode(&event.data).as_bytes());
        out.extend_from_slice(b"\",\"content_type\":");
        write_string(out, event.content_type.as_ref().map_or(BINARY_CONTENT_TYPE_DEFAULT, |c| c.as_str()));
    }
    out.extend_from_slice(b",\"metadata\":");
    if event.metadata.is_empty() {
        out.extend_from_slice(b"{}");
    } else if is_json(&event.metadata) {
        out.extend_from_slice(&event.metadata);
    } else {
        // Not JSON (written through the embedded API): shown, not lost.
        out.extend_from_slice(b"{\"base64\":\"");
        out.extend_from_slice(BASE64.encode(&event.metadata).as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b",\"tags\":[");
    for (at, tag) in event.tags.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        write_name(out, tag);
    }
    out.extend_from_slice(b"]}");
}

/// A number in decimal, without the formatting machinery.
fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Whether `bytes` are one JSON value: UTF-8 (serde_json does not check it inside strings when it
/// only skips them) and accepted by the same parser — without a nesting limit, like the one that
/// accepted `data` at append time — that keeps it as raw text.
fn is_json(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && serde_json::from_slice::<&RawValue>(bytes).is_ok()
}

/// A validated name (stream, type, tag) as a JSON string. Names hold no control characters, so
/// only `"` and `\` need escaping — checked, and handed to the general escaper when present.
fn write_name(out: &mut Vec<u8>, name: &str) {
    if name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        write_string(out, name);
    } else {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
    }
}

/// A JSON string literal.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

/// `{"events":[…],"next":…}`.
pub fn write_page(events: &[RecordedEvent], next: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + events.iter().map(|e| 256 + e.data.len() + e.metadata.len()).sum::<usize>());
    out.extend_from_slice(b"{\"events\":[");
    for (at, event) in events.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        write_event(&mut out, event);
    }
    out.extend_from_slice(b"],\"next\":");
    match next {
        Some(next) => out.extend_from_slice(next.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    out
}

/// An event as stored: the shape `write_event` renders for every read, SSE message and export line,
/// and what `POST /v1/import` and `strata import` parse back (a test checks the rendered fields
/// against this schema).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordedEventJson {
    pub id: String,
    pub stream: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub revision: u64,
    /// On import, informational: an import appends in order, and keeps positions when the target
    /// is empty.
    pub position: u64,
    pub recorded_at: String,
    /// The JSON payload (absent for binary payloads).
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "present")]
    pub data: Option<Box<RawValue>>,
    /// A binary payload, base64 (absent for JSON payloads).
    pub data_base64: Option<String>,
    /// Only with `data_base64`.
    pub content_type: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Box<RawValue>,
    pub tags: Vec<String>,
}

/// Parses one exported event (a line of an export) back into the engine's event.
pub fn parse_exported_event(line: &[u8]) -> Result<RecordedEvent, ApiError> {
    let exported: RecordedEventJson =
        serde_json::from_slice(line).map_err(|error| ApiError::invalid(format!("not an exported event: {error}")))?;
    exported.into_recorded()
}

impl RecordedEventJson {
    pub fn into_recorded(self) -> Result<RecordedEvent, ApiError> {
        let uuid = uuid::Uuid::parse_str(&self.id)
            .map_err(|error| ApiError::invalid(format!("id {:?} is not a UUID: {error}", self.id)))?;
        let (data, content_type) = match (self.data, self.data_base64, self.content_type) {
            (Some(data), None, None) => (bytes::Bytes::copy_from_slice(data.get().as_bytes()), None),
            (None, Some(encoded), Some(content_type)) => {
                let data = BASE64
                    .decode(encoded.as_bytes())
                    .map_err(|error| ApiError::invalid(format!("data_base64 is not valid base64: {error}")))?;
                let content_type =
                    ContentType::new(content_type).map_err(|error| ApiError::from(error).at("content_type"))?;
                (bytes::Bytes::from(data), Some(content_type))
            }
            _ => {
                return Err(ApiError::invalid("an exported event has either data, or data_base64 with content_type"));
            }
        };
        // Empty metadata is rendered as `{}`; anything else is kept byte for byte.
        let metadata = match self.metadata.get() {
            "{}" => bytes::Bytes::new(),
            other if other.starts_with('{') => bytes::Bytes::copy_from_slice(other.as_bytes()),
            other => return Err(ApiError::invalid(format!("metadata must be a JSON object, got {other}"))),
        };
        let tags = self
            .tags
            .into_iter()
            .map(|tag| Tag::new(tag).map_err(|error| ApiError::from(error).at("tags")))
            .collect::<Result<Vec<_>, _>>()?;
        if tags.len() > strata_core::limits::TAGS_PER_EVENT_MAX {
            return Err(ApiError::invalid(format!("an event carries {} tags; the limit is 32", tags.len())));
        }
        Ok(RecordedEvent {
            id: EventId::from_uuid(uuid),
            stream: StreamId::new(self.stream).map_err(|error| ApiError::from(error).at("stream"))?,
            event_type: EventType::new(self.event_type).map_err(|error| ApiError::from(error).at("type"))?,
            revision: StreamRevision::new(self.revision),
            position: strata_core::Position::new(self.position),
            recorded_at: self
                .recorded_at
                .parse()
                .map_err(|error: strata_core::TimestampParseError| ApiError::invalid(error.to_string()))?,
            content_type,
            data,
            metadata,
            tags: strata_core::Tags::from_tags(&tags),
            hash: None,
        })
    }
}
