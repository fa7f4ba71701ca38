//! Fences ([`FencedEventStore`]): writes stamped with the writer's ownership epoch, and fence
//! records that keep every older owner out of an actor's stream, invisible to every read. For
//! stores that implement [`FencedEventStore`] and [`EventFeed`]; run with
//! [`run_all_fenced`](super::run_all_fenced) or
//! [`fence_conformance_tests!`](crate::fence_conformance_tests).

use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::Barrier;

use super::FenceTarget;
use super::concurrency::require_parallel_runtime;
use super::support::{actor, assert_history, event, save_versions, versions};
use crate::{
    ActorId, ActorSnapshot, Event, FeedPosition, InvalidEvent, OwnerEpoch, SaveOutcome, StoreError,
    Version,
};

fn epoch(n: u64) -> OwnerEpoch {
    OwnerEpoch::new(n)
}

#[track_caller]
fn assert_fenced(
    result: Result<impl std::fmt::Debug, StoreError>,
    actor_id: &ActorId,
    epoch: OwnerEpoch,
    fenced_by: OwnerEpoch,
) {
    match result {
        Err(StoreError::Fenced {
            actor_id: a,
            epoch: e,
            fenced_by: f,
        }) => assert_eq!(
            (&a, e, f),
            (actor_id, epoch, fenced_by),
            "Fenced must carry (actor, writer's epoch, head's epoch)"
        ),
        other => panic!(
            "expected Fenced (actor {actor_id}, epoch {epoch}, fenced by {fenced_by}), got {other:?}"
        ),
    }
}

async fn save_as<S: FenceTarget>(store: &S, events: &[Event], at: OwnerEpoch) -> SaveOutcome {
    store
        .save_events_as(events.to_vec(), at)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "saving versions {:?} at epoch {at} failed: {e}",
                versions(events)
            )
        })
}

async fn fence<S: FenceTarget>(store: &S, actor_id: &ActorId, at: OwnerEpoch) -> Version {
    store
        .fence(actor_id, at)
        .await
        .unwrap_or_else(|e| panic!("fencing {actor_id} at epoch {at} failed: {e}"))
}

async fn latest_epoch<S: FenceTarget>(store: &S, actor_id: &ActorId) -> OwnerEpoch {
    store.latest_epoch(actor_id).await.expect("latest_epoch")
}

/// After a fence at epoch 2, a write (single or batch) at epoch 1 fails with `Fenced` and
/// stores nothing; the fence reports the version it was written at.
pub async fn stale_epoch_write_after_a_fence_is_fenced<S: FenceTarget>(store: S) {
    let a = actor("fence-stale");
    assert_eq!(latest_epoch(&store, &a).await, OwnerEpoch::UNOWNED);
    let v1 = event(&a, 1);
    assert_eq!(
        save_as(&store, std::slice::from_ref(&v1), epoch(1)).await,
        SaveOutcome::Saved
    );
    assert_eq!(latest_epoch(&store, &a).await, epoch(1));
    assert_eq!(
        fence(&store, &a, epoch(2)).await,
        1,
        "the fence is at version 1"
    );
    assert_eq!(latest_epoch(&store, &a).await, epoch(2));
    assert_fenced(
        store.save_events_as(vec![event(&a, 2)], epoch(1)).await,
        &a,
        epoch(1),
        epoch(2),
    );
    assert_fenced(
        store
            .save_events_as(vec![event(&a, 2), event(&a, 3)], epoch(1))
            .await,
        &a,
        epoch(1),
        epoch(2),
    );
    assert_history(&store, &a, &[v1]).await;
    assert_eq!(latest_epoch(&store, &a).await, epoch(2));
}

