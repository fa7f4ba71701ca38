//! Helpers shared by the conformance properties.

use serde_json::json;

use crate::{ActorId, Event, EventStore, StoreError, Version};

pub(super) fn actor(id: &str) -> ActorId {
    ActorId::new(id).expect("suite actor ids are valid")
}

/// A small event with a recognisable payload.
pub(super) fn event(actor_id: &ActorId, version: Version) -> Event {
    Event::builder(actor_id.clone(), "Deposited")
        .version(version)
        .data(&json!({ "amount": version * 10 }))
        .expect("an object")
        .build()
}

pub(super) fn versions(events: &[Event]) -> Vec<Version> {
    events.iter().map(|e| e.version).collect()
}

/// Saves events with the given versions, asserting each is stored.
pub(super) async fn save_versions<S: EventStore>(
    store: &S,
    actor_id: &ActorId,
    vs: &[Version],
) -> Vec<Event> {
    let mut saved = Vec::new();
    for &v in vs {
        let e = event(actor_id, v);
        store
            .save_event(e.clone())
            .await
            .unwrap_or_else(|err| panic!("saving version {v} of {actor_id} failed: {err}"));
        saved.push(e);
    }
    saved
}

/// Asserts the actor's stored history is exactly `expected`.
pub(super) async fn assert_history<S: EventStore>(
    store: &S,
    actor_id: &ActorId,
    expected: &[Event],
) {
    let stored = store.events(actor_id, 0).await.expect("events");
    assert_eq!(
        stored,
        expected,
        "stored history of {actor_id} differs: stored versions {:?}, expected {:?}",
        versions(&stored),
        versions(expected)
    );
    let latest = expected.last().map_or(0, |e| e.version);
    assert_eq!(
        store
            .latest_version(actor_id)
            .await
            .expect("latest_version"),
        latest
    );
}

#[track_caller]
pub(super) fn assert_conflict(
    result: Result<impl std::fmt::Debug, StoreError>,
    attempted: Version,
    current: Version,
) {
    match result {
        Err(StoreError::VersionConflict {
            attempted_version,
            current_version,
            ..
        }) => {
            assert_eq!(
                (attempted_version, current_version),
                (attempted, current),
                "conflict must carry (attempted, current)"
            );
        }
        other => panic!(
            "expected a version conflict (attempted {attempted}, current {current}), got {other:?}"
        ),
    }
}
