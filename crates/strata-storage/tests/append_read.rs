//! The engine's append and read contract, through its public API.

mod common;

use common::*;
use strata_core::{ExpectedRevision, Position, StreamRevision, Tag, ValidationError, limits};
use strata_storage::{AppendError, AppendOutcome, Direction, OpenError, ReadError, ReadFrom, SimStorage, Store};

const SEGMENT: u64 = 64 << 10;

fn revision(r: u64) -> StreamRevision {
    StreamRevision::new(r)
}

#[test]
fn appends_get_gapless_positions_and_revisions() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let a = commit(&store, "account-1", ExpectedRevision::NoStream, vec![event("{}"), event("{}")]);
    let b = commit(&store, "account-2", ExpectedRevision::Any, vec![event("{}")]);
    let c = commit(&store, "account-1", ExpectedRevision::Exact(revision(1)), vec![event("{}")]);
    // Position 0 is the store's `$store-created`: user events start at 1.
    assert_eq!((a.first_position.value(), a.last_position.value()), (1, 2));
    assert_eq!((a.first_revision, a.last_revision), (revision(0), revision(1)));
    assert_eq!((b.first_position.value(), b.first_revision), (3, revision(0)));
    assert_eq!((c.first_position.value(), c.first_revision), (4, revision(2)));
    assert_eq!(store.head_position(), Some(Position::new(4)));
    assert_eq!(store.stream_revision("account-1").unwrap(), Some(revision(2)));
    assert_eq!(store.stream_revision("account-3").unwrap(), None);

    let all = read_everything(&store);
    let positions: Vec<u64> = all.iter().map(|e| e.position.value()).collect();
    assert_eq!(positions, [0, 1, 2, 3, 4]);
    let streams: Vec<&str> = all.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, ["$store", "account-1", "account-1", "account-2", "account-1"]);
}

#[test]
fn expected_revision_conflicts_report_the_actual_revision_and_write_nothing() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}")]);
    let cases =
        [(ExpectedRevision::NoStream, Some(revision(0))), (ExpectedRevision::Exact(revision(5)), Some(revision(0)))];
    for (expected, actual) in cases {
        let outcome = store.append_blocking(stream("s"), expected, vec![event("{}")]).unwrap();
        assert_eq!(outcome, AppendOutcome::WrongExpectedRevision { stream: stream("s"), expected, actual });
    }
    for expected in [ExpectedRevision::StreamExists, ExpectedRevision::Exact(revision(0))] {
        let outcome = store.append_blocking(stream("new"), expected, vec![event("{}")]).unwrap();
        assert_eq!(outcome, AppendOutcome::WrongExpectedRevision { stream: stream("new"), expected, actual: None });
    }
    assert_eq!(store.head_position(), Some(Position::new(1)));
    assert!(store.read_stream(&stream("new"), ReadFrom::Start, Direction::Forward, 10).is_err());
}

#[test]
fn a_retried_append_returns_the_original_result_and_writes_nothing() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "other", ExpectedRevision::Any, vec![event("{}")]);
    let batch = vec![event_with_id(1), event_with_id(2), event_with_id(3)];
    let original = commit(&store, "s", ExpectedRevision::NoStream, batch.clone());
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}")]);
    // The retry's expectation no longer holds, but it is recognised by its ids first.
    let retry = commit(&store, "s", ExpectedRevision::NoStream, batch.clone());
    assert!(retry.replayed);
    assert_eq!(
        (retry.first_position, retry.last_position, retry.first_revision, retry.last_revision),
        (original.first_position, original.last_position, original.first_revision, original.last_revision)
    );
    // A contiguous part of the original batch, in order, is a replay too.
    let tail = commit(&store, "s", ExpectedRevision::Any, batch[1..].to_vec());
    assert_eq!((tail.first_revision, tail.replayed), (revision(1), true));
    assert_eq!(store.head_position(), Some(Position::new(5)));
    // And it survives a reopen (the id index is rebuilt from the log).
    drop(store);
    let store = open_sim(&storage, SEGMENT);
    assert!(commit(&store, "s", ExpectedRevision::Any, batch).replayed);
    assert_eq!(store.head_position(), Some(Position::new(5)));
}

