//! The store the toolkit reaches everything through: [`EventStore`] and its subscription, from the
//! boundary crate (`strata-store`). The embedded engine implements it (`strata_storage::Store`), and
//! so does the HTTP client (`strata_client::Client`), so application code runs unchanged on both.

pub use strata_store::{EventStore, EventSubscription, StoreError};
