//! Multi-stream appends, expected-revision checks on any stream, and DCB conditions — including
//! races of many conditional writers, where two conflicting appends must never both succeed and
//! unrelated appends must never fail.

mod common;

use common::*;
use std::sync::Arc;
use strata_core::{
    EventType, ExpectedRevision, NewEvent, Position, Query, QueryItem, StreamRevision, Tag, ValidationError,
};
use strata_storage::{
    AppendCondition, AppendError, Filter, MultiAppend, MultiAppendOutcome, ReadFrom, ReadOptions, SimStorage, Store,
};

const SEGMENT: u64 = 1 << 20;

fn typed(event_type: &str, tags: &[String]) -> NewEvent {
    NewEvent::new(EventType::new(event_type).unwrap(), "{}")
        .with_tags(tags.iter().map(|t| Tag::new(t.as_str()).unwrap()).collect())
        .unwrap()
}

fn query(event_type: &str, tag: &str) -> Query {
    Query::new(vec![QueryItem { types: vec![EventType::new(event_type).unwrap()], tags: vec![Tag::new(tag).unwrap()] }])
}

fn committed(outcome: MultiAppendOutcome) -> strata_storage::MultiAppendResult {
    match outcome {
        MultiAppendOutcome::Committed(result) => result,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn events_for_several_streams_commit_atomically_in_order() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "a", ExpectedRevision::Any, vec![event("{}")]);
    let result = committed(
        store
            .append_multi_blocking(MultiAppend {
                events: vec![(stream("a"), event("{}")), (stream("b"), event("{}")), (stream("a"), event("{}"))],
                checks: vec![
                    (stream("a"), ExpectedRevision::Exact(StreamRevision::new(0))),
                    (stream("b"), ExpectedRevision::NoStream),
                ],
                condition: None,
            })
            .unwrap(),
    );
    assert_eq!((result.first_position.value(), result.last_position.value()), (2, 4));
    let revisions: Vec<(&str, u64, u64)> =
        result.streams.iter().map(|s| (s.stream.as_str(), s.first_revision.value(), s.last_revision.value())).collect();
    assert_eq!(revisions, [("a", 1, 2), ("b", 0, 0)]);
    let all: Vec<(String, u64)> =
        read_everything(&store).iter().map(|e| (e.stream.to_string(), e.revision.value())).collect();
    assert_eq!(all, [("$store".into(), 0), ("a".into(), 0), ("a".into(), 1), ("b".into(), 0), ("a".into(), 2)]);
}

#[test]
fn a_failed_check_on_any_stream_writes_nothing_and_names_it() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "limits", ExpectedRevision::Any, vec![event("{}"), event("{}")]);
    let outcome = store
        .append_multi_blocking(MultiAppend {
            events: vec![(stream("orders-1"), event("{}"))],
            // The append does not write "limits", but depends on it being at revision 0.
            checks: vec![
                (stream("orders-1"), ExpectedRevision::NoStream),
                (stream("limits"), ExpectedRevision::Exact(StreamRevision::new(0))),
            ],
            condition: None,
        })
        .unwrap();
    assert_eq!(
        outcome,
        MultiAppendOutcome::WrongExpectedRevision {
            stream: stream("limits"),
            expected: ExpectedRevision::Exact(StreamRevision::new(0)),
            actual: Some(StreamRevision::new(1)),
        }
    );
    assert_eq!(store.head_position(), Some(Position::new(2)));
}

#[test]
fn bad_multi_appends_are_refused() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let twice = MultiAppend {
        events: vec![(stream("a"), event("{}"))],
        checks: vec![(stream("a"), ExpectedRevision::Any), (stream("a"), ExpectedRevision::NoStream)],
        condition: None,
    };
    let error = store.append_multi_blocking(twice).unwrap_err();
    assert!(matches!(error, AppendError::Invalid(ValidationError::DuplicateCheck { .. })), "{error}");
    let empty = MultiAppend { events: vec![], checks: vec![(stream("a"), ExpectedRevision::Any)], condition: None };
    assert!(matches!(store.append_multi_blocking(empty), Err(AppendError::Invalid(ValidationError::EmptyBatch))));
    let reserved =
        MultiAppend { events: vec![(stream("a"), event("{}")), (stream("$x"), event("{}"))], ..Default::default() };
    assert!(matches!(
        store.append_multi_blocking(reserved),
        Err(AppendError::Invalid(ValidationError::Reserved { .. }))
    ));
    assert_eq!(store.head_position(), None);
}

