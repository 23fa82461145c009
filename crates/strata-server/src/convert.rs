//! From the wire's shapes ([`strata_wire`]) to the engine's types, with messages that name the field
//! and say what to fix. (The other direction, for recorded events, is `render`.)

use crate::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
use strata_core::{
    ContentType, EventHash, EventId, EventType, NewEvent, Query, QueryItem, RecordedEvent, StreamId, StreamMetadata,
    StreamRevision, Tag,
};
use strata_storage::{DELETED_TYPE, METADATA_TYPE, SCAVENGED_TYPE, SYSTEM_STREAM, SystemChange, TOMBSTONE_TYPE};
use strata_wire::{CONTENT_TYPE_BINARY_DEFAULT, CONTENT_TYPE_JSON};

pub fn stream_id(text: String, field: &str) -> Result<StreamId, ApiError> {
    StreamId::new(text).map_err(|error| ApiError::from(error).at(field))
}

fn base64(encoded: &str, field: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(encoded.as_bytes())
        .map_err(|error| ApiError::invalid(format!("{field} is not valid base64: {error}")))
}

/// An event to append, as the engine takes it.
pub fn new_event(event: strata_wire::NewEvent) -> Result<NewEvent, ApiError> {
    let event_type = EventType::new(event.event_type).map_err(|error| ApiError::from(error).at("type"))?;
    let (data, content_type) = match (event.data, event.data_base64, event.content_type) {
        (Some(_), Some(_), _) => {
            return Err(ApiError::invalid("give either data (JSON) or data_base64 (binary), not both"));
        }
        (None, None, _) => return Err(ApiError::invalid("each event needs data (JSON) or data_base64 (binary)")),
        (Some(data), None, None) => (bytes::Bytes::copy_from_slice(data.get().as_bytes()), None),
        (Some(data), None, Some(content_type)) if content_type == CONTENT_TYPE_JSON => {
            (bytes::Bytes::copy_from_slice(data.get().as_bytes()), None)
        }
        (Some(_), None, Some(_)) => {
            return Err(ApiError::invalid(
                "content_type goes with data_base64; JSON data needs no content_type (or application/json)",
            ));
        }
        (None, Some(encoded), content_type) => {
            let data = base64(&encoded, "data_base64")?;
            let content_type = content_type.unwrap_or_else(|| CONTENT_TYPE_BINARY_DEFAULT.to_owned());
            // JSON sent as base64 is still JSON: stored like `data`, so reads render it as JSON.
            let content_type = if content_type == CONTENT_TYPE_JSON {
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
    let mut new_event = NewEvent::new(event_type, data);
    if let Some(content_type) = content_type {
        new_event = new_event.with_content_type(content_type);
    }
    if let Some(id) = event.id {
        let uuid = uuid::Uuid::parse_str(&id)
            .map_err(|error| ApiError::invalid(format!("id {id:?} is not a UUID: {error}")))?;
        if uuid.is_nil() {
            return Err(ApiError::invalid("id must not be the nil UUID"));
        }
        new_event = new_event.with_id(EventId::from_uuid(uuid));
    }
    if let Some(metadata) = event.metadata {
        if !metadata.get().trim_start().starts_with('{') {
            return Err(ApiError::invalid(format!("metadata must be a JSON object, got {}", metadata.get())));
        }
        new_event = new_event.with_metadata(bytes::Bytes::copy_from_slice(metadata.get().as_bytes()));
    }
    if let Some(tags) = event.tags {
        let tags = tags
            .into_iter()
            .enumerate()
            .map(|(at, tag)| Tag::new(tag).map_err(|error| ApiError::from(error).at(&format!("tags[{at}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        new_event = new_event.with_tags(tags)?;
    }
    Ok(new_event)
}

/// A DCB query (at least one item).
pub fn query(query: strata_wire::Query) -> Result<Query, ApiError> {
    let items = query
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

/// Parses one exported event (a line of an export) back into the engine's event.
pub fn parse_exported_event(line: &[u8]) -> Result<RecordedEvent, ApiError> {
    let exported: strata_wire::ImportedEvent =
        serde_json::from_slice(line).map_err(|error| ApiError::invalid(format!("not an exported event: {error}")))?;
    recorded_event(exported.0)
}

/// An exported event as the engine imports it. System events of `$streams` given as JSON (how reads
/// render them) are encoded as the engine stores them; given as base64 (exports of older versions),
/// they are taken as they are.
pub fn recorded_event(exported: strata_wire::RecordedEvent) -> Result<RecordedEvent, ApiError> {
    let uuid = uuid::Uuid::parse_str(&exported.id)
        .map_err(|error| ApiError::invalid(format!("id {:?} is not a UUID: {error}", exported.id)))?;
    let stream = StreamId::new(exported.stream).map_err(|error| ApiError::from(error).at("stream"))?;
    let event_type = EventType::new(exported.event_type).map_err(|error| ApiError::from(error).at("type"))?;
    let (data, content_type) = match (exported.data, exported.data_base64, exported.content_type) {
        (Some(data), None, None) if stream.as_str() == SYSTEM_STREAM => {
            (bytes::Bytes::from(system_change(event_type.as_str(), &data)?.encode().1), None)
        }
        (Some(data), None, None) => (bytes::Bytes::copy_from_slice(data.get().as_bytes()), None),
        // A placeholder is stored without a content type; it renders with the default one.
        (None, Some(encoded), Some(content_type))
            if event_type.as_str() == SCAVENGED_TYPE
                && encoded.is_empty()
                && content_type == CONTENT_TYPE_BINARY_DEFAULT =>
        {
            (bytes::Bytes::new(), None)
        }
        (None, Some(encoded), Some(content_type)) => {
            let data = base64(&encoded, "data_base64")?;
            let content_type =
                ContentType::new(content_type).map_err(|error| ApiError::from(error).at("content_type"))?;
            (bytes::Bytes::from(data), Some(content_type))
        }
        _ => {
            return Err(ApiError::invalid("an exported event has either data, or data_base64 with content_type"));
        }
    };
    // Empty metadata is rendered as `{}`; anything else is kept byte for byte.
    let metadata = match exported.metadata.get() {
        "{}" => bytes::Bytes::new(),
        other if other.starts_with('{') => bytes::Bytes::copy_from_slice(other.as_bytes()),
        other => return Err(ApiError::invalid(format!("metadata must be a JSON object, got {other}"))),
    };
    let tags = exported
        .tags
        .into_iter()
        .map(|tag| Tag::new(tag).map_err(|error| ApiError::from(error).at("tags")))
        .collect::<Result<Vec<_>, _>>()?;
    if tags.len() > strata_core::limits::TAGS_PER_EVENT_MAX {
        return Err(ApiError::invalid(format!("an event carries {} tags; the limit is 32", tags.len())));
    }
    let hash = exported
        .hash
        .map(|hash| EventHash::parse(&hash).map_err(|error| ApiError::invalid(error.to_string()).at("hash")))
        .transpose()?;
    Ok(RecordedEvent {
        id: EventId::from_uuid(uuid),
        stream,
        event_type,
        revision: StreamRevision::new(exported.revision),
        position: strata_core::Position::new(exported.position),
        recorded_at: exported
            .recorded_at
            .parse()
            .map_err(|error: strata_core::TimestampParseError| ApiError::invalid(error.to_string()))?,
        content_type,
        data,
        metadata,
        tags: strata_core::Tags::from_tags(&tags),
        hash,
    })
}

fn parse_object<T: serde::de::DeserializeOwned>(data: &RawValue) -> Result<T, serde_json::Error> {
    serde_json::from_str::<strata_wire::de::Object<T>>(data.get()).map(|object| object.0)
}

/// The change a system event's JSON data describes (the shapes `render::system_data` writes).
fn system_change(event_type: &str, data: &RawValue) -> Result<SystemChange, ApiError> {
    let parse_error =
        |error: serde_json::Error| ApiError::invalid(format!("the data of a {event_type} event: {error}"));
    let change = match event_type {
        METADATA_TYPE => {
            let change: strata_wire::MetadataChanged = parse_object(data).map_err(parse_error)?;
            let custom = match (change.custom, change.custom_base64) {
                (None, None) => bytes::Bytes::new(),
                (Some(custom), None) => bytes::Bytes::copy_from_slice(custom.get().as_bytes()),
                (None, Some(encoded)) => bytes::Bytes::from(base64(&encoded, "custom_base64")?),
                (Some(_), Some(_)) => return Err(ApiError::invalid("give custom or custom_base64, not both")),
            };
            let metadata = StreamMetadata {
                max_age_seconds: change.max_age_seconds,
                max_count: change.max_count,
                truncate_before: change.truncate_before.map(StreamRevision::new),
                custom,
            };
            SystemChange::Metadata { stream: change.stream, metadata }
        }
        DELETED_TYPE => {
            let change: strata_wire::StreamDeleted = parse_object(data).map_err(parse_error)?;
            SystemChange::Deleted { stream: change.stream, truncate_before: change.truncate_before }
        }
        TOMBSTONE_TYPE => {
            let change: strata_wire::StreamTombstoned = parse_object(data).map_err(parse_error)?;
            SystemChange::Tombstone { stream: change.stream }
        }
        other => {
            return Err(ApiError::invalid(format!(
                "{SYSTEM_STREAM} holds only metadata and deletion events, not {other}"
            )));
        }
    };
    // The target is checked before it is encoded (its length must fit the encoding); the engine
    // checks the rest of what it imports.
    stream_id(change.stream().to_owned(), "data.stream")?;
    Ok(change)
}