#[test]
fn a_partly_committed_batch_is_an_error_that_names_the_event() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "s", ExpectedRevision::Any, vec![event_with_id(1), event_with_id(2)]);
    let cases = [
        vec![event_with_id(1), event_with_id(9)], // starts like the original, then differs
        vec![event_with_id(9), event_with_id(2)], // a new id, then an old one
        vec![event_with_id(2), event_with_id(1)], // old ids, wrong order
    ];
    for batch in cases {
        let error = store.append_blocking(stream("s"), ExpectedRevision::Any, batch).unwrap_err();
        assert!(matches!(error, AppendError::PartialDuplicate { .. }), "{error}");
        assert!(error.to_string().contains("already committed in stream s"), "{error}");
    }
    // An id committed in another stream is refused too: ids are unique across the store.
    let error = store.append_blocking(stream("t"), ExpectedRevision::Any, vec![event_with_id(1)]).unwrap_err();
    assert!(matches!(error, AppendError::PartialDuplicate { .. }), "{error}");
    assert_eq!(store.head_position(), Some(Position::new(2)));
}

#[test]
fn duplicates_racing_in_one_commit_group_are_caught() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                commit(&store, "s", ExpectedRevision::Any, vec![event_with_id(7), event_with_id(8)])
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1);
    assert!(results.iter().all(|r| r.first_position == Position::new(1)));
    assert_eq!(store.head_position(), Some(Position::new(2)));
}

#[test]
fn bad_appends_are_refused_with_a_clear_error_and_write_nothing() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 4 << 20);
    let huge = "x".repeat(limits::EVENT_BYTES_MAX_DEFAULT + 1);
    let too_many: Vec<_> = (0..=limits::APPEND_EVENTS_MAX).map(|_| event("{}")).collect();
    let cases: Vec<(&str, Vec<_>, &str)> = vec![
        ("s", vec![], "at least one event"),
        ("s", too_many, "10001 events; the limit is 10000"),
        ("$system", vec![event("{}")], "reserved for the system"),
        ("s", vec![event(&huge)], "the limit is 1048576 bytes"),
        ("s", vec![event_with_id(1), event_with_id(1)], "appears twice in one append"),
        ("s", vec![common::event("{}").with_id(id(3)), NewEvent_dollar()], "reserved for the system"),
    ];
    for (name, events, message) in cases {
        let error = store.append_blocking(stream(name), ExpectedRevision::Any, events).unwrap_err();
        assert!(matches!(error, AppendError::Invalid(_)), "{error}");
        assert!(error.to_string().contains(message), "{error:?} should say {message:?}");
    }
    assert_eq!(store.head_position(), None);
}

#[allow(non_snake_case)]
fn NewEvent_dollar() -> strata_core::NewEvent {
    strata_core::NewEvent::new(strata_core::EventType::new("$Internal").unwrap(), "{}")
}

#[test]
fn an_append_larger_than_a_segment_is_refused() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 8 << 10);
    let error = store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event(&"x".repeat(9000))]).unwrap_err();
    assert!(matches!(error, AppendError::Invalid(ValidationError::AppendTooLarge { .. })), "{error}");
    // Just under the room a segment has is fine, and crosses into a new segment.
    commit(&store, "s", ExpectedRevision::Any, vec![event(&"x".repeat(7000))]);
    commit(&store, "s", ExpectedRevision::Any, vec![event(&"x".repeat(7000))]);
    assert_eq!(read_everything(&store).len(), 3, "$store-created and the two events");
}

