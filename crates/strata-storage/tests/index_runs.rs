//! The index runs under `index/`, on real files: a run lost, stale, torn, damaged or ahead of the log is
//! dropped and rebuilt from the log, and the store answers every kind of read exactly as before.
//! (Crashes in the middle of writing runs are covered by `crash.rs`, whose stores write a run every
//! 16 events.)

mod common;

use common::*;
use std::path::{Path, PathBuf};
use strata_core::{ExpectedRevision, Query, QueryItem, StreamMetadata, StreamRevision, Tag, Timestamp};
use strata_storage::{Direction, Filter, Options, ReadFrom, ReadOptions, Store};

const EVENTS: u64 = 600;

fn options() -> Options {
    Options {
        segment_size_bytes: 64 << 10,
        index_run_events: strata_storage::INDEX_RUN_EVENTS_MIN,
        clock: std::sync::Arc::new(strata_storage::ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000))),
        ..Options::default()
    }
}

/// Appends events `from..to`: 12 streams in 3 categories, 3 types, tags per account; every 100th event
/// also changes metadata, soft-deletes or tombstones a stream.
fn append(store: &Store, from: u64, to: u64) {
    for n in from..to {
        let stream = format!("{}-{}", ["account", "order", "user"][(n % 3) as usize], n % 12);
        if store.is_tombstoned(&stream) {
            continue;
        }
        let event_type = ["Opened", "Deposited", "Withdrawn"][(n % 7 % 3) as usize];
        let event =
            strata_core::NewEvent::new(strata_core::EventType::new(event_type).unwrap(), format!("{{\"n\":{n}}}"))
                .with_tags(vec![Tag::new(format!("account:{}", n % 5)).unwrap(), Tag::new(format!("n:{n}")).unwrap()])
                .unwrap()
                .with_id(id(u128::from(n)));
        commit(store, &stream, ExpectedRevision::Any, vec![event]);
        match n {
            150 => {
                let metadata = StreamMetadata { max_count: Some(5), ..StreamMetadata::default() };
                let _ = store.set_stream_metadata_blocking(common::stream("order-1"), &metadata).unwrap();
            }
            250 => {
                let _ = store.delete_stream_blocking(common::stream("user-2"), ExpectedRevision::Any).unwrap();
            }
            350 => {
                let _ = store.tombstone_stream_blocking(common::stream("account-3"), ExpectedRevision::Any).unwrap();
            }
            _ => {}
        }
    }
}

/// Everything the indexes answer, as text.
fn fingerprint(store: &Store) -> String {
    let mut out = Vec::new();
    let all = read_everything(store);
    out.push(format!("{} events, ids {:?}", all.len(), all.iter().map(|e| e.id).collect::<Vec<_>>()));
    let streams = store.list_streams("", None, 10_000).unwrap();
    out.push(format!("streams {streams:?}"));
    for name in &streams {
        let events = store.read_stream(name, ReadFrom::Start, Direction::Forward, 10_000).unwrap();
        let positions: Vec<u64> = events.iter().map(|e| e.position.value()).collect();
        out.push(format!("{name}: {positions:?} {:?}", store.stream_info(name.as_str()).unwrap()));
        let backward = store.read_stream(name, ReadFrom::End, Direction::Backward, 3).unwrap();
        out.push(format!("{name} last: {:?}", backward.iter().map(|e| e.revision).collect::<Vec<_>>()));
        out.push(format!("{name} head: {:?}", store.stream_revision(name.as_str()).unwrap()));
    }
    for prefix in ["account-1", "order-", "user-1"] {
        out.push(format!("list {prefix}: {:?}", store.list_streams(prefix, None, 10_000).unwrap()));
    }
    let tag = |text: &str| Tag::new(text).unwrap();
    let event_type = |text: &str| strata_core::EventType::new(text).unwrap();
    let filters = [
        Filter { category: Some("account".into()), ..Filter::default() },
        Filter { event_types: vec![event_type("Deposited"), event_type("Opened")], ..Filter::default() },
        Filter { tags: vec![tag("account:2")], ..Filter::default() },
        Filter { tags: vec![tag("n:77")], ..Filter::default() },
        Filter { stream_prefix: Some("order-1".into()), ..Filter::default() },
        Filter { stream_prefix: Some("o".into()), event_types: vec![event_type("Withdrawn")], ..Filter::default() },
        Filter {
            query: Some(Query::new(vec![
                QueryItem { types: vec![event_type("Withdrawn")], tags: vec![tag("account:1")] },
                QueryItem { types: vec![], tags: vec![tag("n:5")] },
            ])),
            ..Filter::default()
        },
    ];
    for filter in &filters {
        for options in [ReadOptions::forward(10_000), ReadOptions::backward(10_000)] {
            let events = store.read_all_with(ReadFrom::Start, &options, filter).unwrap();
            let events = if options.direction == Direction::Backward {
                store.read_all_with(ReadFrom::End, &options, filter).unwrap()
            } else {
                events
            };
            out.push(format!("{filter:?} {:?}: {:?}", options.direction, positions(&events)));
        }
    }
    for at in [0, 1, 17, 299, 450] {
        let until = ReadOptions::forward(10_000).until_position(strata_core::Position::new(at));
        let events = store.read_all_with(ReadFrom::Start, &until, &filters[0]).unwrap();
        out.push(format!("as of {at}: {:?}", positions(&events)));
    }
    for micros in [0, 1_700_000_000_000_000, i64::MAX / 2] {
        out.push(format!("position at {micros}: {:?}", store.position_at(Timestamp::from_micros(micros)).unwrap()));
    }
    out.join("\n")
}

