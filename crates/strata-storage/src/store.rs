//! [`Store`]: the embedded engine's public face.

use crate::clock::{Clock, SystemClock};
use crate::commit::committer::{self, Request, Shared, SystemOperation, Work};
use crate::commit::reply::{self, Reply};
use crate::error::{AppendError, OpenError, ReadError, StorageError};
use crate::index::Index;
use crate::io::{OsStorage, Storage, path_in};
use crate::log::format::record_encoded_len;
use crate::log::{LogWriter, OnDamage, RecoveryReport, recover};
use crate::system;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::thread::JoinHandle;
use strata_core::limits::{APPEND_BYTES_MAX, APPEND_EVENTS_MAX, EVENT_BYTES_MAX_CEILING, EVENT_BYTES_MAX_DEFAULT};
use strata_core::{
    EventId, EventType, ExpectedRevision, NewEvent, Position, RecordedEvent, StreamId, StreamMetadata, StreamRevision,
    Timestamp, ValidationError,
};
pub use strata_store::append::*;
use tokio::sync::{mpsc, oneshot};

/// Name of the lock file that keeps a second process out of a data directory.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// Default size of a segment file.
pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 128 << 20;
/// Smallest segment a store accepts (tests use small segments to exercise sealing).
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 4 << 10;
/// Largest segment: record offsets are 32-bit.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = u32::MAX as u64;
/// Appends waiting for the committer; beyond this, `append` waits (back-pressure).
const QUEUE_REQUESTS_MAX: usize = 16_384;
/// How far ahead of the store's clock an imported event's recorded time may be.
const IMPORT_CLOCK_SKEW_MICROS_MAX: i64 = 60_000_000;
/// Upper bound of a `$deleted` event's record (a stream id of at most 256 bytes and 8 bytes of data).
const SYSTEM_EVENT_BYTES_MAX: usize = 512;
/// Upper bound of the `$store-created` record the committer puts before a store's first append
/// (about 300 bytes): every frame keeps room for it.
const STORE_CREATED_BYTES_MAX: usize = 512;

/// The hash of the log's last event (`None`: empty, or format 1 only) and the store's
/// `$store-created`, read from the log once recovery has indexed it.
fn read_chain_state(
    index: &Index,
) -> Result<(Option<strata_core::EventHash>, Option<system::StoreCreated>), OpenError> {
    let read_at = |position: u64| -> Result<RecordedEvent, OpenError> {
        let location = index
            .location(position)
            .map_err(OpenError::Storage)?
            .ok_or_else(|| OpenError::InvalidOptions(format!("the index has no location for position {position}")))?;
        crate::read::read_event_at(&index.segments, location, position).map_err(|error| match error {
            ReadError::Corrupted(corruption) => OpenError::Corrupted(corruption),
            ReadError::Storage(error) => OpenError::Storage(error),
            other => OpenError::InvalidOptions(other.to_string()),
        })
    };
    let Some(last) = index.next_position().checked_sub(1) else {
        return Ok((None, None));
    };
    let head = read_at(last)?.hash;
    let identity = match index.stream(system::STORE_STREAM).map_err(OpenError::Storage)? {
        None => None,
        Some(stream) => {
            let position = index.stream_position(&stream, 0).map_err(OpenError::Storage)?;
            let event = read_at(position)?;
            let created = system::StoreCreated::decode(&event.data).map_err(|reason| {
                let (segment, offset_bytes) = index
                    .location(position)
                    .ok()
                    .flatten()
                    .map_or((0, 0), |location| (location.segment, u64::from(location.offset)));
                let path = index.segments.get(segment as usize).map(|s| s.path.clone()).unwrap_or_default();
                OpenError::Corrupted(crate::error::Corruption { segment, path, offset_bytes, reason })
            })?;
            Some(created)
        }
    };
    if head.is_some() != identity.is_some() {
        let reason = "the log has a hash chain but no $store-created, or the other way round".to_owned();
        let path = index.segments.last().map(|s| s.path.clone()).unwrap_or_default();
        return Err(OpenError::Corrupted(crate::error::Corruption { segment: 0, path, offset_bytes: 0, reason }));
    }
    Ok((head, identity))
}

