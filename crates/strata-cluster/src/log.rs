//! The log on JetStream, as the leader's committer sees it: a [`CommitLog`] whose proposals are
//! publishes fenced by `Nats-Expected-Last-Sequence` (DESIGN §4 "Commit on the leader").
//!
//! - A proposal is published with the expected last sequence = the last message this node applied
//!   and a `Nats-Msg-Id` new to this attempt. One frame is in flight at a time (the committer waits).
//! - Acknowledged: written to the local segments (no fdatasync: the cluster log is the durable copy),
//!   then committed.
//! - Compare-and-set refused: the log has a message at S+1. If it carries this attempt's id, the
//!   frame is committed (a retry's first try landed). Otherwise another writer's frames are there:
//!   they are handed back as a conflict (applied, then the group is decided again on the full log —
//!   a deposed leader that does so still writes only what the fence admits; its lease loop makes it
//!   step down).
//! - No answer (timeout, disconnect): unknown. Resolving republishes the same message (same id, same
//!   expected sequence): a duplicate acknowledgement naming a sequence, or a compare-and-set refusal
//!   followed by reading S+1, says which. An attempt the committer gave up on stays pending here and
//!   is settled before the next proposal.

use crate::cursor::Cursor;
use crate::node::Shared;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream::Stream};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use strata_storage::replica::{CommitLog, FrameWritten, Proposal, Proposed, Segments, WriteError};
use strata_storage::{StorageError, format};

pub const HEADER_EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
pub const HEADER_FIRST_POSITION: &str = "Strata-First-Position";
pub const HEADER_EVENTS: &str = "Strata-Events";
pub const HEADER_NODE: &str = "Strata-Node";

/// JetStream's "wrong last sequence" error codes: 10071 names the actual sequence; an R3 race's loser
/// often gets 10164 without one. Both mean: the log has moved past the expected sequence.
const WRONG_LAST_SEQUENCE_CODES: [u64; 2] = [10071, 10164];

/// At most this many messages (or bytes) are read for one conflict.
const CONFLICT_MESSAGES_MAX: usize = 1_000;
const CONFLICT_BYTES_MAX: usize = 64 << 20;

/// One publish of a frame, kept until its outcome is known.
#[derive(Debug, Clone)]
struct Attempt {
    id: String,
    expected: u64,
    first_position: u64,
    events: u64,
    frame: Bytes,
}

/// What one publish said.
enum Published {
    /// Stored at this sequence (a duplicate acknowledgement counts once its message is checked).
    At(u64),
    /// The log has moved past the expected sequence.
    WrongLastSequence,
    /// Refused without writing (no stream, too large).
    Refused(String),
    /// No answer: committed or not is unknown.
    NoAnswer(String),
}

pub struct JetStreamLog {
    local: Option<Segments>,
    runtime: tokio::runtime::Handle,
    js: jetstream::Context,
    stream: Stream,
    subject: String,
    node_id: String,
    shared: Arc<Shared>,
    /// A publish whose outcome is not known yet.
    pending: Option<Attempt>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog").field("subject", &self.subject).field("pending", &self.pending).finish()
    }
}

impl JetStreamLog {
    pub(crate) fn new(
        local: Segments,
        runtime: tokio::runtime::Handle,
        js: jetstream::Context,
        stream: Stream,
        subject: String,
        node_id: String,
        shared: Arc<Shared>,
    ) -> Self {
        Self { local: Some(local), runtime, js, stream, subject, node_id, shared, pending: None }
    }

    fn local(&mut self) -> &mut Segments {
        self.local.as_mut().expect("the local log is open until finish")
    }

