//! Events before commit ([`NewEvent`]) and after ([`RecordedEvent`]).

use crate::error::ValidationError;
use crate::limits::TAGS_PER_EVENT_MAX;
use crate::names::{ContentType, EventType, StreamId, Tag};
use crate::position::{Position, StreamRevision};
use crate::time::Timestamp;
use bytes::Bytes;
use std::fmt;
use uuid::Uuid;

/// The UUID of one event: chosen by the client, or generated (UUIDv7) by the store when absent.
/// It is the idempotency key of appends and must be unique across the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Uuid);

impl EventId {
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An event as the application hands it to an append.
///
/// `data` is JSON unless a [`ContentType`] says otherwise; `metadata` is opaque bytes (the server puts a
/// JSON object there). Without an id the store generates one at append time, which makes a retry of the
/// same `NewEvent` a second event: give events ids to make retries idempotent.
///
/// # Invariants
/// At most [`TAGS_PER_EVENT_MAX`] tags. Size limits depend on the store's configuration and are checked
/// by the append.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewEvent {
    id: Option<EventId>,
    event_type: EventType,
    content_type: Option<ContentType>,
    data: Bytes,
    metadata: Bytes,
    tags: Vec<Tag>,
}

impl NewEvent {
    pub fn new(event_type: EventType, data: impl Into<Bytes>) -> Self {
        Self { id: None, event_type, content_type: None, data: data.into(), metadata: Bytes::new(), tags: Vec::new() }
    }

    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = Some(id);
        self
    }

    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }

    pub fn with_content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = Some(content_type);
        self
    }

    pub fn with_tags(mut self, tags: Vec<Tag>) -> Result<Self, ValidationError> {
        if tags.len() > TAGS_PER_EVENT_MAX {
            return Err(ValidationError::TooManyTags { count: tags.len(), max: TAGS_PER_EVENT_MAX });
        }
        self.tags = tags;
        Ok(self)
    }

    pub fn id(&self) -> Option<EventId> {
        self.id
    }

    /// The event's id, after giving it one from `generate` if it had none.
    pub fn id_or_insert_with(&mut self, generate: impl FnOnce() -> EventId) -> EventId {
        *self.id.get_or_insert_with(generate)
    }

    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    /// `None` means JSON.
    pub fn content_type(&self) -> Option<&ContentType> {
        self.content_type.as_ref()
    }

    pub fn data(&self) -> &Bytes {
        &self.data
    }

    pub fn metadata(&self) -> &Bytes {
        &self.metadata
    }

    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// What the event limit counts: data plus metadata.
    pub fn payload_bytes(&self) -> usize {
        self.data.len() + self.metadata.len()
    }

    /// What the append limit counts: payload, names, tags and id.
    pub fn size_bytes(&self) -> usize {
        16 + self.payload_bytes()
            + self.event_type.as_str().len()
            + self.content_type.as_ref().map_or(0, |c| c.as_str().len())
            + self.tags.iter().map(|t| t.as_str().len()).sum::<usize>()
    }
}

/// An event as the store recorded it: with its stream, revision, position and recorded time.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RecordedEvent {
    pub id: EventId,
    pub stream: StreamId,
    pub event_type: EventType,
    pub revision: StreamRevision,
    pub position: Position,
    pub recorded_at: Timestamp,
    /// `None` means JSON.
    pub content_type: Option<ContentType>,
    pub data: Bytes,
    pub metadata: Bytes,
    pub tags: Tags,
    /// The record's link in the log's hash chain; `None` for events of a format-1 store.
    pub hash: Option<crate::hash::EventHash>,
}

/// The tags of a recorded event, kept as they are stored — each a little-endian `u16` length and the
/// tag's bytes — and shared with the buffer the event was read from, so reading tagged events
/// allocates nothing per event.
///
/// # Invariants
/// `encoded` is a well-formed list of `count` tags, each valid UTF-8; the only constructors check it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Tags {
    encoded: Bytes,
    count: usize,
}

impl Tags {
    /// Encodes `tags` (each at most [`crate::limits::TAG_BYTES_MAX`] bytes by `Tag`'s invariant).
    pub fn from_tags(tags: &[Tag]) -> Self {
        let mut encoded = Vec::with_capacity(tags.iter().map(|t| 2 + t.as_str().len()).sum());
        for tag in tags {
            encoded.extend_from_slice(&(tag.as_str().len() as u16).to_le_bytes());
            encoded.extend_from_slice(tag.as_bytes());
        }
        Self { encoded: encoded.into(), count: tags.len() }
    }

    /// Accepts `count` stored tags (validated when they were written and come back under a checksum):
    /// only the structure and UTF-8, which memory safety needs, are checked again.
    pub fn from_stored_encoding(encoded: Bytes, count: usize) -> Result<Self, ValidationError> {
        if count > TAGS_PER_EVENT_MAX {
            return Err(ValidationError::TooManyTags { count, max: TAGS_PER_EVENT_MAX });
        }
        let mut rest = &encoded[..];
        for _ in 0..count {
            let invalid = || ValidationError::InvalidUtf8 { what: "tag" };
            let len = usize::from(u16::from_le_bytes(rest.get(..2).ok_or_else(invalid)?.try_into().expect("2 bytes")));
            let tag = rest.get(2..2 + len).ok_or_else(invalid)?;
            std::str::from_utf8(tag).map_err(|_| invalid())?;
            rest = &rest[2 + len..];
        }
        if !rest.is_empty() {
            return Err(ValidationError::InvalidUtf8 { what: "tag list" });
        }
        Ok(Self { encoded, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone {
        let mut rest = &self.encoded[..];
        std::iter::from_fn(move || {
            let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
            let tag = rest.get(2..2 + len)?;
            rest = &rest[2 + len..];
            // SAFETY: the constructors checked that every tag is valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(tag) })
        })
    }

    pub fn contains(&self, tag: &str) -> bool {
        self.iter().any(|t| t == tag)
    }

    /// The tags as values (allocates).
    pub fn to_vec(&self) -> Vec<Tag> {
        self.iter()
            .map(|t| Tag::from_stored_bytes(Bytes::copy_from_slice(t.as_bytes())).expect("tags were checked when made"))
            .collect()
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_refuse_malformed_encodings() {
        let list = vec![Tag::new("account:42").unwrap(), Tag::new("region:é").unwrap()];
        let tags = Tags::from_tags(&list);
        assert_eq!(tags.iter().collect::<Vec<_>>(), ["account:42", "region:é"]);
        assert_eq!((tags.len(), tags.to_vec()), (2, list.clone()));
        assert!(tags.contains("region:é") && !tags.contains("region"));
        assert_eq!(format!("{tags:?}"), r#"["account:42", "region:é"]"#);
        let encoded = Tags::from_tags(&list).encoded;
        assert_eq!(Tags::from_stored_encoding(encoded.clone(), 2).unwrap(), tags);
        for (bytes, count) in [
            (encoded.slice(..encoded.len() - 1), 2),      // cut short
            (encoded.clone(), 1),                         // trailing bytes
            (Bytes::from_static(b"\x02\x00\xff\xfe"), 1), // not UTF-8
            (Bytes::new(), TAGS_PER_EVENT_MAX + 1),       // too many
        ] {
            assert!(Tags::from_stored_encoding(bytes, count).is_err());
        }
        assert!(Tags::default().is_empty());
    }
}
