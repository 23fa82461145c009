//! Thousands of simulated power losses at random points, with concurrent appenders — some after a
//! process crash and restart that served what it recovered: every recovered store must open, keep
//! everything that was served, hold every acknowledged event at its acknowledged position, hold appends whole or
//! not at all, have gapless positions and revisions, and keep working.
//!
//! `STRATA_CRASH_CASES` sets the number of cases (default 2,000); a failure names its seed, and
//! `STRATA_CRASH_SEED` runs that one case alone.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use strata_core::{EventId, ExpectedRevision, NewEvent, RecordedEvent};
use strata_storage::{
    AppendError, Direction, MultiAppend, MultiAppendOutcome, MultiAppendResult, ReadFrom, SimStorage, Store,
};

/// One append as a writer thread issued it, and what came back.
#[derive(Debug, Clone)]
struct Attempt {
    /// Each event with its stream: one stream, or (a multi-stream append) two interleaved.
    events: Vec<(String, NewEvent)>,
    acknowledged: Option<Acknowledged>,
    refused: bool,
}

/// Where an acknowledged append's events are: its first position and each event's revision.
#[derive(Debug, Clone)]
struct Acknowledged {
    first_position: u64,
    revisions: Vec<u64>,
}

impl Acknowledged {
    fn of_multi(result: &MultiAppendResult, events: &[(String, NewEvent)]) -> Self {
        let mut next: HashMap<&str, u64> =
            result.streams.iter().map(|s| (s.stream.as_str(), s.first_revision.value())).collect();
        let revisions = events
            .iter()
            .map(|(stream, _)| {
                let revision = next.get_mut(stream.as_str()).expect("every written stream is in the result");
                *revision += 1;
                *revision - 1
            })
            .collect();
        Self { first_position: result.first_position.value(), revisions }
    }
}

fn cases() -> std::ops::Range<u64> {
    if let Ok(seed) = std::env::var("STRATA_CRASH_SEED") {
        let seed: u64 = seed.parse().expect("STRATA_CRASH_SEED is a number");
        return seed..seed + 1;
    }
    let count = std::env::var("STRATA_CRASH_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    0..count
}

#[test]
fn every_crash_point_recovers_an_acknowledged_prefix() {
    let mut torn_repairs = 0;
    let mut crashes_in_open = 0;
    for seed in cases() {
        let outcome = run_case(seed);
        torn_repairs += u32::from(outcome.torn_repaired);
        crashes_in_open += u32::from(outcome.crashed_in_open);
    }
    // The cases must really exercise torn tails and crashes during open; otherwise the test is weaker
    // than it claims.
    let total = cases().count();
    if total >= 500 {
        assert!(torn_repairs > 10, "only {torn_repairs} torn tails repaired in {total} cases");
        assert!(crashes_in_open > 10, "only {crashes_in_open} crashes during open in {total} cases");
    }
}

struct CaseOutcome {
    torn_repaired: bool,
    crashed_in_open: bool,
}

fn run_case(seed: u64) -> CaseOutcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let storage = SimStorage::new();
    let segment_size = rng.random_range(4096..=16_384);
    let crash_in_open = rng.random_bool(0.1);
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let mut crashed_in_open = false;
    if crash_in_open {
        storage.crash_after_mutations(rng.random_range(1..=8));
    }
    match Store::open_with(DIR, sim_options(&storage, segment_size)) {
        Err(_) => crashed_in_open = true,
        Ok(store) => {
            if !crash_in_open {
                storage.crash_after_mutations(rng.random_range(1..=150));
            }
            let threads = rng.random_range(1..=4);
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    let store = store.clone();
                    let attempts = attempts.clone();
                    let seed = seed * 100 + thread;
                    std::thread::spawn(move || write_until_failure(&store, seed, thread, &attempts))
                })
                .collect();
            for handle in handles {
                handle.join().unwrap();
            }
            assert!(storage.has_crashed(), "seed {seed}: the crash point was never reached");
        }
    }
    // Sometimes the process died, not the machine: it restarts over the same page cache, recovers and
    // serves — and only then does the power fail. Whatever it served must survive that.
    let mut served = Vec::new();
    if rng.random_bool(0.35) {
        storage.restart_process();
        let store = Store::open_with(DIR, sim_options(&storage, segment_size))
            .unwrap_or_else(|error| panic!("seed {seed}: the restarted process cannot open: {error}"));
        served = read_everything(&store);
    }
    let image = storage.crash_image(seed);
    let store = Store::open_with(DIR, sim_options(&image, segment_size))
        .unwrap_or_else(|error| panic!("seed {seed}: the crashed store does not open: {error}"));
    let attempts = attempts.lock().unwrap().clone();
    verify(seed, &store, &attempts);
    let recovered = read_everything(&store);
    assert!(recovered.len() >= served.len(), "seed {seed}: events served after a restart were lost");
    assert_eq!(&recovered[..served.len()], &served[..], "seed {seed}: served events changed");
    let torn_repaired = store.recovery_report().torn_tail_bytes_zeroed > 0;

    // The recovered store keeps working, and stays the same across another reopen.
    let before = read_everything(&store);
    // An empty log gets its `$store-created` (position 0) with this first append.
    let created = u64::from(before.is_empty());
    let result = commit(&store, "after-crash", ExpectedRevision::Any, vec![event("{}")]);
    assert_eq!(result.first_position.value(), before.len() as u64 + created, "seed {seed}");
    drop(store);
    let store = Store::open_with(DIR, sim_options(&image, segment_size)).unwrap();
    let after = read_everything(&store);
    assert_eq!(after.len(), before.len() + 1 + created as usize, "seed {seed}");
    assert_eq!(&after[..before.len()], &before[..], "seed {seed}");
    CaseOutcome { torn_repaired, crashed_in_open }
}

