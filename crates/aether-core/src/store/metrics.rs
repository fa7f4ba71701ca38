//! [`StoreMetrics`]: the counters every store reports through the `metrics` crate, so that
//! dashboards read the same names whatever the engine.

use crate::{SaveOutcome, StoreError};

/// The save counters of one store, labelled `store = <engine>`:
/// `aether_store_events_saved_total`, `aether_store_duplicates_total`,
/// `aether_store_version_conflicts_total` and `aether_store_fenced_writes_total` (writes
/// refused because a newer owner fenced the actor). Handles are registered once, not looked up per save.
///
/// # Examples
///
/// ```
/// use aether_core::{SaveOutcome, StoreMetrics};
///
/// let metrics = StoreMetrics::new("my-engine");
/// metrics.record(&Ok(SaveOutcome::Saved), 3); // three events of a batch
/// ```
#[derive(Debug)]
pub struct StoreMetrics {
    saved: metrics::Counter,
    duplicates: metrics::Counter,
    conflicts: metrics::Counter,
    fenced: metrics::Counter,
}

impl StoreMetrics {
    /// Registers the counters for the engine called `store` (e.g. `"memory"`, `"jetstream"`).
    pub fn new(store: &'static str) -> Self {
        Self {
            saved: metrics::counter!("aether_store_events_saved_total", "store" => store),
            duplicates: metrics::counter!("aether_store_duplicates_total", "store" => store),
            conflicts: metrics::counter!("aether_store_version_conflicts_total", "store" => store),
            fenced: metrics::counter!("aether_store_fenced_writes_total", "store" => store),
        }
    }

    /// Counts the outcome of a save of `events` events (1 for `save_event`).
    pub fn record(&self, outcome: &Result<SaveOutcome, StoreError>, events: usize) {
        match outcome {
            Ok(SaveOutcome::Saved) => self.saved.increment(events as u64),
            Ok(SaveOutcome::Duplicate) => self.duplicates.increment(1),
            Err(StoreError::VersionConflict { .. }) => self.conflicts.increment(1),
            Err(StoreError::Fenced { .. }) => self.fenced.increment(1),
            Err(_) => {}
        }
    }
}
