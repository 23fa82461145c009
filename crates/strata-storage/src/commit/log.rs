//! The seam between the committer and the log it commits to (`docs/design.md`, "The commit seam").
//!
//! The committer decides a group against its local replica and hands the frame to a [`CommitLog`]:
//! *propose this frame after the one I decided on*. The log answers committed (durable; where the
//! local copy lies), conflict (another writer's frame is there: nothing of this one was committed —
//! apply theirs, decide again), unknown (no answer: ask again with [`CommitLog::resolve`]), not
//! written, or failed. The embedded log ([`Segments`], the segment files) is the first
//! implementation: proposing is a write and an fdatasync, and there is no other writer, so it never
//! answers conflict or unknown. A replicated log (cluster mode) answers all five.

use crate::error::StorageError;
use crate::log::{FrameWritten, LogWriter, WriteError};
use strata_core::EventHash;

/// A decided frame, as the committer proposes it.
#[derive(Debug, Clone, Copy)]
pub struct Proposed<'a> {
    /// The whole frame (format 2).
    pub bytes: &'a [u8],
    pub first_position: u64,
    /// The hash the frame follows: the last event of the log the group was decided on.
    pub previous: EventHash,
}

/// What the log says about a proposal. (The segment log answers only committed, not written and
/// failed; the others come from logs with other writers — the tests' and the cluster's.)
#[derive(Debug)]
pub enum Proposal {
    /// Durable in the log; the local copy lies here.
    Committed(FrameWritten),
    /// Another writer's frames took the place: nothing of this proposal was committed. `frames` are
    /// the log's frames after `previous`, oldest first, to apply (as recovery would) before deciding
    /// the group again.
    Conflict { frames: Vec<Vec<u8>> },
    /// No answer (a timeout, a lost connection): committed or not is unknown until
    /// [`CommitLog::resolve`] says.
    Unknown { reason: String },
    /// Nothing was written and the log is intact (a segment could not be created): the group may
    /// be answered, and the next one tries again.
    NotWritten(StorageError),
    /// A write or sync failed: what is durable is unknown until the store is reopened.
    Failed(StorageError),
}

