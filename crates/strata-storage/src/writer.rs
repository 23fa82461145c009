//! The committer: the one thread that writes. It takes every append queued since its last fdatasync,
//! checks each against the indexes and the appends before it in the same group, writes the accepted
//! ones as one frame, syncs once, publishes them to readers and only then answers (group commit).

use crate::clock::Clock;
use crate::error::{AppendError, poison_reason};
use crate::format::{FrameBuilder, RecordFields};
use crate::index::{IdEntry, IdIndex, Index, PushEvent};
use crate::log::LogWriter;
use crate::reply::{AppendReply, Reply};
use crate::store::{AppendOutcome, AppendResult};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use strata_core::{EventId, ExpectedRevision, NewEvent, Position, StreamId, StreamRevision, Timestamp};
use tokio::sync::mpsc;

/// State shared by the writer and every reader.
#[derive(Debug)]
pub(crate) struct Shared {
    pub index: RwLock<Index>,
    /// Set once, at the first failed write or sync; from then on appends are refused.
    pub poisoned: OnceLock<String>,
}

/// One validated append, with every event id assigned.
#[derive(Debug)]
pub(crate) struct Request {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
    /// Bytes its records take in a frame.
    pub encoded_bytes: usize,
    /// Whether the client chose any of the ids. When the store generated them all (UUIDv7), the
    /// append cannot be a retry and its ids need no look-up.
    pub client_ids: bool,
    pub reply: Reply,
}

/// An append written into the current frame, to be indexed once the frame is durable.
#[derive(Debug)]
struct PendingAppend {
    stream: StreamId,
    first_revision: u64,
    first_position: u64,
    /// Each event's id and the offset of its record from the start of the frame.
    events: Vec<(EventId, usize)>,
    /// The events themselves, for the secondary indexes.
    new_events: Vec<NewEvent>,
}

/// One commit group under construction.
struct Group<'a> {
    index: &'a Index,
    committed_ids: &'a IdIndex,
    frame: &'a mut FrameBuilder,
    first_position: u64,
    recorded_at: Timestamp,
    appends: Vec<PendingAppend>,
    event_count: u64,
    /// Last revision of each stream written in this group (the group's view on top of the index).
    heads: HashMap<StreamId, u64>,
    /// Client-chosen ids written in this group: (append, event) indexes into `appends`.
    ids: HashMap<EventId, (usize, usize)>,
    replies: Vec<(Reply, AppendReply)>,
}

impl<'a> Group<'a> {
    fn new(index: &'a Index, committed_ids: &'a IdIndex, frame: &'a mut FrameBuilder, recorded_at: Timestamp) -> Self {
        let first_position = index.next_position();
        frame.start_commit(first_position);
        Self {
            index,
            committed_ids,
            frame,
            first_position,
            recorded_at,
            appends: Vec::new(),
            event_count: 0,
            heads: HashMap::new(),
            ids: HashMap::new(),
            replies: Vec::new(),
        }
    }

    fn head(&self, stream: &StreamId) -> Option<StreamRevision> {
        match self.heads.get(stream) {
            Some(&revision) => Some(StreamRevision::new(revision)),
            None => self.index.stream_head(stream.as_str()),
        }
    }

    fn lookup_id(&self, id: &EventId) -> Option<IdEntry> {
        match self.ids.get(id) {
            Some(&(append, event)) => {
                let append = &self.appends[append];
                Some(IdEntry {
                    stream: append.stream.clone(),
                    revision: StreamRevision::new(append.first_revision + event as u64),
                    position: Position::new(append.first_position + event as u64),
                })
            }
            None => self.committed_ids.get(id).map(|position| self.index.describe(position)),
        }
    }

    /// Recognises a retry: all of the request's ids committed (or in this group) consecutively in its
    /// stream, in order. Some but not all of them is an error.
    fn replay(&self, request: &Request) -> Result<Option<AppendResult>, AppendError> {
        let ids: Vec<EventId> =
            request.events.iter().map(|e| e.id().expect("ids are assigned before queueing")).collect();
        let Some(first) = self.lookup_id(&ids[0]) else {
            return match ids[1..].iter().find_map(|id| self.lookup_id(id).map(|entry| (*id, entry))) {
                Some((event_id, entry)) => Err(partial_duplicate(event_id, entry)),
                None => Ok(None),
            };
        };
        if first.stream != request.stream {
            return Err(partial_duplicate(ids[0], first));
        }
        let mut last = first.clone();
        for (offset, id) in ids.iter().enumerate().skip(1) {
            match self.lookup_id(id) {
                Some(entry)
                    if entry.stream == request.stream
                        && entry.revision.value() == first.revision.value() + offset as u64 =>
                {
                    last = entry;
                }
                Some(entry) => return Err(partial_duplicate(*id, entry)),
                None => return Err(partial_duplicate(ids[0], first)),
            }
        }
        Ok(Some(AppendResult {
            first_revision: first.revision,
            last_revision: last.revision,
            first_position: first.position,
            last_position: last.position,
            recorded_at: None,
            replayed: true,
        }))
    }

    fn admit(&mut self, mut request: Request) {
        let replay = if request.client_ids { self.replay(&request) } else { Ok(None) };
        let outcome = match replay {
            Err(error) => Err(error),
            Ok(Some(result)) => Ok(AppendOutcome::Committed(result)),
            Ok(None) => {
                let actual = self.head(&request.stream);
                if request.expected.is_satisfied_by(actual) {
                    Ok(AppendOutcome::Committed(self.write(&mut request, actual)))
                } else {
                    Ok(AppendOutcome::WrongExpectedRevision {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual,
                    })
                }
            }
        };
        self.replies.push((request.reply, outcome));
    }