fn system_stream() -> StreamId {
    StreamId::new(system::SYSTEM_STREAM).expect("a valid name")
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size of each segment file, preallocated (zero-filled) when the segment is created.
    pub segment_size_bytes: u64,
    /// Largest event (data plus metadata) accepted; at most [`EVENT_BYTES_MAX_CEILING`].
    pub event_bytes_max: usize,
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    /// Events the in-memory tail of the indexes collects before it is written as an index run (see
    /// `docs/design.md`, "Indexes"): bounds the memory of the indexes and what an open after a crash
    /// reads from the log. At least [`INDEX_RUN_EVENTS_MIN`].
    pub index_run_events: u64,
    /// **Breaks the hash chain — for measuring its cost only.** Every record gets an all-zero hash
    /// instead of its link, so the store cannot be reopened (recovery refuses the chain) nor verified.
    /// `strata-bench engine --unhashed` sets it to compare the same appends with and without hashing.
    pub chain_hashing_off_for_benchmarks: bool,
    /// The largest frame (commit group) the committer writes, when something other than the segment
    /// size bounds it: a replicated log's largest message (cluster mode: the NATS servers'
    /// `max_payload`). At least [`append_frame_bytes_max`], so every append the limits of DESIGN §7
    /// admit still fits one frame.
    pub frame_bytes_max: Option<usize>,
}

/// The largest frame one append can make within the limits of DESIGN §7 ([`APPEND_BYTES_MAX`],
/// [`APPEND_EVENTS_MAX`] events in streams of up to [`strata_core::limits::STREAM_ID_BYTES_MAX`]
/// bytes), a soft delete's `$deleted` and a new store's `$store-created` included.
pub const fn append_frame_bytes_max() -> usize {
    use crate::log::format::{
        FRAME_BODY_HEADER_BYTES, FRAME_CHAIN_BYTES, FRAME_HEADER_BYTES, RECORD_CHAIN_BYTES, RECORD_FIXED_BYTES,
    };
    FRAME_HEADER_BYTES
        + FRAME_BODY_HEADER_BYTES
        + FRAME_CHAIN_BYTES
        + STORE_CREATED_BYTES_MAX
        + SYSTEM_EVENT_BYTES_MAX
        + APPEND_BYTES_MAX
        + APPEND_EVENTS_MAX * (RECORD_FIXED_BYTES + RECORD_CHAIN_BYTES + strata_core::limits::STREAM_ID_BYTES_MAX)
}

/// Default of [`Options::index_run_events`].
pub const INDEX_RUN_EVENTS_DEFAULT: u64 = 1 << 18;
/// Smallest [`Options::index_run_events`] (tests use small runs to exercise them).
pub const INDEX_RUN_EVENTS_MIN: u64 = 16;

impl Default for Options {
    fn default() -> Self {
        Self {
            segment_size_bytes: SEGMENT_SIZE_BYTES_DEFAULT,
            event_bytes_max: EVENT_BYTES_MAX_DEFAULT,
            storage: Arc::new(OsStorage),
            clock: Arc::new(SystemClock),
            index_run_events: INDEX_RUN_EVENTS_DEFAULT,
            chain_hashing_off_for_benchmarks: false,
            frame_bytes_max: None,
        }
    }
}

/// An open store. Cheap to clone; every clone is the same store. The store closes (in-flight appends
/// finish, the writer thread stops, the directory lock is released) when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pub(crate) shared: Arc<Shared>,
    queue: Option<mpsc::Sender<Work>>,
    writer: Option<JoinHandle<()>>,
    indexer: Option<crate::index::indexer::Threads>,
    storage: Arc<dyn Storage>,
    /// Tells the indexer to stop merging (the store is closing).
    cancel_indexing: Arc<std::sync::atomic::AtomicBool>,
    dir: PathBuf,
    event_bytes_max: usize,
    frame_capacity_bytes: usize,
    /// For the time part of generated UUIDv7 ids: the engine reads time only through its clock.
    clock: Arc<dyn Clock>,
    report: RecoveryReport,
    _lock: Box<dyn crate::io::LockGuard>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the committer drain what is queued and stop; then the indexer
        // writes what the tail holds as a run (a merge under way is abandoned) and stops.
        self.cancel_indexing.store(true, std::sync::atomic::Ordering::Relaxed);
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some(indexer) = self.indexer.take() {
            let _ = indexer.writer.join();
            let _ = indexer.merger.join();
        }
    }
}

