//! `load` keeps the head it read as the actor's head hint, so that the write that follows an
//! activation needs no read of its own. Observed from outside: a second connection counts the
//! head reads (Direct Get, or leader Message Get) that a save sends.

#[path = "support/spy.rs"]
mod spy;
use spy::spy;

use std::time::Duration;

use aether_core::{ActorId, Event, EventStore, Namespace, SnapshotStore};
use aether_nats::JetStreamEventStore;
use aether_testkit::nats_server::NatsServer;
use futures::StreamExt as _;

fn namespace() -> Namespace {
    Namespace::new(format!("load-head-{}", uuid::Uuid::now_v7().simple())).expect("namespace")
}

async fn open(url: &str, namespace: &Namespace) -> JetStreamEventStore {
    JetStreamEventStore::connect(url, namespace.clone())
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"))
}

/// Counts the message reads `store` sends to the server while `save` runs. After the save, a
/// read of the head of `marker` is sent on the same connection: the server delivers requests
/// of one connection in order, so every read of the save arrives before the marker's.
async fn reads_during<F: Future<Output = ()>>(
    url: &str,
    store: &JetStreamEventStore,
    marker: &ActorId,
    save: F,
) -> usize {
    let mut direct = spy(
        url,
        "$JS.API.DIRECT.GET.>",
        "$JS.API.DIRECT.GET.aether-spy-probe",
    )
    .await;
    let mut leader = spy(
        url,
        "$JS.API.STREAM.MSG.GET.>",
        "$JS.API.STREAM.MSG.GET.aether-spy-probe",
    )
    .await;
    save.await;
    store.latest_version(marker).await.expect("marker read");
    let mut reads = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::select! {
                Some(m) = direct.next() => m,
                Some(m) = leader.next() => m,
            }
        })
        .await
        .expect("the marker's read reaches the spy");
        let text = format!(
            "{} {}",
            message.subject,
            String::from_utf8_lossy(&message.payload)
        );
        if text.contains(marker.as_str()) {
            return reads;
        }
        reads += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_after_a_load_reads_no_head() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = namespace();
    let writer = open(&url, &ns).await;
    let existing = ActorId::new("existing").expect("actor");
    for version in 1..=2 {
        writer
            .save_event(Event::new(existing.clone(), "Added", version))
            .await
            .expect("seed");
    }
    let fresh = ActorId::new("fresh").expect("actor");
    let marker = ActorId::new("marker-actor").expect("actor");

    // The spy sees reads: a handle without hints reads the head before its first save.
    let cold = open(&url, &ns).await;
    let cold_reads = reads_during(&url, &cold, &marker, async {
        cold.save_event(Event::new(existing.clone(), "Added", 3))
            .await
            .expect("v3");
    })
    .await;
    assert_eq!(cold_reads, 1, "a save without a hint reads the head once");

    // After a load (an activation), the next save reads nothing: of an actor with events...
    let loader = open(&url, &ns).await;
    let loaded = loader.load(&existing).await.expect("load");
    assert_eq!(loaded.events.len(), 3);
    let reads = reads_during(&url, &loader, &marker, async {
        loader
            .save_event(Event::new(existing.clone(), "Added", 4))
            .await
            .expect("v4");
    })
    .await;
    assert_eq!(reads, 0, "the save after a load of an actor with events");

    // ... and of a new actor.
    assert!(loader.load(&fresh).await.expect("load").events.is_empty());
    let reads = reads_during(&url, &loader, &marker, async {
        loader
            .save_event(Event::new(fresh.clone(), "Opened", 1))
            .await
            .expect("v1");
    })
    .await;
    assert_eq!(reads, 0, "the save after a load of a new actor");

    // The hint is only a hint: a write by another handle since the load is still a conflict,
    // never a write past it.
    loader.load(&existing).await.expect("load");
    writer
        .save_event(Event::new(existing.clone(), "Added", 5))
        .await
        .expect("v5 elsewhere");
    let stale = loader
        .save_event(Event::new(existing.clone(), "Added", 5))
        .await;
    assert!(
        matches!(
            stale,
            Err(aether_core::StoreError::VersionConflict {
                current_version: 5,
                ..
            })
        ),
        "expected a conflict at v5, got {stale:?}"
    );
    assert_eq!(writer.latest_version(&existing).await.expect("head"), 5);
}
