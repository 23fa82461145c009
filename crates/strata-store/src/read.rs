//! Reads: where they start ([`ReadFrom`]), which way they go and which moment they see
//! ([`ReadOptions`]), and what they return ([`ReadPage`]).

use strata_core::{Position, RecordedEvent, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Where a read starts. `At` is inclusive; `Start` and `End` are the first and last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom<T> {
    Start,
    End,
    At(T),
}

/// How a read proceeds from where it starts, and which moment of the store it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    pub direction: Direction,
    /// At most this many events (and at most [`READ_EVENTS_MAX`](strata_core::limits::READ_EVENTS_MAX)).
    pub limit: usize,
    /// Read the store as it was when this position was its head: later events are invisible.
    pub until_position: Option<Position>,
    /// Read the store as it was at this time: events recorded later are invisible.
    pub until_time: Option<Timestamp>,
}

impl ReadOptions {
    pub fn forward(limit: usize) -> Self {
        Self { direction: Direction::Forward, limit, until_position: None, until_time: None }
    }

    pub fn backward(limit: usize) -> Self {
        Self { direction: Direction::Backward, ..Self::forward(limit) }
    }

    pub fn until_position(self, position: Position) -> Self {
        Self { until_position: Some(position), ..self }
    }

    pub fn until_time(self, time: Timestamp) -> Self {
        Self { until_time: Some(time), ..self }
    }
}

/// A page of a read: the events, and whether there may be more after the last of them (the read
/// returned `limit` events, or stopped at [`READ_PAGE_BYTES_MAX`](strata_core::limits::READ_PAGE_BYTES_MAX)). `false` means the read reached
/// the end of what it could see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPage {
    pub events: Vec<RecordedEvent>,
    pub more: bool,
}