#[test]
fn a_condition_fails_on_a_matching_event_after_its_position_and_says_where() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let claim = |name: &str| typed("UsernameClaimed", &[format!("username:{name}")]);
    commit(&store, "users-1", ExpectedRevision::Any, vec![claim("ann")]);
    commit(&store, "users-2", ExpectedRevision::Any, vec![claim("bob")]);
    let conditional = |name: &str, after: Option<u64>| MultiAppend {
        events: vec![(stream("users-3"), claim(name))],
        checks: vec![],
        condition: Some(AppendCondition {
            query: query("UsernameClaimed", &format!("username:{name}")),
            after: after.map(Position::new),
        }),
    };
    assert_eq!(
        store.append_multi_blocking(conditional("bob", None)).unwrap(),
        MultiAppendOutcome::ConditionFailed { position: Position::new(2) }
    );
    // bob was claimed at position 2 (ann at 1, after `$store-created`): a decision made after
    // reading up to 2 stands.
    committed(store.append_multi_blocking(conditional("bob", Some(2))).unwrap());
    // Nobody claimed carl.
    committed(store.append_multi_blocking(conditional("carl", None)).unwrap());
    assert_eq!(store.head_position(), Some(Position::new(4)));
}

#[test]
fn a_retried_multi_append_is_recognised() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let append = MultiAppend {
        events: vec![(stream("a"), event_with_id(1)), (stream("b"), event_with_id(2))],
        checks: vec![(stream("a"), ExpectedRevision::NoStream)],
        condition: None,
    };
    let original = committed(store.append_multi_blocking(append.clone()).unwrap());
    let retry = committed(store.append_multi_blocking(append).unwrap());
    assert!(retry.replayed && !original.replayed);
    assert_eq!(
        (retry.first_position, retry.last_position, &retry.streams),
        (original.first_position, original.last_position, &original.streams)
    );
    // The same ids assigned to other streams are not a retry.
    let swapped = MultiAppend {
        events: vec![(stream("b"), event_with_id(1)), (stream("a"), event_with_id(2))],
        ..Default::default()
    };
    assert!(matches!(store.append_multi_blocking(swapped), Err(AppendError::PartialDuplicate { .. })));
}

