//! Regression tests from a review of the JetStream store: stale head hints on the atomic-batch
//! duplicate path (10201), stream limits that would drop history, and inputs that used to panic.

use std::time::Duration;

use aether_core::{ActorId, Event, EventStore, Namespace, SaveOutcome, SnapshotStore, StoreError};
use aether_nats::naming::{snapshot_bucket, snapshot_key, stream_name, stream_subjects};
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::NatsServer;

fn namespace() -> Namespace {
    Namespace::new(format!("probe-{}", uuid::Uuid::now_v7().simple())).expect("namespace")
}

async fn open(url: &str, namespace: &Namespace) -> JetStreamEventStore {
    JetStreamEventStore::connect(url, namespace.clone())
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"))
}

/// Handle `a` caches head v1; handle `b` then writes v2 and the batch [v3, v4]. Resending that
/// exact batch through `a` must be a duplicate, as it is through `b` or a fresh handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_a_stored_batch_through_a_stale_hint_is_a_duplicate() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let (a, b) = (
        open(&server.url(), &ns).await,
        open(&server.url(), &ns).await,
    );
    let actor = ActorId::new("cart").expect("actor");
    a.save_event(Event::new(actor.clone(), "Opened", 1))
        .await
        .expect("v1");
    b.save_event(Event::new(actor.clone(), "Added", 2))
        .await
        .expect("v2");
    let batch = vec![
        Event::new(actor.clone(), "Added", 3),
        Event::new(actor.clone(), "Added", 4),
    ];
    assert_eq!(
        b.save_events(batch.clone()).await.expect("batch"),
        SaveOutcome::Saved
    );
    let resent = a.save_events(batch).await;
    assert!(
        matches!(resent, Ok(SaveOutcome::Duplicate)),
        "expected Duplicate, got {resent:?}"
    );
}

/// As above, but the resent batch shares only its first event with the stored one: its second
/// event was never stored, so the answer must be a conflict, not a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sharing_only_its_first_event_with_a_stored_one_is_a_conflict() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let (a, b) = (
        open(&server.url(), &ns).await,
        open(&server.url(), &ns).await,
    );
    let actor = ActorId::new("cart").expect("actor");
    a.save_event(Event::new(actor.clone(), "Opened", 1))
        .await
        .expect("v1");
    let stored = vec![
        Event::new(actor.clone(), "Added", 2),
        Event::new(actor.clone(), "Added", 3),
    ];
    b.save_events(stored.clone()).await.expect("batch");
    let other = vec![stored[0].clone(), Event::new(actor.clone(), "Removed", 3)];
    let result = a.save_events(other.clone()).await;
    let history = a.events(&actor, 0).await.expect("replay");
    assert!(
        !history.iter().any(|e| e.id == other[1].id),
        "the second event cannot have been stored"
    );
    assert!(
        matches!(result, Err(StoreError::VersionConflict { .. })),
        "expected VersionConflict (its v3 was not stored), got {result:?}"
    );
}

/// A pre-existing stream that keeps only the last 2 messages per subject passes the store's
/// checks; replay then silently returns a partial history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_drops_history_is_refused_or_replay_fails() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream_name(&ns),
        subjects: vec![stream_subjects(&ns)],
        allow_direct: true,
        allow_atomic_publish: true,
        deny_delete: true,
        max_messages_per_subject: 2,
        ..Default::default()
    })
    .await
    .expect("pre-create stream");
    let Ok(store) = JetStreamEventStore::connect(&server.url(), ns).await else {
        return; // refused: fine
    };
    let actor = ActorId::new("acc").expect("actor");
    for v in 1..=3 {
        store
            .save_event(Event::new(actor.clone(), "Ticked", v))
            .await
            .expect("save");
    }
    let replay = store.events(&actor, 0).await;
    assert!(
        !matches!(&replay, Ok(events) if events.len() < 3),
        "partial history returned as complete: {:?}",
        replay.map(|e| e.iter().map(|e| e.version).collect::<Vec<_>>())
    );
}

/// A snapshot value whose recorded stream sequence is `u64::MAX` (written by a foreign client)
/// must give an error or a full replay, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_sequence_does_not_panic() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let store = open(&server.url(), &ns).await;
    let actor = ActorId::new("acc").expect("actor");
    store
        .save_event(Event::new(actor.clone(), "Ticked", 1))
        .await
        .expect("save");
    let js = async_nats::jetstream::new(store.client().clone());
    let kv = js
        .get_key_value(snapshot_bucket(&ns))
        .await
        .expect("bucket");
    let value = serde_json::json!({
        "snapshot": aether_core::ActorSnapshot::new(actor.clone(), 1, serde_json::json!({})),
        "streamSequence": u64::MAX,
    });
    kv.put(
        snapshot_key(&actor),
        serde_json::to_vec(&value).expect("json").into(),
    )
    .await
    .expect("put");
    let handle = tokio::spawn(async move { store.load(&actor).await.map(drop) });
    let joined = handle.await;
    assert!(joined.is_ok(), "load panicked: {joined:?}");
    // A snapshot ahead of the actor's events is an error, not a load.
    assert!(
        matches!(joined, Ok(Err(StoreError::Backend { .. }))),
        "{joined:?}"
    );
}

