//! Subscriptions: a stream of events from a starting point, first catching up from the log, then live.
//!
//! A subscription holds no buffer of its own and the committer never waits for it: it reads the log
//! like any reader, in batches, and when it reaches the head it waits on the head watch (sent after
//! each commit is visible). Catch-up and live are the same loop, so the hand-off can neither skip nor
//! repeat an event, and a slow consumer costs the writers nothing — it simply reads older events later.

use crate::error::ReadError;
use crate::filter::Filter;
use crate::read::{Direction, ReadFrom, ReadOptions};
use crate::store::Store;
use strata_core::{Position, RecordedEvent, StreamId, StreamRevision};
pub use strata_store::subscription::*;
use tokio::sync::watch;

/// Events the shared live tail keeps: live subscriptions to the global log read from it instead of
/// each reading the log.
pub(crate) const LIVE_TAIL_EVENTS: usize = 8_192;

/// The latest committed events, decoded once and shared by every live subscription to the global
/// log: one of them reads new events from the log into it (the others wait for that read instead of
/// doing their own), and each filters what it needs. A subscription whose cursor is older than the
/// tail reads the log, as in catch-up.
#[derive(Debug, Default)]
pub(crate) struct LiveTail {
    ring: std::sync::Mutex<Ring>,
    /// Held by the subscription that reads new events into the ring.
    filling: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Ring {
    /// The position of `events[0]`.
    start: u64,
    events: std::collections::VecDeque<RecordedEvent>,
}

impl Ring {
    fn end(&self) -> u64 {
        self.start + self.events.len() as u64
    }

    /// Events from `from` (which the ring covers) up to `head`, at most `max` matching `filter`, and
    /// where the next look starts.
    fn take(&self, from: u64, head: u64, max: usize, filter: &Filter) -> (Vec<RecordedEvent>, u64) {
        let mut taken = Vec::new();
        let mut next = from;
        for event in self.events.range((from - self.start) as usize..) {
            if next >= head || taken.len() >= max {
                break;
            }
            next += 1;
            if filter.matches(event) {
                taken.push(event.clone());
            }
        }
        (taken, next)
    }
}

#[derive(Debug, Clone)]
enum Source {
    All { filter: Filter, next_position: u64 },
    Stream { stream: StreamId, next_revision: u64 },
}

/// A subscription to the global log (filtered) or to one stream; see [`Store::subscribe_all`] and
/// [`Store::subscribe_stream`]. Dropping it ends it.
#[derive(Debug)]
pub struct Subscription {
    store: Store,
    source: Source,
    /// Where `source`'s cursor starts, resolved lazily (`End` depends on the head when first polled).
    start_at_end: bool,
    head: watch::Receiver<u64>,
    caught_up: bool,
    batch_events_max: usize,
    /// Why the start could not be resolved; the first `next` returns it.
    failed: Option<ReadError>,
}

impl Store {
    /// Subscribes to the global log from `from` (inclusive; `End`: only events committed from now
    /// on), events matching `filter` only.
    pub fn subscribe_all(&self, from: ReadFrom<Position>, filter: Filter) -> Subscription {
        let next_position = match from {
            ReadFrom::Start | ReadFrom::End => 0,
            ReadFrom::At(position) => position.value(),
        };
        self.subscription(Source::All { filter, next_position }, matches!(from, ReadFrom::End))
    }

    /// Subscribes to `stream` from revision `from` (inclusive; `End`: only events appended from now
    /// on). The stream need not exist yet. Events hidden by the stream's metadata are skipped.
    pub fn subscribe_stream(&self, stream: StreamId, from: ReadFrom<StreamRevision>) -> Subscription {
        let next_revision = match from {
            ReadFrom::Start | ReadFrom::End => 0,
            ReadFrom::At(revision) => revision.value(),
        };
        self.subscription(Source::Stream { stream, next_revision }, matches!(from, ReadFrom::End))
    }

