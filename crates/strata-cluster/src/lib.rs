//! Cluster mode (`../shared/DESIGN.md` §4, `docs/design.md` "Cluster mode"): the same Strata on a NATS
//! JetStream cluster.
//!
//! JetStream holds the log — one message per commit frame, in one stream per namespace. Every node
//! keeps a full replica of it in its local engine ([`strata_storage::Store::open_replicated`]) and
//! serves reads from there. One node at a time leads, by a lease in a JetStream key-value bucket;
//! its committer decides appends and publishes each frame with `Nats-Expected-Last-Sequence` set to
//! the last message it applied, so a deposed leader can never write: the log's own compare-and-set
//! fences it.
//!
//! - [`config`]: what a node needs to know ([`ClusterConfig`], NATS credentials and TLS).
//! - [`nats`]: connecting, and the start-up checks (server version, `max_payload`, persistence).
//! - [`log`]: [`log::JetStreamLog`], the [`strata_storage::replica::CommitLog`] the leader's committer
//!   proposes frames to (publish, compare-and-set, resolving unknown outcomes).
//! - [`node`]: [`Node`] — the replica, the follower loop, the lease, the role.
//! - [`cursor`]: where the local replica is in the log, kept across restarts.
//! - `testing` (feature `testing`): private nats-server processes for tests.

pub mod config;
pub mod cursor;
pub mod groups;
pub mod log;
pub mod nats;
pub mod node;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{ClusterConfig, NatsAuth, NatsTls};
pub use node::{ClusterStatus, Node, Role, StartError};
