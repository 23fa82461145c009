//! Appends: what goes in ([`MultiAppend`], [`AppendCondition`]) and what comes out ([`AppendOutcome`],
//! [`MultiAppendOutcome`]). A failed expectation or condition is an outcome, not an error.

use strata_core::{ExpectedRevision, NewEvent, Position, Query, StreamId, StreamRevision, Timestamp};

/// What a committed append produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    pub first_revision: StreamRevision,
    pub last_revision: StreamRevision,
    pub first_position: Position,
    pub last_position: Position,
    /// The recorded time of the events; `None` for a replay (read the events to learn it).
    pub recorded_at: Option<Timestamp>,
    /// The events were already committed by an earlier append with the same ids; nothing was written.
    pub replayed: bool,
}

/// The result of an append that reached the committer. A failed expectation is an outcome the caller
/// must handle (retry after re-reading, or report a conflict), not an error.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Committed(AppendResult),
    /// Nothing was written; `actual` is the stream's last revision (`None`: no stream).
    WrongExpectedRevision {
        stream: StreamId,
        expected: ExpectedRevision,
        actual: Option<StreamRevision>,
    },
}

impl AppendOutcome {
    pub fn committed(self) -> Option<AppendResult> {
        match self {
            AppendOutcome::Committed(result) => Some(result),
            AppendOutcome::WrongExpectedRevision { .. } => None,
        }
    }
}

/// Several streams' events as one atomic append (DESIGN.md: `append_multi`, `POST /v1/append`).
#[derive(Debug, Clone, Default)]
pub struct MultiAppend {
    /// The events in the order they get positions, each with its stream.
    pub events: Vec<(StreamId, NewEvent)>,
    /// Expected revisions, also of streams the append does not write; one per stream at most.
    pub checks: Vec<(StreamId, ExpectedRevision)>,
    /// A DCB condition: fail if an event matching the query exists after a position.
    pub condition: Option<AppendCondition>,
}

impl MultiAppend {
    /// A single-stream append.
    pub fn to_stream(stream: StreamId, expected: ExpectedRevision, events: Vec<NewEvent>) -> Self {
        Self {
            events: events.into_iter().map(|event| (stream.clone(), event)).collect(),
            checks: vec![(stream, expected)],
            condition: None,
        }
    }
}

/// Dynamic Consistency Boundary: the append fails if any event matching `query` exists at a position
/// greater than `after` (anywhere, when `after` is `None`) — typically the position up to which the
/// caller read the events its decision was based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendCondition {
    pub query: Query,
    pub after: Option<Position>,
}

/// What a multi-stream append produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiAppendResult {
    pub first_position: Position,
    pub last_position: Position,
    /// Per stream written, in the order of each stream's first event.
    pub streams: Vec<StreamAppendResult>,
    /// The recorded time of the events; `None` for a replay.
    pub recorded_at: Option<Timestamp>,
    /// The events were already committed by an earlier append with the same ids; nothing was written.
    pub replayed: bool,
}

/// The revisions one stream got in a multi-stream append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppendResult {
    pub stream: StreamId,
    pub first_revision: StreamRevision,
    pub last_revision: StreamRevision,
}

/// The result of a multi-stream append that reached the committer. Failed checks and conditions are
/// outcomes the caller must handle, not errors; nothing was written for them.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiAppendOutcome {
    Committed(MultiAppendResult),
    /// This check failed; `actual` is the stream's last revision (`None`: no stream).
    WrongExpectedRevision {
        stream: StreamId,
        expected: ExpectedRevision,
        actual: Option<StreamRevision>,
    },
    /// The condition found an event matching its query, the first at `position`.
    ConditionFailed {
        position: Position,
    },
}

impl AppendOutcome {
    /// The single-stream view of the outcome of a multi-stream append that wrote one stream, with no
    /// condition (panics on a condition failure, which such an append cannot have).
    pub fn from_single(outcome: MultiAppendOutcome) -> Self {
        match outcome {
            MultiAppendOutcome::Committed(result) => {
                let [stream] = &result.streams[..] else { unreachable!("a single-stream append writes one stream") };
                AppendOutcome::Committed(AppendResult {
                    first_revision: stream.first_revision,
                    last_revision: stream.last_revision,
                    first_position: result.first_position,
                    last_position: result.last_position,
                    recorded_at: result.recorded_at,
                    replayed: result.replayed,
                })
            }
            MultiAppendOutcome::WrongExpectedRevision { stream, expected, actual } => {
                AppendOutcome::WrongExpectedRevision { stream, expected, actual }
            }
            MultiAppendOutcome::ConditionFailed { .. } => unreachable!("a single-stream append has no condition"),
        }
    }
}
