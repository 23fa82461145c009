//! Reads: a stream by revision, the global log by position, forwards or backwards.
//!
//! A read copies the locations it needs out of the index under a short read lock, then reads the
//! segment files without any lock. It sees only committed events (the index holds nothing else), and
//! every record's checksum is verified before it is returned.

use crate::error::{Corruption, ReadError, StorageError};
use crate::filter::{Filter, Matcher};
use crate::index::Index;
use crate::index::{Location, SegmentFile};
use crate::io::read_exact_at;
use crate::log::format::{FRAME_PAYLOAD_BYTES_MAX, decode_record, record_len};
use crate::store::Store;
use bytes::Bytes;
use std::sync::Mutex;
use strata_core::limits::{READ_EVENTS_MAX, READ_PAGE_BYTES_MAX};
use strata_core::{Position, RecordedEvent, StreamId, StreamRevision, Timestamp};
pub use strata_store::read::*;

/// A filtered read searches this many positions per hold of the index lock.
const FILTER_WINDOW_POSITIONS: u64 = 1 << 16;
/// Reads of neighbouring records are merged into reads of up to this many bytes.
const READ_SPAN_BYTES_MAX: u64 = 1 << 20;
/// A record joins the read of the one before it only if it starts at most this far after it:
/// reading the bytes in between must be cheaper than a read of its own. Records farther apart (a
/// stream's events among others', sparse filter matches) are read one by one.
const READ_GAP_BYTES_MAX: u64 = 8 << 10;
/// Bytes read past the start of the last record of a span, hoping to cover it whole (a typical
/// record is a few hundred bytes; a longer one costs a second read).
const RECORD_GUESS_BYTES: u64 = 1024;
/// Spans at least this large come from the buffer pool; smaller ones are plain allocations (cheap
/// at that size, and a small event must not pin a large pooled buffer).
const POOLED_SPAN_BYTES_MIN: usize = 64 << 10;

/// The indexes `0..len` that a read of at most `limit` (clamped to [`READ_EVENTS_MAX`]) from `from` in
/// `direction` covers, in ascending order.
fn span(len: u64, from: ReadFrom<u64>, direction: Direction, limit: usize) -> std::ops::Range<u64> {
    span_within(0, len, from, direction, limit)
}

/// The same within `first..len`: nothing before `first` is read, and `Start` means `first`.
fn span_within(first: u64, len: u64, from: ReadFrom<u64>, direction: Direction, limit: usize) -> std::ops::Range<u64> {
    let limit = limit.min(READ_EVENTS_MAX) as u64;
    if first >= len {
        return len..len;
    }
    match direction {
        Direction::Forward => {
            let start = match from {
                ReadFrom::Start => first,
                ReadFrom::End => len,
                ReadFrom::At(at) => at.clamp(first, len),
            };
            start..start.saturating_add(limit).min(len)
        }
        Direction::Backward => {
            let last = match from {
                ReadFrom::Start => first,
                ReadFrom::End => len - 1,
                ReadFrom::At(at) => at.min(len - 1),
            };
            if last < first {
                return first..first;
            }
            (last + 1).saturating_sub(limit).max(first)..last + 1
        }
    }
}

