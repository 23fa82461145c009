//! The commit path: appends queued by callers, decided in order by one thread, written as one frame
//! per group, answered once durable.
//!
//! - `committer`: the committer thread — group commit; idempotency, expected-revision and DCB checks.
//! - `log`: the seam where the committer hands a decided frame to the log it commits to (`CommitLog`;
//!   the embedded segment files are `Segments`).
//! - `reply`: how a decided append's outcome travels back to its caller.

pub(crate) mod committer;
pub(crate) mod log;
pub(crate) mod reply;
