//! Consumer groups: competing consumers, acks, retries, parking, ack timeouts, the pinned strategy,
//! durable checkpoints across reopens, bounded buffers under a stalled consumer.

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use strata_core::{ExpectedRevision, StreamId};
use strata_storage::{
    ConsumerGroups, Filter, GroupError, GroupSettings, GroupSource, GroupSpec, GroupStart, NackAction, Options, Store,
    Strategy,
};

fn options() -> Options {
    Options { index_run_events: strata_storage::INDEX_RUN_EVENTS_MIN, ..Options::default() }
}

fn spec(name: &str, source: GroupSource, settings: GroupSettings) -> GroupSpec {
    GroupSpec { name: name.to_owned(), source, start: GroupStart::Start, settings }
}

fn all() -> GroupSource {
    GroupSource::All(Filter { category: Some("order".into()), ..Filter::default() })
}

/// `count` events in 4 order streams (and one unrelated event every 10th). From async tests: the
/// appends block this worker thread, which tokio is told of.
fn write(store: &Store, count: u64) {
    tokio::task::block_in_place(|| write_blocking(store, count));
}

fn write_blocking(store: &Store, count: u64) {
    for n in 0..count {
        commit(store, &format!("order-{}", n % 4), ExpectedRevision::Any, vec![event(&format!("{{\"n\":{n}}}"))]);
        if n % 10 == 0 {
            commit(store, "other-1", ExpectedRevision::Any, vec![event("{}")]);
        }
    }
}

fn order_positions(store: &Store) -> Vec<u64> {
    read_everything(store)
        .iter()
        .filter(|e| e.stream.as_str().starts_with("order-"))
        .map(|e| e.position.value())
        .collect()
}