fn write_until_failure(store: &Store, seed: u64, thread: u64, attempts: &Mutex<Vec<Attempt>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    for n in 0u128.. {
        // A third of the appends write two streams at once, interleaved: atomic across streams.
        let streams: Vec<String> = if rng.random_bool(0.33) {
            let first = rng.random_range(0..4);
            vec![format!("s-{first}"), format!("s-{}", (first + 1) % 4)]
        } else {
            vec![format!("s-{}", rng.random_range(0..4))]
        };
        let count = rng.random_range(1..=4);
        let events: Vec<(String, NewEvent)> = (0..count)
            .map(|i| {
                let size = if rng.random_bool(0.2) { rng.random_range(500..1500) } else { rng.random_range(0..64) };
                let id = (u128::from(thread) << 64) | (n << 8) | i;
                // Some payloads hold long zero runs, as binary data does: tears through them must
                // still be told from rot.
                let data = if rng.random_bool(0.15) { format!("{}end", "\0".repeat(size)) } else { "x".repeat(size) };
                (streams[i as usize % streams.len()].clone(), event(&data).with_id(id_of(id)))
            })
            .collect();
        let index = {
            let mut attempts = attempts.lock().unwrap();
            attempts.push(Attempt { events: events.clone(), acknowledged: None, refused: false });
            attempts.len() - 1
        };
        let append = MultiAppend {
            events: events.iter().map(|(stream, event)| (common::stream(stream), event.clone())).collect(),
            checks: vec![],
            condition: None,
        };
        match store.append_multi_blocking(append) {
            Ok(MultiAppendOutcome::Committed(result)) => {
                attempts.lock().unwrap()[index].acknowledged = Some(Acknowledged::of_multi(&result, &events));
            }
            Ok(outcome) => panic!("seed {seed}: unexpected {outcome:?}"),
            // Too large for these small segments: refused before anything is written; verify checks
            // that none of it shows up.
            Err(AppendError::Invalid(_)) => attempts.lock().unwrap()[index].refused = true,
            Err(_) => return,
        }
    }
}

fn id_of(n: u128) -> EventId {
    EventId::from_uuid(uuid::Uuid::from_u128(n))
}

fn verify(seed: u64, store: &Store, attempts: &[Attempt]) {
    let events = read_everything(store);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.position.value(), index as u64, "seed {seed}: positions have a gap");
    }
    let by_id: HashMap<EventId, &RecordedEvent> = events.iter().map(|e| (e.id, e)).collect();
    assert_eq!(by_id.len(), events.len(), "seed {seed}: an event id appears twice");

    // Position 0 is the store's `$store-created`, written with the first append: nobody's attempt.
    let mut accounted = 0;
    if let Some(first) = events.first() {
        assert_eq!(
            (first.stream.as_str(), first.event_type.as_str(), first.revision.value()),
            ("$store", "$store-created", 0),
            "seed {seed}: position 0 is not $store-created"
        );
        accounted += 1;
    }
    for attempt in attempts {
        let present: Vec<Option<&&RecordedEvent>> =
            attempt.events.iter().map(|(_, e)| by_id.get(&e.id().unwrap())).collect();
        let count = present.iter().filter(|p| p.is_some()).count();
        if attempt.refused {
            assert_eq!(count, 0, "seed {seed}: a refused append was written");
        }
        if let Some(acknowledged) = &attempt.acknowledged {
            assert_eq!(count, attempt.events.len(), "seed {seed}: an acknowledged event is missing");
            for (offset, ((stream, written), read)) in attempt.events.iter().zip(&present).enumerate() {
                let read = read.unwrap();
                assert_eq!(read.position.value(), acknowledged.first_position + offset as u64, "seed {seed}");
                assert_eq!(read.revision.value(), acknowledged.revisions[offset], "seed {seed}");
                assert_eq!(read.stream.as_str(), stream, "seed {seed}");
                assert_eq!(&read.data, written.data(), "seed {seed}");
            }
        } else {
            assert!(count == 0 || count == attempt.events.len(), "seed {seed}: an append is half visible");
        }
        if count > 0 {
            let positions: Vec<u64> = present.iter().map(|p| p.unwrap().position.value()).collect();
            assert!(positions.windows(2).all(|w| w[1] == w[0] + 1), "seed {seed}: an append is not contiguous");
        }
        accounted += count;
    }
    assert_eq!(accounted, events.len(), "seed {seed}: the store holds events nobody appended");

    // Each stream's revisions are gapless and agree with the global log.
    for name in ["s-0", "s-1", "s-2", "s-3"] {
        if let Ok(stream_events) = store.read_stream(&stream(name), ReadFrom::Start, Direction::Forward, 100_000) {
            for (revision, event) in stream_events.iter().enumerate() {
                assert_eq!(event.revision.value(), revision as u64, "seed {seed}: revisions have a gap");
                assert_eq!(events[event.position.value() as usize].id, event.id, "seed {seed}");
            }
        }
    }
}
