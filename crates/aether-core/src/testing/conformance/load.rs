//! Loading an actor for activation: [`SnapshotStore::load`](crate::SnapshotStore::load), the
//! one read the actor runtime uses.

use serde_json::json;

use super::ConformanceTarget;
use super::support::{actor, save_versions, versions};
use crate::{ActorSnapshot, LoadedActor};

/// An unknown actor loads as nothing; an actor without a snapshot loads as its whole history.
pub async fn load_without_snapshot_is_the_whole_history<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    assert_eq!(
        store.load(&a).await.expect("load"),
        LoadedActor::default(),
        "an unknown actor loads as nothing"
    );
    let all = save_versions(&store, &a, &[1, 2, 4, 7]).await;
    let loaded = store.load(&a).await.expect("load");
    assert_eq!(loaded.snapshot, None);
    assert_eq!(loaded.events, all, "no snapshot: every event");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
}

/// With a snapshot: the snapshot and exactly the events after its version.
pub async fn load_is_snapshot_plus_tail<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let b = actor("account-2");
    save_versions(&store, &a, &[1, 2, 3]).await;
    save_versions(&store, &b, &[1, 2]).await;
    save_versions(&store, &a, &[5, 6]).await;
    let snapshot = ActorSnapshot::new(a.clone(), 5, json!({ "balance": 110 }));
    store
        .save_snapshot(snapshot.clone())
        .await
        .expect("snapshot");
    let tail = save_versions(&store, &a, &[8, 9, 10]).await;

    let loaded = store.load(&a).await.expect("load");
    assert_eq!(loaded.snapshot, Some(snapshot.clone()));
    assert_eq!(
        versions(&loaded.events),
        [6, 8, 9, 10],
        "the events after the snapshot's version, in order"
    );
    assert_eq!(&loaded.events[1..], &tail[..]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    // A snapshot at the head: nothing to replay.
    let at_head = ActorSnapshot::new(a.clone(), 10, json!({ "balance": 380 }));
    store
        .save_snapshot(at_head.clone())
        .await
        .expect("snapshot");
    let loaded = store.load(&a).await.expect("load");
    assert_eq!((loaded.snapshot, loaded.events), (Some(at_head), vec![]));
    assert_eq!(
        store.load(&b).await.expect("load").events.len(),
        2,
        "the other actor is untouched"
    );
}

/// Undecodable records after the snapshot are reported by `load`, never skipped silently;
/// those before it are covered by the snapshot and not reported.
pub async fn load_reports_undecodable_records<S: ConformanceTarget>(store: S) {
    let a = actor("ledger-1");
    let before = b"\x00before the snapshot".to_vec();
    let after = b"\x00after the snapshot".to_vec();
    save_versions(&store, &a, &[1]).await;
    store
        .write_raw_record(&a, before.clone())
        .await
        .expect("raw write");
    save_versions(&store, &a, &[2]).await;
    let no_snapshot = store.load(&a).await.expect("load");
    assert_eq!(versions(&no_snapshot.events), [1, 2]);
    assert_eq!(
        no_snapshot
            .errors
            .iter()
            .map(|e| e.raw.as_slice())
            .collect::<Vec<_>>(),
        [&before[..]],
        "without a snapshot the hole is reported"
    );

    store
        .save_snapshot(ActorSnapshot::new(a.clone(), 2, json!({ "balance": 30 })))
        .await
        .expect("snapshot");
    save_versions(&store, &a, &[3]).await;
    store
        .write_raw_record(&a, after.clone())
        .await
        .expect("raw write");
    save_versions(&store, &a, &[4]).await;

    let loaded = store.load(&a).await.expect("load");
    assert_eq!(loaded.snapshot.map(|s| s.version), Some(2));
    assert_eq!(versions(&loaded.events), [3, 4]);
    let raws: Vec<&[u8]> = loaded.errors.iter().map(|e| e.raw.as_slice()).collect();
    assert_eq!(raws, [&after[..]], "only the hole after the snapshot");
    assert!(!loaded.errors[0].error.is_empty(), "the error says why");
    // `load` agrees with `events_with_errors` from the version after the snapshot.
    let replay = store.events_with_errors(&a, 3).await.expect("replay");
    assert_eq!(replay.events, loaded.events);
    assert_eq!(replay.errors, loaded.errors);
}
