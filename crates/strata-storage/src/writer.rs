//! The committer: the one thread that writes. It takes every append queued since its last fdatasync,
//! checks each against the indexes and the appends before it in the same group, writes the accepted
//! ones as one frame, syncs once, publishes them to readers and only then answers (group commit).

use crate::clock::Clock;
use crate::error::{AppendError, poison_reason};
use crate::format::{FrameBuilder, RecordFields};
use crate::index::{IdEntry, Index, PushEvent};
use crate::log::LogWriter;
use crate::store::{AppendOutcome, AppendResult};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use strata_core::{EventId, ExpectedRevision, NewEvent, Position, StreamId, StreamRevision, Timestamp};
use tokio::sync::{mpsc, oneshot};

/// State shared by the writer and every reader.
#[derive(Debug)]
pub(crate) struct Shared {
    pub index: RwLock<Index>,
    /// Set once, at the first failed write or sync; from then on appends are refused.
    pub poisoned: OnceLock<String>,
}

pub(crate) type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

/// One validated append, with every event id assigned.
#[derive(Debug)]
pub(crate) struct Request {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
    /// Bytes its records take in a frame.
    pub encoded_bytes: usize,
    pub reply: Reply,
}

/// An event written into the current frame, to be indexed once the frame is durable.
#[derive(Debug)]
struct PendingEvent {
    id: EventId,
    stream: StreamId,
    revision: u64,
    position: u64,
    frame_offset: usize,
}

/// One commit group under construction.
struct Group<'a> {
    index: &'a Index,
    frame: &'a mut FrameBuilder,
    first_position: u64,
    recorded_at: Timestamp,
    events: Vec<PendingEvent>,
    /// Last revision of each stream written in this group (the group's view on top of the index).
    heads: HashMap<StreamId, u64>,
    ids: HashMap<EventId, usize>,
    replies: Vec<(Reply, Result<AppendOutcome, AppendError>)>,
}

impl<'a> Group<'a> {
    fn new(index: &'a Index, frame: &'a mut FrameBuilder, recorded_at: Timestamp) -> Self {
        let first_position = index.next_position();
        frame.start_commit(first_position);
        Self {
            index,
            frame,
            first_position,
            recorded_at,
            events: Vec::new(),
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
            Some(&at) => {
                let event = &self.events[at];
                Some(IdEntry {
                    stream: event.stream.clone(),
                    revision: StreamRevision::new(event.revision),
                    position: Position::new(event.position),
                })
            }
            None => self.index.lookup_id(id),
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

    fn admit(&mut self, request: Request) {
        let outcome = match self.replay(&request) {
            Err(error) => Err(error),
            Ok(Some(result)) => Ok(AppendOutcome::Committed(result)),
            Ok(None) => {
                let actual = self.head(&request.stream);
                if request.expected.is_satisfied_by(actual) {
                    Ok(AppendOutcome::Committed(self.write(&request, actual)))
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

    fn write(&mut self, request: &Request, actual: Option<StreamRevision>) -> AppendResult {
        let first_revision = actual.map_or(0, |revision| revision.value() + 1);
        let first_position = self.first_position + self.events.len() as u64;
        for (offset, event) in request.events.iter().enumerate() {
            let id = event.id().expect("ids are assigned before queueing");
            let revision = first_revision + offset as u64;
            let position = first_position + offset as u64;
            let frame_offset = self.frame.push_record(RecordFields {
                position,
                revision,
                recorded_at: self.recorded_at,
                id,
                stream: &request.stream,
                event,
            });
            self.ids.insert(id, self.events.len());
            self.events.push(PendingEvent { id, stream: request.stream.clone(), revision, position, frame_offset });
        }
        let count = request.events.len() as u64;
        self.heads.insert(request.stream.clone(), first_revision + count - 1);
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
            let _ = first.reply.send(Err(AppendError::Poisoned { reason: reason.clone() }));
            continue;
        }
        let index = shared.index.read().expect("index lock poisoned");
        let recorded_at = index.last_recorded_at().map_or(clock.now(), |last| last.max(clock.now()));
        let mut group = Group::new(&index, &mut frame, recorded_at);
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
        let Group { first_position, events, replies, .. } = group;
        drop(index);
        if events.is_empty() {
            for (reply, outcome) in replies {
                let _ = reply.send(outcome);
            }
            continue;
        }
        match log.write_frame(frame.finish(), first_position) {
            Ok(written) => {
                let mut index = shared.index.write().expect("index lock poisoned");
                if let Some(segment) = written.new_segment {
                    index.segments.push(segment);
                }
                for event in &events {
                    let offset = written.offset + event.frame_offset as u64;
                    // The writer computed these from the index itself: a mismatch is a bug that would
                    // corrupt the indexes, so it stops the process rather than go on.
                    index
                        .push(PushEvent {
                            position: event.position,
                            revision: event.revision,
                            id: event.id,
                            stream: event.stream.as_str(),
                            recorded_at,
                            segment: written.segment,
                            offset: u32::try_from(offset).expect("segments are at most 4 GiB"),
                        })
                        .expect("the writer's events extend the index");
                }
                drop(index);
                for (reply, outcome) in replies {
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                // After a failed write or fdatasync the state of the file is unknown (the page cache may
                // have dropped the dirty pages): refuse all further writes until the store is reopened
                // and recovery has read back what is really on disk.
                let reason = poison_reason(&error);
                let _ = shared.poisoned.set(reason.clone());
                for (reply, _) in replies {
                    let _ = reply.send(Err(AppendError::OutcomeUnknown { reason: reason.clone() }));
                }
            }
        }
    }
    log.finish();
}