    fn publish(&self, attempt: &Attempt) -> Published {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_EXPECTED_LAST_SEQUENCE, attempt.expected.to_string().as_str());
        headers.insert(HEADER_MSG_ID, attempt.id.as_str());
        headers.insert(HEADER_FIRST_POSITION, attempt.first_position.to_string().as_str());
        headers.insert(HEADER_EVENTS, attempt.events.to_string().as_str());
        headers.insert(HEADER_NODE, self.node_id.as_str());
        let (js, subject, frame) = (self.js.clone(), self.subject.clone(), attempt.frame.clone());
        let outcome = self.runtime.block_on(async move {
            let ack = js.publish_with_headers(subject, headers, frame).await?;
            ack.await
        });
        match outcome {
            Ok(ack) if ack.sequence == 0 => Published::NoAnswer("the acknowledgement named no sequence".to_owned()),
            Ok(ack) if ack.duplicate => match self.message_id_at(ack.sequence) {
                Ok(Some(id)) if id == attempt.id => Published::At(ack.sequence),
                Ok(_) => Published::NoAnswer(format!(
                    "a duplicate acknowledgement named sequence {} which holds another message",
                    ack.sequence
                )),
                Err(reason) => Published::NoAnswer(reason),
            },
            Ok(ack) => Published::At(ack.sequence),
            Err(error) => {
                let code = std::error::Error::source(&error)
                    .and_then(|source| source.downcast_ref::<jetstream::Error>())
                    .map(|error| error.error_code().0);
                match error.kind() {
                    PublishErrorKind::WrongLastSequence => Published::WrongLastSequence,
                    _ if code.is_some_and(|code| WRONG_LAST_SEQUENCE_CODES.contains(&code)) => {
                        Published::WrongLastSequence
                    }
                    PublishErrorKind::StreamNotFound | PublishErrorKind::MaxPayloadExceeded => {
                        Published::Refused(error.to_string())
                    }
                    _ => Published::NoAnswer(error.to_string()),
                }
            }
        }
    }

    /// The `Nats-Msg-Id` of the message at `sequence` (asked of the stream's leader), `None` when
    /// there is no message there.
    fn message_id_at(&self, sequence: u64) -> Result<Option<String>, String> {
        Ok(self.message_at(sequence)?.map(|message| {
            message.headers.get(HEADER_MSG_ID).map(|value| value.as_str().to_owned()).unwrap_or_default()
        }))
    }

    fn message_at(&self, sequence: u64) -> Result<Option<jetstream::message::StreamMessage>, String> {
        let stream = self.stream.clone();
        self.runtime.block_on(async move {
            match stream.get_raw_message(sequence).await {
                Ok(message) => Ok(Some(message)),
                Err(error) if is_no_message(&error) => Ok(None),
                Err(error) => Err(format!("read the log at sequence {sequence}: {error}")),
            }
        })
    }

    /// The messages after `sequence`, in order, up to the log's end as its leader knows it — at most
    /// [`CONFLICT_MESSAGES_MAX`] of them or [`CONFLICT_BYTES_MAX`] bytes: the committer applies
    /// them and decides again, and the next proposal's conflict brings the rest.
    fn messages_after(&self, sequence: u64) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let mut stream = self.stream.clone();
        let last = self
            .runtime
            .block_on(async { stream.info().await.map(|info| info.state.last_sequence) })
            .map_err(|error| format!("read the log's state: {error}"))?;
        let mut messages = Vec::new();
        let mut bytes = 0;
        for at in sequence + 1..=last {
            // A sequence without a message (a hole) has nothing to apply.
            if let Some(message) = self.message_at(at)? {
                bytes += message.payload.len();
                messages.push((at, message.payload.to_vec()));
            }
            if messages.len() >= CONFLICT_MESSAGES_MAX || bytes >= CONFLICT_BYTES_MAX {
                break;
            }
        }
        Ok(messages)
    }

    /// After a refused compare-and-set: either this attempt landed at S+1 (committed), or another
    /// writer's frames are there (a conflict: this node steps down).
    fn after_wrong_sequence(&mut self, attempt: Attempt) -> Proposal {
        match self.message_id_at(attempt.expected + 1) {
            Ok(Some(id)) if id == attempt.id => self.commit_local(attempt.expected + 1, &attempt),
            Ok(Some(_)) => self.conflict(attempt.expected),
            Ok(None) => {
                // The log moved, yet S+1 holds nothing: a hole, or a log that went backwards.
                self.pending = Some(attempt);
                Proposal::Unknown {
                    reason: "the log refused the expected sequence but holds nothing after it".to_owned(),
                }
            }
            Err(reason) => {
                self.pending = Some(attempt);
                Proposal::Unknown { reason }
            }
        }
    }

    /// Another writer's frames follow `sequence`: hand them to the committer to apply.
    fn conflict(&mut self, sequence: u64) -> Proposal {
        tracing::info!(
            sequence,
            "the log has frames after the last one this node applied: applying them, deciding again"
        );
        match self.messages_after(sequence) {
            Ok(frames) => {
                let last = frames.last().map_or(sequence, |(at, _)| *at);
                // The committer applies (or skips) every one of them before it decides anything, and
                // then says where the local log ends (`caught_up`).
                self.raise_cursor(last, self.shared.cursor.get().next_position);
                self.shared.foreign_applied.fetch_add(1, Ordering::SeqCst);
                Proposal::Conflict { frames: frames.into_iter().map(|(_, frame)| frame).collect() }
            }
            Err(reason) => Proposal::NotWritten(not_written(format!(
                "another writer's frames are in the log and could not be read: {reason}"
            ))),
        }
    }

    fn commit_local(&mut self, sequence: u64, attempt: &Attempt) -> Proposal {
        match self.local().write(&attempt.frame, attempt.first_position) {
            Ok(written) => {
                self.shared.cursor.set(Cursor { sequence, next_position: attempt.first_position + attempt.events });
                self.shared.frames_published.fetch_add(1, Ordering::Relaxed);
                Proposal::Committed(written)
            }
            // Committed in the cluster, not here: the replica must be reopened (and catch up).
            Err(WriteError::Failed(error) | WriteError::NotWritten(error)) => Proposal::Failed(error),
        }
    }

    /// Moves the cursor forward (never back: a frame applied in a conflict can come again).
    fn raise_cursor(&self, sequence: u64, next_position: u64) {
        if sequence > self.shared.cursor.get().sequence {
            self.shared.cursor.set(Cursor { sequence, next_position });
        }
    }

    /// Answers a publish of `attempt`. `after_unknown`: an earlier publish of it got no answer, so a
    /// refusal now says nothing about the first one.
    fn answer(&mut self, attempt: Attempt, published: Published, after_unknown: bool) -> Proposal {
        match published {
            Published::At(sequence) if sequence == attempt.expected + 1 => self.commit_local(sequence, &attempt),
            Published::At(sequence) => {
                // Stored, but not right after the expected sequence: JetStream broke its own check.
                let reason = format!(
                    "the log stored the frame at sequence {sequence}, expected {}: writes are halted",
                    attempt.expected + 1
                );
                self.shared.halt(&reason);
                Proposal::Failed(not_written(reason))
            }
            Published::WrongLastSequence => self.after_wrong_sequence(attempt),
            Published::Refused(reason) if after_unknown => {
                self.pending = Some(attempt);
                Proposal::Unknown { reason: format!("asked again, the log refused the publish ({reason})") }
            }
            Published::Refused(reason) => Proposal::NotWritten(not_written(reason)),
            Published::NoAnswer(reason) => {
                self.pending = Some(attempt);
                Proposal::Unknown { reason }
            }
        }
    }
}

