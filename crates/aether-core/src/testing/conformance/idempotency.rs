//! Idempotency: the event id is the deduplication key.

use super::ConformanceTarget;
use super::support::{actor, assert_history, event, save_versions};
use crate::{Event, SaveOutcome, StoreError};

/// Saving an event that is already stored (same id, actor and version) succeeds as a
/// duplicate and stores nothing, also after later events were stored.
pub async fn resaving_an_event_is_a_duplicate<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let first = event(&a, 1);
    assert_eq!(
        store.save_event(first.clone()).await.expect("save"),
        SaveOutcome::Saved
    );
    assert_eq!(
        store.save_event(first.clone()).await.expect("resave"),
        SaveOutcome::Duplicate
    );
    let later = save_versions(&store, &a, &[2, 3]).await;
    assert_eq!(
        store
            .save_event(first.clone())
            .await
            .expect("resave after later versions"),
        SaveOutcome::Duplicate
    );
    assert_history(&store, &a, &[vec![first], later].concat()).await;
}

/// An id already used by one event cannot name another: not at another version of the same
/// actor, not on another actor. The error names the event holding the id; nothing is written.
pub async fn reusing_an_id_for_another_event_is_rejected<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let b = actor("account-2");
    let original = event(&a, 1);
    store.save_event(original.clone()).await.expect("save");

    let same_actor_next_version = Event {
        version: 2,
        ..event(&a, 2)
    };
    let same_actor_next_version = Event {
        id: original.id.clone(),
        ..same_actor_next_version
    };
    let other_actor = Event {
        id: original.id.clone(),
        ..event(&b, 1)
    };
    for reuse in [same_actor_next_version, other_actor] {
        match store.save_event(reuse.clone()).await {
            Err(StoreError::EventIdReused {
                id,
                existing_actor,
                existing_version,
            }) => {
                assert_eq!(
                    (id, existing_actor, existing_version),
                    (original.id.clone(), a.clone(), 1)
                );
            }
            other => panic!(
                "reusing id {} for {} v{}: expected EventIdReused, got {other:?}",
                reuse.id, reuse.actor_id, reuse.version
            ),
        }
    }
    assert_history(&store, &a, std::slice::from_ref(&original)).await;
    assert_history(&store, &b, &[]).await;
}
