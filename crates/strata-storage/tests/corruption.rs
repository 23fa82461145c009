//! Damage on disk, on real files: flipped bits are detected and refuse the open with the segment and
//! byte offset; a torn tail of the last segment is repaired; nothing damaged is ever served.

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use strata_core::ExpectedRevision;
use strata_storage::format::{
    FRAME_BODY_HEADER_BYTES, FRAME_CHAIN_BYTES, FRAME_HEADER_BYTES, RECORD_CHAIN_BYTES, SEGMENT_HEADER_BYTES,
};
use strata_storage::{OpenError, Options, Store};

const SEGMENT: u64 = 8 << 10;

fn options() -> Options {
    Options { segment_size_bytes: SEGMENT, ..Options::default() }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

/// A store of `count` events of about 300 bytes over several segments.
fn filled_store(count: u128) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for n in 0..count {
        commit(&store, &format!("s-{}", n % 3), ExpectedRevision::Any, vec![event(&"d".repeat(300)).with_id(id(n))]);
    }
    dir
}

fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 1 << bit;
    file.write_all_at(&byte, offset).unwrap();
}

/// The end of the written part of a segment: past its last non-zero byte.
fn written_len(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    bytes.iter().rposition(|&b| b != 0).map_or(0, |last| last as u64 + 1)
}

fn expect_corrupted(dir: &Path, segment: u32) -> strata_storage::Corruption {
    match Store::open_with(dir, options()) {
        Err(OpenError::Corrupted(corruption)) => {
            assert_eq!(corruption.segment, segment, "{corruption}");
            corruption
        }
        Err(other) => panic!("expected corruption in segment {segment}, got {other}"),
        Ok(_) => panic!("a damaged store opened"),
    }
}

/// Where the first frame's records begin (log format 2): after the segment header, the frame
/// header, the body header and the predecessor's hash. The first of them is `$store-created`.
const FIRST_RECORD: u64 =
    SEGMENT_HEADER_BYTES + (FRAME_HEADER_BYTES + FRAME_BODY_HEADER_BYTES + FRAME_CHAIN_BYTES) as u64;

/// Where the first frame's second record begins: the first event appended, after `$store-created`.
fn first_appended_record(path: &Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let mut len = [0u8; 4];
    file.read_exact_at(&mut len, FIRST_RECORD).unwrap();
    FIRST_RECORD + u64::from(u32::from_le_bytes(len))
}

/// The ids of the events appended: the log without its `$store-created` at position 0.
fn appended_ids(store: &Store) -> Vec<strata_core::EventId> {
    let events = read_everything(store);
    assert_eq!(events[0].event_type.as_str(), "$store-created");
    events[1..].iter().map(|e| e.id).collect()
}

/// The index runs: without them, an open reads (and verifies) the whole log.
fn remove_index_runs(dir: &Path) {
    let index = dir.join("index");
    if index.exists() {
        std::fs::remove_dir_all(&index).unwrap();
    }
}

#[test]
fn a_flipped_bit_anywhere_in_a_sealed_segment_is_detected_when_the_log_is_read() {
    let dir = filled_store(60);
    let paths = segments(dir.path());
    assert!(paths.len() >= 3, "the test needs sealed segments");
    let sealed = &paths[0];
    let written = written_len(sealed);
    // Every 7th byte of the written part, a different bit each time: header, frames, records, seal.
    // Without index runs, the open reads segment 0 and must refuse it.
    for offset in (0..written).step_by(7) {
        let bit = (offset % 8) as u8;
        flip_bit(sealed, offset, bit);
        remove_index_runs(dir.path());
        let corruption = expect_corrupted(dir.path(), 0);
        assert!(corruption.offset_bytes <= offset, "reported at {} for a flip at {offset}", corruption.offset_bytes);
        let message = OpenError::Corrupted(corruption).to_string();
        assert!(message.contains("segment 0") && message.contains("0000000000.seg"), "{message}");
        flip_bit(sealed, offset, bit);
    }
    // Undamaged again, it opens with everything.
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(read_everything(&store).len(), 61, "$store-created and the 60 events");
}

