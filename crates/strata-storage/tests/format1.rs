//! A store written in format 1 (`tests/fixtures/format1`, made by the engine before format 2) opens,
//! reads exactly as that engine read it, takes appends — its first format-2 commit starts the chain
//! with a `$store-created` whose genesis is the digest of the format-1 events — and verifies.

mod common;

use common::{commit, event, read_everything};
use std::path::Path;
use std::sync::Arc;
use strata_core::{ExpectedRevision, RecordedEvent, Timestamp};
use strata_storage::{ManualClock, Options, Store};

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1");
    std::fs::create_dir_all(to.join("index")).unwrap();
    for entry in walk(&from) {
        let relative = entry.strip_prefix(&from).unwrap();
        if relative.extension().is_some_and(|e| e == "seg" || e == "run") {
            std::fs::copy(&entry, to.join(relative)).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// The line `expected.txt` holds for an event (the format the fixture's generator wrote).
fn line(e: &RecordedEvent) -> String {
    format!(
        "{} {} {} {} {} {} {:?} {:?} {:?}",
        e.position.value(),
        e.stream,
        e.revision.value(),
        e.event_type,
        e.id,
        e.recorded_at,
        String::from_utf8_lossy(&e.data),
        String::from_utf8_lossy(&e.metadata),
        e.tags.iter().collect::<Vec<_>>()
    )
}

fn options() -> Options {
    // The fixture's last event was recorded at 2023-11-14T22:16:39Z; the clock goes on from there.
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_400_000_000)));
    Options { segment_size_bytes: 8 << 10, index_run_events: 16, clock, ..Options::default() }
}

#[test]
fn a_format_1_store_reads_as_before_then_continues_in_format_2() {
    let expected =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1/expected.txt"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    let events = read_everything(&store);
    let lines: Vec<String> = events.iter().map(line).collect();
    assert_eq!(lines, expected.lines().collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.hash.is_none()), "format-1 events have no hash");
    assert_eq!(store.store_created(), None);
    let report = store.verify_chain_blocking().unwrap();
    assert_eq!((report.events, report.format_1_events, report.verified_events), (203, 203, 0));
    assert!(store.is_tombstoned("order-3"));

    // The first append starts the chain: $store-created at the next position, then the event.
    let appended = commit(&store, "account-0", ExpectedRevision::Any, vec![event("{\"format\":2}")]);
    assert_eq!(appended.first_position.value(), 204);
    let created = store.store_created().expect("the chain has begun");
    assert_eq!(created.format_1_events, Some(203));
    let events = read_everything(&store);
    assert_eq!(events[203].event_type.as_str(), "$store-created");
    assert!(events[203..].iter().all(|e| e.hash.is_some()));
    let lines: Vec<String> = events[..203].iter().map(line).collect();
    assert_eq!(lines, expected.lines().collect::<Vec<_>>(), "the format-1 events stay as they are");
    let report = store.verify_chain_blocking().unwrap();
    assert_eq!((report.events, report.format_1_events, report.verified_events), (205, 203, 2));
    drop(store);

    // Reopened: the same identity, the same events; more appends, a scavenge, still verified.
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.store_created(), Some(created));
    assert_eq!(read_everything(&store), events);
    for n in 0..80 {
        commit(&store, &format!("account-{}", n % 3), ExpectedRevision::Any, vec![event(&format!("{{\"n\":{n}}}"))]);
    }
    store.scavenge_blocking().unwrap();
    let report = store.verify_chain_blocking().unwrap();
    assert_eq!((report.events, report.format_1_events), (285, 203));
    assert_eq!(report.verified_events, 82);
}
