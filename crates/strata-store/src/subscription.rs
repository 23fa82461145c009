//! What a subscription yields: [`SubscriptionMessage`] — events in order, the live hand-off, and
//! falling behind.

use strata_core::RecordedEvent;

/// Events read per batch (and so the most a subscription holds at once, along with at most about
/// `READ_PAGE_BYTES_MAX` of their bytes).
pub const SUBSCRIPTION_BATCH_EVENTS_MAX: usize = 1_000;

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionMessage {
    /// The next events, in order, never empty.
    Events(Vec<RecordedEvent>),
    /// Every event committed before this moment has been delivered; from here on the subscription is
    /// live. Sent once, and again after each [`SubscriptionMessage::FellBehind`] once it has caught up.
    CaughtUp,
    /// A live subscription found itself more than [`SUBSCRIPTION_FELL_BEHIND`] positions (global log)
    /// or revisions (stream) behind the head — its consumer is slower than the writers. It goes on
    /// reading from the log (catching up, nothing is lost or buffered); `CaughtUp` follows when it is
    /// live again.
    FellBehind { behind: u64 },
}

/// How far behind the head a live subscription may be before it reports
/// [`SubscriptionMessage::FellBehind`].
pub const SUBSCRIPTION_FELL_BEHIND: u64 = 10_000;
