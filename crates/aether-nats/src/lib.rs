//! # Aether on NATS JetStream
//!
//! The production engine behind Aether's contracts:
//!
//! - [`JetStreamEventStore`]: the [`EventStore`](aether_core::EventStore) and
//!   [`SnapshotStore`](aether_core::SnapshotStore) of one namespace, on a JetStream stream and
//!   KV bucket, with the version check enforced by the server;
//! - [`naming`]: the injective mapping from namespaces and actor ids to stream names, subjects
//!   and KV keys.
//!
//! With feature `testing`, the store implements `aether_core`'s `ConformanceTarget`, so the
//! same conformance suite runs against it.

pub mod naming;
mod store;
#[cfg(feature = "testing")]
mod testing;

pub use store::{JetStreamConfig, JetStreamEventStore, LoadedActor, TYPE_HEADER, VERSION_HEADER};
