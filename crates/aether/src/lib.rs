//! # Aether
//!
//! A NATS-native distributed actor system with event sourcing. This facade crate is what
//! applications depend on; it re-exports the pieces from the `aether-*` crates.
//!
//! Today it provides the core: events, validated names, the event store contract and the
//! in-memory store ([`aether_core`]). The JetStream store, the event bus and the cluster arrive
//! as features of this crate.
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
