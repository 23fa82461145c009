//! The writer's side of the log: segment files created zero-filled, frames appended and synced,
//! sealing and rolling over (`docs/design.md`, "Segments").

use crate::error::StorageError;
use crate::index::SegmentFile;
use crate::io::{Storage, StorageFile, path_in};
use crate::log::format::{
    FORMAT_VERSION, FRAME_HEADER_BYTES, FRAME_PAYLOAD_BYTES_MAX, SEAL_FRAME_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader,
    encode_segment_header, seal_frame,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

pub(super) const SEGMENT_SUFFIX: &str = ".seg";
pub(super) const PREPARING_SUFFIX: &str = ".seg.tmp";
/// The segment being zero-filled ahead of need; it becomes whichever segment is created next.
pub(super) const PREPARED_NAME: &str = "next.seg.tmp";

pub(crate) fn segment_name(segment: u32) -> String {
    format!("{segment:010}{SEGMENT_SUFFIX}")
}

pub(super) fn preparing_name(segment: u32) -> String {
    format!("{segment:010}{PREPARING_SUFFIX}")
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: u32,
    pub events: u64,
    /// Bytes of an interrupted (never acknowledged) write that were zeroed at the end of the last segment.
    pub torn_tail_bytes_zeroed: u64,
    /// Where those bytes were saved before they were zeroed (`<segment>.torn-<offset>`).
    pub torn_tail_saved_to: Option<std::path::PathBuf>,
    /// Leftover half-prepared segment files that were removed.
    pub preparing_files_removed: u32,
    /// Why the next segment could not be created at open (a full disk): the store is readable, and
    /// the first append tries again.
    pub next_segment_deferred: Option<String>,
    /// Index runs loaded (covering the log from position 0), and runs written while reading the log.
    pub index_runs: u32,
    pub index_runs_written: u32,
    /// Events read from the log to index them: those past the runs.
    pub events_read_from_log: u64,
    /// Index runs not used, and why (torn, damaged, after a gap); they are removed and their events
    /// indexed again from the log.
    pub index_runs_dropped: Vec<String>,
    /// A replica's damaged suffix set aside (see [`Store::open_replicated`](crate::Store::open_replicated)):
    /// what, from where, why, and where its bytes were kept. Always empty for an embedded store,
    /// which refuses to open on damage instead.
    pub set_aside: Vec<String>,
}

/// The writer's side of the log: the active segment and where the next frame goes.
#[derive(Debug)]
pub(crate) struct LogWriter {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) dir: PathBuf,
    pub(super) segment_size_bytes: u64,
    /// The segment frames go to; `None` when the last one is sealed (or there is none yet) and the
    /// next could not be created yet — the next frame creates it.
    pub(super) active: Option<SegmentFile>,
    /// The active segment's number, or the number of the segment to create next.
    pub(super) active_segment: u32,
    pub(super) write_offset: u64,
    /// The next segment, being zero-filled in the background so that rolling over does not stall commits.
    pub(super) prepared: Option<JoinHandle<std::io::Result<Arc<dyn StorageFile>>>>,
}

/// Why a frame was not written.
#[derive(Debug)]
pub enum WriteError {
    /// A write or sync failed: what is on disk is unknown; the store must stop writing.
    Failed(StorageError),
    /// The segment the frame needed could not be created (a full disk, no file descriptors): nothing
    /// of the frame was written, and the next frame tries again.
    NotWritten(StorageError),
}

/// Where a frame landed in the local log (what the committer indexes it by).
#[derive(Debug)]
pub struct FrameWritten {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    /// Set when the frame opened a new segment, which readers must learn about.
    pub(crate) new_segment: Option<SegmentFile>,
}

impl LogWriter {
    /// The largest frame that fits an empty segment with room left for its seal.
    pub fn frame_capacity_bytes(segment_size_bytes: u64) -> usize {
        let room = segment_size_bytes - SEGMENT_HEADER_BYTES - SEAL_FRAME_BYTES as u64;
        room.min((FRAME_HEADER_BYTES + FRAME_PAYLOAD_BYTES_MAX) as u64) as usize
    }