impl CommitLog for JetStreamLog {
    fn propose(&mut self, frame: &Proposed<'_>, while_syncing: &mut dyn FnMut()) -> Proposal {
        if let Some(reason) = self.shared.refusal() {
            return Proposal::NotWritten(not_written(reason));
        }
        // An earlier attempt the committer gave up on is settled first: if it landed, the committer
        // applies it (as a conflict) and decides this group again on top of it.
        if let Some(pending) = self.pending.take() {
            let published = self.publish(&pending);
            match published {
                Published::At(sequence) if sequence == pending.expected + 1 => {
                    return self.settled_landed(pending);
                }
                Published::WrongLastSequence => match self.message_id_at(pending.expected + 1) {
                    Ok(Some(id)) if id == pending.id => return self.settled_landed(pending),
                    Ok(Some(_)) => return self.conflict(pending.expected),
                    Ok(None) | Err(_) => {
                        self.pending = Some(pending);
                        return Proposal::NotWritten(not_written(
                            "an earlier append's outcome is not known yet".to_owned(),
                        ));
                    }
                },
                Published::At(_) | Published::NoAnswer(_) | Published::Refused(_) => {
                    self.pending = Some(pending);
                    return Proposal::NotWritten(not_written(
                        "an earlier append's outcome is not known yet".to_owned(),
                    ));
                }
            }
        }
        let cursor = self.shared.cursor.get();
        let attempt = Attempt {
            id: uuid::Uuid::new_v4().to_string(),
            expected: cursor.sequence,
            first_position: frame.first_position,
            events: frame_events(frame.bytes),
            frame: Bytes::copy_from_slice(frame.bytes),
        };
        let published = self.publish(&attempt);
        while_syncing();
        self.answer(attempt, published, false)
    }

