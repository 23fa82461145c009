//! Strata's event-sourcing toolkit: what application code is written against, over the embedded
//! store and the HTTP client alike.
//!
//! Codemap:
//! - [`store`]: [`EventStore`], the trait every operation here goes through (implemented for the
//!   embedded [`strata_storage::Store`] here and for `strata_client::Client` in that crate).
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
