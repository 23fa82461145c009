//! The JSON of recorded events, rendered by hand into one buffer: reads of thousands of events and
//! SSE deliveries are the hot path, and `data` is copied as the stored JSON. What it writes is
//! [`strata_wire::RecordedEvent`] exactly — field for field, in its order — which the tests check by
//! parsing rendered events back with that type. Reads, SSE messages, group deliveries and exports
//! all render here, so they agree.
//!
//! System events of `$streams` (metadata, deletes, tombstones) are stored in the engine's binary
//! encoding ([`strata_storage::SystemChange`]); they render as JSON data
//! ([`strata_wire::MetadataChanged`], [`strata_wire::StreamDeleted`],
//! [`strata_wire::StreamTombstoned`]), off the hot path (they are rare), and `convert` parses that
//! JSON back on import.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
use strata_core::RecordedEvent;
use strata_storage::{SYSTEM_STREAM, SystemChange};

/// Appends `event` as one JSON object to `out`, with no allocation per event beyond the base64 of
/// binary payloads (and the JSON of the rare system event).
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
    let system = if event.event_type.as_str().starts_with('$') { system_data(event) } else { None };
    if let Some(json) = system {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(&json);
    } else if event.content_type.is_none() && is_json(&event.data) {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(&event.data);
    } else {
        out.extend_from_slice(b",\"data_base64\":\"");
        out.extend_from_slice(BASE64.encode(&event.data).as_bytes());
        out.extend_from_slice(b"\",\"content_type\":");
        let content_type = event.content_type.as_ref().map_or(strata_wire::CONTENT_TYPE_BINARY_DEFAULT, |c| c.as_str());
        write_string(out, content_type);
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
    out.extend_from_slice(b"],\"hash\":");
    match &event.hash {
        Some(hash) => {
            out.push(b'"');
            out.extend_from_slice(&hash.to_hex());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// The JSON data of a system event of `$streams`, or `None` for any other event (and for one whose
/// data does not decode, which then shows as the bytes it is).
pub fn system_data(event: &RecordedEvent) -> Option<Vec<u8>> {
    if event.stream.as_str() != SYSTEM_STREAM {
        return None;
    }
    let change = SystemChange::decode(event.event_type.as_str(), &event.data).ok()??;
    let json = match change {
        SystemChange::Metadata { stream, metadata } => {
            let (custom, custom_base64) = match exact_json(&metadata.custom) {
                _ if metadata.custom.is_empty() => (None, None),
                // `null` would read back as "no custom metadata": carried as bytes instead.
                Some(raw) if raw.get() != "null" => (Some(raw.to_owned()), None),
                _ => (None, Some(BASE64.encode(&metadata.custom))),
            };
            serde_json::to_vec(&strata_wire::MetadataChanged {
                stream,
                max_age_seconds: metadata.max_age_seconds,
                max_count: metadata.max_count,
                truncate_before: metadata.truncate_before.map(|revision| revision.value()),
                custom,
                custom_base64,
            })
        }
        SystemChange::Deleted { stream, truncate_before } => {
            serde_json::to_vec(&strata_wire::StreamDeleted { stream, truncate_before })
        }
        SystemChange::Tombstone { stream } => serde_json::to_vec(&strata_wire::StreamTombstoned { stream }),
    };
    Some(json.expect("system events render"))
}

/// `bytes` as one JSON value, if they are exactly that: UTF-8, valid, and without whitespace around
/// it (which a JSON field could not carry back).
pub fn exact_json(bytes: &[u8]) -> Option<&RawValue> {
    let text = std::str::from_utf8(bytes).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    (raw.get().len() == text.len()).then_some(raw)
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
pub fn is_json(bytes: &[u8]) -> bool {
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

/// `{"events":[…],"next":…}` ([`strata_wire::ReadPage`]).
pub fn write_page(events: &[RecordedEvent], next: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + events.iter().map(|e| 320 + e.data.len() + e.metadata.len()).sum::<usize>());
    out.extend_from_slice(b"{\"events\":[");
    for (at, event) in events.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        write_event(&mut out, event);
    }
    out.extend_from_slice(b"],\"next\":");
    match next {
        Some(next) => write_u64(&mut out, next),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    out
}

/// `{"deliveries":[{"delivery_id","attempt","event"}…]}` ([`strata_wire::FetchResponse`]).
pub fn write_deliveries(deliveries: &[strata_storage::Delivery]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + deliveries.len() * 384);
    out.extend_from_slice(b"{\"deliveries\":[");
    for (at, delivery) in deliveries.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"delivery_id\":");
        write_string(&mut out, &delivery.delivery_id);
        out.extend_from_slice(b",\"attempt\":");
        write_u64(&mut out, u64::from(delivery.attempt));
        out.extend_from_slice(b",\"event\":");
        write_event(&mut out, &delivery.event);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_core::{ContentType, EventHash, EventId, EventType, Position, StreamId, StreamMetadata, StreamRevision};

    fn rendered(event: &RecordedEvent) -> Vec<u8> {
        let mut out = Vec::new();
        write_event(&mut out, event);
        out
    }

    /// What the fast renderer wrote, read with the wire's type, is the event: field for field, and
    /// back into the engine's event it renders to the same bytes (what export → import relies on).
    fn check(event: &RecordedEvent) {
        let json = rendered(event);
        let wire: strata_wire::RecordedEvent =
            serde_json::from_slice(&json).unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&json)));
        assert_eq!(wire.id, event.id.to_string());
        assert_eq!(
            (wire.stream.as_str(), wire.event_type.as_str()),
            (event.stream.as_str(), event.event_type.as_str())
        );
        assert_eq!((wire.revision, wire.position), (event.revision.value(), event.position.value()));
        assert_eq!(wire.recorded_at, event.recorded_at.to_string());
        assert_eq!(wire.tags, event.tags.iter().map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(wire.hash, event.hash.map(|hash| hash.to_string()));
        match (&wire.data, &wire.data_base64) {
            (Some(data), None) if system_data(event).is_some() => {
                assert_eq!(data.get().as_bytes(), &system_data(event).unwrap()[..])
            }
            (Some(data), None) => assert_eq!(data.get().as_bytes(), &event.data[..]),
            (None, Some(encoded)) => {
                assert_eq!(BASE64.decode(encoded).unwrap(), &event.data[..]);
                let expected =
                    event.content_type.as_ref().map_or(strata_wire::CONTENT_TYPE_BINARY_DEFAULT, |c| c.as_str());
                assert_eq!(wire.content_type.as_deref(), Some(expected));
            }
            other => panic!("neither or both payloads: {other:?}"),
        }
        // As an import reads it (strict), and rendered again.
        let imported = crate::convert::parse_exported_event(&json).unwrap();
        assert_eq!(String::from_utf8(rendered(&imported)).unwrap(), String::from_utf8(json).unwrap());
    }

    fn event(stream: &str, event_type: &str, data: &[u8]) -> RecordedEvent {
        RecordedEvent {
            id: EventId::from_bytes([9; 16]),
            stream: StreamId::new(stream).unwrap(),
            event_type: EventType::new(event_type).unwrap(),
            revision: StreamRevision::new(3),
            position: Position::new(41),
            recorded_at: strata_core::Timestamp::from_micros(1_764_000_000_123_456),
            content_type: None,
            data: bytes::Bytes::copy_from_slice(data),
            metadata: bytes::Bytes::new(),
            tags: Default::default(),
            hash: None,
        }
    }

    #[test]
    fn system_events_render_as_json_and_read_back() {
        let metadata = StreamMetadata {
            max_age_seconds: Some(60),
            max_count: None,
            truncate_before: Some(StreamRevision::new(7)),
            custom: bytes::Bytes::from_static(br#"{"owner": "ann"}"#),
        };
        let changes = [
            SystemChange::Metadata { stream: "account-1".into(), metadata: metadata.clone() },
            SystemChange::Metadata { stream: "a-2".into(), metadata: StreamMetadata::default() },
            // Custom bytes that are not JSON (the embedded API takes any), and `null`.
            SystemChange::Metadata {
                stream: "a-3".into(),
                metadata: StreamMetadata { custom: bytes::Bytes::from_static(b"\xff{"), ..StreamMetadata::default() },
            },
            SystemChange::Metadata {
                stream: "a-4".into(),
                metadata: StreamMetadata { custom: bytes::Bytes::from_static(b"null"), ..StreamMetadata::default() },
            },
            SystemChange::Deleted { stream: "account-1".into(), truncate_before: 9 },
            SystemChange::Tombstone { stream: "account-\"2\"".into() },
        ];
        for change in changes {
            let (event_type, data) = change.encode();
            let system = event(SYSTEM_STREAM, event_type, &data);
            check(&system);
            let json: serde_json::Value = serde_json::from_slice(&rendered(&system)).unwrap();
            assert_eq!(json["data"]["stream"], change.stream(), "{json}");
        }
        let json: serde_json::Value = serde_json::from_slice(&rendered(&event(
            SYSTEM_STREAM,
            strata_storage::METADATA_TYPE,
            &SystemChange::Metadata { stream: "account-1".into(), metadata }.encode().1,
        )))
        .unwrap();
        assert_eq!(
            json["data"],
            serde_json::json!({ "stream": "account-1", "max_age_seconds": 60, "max_count": null,
                "truncate_before": 7, "custom": { "owner": "ann" } })
        );
        // A placeholder carries no data; `$store-created` is JSON already.
        check(&event("gone-1", strata_storage::SCAVENGED_TYPE, b""));
        check(&event("$store", "$store-created", br#"{"store_id":"x","format_version":2}"#));
        // Undecodable data of a system type shows as the bytes it is.
        check(&event(SYSTEM_STREAM, strata_storage::DELETED_TYPE, b"\x01"));
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,8}(-[0-9]{1,3})?",
            // Quotes, backslashes, non-ASCII: escaped by the general escaper.
            "[a-zA-Z0-9 \"\\\\é€😀/:,.-]{1,24}",
        ]
    }

    prop_compose! {
        fn any_event()(
            stream in name(),
            event_type in name(),
            revision in any::<u64>(),
            position in any::<u64>(),
            micros in 0i64..253_402_300_799_999_999,
            payload in prop_oneof![
                Just(br#"{"a":[1,2.5,"x\n"],"b":null}"#.to_vec()),
                Just(b"null".to_vec()),
                Just(br#""text""#.to_vec()),
                proptest::collection::vec(any::<u8>(), 0..64),
            ],
            content_type in proptest::option::of("[a-z]{1,8}/[a-z0-9.+-]{1,12}"),
            metadata in prop_oneof![
                Just(Vec::new()),
                Just(br#"{"by":"test","n":1.50}"#.to_vec()),
                Just(b"\xff\x00not json".to_vec()),
            ],
            tags in proptest::collection::vec("[a-z]{1,6}:[a-zA-Z0-9 \"é,]{1,10}", 0..5),
            hash in proptest::option::of(any::<[u8; 32]>()),
        ) -> RecordedEvent {
            let tags: Vec<strata_core::Tag> = tags.into_iter().map(|tag| strata_core::Tag::new(tag).unwrap()).collect();
            RecordedEvent {
                id: EventId::from_bytes([7; 16]),
                stream: StreamId::new(stream).unwrap(),
                event_type: EventType::new(event_type).unwrap(),
                revision: StreamRevision::new(revision),
                position: Position::new(position),
                recorded_at: strata_core::Timestamp::from_micros(micros),
                content_type: content_type.map(|c| ContentType::new(c).unwrap()),
                data: payload.into(),
                metadata: metadata.into(),
                tags: strata_core::Tags::from_tags(&tags),
                hash: hash.map(EventHash::from_bytes),
            }
        }
    }

    proptest! {
        #[test]
        fn the_fast_renderer_writes_the_wire_type(event in any_event()) {
            // Metadata that is not JSON renders as `{"base64": …}`: shown, but not imported back as
            // the same bytes, so the import half of `check` does not apply to it.
            if event.metadata.is_empty() || is_json(&event.metadata) {
                check(&event);
            } else {
                let json = rendered(&event);
                let wire: strata_wire::RecordedEvent = serde_json::from_slice(&json).unwrap();
                let shown = wire.metadata.get().starts_with(r#"{"base64":"#);
                prop_assert!(shown, "{}", wire.metadata.get());
            }
        }
    }
}