#[test]
fn reads_go_both_ways_from_any_place_with_limits() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 4 << 10); // small segments: reads cross segment boundaries
    for n in 0..30u128 {
        let name = if n % 3 == 0 { "a" } else { "b" };
        commit(&store, name, ExpectedRevision::Any, vec![event_with_id(n)]);
    }
    let revisions =
        |events: Vec<strata_core::RecordedEvent>| events.iter().map(|e| e.revision.value()).collect::<Vec<_>>();
    let a = stream("a");
    let read = |from, direction, limit| revisions(store.read_stream(&a, from, direction, limit).unwrap());
    assert_eq!(read(ReadFrom::Start, Direction::Forward, 3), [0, 1, 2]);
    assert_eq!(read(ReadFrom::At(revision(8)), Direction::Forward, 5), [8, 9]);
    assert_eq!(read(ReadFrom::At(revision(10)), Direction::Forward, 5), Vec::<u64>::new());
    assert_eq!(read(ReadFrom::End, Direction::Backward, 3), [9, 8, 7]);
    assert_eq!(read(ReadFrom::At(revision(1)), Direction::Backward, 5), [1, 0]);
    assert_eq!(read(ReadFrom::At(revision(99)), Direction::Backward, 2), [9, 8]);
    assert_eq!(read(ReadFrom::Start, Direction::Backward, 2), [0]);
    assert_eq!(read(ReadFrom::End, Direction::Forward, 2), Vec::<u64>::new());

    let positions = |from, direction, limit| {
        store.read_all(from, direction, limit).unwrap().iter().map(|e| e.position.value()).collect::<Vec<_>>()
    };
    assert_eq!(positions(ReadFrom::At(Position::new(28)), Direction::Forward, 10), [28, 29, 30]);
    assert_eq!(positions(ReadFrom::End, Direction::Backward, 2), [30, 29]);
    assert_eq!(positions(ReadFrom::Start, Direction::Forward, 0), Vec::<u64>::new());
    let a_events = store.read_stream(&a, ReadFrom::Start, Direction::Forward, 100).unwrap();
    assert!(
        a_events.iter().enumerate().all(|(i, e)| e.position.value() == 3 * i as u64 + 1 && e.id == id(3 * i as u128))
    );
    assert!(matches!(
        store.read_stream(&stream("nope"), ReadFrom::Start, Direction::Forward, 1),
        Err(ReadError::StreamNotFound { .. })
    ));
}

#[test]
fn events_come_back_exactly_as_written() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let written = event("{\"amount\":42}")
        .with_id(id(77))
        .with_metadata("{\"user\":\"ann\"}")
        .with_tags(vec![Tag::new("account:42").unwrap(), Tag::new("region:eu").unwrap()])
        .unwrap()
        .with_content_type(strata_core::ContentType::new("application/vnd.test+json").unwrap());
    commit(&store, "account-42", ExpectedRevision::Any, vec![written.clone()]);
    drop(store);
    let store = open_sim(&storage, SEGMENT);
    let read = &read_everything(&store)[1];
    assert_eq!(read.id, id(77));
    assert_eq!(read.stream.as_str(), "account-42");
    assert_eq!(read.event_type, *written.event_type());
    assert_eq!(read.data, written.data());
    assert_eq!(read.metadata, written.metadata());
    assert_eq!(read.tags.to_vec(), written.tags());
    assert!(read.tags.contains("region:eu") && read.tags.len() == 2);
    assert_eq!(read.content_type.as_ref(), written.content_type());
    assert_eq!(read.recorded_at.to_string(), "2023-11-14T22:13:20.000000Z");
}

#[test]
fn events_without_ids_get_uuid_v7_ids() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}"), event("{}")]);
    let all = read_everything(&store);
    assert_eq!(all[0].event_type.as_str(), "$store-created");
    let events = &all[1..];
    assert_eq!(events.len(), 2);
    assert_ne!(events[0].id, events[1].id);
    assert!(events.iter().all(|e| e.id.as_uuid().get_version_num() == 7));
    // Their time part comes from the store's clock, not the wall clock.
    let (seconds, _) = events[0].id.as_uuid().get_timestamp().unwrap().to_unix();
    assert_eq!(seconds, 1_700_000_000);
}

#[test]
fn one_read_returns_at_most_read_events_max() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 16 << 20);
    let total = limits::READ_EVENTS_MAX + 5;
    for chunk in (0..total).collect::<Vec<_>>().chunks(limits::APPEND_EVENTS_MAX) {
        commit(&store, "s", ExpectedRevision::Any, chunk.iter().map(|_| event("{}")).collect());
    }
    let page = store.read_all(ReadFrom::Start, Direction::Forward, usize::MAX).unwrap();
    assert_eq!(page.len(), limits::READ_EVENTS_MAX);
    let rest = store.read_all(ReadFrom::At(Position::new(page.len() as u64)), Direction::Forward, usize::MAX).unwrap();
    assert_eq!(rest.len(), 6, "the 5 events left and $store-created before them all");
    let backward = store.read_stream(&stream("s"), ReadFrom::End, Direction::Backward, usize::MAX).unwrap();
    assert_eq!(backward.len(), limits::READ_EVENTS_MAX);
    assert_eq!(backward[0].revision.value(), total as u64 - 1);
}

