//! System events: stream metadata, soft deletes and tombstones are events in the reserved stream
//! [`SYSTEM_STREAM`], so they are durable, ordered and recovered like every other event. Their data
//! is a small binary encoding (little-endian):
//!
//! ```text
//! target_len u16 | target stream id
//! $metadata:  flags u8 (1 max_age_seconds, 2 max_count, 4 truncate_before) | u64 per flag set | custom bytes
//! $deleted:   truncate_before u64 (the stream's last revision + 1 when it was deleted)
//! $tombstone: nothing more
//! ```

use strata_core::{StreamMetadata, StreamRevision};

pub const SYSTEM_STREAM: &str = "$streams";
pub const METADATA_TYPE: &str = "$metadata";
pub const DELETED_TYPE: &str = "$deleted";
pub const TOMBSTONE_TYPE: &str = "$tombstone";
/// The type of the placeholder the scavenger leaves where it removed an event's data: the position,
/// stream, revision, id and time stay; type, data, metadata and tags go.
pub const SCAVENGED_TYPE: &str = "$scavenged";

const MAX_AGE: u8 = 1;
const MAX_COUNT: u8 = 2;
const TRUNCATE_BEFORE: u8 = 4;

/// A decoded system event: what a `$metadata`, `$deleted` or `$tombstone` event of [`SYSTEM_STREAM`]
/// says. [`SystemChange::decode`] and [`SystemChange::encode`] are the binary form's two directions
/// (the server renders these events as JSON and parses that JSON back on import; the engine knows
/// only the bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemChange {
    Metadata { stream: String, metadata: StreamMetadata },
    Deleted { stream: String, truncate_before: u64 },
    Tombstone { stream: String },
}

fn target(stream: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(2 + stream.len() + 32);
    data.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    data.extend_from_slice(stream.as_bytes());
    data
}

pub(crate) fn encode_metadata(stream: &str, metadata: &StreamMetadata) -> Vec<u8> {
    let mut data = target(stream);
    let fields = [
        (MAX_AGE, metadata.max_age_seconds),
        (MAX_COUNT, metadata.max_count),
        (TRUNCATE_BEFORE, metadata.truncate_before.map(StreamRevision::value)),
    ];
    data.push(fields.iter().filter(|(_, value)| value.is_some()).fold(0, |flags, (flag, _)| flags | flag));
    for value in fields.iter().filter_map(|(_, value)| *value) {
        data.extend_from_slice(&value.to_le_bytes());
    }
    data.extend_from_slice(&metadata.custom);
    data
}

pub(crate) fn encode_deleted(stream: &str, truncate_before: u64) -> Vec<u8> {
    let mut data = target(stream);
    data.extend_from_slice(&truncate_before.to_le_bytes());
    data
}

pub(crate) fn encode_tombstone(stream: &str) -> Vec<u8> {
    target(stream)
}

struct Reader<'a> {
    rest: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let (taken, rest) = self.rest.split_at_checked(len).ok_or_else(|| format!("{} data cut short", self.what))?;
        self.rest = rest;
        Ok(taken)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn field(&mut self, flags: u8, flag: u8) -> Result<Option<u64>, String> {
        if flags & flag != 0 { self.u64().map(Some) } else { Ok(None) }
    }
}

impl SystemChange {
    /// Decodes a system event's data; `None` for an event type that is not a system change, an
    /// error (what is wrong) for data that does not decode.
    pub fn decode(event_type: &str, data: &[u8]) -> Result<Option<SystemChange>, String> {
        decode(event_type, data)
    }

    /// The event type and data of this change, as the engine writes them.
    pub fn encode(&self) -> (&'static str, Vec<u8>) {
        let encoded = match self {
            SystemChange::Metadata { stream, metadata } => (METADATA_TYPE, encode_metadata(stream, metadata)),
            SystemChange::Deleted { stream, truncate_before } => {
                (DELETED_TYPE, encode_deleted(stream, *truncate_before))
            }
            SystemChange::Tombstone { stream } => (TOMBSTONE_TYPE, encode_tombstone(stream)),
        };
        debug_assert_eq!(decode(encoded.0, &encoded.1).as_ref(), Ok(&Some(self.clone())), "encode then decode");
        encoded
    }

