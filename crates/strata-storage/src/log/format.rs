//! The on-disk format, as pure functions from values to bytes and back (`docs/design.md` draws it).
//!
//! A segment file is a 64-byte [segment header](encode_segment_header) followed by frames. A frame is
//! one commit group (everything one fdatasync made durable): a 16-byte frame header, then a payload of
//! a 16-byte body header and self-describing event records. A seal frame closes a full segment.
//!
//! Format 2 adds the hash chain (`log::chain`): a commit frame's body header is followed by the
//! hash of the record before the frame, and every record carries its own hash. Format-1 frames and
//! records (no hashes) are read as they are; each frame and record says which it is.
//!
//! The decoders take untrusted bytes: they never panic, never read out of bounds, and never allocate
//! more than a small bound (tags of one event) beyond the input they are given.

use crate::log::chain::{self, Digest32};
use bytes::Bytes;
use strata_core::limits::TAGS_PER_EVENT_MAX;
use strata_core::{
    ContentType, EventHash, EventId, EventType, NewEvent, Position, RecordedEvent, StreamId, StreamRevision, Tags,
    Timestamp,
};

/// The format new segments are written in: 2, the hash chain.
pub const FORMAT_VERSION: u32 = 2;
/// The first format: no hashes. Its segments open and are read as they are.
pub const FORMAT_VERSION_1: u32 = 1;
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATASG";
pub const SEGMENT_HEADER_BYTES: u64 = 64;
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"STFR");
pub const FRAME_HEADER_BYTES: usize = 16;
pub const FRAME_BODY_HEADER_BYTES: usize = 16;
pub const RECORD_FIXED_BYTES: usize = 64;
/// A hash (SHA-256) in a frame or record of format 2.
pub const HASH_BYTES: usize = 32;
/// What a format-2 record carries beyond the format-1 layout: its hash.
pub const RECORD_CHAIN_BYTES: usize = HASH_BYTES;
/// What a format-2 commit frame carries beyond the format-1 layout: its predecessor's hash.
pub const FRAME_CHAIN_BYTES: usize = HASH_BYTES;
/// Size of a seal frame, which is always reserved at the end of a segment.
pub const SEAL_FRAME_BYTES: usize = FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES;
/// The largest frame payload the format admits. Bounds what a reader allocates for a frame and how
/// far past the last good frame a torn write can reach.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

const KIND_COMMIT: u8 = 1;
const KIND_SEAL: u8 = 2;
/// Byte 1 of a frame's body header: 0 in format 1, 2 for a commit frame of format 2 (chained).
const FRAME_CHAINED: u8 = 2;

/// Byte 54 of a record (zero in format 1): which chain fields follow its fixed part.
const RECORD_HASHED: u8 = 1;
/// A placeholder that kept what its event's hash covers: original type, content type, tags and the
/// content digest (`u16` length, then those), after the hash.
const RECORD_KEPT: u8 = 2;
/// A placeholder whose hash came with an import, without what it covers: the chain goes on from it,
/// but the link itself cannot be recomputed.
const RECORD_CARRIED: u8 = 4;

fn crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

// ---------------------------------------------------------------------------------------------
// Segment header

/// What a segment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment: u32,
    /// [`FORMAT_VERSION`] for every segment created now; [`FORMAT_VERSION_1`] for a format-1 store's
    /// segments (which go on receiving format-2 frames once the store writes format 2).
    pub format_version: u32,
    /// The position of the segment's first event (the log's next position when it was created).
    pub first_position: u64,
}

/// `magic[8] | format_version u32 | segment u32 | first_position u64 | zero[36] | crc32c u32` (little-endian).
pub fn encode_segment_header(header: SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES as usize];
    bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
    bytes[8..12].copy_from_slice(&header.format_version.to_le_bytes());
    bytes[12..16].copy_from_slice(&header.segment.to_le_bytes());
    bytes[16..24].copy_from_slice(&header.first_position.to_le_bytes());
    let checksum = crc(&bytes[..60]);
    bytes[60..64].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    if bytes.len() < SEGMENT_HEADER_BYTES as usize {
        return Err(format!("segment header is {} bytes, expected {SEGMENT_HEADER_BYTES}", bytes.len()));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("not a Strata segment (bad magic)".to_owned());
    }
    if crc(&bytes[..60]) != u32_at(bytes, 60) {
        return Err("segment header checksum mismatch".to_owned());
    }
    let format_version = u32_at(bytes, 8);
    if !(FORMAT_VERSION_1..=FORMAT_VERSION).contains(&format_version) {
        return Err(format!(
            "segment format_version {format_version} is not supported (this build reads {FORMAT_VERSION_1} to {FORMAT_VERSION})"
        ));
    }
    Ok(SegmentHeader { segment: u32_at(bytes, 12), first_position: u64_at(bytes, 16), format_version })
}

// ---------------------------------------------------------------------------------------------
// Frames

/// What the 16 bytes at a frame boundary say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// All zero: the end of the written part of the segment (segments are zero-filled).
    Zero,
    Valid {
        payload_len: usize,
        payload_crc: u32,
    },
    Invalid(&'static str),
}

