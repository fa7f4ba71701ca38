//! The store conformance suite against the in-memory store: every property as its own test,
//! plus `run_all` as a third party would call it.

use aether_core::InMemoryEventStore;
use aether_core::testing::conformance;

macro_rules! properties {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                conformance::$name(InMemoryEventStore::new()).await;
            }
        )*

        #[test]
        fn every_property_has_a_test_here() {
            let here = [$(stringify!($name)),*];
            for property in conformance::PROPERTIES {
                assert!(here.contains(property), "add {property} to tests/conformance.rs");
            }
        }
    };
}

properties!(
    save_then_read_back,
    unknown_actor_is_empty,
    version_must_exceed_current,
    latest_version_with_gaps,
    actors_are_independent,
    resaving_an_event_is_a_duplicate,
    reusing_an_id_for_another_event_is_rejected,
    batch_is_stored_whole,
    batch_conflict_writes_nothing,
    batch_with_a_reused_id_writes_nothing,
    resaving_a_batch_is_a_duplicate,
    events_from_version_filters_in_order,
    events_with_errors_reports_undecodable_records,
    replay_is_deterministic,
    snapshot_round_trip,
    older_snapshot_never_replaces_newer,
    snapshot_ahead_of_events_is_rejected,
    snapshot_plus_tail_equals_full_replay,
    rejects_bad_event_types,
    rejects_version_zero,
    rejects_events_above_the_size_limit,
    rejects_bad_batches,
    rejects_bad_snapshots,
    ids_and_actor_ids_are_valid_by_construction,
    racing_writers_have_exactly_one_winner_per_round,
    writers_of_different_actors_do_not_conflict,
    loser_can_reread_and_retry,
);

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