    fn write(&mut self, request: &mut Request, actual: Option<StreamRevision>) -> AppendResult {
        let first_revision = actual.map_or(0, |revision| revision.value() + 1);
        let first_position = self.first_position + self.event_count;
        let append_index = self.appends.len();
        let mut events = Vec::with_capacity(request.events.len());
        for (offset, event) in request.events.iter().enumerate() {
            let id = event.id().expect("ids are assigned before queueing");
            let frame_offset = self.frame.push_record(RecordFields {
                position: first_position + offset as u64,
                revision: first_revision + offset as u64,
                recorded_at: self.recorded_at,
                id,
                stream: &request.stream,
                event,
            });
            if request.client_ids {
                self.ids.insert(id, (append_index, offset));
            }
            events.push((id, frame_offset));
        }
        let count = request.events.len() as u64;
        self.event_count += count;
        self.heads.insert(request.stream.clone(), first_revision + count - 1);
        self.appends.push(PendingAppend {
            stream: request.stream.clone(),
            first_revision,
            first_position,
            events,
            new_events: std::mem::take(&mut request.events),
        });
        AppendResult {
            first_revision: StreamRevision::new(first_revision),
            last_revision: StreamRevision::new(first_revision + count - 1),
            first_position: Position::new(first_position),
            last_position: Position::new(first_position + count - 1),
            recorded_at: Some(self.recorded_at),
            replayed: false,
        }
    }
}

fn partial_duplicate(event_id: EventId, entry: IdEntry) -> AppendError {
    AppendError::PartialDuplicate { event_id, committed_stream: entry.stream, committed_revision: entry.revision }
}

/// The committer loop; returns when every `Store` handle is gone and the queue is drained.
pub(crate) fn run(
    shared: Arc<Shared>,
    mut ids: IdIndex,
    mut log: LogWriter,
    mut queue: mpsc::Receiver<Request>,
    clock: Arc<dyn Clock>,
    frame_capacity_bytes: usize,
) {
    let mut frame = FrameBuilder::default();
    let mut deferred: Option<Request> = None;
    loop {
        let Some(first) = deferred.take().or_else(|| queue.blocking_recv()) else {
            break;
        };
        if let Some(reason) = shared.poisoned.get() {
            first.reply.send(Err(AppendError::Poisoned { reason: reason.clone() }));
            continue;
        }
        let index = shared.index.read().expect("index lock poisoned");
        let recorded_at = index.last_recorded_at().map_or(clock.now(), |last| last.max(clock.now()));
        let mut group = Group::new(&index, &ids, &mut frame, recorded_at);
        let mut frame_bytes = group.frame.len() + first.encoded_bytes;
        group.admit(first);
        while let Ok(request) = queue.try_recv() {
            frame_bytes += request.encoded_bytes;
            if frame_bytes > frame_capacity_bytes {
                deferred = Some(request);
                break;
            }
            group.admit(request);
        }
        let Group { first_position, appends, replies, .. } = group;
        drop(index);
        if appends.is_empty() {
            for (reply, outcome) in replies {
                reply.send(outcome);
            }
            continue;
        }
        // While the disk writes the frame, index its event ids (the committer's own map: readers never
        // look there, and if the sync fails the store is poisoned and never consults it again).
        let written = log.write_frame(frame.finish(), first_position).and_then(|written| {
            for append in &appends {
                for (offset, &(id, _)) in append.events.iter().enumerate() {
                    // Client ids were checked at admission; generated ones are fresh UUIDv7s.
                    ids.insert(id, append.first_position + offset as u64).expect("event ids are unique");
                }
            }
            log.sync().map(|()| written)
        });
        match written {
            Ok(written) => {
                let mut index = shared.index.write().expect("index lock poisoned");
                if let Some(segment) = written.new_segment {
                    index.segments.push(segment);
                }
                for append in &appends {
                    // The committer computed all of this from the index itself: a mismatch is a bug
                    // that would corrupt the indexes, so it stops the process rather than go on.
                    let stream = index.stream_number(append.stream.as_str()).expect("a valid stream id");
                    for (offset, (&(_, frame_offset), event)) in
                        append.events.iter().zip(&append.new_events).enumerate()
                    {
                        let record_offset = written.offset + frame_offset as u64;
                        index
                            .push(
                                PushEvent {
                                    position: append.first_position + offset as u64,
                                    revision: append.first_revision + offset as u64,
                                    stream,
                                    event_type: event.event_type().as_str(),
                                    recorded_at,
                                    segment: written.segment,
                                    offset: u32::try_from(record_offset).expect("segments are at most 4 GiB"),
                                },
                                event.tags().iter().map(|tag| tag.as_str()),
                            )
                            .expect("the committer's events extend the index");
                    }
                }
                drop(index);
                for (reply, outcome) in replies {
                    reply.send(outcome);
                }
            }
            Err(error) => {
                // After a failed write or fdatasync the state of the file is unknown (the page cache may
                // have dropped the dirty pages): refuse all further writes until the store is reopened
                // and recovery has read back what is really on disk.
                let reason = poison_reason(&error);
                let _ = shared.poisoned.set(reason.clone());
                for (reply, _) in replies {
                    reply.send(Err(AppendError::OutcomeUnknown { reason: reason.clone() }));
                }
            }
        }
    }
    log.finish();
}
