//! Errors every backend shares: a failed file or network operation, damaged bytes, and why an append
//! or a read failed. Conflicts are not errors but outcomes ([`crate::AppendOutcome`]).

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
    pub fn new(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
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

/// Why an [`crate::EventStore`] operation failed, whatever the backend. A failed expectation or
/// condition is not an error: it is an outcome ([`crate::AppendOutcome`], [`crate::MultiAppendOutcome`])
/// the caller handles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A remote store answered with an error (`code` is the API's error code, e.g. `invalid_request`).
    #[error("the server refused the request ({status} {code}): {message}")]
    Remote { status: u16, code: String, message: String },
    /// A remote store could not be reached, or its answer could not be understood. Whether an append
    /// that failed this way was committed is unknown: retry it with the same event ids (idempotent).
    #[error("the server could not be reached or answered unexpectedly: {0}")]
    Transport(String),
}
