//! Typed errors, one per operation, each wrapping the shared [`StorageError`] and [`Corruption`].

use std::fmt;
use std::path::PathBuf;
pub use strata_store::error::{AppendError, Corruption, ReadError, StorageError};

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

/// Renders a poison reason once, so all later appends report the same cause.
pub(crate) fn poison_reason(error: &dyn fmt::Display) -> String {
    error.to_string()
}