fn positions(events: &[strata_core::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position.value()).collect()
}

fn runs(dir: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join("index"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "run"))
        .collect();
    runs.sort();
    runs
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            continue;
        }
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A closed store of [`EVENTS`] events and its fingerprint.
fn built() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    append(&store, 0, EVENTS);
    let expected = fingerprint(&store);
    drop(store);
    (dir, expected)
}

#[test]
fn a_clean_open_reads_nothing_from_the_log_and_answers_the_same() {
    let (dir, expected) = built();
    assert!(runs(dir.path()).len() > 1, "the store has several runs");
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.recovery_report();
    assert_eq!(report.events_read_from_log, 0, "{report:?}");
    assert!(report.index_runs >= 1 && report.index_runs_dropped.is_empty(), "{report:?}");
    assert_eq!(fingerprint(&store), expected);
    // Appends go on after the runs, with the checks they need (heads and ids from the runs).
    let replay = store
        .append_blocking(
            common::stream("account-0"),
            ExpectedRevision::Any,
            vec![
                strata_core::NewEvent::new(strata_core::EventType::new("Opened").unwrap(), "{\"n\":0}".to_owned())
                    .with_id(id(0)),
            ],
        )
        .unwrap();
    assert!(
        matches!(&replay, strata_storage::AppendOutcome::Committed(result) if result.replayed),
        "an id committed long ago is recognised through the runs: {replay:?}"
    );
    let head = store.stream_revision("order-4").unwrap().unwrap();
    let outcome =
        store.append_blocking(common::stream("order-4"), ExpectedRevision::Exact(head), vec![event("{}")]).unwrap();
    assert!(outcome.committed().is_some());
    let stale =
        store.append_blocking(common::stream("order-4"), ExpectedRevision::Exact(head), vec![event("{}")]).unwrap();
    assert!(stale.committed().is_none(), "the expected revision is checked against the new head");
}

#[test]
fn lost_runs_are_rebuilt_from_the_log() {
    let (dir, expected) = built();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.events_read_from_log, report.events, "{report:?}");
    assert!(report.index_runs_written > 1, "a rebuild writes runs as it goes: {report:?}");
    assert_eq!(fingerprint(&store), expected);
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_report().events_read_from_log, 0);
    assert_eq!(fingerprint(&store), expected);
}

#[test]
fn stale_runs_are_brought_up_to_date_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    append(&store, 0, EVENTS / 2);
    drop(store);
    let stale = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("index"), stale.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    append(&store, EVENTS / 2, EVENTS);
    let expected = fingerprint(&store);
    drop(store);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    copy_dir(stale.path(), &dir.path().join("index"));
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.recovery_report().clone();
    assert!(report.events_read_from_log > 0 && report.events_read_from_log < report.events, "{report:?}");
    assert_eq!(fingerprint(&store), expected);
}