/// Writes at the fence's epoch or above land (single and batch); a write then fails below the
/// highest epoch written.
pub async fn equal_and_higher_epoch_writes_land_after_a_fence<S: FenceTarget>(store: S) {
    let a = actor("fence-owner");
    assert_eq!(fence(&store, &a, epoch(2)).await, 0, "a fence on no events");
    assert_eq!(store.latest_version(&a).await.expect("latest"), 0);
    let mut history = vec![event(&a, 1)];
    save_as(&store, &history, epoch(2)).await;
    let batch = vec![event(&a, 2), event(&a, 3)];
    assert_eq!(save_as(&store, &batch, epoch(2)).await, SaveOutcome::Saved);
    history.extend(batch);
    let v4 = event(&a, 4);
    save_as(&store, std::slice::from_ref(&v4), epoch(3)).await;
    history.push(v4);
    assert_eq!(latest_epoch(&store, &a).await, epoch(3));
    assert_fenced(
        store.save_events_as(vec![event(&a, 5)], epoch(2)).await,
        &a,
        epoch(2),
        epoch(3),
    );
    // A fence at the head's own epoch writes nothing and reports the version.
    assert_eq!(fence(&store, &a, epoch(3)).await, 4);
    let v5 = event(&a, 5);
    save_as(&store, std::slice::from_ref(&v5), epoch(3)).await;
    history.push(v5);
    assert_history(&store, &a, &history).await;
    // The usual rules still hold at the owner's epoch.
    let stale = store.save_events_as(vec![event(&a, 5)], epoch(3)).await;
    assert!(
        matches!(
            stale,
            Err(StoreError::VersionConflict {
                current_version: 5,
                ..
            })
        ),
        "a version at or below the head is a conflict, whatever the epoch: {stale:?}"
    );
    let again = store
        .save_events_as(vec![history[4].clone()], epoch(3))
        .await;
    assert!(
        matches!(again, Ok(SaveOutcome::Duplicate)),
        "resaving a stored event at the owner's epoch is a duplicate: {again:?}"
    );
}

/// A fence is no event: `events`, `events_with_errors`, `load` and snapshots ignore it, and
/// `latest_version` is the version of the last event before it.
pub async fn fences_are_invisible_to_reads<S: FenceTarget>(store: S) {
    let a = actor("fence-invisible");
    let mut history = save_versions(&store, &a, &[1, 2]).await;
    assert_eq!(fence(&store, &a, epoch(1)).await, 2);
    assert_eq!(fence(&store, &a, epoch(2)).await, 2, "a fence on a fence");
    let check = |history: Vec<Event>| {
        let store = &store;
        let a = a.clone();
        async move {
            assert_history(store, &a, &history).await;
            let replay = store.events_with_errors(&a, 0).await.expect("replay");
            assert_eq!(
                replay.events, history,
                "events_with_errors holds the events"
            );
            assert!(
                replay.errors.is_empty(),
                "a fence is no error: {:?}",
                replay.errors
            );
            let last = history.last().map_or(0, |e| e.version);
            let tail = store.events(&a, last).await.expect("tail");
            assert_eq!(versions(&tail), [last], "events from the last version");
            let loaded = store.load(&a).await.expect("load");
            assert!(
                loaded.errors.is_empty(),
                "load reports no fence: {:?}",
                loaded.errors
            );
            let mut rebuilt = loaded.events;
            if let Some(s) = &loaded.snapshot {
                rebuilt.retain(|e| e.version > s.version);
                assert!(history.iter().any(|e| e.version == s.version));
            }
            let expected: Vec<Event> = history
                .iter()
                .filter(|e| {
                    loaded
                        .snapshot
                        .as_ref()
                        .is_none_or(|s| e.version > s.version)
                })
                .cloned()
                .collect();
            assert_eq!(rebuilt, expected, "load: the events after the snapshot");
        }
    };
    check(history.clone()).await;
    let v3 = event(&a, 3);
    save_as(&store, std::slice::from_ref(&v3), epoch(2)).await;
    history.push(v3);
    assert_eq!(fence(&store, &a, epoch(3)).await, 3);
    check(history.clone()).await;
    // A snapshot at the head (under a fence), then one more event and a fence on top.
    let snapshot = ActorSnapshot::new(a.clone(), 3, serde_json::json!({ "balance": 60 }));
    store
        .save_snapshot(snapshot.clone())
        .await
        .expect("a snapshot at the version under a fence");
    let loaded = store.load(&a).await.expect("load");
    assert_eq!(loaded.snapshot, Some(snapshot));
    assert!(
        loaded.events.is_empty() && loaded.errors.is_empty(),
        "{loaded:?}"
    );
    let v4 = event(&a, 4);
    save_as(&store, std::slice::from_ref(&v4), epoch(3)).await;
    history.push(v4);
    fence(&store, &a, epoch(4)).await;
    check(history).await;
}

