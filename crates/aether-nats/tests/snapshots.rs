//! Snapshots in KV: loading an actor is its snapshot plus a replay from the stream sequence the
//! snapshot recorded, and concurrent snapshot writers can never leave an older one in place.

use std::sync::Arc;

use aether_core::LoadedActor;
use aether_core::{ActorId, ActorSnapshot, Event, EventStore, Namespace, SnapshotStore};
use aether_nats::JetStreamEventStore;
use aether_nats::naming::{snapshot_bucket, snapshot_key};
use aether_testkit::nats_server::NatsServer;

async fn store(url: &str) -> JetStreamEventStore {
    let namespace =
        Namespace::new(format!("snap-{}", uuid::Uuid::now_v7().simple())).expect("namespace");
    JetStreamEventStore::connect(url, namespace)
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"))
}

async fn save_range(
    store: &JetStreamEventStore,
    actor: &ActorId,
    versions: std::ops::RangeInclusive<u64>,
) {
    for v in versions {
        store
            .save_event(Event::new(actor.clone(), "Ticked", v))
            .await
            .expect("save");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_snapshot_plus_tail_from_the_recorded_sequence() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let store = store(&server.url()).await;
    let actor = ActorId::new("counter.1").expect("actor");
    let other = ActorId::new("counter.2").expect("actor");

    // Without a snapshot: everything.
    save_range(&store, &actor, 1..=5).await;
    let loaded = store.load(&actor).await.expect("load");
    assert_eq!(loaded.snapshot, None);
    assert_eq!(
        loaded.events,
        store.events(&actor, 0).await.expect("events")
    );

    // Interleave another actor so stream sequences and versions differ.
    save_range(&store, &other, 1..=3).await;
    let snapshot = ActorSnapshot::new(actor.clone(), 5, serde_json::json!({ "count": 5 }));
    store
        .save_snapshot(snapshot.clone())
        .await
        .expect("snapshot");
    save_range(&store, &actor, 6..=8).await;

    let LoadedActor {
        snapshot: got,
        events,
        errors,
    } = store.load(&actor).await.expect("load");
    assert_eq!(got, Some(snapshot));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(events, store.events(&actor, 6).await.expect("tail"));
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [6, 7, 8]
    );

    // The snapshot recorded the stream sequence of version 5 (5: five events, nothing else before).
    let js = async_nats::jetstream::new(store.client().clone());
    let kv = js
        .get_key_value(snapshot_bucket(store.namespace()))
        .await
        .expect("bucket");
    let raw = kv
        .get(snapshot_key(&actor))
        .await
        .expect("get")
        .expect("stored");
    let stored: serde_json::Value = serde_json::from_slice(&raw).expect("json");
    assert_eq!(stored["streamSequence"], 5, "{stored}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_snapshot_writers_leave_the_newest() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(store(&server.url()).await);
    let actor = ActorId::new("raced").expect("actor");
    save_range(&store, &actor, 1..=40).await;
    for round in 0..3 {
        let tasks: Vec<_> = (1..=40u64)
            .rev()
            .map(|v| {
                let (store, actor) = (store.clone(), actor.clone());
                tokio::spawn(async move {
                    let s =
                        ActorSnapshot::new(actor, v, serde_json::json!({ "v": v, "round": round }));
                    store.save_snapshot(s).await.expect("save snapshot");
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let latest = store
            .latest_snapshot(&actor)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(latest.version, 40, "round {round}");
    }
    drop(server);
}
