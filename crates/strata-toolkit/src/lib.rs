//! Strata's event-sourcing toolkit: what application code is written against, over the embedded
//! store and the HTTP client alike.
//!
//! It depends on the store boundary (`strata-store`) only, never on a backend: the embedded engine
//! (`strata_storage::Store`) and the HTTP client (`strata_client::Client`) both implement its
//! [`EventStore`]. The projection targets are features: `sqlite` (bundled SQLite) and `postgres`
//! (tokio-postgres), both on by default.
//!
//! Codemap:
//! - [`store`]: [`EventStore`], the trait every operation here goes through.
//! - [`event`]: [`DomainEvent`], [`Codec`] (stored type names, schema versions, upcasters).
//! - [`decider`]: [`Decider`], [`CommandHandler`] (load, decide, append, retry; snapshots; time travel).
//! - [`dcb`]: [`DcbDecider`], [`DcbHandler`] (a query as the consistency boundary).
//! - [`projection`]: the runner, [`Target`], and the SQLite and PostgreSQL targets.
//! - [`testing`]: given / when / then.
pub mod store;

pub use store::{EventStore, EventSubscription, StoreError};
pub mod dcb;
pub mod decider;
pub mod event;
pub mod projection;
pub mod testing;

pub use dcb::{DcbDecider, DcbHandled, DcbHandler};
pub use decider::{AsOf, CommandError, CommandHandler, CommandOptions, Decider, Handled, Loaded};
pub use event::{Codec, CodecError, DomainEvent, EventSchema, adjacent};
pub use projection::{ProjectionError, ProjectionHandle, ProjectionStatus, SwitchOver, Target};
