//! The baseline benchmarks measure the stores against: the simplest correct store one could write,
//! a `Mutex<HashMap<ActorId, Vec<Event>>>` with the version check and nothing else.

use std::collections::HashMap;
use std::sync::Mutex;

use aether_core::{ActorId, Event, Version};

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