/// `magic u32 | payload_len u32 | payload_crc32c u32 | header_crc32c u32` (the last over the first 12 bytes).
pub fn check_frame_header(bytes: &[u8; FRAME_HEADER_BYTES]) -> HeaderCheck {
    if bytes.iter().all(|&b| b == 0) {
        return HeaderCheck::Zero;
    }
    if u32_at(bytes, 0) != FRAME_MAGIC {
        return HeaderCheck::Invalid("bad frame magic");
    }
    if crc(&bytes[..12]) != u32_at(bytes, 12) {
        return HeaderCheck::Invalid("frame header checksum mismatch");
    }
    let payload_len = u32_at(bytes, 4) as usize;
    if !(FRAME_BODY_HEADER_BYTES..=FRAME_PAYLOAD_BYTES_MAX).contains(&payload_len) {
        return HeaderCheck::Invalid("frame length out of range");
    }
    HeaderCheck::Valid { payload_len, payload_crc: u32_at(bytes, 8) }
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameBody {
    /// A commit group of `event_count` events at positions `first_position..`; in format 2 with the
    /// hash of the record before it (`previous`), which a replica compares with its own.
    Commit { first_position: u64, event_count: u32, previous: Option<EventHash> },
    /// The segment is full; the next segment starts at `next_position`.
    Seal { next_position: u64 },
}

/// Checks a frame payload's checksum and body header. Records are checked by [`FrameRecords`].
pub fn check_frame_payload(payload: &[u8], payload_crc: u32) -> Result<FrameBody, String> {
    if payload.len() < FRAME_BODY_HEADER_BYTES {
        return Err("frame payload too short".to_owned());
    }
    if crc(payload) != payload_crc {
        return Err("frame checksum mismatch".to_owned());
    }
    let count = u32_at(payload, 4);
    let position = u64_at(payload, 8);
    if payload[2..4] != [0, 0] {
        return Err("frame body header has non-zero reserved bytes".to_owned());
    }
    let previous = match (payload[0], payload[1]) {
        (KIND_COMMIT, FRAME_CHAINED) => {
            let bytes = payload
                .get(FRAME_BODY_HEADER_BYTES..FRAME_BODY_HEADER_BYTES + FRAME_CHAIN_BYTES)
                .ok_or("chained frame too short for its predecessor's hash")?;
            Some(EventHash::from_bytes(bytes.try_into().expect("32 bytes")))
        }
        (_, 0) => None,
        (_, flag) => return Err(format!("unknown frame format {flag}")),
    };
    match payload[0] {
        KIND_COMMIT if count > 0 => Ok(FrameBody::Commit { first_position: position, event_count: count, previous }),
        KIND_COMMIT => Err("commit frame without events".to_owned()),
        KIND_SEAL if payload.len() == FRAME_BODY_HEADER_BYTES => Ok(FrameBody::Seal { next_position: position }),
        KIND_SEAL => Err("seal frame with a body".to_owned()),
        kind => Err(format!("unknown frame kind {kind}")),
    }
}

/// The records of a checked commit frame payload, in order, each as `(offset in payload, record bytes)`.
/// Yields an error (and then stops) on the first record whose length does not fit or is shorter than
/// a record can be, so it always ends.
#[derive(Debug)]
pub struct FrameRecords<'a> {
    payload: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> FrameRecords<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        Self { payload, offset: records_start(payload).min(payload.len()), failed: false }
    }
}

/// Where a commit frame payload's records begin: after the body header, and in format 2 after the
/// predecessor's hash.
pub(crate) fn records_start(payload: &[u8]) -> usize {
    match payload.get(1) {
        Some(&FRAME_CHAINED) => FRAME_BODY_HEADER_BYTES + FRAME_CHAIN_BYTES,
        _ => FRAME_BODY_HEADER_BYTES,
    }
}

impl<'a> Iterator for FrameRecords<'a> {
    type Item = Result<(usize, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.payload.len() {
            return None;
        }
        let rest = &self.payload[self.offset..];
        match record_len(rest) {
            // A record shorter than its fixed part would also stall the iteration (length 0).
            Some(len) if (RECORD_FIXED_BYTES..=rest.len()).contains(&len) => {
                let item = (self.offset, &rest[..len]);
                self.offset += len;
                Some(Ok(item))
            }
            _ => {
                self.failed = true;
                Some(Err(format!("record at payload offset {} does not fit its frame", self.offset)))
            }
        }
    }
}

/// Builds one frame in a reusable buffer.
#[derive(Debug, Default)]
pub struct FrameBuilder {
    bytes: Vec<u8>,
    event_count: u32,
    first_position: u64,
    /// The hash of the record before the frame (format 2), or `None` for a format-1 frame.
    previous: Option<EventHash>,
}

impl FrameBuilder {
    /// Starts a commit frame whose first event will be at `first_position`, chained to `previous`
    /// (format 2) or not (format 1: a scavenge rewriting a format-1 segment).
    pub fn start_commit(&mut self, first_position: u64, previous: Option<EventHash>) {
        self.bytes.clear();
        let chain = if previous.is_some() { FRAME_CHAIN_BYTES } else { 0 };
        self.bytes.resize(FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES + chain, 0);
        self.event_count = 0;
        self.first_position = first_position;
        self.previous = previous;
    }

    pub fn event_count(&self) -> u32 {
        self.event_count
    }

    /// Bytes the frame holds so far (header included).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.event_count == 0
    }

    /// Appends the record of the next event; returns its offset from the start of the frame.
    pub fn push_record(&mut self, record: RecordFields<'_>) -> usize {
        assert_eq!(record.position, self.first_position + u64::from(self.event_count), "positions must be dense");
        assert_eq!(
            self.previous.is_some(),
            !matches!(record.chain, RecordChain::Unchained | RecordChain::UnchainedPlaceholder(_)),
            "a chained frame holds chained records only, a format-1 frame none"
        );
        let offset = self.bytes.len();
        encode_record(&mut self.bytes, record);
        self.event_count += 1;
        offset
    }

    /// Appends an already encoded (and checked) record of the next event, unchanged.
    pub fn push_encoded_record(&mut self, record: &[u8]) -> usize {
        assert_eq!(u64_at(record, 8), self.first_position + u64::from(self.event_count), "positions must be dense");
        assert_eq!(self.previous.is_some(), record[54] & RECORD_HASHED != 0, "records keep their frame's format");
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(record);
        self.event_count += 1;
        offset
    }

    /// Fills in the headers; the frame is then `self.bytes()`.
    pub fn finish(&mut self) -> &[u8] {
        assert!(self.event_count > 0, "an empty commit frame is never written");
        let body = &mut self.bytes[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES];
        body[0] = KIND_COMMIT;
        body[4..8].copy_from_slice(&self.event_count.to_le_bytes());
        body[8..16].copy_from_slice(&self.first_position.to_le_bytes());
        if let Some(previous) = self.previous {
            body[1] = FRAME_CHAINED;
            let at = FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES;
            self.bytes[at..at + FRAME_CHAIN_BYTES].copy_from_slice(previous.as_bytes());
        }
        fill_frame_header(&mut self.bytes);
        &self.bytes
    }
}