/// How many positions (`0..n`) a read with `options` may see.
fn visible_len(options: &ReadOptions, index: &Index) -> Result<u64, StorageError> {
    let mut len = index.next_position();
    if let Some(position) = options.until_position {
        len = len.min(position.value().saturating_add(1));
    }
    if let Some(time) = options.until_time {
        len = len.min(index.position_at(time)?.map_or(0, |position| position + 1));
    }
    Ok(len)
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
        self.read_stream_with(stream, from, &ReadOptions { direction, ..ReadOptions::forward(limit) })
    }

    /// Events of `stream` from `from`, as `options` say — including "as of" a position or a time, when
    /// a stream that had no events yet is [`ReadError::StreamNotFound`].
    pub fn read_stream_with(
        &self,
        stream: &StreamId,
        from: ReadFrom<StreamRevision>,
        options: &ReadOptions,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.read_stream_bounded(stream, from, options, usize::MAX).map(|page| page.events)
    }

    /// [`Store::read_stream_with`], cut short at about [`READ_PAGE_BYTES_MAX`] of events: what a
    /// server or a subscription reads at once. `more` says whether to read on from the last event.
    pub fn read_stream_page(
        &self,
        stream: &StreamId,
        from: ReadFrom<StreamRevision>,
        options: &ReadOptions,
    ) -> Result<ReadPage, ReadError> {
        self.read_stream_bounded(stream, from, options, READ_PAGE_BYTES_MAX)
    }

    fn read_stream_bounded(
        &self,
        stream: &StreamId,
        from: ReadFrom<StreamRevision>,
        options: &ReadOptions,
        bytes_max: usize,
    ) -> Result<ReadPage, ReadError> {
        let now = self.now();
        let (targets, segments) = {
            let index = self.index();
            if index.is_tombstoned(stream.as_str()) {
                return Err(ReadError::StreamDeleted { stream: stream.clone() });
            }
            let visible_len = visible_len(options, &index)?;
            let not_found = || ReadError::StreamNotFound { stream: stream.clone() };
            let entry = index.stream(stream.as_str())?.ok_or_else(not_found)?;
            let revisions = index.stream_partition_point(&entry, |p| Ok(p < visible_len))?;
            // Metadata (truncate_before, max_count, max_age; a soft delete) hides the oldest revisions.
            let first_visible = index.first_visible_revision(&entry, now)?;
            if first_visible >= revisions {
                return Err(not_found());
            }
            let span = span_within(
                first_visible,
                revisions,
                map_from(from, StreamRevision::value),
                options.direction,
                options.limit,
            );
            let mut targets = Vec::with_capacity((span.end - span.start) as usize);
            index.stream_positions(&entry, span, &mut targets)?;
            (targets, index.segments.clone())
        };
        page(&segments, &targets, options, bytes_max)
    }

    /// Up to `limit` events of the global log from `from`, in `direction` (at most [`READ_EVENTS_MAX`]).
    pub fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.read_all_with(from, &ReadOptions { direction, ..ReadOptions::forward(limit) }, &Filter::default())
    }

    /// Events of the global log from `from` that match `filter`, as `options` say. `from` is a
    /// position; the events returned are the matching ones at or after it (forward) or at or before
    /// it (backward).
    pub fn read_all_with(
        &self,
        from: ReadFrom<Position>,
        options: &ReadOptions,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.read_all_bounded(from, options, filter, usize::MAX).map(|page| page.events)
    }

    /// [`Store::read_all_with`], cut short at about [`READ_PAGE_BYTES_MAX`] of events.
    pub fn read_all_page(
        &self,
        from: ReadFrom<Position>,
        options: &ReadOptions,
        filter: &Filter,
    ) -> Result<ReadPage, ReadError> {
        self.read_all_bounded(from, options, filter, READ_PAGE_BYTES_MAX)
    }

    fn read_all_bounded(
        &self,
        from: ReadFrom<Position>,
        options: &ReadOptions,
        filter: &Filter,
        bytes_max: usize,
    ) -> Result<ReadPage, ReadError> {
        let limit = options.limit.min(READ_EVENTS_MAX);
        if filter.is_empty() {
            let (targets, segments) = {
                let index = self.index();
                let len = visible_len(options, &index)?;
                let positions = span(len, map_from(from, Position::value), options.direction, limit);
                let mut targets = Vec::with_capacity((positions.end - positions.start) as usize);
                index.copy_locations(positions, &mut targets)?;
                (targets, index.segments.clone())
            };
            return page(&segments, &targets, options, bytes_max);
        }
        // Filtered: the log is searched in windows of `FILTER_WINDOW_POSITIONS`, the index lock taken
        // afresh for each, so that a filter matching little (a prefix of thousands of streams) cannot
        // hold the committer off for long. Committed positions never change, so the windows see one
        // log; `len` is fixed at the first, so they see one moment of it.
        let mut targets = Vec::new();
        let mut len = None;
        let mut cursor: Option<u64> = None;
        let segments = loop {
            let index = self.index();
            let len = match len {
                Some(len) => len,
                None => *len.insert(visible_len(options, &index)?),
            };
            let matcher = Matcher::new(&index, filter)?;
            let mut found = Vec::new();
            let finished = match options.direction {
                Direction::Forward => {
                    let mut next = cursor.unwrap_or(match from {
                        ReadFrom::Start => 0,
                        ReadFrom::End => len,
                        ReadFrom::At(position) => position.value(),
                    });
                    let window_end = next.saturating_add(FILTER_WINDOW_POSITIONS).min(len);
                    while targets.len() + found.len() < limit {
                        let Some(position) = matcher.next(next, window_end) else {
                            next = window_end;
                            break;
                        };
                        found.push(position);
                        next = position + 1;
                    }
                    cursor = Some(next);
                    targets.len() + found.len() >= limit || next >= len
                }
                Direction::Backward if len > 0 => {
                    // `cursor` is one past the next position to look at, going down.
                    let mut upper = cursor.unwrap_or(match from {
                        ReadFrom::Start => 1,
                        ReadFrom::End => len,
                        ReadFrom::At(position) => position.value().min(len - 1) + 1,
                    });
                    let window_low = upper.saturating_sub(FILTER_WINDOW_POSITIONS);
                    while targets.len() + found.len() < limit && upper > window_low {
                        let Some(position) = matcher.previous_within(upper - 1, window_low) else {
                            upper = window_low;
                            break;
                        };
                        found.push(position);
                        upper = position;
                    }
                    cursor = Some(upper);
                    targets.len() + found.len() >= limit || upper == 0
                }
                Direction::Backward => true,
            };
            if let Some(error) = matcher.error() {
                return Err(error);
            }
            for position in found {
                let location = index.location(position)?.expect("a matching position is committed");
                targets.push((position, location));
            }
            if finished {
                break index.segments.clone();
            }
        };
        if options.direction == Direction::Backward {
            // `fetch` takes ascending positions and turns them around again.
            targets.reverse();
        }
        page(&segments, &targets, options, bytes_max)
    }

    /// The last position recorded at or before `time` (the store's head as of then), or `None` when
    /// nothing was recorded by then.
    pub fn position_at(&self, time: Timestamp) -> Result<Option<Position>, ReadError> {
        Ok(self.index().position_at(time)?.map(Position::new))
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

fn page(
    segments: &[SegmentFile],
    targets: &[(u64, Location)],
    options: &ReadOptions,
    bytes_max: usize,
) -> Result<ReadPage, ReadError> {
    let (events, truncated) = fetch(segments, targets, options.direction, bytes_max)?;
    let more = truncated || targets.len() >= options.limit.min(READ_EVENTS_MAX);
    Ok(ReadPage { events, more })
}

/// Reads the records at `targets` (ascending positions), merging reads of neighbouring records, and
/// returns them in `direction` order — the first ones in that order whose payloads add up to about
/// `bytes_max` (always at least one merged read); `true` when it stopped short of the targets.
fn fetch(
    segments: &[SegmentFile],
    targets: &[(u64, Location)],
    direction: Direction,
    bytes_max: usize,
) -> Result<(Vec<RecordedEvent>, bool), ReadError> {
    // Runs of targets read with one `pread` each.
    let mut spans = Vec::new();
    let mut first = 0;
    while first < targets.len() {
        let start = targets[first].1;
        let mut end = first + 1;
        while end < targets.len() {
            let (previous, next) = (targets[end - 1].1, targets[end].1);
            let near = next.offset > previous.offset && u64::from(next.offset - previous.offset) <= READ_GAP_BYTES_MAX;
            let within_span = u64::from(next.offset) < u64::from(start.offset) + READ_SPAN_BYTES_MAX;
            if next.segment != start.segment || !near || !within_span {
                break;
            }
            end += 1;
        }
        spans.push(first..end);
        first = end;
    }
    if direction == Direction::Backward {
        spans.reverse();
    }
    let mut events = Vec::with_capacity(targets.len().min(READ_EVENTS_MAX));
    let mut bytes = 0;
    let span_count = spans.len();
    for (done, span) in spans.into_iter().enumerate() {
        if done > 0 && bytes >= bytes_max {
            return Ok((events, done < span_count));
        }
        let from = events.len();
        read_span(segments, &targets[span], &mut events)?;
        bytes += events[from..].iter().map(|event| event.data.len() + event.metadata.len() + 128).sum::<usize>();
        if direction == Direction::Backward {
            // Spans come last-first; each span's events are ascending: turn them around here, so the
            // whole is descending.
            events[from..].reverse();
        }
    }
    Ok((events, false))
}

/// Reads one run of neighbouring records with one `pread` and appends them, verified, to `events`.
fn read_span(
    segments: &[SegmentFile],
    targets: &[(u64, Location)],
    events: &mut Vec<RecordedEvent>,
) -> Result<(), ReadError> {
    let start = targets[0].1;
    let segment = &segments[start.segment as usize];
    let span_start = u64::from(start.offset);
    let span_end = (u64::from(targets[targets.len() - 1].1.offset) + RECORD_GUESS_BYTES).min(segment.len_bytes);
    let buffer = read_bytes(segment, span_start, (span_end - span_start) as usize)?;
    for &(position, location) in targets {
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
                format!("the index places position {position} here but the record holds position {}", event.position),
            )
            .into());
        }
        events.push(event);
    }
    Ok(())
}

