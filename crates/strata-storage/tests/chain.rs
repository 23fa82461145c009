//! Log format 2: `$store-created` at position 0, every record's hash linked to its predecessor's,
//! verified at open and by `verify_chain_blocking`, kept through scavenging, carried by an export into
//! an empty store, and refused when a record was changed behind the checksums' back.

mod common;

use common::{commit, event, id, read_everything, stream};
use std::path::Path;
use std::sync::Arc;
use strata_core::{EventType, ExpectedRevision, NewEvent, StreamMetadata, Tag, Timestamp};
use strata_storage::format::{self, FRAME_HEADER_BYTES, FrameBody, HeaderCheck, SEGMENT_HEADER_BYTES};
use strata_storage::{AppendOutcome, ManualClock, OpenError, Options, Store};

fn small(clock: &Arc<ManualClock>) -> Options {
    Options { segment_size_bytes: 8 << 10, index_run_events: 16, clock: clock.clone(), ..Options::default() }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000)))
}

fn tagged(n: u64) -> NewEvent {
    NewEvent::new(EventType::new("Paid").unwrap(), format!("{{\"n\":{n},\"pad\":\"{}\"}}", "p".repeat(60)))
        .with_metadata(format!("{{\"m\":{n}}}"))
        .with_tags(vec![Tag::new(format!("n:{}", n % 3)).unwrap()])
        .unwrap()
        .with_id(id(u128::from(n) + 1000))
}

#[test]
fn a_new_store_begins_with_store_created_and_every_event_is_chained() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = Store::open_with(dir.path(), small(&clock)).unwrap();
    assert!(read_everything(&store).is_empty(), "nothing is written before the first append");
    assert_eq!(store.store_created(), None);
    let first = commit(&store, "account-1", ExpectedRevision::NoStream, vec![event("{}")]);
    assert_eq!(first.first_position.value(), 1, "user events start at position 1");
    let all = read_everything(&store);
    assert_eq!(all[0].stream.as_str(), "$store");
    assert_eq!(all[0].event_type.as_str(), "$store-created");
    let created = store.store_created().expect("the store has its identity");
    assert_eq!(created.format_version, 2);
    assert_eq!(created.format_1_events, None);
    let data: serde_like::Object = serde_like::parse(&all[0].data);
    assert_eq!(data.get("store_id"), Some(created.store_id.to_string()));
    assert_eq!(data.get("genesis"), Some(created.genesis.to_string()));
    assert!(all.iter().all(|e| e.hash.is_some()));
    for n in 0..100 {
        clock.advance_micros(1_000);
        commit(&store, &format!("account-{}", n % 7), ExpectedRevision::Any, vec![tagged(n)]);
    }
    let report = store.verify_chain_blocking().unwrap();
    assert_eq!((report.events, report.verified_events, report.format_1_events), (102, 102, 0));
    assert_eq!(report.store, Some(created));
    let before = read_everything(&store);
    assert_eq!(report.head, before.last().unwrap().hash);
    drop(store);

    // Reopened (the runs cover most of the log, the tail is read again and its chain checked).
    let store = Store::open_with(dir.path(), small(&clock)).unwrap();
    assert_eq!(store.store_created(), Some(created));
    commit(&store, "account-1", ExpectedRevision::Any, vec![event("{\"after\":1}")]);
    let after = read_everything(&store);
    assert_eq!(&after[..before.len()], &before[..]);
    let report = store.verify_chain_blocking().unwrap();
    assert_eq!(report.verified_events, 103);
    assert_eq!(report.head, after.last().unwrap().hash);
}

#[test]
fn two_stores_have_different_chains_for_the_same_events() {
    let hashes = || {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small(&clock())).unwrap();
        commit(&store, "s", ExpectedRevision::Any, vec![tagged(1)]);
        read_everything(&store)[1].hash.unwrap()
    };
    assert_ne!(hashes(), hashes(), "each store's genesis comes from its own id");
}

#[test]
fn a_replayed_append_answers_its_original_result_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = Store::open_with(dir.path(), small(&clock)).unwrap();
    let original = commit(&store, "s", ExpectedRevision::Any, vec![tagged(1), tagged(2)]);
    clock.advance_micros(5_000_000);
    commit(&store, "other", ExpectedRevision::Any, vec![event("{}")]);
    let replay = store.append_blocking(stream("s"), ExpectedRevision::Any, vec![tagged(1), tagged(2)]).unwrap();
    let AppendOutcome::Committed(replay) = replay else { panic!("{replay:?}") };
    assert!(replay.replayed);
    assert_eq!(replay.recorded_at, original.recorded_at);
    assert!(replay.recorded_at.is_some());
    assert_eq!(
        (replay.first_position, replay.last_position, replay.first_revision, replay.last_revision),
        (original.first_position, original.last_position, original.first_revision, original.last_revision)
    );
}

