//! A model test: random sequences of appends (every kind of expectation, retries, empty and oversized
//! batches), reads both ways, clean reopens and simulated power losses, compared step by step with a
//! plain in-memory model (a `Vec` log and a map of streams).

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use strata_core::{
    EventId, EventType, ExpectedRevision, NewEvent, Position, Query, QueryItem, StreamMetadata, StreamRevision, Tag,
    Timestamp,
};
use strata_storage::format;
use strata_storage::{
    AppendCondition, AppendError, AppendOutcome, Direction, Filter, ManualClock, MultiAppend, MultiAppendOutcome,
    Options, ReadError, ReadFrom, ReadOptions, SimStorage, Store,
};

const STREAMS: [&str; 4] = ["a", "b-1", "b-2", "c"];
const TYPES: [&str; 3] = ["Opened", "Deposited", "Withdrawn"];
const TAGS: [&str; 3] = ["region:eu", "region:us", "vip:yes"];
const CATEGORIES: [&str; 4] = ["a", "b", "c", "z"];
const PREFIXES: [&str; 4] = ["b-", "a", "b-2", "x"];
const START_MICROS: i64 = 1_700_000_000_000_000;
const EVENT_BYTES_MAX: usize = 1500;
const SEGMENT_SIZE_BYTES: u64 = 4096;
/// The most an append's records may take (log format 2): a segment less its header and the room kept
/// for its seal, less the frame's header, body header and predecessor's hash, less the room every
/// frame keeps for `$store-created` (the engine's bound, 512 bytes). With records 32 bytes longer
/// (their hash), the largest appends this test makes no longer all fit these small segments.
const APPEND_ROOM_BYTES: usize = SEGMENT_SIZE_BYTES as usize
    - format::SEGMENT_HEADER_BYTES as usize
    - format::SEAL_FRAME_BYTES
    - format::FRAME_HEADER_BYTES
    - format::FRAME_BODY_HEADER_BYTES
    - format::FRAME_CHAIN_BYTES
    - 512;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    ExactCurrent,
    ExactWrong,
}

/// One event to append: payload size, type, and a bit mask over `TAGS`.
type EventSpec = (usize, usize, u8);

#[derive(Debug, Clone)]
struct FilterSpec {
    category: Option<usize>,
    types: Vec<usize>,
    prefix: Option<usize>,
    tags: Vec<usize>,
    /// Query items: (types, tags) indexes, OR-ed.
    query: Option<Vec<(Vec<usize>, Vec<usize>)>>,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: usize,
        expect: Expect,
        events: Vec<EventSpec>,
        oversized: bool,
    },
    /// Events for several streams, checks on any streams, and maybe a DCB condition.
    AppendMulti {
        events: Vec<(usize, EventSpec)>,
        checks: Vec<(usize, Expect)>,
        condition: Option<ConditionSpec>,
    },
    AdvanceClock {
        micros: i64,
    },
    SetMetadata {
        stream: usize,
        truncate_before: Option<u64>,
        max_count: Option<u64>,
    },
    SoftDelete {
        stream: usize,
        expect: Expect,
    },
    Tombstone {
        stream: usize,
        expect: Expect,
    },
    ReadFiltered {
        filter: FilterSpec,
        from: Option<u64>,
        backward: bool,
        limit: usize,
        until: Until,
    },
    ReadStreamAsOf {
        stream: usize,
        until: Until,
    },
    Retry {
        append: usize,
        expect: Expect,
    },
    ReadStream {
        stream: usize,
        from: Option<u64>,
        backward: bool,
        limit: usize,
    },
    ReadAll {
        from: Option<u64>,
        backward: bool,
        limit: usize,
    },
    Reopen,
    /// Hidden events in sealed segments become placeholders.
    Scavenge,
    Crash {
        seed: u64,
    },
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::StreamExists),
        3 => Just(Expect::ExactCurrent),
        1 => Just(Expect::ExactWrong),
    ]
}

