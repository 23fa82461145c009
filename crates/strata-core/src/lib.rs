//! Strata's vocabulary: the words of `DESIGN.md` §3 as types, their validation, and the limits of §7.
//!
//! This crate does no IO, reads no clock and spawns nothing; every other crate depends on it.
//!
//! Codemap:
//! - [`limits`]: every size and count limit, as `*_MAX` constants.
//! - [`names`]: [`StreamId`], [`EventType`], [`Tag`], [`ContentType`] — validated names.
//! - [`event`]: [`EventId`], [`NewEvent`] (before commit) and [`RecordedEvent`] (after commit).
//! - [`hash`]: [`EventHash`], a record's link in the log's SHA-256 chain (format 2).
//! - [`metadata`]: [`StreamMetadata`], rules applied when a stream is read.
//! - [`position`]: [`StreamRevision`], [`Position`], [`ExpectedRevision`].
//! - [`query`]: [`Query`], events by type and tags, for DCB append conditions and reads.
//! - [`time`]: [`Timestamp`], microseconds since the Unix epoch, and its RFC 3339 form.
//! - [`error`]: [`ValidationError`], what is wrong with a request and how to fix it.
//!
//! # Invariants
//! A value of any type here is valid by construction: constructors validate, fields are private.

pub mod error;
pub mod event;
pub mod hash;
pub mod limits;
pub mod metadata;
pub mod names;
pub mod position;
pub mod query;
pub mod time;

mod shared_str;

pub use error::ValidationError;
pub use event::{EventId, NewEvent, RecordedEvent, Tags};
pub use hash::{EventHash, EventHashParseError};
pub use metadata::StreamMetadata;
pub use names::{ContentType, EventType, StreamId, Tag};
pub use position::{ExpectedRevision, Position, StreamRevision};
pub use query::{Query, QueryItem};
pub use time::{Timestamp, TimestampParseError};