#[test]
fn recorded_time_never_goes_backwards_even_when_the_clock_does() {
    let storage = SimStorage::new();
    let clock = std::sync::Arc::new(strata_storage::ManualClock::new(strata_core::Timestamp::from_micros(5_000)));
    let options = strata_storage::Options { clock: clock.clone(), ..sim_options(&storage, SEGMENT) };
    let store = Store::open_with(DIR, options.clone()).unwrap();
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}")]);
    clock.set(strata_core::Timestamp::from_micros(1_000));
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}")]);
    clock.advance_micros(10_000);
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}")]);
    drop(store);
    // After a reopen too: the last recorded time comes back from the log.
    clock.set(strata_core::Timestamp::from_micros(0));
    let store = Store::open_with(DIR, options).unwrap();
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}")]);
    let times: Vec<i64> = read_everything(&store).iter().map(|e| e.recorded_at.as_micros()).collect();
    assert_eq!(times, [5_000, 5_000, 5_000, 11_000, 11_000], "$store-created first, with the first append");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let error = Store::open(dir.path()).unwrap_err();
    assert!(matches!(error, OpenError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("in use by another process"));
    drop(store);
    Store::open(dir.path()).expect("the lock is released on close");
}

#[test]
fn invalid_options_are_refused() {
    let storage = SimStorage::new();
    for options in [
        strata_storage::Options { segment_size_bytes: 100, ..sim_options(&storage, SEGMENT) },
        strata_storage::Options {
            event_bytes_max: limits::EVENT_BYTES_MAX_CEILING + 1,
            ..sim_options(&storage, SEGMENT)
        },
    ] {
        assert!(matches!(Store::open_with(DIR, options), Err(OpenError::InvalidOptions(_))));
    }
}

#[test]
fn a_failed_fsync_poisons_writes_but_reads_go_on() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    commit(&store, "s", ExpectedRevision::Any, vec![event_with_id(1)]);
    storage.fail_syncs(true);
    let error = store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event_with_id(2)]).unwrap_err();
    assert!(matches!(error, AppendError::OutcomeUnknown { .. }), "{error}");
    storage.fail_syncs(false);
    // The disk works again, but the store does not trust it until reopened.
    let error = store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event_with_id(3)]).unwrap_err();
    assert!(matches!(error, AppendError::Poisoned { .. }), "{error}");
    assert!(error.to_string().contains("simulated fsync failure"), "{error}");
    assert!(store.poison_reason().is_some());
    assert_eq!(read_everything(&store).len(), 2, "$store-created and the first event");
    assert_eq!(store.stream_revision("s").unwrap(), Some(revision(0)));
    drop(store);
    // A restart without a reboot: the failed frame is still in the page cache, so recovery sees it
    // and serves it — and must therefore make it durable before serving it.
    let store = open_sim(&storage, SEGMENT);
    assert!(store.poison_reason().is_none());
    assert_eq!(read_everything(&store).len(), 3);
    drop(store);
    let after_power_loss = storage.crash_image(7);
    let store = open_sim(&after_power_loss, SEGMENT);
    let after = read_everything(&store);
    assert_eq!(after[0].event_type.as_str(), "$store-created");
    assert_eq!(after[1..].iter().map(|e| e.id).collect::<Vec<_>>(), [id(1), id(2)]);
    commit(&store, "s", ExpectedRevision::Any, vec![event_with_id(4)]);
    assert_eq!(read_everything(&store).len(), 4);
}