#[test]
fn torn_runs_are_dropped_and_rebuilt() {
    let (dir, expected) = built();
    let all = runs(dir.path());
    // Cut each run in turn at a few lengths (a write the crash interrupted, had it not been synced
    // before its rename), and fill one with zeros.
    for (at, run) in all.iter().enumerate() {
        let bytes = std::fs::read(run).unwrap();
        for cut in [bytes.len() - 1, bytes.len() / 2, 4096, 10] {
            let image = tempfile::tempdir().unwrap();
            copy_dir(dir.path(), image.path());
            copy_dir(&dir.path().join("index"), &image.path().join("index"));
            let damaged = image.path().join("index").join(run.file_name().unwrap());
            if at % 2 == 0 {
                std::fs::write(&damaged, &bytes[..cut]).unwrap();
            } else {
                let mut zeroed = bytes.clone();
                zeroed[cut..].fill(0);
                std::fs::write(&damaged, zeroed).unwrap();
            }
            let store = Store::open_with(image.path(), options()).unwrap();
            let report = store.recovery_report().clone();
            assert!(!report.index_runs_dropped.is_empty(), "{report:?}");
            assert!(report.events_read_from_log > 0, "{report:?}");
            assert_eq!(fingerprint(&store), expected, "run {} cut at {cut}", run.display());
        }
    }
}

#[test]
fn a_damaged_block_fails_reads_never_answers_wrongly_and_is_rebuilt_at_the_next_open() {
    let (dir, expected) = built();
    let all = runs(dir.path());
    let biggest = all.iter().max_by_key(|run| std::fs::metadata(run).unwrap().len()).unwrap().clone();
    let len = std::fs::metadata(&biggest).unwrap().len();
    // Flip a bit in every data block in turn (META and the footer are checked at open).
    let mut detected = 0;
    for offset in (4096..len - 4096).step_by(4096 + 517) {
        let image = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), image.path());
        copy_dir(&dir.path().join("index"), &image.path().join("index"));
        let damaged = image.path().join("index").join(biggest.file_name().unwrap());
        let mut bytes = std::fs::read(&damaged).unwrap();
        bytes[offset as usize] ^= 0x10;
        std::fs::write(&damaged, bytes).unwrap();
        let store = Store::open_with(image.path(), options()).unwrap();
        // Either a read reaches the damaged block and fails, or it answers exactly as before.
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fingerprint(&store)));
        match answered {
            Ok(fingerprint) => assert_eq!(fingerprint, expected, "offset {offset}: a wrong answer"),
            Err(_) => {
                detected += 1;
                assert!(!damaged.exists(), "offset {offset}: the damaged run is removed");
            }
        }
        drop(store);
        let store = Store::open_with(image.path(), options()).unwrap();
        assert_eq!(fingerprint(&store), expected, "offset {offset}: rebuilt");
    }
    assert!(detected > 0, "some damage was met by a read");
}

#[test]
fn runs_ahead_of_the_log_refuse_the_open_until_the_operator_decides() {
    // The log of a store with fewer events than its runs (a log restored from an older copy, say):
    // acknowledged events are missing, and opening would give their positions to new events.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    append(&store, 0, EVENTS / 2);
    let expected = fingerprint(&store);
    drop(store);
    let older_log = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), older_log.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    append(&store, EVENTS / 2, EVENTS);
    drop(store);
    copy_dir(&dir.path().join("index"), &older_log.path().join("index"));
    let error = Store::open_with(older_log.path(), options()).unwrap_err();
    assert!(matches!(error, strata_storage::OpenError::IndexAheadOfLog { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("acknowledged events are missing") && message.contains("index"), "{message}");
    // Nothing was changed: the same refusal again.
    assert!(Store::open_with(older_log.path(), options()).is_err());
    // The operator accepts the log as it is by removing the index files.
    std::fs::remove_dir_all(older_log.path().join("index")).unwrap();
    let store = Store::open_with(older_log.path(), options()).unwrap();
    assert_eq!(fingerprint(&store), expected);
    let events = store.recovery_report().events;
    let result = commit(&store, "account-0", ExpectedRevision::Any, vec![event("{}")]);
    assert_eq!(result.first_position.value(), events);
    let _ = StreamRevision::new(0);
}
