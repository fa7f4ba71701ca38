//! Capability 3: safe concurrent writes (optimistic concurrency, no locks across calls).

use std::sync::Arc;

use tokio::sync::Barrier;

use super::ConformanceTarget;
use super::support::{actor, assert_conflict, assert_history, event};
use crate::{SaveOutcome, StoreError, Version};

const WRITERS: usize = 8;
const ROUNDS: u64 = 30;

/// `WRITERS` tasks all read version `v` and all write `v + 1`, for `ROUNDS` rounds: exactly one
/// wins each round; every loser gets a conflict whose current version is the winner's; the
/// stored history is exactly the winners' events.
pub async fn racing_writers_have_exactly_one_winner_per_round<S: ConformanceTarget>(store: S) {
    require_parallel_runtime();
    let store = Arc::new(store);
    let a = actor("contended");
    let barrier = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, barrier, a) = (store.clone(), barrier.clone(), a.clone());
            tokio::spawn(async move {
                let mut rounds = Vec::new();
                for _ in 0..ROUNDS {
                    barrier.wait().await; // the previous round is over
                    let read = store.latest_version(&a).await.expect("latest_version");
                    barrier.wait().await; // everyone has read before anyone writes
                    let attempt = event(&a, read + 1);
                    let result = store.save_event(attempt.clone()).await;
                    rounds.push((read, attempt, result));
                }
                rounds
            })
        })
        .collect();
    let mut per_writer = Vec::new();
    for task in tasks {
        per_writer.push(task.await.expect("writer task panicked"));
    }

    let mut winners = Vec::new();
    for round in 0..ROUNDS as usize {
        let expected_read = round as Version;
        let mut won = Vec::new();
        for rounds in &per_writer {
            let (read, attempt, result) = &rounds[round];
            assert_eq!(
                *read, expected_read,
                "round {round}: every writer reads the same version"
            );
            match result {
                Ok(SaveOutcome::Saved) => won.push(attempt.clone()),
                Err(StoreError::VersionConflict {
                    attempted_version,
                    current_version,
                    ..
                }) => {
                    assert_eq!(
                        (*attempted_version, *current_version),
                        (read + 1, read + 1),
                        "round {round}: a loser's conflict carries the winner's version"
                    );
                }
                other => panic!("round {round}: unexpected outcome {other:?}"),
            }
        }
        assert_eq!(
            won.len(),
            1,
            "round {round}: exactly one winner, got {}",
            won.len()
        );
        winners.extend(won);
    }
    assert_history(&*store, &a, &winners).await;
}

/// Concurrent writers of different actors never conflict and never lose an event.
pub async fn writers_of_different_actors_do_not_conflict<S: ConformanceTarget>(store: S) {
    const EVENTS: u64 = 50;
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let a = actor(&format!("writer-{w}"));
                let mut saved = Vec::new();
                for v in 1..=EVENTS {
                    barrier.wait().await;
                    let e = event(&a, v);
                    store.save_event(e.clone()).await.expect("uncontended save");
                    saved.push(e);
                }
                (a, saved)
            })
        })
        .collect();
    for task in tasks {
        let (a, saved) = task.await.expect("writer task panicked");
        assert_history(&*store, &a, &saved).await;
    }
}

/// Two writers read version N and both write N+1: the loser gets a conflict with current N+1,
/// re-reads, and succeeds with N+2.
pub async fn loser_can_reread_and_retry<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let base = event(&a, 1);
    store.save_event(base.clone()).await.expect("save");
    let n = store.latest_version(&a).await.expect("latest");
    let winner = event(&a, n + 1);
    store.save_event(winner.clone()).await.expect("winner");
    assert_conflict(store.save_event(event(&a, n + 1)).await, n + 1, n + 1);
    let reread = store.latest_version(&a).await.expect("latest");
    assert_eq!(reread, n + 1);
    let retry = event(&a, reread + 1);
    store
        .save_event(retry.clone())
        .await
        .expect("retry with N+2");
    assert_history(&store, &a, &[base, winner, retry]).await;
}

/// The racing properties only race on a multi-threaded runtime; on a current-thread one they
/// would pass without testing anything, so they refuse to run there.
pub(super) fn require_parallel_runtime() {
    use tokio::runtime::{Handle, RuntimeFlavor};
    assert_eq!(
        Handle::current().runtime_flavor(),
        RuntimeFlavor::MultiThread,
        "run the conformance suite on a multi-threaded runtime, e.g. \
         #[tokio::test(flavor = \"multi_thread\", worker_threads = 4)]"
    );
}

/// `WRITERS` tasks save the very same event at once (a retry storm): it is stored exactly once,
/// one save reports `Saved` and every other `Duplicate`.
pub async fn concurrent_retries_of_one_event_store_it_once<S: ConformanceTarget>(store: S) {
    require_parallel_runtime();
    let store = Arc::new(store);
    let a = actor("retried");
    let the_event = event(&a, 1);
    let barrier = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, barrier, e) = (store.clone(), barrier.clone(), the_event.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.save_event(e).await
            })
        })
        .collect();
    let (mut saved, mut duplicates) = (0, 0);
    for task in tasks {
        match task.await.expect("writer task panicked") {
            Ok(SaveOutcome::Saved) => saved += 1,
            Ok(SaveOutcome::Duplicate) => duplicates += 1,
            other => panic!("a retry of a stored event must be Saved or Duplicate, got {other:?}"),
        }
    }
    assert_eq!((saved, duplicates), (1, WRITERS - 1));
    assert_history(&*store, &a, &[the_event]).await;
}

/// Writers of 3-event batches and writers of single events race on one actor: every batch that
/// was saved sits in the history as one contiguous run, nothing of a refused batch is stored,
/// and the history is exactly what was acknowledged.
pub async fn batches_and_single_saves_never_interleave<S: ConformanceTarget>(store: S) {
    require_parallel_runtime();
    const ROUNDS: u64 = 200;
    let store = Arc::new(store);
    let a = actor("mixed");
    let barrier = Arc::new(Barrier::new(4));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, a, barrier) = (store.clone(), a.clone(), barrier.clone());
            let batch_len = if w % 2 == 0 { 3 } else { 1 };
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for _ in 0..ROUNDS {
                    barrier.wait().await; // all four writers act in the same moment
                    let v = store.latest_version(&a).await.expect("latest_version");
                    let events: Vec<_> = (1..=batch_len).map(|i| event(&a, v + i)).collect();
                    let outcome = if batch_len == 1 {
                        store.save_event(events[0].clone()).await
                    } else {
                        store.save_events(events.clone()).await
                    };
                    match outcome {
                        Ok(SaveOutcome::Saved) => acknowledged.push(events),
                        Err(StoreError::VersionConflict { .. }) => {}
                        other => panic!("unexpected outcome {other:?}"),
                    }
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer panicked"));
    }
    let history = store.events(&a, 0).await.expect("events");
    let total: usize = acknowledged.iter().map(Vec::len).sum();
    assert_eq!(history.len(), total, "history = acknowledged events");
    for group in &acknowledged {
        let at = history
            .iter()
            .position(|e| e.id == group[0].id)
            .expect("acknowledged save stored");
        assert_eq!(
            &history[at..at + group.len()],
            group.as_slice(),
            "a batch is one contiguous run"
        );
    }
}