    /// Writes one frame whose first event is at `first_position` and starts its writeback; seals the
    /// active segment and opens the next one first when the frame does not fit. [`LogWriter::sync`]
    /// makes it durable; in between the committer does CPU work while the disk works.
    pub fn write_frame(&mut self, frame: &[u8], first_position: u64) -> Result<FrameWritten, WriteError> {
        assert!(frame.len() <= Self::frame_capacity_bytes(self.segment_size_bytes), "frame larger than a segment");
        let mut new_segment = None;
        // The active segment keeps the size it was created with; new segments get the configured size.
        let fits =
            |active: &SegmentFile| self.write_offset + (frame.len() + SEAL_FRAME_BYTES) as u64 <= active.len_bytes;
        if !self.active.as_ref().is_some_and(fits) {
            if self.active.is_some() {
                self.seal(first_position).map_err(WriteError::Failed)?;
            }
            let created = self.create_next(first_position)?;
            new_segment = Some(created);
        }
        let active = self.active.as_ref().expect("a segment to write to");
        let offset = self.write_offset;
        let path = &active.path;
        active.file.write_all_at(frame, offset).map_err(|e| WriteError::Failed(StorageError::new("write", path, e)))?;
        active.file.start_writeback(offset, frame.len() as u64);
        self.write_offset += frame.len() as u64;
        self.prepare_next_when_started();
        Ok(FrameWritten { segment: self.active_segment, offset, new_segment })
    }

    /// Makes every frame written so far durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        let active = self.active.as_ref().expect("a frame was written");
        active.file.sync_data().map_err(|e| StorageError::new("fdatasync", &active.path, e))
    }

    /// Closes the active segment with a seal frame, durably.
    fn seal(&mut self, next_position: u64) -> Result<(), StorageError> {
        let active = self.active.take().expect("an active segment to seal");
        let seal = seal_frame(next_position);
        let path = &active.path;
        active.file.write_all_at(&seal, self.write_offset).map_err(|e| StorageError::new("write seal", path, e))?;
        active.file.sync_data().map_err(|e| StorageError::new("fdatasync", path, e))?;
        self.active_segment += 1;
        Ok(())
    }

    /// Creates the next segment, whose first event is at `next_position`, and makes it active.
    fn create_next(&mut self, next_position: u64) -> Result<SegmentFile, WriteError> {
        // Never wait for the zero-filling: when appends outrun it, allocate this segment instead (its
        // fdatasyncs cost a little more) and keep the zero-filled one for the next roll-over.
        let source = match self.prepared.take() {
            Some(handle) if handle.is_finished() => match handle.join().expect("segment preparation panicked") {
                Ok(file) => SegmentSource::Prepared(file),
                // Preparing ahead failed (the disk was full then, say): try again in line.
                Err(_) => SegmentSource::Allocate,
            },
            Some(handle) => {
                self.prepared = Some(handle);
                SegmentSource::Allocate
            }
            None => SegmentSource::Allocate,
        };
        let header = SegmentHeader {
            segment: self.active_segment,
            first_position: next_position,
            format_version: FORMAT_VERSION,
        };
        let created = create_segment(&*self.storage, &self.dir, header, self.segment_size_bytes, source)?;
        self.active = Some(created.clone());
        self.write_offset = SEGMENT_HEADER_BYTES;
        Ok(created)
    }

    /// Starts zero-filling the next segment in the background once the active one is 1/16 full: early
    /// enough that under sustained load (zero-filling runs at about the speed data arrives) it is ready
    /// before it is needed, late enough that a small store never pays for it.
    pub(super) fn prepare_next_when_started(&mut self) {
        let Some(active) = &self.active else { return };
        if self.prepared.is_some() || self.write_offset < active.len_bytes / 16 {
            return;
        }
        let storage = self.storage.clone();
        let path = path_in(&self.dir, PREPARED_NAME);
        let size = self.segment_size_bytes;
        let spawned = std::thread::Builder::new().name("strata-prepare".to_owned()).spawn(move || {
            // Zero-filling is bulk work that must not take the CPU from the committer (on small
            // machines they share a core): run it at low priority. Linux nice values are per thread.
            // SAFETY: setpriority has no memory-safety preconditions; its failure is harmless.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            prepare_segment_file(&*storage, &path, size)
        });
        // If no thread can be started, the roll-over prepares the segment in line.
        self.prepared = spawned.ok();
    }

    /// Waits for background preparation, so nothing touches the directory after the writer stops.
    pub fn finish(mut self) {
        if let Some(handle) = self.prepared.take() {
            let _ = handle.join();
        }
    }
}

