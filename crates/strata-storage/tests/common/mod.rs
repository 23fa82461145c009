//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use strata_core::{EventId, EventType, ExpectedRevision, NewEvent, RecordedEvent, StreamId, Timestamp};
use strata_storage::{AppendOutcome, AppendResult, Direction, ManualClock, Options, ReadFrom, SimStorage, Store};

pub const DIR: &str = "/data";

pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

pub fn id(n: u128) -> EventId {
    EventId::from_uuid(uuid::Uuid::from_u128(n))
}

pub fn event(data: &str) -> NewEvent {
    NewEvent::new(EventType::new("Happened").unwrap(), data.to_owned())
}

pub fn event_with_id(n: u128) -> NewEvent {
    event(&format!("{{\"n\":{n}}}")).with_id(id(n))
}

/// Options over a simulated disk with small segments (so tests cross segment boundaries), index runs
/// of the smallest size (so that tests read across runs, merges and the in-memory tail) and a
/// manual clock.
pub fn sim_options(storage: &SimStorage, segment_size_bytes: u64) -> Options {
    Options {
        segment_size_bytes,
        index_run_events: strata_storage::INDEX_RUN_EVENTS_MIN,
        storage: Arc::new(storage.clone()),
        clock: Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000))),
        ..Options::default()
    }
}

pub fn open_sim(storage: &SimStorage, segment_size_bytes: u64) -> Store {
    Store::open_with(DIR, sim_options(storage, segment_size_bytes)).expect("open")
}

/// Appends and expects a commit.
pub fn commit(store: &Store, name: &str, expected: ExpectedRevision, events: Vec<NewEvent>) -> AppendResult {
    match store.append_blocking(stream(name), expected, events).expect("append") {
        AppendOutcome::Committed(result) => result,
        outcome => panic!("expected a commit, got {outcome:?}"),
    }
}

/// Reads the whole global log forwards.
pub fn read_everything(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    loop {
        let from = events.len() as u64;
        let page = store.read_all(ReadFrom::At(from.into()), Direction::Forward, 1000).expect("read_all");
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

/// Holds the committer inside the commit of a first append (the disk's syncs wait), so that appends
/// queued meanwhile form the next commit group together. Release with `hold_syncs(false)`.
pub fn hold_committer(storage: &SimStorage, store: &Store) -> std::thread::JoinHandle<strata_storage::AppendResult> {
    storage.hold_syncs(true);
    let blocker = {
        let store = store.clone();
        std::thread::spawn(move || commit(&store, "blocker", ExpectedRevision::Any, vec![event("{}")]))
    };
    while storage.syncs_waiting() == 0 {
        std::thread::yield_now();
    }
    blocker
}

pub fn wait_until_queued(store: &Store, appends: usize) {
    while store.queued_appends() < appends {
        std::thread::yield_now();
    }
}
