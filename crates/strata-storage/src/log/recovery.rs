//! Recovery: load the index runs, then verify and index the segments past them in one pass.
//!
//! Only a torn tail of the last segment is repaired (zeroed); any other damage refuses the open with
//! the segment and byte offset — but for a replica ([`OnDamage::KeepVerifiedPrefix`]), which keeps the
//! longest verified prefix of its log and sets the rest aside. See `docs/design.md`, "Recovery".

use crate::error::{Corruption, OpenError, StorageError};
use crate::index::run::{self, Run};
use crate::index::{FrozenSource, IdIndex, Index, SegmentFile, SystemState};
use crate::io::{Storage, path_in, read_exact_at};
use crate::log::format::{
    FORMAT_VERSION, FRAME_HEADER_BYTES, FRAME_PAYLOAD_BYTES_MAX, FrameBody, FrameRecords, HeaderCheck,
    SEAL_FRAME_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader, StoredChain, check_frame_header, check_frame_payload,
    decode_record_key, decode_segment_header,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_core::EventHash;

use super::segments::*;

/// How much recovery reads at once.
const SCAN_CHUNK_BYTES: usize = 8 << 20;
/// How far past the last good frame an interrupted write can have left bytes: one frame at most,
/// because the writer syncs each frame before it writes the next.
const TORN_WINDOW_BYTES: u64 = (FRAME_HEADER_BYTES + FRAME_PAYLOAD_BYTES_MAX) as u64;
/// The unit a disk writes atomically (an assumption; see `docs/design.md`, "Assumptions about the disk").
const SECTOR_BYTES: u64 = 512;

/// Where the index runs live, in the data directory.
pub(crate) const INDEX_DIR: &str = "index";

/// What recovery works with while it reads the log past the index runs.
struct Indexing<'a> {
    index: Index,
    ids: IdIndex,
    /// The log's next position as read so far (the index's may be ahead: it starts at the runs' end).
    next: u64,
    storage: &'a Arc<dyn Storage>,
    index_dir: PathBuf,
    run_events: u64,
    report: &'a mut RecoveryReport,
    /// A run could not be written: write no more during this recovery.
    writing_failed: bool,
    /// The hash of the last record read, once the pass has read a chained one: every chained frame
    /// after it must name it as its predecessor, and no format-1 frame may follow it.
    chain: Option<EventHash>,
    /// The segment and byte offset of the frame being read (offset 0: the segment's header).
    reading: (u32, u64),
}

/// What recovery does with damage it cannot prove to be a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDamage {
    /// Refuse to open, saying where (an embedded store: its log is the only copy).
    Refuse,
    /// Keep the longest verified prefix and set the rest aside (a replica: its frames were not synced
    /// one by one, and the replicated log holds them all).
    KeepVerifiedPrefix,
}

/// Why one pass of recovery stopped.
enum Stopped {
    Failed(OpenError),
    /// Damage at `offset` of `segment` (0: the whole segment): nothing from there on verifies.
    Damaged {
        segment: u32,
        offset: u64,
        error: OpenError,
    },
    /// The index runs reach past the log's end.
    IndexAhead(OpenError),
}

impl From<OpenError> for Stopped {
    fn from(error: OpenError) -> Self {
        Stopped::Failed(error)
    }
}

impl From<StorageError> for Stopped {
    fn from(error: StorageError) -> Self {
        Stopped::Failed(error.into())
    }
}

impl Indexing<'_> {
    /// Writes the tail as a run when it is full, so that rebuilding the indexes of a large log never
    /// holds more than a run's worth of them in memory. A failure leaves the tail in memory.
    fn write_run_when_full(&mut self) {
        if self.writing_failed {
            return;
        }
        if let Some(frozen) = self.index.freeze(self.run_events) {
            // Bound apart from the match: the source's reference must be gone before a thaw.
            let written = run::write_run(self.storage, &self.index_dir, &mut FrozenSource(frozen));
            match written {
                Ok(run) => {
                    self.index.install_run(Arc::new(run));
                    self.ids = IdIndex::default();
                    self.report.index_runs_written += 1;
                }
                Err(error) => {
                    // Keep the rest in memory; the indexer writes it once the store is open.
                    self.report.index_runs_dropped.push(format!("could not write an index run: {error}"));
                    self.index.thaw();
                    self.writing_failed = true;
                }
            }
        }
    }
}

