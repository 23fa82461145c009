//! A stream's lifecycle: metadata applied on read, soft delete, tombstone — durable like appends.

mod common;

use common::*;
use std::sync::Arc;
use strata_core::{ExpectedRevision, Position, StreamMetadata, StreamRevision, Timestamp, ValidationError};
use strata_storage::{
    AppendError, Direction, ManualClock, MultiAppend, MultiAppendOutcome, Options, ReadError, ReadFrom, SimStorage,
    Store,
};

const SEGMENT: u64 = 1 << 20;

fn revisions(
    store: &Store,
    name: &str,
    from: ReadFrom<StreamRevision>,
    direction: Direction,
) -> Result<Vec<u64>, ReadError> {
    Ok(store.read_stream(&stream(name), from, direction, 100)?.iter().map(|e| e.revision.value()).collect())
}

fn with_events(storage: &SimStorage, clock: &Arc<ManualClock>, name: &str, count: usize) -> Store {
    let options = Options { clock: clock.clone(), ..sim_options(storage, SEGMENT) };
    let store = Store::open_with(DIR, options).unwrap();
    for _ in 0..count {
        commit(&store, name, ExpectedRevision::Any, vec![event("{}")]);
        clock.advance_micros(1_000_000);
    }
    store
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000)))
}

#[test]
fn metadata_hides_old_revisions_on_read_and_survives_a_reopen() {
    let storage = SimStorage::new();
    let clock = clock();
    let store = with_events(&storage, &clock, "s", 10);
    let metadata = StreamMetadata {
        truncate_before: Some(StreamRevision::new(3)),
        custom: bytes::Bytes::from_static(br#"{"owner":"ann"}"#),
        ..StreamMetadata::default()
    };
    assert!(matches!(
        store.set_stream_metadata_blocking(stream("s"), &metadata).unwrap(),
        MultiAppendOutcome::Committed(_)
    ));
    assert_eq!(revisions(&store, "s", ReadFrom::Start, Direction::Forward).unwrap(), (3..10).collect::<Vec<_>>());
    assert_eq!(revisions(&store, "s", ReadFrom::At(StreamRevision::new(0)), Direction::Forward).unwrap()[0], 3);
    assert_eq!(revisions(&store, "s", ReadFrom::End, Direction::Backward).unwrap(), (3..10).rev().collect::<Vec<_>>());
    assert_eq!(
        revisions(&store, "s", ReadFrom::At(StreamRevision::new(1)), Direction::Backward).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(store.stream_info("s").unwrap().unwrap().first_revision, StreamRevision::new(3));
    assert_eq!(store.stream_metadata("s"), Some(metadata.clone()));

    // max_count keeps the last N; max_age hides what is older than the store's clock allows.
    let counted = StreamMetadata { max_count: Some(2), ..StreamMetadata::default() };
    let _ = store.set_stream_metadata_blocking(stream("s"), &counted).unwrap();
    assert_eq!(revisions(&store, "s", ReadFrom::Start, Direction::Forward).unwrap(), [8, 9]);
    let aged = StreamMetadata { max_age_seconds: Some(4), ..StreamMetadata::default() };
    let _ = store.set_stream_metadata_blocking(stream("s"), &aged).unwrap();
    // The clock is 10 s after the first event; events recorded in the last 4 s stay visible.
    assert_eq!(revisions(&store, "s", ReadFrom::Start, Direction::Forward).unwrap(), [6, 7, 8, 9]);
    clock.advance_micros(3_000_000);
    assert_eq!(revisions(&store, "s", ReadFrom::Start, Direction::Forward).unwrap(), [9]);
    clock.advance_micros(10_000_000);
    assert!(matches!(
        revisions(&store, "s", ReadFrom::Start, Direction::Forward),
        Err(ReadError::StreamNotFound { .. })
    ));

    drop(store);
    let store = Store::open_with(DIR, Options { clock: clock.clone(), ..sim_options(&storage, SEGMENT) }).unwrap();
    assert_eq!(store.stream_metadata("s"), Some(aged));
    // The global log still holds every event (until scavenging).
    assert_eq!(read_everything(&store).iter().filter(|e| e.stream.as_str() == "s").count(), 10);
    // The system stream holds the three metadata events.
    assert_eq!(revisions(&store, "$streams", ReadFrom::Start, Direction::Forward).unwrap(), [0, 1, 2]);
}

#[test]
fn a_soft_deleted_stream_reads_as_not_found_and_continues_after_its_last_revision() {
    let storage = SimStorage::new();
    let clock = clock();
    let store = with_events(&storage, &clock, "s", 3);
    commit(&store, "other", ExpectedRevision::Any, vec![event("{}")]);
    let wrong = store.delete_stream_blocking(stream("s"), ExpectedRevision::Exact(StreamRevision::new(0))).unwrap();
    assert!(matches!(wrong, MultiAppendOutcome::WrongExpectedRevision { .. }), "{wrong:?}");
    let deleted = store.delete_stream_blocking(stream("s"), ExpectedRevision::Exact(StreamRevision::new(2))).unwrap();
    assert!(matches!(deleted, MultiAppendOutcome::Committed(_)), "{deleted:?}");
    assert!(matches!(
        revisions(&store, "s", ReadFrom::Start, Direction::Forward),
        Err(ReadError::StreamNotFound { .. })
    ));
    assert!(store.stream_info("s").unwrap().is_none());
    assert_eq!(
        store.list_streams("", None, 10).unwrap().iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ["$store", "$streams", "other"]
    );
    // A later append continues after the last revision, and only it is visible.
    let result = commit(&store, "s", ExpectedRevision::Exact(StreamRevision::new(2)), vec![event("{}")]);
    assert_eq!(result.first_revision, StreamRevision::new(3));
    assert_eq!(revisions(&store, "s", ReadFrom::Start, Direction::Forward).unwrap(), [3]);
    // Deleting a stream that never had events is refused.
    let error = store.delete_stream_blocking(stream("never"), ExpectedRevision::Any).unwrap_err();
    assert!(matches!(error, AppendError::StreamNotFound { .. }), "{error}");
    drop(store);
    let store = Store::open_with(DIR, Options { clock, ..sim_options(&storage, SEGMENT) }).unwrap();
    assert_eq!(revisions(&store, "s", ReadFrom::Start, Direction::Forward).unwrap(), [3]);
}

#[test]
fn a_tombstoned_stream_refuses_reads_and_writes_for_good() {
    let storage = SimStorage::new();
    let clock = clock();
    let store = with_events(&storage, &clock, "s", 2);
    let done = store.tombstone_stream_blocking(stream("s"), ExpectedRevision::StreamExists).unwrap();
    assert!(matches!(done, MultiAppendOutcome::Committed(_)), "{done:?}");
    let check = |store: &Store| {
        assert!(matches!(
            revisions(store, "s", ReadFrom::Start, Direction::Forward),
            Err(ReadError::StreamDeleted { .. })
        ));
        let error = store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event("{}")]).unwrap_err();
        assert!(matches!(error, AppendError::StreamDeleted { .. }), "{error}");
        assert!(error.to_string().contains("can never be written again"), "{error}");
        // Also as a check of a multi-stream append, and for metadata and deletes.
        let multi = MultiAppend {
            events: vec![(stream("t"), event("{}"))],
            checks: vec![(stream("s"), ExpectedRevision::Any)],
            condition: None,
        };
        assert!(matches!(store.append_multi_blocking(multi), Err(AppendError::StreamDeleted { .. })));
        let metadata = StreamMetadata::default();
        assert!(matches!(
            store.set_stream_metadata_blocking(stream("s"), &metadata),
            Err(AppendError::StreamDeleted { .. })
        ));
        assert!(matches!(
            store.delete_stream_blocking(stream("s"), ExpectedRevision::Any),
            Err(AppendError::StreamDeleted { .. })
        ));
        assert!(store.stream_info("s").unwrap().is_none());
        assert!(store.list_streams("s", None, 10).unwrap().is_empty());
    };
    check(&store);
    // After a power loss and a reopen too.
    let image = storage.crash_image(3);
    drop(store);
    let store = Store::open_with(DIR, Options { clock, ..sim_options(&image, SEGMENT) }).unwrap();
    check(&store);
    // `$store-created`, the two events, the tombstone.
    assert_eq!(store.head_position(), Some(Position::new(3)), "nothing was written after the tombstone");
}

