//! Scavenging: reclaims the space of events that reads no longer show — of tombstoned and
//! soft-deleted streams, and below a stream's `truncate_before`, `max_count` or `max_age` — in sealed
//! segments, online.
//!
//! A scavenged event leaves a placeholder record at its position: the same position, stream,
//! revision, id and recorded time, with type `$scavenged` and no data, metadata or tags. So positions
//! stay dense (a reader of `$all` sees a placeholder, never a gap), stream revisions stay dense, an
//! event id stays taken, and the indexes keep their shape: only the locations of the segment's
//! records and the type and tag lists change.
//!
//! One segment at a time, crash-safe at every step:
//! 1. decide, under the index's read lock, which events reads hide now;
//! 2. write the segment again with placeholders under a temporary name, synced;
//! 3. write the index runs that cover it again (new locations; scavenged positions out of the type
//!    and tag lists) under temporary names, synced;
//! 4. under the index's write lock — readers and the committer wait a few milliseconds — check that
//!    no system event (metadata, delete) came in meanwhile, remove the old runs, rename the segment
//!    over the old one, rename the new runs into place, and swap both in memory.
//!
//! A crash after the old runs are removed and before the new ones are in place leaves a gap in the
//! runs: the next open rebuilds them from the log, which is then the old segment or the new one,
//! both whole. Readers that started before the swap finish on the old files (open handles keep them).

use crate::error::{Corruption, StorageError};
use crate::index::run::{self, RemapSource, Run};
use crate::index::{Index, SegmentFile};
use crate::io::{Storage, path_in};
use crate::log::format::{
    FRAME_HEADER_BYTES, FrameBody, FrameBuilder, FrameRecords, HeaderCheck, RecordChain, RecordFields,
    SEGMENT_HEADER_BYTES, SegmentHeader, check_frame_header, check_frame_payload, decode_record_key,
    decode_segment_header, encode_segment_header, seal_frame,
};
use crate::log::{ChunkReader, INDEX_DIR};
use crate::store::Store;
use crate::system;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use strata_core::{EventType, NewEvent, StreamId, Timestamp};

/// What a scavenge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScavengeReport {
    /// Sealed segments fully covered by index runs, read to find what reads hide.
    pub segments_scanned: u32,
    /// Segments written again with placeholders.
    pub segments_rewritten: u32,
    /// Events replaced by placeholders.
    pub events_scavenged: u64,
    /// Bytes the rewritten segments took before and take now.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Segments left as they were because a metadata change or delete came in while they were being
    /// rewritten (the next scavenge takes them).
    pub segments_skipped: u32,
}

/// Why a scavenge stopped. What it finished stays finished; nothing is half done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScavengeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Corrupted(#[from] Corruption),
    #[error("the store refuses writes after a storage failure ({0}); reopen it first")]
    Poisoned(String),
}

