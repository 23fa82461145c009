//! The on-disk format, as pure functions from values to bytes and back (`docs/design.md` draws it).
//!
//! A segment file is a 64-byte [segment header](encode_segment_header) followed by frames. A frame is
//! one commit group (everything one fdatasync made durable): a 16-byte frame header, then a payload of
//! a 16-byte body header and self-describing event records. A seal frame closes a full segment.
//!
//! The decoders take untrusted bytes: they never panic, never read out of bounds, and never allocate
//! more than a small bound (tags of one event) beyond the input they are given.

use bytes::Bytes;
use strata_core::limits::TAGS_PER_EVENT_MAX;
use strata_core::{
    ContentType, EventId, EventType, NewEvent, Position, RecordedEvent, StreamId, StreamRevision, Tags, Timestamp,
};

pub const FORMAT_VERSION: u32 = 1;
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATASG";
pub const SEGMENT_HEADER_BYTES: u64 = 64;
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"STFR");
pub const FRAME_HEADER_BYTES: usize = 16;
pub const FRAME_BODY_HEADER_BYTES: usize = 16;
pub const RECORD_FIXED_BYTES: usize = 64;
/// Size of a seal frame, which is always reserved at the end of a segment.
pub const SEAL_FRAME_BYTES: usize = FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES;
/// The largest frame payload the format admits. Bounds what a reader allocates for a frame and how
/// far past the last good frame a torn write can reach.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

const KIND_COMMIT: u8 = 1;
const KIND_SEAL: u8 = 2;

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
    /// The position of the segment's first event (the log's next position when it was created).
    pub first_position: u64,
}

/// `magic[8] | format_version u32 | segment u32 | first_position u64 | zero[36] | crc32c u32` (little-endian).
pub fn encode_segment_header(header: SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES as usize];
    bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
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
    if format_version != FORMAT_VERSION {
        return Err(format!(
            "segment format_version {format_version} is not supported (this build reads {FORMAT_VERSION})"
        ));
    }
    Ok(SegmentHeader { segment: u32_at(bytes, 12), first_position: u64_at(bytes, 16) })
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
    /// A commit group of `event_count` events at positions `first_position..`.
    Commit { first_position: u64, event_count: u32 },
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
    match payload[0] {
        KIND_COMMIT if count > 0 => Ok(FrameBody::Commit { first_position: position, event_count: count }),
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
        Self { payload, offset: FRAME_BODY_HEADER_BYTES.min(payload.len()), failed: false }
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
}

impl FrameBuilder {
    /// Starts a commit frame whose first event will be at `first_position`.
    pub fn start_commit(&mut self, first_position: u64) {
        self.bytes.clear();
        self.bytes.resize(FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES, 0);
        self.event_count = 0;
        self.first_position = first_position;
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
        let offset = self.bytes.len();
        encode_record(&mut self.bytes, record);
        self.event_count += 1;
        offset
    }

    /// Appends an already encoded (and checked) record of the next event, unchanged.
    pub fn push_encoded_record(&mut self, record: &[u8]) -> usize {
        assert_eq!(u64_at(record, 8), self.first_position + u64::from(self.event_count), "positions must be dense");
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
// 48 stream_len u16 | 50 type_len u16 | 52 content_type_len u8 | 53 tag_count u8 | 54 zero u16
// 56 metadata_len u32 | 60 data_len u32
// 64 stream | type | content_type | tags (each u16 len + bytes) | metadata | data

/// Everything a record stores.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    pub position: u64,
    pub revision: u64,
    pub recorded_at: Timestamp,
    pub id: EventId,
    pub stream: &'a StreamId,
    pub event: &'a NewEvent,
}

/// The encoded size of an event's record.
pub fn record_encoded_len(stream: &StreamId, event: &NewEvent) -> usize {
    RECORD_FIXED_BYTES
        + stream.as_str().len()
        + event.event_type().as_str().len()
        + event.content_type().map_or(0, |c| c.as_str().len())
        + event.tags().iter().map(|tag| 2 + tag.as_str().len()).sum::<usize>()
        + event.metadata().len()
        + event.data().len()
}

fn encode_record(out: &mut Vec<u8>, record: RecordFields<'_>) {
    let start = out.len();
    let event = record.event;
    let content_type = event.content_type().map_or("", |c| c.as_str());
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
    out.extend_from_slice(&[0u8; 2]);
    out.extend_from_slice(&(event.metadata().len() as u32).to_le_bytes());
    out.extend_from_slice(&(event.data().len() as u32).to_le_bytes());
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
}

/// The length a record claims, if at least its length field is there.
pub fn record_len(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= 4).then(|| u32_at(bytes, 0) as usize)
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
    /// The encoded tags (`u16` length + bytes each); see [`RecordKey::tags`].
    tags: &'a [u8],
    pub data: &'a [u8],
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
}