/// The feed skips fences: reading it page by page (one record a page) returns every event
/// exactly once, no fence, no error, and a reader stops only at the end.
pub async fn fences_are_invisible_to_the_feed<S: FenceTarget>(store: S) {
    let a = actor("fence-feed");
    let one = NonZeroUsize::new(1).expect("one");
    let start = store
        .read_feed(FeedPosition::START, NonZeroUsize::new(1000).expect("1000"))
        .await
        .expect("read_feed")
        .next;
    let v1 = save_versions(&store, &a, &[1]).await;
    fence(&store, &a, epoch(1)).await;
    fence(&store, &a, epoch(2)).await;
    let v2 = event(&a, 2);
    save_as(&store, std::slice::from_ref(&v2), epoch(2)).await;
    fence(&store, &a, epoch(3)).await;
    let mut seen = Vec::new();
    let mut checkpoint = start;
    loop {
        let page = store.read_feed(checkpoint, one).await.expect("read_feed");
        assert!(
            page.errors.is_empty(),
            "a fence is no error: {:?}",
            page.errors
        );
        assert!(page.next >= checkpoint, "the checkpoint never moves back");
        if page.is_empty() {
            break;
        }
        seen.extend(page.events.into_iter().map(|e| e.event));
        checkpoint = page.next;
    }
    assert_eq!(seen, [v1[0].clone(), v2], "every event once, no fence");
    // At the end, a page over fences only is empty; the events after it come next.
    fence(&store, &a, epoch(4)).await;
    let page = store.read_feed(checkpoint, one).await.expect("read_feed");
    assert!(
        page.is_empty(),
        "only fences after the checkpoint: {page:?}"
    );
    let v3 = event(&a, 3);
    save_as(&store, std::slice::from_ref(&v3), epoch(4)).await;
    let page = store.read_feed(page.next, one).await.expect("read_feed");
    assert_eq!(
        page.events.into_iter().map(|e| e.event).collect::<Vec<_>>(),
        [v3]
    );
}

/// A fence below the head's epoch fails with `Fenced` and writes nothing.
pub async fn a_fence_below_the_heads_epoch_is_fenced<S: FenceTarget>(store: S) {
    let a = actor("fence-lower");
    let v1 = event(&a, 1);
    save_as(&store, std::slice::from_ref(&v1), epoch(5)).await;
    assert_fenced(store.fence(&a, epoch(3)).await, &a, epoch(3), epoch(5));
    assert_eq!(latest_epoch(&store, &a).await, epoch(5));
    fence(&store, &a, epoch(7)).await;
    assert_fenced(store.fence(&a, epoch(6)).await, &a, epoch(6), epoch(7));
    assert_eq!(latest_epoch(&store, &a).await, epoch(7));
    // Still writable at the owner's epoch: the refused fences left nothing behind.
    let v2 = event(&a, 2);
    save_as(&store, std::slice::from_ref(&v2), epoch(7)).await;
    assert_history(&store, &a, &[v1, v2]).await;
}

/// Writes without an epoch (epoch 0) fail with `Fenced` on a fenced actor, and on an actor
/// written with an epoch; an actor never fenced takes them as before.
pub async fn plain_writes_to_an_owned_actor_are_fenced<S: FenceTarget>(store: S) {
    let a = actor("fence-plain");
    let history = save_versions(&store, &a, &[1]).await;
    assert_eq!(latest_epoch(&store, &a).await, OwnerEpoch::UNOWNED);
    fence(&store, &a, epoch(1)).await;
    assert_fenced(
        store.save_event(event(&a, 2)).await,
        &a,
        OwnerEpoch::UNOWNED,
        epoch(1),
    );
    assert_fenced(
        store.save_events(vec![event(&a, 2), event(&a, 3)]).await,
        &a,
        OwnerEpoch::UNOWNED,
        epoch(1),
    );
    assert_history(&store, &a, &history).await;

    let b = actor("fence-plain-owned");
    let owned = vec![event(&b, 1)];
    save_as(&store, &owned, epoch(4)).await;
    assert_fenced(
        store.save_event(event(&b, 2)).await,
        &b,
        OwnerEpoch::UNOWNED,
        epoch(4),
    );
    assert_history(&store, &b, &owned).await;
}

