//! # Aether on NATS JetStream
//!
//! The production engine behind Aether's contracts:
//!
//! - [`JetStreamEventStore`]: the [`EventStore`](aether_core::EventStore) and
//!   [`SnapshotStore`](aether_core::SnapshotStore) of one namespace, on a JetStream stream and
//!   KV bucket, with the version check enforced by the server, and the
//!   [`FencedEventStore`](aether_core::FencedEventStore) whose fence records keep an older
//!   owner from writing (record format in [`FENCE_HEADER`] and `docs/adr/0004-jetstream-store.md`
//!   §8: other clients skip every message that carries `Aether-Fence`);
//! - [`NatsEventBus`]: the event bus across nodes — the local bus's API, live delivery over core
//!   NATS with every loss counted, and durable named subscriptions on a JetStream bus stream;
//! - [`naming`]: the injective mapping from namespaces and actor ids to stream names, subjects
//!   and KV keys.
//!
//! With feature `testing`, the store implements `aether_core`'s `ConformanceTarget`, so the
//! same conformance suite runs against it.

mod bus;
mod durations;
pub mod naming;
pub mod permissions;
pub mod server_addrs;
mod store;
#[cfg(feature = "testing")]
mod testing;

pub use bus::{
    BusError, DurableBacklog, DurableConfig, DurableMetrics, DurableName, DurableOptions,
    DurableStart, DurableSubscription, MAX_RETENTION, NatsBusConfig, NatsBusMetrics, NatsEventBus,
    NatsNamespacedBus, describe_nats_bus_metrics, wire,
};
pub use durations::MAX_DURATION;
pub use store::{
    FENCE_HEADER, FENCE_VERSION_HEADER, JetStreamConfig, JetStreamEventStore, OWNER_EPOCH_HEADER,
    OpenExistingError, TYPE_HEADER, VERSION_HEADER,
};