/// A tombstone and an append to the same stream in one commit group: the append, admitted after it,
/// is refused.
#[test]
fn an_append_after_a_tombstone_in_the_same_group_is_refused() {
    let storage = SimStorage::new();
    let clock = clock();
    let store = with_events(&storage, &clock, "s", 1);
    let blocker = hold_committer(&storage, &store);
    let tombstone = {
        let store = store.clone();
        std::thread::spawn(move || store.tombstone_stream_blocking(stream("s"), ExpectedRevision::Any))
    };
    wait_until_queued(&store, 1);
    let append = {
        let store = store.clone();
        std::thread::spawn(move || store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event("{}")]))
    };
    wait_until_queued(&store, 2);
    storage.hold_syncs(false);
    blocker.join().unwrap();
    assert!(matches!(tombstone.join().unwrap(), Ok(MultiAppendOutcome::Committed(_))));
    assert!(matches!(append.join().unwrap(), Err(AppendError::StreamDeleted { .. })));
}

#[test]
fn system_operations_refuse_reserved_streams() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, SEGMENT);
    let error = store.set_stream_metadata_blocking(stream("$streams"), &StreamMetadata::default()).unwrap_err();
    assert!(matches!(error, AppendError::Invalid(ValidationError::Reserved { .. })), "{error}");
    let error = store.tombstone_stream_blocking(stream("$all"), ExpectedRevision::Any).unwrap_err();
    assert!(matches!(error, AppendError::Invalid(ValidationError::Reserved { .. })), "{error}");
}

