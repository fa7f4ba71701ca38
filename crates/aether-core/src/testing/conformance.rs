//! The store conformance suite: one public async function per property of the store contract,
//! and [`run_all`] to run them all against fresh stores from a factory.
//!
//! The properties cover capabilities 1–3 of the specification (durable storage with conflict
//! detection, rebuilding state from history, safe concurrent writes), idempotency, atomic
//! batches, snapshots and every kind of bad input. Each function panics with a message that
//! names the broken promise, like any test assertion.
//!
//! A store under test implements [`ConformanceTarget`]: the store traits plus two hooks the
//! suite needs (its limits, and a way to write a raw record as a foreign client could).
//!
//! A store that also implements [`EventFeed`] passes the feed properties too
//! ([`FEED_PROPERTIES`], run by [`run_all_feed`] / [`feed_conformance_tests!`](crate::feed_conformance_tests)):
//! a separate list, since the feed is a separate trait.
//!
//! A store that also implements [`FencedEventStore`] (and the feed) passes the fence
//! properties ([`FENCE_PROPERTIES`], run by [`run_all_fenced`] /
//! [`fence_conformance_tests!`](crate::fence_conformance_tests)) through [`FenceTarget`].

mod bad_input;
mod batch;
mod concurrency;
mod feed;
mod fence;
mod idempotency;
mod load;
mod replay;
mod save;
mod snapshot;
mod support;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use crate::{
    ActorId, EventFeed, EventLimits, EventStore, FencedEventStore, InMemoryEventStore,
    SnapshotStore, StoreError,
};

pub use bad_input::*;
pub use batch::*;
pub use concurrency::*;
pub use feed::*;
pub use fence::*;
pub use idempotency::*;
pub use load::*;
pub use replay::*;
pub use save::*;
pub use snapshot::*;

/// A store the suite can test: both store traits plus two hooks.
pub trait ConformanceTarget: EventStore + SnapshotStore + Send + Sync + 'static {
    /// The limits the store enforces (the suite probes their boundaries).
    fn limits(&self) -> EventLimits;

    /// Writes `raw` as a record on `actor_id`'s stream, bypassing the store's encoder, the way
    /// another client could. Used to check that undecodable records are reported, not hidden.
    fn write_raw_record(
        &self,
        actor_id: &ActorId,
        raw: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl ConformanceTarget for InMemoryEventStore {
    fn limits(&self) -> EventLimits {
        Self::limits(self)
    }

    async fn write_raw_record(&self, actor_id: &ActorId, raw: Vec<u8>) -> Result<(), StoreError> {
        Self::write_raw_record(self, actor_id, raw)
    }
}

/// A store the fence properties can test: a [`ConformanceTarget`] with fences and a feed,
/// plus a way to open a second handle on the same data.
pub trait FenceTarget: ConformanceTarget + FencedEventStore + EventFeed {
    /// Another handle on the same data (the same namespace) that shares no cache with this
    /// one, the way another node would see it: the suite fences through it while this handle
    /// still remembers the old head.
    fn another_handle(&self) -> impl Future<Output = Self> + Send;
}

impl FenceTarget for InMemoryEventStore {
    /// A clone: the in-memory store keeps no cache a handle could see stale.
    async fn another_handle(&self) -> Self {
        self.clone()
    }
}

/// Calls `$callback!` with the list of every property: the one place the list is written.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_properties {
    ($callback:path { $($args:tt)* }) => {
        $callback! { $($args)* ;
            // Capability 1: store events durably with conflict detection.
            save_then_read_back,
            unknown_actor_is_empty,
            version_must_exceed_current,
            latest_version_with_gaps,
            actors_are_independent,
            // Idempotency.
            resaving_an_event_is_a_duplicate,
            reusing_an_id_for_another_event_is_rejected,
            // Atomic batches.
            batch_is_stored_whole,
            batch_conflict_writes_nothing,
            batch_with_a_reused_id_writes_nothing,
            resaving_a_batch_is_a_duplicate,
            // Capability 2: rebuild state from history.
            events_from_version_filters_in_order,
            events_with_errors_reports_undecodable_records,
            replay_is_deterministic,
            // Snapshots.
            snapshot_round_trip,
            older_snapshot_never_replaces_newer,
            snapshot_ahead_of_events_is_rejected,
            snapshot_plus_tail_equals_full_replay,
            // Loading for activation: snapshot + tail, holes reported.
            load_without_snapshot_is_the_whole_history,
            load_is_snapshot_plus_tail,
            load_reports_undecodable_records,
            // Bad input: typed errors, nothing written.
            rejects_bad_event_types,
            rejects_version_zero,
            rejects_events_above_the_size_limit,
            rejects_bad_batches,
            rejects_bad_snapshots,
            ids_and_actor_ids_are_valid_by_construction,
            // Capability 3: safe concurrent writes.
            racing_writers_have_exactly_one_winner_per_round,
            writers_of_different_actors_do_not_conflict,
            loser_can_reread_and_retry,
            concurrent_retries_of_one_event_store_it_once,
            batches_and_single_saves_never_interleave,
        }
    };
}