/// `retry_timeout: Duration::MAX` ("retry forever") must not panic when opening or saving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_timeout_does_not_panic() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let handle = tokio::spawn(async move {
        let config = JetStreamConfig {
            retry_timeout: Duration::MAX,
            ..JetStreamConfig::default()
        };
        let store = JetStreamEventStore::connect_with(&url, namespace(), config)
            .await
            .expect("open");
        let actor = ActorId::new("acc").expect("actor");
        store
            .save_event(Event::new(actor, "Ticked", 1))
            .await
            .map(drop)
    });
    let joined = handle.await;
    assert!(joined.is_ok(), "panicked: {joined:?}");
}

/// The bounded floor lookup (ADR 0004 §1) walks back through the
/// `Nats-Expected-Last-Subject-Sequence` each stored record carries: the server must keep that
/// header, and a conflict below the head must still name the current version and a resend
/// below the head must still be a duplicate, from a handle that wrote nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_records_name_their_predecessor_and_stale_saves_settle_through_them() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let (writer, other) = (
        open(&server.url(), &ns).await,
        open(&server.url(), &ns).await,
    );
    let actor = ActorId::new("walked").expect("actor");
    let noise = ActorId::new("noise").expect("actor");
    let mut events = Vec::new();
    for v in 1..=12 {
        let event = Event::new(actor.clone(), "Ticked", v);
        writer.save_event(event.clone()).await.expect("save");
        writer
            .save_event(Event::new(noise.clone(), "Ticked", v))
            .await
            .expect("noise");
        events.push(event);
    }
    let client = async_nats::connect(server.url()).await.expect("connect");
    let stream = async_nats::jetstream::new(client)
        .get_stream(stream_name(&ns))
        .await
        .expect("stream");
    let subject = aether_nats::naming::actor_subject(&ns, &actor);
    let head = stream
        .direct_get_last_for_subject(subject.clone())
        .await
        .expect("head");
    let prev: u64 = head
        .headers
        .get("Nats-Expected-Last-Subject-Sequence")
        .expect("the server keeps the expected-sequence header")
        .as_str()
        .parse()
        .expect("a number");
    let before = stream
        .direct_get_next_for_subject(subject, Some(prev))
        .await
        .expect("predecessor");
    assert_eq!(
        before.sequence, prev,
        "it names the subject's previous message"
    );

    for handle in [&other, &writer] {
        for v in [1, 2, 5, 11] {
            match handle
                .save_event(Event::new(actor.clone(), "Ticked", v))
                .await
            {
                Err(StoreError::VersionConflict {
                    current_version: 12,
                    ..
                }) => {}
                other => panic!("v{v}: expected a conflict at 12, got {other:?}"),
            }
            assert_eq!(
                handle.save_event(events[v as usize - 1].clone()).await.ok(),
                Some(SaveOutcome::Duplicate),
                "resending v{v}"
            );
        }
    }
}

/// `events(actor, from)` with `from > 1` and `load` with a snapshot replay from after the last
/// event they skip, not from the actor's first record (issue 14): the ordered consumer they
/// create starts there. Watched from a spy connection on the consumer-create API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reads_start_after_the_skipped_events_not_at_the_first() {
    use aether_core::{ActorSnapshot, SnapshotStore};
    use futures::StreamExt;

    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let store = open(&server.url(), &ns).await;
    let actor = ActorId::new("tail").expect("actor");
    let noise = ActorId::new("noise").expect("actor");
    let mut seqs = vec![0];
    let client = async_nats::connect(server.url()).await.expect("connect");
    let stream = async_nats::jetstream::new(client.clone())
        .get_stream(stream_name(&ns))
        .await
        .expect("stream");
    let subject = aether_nats::naming::actor_subject(&ns, &actor);
    for v in 1..=10 {
        store
            .save_event(Event::new(actor.clone(), "Ticked", v))
            .await
            .expect("save");
        store
            .save_event(Event::new(noise.clone(), "Ticked", v))
            .await
            .expect("noise");
        let head = stream
            .direct_get_last_for_subject(subject.clone())
            .await
            .expect("head");
        seqs.push(head.sequence);
    }
    let mut spy = client
        .subscribe("$JS.API.CONSUMER.CREATE.>")
        .await
        .expect("spy");
    client.flush().await.expect("flush");
    let mut next_start = async || {
        let request = tokio::time::timeout(std::time::Duration::from_secs(10), spy.next())
            .await
            .expect("a consumer was created")
            .expect("spy open");
        let body: serde_json::Value = serde_json::from_slice(&request.payload).expect("json");
        body["config"]["opt_start_seq"].as_u64().unwrap_or(1)
    };

    let tail = store.events(&actor, 8).await.expect("events");
    assert_eq!(
        tail.iter().map(|e| e.version).collect::<Vec<_>>(),
        [8, 9, 10]
    );
    assert_eq!(
        next_start().await,
        seqs[7] + 1,
        "events(actor, 8) starts after v7"
    );

    store
        .save_snapshot(ActorSnapshot::new(actor.clone(), 6, serde_json::json!({})))
        .await
        .expect("snapshot");
    let loaded = store.load(&actor).await.expect("load");
    assert_eq!(loaded.events.len(), 4);
    assert_eq!(
        next_start().await,
        seqs[6] + 1,
        "load starts after the snapshot's v6"
    );
}
