//! # Aether core
//!
//! The network-free heart of Aether: the [`Event`] model, validated names ([`ActorId`],
//! [`Namespace`], [`EventId`], [`NodeId`]), the store contract ([`EventStore`],
//! [`SnapshotStore`]), the [`InMemoryEventStore`] that implements it, the bus contract
//! ([`Bus`], [`DurableBus`]) with the in-process [`EventBus`], and the pure shard
//! placement ([`shard_for`], [`assign_shards`]) that the cluster builds on.
//!
//! Most applications depend on the `aether` facade crate, which re-exports everything here.
//!
//! ## Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `name` | [`ActorId`], [`Namespace`], [`EventId`], [`NodeId`] and the [`InvalidName`] error |
//! | `event` | [`Event`], [`EventBuilder`], typed data and metadata helpers |
//! | `snapshot` | [`ActorSnapshot`] |
//! | `pattern` | [`Pattern`] (NATS-style `*` / `>`) and the routing [`SubjectTrie`] |
//! | `filter` | [`SubscriptionFilter`] (event types, actor pattern) |
//! | `bus` | the [`Bus`] and [`DurableBus`] traits, the local [`EventBus`], [`Subscription`], [`NamespacedBus`] (the tenant handle of any bus); hooks for transports ([`InterestListener`], [`EncodedEvent`]) |
//! | `store` | the store traits, outcomes, [`StoreError`], [`EventLimits`], [`InMemoryEventStore`]; [`EventFeed`], every stored event of a namespace read from a checkpoint |
//! | `placement` | [`shard_for`] (actor → [`ShardId`]), [`assign_shards`] ([`Member`]s → [`ShardMap`]), [`shard_moves`] |
//! | `trace` | [`TraceContext`]: the W3C `traceparent` carried across nodes, and the current context of a task |
//! | [`testing`] | the conformance suite every store must pass (feature `testing`) |
//!
//! ## Example
//!
//! ```
//! use aether_core::{ActorId, Event, EventStore, InMemoryEventStore, StoreError};
//!
//! # futures::executor::block_on(async {
//! let store = InMemoryEventStore::new();
//! let account = ActorId::new("account-42")?;
//!
//! // Writers supply versions; a stale writer gets a conflict with the current version.
//! store.save_event(Event::new(account.clone(), "Opened", 1)).await?;
//! match store.save_event(Event::new(account.clone(), "Deposited", 1)).await {
//!     Err(StoreError::VersionConflict { current_version, .. }) => {
//!         store.save_event(Event::new(account.clone(), "Deposited", current_version + 1)).await?;
//!     }
//!     other => panic!("expected a conflict, got {other:?}"),
//! }
//! assert_eq!(store.latest_version(&account).await?, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod backend_error;
mod bus;
mod event;
mod filter;
mod name;
mod pattern;
mod placement;
mod redact;
mod snapshot;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod trace;

pub use backend_error::BackendError;
pub use bus::{
    Bus, BusConfig, BusMetrics, Delivery, DurableBus, EncodedEvent, EventBus, InterestListener,
    NamespacedBus, Overflow, SubscribeOptions, Subscription, SubscriptionMetrics, WithNamespaces,
    describe_bus_metrics,
};
pub use event::{DataError, Event, EventBuilder, Version, metadata_keys};
pub use filter::SubscriptionFilter;
pub use name::{ActorId, EventId, InvalidName, NameKind, NameRule, Namespace, NodeId};
pub use pattern::{Pattern, PatternToken, SubjectTrie};
pub use placement::{
    Member, PlacementError, ShardCount, ShardId, ShardMap, ShardMove, assign_shards, shard_for,
    shard_for_prefixed, shard_moves,
};
pub use redact::redact_url_credentials;
pub use snapshot::ActorSnapshot;
pub use store::{
    BoxError, ErrorKind, EventFeed, EventLimits, EventStore, FeedEvent, FeedPage, FeedPosition,
    FencedEventStore, InMemoryEventStore, InvalidEvent, InvalidSnapshot, LoadedActor, OwnerEpoch,
    ReadOp, ReplayError, ReplayResult, SaveOutcome, SnapshotOutcome, SnapshotStore, StoreError,
    StoreMetrics,
};
pub use trace::{Scoped, TraceContext, TraceParentError};