    fn subscription(&self, source: Source, start_at_end: bool) -> Subscription {
        let head = self.watch_next_position();
        let mut subscription = Subscription {
            store: self.clone(),
            source,
            start_at_end: false,
            head,
            caught_up: false,
            batch_events_max: SUBSCRIPTION_BATCH_EVENTS_MAX,
            failed: None,
        };
        if start_at_end {
            // Resolved now, not at the first poll: events committed after `subscribe` returns are seen.
            let next_position = *subscription.head.borrow();
            match &mut subscription.source {
                Source::All { next_position: next, .. } => *next = next_position,
                Source::Stream { stream, next_revision } => match self.stream_revision(stream.as_str()) {
                    Ok(head) => *next_revision = head.map_or(0, |r| r.value() + 1),
                    Err(error) => subscription.failed = Some(error),
                },
            }
            subscription.start_at_end = true;
        }
        subscription
    }
}

impl Subscription {
    /// Reads at most this many events per batch (1 to [`SUBSCRIPTION_BATCH_EVENTS_MAX`]).
    pub fn with_batch_events_max(mut self, batch_events_max: usize) -> Self {
        self.batch_events_max = batch_events_max.clamp(1, SUBSCRIPTION_BATCH_EVENTS_MAX);
        self
    }

    /// Whether it started at the end of the log (it then has nothing to catch up on).
    pub fn started_at_end(&self) -> bool {
        self.start_at_end
    }