fn fill_frame_header(frame: &mut [u8]) {
    let payload_len = frame.len() - FRAME_HEADER_BYTES;
    assert!(payload_len <= FRAME_PAYLOAD_BYTES_MAX, "frame payload of {payload_len} bytes exceeds the format");
    let payload_crc = crc(&frame[FRAME_HEADER_BYTES..]);
    frame[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    frame[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    frame[8..12].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc(&frame[..12]);
    frame[12..16].copy_from_slice(&header_crc.to_le_bytes());
}

/// The seal frame that closes a segment whose successor starts at `next_position`.
pub fn seal_frame(next_position: u64) -> [u8; SEAL_FRAME_BYTES] {
    let mut frame = [0u8; SEAL_FRAME_BYTES];
    frame[FRAME_HEADER_BYTES] = KIND_SEAL;
    frame[FRAME_HEADER_BYTES + 8..].copy_from_slice(&next_position.to_le_bytes());
    fill_frame_header(&mut frame);
    frame
}

// ---------------------------------------------------------------------------------------------
// Event records
//
//  0 record_len u32      total bytes of this record
//  4 record_crc u32      crc32c of bytes [8, record_len)
//  8 position u64
// 16 revision u64
// 24 recorded_at i64     microseconds since the Unix epoch
// 32 event id [16]
// 48 stream_len u16 | 50 type_len u16 | 52 content_type_len u8 | 53 tag_count u8
// 54 chain flags u8 (0 in format 1) | 55 zero u8
// 56 metadata_len u32 | 60 data_len u32
// 64 [hash [32] if HASHED] [kept_len u16 | kept if KEPT]
//    stream | type | content_type | tags (each u16 len + bytes) | metadata | data
//
// kept (a placeholder's original header and content): type_len u16 | type | content_type_len u8 |
//    content_type | tag_count u8 | tags (each u16 len + bytes) | content digest [32]

/// Where a record stands in the hash chain.
#[derive(Debug, Clone, Copy)]
pub enum RecordChain<'a> {
    /// A format-1 record (only a scavenge rewriting a format-1 segment writes one now).
    Unchained,
    /// The placeholder of a format-1 event, keeping what the digest of the format-1 events (the
    /// genesis of the chain that continues them) covers.
    UnchainedPlaceholder(KeptHeader<'a>),
    /// A format-2 record and its hash.
    Hashed(EventHash),
    /// A placeholder of a format-2 event: the event's hash and, when the scavenger made it, what the
    /// hash covers beyond the placeholder's own fields (`None`: the hash came with an import).
    Placeholder { hash: EventHash, kept: Option<KeptHeader<'a>> },
}

/// What a placeholder keeps of its event so that its hash can still be recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptHeader<'a> {
    pub event_type: &'a str,
    /// Empty for JSON.
    pub content_type: &'a str,
    pub tag_count: u8,
    /// Each tag as a `u16` length and its bytes.
    pub tags_encoded: &'a [u8],
    pub content_digest: Digest32,
}

impl KeptHeader<'_> {
    fn encoded_len(&self) -> usize {
        2 + self.event_type.len() + 1 + self.content_type.len() + 1 + self.tags_encoded.len() + HASH_BYTES
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.event_type.len() as u16).to_le_bytes());
        out.extend_from_slice(self.event_type.as_bytes());
        out.push(self.content_type.len() as u8);
        out.extend_from_slice(self.content_type.as_bytes());
        out.push(self.tag_count);
        out.extend_from_slice(self.tags_encoded);
        out.extend_from_slice(&self.content_digest);
    }

    fn decode(bytes: &[u8]) -> Result<KeptHeader<'_>, String> {
        let mut cursor = Cursor { bytes, at: 0 };
        let type_len = usize::from(cursor.u16()?);
        let event_type =
            std::str::from_utf8(cursor.take(type_len)?).map_err(|_| "kept type is not UTF-8".to_owned())?;
        let content_type_len = usize::from(cursor.take(1)?[0]);
        let content_type = std::str::from_utf8(cursor.take(content_type_len)?)
            .map_err(|_| "kept content type is not UTF-8".to_owned())?;
        let tag_count = cursor.take(1)?[0];
        if usize::from(tag_count) > TAGS_PER_EVENT_MAX {
            return Err(format!("a placeholder keeps {tag_count} tags"));
        }
        let tags_start = cursor.at;
        for _ in 0..tag_count {
            let len = usize::from(cursor.u16()?);
            cursor.take(len)?;
        }
        let tags_end = cursor.at;
        let content_digest: Digest32 = cursor.take(HASH_BYTES)?.try_into().expect("32 bytes");
        if cursor.at != bytes.len() {
            return Err("a placeholder's kept header has trailing bytes".to_owned());
        }
        Ok(KeptHeader {
            event_type,
            content_type,
            tag_count,
            tags_encoded: &bytes[tags_start..tags_end],
            content_digest,
        })
    }
}