/// Unique usernames: 16 writers race to claim 10 names, each guarded by a condition. Every name is
/// claimed exactly once; every refusal points at the claim that won.
#[test]
fn unique_usernames_hold_under_racing_conditional_appends() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 4 << 20);
    const NAMES: usize = 10;
    let handles: Vec<_> = (0..16)
        .map(|writer| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut won = Vec::new();
                for round in 0..NAMES {
                    let name = format!("username:user{}", (round + writer) % NAMES);
                    let append = MultiAppend {
                        events: vec![(
                            stream(&format!("users-{writer}-{round}")),
                            typed("UsernameClaimed", std::slice::from_ref(&name)),
                        )],
                        checks: vec![],
                        condition: Some(AppendCondition { query: query("UsernameClaimed", &name), after: None }),
                    };
                    match store.append_multi_blocking(append).unwrap() {
                        MultiAppendOutcome::Committed(result) => won.push((name, result.first_position)),
                        MultiAppendOutcome::ConditionFailed { .. } => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut winners: Vec<(String, Position)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    winners.sort();
    let names: Vec<&String> = winners.iter().map(|(name, _)| name).collect();
    let mut distinct = names.clone();
    distinct.dedup();
    assert_eq!(names.len(), NAMES, "every name claimed exactly once: {winners:?}");
    assert_eq!(distinct.len(), NAMES);
    let claims = store
        .read_all_with(
            ReadFrom::Start,
            &ReadOptions::forward(1000),
            &Filter { event_types: vec![EventType::new("UsernameClaimed").unwrap()], ..Filter::default() },
        )
        .unwrap();
    assert_eq!(claims.len(), NAMES, "no second claim was written");
}

/// A course with a capacity of 5 and 24 students subscribing concurrently, each deciding on what it
/// read as of a position and appending on the condition that nothing changed since. Meanwhile other
/// writers append under conditions on unrelated courses: those must never fail.
#[test]
fn a_course_never_exceeds_its_capacity_and_unrelated_appends_never_fail() {
    let storage = SimStorage::new();
    let store = Arc::new(open_sim(&storage, 4 << 20));
    const CAPACITY: usize = 5;
    let subscribed = |store: &Store, as_of: Option<Position>| -> usize {
        let Some(as_of) = as_of else { return 0 };
        let filter = Filter { tags: vec![Tag::new("course:c1").unwrap()], ..Filter::default() };
        store.read_all_with(ReadFrom::Start, &ReadOptions::forward(1000).until_position(as_of), &filter).unwrap().len()
    };
    let students: Vec<_> = (0..24)
        .map(|student| {
            let store = store.clone();
            std::thread::spawn(move || {
                loop {
                    let as_of = store.head_position();
                    if subscribed(&store, as_of) >= CAPACITY {
                        return false;
                    }
                    let append = MultiAppend {
                        events: vec![(
                            stream(&format!("student-{student}")),
                            typed("StudentSubscribed", &["course:c1".into()]),
                        )],
                        checks: vec![],
                        condition: Some(AppendCondition {
                            query: query("StudentSubscribed", "course:c1"),
                            after: as_of,
                        }),
                    };
                    match store.append_multi_blocking(append).unwrap() {
                        MultiAppendOutcome::Committed(_) => return true,
                        MultiAppendOutcome::ConditionFailed { .. } => continue, // re-read and decide again
                        other => panic!("unexpected {other:?}"),
                    }
                }
            })
        })
        .collect();
    let bystanders: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            std::thread::spawn(move || {
                for round in 0..25 {
                    let tag = format!("course:other-{writer}-{round}");
                    let append = MultiAppend {
                        events: vec![(
                            stream(&format!("bystander-{writer}")),
                            typed("StudentSubscribed", std::slice::from_ref(&tag)),
                        )],
                        checks: vec![],
                        condition: Some(AppendCondition { query: query("StudentSubscribed", &tag), after: None }),
                    };
                    let outcome = store.append_multi_blocking(append).unwrap();
                    assert!(
                        matches!(outcome, MultiAppendOutcome::Committed(_)),
                        "an unrelated append failed: {outcome:?}"
                    );
                }
            })
        })
        .collect();
    let admitted = students.into_iter().map(|h| h.join().unwrap()).filter(|&admitted| admitted).count();
    for bystander in bystanders {
        bystander.join().unwrap();
    }
    assert_eq!(admitted, CAPACITY);
    assert_eq!(subscribed(&store, store.head_position()), CAPACITY, "the course holds exactly its capacity");
}

fn claim(stream_name: &str, name: &str, after: Option<u64>) -> MultiAppend {
    let tag = format!("username:{name}");
    MultiAppend {
        events: vec![(stream(stream_name), typed("UsernameClaimed", std::slice::from_ref(&tag)))],
        checks: vec![],
        condition: Some(AppendCondition { query: query("UsernameClaimed", &tag), after: after.map(Position::new) }),
    }
}

/// Conflicting conditional appends forced into one commit group (the disk is held while they queue):
/// the first wins, the others see its event although it is not committed yet.
#[test]
fn conditions_see_events_admitted_earlier_in_the_same_group() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let blocker = hold_committer(&storage, &store);
    // The committer is inside the blocker's commit: these three queue up and form the next group.
    // (The blocker's event is at position 1, after `$store-created`.)
    let contenders: Vec<_> = [("users-1", None), ("users-2", None), ("users-3", Some(1))]
        .into_iter()
        .map(|(stream_name, after)| {
            let store = store.clone();
            std::thread::spawn(move || store.append_multi_blocking(claim(stream_name, "ann", after)).unwrap())
        })
        .collect();
    wait_until_queued(&store, 3);
    storage.hold_syncs(false);
    blocker.join().unwrap();
    let outcomes: Vec<MultiAppendOutcome> = contenders.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = outcomes.iter().filter(|o| matches!(o, MultiAppendOutcome::Committed(_))).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let MultiAppendOutcome::Committed(won) = winners[0] else { unreachable!() };
    for outcome in &outcomes {
        if let MultiAppendOutcome::ConditionFailed { position } = outcome {
            assert_eq!(*position, won.first_position, "a refusal points at the claim that won");
        }
    }
    assert_eq!(store.head_position(), Some(Position::new(2)));
}

