//! The hash chain of log format 2 (`docs/design.md`, "The chain"): every record's
//! `hash = SHA-256(predecessor's hash ‖ header digest ‖ content digest)`, in a canonical byte form
//! that does not depend on how a record is laid out on disk — so a placeholder that kept the header
//! and the content digest, an export, or a replica on another machine computes the same value.
//!
//! ```text
//! header  = position u64 ‖ stream_len u16 ‖ stream ‖ revision u64 ‖ id [16] ‖ type_len u16 ‖ type
//!         ‖ recorded_at i64 (µs) ‖ content_type_len u8 ‖ content_type ("" = JSON)
//!         ‖ tag_count u8 ‖ (tag_len u16 ‖ tag)*                                   (little-endian)
//! content = metadata_len u32 ‖ metadata ‖ data_len u32 ‖ data
//! ```

use sha2::{Digest, Sha256};
use strata_core::{EventHash, EventId, Timestamp};

/// A SHA-256 digest.
pub type Digest32 = [u8; 32];

/// What the header digest covers, borrowed from a record or an event about to be written.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub position: u64,
    pub stream: &'a str,
    pub revision: u64,
    pub id: EventId,
    pub event_type: &'a str,
    pub recorded_at: Timestamp,
    /// Empty for JSON.
    pub content_type: &'a str,
    pub tag_count: u8,
    /// The tags as records store them: each a `u16` length and the tag's bytes.
    pub tags_encoded: &'a [u8],
}

pub fn header_digest(header: &Header<'_>) -> Digest32 {
    let mut hasher = Sha256::new();
    hasher.update(header.position.to_le_bytes());
    hasher.update((header.stream.len() as u16).to_le_bytes());
    hasher.update(header.stream.as_bytes());
    hasher.update(header.revision.to_le_bytes());
    hasher.update(header.id.as_bytes());
    hasher.update((header.event_type.len() as u16).to_le_bytes());
    hasher.update(header.event_type.as_bytes());
    hasher.update(header.recorded_at.as_micros().to_le_bytes());
    hasher.update([header.content_type.len() as u8]);
    hasher.update(header.content_type.as_bytes());
    hasher.update([header.tag_count]);
    hasher.update(header.tags_encoded);
    hasher.finalize().into()
}

pub fn content_digest(metadata: &[u8], data: &[u8]) -> Digest32 {
    let mut hasher = Sha256::new();
    hasher.update((metadata.len() as u32).to_le_bytes());
    hasher.update(metadata);
    hasher.update((data.len() as u32).to_le_bytes());
    hasher.update(data);
    hasher.finalize().into()
}

/// The next link: SHA-256(previous ‖ header digest ‖ content digest).
pub fn link(previous: &EventHash, header: &Digest32, content: &Digest32) -> EventHash {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(header);
    hasher.update(content);
    EventHash::from_bytes(hasher.finalize().into())
}

/// The genesis of a store created in format 2: the predecessor of its `$store-created` event.
pub fn genesis(store_id: &uuid::Uuid) -> EventHash {
    let mut hasher = Sha256::new();
    hasher.update(b"strata genesis\0");
    hasher.update(store_id.as_bytes());
    EventHash::from_bytes(hasher.finalize().into())
}

/// The genesis of a store that began in format 1: a digest of every format-1 record's header and
/// content digests, in position order, computed once when the store first writes format 2.
#[derive(Debug, Clone, Default)]
pub struct PrefixDigest {
    hasher: Sha256,
    events: u64,
}

impl PrefixDigest {
    pub fn push(&mut self, header: &Digest32, content: &Digest32) {
        self.hasher.update(header);
        self.hasher.update(content);
        self.events += 1;
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn finish(self) -> EventHash {
        let mut outer = Sha256::new();
        outer.update(b"strata format-1 prefix\0");
        outer.update(self.events.to_le_bytes());
        outer.update(self.hasher.finalize());
        EventHash::from_bytes(outer.finalize().into())
    }
}

/// Encodes tags the way records (and the header digest) store them.
pub fn encode_tags<'t>(tags: impl Iterator<Item = &'t str>, out: &mut Vec<u8>) {
    for tag in tags {
        out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
}