/// Reads fields off untrusted bytes, never past their end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| "a placeholder's kept header is cut short".to_owned())?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
}

/// Everything a record stores.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    pub position: u64,
    pub revision: u64,
    pub recorded_at: Timestamp,
    pub id: EventId,
    pub stream: &'a StreamId,
    pub event: &'a NewEvent,
    pub chain: RecordChain<'a>,
}

/// The encoded size of an event's record in format 2 (with its hash).
pub fn record_encoded_len(stream: &StreamId, event: &NewEvent) -> usize {
    RECORD_FIXED_BYTES
        + RECORD_CHAIN_BYTES
        + stream.as_str().len()
        + event.event_type().as_str().len()
        + event.content_type().map_or(0, |c| c.as_str().len())
        + event.tags().iter().map(|tag| 2 + tag.as_str().len()).sum::<usize>()
        + event.metadata().len()
        + event.data().len()
}

/// The header an event will be hashed with once it has its place.
pub fn event_header<'a>(
    position: u64,
    stream: &'a StreamId,
    revision: u64,
    id: EventId,
    recorded_at: Timestamp,
    event: &'a NewEvent,
    tags_encoded: &'a [u8],
) -> chain::Header<'a> {
    chain::Header {
        position,
        stream: stream.as_str(),
        revision,
        id,
        event_type: event.event_type().as_str(),
        recorded_at,
        content_type: event.content_type().map_or("", |c| c.as_str()),
        tag_count: event.tags().len() as u8,
        tags_encoded,
    }
}

/// The hash of `event` written at `position` (revision, id, time) after `previous`, given its content
/// digest (computed before it had a place, off the committer's thread). `scratch` is reused.
#[allow(clippy::too_many_arguments)]
pub fn hash_new_event(
    previous: &EventHash,
    position: u64,
    stream: &StreamId,
    revision: u64,
    id: EventId,
    recorded_at: Timestamp,
    event: &NewEvent,
    content_digest: &Digest32,
    scratch: &mut Vec<u8>,
) -> EventHash {
    scratch.clear();
    chain::encode_tags(event.tags().iter().map(|tag| tag.as_str()), scratch);
    let header = event_header(position, stream, revision, id, recorded_at, event, scratch);
    chain::link(previous, &chain::header_digest(&header), content_digest)
}

/// The content digest of an event about to be written.
pub fn new_event_content_digest(event: &NewEvent) -> Digest32 {
    chain::content_digest(event.metadata(), event.data())
}

fn encode_record(out: &mut Vec<u8>, record: RecordFields<'_>) {
    let start = out.len();
    let event = record.event;
    let content_type = event.content_type().map_or("", |c| c.as_str());
    let (flags, hash, kept) = match record.chain {
        RecordChain::Unchained => (0, None, None),
        RecordChain::UnchainedPlaceholder(kept) => (RECORD_KEPT, None, Some(kept)),
        RecordChain::Hashed(hash) => (RECORD_HASHED, Some(hash), None),
        RecordChain::Placeholder { hash, kept: Some(kept) } => (RECORD_HASHED | RECORD_KEPT, Some(hash), Some(kept)),
        RecordChain::Placeholder { hash, kept: None } => (RECORD_HASHED | RECORD_CARRIED, Some(hash), None),
    };
    out.extend_from_slice(&[0u8; 8]); // length and checksum, filled in below
    out.extend_from_slice(&record.position.to_le_bytes());
    out.extend_from_slice(&record.revision.to_le_bytes());
    out.extend_from_slice(&record.recorded_at.as_micros().to_le_bytes());
    out.extend_from_slice(record.id.as_bytes());
    // The limits of strata-core bound these lengths well below the field sizes.
    out.extend_from_slice(&(record.stream.as_str().len() as u16).to_le_bytes());
    out.extend_from_slice(&(event.event_type().as_str().len() as u16).to_le_bytes());
    out.push(content_type.len() as u8);
    out.push(event.tags().len() as u8);
    out.extend_from_slice(&[flags, 0]);
    out.extend_from_slice(&(event.metadata().len() as u32).to_le_bytes());
    out.extend_from_slice(&(event.data().len() as u32).to_le_bytes());
    if let Some(hash) = hash {
        out.extend_from_slice(hash.as_bytes());
    }
    if let Some(kept) = kept {
        out.extend_from_slice(&(kept.encoded_len() as u16).to_le_bytes());
        kept.encode(out);
    }
    out.extend_from_slice(record.stream.as_bytes());
    out.extend_from_slice(event.event_type().as_bytes());
    out.extend_from_slice(content_type.as_bytes());
    for tag in event.tags() {
        out.extend_from_slice(&(tag.as_str().len() as u16).to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    out.extend_from_slice(event.metadata());
    out.extend_from_slice(event.data());
    let len = out.len() - start;
    let checksum = crc(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
    // What was just written must read back as written: a wrong layout here would corrupt the log.
    debug_assert!(check_record(&out[start..]).is_ok(), "an encoded record checks out");
}

/// The length a record claims, if at least its length field is there.
pub fn record_len(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= 4).then(|| u32_at(bytes, 0) as usize)
}

/// A record's place in the chain, as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredChain<'a> {
    /// Format 1: no hash.
    Unchained,
    /// The placeholder of a format-1 event, with what its digests covered.
    UnchainedKept(KeptHeader<'a>),
    Hashed(EventHash),
    /// A placeholder with what its hash covers.
    Kept {
        hash: EventHash,
        kept: KeptHeader<'a>,
    },
    /// A placeholder whose hash came with an import: it cannot be recomputed.
    Carried(EventHash),
}

impl StoredChain<'_> {
    pub fn hash(&self) -> Option<EventHash> {
        match *self {
            StoredChain::Unchained | StoredChain::UnchainedKept(_) => None,
            StoredChain::Hashed(hash) | StoredChain::Kept { hash, .. } | StoredChain::Carried(hash) => Some(hash),
        }
    }
}

/// The fields of a record that the indexes need, borrowed from the record bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKey<'a> {
    pub position: u64,
    pub revision: u64,
    pub recorded_at: Timestamp,
    pub id: EventId,
    pub stream: &'a str,
    pub event_type: &'a str,
    /// Empty for JSON.
    pub content_type: &'a str,
    /// The encoded tags (`u16` length + bytes each); see [`RecordKey::tags`].
    tags: &'a [u8],
    tag_count: u8,
    pub metadata: &'a [u8],
    pub data: &'a [u8],
    pub chain: StoredChain<'a>,
}