#[test]
fn placeholders_keep_the_chain_and_an_export_carries_it_into_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = Store::open_with(dir.path(), small(&clock)).unwrap();
    for n in 0..150 {
        clock.advance_micros(1_000_000);
        commit(&store, &format!("order-{}", n % 5), ExpectedRevision::Any, vec![tagged(n)]);
    }
    let hashes_before: Vec<_> = read_everything(&store).iter().map(|e| e.hash).collect();
    let metadata = StreamMetadata { max_count: Some(2), ..StreamMetadata::default() };
    let _ = store.set_stream_metadata_blocking(stream("order-1"), &metadata).unwrap();
    let _ = store.delete_stream_blocking(stream("order-2"), ExpectedRevision::Any).unwrap();
    for n in 150..200 {
        clock.advance_micros(1_000_000);
        commit(&store, "order-0", ExpectedRevision::Any, vec![tagged(n)]);
    }
    // A clean close writes the index runs, so that the scavenge finds every sealed segment covered
    // (the indexer writes them in the background, later under load).
    drop(store);
    let store = Store::open_with(dir.path(), small(&clock)).unwrap();
    let scavenged = store.scavenge_blocking().unwrap();
    assert!(scavenged.events_scavenged > 20, "{scavenged:?}");
    let exported = read_everything(&store);
    let placeholders: Vec<_> = exported.iter().filter(|e| e.event_type.as_str() == "$scavenged").collect();
    assert_eq!(placeholders.len() as u64, scavenged.events_scavenged);
    for placeholder in &placeholders {
        assert!(placeholder.data.is_empty() && placeholder.metadata.is_empty() && placeholder.tags.is_empty());
        assert_eq!(placeholder.hash, hashes_before[placeholder.position.value() as usize], "the hash stays");
    }
    let report = store.verify_chain_blocking().unwrap();
    assert_eq!(
        (report.events, report.verified_events, report.carried_placeholders),
        (exported.len() as u64, exported.len() as u64, 0)
    );
    drop(store);
    let store = Store::open_with(dir.path(), small(&clock)).unwrap();
    assert_eq!(store.verify_chain_blocking().unwrap().verified_events, exported.len() as u64);

    // The export (placeholders and all) into an empty store: the same log, hash for hash.
    let target_dir = tempfile::tempdir().unwrap();
    let target = Store::open_with(target_dir.path(), small(&clock)).unwrap();
    for batch in exported.chunks(9) {
        let outcome = target.import_blocking(batch.to_vec()).unwrap();
        assert!(matches!(outcome, strata_storage::MultiAppendOutcome::Committed(ref r) if !r.replayed), "{outcome:?}");
    }
    assert_eq!(read_everything(&target), exported);
    assert_eq!(target.store_created(), store.store_created());
    let report = target.verify_chain_blocking().unwrap();
    assert_eq!(report.carried_placeholders, placeholders.len() as u64);
    assert_eq!(report.verified_events + report.carried_placeholders, exported.len() as u64);
    // Appends after the import continue the same chain.
    commit(&target, "order-9", ExpectedRevision::Any, vec![event("{}")]);
    commit(&store, "order-9", ExpectedRevision::Any, vec![event("{}")]);
    assert_eq!(target.verify_chain_blocking().unwrap().events, exported.len() as u64 + 1);

    // Into a store that has its own history, the export's $store-created is refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::open_with(other_dir.path(), small(&self::clock())).unwrap();
    commit(&other, "mine", ExpectedRevision::Any, vec![event("{}")]);
    let refused = other.import_blocking(exported[..3].to_vec()).unwrap_err().to_string();
    assert!(refused.contains("only an empty store takes it on"), "{refused}");
    assert_eq!(read_everything(&other).len(), 2);
    // Without it, the events import and get this store's chain.
    let outcome = other.import_blocking(exported[1..3].to_vec()).unwrap();
    assert!(matches!(outcome, strata_storage::MultiAppendOutcome::Committed(ref r) if !r.replayed), "{outcome:?}");
    let report = other.verify_chain_blocking().unwrap();
    assert_eq!((report.events, report.verified_events + report.carried_placeholders), (4, 4));
}

