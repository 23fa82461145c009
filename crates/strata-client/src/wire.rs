//! The client's side of the API's JSON (`strata_wire`): the engine's events, appends and metadata
//! into the wire's requests; the wire's answers — recorded events, pages, append answers, error
//! bodies — into the engine's types; and the query parameters of reads and filters.
//!
//! Encoding keeps payloads byte for byte where the API can carry them: JSON data goes out as the
//! stored text itself (a `RawValue`, never re-serialized), anything else as base64. Decoding is
//! lenient about fields it does not know (a newer server may add some: the wire's answer types
//! ignore them) and strict about the ones it reads: names, times and content types are validated as
//! the engine validates them.

use crate::client::refused;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::value::RawValue;
use strata_core::limits::READ_EVENTS_MAX;
use strata_core::{
    ContentType, EventHash, EventId, EventType, ExpectedRevision, NewEvent, Position, Query, QueryItem, RecordedEvent,
    StreamId, StreamMetadata, StreamRevision, Tag, Tags, Timestamp,
};
use strata_store::StoreError;
use strata_store::{
    Direction, Filter, MultiAppend, MultiAppendResult, ReadFrom, ReadOptions, ReadPage, StreamAppendResult,
};
use strata_wire::{CONTENT_TYPE_BINARY_DEFAULT as BINARY_CONTENT_TYPE, CONTENT_TYPE_JSON as JSON_CONTENT_TYPE};

/// `bytes` as one JSON value, if they are exactly that: UTF-8, valid, and without whitespace around
/// it (which a JSON field could not carry).
fn exact_json(bytes: &[u8]) -> Option<&RawValue> {
    let text = std::str::from_utf8(bytes).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    (raw.get().len() == text.len()).then_some(raw)
}

/// A JSON object as the API takes metadata: surrounding whitespace is dropped (a JSON field cannot
/// carry it); `{}` is sent as no metadata, which is how the server renders empty metadata.
fn json_object(bytes: &[u8], what: &str) -> Result<Option<Box<RawValue>>, StoreError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let object = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        .filter(|raw| raw.get().starts_with('{'));
    match object {
        Some(raw) if raw.get() == "{}" => Ok(None),
        Some(raw) => Ok(Some(raw.to_owned())),
        None => Err(refused(format!("{what} must be a JSON object to go through the HTTP API"))),
    }
}

/// An event to append, as `POST /v1/streams/{stream}` (no `stream`) and `POST /v1/append` take it.
pub(crate) fn new_event(stream: Option<&StreamId>, event: &NewEvent) -> Result<strata_wire::NewEvent, StoreError> {
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
    let tags: Vec<String> = event.tags().iter().map(|tag| tag.as_str().to_owned()).collect();
    Ok(strata_wire::NewEvent {
        id: event.id().map(|id| id.to_string()),
        stream: stream.map(|stream| stream.as_str().to_owned()),
        event_type: event.event_type().as_str().to_owned(),
        data: json.map(ToOwned::to_owned),
        data_base64: json.is_none().then(|| BASE64.encode(data)),
        content_type: content_type.map(str::to_owned),
        metadata: json_object(event.metadata(), "an event's metadata")?,
        tags: (!tags.is_empty()).then_some(tags),
    })
}

/// `POST /v1/streams/{stream}`.
pub(crate) fn append_request(
    expected: ExpectedRevision,
    events: &[NewEvent],
) -> Result<strata_wire::AppendRequest, StoreError> {
    let events = events.iter().map(|event| new_event(None, event)).collect::<Result<_, _>>()?;
    Ok(strata_wire::AppendRequest { expected_revision: Some(expected.into()), events })
}

/// `POST /v1/append`.
pub(crate) fn multi_append_request(append: &MultiAppend) -> Result<strata_wire::MultiAppendRequest, StoreError> {
    let events =
        append.events.iter().map(|(stream, event)| new_event(Some(stream), event)).collect::<Result<_, _>>()?;
    let checks = append
        .checks
        .iter()
        .map(|(stream, expected)| strata_wire::Check {
            stream: stream.as_str().to_owned(),
            expected_revision: (*expected).into(),
        })
        .collect();
    let condition = append.condition.as_ref().map(|condition| strata_wire::Condition {
        query: strata_wire::Query::from(&condition.query),
        after: condition.after.map(Position::value),
    });
    Ok(strata_wire::MultiAppendRequest { events, checks, condition })
}

/// A query as the `query` parameter carries it: `{"items": [{"tags": [..], "types": [..]}]}`.
pub(crate) fn query_text(query: &Query) -> String {
    serde_json::to_value(strata_wire::Query::from(query)).expect("a query renders").to_string()
}

/// `PUT /v1/streams/{stream}/metadata`.
pub(crate) fn metadata_request(metadata: &StreamMetadata) -> Result<strata_wire::StreamMetadata, StoreError> {
    Ok(strata_wire::StreamMetadata {
        max_age_seconds: metadata.max_age_seconds,
        max_count: metadata.max_count,
        truncate_before: metadata.truncate_before.map(StreamRevision::value),
        custom: json_object(&metadata.custom, "a stream's custom metadata")?,
    })
}