/// A writer whose handle cached the head before another handle fenced the actor gets
/// `Fenced` (after the store finds the head moved), never a write past the fence.
pub async fn a_stale_writer_with_a_cached_head_is_fenced<S: FenceTarget>(store: S) {
    let a = actor("fence-cached");
    let other = store.another_handle().await;
    let v1 = event(&a, 1);
    save_as(&store, std::slice::from_ref(&v1), epoch(1)).await; // this handle now knows the head
    assert_eq!(fence(&other, &a, epoch(2)).await, 1);
    assert_fenced(
        store.save_events_as(vec![event(&a, 2)], epoch(1)).await,
        &a,
        epoch(1),
        epoch(2),
    );
    let v2 = event(&a, 2);
    save_as(&other, std::slice::from_ref(&v2), epoch(2)).await;
    // A batch from a cached head that is two records behind.
    assert_fenced(
        store
            .save_events_as(vec![event(&a, 3), event(&a, 4)], epoch(1))
            .await,
        &a,
        epoch(1),
        epoch(2),
    );
    assert_fenced(
        store.save_event(event(&a, 3)).await,
        &a,
        OwnerEpoch::UNOWNED,
        epoch(2),
    );
    assert_history(&store, &a, &[v1.clone(), v2.clone()]).await;
    assert_history(&other, &a, &[v1, v2]).await;
}

/// Saving again events that are stored already — saved before a newer owner's fence, and
/// saved again by their old owner or anyone else — is a duplicate, as on any store, from a
/// handle that cached the head before the fence and from one that did not; not `Fenced`
/// (the events are stored) and nothing new is written. Other events at those versions are
/// still `Fenced` for the old owner.
pub async fn resaving_stored_events_after_a_fence_is_a_duplicate<S: FenceTarget>(store: S) {
    let a = actor("fence-resave");
    let v1 = event(&a, 1);
    let batch = [event(&a, 2), event(&a, 3)];
    save_as(&store, std::slice::from_ref(&v1), epoch(1)).await; // caches the head
    save_as(&store, &batch, epoch(1)).await;
    let other = store.another_handle().await;
    assert_eq!(fence(&other, &a, epoch(2)).await, 3);
    for handle in [&store, &other] {
        for (events, at) in [
            (vec![v1.clone()], epoch(1)),
            (batch.to_vec(), epoch(1)),
            (vec![v1.clone()], OwnerEpoch::UNOWNED),
        ] {
            let again = handle.save_events_as(events, at).await;
            assert!(
                matches!(again, Ok(SaveOutcome::Duplicate)),
                "re-saving stored events after a fence: expected Duplicate, got {again:?}"
            );
        }
        assert_fenced(
            handle.save_events_as(vec![event(&a, 2)], epoch(1)).await,
            &a,
            epoch(1),
            epoch(2),
        );
    }
    let stored = [v1, batch[0].clone(), batch[1].clone()];
    assert_history(&store, &a, &stored).await;
    assert_eq!(latest_epoch(&store, &a).await, epoch(2));
}

const ROUNDS: u64 = 30;

