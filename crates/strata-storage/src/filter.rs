//! Filtered reads of the global log: which positions match a [`Filter`], found by leapfrogging over
//! the secondary indexes' sorted position lists instead of reading every event.

use crate::error::{ReadError, StorageError};
use crate::index::run::KeyKind;
use crate::index::{Index, PostingList, SortedList};
use std::cell::RefCell;
use std::ops::Bound;
use strata_core::{EventType, Query, Tag};
pub use strata_store::Filter;

/// Up to this many streams, a stream prefix is matched through their position lists.
const PREFIX_STREAMS_AS_LISTS_MAX: usize = 64;

/// A filter bound to an index: any of several conjunctions (one per query item, or just one).
///
/// Lists in runs read blocks as the search moves; a read that fails makes its list look empty and
/// is reported by [`Matcher::error`], which every caller checks after searching.
pub(crate) struct Matcher<'a> {
    alternatives: Vec<Conjunction<'a>>,
}

impl<'a> Matcher<'a> {
    /// Events matching `query` (an append condition's), with no other constraint.
    pub fn for_query(index: &'a Index, query: &'a Query) -> Result<Self, StorageError> {
        static NO_FILTER: std::sync::LazyLock<Filter> = std::sync::LazyLock::new(Filter::default);
        let alternatives = query
            .items
            .iter()
            .map(|item| Conjunction::new(index, &NO_FILTER, &item.types, &item.tags))
            .collect::<Result<_, _>>()?;
        Ok(Self { alternatives })
    }

    pub fn new(index: &'a Index, filter: &'a Filter) -> Result<Self, StorageError> {
        let alternatives = match &filter.query {
            None => vec![Conjunction::new(index, filter, &[], &[])?],
            // An empty query matches nothing: no alternatives.
            Some(query) => query
                .items
                .iter()
                .map(|item| Conjunction::new(index, filter, &item.types, &item.tags))
                .collect::<Result<_, _>>()?,
        };
        Ok(Self { alternatives })
    }

    /// The first matching position in `from..end`.
    pub fn next(&self, from: u64, end: u64) -> Option<u64> {
        self.alternatives.iter().filter_map(|c| c.next(from, end)).min()
    }

    /// The last matching position in `low..=from`.
    pub fn previous_within(&self, from: u64, low: u64) -> Option<u64> {
        self.alternatives.iter().filter_map(|c| c.previous(from, low)).max()
    }

    /// The first read error a search met; its answers are then not to be trusted.
    pub fn error(&self) -> Option<ReadError> {
        self.alternatives.iter().find_map(|conjunction| {
            let lists = conjunction.constraints.iter().flatten();
            lists
                .filter_map(PostingList::take_error)
                .map(ReadError::from)
                .next()
                .or_else(|| conjunction.error.borrow_mut().take())
        })
    }
}

/// Sorted lists that must all contain a position, plus a check on the stream name for the prefix.
struct Conjunction<'a> {
    index: &'a Index,
    /// Each constraint is a union of sorted lists (several event types, or one key's lists in
    /// several index levels).
    constraints: Vec<Vec<PostingList<'a>>>,
    stream_prefix: Option<&'a str>,
    /// A named category, type or tag that nothing has: nothing matches.
    impossible: bool,
    error: RefCell<Option<ReadError>>,
}

impl<'a> Conjunction<'a> {
    fn new(
        index: &'a Index,
        filter: &'a Filter,
        more_types: &'a [EventType],
        more_tags: &'a [Tag],
    ) -> Result<Self, StorageError> {
        let mut constraints = Vec::new();
        if let Some(category) = &filter.category {
            constraints.push(index.lists(KeyKind::Category, category)?);
        }
        for types in [&filter.event_types[..], more_types] {
            if !types.is_empty() {
                let mut lists = Vec::new();
                for event_type in types {
                    lists.extend(index.lists(KeyKind::EventType, event_type.as_str())?);
                }
                constraints.push(lists);
            }
        }
        for tag in filter.tags.iter().chain(more_tags) {
            constraints.push(index.lists(KeyKind::Tag, tag.as_str())?);
        }
        // A prefix that few streams have becomes the union of their positions; one that many have is
        // checked per candidate instead (a union of thousands of lists costs more per step than it saves).
        let mut stream_prefix = filter.stream_prefix.as_deref();
        if let Some(prefix) = stream_prefix {
            let mut streams = Vec::new();
            for name in index.stream_names(Bound::Included(prefix)) {
                let name = name?;
                if !name.as_str().starts_with(prefix) || streams.len() > PREFIX_STREAMS_AS_LISTS_MAX {
                    break;
                }
                streams.push(name);
            }
            if streams.len() <= PREFIX_STREAMS_AS_LISTS_MAX {
                let mut lists = Vec::new();
                for name in &streams {
                    lists.extend(index.lists(KeyKind::Stream, name.as_str())?);
                }
                constraints.push(lists);
                stream_prefix = None;
            }
        }
        let impossible = constraints.iter().any(Vec::is_empty);
        Ok(Self { index, constraints, stream_prefix, impossible, error: RefCell::new(None) })
    }

