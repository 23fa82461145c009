//! Scavenging: the space of events reads hide is reclaimed in sealed segments, online; positions,
//! revisions and ids of every event stay; no visible read changes — also while it runs, across
//! reopens, after a rebuild of the indexes from the log, and after a crash at any step.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::Arc;
use strata_core::{
    EventType, ExpectedRevision, NewEvent, RecordedEvent, StreamMetadata, StreamRevision, Tag, Timestamp,
};
use strata_storage::{Direction, Filter, ManualClock, Options, ReadFrom, ReadOptions, SimStorage, Store};

const START_MICROS: i64 = 1_700_000_000_000_000;

fn options(clock: &Arc<ManualClock>) -> Options {
    Options {
        segment_size_bytes: 8 << 10,
        index_run_events: strata_storage::INDEX_RUN_EVENTS_MIN,
        clock: clock.clone(),
        ..Options::default()
    }
}

/// 400 events in 8 streams of 2 categories; then metadata, deletes and a tombstone that hide some of
/// them; then more events, so that the hidden ones lie in sealed segments the runs cover.
fn fill(store: &Store, clock: &ManualClock) {
    for n in 0..400u64 {
        let stream = format!("{}-{}", ["account", "order"][(n % 2) as usize], n % 8);
        let event = NewEvent::new(
            EventType::new(["Opened", "Paid", "Closed"][(n % 3) as usize]).unwrap(),
            format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(100)),
        )
        .with_tags(vec![Tag::new(format!("n:{}", n % 10)).unwrap()])
        .unwrap()
        .with_id(id(u128::from(n)));
        commit(store, &stream, ExpectedRevision::Any, vec![event]);
        clock.advance_micros(1_000_000);
    }
    let metadata = |metadata: StreamMetadata| metadata;
    let _ = store
        .set_stream_metadata_blocking(
            stream("account-0"),
            &metadata(StreamMetadata { max_count: Some(10), ..StreamMetadata::default() }),
        )
        .unwrap();
    let _ = store
        .set_stream_metadata_blocking(
            stream("order-1"),
            &metadata(StreamMetadata { truncate_before: Some(StreamRevision::new(20)), ..StreamMetadata::default() }),
        )
        .unwrap();
    let _ = store
        .set_stream_metadata_blocking(
            stream("account-2"),
            &metadata(StreamMetadata { max_age_seconds: Some(150), ..StreamMetadata::default() }),
        )
        .unwrap();
    let _ = store.delete_stream_blocking(stream("order-3"), ExpectedRevision::Any).unwrap();
    let _ = store.tombstone_stream_blocking(stream("account-4"), ExpectedRevision::Any).unwrap();
    for n in 400..700u64 {
        let stream = format!("later-{}", n % 3);
        commit(
            store,
            &stream,
            ExpectedRevision::Any,
            vec![event(&format!("{{\"n\":{n}}}")).with_id(id(u128::from(n)))],
        );
    }
}

/// What reads show of streams: every visible event, stream facts and listings.
fn visible(store: &Store) -> String {
    let mut out = Vec::new();
    // "during" is written while a test scavenges.
    let mut streams = store.list_streams("", None, 10_000).unwrap();
    streams.retain(|name| name.as_str() != "during");
    out.push(format!("{streams:?}"));
    for name in &streams {
        let events = store.read_stream(name, ReadFrom::Start, Direction::Forward, 10_000).unwrap();
        out.push(format!("{name}: {events:?}"));
        out.push(format!("{:?}", store.stream_info(name.as_str()).unwrap()));
    }
    for gone in ["order-3", "account-4"] {
        out.push(format!(
            "{gone}: {:?}",
            store.read_stream(&stream(gone), ReadFrom::Start, Direction::Forward, 10).err()
        ));
    }
    out.join("\n")
}

fn type_filter(store: &Store, event_type: &str) -> Vec<u64> {
    let filter = Filter { event_types: vec![EventType::new(event_type).unwrap()], ..Filter::default() };
    let events = store.read_all_with(ReadFrom::Start, &ReadOptions::forward(100_000), &filter).unwrap();
    assert!(events.len() < 100_000);
    events.iter().map(|e| e.position.value()).collect()
}

fn is_placeholder(event: &RecordedEvent) -> bool {
    event.event_type.as_str() == "$scavenged"
        && event.data.is_empty()
        && event.metadata.is_empty()
        && event.tags.is_empty()
}

/// `after` is `before` with some hidden events replaced by placeholders that keep position, stream,
/// revision, id and time. Returns how many.
fn placeholders_of_hidden(
    before: &[RecordedEvent],
    after: &[RecordedEvent],
    hidden: &dyn Fn(&RecordedEvent) -> bool,
) -> usize {
    assert_eq!(before.len(), after.len(), "positions stay dense and none is lost");
    let mut count = 0;
    for (old, new) in before.iter().zip(after) {
        if old == new {
            continue;
        }
        assert!(is_placeholder(new), "position {} changed without becoming a placeholder: {new:?}", old.position);
        assert!(hidden(old), "a visible event was scavenged: {old:?}");
        let same = (old.position, &old.stream, old.revision, old.id, old.recorded_at);
        assert_eq!(same, (new.position, &new.stream, new.revision, new.id, new.recorded_at));
        count += 1;
    }
    count
}

/// Which events reads hide, from the streams' visible first revisions.
fn hidden_by(store: &Store) -> impl Fn(&RecordedEvent) -> bool + use<> {
    let mut first_visible: HashMap<String, u64> = HashMap::new();
    for event in read_everything(store) {
        let name = event.stream.as_str();
        if name.starts_with('$') || first_visible.contains_key(name) {
            continue;
        }
        let first = match store.stream_info(name).unwrap() {
            Some(info) => info.first_revision.value(),
            None => u64::MAX,
        };
        first_visible.insert(name.to_owned(), first);
    }
    move |event: &RecordedEvent| {
        first_visible.get(event.stream.as_str()).is_some_and(|&first| event.revision.value() < first)
    }
}