/// A fence and a write of the previous owner race, round after round (odd rounds write a
/// batch of two): every round either the write landed before the fence (the fence reports its
/// version) or it failed with `Fenced` and is nowhere — never a write after the fence.
pub async fn a_fence_racing_a_stale_write_is_never_overtaken<S: FenceTarget>(store: S) {
    require_parallel_runtime();
    let a = actor("fence-race");
    let writer = Arc::new(store);
    let fencer = Arc::new(writer.another_handle().await);
    let barrier = Arc::new(Barrier::new(2));
    let (mut version, mut landed, mut fenced) = (0, Vec::new(), 0);
    for round in 1..=ROUNDS {
        let old = epoch(round - 1);
        let attempt: Vec<Event> = if round % 2 == 1 {
            vec![event(&a, version + 1), event(&a, version + 2)]
        } else {
            vec![event(&a, version + 1)]
        };
        let write = {
            let (writer, barrier, attempt) = (writer.clone(), barrier.clone(), attempt.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                writer.save_events_as(attempt, old).await
            })
        };
        let fence = {
            let (fencer, barrier, a) = (fencer.clone(), barrier.clone(), a.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                fencer.fence(&a, epoch(round)).await
            })
        };
        let written = write.await.expect("writer task panicked");
        let at = fence
            .await
            .expect("fence task panicked")
            .unwrap_or_else(|e| panic!("round {round}: the fence at the newest epoch failed: {e}"));
        let top = attempt.last().expect("not empty").version;
        match written {
            Ok(SaveOutcome::Saved) => {
                assert_eq!(
                    at, top,
                    "round {round}: the write landed, so before the fence (fenced at {at})"
                );
                version = top;
                landed.extend(attempt);
            }
            Err(StoreError::Fenced {
                epoch: e,
                fenced_by,
                ..
            }) => {
                assert_eq!((e, fenced_by), (old, epoch(round)), "round {round}");
                assert_eq!(at, version, "round {round}: fenced, so nothing was written");
                fenced += 1;
            }
            other => panic!("round {round}: unexpected outcome of the stale write: {other:?}"),
        }
        assert_eq!(
            latest_epoch(&*writer, &a).await,
            epoch(round),
            "round {round}"
        );
        assert_history(&*writer, &a, &landed).await;
    }
    // Never a write after the fence: the history is contiguous and exactly what landed.
    let stored = writer.events(&a, 0).await.expect("events");
    assert_eq!(versions(&stored), (1..=version).collect::<Vec<_>>());
    eprintln!(
        "conformance: fence race: {} writes landed, {fenced} fenced",
        ROUNDS - fenced
    );
}

/// An empty batch and a batch of two actors, written at `at`: typed errors.
async fn refuses_empty_and_mixed_batches<S: FenceTarget>(
    store: &S,
    a: &ActorId,
    b: &ActorId,
    at: OwnerEpoch,
) {
    let empty = store.save_events_as(Vec::new(), at).await;
    assert!(
        matches!(
            empty,
            Err(StoreError::InvalidEvent(InvalidEvent::EmptyBatch))
        ),
        "{empty:?}"
    );
    let mixed = store
        .save_events_as(vec![event(a, 1), event(b, 2)], at)
        .await;
    assert!(
        matches!(
            mixed,
            Err(StoreError::InvalidEvent(InvalidEvent::MixedActors { .. }))
        ),
        "{mixed:?}"
    );
}

/// Bad input to fenced writes is a typed error and writes nothing, fenced actor or not.
pub async fn bad_input_to_fenced_writes_is_a_typed_error<S: FenceTarget>(store: S) {
    let a = actor("fence-bad");
    let b = actor("fence-bad-other");
    refuses_empty_and_mixed_batches(&store, &a, &b, epoch(1)).await;
    let zero = store.save_events_as(vec![event(&a, 0)], epoch(1)).await;
    assert!(
        matches!(
            &zero,
            Err(StoreError::InvalidEvent(InvalidEvent::InBatch { index: 0, reason }))
                if **reason == InvalidEvent::ZeroVersion
        ),
        "{zero:?}"
    );
    for actor_id in [&a, &b] {
        assert_history(&store, actor_id, &[]).await;
        assert_eq!(latest_epoch(&store, actor_id).await, OwnerEpoch::UNOWNED);
    }
    // On a fenced actor, bad input is still bad input (checked before anything is read).
    fence(&store, &a, epoch(2)).await;
    refuses_empty_and_mixed_batches(&store, &a, &b, epoch(1)).await;
    refuses_empty_and_mixed_batches(&store, &a, &b, epoch(2)).await;
    assert_history(&store, &a, &[]).await;
    assert_history(&store, &b, &[]).await;
    assert_eq!(latest_epoch(&store, &a).await, epoch(2));
}
