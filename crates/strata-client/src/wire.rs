//! The JSON of the API as the client speaks it: appends out; recorded events, pages, append answers
//! and error bodies in.
//!
//! Encoding keeps payloads byte for byte where the API can carry them: JSON data goes out as the
//! stored text itself (a `RawValue`, never re-serialized), anything else as base64. Decoding is
//! lenient about fields it does not know (a newer server may add some) and strict about the ones it
//! reads: names, times and content types are validated as the engine validates them.

use crate::client::refused;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use strata_core::limits::READ_EVENTS_MAX;
use strata_core::{
    ContentType, EventId, EventType, ExpectedRevision, NewEvent, Position, Query, QueryItem, RecordedEvent, StreamId,
    StreamMetadata, StreamRevision, Tag, Tags, Timestamp,
};
use strata_store::StoreError;
use strata_store::{
    Direction, Filter, MultiAppend, MultiAppendResult, ReadFrom, ReadOptions, ReadPage, StreamAppendResult,
};

/// What the server stores as "no content type" when it is sent with base64 data.
const JSON_CONTENT_TYPE: &str = "application/json";
/// What the server stores for base64 data sent without a content type.
const BINARY_CONTENT_TYPE: &str = "application/octet-stream";

/// `bytes` as one JSON value, if they are exactly that: UTF-8, valid, and without whitespace around
/// it (which a JSON field could not carry).
fn exact_json(bytes: &[u8]) -> Option<&RawValue> {
    let text = std::str::from_utf8(bytes).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    (raw.get().len() == text.len()).then_some(raw)
}

/// A JSON object as the API takes metadata: surrounding whitespace is dropped (a JSON field cannot
/// carry it); `{}` is sent as no metadata, which is how the server renders empty metadata.
fn json_object<'a>(bytes: &'a [u8], what: &str) -> Result<Option<&'a RawValue>, StoreError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let object = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        .filter(|raw| raw.get().starts_with('{'));
    match object {
        Some(raw) if raw.get() == "{}" => Ok(None),
        Some(raw) => Ok(Some(raw)),
        None => Err(refused(format!("{what} must be a JSON object to go through the HTTP API"))),
    }
}

/// An event to append, as `POST /v1/streams/{stream}` and `POST /v1/append` take it.
#[derive(Debug, Serialize)]
pub(crate) struct EventOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<&'a str>,
}

impl<'a> EventOut<'a> {
    pub fn new(stream: Option<&'a StreamId>, event: &'a NewEvent) -> Result<Self, StoreError> {
        let data = event.data();
        // JSON without a content type travels as JSON. JSON with whitespace around it goes as base64
        // marked JSON (stored byte for byte, as JSON); other bytes without a content type can only be
        // stored as binary.
        let (json, content_type) = match event.content_type() {
            Some(content_type) => (None, Some(content_type.as_str())),
            None => match exact_json(data) {
                Some(raw) => (Some(raw), None),
                None if serde_json::from_slice::<&RawValue>(data).is_ok() && std::str::from_utf8(data).is_ok() => {
                    (None, Some(JSON_CONTENT_TYPE))
                }
                None => (None, Some(BINARY_CONTENT_TYPE)),
            },
        };
        Ok(Self {
            stream: stream.map(StreamId::as_str),
            id: event.id().map(|id| id.to_string()),
            event_type: event.event_type().as_str(),
            data: json,
            data_base64: json.is_none().then(|| BASE64.encode(data)),
            content_type,
            metadata: json_object(event.metadata(), "an event's metadata")?,
            tags: event.tags().iter().map(Tag::as_str).collect(),
        })
    }
}

/// `POST /v1/streams/{stream}`.
#[derive(Debug, Serialize)]
pub(crate) struct AppendOut<'a> {
    pub expected_revision: Value,
    pub events: Vec<EventOut<'a>>,
}

/// `POST /v1/append`.
#[derive(Debug, Serialize)]
pub(crate) struct MultiAppendOut<'a> {
    events: Vec<EventOut<'a>>,
    checks: Vec<CheckOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<ConditionOut>,
}

#[derive(Debug, Serialize)]
struct CheckOut<'a> {
    stream: &'a str,
    expected_revision: Value,
}

#[derive(Debug, Serialize)]
struct ConditionOut {
    query: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<u64>,
}