impl<'a> RecordKey<'a> {
    /// The event's tags. Only a checked record makes a `RecordKey`, so the encoding is sound; a tag
    /// that is not UTF-8 is skipped (it cannot come from the writer).
    pub fn tags(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let mut rest = self.tags;
        std::iter::from_fn(move || {
            while rest.len() >= 2 {
                let len = usize::from(u16_at(rest, 0));
                let tag = rest.get(2..2 + len)?;
                rest = &rest[2 + len..];
                if let Ok(tag) = std::str::from_utf8(tag) {
                    return Some(tag);
                }
            }
            None
        })
    }

    /// What a placeholder of this event keeps so that its hash can still be recomputed: the type,
    /// content type and tags it loses, and its content digest.
    pub fn kept_header(&self) -> KeptHeader<'a> {
        KeptHeader {
            event_type: self.event_type,
            content_type: self.content_type,
            tag_count: self.tag_count,
            tags_encoded: self.tags,
            content_digest: self.digests().1,
        }
    }

    /// The header and content digests of the event as it was written (a placeholder's kept ones).
    pub fn digests(&self) -> (Digest32, Digest32) {
        let mut header = chain::Header {
            position: self.position,
            stream: self.stream,
            revision: self.revision,
            id: self.id,
            event_type: self.event_type,
            recorded_at: self.recorded_at,
            content_type: self.content_type,
            tag_count: self.tag_count,
            tags_encoded: self.tags,
        };
        match self.chain {
            StoredChain::Kept { kept, .. } | StoredChain::UnchainedKept(kept) => {
                header.event_type = kept.event_type;
                header.content_type = kept.content_type;
                header.tag_count = kept.tag_count;
                header.tags_encoded = kept.tags_encoded;
                (chain::header_digest(&header), kept.content_digest)
            }
            _ => (chain::header_digest(&header), chain::content_digest(self.metadata, self.data)),
        }
    }

    /// Checks the record's hash against its predecessor's: `Ok(Some(hash))` when it links,
    /// `Ok(None)` for a format-1 record, an error naming both values when it does not. A carried
    /// placeholder's hash is taken as it is (what it covers is gone).
    pub fn check_link(&self, previous: &EventHash) -> Result<Option<EventHash>, String> {
        match self.chain {
            StoredChain::Unchained | StoredChain::UnchainedKept(_) => Ok(None),
            StoredChain::Carried(hash) => Ok(Some(hash)),
            StoredChain::Hashed(hash) | StoredChain::Kept { hash, .. } => {
                let (header, content) = self.digests();
                let expected = chain::link(previous, &header, &content);
                if expected == hash {
                    Ok(Some(hash))
                } else {
                    Err(format!(
                        "the hash chain breaks at position {}: the record says {hash}, its predecessor {previous} gives {expected}",
                        self.position
                    ))
                }
            }
        }
    }
}

/// Where the variable-length fields of a checked record lie.
struct Layout {
    stream: (usize, usize),
    event_type: (usize, usize),
    content_type: (usize, usize),
    tags: (usize, usize, usize),
    metadata: (usize, usize),
    data: (usize, usize),
    flags: u8,
    /// The kept header of a placeholder.
    kept: Option<(usize, usize)>,
}

/// Checks length, checksum and field lengths of exactly one record.
fn check_record(record: &[u8]) -> Result<Layout, String> {
    if record.len() < RECORD_FIXED_BYTES {
        return Err(format!("record of {} bytes is shorter than its fixed part", record.len()));
    }
    if u32_at(record, 0) as usize != record.len() {
        return Err("record length field does not match".to_owned());
    }
    if crc(&record[8..]) != u32_at(record, 4) {
        return Err("record checksum mismatch".to_owned());
    }
    let stream_len = usize::from(u16_at(record, 48));
    let type_len = usize::from(u16_at(record, 50));
    let content_type_len = usize::from(record[52]);
    let tag_count = usize::from(record[53]);
    let flags = record[54];
    let metadata_len = u32_at(record, 56) as usize;
    let data_len = u32_at(record, 60) as usize;
    if tag_count > TAGS_PER_EVENT_MAX {
        return Err(format!("record has {tag_count} tags"));
    }
    let known = [0, RECORD_KEPT, RECORD_HASHED, RECORD_HASHED | RECORD_KEPT, RECORD_HASHED | RECORD_CARRIED];
    if !known.contains(&flags) || record[55] != 0 {
        return Err(format!("record has unknown chain flags {flags:#x}"));
    }
    let mut at = RECORD_FIXED_BYTES;
    let mut take = |len: usize| -> Result<(usize, usize), String> {
        let end = at.checked_add(len).filter(|&end| end <= record.len()).ok_or("record field overruns the record")?;
        let range = (at, end);
        at = end;
        Ok(range)
    };
    if flags & RECORD_HASHED != 0 {
        take(HASH_BYTES)?;
    }
    let kept = if flags & RECORD_KEPT != 0 {
        let (len_at, _) = take(2)?;
        Some(take(usize::from(u16_at(record, len_at)))?)
    } else {
        None
    };
    let stream = take(stream_len)?;
    let event_type = take(type_len)?;
    let content_type = take(content_type_len)?;
    let tags_start = content_type.1;
    let mut tags_end = tags_start;
    for _ in 0..tag_count {
        let (len_at, _) = take(2)?;
        tags_end = take(usize::from(u16_at(record, len_at)))?.1;
    }
    let metadata = take(metadata_len)?;
    let data = take(data_len)?;
    if data.1 != record.len() {
        return Err("record has trailing bytes".to_owned());
    }
    Ok(Layout {
        stream,
        event_type,
        content_type,
        tags: (tags_start, tags_end, tag_count),
        metadata,
        data,
        flags,
        kept,
    })
}