#[test]
fn a_failed_write_poisons_too() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    storage.fail_writes(true);
    let error = store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event("{}")]).unwrap_err();
    assert!(matches!(error, AppendError::OutcomeUnknown { .. }), "{error}");
    storage.fail_writes(false);
    assert!(matches!(
        store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event("{}")]),
        Err(AppendError::Poisoned { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_on_one_stream_with_exact_and_retries_lose_nothing() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 1 << 20);
    const TASKS: u128 = 64;
    const EVENTS_PER_TASK: u128 = 20;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for n in 0..EVENTS_PER_TASK {
                let event_id = task * 1000 + n;
                loop {
                    let expected = match store.stream_revision("counter").unwrap() {
                        Some(r) => ExpectedRevision::Exact(r),
                        None => ExpectedRevision::NoStream,
                    };
                    let outcome =
                        store.append(stream("counter"), expected, vec![event_with_id(event_id)]).await.unwrap();
                    match outcome {
                        AppendOutcome::Committed(_) => break,
                        AppendOutcome::WrongExpectedRevision { .. } => conflicts += 1,
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let events = store.read_stream_async(stream("counter"), ReadFrom::Start, Direction::Forward, 10_000).await.unwrap();
    assert_eq!(events.len() as u128, TASKS * EVENTS_PER_TASK);
    assert!(
        events.iter().enumerate().all(|(i, e)| e.revision.value() == i as u64 && e.position.value() == i as u64 + 1)
    );
    let mut ids: Vec<_> = events.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u128, TASKS * EVENTS_PER_TASK, "every event exactly once");
    // 64 writers on one stream must have collided; if not, the test did not test the race.
    assert!(conflicts > 0);
}

#[test]
fn streams_are_listed_by_prefix_in_pages_and_described() {
    let storage = SimStorage::new();
    let clock = std::sync::Arc::new(strata_storage::ManualClock::new(strata_core::Timestamp::from_micros(1_000)));
    let options = strata_storage::Options { clock: clock.clone(), ..sim_options(&storage, SEGMENT) };
    let store = Store::open_with(DIR, options.clone()).unwrap();
    for name in ["account-2", "account-10", "order-1", "account-1", "accountant"] {
        commit(&store, name, ExpectedRevision::Any, vec![event("{}")]);
        clock.advance_micros(10);
    }
    commit(&store, "account-1", ExpectedRevision::Any, vec![event("{}"), event("{}")]);
    let names = |prefix, after, limit| {
        store.list_streams(prefix, after, limit).unwrap().iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names("account-", None, 10), ["account-1", "account-10", "account-2"]);
    assert_eq!(names("account-", None, 2), ["account-1", "account-10"]);
    assert_eq!(names("account-", Some("account-10"), 2), ["account-2"]);
    assert_eq!(names("", Some("accountant"), 10), ["order-1"]);
    assert_eq!(names("zzz", None, 10), Vec::<String>::new());

    let info = store.stream_info("account-1").unwrap().unwrap();
    assert_eq!((info.last_revision.value(), info.event_count), (2, 3));
    assert_eq!((info.first_position.value(), info.last_position.value()), (4, 7));
    assert_eq!((info.first_recorded_at.as_micros(), info.last_recorded_at.as_micros()), (1_030, 1_050));
    assert!(store.stream_info("nope").unwrap().is_none());
    // The same after a reopen: rebuilt from the log.
    drop(store);
    let store = Store::open_with(DIR, options).unwrap();
    assert_eq!(store.stream_info("account-1").unwrap().unwrap(), info);
    assert_eq!(store.list_streams("", None, 100).unwrap().len(), 6, "the five and $store");
}

/// A stream prefix is matched through the streams' position lists when few streams have it, and per
/// event when many do; both ways give the same events.
#[test]
fn prefix_filters_agree_whether_few_or_many_streams_match() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 1 << 20);
    for n in 0..300u32 {
        // 100 streams under "many-", 3 under "few-", and others.
        let name = match n % 3 {
            0 => format!("many-{}", n % 100),
            1 => format!("few-{}", (n / 3) % 3),
            _ => format!("other-{n}"),
        };
        commit(&store, &name, ExpectedRevision::Any, vec![event("{}")]);
    }
    let all = read_everything(&store);
    for prefix in ["many-", "few-", "few-1", "many-1", "nothing-"] {
        let filter = strata_storage::Filter { stream_prefix: Some(prefix.to_owned()), ..Default::default() };
        let expected: Vec<u64> =
            all.iter().filter(|e| e.stream.as_str().starts_with(prefix)).map(|e| e.position.value()).collect();
        let positions = |from, options| -> Vec<u64> {
            store.read_all_with(from, &options, &filter).unwrap().iter().map(|e| e.position.value()).collect()
        };
        assert_eq!(positions(ReadFrom::Start, strata_storage::ReadOptions::forward(1000)), expected, "{prefix:?}");
        let backward: Vec<u64> = expected.iter().rev().copied().collect();
        assert_eq!(positions(ReadFrom::End, strata_storage::ReadOptions::backward(1000)), backward, "{prefix:?}");
    }
}