/// What `POST /v1/append` answered, as the engine's result.
pub(crate) fn multi_append_result(answer: strata_wire::MultiAppendResponse) -> Result<MultiAppendResult, String> {
    let streams = answer
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
        first_position: Position::new(answer.first_position),
        last_position: Position::new(answer.last_position),
        streams,
        recorded_at: answer.recorded_at.as_deref().map(timestamp).transpose()?,
        replayed: answer.replayed,
    })
}

pub(crate) fn timestamp(text: &str) -> Result<Timestamp, String> {
    text.parse().map_err(|error: strata_core::TimestampParseError| error.to_string())
}

fn stream_id(text: String) -> Result<StreamId, String> {
    StreamId::new(text).map_err(|error| format!("stream: {error}"))
}

/// The details of a `wrong_expected_revision` conflict.
pub(crate) fn conflict(
    error: &strata_wire::ErrorDetail,
) -> Option<(StreamId, ExpectedRevision, Option<StreamRevision>)> {
    let stream = StreamId::new(error.stream.clone()?).ok()?;
    Some((stream, error.expected?.into(), error.actual?.into()))
}

/// A recorded event as the embedded store returns it (see the crate docs for what the API cannot
/// carry).
pub(crate) fn recorded(event: strata_wire::RecordedEvent) -> Result<RecordedEvent, String> {
    let invalid = |field: &str, error: &dyn std::fmt::Display| format!("{field}: {error}");
    let (content_type, data) = match (event.data, event.data_base64) {
        (Some(json), None) => (None, Bytes::copy_from_slice(json.get().as_bytes())),
        (None, Some(encoded)) => {
            let content_type = event.content_type.as_deref().unwrap_or(BINARY_CONTENT_TYPE);
            let content_type = ContentType::new(content_type).map_err(|error| invalid("content_type", &error))?;
            let data = BASE64.decode(encoded).map_err(|error| invalid("data_base64", &error))?;
            (Some(content_type), Bytes::from(data))
        }
        _ => return Err("an event needs either data or data_base64".to_owned()),
    };
    let metadata = match event.metadata.get() {
        "{}" => Bytes::new(),
        text => Bytes::copy_from_slice(text.as_bytes()),
    };
    let tags = event
        .tags
        .into_iter()
        .map(|tag| Tag::new(tag).map_err(|error| invalid("tags", &error)))
        .collect::<Result<Vec<_>, _>>()?;
    let hash = event.hash.as_deref().map(EventHash::parse).transpose().map_err(|error| invalid("hash", &error))?;
    Ok(RecordedEvent {
        id: EventId::from_uuid(uuid::Uuid::parse_str(&event.id).map_err(|error| invalid("id", &error))?),
        stream: stream_id(event.stream)?,
        event_type: EventType::new(event.event_type).map_err(|error| invalid("type", &error))?,
        revision: StreamRevision::new(event.revision),
        position: Position::new(event.position),
        recorded_at: timestamp(&event.recorded_at)?,
        content_type,
        data,
        metadata,
        tags: Tags::from_tags(&tags),
        hash,
    })
}

/// Parses one recorded event (an SSE message's data).
pub(crate) fn recorded_event(json: &[u8]) -> Result<RecordedEvent, String> {
    let event: strata_wire::RecordedEvent = serde_json::from_slice(json).map_err(|error| error.to_string())?;
    recorded(event)
}

/// The query parameters of a read's start and options.
pub(crate) fn page_params(from: ReadFrom<u64>, options: &ReadOptions) -> Vec<(&'static str, String)> {
    let from = match from {
        ReadFrom::Start => strata_wire::ReadFrom::Start,
        ReadFrom::End => strata_wire::ReadFrom::End,
        ReadFrom::At(at) => strata_wire::ReadFrom::At(at),
    };
    let direction = match options.direction {
        Direction::Forward => strata_wire::Direction::Forward,
        Direction::Backward => strata_wire::Direction::Backward,
    };
    // The engine clamps the limit; the API refuses what is out of range. A limit of 0 reads one
    // event that `page` then drops (the answer still says whether the stream exists).
    let limit = options.limit.clamp(1, READ_EVENTS_MAX);
    let mut params =
        vec![("from", from.to_string()), ("direction", direction.to_string()), ("limit", limit.to_string())];
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
    answer: strata_wire::ReadPage,
    options: &ReadOptions,
    index: impl Fn(&RecordedEvent) -> u64,
) -> Result<ReadPage, String> {
    let events = answer.events.into_iter().map(recorded).collect::<Result<Vec<_>, _>>()?;
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
        Some(query) => params.push(("query", query_text(&query))),
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
    use serde_json::Value;

    fn event(data: &'static [u8]) -> NewEvent {
        NewEvent::new(EventType::new("Noted").unwrap(), Bytes::from_static(data))
    }

    fn encoded(event: &NewEvent) -> Value {
        serde_json::to_value(new_event(None, event).unwrap()).unwrap()
    }

    #[test]
    fn payloads_travel_as_json_when_they_can_and_as_base64_otherwise() {
        // JSON is sent as its own text, inner whitespace included.
        let text = serde_json::to_string(&new_event(None, &event(br#"{ "a" : [1, 2.50] }"#)).unwrap()).unwrap();
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
            assert!(new_event(None, &event(b"1").with_metadata(bad)).is_err());
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