    fn resolve(&mut self, _frame: &Proposed<'_>) -> Proposal {
        let Some(attempt) = self.pending.take() else {
            return Proposal::Unknown { reason: "no attempt to resolve".to_owned() };
        };
        let published = self.publish(&attempt);
        self.answer(attempt, published, true)
    }

    fn apply(&mut self, frame: &[u8], first_position: u64) -> Result<FrameWritten, StorageError> {
        match self.local().write(frame, first_position) {
            Ok(written) => Ok(written),
            Err(WriteError::NotWritten(error) | WriteError::Failed(error)) => Err(error),
        }
    }

    fn may_conflict(&self) -> bool {
        true
    }

    fn sync_local(&mut self) -> Result<(), StorageError> {
        self.local().sync()
    }

    fn replicated(&mut self, sequence: u64, applied: Option<u64>) {
        self.shared.foreign_applied.fetch_add(1, Ordering::SeqCst);
        // A skipped message moves the sequence, not where the log's positions end.
        self.raise_cursor(sequence, applied.unwrap_or(self.shared.cursor.get().next_position));
    }

    fn caught_up(&mut self, next_position: u64) {
        let cursor = self.shared.cursor.get();
        self.shared.cursor.set(Cursor { next_position, ..cursor });
    }

    fn finish(mut self: Box<Self>) {
        if let Some(local) = self.local.take() {
            local.finish();
        }
    }
}

impl JetStreamLog {
    /// An attempt answered "unknown" to its clients turned out committed: the committer applies it
    /// like any frame of the log, then decides the waiting group again.
    fn settled_landed(&mut self, attempt: Attempt) -> Proposal {
        self.raise_cursor(attempt.expected + 1, self.shared.cursor.get().next_position);
        self.shared.foreign_applied.fetch_add(1, Ordering::SeqCst);
        Proposal::Conflict { frames: vec![attempt.frame.to_vec()] }
    }
}

/// Events in a frame, from its body header (0 for what is not a commit frame).
pub fn frame_events(frame: &[u8]) -> u64 {
    match format::decode_frame(frame) {
        Ok((format::FrameBody::Commit { event_count, .. }, _)) => u64::from(event_count),
        _ => 0,
    }
}

fn not_written(reason: String) -> StorageError {
    StorageError::new("publish to the cluster log", "", std::io::Error::other(reason))
}

pub(crate) fn is_no_message(error: &jetstream::stream::RawMessageError) -> bool {
    error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound
}