/// Loads the index runs in `dir` that cover the log from position 0 without a gap, preferring the
/// largest (a merge's output over its inputs), with the system state as of their end. Removes what
/// is not used: temporary files, runs a merge replaced, runs that do not open (torn, damaged) and
/// every run after a gap.
fn load_runs(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<(Vec<Arc<Run>>, SystemState), OpenError> {
    storage.create_dir_all(dir).map_err(|e| StorageError::new("create directory", dir, e))?;
    let mut candidates = Vec::new();
    for name in storage.list_dir(dir).map_err(|e| StorageError::new("list", dir, e))? {
        if name.ends_with(run::RUN_TEMP_SUFFIX) {
            let path = path_in(dir, &name);
            storage.remove_file(&path).map_err(|e| StorageError::new("remove", &path, e))?;
        } else if let Some((start, end)) = run::parse_run_name(&name) {
            candidates.push((start, end, name));
        }
    }
    loop {
        let mut chain: Vec<(u64, u64, String)> = Vec::new();
        let mut at = 0;
        while let Some(best) = candidates.iter().filter(|c| c.0 == at).max_by_key(|c| c.1) {
            at = best.1;
            chain.push(best.clone());
        }
        let mut runs = Vec::with_capacity(chain.len());
        let mut failed = None;
        for (start, end, name) in &chain {
            match Run::open(storage.clone(), path_in(dir, name)) {
                Ok(run) if (run.start, run.end) == (*start, *end) => runs.push(Arc::new(run)),
                Ok(run) => {
                    let reason =
                        format!("its footer says positions {}..{}, not what its name says", run.start, run.end);
                    failed = Some((name.clone(), reason));
                    break;
                }
                Err(error) => {
                    failed = Some((name.clone(), error.to_string()));
                    break;
                }
            }
        }
        let system = match (&failed, runs.last()) {
            (None, Some(last)) => {
                match last.system_state().map_err(|e| e.to_string()).and_then(|bytes| SystemState::decode(&bytes)) {
                    Ok(system) => system,
                    Err(reason) => {
                        failed = Some((chain[runs.len() - 1].2.clone(), reason));
                        SystemState::default()
                    }
                }
            }
            _ => SystemState::default(),
        };
        if let Some((name, reason)) = failed {
            report.index_runs_dropped.push(format!("{name}: {reason}"));
            let path = path_in(dir, &name);
            storage.remove_file(&path).map_err(|e| StorageError::new("remove", &path, e))?;
            candidates.retain(|candidate| candidate.2 != name);
            continue;
        }
        for candidate in candidates.iter().filter(|candidate| !chain.contains(candidate)) {
            let path = path_in(dir, &candidate.2);
            storage.remove_file(&path).map_err(|e| StorageError::new("remove", &path, e))?;
        }
        storage.sync_dir(dir).map_err(|e| StorageError::new("sync directory", dir, e))?;
        return Ok((runs, system));
    }
}

/// Opens the log in `dir`: loads the index runs, verifies and indexes the segments past them (all of
/// them for a store without runs), repairs a torn tail, and makes sure an active segment exists.
/// With [`OnDamage::KeepVerifiedPrefix`], damage sets the log aside from the damaged frame on (and index
/// runs that reach past what is left), and recovery starts again over what is left.
pub(crate) fn recover(
    storage: Arc<dyn Storage>,
    dir: &Path,
    segment_size_bytes: u64,
    run_events: u64,
    on_damage: OnDamage,
) -> Result<(Index, IdIndex, LogWriter, RecoveryReport), OpenError> {
    let mut set_aside = Vec::new();
    let mut last_damage = None;
    // Each pass that stops sets something aside: a segment's damaged suffix and the segments after
    // it, or the index runs; damage found again where it was just set aside is refused.
    loop {
        let stopped = match recover_once(storage.clone(), dir, segment_size_bytes, run_events) {
            Ok((index, ids, writer, mut report)) => {
                report.set_aside = set_aside;
                return Ok((index, ids, writer, report));
            }
            Err(stopped) => stopped,
        };
        match (on_damage, stopped) {
            (_, Stopped::Failed(error)) => return Err(error),
            (OnDamage::Refuse, Stopped::Damaged { error, .. } | Stopped::IndexAhead(error)) => return Err(error),
            (OnDamage::KeepVerifiedPrefix, Stopped::Damaged { segment, offset, error }) => {
                if last_damage.replace((segment, offset)) == Some((segment, offset)) {
                    return Err(error);
                }
                set_aside.push(set_aside_from(&*storage, dir, segment, offset, &error)?);
            }
            (OnDamage::KeepVerifiedPrefix, Stopped::IndexAhead(error)) => {
                set_aside.push(remove_runs(&*storage, &path_in(dir, INDEX_DIR), &error)?);
            }
        }
    }
}

/// Sets the log aside from `offset` of `segment` on: the bytes from there to the segment's end are
/// kept in `<segment>.set-aside-<offset>` and zeroed (offset 0: the whole segment is renamed
/// `<segment>.set-aside-<millis>`), and every later segment is renamed so too. Says what it did.
fn set_aside_from(
    storage: &dyn Storage,
    dir: &Path,
    segment: u32,
    offset: u64,
    error: &OpenError,
) -> Result<String, OpenError> {
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
    let names = storage.list_dir(dir).map_err(|e| StorageError::new("list", dir, e))?;
    let mut later = Vec::new();
    for name in &names {
        let Some(number) = name.strip_suffix(SEGMENT_SUFFIX) else { continue };
        if number.len() == 10
            && let Ok(number) = number.parse::<u32>()
            && number >= segment
        {
            later.push(number);
        }
    }
    later.sort_unstable();
    let mut kept = None;
    for number in later {
        let path = path_in(dir, &segment_name(number));
        if number == segment && offset > 0 {
            let file = storage.open_file(&path, false).map_err(|e| StorageError::new("open", &path, e))?;
            let len = file.len_bytes().map_err(|e| StorageError::new("stat", &path, e))?;
            let mut rest = vec![0u8; len.saturating_sub(offset) as usize];
            read_exact_at(&*file, &mut rest, offset).map_err(|e| StorageError::new("read", &path, e))?;
            let saved = path_in(dir, &format!("{}.set-aside-{offset}", segment_name(number)));
            let copy = storage.open_file(&saved, true).map_err(|e| StorageError::new("create", &saved, e))?;
            copy.write_all_at(&rest, 0).map_err(|e| StorageError::new("write", &saved, e))?;
            copy.sync_data().map_err(|e| StorageError::new("fdatasync", &saved, e))?;
            storage.sync_dir(dir).map_err(|e| StorageError::new("sync directory", dir, e))?;
            rest.fill(0);
            file.write_all_at(&rest, offset).map_err(|e| StorageError::new("zero the damaged suffix of", &path, e))?;
            file.sync_data().map_err(|e| StorageError::new("fdatasync", &path, e))?;
            kept = Some(saved);
        } else {
            let aside = path_in(dir, &format!("{}.set-aside-{stamp}", segment_name(number)));
            storage.rename(&path, &aside).map_err(|e| StorageError::new("set aside", &path, e))?;
        }
    }
    storage.sync_dir(dir).map_err(|e| StorageError::new("sync directory", dir, e))?;
    let kept = kept.map_or_else(String::new, |saved| format!(", its bytes kept in {}", saved.display()));
    Ok(format!("segment {segment} from byte {offset} on, and every later segment{kept} ({error})"))
}

/// Removes every index run: they reach past the log that is left, and are rebuilt from it.
fn remove_runs(storage: &dyn Storage, index_dir: &Path, error: &OpenError) -> Result<String, OpenError> {
    let names = storage.list_dir(index_dir).map_err(|e| StorageError::new("list", index_dir, e))?;
    for name in &names {
        let path = path_in(index_dir, name);
        storage.remove_file(&path).map_err(|e| StorageError::new("remove", &path, e))?;
    }
    storage.sync_dir(index_dir).map_err(|e| StorageError::new("sync directory", index_dir, e))?;
    Ok(format!("the index runs, rebuilt from the log that is left ({error})"))
}

fn recover_once(
    storage: Arc<dyn Storage>,
    dir: &Path,
    segment_size_bytes: u64,
    run_events: u64,
) -> Result<(Index, IdIndex, LogWriter, RecoveryReport), Stopped> {
    let mut report = RecoveryReport::default();
    let names = storage.list_dir(dir).map_err(|e| StorageError::new("list", dir, e))?;
    let mut segments = Vec::new();
    for name in &names {
        if name.ends_with(PREPARING_SUFFIX) {
            let path = path_in(dir, name);
            storage.remove_file(&path).map_err(|e| StorageError::new("remove", &path, e))?;
            report.preparing_files_removed += 1;
        } else if let Some(number) = name.strip_suffix(SEGMENT_SUFFIX) {
            if number.len() == 10 && number.bytes().all(|b| b.is_ascii_digit()) {
                let number: u32 = number
                    .parse()
                    .map_err(|_| OpenError::InvalidOptions(format!("segment file {name} has a number out of range")))?;
                segments.push(number);
            }
        }
    }
    if report.preparing_files_removed > 0 {
        storage.sync_dir(dir).map_err(|e| StorageError::new("sync directory", dir, e))?;
    }
    segments.sort_unstable();

    let index_dir = path_in(dir, INDEX_DIR);
    let (runs, system) = load_runs(&storage, &index_dir, &mut report)?;
    report.index_runs = runs.len() as u32;
    let runs_end = runs.last().map_or(0, |run| run.end);
    let mut files = Vec::with_capacity(segments.len());
    let mut first_positions = Vec::with_capacity(segments.len());
    for (expected, &number) in segments.iter().enumerate() {
        let path = path_in(dir, &segment_name(number));
        if number as usize != expected {
            let error = OpenError::Corrupted(Corruption {
                segment: expected as u32,
                path: path_in(dir, &segment_name(expected as u32)),
                offset_bytes: 0,
                reason: "segment file is missing".to_owned(),
            });
            return Err(Stopped::Damaged { segment: expected as u32, offset: 0, error });
        }
        let file = storage.open_file(&path, false).map_err(|e| StorageError::new("open", &path, e))?;
        let len_bytes = file.len_bytes().map_err(|e| StorageError::new("stat", &path, e))?;
        let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
        let corrupt = |reason: String| Stopped::Damaged {
            segment: number,
            offset: 0,
            error: OpenError::Corrupted(Corruption { segment: number, path: path.clone(), offset_bytes: 0, reason }),
        };
        read_exact_at(&*file, &mut header, 0).map_err(|e| corrupt(format!("cannot read the header: {e}")))?;
        let header = decode_segment_header(&header).map_err(corrupt)?;
        if first_positions.last().is_some_and(|&previous| header.first_position < previous) {
            return Err(corrupt(format!(
                "segment starts at position {} before the one before it",
                header.first_position
            )));
        }
        first_positions.push(header.first_position);
        files.push(SegmentFile { file, path, len_bytes, first_position: header.first_position });
    }
    // Only the segments from the one holding the runs' end on need reading.
    let scan_from = first_positions.partition_point(|&first| first <= runs_end).saturating_sub(1);
    let mut indexing = Indexing {
        index: Index::with_runs(runs, system),
        ids: IdIndex::default(),
        next: first_positions.get(scan_from).copied().unwrap_or(0),
        storage: &storage,
        index_dir: index_dir.clone(),
        run_events,
        report: &mut report,
        writing_failed: false,
        chain: None,
        reading: (0, 0),
    };
    indexing.index.segments = files;
    let mut end = Scanned { end_offset: SEGMENT_HEADER_BYTES, sealed: true, last_frame_start: None };
    for number in scan_from..segments.len() {
        let segment = indexing.index.segments[number].clone();
        let is_last = number + 1 == segments.len();
        indexing.reading = (number as u32, 0);
        end = match scan_segment(&*storage, &segment, number as u32, is_last, &mut indexing) {
            Ok(end) => end,
            Err(error @ OpenError::Corrupted(_)) => {
                let (segment, offset) = indexing.reading;
                return Err(Stopped::Damaged { segment, offset, error });
            }
            Err(error) => return Err(Stopped::Failed(error)),
        };
    }
    if indexing.next < runs_end {
        // Runs hold only events whose fdatasync succeeded: a log that ends before them lost
        // acknowledged events (a disk that lied, a segment restored from an older copy). Opening would
        // hand their positions to new events behind the back of every consumer that saw them.
        return Err(Stopped::IndexAhead(OpenError::IndexAheadOfLog {
            index_dir: index_dir.clone(),
            indexed_end: runs_end,
            log_end: indexing.next,
        }));
    }
    let Indexing { mut index, ids, .. } = indexing;
    report.segments = segments.len() as u32;
    report.events = index.next_position();
    report.events_read_from_log = index.next_position() - runs_end.min(index.next_position());
    if let (Some(start), Some(last)) = (end.last_frame_start, index.segments.last()) {
        make_durable(last, start, end.end_offset)?;
    }

    let (active, active_segment, write_offset) = if end.sealed {
        // A new store, or the last segment was sealed just before a crash: create the next one now,
        // with time to zero-fill it. If that fails (a full disk), the store still opens for reading,
        // and the first append tries again.
        let segment = segments.len() as u32;
        let header = SegmentHeader { segment, first_position: index.next_position(), format_version: FORMAT_VERSION };
        match create_segment(&*storage, dir, header, segment_size_bytes, SegmentSource::ZeroFill) {
            Ok(file) => {
                index.segments.push(file.clone());
                (Some(file), segment, SEGMENT_HEADER_BYTES)
            }
            Err(WriteError::NotWritten(error)) => {
                report.next_segment_deferred = Some(error.to_string());
                (None, segment, SEGMENT_HEADER_BYTES)
            }
            Err(WriteError::Failed(error)) => return Err(error.into()),
        }
    } else {
        let last = index.segments.last().expect("an unsealed segment exists").clone();
        (Some(last), segments.len() as u32 - 1, end.end_offset)
    };
    // A rename whose directory sync a crash interrupted may still be only in memory.
    storage.sync_dir(dir).map_err(|e| StorageError::new("sync directory", dir, e))?;
    let mut writer = LogWriter {
        storage,
        dir: dir.to_path_buf(),
        segment_size_bytes,
        active,
        active_segment,
        write_offset,
        prepared: None,
    };
    writer.prepare_next_when_started();
    Ok((index, ids, writer, report))
}

/// Rewrites and syncs the last frame of the log before anything is served from it.
///
/// Recovery reads through the page cache, which after a process crash (no reboot) can hold a frame
/// whose fdatasync never ran or failed — and after a failed fdatasync Linux marks such pages clean, so
/// syncing again would not write them. Serving that frame and then losing it to a power cut would
/// reuse its positions. Because the committer syncs every frame before writing the next, only the
/// last frame (a commit or a seal) can be in that state: writing its bytes again and syncing makes
/// everything recovery serves durable.
fn make_durable(segment: &SegmentFile, start: u64, end: u64) -> Result<(), StorageError> {
    let mut frame = vec![0u8; (end - start) as usize];
    let path = &segment.path;
    read_exact_at(&*segment.file, &mut frame, start).map_err(|e| StorageError::new("read", path, e))?;
    segment.file.write_all_at(&frame, start).map_err(|e| StorageError::new("rewrite last frame", path, e))?;
    segment.file.sync_data().map_err(|e| StorageError::new("fdatasync", path, e))
}

#[derive(Debug)]
struct Scanned {
    /// Where the next frame would go.
    end_offset: u64,
    sealed: bool,
    /// Where the last good frame (commit or seal) starts, if the segment has one.
    last_frame_start: Option<u64>,
}

/// Reads a segment sequentially through a large buffer.
pub(crate) struct ChunkReader<'a> {
    pub segment: &'a SegmentFile,
    pub buffer: Vec<u8>,
    pub buffer_offset: u64,
}