    /// The next message: a batch of events, or the one-time [`SubscriptionMessage::CaughtUp`]. Waits
    /// while there is nothing new. Fails when the stream is tombstoned, or when reading the log fails
    /// (the subscription can be resumed from the last event delivered).
    pub async fn next(&mut self) -> Result<SubscriptionMessage, ReadError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        loop {
            let head = *self.head.borrow_and_update();
            if self.caught_up {
                let behind = self.behind(head)?;
                if behind > SUBSCRIPTION_FELL_BEHIND {
                    self.caught_up = false;
                    return Ok(SubscriptionMessage::FellBehind { behind });
                }
            }
            if let Some(events) = self.read_batch(head).await? {
                return Ok(SubscriptionMessage::Events(events));
            }
            if !self.caught_up {
                self.caught_up = true;
                return Ok(SubscriptionMessage::CaughtUp);
            }
            if self.head.changed().await.is_err() {
                // The store is closing; there will be nothing new. Wait forever like an idle log would,
                // so that callers shut down on their own terms.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The next batch of events committed so far, without waiting; `None` when there is none.
    pub(crate) async fn next_available(&mut self) -> Result<Option<Vec<RecordedEvent>>, ReadError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        let head = *self.head.borrow_and_update();
        self.read_batch(head).await
    }

    /// How far the cursor is behind the head: positions, or a stream's revisions.
    fn behind(&self, head: u64) -> Result<u64, ReadError> {
        Ok(match &self.source {
            Source::All { next_position, .. } => head.saturating_sub(*next_position),
            Source::Stream { stream, next_revision } => {
                // Cheap: only a live subscription that woke up asks, and the stream's head is in memory
                // (the tail of the indexes) unless the stream is idle.
                let head = self.store.stream_revision(stream.as_str())?.map_or(0, |r| r.value() + 1);
                head.saturating_sub(*next_revision)
            }
        })
    }

    /// Where the next read starts: a position, or a revision for a stream subscription.
    pub(crate) fn cursor(&self) -> u64 {
        match &self.source {
            Source::All { next_position, .. } => *next_position,
            Source::Stream { next_revision, .. } => *next_revision,
        }
    }

    /// The next batch of events below `head` (the next position when it was sampled), advancing the
    /// cursor; `None` once everything below `head` has been delivered.
    async fn read_batch(&mut self, head: u64) -> Result<Option<Vec<RecordedEvent>>, ReadError> {
        let limit = self.batch_events_max;
        let Some(until) = head.checked_sub(1).map(Position::new) else { return Ok(None) };
        let store = self.store.clone();
        let options =
            ReadOptions { direction: Direction::Forward, limit, until_position: Some(until), until_time: None };
        match &mut self.source {
            Source::All { filter, next_position } => {
                if *next_position >= head {
                    return Ok(None);
                }
                // Live: from the shared tail while it reaches back to the cursor.
                while self.caught_up
                    && let Some((events, next)) = live_batch(&store, *next_position, head, limit, filter).await?
                {
                    *next_position = next;
                    if !events.is_empty() {
                        return Ok(Some(events));
                    }
                    if next >= head {
                        return Ok(None);
                    }
                }
                if *next_position >= head {
                    return Ok(None);
                }
                let (from, filter_for_read) = (*next_position, filter.clone());
                let page = tokio::task::spawn_blocking(move || {
                    store.read_all_page(ReadFrom::At(Position::new(from)), &options, &filter_for_read)
                })
                .await
                .expect("subscription read panicked")?;
                // A page that is not `more` saw everything that matches below `head`.
                *next_position = match page.events.last() {
                    Some(last) if page.more => last.position.value() + 1,
                    _ => head,
                };
                Ok((!page.events.is_empty()).then_some(page.events))
            }
            Source::Stream { stream, next_revision } => {
                let (from, stream_for_read) = (*next_revision, stream.clone());
                let read = tokio::task::spawn_blocking(move || {
                    store.read_stream_page(&stream_for_read, ReadFrom::At(StreamRevision::new(from)), &options)
                })
                .await
                .expect("subscription read panicked");
                let events = match read {
                    Ok(page) => page.events,
                    // Not created yet, or every event hidden: nothing to deliver until it is written.
                    Err(ReadError::StreamNotFound { .. }) => Vec::new(),
                    Err(error) => return Err(error),
                };
                match events.last() {
                    Some(last) => *next_revision = last.revision.value() + 1,
                    None => return Ok(None),
                }
                Ok(Some(events))
            }
        }
    }
}

/// Events for a live subscription from the shared tail: `None` when the tail does not reach back to
/// `from` (the subscription reads the log itself). Brings the tail up to `head` first, one reader for
/// everybody.
async fn live_batch(
    store: &Store,
    from: u64,
    head: u64,
    limit: usize,
    filter: &Filter,
) -> Result<Option<(Vec<RecordedEvent>, u64)>, ReadError> {
    let tail = &store.shared().live_tail;
    // `Some(None)`: the tail starts after `from` (read the log); `None`: the tail must be filled first.
    let served = |ring: &Ring| -> Option<Option<(Vec<RecordedEvent>, u64)>> {
        if from < ring.start {
            return Some(None);
        }
        (from < ring.end() || (from == ring.end() && ring.end() >= head))
            .then(|| Some(ring.take(from, head, limit, filter)))
    };
    if let Some(answer) = served(&tail.ring.lock().expect("live tail lock")) {
        return Ok(answer);
    }
    let _filling = tail.filling.lock().await;
    let end = {
        let ring = tail.ring.lock().expect("live tail lock");
        if let Some(answer) = served(&ring) {
            return Ok(answer);
        }
        ring.end()
    };
    // Read what is new since the tail's end; when that is more than the tail holds, start it afresh
    // at `from`.
    let start = if from > end || head.saturating_sub(end) > LIVE_TAIL_EVENTS as u64 { from } else { end };
    let reader = store.clone();
    let options = ReadOptions {
        direction: Direction::Forward,
        limit: (head - start).min(LIVE_TAIL_EVENTS as u64) as usize,
        until_position: Some(Position::new(head - 1)),
        until_time: None,
    };
    let page = tokio::task::spawn_blocking(move || {
        reader.read_all_page(ReadFrom::At(Position::new(start)), &options, &Filter::default())
    })
    .await
    .expect("live tail read panicked")?;
    let mut ring = tail.ring.lock().expect("live tail lock");
    if start != ring.end() {
        ring.events.clear();
        ring.start = start;
    }
    ring.events.extend(page.events);
    while ring.events.len() > LIVE_TAIL_EVENTS {
        ring.events.pop_front();
        ring.start += 1;
    }
    Ok(served(&ring).flatten())
}
