//! Reads from a position never return records before it, even when JetStream's ordered
//! consumer restarts before its first message: async-nats 0.51 then recreates it with
//! `DeliverPolicy::All`, from the stream's first message, whatever start it was given. Seen on
//! R3 streams in about one consumer in a hundred, so each test reads about five hundred times.
//! Needs `nats-server` >= 2.12 (fails, never skips, when it is missing).

use std::num::NonZeroUsize;

use aether_core::testing::conformance::ConformanceTarget;
use aether_core::{
    ActorId, ActorSnapshot, Event, EventFeed, EventStore, FeedPosition, Namespace, SnapshotStore,
};
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::NatsCluster;

const ROUNDS: u64 = 60;

async fn r3_store(cluster: &NatsCluster) -> JetStreamEventStore {
    let namespace = Namespace::new(format!("restarts-{}", uuid::Uuid::now_v7().simple())).unwrap();
    let config = JetStreamConfig {
        replicas: 3,
        ..JetStreamConfig::default()
    };
    JetStreamEventStore::connect_with(&cluster.urls().join(","), namespace, config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_pages_start_after_the_checkpoint() {
    let cluster = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let store = r3_store(&cluster).await;
    let a = ActorId::new("a").unwrap();
    for version in 1..=9 {
        store
            .save_event(Event::new(a.clone(), "Happened", version))
            .await
            .unwrap();
    }
    let two = NonZeroUsize::new(2).unwrap();
    for round in 0..ROUNDS {
        for after in 0..9 {
            let page = store
                .read_feed(FeedPosition::new(after), two)
                .await
                .unwrap();
            let positions: Vec<u64> = page.events.iter().map(|e| e.position.get()).collect();
            let expected: Vec<u64> = (after + 1..=(after + 2).min(9)).collect();
            assert_eq!(
                positions, expected,
                "round {round}: the page after {after} is the next two records"
            );
        }
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_after_a_snapshot_reads_only_the_tail() {
    let cluster = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let store = r3_store(&cluster).await;
    let a = ActorId::new("a").unwrap();
    store
        .save_event(Event::new(a.clone(), "Opened", 1))
        .await
        .unwrap();
    store
        .write_raw_record(&a, b"\x00a foreign record before the snapshot".to_vec())
        .await
        .unwrap();
    store
        .save_event(Event::new(a.clone(), "Moved", 2))
        .await
        .unwrap();
    store
        .save_snapshot(ActorSnapshot::new(a.clone(), 2, serde_json::json!({})))
        .await
        .unwrap();
    let tail = Event::new(a.clone(), "Moved", 3);
    store.save_event(tail.clone()).await.unwrap();
    for round in 0..ROUNDS * 9 {
        let loaded = store.load(&a).await.unwrap();
        assert!(
            loaded.errors.is_empty(),
            "load {round}: the record before the snapshot is covered by it, not reported: {:?}",
            loaded.errors
        );
        assert_eq!(loaded.events, std::slice::from_ref(&tail), "load {round}");
    }
    drop(cluster);
}