fn stored_chain<'a>(record: &'a [u8], layout: &Layout) -> Result<StoredChain<'a>, String> {
    if layout.flags & RECORD_HASHED == 0 {
        return Ok(match layout.kept {
            Some((start, end)) => StoredChain::UnchainedKept(KeptHeader::decode(&record[start..end])?),
            None => StoredChain::Unchained,
        });
    }
    let hash_at = RECORD_FIXED_BYTES;
    let hash = EventHash::from_bytes(record[hash_at..hash_at + HASH_BYTES].try_into().expect("32 bytes"));
    Ok(match layout.kept {
        Some((start, end)) => StoredChain::Kept { hash, kept: KeptHeader::decode(&record[start..end])? },
        None if layout.flags & RECORD_CARRIED != 0 => StoredChain::Carried(hash),
        None => StoredChain::Hashed(hash),
    })
}

/// Decodes the index-relevant fields of one record (exactly `record.len()` bytes), checking its checksum.
pub fn decode_record_key(record: &[u8]) -> Result<RecordKey<'_>, String> {
    let layout = check_record(record)?;
    let text = |(start, end): (usize, usize), what: &str| {
        std::str::from_utf8(&record[start..end]).map_err(|_| format!("record {what} is not UTF-8"))
    };
    Ok(RecordKey {
        position: u64_at(record, 8),
        revision: u64_at(record, 16),
        recorded_at: Timestamp::from_micros(u64_at(record, 24) as i64),
        id: EventId::from_bytes(record[32..48].try_into().expect("16 bytes")),
        stream: text(layout.stream, "stream id")?,
        event_type: text(layout.event_type, "event type")?,
        content_type: text(layout.content_type, "content type")?,
        tags: &record[layout.tags.0..layout.tags.1],
        tag_count: layout.tags.2 as u8,
        metadata: &record[layout.metadata.0..layout.metadata.1],
        data: &record[layout.data.0..layout.data.1],
        chain: stored_chain(record, &layout)?,
    })
}

/// Decodes one whole record that starts at `offset` in `buffer`, sharing the buffer's bytes.
/// Returns the event and the record's length.
pub fn decode_record(buffer: &Bytes, offset: usize) -> Result<(RecordedEvent, usize), String> {
    let rest = buffer.get(offset..).ok_or("record offset past the buffer")?;
    let len = record_len(rest).ok_or("record cut short")?;
    let record = rest.get(..len).ok_or("record cut short")?;
    let layout = check_record(record)?;
    let slice = |(start, end): (usize, usize)| buffer.slice(offset + start..offset + end);
    let invalid = |what: &str, error: strata_core::ValidationError| format!("record {what} is invalid: {error}");
    let stream = StreamId::from_stored_bytes(slice(layout.stream)).map_err(|e| invalid("stream id", e))?;
    let event_type = EventType::from_stored_bytes(slice(layout.event_type)).map_err(|e| invalid("event type", e))?;
    let content_type = if layout.content_type.0 == layout.content_type.1 {
        None
    } else {
        Some(ContentType::from_stored_bytes(slice(layout.content_type)).map_err(|e| invalid("content type", e))?)
    };
    let (tags_start, tags_end, tag_count) = layout.tags;
    let tags = Tags::from_stored_encoding(slice((tags_start, tags_end)), tag_count).map_err(|e| invalid("tags", e))?;
    let hash = if layout.flags & RECORD_HASHED != 0 {
        let at = RECORD_FIXED_BYTES;
        Some(EventHash::from_bytes(record[at..at + HASH_BYTES].try_into().expect("32 bytes")))
    } else {
        None
    };
    let event = RecordedEvent {
        id: EventId::from_bytes(record[32..48].try_into().expect("16 bytes")),
        stream,
        event_type,
        revision: StreamRevision::new(u64_at(record, 16)),
        position: Position::new(u64_at(record, 8)),
        recorded_at: Timestamp::from_micros(u64_at(record, 24) as i64),
        content_type,
        data: slice(layout.data),
        metadata: slice(layout.metadata),
        tags,
        hash,
    };
    Ok((event, len))
}

