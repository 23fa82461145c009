//! The stores the read and open scenarios build: which events go to which streams, with which types
//! and tags — and so how many events each filtered read must return.
//!
//! [`Layout`] is the store the read scenarios and `open_1m` share. Its events are appended
//! [`APPEND_EVENTS`] at a time, almost all of an append going to one ordinary stream. Each of the
//! first appends also carries one event of a hot stream, the hot streams taking turns, so that a hot
//! stream gets its events one at a time, spread through the whole log — as a busy aggregate does among
//! many quiet ones — and not as a few contiguous runs that a read could fetch with a handful of preads.
//!
//! [`ManyStreams`] is the store `open_10m` opens: a million streams of 10 events, as a store with an
//! aggregate per customer has, so that the stream index weighs as it would there.
//!
//! In both, types and tags are drawn per event from a fixed hash of its place in the build, so every
//! run builds the same store (up to the order in which concurrent appends commit) and the number of
//! events matching a filter is known without reading the store.

use anyhow::Result;
use bytes::Bytes;
use strata_core::{EventType, NewEvent, StreamId, Tag};
use strata_storage::Filter;

/// Events per append.
const APPEND_EVENTS: u64 = 100;
/// Streams the store spreads its events over (hot ones included), so that the stream index has a
/// realistic size.
const STREAMS: u64 = 10_000;
/// Streams whose events are spread through the log, one per append.
pub const HOT_STREAMS: u64 = 10;
/// Events in each hot stream, when the store is large enough (it takes one append per event).
pub const HOT_STREAM_EVENTS_MAX: u64 = 1_000;
/// The ordinary streams' categories, taking turns: each holds about a fifth of the log.
pub const CATEGORIES: [&str; 5] = ["account", "card", "loan", "customer", "transfer"];
/// Every event has one of these types, each about a tenth of the log.
pub const EVENT_TYPES: [&str; 10] = [
    "MoneyDeposited",
    "MoneyWithdrawn",
    "TransferSent",
    "TransferReceived",
    "CardIssued",
    "CardBlocked",
    "LoanRequested",
    "LoanApproved",
    "AddressChanged",
    "StatementIssued",
];
/// Every event carries one tag `branch:{n}` with `n` below this: each value is on about 1% of the log.
const TAG_VALUES: u64 = 100;
/// Events per append in [`ManyStreams`], all of one stream.
const MANY_STREAMS_APPEND_EVENTS: u64 = 10;
/// Streams in [`ManyStreams`] when it has enough appends: 10 M events make 1 M streams of 10 events.
const MANY_STREAMS_MAX: u64 = 1_000_000;

/// The tag with value `value` (below [`TAG_VALUES`]).
pub fn tag(value: u64) -> Result<Tag> {
    Ok(Tag::new(format!("branch:{value}"))?)
}

/// A store for [`build_store`](super::engine::build_store) to build: its events, in a fixed number of
/// appends made by concurrent writers, so that they may commit in any order.
pub trait Build: Sync {
    fn events(&self) -> u64;

    fn appends(&self) -> u64;

    /// The events of append `number` (below [`Build::appends`]), each with its stream, in order.
    fn append(&self, number: u64) -> Result<Vec<(StreamId, NewEvent)>>;
}

/// What every event of a built store carries: the same data, and a type and a tag drawn from a hash
/// of its place in the build.
#[derive(Debug)]
struct EventTemplate {
    data: Bytes,
    event_types: Vec<EventType>,
    tags: Vec<Tag>,
}

impl EventTemplate {
    fn new(data: Bytes) -> Result<EventTemplate> {
        Ok(EventTemplate {
            data,
            event_types: EVENT_TYPES.iter().map(|name| EventType::new(*name)).collect::<Result<_, _>>()?,
            tags: (0..TAG_VALUES).map(tag).collect::<Result<_>>()?,
        })
    }

    /// The event built as the `index`-th: its type and tag come from a hash of `index`.
    fn event(&self, index: u64) -> Result<NewEvent> {
        let hash = mix(index);
        let event_type = self.event_types[(hash % self.event_types.len() as u64) as usize].clone();
        // The high half, so that type and tag are independent.
        let tag = self.tags[((hash >> 32) % TAG_VALUES) as usize].clone();
        Ok(NewEvent::new(event_type, self.data.clone()).with_tags(vec![tag])?)
    }
}

/// The store of a given size: its streams, and the events of each append.
#[derive(Debug)]
pub struct Layout {
    events: u64,
    appends: u64,
    hot_stream_events: u64,
    template: EventTemplate,
    hot_streams: Vec<StreamId>,
}

