//! The embedded engine as an [`EventStore`] and a [`ConsumerGroupStore`]: the boundary's traits,
//! implemented by [`Store`] and [`ConsumerGroups`] (reads, plain file IO, run on tokio's blocking pool).

use crate::groups::ConsumerGroups;
use crate::store::Store;
use std::time::Duration;
use strata_core::{Position, StreamId, StreamMetadata, StreamRevision, Timestamp};
use strata_store::{
    AckOutcome, ConsumerGroupStore, Delivery, EventStore, EventSubscription, Filter, GroupError, GroupInfo, GroupSpec,
    MultiAppend, MultiAppendOutcome, NackAction, ParkedEvent, ReadError, ReadFrom, ReadOptions, ReadPage, StoreError,
    SubscriptionMessage,
};

/// Runs blocking store work on tokio's blocking pool (the engine's reads are plain file IO).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.expect("a store task panicked")
}

impl EventStore for Store {
    type Subscription = crate::Subscription;

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

impl EventSubscription for crate::Subscription {
    async fn next(&mut self) -> Result<SubscriptionMessage, StoreError> {
        Ok(crate::Subscription::next(self).await?)
    }
}

impl ConsumerGroupStore for ConsumerGroups {
    async fn put(&self, spec: GroupSpec) -> Result<(), GroupError> {
        ConsumerGroups::put(self, spec).await
    }

    async fn delete(&self, name: &str) -> Result<(), GroupError> {
        ConsumerGroups::delete(self, name).await
    }

    fn names(&self) -> Vec<String> {
        ConsumerGroups::names(self)
    }

    async fn info(&self, name: &str) -> Result<GroupInfo, GroupError> {
        ConsumerGroups::info(self, name).await
    }

    async fn fetch(&self, name: &str, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, GroupError> {
        ConsumerGroups::fetch(self, name, consumer, max, wait).await
    }

    async fn ack(&self, name: &str, delivery_ids: &[String]) -> Result<AckOutcome, GroupError> {
        ConsumerGroups::ack(self, name, delivery_ids).await
    }

    async fn nack(&self, name: &str, delivery_ids: &[String], action: NackAction) -> Result<AckOutcome, GroupError> {
        ConsumerGroups::nack(self, name, delivery_ids, action).await
    }

    async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, GroupError> {
        ConsumerGroups::parked(self, name).await
    }

    async fn replay_parked(&self, name: &str) -> Result<usize, GroupError> {
        ConsumerGroups::replay_parked(self, name).await
    }
}