#[test]
fn scavenging_reclaims_hidden_events_and_changes_no_visible_read() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START_MICROS)));
    let store = Store::open_with(dir.path(), options(&clock)).unwrap();
    fill(&store, &clock);
    let visible_before = visible(&store);
    let all_before = read_everything(&store);
    let paid_before = type_filter(&store, "Paid");
    let hidden = hidden_by(&store);

    let report = store.scavenge_blocking().unwrap();
    assert!(report.segments_rewritten > 0 && report.events_scavenged > 0, "{report:?}");
    assert!(report.bytes_after < report.bytes_before, "space is reclaimed: {report:?}");
    let all_after = read_everything(&store);
    let scavenged = placeholders_of_hidden(&all_before, &all_after, &hidden);
    assert_eq!(scavenged as u64, report.events_scavenged);
    assert_eq!(visible(&store), visible_before, "no visible read changes");
    // Type lists lose exactly the scavenged positions.
    let scavenged_positions: Vec<u64> =
        all_after.iter().filter(|e| is_placeholder(e)).map(|e| e.position.value()).collect();
    let expected: Vec<u64> = paid_before.iter().copied().filter(|p| !scavenged_positions.contains(p)).collect();
    assert_eq!(type_filter(&store, "Paid"), expected);
    assert!(type_filter(&store, "$scavenged").is_empty(), "placeholders are in no type list");

    // A second scavenge finds nothing more; appends go on; a scavenged event's id stays taken.
    assert_eq!(store.scavenge_blocking().unwrap().events_scavenged, 0);
    let taken = all_after.iter().find(|e| is_placeholder(e)).unwrap();
    let reused = store.append_blocking(stream("fresh"), ExpectedRevision::Any, vec![event("{}").with_id(taken.id)]);
    assert!(reused.is_err(), "the id of a scavenged event is still taken: {reused:?}");
    commit(&store, "fresh", ExpectedRevision::Any, vec![event("{}")]);
    let all_after = read_everything(&store);
    let visible_after = visible(&store);
    drop(store);

    // The same after a reopen, and after rebuilding the indexes from the rewritten log.
    let store = Store::open_with(dir.path(), options(&clock)).unwrap();
    assert_eq!(read_everything(&store), all_after);
    assert_eq!(visible(&store), visible_after);
    drop(store);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open_with(dir.path(), options(&clock)).unwrap();
    assert_eq!(read_everything(&store), all_after);
    assert_eq!(visible(&store), visible_after);
    assert_eq!(type_filter(&store, "Paid"), expected);

    // An export of the scavenged store imports as the same log.
    let copy = tempfile::tempdir().unwrap();
    let target = Store::open_with(copy.path(), options(&clock)).unwrap();
    for batch in all_after.chunks(20) {
        let _ = target.import_blocking(batch.to_vec()).unwrap();
    }
    assert_eq!(read_everything(&target), all_after);
}

#[test]
fn readers_during_a_scavenge_see_every_visible_event_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START_MICROS)));
    let store = Store::open_with(dir.path(), options(&clock)).unwrap();
    fill(&store, &clock);
    let visible_before = visible(&store);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done, expected) = (store.clone(), done.clone(), visible_before.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || reads < 3 {
                    assert_eq!(visible(&store), expected, "a read during the scavenge changed");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // Appends go on too.
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for n in 0..200 {
                commit(&store, "during", expected_for(n), vec![event("{}")]);
            }
        })
    };
    let report = store.scavenge_blocking().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    for reader in readers {
        assert!(reader.join().unwrap() >= 3);
    }
    assert!(report.events_scavenged > 0, "{report:?}");
}

/// The expected revision of the `n`-th append to a stream written by one writer.
fn expected_for(n: u64) -> ExpectedRevision {
    match n.checked_sub(1) {
        None => ExpectedRevision::NoStream,
        Some(previous) => ExpectedRevision::Exact(StreamRevision::new(previous)),
    }
}

#[test]
fn a_crash_at_any_step_of_a_scavenge_leaves_a_store_that_reads_the_same() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START_MICROS)));
    let storage = SimStorage::new();
    let sim = |storage: &SimStorage| Options { storage: Arc::new(storage.clone()), ..options(&clock) };
    let store = Store::open_with(DIR, sim(&storage)).unwrap();
    fill(&store, &clock);
    let visible_before = visible(&store);
    let all_before = read_everything(&store);
    let hidden = hidden_by(&store);
    drop(store);
    let mut steps = 0;
    let mut completed = false;
    for crash_after in 1.. {
        let storage = storage.crash_image(0);
        let store = Store::open_with(DIR, sim(&storage)).unwrap();
        storage.crash_after_mutations(crash_after);
        let finished = store.scavenge_blocking().is_ok() && !storage.has_crashed();
        drop(store);
        let image = storage.crash_image(crash_after);
        let store = Store::open_with(DIR, sim(&image))
            .unwrap_or_else(|error| panic!("crash after {crash_after} mutations: the store does not open: {error}"));
        assert_eq!(visible(&store), visible_before, "crash after {crash_after} mutations");
        placeholders_of_hidden(&all_before, &read_everything(&store), &hidden);
        steps += 1;
        if finished {
            completed = true;
            break;
        }
    }
    assert!(completed && steps > 10, "the crash points cover a whole scavenge ({steps} steps)");
}
