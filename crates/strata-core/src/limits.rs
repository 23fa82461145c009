//! Every limit of `DESIGN.md` §7, in one place. The storage engine and the server check them at the edge;
//! the on-disk format relies on them (lengths are stored in fields sized to fit these maxima).

/// Longest stream id, in UTF-8 bytes.
pub const STREAM_ID_BYTES_MAX: usize = 256;
/// Longest event type, in UTF-8 bytes.
pub const EVENT_TYPE_BYTES_MAX: usize = 256;
/// Longest tag (`key:value`), in UTF-8 bytes.
pub const TAG_BYTES_MAX: usize = 256;
/// Most tags on one event.
pub const TAGS_PER_EVENT_MAX: usize = 32;
/// Longest content type (for example `application/octet-stream`), in bytes.
pub const CONTENT_TYPE_BYTES_MAX: usize = 128;
/// Default largest event: data plus metadata, in bytes.
pub const EVENT_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// The ceiling a store may be configured to for the largest event (data plus metadata), in bytes.
pub const EVENT_BYTES_MAX_CEILING: usize = 16 * 1024 * 1024;
/// Largest append request: the sum of [`crate::NewEvent::size_bytes`] over its events.
pub const APPEND_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most events in one append request.
pub const APPEND_EVENTS_MAX: usize = 10_000;
/// Most events one read returns; a larger `limit` is clamped (page with the returned positions).
pub const READ_EVENTS_MAX: usize = 100_000;
/// A page of a read (`read_*_page`, the HTTP API, subscriptions) holds events of about this many bytes
/// at most — always at least one event, and at most one merged disk read beyond it.
pub const READ_PAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most stream names one listing returns; a larger `limit` is clamped (page with `after`).
pub const STREAMS_LIST_MAX: usize = 10_000;
