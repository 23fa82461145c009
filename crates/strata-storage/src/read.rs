//! Reads: a stream by revision, the global log by position, forwards or backwards.
//!
//! A read copies the locations it needs out of the index under a short read lock, then reads the
//! segment files without any lock. It sees only committed events (the index holds nothing else), and
//! every record's checksum is verified before it is returned.

use crate::error::{Corruption, ReadError, StorageError};
use crate::format::{FRAME_PAYLOAD_BYTES_MAX, decode_record, record_len};
use crate::index::{Location, SegmentFile};
use crate::io::read_exact_at;
use crate::store::Store;
use bytes::Bytes;
use std::sync::Mutex;
use strata_core::limits::READ_EVENTS_MAX;
use strata_core::{Position, RecordedEvent, StreamId, StreamRevision};

/// Reads of neighbouring records are merged into reads of up to this many bytes.
const READ_SPAN_BYTES_MAX: u64 = 1 << 20;
/// Bytes read past the start of the last record of a span, hoping to cover it whole.
const RECORD_GUESS_BYTES: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Where a read starts. `At` is inclusive; `Start` and `End` are the first and last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom<T> {
    Start,
    End,
    At(T),
}

/// The indexes `0..len` that a read of at most `limit` (clamped to [`READ_EVENTS_MAX`]) from `from` in
/// `direction` covers, in ascending order.
fn span(len: u64, from: ReadFrom<u64>, direction: Direction, limit: usize) -> std::ops::Range<u64> {
    let limit = limit.min(READ_EVENTS_MAX) as u64;
    match direction {
        Direction::Forward => {
            let start = match from {
                ReadFrom::Start => 0,
                ReadFrom::End => len,
                ReadFrom::At(at) => at.min(len),
            };
            start..start.saturating_add(limit).min(len)
        }
        Direction::Backward => {
            if len == 0 {
                return 0..0;
            }
            let last = match from {
                ReadFrom::Start => 0,
                ReadFrom::End => len - 1,
                ReadFrom::At(at) => at.min(len - 1),
            };
            (last + 1).saturating_sub(limit)..last + 1
        }
    }
}

fn map_from<T: Copy>(from: ReadFrom<T>, value: impl Fn(T) -> u64) -> ReadFrom<u64> {
    match from {
        ReadFrom::Start => ReadFrom::Start,
        ReadFrom::End => ReadFrom::End,
        ReadFrom::At(at) => ReadFrom::At(value(at)),
    }
}

impl Store {
    /// Up to `limit` events of `stream` from `from`, in `direction` (at most [`READ_EVENTS_MAX`]).
    /// A stream without events is [`ReadError::StreamNotFound`].
    pub fn read_stream(
        &self,
        stream: &StreamId,
        from: ReadFrom<StreamRevision>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let (targets, segments) = {
            let index = self.index();
            let entry = index
                .stream(stream.as_str())
                .filter(|entry| !entry.positions.is_empty())
                .ok_or_else(|| ReadError::StreamNotFound { stream: stream.clone() })?;
            let revisions = span(entry.positions.len() as u64, map_from(from, StreamRevision::value), direction, limit);
            let positions = &entry.positions[revisions.start as usize..revisions.end as usize];
            let targets: Vec<(u64, Location)> =
                positions.iter().map(|&p| (p, index.location(p).expect("stream positions are indexed"))).collect();
            (targets, index.segments.clone())
        };
        fetch(&segments, &targets, direction)
    }

    /// Up to `limit` events of the global log from `from`, in `direction` (at most [`READ_EVENTS_MAX`]).
    pub fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let (targets, segments) = {
            let index = self.index();
            let positions = span(index.next_position(), map_from(from, Position::value), direction, limit);
            let mut targets = Vec::with_capacity((positions.end - positions.start) as usize);
            index.copy_locations(positions, &mut targets);
            (targets, index.segments.clone())
        };
        fetch(&segments, &targets, direction)
    }

    /// [`Store::read_stream`] on tokio's blocking pool.
    pub async fn read_stream_async(
        &self,
        stream: StreamId,
        from: ReadFrom<StreamRevision>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_stream(&stream, from, direction, limit))
            .await
            .expect("read task panicked")
    }

    /// [`Store::read_all`] on tokio's blocking pool.
    pub async fn read_all_async(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_all(from, direction, limit)).await.expect("read task panicked")
    }
}