impl<'a> MultiAppendOut<'a> {
    pub fn new(append: &'a MultiAppend) -> Result<Self, StoreError> {
        let events =
            append.events.iter().map(|(stream, event)| EventOut::new(Some(stream), event)).collect::<Result<_, _>>()?;
        let checks = append
            .checks
            .iter()
            .map(|(stream, expected)| CheckOut { stream: stream.as_str(), expected_revision: expected_json(*expected) })
            .collect();
        let condition = append.condition.as_ref().map(|condition| ConditionOut {
            query: query_json(&condition.query),
            after: condition.after.map(Position::value),
        });
        Ok(Self { events, checks, condition })
    }
}

pub(crate) fn expected_json(expected: ExpectedRevision) -> Value {
    match expected {
        ExpectedRevision::Any => "any".into(),
        ExpectedRevision::NoStream => "no_stream".into(),
        ExpectedRevision::StreamExists => "stream_exists".into(),
        ExpectedRevision::Exact(revision) => revision.value().into(),
    }
}

/// `{"items": [{"types": [..], "tags": [..]}]}`.
pub(crate) fn query_json(query: &Query) -> Value {
    let items = query.items.iter().map(|item| {
        let types: Vec<&str> = item.types.iter().map(EventType::as_str).collect();
        let tags: Vec<&str> = item.tags.iter().map(Tag::as_str).collect();
        serde_json::json!({ "types": types, "tags": tags })
    });
    serde_json::json!({ "items": items.collect::<Vec<_>>() })
}

/// `PUT /v1/streams/{stream}/metadata`.
#[derive(Debug, Serialize)]
pub(crate) struct MetadataOut<'a> {
    max_age_seconds: Option<u64>,
    max_count: Option<u64>,
    truncate_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<&'a RawValue>,
}

impl<'a> MetadataOut<'a> {
    pub fn new(metadata: &'a StreamMetadata) -> Result<Self, StoreError> {
        Ok(Self {
            max_age_seconds: metadata.max_age_seconds,
            max_count: metadata.max_count,
            truncate_before: metadata.truncate_before.map(StreamRevision::value),
            custom: json_object(&metadata.custom, "a stream's custom metadata")?,
        })
    }
}

/// What `POST /v1/streams/{stream}` answers.
#[derive(Debug, Deserialize)]
pub(crate) struct AppendAnswer {
    pub first_revision: u64,
    pub last_revision: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// Absent from servers older than the client.
    #[serde(default)]
    pub recorded_at: Option<String>,
    pub replayed: bool,
}

/// What `POST /v1/append` answers.
#[derive(Debug, Deserialize)]
pub(crate) struct MultiAppendAnswer {
    first_position: u64,
    last_position: u64,
    streams: Vec<StreamAnswer>,
    #[serde(default)]
    recorded_at: Option<String>,
    replayed: bool,
}

#[derive(Debug, Deserialize)]
struct StreamAnswer {
    stream: String,
    first_revision: u64,
    last_revision: u64,
}

