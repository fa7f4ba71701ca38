//! [`StoreMetrics`]: what every store reports through the `metrics` crate and `tracing`, so
//! that dashboards and traces read the same names whatever the engine.

use std::time::Instant;

use metrics::{Counter, Histogram, Unit};

use crate::{ActorId, SaveOutcome, SnapshotOutcome, StoreError, Version};

/// What a read was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadOp {
    /// [`events_with_errors`](crate::EventStore::events_with_errors) (and `events`).
    Replay,
    /// [`load`](crate::SnapshotStore::load): the latest snapshot and the events after it.
    Load,
    /// [`read_feed`](crate::EventFeed::read_feed).
    Feed,
}

impl ReadOp {
    /// The value of the `op` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Load => "load",
            Self::Feed => "feed",
        }
    }
}

struct ReadHandles {
    seconds: Histogram,
    events: Histogram,
    errors: Counter,
}

impl ReadHandles {
    fn new(labels: &[(&'static str, String)], op: ReadOp) -> Self {
        let mut labels = labels.to_vec();
        labels.push(("op", op.as_str().to_owned()));
        Self {
            seconds: metrics::histogram!("aether_store_read_seconds", &labels),
            events: metrics::histogram!("aether_store_read_events", &labels),
            errors: metrics::counter!("aether_store_read_errors_total", &labels),
        }
    }
}

/// The metrics of one store handle (one namespace of one engine), labelled
/// `store = <engine>` and `namespace` (empty for the in-memory store, which serves no single
/// namespace). Handles are registered once, when the store is opened, so that recording
/// allocates nothing; install your `metrics` recorder before opening stores.
///
/// The names, units and labels are listed in `docs/metrics.md`; [`describe`](Self::describe)
/// registers their descriptions and units with the recorder.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use aether_core::{SaveOutcome, StoreMetrics};
///
/// let metrics = StoreMetrics::new("my-engine", "orders");
/// let started = Instant::now();
/// metrics.saved(started, &Ok(SaveOutcome::Saved), 3); // three events of a batch
/// ```
pub struct StoreMetrics {
    store: &'static str,
    namespace: String,
    saved: Counter,
    duplicates: Counter,
    conflicts: Counter,
    fenced: Counter,
    invalid: Counter,
    failed: Counter,
    save_seconds: Histogram,
    replay: ReadHandles,
    load: ReadHandles,
    feed: ReadHandles,
    snapshots: Counter,
    snapshot_bytes: Histogram,
    fences: Counter,
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics")
            .field("store", &self.store)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl StoreMetrics {
    /// Registers the metrics of the engine called `store` (e.g. `"memory"`, `"jetstream"`)
    /// serving `namespace` (`""` for none).
    pub fn new(store: &'static str, namespace: &str) -> Self {
        let labels = [
            ("store", store.to_owned()),
            ("namespace", namespace.to_owned()),
        ];
        let kind = |kind: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("kind", kind.to_owned()));
            metrics::counter!("aether_store_save_errors_total", &labels)
        };
        Self {
            store,
            namespace: namespace.to_owned(),
            saved: metrics::counter!("aether_store_events_saved_total", &labels),
            duplicates: metrics::counter!("aether_store_duplicates_total", &labels),
            conflicts: metrics::counter!("aether_store_version_conflicts_total", &labels),
            fenced: metrics::counter!("aether_store_fenced_writes_total", &labels),
            invalid: kind("invalid"),
            failed: kind("infrastructure"),
            save_seconds: metrics::histogram!("aether_store_save_seconds", &labels),
            replay: ReadHandles::new(&labels, ReadOp::Replay),
            load: ReadHandles::new(&labels, ReadOp::Load),
            feed: ReadHandles::new(&labels, ReadOp::Feed),
            snapshots: metrics::counter!("aether_store_snapshots_saved_total", &labels),
            snapshot_bytes: metrics::histogram!("aether_store_snapshot_bytes", &labels),
            fences: metrics::counter!("aether_store_fences_total", &labels),
        }
    }

    /// Registers the description and unit of every store metric with the installed recorder.
    pub fn describe() {
        use metrics::{describe_counter, describe_histogram};
        describe_counter!(
            "aether_store_events_saved_total",
            Unit::Count,
            "Events stored (a batch counts each of its events)."
        );
        describe_counter!(
            "aether_store_duplicates_total",
            Unit::Count,
            "Saves that were already stored (a retry), so nothing was written."
        );
        describe_counter!(
            "aether_store_version_conflicts_total",
            Unit::Count,
            "Saves refused because the actor's version moved on."
        );
        describe_counter!(
            "aether_store_fenced_writes_total",
            Unit::Count,
            "Saves refused because a newer owner fenced the actor."
        );
        describe_counter!(
            "aether_store_save_errors_total",
            Unit::Count,
            "Saves that failed otherwise: kind=invalid (bad input) or kind=infrastructure."
        );
        describe_histogram!(
            "aether_store_save_seconds",
            Unit::Seconds,
            "Time to save an event or a batch, whatever the outcome."
        );
        describe_histogram!(
            "aether_store_read_seconds",
            Unit::Seconds,
            "Time of a read: op=replay, load (activation) or feed."
        );
        describe_histogram!(
            "aether_store_read_events",
            Unit::Count,
            "Events a successful read returned (for replay and load: the replay length)."
        );
        describe_counter!(
            "aether_store_read_errors_total",
            Unit::Count,
            "Reads that failed."
        );
        describe_counter!(
            "aether_store_snapshots_saved_total",
            Unit::Count,
            "Snapshots stored as an actor's latest."
        );
        describe_histogram!(
            "aether_store_snapshot_bytes",
            Unit::Bytes,
            "Size of the state of each snapshot stored."
        );
        describe_counter!(
            "aether_store_fences_total",
            Unit::Count,
            "Fences written: a new owner closing an actor's stream to older ones."
        );
    }

    /// The engine's name (the `store` label).
    pub fn store(&self) -> &'static str {
        self.store
    }