/// Reads the records at `targets` (ascending positions), merging reads of neighbouring records, and
/// returns them in `direction` order.
fn fetch(
    segments: &[SegmentFile],
    targets: &[(u64, Location)],
    direction: Direction,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let mut events = Vec::with_capacity(targets.len());
    let mut first = 0;
    while first < targets.len() {
        let start = targets[first].1;
        let mut end = first + 1;
        while end < targets.len() {
            let next = targets[end].1;
            if next.segment != start.segment || u64::from(next.offset) >= u64::from(start.offset) + READ_SPAN_BYTES_MAX
            {
                break;
            }
            end += 1;
        }
        let segment = &segments[start.segment as usize];
        let span_start = u64::from(start.offset);
        let span_end = (u64::from(targets[end - 1].1.offset) + RECORD_GUESS_BYTES).min(segment.len_bytes);
        let buffer = read_bytes(segment, span_start, (span_end - span_start) as usize)?;
        for &(position, location) in &targets[first..end] {
            let relative = (u64::from(location.offset) - span_start) as usize;
            let covered = record_len(&buffer[relative..]).is_some_and(|len| relative + len <= buffer.len());
            let event = if covered {
                decode_at(segment, start.segment, &buffer, relative, location)?
            } else {
                let record = read_record(segment, start.segment, location)?;
                decode_at(segment, start.segment, &record, 0, location)?
            };
            if event.position.value() != position {
                return Err(corruption(
                    segment,
                    start.segment,
                    location,
                    format!(
                        "the index places position {position} here but the record holds position {}",
                        event.position
                    ),
                )
                .into());
            }
            events.push(event);
        }
        first = end;
    }
    if direction == Direction::Backward {
        events.reverse();
    }
    Ok(events)
}

/// Read buffers, recycled. Events share the buffer they were read into (no copy per event), so a
/// buffer is free again only when the last event reading from it is dropped; then it returns here.
/// Without the pool every read would allocate, fault in and zero a fresh buffer, and how much that
/// costs would depend on the allocator's mood (glibc maps and unmaps buffers of this size).
static BUFFER_POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Buffers kept for reuse; more are freed.
const BUFFER_POOL_MAX: usize = 32;

/// A buffer that goes back to [`BUFFER_POOL`] when the last `Bytes` sharing it is dropped.
struct PooledBuffer(Vec<u8>);

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        if buffer.capacity() <= (READ_SPAN_BYTES_MAX + RECORD_GUESS_BYTES) as usize {
            let mut pool = BUFFER_POOL.lock().expect("buffer pool lock");
            if pool.len() < BUFFER_POOL_MAX {
                pool.push(buffer);
            }
        }
    }
}

fn read_bytes(segment: &SegmentFile, offset: u64, len: usize) -> Result<Bytes, ReadError> {
    let mut buffer = BUFFER_POOL.lock().expect("buffer pool lock").pop().unwrap_or_default();
    // Only growth is zeroed; the rest is overwritten by the read.
    buffer.resize(len, 0);
    read_exact_at(&*segment.file, &mut buffer, offset).map_err(|e| StorageError::new("read", &segment.path, e))?;
    Ok(Bytes::from_owner(PooledBuffer(buffer)))
}

/// Reads one record whose length is not known yet.
fn read_record(segment: &SegmentFile, number: u32, location: Location) -> Result<Bytes, ReadError> {
    let offset = u64::from(location.offset);
    let head = read_bytes(segment, offset, 4)?;
    let len = record_len(&head).expect("four bytes were read");
    if len > FRAME_PAYLOAD_BYTES_MAX || offset + len as u64 > segment.len_bytes {
        return Err(corruption(segment, number, location, format!("record claims {len} bytes")).into());
    }
    read_bytes(segment, offset, len)
}

fn decode_at(
    segment: &SegmentFile,
    number: u32,
    buffer: &Bytes,
    relative: usize,
    location: Location,
) -> Result<RecordedEvent, ReadError> {
    decode_record(buffer, relative)
        .map(|(event, _)| event)
        .map_err(|reason| corruption(segment, number, location, reason).into())
}

fn corruption(segment: &SegmentFile, number: u32, location: Location, reason: String) -> Corruption {
    Corruption { segment: number, path: segment.path.clone(), offset_bytes: u64::from(location.offset), reason }
}
