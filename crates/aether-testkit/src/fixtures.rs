//! Small, realistic events for tests and benchmarks.

use aether_core::{ActorId, Event, Version};

/// The actor id `"{prefix}-{n}"`.
///
/// # Panics
///
/// If `prefix` makes an invalid actor id (fixtures are for tests).
pub fn actor(prefix: &str, n: usize) -> ActorId {
    ActorId::new(format!("{prefix}-{n}")).expect("fixture actor ids are valid")
}

/// A small event (~200 bytes of JSON): type `Deposited`, data `{"amount": version}`.
pub fn small_event(actor_id: &ActorId, version: Version) -> Event {
    let mut data = serde_json::Map::new();
    data.insert("amount".into(), version.into());
    Event::builder(actor_id.clone(), "Deposited")
        .version(version)
        .data_object(data)
        .build()
}

/// The actor ids `"{prefix}-0"` … `"{prefix}-{count - 1}"`.
///
/// # Panics
///
/// If `prefix` makes an invalid actor id.
pub fn actors(prefix: &str, count: usize) -> Vec<ActorId> {
    (0..count).map(|n| actor(prefix, n)).collect()
}

/// [`small_event`]s of versions `1..=len` for one actor, in version order.
pub fn history(actor_id: &ActorId, len: usize) -> Vec<Event> {
    (1..=len as Version)
        .map(|version| small_event(actor_id, version))
        .collect()
}

/// [`small_event`]s of versions `1..=versions` for every actor, interleaved as concurrent
/// traffic arrives: version 1 of every actor, then version 2 of every actor, and so on.
pub fn interleaved(actors: &[ActorId], versions: Version) -> Vec<Event> {
    (1..=versions)
        .flat_map(|version| {
            actors
                .iter()
                .map(move |actor_id| small_event(actor_id, version))
        })
        .collect()
}