impl Store {
    /// Reclaims the space of the events reads hide (deleted streams, truncated or expired revisions)
    /// in sealed segments that index runs cover; see the module documentation of `scavenge.rs`.
    /// Reads and appends go on meanwhile. One scavenge runs at a time (also against index merges).
    pub fn scavenge_blocking(&self) -> Result<ScavengeReport, ScavengeError> {
        let shared = self.shared();
        if let Some(reason) = shared.poisoned.get() {
            return Err(ScavengeError::Poisoned(reason.clone()));
        }
        let _maintenance = shared.maintenance.lock().expect("maintenance lock poisoned");
        let storage = self.storage();
        let index_dir = path_in(self.dir(), INDEX_DIR);
        let mut report = ScavengeReport::default();
        let candidates: Vec<(u32, SegmentFile, u64)> = {
            let index = shared.index.read().expect("index lock poisoned");
            let runs_end = index.runs_end();
            // Sealed: every segment but the last; covered: its successor starts at or below the runs' end.
            index
                .segments
                .windows(2)
                .enumerate()
                .filter(|(_, pair)| pair[1].first_position <= runs_end)
                .map(|(number, pair)| (number as u32, pair[0].clone(), pair[1].first_position))
                .collect()
        };
        for (number, segment, end) in candidates {
            report.segments_scanned += 1;
            let now = self.now();
            let version = shared.index.read().expect("index lock poisoned").system_version();
            let mut hidden = Hidden::default();
            let rewrite = rewrite_segment(&*storage, &segment, number, end, |stream, revision| {
                hidden.is_hidden(&shared.index, stream, revision, now)
            })?;
            let Some(rewrite) = rewrite else { continue };
            // The runs that cover the segment, written again for its new offsets.
            let covering: Vec<Arc<Run>> = {
                let index = shared.index.read().expect("index lock poisoned");
                index.runs().iter().filter(|run| run.start < end && run.end > segment.first_position).cloned().collect()
            };
            let mut temps = Vec::with_capacity(covering.len());
            for run in &covering {
                let mut source = RemapSource {
                    run: run.clone(),
                    segment: number,
                    first_position: segment.first_position,
                    offsets: &rewrite.offsets,
                    scavenged: &rewrite.scavenged,
                };
                match run::write_run_temp(&storage, &index_dir, &mut source) {
                    Ok(temp) => temps.push(temp),
                    Err(error) => {
                        discard(&*storage, &rewrite.temp, &temps);
                        return Err(StorageError::new("write index run in", &index_dir, error).into());
                    }
                }
            }
            let mut index = shared.index.write().expect("index lock poisoned");
            if index.system_version() != version {
                drop(index);
                discard(&*storage, &rewrite.temp, &temps);
                report.segments_skipped += 1;
                continue;
            }
            let swapped = swap(&storage, &index_dir, &segment, &rewrite, &covering, &temps);
            match swapped {
                Ok((file, runs)) => {
                    index.segments[number as usize] = file;
                    for (old, new) in covering.iter().zip(runs) {
                        index.replace_run(old, Arc::new(new));
                    }
                }
                Err(error) => {
                    // Whatever step failed, the log is whole (old or new segment) and missing runs are
                    // rebuilt at the next open; but this process's view may now be stale: stop writing.
                    let reason = format!("scavenging segment {number} failed: {error}");
                    let _ = shared.poisoned.set(reason);
                    return Err(error.into());
                }
            }
            drop(index);
            report.segments_rewritten += 1;
            report.events_scavenged += rewrite.scavenged.len() as u64;
            report.bytes_before += segment.len_bytes;
            report.bytes_after += rewrite.len_bytes;
        }
        Ok(report)
    }
}

/// Removes what a scavenge of one segment wrote before it gave up.
fn discard(storage: &dyn Storage, segment_temp: &Path, run_temps: &[PathBuf]) {
    let _ = storage.remove_file(segment_temp);
    for temp in run_temps {
        let _ = storage.remove_file(temp);
    }
}

/// Step 4, under the index's write lock: old runs out, new segment and runs in.
fn swap(
    storage: &Arc<dyn Storage>,
    index_dir: &Path,
    segment: &SegmentFile,
    rewrite: &Rewrite,
    covering: &[Arc<Run>],
    temps: &[PathBuf],
) -> Result<(SegmentFile, Vec<Run>), StorageError> {
    fn failed<'p>(operation: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StorageError + 'p {
        move |error| StorageError::new(operation, path, error)
    }
    for run in covering {
        storage.remove_file(&run.path).map_err(failed("remove", &run.path))?;
    }
    storage.sync_dir(index_dir).map_err(failed("sync directory", index_dir))?;
    storage.rename(&rewrite.temp, &segment.path).map_err(failed("rename", &rewrite.temp))?;
    let data_dir = segment.path.parent().unwrap_or(Path::new("."));
    storage.sync_dir(data_dir).map_err(failed("sync directory", data_dir))?;
    let file = storage.open_file(&segment.path, false).map_err(failed("open", &segment.path))?;
    let new_segment = SegmentFile {
        file,
        path: segment.path.clone(),
        len_bytes: rewrite.len_bytes,
        first_position: segment.first_position,
    };
    let mut runs = Vec::with_capacity(temps.len());
    for temp in temps {
        runs.push(run::publish_run(storage, index_dir, temp).map_err(failed("publish index run", temp))?);
    }
    Ok((new_segment, runs))
}

/// Which events reads hide, per stream, decided once per stream.
#[derive(Default)]
struct Hidden {
    /// The first revision reads show, per stream (`u64::MAX`: none, tombstoned).
    first_visible: HashMap<String, u64>,
}

