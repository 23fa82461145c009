//! The traits application code, the toolkit and the server program against: [`EventStore`] (append,
//! read, subscribe, metadata) and [`ConsumerGroupStore`] (persistent groups shared by competing
//! consumers). The embedded engine implements both; the HTTP client implements [`EventStore`].

use crate::append::{AppendOutcome, MultiAppend, MultiAppendOutcome};
use crate::error::StoreError;
use crate::filter::Filter;
use crate::groups::{AckOutcome, Delivery, GroupError, GroupInfo, GroupSpec, NackAction, ParkedEvent};
use crate::read::{ReadFrom, ReadOptions, ReadPage};
use crate::subscription::SubscriptionMessage;
use std::future::Future;
use std::time::Duration;
use strata_core::{ExpectedRevision, NewEvent, Position, StreamId, StreamMetadata, StreamRevision, Timestamp};

/// An event store: append, read, subscribe, metadata — what application code needs, nothing more.
///
/// Reads of a stream that does not exist return an empty page (a missing stream is a stream with no
/// events).
pub trait EventStore: Clone + Send + Sync + 'static {
    type Subscription: EventSubscription;

    /// Appends to one or several streams atomically: every check and the condition hold, or nothing
    /// is written and the outcome says which failed.
    fn append_multi(&self, append: MultiAppend) -> impl Future<Output = Result<MultiAppendOutcome, StoreError>> + Send;

    /// Appends to one stream if `expected` holds.
    fn append(
        &self,
        stream: StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        let append = MultiAppend::to_stream(stream, expected, events);
        let store = self.clone();
        async move { store.append_multi(append).await.map(AppendOutcome::from_single) }
    }

    /// A page of one stream's events; a missing stream is an empty page.
    fn read_stream(
        &self,
        stream: &StreamId,
        from: ReadFrom<StreamRevision>,
        options: ReadOptions,
    ) -> impl Future<Output = Result<ReadPage, StoreError>> + Send;

    /// A page of the global log's events that match `filter`.
    fn read_all(
        &self,
        from: ReadFrom<Position>,
        options: ReadOptions,
        filter: &Filter,
    ) -> impl Future<Output = Result<ReadPage, StoreError>> + Send;

    /// The position of the last committed event (`None`: the store is empty).
    fn head_position(&self) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send;

    /// The last position recorded at or before `time` (`None`: nothing was recorded by then).
    fn position_at(&self, time: Timestamp) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send;

    /// Replaces a stream's metadata (max count, max age, truncation, the application's own).
    fn set_stream_metadata(
        &self,
        stream: StreamId,
        metadata: StreamMetadata,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ordered delivery of the global log's events matching `filter` from `from`: catch-up, then live.
    fn subscribe_all(&self, from: ReadFrom<Position>, filter: Filter) -> Self::Subscription;
}

/// A subscription of an [`EventStore`]: events in order, the live hand-off, falling behind.
pub trait EventSubscription: Send + 'static {
    fn next(&mut self) -> impl Future<Output = Result<SubscriptionMessage, StoreError>> + Send;
}

/// Persistent consumer groups: a subscription kept by the store and shared by competing consumers,
/// with acks, retries, parking and a durable checkpoint.
pub trait ConsumerGroupStore: Clone + Send + Sync + 'static {
    /// Creates a group, or changes its settings (its source and start cannot change).
    fn put(&self, spec: GroupSpec) -> impl Future<Output = Result<(), GroupError>> + Send;

    fn delete(&self, name: &str) -> impl Future<Output = Result<(), GroupError>> + Send;

    /// The groups' names, sorted.
    fn names(&self) -> Vec<String>;

    fn info(&self, name: &str) -> impl Future<Output = Result<GroupInfo, GroupError>> + Send;

    /// Up to `max` events for `consumer`, waiting up to `wait` for some (long poll).
    fn fetch(
        &self,
        name: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, GroupError>> + Send;

    fn ack(&self, name: &str, delivery_ids: &[String]) -> impl Future<Output = Result<AckOutcome, GroupError>> + Send;

    /// Hands deliveries back: to be retried, parked or skipped.
    fn nack(
        &self,
        name: &str,
        delivery_ids: &[String],
        action: NackAction,
    ) -> impl Future<Output = Result<AckOutcome, GroupError>> + Send;

    fn parked(&self, name: &str) -> impl Future<Output = Result<Vec<ParkedEvent>, GroupError>> + Send;

    /// Delivers the parked events again; returns how many.
    fn replay_parked(&self, name: &str) -> impl Future<Output = Result<usize, GroupError>> + Send;
}
