//! Subscriptions against a model: while writers append concurrently, every subscription — to the
//! whole log, to a type, to a stream, starting at the start, a position, a revision or the end —
//! receives exactly the events its filter selects from the log, each once, in order, with one
//! `CaughtUp` between catch-up and live, however its reads interleave with the commits.

mod common;

use common::{open_sim, read_everything, stream};
use proptest::prelude::*;
use strata_core::{EventType, NewEvent, Position, RecordedEvent, StreamRevision};
use strata_storage::{Filter, ReadFrom, SimStorage, Subscription, SubscriptionMessage};

#[derive(Debug, Clone)]
enum Begin {
    First,
    At(u64),
    End,
}

#[derive(Debug, Clone)]
struct Plan {
    /// Events committed before the subscriptions start, then appended while they run: (stream, type) per event, per append.
    before: Vec<Vec<(u8, u8)>>,
    during: Vec<Vec<(u8, u8)>>,
    starts: Vec<Begin>,
    /// Batch size of the subscriptions' reads (small ones cross many batches).
    batch: usize,
}

fn appends(max: usize) -> impl Strategy<Value = Vec<Vec<(u8, u8)>>> {
    prop::collection::vec(prop::collection::vec((0..4u8, 0..3u8), 1..6), 0..max)
}

fn plan() -> impl Strategy<Value = Plan> {
    let start = prop_oneof![Just(Begin::First), (0..40u64).prop_map(Begin::At), Just(Begin::End)];
    (appends(20), appends(30), prop::collection::vec(start, 3), 1..8usize)
        .prop_map(|(before, during, starts, batch)| Plan { before, during, starts, batch })
}

fn event(kind: u8) -> NewEvent {
    NewEvent::new(EventType::new(format!("T{kind}")).unwrap(), "{}")
}

fn append_all(store: &strata_storage::Store, appends: &[Vec<(u8, u8)>]) {
    for append in appends {
        // One append may span streams: a multi-stream append keeps it atomic.
        let multi = strata_storage::MultiAppend {
            events: append.iter().map(|&(s, kind)| (stream(&format!("s-{s}")), event(kind))).collect(),
            checks: vec![],
            condition: None,
        };
        let _ = store.append_multi_blocking(multi).unwrap();
    }
}

