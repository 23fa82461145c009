//! `Store::import_blocking`: an export of one store imported into another is the same log — ids,
//! streams, revisions, positions, recorded times, payloads, tags, metadata and deletions — and
//! importing again is a replay.

mod common;

use common::{commit, event, read_everything, stream};
use std::sync::Arc;
use strata_core::{ContentType, EventType, ExpectedRevision, NewEvent, StreamMetadata, Tag, Timestamp};
use strata_storage::{AppendError, ManualClock, MultiAppendOutcome, Options, Store};

fn open_with_clock(dir: &std::path::Path, clock: Arc<ManualClock>) -> Store {
    Store::open_with(dir, Options { clock, ..Options::default() }).unwrap()
}

#[test]
fn an_imported_export_is_the_same_log_and_a_second_import_is_a_replay() {
    let source_dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000)));
    let source = open_with_clock(source_dir.path(), clock.clone());
    for n in 0..30 {
        clock.advance_micros(1_000_003);
        let tagged = NewEvent::new(EventType::new("Tagged").unwrap(), format!("{{\"n\":{n}}}"))
            .with_metadata("{\"by\":\"test\"}")
            .with_tags(vec![Tag::new(format!("n:{n}")).unwrap()])
            .unwrap();
        let binary = NewEvent::new(EventType::new("Blob").unwrap(), vec![0u8, 1, 2, 255])
            .with_content_type(ContentType::new("image/png").unwrap());
        commit(&source, &format!("s-{}", n % 4), ExpectedRevision::Any, vec![tagged, binary]);
    }
    let metadata = StreamMetadata { max_count: Some(3), ..StreamMetadata::default() };
    let _ = source.set_stream_metadata_blocking(stream("s-0"), &metadata).unwrap();
    let _ = source.delete_stream_blocking(stream("s-1"), ExpectedRevision::Any).unwrap();
    let _ = source.tombstone_stream_blocking(stream("s-2"), ExpectedRevision::Any).unwrap();
    commit(&source, "s-1", ExpectedRevision::Any, vec![event("after the soft delete")]);
    let exported = read_everything(&source);

    let target_dir = tempfile::tempdir().unwrap();
    let target = Store::open(target_dir.path()).unwrap();
    for batch in exported.chunks(7) {
        let outcome = target.import_blocking(batch.to_vec()).unwrap();
        assert!(matches!(outcome, MultiAppendOutcome::Committed(ref result) if !result.replayed), "{outcome:?}");
    }
    assert_eq!(read_everything(&target), exported);
    // Metadata and deletions took effect: the streams read the same.
    for name in ["s-0", "s-1", "s-3"] {
        let read = |store: &Store| {
            store
                .read_stream(&stream(name), strata_storage::ReadFrom::Start, strata_storage::Direction::Forward, 1000)
                .unwrap()
        };
        assert_eq!(read(&target), read(&source), "{name}");
    }
    assert!(target.is_tombstoned("s-2"));
    assert_eq!(target.stream_info("s-0").unwrap().unwrap().event_count, 3);

    // Again, from the start (an interrupted import run twice): every batch is a replay.
    for batch in exported.chunks(7) {
        let outcome = target.import_blocking(batch.to_vec()).unwrap();
        assert!(matches!(outcome, MultiAppendOutcome::Committed(ref result) if result.replayed), "{outcome:?}");
    }
    assert_eq!(read_everything(&target), exported);
    drop(target);
    let reopened = Store::open(target_dir.path()).unwrap();
    assert_eq!(read_everything(&reopened), exported, "the imported times and events are durable");
}

#[test]
fn imports_that_break_the_log_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    commit(&store, "a-1", ExpectedRevision::Any, vec![event("one"), event("two")]);
    // `$store-created`, then the two events.
    let exported = read_everything(&store);

    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::open(other_dir.path()).unwrap();
    // A stream that does not continue where this store's copy of it ends, and a gap within a batch.
    let outcome = other.import_blocking(vec![exported[2].clone()]).unwrap();
    assert!(matches!(outcome, MultiAppendOutcome::WrongExpectedRevision { .. }), "{outcome:?}");
    let mut skipping = exported.clone();
    skipping[2].revision = strata_core::StreamRevision::new(5);
    let error = other.import_blocking(skipping).unwrap_err();
    assert!(error.to_string().contains("revision 5 where revision 1 comes next"), "{error}");
    // Recorded times going backwards, within a batch and from the store's latest event.
    let mut backwards = exported.clone();
    backwards[2].recorded_at = Timestamp::from_micros(backwards[1].recorded_at.as_micros() - 1);
    let error = other.import_blocking(backwards).unwrap_err();
    assert!(error.to_string().contains("never go backwards"), "{error}");
    let mut early = exported[1].clone();
    early.recorded_at = Timestamp::UNIX_EPOCH;
    early.id = strata_core::EventId::from_uuid(uuid::Uuid::now_v7());
    early.stream = stream("b-1");
    let error = store.import_blocking(vec![early]).unwrap_err();
    assert!(matches!(error, AppendError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("never go backwards"), "{error}");
    assert!(read_everything(&other).is_empty(), "refused imports wrote nothing");
    assert_eq!(read_everything(&store), exported);
}