    /// The stream the change is about.
    pub fn stream(&self) -> &str {
        match self {
            SystemChange::Metadata { stream, .. }
            | SystemChange::Deleted { stream, .. }
            | SystemChange::Tombstone { stream } => stream,
        }
    }
}

/// Decodes a system event; `None` for an event type that is not a system change.
pub(crate) fn decode(event_type: &str, data: &[u8]) -> Result<Option<SystemChange>, String> {
    if ![METADATA_TYPE, DELETED_TYPE, TOMBSTONE_TYPE].contains(&event_type) {
        return Ok(None);
    }
    let mut reader = Reader { rest: data, what: event_type };
    let len = u16::from_le_bytes(reader.take(2)?.try_into().expect("2 bytes")) as usize;
    let stream =
        std::str::from_utf8(reader.take(len)?).map_err(|_| format!("{event_type} target is not UTF-8"))?.to_owned();
    let change = match event_type {
        METADATA_TYPE => {
            let flags = reader.take(1)?[0];
            let max_age_seconds = reader.field(flags, MAX_AGE)?;
            let max_count = reader.field(flags, MAX_COUNT)?;
            let truncate_before = reader.field(flags, TRUNCATE_BEFORE)?.map(StreamRevision::new);
            let custom = bytes::Bytes::copy_from_slice(reader.rest);
            SystemChange::Metadata {
                stream,
                metadata: StreamMetadata { max_age_seconds, max_count, truncate_before, custom },
            }
        }
        DELETED_TYPE => SystemChange::Deleted { stream, truncate_before: reader.u64()? },
        _ => SystemChange::Tombstone { stream },
    };
    Ok(Some(change))
}

/// The stream of the store's own events: `$store-created` at revision 0.
pub const STORE_STREAM: &str = "$store";
/// Position 0 of a store created in format 2 (or the first format-2 event of a store that began in
/// format 1): it names the log and seeds the hash chain.
pub const STORE_CREATED_TYPE: &str = "$store-created";

/// What `$store-created` says. Its data is JSON in one canonical form (keys sorted, no spaces),
/// written and read only by the engine:
/// `{"created_at":"<RFC 3339>","format_version":2,"genesis":"<64 hex>","store_id":"<uuid>"}`, with
/// `"format_1_events":N` after `created_at` for a store that began in format 1 (its first N events
/// are format 1, covered by the genesis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCreated {
    pub store_id: uuid::Uuid,
    /// The predecessor of this event's hash: derived from the store id
    /// (`log::chain::genesis`), or the digest of the format-1 prefix.
    pub genesis: strata_core::EventHash,
    pub format_version: u32,
    pub created_at: strata_core::Timestamp,
    pub format_1_events: Option<u64>,
}

impl StoreCreated {
    pub fn encode(&self) -> Vec<u8> {
        // Keys in sorted order, no spaces: the form any JSON serializer with sorted maps writes, so
        // the event survives an export rendered and imported through JSON unchanged.
        let mut text = format!("{{\"created_at\":\"{}\"", self.created_at);
        if let Some(events) = self.format_1_events {
            text.push_str(&format!(",\"format_1_events\":{events}"));
        }
        text.push_str(&format!(
            ",\"format_version\":{},\"genesis\":\"{}\",\"store_id\":\"{}\"}}",
            self.format_version,
            self.genesis,
            self.store_id.hyphenated()
        ));
        text.into_bytes()
    }

