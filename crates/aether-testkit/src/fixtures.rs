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
    Event::builder(actor_id.clone(), "Deposited").version(version).data_object(data).build()
}
