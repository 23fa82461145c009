//! [`EventStore`]: the one trait the toolkit reaches a store through — the embedded engine
//! ([`strata_storage::Store`], implemented here) and the HTTP client (`strata_client::Client`,
//! implemented in that crate) alike, so application code runs unchanged on both.

use std::future::Future;
use strata_core::{ExpectedRevision, NewEvent, Position, StreamId, StreamMetadata, StreamRevision, Timestamp};
use strata_storage::{
    AppendError, AppendOutcome, Filter, MultiAppend, MultiAppendOutcome, ReadError, ReadFrom, ReadOptions, ReadPage,
    Store, SubscriptionMessage,
};

/// Why a store operation failed. A failed expectation or condition is not an error: it is an
/// outcome ([`AppendOutcome`], [`MultiAppendOutcome`]) the caller handles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A remote store answered with an error (`code` is the API's error code, e.g. `invalid_request`).
    #[error("the server refused the request ({status} {code}): {message}")]
    Remote { status: u16, code: String, message: String },
    /// A remote store could not be reached, or its answer could not be understood. Whether an append
    /// that failed this way was committed is unknown: retry it with the same event ids (idempotent).
    #[error("the server could not be reached or answered unexpectedly: {0}")]
    Transport(String),
}

/// An event store: append, read, subscribe, metadata — what the toolkit needs, nothing more.
///
/// Reads of a stream that does not exist return an empty page (the toolkit treats a missing stream
/// as a stream with no events).
pub trait EventStore: Clone + Send + Sync + 'static {
    type Subscription: EventSubscription;

    /// Appends to one or several streams atomically (see [`Store::append_multi`]).
    fn append_multi(&self, append: MultiAppend) -> impl Future<Output = Result<MultiAppendOutcome, StoreError>> + Send;

    /// Appends to one stream if `expected` holds (see [`Store::append`]).
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

/// A subscription of an [`EventStore`]: the messages of [`strata_storage::Subscription`].
pub trait EventSubscription: Send + 'static {
    fn next(&mut self) -> impl Future<Output = Result<SubscriptionMessage, StoreError>> + Send;
}

/// Runs blocking store work on tokio's blocking pool (the engine's reads are plain file IO).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.expect("a store task panicked")
}

impl EventStore for Store {
    type Subscription = strata_storage::Subscription;

    async fn append_multi(&self, append: MultiAppend) -> Result<MultiAppendOutcome, StoreError> {
        Ok(Store::append_multi(self, append).await?)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: ReadFrom<StreamRevision>,
        options: ReadOptions,
    ) -> Result<ReadPage, StoreError> {
        let (store, stream) = (self.clone(), stream.clone());
        blocking(move || match store.read_stream_page(&stream, from, &options) {
            Err(ReadError::StreamNotFound { .. }) => Ok(ReadPage { events: Vec::new(), more: false }),
            other => Ok(other?),
        })
        .await
    }

    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        options: ReadOptions,
        filter: &Filter,
    ) -> Result<ReadPage, StoreError> {
        let (store, filter) = (self.clone(), filter.clone());
        blocking(move || Ok(store.read_all_page(from, &options, &filter)?)).await
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        Ok(Store::head_position(self))
    }

    async fn position_at(&self, time: Timestamp) -> Result<Option<Position>, StoreError> {
        let store = self.clone();
        blocking(move || Ok(Store::position_at(&store, time)?)).await
    }

    async fn set_stream_metadata(&self, stream: StreamId, metadata: StreamMetadata) -> Result<(), StoreError> {
        match Store::set_stream_metadata(self, stream, &metadata).await? {
            MultiAppendOutcome::Committed(_) => Ok(()),
            other => unreachable!("a metadata write has no expectation, yet: {other:?}"),
        }
    }

    fn subscribe_all(&self, from: ReadFrom<Position>, filter: Filter) -> Self::Subscription {
        Store::subscribe_all(self, from, filter)
    }
}

impl EventSubscription for strata_storage::Subscription {
    async fn next(&mut self) -> Result<SubscriptionMessage, StoreError> {
        Ok(strata_storage::Subscription::next(self).await?)
    }
}
