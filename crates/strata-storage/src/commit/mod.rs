//! The commit path: appends queued by callers, decided in order by one thread, written as one frame
//! per group, answered once durable.
//!
//! - `committer`: the committer thread — group commit; idempotency, expected-revision and DCB checks.
//! - `reply`: how a decided append's outcome travels back to its caller.

pub(crate) mod committer;
pub(crate) mod reply;