impl MultiAppendAnswer {
    pub fn into_result(self) -> Result<MultiAppendResult, String> {
        let streams = self
            .streams
            .into_iter()
            .map(|answer| {
                Ok(StreamAppendResult {
                    stream: stream_id(answer.stream)?,
                    first_revision: StreamRevision::new(answer.first_revision),
                    last_revision: StreamRevision::new(answer.last_revision),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(MultiAppendResult {
            first_position: Position::new(self.first_position),
            last_position: Position::new(self.last_position),
            streams,
            recorded_at: self.recorded_at.as_deref().map(timestamp).transpose()?,
            replayed: self.replayed,
        })
    }
}

pub(crate) fn timestamp(text: &str) -> Result<Timestamp, String> {
    text.parse().map_err(|error: strata_core::TimestampParseError| error.to_string())
}

fn stream_id(text: String) -> Result<StreamId, String> {
    StreamId::new(text).map_err(|error| format!("stream: {error}"))
}

/// `{"error": {"code", "message", …details}}`: the details the client turns into outcomes.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: ErrorJson,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorJson {
    pub code: String,
    pub message: String,
    pub stream: Option<String>,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
    pub position: Option<u64>,
}

impl ErrorJson {
    /// The details of a `wrong_expected_revision` conflict.
    pub fn conflict(&self) -> Option<(StreamId, ExpectedRevision, Option<StreamRevision>)> {
        let stream = StreamId::new(self.stream.clone()?).ok()?;
        let expected = match self.expected.as_ref()? {
            Value::String(name) if name == "any" => ExpectedRevision::Any,
            Value::String(name) if name == "no_stream" => ExpectedRevision::NoStream,
            Value::String(name) if name == "stream_exists" => ExpectedRevision::StreamExists,
            other => ExpectedRevision::Exact(StreamRevision::new(other.as_u64()?)),
        };
        let actual = match self.actual.as_ref()? {
            Value::String(name) if name == "no_stream" => None,
            other => Some(StreamRevision::new(other.as_u64()?)),
        };
        Some((stream, expected, actual))
    }
}

/// A page of `GET /v1/streams/{stream}` or `GET /v1/all`.
#[derive(Debug, Deserialize)]
pub(crate) struct PageAnswer<'a> {
    #[serde(borrow)]
    pub events: Vec<EventIn<'a>>,
    pub next: Option<u64>,
}

/// A recorded event as the server renders it (reads, SSE, export).
#[derive(Debug, Deserialize)]
pub(crate) struct EventIn<'a> {
    id: &'a str,
    stream: String,
    #[serde(rename = "type")]
    event_type: String,
    revision: u64,
    position: u64,
    recorded_at: &'a str,
    /// `null` is JSON data too, hence not a plain `Option` (which would read it as absent).
    #[serde(default, borrow, deserialize_with = "some_raw")]
    data: Option<&'a RawValue>,
    data_base64: Option<&'a str>,
    content_type: Option<String>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    tags: Vec<String>,
}

fn some_raw<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

impl EventIn<'_> {
    /// The engine's event, as the embedded store returns it (see the crate docs for what the API
    /// cannot carry).
    pub fn into_recorded(self) -> Result<RecordedEvent, String> {
        let invalid = |field: &str, error: &dyn std::fmt::Display| format!("{field}: {error}");
        let (content_type, data) = match (self.data, self.data_base64) {
            (Some(json), None) => (None, Bytes::copy_from_slice(json.get().as_bytes())),
            (None, Some(encoded)) => {
                let content_type = self.content_type.as_deref().unwrap_or(BINARY_CONTENT_TYPE);
                let content_type = ContentType::new(content_type).map_err(|error| invalid("content_type", &error))?;
                let data = BASE64.decode(encoded).map_err(|error| invalid("data_base64", &error))?;
                (Some(content_type), Bytes::from(data))
            }
            _ => return Err("an event needs either data or data_base64".to_owned()),
        };
        let metadata = match self.metadata.map(RawValue::get) {
            None | Some("{}") => Bytes::new(),
            Some(text) => Bytes::copy_from_slice(text.as_bytes()),
        };
        let tags = self
            .tags
            .into_iter()
            .map(|tag| Tag::new(tag).map_err(|error| invalid("tags", &error)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordedEvent {
            id: EventId::from_uuid(uuid::Uuid::parse_str(self.id).map_err(|error| invalid("id", &error))?),
            stream: stream_id(self.stream)?,
            event_type: EventType::new(self.event_type).map_err(|error| invalid("type", &error))?,
            revision: StreamRevision::new(self.revision),
            position: Position::new(self.position),
            recorded_at: timestamp(self.recorded_at)?,
            content_type,
            data,
            metadata,
            tags: Tags::from_tags(&tags),
            hash: None,
        })
    }
}

/// Parses one recorded event (an SSE message's data).
pub(crate) fn recorded_event(json: &[u8]) -> Result<RecordedEvent, String> {
    let event: EventIn<'_> = serde_json::from_slice(json).map_err(|error| error.to_string())?;
    event.into_recorded()
}

/// The query parameters of a read's start and options.
pub(crate) fn page_params(from: ReadFrom<u64>, options: &ReadOptions) -> Vec<(&'static str, String)> {
    let from = match from {
        ReadFrom::Start => "start".to_owned(),
        ReadFrom::End => "end".to_owned(),
        ReadFrom::At(at) => at.to_string(),
    };
    let direction = match options.direction {
        Direction::Forward => "forward",
        Direction::Backward => "backward",
    };
    // The engine clamps the limit; the API refuses what is out of range. A limit of 0 reads one
    // event that `page` then drops (the answer still says whether the stream exists).
    let limit = options.limit.clamp(1, READ_EVENTS_MAX);
    let mut params = vec![("from", from), ("direction", direction.to_owned()), ("limit", limit.to_string())];
    if let Some(position) = options.until_position {
        params.push(("until_position", position.value().to_string()));
    }
    if let Some(time) = options.until_time {
        params.push(("until_time", rfc3339(time)));
    }
    params
}

/// `time` as the API parses it: RFC 3339, clamped to the years 0000–9999 the format can express.
pub(crate) fn rfc3339(time: Timestamp) -> String {
    const FIRST: Timestamp = Timestamp::from_micros(-62_167_219_200_000_000); // 0000-01-01T00:00:00Z
    const LAST: Timestamp = Timestamp::from_micros(253_402_300_799_999_999); // 9999-12-31T23:59:59.999999Z
    time.clamp(FIRST, LAST).to_string()
}

/// A page as the embedded store returns it. `index` is where an event sits in what was read (its
/// revision or its position).
pub(crate) fn page(
    answer: PageAnswer<'_>,
    options: &ReadOptions,
    index: impl Fn(&RecordedEvent) -> u64,
) -> Result<ReadPage, String> {
    let events = answer.events.into_iter().map(EventIn::into_recorded).collect::<Result<Vec<_>, _>>()?;
    if options.limit == 0 {
        return Ok(ReadPage { events: Vec::new(), more: true });
    }
    // `next` is absent when the read reached the end — and when a backward page ends at index 0,
    // where the embedded store still says `more` if the page is full.
    let full = events.len() >= options.limit.min(READ_EVENTS_MAX);
    let ends_at_zero = options.direction == Direction::Backward && events.last().map(index) == Some(0);
    let more = answer.next.is_some() || (full && ends_at_zero);
    Ok(ReadPage { events, more })
}

/// The query parameters of `filter`, or `None` when it matches nothing (an empty query, which the
/// API refuses rather than answers).
pub(crate) fn filter_params(filter: &Filter) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    if let Some(category) = &filter.category {
        params.push(("category", category.clone()));
    }
    if let Some(prefix) = &filter.stream_prefix {
        params.push(("stream_prefix", prefix.clone()));
    }
    // `types` and `tags` are comma-separated on the wire: names with a comma go into the query.
    let types = filter.event_types.iter().map(EventType::as_str);
    let tags = filter.tags.iter().map(Tag::as_str);
    let query = if types.clone().chain(tags.clone()).any(|name| name.contains(',')) {
        Some(fold_into_query(filter))
    } else {
        for (name, list) in [("types", types.collect::<Vec<_>>()), ("tags", tags.collect())] {
            if !list.is_empty() {
                params.push((name, list.join(",")));
            }
        }
        filter.query.clone()
    };
    match query {
        Some(query) if query.items.is_empty() => return None,
        Some(query) => params.push(("query", query_json(&query).to_string())),
        None => {}
    }
    Some(params)
}