/// What recovery did, at info; what it repaired or set aside, at warn. Figures and paths only.
fn log_recovery(dir: &Path, report: &RecoveryReport, duration: std::time::Duration) {
    tracing::info!(
        dir = %dir.display(),
        events = report.events,
        segments = report.segments,
        duration_ms = duration.as_millis() as u64,
        torn_tail_bytes_zeroed = report.torn_tail_bytes_zeroed,
        index_runs_loaded = report.index_runs,
        index_runs_written = report.index_runs_written,
        events_read_from_log = report.events_read_from_log,
        "store opened"
    );
    if report.torn_tail_bytes_zeroed > 0 {
        let saved_to = report.torn_tail_saved_to.as_ref().map_or("nowhere".into(), |path| path.display().to_string());
        tracing::warn!(
            bytes = report.torn_tail_bytes_zeroed,
            %saved_to,
            "recovery zeroed the torn tail of an interrupted (never acknowledged) write"
        );
    }
    for reason in &report.index_runs_dropped {
        tracing::warn!(%reason, "an index run was not used; its events were indexed again from the log");
    }
    if let Some(reason) = &report.next_segment_deferred {
        tracing::warn!(%reason, "the next segment could not be created; the first append tries again");
    }
    for what in &report.set_aside {
        tracing::warn!(%what, "a replica's damaged suffix was set aside; it catches up from the cluster's log");
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, OpenError> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the store in `dir`: takes the directory lock, loads the index runs, recovers the log past
    /// them (one sequential pass, verifying every checksum) and starts the committer and indexer threads.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store, OpenError> {
        Self::open_over(dir, options, OnDamage::Refuse, |segments| Box::new(segments))
    }

    /// Opens the store with its commit log wrapped (tests put a log with other writers in front).
    #[cfg(test)]
    pub(crate) fn open_with_log(
        dir: impl AsRef<Path>,
        options: Options,
        wrap_log: impl FnOnce(Box<dyn crate::commit::log::CommitLog>) -> Box<dyn crate::commit::log::CommitLog>
        + Send
        + 'static,
    ) -> Result<Store, OpenError> {
        Self::open_over(dir, options, OnDamage::Refuse, move |segments| wrap_log(Box::new(segments)))
    }

    /// Opens the store in `dir` as a replica of a log with other writers: the committer proposes
    /// every frame to the log `make_log` builds around the local segments (it runs on the committer's
    /// thread), and frames the log holds are applied with [`Store::replicate`]. Reads and everything
    /// else are the embedded store's; so is recovery, but for damage: a replica's frames are not
    /// synced one by one (the replicated log is the durable copy), so after a power loss any suffix
    /// may be damaged, and recovery keeps the longest verified prefix and sets the rest aside
    /// ([`RecoveryReport::set_aside`]) instead of refusing to open. The replica catches up from the
    /// log.
    pub fn open_replicated(
        dir: impl AsRef<Path>,
        options: Options,
        make_log: impl FnOnce(crate::commit::log::Segments) -> Box<dyn crate::commit::log::CommitLog> + Send + 'static,
    ) -> Result<Store, OpenError> {
        Self::open_over(dir, options, OnDamage::KeepVerifiedPrefix, make_log)
    }

    fn open_over(
        dir: impl AsRef<Path>,
        options: Options,
        on_damage: OnDamage,
        make_log: impl FnOnce(crate::commit::log::Segments) -> Box<dyn crate::commit::log::CommitLog> + Send + 'static,
    ) -> Result<Store, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        if !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&options.segment_size_bytes) {
            return Err(OpenError::InvalidOptions(format!(
                "segment_size_bytes must be between {SEGMENT_SIZE_BYTES_MIN} and {SEGMENT_SIZE_BYTES_MAX}, not {}",
                options.segment_size_bytes
            )));
        }
        if options.event_bytes_max == 0 || options.event_bytes_max > EVENT_BYTES_MAX_CEILING {
            return Err(OpenError::InvalidOptions(format!(
                "event_bytes_max must be between 1 and {EVENT_BYTES_MAX_CEILING}, not {}",
                options.event_bytes_max
            )));
        }
        if options.index_run_events < INDEX_RUN_EVENTS_MIN {
            return Err(OpenError::InvalidOptions(format!(
                "index_run_events must be at least {INDEX_RUN_EVENTS_MIN}, not {}",
                options.index_run_events
            )));
        }
        if let Some(max) = options.frame_bytes_max.filter(|max| *max < append_frame_bytes_max()) {
            return Err(OpenError::InvalidOptions(format!(
                "frame_bytes_max must be at least {} (the largest frame one append can make), not {max}",
                append_frame_bytes_max()
            )));
        }
        let storage = options.storage;
        storage.create_dir_all(&dir).map_err(|e| StorageError::new("create directory", &dir, e))?;
        // The directory's own entry must be durable too, or a new store can vanish with its events.
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        storage.sync_dir(parent).map_err(|e| StorageError::new("sync directory", parent, e))?;
        let lock_file = path_in(&dir, LOCK_FILE_NAME);
        let lock = storage.lock(&lock_file).map_err(|error| match error.kind() {
            std::io::ErrorKind::WouldBlock => OpenError::Locked { dir: dir.clone(), lock_file: lock_file.clone() },
            _ => OpenError::Storage(StorageError::new("lock", &lock_file, error)),
        })?;
        let recovery_started = std::time::Instant::now();
        let recovered =
            recover(storage.clone(), &dir, options.segment_size_bytes, options.index_run_events, on_damage)?;
        // The chain's head and the store's identity are read through the indexes. A damaged index
        // block found on the way is removed by that read; recovering again rebuilds it from the log
        // (what the next open would do), so damage the log can repair never fails the open.
        let ((index, ids, log, report), (chain_head, identity)) = match read_chain_state(&recovered.0) {
            Ok(state) => (recovered, state),
            Err(OpenError::Storage(error)) if error.source.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(%error, "an index block was damaged; rebuilding it from the log");
                recovered.2.finish();
                let recovered =
                    recover(storage.clone(), &dir, options.segment_size_bytes, options.index_run_events, on_damage)?;
                let state = read_chain_state(&recovered.0)?;
                (recovered, state)
            }
            Err(error) => return Err(error),
        };
        log_recovery(&dir, &report, recovery_started.elapsed());
        let (next_position, _) = tokio::sync::watch::channel(index.next_position());
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            poisoned: OnceLock::new(),
            next_position,
            stats: Default::default(),
            maintenance: Default::default(),
            live_tail: Default::default(),
            identity: identity.map(OnceLock::from).unwrap_or_default(),
            hashing_off: options.chain_hashing_off_for_benchmarks,
        });
        let segment_frame_bytes = LogWriter::frame_capacity_bytes(options.segment_size_bytes);
        let frame_capacity_bytes =
            options.frame_bytes_max.map_or(segment_frame_bytes, |max| max.min(segment_frame_bytes));
        let (queue, receiver) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let cancel_indexing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (indexer_handle, indexer) = crate::index::indexer::start(
            shared.clone(),
            storage.clone(),
            path_in(&dir, crate::log::INDEX_DIR),
            options.index_run_events,
            cancel_indexing.clone(),
        )
        .map_err(|e| StorageError::new("spawn indexer thread for", &dir, e))?;
        let writer = {
            let shared = shared.clone();
            let clock = options.clock.clone();
            std::thread::Builder::new()
                .name("strata-committer".to_owned())
                .spawn(move || {
                    let log = make_log(crate::commit::log::Segments(log));
                    committer::run(shared, ids, log, receiver, clock, frame_capacity_bytes, indexer_handle, chain_head)
                })
                .map_err(|e| StorageError::new("spawn committer thread for", &dir, e))?
        };
        Ok(Store {
            inner: Arc::new(Inner {
                shared,
                queue: Some(queue),
                writer: Some(writer),
                indexer: Some(indexer),
                storage,
                cancel_indexing,
                dir,
                event_bytes_max: options.event_bytes_max,
                frame_capacity_bytes,
                clock: options.clock,
                report,
                _lock: lock,
            }),
        })
    }

    /// Appends `events` to `stream` atomically if `expected` holds, durably (fdatasync) before it
    /// returns. Events without an id get a UUIDv7; a retry with the same ids returns the original
    /// result and writes nothing.
    pub async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, AppendError> {
        let append = MultiAppend::to_stream(stream, expected, events);
        self.append_multi(append).await.map(AppendOutcome::from_single)
    }

    /// [`Store::append`] for threads outside an async runtime (it panics inside one: use `append` there).
    pub fn append_blocking(
        &self,
        stream: StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, AppendError> {
        let append = MultiAppend::to_stream(stream, expected, events);
        self.append_multi_blocking(append).map(AppendOutcome::from_single)
    }

    /// Appends events to several streams as one atomic, durable batch, if every check holds and the
    /// condition (if any) finds no matching event. A failed check or condition writes nothing and
    /// says which one failed.
    pub async fn append_multi(&self, append: MultiAppend) -> Result<MultiAppendOutcome, AppendError> {
        self.submit(append, None).await
    }

    /// [`Store::append_multi`] for threads outside an async runtime.
    pub fn append_multi_blocking(&self, append: MultiAppend) -> Result<MultiAppendOutcome, AppendError> {
        self.submit_blocking(append, None)
    }

    /// Replaces `stream`'s metadata (applied to its reads from now on). Durable like an append: it is
    /// an event of the system stream `$streams`.
    pub async fn set_stream_metadata(
        &self,
        stream: StreamId,
        metadata: &StreamMetadata,
    ) -> Result<MultiAppendOutcome, AppendError> {
        let (append, operation) = self.metadata_append(stream, metadata)?;
        self.submit(append, Some(operation)).await
    }

    /// [`Store::set_stream_metadata`] for threads outside an async runtime.
    pub fn set_stream_metadata_blocking(
        &self,
        stream: StreamId,
        metadata: &StreamMetadata,
    ) -> Result<MultiAppendOutcome, AppendError> {
        let (append, operation) = self.metadata_append(stream, metadata)?;
        self.submit_blocking(append, Some(operation))
    }

    /// Soft-deletes `stream` if `expected` holds: it reads as not found, and a later append continues
    /// after its last revision (becoming visible again from there). Its events stay in the global log
    /// until scavenged.
    pub async fn delete_stream(
        &self,
        stream: StreamId,
        expected: ExpectedRevision,
    ) -> Result<MultiAppendOutcome, AppendError> {
        let (append, operation) = Self::deletion(stream, expected, false);
        self.submit(append, Some(operation)).await
    }

    /// [`Store::delete_stream`] for threads outside an async runtime.
    pub fn delete_stream_blocking(
        &self,
        stream: StreamId,
        expected: ExpectedRevision,
    ) -> Result<MultiAppendOutcome, AppendError> {
        let (append, operation) = Self::deletion(stream, expected, false);
        self.submit_blocking(append, Some(operation))
    }

    /// Deletes `stream` for good if `expected` holds: reads and appends answer
    /// [`ReadError::StreamDeleted`](crate::ReadError::StreamDeleted) /
    /// [`AppendError::StreamDeleted`] from then on. It cannot be undone.
    pub async fn tombstone_stream(
        &self,
        stream: StreamId,
        expected: ExpectedRevision,
    ) -> Result<MultiAppendOutcome, AppendError> {
        let (append, operation) = Self::deletion(stream, expected, true);
        self.submit(append, Some(operation)).await
    }

    /// [`Store::tombstone_stream`] for threads outside an async runtime.
    pub fn tombstone_stream_blocking(
        &self,
        stream: StreamId,
        expected: ExpectedRevision,
    ) -> Result<MultiAppendOutcome, AppendError> {
        let (append, operation) = Self::deletion(stream, expected, true);
        self.submit_blocking(append, Some(operation))
    }

    /// `stream`'s metadata, if any was set (or a soft delete set its `truncate_before`).
    pub fn stream_metadata(&self, stream: &str) -> Option<StreamMetadata> {
        self.index().metadata(stream).cloned()
    }

    fn metadata_append(
        &self,
        stream: StreamId,
        metadata: &StreamMetadata,
    ) -> Result<(MultiAppend, SystemOperation), AppendError> {
        stream.check_not_reserved()?;
        let data = system::encode_metadata(stream.as_str(), metadata);
        let event = NewEvent::new(EventType::new(system::METADATA_TYPE).expect("a valid type"), data);
        let append = MultiAppend { events: vec![(system_stream(), event)], checks: vec![], condition: None };
        Ok((append, SystemOperation::SetMetadata(stream)))
    }

    fn deletion(stream: StreamId, expected: ExpectedRevision, tombstone: bool) -> (MultiAppend, SystemOperation) {
        let checks = vec![(stream.clone(), expected)];
        if tombstone {
            let data = system::encode_tombstone(stream.as_str());
            let event = NewEvent::new(EventType::new(system::TOMBSTONE_TYPE).expect("a valid type"), data);
            (
                MultiAppend { events: vec![(system_stream(), event)], checks, condition: None },
                SystemOperation::Tombstone(stream),
            )
        } else {
            (MultiAppend { events: vec![], checks, condition: None }, SystemOperation::SoftDelete(stream))
        }
    }

    /// Imports events exported from a store (`strata import`): each keeps its id, stream, revision,
    /// recorded time, payload and tags, and they are appended in the order given, as one atomic batch.
    /// System events (`$streams`: metadata, deletions) are imported too and take effect.
    ///
    /// Each stream's first event in the batch must follow the stream's head here (its revision is
    /// checked like an exact expected revision), and recorded times must not go backwards — neither
    /// within the batch nor from the store's latest event. A batch already imported is answered as a
    /// replay (its ids are committed), so an interrupted import can simply be run again.
    pub fn import_blocking(&self, events: Vec<RecordedEvent>) -> Result<MultiAppendOutcome, AppendError> {
        let (reply, receiver) = reply::for_this_thread();
        let request = self.prepare_import(events, reply)?;
        self.queue()?.blocking_send(Work::Append(request)).map_err(|_| AppendError::Closed)?;
        receiver.wait()
    }

    fn prepare_import(&self, events: Vec<RecordedEvent>, reply: Reply) -> Result<Request, AppendError> {
        // A placeholder's hash is all that is left of what it replaced: the chain takes it as it is.
        let carried: Vec<Option<strata_core::EventHash>> = events
            .iter()
            .map(|event| (event.event_type.as_str() == system::SCAVENGED_TYPE).then_some(event.hash).flatten())
            .collect();
        // Times ahead of the clock would become the floor of every later append's time.
        let latest_allowed =
            Timestamp::from_micros(self.now().as_micros().saturating_add(IMPORT_CLOCK_SKEW_MICROS_MAX));
        let mut checks: Vec<(StreamId, ExpectedRevision)> = Vec::new();
        let mut heads: HashMap<StreamId, u64> = HashMap::new();
        let mut tombstones: Vec<StreamId> = Vec::new();
        let mut times = Vec::with_capacity(events.len());
        let mut append = MultiAppend { events: Vec::with_capacity(events.len()), checks: Vec::new(), condition: None };
        for recorded in events {
            let invalid =
                |reason: String| ValidationError::InvalidImport { position: recorded.position.value(), reason };
            self.check_imported_system_event(&recorded, &mut tombstones).map_err(invalid)?;
            if tombstones.contains(&recorded.stream) {
                return Err(invalid(format!("stream {} is tombstoned earlier in the import", recorded.stream)).into());
            }
            if recorded.recorded_at > latest_allowed {
                return Err(invalid(format!(
                    "it was recorded at {}, later than this store's clock ({}); check the clocks",
                    recorded.recorded_at,
                    self.now()
                ))
                .into());
            }
            let expected_next = heads.get(&recorded.stream).map(|head| head + 1);
            match expected_next {
                None => checks.push((
                    recorded.stream.clone(),
                    match recorded.revision.value().checked_sub(1) {
                        None => ExpectedRevision::NoStream,
                        Some(previous) => ExpectedRevision::Exact(StreamRevision::new(previous)),
                    },
                )),
                Some(next) if next != recorded.revision.value() => {
                    return Err(ValidationError::ImportRevisionGap {
                        stream: recorded.stream.to_string(),
                        expected: next,
                        actual: recorded.revision.value(),
                    }
                    .into());
                }
                Some(_) => {}
            }
            heads.insert(recorded.stream.clone(), recorded.revision.value());
            if times.last().is_some_and(|last: &Timestamp| recorded.recorded_at < *last) {
                let latest = times.last().expect("checked").to_string();
                return Err(ValidationError::RecordedTimeBackwards {
                    recorded_at: recorded.recorded_at.to_string(),
                    latest,
                }
                .into());
            }
            times.push(recorded.recorded_at);
            let mut event = NewEvent::new(recorded.event_type, recorded.data)
                .with_id(recorded.id)
                .with_metadata(recorded.metadata)
                .with_tags(recorded.tags.to_vec())?;
            if let Some(content_type) = recorded.content_type {
                event = event.with_content_type(content_type);
            }
            append.events.push((recorded.stream, event));
        }
        append.checks = checks;
        let mut request = self.prepare(append, Some(SystemOperation::Import { tombstones }), reply)?;
        request.recorded_times = Some(times);
        request.carried_hashes = carried.iter().any(Option::is_some).then_some(carried);
        Ok(request)
    }

    /// Users write no `$` names, an import included — except the system stream's own events, which
    /// carry metadata and deletions: those must decode, and name a user stream.
    fn check_imported_system_event(
        &self,
        recorded: &RecordedEvent,
        tombstones: &mut Vec<StreamId>,
    ) -> Result<(), String> {
        if !recorded.stream.is_reserved() {
            // A scavenged event's placeholder (exported from a scavenged store) stays a placeholder.
            if recorded.event_type.as_str() == system::SCAVENGED_TYPE {
                let empty = recorded.data.is_empty() && recorded.metadata.is_empty() && recorded.tags.is_empty();
                return if empty {
                    Ok(())
                } else {
                    Err(format!("a {} placeholder carries nothing", system::SCAVENGED_TYPE))
                };
            }
            return recorded.event_type.check_not_reserved().map_err(|error| error.to_string());
        }
        if recorded.stream.as_str() == system::STORE_STREAM {
            // An export's first event: it becomes this store's own if this store is empty (the
            // committer checks), so that the export's chain continues here.
            return if recorded.event_type.as_str() == system::STORE_CREATED_TYPE && recorded.revision.value() == 0 {
                system::StoreCreated::decode(&recorded.data).map(|_| ())
            } else {
                Err(format!("{} holds only its {} event", system::STORE_STREAM, system::STORE_CREATED_TYPE))
            };
        }
        if recorded.stream.as_str() != system::SYSTEM_STREAM {
            return Err(format!("stream {} is reserved for the system", recorded.stream));
        }
        let change = system::decode(recorded.event_type.as_str(), &recorded.data)?.ok_or_else(|| {
            format!("{} holds only metadata and deletion events, not {}", system::SYSTEM_STREAM, recorded.event_type)
        })?;
        let (system::SystemChange::Metadata { stream, .. }
        | system::SystemChange::Deleted { stream, .. }
        | system::SystemChange::Tombstone { stream }) = &change;
        let target = StreamId::new(stream.as_str()).map_err(|error| format!("its target stream: {error}"))?;
        target.check_not_reserved().map_err(|error| format!("its target stream: {error}"))?;
        if matches!(change, system::SystemChange::Tombstone { .. }) {
            tombstones.push(target);
        }
        Ok(())
    }

    async fn submit(
        &self,
        append: MultiAppend,
        system: Option<SystemOperation>,
    ) -> Result<MultiAppendOutcome, AppendError> {
        let (reply, receiver) = oneshot::channel();
        let request = self.prepare(append, system, Reply::Task(reply))?;
        self.queue()?.send(Work::Append(request)).await.map_err(|_| AppendError::Closed)?;
        receiver.await.map_err(|_| AppendError::Closed)?
    }

    fn submit_blocking(
        &self,
        append: MultiAppend,
        system: Option<SystemOperation>,
    ) -> Result<MultiAppendOutcome, AppendError> {
        let (reply, receiver) = reply::for_this_thread();
        let request = self.prepare(append, system, reply)?;
        self.queue()?.blocking_send(Work::Append(request)).map_err(|_| AppendError::Closed)?;
        receiver.wait()
    }

    fn queue(&self) -> Result<&mpsc::Sender<Work>, AppendError> {
        self.inner.queue.as_ref().ok_or(AppendError::Closed)
    }

    /// Applies the message at `sequence` of the replicated log this store is a replica of (see
    /// [`Store::open_replicated`]), in the committer's order: a frame continuing the local log is
    /// written and indexed exactly as recovery reads one; anything else is skipped and says why.
    /// Messages must come in the log's order, each once.
    pub async fn replicate(&self, sequence: u64, frame: Vec<u8>) -> Result<crate::replica::Replicated, AppendError> {
        let (reply, receiver) = oneshot::channel();
        let request = crate::commit::committer::ReplicateRequest { sequence, frame, reply };
        self.queue()?.send(Work::Replicate(request)).await.map_err(|_| AppendError::Closed)?;
        receiver.await.map_err(|_| AppendError::Closed)?
    }

    /// Checks everything that does not depend on the store's state, on the caller's thread.
    fn prepare(
        &self,
        append: MultiAppend,
        system: Option<SystemOperation>,
        reply: Reply,
    ) -> Result<Request, AppendError> {
        if let Some(reason) = self.inner.shared.poisoned.get() {
            return Err(AppendError::Poisoned { reason: reason.clone() });
        }
        let MultiAppend { mut events, checks, condition } = append;
        if condition.as_ref().is_some_and(|condition| condition.query.items.is_empty()) {
            return Err(ValidationError::EmptyQuery.into());
        }
        let soft_delete = matches!(system, Some(SystemOperation::SoftDelete(_)));
        if events.is_empty() && !soft_delete {
            return Err(ValidationError::EmptyBatch.into());
        }
        let import = matches!(system, Some(SystemOperation::Import { .. }));
        if let Some(target) = system.as_ref().and_then(SystemOperation::target) {
            target.check_not_reserved()?;
        }
        if events.len() > APPEND_EVENTS_MAX {
            return Err(ValidationError::TooManyEvents { count: events.len(), max: APPEND_EVENTS_MAX }.into());
        }
        let mut checked = HashSet::with_capacity_and_hasher(checks.len(), foldhash::fast::RandomState::default());
        for (stream, _) in &checks {
            if !import {
                stream.check_not_reserved()?;
            }
            if !checked.insert(stream) {
                return Err(ValidationError::DuplicateCheck { stream: stream.to_string() }.into());
            }
        }
        let mut ids = HashSet::with_capacity_and_hasher(events.len(), foldhash::fast::RandomState::default());
        let mut size_bytes = 0;
        let mut encoded_bytes = 0;
        let client_ids = events.iter().any(|(_, event)| event.id().is_some());
        let mut last_checked_stream: Option<StreamId> = None;
        let mut content_digests = Vec::with_capacity(events.len());
        for (stream, event) in &mut events {
            // Only the store itself writes the system stream, for a system operation.
            if system.is_none() {
                if last_checked_stream.as_ref() != Some(stream) {
                    stream.check_not_reserved()?;
                    last_checked_stream = Some(stream.clone());
                }
                event.event_type().check_not_reserved()?;
            }
            let client_id = event.id().is_some();
            let id = event.id_or_insert_with(|| self.generate_id());
            if event.payload_bytes() > self.inner.event_bytes_max {
                let max_bytes = self.inner.event_bytes_max;
                return Err(ValidationError::EventTooLarge {
                    event_id: id,
                    size_bytes: event.payload_bytes(),
                    max_bytes,
                }
                .into());
            }
            // Generated ids are unique by construction; only the client's can repeat.
            if client_id && !ids.insert(id) {
                return Err(ValidationError::DuplicateEventId { event_id: id }.into());
            }
            size_bytes += event.size_bytes();
            encoded_bytes += record_encoded_len(stream, event);
            // Hashed here, on the caller's thread: the committer only links.
            content_digests.push(if self.inner.shared.hashing_off {
                [0; 32]
            } else {
                crate::log::format::new_event_content_digest(event)
            });
        }
        if size_bytes > APPEND_BYTES_MAX {
            return Err(ValidationError::AppendTooLarge { size_bytes, max_bytes: APPEND_BYTES_MAX }.into());
        }
        // With small segments the frame, not the request limit, is what bounds an append.
        let frame_room = self.inner.frame_capacity_bytes
            - crate::log::format::FRAME_HEADER_BYTES
            - crate::log::format::FRAME_BODY_HEADER_BYTES
            - crate::log::format::FRAME_CHAIN_BYTES
            - STORE_CREATED_BYTES_MAX;
        if encoded_bytes > frame_room {
            return Err(ValidationError::AppendTooLarge { size_bytes: encoded_bytes, max_bytes: frame_room }.into());
        }
        // Room for the `$deleted` event the committer adds to a soft delete.
        let encoded_bytes = encoded_bytes + if soft_delete { SYSTEM_EVENT_BYTES_MAX } else { 0 };
        let generated_id = soft_delete.then(|| self.generate_id());
        Ok(Request {
            events,
            content_digests,
            carried_hashes: None,
            checks,
            condition,
            encoded_bytes,
            client_ids,
            system,
            generated_id,
            recorded_times: None,
            reply,
        })
    }

    /// Now, by the store's clock (for metadata's `max_age_seconds` at read time).
    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// A UUIDv7 whose time part comes from the store's clock (74 random bits make it unique).
    fn generate_id(&self) -> EventId {
        let micros = self.inner.clock.now().as_micros().max(0) as u64;
        let time = uuid::Timestamp::from_unix(uuid::NoContext, micros / 1_000_000, (micros % 1_000_000) as u32 * 1000);
        EventId::from_uuid(uuid::Uuid::new_v7(time))
    }

    /// The store's `$store-created` (its id, genesis and format), once anything was appended; `None`
    /// for an empty store, or a format-1 store not written to since it was opened by this version.
    pub fn store_created(&self) -> Option<system::StoreCreated> {
        self.inner.shared.identity.get().copied()
    }

    /// The last committed position, or `None` for an empty store.
    pub fn head_position(&self) -> Option<Position> {
        self.index().next_position().checked_sub(1).map(Position::new)
    }

    /// Whether `stream` is deleted for good (tombstoned).
    pub fn is_tombstoned(&self, stream: &str) -> bool {
        self.index().is_tombstoned(stream)
    }

    /// The last revision of `stream`, or `None` when it has no events.
    pub fn stream_revision(&self, stream: &str) -> Result<Option<StreamRevision>, ReadError> {
        Ok(self.index().stream_head(stream)?)
    }

    /// The engine's counters since the store was opened (commits, events, bytes, fsync latency).
    pub fn stats(&self) -> crate::stats::StoreStats {
        self.inner.shared.stats.snapshot()
    }

    /// Watches the log's next position (the head plus one; 0 for an empty store), updated after each
    /// commit is visible to reads.
    /// The position after the last event readers can see, updated after every commit (and every
    /// frame a replica applies): wait on it for the store to reach a position.
    pub fn watch_next_position(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.shared.next_position.subscribe()
    }

    /// Appends queued for the committer and not yet taken into a commit group.
    pub fn queued_appends(&self) -> usize {
        self.inner.queue.as_ref().map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    /// What recovery found when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Why the store refuses writes, if it does.
    pub fn poison_reason(&self) -> Option<&str> {
        self.inner.shared.poisoned.get().map(String::as_str)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn storage(&self) -> Arc<dyn Storage> {
        self.inner.storage.clone()
    }

    pub(crate) fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.shared.index.read().expect("index lock poisoned")
    }
}
