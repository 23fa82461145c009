//! The data of a subscription's control events (`GET /v1/subscribe`). An event message's data is a
//! [`RecordedEvent`](crate::RecordedEvent) and its SSE `id` the event's position; `event: error`
//! carries an [`ErrorBody`](crate::ErrorBody) (code and message) and ends the subscription.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `event: caught_up` — the catch-up is done, live events follow: `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct CaughtUp {}

/// `event: fell_behind` — the subscriber is more than 10,000 events behind the writers; it goes on
/// reading from the log and gets `caught_up` again once live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FellBehind {
    pub behind: u64,
}
