//! [`InMemoryEventStore`]: the complete store contract in process memory, for tests, examples
//! and single-process services that do not need durability.
//!
//! Layout, chosen so that saves and reads of different actors never wait for each other:
//!
//! ```text
//! actors:    sharded map  ActorId -> RwLock<ActorLog>   (one lock per actor)
//! event_ids: sharded map  EventId -> (ActorId, Version)  (the deduplication index)
//! snapshots: sharded map  ActorId -> ActorSnapshot
//! ```
//!
//! A save holds its actor's write lock while it checks the version and claims the event ids, so
//! the version check and the append are one atomic step. Locks are always taken in the order
//! actor shard → actor log → id shard, and never the other way round, so there is no deadlock.

mod actor_log;

use std::sync::{Arc, PoisonError, RwLock};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use foldhash::fast::RandomState;

use super::{
    EventLimits, EventStore, InvalidSnapshot, ReplayResult, SaveOutcome, SnapshotOutcome,
    SnapshotStore, StoreError,
};
use crate::{ActorId, ActorSnapshot, Event, EventId, Version};
use actor_log::ActorLog;

/// Enough shards that two threads rarely meet on one, few enough to stay small.
const SHARDS: usize = 64;

/// An [`EventStore`] and [`SnapshotStore`] in memory.
///
/// Thread-safe and cheap to clone (clones share the same data). There is no global lock: each
/// actor has its own, and the maps of actors and event ids are sharded.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventStore, InMemoryEventStore};
///
/// # futures::executor::block_on(async {
/// let store = InMemoryEventStore::new();
/// let order = ActorId::new("order-17")?;
/// for (version, kind) in [(1, "Placed"), (2, "Paid"), (5, "Shipped")] {
///     store.save_event(Event::new(order.clone(), kind, version)).await?;
/// }
/// assert_eq!(store.latest_version(&order).await?, 5); // gaps are allowed
/// let tail = store.events(&order, 2).await?;
/// assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct InMemoryEventStore {
    inner: Arc<Inner>,
}

struct Inner {
    limits: EventLimits,
    actors: DashMap<ActorId, RwLock<ActorLog>, RandomState>,
    event_ids: DashMap<EventId, Slot, RandomState>,
    snapshots: DashMap<ActorId, ActorSnapshot, RandomState>,
}

/// Where an event id is stored.
#[derive(Clone, PartialEq, Eq)]
struct Slot {
    actor_id: ActorId,
    version: Version,
}

impl Slot {
    fn of(event: &Event) -> Self {
        Self {
            actor_id: event.actor_id.clone(),
            version: event.version,
        }
    }

    fn reused_by(&self, id: &EventId) -> StoreError {
        StoreError::EventIdReused {
            id: id.clone(),
            existing_actor: self.actor_id.clone(),
            existing_version: self.version,
        }
    }
}

impl Default for Inner {
    fn default() -> Self {
        Self::new(EventLimits::default())
    }
}

impl Inner {
    fn new(limits: EventLimits) -> Self {
        Self {
            limits,
            actors: sharded(),
            event_ids: sharded(),
            snapshots: sharded(),
        }
    }
}

impl std::fmt::Debug for InMemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryEventStore")
            .field("actors", &self.inner.actors.len())
            .field("events", &self.inner.event_ids.len())
            .field("limits", &self.inner.limits)
            .finish()
    }
}