/// Creates a zero-filled, synced file under its preparing name.
pub(super) fn prepare_segment_file(
    storage: &dyn Storage,
    path: &Path,
    size_bytes: u64,
) -> std::io::Result<Arc<dyn StorageFile>> {
    let file = storage.open_file(path, true)?;
    let filled = file.extend_zeroed(size_bytes).and_then(|()| file.sync_data());
    if let Err(error) = filled {
        // Give the space back (a half-filled file would hold it until the next open).
        let _ = storage.remove_file(path);
        return Err(error);
    }
    Ok(file)
}

/// Where the bytes of a new segment come from.
pub(super) enum SegmentSource {
    /// Zero-filled ahead of time under [`PREPARED_NAME`].
    Prepared(Arc<dyn StorageFile>),
    /// Zero-fill now (when there is no hurry: at open).
    ZeroFill,
    /// Reserve the space now without writing it (when appends are waiting).
    Allocate,
}

/// Makes `segment` exist durably with its header: get a file of the right size, write the header,
/// sync, rename into place, sync the directory. A crash at any step leaves either no segment or a
/// complete empty one; a leftover preparing file is removed at the next open.
pub(super) fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    header: SegmentHeader,
    size_bytes: u64,
    source: SegmentSource,
) -> Result<SegmentFile, WriteError> {
    // Getting the space can fail for want of room or descriptors: nothing is written then. Once the
    // file exists at full size, any failure is an IO failure of unknown effect.
    let (preparing, file) = match source {
        SegmentSource::Prepared(file) => (path_in(dir, PREPARED_NAME), file),
        SegmentSource::ZeroFill => {
            let preparing = path_in(dir, &preparing_name(header.segment));
            let file = prepare_segment_file(storage, &preparing, size_bytes)
                .map_err(|e| WriteError::NotWritten(StorageError::new("prepare segment", &preparing, e)))?;
            (preparing, file)
        }
        SegmentSource::Allocate => {
            let preparing = path_in(dir, &preparing_name(header.segment));
            let allocated =
                storage.open_file(&preparing, true).and_then(|file| file.allocate(size_bytes).map(|()| file));
            let file = allocated.map_err(|e| {
                let _ = storage.remove_file(&preparing);
                WriteError::NotWritten(StorageError::new("allocate segment", &preparing, e))
            })?;
            (preparing, file)
        }
    };
    let failed = |operation, path: &Path, e| WriteError::Failed(StorageError::new(operation, path, e));
    file.write_all_at(&encode_segment_header(header), 0).map_err(|e| failed("write", &preparing, e))?;
    file.sync_data().map_err(|e| failed("fdatasync", &preparing, e))?;
    let path = path_in(dir, &segment_name(header.segment));
    storage.rename(&preparing, &path).map_err(|e| failed("rename", &preparing, e))?;
    storage.sync_dir(dir).map_err(|e| failed("sync directory", dir, e))?;
    Ok(SegmentFile { file, path, len_bytes: size_bytes, first_position: header.first_position })
}