/// The same selection as `filter`'s types, tags and query, as a query alone: each item also needs
/// the filter's tags, and one of the types both allow (an item no type satisfies is dropped).
fn fold_into_query(filter: &Filter) -> Query {
    let whole = QueryItem::default();
    let items = filter.query.as_ref().map_or(std::slice::from_ref(&whole), |query| &query.items[..]);
    let folded = items.iter().filter_map(|item| {
        let types = match (&item.types[..], &filter.event_types[..]) {
            ([], types) | (types, []) => types.to_vec(),
            (theirs, ours) => {
                let both: Vec<_> = theirs.iter().filter(|t| ours.contains(t)).cloned().collect();
                if both.is_empty() {
                    return None;
                }
                both
            }
        };
        Some(QueryItem { types, tags: item.tags.iter().chain(&filter.tags).cloned().collect() })
    });
    Query::new(folded.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &'static [u8]) -> NewEvent {
        NewEvent::new(EventType::new("Noted").unwrap(), Bytes::from_static(data))
    }

    fn encoded(event: &NewEvent) -> Value {
        serde_json::to_value(EventOut::new(None, event).unwrap()).unwrap()
    }

    #[test]
    fn payloads_travel_as_json_when_they_can_and_as_base64_otherwise() {
        // JSON is sent as its own text, inner whitespace included.
        let text = serde_json::to_string(&EventOut::new(None, &event(br#"{ "a" : [1, 2.50] }"#)).unwrap()).unwrap();
        assert_eq!(text, r#"{"type":"Noted","data":{ "a" : [1, 2.50] }}"#);
        assert_eq!(encoded(&event(b"null"))["data"], Value::Null);
        // Whitespace around JSON cannot be a JSON field: base64, marked JSON.
        let padded = encoded(&event(b" {}\n"));
        assert_eq!((&padded["data_base64"], &padded["content_type"]), (&"IHt9Cg==".into(), &"application/json".into()));
        // Not JSON, no content type: the API can only store it as binary.
        assert_eq!(encoded(&event(b"\xff\x00"))["content_type"], "application/octet-stream");
        let typed = event(br#"{"a":1}"#).with_content_type(ContentType::new("text/x-json").unwrap());
        assert_eq!(encoded(&typed)["content_type"], "text/x-json");
        assert!(encoded(&typed).get("data").is_none());
    }

    #[test]
    fn metadata_must_be_an_object_and_empty_objects_are_omitted() {
        assert!(encoded(&event(b"1").with_metadata(&b"{}"[..])).get("metadata").is_none());
        assert_eq!(encoded(&event(b"1").with_metadata(&b" {\"k\": 1} "[..]))["metadata"], serde_json::json!({"k": 1}));
        for bad in [&b"[1]"[..], b"\xff", b"{"] {
            assert!(EventOut::new(None, &event(b"1").with_metadata(bad)).is_err());
        }
    }

    #[test]
    fn recorded_events_decode_null_data_binary_data_and_empty_metadata() {
        let json = br#"{"id":"0195f1c2-1111-7000-8000-000000000001","stream":"a-1","type":"T","revision":2,
            "position":9,"recorded_at":"2026-11-26T08:07:55.123456Z","data":null,"metadata":{},"tags":["k:v"],
            "new_field":true}"#;
        let event = recorded_event(json).unwrap();
        assert_eq!((&event.data[..], event.content_type, event.metadata.len()), (&b"null"[..], None, 0));
        assert_eq!((event.revision.value(), event.position.value(), event.tags.len()), (2, 9, 1));
        assert_eq!(event.recorded_at.to_string(), "2026-11-26T08:07:55.123456Z");
        let json = br#"{"id":"0195f1c2-1111-7000-8000-000000000001","stream":"a-1","type":"T","revision":0,
            "position":0,"recorded_at":"2026-11-26T08:07:55.000001Z","data_base64":"AAE=",
            "content_type":"image/png","metadata":{"by":"x"},"tags":[]}"#;
        let event = recorded_event(json).unwrap();
        assert_eq!((&event.data[..], event.content_type.unwrap().as_str()), (&[0u8, 1][..], "image/png"));
        assert_eq!(&event.metadata[..], br#"{"by":"x"}"#);
        assert!(recorded_event(br#"{"id":"x"}"#).is_err());
    }

    #[test]
    fn filters_with_commas_become_queries_that_select_the_same_events() {
        let types = |names: &[&str]| names.iter().map(|n| EventType::new(*n).unwrap()).collect::<Vec<_>>();
        let tags = |names: &[&str]| names.iter().map(|n| Tag::new(*n).unwrap()).collect::<Vec<_>>();
        let plain = Filter { event_types: types(&["A", "B"]), tags: tags(&["k:1"]), ..Filter::default() };
        assert_eq!(filter_params(&plain).unwrap(), [("types", "A,B".to_owned()), ("tags", "k:1".to_owned())]);
        let query = Query::new(vec![
            QueryItem { types: types(&["B", "C"]), tags: tags(&["x:1"]) },
            QueryItem { types: types(&["C"]), tags: vec![] },
            QueryItem { types: vec![], tags: vec![] },
        ]);
        let filter = Filter { tags: tags(&["names:a,b"]), query: Some(query), ..plain };
        let params = filter_params(&filter).unwrap();
        assert_eq!(params.len(), 1);
        let expected = serde_json::json!({ "items": [
            { "types": ["B"], "tags": ["x:1", "names:a,b"] },
            { "types": ["A", "B"], "tags": ["names:a,b"] },
        ]});
        assert_eq!(params[0], ("query", expected.to_string()));
        // An empty query matches nothing; so does a folded query whose items all drop out.
        assert!(filter_params(&Filter { query: Some(Query::default()), ..Filter::default() }).is_none());
        let disjoint = Query::new(vec![QueryItem { types: types(&["C"]), tags: vec![] }]);
        let filter = Filter { event_types: types(&["A,B"]), query: Some(disjoint), ..Filter::default() };
        assert!(filter_params(&filter).is_none());
    }
}