    fn prefix_matches(&self, position: u64) -> bool {
        let Some(prefix) = self.stream_prefix else { return true };
        match self.index.stream_name_at(position) {
            Ok(name) => name.as_str().starts_with(prefix),
            Err(error) => {
                self.error.borrow_mut().get_or_insert(error);
                false
            }
        }
    }

    fn next(&self, from: u64, end: u64) -> Option<u64> {
        if self.impossible {
            return None;
        }
        first_common(&self.constraints, from, end, |position| self.prefix_matches(position))
    }

    fn previous(&self, from: u64, low: u64) -> Option<u64> {
        if self.impossible {
            return None;
        }
        last_common(&self.constraints, from, low, |position| self.prefix_matches(position))
    }
}

/// The first position in `from..end` that every constraint (a union of sorted lists) contains and
/// `accept` takes. Leapfrog: each constraint jumps to its first position at or after the candidate,
/// until all agree. Every step moves the candidate forward, so it ends.
pub(crate) fn first_common<L: SortedList>(
    constraints: &[Vec<L>],
    mut from: u64,
    end: u64,
    accept: impl Fn(u64) -> bool,
) -> Option<u64> {
    while from < end {
        let mut candidate = from;
        let mut agreed = false;
        while !agreed {
            agreed = true;
            for lists in constraints {
                count_step();
                let next = lists.iter().filter_map(|list| list.first_at_or_after(candidate)).min()?;
                if next != candidate {
                    // Past the range: stop here, not where the lists happen to meet again (two
                    // lists that interleave without meeting would run to the end of the log).
                    if next >= end {
                        return None;
                    }
                    candidate = next;
                    agreed = false;
                }
            }
        }
        if candidate >= end {
            return None;
        }
        if accept(candidate) {
            return Some(candidate);
        }
        from = candidate + 1;
    }
    None
}

/// The last position in `low..=from` that every constraint contains and `accept` takes.
pub(crate) fn last_common<L: SortedList>(
    constraints: &[Vec<L>],
    from: u64,
    low: u64,
    accept: impl Fn(u64) -> bool,
) -> Option<u64> {
    let mut from = Some(from).filter(|&from| from >= low);
    while let Some(upper) = from {
        let mut candidate = upper;
        let mut agreed = false;
        while !agreed {
            agreed = true;
            for lists in constraints {
                count_step();
                let previous = lists.iter().filter_map(|list| list.last_at_or_before(candidate)).max()?;
                if previous != candidate {
                    if previous < low {
                        return None;
                    }
                    candidate = previous;
                    agreed = false;
                }
            }
        }
        if candidate < low {
            return None;
        }
        if accept(candidate) {
            return Some(candidate);
        }
        from = candidate.checked_sub(1).filter(|&next| next >= low);
    }
    None
}

#[cfg(test)]
thread_local! {
    /// Steps of the leapfrog searches on this thread, for tests that bound the work.
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn count_step() {
    #[cfg(test)]
    STEPS.with(|steps| steps.set(steps.get() + 1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Postings;

    fn list(positions: impl Iterator<Item = u64>) -> Postings {
        let mut list = Postings::default();
        positions.for_each(|position| list.push(position));
        list
    }

    /// Two lists that interleave but never meet: a search of a window costs the window, not the
    /// rest of the log (which made windowed reads quadratic).
    #[test]
    fn a_search_stops_at_its_range() {
        let evens = list((0..400_000).map(|n| n * 2));
        let odds = list((0..400_000).map(|n| n * 2 + 1));
        let constraints: Vec<Vec<&Postings>> = vec![vec![&evens], vec![&odds]];
        let steps = || STEPS.with(std::cell::Cell::get);
        let before = steps();
        assert_eq!(first_common(&constraints, 0, 1_000, |_| true), None);
        assert!(steps() - before <= 1_100, "forward: {} steps for a range of 1,000", steps() - before);
        let before = steps();
        assert_eq!(last_common(&constraints, 799_999, 799_000, |_| true), None);
        assert!(steps() - before <= 1_100, "backward: {} steps for a range of 1,000", steps() - before);
        // Where they do meet, it is found.
        let threes = list((0..300_000).map(|n| n * 3));
        let constraints: Vec<Vec<&Postings>> = vec![vec![&evens], vec![&threes]];
        assert_eq!(first_common(&constraints, 1, 1_000, |_| true), Some(6));
        assert_eq!(last_common(&constraints, 999, 0, |_| true), Some(996));
        assert_eq!(first_common(&constraints, 7, 12, |_| true), None, "12 is past the end");
        assert_eq!(last_common(&constraints, 11, 7, |_| true), None, "6 is below the bound");
    }
}