/// Query items as (types, tags) indexes, and `after` as an offset back from the head (`None`: no
/// position; an offset of 0 is the head itself; negative values lie beyond the head).
#[derive(Debug, Clone)]
struct ConditionSpec {
    items: Vec<(Vec<usize>, Vec<usize>)>,
    after_back: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
enum Until {
    Now,
    Position(u64),
    /// Microseconds after the clock's start.
    Time(i64),
}

fn until_strategy() -> impl Strategy<Value = Until> {
    prop_oneof![
        2 => Just(Until::Now),
        1 => (0u64..40).prop_map(Until::Position),
        1 => (-5i64..200).prop_map(Until::Time),
    ]
}

fn filter_strategy() -> impl Strategy<Value = FilterSpec> {
    let item = (prop::collection::vec(0..TYPES.len(), 0..3), prop::collection::vec(0..TAGS.len(), 0..3));
    (
        prop::option::weighted(0.4, 0..CATEGORIES.len()),
        prop::collection::vec(0..TYPES.len(), 0..3),
        prop::option::weighted(0.3, 0..PREFIXES.len()),
        prop::collection::vec(0..TAGS.len(), 0..3),
        prop::option::weighted(0.4, prop::collection::vec(item, 0..3)),
    )
        .prop_map(|(category, types, prefix, tags, query)| FilterSpec { category, types, prefix, tags, query })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let event = (0usize..900, 0..TYPES.len(), 0u8..8);
    prop_oneof![
        10 => (0..STREAMS.len(), expect_strategy(), prop::collection::vec(event, 0..5), prop::bool::weighted(0.05))
            .prop_map(|(stream, expect, events, oversized)| Op::Append { stream, expect, events, oversized }),
        2 => (0i64..30).prop_map(|micros| Op::AdvanceClock { micros }),
        4 => (
            prop::collection::vec((0..STREAMS.len(), (0usize..200, 0..TYPES.len(), 0u8..8)), 0..5),
            prop::collection::vec((0..STREAMS.len(), expect_strategy()), 0..3),
            prop::option::of((
                prop::collection::vec((prop::collection::vec(0..TYPES.len(), 0..2), prop::collection::vec(0..TAGS.len(), 0..2)), 0..3),
                prop::option::of(-2i64..8),
            )),
        )
            .prop_map(|(events, checks, condition)| Op::AppendMulti {
                events,
                checks,
                condition: condition.map(|(items, after_back)| ConditionSpec { items, after_back }),
            }),
        4 => (filter_strategy(), prop::option::of(0u64..60), any::<bool>(), 0usize..8, until_strategy())
            .prop_map(|(filter, from, backward, limit, until)| Op::ReadFiltered { filter, from, backward, limit, until }),
        2 => (0..STREAMS.len(), until_strategy()).prop_map(|(stream, until)| Op::ReadStreamAsOf { stream, until }),
        2 => (0usize..40, expect_strategy()).prop_map(|(append, expect)| Op::Retry { append, expect }),
        3 => (0..STREAMS.len(), prop::option::of(0u64..12), any::<bool>(), 0usize..6)
            .prop_map(|(stream, from, backward, limit)| Op::ReadStream { stream, from, backward, limit }),
        3 => (prop::option::of(0u64..60), any::<bool>(), 0usize..10)
            .prop_map(|(from, backward, limit)| Op::ReadAll { from, backward, limit }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Scavenge),
        1 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
        1 => (0..STREAMS.len(), prop::option::of(0u64..6), prop::option::of(0u64..4))
            .prop_map(|(stream, truncate_before, max_count)| Op::SetMetadata { stream, truncate_before, max_count }),
        1 => (0..STREAMS.len(), expect_strategy()).prop_map(|(stream, expect)| Op::SoftDelete { stream, expect }),
        1 => (0..STREAMS.len(), expect_strategy()).prop_map(|(stream, expect)| Op::Tombstone { stream, expect }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelEvent {
    id: EventId,
    stream: &'static str,
    data: String,
    event_type: &'static str,
    tags: Vec<&'static str>,
    recorded_micros: i64,
    /// An event of the system stream: its id and data are the store's own, not compared.
    system: bool,
}

/// An event as the model appends it.
#[derive(Debug, Clone, PartialEq)]
struct ModelNew {
    id: EventId,
    data: String,
    event_type: &'static str,
    tags: Vec<&'static str>,
}

impl ModelNew {
    fn to_new_event(&self) -> NewEvent {
        event(&self.data).with_id(self.id).with_tags(self.tags.iter().map(|t| Tag::new(*t).unwrap()).collect()).unwrap()
    }
}

fn with_type(event: NewEvent, event_type: &str) -> NewEvent {
    let data = event.data().clone();
    let mut typed = NewEvent::new(EventType::new(event_type).unwrap(), data).with_tags(event.tags().to_vec()).unwrap();
    if let Some(id) = event.id() {
        typed = typed.with_id(id);
    }
    typed
}

/// Stream, events, first position.
type CommittedAppend = (&'static str, Vec<ModelNew>, u64);

#[derive(Default)]
struct Model {
    log: Vec<ModelEvent>,
    streams: HashMap<&'static str, Vec<u64>>,
    /// Committed appends, for retries.
    appends: Vec<CommittedAppend>,
    next_id: u128,
    clock: Arc<ManualClock>,
    clock_micros: i64,
    /// Per stream: metadata (truncate_before, max_count), soft deletes and tombstones.
    metadata: HashMap<&'static str, (Option<u64>, Option<u64>)>,
    deleted_before: HashMap<&'static str, u64>,
    tombstoned: std::collections::HashSet<&'static str>,
}

impl Model {
    fn head(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(|p| p.len().checked_sub(1)).map(|r| r as u64)
    }

    /// The first revision stream reads show, by today's metadata and soft deletes.
    fn first_visible(&self, stream: &str) -> u64 {
        let revisions = self.streams.get(stream).map_or(0, |p| p.len() as u64);
        let (truncate_before, max_count) = self.metadata.get(stream).copied().unwrap_or_default();
        let mut first = truncate_before.unwrap_or(0).max(self.deleted_before.get(stream).copied().unwrap_or(0));
        if let Some(max_count) = max_count {
            first = first.max(revisions.saturating_sub(max_count));
        }
        first.min(revisions)
    }

    /// A store's first commit group begins with `$store-created` at position 0, in stream `$store`
    /// (written by the committer, recorded at the group's time: the clock's, the log being empty).
    /// Its id and data are the store's own: a system event.
    fn create_store_if_empty(&mut self) {
        if !self.log.is_empty() {
            return;
        }
        self.streams.entry("$store").or_default().push(0);
        self.log.push(ModelEvent {
            id: EventId::from_bytes([0; 16]),
            stream: "$store",
            data: String::new(),
            event_type: "$store-created",
            tags: vec![],
            recorded_micros: self.clock_micros,
            system: true,
        });
    }

    fn record_system(&mut self, event_type: &'static str) {
        self.create_store_if_empty();
        let recorded_micros = self.log.last().map_or(self.clock_micros, |e| e.recorded_micros.max(self.clock_micros));
        self.streams.entry("$streams").or_default().push(self.log.len() as u64);
        self.log.push(ModelEvent {
            id: EventId::from_bytes([0; 16]),
            stream: "$streams",
            data: String::new(),
            event_type,
            tags: vec![],
            recorded_micros,
            system: true,
        });
    }

    fn expected(&self, stream: &str, expect: &Expect) -> ExpectedRevision {
        match expect {
            Expect::Any => ExpectedRevision::Any,
            Expect::NoStream => ExpectedRevision::NoStream,
            Expect::StreamExists => ExpectedRevision::StreamExists,
            Expect::ExactCurrent => ExpectedRevision::Exact(StreamRevision::new(self.head(stream).unwrap_or(0))),
            Expect::ExactWrong => ExpectedRevision::Exact(StreamRevision::new(self.head(stream).map_or(3, |h| h + 1))),
        }
    }

    fn commit(&mut self, stream: &'static str, events: Vec<ModelNew>) -> (u64, u64) {
        self.create_store_if_empty();
        let first_position = self.log.len() as u64;
        let first_revision = self.head(stream).map_or(0, |h| h + 1);
        // The store records max(clock, last recorded time).
        let recorded_micros = self.log.last().map_or(self.clock_micros, |e| e.recorded_micros.max(self.clock_micros));
        for new in &events {
            self.streams.entry(stream).or_default().push(self.log.len() as u64);
            self.log.push(ModelEvent {
                id: new.id,
                stream,
                data: new.data.clone(),
                event_type: new.event_type,
                tags: new.tags.clone(),
                recorded_micros,
                system: false,
            });
        }
        self.appends.push((stream, events, first_position));
        (first_position, first_revision)
    }
}

fn options(storage: &SimStorage, clock: &Arc<ManualClock>) -> Options {
    Options { event_bytes_max: EVENT_BYTES_MAX, clock: clock.clone(), ..sim_options(storage, SEGMENT_SIZE_BYTES) }
}

impl Model {
    /// How many positions a read as of `until` sees.
    fn visible_len(&self, until: Until) -> u64 {
        let len = self.log.len() as u64;
        match until {
            Until::Now => len,
            Until::Position(position) => len.min(position + 1),
            Until::Time(offset) => {
                self.log.iter().filter(|e| e.recorded_micros <= START_MICROS + offset).count() as u64
            }
        }
    }
}

fn read_options(until: Until, options: ReadOptions) -> ReadOptions {
    match until {
        Until::Now => options,
        Until::Position(position) => options.until_position(Position::new(position)),
        Until::Time(offset) => options.until_time(Timestamp::from_micros(START_MICROS + offset)),
    }
}

fn check_append(
    store: &Store,
    model: &mut Model,
    stream: &'static str,
    expected: ExpectedRevision,
    events: Vec<ModelNew>,
    invalid: bool,
) {
    let new_events = events.iter().map(|e| with_type(e.to_new_event(), e.event_type)).collect();
    let result = store.append_blocking(common::stream(stream), expected, new_events);
    if invalid {
        assert!(matches!(result, Err(AppendError::Invalid(_))), "{result:?}");
        return;
    }
    if model.tombstoned.contains(stream) {
        assert!(matches!(result, Err(AppendError::StreamDeleted { .. })), "{result:?}");
        return;
    }
    let actual = model.head(stream).map(StreamRevision::new);
    let outcome = result.expect("a valid append succeeds");
    if expected.is_satisfied_by(actual) {
        let (first_position, first_revision) = model.commit(stream, events);
        let committed = outcome.committed().expect("committed");
        assert_eq!(committed.first_position, Position::new(first_position));
        assert_eq!(committed.first_revision, StreamRevision::new(first_revision));
        assert!(!committed.replayed);
    } else {
        assert_eq!(outcome, AppendOutcome::WrongExpectedRevision { stream: common::stream(stream), expected, actual });
    }
}

fn query_of(items: &[(Vec<usize>, Vec<usize>)]) -> Query {
    Query::new(
        items
            .iter()
            .map(|(types, tags)| QueryItem {
                types: types.iter().map(|&t| EventType::new(TYPES[t]).unwrap()).collect(),
                tags: tags.iter().map(|&t| Tag::new(TAGS[t]).unwrap()).collect(),
            })
            .collect(),
    )
}

fn check_append_multi(
    store: &Store,
    model: &mut Model,
    events: Vec<(usize, EventSpec)>,
    checks: Vec<(usize, Expect)>,
    condition: Option<ConditionSpec>,
) {
    let events: Vec<(&'static str, ModelNew)> = events
        .iter()
        .map(|&(stream, (size, event_type, tag_mask))| {
            model.next_id += 1;
            let new = ModelNew {
                id: id(model.next_id),
                data: format!("{}{}", model.next_id, "m".repeat(size)),
                event_type: TYPES[event_type],
                tags: (0..TAGS.len()).filter(|i| tag_mask & (1 << i) != 0).map(|i| TAGS[i]).collect(),
            };
            (STREAMS[stream], new)
        })
        .collect();
    let checks: Vec<(&'static str, ExpectedRevision)> =
        checks.iter().map(|(stream, expect)| (STREAMS[*stream], model.expected(STREAMS[*stream], expect))).collect();
    let head = model.log.len() as i64 - 1;
    let condition = condition.map(|spec| {
        let after = spec.after_back.map(|back| head - back).filter(|&after| after >= 0).map(|a| a as u64);
        (spec.items, after)
    });
    let append = MultiAppend {
        events: events
            .iter()
            .map(|(stream, new)| (common::stream(stream), with_type(new.to_new_event(), new.event_type)))
            .collect(),
        checks: checks.iter().map(|(stream, expected)| (common::stream(stream), *expected)).collect(),
        condition: condition
            .as_ref()
            .map(|(items, after)| AppendCondition { query: query_of(items), after: after.map(Position::new) }),
    };
    let result = store.append_multi_blocking(append);

    // What the model expects, in the engine's order: request rules, then the condition's position,
    // then the checks in order, then the condition.
    let mut checked = std::collections::HashSet::new();
    let invalid = events.is_empty()
        || !checks.iter().all(|(stream, _)| checked.insert(*stream))
        || condition.as_ref().is_some_and(|(items, _)| items.is_empty());
    if invalid {
        assert!(matches!(result, Err(AppendError::Invalid(_))), "{result:?}");
        return;
    }
    let touched = events.iter().map(|(stream, _)| *stream).chain(checks.iter().map(|(stream, _)| *stream));
    if let Some(stream) = touched.clone().find(|stream| model.tombstoned.contains(stream)) {
        assert!(matches!(result, Err(AppendError::StreamDeleted { .. })), "{stream} is tombstoned: {result:?}");
        return;
    }
    if let Some((_, Some(after))) = &condition {
        if *after as i64 > head {
            assert!(matches!(result, Err(AppendError::Invalid(_))), "after {after} beyond head {head}: {result:?}");
            return;
        }
    }
    let outcome = result.expect("a valid multi-append");
    for (stream, expected) in &checks {
        let actual = model.head(stream).map(StreamRevision::new);
        if !expected.is_satisfied_by(actual) {
            let wanted = MultiAppendOutcome::WrongExpectedRevision {
                stream: common::stream(stream),
                expected: *expected,
                actual,
            };
            assert_eq!(outcome, wanted);
            return;
        }
    }
    if let Some((items, after)) = &condition {
        let from = after.map_or(0, |a| a + 1) as usize;
        let violation = model.log.iter().enumerate().skip(from).find(|(_, e)| {
            items.iter().any(|(types, tags)| {
                (types.is_empty() || types.iter().any(|&t| TYPES[t] == e.event_type))
                    && tags.iter().all(|&t| e.tags.contains(&TAGS[t]))
            })
        });
        if let Some((position, _)) = violation {
            assert_eq!(outcome, MultiAppendOutcome::ConditionFailed { position: Position::new(position as u64) });
            return;
        }
    }
    let MultiAppendOutcome::Committed(result) = outcome else { panic!("expected a commit, got {outcome:?}") };
    model.create_store_if_empty();
    assert_eq!(result.first_position.value(), model.log.len() as u64);
    let recorded_micros = model.log.last().map_or(model.clock_micros, |e| e.recorded_micros.max(model.clock_micros));
    for (stream, new) in events {
        let revision = model.head(stream).map_or(0, |h| h + 1);
        let written = result.streams.iter().find(|s| s.stream.as_str() == stream).expect("the stream is in the result");
        assert!(written.first_revision.value() <= revision && revision <= written.last_revision.value());
        model.streams.entry(stream).or_default().push(model.log.len() as u64);
        model.log.push(ModelEvent {
            id: new.id,
            stream,
            data: new.data,
            event_type: new.event_type,
            tags: new.tags,
            recorded_micros,
            system: false,
        });
    }
}

/// A soft delete or a tombstone, decided as the committer does: a tombstoned stream first, then the
/// expected revision, then (for a soft delete) whether there is anything to delete.
fn check_deletion(store: &Store, model: &mut Model, name: &'static str, expect: &Expect, tombstone: bool) {
    let expected = model.expected(name, expect);
    let result = if tombstone {
        store.tombstone_stream_blocking(common::stream(name), expected)
    } else {
        store.delete_stream_blocking(common::stream(name), expected)
    };
    let actual = model.head(name).map(StreamRevision::new);
    if model.tombstoned.contains(name) {
        assert!(matches!(result, Err(AppendError::StreamDeleted { .. })), "{result:?}");
    } else if !expected.is_satisfied_by(actual) {
        let wanted = MultiAppendOutcome::WrongExpectedRevision { stream: common::stream(name), expected, actual };
        assert_eq!(result.unwrap(), wanted);
    } else if tombstone {
        assert!(matches!(result, Ok(MultiAppendOutcome::Committed(_))), "{result:?}");
        model.tombstoned.insert(name);
        model.record_system("$tombstone");
    } else if let Some(head) = actual {
        assert!(matches!(result, Ok(MultiAppendOutcome::Committed(_))), "{result:?}");
        let before = model.deleted_before.entry(name).or_default();
        *before = (*before).max(head.value() + 1);
        model.record_system("$deleted");
    } else {
        assert!(matches!(result, Err(AppendError::StreamNotFound { .. })), "{result:?}");
    }
}

fn check_reads(store: &Store, model: &Model) {
    assert_eq!(store.head_position(), model.log.len().checked_sub(1).map(|p| Position::new(p as u64)));
    for stream in STREAMS {
        assert_eq!(store.stream_revision(stream).unwrap(), model.head(stream).map(StreamRevision::new), "{stream}");
    }
}

fn run(ops: Vec<Op>) {
    let mut storage = SimStorage::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START_MICROS)));
    let mut store = Store::open_with(DIR, options(&storage, &clock)).unwrap();
    let mut model = Model { clock: clock.clone(), clock_micros: START_MICROS, ..Model::default() };
    for op in ops {
        match op {
            Op::Append { stream, expect, events, oversized } => {
                let stream = STREAMS[stream];
                let expected = model.expected(stream, &expect);
                let mut events: Vec<ModelNew> = events
                    .iter()
                    .map(|&(size, event_type, tag_mask)| {
                        model.next_id += 1;
                        ModelNew {
                            id: id(model.next_id),
                            data: format!("{}{}", model.next_id, "x".repeat(size)),
                            event_type: TYPES[event_type],
                            tags: (0..TAGS.len()).filter(|i| tag_mask & (1 << i) != 0).map(|i| TAGS[i]).collect(),
                        }
                    })
                    .collect();
                if oversized && !events.is_empty() {
                    events[0].data = "y".repeat(EVENT_BYTES_MAX + 1);
                }
                // Too large for a frame: refused like an oversized event (`AppendTooLarge`).
                let encoded_bytes: usize = events
                    .iter()
                    .map(|e| {
                        format::record_encoded_len(&common::stream(stream), &with_type(e.to_new_event(), e.event_type))
                    })
                    .sum();
                let invalid = events.is_empty() || oversized || encoded_bytes > APPEND_ROOM_BYTES;
                check_append(&store, &mut model, stream, expected, events, invalid);
            }
            Op::Retry { append, expect } => {
                if model.appends.is_empty() {
                    continue;
                }
                let (stream, events, first_position) = model.appends[append % model.appends.len()].clone();
                let expected = model.expected(stream, &expect);
                let new_events = events.iter().map(|e| with_type(e.to_new_event(), e.event_type)).collect();
                let outcome = store.append_blocking(common::stream(stream), expected, new_events).unwrap();
                let result = outcome.committed().expect("a retry is recognised whatever its expectation");
                assert!(result.replayed);
                assert_eq!(result.first_position, Position::new(first_position));
            }
            Op::ReadStream { stream, from, backward, limit } => {
                let name = STREAMS[stream];
                let direction = if backward { Direction::Backward } else { Direction::Forward };
                let from_place = from.map_or(if backward { ReadFrom::End } else { ReadFrom::Start }, |r| {
                    ReadFrom::At(StreamRevision::new(r))
                });
                let result = store.read_stream(&common::stream(name), from_place, direction, limit);
                if model.tombstoned.contains(name) {
                    assert!(matches!(result, Err(ReadError::StreamDeleted { .. })), "{name}: {result:?}");
                    continue;
                }
                let positions = model.streams.get(name).cloned().unwrap_or_default();
                let len = positions.len() as u64;
                let first = model.first_visible(name);
                if first >= len {
                    assert!(matches!(result, Err(ReadError::StreamNotFound { .. })), "{name}: {result:?}");
                    continue;
                }
                let expected: Vec<u64> = if backward {
                    let last = from.unwrap_or(len - 1).min(len - 1);
                    if last < first { vec![] } else { (first..=last).rev().take(limit).collect() }
                } else {
                    (from.unwrap_or(first).max(first)..len).take(limit).collect()
                };
                let events = result.unwrap();
                let got: Vec<(u64, u64, EventId)> =
                    events.iter().map(|e| (e.revision.value(), e.position.value(), e.id)).collect();
                let want: Vec<(u64, u64, EventId)> = expected
                    .iter()
                    .map(|&r| (r, positions[r as usize], model.log[positions[r as usize] as usize].id))
                    .collect();
                assert_eq!(got, want);
            }
            Op::ReadAll { from, backward, limit } => {
                let len = model.log.len() as u64;
                let direction = if backward { Direction::Backward } else { Direction::Forward };
                let from_place = from
                    .map_or(if backward { ReadFrom::End } else { ReadFrom::Start }, |p| ReadFrom::At(Position::new(p)));
                let expected: Vec<u64> = if backward {
                    if len == 0 {
                        vec![]
                    } else {
                        (0..=from.unwrap_or(len - 1).min(len - 1)).rev().take(limit).collect()
                    }
                } else {
                    (from.unwrap_or(0)..len).take(limit).collect()
                };
                let events = store.read_all(from_place, direction, limit).unwrap();
                // System events (of `$streams`, and `$store-created`) are compared by stream and type:
                // their ids and data are the store's.
                let got: Vec<(u64, Option<EventId>, &str, String)> = events
                    .iter()
                    .map(|e| {
                        let system = ["$streams", "$store"].contains(&e.stream.as_str());
                        let shown =
                            if system { e.event_type.to_string() } else { String::from_utf8(e.data.to_vec()).unwrap() };
                        (e.position.value(), (!system).then_some(e.id), e.stream.as_str(), shown)
                    })
                    .collect();
                let want: Vec<(u64, Option<EventId>, &str, String)> = expected
                    .iter()
                    .map(|&p| {
                        let m = &model.log[p as usize];
                        let shown = if m.system { m.event_type.to_owned() } else { m.data.clone() };
                        (p, (!m.system).then_some(m.id), m.stream, shown)
                    })
                    .collect();
                assert_eq!(got, want);
            }
            Op::AppendMulti { events, checks, condition } => {
                check_append_multi(&store, &mut model, events, checks, condition)
            }
            Op::AdvanceClock { micros } => {
                model.clock_micros += micros;
                model.clock.advance_micros(micros);
            }
            Op::ReadFiltered { filter: spec, from, backward, limit, until } => {
                let filter = Filter {
                    category: spec.category.map(|c| CATEGORIES[c].to_owned()),
                    event_types: spec.types.iter().map(|&t| EventType::new(TYPES[t]).unwrap()).collect(),
                    stream_prefix: spec.prefix.map(|p| PREFIXES[p].to_owned()),
                    tags: spec.tags.iter().map(|&t| Tag::new(TAGS[t]).unwrap()).collect(),
                    query: spec.query.as_ref().map(|items| {
                        Query::new(
                            items
                                .iter()
                                .map(|(types, tags)| QueryItem {
                                    types: types.iter().map(|&t| EventType::new(TYPES[t]).unwrap()).collect(),
                                    tags: tags.iter().map(|&t| Tag::new(TAGS[t]).unwrap()).collect(),
                                })
                                .collect(),
                        )
                    }),
                };
                let matches = |e: &ModelEvent| {
                    spec.category.is_none_or(|c| e.stream.split('-').next() == Some(CATEGORIES[c]))
                        && (spec.types.is_empty() || spec.types.iter().any(|&t| TYPES[t] == e.event_type))
                        && spec.prefix.is_none_or(|p| e.stream.starts_with(PREFIXES[p]))
                        && spec.tags.iter().all(|&t| e.tags.contains(&TAGS[t]))
                        && spec.query.as_ref().is_none_or(|items| {
                            items.iter().any(|(types, tags)| {
                                (types.is_empty() || types.iter().any(|&t| TYPES[t] == e.event_type))
                                    && tags.iter().all(|&t| e.tags.contains(&TAGS[t]))
                            })
                        })
                };
                let len = model.visible_len(until);
                let visible: Vec<u64> = (0..len).filter(|&p| matches(&model.log[p as usize])).collect();
                let expected: Vec<u64> = if backward {
                    let last = from.unwrap_or(u64::MAX);
                    visible.iter().rev().copied().filter(|&p| p <= last).take(limit).collect()
                } else {
                    visible.iter().copied().filter(|&p| p >= from.unwrap_or(0)).take(limit).collect()
                };
                let base = if backward { ReadOptions::backward(limit) } else { ReadOptions::forward(limit) };
                let from_place = from
                    .map_or(if backward { ReadFrom::End } else { ReadFrom::Start }, |p| ReadFrom::At(Position::new(p)));
                let events = store.read_all_with(from_place, &read_options(until, base), &filter).unwrap();
                let got: Vec<u64> = events.iter().map(|e| e.position.value()).collect();
                assert_eq!(got, expected, "{filter:?} until {until:?}");
                for event in &events {
                    let m = &model.log[event.position.value() as usize];
                    assert_eq!(event.event_type.as_str(), m.event_type);
                    if !m.system {
                        assert_eq!(event.id, m.id);
                    }
                    assert_eq!(event.recorded_at.as_micros(), m.recorded_micros);
                }
            }
            Op::ReadStreamAsOf { stream, until } => {
                let name = STREAMS[stream];
                let len = model.visible_len(until);
                let positions: Vec<u64> = model
                    .streams
                    .get(name)
                    .map(|p| p.iter().copied().filter(|&p| p < len).collect())
                    .unwrap_or_default();
                let first = (model.first_visible(name) as usize).min(positions.len());
                let expected = &positions[first..];
                let result = store.read_stream_with(
                    &common::stream(name),
                    ReadFrom::Start,
                    &read_options(until, ReadOptions::forward(1000)),
                );
                if model.tombstoned.contains(name) {
                    assert!(matches!(result, Err(ReadError::StreamDeleted { .. })), "{result:?}");
                } else if expected.is_empty() {
                    assert!(
                        matches!(result, Err(ReadError::StreamNotFound { .. })),
                        "{name} as of {until:?}: {result:?}"
                    );
                } else {
                    let got: Vec<u64> = result.unwrap().iter().map(|e| e.position.value()).collect();
                    assert_eq!(got, expected, "{name} as of {until:?}");
                }
                if let Until::Time(offset) = until {
                    let at = store.position_at(Timestamp::from_micros(START_MICROS + offset)).unwrap();
                    assert_eq!(at, len.checked_sub(1).map(Position::new));
                }
            }
            Op::SetMetadata { stream, truncate_before, max_count } => {
                let name = STREAMS[stream];
                let metadata = StreamMetadata {
                    truncate_before: truncate_before.map(StreamRevision::new),
                    max_count,
                    ..StreamMetadata::default()
                };
                let result = store.set_stream_metadata_blocking(common::stream(name), &metadata);
                if model.tombstoned.contains(name) {
                    assert!(matches!(result, Err(AppendError::StreamDeleted { .. })), "{result:?}");
                } else {
                    assert!(matches!(result, Ok(MultiAppendOutcome::Committed(_))), "{result:?}");
                    model.metadata.insert(name, (truncate_before, max_count));
                    model.record_system("$metadata");
                }
            }
            Op::SoftDelete { stream, expect } => check_deletion(&store, &mut model, STREAMS[stream], &expect, false),
            Op::Tombstone { stream, expect } => check_deletion(&store, &mut model, STREAMS[stream], &expect, true),
            Op::Scavenge => {
                let report = store.scavenge_blocking().unwrap();
                let after = read_everything(&store);
                let mut placeholders = 0;
                for event in &after {
                    let position = event.position.value();
                    let m = &model.log[position as usize];
                    if event.event_type.as_str() != "$scavenged" || m.event_type == "$scavenged" {
                        continue;
                    }
                    // Only what reads hide may go, and it keeps its position, stream, id and time.
                    let revision = model.streams[m.stream].iter().position(|&p| p == position).unwrap() as u64;
                    let hidden = model.tombstoned.contains(m.stream) || revision < model.first_visible(m.stream);
                    assert!(!m.system && hidden, "a visible event was scavenged: {m:?}");
                    assert_eq!((event.id, event.stream.as_str()), (m.id, m.stream));
                    assert_eq!(event.recorded_at.as_micros(), m.recorded_micros);
                    assert!(event.data.is_empty() && event.tags.is_empty());
                    let m = &mut model.log[position as usize];
                    m.event_type = "$scavenged";
                    m.data.clear();
                    m.tags.clear();
                    placeholders += 1;
                }
                assert_eq!(placeholders, report.events_scavenged);
            }
            Op::Reopen => {
                drop(store);
                store = Store::open_with(DIR, options(&storage, &clock)).unwrap();
            }
            Op::Crash { seed } => {
                // Everything acknowledged was synced, so a power loss now loses nothing of the model.
                let image = storage.crash_image(seed);
                drop(store);
                storage = image;
                store = Store::open_with(DIR, options(&storage, &clock)).unwrap();
            }
        }
        check_reads(&store, &model);
    }
    assert_eq!(read_everything(&store).len(), model.log.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in prop::collection::vec(op_strategy(), 1..80)) {
        run(ops);
    }
}