impl Hidden {
    fn is_hidden(
        &mut self,
        index: &RwLock<Index>,
        stream: &str,
        revision: u64,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        if stream.starts_with('$') {
            // System events carry the metadata and deletes themselves.
            return Ok(false);
        }
        if let Some(&first) = self.first_visible.get(stream) {
            return Ok(revision < first);
        }
        let index = index.read().expect("index lock poisoned");
        let first = if index.is_tombstoned(stream) {
            u64::MAX
        } else {
            match index.stream(stream)? {
                Some(entry) => index.first_visible_revision(&entry, now)?,
                None => 0,
            }
        };
        self.first_visible.insert(stream.to_owned(), first);
        Ok(revision < first)
    }
}

/// A segment written again with placeholders, under a temporary name.
struct Rewrite {
    temp: PathBuf,
    len_bytes: u64,
    /// The new offset of each position of the segment, from its first.
    offsets: Vec<u32>,
    /// Positions replaced by placeholders, ascending.
    scavenged: Vec<u64>,
}

/// Reads sealed segment `number` (positions up to `end`) and, if `hidden` says some of its events are
/// hidden, writes it again with placeholders for them. `None` when there is nothing to reclaim.
fn rewrite_segment(
    storage: &dyn Storage,
    segment: &SegmentFile,
    number: u32,
    end: u64,
    mut hidden: impl FnMut(&str, u64) -> Result<bool, StorageError>,
) -> Result<Option<Rewrite>, ScavengeError> {
    let corrupt = |offset_bytes: u64, reason: String| Corruption {
        segment: number,
        path: segment.path.clone(),
        offset_bytes,
        reason: format!("found while scavenging: {reason}"),
    };
    let placeholder_type = EventType::new(system::SCAVENGED_TYPE).expect("a valid type");
    let placeholder = NewEvent::new(placeholder_type, bytes::Bytes::new());
    let mut reader = ChunkReader { segment, buffer: Vec::new(), buffer_offset: 0 };
    // First pass: is anything hidden?
    let mut any = false;
    for_each_record(&mut reader, |_, _, key| {
        if key.event_type != system::SCAVENGED_TYPE && hidden(key.stream, key.revision)? {
            any = true;
        }
        Ok(())
    })
    .map_err(|error| error.into_scavenge(&corrupt))?;
    if !any {
        return Ok(None);
    }
    let temp = path_in(segment.path.parent().unwrap_or(Path::new(".")), &format!("{number:010}.seg.scavenge.tmp"));
    let file = storage.open_file(&temp, true).map_err(|e| StorageError::new("create", &temp, e))?;
    let write_failed = |e| StorageError::new("write", &temp, e);
    let format_version = decode_segment_header(reader.bytes(0, SEGMENT_HEADER_BYTES as usize)?)
        .map_err(|reason| ScavengeError::from(corrupt(0, reason)))?
        .format_version;
    let header = SegmentHeader { segment: number, first_position: segment.first_position, format_version };
    let mut out = encode_segment_header(header).to_vec();
    let mut offsets = Vec::with_capacity((end - segment.first_position) as usize);
    let mut scavenged = Vec::new();
    let mut frame = FrameBuilder::default();
    let mut frame_first = None;
    let mut flushed = 0u64;
    let result = for_each_record(&mut reader, |frame_start, record, key| {
        if frame_first != Some(frame_start) {
            if frame_first.is_some() {
                out.extend_from_slice(frame.finish());
            }
            frame.start_commit(key.position, frame_start.previous);
            frame_first = Some(frame_start);
        }
        let offset = flushed + out.len() as u64 + frame.len() as u64;
        offsets.push(u32::try_from(offset).expect("segments are at most 4 GiB"));
        if key.event_type != system::SCAVENGED_TYPE && hidden(key.stream, key.revision)? {
            let stream = StreamId::new(key.stream).expect("a stored stream id is valid");
            // A chained event's placeholder keeps its hash and what the hash covers, so the chain
            // still verifies through it.
            let kept = key.kept_header();
            // A format-1 event's placeholder keeps them too: they are what the genesis of a chain
            // that continues format-1 events covers.
            let chain = match key.chain.hash() {
                None => RecordChain::UnchainedPlaceholder(kept),
                Some(hash) => RecordChain::Placeholder { hash, kept: Some(kept) },
            };
            frame.push_record(RecordFields {
                position: key.position,
                revision: key.revision,
                recorded_at: key.recorded_at,
                id: key.id,
                stream: &stream,
                event: &placeholder,
                chain,
            });
            scavenged.push(key.position);
        } else {
            frame.push_encoded_record(record);
        }
        if out.len() >= 8 << 20 {
            file.write_all_at(&out, flushed).map_err(write_failed)?;
            flushed += out.len() as u64;
            out.clear();
        }
        Ok(())
    });
    let finished = result.map_err(|error| error.into_scavenge(&corrupt)).and_then(|()| {
        if frame_first.is_some() {
            out.extend_from_slice(frame.finish());
        }
        out.extend_from_slice(&seal_frame(end));
        file.write_all_at(&out, flushed).map_err(write_failed)?;
        file.sync_data().map_err(|e| StorageError::new("fdatasync", &temp, e))?;
        Ok(flushed + out.len() as u64)
    });
    match finished {
        Ok(len_bytes) => {
            if offsets.len() as u64 != end - segment.first_position {
                let _ = storage.remove_file(&temp);
                let reason =
                    format!("holds {} events where {} were expected", offsets.len(), end - segment.first_position);
                return Err(corrupt(0, reason).into());
            }
            Ok(Some(Rewrite { temp, len_bytes, offsets, scavenged }))
        }
        Err(error) => {
            let _ = storage.remove_file(&temp);
            Err(error)
        }
    }
}