/// Metadata set after a soft delete (for anything: a max count, custom data) does not bring the
/// deleted events back: the delete keeps its own floor.
#[test]
fn metadata_set_after_a_soft_delete_does_not_undelete() {
    let storage = SimStorage::new();
    let clock = clock();
    let store = with_events(&storage, &clock, "s", 3);
    let _ = store.delete_stream_blocking(stream("s"), ExpectedRevision::Any).unwrap();
    let metadata = StreamMetadata { custom: bytes::Bytes::from_static(b"{}"), ..StreamMetadata::default() };
    let _ = store.set_stream_metadata_blocking(stream("s"), &metadata).unwrap();
    assert!(matches!(
        revisions(&store, "s", ReadFrom::Start, Direction::Forward),
        Err(ReadError::StreamNotFound { .. })
    ));
    assert_eq!(store.stream_metadata("s"), Some(metadata));
    drop(store);
    let store = Store::open_with(DIR, Options { clock, ..sim_options(&storage, SEGMENT) }).unwrap();
    assert!(matches!(
        revisions(&store, "s", ReadFrom::Start, Direction::Forward),
        Err(ReadError::StreamNotFound { .. })
    ));
}

/// A soft delete queued right behind an append to the same stream, in one commit group, deletes that
/// append's event too: the committer computes the delete's revision from the group's view.
#[test]
fn a_soft_delete_in_the_same_group_covers_the_append_before_it() {
    let storage = SimStorage::new();
    let clock = clock();
    let store = with_events(&storage, &clock, "s", 1);
    let blocker = hold_committer(&storage, &store);
    let append = {
        let store = store.clone();
        std::thread::spawn(move || commit(&store, "s", ExpectedRevision::Any, vec![event("{}")]))
    };
    wait_until_queued(&store, 1);
    let delete = {
        let store = store.clone();
        std::thread::spawn(move || store.delete_stream_blocking(stream("s"), ExpectedRevision::Any).unwrap())
    };
    wait_until_queued(&store, 2);
    storage.hold_syncs(false);
    blocker.join().unwrap();
    assert_eq!(append.join().unwrap().first_revision, StreamRevision::new(1));
    assert!(matches!(delete.join().unwrap(), MultiAppendOutcome::Committed(_)));
    assert!(matches!(
        revisions(&store, "s", ReadFrom::Start, Direction::Forward),
        Err(ReadError::StreamNotFound { .. })
    ));
}
