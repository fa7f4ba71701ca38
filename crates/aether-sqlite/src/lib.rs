//! Aether's embedded durable event store: SQLite (compiled in, nothing to install) in a data
//! directory — the default for one process, with no server to run.
//!
//! - [`SqliteDatabase`] opens a data directory (`aether.sqlite3` and its lock file) and gives
//!   the store of each namespace kept there;
//! - [`SqliteEventStore`] is the full store contract on it: events with optimistic
//!   concurrency, atomic batches, idempotency by event id, snapshots and `load`, the event
//!   feed (every event in commit order after a checkpoint) and ownership fences — checked by
//!   `aether-core`'s conformance suite, unchanged.
//!
//! **Durability.** By default ([`Durability::Full`]) a save is acknowledged only once its
//! commit is synced to disk; concurrent saves share one commit and one sync (group commit),
//! each still atomic and checked on its own. [`Durability::Relaxed`] skips the sync: a power
//! loss may lose the last acknowledged saves, never corrupting the database.
//!
//! **Namespaces** share the directory's database and are kept apart by their id in every
//! table: a store sees only its own namespace's actors, events, snapshots and feed.
//!
//! The schema is plain SQL, readable with the `sqlite3` tool: see the [`schema`] module.
//!
//! # Examples
//!
//! ```
//! use aether_core::{ActorId, Event, EventStore, Namespace, SnapshotStore};
//! use aether_sqlite::{SqliteConfig, SqliteEventStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("aether-doc-lib-{}", std::process::id()));
//! let store = SqliteEventStore::open(&dir, Namespace::new("bank")?, SqliteConfig::default())?;
//! let account = ActorId::new("acct-1")?;
//! store
//!     .save_events(vec![
//!         Event::new(account.clone(), "Opened", 1),
//!         Event::new(account.clone(), "Deposited", 2),
//!     ])
//!     .await?;
//! let loaded = store.load(&account).await?;
//! assert_eq!(loaded.events.len(), 2);
//! # drop(store);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

mod config;
mod database;
mod error;
mod inspect;
pub mod schema;
mod store;

pub use config::{Durability, SqliteConfig};
pub use database::{DATABASE_FILE, LOCK_FILE, SqliteDatabase, SqliteStats};
pub use error::OpenError;
pub use inspect::{ActorSummary, NamespaceStats, SqliteInspector};
pub use store::SqliteEventStore;
