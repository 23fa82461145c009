//! A model test: random sequences of appends (every kind of expectation, retries, empty and oversized
//! batches), reads both ways, clean reopens and simulated power losses, compared step by step with a
//! plain in-memory model (a `Vec` log and a map of streams).

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::HashMap;
use strata_core::{EventId, ExpectedRevision, Position, StreamRevision};
use strata_storage::{AppendError, AppendOutcome, Direction, Options, ReadFrom, SimStorage, Store};

const STREAMS: [&str; 4] = ["a", "b-1", "b-2", "c"];
const EVENT_BYTES_MAX: usize = 1500;
const SEGMENT_SIZE_BYTES: u64 = 4096;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    ExactCurrent,
    ExactWrong,
}

#[derive(Debug, Clone)]
enum Op {
    Append { stream: usize, expect: Expect, sizes: Vec<usize>, oversized: bool },
    Retry { append: usize, expect: Expect },
    ReadStream { stream: usize, from: Option<u64>, backward: bool, limit: usize },
    ReadAll { from: Option<u64>, backward: bool, limit: usize },
    Reopen,
    Crash { seed: u64 },
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

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..STREAMS.len(), expect_strategy(), prop::collection::vec(0usize..900, 0..5), prop::bool::weighted(0.05))
            .prop_map(|(stream, expect, sizes, oversized)| Op::Append { stream, expect, sizes, oversized }),
        2 => (0usize..40, expect_strategy()).prop_map(|(append, expect)| Op::Retry { append, expect }),
        3 => (0..STREAMS.len(), prop::option::of(0u64..12), any::<bool>(), 0usize..6)
            .prop_map(|(stream, from, backward, limit)| Op::ReadStream { stream, from, backward, limit }),
        3 => (prop::option::of(0u64..60), any::<bool>(), 0usize..10)
            .prop_map(|(from, backward, limit)| Op::ReadAll { from, backward, limit }),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelEvent {
    id: EventId,
    stream: &'static str,
    data: String,
}

/// Stream, events (id and data), first position.
type CommittedAppend = (&'static str, Vec<(EventId, String)>, u64);

#[derive(Default)]
struct Model {
    log: Vec<ModelEvent>,
    streams: HashMap<&'static str, Vec<u64>>,
    /// Committed appends, for retries.
    appends: Vec<CommittedAppend>,
    next_id: u128,
}

impl Model {
    fn head(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(|p| p.len().checked_sub(1)).map(|r| r as u64)
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

    fn commit(&mut self, stream: &'static str, events: Vec<(EventId, String)>) -> (u64, u64) {
        let first_position = self.log.len() as u64;
        let first_revision = self.head(stream).map_or(0, |h| h + 1);
        for (id, data) in &events {
            self.streams.entry(stream).or_default().push(self.log.len() as u64);
            self.log.push(ModelEvent { id: *id, stream, data: data.clone() });
        }
        self.appends.push((stream, events, first_position));
        (first_position, first_revision)
    }
}

fn options(storage: &SimStorage) -> Options {
    Options { event_bytes_max: EVENT_BYTES_MAX, ..sim_options(storage, SEGMENT_SIZE_BYTES) }
}

fn check_append(
    store: &Store,
    model: &mut Model,
    stream: &'static str,
    expected: ExpectedRevision,
    events: Vec<(EventId, String)>,
    invalid: bool,
) {
    let new_events = events.iter().map(|(id, data)| event(data).with_id(*id)).collect();
    let result = store.append_blocking(common::stream(stream), expected, new_events);
    if invalid {
        assert!(matches!(result, Err(AppendError::Invalid(_))), "{result:?}");
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

fn check_reads(store: &Store, model: &Model) {
    assert_eq!(store.head_position(), model.log.len().checked_sub(1).map(|p| Position::new(p as u64)));
    for stream in STREAMS {
        assert_eq!(store.stream_revision(stream), model.head(stream).map(StreamRevision::new), "{stream}");
    }
}

fn run(ops: Vec<Op>) {
    let mut storage = SimStorage::new();
    let mut store = Store::open_with(DIR, options(&storage)).unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append { stream, expect, sizes, oversized } => {
                let stream = STREAMS[stream];
                let expected = model.expected(stream, &expect);
                let mut events: Vec<(EventId, String)> = sizes
                    .iter()
                    .map(|&size| {
                        model.next_id += 1;
                        (id(model.next_id), format!("{}{}", model.next_id, "x".repeat(size)))
                    })
                    .collect();
                if oversized && !events.is_empty() {
                    events[0].1 = "y".repeat(EVENT_BYTES_MAX + 1);
                }
                let invalid = events.is_empty() || oversized;
                check_append(&store, &mut model, stream, expected, events, invalid);
            }
            Op::Retry { append, expect } => {
                if model.appends.is_empty() {
                    continue;
                }
                let (stream, events, first_position) = model.appends[append % model.appends.len()].clone();
                let expected = model.expected(stream, &expect);
                let new_events = events.iter().map(|(id, data)| event(data).with_id(*id)).collect();
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
                let Some(positions) = model.streams.get(name) else {
                    assert!(result.is_err(), "{name} has no events");
                    continue;
                };
                let len = positions.len() as u64;
                let expected: Vec<u64> = if backward {
                    let last = from.unwrap_or(len - 1).min(len - 1);
                    (0..=last).rev().take(limit).collect()
                } else {
                    (from.unwrap_or(0)..len).take(limit).collect()
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
                let got: Vec<(u64, EventId, &str, String)> = events
                    .iter()
                    .map(|e| (e.position.value(), e.id, e.stream.as_str(), String::from_utf8(e.data.to_vec()).unwrap()))
                    .collect();
                let want: Vec<(u64, EventId, &str, String)> = expected
                    .iter()
                    .map(|&p| {
                        let m = &model.log[p as usize];
                        (p, m.id, m.stream, m.data.clone())
                    })
                    .collect();
                assert_eq!(got, want);
            }
            Op::Reopen => {
                drop(store);
                store = Store::open_with(DIR, options(&storage)).unwrap();
            }
            Op::Crash { seed } => {
                // Everything acknowledged was synced, so a power loss now loses nothing of the model.
                let image = storage.crash_image(seed);
                drop(store);
                storage = image;
                store = Store::open_with(DIR, options(&storage)).unwrap();
            }
        }
        check_reads(&store, &model);
    }
    assert_eq!(read_everything(&store).len(), model.log.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in prop::collection::vec(op_strategy(), 1..80)) {
        run(ops);
    }
}
