//! Atomic batches: several events of one actor, all stored or none.

use super::ConformanceTarget;
use super::support::{actor, assert_conflict, assert_history, event, save_versions};
use crate::{Event, SaveOutcome, StoreError};

/// A valid batch (gaps allowed) is stored whole, in order.
pub async fn batch_is_stored_whole<S: ConformanceTarget>(store: S) {
    let a = actor("cart-1");
    let head = save_versions(&store, &a, &[1]).await;
    let batch: Vec<Event> = [2, 3, 7].iter().map(|&v| event(&a, v)).collect();
    assert_eq!(
        store.save_events(batch.clone()).await.expect("batch"),
        SaveOutcome::Saved
    );
    assert_history(&store, &a, &[head, batch].concat()).await;
}

/// A batch whose first version is not above the current one is a conflict and writes none of
/// its events.
pub async fn batch_conflict_writes_nothing<S: ConformanceTarget>(store: S) {
    let a = actor("cart-1");
    let stored = save_versions(&store, &a, &[1, 2]).await;
    let batch: Vec<Event> = [2, 3, 4].iter().map(|&v| event(&a, v)).collect();
    assert_conflict(store.save_events(batch).await, 2, 2);
    assert_history(&store, &a, &stored).await;
}

/// A batch with one id already used elsewhere writes nothing, and leaves the batch's other ids
/// free for later use.
pub async fn batch_with_a_reused_id_writes_nothing<S: ConformanceTarget>(store: S) {
    let a = actor("cart-1");
    let b = actor("cart-2");
    let taken = save_versions(&store, &b, &[1]).await;
    let mut batch: Vec<Event> = [1, 2, 3].iter().map(|&v| event(&a, v)).collect();
    batch[2].id = taken[0].id.clone();
    let result = store.save_events(batch.clone()).await;
    assert!(
        matches!(result, Err(StoreError::EventIdReused { .. })),
        "expected EventIdReused, got {result:?}"
    );
    assert_history(&store, &a, &[]).await;
    // The ids of the rejected batch were not claimed.
    let retry = vec![batch[0].clone(), batch[1].clone()];
    assert_eq!(
        store.save_events(retry.clone()).await.expect("retry"),
        SaveOutcome::Saved
    );
    assert_history(&store, &a, &retry).await;
}

/// Saving a batch that is already stored exactly is a duplicate; a batch that only partly
/// overlaps stored events is a conflict.
pub async fn resaving_a_batch_is_a_duplicate<S: ConformanceTarget>(store: S) {
    let a = actor("cart-1");
    let batch: Vec<Event> = [1, 2, 3].iter().map(|&v| event(&a, v)).collect();
    store.save_events(batch.clone()).await.expect("batch");
    assert_eq!(
        store.save_events(batch.clone()).await.expect("resave"),
        SaveOutcome::Duplicate
    );
    let overlapping = vec![batch[2].clone(), event(&a, 4)];
    assert_conflict(store.save_events(overlapping).await, 3, 3);
    assert_history(&store, &a, &batch).await;
}
