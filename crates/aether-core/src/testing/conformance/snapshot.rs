//! Snapshots: optional, stored apart from events, never the source of truth.

use serde_json::json;

use super::ConformanceTarget;
use super::replay::{balance, load_with_snapshot};
use super::support::{actor, save_versions};
use crate::{ActorSnapshot, InvalidSnapshot, SnapshotOutcome, StoreError};

/// A saved snapshot is returned as the latest; an actor without one has none.
pub async fn snapshot_round_trip<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    assert_eq!(store.latest_snapshot(&a).await.expect("latest"), None);
    save_versions(&store, &a, &[1, 2]).await;
    let snapshot = ActorSnapshot::new(a.clone(), 2, json!({ "balance": 30, "owner": "ada" }));
    assert_eq!(
        store.save_snapshot(snapshot.clone()).await.expect("save"),
        SnapshotOutcome::Saved
    );
    assert_eq!(
        store.latest_snapshot(&a).await.expect("latest"),
        Some(snapshot)
    );
    assert_eq!(
        store
            .latest_snapshot(&actor("account-2"))
            .await
            .expect("latest"),
        None
    );
}

/// An older snapshot never replaces a newer one.
pub async fn older_snapshot_never_replaces_newer<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    save_versions(&store, &a, &[1, 2, 3]).await;
    let newer = ActorSnapshot::new(a.clone(), 3, json!({ "balance": 60 }));
    store.save_snapshot(newer.clone()).await.expect("save");
    let older = ActorSnapshot::new(a.clone(), 2, json!({ "balance": 30 }));
    assert_eq!(
        store.save_snapshot(older).await.expect("save older"),
        SnapshotOutcome::KeptNewer { stored_version: 3 }
    );
    assert_eq!(
        store.latest_snapshot(&a).await.expect("latest"),
        Some(newer)
    );
}

/// A snapshot cannot claim to cover events that are not stored.
pub async fn snapshot_ahead_of_events_is_rejected<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    save_versions(&store, &a, &[1, 2]).await;
    let ahead = ActorSnapshot::new(a.clone(), 3, json!({}));
    match store.save_snapshot(ahead).await {
        Err(StoreError::InvalidSnapshot(InvalidSnapshot::AheadOfEvents {
            version: 3,
            latest: 2,
            ..
        })) => {}
        other => panic!("expected AheadOfEvents {{ version: 3, latest: 2 }}, got {other:?}"),
    }
    assert_eq!(store.latest_snapshot(&a).await.expect("latest"), None);
}

/// Snapshot plus the tail after it gives the same state as a full replay, and the tail after the
/// snapshot is exactly the newer events.
pub async fn snapshot_plus_tail_equals_full_replay<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    save_versions(&store, &a, &(1..=100).collect::<Vec<_>>()).await;
    let full = store.events(&a, 0).await.expect("events");
    let at_95 = balance(&full[..95]);
    store
        .save_snapshot(ActorSnapshot::new(
            a.clone(),
            95,
            json!({ "balance": at_95 }),
        ))
        .await
        .expect("snapshot");
    let (state, replayed) = load_with_snapshot(&store, &a).await;
    assert_eq!(
        state,
        balance(&full),
        "snapshot + tail must equal full replay"
    );
    assert_eq!(
        replayed, 5,
        "the tail after the snapshot is exactly the 5 newer events"
    );
}