impl<'a> ChunkReader<'a> {
    pub fn bytes(&mut self, offset: u64, len: usize) -> Result<&[u8], StorageError> {
        let covered =
            offset >= self.buffer_offset && offset + len as u64 <= self.buffer_offset + self.buffer.len() as u64;
        if !covered {
            let want = len.max(SCAN_CHUNK_BYTES).min((self.segment.len_bytes - offset) as usize);
            self.buffer.resize(want, 0);
            read_exact_at(&*self.segment.file, &mut self.buffer, offset)
                .map_err(|e| StorageError::new("read", &self.segment.path, e))?;
            self.buffer_offset = offset;
        }
        let start = (offset - self.buffer_offset) as usize;
        Ok(&self.buffer[start..start + len])
    }
}

fn scan_segment(
    storage: &dyn Storage,
    segment: &SegmentFile,
    number: u32,
    is_last: bool,
    indexing: &mut Indexing<'_>,
) -> Result<Scanned, OpenError> {
    let corrupt = |offset_bytes: u64, reason: String| {
        OpenError::Corrupted(Corruption { segment: number, path: segment.path.clone(), offset_bytes, reason })
    };
    let len = segment.len_bytes;
    if len < SEGMENT_HEADER_BYTES + SEAL_FRAME_BYTES as u64 {
        return Err(corrupt(0, format!("segment file is only {len} bytes long")));
    }
    let mut reader = ChunkReader { segment, buffer: Vec::new(), buffer_offset: 0 };
    let header = decode_segment_header(reader.bytes(0, SEGMENT_HEADER_BYTES as usize)?).map_err(|r| corrupt(0, r))?;
    if header.segment != number {
        return Err(corrupt(0, format!("header says segment {}", header.segment)));
    }
    if header.first_position != indexing.next {
        return Err(corrupt(
            0,
            format!(
                "segment starts at position {} but the log so far ends at {}",
                header.first_position, indexing.next
            ),
        ));
    }
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut last_frame_start = None;
    let open_end =
        |offset: u64, last_frame_start: Option<u64>| Scanned { end_offset: offset, sealed: false, last_frame_start };
    loop {
        indexing.reading = (number, offset);
        if offset + FRAME_HEADER_BYTES as u64 > len {
            return Err(corrupt(offset, "segment is full but has no seal frame".to_owned()));
        }
        let header: [u8; FRAME_HEADER_BYTES] =
            reader.bytes(offset, FRAME_HEADER_BYTES)?.try_into().expect("frame header bytes");
        let (payload_len, payload_crc) = match check_frame_header(&header) {
            HeaderCheck::Zero => {
                check_tail(storage, &mut reader, number, is_last, offset, Damage::None, indexing.report)?;
                return Ok(open_end(offset, last_frame_start));
            }
            HeaderCheck::Invalid(reason) => {
                check_tail(storage, &mut reader, number, is_last, offset, Damage::Header(reason), indexing.report)?;
                return Ok(open_end(offset, last_frame_start));
            }
            HeaderCheck::Valid { payload_len, payload_crc } => (payload_len, payload_crc),
        };
        let payload_offset = offset + FRAME_HEADER_BYTES as u64;
        let frame_end = payload_offset + payload_len as u64;
        if frame_end > len {
            return Err(corrupt(offset, "a frame with a valid header runs past the end of the segment".to_owned()));
        }
        let payload = reader.bytes(payload_offset, payload_len)?;
        let body = match check_frame_payload(payload, payload_crc) {
            Ok(body) => body,
            Err(reason) => {
                let damage = Damage::Payload { frame_end, reason };
                check_tail(storage, &mut reader, number, is_last, offset, damage, indexing.report)?;
                return Ok(open_end(offset, last_frame_start));
            }
        };
        // From here on the frame's checksum is good: anything wrong is corruption, never a torn write.
        match body {
            FrameBody::Seal { next_position } if next_position == indexing.next => {
                let end_offset = offset + SEAL_FRAME_BYTES as u64;
                return Ok(Scanned { end_offset, sealed: true, last_frame_start: Some(offset) });
            }
            FrameBody::Seal { next_position } => {
                return Err(corrupt(
                    offset,
                    format!("seal says the next position is {next_position}, expected {}", indexing.next),
                ));
            }
            FrameBody::Commit { first_position, event_count, previous } => {
                if first_position != indexing.next {
                    let reason = format!("frame starts at position {first_position}, expected {}", indexing.next);
                    return Err(corrupt(offset, reason));
                }
                // The chain: a frame continues the history read so far, or it is not this log's.
                let mut chain = match (indexing.chain, previous) {
                    (Some(head), Some(previous)) if head != previous => {
                        let reason = format!(
                            "the frame continues another history: it follows {previous}, the log before it ends at {head}"
                        );
                        return Err(corrupt(offset, reason));
                    }
                    (Some(_), None) => {
                        return Err(corrupt(offset, "a format-1 frame after the hash chain began".to_owned()));
                    }
                    (_, previous) => previous,
                };
                let index = &mut indexing.index;
                let ids = &mut indexing.ids;
                let mut count = 0u32;
                // Consecutive records mostly share a stream (a batch): resolve its number once.
                let mut last_stream: Option<(&[u8], u32)> = None;
                for record in FrameRecords::new(payload) {
                    let (record_offset, bytes) = record.map_err(|reason| corrupt(offset, reason))?;
                    let record_at = payload_offset + record_offset as u64;
                    let key = decode_record_key(bytes).map_err(|reason| corrupt(record_at, reason))?;
                    chain = match (chain, key.chain) {
                        (None, StoredChain::Unchained | StoredChain::UnchainedKept(_)) => None,
                        (None, _) => return Err(corrupt(record_at, "a hashed record in a format-1 frame".to_owned())),
                        (Some(_), StoredChain::Unchained | StoredChain::UnchainedKept(_)) => {
                            return Err(corrupt(record_at, "a record without a hash in a chained frame".to_owned()));
                        }
                        // A record under the index runs was verified when it was written (and at
                        // the recovery that wrote its run): its stored hash carries the chain on, as
                        // its checksum vouches for it; `strata verify` recomputes every link.
                        (Some(_), chain) if key.position < index.next_position() => chain.hash(),
                        (Some(previous), _) => {
                            key.check_link(&previous).map_err(|reason| corrupt(record_at, reason))?
                        }
                    };
                    if key.position != indexing.next {
                        let reason =
                            format!("record of position {} where {} was expected", key.position, indexing.next);
                        return Err(corrupt(record_at, reason));
                    }
                    indexing.next += 1;
                    count += 1;
                    if key.position < index.next_position() {
                        // In a run already.
                        continue;
                    }
                    let stream = match last_stream {
                        Some((name, number)) if name == key.stream.as_bytes() => number,
                        _ => index
                            .stream_number_checked(key.stream, key.revision)
                            .map_err(|reason| corrupt(record_at, reason))?,
                    };
                    last_stream = Some((key.stream.as_bytes(), stream));
                    index
                        .push_record(ids, &key, stream, number, record_at)
                        .map_err(|reason| corrupt(record_at, reason))?;
                }
                if count != event_count {
                    return Err(corrupt(offset, format!("frame says {event_count} events but holds {count}")));
                }
                indexing.chain = chain;
                indexing.write_run_when_full();
                last_frame_start = Some(offset);
                offset = payload_offset + payload_len as u64;
            }
        }
    }
}