/// Exports a store with a stream `s` (two events) that is then tombstoned:
/// `[$store-created, s@0, s@1, $tombstone]`.
fn export_with_tombstone() -> Vec<strata_core::RecordedEvent> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}"), event("{}")]);
    let _ = store.tombstone_stream_blocking(stream("s"), ExpectedRevision::Any).unwrap();
    read_everything(&store)
}

#[test]
fn imports_may_not_write_reserved_names_or_undecodable_system_events() {
    let exported = export_with_tombstone();
    let tombstone = exported[3].clone();
    assert_eq!(tombstone.stream.as_str(), "$streams");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let refused = |event: strata_core::RecordedEvent, says: &str| {
        let error = store.import_blocking(vec![event]).unwrap_err();
        assert!(matches!(error, AppendError::Invalid(_)), "{error}");
        assert!(error.to_string().contains(says), "{error} should say {says:?}");
    };
    let mut garbage = tombstone.clone();
    garbage.event_type = EventType::new("$deleted").unwrap();
    garbage.data = bytes::Bytes::from_static(b"{}");
    refused(garbage, "cut short");
    let mut unknown = tombstone.clone();
    unknown.event_type = EventType::new("Note").unwrap();
    refused(unknown, "holds only metadata and deletion events");
    let mut at_system = tombstone.clone();
    at_system.data = {
        // A tombstone whose target is the system stream itself.
        let target = b"$streams";
        let mut data = (target.len() as u16).to_le_bytes().to_vec();
        data.extend_from_slice(target);
        bytes::Bytes::from(data)
    };
    refused(at_system, "reserved");
    let mut other_system = exported[1].clone();
    other_system.stream = stream("$all");
    refused(other_system, "reserved for the system");
    let mut reserved_type = exported[1].clone();
    reserved_type.event_type = EventType::new("$Opened").unwrap();
    refused(reserved_type, "reserved");
    let mut future = exported[1].clone();
    future.recorded_at = Timestamp::from_micros(253_402_300_799_000_000);
    refused(future, "later than this store's clock");
    // An event of a stream after its tombstone, in one batch.
    let mut after = exported.clone();
    let mut late = exported[1].clone();
    late.id = strata_core::EventId::from_uuid(uuid::Uuid::now_v7());
    late.revision = strata_core::StreamRevision::new(2);
    after.push(late);
    let error = store.import_blocking(after).unwrap_err();
    assert!(error.to_string().contains("tombstoned earlier in the import"), "{error}");

    assert!(read_everything(&store).is_empty(), "nothing was written");
    drop(store);
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.import_blocking(exported.clone()).map(|_| ()).ok(), Some(()));
    assert_eq!(read_everything(&reopened), exported);
}

#[test]
fn an_imported_tombstone_stops_appends_in_the_same_commit_group() {
    use common::{hold_committer, open_sim, wait_until_queued};
    let exported = {
        let storage = strata_storage::SimStorage::new();
        let store = open_sim(&storage, 64 << 10);
        commit(&store, "s", ExpectedRevision::Any, vec![event("{}")]);
        let _ = store.tombstone_stream_blocking(stream("s"), ExpectedRevision::Any).unwrap();
        read_everything(&store)
    };
    let storage = strata_storage::SimStorage::new();
    let store = open_sim(&storage, 64 << 10);
    // `$store-created` and `s`'s event first; the tombstone (exported[2]) races an append.
    let _ = store.import_blocking(exported[..2].to_vec()).unwrap();
    let blocker = hold_committer(&storage, &store);
    let import = {
        let (store, tombstone) = (store.clone(), exported[2].clone());
        std::thread::spawn(move || store.import_blocking(vec![tombstone]))
    };
    wait_until_queued(&store, 1);
    let append = {
        let store = store.clone();
        std::thread::spawn(move || store.append_blocking(stream("s"), ExpectedRevision::Any, vec![event("{}")]))
    };
    wait_until_queued(&store, 2);
    storage.hold_syncs(false);
    blocker.join().unwrap();
    assert!(matches!(import.join().unwrap(), Ok(MultiAppendOutcome::Committed(_))));
    assert!(matches!(append.join().unwrap(), Err(AppendError::StreamDeleted { .. })), "the append slipped in");
    assert!(store.is_tombstoned("s"));
}
