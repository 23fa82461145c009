//! The log: segment files on disk, recovered on open and appended to by the writer.
//!
//! Recovery loads the index runs and reads the segments past them in one sequential pass: every frame's
//! checksums are verified and every record is indexed.
//! Only a torn tail of the last segment is repaired (zeroed); any other damage refuses the open with
//! the segment and byte offset. See `docs/design.md`, "Recovery".
//!
//! - [`chain`]: the SHA-256 hash chain of format 2 — canonical header and content digests, links.
//! - [`format`]: the bytes — segment header, frames, records — as pure functions.
//! - `segments`: [`LogWriter`], the active segment and where the next frame goes.
//! - `recovery`: [`recover`], the verifying pass at open and the torn-tail rules.

pub mod chain;
pub mod format;
mod recovery;
mod segments;

pub(crate) use recovery::*;
pub(crate) use segments::*;
pub use segments::{FrameWritten, RecoveryReport, WriteError};