    /// The span of a save (`aether.store.save`, level debug), with the ids as fields.
    pub fn save_span(&self, actor_id: &ActorId, version: Version, events: usize) -> tracing::Span {
        tracing::debug_span!(
            "aether.store.save",
            store = self.store,
            namespace = %self.namespace,
            actor_id = %actor_id,
            version,
            events,
        )
    }

    /// The span of a read (`aether.store.read`, level debug), with the ids as fields.
    pub fn read_span(&self, op: ReadOp, actor_id: Option<&ActorId>) -> tracing::Span {
        tracing::debug_span!(
            "aether.store.read",
            store = self.store,
            namespace = %self.namespace,
            op = op.as_str(),
            actor_id = actor_id.map(tracing::field::display),
        )
    }

    /// Counts the outcome of a save of `events` events (1 for `save_event`) begun at
    /// `started`, and its time.
    pub fn saved(
        &self,
        started: Instant,
        outcome: &Result<SaveOutcome, StoreError>,
        events: usize,
    ) {
        self.save_seconds.record(started.elapsed().as_secs_f64());
        self.record(outcome, events);
    }

    /// Counts the outcome of a save of `events` events, without its time.
    pub fn record(&self, outcome: &Result<SaveOutcome, StoreError>, events: usize) {
        match outcome {
            Ok(SaveOutcome::Saved) => self.saved.increment(events as u64),
            Ok(SaveOutcome::Duplicate) => self.duplicates.increment(1),
            Err(StoreError::VersionConflict { .. }) => self.conflicts.increment(1),
            Err(StoreError::Fenced { .. }) => self.fenced.increment(1),
            Err(e) if e.kind() == crate::ErrorKind::Infrastructure => self.failed.increment(1),
            Err(_) => self.invalid.increment(1),
        }
    }

    /// Counts a read begun at `started` that returned `events` events, or failed.
    pub fn read<T>(
        &self,
        op: ReadOp,
        started: Instant,
        result: &Result<T, StoreError>,
        events: impl FnOnce(&T) -> usize,
    ) {
        let handles = match op {
            ReadOp::Replay => &self.replay,
            ReadOp::Load => &self.load,
            ReadOp::Feed => &self.feed,
        };
        handles.seconds.record(started.elapsed().as_secs_f64());
        match result {
            Ok(value) => handles.events.record(events(value) as f64),
            Err(_) => handles.errors.increment(1),
        }
    }

    /// Counts a snapshot save of `bytes` bytes of state.
    pub fn snapshot_saved(&self, outcome: &Result<SnapshotOutcome, StoreError>, bytes: usize) {
        if let Ok(SnapshotOutcome::Saved) = outcome {
            self.snapshots.increment(1);
            self.snapshot_bytes.record(bytes as f64);
        }
    }

    /// Counts a fence written.
    pub fn fenced_actor<T>(&self, outcome: &Result<T, StoreError>) {
        if outcome.is_ok() {
            self.fences.increment(1);
        }
    }
}