/// A full disk when a new segment is needed: the append is refused as not written, the store is not
/// poisoned, and once there is room again the same append succeeds; a store whose last segment is
/// sealed opens on a full disk (for reading) and creates its next segment at the first append.
#[test]
fn a_full_disk_at_roll_over_refuses_the_append_but_harms_nothing() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 4 << 10);
    let mut written = 0;
    // Fill the first segment until the next 1 KiB event needs a new one.
    // (Three events after `$store-created`.)
    while store.read_all(ReadFrom::Start, Direction::Forward, 1000).unwrap().len() < 4 {
        commit(&store, "s", ExpectedRevision::Any, vec![event(&"x".repeat(1000))]);
        written += 1;
    }
    storage.fail_creates(true);
    let mut refused = 0;
    for _ in 0..5 {
        match store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event(&"x".repeat(1000))]) {
            Ok(_) => written += 1,
            Err(AppendError::NotWritten { reason }) => {
                assert!(reason.contains("no space left"), "{reason}");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "the test must reach a roll-over");
    assert!(store.poison_reason().is_none());
    assert_eq!(read_everything(&store).len(), written + 1, "$store-created and what was written");
    // The store closes with its last segment sealed and no next one; it opens on the full disk.
    drop(store);
    let store = open_sim(&storage, 4 << 10);
    assert_eq!(read_everything(&store).len(), written + 1);
    let deferred = store.recovery_report().next_segment_deferred.clone().expect("the open says why");
    assert!(deferred.contains("no space left"), "{deferred}");
    assert!(matches!(
        store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event("{}")]),
        Err(AppendError::NotWritten { .. })
    ));
    storage.fail_creates(false);
    let result =
        commit(&store, "s", ExpectedRevision::Exact(StreamRevision::new(written as u64 - 1)), vec![event("{}")]);
    assert_eq!(result.first_position.value(), written as u64 + 1);
    drop(store);
    let store = open_sim(&storage, 4 << 10);
    assert_eq!(read_everything(&store).len(), written + 2);
}

/// A page stops at about `READ_PAGE_BYTES_MAX` of events, says there is more, and pages together
/// cover the log exactly — forwards and backwards, for the log and for a stream.
#[test]
fn pages_are_bounded_in_bytes_and_cover_everything() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 8 << 20);
    let big = "x".repeat(1_000_000);
    for _ in 0..40 {
        commit(&store, "big", ExpectedRevision::Any, vec![event(&format!("\"{big}\""))]);
    }
    let options = strata_storage::ReadOptions::forward(1_000);
    let mut positions = Vec::new();
    let mut from = strata_storage::ReadFrom::Start;
    loop {
        let page = store.read_all_page(from, &options, &strata_storage::Filter::default()).unwrap();
        let bytes: usize = page.events.iter().map(|e| e.data.len()).sum();
        assert!(bytes <= limits::READ_PAGE_BYTES_MAX + (2 << 20), "a page of {bytes} bytes");
        positions.extend(page.events.iter().map(|e| e.position.value()));
        match (page.more, page.events.last()) {
            (true, Some(last)) => from = strata_storage::ReadFrom::At(last.position.next()),
            _ => break,
        }
    }
    // `$store-created` at 0, then the 40 events.
    assert_eq!(positions, (0..=40).collect::<Vec<_>>());
    let first = store.read_all_page(ReadFrom::Start, &options, &strata_storage::Filter::default()).unwrap();
    assert!(first.more && first.events.len() < 41, "the first page stopped early: {}", first.events.len());

    let backward = strata_storage::ReadOptions::backward(1_000);
    let mut revisions = Vec::new();
    let mut from = ReadFrom::End;
    loop {
        let page = store.read_stream_page(&stream("big"), from, &backward).unwrap();
        revisions.extend(page.events.iter().map(|e| e.revision.value()));
        match (page.more, page.events.last().and_then(|e| e.revision.value().checked_sub(1))) {
            (true, Some(previous)) => from = ReadFrom::At(StreamRevision::new(previous)),
            _ => break,
        }
    }
    assert_eq!(revisions, (0..40).rev().collect::<Vec<_>>());
    // The unbounded forms still return everything asked for.
    assert_eq!(store.read_all(ReadFrom::Start, Direction::Forward, 1_000).unwrap().len(), 41);
}

