//! Strata's storage engine: a durable, gapless, checksummed event log with group commit.
//!
//! Codemap, from the bottom of the ladder up (each folder a layer):
//! - [`io`]: the [`Storage`] / [`StorageFile`] traits all file IO goes through, [`OsStorage`], and
//!   [`sim`]: [`SimStorage`], a simulated disk that loses unsynced bytes at a crash, for tests.
//! - `log/`: [`format`] (bytes on disk — segment header, frames, event records — as pure functions),
//!   `segments` (the writer's side: zero-filled segments, frames appended and synced, sealing) and
//!   `recovery` (one verifying pass at open, torn-tail repair).
//! - `index/`: the indexes from position, stream, category, type, tag and event id to record locations,
//!   over three levels: `run` files on disk, a frozen memtable, the tail; `indexer` writes and merges runs.
//! - `commit/`: the committer thread (`committer`) — group commit, expected-revision, idempotency and
//!   DCB checks — and how its replies travel (`reply`).
//! - `store` and `read`: [`Store`], the public API (append, read, heads), with `filter` for
//!   filtered reads of the global log (category, types, stream prefix, tags, DCB query) and "as of"
//!   reads, and `streams` for listings and stream facts.
//! - `event_store`: the boundary's `EventStore` and `ConsumerGroupStore` traits (crate `strata-store`),
//!   implemented by [`Store`] and [`ConsumerGroups`].
//! - `subscription`: [`Subscription`], catch-up then live reads that wait on the head watch.
//! - `groups`: [`ConsumerGroups`], persistent groups over a subscription.
//! - `scavenge`: reclaims the space of hidden events in sealed segments, leaving placeholders.
//! - `verify`: [`Store::verify_chain_blocking`], the whole log's hash chain recomputed.
//! - `system`: the system stream's events (metadata, deletes, tombstones) and their encoding.
//! - [`stats`]: counters and latency histograms (fsync) for metrics.
//! - [`clock`]: where recorded time comes from.
//!
//! # Invariants
//! - Only the committer thread writes to segment files, and it syncs every frame before the next.
//! - Readers see an event only after its frame is durable: the index holds nothing else.
//! - Positions are dense: each frame's first position is the previous frame's last plus one,
//!   checked at recovery and asserted by the index.
//! - The engine reads time only through [`Clock`] and files only through [`Storage`].

pub mod clock;
pub mod io;
pub mod stats;

mod commit;
mod error;
mod event_store;
mod filter;
mod groups;
mod index;
mod log;
mod read;
mod scavenge;
mod store;
mod streams;
mod subscription;
mod system;
mod verify;

/// The on-disk byte layouts (public for tests, benchmarks and the fuzzer).
pub use io::sim;
pub use log::format;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{AppendError, Corruption, OpenError, ReadError, StorageError};
pub use filter::Filter;
pub use groups::{
    AckOutcome, ConsumerGroups, Delivery, GROUP_FETCH_MAX, GROUP_IN_FLIGHT_MAX, GROUP_NAME_BYTES_MAX, GROUP_PARKED_MAX,
    GROUP_WAIT_MAX, GroupError, GroupInfo, GroupSettings, GroupSource, GroupSpec, GroupStart, GroupStates, NackAction,
    ParkedEvent, SavedGroup, Strategy,
};
pub use io::{OsStorage, Storage, StorageFile};
pub use log::RecoveryReport;
pub use read::{Direction, ReadFrom, ReadOptions, ReadPage};
pub use scavenge::{ScavengeError, ScavengeReport};
pub use sim::SimStorage;
pub use stats::StoreStats;
pub use store::{
    AppendCondition, AppendOutcome, AppendResult, INDEX_RUN_EVENTS_DEFAULT, INDEX_RUN_EVENTS_MIN, LOCK_FILE_NAME,
    MultiAppend, MultiAppendOutcome, MultiAppendResult, Options, SEGMENT_SIZE_BYTES_DEFAULT, SEGMENT_SIZE_BYTES_MAX,
    SEGMENT_SIZE_BYTES_MIN, Store, StreamAppendResult, append_frame_bytes_max,
};
pub use streams::StreamInfo;

/// The commit seam, for a log with other writers (cluster mode): a [`replica::CommitLog`] the
/// committer proposes frames to, the local segments it keeps its copy in, and what applying a
/// frame of the replicated log did (`docs/design.md`, "The commit seam").
pub mod replica {
    pub use crate::commit::committer::Replicated;
    pub use crate::commit::log::{CommitLog, Proposal, Proposed, Segments};
    pub use crate::log::{FrameWritten, WriteError};
}
pub use subscription::{SUBSCRIPTION_BATCH_EVENTS_MAX, SUBSCRIPTION_FELL_BEHIND, Subscription, SubscriptionMessage};
pub use system::{DELETED_TYPE, METADATA_TYPE, SCAVENGED_TYPE, SYSTEM_STREAM, SystemChange, TOMBSTONE_TYPE};
pub use system::{STORE_CREATED_TYPE, STORE_STREAM, StoreCreated};
pub use verify::{ChainError, ChainReport};

/// The boundary crate, whose plain types and traits the engine's API speaks (they are re-exported
/// above under their own names).
pub use strata_store;
pub use strata_store::{ConsumerGroupStore, EventStore, EventSubscription, StoreError};
