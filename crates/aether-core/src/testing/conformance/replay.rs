//! Capability 2: rebuild state from event history.

use super::ConformanceTarget;
use super::support::{actor, save_versions, versions};
use crate::{Event, EventStore};

/// `events(actor, from)` returns exactly the events with `version >= from`, in order.
pub async fn events_from_version_filters_in_order<S: ConformanceTarget>(store: S) {
    let a = actor("ledger-1");
    let all = save_versions(&store, &a, &[1, 2, 4, 8, 9]).await;
    for from in [0, 1, 2, 3, 4, 5, 8, 9, 10, u64::MAX] {
        let expected: Vec<Event> = all.iter().filter(|e| e.version >= from).cloned().collect();
        let got = store.events(&a, from).await.expect("events");
        assert_eq!(
            got,
            expected,
            "events(from = {from}) returned versions {:?}",
            versions(&got)
        );
        let replay = store
            .events_with_errors(&a, from)
            .await
            .expect("events_with_errors");
        assert_eq!(replay.events, expected, "events_with_errors(from = {from})");
        assert!(replay.errors.is_empty());
    }
}

/// Records that are not valid events (garbage, or events with invalid ids) are skipped by
/// `events` and reported by `events_with_errors` with position, raw bytes and an error, in
/// stream order; they never come back as events.
pub async fn events_with_errors_reports_undecodable_records<S: ConformanceTarget>(store: S) {
    let a = actor("ledger-1");
    let mut good = save_versions(&store, &a, &[1]).await;
    let garbage = b"\x00\xffnot json".to_vec();
    let empty_actor = br#"{"id":"x-1","eventType":"T","actorId":"","version":2,"data":{},"timestamp":"2026-01-01T00:00:00Z"}"#.to_vec();
    let wildcard_actor = br#"{"id":"x-2","eventType":"T","actorId":"ledger.*","version":2,"data":{},"timestamp":"2026-01-01T00:00:00Z"}"#.to_vec();
    let not_an_object = br#"{"id":"x-3","eventType":"T","actorId":"ledger-1","version":2,"data":[1],"timestamp":"2026-01-01T00:00:00Z"}"#.to_vec();
    for raw in [&garbage, &empty_actor] {
        store
            .write_raw_record(&a, raw.clone())
            .await
            .expect("raw write");
    }
    good.extend(save_versions(&store, &a, &[2]).await);
    for raw in [&wildcard_actor, &not_an_object] {
        store
            .write_raw_record(&a, raw.clone())
            .await
            .expect("raw write");
    }
    good.extend(save_versions(&store, &a, &[3]).await);

    assert_eq!(
        store.events(&a, 0).await.expect("events"),
        good,
        "events skips bad records"
    );
    let replay = store
        .events_with_errors(&a, 0)
        .await
        .expect("events_with_errors");
    assert_eq!(replay.events, good);
    let raws: Vec<&[u8]> = replay.errors.iter().map(|e| e.raw.as_slice()).collect();
    assert_eq!(
        raws,
        [&garbage[..], &empty_actor, &wildcard_actor, &not_an_object]
    );
    assert!(
        replay.errors.iter().all(|e| !e.error.is_empty()),
        "each error says why"
    );
    // Positions are the store's own, but each names its record: they rise in commit order.
    let positions: Vec<u64> = replay.errors.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]) && positions[0] > 0,
        "the bad records' positions rise in commit order: {positions:?}"
    );
    let positions: Vec<u64> = replay.errors.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions increase: {positions:?}"
    );

    // From version 2 on, only records after event 1 are reported.
    let tail = store
        .events_with_errors(&a, 2)
        .await
        .expect("events_with_errors");
    assert_eq!(versions(&tail.events), [2, 3]);
    assert_eq!(tail.errors.len(), 4, "all bad records follow version 1");
    let tail = store
        .events_with_errors(&a, 3)
        .await
        .expect("events_with_errors");
    assert_eq!(versions(&tail.events), [3]);
    assert_eq!(tail.errors.len(), 2, "only records after version 2");
}

/// Replaying the same history twice yields the same events in the same order, and folding them
/// gives the state the saved events imply.
pub async fn replay_is_deterministic<S: ConformanceTarget>(store: S) {
    let a = actor("ledger-1");
    save_versions(&store, &a, &(1..=50).collect::<Vec<_>>()).await;
    let fold = |events: &[Event]| -> (u64, u64) {
        events.iter().fold((0, 0), |(n, total), e| {
            (n + 1, total + e.data["amount"].as_u64().unwrap_or(0))
        })
    };
    let first = store.events(&a, 0).await.expect("events");
    let second = store.events(&a, 0).await.expect("events");
    assert_eq!(first, second);
    assert_eq!(fold(&first), (50, (1..=50).map(|v| v * 10).sum()));
}

/// Folds the `amount`s of `events`, for snapshot properties.
pub(super) fn balance(events: &[Event]) -> u64 {
    events
        .iter()
        .map(|e| e.data["amount"].as_u64().unwrap_or(0))
        .sum()
}

/// Loads `actor` the way an actor runtime does: latest snapshot plus the events after it.
pub(super) async fn load_with_snapshot<S: ConformanceTarget>(
    store: &S,
    a: &crate::ActorId,
) -> (u64, usize) {
    let snapshot = crate::SnapshotStore::latest_snapshot(store, a)
        .await
        .expect("latest_snapshot");
    let (base, from) = snapshot.map_or((0, 0), |s| {
        (s.state["balance"].as_u64().unwrap_or(0), s.version + 1)
    });
    let tail = EventStore::events(store, a, from).await.expect("events");
    (base + balance(&tail), tail.len())
}
