//! What is wrong with a request, said so that the caller knows what to fix.

use crate::event::EventId;

/// A request that breaks a rule of `DESIGN.md` §3 or a limit of §7. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is {actual_bytes} bytes long; the limit is {max_bytes} bytes")]
    TooLong { what: &'static str, actual_bytes: usize, max_bytes: usize },
    #[error("{what} {text:?} contains a control character at byte {offset}; use printable characters only")]
    ControlCharacter { what: &'static str, text: String, offset: usize },
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str },
    #[error("{what} {name:?} starts with '$', which is reserved for the system")]
    Reserved { what: &'static str, name: String },
    #[error("tag {tag:?} must have the form key:value with a non-empty key and value")]
    TagFormat { tag: String },
    #[error("content type {content_type:?} must be printable ASCII without spaces, like application/octet-stream")]
    ContentTypeFormat { content_type: String },
    #[error("an event carries {count} tags; the limit is {max}")]
    TooManyTags { count: usize, max: usize },
    #[error("an append must carry at least one event")]
    EmptyBatch,
    #[error("an append carries {count} events; the limit is {max}")]
    TooManyEvents { count: usize, max: usize },
    #[error("event {event_id} is {size_bytes} bytes (data plus metadata); the limit is {max_bytes} bytes")]
    EventTooLarge { event_id: EventId, size_bytes: usize, max_bytes: usize },
    #[error("the append is {size_bytes} bytes; the limit is {max_bytes} bytes: split it into several appends")]
    AppendTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("event id {event_id} appears twice in one append; every event needs its own id")]
    DuplicateEventId { event_id: EventId },
    #[error("stream {stream} has two expected-revision checks in one append; give each stream one")]
    DuplicateCheck { stream: String },
    #[error(
        "the append condition's query has no items; give at least one (an item with no types and no tags \
         matches every event)"
    )]
    EmptyQuery,
    #[error(
        "the append condition's position {after} is beyond the head of the log ({head}); use the position \
         up to which the decision's events were read"
    )]
    ConditionAfterHead { after: u64, head: String },
    #[error(
        "an imported event was recorded at {recorded_at}, before the latest event of the store ({latest}); \
         recorded times never go backwards: import into a new store, or import events in their original order"
    )]
    RecordedTimeBackwards { recorded_at: String, latest: String },
    #[error(
        "the import gives stream {stream} revision {actual} where revision {expected} comes next; \
         import a whole export, in its order"
    )]
    ImportRevisionGap { stream: String, expected: u64, actual: u64 },
    #[error("the imported event exported at position {position} cannot be imported: {reason}")]
    InvalidImport { position: u64, reason: String },
}