/// Calls `$callback!` with the list of every feed property ([`EventFeed`] stores only).
#[doc(hidden)]
#[macro_export]
macro_rules! __feed_conformance_properties {
    ($callback:path { $($args:tt)* }) => {
        $callback! { $($args)* ;
            feed_holds_every_stored_event_in_commit_order,
            feed_resumes_after_a_checkpoint,
            feed_reports_undecodable_records,
            feed_under_concurrent_writers_misses_nothing,
        }
    };
}

/// Calls `$callback!` with the list of every fence property ([`FenceTarget`] stores only).
#[doc(hidden)]
#[macro_export]
macro_rules! __fence_conformance_properties {
    ($callback:path { $($args:tt)* }) => {
        $callback! { $($args)* ;
            stale_epoch_write_after_a_fence_is_fenced,
            equal_and_higher_epoch_writes_land_after_a_fence,
            fences_are_invisible_to_reads,
            fences_are_invisible_to_the_feed,
            a_fence_below_the_heads_epoch_is_fenced,
            plain_writes_to_an_owned_actor_are_fenced,
            a_stale_writer_with_a_cached_head_is_fenced,
            resaving_stored_events_after_a_fence_is_a_duplicate,
            a_fence_racing_a_stale_write_is_never_overtaken,
            bad_input_to_fenced_writes_is_a_typed_error,
        }
    };
}

/// Generates one `#[tokio::test]` per conformance property, each on a fresh store from
/// `$factory` (an expression evaluating to a future of the store). Needs `tokio` (with the
/// `macros` and `rt-multi-thread` features) among the calling crate's dev-dependencies.
///
/// ```ignore
/// aether_core::conformance_tests!(async { MyStore::connect().await });
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__conformance_properties!($crate::__conformance_tests { $factory });
    };
}

/// Generates one `#[tokio::test]` per feed property ([`FEED_PROPERTIES`]), each on a fresh
/// store from `$factory`, for a store that implements [`EventFeed`]; as
/// [`conformance_tests!`](crate::conformance_tests).
///
/// ```ignore
/// aether_core::feed_conformance_tests!(async { MyStore::connect().await });
/// ```
#[macro_export]
macro_rules! feed_conformance_tests {
    ($factory:expr) => {
        $crate::__feed_conformance_properties!($crate::__conformance_tests { $factory });
    };
}

/// Generates one `#[tokio::test]` per fence property ([`FENCE_PROPERTIES`]), each on a fresh
/// store from `$factory`, for a store that implements [`FenceTarget`]; as
/// [`conformance_tests!`](crate::conformance_tests).
///
/// ```ignore
/// aether_core::fence_conformance_tests!(async { MyStore::connect().await });
/// ```
#[macro_export]
macro_rules! fence_conformance_tests {
    ($factory:expr) => {
        $crate::__fence_conformance_properties!($crate::__conformance_tests { $factory });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:expr ; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::testing::conformance::$name($factory.await).await;
            }
        )*
    };
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $list:ident, $run_case:ident, ($($bound:tt)*) ; $($name:ident),* $(,)?) => {
        $(#[$doc])*
        pub const $list: &[&str] = &[$(stringify!($name)),*];

        async fn $run_case<S, F, Fut>(name: &str, factory: &F)
        where
            S: $($bound)*,
            F: Fn() -> Fut,
            Fut: Future<Output = S>,
        {
            match name {
                $(stringify!($name) => $name(factory().await).await,)*
                other => panic!("unknown conformance property {other:?}"),
            }
        }
    };
}