/// What is wrong at the end of the readable part of a segment.
#[derive(Debug)]
enum Damage {
    /// Nothing: an all-zero frame header, the clean end of the written part.
    None,
    /// A frame header that is neither zero nor valid.
    Header(&'static str),
    /// A frame with a valid header whose payload does not check out.
    Payload { frame_end: u64, reason: String },
}

/// The written part of a segment ends at `offset`, cleanly or at a damaged frame. Decides whether
/// what lies from `offset` on is the torn remains of the one frame that was being written at a crash
/// (zeroed, so the next frame starts on a clean slate) or corruption (the open is refused).
///
/// The writer syncs every frame before it writes the next, and segments are zero-filled, so after a
/// crash at most one frame — the one at `offset` — holds unsynced bytes, and a torn write leaves some
/// of its 512-byte sectors zero. Hence a tear is recognised by: only the last segment; no data
/// beyond the damaged frame (or, when its header is lost, beyond one frame's reach, and no valid
/// frame header in between); and, when the header survived, at least one sector of the frame still
/// zero. Anything else — a bit flip in an acknowledged frame above all — is corruption.
fn check_tail(
    storage: &dyn Storage,
    reader: &mut ChunkReader<'_>,
    number: u32,
    is_last: bool,
    offset: u64,
    damage: Damage,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    let segment = reader.segment;
    let corrupt = |reason: String| {
        OpenError::Corrupted(Corruption { segment: number, path: segment.path.clone(), offset_bytes: offset, reason })
    };
    if !is_last {
        return Err(corrupt(match damage {
            Damage::None => "segment ends without a seal frame".to_owned(),
            Damage::Header(reason) => reason.to_owned(),
            Damage::Payload { reason, .. } => reason,
        }));
    }
    // Beyond `reach` every byte must be zero.
    let reach = match &damage {
        Damage::Payload { frame_end, .. } => *frame_end,
        Damage::None | Damage::Header(_) => segment.len_bytes.min(offset + TORN_WINDOW_BYTES),
    };
    let mut last_nonzero = None;
    let mut at = offset;
    while at < segment.len_bytes {
        let chunk = (segment.len_bytes - at).min(SCAN_CHUNK_BYTES as u64) as usize;
        let bytes = reader.bytes(at, chunk)?;
        if let Some(last) = bytes.iter().rposition(|&b| b != 0) {
            let last = at + last as u64;
            if last >= reach {
                return Err(corrupt(format!(
                    "{}, yet data follows at byte {last}: this is not a torn write",
                    damage_reason(&damage)
                )));
            }
            last_nonzero = Some(last);
        }
        at += chunk as u64;
    }
    let Some(last_nonzero) = last_nonzero else {
        return Ok(());
    };
    let torn = reader.bytes(offset, (last_nonzero + 1 - offset) as usize)?.to_vec();
    match &damage {
        Damage::Payload { frame_end, reason } => {
            let frame = reader.bytes(offset, (frame_end - offset) as usize)?;
            if !is_torn_frame(frame, offset) {
                return Err(corrupt(format!("{reason}: not a torn write, the damaged record was written whole")));
            }
        }
        Damage::None | Damage::Header(_) => {
            if let Some(found) = find_frame_header(&torn, offset) {
                return Err(corrupt(format!("{}, yet a frame follows at byte {found}", damage_reason(&damage))));
            }
            if let Damage::Header(reason) = damage {
                // The whole header, not just up to its last non-zero byte: a header that straddles a
                // sector boundary is torn when the part in one sector is zero.
                let header = reader.bytes(offset, FRAME_HEADER_BYTES)?;
                if !has_zero_sector(header, offset) {
                    return Err(corrupt(format!("{reason}: not a torn write")));
                }
            }
        }
    }
    // Keep the bytes before zeroing them: if this ever was not a tear, nothing is lost for good.
    let saved =
        path_in(segment.path.parent().unwrap_or(Path::new(".")), &format!("{}.torn-{offset}", segment_name(number)));
    let save = |storage: &dyn Storage| -> std::io::Result<()> {
        let file = storage.open_file(&saved, true)?;
        file.write_all_at(&torn, 0)?;
        file.sync_data()?;
        storage.sync_dir(saved.parent().unwrap_or(Path::new(".")))
    };
    save(storage).map_err(|e| StorageError::new("save torn tail to", &saved, e))?;
    report.torn_tail_saved_to = Some(saved.clone());
    let zeros = vec![0u8; (last_nonzero + 1 - offset) as usize];
    let path = &segment.path;
    segment.file.write_all_at(&zeros, offset).map_err(|e| StorageError::new("zero torn tail", path, e))?;
    segment.file.sync_data().map_err(|e| StorageError::new("fdatasync", path, e))?;
    report.torn_tail_bytes_zeroed += zeros.len() as u64;
    Ok(())
}

fn damage_reason(damage: &Damage) -> &str {
    match damage {
        Damage::None => "the log ends here",
        Damage::Header(reason) => reason,
        Damage::Payload { reason, .. } => reason,
    }
}

/// Whether a frame with an intact header and a failing payload checksum can be a torn write: every
/// record that fails its own checksum must contain a disk sector share that is all zero (a sector
/// the crash kept from being written), and where a record's length is unusable, the rest of the frame
/// must. A frame whose failing record is written whole has rotted, not torn.
fn is_torn_frame(frame: &[u8], offset: u64) -> bool {
    // Records begin after the body header, and in a chained frame after the predecessor's hash.
    let mut at = FRAME_HEADER_BYTES + crate::log::format::records_start(&frame[FRAME_HEADER_BYTES.min(frame.len())..]);
    let mut any_record_failed = false;
    while at < frame.len() {
        let rest = &frame[at..];
        match crate::log::format::record_len(rest) {
            Some(len) if (crate::log::format::RECORD_FIXED_BYTES..=rest.len()).contains(&len) => {
                if decode_record_key(&rest[..len]).is_err() {
                    if !has_zero_sector(&rest[..len], offset + at as u64) {
                        return false;
                    }
                    any_record_failed = true;
                }
                at += len;
            }
            _ => return has_zero_sector(rest, offset + at as u64),
        }
    }
    // Every record checks out: then the damage is in the body header, which a tear can only have hit
    // if it lies (partly) in a sector of its own.
    any_record_failed
        || has_zero_sector(
            &frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + crate::log::format::FRAME_BODY_HEADER_BYTES],
            offset + FRAME_HEADER_BYTES as u64,
        )
}

/// Whether some disk sector's share of `bytes` (which start at file offset `offset`) is all zero.
fn has_zero_sector(bytes: &[u8], offset: u64) -> bool {
    let mut at = 0usize;
    while at < bytes.len() {
        let sector_end = ((offset + at as u64) / SECTOR_BYTES + 1) * SECTOR_BYTES;
        let end = ((sector_end - offset) as usize).min(bytes.len());
        if bytes[at..end].iter().all(|&b| b == 0) {
            return true;
        }
        at = end;
    }
    false
}

/// The file offset of the first valid frame header inside `bytes` (which start at file offset
/// `offset`), skipping the damaged one at the very start.
fn find_frame_header(bytes: &[u8], offset: u64) -> Option<u64> {
    let magic = crate::log::format::FRAME_MAGIC.to_le_bytes();
    (1..bytes.len().saturating_sub(FRAME_HEADER_BYTES - 1)).find_map(|at| {
        let candidate: &[u8; FRAME_HEADER_BYTES] = bytes[at..at + FRAME_HEADER_BYTES].try_into().ok()?;
        let valid = candidate[..4] == magic && matches!(check_frame_header(candidate), HeaderCheck::Valid { .. });
        valid.then_some(offset + at as u64)
    })
}