/// With index runs, an open does not read sealed segments; a damaged record is then caught by its own
/// checksum when it is read, and never served.
#[test]
fn a_flipped_bit_in_a_record_under_the_index_runs_is_never_served() {
    let dir = filled_store(60);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_report().events_read_from_log, 0, "a clean close leaves nothing to read");
    drop(store);
    let sealed = &segments(dir.path())[0];
    // Inside the first event's data (segment header 64, frame header 16, body header 16, the
    // predecessor's hash 32, $store-created, then the record, whose hash takes 32 bytes more).
    let offset = first_appended_record(sealed) + 100 + RECORD_CHAIN_BYTES as u64;
    flip_bit(sealed, offset, 2);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let error = store
        .read_all(strata_storage::ReadFrom::Start, strata_storage::Direction::Forward, 100)
        .expect_err("a damaged record is not served");
    assert!(
        matches!(&error, strata_storage::ReadError::Corrupted(c) if c.segment == 0),
        "expected corruption in segment 0, got {error}"
    );
    let stream = store.read_stream(
        &strata_core::StreamId::new("s-0").unwrap(),
        strata_storage::ReadFrom::Start,
        strata_storage::Direction::Forward,
        100,
    );
    assert!(stream.is_err(), "a stream read through the runs reaches the damaged record too");
}

#[test]
fn a_flipped_bit_in_an_acknowledged_frame_of_the_last_segment_is_not_mistaken_for_a_torn_tail() {
    let dir = filled_store(40);
    let last = segments(dir.path()).pop().unwrap();
    let written = written_len(&last);
    // The last frame (nothing after it) and a frame in the middle (frames after it).
    for offset in [written - 10, 64 + 40] {
        flip_bit(&last, offset, 3);
        let segment = segments(dir.path()).len() as u32 - 1;
        let corruption = expect_corrupted(dir.path(), segment);
        assert!(corruption.reason.contains("not a torn write"), "{corruption}");
        flip_bit(&last, offset, 3);
    }
    assert_eq!(read_everything(&Store::open_with(dir.path(), options()).unwrap()).len(), 41);
}

#[test]
fn a_torn_tail_is_repaired_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}").with_id(id(1))]);
    drop(store);
    let path = segments(dir.path()).pop().unwrap();
    let before = std::fs::read(&path).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    commit(&store, "s", ExpectedRevision::Any, vec![event(&"z".repeat(3000)).with_id(id(2))]);
    drop(store);
    let after = std::fs::read(&path).unwrap();
    let frame_start = written_len_of(&before);
    // The crash kept the frame's first disk sector (header and part of the payload) but not the rest.
    let kept_until = (frame_start / 512 + 1) * 512;
    let mut torn = before.clone();
    torn[frame_start as usize..kept_until as usize].copy_from_slice(&after[frame_start as usize..kept_until as usize]);
    std::fs::write(&path, &torn).unwrap();
    // A torn frame was never acknowledged, so no index run can hold it; this test made one by closing
    // the store cleanly before tearing the frame: remove it.
    remove_index_runs(dir.path());

    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(store.recovery_report().torn_tail_bytes_zeroed > 0);
    assert_eq!(appended_ids(&store), [id(1)]);
    commit(&store, "s", ExpectedRevision::Exact(strata_core::StreamRevision::new(0)), vec![event("{}").with_id(id(3))]);
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(appended_ids(&store), [id(1), id(3)]);
    assert_eq!(store.recovery_report().torn_tail_bytes_zeroed, 0);
}

fn written_len_of(bytes: &[u8]) -> u64 {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |last| last as u64 + 1)
}

#[test]
fn a_missing_segment_or_a_damaged_segment_header_refuses_the_open() {
    let dir = filled_store(60);
    let paths = segments(dir.path());
    flip_bit(&paths[1], 20, 0);
    let corruption = expect_corrupted(dir.path(), 1);
    assert_eq!(corruption.offset_bytes, 0);
    flip_bit(&paths[1], 20, 0);
    std::fs::rename(&paths[1], dir.path().join("moved-away")).unwrap();
    let corruption = expect_corrupted(dir.path(), 1);
    assert!(corruption.reason.contains("missing"), "{corruption}");
}

#[test]
fn damage_after_open_is_reported_by_reads_never_served() {
    let dir = filled_store(30);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let first = segments(dir.path())[0].clone();
    // The first record of the first frame starts at 64 + 16 + 16; damage its data.
    flip_bit(&first, 64 + 32 + 70, 1);
    let error = store
        .read_all(strata_storage::ReadFrom::Start, strata_storage::Direction::Forward, 10)
        .expect_err("a damaged record must not be served");
    assert!(error.to_string().contains("checksum"), "{error}");
    // Reads elsewhere go on.
    let later = store.read_all(strata_storage::ReadFrom::At(20.into()), strata_storage::Direction::Forward, 5).unwrap();
    assert_eq!(later.len(), 5);
}