/// Rewrites one byte of the data of the record holding `marker`, and every checksum over it, so that
/// only the hash chain can tell.
fn tamper(segment: &Path, marker: &[u8]) {
    let mut bytes = std::fs::read(segment).unwrap();
    let at = bytes.windows(marker.len()).position(|w| w == marker).expect("the marker is in the segment");
    bytes[at] ^= 0x01;
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    loop {
        let header: [u8; FRAME_HEADER_BYTES] = bytes[offset..offset + FRAME_HEADER_BYTES].try_into().unwrap();
        let HeaderCheck::Valid { payload_len, .. } = format::check_frame_header(&header) else { panic!("no frame") };
        let payload_start = offset + FRAME_HEADER_BYTES;
        let frame_end = payload_start + payload_len;
        if (payload_start..frame_end).contains(&at) {
            let payload = bytes[payload_start..frame_end].to_vec();
            let records: Vec<(usize, usize)> = format::FrameRecords::new(&payload)
                .map(|record| record.unwrap())
                .map(|(record_offset, record)| (payload_start + record_offset, record.len()))
                .collect();
            for (start, len) in records {
                let crc = crc32c::crc32c(&bytes[start + 8..start + len]);
                bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            }
            let payload_crc = crc32c::crc32c(&bytes[payload_start..frame_end]);
            bytes[offset + 8..offset + 12].copy_from_slice(&payload_crc.to_le_bytes());
            let header_crc = crc32c::crc32c(&bytes[offset..offset + 12]);
            bytes[offset + 12..offset + 16].copy_from_slice(&header_crc.to_le_bytes());
            // The frame still decodes up to its chain.
            let decoded = format::decode_frame(&bytes[offset..frame_end]);
            assert!(decoded.as_ref().is_err_and(|e| e.contains("hash chain breaks")), "{decoded:?}");
            let _ = FrameBody::Seal { next_position: 0 };
            break;
        }
        offset = frame_end;
    }
    std::fs::write(segment, bytes).unwrap();
}

#[test]
fn a_record_changed_behind_its_checksums_is_caught_by_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in 0..20 {
        commit(&store, "account-7", ExpectedRevision::Any, vec![event(&format!("{{\"amount\":{n}00}}"))]);
    }
    drop(store);
    tamper(&dir.path().join("0000000000.seg"), b"\"amount\":1300");
    // Under the index runs (a clean close wrote them) the open takes each record's stored hash as
    // it is, vouched for by its checksum; the chain's own check, `verify`, finds the change.
    let opened = Store::open(dir.path()).unwrap();
    match opened.verify_chain_blocking() {
        Err(strata_storage::ChainError::Broken(corruption)) => {
            assert!(corruption.reason.contains("hash chain breaks at position 14"), "{corruption}");
        }
        other => panic!("verify must find the broken chain, got {other:?}"),
    }
    drop(opened);
    // Past the runs (here: without them) the open recomputes every link and refuses the log.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    match Store::open(dir.path()) {
        Err(OpenError::Corrupted(corruption)) => {
            assert!(corruption.reason.contains("hash chain breaks at position 14"), "{corruption}");
        }
        other => panic!("a broken chain must refuse the open, got {other:?}"),
    }
}

/// A tiny reader of the flat JSON objects `$store-created` holds (string and number values only).
mod serde_like {
    pub struct Object(Vec<(String, String)>);

    impl Object {
        pub fn get(&self, key: &str) -> Option<String> {
            self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        }
    }

    pub fn parse(bytes: &[u8]) -> Object {
        let text = std::str::from_utf8(bytes).unwrap();
        let inner = text.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
        Object(
            inner
                .split(',')
                .map(|pair| {
                    let (key, value) = pair.split_once(':').unwrap();
                    (key.trim_matches('"').to_owned(), value.trim_matches('"').to_owned())
                })
                .collect(),
        )
    }
}

#[test]
fn an_export_whose_store_created_was_changed_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = Store::open_with(dir.path(), small(&clock)).unwrap();
    commit(&store, "s", ExpectedRevision::Any, vec![tagged(1)]);
    let exported = read_everything(&store);
    let created = String::from_utf8(exported[0].data.to_vec()).unwrap();
    let forged_genesis = created.replace(&store.store_created().unwrap().genesis.to_string(), &"0".repeat(64));
    for data in [forged_genesis, created.replace("\":", "\": "), "{}".to_owned()] {
        let mut forged = exported.clone();
        forged[0].data = bytes::Bytes::from(data.clone());
        let target_dir = tempfile::tempdir().unwrap();
        let target = Store::open_with(target_dir.path(), small(&clock)).unwrap();
        let refused = target.import_blocking(forged).unwrap_err().to_string();
        assert!(refused.contains("position 0"), "{data}: {refused}");
        assert!(read_everything(&target).is_empty(), "a refused import writes nothing, not even $store-created");
        assert_eq!(target.store_created(), None);
    }
}
