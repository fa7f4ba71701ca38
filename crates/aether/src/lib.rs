//! # Aether
//!
//! A NATS-native distributed actor system with event sourcing. This facade crate is what
//! applications depend on; it re-exports the pieces from the `aether-*` crates.
//!
//! Today it provides the single-process core ([`aether_core`]): events, validated names, the
//! event store contract with the in-memory store, patterns and the local event bus. The
//! JetStream store, the bus across nodes and the cluster arrive as features of this crate.
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

/// Compiles and runs the README's code blocks as doc tests, so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
