//! Places: a revision is a place in a stream, a position a place in the global log.

use std::fmt;

/// The 0-based index of an event in its stream. Revisions of one stream are gapless: 0, 1, 2, …
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct StreamRevision(u64);

/// The 0-based index of an event in the global log (`$all`). Positions are dense, strictly increasing
/// in commit order and never reused: a reader that has seen position P has seen everything before P.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Position(u64);

macro_rules! index_type {
    ($name:ident) => {
        impl $name {
            pub const ZERO: Self = Self(0);

            pub const fn new(value: u64) -> Self {
                Self(value)
            }

            pub const fn value(self) -> u64 {
                self.0
            }

            /// The place after this one.
            ///
            /// # Panics
            /// At `u64::MAX`, which 2^64 events never reach in practice; wrapping would reuse places.
            pub fn next(self) -> Self {
                Self(self.0.checked_add(1).expect(concat!(stringify!($name), " overflow")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }
    };
}

index_type!(StreamRevision);
index_type!(Position);

/// The optimistic-concurrency precondition of an append.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must have no events (never written, or soft-deleted with nothing after).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must be at exactly this revision.
    Exact(StreamRevision),
}

impl ExpectedRevision {
    /// Whether a stream whose last revision is `actual` (`None`: no stream) satisfies the precondition.
    pub fn is_satisfied_by(self, actual: Option<StreamRevision>) -> bool {
        match (self, actual) {
            (ExpectedRevision::Any, _) => true,
            (ExpectedRevision::NoStream, actual) => actual.is_none(),
            (ExpectedRevision::StreamExists, actual) => actual.is_some(),
            (ExpectedRevision::Exact(expected), Some(actual)) => expected == actual,
            (ExpectedRevision::Exact(_), None) => false,
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no_stream"),
            ExpectedRevision::StreamExists => f.write_str("stream_exists"),
            ExpectedRevision::Exact(revision) => write!(f, "{revision}"),
        }
    }
}

/// Renders an actual revision the way errors and the API show it: a number, or `no_stream`.
pub fn display_actual(actual: Option<StreamRevision>) -> String {
    actual.map_or_else(|| "no_stream".to_owned(), |revision| revision.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        let at = |r| Some(StreamRevision::new(r));
        assert!(ExpectedRevision::Any.is_satisfied_by(None));
        assert!(ExpectedRevision::NoStream.is_satisfied_by(None));
        assert!(!ExpectedRevision::NoStream.is_satisfied_by(at(0)));
        assert!(ExpectedRevision::StreamExists.is_satisfied_by(at(3)));
        assert!(!ExpectedRevision::StreamExists.is_satisfied_by(None));
        assert!(ExpectedRevision::Exact(StreamRevision::new(3)).is_satisfied_by(at(3)));
        assert!(!ExpectedRevision::Exact(StreamRevision::new(3)).is_satisfied_by(at(4)));
        assert!(!ExpectedRevision::Exact(StreamRevision::new(0)).is_satisfied_by(None));
    }
}
