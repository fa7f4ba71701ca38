//! # Aether
//!
//! A NATS-native distributed actor system with event sourcing. This facade crate is what
//! applications depend on; it re-exports the pieces from the `aether-*` crates.
//!
//! It provides the single-process core ([`aether_core`], re-exported at the root): events,
//! validated names, the event store contract with the in-memory store, patterns and the local
//! event bus; and the NATS engine ([`nats`], from `aether-nats`): [`JetStreamEventStore`], the
//! same store contract on NATS JetStream, configured by [`JetStreamConfig`]. The bus across
//! nodes and the cluster are next.
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

/// Aether on NATS JetStream (the `aether-nats` crate): the event and snapshot store, and the
/// injective naming of streams, subjects and KV keys.
pub use aether_nats as nats;

#[doc(inline)]
pub use aether_nats::{JetStreamConfig, JetStreamEventStore};

/// Compiles and runs the README's code blocks as doc tests, so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
