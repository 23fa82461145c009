//! Typed errors, one per operation, each wrapping the shared [`StorageError`] and [`Corruption`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use strata_core::{EventId, StreamId, StreamRevision, ValidationError};

/// A failed file operation, with what was being done and to which file.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {}: {source}", path.display())]
pub struct StorageError {
    pub operation: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl StorageError {
    pub(crate) fn new(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self { operation, path: path.into(), source }
    }
}

/// Bytes on disk that do not check out. Never served as events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("segment {segment} ({}) is corrupt at byte {offset_bytes}: {reason}", path.display())]
pub struct Corruption {
    /// Index of the segment file (`0000000003.seg` is segment 3).
    pub segment: u32,
    pub path: PathBuf,
    pub offset_bytes: u64,
    pub reason: String,
}

/// Why [`crate::Store::open`] failed. Nothing on disk was changed, except the repair of a torn tail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "refusing to open: {0}. Only a torn tail of the last segment is repaired automatically; \
         restore the data directory from a backup"
    )]
    Corrupted(Corruption),
    #[error("the data directory {} is in use by another process (it holds {}); stop it first", .dir.display(), .lock_file.display())]
    Locked { dir: PathBuf, lock_file: PathBuf },
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error(
        "refusing to open: the index files in {} cover positions up to {indexed_end}, but the log ends at \
         {log_end}: acknowledged events are missing from the log. Restore the data directory from a backup; \
         or, to accept the log as it is (new events will take the missing positions), remove that directory",
        index_dir.display()
    )]
    IndexAheadOfLog { index_dir: PathBuf, indexed_end: u64, log_end: u64 },
}

/// Why an append failed. A conflict with the expected revision is not an error but an
/// [`crate::AppendOutcome`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(
        "event {event_id} is already committed in stream {committed_stream} at revision {committed_revision}, \
         but the other events of this append do not match that earlier append; resend the original append \
         unchanged to retry it, or give new events new ids"
    )]
    PartialDuplicate { event_id: EventId, committed_stream: StreamId, committed_revision: StreamRevision },
    #[error(
        "the store stopped accepting writes after a storage failure ({reason}); reads still work; \
         reopen the store (restart) to resume writing"
    )]
    Poisoned { reason: String },
    #[error(
        "the append may or may not have been committed ({reason}); the store now refuses writes until \
         reopened, and reading after the reopen tells whether it was"
    )]
    OutcomeUnknown { reason: String },
    #[error("the append was not written ({reason}); nothing was stored: retry when there is room again")]
    NotWritten { reason: String },
    #[error("stream {stream} is deleted for good (tombstoned): it can never be written again")]
    StreamDeleted { stream: StreamId },
    #[error("stream {stream} has no events: there is nothing to delete")]
    StreamNotFound { stream: StreamId },
    #[error("the store is closed")]
    Closed,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("stream {stream} not found")]
    StreamNotFound { stream: StreamId },
    #[error("stream {stream} is deleted for good (tombstoned)")]
    StreamDeleted { stream: StreamId },
    #[error(transparent)]
    Corrupted(#[from] Corruption),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Renders a poison reason once, so all later appends report the same cause.
pub(crate) fn poison_reason(error: &dyn fmt::Display) -> String {
    error.to_string()
}