/// Read buffers, recycled. Events share the buffer they were read into (no copy per event), so a
/// buffer is free again only when the last event reading from it is dropped; then it returns here.
/// Without the pool every large read would allocate, fault in and zero a fresh buffer, and how much
/// that costs would depend on the allocator's mood (glibc maps and unmaps buffers of this size).
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
    if len < POOLED_SPAN_BYTES_MIN {
        let mut buffer = vec![0u8; len];
        read_exact_at(&*segment.file, &mut buffer, offset).map_err(|e| StorageError::new("read", &segment.path, e))?;
        return Ok(Bytes::from(buffer));
    }
    let mut buffer = BUFFER_POOL.lock().expect("buffer pool lock").pop().unwrap_or_default();
    // Only growth is zeroed; the rest is overwritten by the read.
    buffer.resize(len, 0);
    read_exact_at(&*segment.file, &mut buffer, offset).map_err(|e| StorageError::new("read", &segment.path, e))?;
    Ok(Bytes::from_owner(PooledBuffer(buffer)))
}

/// The event at `position`, whose record is at `location`.
pub(crate) fn read_event_at(
    segments: &[SegmentFile],
    location: Location,
    position: u64,
) -> Result<RecordedEvent, ReadError> {
    let segment = segments.get(location.segment as usize).ok_or_else(|| {
        StorageError::new(
            "read",
            segments.first().map(|s| s.path.clone()).unwrap_or_default(),
            std::io::Error::other(format!("the index places position {position} in a segment that does not exist")),
        )
    })?;
    let record = read_record(segment, location.segment, location)?;
    let event = decode_at(segment, location.segment, &record, 0, location)?;
    if event.position.value() != position {
        let reason = format!("the index places position {position} here but the record holds {}", event.position);
        return Err(corruption(segment, location.segment, location, reason).into());
    }
    Ok(event)
}

/// The header and content digests of the event at `position` as it was written (a placeholder's
/// kept ones): what the chain's genesis of a format-1 log covers.
pub(crate) fn event_digests_at(
    segments: &[SegmentFile],
    location: Location,
    position: u64,
) -> Result<(crate::log::chain::Digest32, crate::log::chain::Digest32), ReadError> {
    let segment = segments.get(location.segment as usize).ok_or_else(|| {
        let path = segments.first().map(|s| s.path.clone()).unwrap_or_default();
        StorageError::new("read", path, std::io::Error::other(format!("no segment holds position {position}")))
    })?;
    let record = read_record(segment, location.segment, location)?;
    let key = crate::log::format::decode_record_key(&record)
        .map_err(|reason| corruption(segment, location.segment, location, reason))?;
    if key.position != position {
        let reason = format!("the index places position {position} here but the record holds {}", key.position);
        return Err(corruption(segment, location.segment, location, reason).into());
    }
    Ok(key.digests())
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