impl Layout {
    /// A store of `events` events, each with `data`. Hot streams get [`HOT_STREAM_EVENTS_MAX`] events
    /// each if there are enough appends, fewer (possibly none) in a smaller store.
    pub fn new(events: u64, data: Bytes) -> Result<Layout> {
        let appends = events.div_ceil(APPEND_EVENTS);
        Ok(Layout {
            events,
            appends,
            hot_stream_events: HOT_STREAM_EVENTS_MAX.min(appends / HOT_STREAMS),
            template: EventTemplate::new(data)?,
            hot_streams: (0..HOT_STREAMS)
                .map(|number| StreamId::new(format!("hot-{number}")))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn hot_streams(&self) -> &[StreamId] {
        &self.hot_streams
    }

    /// Events in each hot stream.
    pub fn hot_stream_events(&self) -> u64 {
        self.hot_stream_events
    }

    /// How many events of the store match `filter`, by going through the build without a store.
    pub fn count_matching(&self, filter: &Filter) -> Result<u64> {
        let mut count = 0;
        for number in 0..self.appends {
            for (stream, event) in self.append(number)? {
                count += u64::from(matches(filter, &stream, event.event_type(), event.tags().iter().map(Tag::as_str)));
            }
        }
        Ok(count)
    }
}

impl Build for Layout {
    fn events(&self) -> u64 {
        self.events
    }

    fn appends(&self) -> u64 {
        self.appends
    }

    fn append(&self, number: u64) -> Result<Vec<(StreamId, NewEvent)>> {
        assert!(number < self.appends, "append {number} of a store built in {} appends", self.appends);
        let first = number * APPEND_EVENTS;
        let count = APPEND_EVENTS.min(self.events - first);
        let ordinary = ordinary_stream(number)?;
        // Appends take turns among the hot streams, so each hot stream gets every `HOT_STREAMS`-th
        // append; the slot varies so that hot events are not evenly spaced either.
        let hot = (number < self.hot_stream_events * HOT_STREAMS)
            .then(|| (&self.hot_streams[(number % HOT_STREAMS) as usize], mix(number) % count));
        (0..count)
            .map(|slot| {
                let stream = match hot {
                    Some((hot_stream, hot_slot)) if hot_slot == slot => hot_stream.clone(),
                    _ => ordinary.clone(),
                };
                Ok((stream, self.template.event(first + slot)?))
            })
            .collect()
    }
}

/// A store of many short streams, as one of an aggregate per customer is: each append carries
/// [`MANY_STREAMS_APPEND_EVENTS`] events of one stream, the streams taking turns, so that 10 M events
/// make [`MANY_STREAMS_MAX`] streams of 10 events, each stream's events side by side in the log. A
/// smaller store has fewer streams of the same length; a larger one, longer streams.
#[derive(Debug)]
pub struct ManyStreams {
    events: u64,
    appends: u64,
    streams: u64,
    template: EventTemplate,
}

impl ManyStreams {
    /// A store of `events` events, each with `data`.
    pub fn new(events: u64, data: Bytes) -> Result<ManyStreams> {
        ManyStreams::with_streams_max(events, MANY_STREAMS_MAX, data)
    }

    /// As [`ManyStreams::new`], with at most `streams_max` streams rather than [`MANY_STREAMS_MAX`]
    /// (so that a test can fill streams with several appends each without building 10 M events).
    fn with_streams_max(events: u64, streams_max: u64, data: Bytes) -> Result<ManyStreams> {
        let appends = events.div_ceil(MANY_STREAMS_APPEND_EVENTS);
        Ok(ManyStreams { events, appends, streams: streams_max.min(appends), template: EventTemplate::new(data)? })
    }

    pub fn streams(&self) -> u64 {
        self.streams
    }

    /// `count` streams picked by a fixed hash (the same on every run; one may be picked twice), each
    /// with the number of events it holds.
    pub fn sample(&self, count: u64) -> Result<Vec<(StreamId, u64)>> {
        (0..count)
            .map(|pick| {
                let number = mix(pick) % self.streams;
                Ok((categorized_stream(number)?, self.stream_events(number)))
            })
            .collect()
    }

    /// Events in stream `number`: those of appends `number`, `number + streams`, …, of which only the
    /// very last may be short.
    fn stream_events(&self, number: u64) -> u64 {
        let appends = self.appends / self.streams + u64::from(number < self.appends % self.streams);
        let last_append = self.appends - 1;
        let last_append_short_by = self.appends * MANY_STREAMS_APPEND_EVENTS - self.events;
        appends * MANY_STREAMS_APPEND_EVENTS
            - if last_append % self.streams == number { last_append_short_by } else { 0 }
    }
}

impl Build for ManyStreams {
    fn events(&self) -> u64 {
        self.events
    }

    fn appends(&self) -> u64 {
        self.appends
    }

    fn append(&self, number: u64) -> Result<Vec<(StreamId, NewEvent)>> {
        assert!(number < self.appends, "append {number} of a store built in {} appends", self.appends);
        let first = number * MANY_STREAMS_APPEND_EVENTS;
        let stream = categorized_stream(number % self.streams)?;
        (first..self.events.min(first + MANY_STREAMS_APPEND_EVENTS))
            .map(|index| Ok((stream.clone(), self.template.event(index)?)))
            .collect()
    }
}

/// The stream most events of append `number` go to: `{category}-{n}`, categories taking turns.
fn ordinary_stream(number: u64) -> Result<StreamId> {
    categorized_stream(number % (STREAMS - HOT_STREAMS))
}

/// Stream `number` of a category: `{category}-{number}`, categories taking turns.
fn categorized_stream(number: u64) -> Result<StreamId> {
    Ok(StreamId::new(format!("{}-{number}", CATEGORIES[(number % CATEGORIES.len() as u64) as usize]))?)
}

/// Whether an event of `stream` with this type and these tags passes `filter`, as its documentation
/// says: the model the engine's filtered reads are checked against. Every field is named, so that a
/// new kind of condition cannot go unmodelled.
pub fn matches<'a>(
    filter: &Filter,
    stream: &StreamId,
    event_type: &EventType,
    tags: impl Iterator<Item = &'a str> + Clone,
) -> bool {
    let Filter { category, event_types, stream_prefix, tags: wanted_tags, query } = filter;
    category.as_deref().is_none_or(|category| stream.category() == category)
        && (event_types.is_empty() || event_types.contains(event_type))
        && stream_prefix.as_deref().is_none_or(|prefix| stream.as_str().starts_with(prefix))
        && wanted_tags.iter().all(|wanted| tags.clone().any(|tag| tag == wanted.as_str()))
        && query.as_ref().is_none_or(|query| query.matches(event_type.as_str(), tags))
}

/// SplitMix64's finaliser: a fixed, well-spread hash, so the layout is the same on every run.
fn mix(value: u64) -> u64 {
    let mut x = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn layout(events: u64) -> Layout {
        Layout::new(events, Bytes::from_static(b"{}")).unwrap()
    }

    #[test]
    fn hot_streams_get_their_events_one_per_append_through_the_log() {
        let layout = layout(1_000_000);
        assert_eq!(layout.hot_stream_events(), HOT_STREAM_EVENTS_MAX);
        let mut per_stream: HashMap<StreamId, Vec<u64>> = HashMap::new();
        let mut index = 0;
        for number in 0..layout.appends() {
            for (stream, _) in layout.append(number).unwrap() {
                per_stream.entry(stream).or_default().push(index);
                index += 1;
            }
        }
        assert_eq!(index, 1_000_000);
        assert_eq!(per_stream.len() as u64, STREAMS);
        for hot in layout.hot_streams() {
            let indexes = &per_stream[hot];
            assert_eq!(indexes.len() as u64, HOT_STREAM_EVENTS_MAX);
            // Never two in a row: a whole read of the stream touches records spread over the log.
            assert!(indexes.windows(2).all(|pair| pair[1] - pair[0] > APPEND_EVENTS));
            assert!(indexes[0] < 1_000 && *indexes.last().unwrap() >= 999_000);
        }
    }

    #[test]
    fn each_filter_selects_a_modest_fraction() {
        let layout = layout(100_000);
        let fraction = |filter: Filter| layout.count_matching(&filter).unwrap() as f64 / 100_000.0;
        let category = fraction(Filter { category: Some(CATEGORIES[0].to_owned()), ..Filter::default() });
        assert!((0.17..0.23).contains(&category), "category: {category}");
        let event_type =
            fraction(Filter { event_types: vec![EventType::new(EVENT_TYPES[0]).unwrap()], ..Filter::default() });
        assert!((0.08..0.12).contains(&event_type), "type: {event_type}");
        let tag = fraction(Filter { tags: vec![tag(0).unwrap()], ..Filter::default() });
        assert!((0.005..0.015).contains(&tag), "tag: {tag}");
    }

    #[test]
    fn a_small_store_has_short_hot_streams_and_a_short_last_append() {
        let layout = layout(1_050);
        assert_eq!(layout.appends(), 11);
        assert_eq!(layout.hot_stream_events(), 1);
        assert_eq!(layout.append(10).unwrap().len(), 50);
        let total: usize = (0..layout.appends()).map(|number| layout.append(number).unwrap().len()).sum();
        assert_eq!(total, 1_050);
    }

    #[test]
    fn many_streams_know_how_many_events_each_stream_got() {
        // Fewer appends than streams allowed, exactly as many, and more, each with a short last append.
        for (events, streams_max) in [(1_234, 1_000), (1_000, 100), (1_005, 30)] {
            let layout = ManyStreams::with_streams_max(events, streams_max, Bytes::from_static(b"{}")).unwrap();
            let mut per_stream: HashMap<StreamId, u64> = HashMap::new();
            let mut previous_stream = None;
            for number in 0..layout.appends() {
                let append = layout.append(number).unwrap();
                // One stream per append, never the one just before: the streams take turns.
                assert!(append.iter().all(|(stream, _)| *stream == append[0].0));
                assert_ne!(previous_stream.as_ref(), Some(&append[0].0));
                previous_stream = Some(append[0].0.clone());
                *per_stream.entry(append[0].0.clone()).or_default() += append.len() as u64;
            }
            assert_eq!(per_stream.values().sum::<u64>(), events);
            assert_eq!(per_stream.len() as u64, layout.streams());
            for number in 0..layout.streams() {
                let stream = categorized_stream(number).unwrap();
                assert_eq!(layout.stream_events(number), per_stream[&stream], "{stream} of {events} events");
            }
            for (stream, stream_events) in layout.sample(20).unwrap() {
                assert_eq!(stream_events, per_stream[&stream], "sampled {stream}");
            }
        }
    }
}