/// Where the variable-length fields of a checked record lie.
struct Layout {
    stream: (usize, usize),
    event_type: (usize, usize),
    content_type: (usize, usize),
    tags: (usize, usize, usize),
    metadata: (usize, usize),
    data: (usize, usize),
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
    let metadata_len = u32_at(record, 56) as usize;
    let data_len = u32_at(record, 60) as usize;
    if tag_count > TAGS_PER_EVENT_MAX {
        return Err(format!("record has {tag_count} tags"));
    }
    let mut at = RECORD_FIXED_BYTES;
    let mut take = |len: usize| -> Result<(usize, usize), String> {
        let end = at.checked_add(len).filter(|&end| end <= record.len()).ok_or("record field overruns the record")?;
        let range = (at, end);
        at = end;
        Ok(range)
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
    Ok(Layout { stream, event_type, content_type, tags: (tags_start, tags_end, tag_count), metadata, data })
}

/// Decodes the index-relevant fields of one record (exactly `record.len()` bytes), checking its checksum.
pub fn decode_record_key(record: &[u8]) -> Result<RecordKey<'_>, String> {
    let layout = check_record(record)?;
    let stream = std::str::from_utf8(&record[layout.stream.0..layout.stream.1])
        .map_err(|_| "record stream id is not UTF-8".to_owned())?;
    let event_type = std::str::from_utf8(&record[layout.event_type.0..layout.event_type.1])
        .map_err(|_| "record event type is not UTF-8".to_owned())?;
    Ok(RecordKey {
        position: u64_at(record, 8),
        revision: u64_at(record, 16),
        recorded_at: Timestamp::from_micros(u64_at(record, 24) as i64),
        id: EventId::from_bytes(record[32..48].try_into().expect("16 bytes")),
        stream,
        event_type,
        tags: &record[layout.tags.0..layout.tags.1],
        data: &record[layout.data.0..layout.data.1],
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
        hash: None,
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
    if let FrameBody::Commit { first_position, event_count } = body {
        for (index, record) in FrameRecords::new(payload).enumerate() {
            let key = decode_record_key(record?.1)?;
            if key.position != first_position + index as u64 {
                return Err(format!(
                    "record {index} is at position {}, expected {}",
                    key.position,
                    first_position + index as u64
                ));
            }
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
        builder.start_commit(7);
        let mut offsets = Vec::new();
        for (index, new_event) in events.iter().enumerate() {
            offsets.push(builder.push_record(RecordFields {
                position: 7 + index as u64,
                revision: index as u64,
                recorded_at: Timestamp::from_micros(42),
                id: EventId::from_bytes([index as u8; 16]),
                stream: &stream,
                event: new_event,
            }));
        }
        let frame = Bytes::copy_from_slice(builder.finish());
        let (body, keys) = decode_frame(&frame).unwrap();
        assert_eq!(body, FrameBody::Commit { first_position: 7, event_count: 2 });
        assert_eq!(keys[1].position, 8);
        assert_eq!(keys[1].stream, "account-1");
        let (recorded, len) = decode_record(&frame, offsets[1]).unwrap();
        assert_eq!(len, record_encoded_len(&stream, &events[1]));
        assert_eq!(recorded.data, Bytes::from_static(b"{}"));
        assert_eq!(recorded.tags.len(), 2);
        assert_eq!(recorded.revision, StreamRevision::new(1));
        assert_eq!(recorded.recorded_at, Timestamp::from_micros(42));
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let stream = StreamId::new("s").unwrap();
        let new_event = event("{\"x\":1}");
        let mut builder = FrameBuilder::default();
        builder.start_commit(0);
        builder.push_record(RecordFields {
            position: 0,
            revision: 0,
            recorded_at: Timestamp::UNIX_EPOCH,
            id: EventId::from_bytes([1; 16]),
            stream: &stream,
            event: &new_event,
        });
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
        let header = SegmentHeader { segment: 3, first_position: 1234 };
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
        builder.start_commit(0);
        for position in 0..2 {
            builder.push_record(RecordFields {
                position,
                revision: position,
                recorded_at: Timestamp::UNIX_EPOCH,
                id: EventId::from_bytes([position as u8; 16]),
                stream: &stream,
                event: &event,
            });
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
