//! The JSON and Server-Sent-Events shapes of Strata's HTTP API (`docs/api.md`), defined once: the
//! server parses and renders them, the client and the command line send and read them, and the
//! OpenAPI document (`GET /v1/openapi.json`) is generated from them. Serde and schemas only — no HTTP,
//! no engine: conversions to the engine's types live with the server and the client; conversions to
//! `strata_core`'s vocabulary live here.
//!
//! Codemap:
//! - `union`: the values that are one of several kinds — [`ExpectedRevision`] (`"any"`,
//!   `"no_stream"`, `"stream_exists"` or a revision), [`ActualRevision`] (`"no_stream"` or a revision),
//!   [`ReadFrom`] (`"start"`, `"end"` or a number: reads, subscriptions and groups), [`Direction`].
//! - `event`: [`NewEvent`] (appended), [`RecordedEvent`] (read, exported, delivered),
//!   [`ImportedEvent`] (a recorded event as `POST /v1/import` takes it: unknown fields refused), and
//!   the JSON of system events ([`MetadataChanged`], [`StreamDeleted`], [`StreamTombstoned`]).
//! - `append`: the bodies of `POST /v1/streams/{stream}` and `POST /v1/append`, DCB [`Query`]s.
//! - `read`: [`ReadPage`] and the query parameters of reads and subscriptions.
//! - `streams`: listing, stream info, deletes, [`StreamMetadata`].
//! - `groups`: consumer groups.
//! - `operations`: health, info, import, scavenge, verify.
//! - `sse`: the payloads of the subscription's control events.
//! - `error`: [`ErrorBody`], the one shape of every error answer.
//! - [`pattern`]: the regular expressions the schemas state for names (what `strata_core` enforces).
//!
//! Requests refuse fields they do not know (`deny_unknown_fields`), as the server always has.
//! Answers are read leniently — a newer server may add fields — so answer types accept unknown
//! fields.

mod append;
pub mod de;
mod error;
mod event;
mod groups;
mod operations;
mod read;
mod sse;
mod streams;
mod union;

pub use append::{
    AppendRequest, AppendResponse, Check, Condition, MultiAppendRequest, MultiAppendResponse, Query, QueryItem,
    StreamAppend,
};
pub use error::{ErrorBody, ErrorDetail};
pub use event::{
    CONTENT_TYPE_BINARY_DEFAULT, CONTENT_TYPE_JSON, ImportedEvent, MetadataChanged, NewEvent, RecordedEvent,
    StreamDeleted, StreamTombstoned,
};
pub use groups::{
    AckRequest, AckResponse, AllFilter, Delivery, FetchRequest, FetchResponse, Group, GroupConsumer, GroupDeleted,
    GroupList, GroupSettings, GroupSource, GroupState, NackAction, NackRequest, Parked, ParkedList, PutGroupRequest,
    Replayed, Strategy,
};
pub use operations::{
    ClusterInfo, Health, HealthStatus, ImportRequest, ImportResponse, Info, InfoLimits, InfoRecovery, ScavengeResponse,
    VerifyResponse,
};
pub use read::{DeleteParams, FilterParams, ListParams, PageParams, ReadPage, SubscribeParams};
pub use sse::{CaughtUp, FellBehind};
pub use streams::{DeleteResponse, StreamInfo, StreamList, StreamMetadata};
pub use union::{ActualRevision, Direction, ExpectedRevision, ReadFrom};

/// The regular expressions the schemas give for what `strata_core` validates (ECMA-262 and Python
/// `re` alike). Lengths are stated separately (`maxLength` counts characters; the limits are in
/// UTF-8 bytes, which the descriptions say).
pub mod pattern {
    /// A name (stream id, event type): no control characters (Unicode `Cc`).
    pub const NAME: &str = r"^[^\u0000-\u001F\u007F-\u009F]+$";
    /// A name a user may write: also not starting with `$` (reserved for the system).
    pub const USER_NAME: &str = r"^[^$\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
    /// A tag: `key:value`, both non-empty (the key is what comes before the first `:`).
    pub const TAG: &str = r"^[^:\u0000-\u001F\u007F-\u009F]+:[^\u0000-\u001F\u007F-\u009F]+$";
    /// A content type: printable ASCII, no spaces.
    pub const CONTENT_TYPE: &str = r"^[!-~]+$";
    /// An event id: a UUID, hyphenated (the nil UUID is refused).
    pub const UUID: &str = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
    /// Base64, standard alphabet, padded, canonical (unused bits of the last character zero).
    pub const BASE64: &str = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";
    /// A consumer group's name: 1–128 ASCII letters, digits, `-`, `_`, `.`.
    pub const GROUP_NAME: &str = r"^[A-Za-z0-9._-]{1,128}$";
    /// An event hash: 64 lowercase hexadecimal digits.
    pub const HASH: &str = r"^[0-9a-f]{64}$";
}
