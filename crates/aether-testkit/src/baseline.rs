//! The baselines benchmarks measure the stores against: the simplest store one could write, a
//! `Mutex<HashMap<ActorId, Vec<Event>>>` with the version check and nothing else
//! ([`MutexHashMapStore`]), and the same plus the rest of the store contract
//! ([`MutexContractStore`]).

use std::collections::HashMap;
use std::sync::Mutex;

use aether_core::{ActorId, Event, EventId, EventLimits, InvalidEvent, Version};

/// A single global lock over every actor's events.
#[derive(Debug, Default)]
pub struct MutexHashMapStore {
    actors: Mutex<HashMap<ActorId, Vec<Event>>>,
}

impl MutexHashMapStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `event` if its version is above the actor's last one; otherwise returns the
    /// current version as the error.
    ///
    /// # Errors
    ///
    /// The current version, when `event.version` is not above it.
    pub fn save_event(&self, event: Event) -> Result<(), Version> {
        let mut actors = self
            .actors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let events = actors.entry(event.actor_id.clone()).or_default();
        let current = events.last().map_or(0, |e| e.version);
        if event.version <= current {
            return Err(current);
        }
        events.push(event);
        Ok(())
    }

    /// The actor's last version, 0 if unknown.
    pub fn latest_version(&self, actor_id: &ActorId) -> Version {
        let actors = self
            .actors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        actors
            .get(actor_id)
            .and_then(|e| e.last())
            .map_or(0, |e| e.version)
    }

    /// Copies of the actor's events with `version >= from`.
    pub fn events(&self, actor_id: &ActorId, from: Version) -> Vec<Event> {
        let actors = self
            .actors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        actors
            .get(actor_id)
            .map(|events| {
                let start = events.partition_point(|e| e.version < from);
                events[start..].to_vec()
            })
            .unwrap_or_default()
    }
}

/// The store contract done the simplest way: one global lock over the actors' events *and* an
/// event-id index, with the same input checks as every Aether store ([`EventLimits`]). It
/// separates what the contract costs (validation, deduplication) from what the
/// [`InMemoryEventStore`](aether_core::InMemoryEventStore)'s implementation costs.
#[derive(Debug, Default)]
pub struct MutexContractStore {
    limits: EventLimits,
    state: Mutex<ContractState>,
}

#[derive(Debug, Default)]
struct ContractState {
    actors: HashMap<ActorId, Vec<Event>>,
    ids: HashMap<EventId, (ActorId, Version)>,
}

/// Why [`MutexContractStore::save_event`] refused an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The input checks failed.
    Invalid(InvalidEvent),
    /// The version is not above the current one.
    Conflict(Version),
    /// The id names another event.
    IdReused,
}

impl MutexContractStore {
    /// An empty store with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates, deduplicates and appends `event`; `Ok(true)` if stored, `Ok(false)` if it was a
    /// duplicate.
    ///
    /// # Errors
    ///
    /// [`Refused`] with the reason.
    pub fn save_event(&self, event: Event) -> Result<bool, Refused> {
        self.limits.check_event(&event).map_err(Refused::Invalid)?;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ContractState { actors, ids } = &mut *state;
        let events = actors.entry(event.actor_id.clone()).or_default();
        let current = events.last().map_or(0, |e| e.version);
        let slot = (event.actor_id.clone(), event.version);
        match ids.get(&event.id) {
            Some(existing) if *existing == slot => return Ok(false),
            Some(_) => return Err(Refused::IdReused),
            None if event.version <= current => return Err(Refused::Conflict(current)),
            None => {}
        }
        ids.insert(event.id.clone(), slot);
        events.push(event);
        Ok(true)
    }
}