/// A log the committer commits frames to. Every method runs on the committer's thread, one at a
/// time, in the order the committer decides: an implementation needs no locking of its own.
pub trait CommitLog: Send + std::any::Any {
    /// Proposes `frame` as the frame after `frame.previous`. `while_syncing` runs while the frame is
    /// being made durable (the committer indexes event ids meanwhile).
    fn propose(&mut self, frame: &Proposed<'_>, while_syncing: &mut dyn FnMut()) -> Proposal;

    /// Asks again about a proposal whose outcome was [`Proposal::Unknown`].
    fn resolve(&mut self, frame: &Proposed<'_>) -> Proposal;

    /// Writes a frame another writer committed into the local copy, and says where it lies. The
    /// caller has checked that it continues the local log.
    fn apply(&mut self, frame: &[u8], first_position: u64) -> Result<FrameWritten, StorageError>;

    /// Whether another writer can commit to this log (so proposals can conflict and the committer
    /// must keep what it needs to decide a group again).
    fn may_conflict(&self) -> bool;

    /// The message at `sequence` of a replicated log was applied to the local copy (or skipped, not
    /// being a frame continuing the chain): the next proposal follows it. Sent through
    /// [`crate::Store::replicate`]; the embedded log has no sequences and ignores it.
    /// `applied` is the local log's next position after it when it was applied (`None`: skipped).
    fn replicated(&mut self, _sequence: u64, _applied: Option<u64>) {}

    /// The frames of a conflict were applied (or skipped): the local log's next position is now
    /// `next_position`.
    fn caught_up(&mut self, _next_position: u64) {}

    /// Makes every frame written to the local copy so far durable there (the committer calls it
    /// before an index run covers them). The embedded log syncs each frame as it proposes it, so has
    /// nothing to do; a replicated log whose local writes are not synced syncs them.
    fn sync_local(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// The store is closing.
    fn finish(self: Box<Self>);
}

/// The embedded log: the segment files, the only writer. A replicated log keeps its local copy in
/// one of these too ([`Segments::write`] without a sync: the replicated log is the durable copy).
#[derive(Debug)]
pub struct Segments(pub(crate) LogWriter);

impl Segments {
    /// Writes a frame at the end of the local log (creating the next segment when it must), not
    /// synced.
    pub fn write(&mut self, frame: &[u8], first_position: u64) -> Result<FrameWritten, WriteError> {
        self.0.write_frame(frame, first_position)
    }

    /// fdatasync of the active segment.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.0.sync()
    }

    /// The store is closing: waits for the segment being prepared.
    pub fn finish(self) {
        self.0.finish();
    }
}

impl CommitLog for Segments {
    fn propose(&mut self, frame: &Proposed<'_>, while_syncing: &mut dyn FnMut()) -> Proposal {
        let written = match self.0.write_frame(frame.bytes, frame.first_position) {
            Ok(written) => written,
            Err(WriteError::NotWritten(error)) => return Proposal::NotWritten(error),
            Err(WriteError::Failed(error)) => return Proposal::Failed(error),
        };
        while_syncing();
        match self.0.sync() {
            Ok(()) => Proposal::Committed(written),
            Err(error) => Proposal::Failed(error),
        }
    }

    fn resolve(&mut self, _frame: &Proposed<'_>) -> Proposal {
        // The embedded log answers every proposal; an unknown outcome is a failed sync, which
        // poisons the store (only a reopen's recovery can tell what is durable).
        unreachable!("the segment log never leaves an outcome unknown")
    }

    fn apply(&mut self, frame: &[u8], first_position: u64) -> Result<FrameWritten, StorageError> {
        // Only a replica applies others' frames; their durable copy is the replicated log.
        match self.0.write_frame(frame, first_position) {
            Ok(written) => Ok(written),
            Err(WriteError::NotWritten(error) | WriteError::Failed(error)) => Err(error),
        }
    }

    fn may_conflict(&self) -> bool {
        false
    }

    fn finish(self: Box<Self>) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    //! The committer against a log with another writer: a proposal that conflicts is decided again
    //! on top of the other writer's frame, and an unknown outcome is asked about until it is known.

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::log::format::{FrameBuilder, RecordChain, RecordFields, hash_new_event, new_event_content_digest};
    use crate::{AppendOutcome, Direction, ReadFrom, Store};
    use std::sync::{Arc, Mutex};
    use strata_core::{EventId, EventType, ExpectedRevision, NewEvent, StreamId, StreamRevision};

    /// What the other writer does at the next proposal.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Next {
        PassThrough,
        /// Commit an event of its own to `s` at this revision first: the proposal conflicts.
        Race {
            revision: u64,
        },
        /// Leave the outcome unknown once (the proposal did reach the log).
        Silence,
    }

    struct Racing {
        inner: Segments,
        next: Arc<Mutex<Next>>,
        /// Where the proposal whose answer was lost landed.
        remembered: Option<FrameWritten>,
    }

    impl CommitLog for Racing {
        fn propose(&mut self, frame: &Proposed<'_>, while_syncing: &mut dyn FnMut()) -> Proposal {
            let next = std::mem::replace(&mut *self.next.lock().unwrap(), Next::PassThrough);
            match next {
                Next::PassThrough => self.inner.propose(frame, while_syncing),
                Next::Silence => {
                    // It reached the log; the answer was lost.
                    match self.inner.propose(frame, while_syncing) {
                        Proposal::Committed(written) => {
                            *self.next.lock().unwrap() = Next::PassThrough;
                            self.remembered = Some(written);
                            Proposal::Unknown { reason: "the answer was lost".to_owned() }
                        }
                        other => other,
                    }
                }
                Next::Race { revision } => {
                    let stream = StreamId::new("s").unwrap();
                    let event = NewEvent::new(EventType::new("ByOther").unwrap(), "{\"other\":true}")
                        .with_id(EventId::from_uuid(uuid::Uuid::new_v4()));
                    let id = event.id().unwrap();
                    let recorded_at = SystemClock.now();
                    let digest = new_event_content_digest(&event);
                    let hash = hash_new_event(
                        &frame.previous,
                        frame.first_position,
                        &stream,
                        revision,
                        id,
                        recorded_at,
                        &event,
                        &digest,
                        &mut Vec::new(),
                    );
                    let mut builder = FrameBuilder::default();
                    builder.start_commit(frame.first_position, Some(frame.previous));
                    builder.push_record(RecordFields {
                        position: frame.first_position,
                        revision,
                        recorded_at,
                        id,
                        stream: &stream,
                        event: &event,
                        chain: RecordChain::Hashed(hash),
                    });
                    Proposal::Conflict { frames: vec![builder.finish().to_vec()] }
                }
            }
        }

        fn resolve(&mut self, _frame: &Proposed<'_>) -> Proposal {
            Proposal::Committed(self.remembered.take().expect("a proposal whose answer was lost"))
        }

        fn apply(&mut self, frame: &[u8], first_position: u64) -> Result<FrameWritten, StorageError> {
            self.inner.apply(frame, first_position)
        }

        fn may_conflict(&self) -> bool {
            true
        }

        fn finish(self: Box<Self>) {
            Box::new(self.inner).finish();
        }
    }

    #[test]
    fn a_conflicting_proposal_is_decided_again_on_the_other_writers_frame() {
        let dir = tempfile::tempdir().unwrap();
        let next = Arc::new(Mutex::new(Next::PassThrough));
        let racing = next.clone();
        let store = Store::open_with_log(dir.path(), crate::Options::default(), move |log| {
            let inner = *(log as Box<dyn std::any::Any>).downcast::<Segments>().expect("the segment log");
            Box::new(Racing { inner, next: racing, remembered: None })
        })
        .unwrap();
        let s = StreamId::new("s").unwrap();
        let mine = |data: &str| NewEvent::new(EventType::new("Mine").unwrap(), data.to_owned());
        let first = store.append_blocking(s.clone(), ExpectedRevision::NoStream, vec![mine("{}")]).unwrap();
        assert!(matches!(first, AppendOutcome::Committed(_)));

        // The other writer commits s@1 while our Exact(0) append is proposed: ours is decided again
        // on top of it and refused, reporting the other writer's revision. Never both.
        *next.lock().unwrap() = Next::Race { revision: 1 };
        let outcome =
            store.append_blocking(s.clone(), ExpectedRevision::Exact(StreamRevision::new(0)), vec![mine("{}")]);
        assert_eq!(
            outcome.unwrap(),
            AppendOutcome::WrongExpectedRevision {
                stream: s.clone(),
                expected: ExpectedRevision::Exact(StreamRevision::new(0)),
                actual: Some(StreamRevision::new(1)),
            }
        );
        // An append that does not conflict is decided again and commits after the other writer's.
        *next.lock().unwrap() = Next::Race { revision: 2 };
        let AppendOutcome::Committed(any) =
            store.append_blocking(s.clone(), ExpectedRevision::Any, vec![mine("{\"n\":3}")]).unwrap()
        else {
            panic!("an Any append commits")
        };
        assert_eq!(any.first_revision, StreamRevision::new(3));
        // An unknown outcome is resolved before anything is answered.
        *next.lock().unwrap() = Next::Silence;
        let AppendOutcome::Committed(resolved) =
            store.append_blocking(s.clone(), ExpectedRevision::Any, vec![mine("{}")]).unwrap()
        else {
            panic!("the resolved outcome is a commit")
        };
        assert_eq!(resolved.first_revision, StreamRevision::new(4));
        let types: Vec<String> = store
            .read_stream(&s, ReadFrom::Start, Direction::Forward, 10)
            .unwrap()
            .iter()
            .map(|e| e.event_type.to_string())
            .collect();
        assert_eq!(types, ["Mine", "ByOther", "ByOther", "Mine", "Mine"]);
        assert_eq!(store.verify_chain_blocking().unwrap().verified_events, 6);
        drop(store);
        // The other writer's frames are in the local log like any other: recovery reads them back.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.read_stream(&s, ReadFrom::Start, Direction::Forward, 10).unwrap().len(), 5);
        assert_eq!(store.verify_chain_blocking().unwrap().verified_events, 6);
    }
}
