//! [`Filter`]: which events of the global log a read, subscription or group sees.

use strata_core::{EventType, Query, Tag};

/// Which events of the global log a read returns. Every condition given must hold; an empty filter
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The event's stream is in this category (the stream id before its first `-`).
    pub category: Option<String>,
    /// The event has one of these types.
    pub event_types: Vec<EventType>,
    /// The event's stream id starts with this.
    pub stream_prefix: Option<String>,
    /// The event carries every one of these tags.
    pub tags: Vec<Tag>,
    /// The event matches this query (one of its items) — the filter of a DCB decision.
    pub query: Option<Query>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self == &Filter::default()
    }

    /// Whether `event` matches, judged from the event itself (what the indexes answer for reads).
    pub fn matches(&self, event: &strata_core::RecordedEvent) -> bool {
        let event_type = event.event_type.as_str();
        self.category.as_deref().is_none_or(|category| event.stream.category() == category)
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t.as_str() == event_type))
            && self.stream_prefix.as_deref().is_none_or(|prefix| event.stream.as_str().starts_with(prefix))
            && self.tags.iter().all(|tag| event.tags.contains(tag.as_str()))
            && self.query.as_ref().is_none_or(|query| query.matches(event_type, event.tags.iter()))
    }
}
