//! The store boundary: the plain types of appends, reads, filters, subscriptions, stream listings
//! and consumer groups, the errors every backend shares, and the traits application code, the
//! toolkit, the client and the server program against. No IO, no runtime, no backend: the embedded
//! engine (`strata-storage`) and the HTTP client (`strata-client`) implement these.
//!
//! Codemap:
//! - [`append`] — [`MultiAppend`], [`AppendCondition`] (DCB), [`AppendOutcome`] / [`MultiAppendOutcome`].
//! - [`read`] — [`ReadFrom`], [`ReadOptions`], [`Direction`], [`ReadPage`].
//! - [`filter`] — [`Filter`], which events of the global log a read sees.
//! - [`subscription`] — [`SubscriptionMessage`] and its limits.
//! - [`streams`] — [`StreamInfo`].
//! - [`groups`] — consumer groups — [`GroupSpec`], [`GroupSettings`], [`Delivery`], [`NackAction`], … and their limits.
//! - [`error`] — [`AppendError`], [`ReadError`], [`StorageError`], [`Corruption`], [`StoreError`].
//! - [`traits`] — [`EventStore`], [`EventSubscription`], [`ConsumerGroupStore`].
//!
//! # Invariants
//! Nothing here depends on a backend: this crate depends on `strata-core` alone (and `thiserror`).

pub mod append;
pub mod error;
pub mod filter;
pub mod groups;
pub mod read;
pub mod streams;
pub mod subscription;
pub mod traits;

pub use append::{
    AppendCondition, AppendOutcome, AppendResult, MultiAppend, MultiAppendOutcome, MultiAppendResult,
    StreamAppendResult,
};
pub use error::{AppendError, Corruption, ReadError, StorageError, StoreError};
pub use filter::Filter;
pub use groups::{
    AckOutcome, Delivery, GROUP_FETCH_MAX, GROUP_IN_FLIGHT_MAX, GROUP_NAME_BYTES_MAX, GROUP_PARKED_MAX, GROUP_WAIT_MAX,
    GroupError, GroupInfo, GroupSettings, GroupSource, GroupSpec, GroupStart, NackAction, ParkedEvent, Strategy,
};
pub use read::{Direction, ReadFrom, ReadOptions, ReadPage};
pub use streams::StreamInfo;
pub use subscription::{SUBSCRIPTION_BATCH_EVENTS_MAX, SUBSCRIPTION_FELL_BEHIND, SubscriptionMessage};
pub use traits::{ConsumerGroupStore, EventStore, EventSubscription};
