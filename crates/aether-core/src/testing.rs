//! Test support for store implementations (feature `testing`).
//!
//! The [`conformance`] suite states the store contract as executable properties. Every
//! [`EventStore`](crate::EventStore) in Aether passes it, and third-party stores can run it too:
//!
//! ```no_run
//! use aether_core::InMemoryEventStore;
//! use aether_core::testing::conformance;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn my_store_keeps_the_contract() {
//!     conformance::run_all(|| async { InMemoryEventStore::new() }).await;
//! }
//! ```

pub mod conformance;