    /// Reads the canonical form back; anything else (another order, spaces, other fields) is refused.
    pub fn decode(data: &[u8]) -> Result<StoreCreated, String> {
        let invalid = || format!("{STORE_CREATED_TYPE} data is not in its canonical form");
        let text = std::str::from_utf8(data).map_err(|_| invalid())?;
        let field = |text: &'_ str, name: &str| -> Option<(String, usize)> {
            let start = text.find(&format!("\"{name}\":"))? + name.len() + 3;
            let rest = &text[start..];
            let (value, consumed) = match rest.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"')?;
                    (quoted[..end].to_owned(), end + 2)
                }
                None => {
                    let end = rest.find([',', '}'])?;
                    (rest[..end].to_owned(), end)
                }
            };
            Some((value, start + consumed))
        };
        let (store_id, _) = field(text, "store_id").ok_or_else(invalid)?;
        let (genesis, _) = field(text, "genesis").ok_or_else(invalid)?;
        let (format_version, _) = field(text, "format_version").ok_or_else(invalid)?;
        let (created_at, _) = field(text, "created_at").ok_or_else(invalid)?;
        let format_1_events = match field(text, "format_1_events") {
            Some((events, _)) => Some(events.parse::<u64>().map_err(|_| invalid())?),
            None => None,
        };
        let decoded = StoreCreated {
            store_id: uuid::Uuid::parse_str(&store_id).map_err(|_| invalid())?,
            genesis: strata_core::EventHash::parse(&genesis).map_err(|_| invalid())?,
            format_version: format_version.parse().map_err(|_| invalid())?,
            created_at: created_at.parse().map_err(|_| invalid())?,
            format_1_events,
        };
        if decoded.encode() != data {
            return Err(invalid());
        }
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_events_round_trip() {
        let metadata = StreamMetadata {
            max_age_seconds: Some(60),
            max_count: None,
            truncate_before: Some(StreamRevision::new(7)),
            custom: bytes::Bytes::from_static(b"{\"owner\":\"ann\"}"),
        };
        let decoded = decode(METADATA_TYPE, &encode_metadata("account-1", &metadata)).unwrap();
        assert_eq!(decoded, Some(SystemChange::Metadata { stream: "account-1".into(), metadata }));
        let decoded = decode(DELETED_TYPE, &encode_deleted("a", 9)).unwrap();
        assert_eq!(decoded, Some(SystemChange::Deleted { stream: "a".into(), truncate_before: 9 }));
        assert_eq!(
            decode(TOMBSTONE_TYPE, &encode_tombstone("b")).unwrap(),
            Some(SystemChange::Tombstone { stream: "b".into() })
        );
        assert_eq!(decode("Other", b"").unwrap(), None);
        assert!(decode(DELETED_TYPE, &encode_tombstone("a")).is_err());
        let change = SystemChange::Deleted { stream: "a".into(), truncate_before: 9 };
        assert_eq!(change.encode(), (DELETED_TYPE, encode_deleted("a", 9)));
        assert_eq!(SystemChange::decode(DELETED_TYPE, &change.encode().1).unwrap(), Some(change));
        assert!(decode(METADATA_TYPE, &[5, 0, b'a']).is_err());
    }

    #[test]
    fn store_created_round_trips_in_its_canonical_form_only() {
        let created = StoreCreated {
            store_id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            genesis: strata_core::EventHash::from_bytes([7; 32]),
            format_version: 2,
            created_at: strata_core::Timestamp::from_micros(1_700_000_000_123_456),
            format_1_events: None,
        };
        let data = created.encode();
        assert_eq!(StoreCreated::decode(&data), Ok(created));
        let upgraded = StoreCreated { format_1_events: Some(42), ..created };
        assert_eq!(StoreCreated::decode(&upgraded.encode()), Ok(upgraded));
        let spaced = String::from_utf8(data.clone()).unwrap().replace(":", ": ");
        assert!(StoreCreated::decode(spaced.as_bytes()).is_err());
        assert!(StoreCreated::decode(b"{}").is_err());
        assert!(StoreCreated::decode(&data[..data.len() - 1]).is_err());
    }
}
