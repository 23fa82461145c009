//! Consumer groups: their definitions ([`GroupSpec`]), deliveries, acks and what a group reports.

use crate::error::{ReadError, StorageError};
use crate::filter::Filter;
use std::time::Duration;
use strata_core::{Position, RecordedEvent, StreamId};

/// Longest group name (names are file names: ASCII letters, digits, `-`, `_`, `.`).
pub const GROUP_NAME_BYTES_MAX: usize = 128;
/// Most events one fetch returns.
pub const GROUP_FETCH_MAX: usize = 1_000;
/// Longest a fetch waits for events.
pub const GROUP_WAIT_MAX: Duration = Duration::from_secs(60);
/// Most events a group may have delivered and not yet acked.
pub const GROUP_IN_FLIGHT_MAX: usize = 10_000;
/// Parked events a group keeps; beyond, a nack that would park is refused.
pub const GROUP_PARKED_MAX: usize = 100_000;

/// Where a group's events come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSource {
    Stream(StreamId),
    /// The global log, filtered (category, types, stream prefix, tags).
    All(Filter),
}

/// Where a new group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStart {
    Start,
    /// After the events committed when the group is created.
    End,
    /// A position (global log) or a revision (stream), inclusive.
    At(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Any consumer takes the next ready event.
    RoundRobin,
    /// A stream's events go to one consumer, one at a time, in order.
    Pinned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// Events delivered and not yet acked, across the group's consumers (1 to [`GROUP_IN_FLIGHT_MAX`]).
    pub max_in_flight: usize,
    /// A delivery not acked within this is delivered again (to any consumer, or the pinned one).
    pub ack_timeout: Duration,
    /// Deliveries after the first before an event is parked.
    pub max_retries: u32,
    pub strategy: Strategy,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 100,
            ack_timeout: Duration::from_secs(30),
            max_retries: 10,
            strategy: Strategy::RoundRobin,
        }
    }
}

/// A group's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub source: GroupSource,
    pub start: GroupStart,
    pub settings: GroupSettings,
}

/// What to do with a delivery that was not handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    /// Deliver it again (it counts as a retry).
    Retry,
    /// Set it aside: listed by [`crate::ConsumerGroupStore::parked`], delivered again only by a replay.
    Park,
    /// Treat it as handled.
    Skip,
}

/// One delivery of one event to one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `<position>.<attempt>`: what [`crate::ConsumerGroupStore::ack`] and `nack` take.
    pub delivery_id: String,
    /// 1 for the first delivery of the event.
    pub attempt: u32,
    pub event: RecordedEvent,
}

/// A parked event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub position: Position,
    /// Deliveries it had.
    pub attempts: u32,
    pub reason: String,
}

/// A group's whole durable state — what a backup keeps and a restore puts back, as the group's
/// file or the cluster's bucket holds it: the definition, the first event of the source it
/// handles, its checkpoint and its parked events. Deliveries in flight are not part of it: after a
/// restore they are delivered again (at least once, as after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedGroup {
    pub spec: GroupSpec,
    /// The first position (global log) or revision (stream) of the source the group handles — its
    /// start, resolved when the group was created (`End` is the head of then).
    pub first: u64,
    /// As in [`GroupInfo::checkpoint`].
    pub checkpoint: Option<u64>,
    /// Oldest first.
    pub parked: Vec<ParkedEvent>,
}

/// A group's state, for `GET /v1/groups/{name}` and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub spec: GroupSpec,
    /// Everything up to here is handled: a position (global log) or a revision (stream); `None`:
    /// nothing yet.
    pub checkpoint: Option<u64>,
    /// How far the group is behind the head: positions (global log) or revisions (stream) after the
    /// checkpoint.
    pub lag_events: u64,
    /// Age of the oldest event not handled yet (0 when none is waiting in the buffer).
    pub lag_seconds: f64,
    pub in_flight: usize,
    pub parked: usize,
    /// Consumers seen within the last ack timeout, with the deliveries each holds.
    pub consumers: Vec<(String, usize)>,
}

/// What an ack or nack did with each delivery id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckOutcome {
    pub done: usize,
    /// Ids that are not (or no longer) outstanding: already acked, timed out and delivered again, or
    /// malformed. Harmless; reported so consumers can tell.
    pub unknown: Vec<String>,
    /// Park nacks refused because the group already holds [`GROUP_PARKED_MAX`] parked events (the
    /// events stay to be delivered again).
    pub refused: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("no consumer group named {0}")]
    NotFound(String),
    #[error(
        "consumer group {0} exists with another source or start; delete it first to change those \
         (settings can be changed)"
    )]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Not answered now, nothing changed: retry (a cluster's groups being loaded again after a change
    /// of leader, or their state in the cluster not reachable or changed by another node).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}