/// Regression: a frame header that straddles a 512-byte sector boundary, torn so that only one
/// sector's part of it reached the disk, was once taken for corruption.
#[test]
fn a_torn_frame_header_across_a_sector_boundary_is_repaired() {
    // Segment header (64) + one frame of `$store-created` and one event: 16 + 16 + the predecessor's
    // hash 32 + `$store-created` (64 + 32 + 6 + 14 + 190 bytes of data) + record (64 + 32 + 1 + 8 +
    // data). With 478 bytes of data the first frame ends at byte 1017, so the next header spans
    // 1017..1033, across the sector boundary at 1024.
    for keep_first_part in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), options()).unwrap();
        commit(&store, "s", ExpectedRevision::Any, vec![event(&"a".repeat(478)).with_id(id(1))]);
        drop(store);
        let path = segments(dir.path()).pop().unwrap();
        let before = std::fs::read(&path).unwrap();
        assert_eq!(written_len_of(&before), 1017, "the layout this test relies on changed");
        let store = Store::open_with(dir.path(), options()).unwrap();
        commit(&store, "s", ExpectedRevision::Any, vec![event(&"b".repeat(2000)).with_id(id(2))]);
        drop(store);
        let after = std::fs::read(&path).unwrap();
        let mut torn = before.clone();
        let (start, end) = if keep_first_part { (1017, 1024) } else { (1024, 1536) };
        torn[start..end].copy_from_slice(&after[start..end]);
        std::fs::write(&path, &torn).unwrap();
        remove_index_runs(dir.path());

        let store = Store::open_with(dir.path(), options())
            .unwrap_or_else(|e| panic!("keep_first_part={keep_first_part}: {e}"));
        assert!(store.recovery_report().torn_tail_bytes_zeroed > 0);
        assert_eq!(appended_ids(&store), [id(1)]);
    }
}

/// A zero run elsewhere in the last frame (binary data) must not excuse a flipped bit in a record that
/// was written whole: that is rot, not a tear, and the open is refused.
#[test]
fn zeros_in_another_record_do_not_make_rot_look_like_a_tear() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let binary = strata_core::NewEvent::new(strata_core::EventType::new("Blob").unwrap(), vec![0u8; 1500])
        .with_id(id(1))
        .with_content_type(strata_core::ContentType::new("application/octet-stream").unwrap());
    let json = event(&format!("{{\"text\":\"{}\"}}", "t".repeat(300))).with_id(id(2));
    commit(&store, "s", ExpectedRevision::Any, vec![binary, json]);
    drop(store);
    let path = segments(dir.path()).pop().unwrap();
    // Flip a bit in the JSON record's data, near the end of the frame.
    flip_bit(&path, written_len(&path) - 20, 2);
    let corruption = expect_corrupted(dir.path(), 0);
    assert!(corruption.reason.contains("not a torn write"), "{corruption}");
}

#[test]
fn torn_bytes_are_saved_before_they_are_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    commit(&store, "s", ExpectedRevision::Any, vec![event("{}").with_id(id(1))]);
    drop(store);
    let path = segments(dir.path()).pop().unwrap();
    let end = written_len(&path);
    // Debris of an unacknowledged frame whose header sector never reached the disk.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let sector_after = (end / 512 + 1) * 512;
    file.write_all_at(b"debris of an interrupted write", sector_after).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let saved = store.recovery_report().torn_tail_saved_to.clone().expect("the torn bytes were saved");
    let bytes = std::fs::read(&saved).unwrap();
    assert!(bytes.ends_with(b"debris of an interrupted write"));
    assert_eq!(read_everything(&store).len(), 2, "$store-created and the event");
}

/// `count` events of about 300 bytes over several segments, with `options`; the events as read.
fn fill(dir: &Path, options: Options, count: u128) -> Vec<strata_core::RecordedEvent> {
    let store = Store::open_with(dir, options).unwrap();
    for n in 0..count {
        commit(&store, &format!("s-{}", n % 3), ExpectedRevision::Any, vec![event(&"d".repeat(300)).with_id(id(n))]);
    }
    read_everything(&store)
}