/// Reads a subscription until it has delivered `expected` events (and its one `CaughtUp`).
async fn drain(mut subscription: Subscription, expected: usize) -> (Vec<RecordedEvent>, usize) {
    let (mut events, mut caught_up) = (Vec::new(), 0);
    while events.len() < expected || caught_up == 0 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), subscription.next())
            .await
            .expect("a subscription stalled")
            .unwrap();
        match message {
            SubscriptionMessage::Events(batch) => {
                assert!(!batch.is_empty());
                events.extend(batch);
            }
            SubscriptionMessage::CaughtUp => caught_up += 1,
            // The plans are far smaller than SUBSCRIPTION_FELL_BEHIND.
            SubscriptionMessage::FellBehind { behind } => panic!("fell behind by {behind} in a small plan"),
        }
    }
    (events, caught_up)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 16, ..ProptestConfig::default() })]

    #[test]
    fn subscriptions_deliver_exactly_their_part_of_the_log(plan in plan()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let storage = SimStorage::new();
        let store = open_sim(&storage, 64 << 10);
        append_all(&store, &plan.before);
        let head = store.head_position().map_or(0, |p| p.value() + 1);
        // Three subscriptions: the whole log, type T1, stream s-2; each from its own start.
        let all_from = |start: &Begin| match start {
            Begin::First => ReadFrom::Start,
            Begin::At(at) => ReadFrom::At(Position::new(*at)),
            Begin::End => ReadFrom::End,
        };
        let type_filter = Filter { event_types: vec![EventType::new("T1").unwrap()], ..Filter::default() };
        let stream_start = match &plan.starts[2] {
            Begin::First => ReadFrom::Start,
            Begin::At(at) => ReadFrom::At(StreamRevision::new(at % 8)),
            Begin::End => ReadFrom::End,
        };
        let stream_head = store.stream_revision("s-2").unwrap().map_or(0, |r| r.value() + 1);
        let subscriptions = [
            store.subscribe_all(all_from(&plan.starts[0]), Filter::default()).with_batch_events_max(plan.batch),
            store.subscribe_all(all_from(&plan.starts[1]), type_filter).with_batch_events_max(plan.batch),
            store.subscribe_stream(stream("s-2"), stream_start).with_batch_events_max(plan.batch),
        ];
        // The log the plan makes: one writer appends in order, so positions follow the plan — after
        // `$store-created` at position 0, written with the first append (`STORE`: neither a stream
        // s-N nor a type TN, so only the whole log's subscription gets it).
        const STORE: u8 = u8::MAX;
        let model: Vec<(u64, u8, u8, u64)> = {
            let mut revisions = [0u64; 4];
            let appended = plan.before.iter().chain(&plan.during).flatten();
            let created = appended.clone().next().map(|_| (0, STORE, STORE, 0));
            created.into_iter().chain(appended.enumerate().map(|(at, &(s, kind))| {
                revisions[s as usize] += 1;
                (at as u64 + 1, s, kind, revisions[s as usize] - 1)
            })).collect()
        };
        let first_position = |start: &Begin| match start {
            Begin::First => 0,
            Begin::At(at) => *at,
            Begin::End => head,
        };
        let expected: [Vec<u64>; 3] = [
            model.iter().filter(|e| e.0 >= first_position(&plan.starts[0])).map(|e| e.0).collect(),
            model.iter().filter(|e| e.0 >= first_position(&plan.starts[1]) && e.2 == 1).map(|e| e.0).collect(),
            model
                .iter()
                .filter(|e| e.1 == 2)
                .filter(|e| match &plan.starts[2] {
                    Begin::First => true,
                    Begin::At(at) => e.3 >= at % 8,
                    Begin::End => e.3 >= stream_head,
                })
                .map(|e| e.0)
                .collect(),
        ];
        // The subscriptions read while the writer appends: catch-up, hand-off and live interleave
        // with the commits.
        let tasks: Vec<_> = subscriptions
            .into_iter()
            .zip(expected.iter().map(Vec::len))
            .map(|(subscription, count)| runtime.spawn(drain(subscription, count)))
            .collect();
        let writer = {
            let (store, during) = (store.clone(), plan.during.clone());
            std::thread::spawn(move || append_all(&store, &during))
        };
        writer.join().unwrap();
        let received: Vec<_> = runtime.block_on(async {
            let mut received = Vec::new();
            for task in tasks {
                received.push(task.await.unwrap());
            }
            received
        });
        prop_assert_eq!(read_everything(&store).len(), model.len());
        for (at, ((events, caught_up), expected)) in received.iter().zip(&expected).enumerate() {
            prop_assert_eq!(*caught_up, 1, "subscription {} sent CaughtUp {} times", at, caught_up);
            let got: Vec<u64> = events.iter().map(|e| e.position.value()).collect();
            prop_assert_eq!(&got, expected, "subscription {} ({:?})", at, plan.starts.get(at));
        }
        drop(runtime);
    }
}

/// A live subscription whose consumer falls more than `SUBSCRIPTION_FELL_BEHIND` behind says so, goes
/// on reading from the log (nothing lost, nothing buffered), and says `CaughtUp` again when live.
#[test]
fn a_live_subscription_that_falls_behind_says_so_and_catches_up() {
    let storage = SimStorage::new();
    let store = open_sim(&storage, 8 << 20);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut subscription = store.subscribe_all(ReadFrom::Start, Filter::default());
    runtime.block_on(async {
        assert_eq!(subscription.next().await.unwrap(), SubscriptionMessage::CaughtUp);
    });
    let total = strata_storage::SUBSCRIPTION_FELL_BEHIND as usize + 500;
    // The log holds `$store-created` (position 0, written with the first append) and the events.
    let in_log = total + 1;
    for batch in 0..total.div_ceil(1_000) {
        let count = (total - batch * 1_000).min(1_000);
        let events = (0..count).map(|_| event(0)).collect();
        let _ = store.append_blocking(stream("s-0"), strata_core::ExpectedRevision::Any, events).unwrap();
    }
    let (mut received, mut messages) = (0, Vec::new());
    runtime.block_on(async {
        while received < in_log || messages.last() != Some(&"caught_up") {
            match subscription.next().await.unwrap() {
                SubscriptionMessage::Events(events) => {
                    assert_eq!(events[0].position.value(), received as u64, "nothing skipped, nothing repeated");
                    received += events.len();
                    messages.push("events");
                }
                SubscriptionMessage::FellBehind { behind } => {
                    assert_eq!(behind, in_log as u64);
                    messages.push("fell_behind");
                }
                SubscriptionMessage::CaughtUp => messages.push("caught_up"),
            }
        }
    });
    assert_eq!(received, in_log);
    assert_eq!(messages.first(), Some(&"fell_behind"));
    assert_eq!(messages.iter().filter(|m| **m == "fell_behind").count(), 1);
}