/// Why a walk over a segment's records stopped.
enum WalkError {
    Corrupt(u64, String),
    Storage(StorageError),
}

impl From<StorageError> for WalkError {
    fn from(error: StorageError) -> Self {
        WalkError::Storage(error)
    }
}

impl WalkError {
    fn into_scavenge(self, corrupt: &impl Fn(u64, String) -> Corruption) -> ScavengeError {
        match self {
            WalkError::Corrupt(offset, reason) => corrupt(offset, reason).into(),
            WalkError::Storage(error) => error.into(),
        }
    }
}

/// Calls `visit(frame offset, record bytes, record key)` for every record of a sealed segment, checking
/// every frame and record; stops at the seal.
/// Where a record's frame starts in its segment, and the hash the frame is chained to (format 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameStart {
    offset: u64,
    previous: Option<strata_core::EventHash>,
}

fn for_each_record(
    reader: &mut ChunkReader<'_>,
    mut visit: impl FnMut(FrameStart, &[u8], crate::log::format::RecordKey<'_>) -> Result<(), StorageError>,
) -> Result<(), WalkError> {
    let len = reader.segment.len_bytes;
    let mut offset = SEGMENT_HEADER_BYTES;
    loop {
        if offset + FRAME_HEADER_BYTES as u64 > len {
            return Err(WalkError::Corrupt(offset, "segment ends without a seal frame".to_owned()));
        }
        let header: [u8; FRAME_HEADER_BYTES] =
            reader.bytes(offset, FRAME_HEADER_BYTES)?.try_into().expect("frame header bytes");
        let (payload_len, payload_crc) = match check_frame_header(&header) {
            HeaderCheck::Valid { payload_len, payload_crc } => (payload_len, payload_crc),
            HeaderCheck::Zero => return Err(WalkError::Corrupt(offset, "segment ends without a seal frame".into())),
            HeaderCheck::Invalid(reason) => return Err(WalkError::Corrupt(offset, reason.to_owned())),
        };
        let payload_offset = offset + FRAME_HEADER_BYTES as u64;
        if payload_offset + payload_len as u64 > len {
            return Err(WalkError::Corrupt(offset, "a frame runs past the end of the segment".to_owned()));
        }
        let payload = reader.bytes(payload_offset, payload_len)?.to_vec();
        match check_frame_payload(&payload, payload_crc).map_err(|reason| WalkError::Corrupt(offset, reason))? {
            FrameBody::Seal { .. } => return Ok(()),
            FrameBody::Commit { previous, .. } => {
                for record in FrameRecords::new(&payload) {
                    let (_, bytes) = record.map_err(|reason| WalkError::Corrupt(offset, reason))?;
                    let key = decode_record_key(bytes).map_err(|reason| WalkError::Corrupt(offset, reason))?;
                    visit(FrameStart { offset, previous }, bytes, key)?;
                }
            }
        }
        offset = payload_offset + payload_len as u64;
    }
}
