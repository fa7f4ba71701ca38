//! The store fails closed: a record it cannot read never lets it write over that record's
//! version, and its stream refuses purges.

use aether_core::{ActorId, ErrorKind, Event, EventStore, Namespace, SnapshotStore, StoreError};
use aether_nats::naming::{actor_subject, stream_name, stream_subjects};
use aether_nats::{JetStreamConfig, JetStreamEventStore, VERSION_HEADER};
use aether_testkit::nats_server::NatsServer;
use async_nats::jetstream;

fn namespace() -> Namespace {
    Namespace::new(format!("closed-{}", uuid::Uuid::now_v7().simple())).expect("namespace")
}

async fn open(url: &str, namespace: &Namespace) -> JetStreamEventStore {
    JetStreamEventStore::connect(url, namespace.clone())
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"))
}

/// Publishes `payload` on `actor`'s subject with an `Aether-Version` header, as a newer build
/// (or a buggy client) could; returns its stream sequence.
async fn publish_versioned(
    url: &str,
    ns: &Namespace,
    actor: &ActorId,
    version: u64,
    payload: Vec<u8>,
) -> u64 {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(VERSION_HEADER, version.to_string());
    js.publish_with_headers(actor_subject(ns, actor), headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("ack")
        .sequence
}

/// A v5 record whose actor id has 300 characters: valid JSON, but not an event this build
/// accepts.
fn undecodable_v5() -> Vec<u8> {
    let long = "a".repeat(300);
    format!(
        r#"{{"id":"future-5","eventType":"Opened","actorId":"{long}","version":5,"data":{{}},"timestamp":"2026-01-01T00:00:00Z"}}"#
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_versioned_record_blocks_saves_of_its_version() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let store = open(&server.url(), &ns).await;
    let actor = ActorId::new("ledger").expect("actor");
    for v in 1..=4 {
        store
            .save_event(Event::new(actor.clone(), "Posted", v))
            .await
            .expect("save");
    }
    let seq = publish_versioned(&server.url(), &ns, &actor, 5, undecodable_v5()).await;

    let assert_refused = |what: &str, result: Result<String, StoreError>| match result {
        Err(StoreError::UndecodableRecord {
            ref actor_id,
            position,
            claimed_version: Some(5),
            ..
        }) if *actor_id == actor && position == seq => {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Infrastructure);
        }
        other => panic!("{what}: expected UndecodableRecord at sequence {seq}, got {other:?}"),
    };
    // The handle that wrote v4 (head cached) and a fresh one both refuse.
    let fresh = open(&server.url(), &ns).await;
    for handle in [&store, &fresh] {
        assert_refused(
            "save_event(v5)",
            handle
                .save_event(Event::new(actor.clone(), "Posted", 5))
                .await
                .map(|o| format!("{o:?}")),
        );
        assert_refused(
            "save_events([v5, v6])",
            handle
                .save_events(vec![
                    Event::new(actor.clone(), "Posted", 5),
                    Event::new(actor.clone(), "Posted", 6),
                ])
                .await
                .map(|o| format!("{o:?}")),
        );
        assert_refused(
            "latest_version",
            handle.latest_version(&actor).await.map(|v| v.to_string()),
        );
    }
    // Nothing was written after the foreign record.
    let replay = fresh.events_with_errors(&actor, 0).await.expect("replay");
    assert_eq!(replay.events.len(), 4);
    assert_eq!(
        replay.errors.iter().map(|e| e.position).collect::<Vec<_>>(),
        [seq],
        "exactly the foreign record is reported, nothing was stored after it"
    );
    let loaded = fresh.load(&actor).await.expect("load");
    assert_eq!(loaded.events.len(), 4);
    assert_eq!(loaded.errors.len(), 1, "load reports the hole: {loaded:?}");
    assert_eq!(loaded.errors[0].position, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_refuse_purges() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let store = open(&server.url(), &ns).await;
    let actor = ActorId::new("ledger").expect("actor");
    for v in 1..=3 {
        store
            .save_event(Event::new(actor.clone(), "Posted", v))
            .await
            .expect("save");
    }
    // A raw purge request, as any client with access to the API could send; also one filtered
    // to the actor's subject.
    let client = async_nats::connect(server.url()).await.expect("connect");
    let api = format!("$JS.API.STREAM.PURGE.{}", stream_name(&ns));
    for body in [
        String::new(),
        format!(r#"{{"filter":"{}"}}"#, actor_subject(&ns, &actor)),
    ] {
        let reply = client
            .request(api.clone(), body.clone().into())
            .await
            .expect("purge request answered");
        let reply: serde_json::Value = serde_json::from_slice(&reply.payload).expect("json");
        assert!(
            reply.get("error").is_some() && reply.get("success") != Some(&true.into()),
            "purge {body:?} must be refused, got {reply}"
        );
    }
    assert_eq!(store.events(&actor, 0).await.expect("events").len(), 3);
    assert_eq!(store.latest_version(&actor).await.expect("latest"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_purgeable_stream_is_refused_unless_opted_out() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client)
        .create_stream(jetstream::stream::Config {
            name: stream_name(&ns),
            subjects: vec![stream_subjects(&ns)],
            allow_direct: true,
            allow_atomic_publish: true,
            deny_delete: true,
            deny_purge: false,
            ..Default::default()
        })
        .await
        .expect("create a purgeable stream");
    match JetStreamEventStore::connect(&server.url(), ns.clone())
        .await
        .map(drop)
    {
        Err(e @ StoreError::Backend { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("deny_purge") && text.contains("allow_purgeable_stream"),
                "the error names the setting and the opt-out: {text}"
            );
        }
        other => panic!("expected a Backend error naming deny_purge, got {other:?}"),
    }
    let config = JetStreamConfig {
        allow_purgeable_stream: true,
        ..JetStreamConfig::default()
    };
    let store = JetStreamEventStore::connect_with(&server.url(), ns, config)
        .await
        .expect("opted out");
    let actor = ActorId::new("ledger").expect("actor");
    store
        .save_event(Event::new(actor.clone(), "Posted", 1))
        .await
        .expect("save");
}
