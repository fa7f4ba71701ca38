//! [`JetStreamEventStore::open_existing`]: a reader opens a namespace that exists and reads it;
//! a namespace (or a snapshot bucket) that does not exist is a typed error, and nothing is
//! created — the server's streams are the same before and after.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use aether_core::{ActorId, ActorSnapshot, Event, EventStore, Namespace, SnapshotStore};
use aether_nats::naming::snapshot_bucket;
use aether_nats::{JetStreamConfig, JetStreamEventStore, OpenExistingError};
use aether_testkit::nats_server::NatsServer;
use futures::TryStreamExt;

/// Every stream on the server with its message count, by name.
async fn streams(client: &async_nats::Client) -> Vec<(String, u64)> {
    let js = async_nats::jetstream::new(client.clone());
    let mut all: Vec<(String, u64)> = js
        .streams()
        .map_ok(|info| (info.config.name, info.state.messages))
        .try_collect()
        .await
        .expect("list streams");
    all.sort();
    all
}

fn ns(name: &str) -> Namespace {
    Namespace::new(name).expect("namespace")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_namespace_opens_and_reads() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let writer = JetStreamEventStore::connect(&server.url(), ns("bank"))
        .await
        .expect("a writer creates the namespace");
    let actor = ActorId::new("acct-1").expect("actor");
    writer
        .save_event(Event::new(actor.clone(), "Opened", 1))
        .await
        .expect("save");
    writer
        .save_snapshot(ActorSnapshot::new(
            actor.clone(),
            1,
            serde_json::json!({"n": 1}),
        ))
        .await
        .expect("snapshot");

    let client = async_nats::connect(server.url()).await.expect("connect");
    let before = streams(&client).await;
    let reader =
        JetStreamEventStore::open_existing(client.clone(), ns("bank"), JetStreamConfig::default())
            .await
            .unwrap_or_else(|e| panic!("open_existing: {e}"));
    assert_eq!(reader.events(&actor, 1).await.expect("read").len(), 1);
    assert_eq!(
        reader
            .latest_snapshot(&actor)
            .await
            .expect("snapshot")
            .map(|s| s.version),
        Some(1)
    );
    assert_eq!(
        streams(&client).await,
        before,
        "reading changed the streams"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_is_a_typed_error_and_nothing_is_created() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    JetStreamEventStore::connect(&server.url(), ns("bank"))
        .await
        .expect("another namespace exists");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let before = streams(&client).await;

    let missing =
        JetStreamEventStore::open_existing(client.clone(), ns("shop"), JetStreamConfig::default())
            .await;
    match missing {
        Err(e @ OpenExistingError::NoNamespace { .. }) => {
            let shown = e.to_string();
            assert!(
                shown.contains("namespace shop does not exist") && shown.contains("aether-ev-shop"),
                "{shown}"
            );
        }
        other => panic!("expected NoNamespace, got {:?}", other.map(|_| ())),
    }
    assert_eq!(streams(&client).await, before, "a stream was created");
}

/// A namespace whose snapshot bucket is gone is refused, and the bucket is not re-created:
/// `with_client` would create it, which a read-only user may not do (and should not try).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_snapshot_bucket_is_a_typed_error_and_is_not_created() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let writer = JetStreamEventStore::connect(&server.url(), ns("bank"))
        .await
        .expect("a writer creates the namespace");
    writer
        .save_event(Event::new(ActorId::new("acct-1").unwrap(), "Opened", 1))
        .await
        .expect("save");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    js.delete_key_value(snapshot_bucket(&ns("bank")))
        .await
        .expect("delete the bucket");
    let before = streams(&client).await;
    assert!(
        !before.iter().any(|(name, _)| name.starts_with("KV_")),
        "{before:?}"
    );

    let opened =
        JetStreamEventStore::open_existing(client.clone(), ns("bank"), JetStreamConfig::default())
            .await;
    match opened {
        Err(e @ OpenExistingError::NoSnapshotBucket { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains("aether-snap-bank"), "{shown}");
        }
        other => panic!("expected NoSnapshotBucket, got {:?}", other.map(|_| ())),
    }
    assert_eq!(streams(&client).await, before, "a stream was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_before_asking_the_server() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let client = async_nats::connect(server.url()).await.expect("connect");
    let config = JetStreamConfig {
        request_timeout: std::time::Duration::ZERO,
        ..JetStreamConfig::default()
    };
    let refused = JetStreamEventStore::open_existing(client, ns("bank"), config).await;
    assert!(
        matches!(
            refused,
            Err(OpenExistingError::Store(
                aether_core::StoreError::InvalidConfig(_)
            ))
        ),
        "{:?}",
        refused.map(|_| ())
    );
}