const NO_WAIT: Duration = Duration::ZERO;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_get_each_event_once_and_the_checkpoint_follows_the_acks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    write(&store, 200);
    let groups = ConsumerGroups::open(&store).unwrap();
    groups.put(spec("billing", all(), GroupSettings::default())).await.unwrap();
    let mut seen: Vec<u64> = Vec::new();
    let mut turn = 0;
    loop {
        let consumer = ["a", "b"][turn % 2];
        turn += 1;
        let deliveries = groups.fetch("billing", consumer, 7, NO_WAIT).await.unwrap();
        if deliveries.is_empty() {
            break;
        }
        seen.extend(deliveries.iter().map(|d| d.event.position.value()));
        let ids: Vec<String> = deliveries.iter().map(|d| d.delivery_id.clone()).collect();
        assert_eq!(groups.ack("billing", &ids).await.unwrap().done, ids.len());
    }
    assert_eq!(seen, order_positions(&store), "every matching event once, in order");
    let info = groups.info("billing").await.unwrap();
    assert_eq!(info.lag_events, 0, "{info:?}");
    assert_eq!(info.checkpoint, store.head_position().map(|p| p.value()));
    assert_eq!(info.in_flight, 0);
    assert_eq!(info.consumers.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_group_goes_on_from_its_checkpoint_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    write(&store, 100);
    let groups = ConsumerGroups::open(&store).unwrap();
    groups.put(spec("billing", all(), GroupSettings::default())).await.unwrap();
    let first = groups.fetch("billing", "a", 30, NO_WAIT).await.unwrap();
    // Ack the first 20 only; 10 stay in flight when the process stops.
    let acked: Vec<String> = first[..20].iter().map(|d| d.delivery_id.clone()).collect();
    groups.ack("billing", &acked).await.unwrap();
    groups.flush().await.unwrap();
    let checkpoint = groups.info("billing").await.unwrap().checkpoint.unwrap();
    assert_eq!(checkpoint, first[20].event.position.value() - 1, "everything before the first unacked event");
    drop(groups);
    drop(store);

    let store = Store::open_with(dir.path(), options()).unwrap();
    let groups = ConsumerGroups::open(&store).unwrap();
    assert_eq!(groups.names(), ["billing"]);
    let mut again = Vec::new();
    loop {
        let deliveries = groups.fetch("billing", "b", 50, NO_WAIT).await.unwrap();
        if deliveries.is_empty() {
            break;
        }
        again.extend(deliveries.iter().map(|d| d.event.position.value()));
        let ids: Vec<String> = deliveries.iter().map(|d| d.delivery_id.clone()).collect();
        groups.ack("billing", &ids).await.unwrap();
    }
    let expected: Vec<u64> = order_positions(&store).into_iter().filter(|&p| p > checkpoint).collect();
    assert_eq!(again, expected, "from the first unacked event on, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_delivery_comes_back_after_the_ack_timeout_and_the_old_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    write(&store, 10);
    let groups = ConsumerGroups::open(&store).unwrap();
    let settings = GroupSettings { ack_timeout: Duration::from_millis(100), ..GroupSettings::default() };
    groups.put(spec("billing", all(), settings)).await.unwrap();
    let held = groups.fetch("billing", "dies", 3, NO_WAIT).await.unwrap();
    assert_eq!(held.len(), 3);
    // Another consumer gets the rest at once, and the three after the timeout (waiting for them).
    let rest = groups.fetch("lives", "lives", 100, NO_WAIT).await;
    assert!(matches!(rest, Err(GroupError::NotFound(_))), "a group by the consumer's name does not exist");
    let rest = groups.fetch("billing", "lives", 100, NO_WAIT).await.unwrap();
    assert_eq!(rest.len(), 7);
    let ids: Vec<String> = rest.iter().map(|d| d.delivery_id.clone()).collect();
    assert_eq!(groups.ack("billing", &ids).await.unwrap().done, 7);
    let started = std::time::Instant::now();
    let redelivered = groups.fetch("billing", "lives", 100, Duration::from_secs(5)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50), "it waited for the timeout");
    assert_eq!(
        redelivered.iter().map(|d| (d.event.position, d.attempt)).collect::<Vec<_>>(),
        held.iter().map(|d| (d.event.position, 2)).collect::<Vec<_>>()
    );
    let stale: Vec<String> = held.iter().map(|d| d.delivery_id.clone()).collect();
    let outcome = groups.ack("billing", &stale).await.unwrap();
    assert_eq!((outcome.done, outcome.unknown.len()), (0, 3), "the first delivery's ids are no longer outstanding");
    let ids: Vec<String> = redelivered.iter().map(|d| d.delivery_id.clone()).collect();
    assert_eq!(groups.ack("billing", &ids).await.unwrap().done, 3);
    assert_eq!(groups.info("billing").await.unwrap().lag_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_parking_then_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    write(&store, 3);
    let groups = ConsumerGroups::open(&store).unwrap();
    let settings = GroupSettings { max_retries: 2, ..GroupSettings::default() };
    groups.put(spec("billing", all(), settings)).await.unwrap();
    // The first event (position 1, after `$store-created`) fails every time: delivered 1 + 2
    // retries, then parked.
    let mut attempts = Vec::new();
    loop {
        let deliveries = groups.fetch("billing", "a", 1, NO_WAIT).await.unwrap();
        let Some(delivery) = deliveries.into_iter().next() else { break };
        if delivery.event.position.value() == 1 {
            attempts.push(delivery.attempt);
            groups.nack("billing", &[delivery.delivery_id], NackAction::Retry).await.unwrap();
        } else {
            groups.ack("billing", &[delivery.delivery_id]).await.unwrap();
        }
    }
    assert_eq!(attempts, [1, 2, 3]);
    let parked = groups.parked("billing").await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].position.value(), parked[0].attempts), (1, 3));
    let info = groups.info("billing").await.unwrap();
    assert_eq!((info.parked, info.lag_events), (1, 0), "a parked event does not hold the checkpoint back");
    // Parking by hand and skipping.
    write(&store, 2);
    let two = groups.fetch("billing", "a", 10, NO_WAIT).await.unwrap();
    assert_eq!(two.len(), 2);
    groups.nack("billing", &[two[0].delivery_id.clone()], NackAction::Park).await.unwrap();
    groups.nack("billing", &[two[1].delivery_id.clone()], NackAction::Skip).await.unwrap();
    assert_eq!(groups.parked("billing").await.unwrap().len(), 2);
    // Parked events survive a reopen, and a replay delivers them again until handled.
    groups.flush().await.unwrap();
    drop(groups);
    let groups = ConsumerGroups::open(&store).unwrap();
    assert_eq!(groups.parked("billing").await.unwrap().len(), 2);
    assert_eq!(groups.replay_parked("billing").await.unwrap(), 2);
    let replayed = groups.fetch("billing", "a", 10, NO_WAIT).await.unwrap();
    assert_eq!(
        replayed.iter().map(|d| d.event.position.value()).collect::<Vec<_>>(),
        [1, two[0].event.position.value()]
    );
    let ids: Vec<String> = replayed.iter().map(|d| d.delivery_id.clone()).collect();
    groups.ack("billing", &ids).await.unwrap();
    assert!(groups.parked("billing").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pinned_strategy_keeps_each_stream_in_order_across_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    write(&store, 400);
    let groups = ConsumerGroups::open(&store).unwrap();
    let settings = GroupSettings { strategy: Strategy::Pinned, max_in_flight: 8, ..GroupSettings::default() };
    groups.put(spec("billing", all(), settings)).await.unwrap();
    let handled = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, StreamId, u64)>::new()));
    let in_flight = std::sync::Arc::new(std::sync::Mutex::new(HashSet::<StreamId>::new()));
    let consumers: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|consumer| {
            let (groups, handled, in_flight) = (groups.clone(), handled.clone(), in_flight.clone());
            tokio::spawn(async move {
                let mut idle = 0;
                while idle < 3 {
                    let deliveries = groups.fetch("billing", consumer, 4, Duration::from_millis(50)).await.unwrap();
                    if deliveries.is_empty() {
                        idle += 1;
                        continue;
                    }
                    idle = 0;
                    let mut streams = HashSet::new();
                    for delivery in &deliveries {
                        let stream = delivery.event.stream.clone();
                        assert!(streams.insert(stream.clone()), "one event per stream at a time");
                        assert!(in_flight.lock().unwrap().insert(stream), "a stream is with one consumer at a time");
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    for delivery in &deliveries {
                        in_flight.lock().unwrap().remove(&delivery.event.stream);
                        handled.lock().unwrap().push((
                            consumer.to_owned(),
                            delivery.event.stream.clone(),
                            delivery.event.revision.value(),
                        ));
                        groups.ack("billing", std::slice::from_ref(&delivery.delivery_id)).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for consumer in consumers {
        consumer.await.unwrap();
    }
    let handled = handled.lock().unwrap();
    assert_eq!(handled.len(), 400);
    let mut per_stream: BTreeMap<&StreamId, Vec<u64>> = BTreeMap::new();
    let mut by_consumer: HashMap<&str, usize> = HashMap::new();
    for (consumer, stream, revision) in handled.iter() {
        per_stream.entry(stream).or_default().push(*revision);
        *by_consumer.entry(consumer).or_default() += 1;
    }
    for (stream, revisions) in per_stream {
        assert_eq!(revisions, (0..100).collect::<Vec<_>>(), "{stream} handled in order");
    }
    assert!(by_consumer.len() >= 2, "the work was shared: {by_consumer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_bounds_the_buffer_and_does_not_stop_the_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let groups = ConsumerGroups::open(&store).unwrap();
    let settings = GroupSettings { max_in_flight: 10, ..GroupSettings::default() };
    groups.put(spec("billing", all(), settings)).await.unwrap();
    write(&store, 20);
    let held = groups.fetch("billing", "stalled", 100, NO_WAIT).await.unwrap();
    assert_eq!(held.len(), 10, "max_in_flight");
    // Writers go on; the group reads no further than its buffer.
    let writer = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || write_blocking(&store, 3_000))
    };
    tokio::time::timeout(Duration::from_secs(60), writer).await.expect("writers are not held up").unwrap();
    assert!(groups.fetch("billing", "stalled", 100, NO_WAIT).await.unwrap().is_empty(), "in flight is full");
    let info = groups.info("billing").await.unwrap();
    assert_eq!(info.in_flight, 10);
    assert!(info.lag_events >= 3_000, "{info:?}");
    assert!(info.lag_seconds >= 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_groups_from_the_end_definitions_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    write(&store, 8);
    let groups = ConsumerGroups::open(&store).unwrap();
    let source = GroupSource::Stream(stream("order-1"));
    let new = GroupSpec { start: GroupStart::End, ..spec("shipping", source.clone(), GroupSettings::default()) };
    groups.put(new.clone()).await.unwrap();
    assert!(groups.fetch("shipping", "a", 10, NO_WAIT).await.unwrap().is_empty(), "from the end");
    write(&store, 8);
    let deliveries = groups.fetch("shipping", "a", 10, NO_WAIT).await.unwrap();
    assert_eq!(deliveries.iter().map(|d| d.event.revision.value()).collect::<Vec<_>>(), [2, 3]);
    // A long poll returns as soon as an event arrives.
    let waiting = {
        let groups = groups.clone();
        tokio::spawn(async move { groups.fetch("shipping", "b", 10, Duration::from_secs(30)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::task::block_in_place(|| commit(&store, "order-1", ExpectedRevision::Any, vec![event("{}")]));
    let woken = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken by the append").unwrap();
    assert_eq!(woken.len(), 1);
    // Settings change in place; source or start do not.
    let changed = GroupSpec { settings: GroupSettings { max_retries: 1, ..GroupSettings::default() }, ..new.clone() };
    groups.put(changed).await.unwrap();
    let moved = GroupSpec { source: GroupSource::Stream(stream("order-2")), ..new.clone() };
    assert!(matches!(groups.put(moved).await, Err(GroupError::Conflict(_))));
    for bad in ["", ".hidden", "a/b", "sp ace", &"x".repeat(129)] {
        let error = groups.put(spec(bad, source.clone(), GroupSettings::default())).await.unwrap_err();
        assert!(matches!(error, GroupError::Invalid(_)), "{bad:?}: {error}");
    }
    let zero = GroupSettings { max_in_flight: 0, ..GroupSettings::default() };
    assert!(matches!(groups.put(spec("z", source.clone(), zero)).await, Err(GroupError::Invalid(_))));
    assert!(matches!(groups.fetch("shipping", "a", 0, NO_WAIT).await, Err(GroupError::Invalid(_))));
    assert!(matches!(groups.fetch("shipping", "", 1, NO_WAIT).await, Err(GroupError::Invalid(_))));
    let outcome = groups.ack("shipping", &["nonsense".to_owned(), "1.x".to_owned()]).await.unwrap();
    assert_eq!(outcome.unknown.len(), 2);
    groups.delete("shipping").await.unwrap();
    assert!(matches!(groups.info("shipping").await, Err(GroupError::NotFound(_))));
    assert!(matches!(groups.delete("shipping").await, Err(GroupError::NotFound(_))));
    drop(groups);
    assert!(ConsumerGroups::open(&store).unwrap().names().is_empty(), "a deleted group stays deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_event_waits_for_its_stream_under_the_pinned_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let groups = ConsumerGroups::open(&store).unwrap();
    let settings = GroupSettings { strategy: Strategy::Pinned, ..GroupSettings::default() };
    groups.put(spec("billing", GroupSource::Stream(stream("order-0")), settings)).await.unwrap();
    tokio::task::block_in_place(|| {
        for _ in 0..2 {
            commit(&store, "order-0", ExpectedRevision::Any, vec![event("{}")]);
        }
    });
    let first = groups.fetch("billing", "a", 10, NO_WAIT).await.unwrap();
    assert_eq!(first.len(), 1, "one event of a stream at a time");
    groups.nack("billing", &[first[0].delivery_id.clone()], NackAction::Park).await.unwrap();
    let second = groups.fetch("billing", "a", 10, NO_WAIT).await.unwrap();
    assert_eq!(second[0].event.revision.value(), 1);
    assert_eq!(groups.replay_parked("billing").await.unwrap(), 1);
    assert!(groups.fetch("billing", "b", 10, NO_WAIT).await.unwrap().is_empty(), "the stream has an event out");
    assert!(groups.fetch("billing", "a", 10, NO_WAIT).await.unwrap().is_empty(), "also for its owner");
    groups.ack("billing", &[second[0].delivery_id.clone()]).await.unwrap();
    let replayed = groups.fetch("billing", "a", 10, NO_WAIT).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!((replayed[0].event.revision.value(), replayed[0].attempt), (0, 2), "attempts go on counting");
    // The id of the delivery before the parking is stale.
    let stale = groups.ack("billing", &[first[0].delivery_id.clone()]).await.unwrap();
    assert_eq!(stale.unknown.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_ends_waiting_fetches_for_good_and_a_damaged_file_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let groups = ConsumerGroups::open(&store).unwrap();
    groups.put(spec("billing", all(), GroupSettings::default())).await.unwrap();
    let waiting = {
        let groups = groups.clone();
        tokio::spawn(async move { groups.fetch("billing", "a", 10, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    groups.delete("billing").await.unwrap();
    write(&store, 5);
    let ended = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the wait ended").unwrap();
    assert!(matches!(ended, Err(GroupError::NotFound(_))), "{ended:?}");
    groups.flush().await.unwrap();
    drop(groups);
    std::fs::write(dir.path().join("groups").join("broken.group"), b"not a group file").unwrap();
    let groups = ConsumerGroups::open(&store).unwrap();
    assert!(groups.names().is_empty(), "the deleted group stays deleted; the damaged one is not loaded");
    let problems = groups.load_problems();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("broken.group"), "{problems:?}");
    assert!(dir.path().join("groups").join("broken.group.damaged").exists());
}

/// A group's saved state restored into another store holding the same events: a stream group from
/// the end keeps the start it resolved then (not the head of the restore), its checkpoint and its
/// parked events, durably (the restored group survives a reopen); a state beyond the store's events
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_group_restored_elsewhere_resumes_where_it_was() {
    let (dir, copy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = Store::open_with(dir.path(), options()).unwrap();
    write(&store, 8);
    let groups = ConsumerGroups::open(&store).unwrap();
    let source = GroupSource::Stream(stream("order-1"));
    let settings = GroupSettings { max_retries: 0, ..GroupSettings::default() };
    groups.put(GroupSpec { start: GroupStart::End, ..spec("shipping", source, settings) }).await.unwrap();
    write(&store, 12);
    let deliveries = groups.fetch("shipping", "a", 2, NO_WAIT).await.unwrap();
    assert_eq!(deliveries.iter().map(|d| d.event.revision.value()).collect::<Vec<_>>(), [2, 3]);
    groups.ack("shipping", &[deliveries[1].delivery_id.clone()]).await.unwrap();
    groups.nack("shipping", &[deliveries[0].delivery_id.clone()], NackAction::Park).await.unwrap();
    let saved = groups.saved("shipping").await.unwrap();
    assert_eq!((saved.first, saved.checkpoint, saved.parked.len()), (2, Some(3), 1));

    // The copy holds the stream's revisions 0–6 (more than the original's 0–4): the group resumes
    // after its checkpoint, not from the copy's head.
    let copy = Store::open_with(copy_dir.path(), options()).unwrap();
    write(&copy, 20);
    write(&copy, 8);
    let restored = ConsumerGroups::open(&copy).unwrap();
    restored.restore(saved.clone()).await.unwrap();
    assert!(matches!(restored.restore(saved.clone()).await, Err(GroupError::Conflict(_))));
    drop(restored);
    let restored = ConsumerGroups::open(&copy).unwrap();
    assert_eq!(restored.saved("shipping").await.unwrap(), saved, "durable across a reopen");
    let next = restored.fetch("shipping", "b", 10, NO_WAIT).await.unwrap();
    assert_eq!(next.iter().map(|d| d.event.revision.value()).collect::<Vec<_>>(), [4, 5, 6]);
    assert_eq!(restored.parked("shipping").await.unwrap(), groups.parked("shipping").await.unwrap());

    // Into a store that does not hold what the state refers to: refused, nothing created.
    let (empty_dir, empty) = {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), options()).unwrap();
        (dir, store)
    };
    let nothing = ConsumerGroups::open(&empty).unwrap();
    match nothing.restore(saved).await {
        Err(GroupError::Invalid(message)) => assert!(message.contains("restore the events first"), "{message}"),
        other => panic!("a state beyond the store's events: {other:?}"),
    }
    assert!(nothing.names().is_empty());
    drop((nothing, empty, empty_dir));
}
