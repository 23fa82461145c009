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