impl InMemoryEventStore {
    /// An empty store with the default [`EventLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that enforces `limits`.
    pub fn with_limits(limits: EventLimits) -> Self {
        Self {
            inner: Arc::new(Inner::new(limits)),
        }
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> EventLimits {
        self.inner.limits
    }

    /// Runs `f` on the actor's log under its write lock, creating the log if needed.
    fn with_log_mut<R>(&self, actor_id: &ActorId, f: impl FnOnce(&mut ActorLog) -> R) -> R {
        // Fast path: the actor exists; only a shared lock on its shard is taken.
        if let Some(log) = self.inner.actors.get(actor_id) {
            return f(&mut log.write().unwrap_or_else(PoisonError::into_inner));
        }
        let log = self
            .inner
            .actors
            .entry(actor_id.clone())
            .or_default()
            .downgrade();
        f(&mut log.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` on the actor's log under its read lock; `None` for an unknown actor.
    fn with_log<R>(&self, actor_id: &ActorId, f: impl FnOnce(&ActorLog) -> R) -> Option<R> {
        let log = self.inner.actors.get(actor_id)?;
        Some(f(&log.read().unwrap_or_else(PoisonError::into_inner)))
    }

    fn save_one(&self, event: Event) -> Result<SaveOutcome, StoreError> {
        self.inner.limits.check_event(&event)?;
        self.with_log_mut(&event.actor_id.clone(), |log| {
            let current = log.latest_version();
            if event.version <= current {
                return match self.inner.event_ids.get(&event.id) {
                    Some(slot) if *slot == Slot::of(&event) => Ok(SaveOutcome::Duplicate),
                    Some(slot) => Err(slot.reused_by(&event.id)),
                    None => Err(conflict(&event, current)),
                };
            }
            match self.inner.event_ids.entry(event.id.clone()) {
                // The slot (actor, version) is free, so an existing id names another event.
                Entry::Occupied(slot) => return Err(slot.get().reused_by(&event.id)),
                Entry::Vacant(free) => {
                    free.insert(Slot::of(&event));
                }
            }
            log.append(event);
            Ok(SaveOutcome::Saved)
        })
    }

    fn save_batch(&self, events: Vec<Event>) -> Result<SaveOutcome, StoreError> {
        self.inner.limits.check_batch(&events)?;
        let actor_id = events[0].actor_id.clone();
        self.with_log_mut(&actor_id, |log| {
            let current = log.latest_version();
            if events[0].version <= current {
                return match self.stale_batch_error(&events, current) {
                    Some(err) => Err(err),
                    None => Ok(SaveOutcome::Duplicate),
                };
            }
            for (claimed, event) in events.iter().enumerate() {
                match self.inner.event_ids.entry(event.id.clone()) {
                    Entry::Occupied(slot) => {
                        let err = slot.get().reused_by(&event.id);
                        drop(slot);
                        // All or nothing: release the ids this batch already claimed.
                        for earlier in &events[..claimed] {
                            self.inner.event_ids.remove(&earlier.id);
                        }
                        return Err(err);
                    }
                    Entry::Vacant(free) => {
                        free.insert(Slot::of(event));
                    }
                }
            }
            for event in events {
                log.append(event);
            }
            Ok(SaveOutcome::Saved)
        })
    }

    /// For a batch whose first version is not above `current`: the error to report, or `None`
    /// if the whole batch is already stored exactly (a duplicate).
    fn stale_batch_error(&self, events: &[Event], current: Version) -> Option<StoreError> {
        let mut all_stored = true;
        for event in events {
            match self.inner.event_ids.get(&event.id) {
                Some(slot) if *slot == Slot::of(event) => {}
                Some(slot) => return Some(slot.reused_by(&event.id)),
                None => all_stored = false,
            }
        }
        (!all_stored).then(|| conflict(&events[0], current))
    }

    /// Records `raw` on the actor's log as a foreign client could write it.
    ///
    /// If `raw` decodes as an event of this actor it is saved through the normal path (version
    /// check included); otherwise it is kept as an undecodable record that
    /// [`EventStore::events_with_errors`] reports and [`EventStore::events`] skips. The
    /// conformance suite uses this to check how stores treat corrupt data.
    ///
    /// # Errors
    ///
    /// Those of [`EventStore::save_event`] when `raw` is a valid event.
    #[cfg(feature = "testing")]
    pub fn write_raw_record(&self, actor_id: &ActorId, raw: Vec<u8>) -> Result<(), StoreError> {
        match serde_json::from_slice::<Event>(&raw) {
            Ok(event) if event.actor_id == *actor_id => self.save_one(event).map(drop),
            Ok(event) => Err(StoreError::Backend {
                message: format!(
                    "record for actor {} written to the log of {actor_id}",
                    event.actor_id
                ),
                source: None,
            }),
            Err(error) => {
                self.with_log_mut(actor_id, |log| {
                    log.append_undecodable(raw, error.to_string())
                });
                Ok(())
            }
        }
    }
}

fn sharded<K: Eq + std::hash::Hash, V>() -> DashMap<K, V, RandomState> {
    DashMap::with_hasher_and_shard_amount(RandomState::default(), SHARDS)
}

fn conflict(event: &Event, current: Version) -> StoreError {
    metrics::counter!("aether_store_version_conflicts_total", "store" => "memory").increment(1);
    tracing::debug!(actor = %event.actor_id, attempted = event.version, current, "version conflict");
    StoreError::VersionConflict {
        actor_id: event.actor_id.clone(),
        attempted_version: event.version,
        current_version: current,
    }
}

fn count_saved(outcome: &Result<SaveOutcome, StoreError>, events: usize) {
    match outcome {
        Ok(SaveOutcome::Saved) => {
            metrics::counter!("aether_store_events_saved_total", "store" => "memory")
                .increment(events as u64);
        }
        Ok(SaveOutcome::Duplicate) => {
            metrics::counter!("aether_store_duplicates_total", "store" => "memory").increment(1);
        }
        Err(_) => {}
    }
}

impl EventStore for InMemoryEventStore {
    async fn save_event(&self, event: Event) -> Result<SaveOutcome, StoreError> {
        let _span =
            tracing::trace_span!("save_event", actor = %event.actor_id, version = event.version)
                .entered();
        let outcome = self.save_one(event);
        count_saved(&outcome, 1);
        outcome
    }

    async fn save_events(&self, events: Vec<Event>) -> Result<SaveOutcome, StoreError> {
        let _span = tracing::trace_span!("save_events", len = events.len()).entered();
        let len = events.len();
        let outcome = self.save_batch(events);
        count_saved(&outcome, len);
        outcome
    }

    async fn latest_version(&self, actor_id: &ActorId) -> Result<Version, StoreError> {
        Ok(self
            .with_log(actor_id, ActorLog::latest_version)
            .unwrap_or(0))
    }

    async fn events(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> Result<Vec<Event>, StoreError> {
        let _span = tracing::trace_span!("events", actor = %actor_id, from_version).entered();
        Ok(self
            .with_log(actor_id, |log| log.events_from(from_version).to_vec())
            .unwrap_or_default())
    }

    async fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> Result<ReplayResult, StoreError> {
        let _span =
            tracing::trace_span!("events_with_errors", actor = %actor_id, from_version).entered();
        Ok(self
            .with_log(actor_id, |log| log.replay_from(from_version))
            .unwrap_or_default())
    }
}

impl SnapshotStore for InMemoryEventStore {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> Result<SnapshotOutcome, StoreError> {
        self.inner.limits.check_snapshot(&snapshot)?;
        let latest = self
            .with_log(&snapshot.actor_id, ActorLog::latest_version)
            .unwrap_or(0);
        if snapshot.version > latest {
            return Err(InvalidSnapshot::AheadOfEvents {
                actor_id: snapshot.actor_id,
                version: snapshot.version,
                latest,
            }
            .into());
        }
        match self.inner.snapshots.entry(snapshot.actor_id.clone()) {
            Entry::Occupied(stored) if stored.get().version > snapshot.version => {
                Ok(SnapshotOutcome::KeptNewer {
                    stored_version: stored.get().version,
                })
            }
            Entry::Occupied(mut stored) => {
                stored.insert(snapshot);
                Ok(SnapshotOutcome::Saved)
            }
            Entry::Vacant(free) => {
                free.insert(snapshot);
                Ok(SnapshotOutcome::Saved)
            }
        }
    }

    async fn latest_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        Ok(self.inner.snapshots.get(actor_id).map(|s| s.clone()))
    }
}