/// A replica opened over `dir`: its events are a prefix of `written` (same positions, ids and
/// hashes), shorter than it, and something was set aside. The replica goes on at the next position,
/// and an embedded open of what is left finds no damage. The events kept.
fn assert_replica_keeps_a_prefix(
    dir: &Path,
    options: impl Fn() -> Options,
    written: &[strata_core::RecordedEvent],
) -> usize {
    let replica = Store::open_replicated(dir, options(), |segments| Box::new(segments)).unwrap();
    let report = replica.recovery_report().clone();
    assert!(!report.set_aside.is_empty(), "{report:?}");
    let kept = read_everything(&replica);
    assert!(kept.len() > 20 && kept.len() < written.len(), "a prefix: {} of {}", kept.len(), written.len());
    for (at, (kept, original)) in kept.iter().zip(written).enumerate() {
        assert_eq!((kept.position.value(), kept.id, kept.hash), (at as u64, original.id, original.hash));
    }
    let next = kept.len() as u64;
    let outcome = replica.append_blocking(stream("s-9"), ExpectedRevision::Any, vec![event("{}")]).unwrap();
    let strata_storage::AppendOutcome::Committed(result) = outcome else { panic!("{outcome:?}") };
    assert_eq!(result.first_position.value(), next);
    drop(replica);
    let reopened = Store::open_with(dir, options()).unwrap();
    assert_eq!(read_everything(&reopened).len() as u64, next + 1);
    assert!(reopened.recovery_report().set_aside.is_empty());
    kept.len()
}

/// A replica (`Store::open_replicated`) does not refuse to open for damage: its frames are not
/// synced one by one, so after a power loss any suffix may be damaged — here a 4 KiB page lost in the
/// middle of the log while later pages survived. Recovery keeps the longest verified prefix, sets the
/// rest aside (the damaged segment's bytes kept in a file of their own, the later segments renamed)
/// and the replica goes on from there; an embedded store refuses the same damage.
#[test]
fn a_replica_keeps_its_longest_verified_prefix_and_sets_the_rest_aside() {
    let dir = tempfile::tempdir().unwrap();
    let written = fill(dir.path(), options(), 120);
    // A replica writes index runs only over frames it synced: none reach the damage.
    remove_index_runs(dir.path());
    let paths = segments(dir.path());
    assert!(paths.len() >= 5, "several segments: {}", paths.len());
    let damaged = &paths[2];
    std::fs::OpenOptions::new().write(true).open(damaged).unwrap().write_all_at(&[0u8; 4096], 4096).unwrap();
    expect_corrupted(dir.path(), 2);
    assert_replica_keeps_a_prefix(dir.path(), options, &written);
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let segment = damaged.file_name().unwrap().to_str().unwrap();
    // Set aside from the start of the frame the lost page began in.
    let from: Vec<u64> =
        names.iter().filter_map(|name| name.strip_prefix(&format!("{segment}.set-aside-"))?.parse().ok()).collect();
    assert!(from.len() == 1 && from[0] <= 4096 && from[0] > 4096 - 1024, "{names:?}");
    for later in &paths[3..] {
        let name = later.file_name().unwrap().to_str().unwrap();
        assert!(
            names.iter().any(|kept| kept.starts_with(&format!("{name}.set-aside-"))),
            "{name} set aside: {names:?}"
        );
    }
}

/// A replica whose log lost a suffix the index runs cover (the last segments gone): the embedded
/// open refuses it (acknowledged events are missing), the replica rebuilds its runs from the log that
/// is left and goes on from there.
#[test]
fn a_replica_whose_runs_reach_past_its_log_rebuilds_them() {
    let options = || Options { index_run_events: strata_storage::INDEX_RUN_EVENTS_MIN, ..options() };
    let dir = tempfile::tempdir().unwrap();
    let written = fill(dir.path(), options(), 120);
    let paths = segments(dir.path());
    for lost in &paths[paths.len() - 3..] {
        std::fs::rename(lost, lost.with_extension("lost")).unwrap();
    }
    match Store::open_with(dir.path(), options()) {
        Err(OpenError::IndexAheadOfLog { .. }) => {}
        other => panic!("an embedded store with runs past its log: {:?}", other.map(|_| ())),
    }
    assert_replica_keeps_a_prefix(dir.path(), options, &written);
}