crate::__conformance_properties!(dispatch {
    /// Names of every property, in the order [`run_all`] runs them.
    PROPERTIES, run_case, (ConformanceTarget)
});
crate::__feed_conformance_properties!(dispatch {
    /// Names of every feed property, in the order [`run_all_feed`] runs them.
    FEED_PROPERTIES, run_feed_case, (ConformanceTarget + EventFeed)
});
crate::__fence_conformance_properties!(dispatch {
    /// Names of every fence property, in the order [`run_all_fenced`] runs them.
    FENCE_PROPERTIES, run_fence_case, (FenceTarget)
});

/// Runs every property in [`PROPERTIES`], each against a fresh store from `factory`, and panics
/// at the end listing every property that failed (a failing property does not hide the rest).
///
/// The concurrency properties spawn tokio tasks; run this on a multi-threaded runtime to race
/// them for real (`#[tokio::test(flavor = "multi_thread")]`).
///
/// # Panics
///
/// If any property fails.
pub async fn run_all<S, F, Fut>(factory: F)
where
    S: ConformanceTarget,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_list(PROPERTIES, |name| run_case(name, &factory)).await;
}

/// Runs every property in [`FEED_PROPERTIES`] against fresh stores from `factory`, as
/// [`run_all`] does, for a store that implements [`EventFeed`].
///
/// # Panics
///
/// If any property fails.
pub async fn run_all_feed<S, F, Fut>(factory: F)
where
    S: ConformanceTarget + EventFeed,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_list(FEED_PROPERTIES, |name| run_feed_case(name, &factory)).await;
}

/// Runs only the feed property called `name` against a store from `factory`.
///
/// # Panics
///
/// If the property fails or `name` is not in [`FEED_PROPERTIES`].
pub async fn run_one_feed<S, F, Fut>(name: &str, factory: F)
where
    S: ConformanceTarget + EventFeed,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_feed_case(name, &factory).await;
}

/// Runs every property in [`FENCE_PROPERTIES`] against fresh stores from `factory`, as
/// [`run_all`] does, for a store that implements [`FenceTarget`].
///
/// # Panics
///
/// If any property fails.
pub async fn run_all_fenced<S, F, Fut>(factory: F)
where
    S: FenceTarget,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_list(FENCE_PROPERTIES, |name| run_fence_case(name, &factory)).await;
}

/// Runs only the fence property called `name` against a store from `factory`.
///
/// # Panics
///
/// If the property fails or `name` is not in [`FENCE_PROPERTIES`].
pub async fn run_one_fenced<S, F, Fut>(name: &str, factory: F)
where
    S: FenceTarget,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_fence_case(name, &factory).await;
}

/// Runs `case` for each of `names`, then panics listing the ones that failed.
async fn run_list<'a, C, Fut>(names: &'a [&'a str], case: C)
where
    C: Fn(&'a str) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut failed = Vec::new();
    for &name in names {
        let outcome = AssertUnwindSafe(case(name)).catch_unwind().await;
        match outcome {
            Ok(()) => eprintln!("conformance: {name} ... ok"),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(non-string panic)");
                eprintln!("conformance: {name} ... FAILED: {message}");
                failed.push(name);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} conformance properties failed: {failed:?}",
        failed.len(),
        names.len()
    );
}

/// Runs only the property called `name` against a store from `factory`.
///
/// # Panics
///
/// If the property fails or `name` is not in [`PROPERTIES`].
pub async fn run_one<S, F, Fut>(name: &str, factory: F)
where
    S: ConformanceTarget,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_case(name, &factory).await;
}