/// Filtered reads search the log in windows (the index lock is released between them): across
/// window boundaries, forwards and backwards, paged or not, they return exactly what a plain filter
/// over the whole log returns — for a prefix of many streams (checked per event) and a rare type.
#[test]
fn filtered_reads_across_search_windows_equal_a_plain_filter() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 8 << 20);
    // 150,000 events in 300 streams: 100 named p-… (a prefix of more streams than are merged as
    // lists) and 200 named q-…, with a rare type.
    for batch in 0..300u64 {
        let events: Vec<_> = (0..500u64)
            .map(|n| {
                let kind = if (batch * 500 + n) % 7_919 == 0 { "Rare" } else { "Common" };
                strata_core::NewEvent::new(strata_core::EventType::new(kind).unwrap(), "{}")
            })
            .collect();
        let name = format!("{}-{batch}", if batch % 3 == 0 { "p" } else { "q" });
        commit(&store, &name, ExpectedRevision::Any, events);
    }
    let everything = read_everything(&store);
    let filters = [
        strata_storage::Filter { stream_prefix: Some("p-".into()), ..Default::default() },
        strata_storage::Filter {
            event_types: vec![strata_core::EventType::new("Rare").unwrap()],
            ..Default::default()
        },
        strata_storage::Filter {
            stream_prefix: Some("q-".into()),
            event_types: vec![strata_core::EventType::new("Rare").unwrap()],
            ..Default::default()
        },
    ];
    for filter in &filters {
        let expected: Vec<u64> = everything
            .iter()
            .filter(|e| filter.stream_prefix.as_deref().is_none_or(|p| e.stream.as_str().starts_with(p)))
            .filter(|e| filter.event_types.is_empty() || filter.event_types.contains(&e.event_type))
            .map(|e| e.position.value())
            .collect();
        for limit in [7, 100_000] {
            let mut forward = Vec::new();
            let mut from = ReadFrom::Start;
            loop {
                let page = store.read_all_page(from, &strata_storage::ReadOptions::forward(limit), filter).unwrap();
                forward.extend(page.events.iter().map(|e| e.position.value()));
                match (page.more, page.events.last()) {
                    (true, Some(last)) => from = ReadFrom::At(last.position.next()),
                    _ => break,
                }
                if forward.len() > 300 {
                    break; // Enough pages to cross windows; the rest is covered by the large limit.
                }
            }
            same(
                &forward,
                &expected[..forward.len().min(expected.len())],
                &format!("{filter:?} forward, limit {limit}"),
            );
            let mut backward = Vec::new();
            let mut from = ReadFrom::End;
            loop {
                let page = store.read_all_page(from, &strata_storage::ReadOptions::backward(limit), filter).unwrap();
                backward.extend(page.events.iter().map(|e| e.position.value()));
                match (page.more, page.events.last().and_then(|e| e.position.value().checked_sub(1))) {
                    (true, Some(previous)) => from = ReadFrom::At(Position::new(previous)),
                    _ => break,
                }
                if backward.len() > 300 {
                    break;
                }
            }
            let reversed: Vec<u64> = expected.iter().rev().copied().take(backward.len()).collect();
            same(&backward, &reversed, &format!("{filter:?} backward, limit {limit}"));
            if limit == 100_000 {
                same(&forward, &expected, &format!("{filter:?}: one read returns every match"));
            }
        }
    }
}

/// Positions equal, or a short message naming the first difference (not two 50,000-long lists).
fn same(actual: &[u64], expected: &[u64], what: &str) {
    if let Some(at) = (0..actual.len().max(expected.len())).find(|&at| actual.get(at) != expected.get(at)) {
        panic!(
            "{what}: at index {at} got {:?}, expected {:?} ({} vs {} positions)",
            actual.get(at),
            expected.get(at),
            actual.len(),
            expected.len()
        );
    }
}

