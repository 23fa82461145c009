//! Cluster nodes in one process over a real nats-server: one leader at a time, its appends on every
//! replica in the same order with the same hashes, followers refusing to decide, failover when the
//! leader goes, a restarted node catching up from where its replica stopped, and a replica of another
//! log refused at start.

use std::path::Path;
use std::time::{Duration, Instant};
use strata_cluster::testing::cluster_or_skip;
use strata_cluster::{ClusterConfig, Node, Role, StartError};
use strata_core::{ExpectedRevision, NewEvent, Position, StreamId};
use strata_storage::{AppendError, AppendOutcome, Direction, Options, ReadFrom, Store};

fn config(urls: &[String], cluster: &str, node: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(urls.to_vec(), cluster, node, &format!("http://127.0.0.1:1/{node}"));
    config.replicas = 1;
    config.lease = Duration::from_millis(1500);
    config.renew_every = Duration::from_millis(300);
    config
}

async fn start(urls: &[String], cluster: &str, node: &str, dir: &Path) -> Node {
    Node::start(config(urls, cluster, node), dir, Options::default()).await.expect("the node starts")
}

async fn leader_of(nodes: &[&Node], within: Duration) -> usize {
    let began = Instant::now();
    loop {
        let leaders: Vec<usize> = (0..nodes.len()).filter(|&at| nodes[at].role() == Role::Leader).collect();
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(leaders.len() <= 1, "two nodes lead at once: {leaders:?}");
        assert!(began.elapsed() < within, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(n: usize) -> NewEvent {
    let event_type = strata_core::EventType::new("Deposited").expect("a valid type");
    NewEvent::new(event_type, format!("{{\"n\":{n}}}").into_bytes())
}

async fn append(store: &Store, stream: &str, n: usize) -> Result<AppendOutcome, AppendError> {
    store.append(StreamId::new(stream).expect("a valid stream"), ExpectedRevision::Any, vec![event(n)]).await
}

async fn commit(store: &Store, stream: &str, n: usize) {
    let outcome = append(store, stream, n).await.expect("the append is answered");
    assert!(matches!(outcome, AppendOutcome::Committed(_)), "{outcome:?}");
}

fn all(store: &Store) -> Vec<(u64, String, Option<strata_core::EventHash>)> {
    store
        .read_all(ReadFrom::Start, Direction::Forward, 100_000)
        .expect("read")
        .into_iter()
        .map(|event| (event.position.value(), event.stream.as_str().to_owned(), event.hash))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_leader_replicates_fails_over_and_restarted_nodes_catch_up() {
    let Some(nats) = cluster_or_skip(1, "one_leader_replicates_fails_over_and_restarted_nodes_catch_up") else {
        return;
    };
    let urls = nats.urls();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start(&urls, "rep", "a", dirs[0].path()).await;
    let b = start(&urls, "rep", "b", dirs[1].path()).await;
    let c = start(&urls, "rep", "c", dirs[2].path()).await;
    let nodes = [&a, &b, &c];
    let leader = leader_of(&nodes, Duration::from_secs(10)).await;

    // Appends on the leader commit; a follower's committer refuses to decide (nothing written).
    for n in 0..50 {
        let outcome =
            append(nodes[leader].store(), &format!("account-{}", n % 5), n).await.expect("append on the leader");
        assert!(matches!(outcome, AppendOutcome::Committed(_)), "{outcome:?}");
    }
    let follower = (leader + 1) % 3;
    match append(nodes[follower].store(), "account-0", 99).await {
        Err(AppendError::NotWritten { reason }) => assert!(reason.contains("not the cluster's leader"), "{reason}"),
        other => panic!("a follower decided an append: {other:?}"),
    }
    // Every replica holds the same log: $store-created and the 50 events, same hashes.
    let head = nodes[leader].store().head_position().unwrap().value();
    assert_eq!(head, 50);
    for node in nodes {
        assert!(node.wait_for_position(head, Duration::from_secs(10)).await, "{} caught up", node.config().node_id);
    }
    let expected = all(nodes[leader].store());
    assert_eq!(expected.len(), 51);
    assert!(expected.iter().all(|(_, _, hash)| hash.is_some()));
    for node in nodes {
        assert_eq!(all(node.store()), expected, "{}'s replica", node.config().node_id);
        assert_eq!(node.store().store_created(), nodes[leader].store().store_created());
    }

    // A stray message on the log's subject (not a frame) and a valid-looking frame of another
    // history: every replica skips both alike, and appends go on after them.
    let stray = async_nats::connect(urls[0].clone()).await.unwrap();
    let js = async_nats::jetstream::new(stray);
    let subject = "strata.rep.default.log";
    js.publish(subject, "not a frame".into()).await.unwrap().await.unwrap();
    let mut foreign = Vec::new();
    {
        // A frame from a store of its own, published as if it continued this log.
        let dir = tempfile::tempdir().unwrap();
        let other = Store::open(dir.path()).unwrap();
        commit(&other, "elsewhere", 1).await;
        drop(other);
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .unwrap();
        let bytes = std::fs::read(segment).unwrap();
        let header = strata_storage::format::SEGMENT_HEADER_BYTES as usize;
        let (_, keys) = strata_storage::format::decode_frame(&bytes[header..]).unwrap();
        assert!(!keys.is_empty());
        let length = strata_storage::format::FRAME_HEADER_BYTES
            + u32::from_le_bytes(bytes[header + 4..header + 8].try_into().unwrap()) as usize;
        foreign.extend_from_slice(&bytes[header..header + length]);
    }
    js.publish(subject, foreign.into()).await.unwrap().await.unwrap();
    for n in 50..60 {
        commit(nodes[leader].store(), &format!("account-{}", n % 5), n).await;
    }
    let head = nodes[leader].store().head_position().unwrap().value();
    assert_eq!(head, 60, "the skipped messages take no positions");
    for node in nodes {
        assert!(node.wait_for_position(head, Duration::from_secs(10)).await);
        assert_eq!(all(node.store()), all(nodes[leader].store()), "{}'s replica", node.config().node_id);
        assert_eq!(node.store().stats().frames_skipped, 2, "{} skipped the two messages", node.config().node_id);
    }

    // The leader goes (releasing its lease): another node leads, with the whole log.
    let leader_id = nodes[leader].config().node_id.clone();
    let mut remaining: Vec<Node> = Vec::new();
    let mut stopped_dir = None;
    for (at, node) in [a, b, c].into_iter().enumerate() {
        if at == leader {
            let store = node.shutdown().await;
            drop(store);
            stopped_dir = Some(at);
        } else {
            remaining.push(node);
        }
    }
    let survivors: Vec<&Node> = remaining.iter().collect();
    let new_leader = leader_of(&survivors, Duration::from_secs(10)).await;
    assert_ne!(survivors[new_leader].config().node_id, leader_id);
    for n in 60..90 {
        commit(survivors[new_leader].store(), &format!("account-{}", n % 5), n).await;
    }
    let head = survivors[new_leader].store().head_position().unwrap().value();
    assert_eq!(head, 90, "positions stay dense across the failover");

    // The old leader restarts on its data: it resumes from its replica and catches up.
    let dir = dirs[stopped_dir.unwrap()].path();
    let back = start(&urls, "rep", &leader_id, dir).await;
    assert!(back.wait_for_position(head, Duration::from_secs(10)).await);
    assert_eq!(all(back.store()), all(survivors[new_leader].store()));
    assert_ne!(back.role(), Role::Leader, "the returning node does not lead while the lease is held");
    for node in remaining {
        node.shutdown().await;
    }
    back.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_of_another_log_is_refused_at_start() {
    let Some(nats) = cluster_or_skip(1, "a_replica_of_another_log_is_refused_at_start") else { return };
    let urls = nats.urls();
    // A store with its own history…
    let foreign = tempfile::tempdir().unwrap();
    {
        let store = Store::open(foreign.path()).unwrap();
        commit(&store, "elsewhere", 1).await;
    }
    // …is refused by an empty cluster log,
    match Node::start(config(&urls, "other", "x"), foreign.path(), Options::default()).await {
        Err(StartError::Refused(reason)) => assert!(reason.contains("belongs to another log"), "{reason}"),
        other => panic!("a foreign replica started: {other:?}"),
    }
    // …and by a cluster log with a history of its own.
    let dir = tempfile::tempdir().unwrap();
    let node = start(&urls, "other", "y", dir.path()).await;
    leader_of(&[&node], Duration::from_secs(10)).await;
    commit(node.store(), "here", 1).await;
    match Node::start(config(&urls, "other", "x"), foreign.path(), Options::default()).await {
        Err(StartError::Refused(reason)) => {
            assert!(reason.contains("belongs to another log"), "{reason}");
            let ours = node.store().store_created().unwrap().store_id.to_string();
            assert!(reason.contains(&ours), "names the log's store: {reason}");
        }
        other => panic!("a foreign replica started: {other:?}"),
    }
    node.shutdown().await;
    let _ = Position::new(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_that_goes_backwards_halts_writes() {
    let Some(nats) = cluster_or_skip(1, "a_log_that_goes_backwards_halts_writes") else { return };
    let urls = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let node = start(&urls, "back", "a", dir.path()).await;
    leader_of(&[&node], Duration::from_secs(10)).await;
    for n in 0..5 {
        commit(node.store(), "account-1", n).await;
    }
    // The log's stream replaced by an empty one of the same name and subject (a reset, or a restore
    // of an old backup): its last sequence is now below what the node applied.
    let js = async_nats::jetstream::new(async_nats::connect(urls[0].clone()).await.unwrap());
    let name = node.config().stream_name("default");
    let stream_config = js.get_stream(&name).await.unwrap().info().await.unwrap().config.clone();
    js.delete_stream(&name).await.unwrap();
    js.create_stream(stream_config).await.unwrap();
    let began = Instant::now();
    let reason = loop {
        if let Some(reason) = node.status().halted {
            break reason;
        }
        assert!(began.elapsed() < Duration::from_secs(15), "the node did not halt: {:?}", node.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("backwards"), "{reason}");
    assert_ne!(node.role(), Role::Leader, "a halted node does not lead");
    assert!(node.stale().is_some_and(|stale| stale.contains("no longer follows")), "its reads answer stale");
    match append(node.store(), "account-1", 99).await {
        Err(AppendError::NotWritten { .. }) => {}
        other => panic!("a halted node decided an append: {other:?}"),
    }
    // What it held is kept: the five events are still in its replica.
    assert_eq!(node.store().head_position().unwrap().value(), 5);
    node.shutdown().await;
}

/// The groups' state in the cluster's bucket: the node that leads next resumes a group from what
/// the last one saved, and a save by a node whose view is out of date fails instead of overwriting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_groups_resume_on_another_node_and_a_stale_save_fails() {
    use strata_storage::{ConsumerGroups, GroupSettings, GroupSource, GroupSpec, GroupStart};
    let Some(nats) = cluster_or_skip(1, "consumer_groups_resume_on_another_node_and_a_stale_save_fails") else {
        return;
    };
    let urls = nats.urls();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(&urls, "grp", "a", dir_a.path()).await;
    let b = start(&urls, "grp", "b", dir_b.path()).await;
    let leader = leader_of(&[&a, &b], Duration::from_secs(10)).await;
    let (leader, other) = if leader == 0 { (&a, &b) } else { (&b, &a) };
    for n in 0..10 {
        commit(leader.store(), "order-1", n).await;
    }
    assert!(other.wait_for_position(10, Duration::from_secs(10)).await);

    let on_leader = ConsumerGroups::open_with(leader.store(), leader.group_states()).unwrap();
    let spec = GroupSpec {
        name: "billing".to_owned(),
        source: GroupSource::Stream(StreamId::new("order-1").unwrap()),
        start: GroupStart::Start,
        settings: GroupSettings::default(),
    };
    on_leader.put(spec).await.unwrap();
    let deliveries = on_leader.fetch("billing", "c1", 4, Duration::ZERO).await.unwrap();
    assert_eq!(deliveries.len(), 4);
    let ids: Vec<String> = deliveries.iter().map(|delivery| delivery.delivery_id.clone()).collect();
    assert_eq!(on_leader.ack("billing", &ids).await.unwrap().done, 4);
    on_leader.flush().await.unwrap();

    // A damaged value in the bucket (not a group's state) is left out and reported; it takes no
    // other group down.
    let js = async_nats::jetstream::new(async_nats::connect(urls[0].clone()).await.unwrap());
    let bucket = js.get_key_value(other.config().bucket()).await.unwrap();
    let junk_key = format!("groups.{}", "junk".bytes().map(|b| format!("{b:02x}")).collect::<String>());
    bucket.put(junk_key, "not a group".into()).await.unwrap();

    // The other node loads the group from the bucket and goes on after the four acked events.
    let on_other = ConsumerGroups::open_with(other.store(), other.group_states()).unwrap();
    assert_eq!(on_other.names(), vec!["billing".to_owned()]);
    let problems = on_other.load_problems();
    assert!(
        problems.len() == 1 && problems[0].contains("group junk") && problems[0].contains("damaged"),
        "{problems:?}"
    );
    on_other.claim_loaded().await.unwrap();
    assert_eq!(on_other.info("billing").await.unwrap().checkpoint, Some(3));
    let next = on_other.fetch("billing", "c2", 10, Duration::ZERO).await.unwrap();
    assert_eq!(next.first().map(|delivery| delivery.event.revision.value()), Some(4));
    let ids: Vec<String> = next.iter().map(|delivery| delivery.delivery_id.clone()).collect();
    on_other.ack("billing", &ids[..2]).await.unwrap();
    on_other.flush().await.unwrap();

    // The first node, still working on what it loaded, cannot overwrite that.
    let late = on_leader.fetch("billing", "c1", 2, Duration::ZERO).await.unwrap();
    let ids: Vec<String> = late.iter().map(|delivery| delivery.delivery_id.clone()).collect();
    on_leader.ack("billing", &ids).await.unwrap();
    let error = on_leader.flush().await.expect_err("a save over a newer state fails");
    assert!(error.to_string().contains("is not the one this node holds"), "{error}");
    // Loaded again and claimed (what a node does when it starts leading), it sees what the other
    // saved — and the other, still working on what it loaded, can no longer save.
    on_leader.reload(true).await.unwrap();
    assert_eq!(on_leader.info("billing").await.unwrap().checkpoint, Some(5));
    let ids: Vec<String> = next.iter().map(|delivery| delivery.delivery_id.clone()).collect();
    assert!(on_other.ack("billing", &ids[2..4]).await.unwrap().done > 0);
    assert!(on_other.flush().await.is_err(), "a save by a node that did not claim fails");
    // A long poll on a state that is loaded again meanwhile is told to retry, not "no such group".
    let polling = {
        let on_other = on_other.clone();
        tokio::spawn(async move { on_other.fetch("billing", "c3", 10, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    on_other.reload(false).await.unwrap();
    match polling.await.unwrap() {
        Err(strata_storage::GroupError::Unavailable(reason)) => assert!(reason.contains("retry"), "{reason}"),
        other => panic!("a fetch on a replaced state answered {other:?}"),
    }
    let next: Vec<_> = on_other.fetch("billing", "c2", 10, Duration::ZERO).await.unwrap();
    let ids: Vec<String> = next.iter().map(|delivery| delivery.delivery_id.clone()).collect();
    // A delete is the leader's too, and a stale node cannot bring the group back.
    on_leader.delete("billing").await.unwrap();
    assert!(on_other.ack("billing", &ids).await.unwrap().done > 0, "acks what it holds");
    assert!(on_other.flush().await.is_err(), "a deleted group's late save fails");
    on_other.reload(false).await.unwrap();
    assert!(on_other.names().is_empty(), "the group stays deleted");
    on_leader.reload(true).await.unwrap();
    assert!(on_leader.names().is_empty());
    drop((on_leader, on_other));
    a.shutdown().await;
    b.shutdown().await;
}

#[test]
fn a_three_server_nats_cluster_starts() {
    let Some(nats) = cluster_or_skip(3, "a_three_server_nats_cluster_starts") else { return };
    assert_eq!(nats.urls().len(), 3);
}

/// A follower's replica damaged while it was down, as a power loss can leave it (its frames are not
/// synced one by one): a 4 KiB page lost in the middle of its log, later pages intact. The node does
/// not refuse to start: it keeps the longest verified prefix, sets the rest aside, catches up from
/// the cluster's log, and holds the same log as the leader, hashes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_damaged_by_a_power_loss_keeps_its_verified_prefix_and_catches_up() {
    let Some(nats) = cluster_or_skip(1, "a_replica_damaged_by_a_power_loss_keeps_its_verified_prefix_and_catches_up")
    else {
        return;
    };
    let urls = nats.urls();
    // Small segments, so that the damage lies in a sealed segment with segments after it.
    let options = || Options { segment_size_bytes: 8 << 10, ..Options::default() };
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Node::start(config(&urls, "power", "a"), leader_dir.path(), options()).await.unwrap();
    leader_of(&[&leader], Duration::from_secs(10)).await;
    let follower = Node::start(config(&urls, "power", "b"), follower_dir.path(), options()).await.unwrap();
    let pad = "x".repeat(300);
    for n in 0..80 {
        let event = NewEvent::new(
            strata_core::EventType::new("Noted").unwrap(),
            format!("{{\"n\":{n},\"pad\":\"{pad}\"}}").into_bytes(),
        );
        let stream = StreamId::new(format!("account-{}", n % 3)).unwrap();
        let outcome = leader.store().append(stream, ExpectedRevision::Any, vec![event]).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Committed(_)), "{outcome:?}");
    }
    let head = leader.store().head_position().unwrap().value();
    assert!(follower.wait_for_position(head, Duration::from_secs(10)).await);
    drop(follower.shutdown().await);
    drop(follower);
    // Until the node's last tasks let go of the store (its directory lock).
    let began = Instant::now();
    loop {
        match Store::open_with(follower_dir.path(), options()) {
            Ok(store) => break drop(store),
            Err(strata_storage::OpenError::Locked { .. }) if began.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("the follower's store: {other}"),
        }
    }

    // The page lost: in the third segment of the follower's log. Its index runs, written at the
    // clean shutdown, are gone with the power (none covered unsynced frames).
    let mut segments: Vec<_> = std::fs::read_dir(follower_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 5, "{segments:?}");
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&segments[2]).unwrap();
        file.write_all_at(&[0u8; 4096], 4096).unwrap();
    }
    let index = follower_dir.path().join("index");
    if index.exists() {
        std::fs::remove_dir_all(&index).unwrap();
    }
    // As an embedded store it would not open.
    match Store::open_with(follower_dir.path(), options()) {
        Err(strata_storage::OpenError::Corrupted(_)) => {}
        other => panic!("an embedded open of the damaged replica: {:?}", other.map(|_| ())),
    }

    for n in 80..90 {
        commit(leader.store(), &format!("account-{}", n % 3), n as usize).await;
    }
    let head = leader.store().head_position().unwrap().value();
    let back = Node::start(config(&urls, "power", "b"), follower_dir.path(), options())
        .await
        .expect("the damaged replica starts");
    assert!(!back.store().recovery_report().set_aside.is_empty(), "{:?}", back.store().recovery_report());
    assert!(back.wait_for_position(head, Duration::from_secs(10)).await, "caught up");
    assert_eq!(all(back.store()), all(leader.store()), "the same log, hashes included");
    back.shutdown().await;
    leader.shutdown().await;
}

/// The pinned strategy across a failover: each stream's events go to one consumer at a time, in
/// revision order; the leader goes with deliveries in flight; on the node that leads next the group
/// resumes from its saved checkpoint and each stream's events come again one after another in
/// revision order — those after the checkpoint delivered again (at least once), none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pinned_group_keeps_each_streams_order_across_a_failover() {
    use std::collections::HashMap;
    use strata_storage::{ConsumerGroups, Filter, GroupSettings, GroupSource, GroupSpec, GroupStart, Strategy};
    let Some(nats) = cluster_or_skip(1, "a_pinned_group_keeps_each_streams_order_across_a_failover") else {
        return;
    };
    let urls = nats.urls();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(&urls, "pin", "a", dir_a.path()).await;
    let b = start(&urls, "pin", "b", dir_b.path()).await;
    let first = leader_of(&[&a, &b], Duration::from_secs(10)).await;
    let (leader, other) = if first == 0 { (a, b) } else { (b, a) };
    for n in 0..60 {
        commit(leader.store(), &format!("order-{}", n % 3), n).await;
    }
    assert!(other.wait_for_position(60, Duration::from_secs(10)).await);
    let spec = GroupSpec {
        name: "shipping".to_owned(),
        source: GroupSource::All(Filter { category: Some("order".to_owned()), ..Filter::default() }),
        start: GroupStart::Start,
        settings: GroupSettings { strategy: Strategy::Pinned, ..GroupSettings::default() },
    };
    // Delivered (stream, revision), in delivery order, per leader.
    let mut epochs: Vec<Vec<(String, u64)>> = vec![Vec::new(), Vec::new()];
    let on_leader = ConsumerGroups::open_with(leader.store(), leader.group_states()).unwrap();
    on_leader.put(spec).await.unwrap();
    for _ in 0..4 {
        for consumer in ["c1", "c2"] {
            let deliveries = on_leader.fetch("shipping", consumer, 5, Duration::ZERO).await.unwrap();
            let mut streams: Vec<&str> = deliveries.iter().map(|d| d.event.stream.as_str()).collect();
            streams.sort_unstable();
            streams.dedup();
            assert_eq!(streams.len(), deliveries.len(), "one event of a stream at a time: {deliveries:?}");
            epochs[0].extend(deliveries.iter().map(|d| (d.event.stream.to_string(), d.event.revision.value())));
            let ids: Vec<String> = deliveries.iter().map(|d| d.delivery_id.clone()).collect();
            on_leader.ack("shipping", &ids).await.unwrap();
        }
    }
    // Two deliveries in flight when the leader goes.
    let held = on_leader.fetch("shipping", "c1", 2, Duration::ZERO).await.unwrap();
    assert_eq!(held.len(), 2);
    epochs[0].extend(held.iter().map(|d| (d.event.stream.to_string(), d.event.revision.value())));
    on_leader.flush().await.unwrap();
    let checkpoint = on_leader.info("shipping").await.unwrap().checkpoint.expect("a checkpoint");
    drop(on_leader);
    drop(leader.shutdown().await);
    drop(leader);

    leader_of(&[&other], Duration::from_secs(10)).await;
    let on_other = ConsumerGroups::open_with(other.store(), other.group_states()).unwrap();
    on_other.claim_loaded().await.unwrap();
    assert_eq!(on_other.info("shipping").await.unwrap().checkpoint, Some(checkpoint));
    loop {
        let mut fetched = 0;
        for consumer in ["c2", "c3"] {
            let deliveries = on_other.fetch("shipping", consumer, 5, Duration::ZERO).await.unwrap();
            fetched += deliveries.len();
            epochs[1].extend(deliveries.iter().map(|d| (d.event.stream.to_string(), d.event.revision.value())));
            let ids: Vec<String> = deliveries.iter().map(|d| d.delivery_id.clone()).collect();
            on_other.ack("shipping", &ids).await.unwrap();
        }
        if fetched == 0 {
            break;
        }
    }
    // Per stream: in order within each leader's deliveries; the second resumes no later than where
    // the first stopped acking (redelivering the events after the checkpoint) and runs to the end.
    let positions: HashMap<(String, u64), u64> = other
        .store()
        .read_all(ReadFrom::Start, Direction::Forward, 1000)
        .unwrap()
        .into_iter()
        .filter(|event| event.stream.as_str().starts_with("order-"))
        .map(|event| ((event.stream.to_string(), event.revision.value()), event.position.value()))
        .collect();
    for stream in ["order-0", "order-1", "order-2"] {
        let of = |epoch: &Vec<(String, u64)>| -> Vec<u64> {
            epoch.iter().filter(|(s, _)| s == stream).map(|(_, revision)| *revision).collect()
        };
        let (before, after) = (of(&epochs[0]), of(&epochs[1]));
        assert!(before.windows(2).all(|w| w[1] == w[0] + 1), "{stream} in order on the first leader: {before:?}");
        assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "{stream} in order on the second leader: {after:?}");
        let resumed = *after.first().expect("the stream resumes");
        let expected = (0..20u64)
            .find(|&revision| positions[&(stream.to_owned(), revision)] > checkpoint)
            .expect("events after the checkpoint");
        assert_eq!(resumed, expected, "{stream} resumes at its first event after the checkpoint {checkpoint}");
        assert!(resumed <= before.last().map_or(0, |last| last + 1), "{stream}: nothing skipped");
        assert_eq!(after.last(), Some(&19), "{stream} runs to its end");
    }
    other.shutdown().await;
}

/// The start-up checks run again whenever the node connects to NATS anew: its server restarted with
/// a `max_payload` too small for the largest frame one append makes halts writes on the node, which
/// says why, while its reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_fails_the_checks_after_a_reconnect_halts_writes() {
    let Some(mut nats) = cluster_or_skip(1, "a_server_that_fails_the_checks_after_a_reconnect_halts_writes") else {
        return;
    };
    let urls = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let node = start(&urls, "recheck", "a", dir.path()).await;
    leader_of(&[&node], Duration::from_secs(10)).await;
    for n in 0..5 {
        commit(node.store(), "account-1", n).await;
    }
    assert!(node.status().halted.is_none());
    nats.kill(0);
    nats.set_max_payload(0, "1MB").unwrap();
    nats.start_node(0).unwrap();
    nats.wait_ready(0, Duration::from_secs(30)).unwrap();
    let began = Instant::now();
    let reason = loop {
        if let Some(reason) = node.status().halted {
            break reason;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "no halt after the reconnect: {:?}", node.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("after connecting to NATS again") && reason.contains("max_payload"), "{reason}");
    assert_ne!(node.role(), Role::Leader);
    assert!(append(node.store(), "account-1", 99).await.is_err(), "a halted node writes nothing");
    assert_eq!(all(node.store()).len(), 6, "its reads go on: $store-created and the five events");
    node.shutdown().await;
}