#[test]
fn a_condition_position_beyond_the_head_or_an_empty_query_is_refused() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "a", ExpectedRevision::Any, vec![event("{}")]);
    // `$store-created` at 0, "a" at 1: the head.
    for after in [2, 1000, u64::MAX] {
        let error = store.append_multi_blocking(claim("users-1", "ann", Some(after))).unwrap_err();
        assert!(matches!(error, AppendError::Invalid(ValidationError::ConditionAfterHead { .. })), "{error}");
        assert!(error.to_string().contains("beyond the head of the log (1)"), "{error}");
    }
    committed(store.append_multi_blocking(claim("users-1", "ann", Some(1))).unwrap());
    let empty = MultiAppend {
        events: vec![(stream("a"), event("{}"))],
        checks: vec![],
        condition: Some(AppendCondition { query: Query::default(), after: None }),
    };
    assert!(matches!(store.append_multi_blocking(empty), Err(AppendError::Invalid(ValidationError::EmptyQuery))));
    assert_eq!(store.head_position(), Some(Position::new(2)));
}

#[test]
fn checks_and_a_condition_together_and_interleaved_streams_get_gapless_revisions() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "a", ExpectedRevision::Any, vec![event("{}")]);
    let append = |expected_a| MultiAppend {
        events: vec![
            (stream("a"), typed("T", &["k:1".into()])),
            (stream("b"), event("{}")),
            (stream("a"), event("{}")),
            (stream("b"), event("{}")),
            (stream("a"), event("{}")),
        ],
        checks: vec![(stream("a"), expected_a)],
        // After "a"'s first event (position 1, after `$store-created`).
        condition: Some(AppendCondition { query: query("T", "k:1"), after: Some(Position::new(1)) }),
    };
    // A failing check is reported before the condition is looked at.
    let outcome = store.append_multi_blocking(append(ExpectedRevision::NoStream)).unwrap();
    assert!(matches!(outcome, MultiAppendOutcome::WrongExpectedRevision { .. }), "{outcome:?}");
    let result =
        committed(store.append_multi_blocking(append(ExpectedRevision::Exact(StreamRevision::new(0)))).unwrap());
    let revisions: Vec<(&str, u64, u64)> =
        result.streams.iter().map(|s| (s.stream.as_str(), s.first_revision.value(), s.last_revision.value())).collect();
    assert_eq!(revisions, [("a", 1, 3), ("b", 0, 1)]);
    let a = store.read_stream(&stream("a"), ReadFrom::Start, strata_storage::Direction::Forward, 10).unwrap();
    assert_eq!(a.iter().map(|e| e.revision.value()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    // Its own event now matches: the same condition fails, pointing at it.
    let outcome = store.append_multi_blocking(append(ExpectedRevision::Any)).unwrap();
    assert_eq!(outcome, MultiAppendOutcome::ConditionFailed { position: Position::new(2) });
}

/// The same in a large group, where conditions search position lists of the group's events instead
/// of checking each: a 300-event append whose last event claims "ann" shares the group with two
/// conditional claims.
#[test]
fn conditions_see_earlier_events_of_a_large_group() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let blocker = hold_committer(&storage, &store);
    let mut bulk: Vec<NewEvent> = (0..299).map(|_| typed("Noise", &["username:ann".into()])).collect();
    bulk.push(typed("UsernameClaimed", &["username:ann".into()]));
    let bulk_append = {
        let store = store.clone();
        std::thread::spawn(move || commit(&store, "bulk", ExpectedRevision::Any, bulk))
    };
    wait_until_queued(&store, 1);
    let contenders: Vec<_> = ["ann", "bob"]
        .into_iter()
        .map(|name| {
            let store = store.clone();
            std::thread::spawn(move || {
                // After the blocker's event (position 1, after `$store-created`).
                store.append_multi_blocking(claim(&format!("users-{name}"), name, Some(1))).unwrap()
            })
        })
        .collect();
    wait_until_queued(&store, 3);
    storage.hold_syncs(false);
    blocker.join().unwrap();
    let bulk_result = bulk_append.join().unwrap();
    let outcomes: Vec<_> = contenders.into_iter().map(|h| h.join().unwrap()).collect();
    // "ann" was claimed by the bulk append's last event, in the same group; "bob" is free.
    assert_eq!(outcomes[0], MultiAppendOutcome::ConditionFailed { position: bulk_result.last_position });
    assert!(matches!(outcomes[1], MultiAppendOutcome::Committed(_)), "{:?}", outcomes[1]);
    assert_eq!(bulk_result.first_position, Position::new(2), "the bulk append opened the group");
}