/// A stream long enough that its positions span several chunks: reads across chunk boundaries in
/// both directions, as-of reads, metadata, stream info and an idempotent retry deep in the stream.
#[test]
fn a_stream_of_many_chunks_reads_like_a_short_one() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 8 << 20);
    // Interleaved with another stream, so positions and revisions differ.
    for _ in 0..10 {
        commit(&store, "long", ExpectedRevision::Any, (0..1_000).map(|_| event("{}")).collect());
        commit(&store, "other", ExpectedRevision::Any, vec![event("{}")]);
    }
    // (After `$store-created` at position 0.)
    let position_of = |revision: u64| 1 + revision + revision / 1_000;
    let read = |from: u64, direction: Direction, limit: usize| -> Vec<(u64, u64)> {
        store
            .read_stream(&stream("long"), ReadFrom::At(StreamRevision::new(from)), direction, limit)
            .unwrap()
            .iter()
            .map(|e| (e.revision.value(), e.position.value()))
            .collect()
    };
    let forward = read(4_090, Direction::Forward, 20);
    assert_eq!(forward, (4_090..4_110).map(|r| (r, position_of(r))).collect::<Vec<_>>());
    let backward = read(8_200, Direction::Backward, 200);
    assert_eq!(backward, (8_001..=8_200).rev().map(|r| (r, position_of(r))).collect::<Vec<_>>());
    assert_eq!(read(0, Direction::Forward, 100_000).len(), 10_000);
    // As of a position in the middle of a chunk.
    let options = strata_storage::ReadOptions::backward(1).until_position(Position::new(position_of(6_000)));
    let as_of = store.read_stream_with(&stream("long"), ReadFrom::End, &options).unwrap();
    assert_eq!(as_of[0].revision.value(), 6_000);
    let info = store.stream_info("long").unwrap().unwrap();
    assert_eq!((info.event_count, info.last_position.value()), (10_000, position_of(9_999)));
    let metadata = strata_core::StreamMetadata { max_count: Some(5_000), ..Default::default() };
    let _ = store.set_stream_metadata_blocking(stream("long"), &metadata).unwrap();
    assert_eq!(store.stream_info("long").unwrap().unwrap().first_revision.value(), 5_000);
    assert_eq!(store.stream_info("long").unwrap().unwrap().first_position.value(), position_of(5_000));
    // A retry of an append that landed deep in the stream answers its original revision.
    let with_id = event_with_id(77);
    let first = commit(&store, "long", ExpectedRevision::Any, vec![with_id.clone()]);
    let retried = commit(&store, "long", ExpectedRevision::Any, vec![with_id]);
    assert!(retried.replayed);
    assert_eq!(retried.first_revision, first.first_revision);
    assert_eq!(first.first_revision.value(), 10_000);
}

/// More streams and more commit times than one chunk of the stream table and the time table holds.
#[test]
fn tables_of_many_chunks_answer_like_small_ones() {
    let storage = SimStorage::new();
    let clock = std::sync::Arc::new(strata_storage::ManualClock::new(strata_core::Timestamp::from_micros(1_000_000)));
    let options = strata_storage::Options { clock: clock.clone(), ..sim_options(&storage, 8 << 20) };
    let store = Store::open_with(DIR, options).unwrap();
    let streams = 20_000u64;
    for n in 0..streams {
        clock.advance_micros(10);
        commit(&store, &format!("s-{n}"), ExpectedRevision::NoStream, vec![event("{}")]);
    }
    for n in [0, 16_383, 16_384, 19_999] {
        let info = store.stream_info(&format!("s-{n}")).unwrap().unwrap();
        assert_eq!(info.first_position.value(), n + 1, "stream s-{n}");
        assert_eq!(info.first_recorded_at.as_micros(), 1_000_000 + 10 * (n as i64 + 1));
        let events = store.read_stream(&stream(&format!("s-{n}")), ReadFrom::Start, Direction::Forward, 10).unwrap();
        assert_eq!(events[0].position.value(), n + 1);
    }
    for n in [0u64, 16_383, 16_384, 16_385, 19_999] {
        let time = strata_core::Timestamp::from_micros(1_000_000 + 10 * (n as i64 + 1));
        // Event n is at position n + 1, after `$store-created` (written with event 0, at its time).
        assert_eq!(store.position_at(time).unwrap(), Some(Position::new(n + 1)), "position at the time of event {n}");
        let before = strata_core::Timestamp::from_micros(time.as_micros() - 1);
        assert_eq!(store.position_at(before).unwrap(), n.checked_sub(1).map(|p| Position::new(p + 1)));
    }
    assert_eq!(
        store.list_streams("s-", None, 100_000).unwrap().len(),
        10_000,
        "a listing is capped at STREAMS_LIST_MAX"
    );
}
