//! `aether-core`'s store conformance suite, unchanged, against the SQLite store: every
//! property as its own test on a fresh data directory (under Cargo's target tmp dir), with
//! the default limits and with tight ones; and the feed and fence properties.

use std::path::PathBuf;
use std::sync::Once;

use aether_core::testing::conformance;
use aether_core::{EventLimits, Namespace};
use aether_sqlite::{Durability, SqliteConfig, SqliteEventStore};

/// Where this binary's data directories go; emptied once per run.
fn root() -> PathBuf {
    static CLEAN: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-conformance");
    CLEAN.call_once(|| {
        let _ = std::fs::remove_dir_all(&root);
    });
    root
}

async fn fresh_store(config: SqliteConfig) -> SqliteEventStore {
    let dir = root().join(uuid::Uuid::now_v7().simple().to_string());
    SqliteEventStore::open(&dir, Namespace::new("conformance").unwrap(), config)
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Tight limits: small events, short batches, small snapshots.
fn tight() -> SqliteConfig {
    SqliteConfig {
        limits: EventLimits {
            max_event_bytes: 2048,
            max_batch_len: 4,
            max_snapshot_bytes: 4096,
        },
        durability: Durability::Relaxed,
        ..SqliteConfig::default()
    }
}

macro_rules! property_tests {
    ($run:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                conformance::$run(stringify!($name), || fresh_store(SqliteConfig::default())).await;
                conformance::$run(stringify!($name), || fresh_store(tight())).await;
            }
        )*
    };
}

macro_rules! store_tests { (; $($name:ident),* $(,)?) => { property_tests!(run_one; $($name),*); }; }
macro_rules! feed_tests { (; $($name:ident),* $(,)?) => { property_tests!(run_one_feed; $($name),*); }; }
macro_rules! fence_tests { (; $($name:ident),* $(,)?) => { property_tests!(run_one_fenced; $($name),*); }; }

aether_core::__conformance_properties!(store_tests {});
aether_core::__feed_conformance_properties!(feed_tests {});
aether_core::__fence_conformance_properties!(fence_tests {});
