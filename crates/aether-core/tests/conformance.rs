//! The store conformance suite against the in-memory store: every property as its own test
//! (through `conformance_tests!`, as a third party would use it), plus `run_all`; the same for
//! the feed and fence properties.

use aether_core::InMemoryEventStore;
use aether_core::testing::conformance;

// One test per property, generated from the suite's own list of properties.
aether_core::conformance_tests!(async { InMemoryEventStore::new() });

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_passes_on_the_in_memory_store() {
    conformance::run_all(|| async { InMemoryEventStore::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_runs_with_non_default_limits() {
    let limits = aether_core::EventLimits {
        max_event_bytes: 4096,
        max_batch_len: 5,
        max_snapshot_bytes: 2048,
    };
    conformance::run_all(|| async move { InMemoryEventStore::with_limits(limits) }).await;
}

/// The feed properties (the in-memory store implements `EventFeed`), one test each.
mod feed {
    aether_core::feed_conformance_tests!(async { aether_core::InMemoryEventStore::new() });

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn run_all_feed_passes_on_the_in_memory_store() {
        aether_core::testing::conformance::run_all_feed(|| async {
            aether_core::InMemoryEventStore::new()
        })
        .await;
    }
}

/// The fence properties (the in-memory store implements `FencedEventStore`), one test each.
mod fence {
    aether_core::fence_conformance_tests!(async { aether_core::InMemoryEventStore::new() });

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn run_all_fenced_passes_on_the_in_memory_store() {
        aether_core::testing::conformance::run_all_fenced(|| async {
            aether_core::InMemoryEventStore::new()
        })
        .await;
    }
}
