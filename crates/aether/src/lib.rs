//! # Aether
//!
//! A NATS-native distributed actor system with event sourcing. This facade crate is what
//! applications depend on; it re-exports the pieces from the `aether-*` crates, each behind a
//! feature:
//!
//! | feature | default | what it brings | from |
//! |---|---|---|---|
//! | (always) | yes | events, validated names, the [`EventStore`]/[`SnapshotStore`] contract and the [`InMemoryEventStore`], patterns and filters, the local [`EventBus`], pure shard placement | `aether-core`, re-exported at the root |
//! | `nats` | yes | `aether::nats`: the `JetStreamEventStore` (the same store contract on NATS JetStream, configured by `JetStreamConfig`) and the `NatsEventBus` (the local bus's API across nodes, live and durable) | `aether-nats` |
//! | `sqlite` | yes | `aether::sqlite`: the embedded durable store — `SqliteEventStore` (the same store contract in a data directory, SQLite compiled in, group commit, fsync before acknowledging by default) and `SqliteDatabase` for several namespaces in one directory | `aether-sqlite` |
//! | `cluster` | no | `aether::cluster`: membership with corroborated failure detection, a fenced leader lease, the versioned shard map and its history, rebalancing, behind `ClusterManager` | `aether-cluster` |
//! | `actor` | no | `aether::actor`: event-sourced virtual actors on one node — the `Actor` trait, the `Actors` handle (`ask`, `tell`, `query`), activation, passivation, snapshots, exactly-once commands, and actors talking to actors (effects: tell/ask, timers, reminders), on any [`SnapshotStore`] | `aether-actor` |
//! | `prometheus` | no | `aether::actor::prometheus`: `serve_metrics` serves every metric (listed in `docs/metrics.md`) at `/metrics` in Prometheus's format | `aether-actor` |
//! | `testing` | no | `aether::testing`: the store conformance suite, to check your own [`EventStore`] | `aether-core` |
//!
//! Actors on one node are behind the feature `actor`; with `cluster` too, `aether::actor::cluster`
//! routes them across the nodes of a cluster.
//!
//! ```
//! use aether::{ActorId, Event, EventStore, InMemoryEventStore};
//!
//! # futures::executor::block_on(async {
//! let store = InMemoryEventStore::new();
//! let cart = ActorId::new("cart-7")?;
//! store.save_event(Event::new(cart.clone(), "ItemAdded", 1)).await?;
//! assert_eq!(store.latest_version(&cart).await?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#[doc(inline)]
pub use aether_core::*;

/// Aether on NATS JetStream (the `aether-nats` crate): the event and snapshot store, the event
/// bus across nodes, and the injective naming of streams, subjects and KV keys.
#[cfg(feature = "nats")]
pub use aether_nats as nats;

#[cfg(feature = "nats")]
#[doc(inline)]
pub use aether_nats::{JetStreamConfig, JetStreamEventStore, NatsEventBus};

/// The embedded durable store (the `aether-sqlite` crate): SQLite in a data directory, the
/// default for one process.
#[cfg(feature = "sqlite")]
pub use aether_sqlite as sqlite;

#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use aether_sqlite::{SqliteConfig, SqliteDatabase, SqliteEventStore};

/// Cluster coordination (the `aether-cluster` crate): membership, the leader lease, the shard
/// map and its history, rebalancing, behind `ClusterManager`.
#[cfg(feature = "cluster")]
pub use aether_cluster as cluster;

#[cfg(feature = "cluster")]
#[doc(inline)]
pub use aether_cluster::{ClusterConfig, ClusterManager};

/// Actors on one node (the `aether-actor` crate): the [`Actor`](aether_actor::Actor) trait and
/// the [`Actors`](aether_actor::Actors) handle.
#[cfg(feature = "actor")]
pub use aether_actor as actor;

/// Compiles and runs the README's code blocks as doc tests, so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