/// Decodes a whole frame (header, payload, records) from untrusted bytes, as recovery would; what the
/// fuzz target drives. Returns the frame body and the keys of its records.
pub fn decode_frame(bytes: &[u8]) -> Result<(FrameBody, Vec<RecordKey<'_>>), String> {
    let header: &[u8; FRAME_HEADER_BYTES] =
        bytes.get(..FRAME_HEADER_BYTES).and_then(|h| h.try_into().ok()).ok_or("frame header cut short")?;
    let (payload_len, payload_crc) = match check_frame_header(header) {
        HeaderCheck::Valid { payload_len, payload_crc } => (payload_len, payload_crc),
        HeaderCheck::Zero => return Err("zero frame header".to_owned()),
        HeaderCheck::Invalid(reason) => return Err(reason.to_owned()),
    };
    let payload = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload_len).ok_or("frame payload cut short")?;
    let body = check_frame_payload(payload, payload_crc)?;
    let mut keys = Vec::new();
    if let FrameBody::Commit { first_position, event_count, previous } = body {
        let mut chain_head = previous;
        for (index, record) in FrameRecords::new(payload).enumerate() {
            let key = decode_record_key(record?.1)?;
            if key.position != first_position + index as u64 {
                return Err(format!(
                    "record {index} is at position {}, expected {}",
                    key.position,
                    first_position + index as u64
                ));
            }
            // A chained frame holds chained records, each linked to the one before.
            chain_head = match (chain_head, key.chain) {
                (None, StoredChain::Unchained | StoredChain::UnchainedKept(_)) => None,
                (Some(previous), StoredChain::Unchained | StoredChain::UnchainedKept(_)) => {
                    return Err(format!("record {index} has no hash in a chained frame after {previous}"));
                }
                (None, _) => return Err(format!("record {index} has a hash in a format-1 frame")),
                (Some(previous), _) => key.check_link(&previous)?,
            };
            keys.push(key);
        }
        if keys.len() != event_count as usize {
            return Err(format!("frame says {event_count} events but holds {}", keys.len()));
        }
    }
    Ok((body, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::Tag;

    /// Pushes `event` as the next record of a chained frame, linked to `previous`; returns its
    /// offset and hash.
    pub(super) fn push_chained(
        builder: &mut FrameBuilder,
        previous: &EventHash,
        position: u64,
        revision: u64,
        id: EventId,
        stream: &StreamId,
        event: &NewEvent,
    ) -> (usize, EventHash) {
        let recorded_at = Timestamp::from_micros(42);
        let digest = new_event_content_digest(event);
        let hash =
            hash_new_event(previous, position, stream, revision, id, recorded_at, event, &digest, &mut Vec::new());
        let offset = builder.push_record(RecordFields {
            position,
            revision,
            recorded_at,
            id,
            stream,
            event,
            chain: RecordChain::Hashed(hash),
        });
        (offset, hash)
    }

    fn event(data: &'static str) -> NewEvent {
        NewEvent::new(EventType::new("Happened").unwrap(), data)
            .with_metadata("{\"m\":1}")
            .with_tags(vec![Tag::new("a:1").unwrap(), Tag::new("b:2").unwrap()])
            .unwrap()
    }

    #[test]
    fn frame_round_trip() {
        let stream = StreamId::new("account-1").unwrap();
        let events = [event("{\"x\":1}"), event("{}")];
        let mut builder = FrameBuilder::default();
        let previous = EventHash::from_bytes([9; 32]);
        builder.start_commit(7, Some(previous));
        let mut offsets = Vec::new();
        let mut head = previous;
        for (index, new_event) in events.iter().enumerate() {
            let id = EventId::from_bytes([index as u8; 16]);
            let (offset, hash) =
                push_chained(&mut builder, &head, 7 + index as u64, index as u64, id, &stream, new_event);
            offsets.push(offset);
            head = hash;
        }
        let frame = Bytes::copy_from_slice(builder.finish());
        let (body, keys) = decode_frame(&frame).unwrap();
        assert_eq!(body, FrameBody::Commit { first_position: 7, event_count: 2, previous: Some(previous) });
        assert_eq!(keys[1].chain, StoredChain::Hashed(head));
        assert_eq!(keys[1].position, 8);
        assert_eq!(keys[1].stream, "account-1");
        let (recorded, len) = decode_record(&frame, offsets[1]).unwrap();
        assert_eq!(len, record_encoded_len(&stream, &events[1]));
        assert_eq!(recorded.data, Bytes::from_static(b"{}"));
        assert_eq!(recorded.tags.len(), 2);
        assert_eq!(recorded.revision, StreamRevision::new(1));
        assert_eq!(recorded.recorded_at, Timestamp::from_micros(42));
        assert_eq!(recorded.hash, Some(head));
    }

    #[test]
    fn a_broken_link_or_a_frame_of_another_history_is_refused() {
        let stream = StreamId::new("s").unwrap();
        let new_event = event("{}");
        let mut builder = FrameBuilder::default();
        builder.start_commit(0, Some(EventHash::ZERO));
        // Linked to another predecessor than the frame names.
        push_chained(
            &mut builder,
            &EventHash::from_bytes([1; 32]),
            0,
            0,
            EventId::from_bytes([1; 16]),
            &stream,
            &new_event,
        );
        let frame = builder.finish().to_vec();
        assert!(decode_frame(&frame).unwrap_err().contains("hash chain breaks at position 0"));
    }

    #[test]
    fn a_format_1_frame_still_decodes() {
        let stream = StreamId::new("s").unwrap();
        let new_event = event("{}");
        let mut builder = FrameBuilder::default();
        builder.start_commit(3, None);
        builder.push_record(RecordFields {
            position: 3,
            revision: 0,
            recorded_at: Timestamp::UNIX_EPOCH,
            id: EventId::from_bytes([1; 16]),
            stream: &stream,
            event: &new_event,
            chain: RecordChain::Unchained,
        });
        let frame = Bytes::copy_from_slice(builder.finish());
        let (body, keys) = decode_frame(&frame).unwrap();
        assert_eq!(body, FrameBody::Commit { first_position: 3, event_count: 1, previous: None });
        assert_eq!(keys[0].chain, StoredChain::Unchained);
        assert_eq!(decode_record(&frame, FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES).unwrap().0.hash, None);
    }

    #[test]
    fn a_placeholder_keeps_what_its_hash_covers() {
        let stream = StreamId::new("s-1").unwrap();
        let original = event("{\"secret\":1}");
        let mut builder = FrameBuilder::default();
        builder.start_commit(0, Some(EventHash::ZERO));
        let (_, hash) =
            push_chained(&mut builder, &EventHash::ZERO, 0, 0, EventId::from_bytes([1; 16]), &stream, &original);
        let frame = builder.finish().to_vec();
        let (_, keys) = decode_frame(&frame).unwrap();
        let key = keys[0];
        let kept = key.kept_header();
        let placeholder = NewEvent::new(EventType::new("$scavenged").unwrap(), Bytes::new());
        let mut rewritten = FrameBuilder::default();
        rewritten.start_commit(0, Some(EventHash::ZERO));
        rewritten.push_record(RecordFields {
            position: 0,
            revision: 0,
            recorded_at: key.recorded_at,
            id: key.id,
            stream: &stream,
            event: &placeholder,
            chain: RecordChain::Placeholder { hash, kept: Some(kept) },
        });
        let rewritten = Bytes::copy_from_slice(rewritten.finish());
        let (_, keys) = decode_frame(&rewritten).expect("the placeholder's link still verifies");
        assert_eq!(keys[0].event_type, "$scavenged");
        assert!(keys[0].data.is_empty() && keys[0].tags().next().is_none());
        assert_eq!(keys[0].chain.hash(), Some(hash));
        let at = FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES + FRAME_CHAIN_BYTES;
        assert_eq!(decode_record(&rewritten, at).unwrap().0.hash, Some(hash));
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let stream = StreamId::new("s").unwrap();
        let new_event = event("{\"x\":1}");
        let mut builder = FrameBuilder::default();
        builder.start_commit(0, Some(EventHash::ZERO));
        push_chained(&mut builder, &EventHash::ZERO, 0, 0, EventId::from_bytes([1; 16]), &stream, &new_event);
        let frame = builder.finish().to_vec();
        for bit in 0..frame.len() * 8 {
            let mut damaged = frame.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&damaged).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    /// Regression: a record claiming length 0 once made the iterator yield it forever.
    #[test]
    fn frame_records_end_on_a_record_that_claims_length_zero() {
        let payload = [0u8; FRAME_BODY_HEADER_BYTES + 8];
        let records: Vec<_> = FrameRecords::new(&payload).take(3).collect();
        assert_eq!(records.len(), 1);
        assert!(records[0].is_err());
    }

    #[test]
    fn seal_and_segment_header_round_trip() {
        let seal = seal_frame(99);
        assert_eq!(decode_frame(&seal).unwrap().0, FrameBody::Seal { next_position: 99 });
        let header = SegmentHeader { segment: 3, first_position: 1234, format_version: FORMAT_VERSION };
        assert_eq!(decode_segment_header(&encode_segment_header(header)).unwrap(), header);
        let mut damaged = encode_segment_header(header);
        damaged[17] ^= 4;
        assert!(decode_segment_header(&damaged).is_err());
    }
}

/// The fuzz target's property, run on every `cargo test`: arbitrary bytes and damaged valid frames
/// never make a decoder panic.
#[cfg(test)]
mod decoder_properties {
    use super::*;
    use proptest::prelude::*;
    use strata_core::Tag;

    fn valid_frame(data_len: usize, tags: usize) -> Vec<u8> {
        let stream = StreamId::new("s-1").unwrap();
        let tags = (0..tags).map(|i| Tag::new(format!("k:{i}")).unwrap()).collect();
        let event = NewEvent::new(EventType::new("T").unwrap(), vec![7u8; data_len]).with_tags(tags).unwrap();
        let mut builder = FrameBuilder::default();
        builder.start_commit(0, Some(EventHash::ZERO));
        let mut head = EventHash::ZERO;
        for position in 0..2 {
            let id = EventId::from_bytes([position as u8; 16]);
            head = super::tests::push_chained(&mut builder, &head, position, position, id, &stream, &event).1;
        }
        builder.finish().to_vec()
    }

    fn decode_everything(bytes: &[u8]) {
        let _ = decode_frame(bytes);
        let _ = decode_segment_header(bytes);
        let _ = check_frame_payload(bytes, crc(bytes));
        for (_, record) in FrameRecords::new(bytes).take(64).flatten() {
            let _ = decode_record_key(record);
        }
        let buffer = Bytes::copy_from_slice(bytes);
        for offset in 0..bytes.len().min(80) {
            let _ = decode_record(&buffer, offset);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            decode_everything(&bytes);
        }

        #[test]
        fn damaged_frames_never_panic(
            data_len in 0usize..300,
            tags in 0usize..4,
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut frame = valid_frame(data_len, tags);
            for (at, value) in damage {
                let at = at.index(frame.len());
                frame[at] = value;
            }
            // Re-seal every checksum, so the damage reaches the field parsers behind them.
            let records: Vec<(usize, usize)> = FrameRecords::new(&frame[FRAME_HEADER_BYTES..])
                .filter_map(Result::ok)
                .map(|(offset, record)| (FRAME_HEADER_BYTES + offset, record.len()))
                .collect();
            for (offset, len) in records {
                if len >= 8 {
                    let record_crc = crc(&frame[offset + 8..offset + len]);
                    frame[offset + 4..offset + 8].copy_from_slice(&record_crc.to_le_bytes());
                }
            }
            let payload_crc = crc(&frame[FRAME_HEADER_BYTES..]);
            frame[8..12].copy_from_slice(&payload_crc.to_le_bytes());
            let header_crc = crc(&frame[..12]);
            frame[12..16].copy_from_slice(&header_crc.to_le_bytes());
            decode_everything(&frame);
            let cut = cut.index(frame.len() + 1);
            decode_everything(&frame[..cut]);
        }
    }
}
