//! Capability 1: store events durably with conflict detection.

use super::ConformanceTarget;
use super::support::{actor, assert_conflict, assert_history, event, save_versions, versions};
use crate::{Event, SaveOutcome};

/// A saved event reads back field for field: id, type, actor, version, data, metadata,
/// timestamp and command id.
pub async fn save_then_read_back<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let first = Event::builder(a.clone(), "Opened")
        .version(1)
        .data(&serde_json::json!({ "owner": "ada", "limits": { "daily": 500 }, "tags": ["vip"] }))
        .expect("object")
        .correlation_id("corr-1")
        .user_id("ada")
        .metadata("custom", "value with spaces ✓")
        .command_id("cmd-1")
        .build();
    assert_eq!(
        store.save_event(first.clone()).await.expect("save"),
        SaveOutcome::Saved
    );
    let second = event(&a, 2);
    store.save_event(second.clone()).await.expect("save");
    assert_history(&store, &a, &[first, second]).await;
}

/// An actor without events has version 0 and an empty history.
pub async fn unknown_actor_is_empty<S: ConformanceTarget>(store: S) {
    let a = actor("nobody");
    assert_eq!(store.latest_version(&a).await.expect("latest"), 0);
    assert!(store.events(&a, 0).await.expect("events").is_empty());
    let replay = store
        .events_with_errors(&a, 0)
        .await
        .expect("events_with_errors");
    assert!(replay.events.is_empty() && replay.errors.is_empty());
}

/// A version not above the current one is a conflict carrying the current version, and
/// nothing is written; never a silent overwrite.
pub async fn version_must_exceed_current<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let stored = save_versions(&store, &a, &[1, 2, 3]).await;
    for attempted in [1, 2, 3] {
        assert_conflict(store.save_event(event(&a, attempted)).await, attempted, 3);
    }
    assert_history(&store, &a, &stored).await;
    store
        .save_event(event(&a, 4))
        .await
        .expect("version 4 is above 3");
}

/// With gaps (1, 3, 5) the latest version is the maximum, and filling a gap is a conflict.
pub async fn latest_version_with_gaps<S: ConformanceTarget>(store: S) {
    let a = actor("gappy");
    let stored = save_versions(&store, &a, &[1, 3, 5]).await;
    assert_eq!(store.latest_version(&a).await.expect("latest"), 5);
    assert_eq!(
        versions(&store.events(&a, 0).await.expect("events")),
        [1, 3, 5]
    );
    assert_conflict(store.save_event(event(&a, 4)).await, 4, 5);
    assert_history(&store, &a, &stored).await;
    save_versions(&store, &a, &[1_000_000]).await;
    assert_eq!(store.latest_version(&a).await.expect("latest"), 1_000_000);
}

/// Each actor has its own version sequence; actors with similar ids do not share one.
pub async fn actors_are_independent<S: ConformanceTarget>(store: S) {
    let ids = [
        "order.1",
        "order.10",
        "order-1",
        "order_1",
        "Order.1",
        "order.1.x",
    ];
    let mut expected = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let a = actor(id);
        let vs: Vec<u64> = (1..=(i as u64 + 1)).collect();
        expected.push((a.clone(), save_versions(&store, &a, &vs).await));
    }
    for (a, events) in &expected {
        assert_history(&store, a, events).await;
    }
}
