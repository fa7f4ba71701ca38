//! The in-memory store's metrics through the `metrics` crate: each outcome of a save in its
//! counter, every save and read timed, the replay length, snapshots, fences, and input errors.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use aether_core::{
    ActorId, ActorSnapshot, Event, EventFeed, EventStore, FeedPosition, FencedEventStore,
    InMemoryEventStore, OwnerEpoch, SnapshotStore,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

type Values = HashMap<(String, Vec<(String, String)>), DebugValue>;

#[test]
fn every_store_operation_is_counted_and_timed() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let store = metrics::with_local_recorder(&recorder, InMemoryEventStore::new);
    futures::executor::block_on(async {
        let id = ActorId::new("a").unwrap();
        store
            .save_event(Event::new(id.clone(), "A", 1))
            .await
            .unwrap();
        let batch = vec![
            Event::new(id.clone(), "B", 2),
            Event::new(id.clone(), "C", 3),
        ];
        store.save_events(batch.clone()).await.unwrap();
        assert!(store.save_events(batch).await.unwrap().is_duplicate());
        store
            .save_event(Event::new(id.clone(), "Late", 2))
            .await
            .unwrap_err();
        store.save_events(Vec::new()).await.unwrap_err();
        assert_eq!(store.events(&id, 2).await.unwrap().len(), 2);
        store
            .save_snapshot(ActorSnapshot::new(
                id.clone(),
                3,
                serde_json::json!({"n": 3}),
            ))
            .await
            .unwrap();
        assert!(store.load(&id).await.unwrap().events.is_empty());
        store
            .read_feed(FeedPosition::START, NonZeroUsize::new(10).unwrap())
            .await
            .unwrap();
        store.fence(&id, OwnerEpoch::new(2)).await.unwrap();
        store
            .save_events_as(vec![Event::new(id, "D", 4)], OwnerEpoch::new(1))
            .await
            .unwrap_err();
    });
    let values: Values = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.key().name().to_owned(), labels), value)
        })
        .collect();
    let get = |name: &str, extra: &[(&str, &str)]| {
        let mut labels: Vec<(String, String)> = [("namespace", ""), ("store", "memory")]
            .iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        values
            .get(&(name.to_owned(), labels.clone()))
            .unwrap_or_else(|| panic!("{name} {labels:?} not recorded: {:?}", values.keys()))
    };
    let counter = |name: &str, extra: &[(&str, &str)]| match get(name, extra) {
        DebugValue::Counter(n) => *n,
        other => panic!("{name}: {other:?}"),
    };
    let samples = |name: &str, extra: &[(&str, &str)]| match get(name, extra) {
        DebugValue::Histogram(samples) => {
            samples.iter().map(|s| s.into_inner()).collect::<Vec<f64>>()
        }
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(counter("aether_store_events_saved_total", &[]), 3);
    assert_eq!(counter("aether_store_duplicates_total", &[]), 1);
    assert_eq!(counter("aether_store_version_conflicts_total", &[]), 1);
    assert_eq!(counter("aether_store_fenced_writes_total", &[]), 1);
    assert_eq!(
        counter("aether_store_save_errors_total", &[("kind", "invalid")]),
        1
    );
    assert_eq!(
        counter(
            "aether_store_save_errors_total",
            &[("kind", "infrastructure")]
        ),
        0
    );
    // Every save attempt is timed, whatever its outcome.
    let saves = samples("aether_store_save_seconds", &[]);
    assert_eq!(saves.len(), 6);
    assert!(saves.iter().all(|s| (0.0..10.0).contains(s)), "{saves:?}");
    assert_eq!(
        samples("aether_store_read_events", &[("op", "replay")]),
        [2.0]
    );
    assert_eq!(
        samples("aether_store_read_events", &[("op", "load")]),
        [0.0]
    );
    assert_eq!(
        samples("aether_store_read_events", &[("op", "feed")]),
        [3.0]
    );
    assert_eq!(
        samples("aether_store_read_seconds", &[("op", "load")]).len(),
        1
    );
    assert_eq!(
        counter("aether_store_read_errors_total", &[("op", "replay")]),
        0
    );
    assert_eq!(counter("aether_store_snapshots_saved_total", &[]), 1);
    assert_eq!(samples("aether_store_snapshot_bytes", &[]).len(), 1);
    assert_eq!(counter("aether_store_fences_total", &[]), 1);
}
