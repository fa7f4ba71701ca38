//! Isolation and bad input for the JetStream event store, against a real `nats-server`:
//!
//! - namespaces that differ only in characters the naming escapes (`a.b`, `a_b`, `a-b`, `A.b`,
//!   `a_2eb`) get distinct streams and never see each other's events or snapshots;
//! - hostile actor ids (`x.*`, `x.>`, `a b`, `..`, …) never become an [`ActorId`]; ids that are
//!   valid but need escaping each get their own literal subject, checked through the store and
//!   through raw NATS (a core subscriber, an ordered consumer and the stream's subject counts);
//! - records a foreign client publishes on an actor's subject are reported by
//!   `events_with_errors`, skipped by `events`, and never disturb versions or later saves;
//! - every input rule of every write entry point yields a typed error and leaves the stream and
//!   the snapshot bucket untouched.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aether_core::{
    ActorId, ActorSnapshot, Event, EventId, EventStore, InvalidEvent, InvalidSnapshot, NameKind,
    NameRule, Namespace, SaveOutcome, SnapshotStore, StoreError, Version,
};
use aether_nats::{JetStreamEventStore, naming};
use aether_testkit::nats_server::NatsServer;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use serde_json::json;

fn start_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

async fn open(url: &str, namespace: &str) -> JetStreamEventStore {
    let namespace = Namespace::new(namespace).expect("valid namespace");
    JetStreamEventStore::connect(url, namespace)
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"))
}

/// A JetStream context on its own connection: a foreign client that knows nothing of Aether.
async fn raw_client(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("raw connect to {url}: {e}"));
    let js = jetstream::new(client.clone());
    (client, js)
}

fn actor(id: &str) -> ActorId {
    ActorId::new(id).unwrap_or_else(|e| panic!("{e}"))
}

/// An event whose data says where it belongs, so a leak shows up in the payload.
fn tagged(actor_id: &ActorId, version: Version, tag: &str) -> Event {
    Event::builder(actor_id.clone(), "Tagged")
        .version(version)
        .data(&json!({ "tag": tag, "version": version }))
        .expect("json data")
        .build()
}

fn tag_of(event: &Event) -> &str {
    event.data["tag"].as_str().expect("tagged event")
}

/// `(messages, last sequence)` of a stream, read by the raw client.
async fn stream_state(js: &jetstream::Context, stream: &str) -> (u64, u64) {
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    let info = stream.info().await.expect("stream info");
    (info.state.messages, info.state.last_sequence)
}

/// Every subject of a stream matching `filter` and how many messages it holds, as the server
/// counts them.
async fn subject_counts(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> BTreeMap<String, usize> {
    let stream = js.get_stream(stream).await.expect("stream exists");
    let mut subjects = stream
        .info_with_subjects(filter)
        .await
        .expect("stream info with subjects");
    let mut counts = BTreeMap::new();
    while let Some(entry) = subjects.next().await {
        let (subject, count) = entry.expect("subject entry");
        counts.insert(subject, count);
    }
    counts
}

/// Every message of a stream on `filter`, through an ordered consumer: `(subject, payload)`.
async fn read_all(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> Vec<(String, bytes::Bytes)> {
    let stream = js.get_stream(stream).await.expect("stream exists");
    let (_, last) = stream_state(js, &stream.cached_info().config.name).await;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("consumer messages");
    let mut out = Vec::new();
    if last == 0 {
        return out;
    }
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("ordered consumer stalled")
            .expect("ordered consumer ended")
            .expect("ordered consumer message");
        let seq = message.info().expect("jetstream message").stream_sequence;
        out.push((message.subject.to_string(), message.payload.clone()));
        if seq >= last {
            return out;
        }
    }
}

/// Publishes `payload` (no Aether headers) on `subject` as a foreign client, and returns the
/// stream sequence it was stored at.
async fn publish_foreign(js: &jetstream::Context, subject: &str, payload: &[u8]) -> u64 {
    publish_raw(js, subject, None, payload).await
}

/// Publishes `payload` with `headers` (if any) and returns the stream sequence it was stored at.
async fn publish_raw(
    js: &jetstream::Context,
    subject: &str,
    headers: Option<async_nats::HeaderMap>,
    payload: &[u8],
) -> u64 {
    let payload = payload.to_vec().into();
    let sent = match headers {
        Some(headers) => {
            js.publish_with_headers(subject.to_owned(), headers, payload)
                .await
        }
        None => js.publish(subject.to_owned(), payload).await,
    };
    sent.expect("publish").await.expect("publish ack").sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespaces_differing_only_in_escaped_characters_never_share_events() {
    let server = start_server();
    let url = server.url();
    let (_client, js) = raw_client(&url).await;
    let names = ["a.b", "a_b", "a-b", "A.b", "a_2eb"];
    let shared = actor("shared.actor");

    // Namespace i gets i + 1 events (and a snapshot), all tagged with its name.
    let first = open(&url, names[0]).await;
    let mut stores = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let store = if i % 2 == 0 {
            first
                .for_namespace(Namespace::new(name).unwrap())
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        } else {
            open(&url, name).await // its own connection
        };
        for v in 1..=i as Version + 1 {
            let outcome = store.save_event(tagged(&shared, v, name)).await.unwrap();
            assert_eq!(outcome, SaveOutcome::Saved, "{name} v{v}");
        }
        let state = json!({ "tag": name });
        store
            .save_snapshot(ActorSnapshot::new(shared.clone(), 1, state))
            .await
            .unwrap();
        stores.push(store);
    }

    let streams: BTreeSet<&str> = stores.iter().map(|s| s.stream_name()).collect();
    assert_eq!(
        streams.len(),
        names.len(),
        "stream names collide: {streams:?}"
    );

    for (i, (name, store)) in names.iter().zip(&stores).enumerate() {
        let expected = i as Version + 1;
        assert_eq!(store.namespace().as_str(), *name);
        assert_eq!(
            store.latest_version(&shared).await.unwrap(),
            expected,
            "{name}"
        );
        let replay = store.events_with_errors(&shared, 0).await.unwrap();
        assert!(replay.errors.is_empty(), "{name}: {:?}", replay.errors);
        let versions: Vec<Version> = replay.events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=expected).collect::<Vec<_>>(), "{name}");
        for event in &replay.events {
            assert_eq!(
                tag_of(event),
                *name,
                "{name} read another namespace's event"
            );
        }
        let snapshot = store.latest_snapshot(&shared).await.unwrap().unwrap();
        assert_eq!(
            snapshot.state["tag"], *name,
            "{name} read a foreign snapshot"
        );
        let loaded = store.load(&shared).await.unwrap();
        assert!(loaded.events.iter().all(|e| tag_of(e) == *name), "{name}");

        // The raw view: the stream holds exactly this namespace's messages on one subject,
        // and is configured for this namespace only.
        let ns = store.namespace();
        let stream_name = store.stream_name();
        assert_eq!(stream_name, naming::stream_name(ns));
        let mut stream = js.get_stream(stream_name).await.unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.subjects, vec![naming::stream_subjects(ns)]);
        assert_eq!(
            info.config
                .metadata
                .get("aether.namespace")
                .map(String::as_str),
            Some(*name)
        );
        assert_eq!(info.state.messages, expected, "{name}");
        let subjects = subject_counts(&js, stream_name, ">").await;
        let own = naming::actor_subject(ns, &shared);
        assert_eq!(subjects, BTreeMap::from([(own, i + 1)]), "{name}");
    }

    // A namespace nobody wrote sees nothing, though its name is close to all of the above.
    for quiet in ["ab", "a.B", "a.b.c"] {
        let store = first
            .for_namespace(Namespace::new(quiet).unwrap())
            .await
            .unwrap();
        assert_eq!(store.latest_version(&shared).await.unwrap(), 0, "{quiet}");
        assert!(
            store.events(&shared, 0).await.unwrap().is_empty(),
            "{quiet}"
        );
        assert!(store.latest_snapshot(&shared).await.unwrap().is_none());
        assert_eq!(stream_state(&js, store.stream_name()).await, (0, 0));
    }

    // Writing more to one namespace moves only its own version.
    stores[0]
        .save_event(tagged(&shared, 10, names[0]))
        .await
        .unwrap();
    for (i, store) in stores.iter().enumerate() {
        let expected = if i == 0 { 10 } else { i as Version + 1 };
        assert_eq!(store.latest_version(&shared).await.unwrap(), expected);
    }
    drop(server);
}

#[tokio::test]
async fn hostile_actor_ids_are_rejected_before_anything_is_written() {
    let hostile = [
        "x.*", "x.>", "*", ">", "a b", "..", ".", "", "x.", ".x", "a\tb", "a\nb", "a\u{0}b",
    ];
    for id in hostile {
        let err = ActorId::new(id).expect_err(id);
        assert_eq!(err.kind(), NameKind::ActorId, "{id:?}");
        assert_eq!(err.name(), id, "{id:?}");
        let expected_rule = match id {
            "x.*" | "x.>" => matches!(err.rule(), NameRule::WildcardToken { index: 1, .. }),
            "*" | ">" => matches!(err.rule(), NameRule::WildcardToken { index: 0, .. }),
            "" => err.rule() == &NameRule::Empty,
            ".." | "." | "x." | ".x" => matches!(err.rule(), NameRule::EmptyToken { .. }),
            _ => matches!(err.rule(), NameRule::ForbiddenChar { .. }),
        };
        assert!(expected_rule, "{id:?}: {:?}", err.rule());
        // Nor can a hostile id sneak in through an event decoded from JSON.
        let smuggled = json!({
            "id": EventId::generate().to_string(), "eventType": "Opened", "actorId": id,
            "version": 1, "data": {}, "timestamp": "2024-01-01T00:00:00Z",
        });
        assert!(serde_json::from_value::<Event>(smuggled).is_err(), "{id:?}");
    }
    let too_long = "a".repeat(ActorId::MAX_LEN + 1);
    assert!(matches!(
        ActorId::new(&too_long).unwrap_err().rule(),
        NameRule::TooLong { len: 256, max: 255 }
    ));

    // The valid shape of the same JSON does decode, so the rejections above are about the id.
    let fine = json!({
        "id": EventId::generate().to_string(), "eventType": "Opened", "actorId": "x.y",
        "version": 1, "data": {}, "timestamp": "2024-01-01T00:00:00Z",
    });
    serde_json::from_value::<Event>(fine).expect("a valid event decodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ids_that_need_escaping_each_get_their_own_subject() {
    let server = start_server();
    let url = server.url();
    let (client, js) = raw_client(&url).await;
    let store = open(&url, "escape.test").await;
    let ns = store.namespace().clone();
    let long_a = "A".repeat(ActorId::MAX_LEN);
    let long_b = format!("{}B", "A".repeat(ActorId::MAX_LEN - 1));
    let ids: Vec<&str> = vec![
        "a.b",
        "a_b",
        "a-b",
        "a*b",
        "a>b",
        "a_2eb", // the naive escape of "a.b"
        "_2e",
        "_41", // the escape of "A"
        "A",
        "a",
        "ünïcödé",
        "日本.語",
        "x.y.z",
        "user@example.com",
        &long_a,
        &long_b,
    ];
    let actors: Vec<ActorId> = ids.iter().map(|id| actor(id)).collect();
    assert_eq!(actors[14].as_str().len(), 255);

    let subjects: BTreeSet<String> = actors
        .iter()
        .map(|a| naming::actor_subject(&ns, a))
        .collect();
    assert_eq!(
        subjects.len(),
        actors.len(),
        "naming collides: {subjects:?}"
    );

    // A core subscriber on the namespace's wildcard sees every write as it happens.
    let mut live = client
        .subscribe(naming::stream_subjects(&ns))
        .await
        .unwrap();
    client.flush().await.unwrap();

    for a in &actors {
        for v in 1..=2 {
            store.save_event(tagged(a, v, a.as_str())).await.unwrap();
        }
    }

    // Through the store: each actor reads back only its own events.
    for a in &actors {
        assert_eq!(store.latest_version(a).await.unwrap(), 2, "{a}");
        let replay = store.events_with_errors(a, 0).await.unwrap();
        assert!(replay.errors.is_empty(), "{a}: {:?}", replay.errors);
        assert_eq!(replay.events.len(), 2, "{a}");
        for event in &replay.events {
            assert_eq!(&event.actor_id, a);
            assert_eq!(tag_of(event), a.as_str(), "{a} read another actor's event");
        }
    }

    let expect_per_subject = |seen: &BTreeMap<String, usize>, how: &str| {
        assert_eq!(seen.len(), actors.len(), "{how}: {seen:?}");
        for a in &actors {
            let subject = naming::actor_subject(&ns, a);
            assert_eq!(seen.get(&subject), Some(&2), "{how}: {a} on {subject}");
            assert_eq!(naming::actor_of_subject(&ns, &subject).as_ref(), Some(a));
            let tokens: Vec<&str> = subject.split('.').collect();
            assert_eq!(tokens.len(), 3, "{subject}");
            assert!(
                tokens
                    .iter()
                    .all(|t| !t.is_empty() && *t != "*" && *t != ">")
            );
        }
    };

    // The core subscriber: exactly one distinct subject per actor, and each message's payload
    // belongs to the actor its subject names.
    let mut live_counts = BTreeMap::new();
    for _ in 0..actors.len() * 2 {
        let message = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("live subscriber stalled")
            .expect("live subscription ended");
        let event: Event = serde_json::from_slice(&message.payload).unwrap();
        let owner = naming::actor_of_subject(&ns, &message.subject).unwrap();
        assert_eq!(event.actor_id, owner);
        *live_counts.entry(message.subject.to_string()).or_insert(0) += 1;
    }
    expect_per_subject(&live_counts, "core subscriber");

    // An ordered consumer over the whole stream: the same picture, from storage.
    let stored = read_all(&js, store.stream_name(), &naming::stream_subjects(&ns)).await;
    let mut stored_counts = BTreeMap::new();
    for (subject, payload) in &stored {
        let event: Event = serde_json::from_slice(payload).unwrap();
        assert_eq!(
            Some(&event.actor_id),
            naming::actor_of_subject(&ns, subject).as_ref()
        );
        *stored_counts.entry(subject.clone()).or_insert(0) += 1;
    }
    expect_per_subject(&stored_counts, "ordered consumer");

    // The server's own per-subject counts.
    let counts = subject_counts(&js, store.stream_name(), &naming::stream_subjects(&ns)).await;
    expect_per_subject(&counts, "stream info");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_records_are_reported_skipped_and_never_disturb_versions() {
    let server = start_server();
    let url = server.url();
    let (_client, js) = raw_client(&url).await;
    let store = open(&url, "garbage.test").await;
    let ns = store.namespace().clone();
    let acct = actor("acct.1");
    let subject = naming::actor_subject(&ns, &acct);

    store.save_event(tagged(&acct, 1, "ok")).await.unwrap();
    store.save_event(tagged(&acct, 2, "ok")).await.unwrap();

    // Garbage as the very last message on the subject.
    let garbage1: &[u8] = b"\x00\xff\xfe not an event \x7f";
    let seq1 = publish_foreign(&js, &subject, garbage1).await;
    assert_eq!(
        store.latest_version(&acct).await.unwrap(),
        2,
        "garbage is not a version"
    );
    let replay = store.events_with_errors(&acct, 0).await.unwrap();
    assert_eq!(
        replay.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(replay.errors.len(), 1, "{:?}", replay.errors);
    assert_eq!(replay.errors[0].position, seq1);
    assert_eq!(replay.errors[0].raw, garbage1);
    assert!(!replay.errors[0].error.is_empty());
    let events = store.events(&acct, 0).await.unwrap();
    assert_eq!(events, replay.events);

    // A stale save still conflicts at the right version; the next one lands.
    match store.save_event(tagged(&acct, 2, "stale")).await {
        Err(StoreError::VersionConflict {
            current_version, ..
        }) => assert_eq!(current_version, 2),
        other => panic!("expected a conflict at v2, got {other:?}"),
    }
    assert_eq!(
        store.save_event(tagged(&acct, 3, "ok")).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(store.latest_version(&acct).await.unwrap(), 3);

    // More kinds of garbage: empty, JSON that is no event, and this actor's event without the
    // headers an Aether store writes, which is not trusted as an event either.
    let unheadered = serde_json::to_vec(&tagged(&acct, 4, "forged")).unwrap();
    let empty: &[u8] = b"";
    let not_event: &[u8] = br#"{"hello":"world"}"#;
    let mut foreign = vec![(seq1, garbage1.to_vec())];
    for payload in [empty, not_event, &unheadered] {
        let seq = publish_foreign(&js, &subject, payload).await;
        foreign.push((seq, payload.to_vec()));
        assert_eq!(store.latest_version(&acct).await.unwrap(), 3);
    }
    // A fresh handle (no cached head) must step over the foreign records too.
    let fresh = open(&url, "garbage.test").await;
    assert_eq!(fresh.latest_version(&acct).await.unwrap(), 3);
    assert_eq!(
        fresh.save_event(tagged(&acct, 4, "ok")).await.unwrap(),
        SaveOutcome::Saved
    );
    // And the first handle, whose cached head is now stale, too (its batch path).
    let batch = vec![tagged(&acct, 5, "ok"), tagged(&acct, 6, "ok")];
    assert_eq!(store.save_events(batch).await.unwrap(), SaveOutcome::Saved);

    let replay = store.events_with_errors(&acct, 0).await.unwrap();
    let versions: Vec<Version> = replay.events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    assert!(
        replay.events.iter().all(|e| tag_of(e) == "ok"),
        "a forged event leaked"
    );
    let reported: Vec<(u64, Vec<u8>)> = replay
        .errors
        .iter()
        .map(|e| (e.position, e.raw.clone()))
        .collect();
    assert_eq!(reported, foreign);
    assert_eq!(store.events(&acct, 0).await.unwrap(), replay.events);
    let tail = store.events(&acct, 4).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.version).collect::<Vec<_>>(),
        [4, 5, 6]
    );

    // An actor whose only record is garbage: version 0, and the first save lands at v1.
    let lonely = actor("acct.2");
    let lonely_subject = naming::actor_subject(&ns, &lonely);
    let seq = publish_foreign(&js, &lonely_subject, b"garbage first").await;
    assert_eq!(store.latest_version(&lonely).await.unwrap(), 0);
    assert!(store.events(&lonely, 0).await.unwrap().is_empty());
    let replay = store.events_with_errors(&lonely, 0).await.unwrap();
    assert_eq!(replay.errors.len(), 1);
    assert_eq!(
        (replay.errors[0].position, replay.errors[0].raw.as_slice()),
        (seq, &b"garbage first"[..])
    );
    let outcome = store.save_event(tagged(&lonely, 1, "ok")).await.unwrap();
    assert_eq!(outcome, SaveOutcome::Saved);
    assert_eq!(store.latest_version(&lonely).await.unwrap(), 1);
    // A snapshot over an actor with foreign records still records the right tail.
    publish_foreign(&js, &lonely_subject, b"garbage between").await;
    store.save_event(tagged(&lonely, 2, "ok")).await.unwrap();
    store
        .save_snapshot(ActorSnapshot::new(lonely.clone(), 1, json!({})))
        .await
        .unwrap();
    publish_foreign(&js, &lonely_subject, b"garbage last").await;
    let loaded = store.load(&lonely).await.unwrap();
    let raws: Vec<&[u8]> = loaded.errors.iter().map(|e| e.raw.as_slice()).collect();
    assert_eq!(
        raws,
        [&b"garbage between"[..], b"garbage last"],
        "load reports the foreign records after the snapshot"
    );
    assert_eq!(loaded.snapshot.map(|s| s.version), Some(1));
    assert_eq!(
        loaded.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [2]
    );
    // The other actor was never touched by any of this.
    assert_eq!(store.latest_version(&acct).await.unwrap(), 6);
    drop(server);
}

/// What a write must leave untouched when it is refused.
#[derive(Debug, PartialEq)]
struct Untouched {
    stream: (u64, u64),
    snapshot_values: u64,
    latest_version: Version,
    latest_snapshot: Option<Version>,
}

async fn observe(js: &jetstream::Context, store: &JetStreamEventStore, a: &ActorId) -> Untouched {
    let bucket = naming::snapshot_bucket(store.namespace());
    let kv = js.get_key_value(&bucket).await.expect("snapshot bucket");
    Untouched {
        stream: stream_state(js, store.stream_name()).await,
        snapshot_values: kv.status().await.expect("bucket status").values(),
        latest_version: store.latest_version(a).await.unwrap(),
        latest_snapshot: store.latest_snapshot(a).await.unwrap().map(|s| s.version),
    }
}

/// `event` with its data padded so that its encoded size is exactly `size`.
fn event_of_size(mut event: Event, size: usize) -> Event {
    event.data = serde_json::Map::from_iter([("pad".to_owned(), json!(""))]);
    let base = event.encoded_len();
    assert!(base < size);
    event.data["pad"] = json!("x".repeat(size - base));
    assert_eq!(event.encoded_len(), size);
    event
}

fn snapshot_of_size(mut snapshot: ActorSnapshot, size: usize) -> ActorSnapshot {
    snapshot.state = json!({ "pad": "" });
    let base = snapshot.encoded_len();
    snapshot.state = json!({ "pad": "x".repeat(size - base) });
    assert_eq!(snapshot.encoded_len(), size);
    snapshot
}

/// Whether a rejection names the rule a case breaks.
type Expected = Box<dyn Fn(&InvalidEvent) -> bool>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    let server = start_server();
    let url = server.url();
    let (_client, js) = raw_client(&url).await;
    let store = open(&url, "bad.input").await;
    let limits = store.limits();
    let a = actor("acct.bad");
    let b = actor("acct.other");
    let never = actor("acct.never-written");

    store.save_event(tagged(&a, 1, "ok")).await.unwrap();
    store.save_event(tagged(&a, 2, "ok")).await.unwrap();
    store
        .save_snapshot(ActorSnapshot::new(a.clone(), 1, json!({})))
        .await
        .unwrap();
    let before = observe(&js, &store, &a).await;
    assert_eq!(before.stream.0, 2);
    assert_eq!(before.latest_version, 2);
    assert_eq!(before.snapshot_values, 1);
    let before_never = observe(&js, &store, &never).await;

    let max = limits.max_event_bytes;
    let oversize = event_of_size(tagged(&a, 3, "big"), max + 1);
    let typed = |ty: &str| Event::new(a.clone(), ty, 3);

    // save_event: each input rule.
    let single: Vec<(&str, Event, Expected)> = vec![
        (
            "version 0",
            Event::builder(a.clone(), "Deposited").build(),
            Box::new(|e| *e == InvalidEvent::ZeroVersion),
        ),
        (
            "empty type",
            typed(""),
            Box::new(|e| *e == InvalidEvent::EmptyEventType),
        ),
        (
            "space type",
            typed(" "),
            Box::new(|e| matches!(e, InvalidEvent::EventTypeForbiddenChar { ch: ' ', .. })),
        ),
        (
            "tab type",
            typed("\t"),
            Box::new(|e| matches!(e, InvalidEvent::EventTypeForbiddenChar { ch: '\t', .. })),
        ),
        (
            "inner space",
            typed("Money Deposited"),
            Box::new(|e| matches!(e, InvalidEvent::EventTypeForbiddenChar { index: 5, .. })),
        ),
        (
            "newline type",
            typed("Deposited\n"),
            Box::new(|e| matches!(e, InvalidEvent::EventTypeForbiddenChar { ch: '\n', .. })),
        ),
        (
            "long type",
            typed(&"T".repeat(256)),
            Box::new(|e| matches!(e, InvalidEvent::EventTypeTooLong { len: 256, max: 255 })),
        ),
        (
            "oversize",
            oversize.clone(),
            Box::new(move |e| {
                *e == InvalidEvent::TooLarge {
                    size: max + 1,
                    limit: max,
                }
            }),
        ),
    ];
    for (what, event, expected) in &single {
        match store.save_event(event.clone()).await {
            Err(StoreError::InvalidEvent(e)) => assert!(expected(&e), "{what}: {e:?}"),
            other => panic!("{what}: expected InvalidEvent, got {other:?}"),
        }
        // The same event alone in a batch: the same rule, wrapped with its index.
        match store.save_events(vec![event.clone()]).await {
            Err(StoreError::InvalidEvent(InvalidEvent::InBatch { index: 0, reason })) => {
                assert!(expected(&reason), "{what} in a batch: {reason:?}");
            }
            other => panic!("{what} in a batch: expected InBatch, got {other:?}"),
        }
        // Second in a batch whose first event is fine.
        let mut second = event.clone();
        if second.version != 0 {
            second.version = 4;
        }
        let batch = vec![tagged(&a, 3, "ok"), second];
        match store.save_events(batch).await {
            Err(StoreError::InvalidEvent(InvalidEvent::InBatch { index: 1, reason })) => {
                assert!(expected(&reason), "{what} second in a batch: {reason:?}");
            }
            other => panic!("{what} second in a batch: expected InBatch, got {other:?}"),
        }
        assert_eq!(
            observe(&js, &store, &a).await,
            before,
            "{what} wrote something"
        );
    }

    // save_events: the batch rules.
    let shared_id = EventId::generate();
    let with_id = |v: Version| {
        Event::builder(a.clone(), "Tagged")
            .version(v)
            .id(shared_id.clone())
            .build()
    };
    let batches: Vec<(&str, Vec<Event>, Expected)> = vec![
        (
            "empty batch",
            vec![],
            Box::new(|e| *e == InvalidEvent::EmptyBatch),
        ),
        (
            "mixed actors",
            vec![tagged(&a, 3, "ok"), tagged(&b, 4, "ok")],
            Box::new(|e| matches!(e, InvalidEvent::MixedActors { index: 1, .. })),
        ),
        (
            "equal versions",
            vec![tagged(&a, 3, "ok"), tagged(&a, 3, "ok")],
            Box::new(|e| {
                *e == InvalidEvent::NonIncreasingVersions {
                    index: 1,
                    version: 3,
                    previous: 3,
                }
            }),
        ),
        (
            "decreasing versions",
            vec![
                tagged(&a, 3, "ok"),
                tagged(&a, 5, "ok"),
                tagged(&a, 4, "ok"),
            ],
            Box::new(|e| {
                *e == InvalidEvent::NonIncreasingVersions {
                    index: 2,
                    version: 4,
                    previous: 5,
                }
            }),
        ),
        (
            "repeated id",
            vec![with_id(3), with_id(4)],
            Box::new(|e| {
                matches!(
                    e,
                    InvalidEvent::DuplicateIdInBatch {
                        first: 0,
                        second: 1,
                        ..
                    }
                )
            }),
        ),
        (
            "too long",
            (3..=limits.max_batch_len as Version + 3)
                .map(|v| tagged(&a, v, "ok"))
                .collect(),
            Box::new(move |e| {
                *e == InvalidEvent::BatchTooLong {
                    len: limits.max_batch_len + 1,
                    max: limits.max_batch_len,
                }
            }),
        ),
    ];
    for (what, batch, expected) in batches {
        match store.save_events(batch).await {
            Err(StoreError::InvalidEvent(e)) => assert!(expected(&e), "{what}: {e:?}"),
            other => panic!("{what}: expected InvalidEvent, got {other:?}"),
        }
        assert_eq!(
            observe(&js, &store, &a).await,
            before,
            "{what} wrote something"
        );
    }
    assert_eq!(observe(&js, &store, &b).await.latest_version, 0);

    // save_snapshot: each input rule, for a written actor and for one never written.
    let max_snap = limits.max_snapshot_bytes;
    let snapshots: Vec<(&str, ActorSnapshot, InvalidSnapshot)> = vec![
        (
            "version 0",
            ActorSnapshot::new(a.clone(), 0, json!({})),
            InvalidSnapshot::ZeroVersion,
        ),
        (
            "oversize",
            snapshot_of_size(ActorSnapshot::new(a.clone(), 2, json!({})), max_snap + 1),
            InvalidSnapshot::TooLarge {
                size: max_snap + 1,
                limit: max_snap,
            },
        ),
        (
            "ahead of events",
            ActorSnapshot::new(a.clone(), 3, json!({})),
            InvalidSnapshot::AheadOfEvents {
                actor_id: a.clone(),
                version: 3,
                latest: 2,
            },
        ),
        (
            "far ahead of events",
            ActorSnapshot::new(a.clone(), u64::MAX, json!({})),
            InvalidSnapshot::AheadOfEvents {
                actor_id: a.clone(),
                version: u64::MAX,
                latest: 2,
            },
        ),
    ];
    for (what, snapshot, expected) in snapshots {
        match store.save_snapshot(snapshot).await {
            Err(StoreError::InvalidSnapshot(e)) => assert_eq!(e, expected, "{what}"),
            other => panic!("{what}: expected InvalidSnapshot, got {other:?}"),
        }
        assert_eq!(
            observe(&js, &store, &a).await,
            before,
            "{what} wrote something"
        );
    }
    match store
        .save_snapshot(ActorSnapshot::new(never.clone(), 1, json!({})))
        .await
    {
        Err(StoreError::InvalidSnapshot(InvalidSnapshot::AheadOfEvents { latest: 0, .. })) => {}
        other => panic!("snapshot without events: expected AheadOfEvents, got {other:?}"),
    }
    assert_eq!(observe(&js, &store, &never).await, before_never);
    assert_eq!(observe(&js, &store, &a).await, before);

    // The limits are exact: at the limit, an event and a snapshot are stored.
    let at_limit = event_of_size(tagged(&a, 3, "big"), max);
    assert_eq!(
        store.save_event(at_limit).await.unwrap(),
        SaveOutcome::Saved
    );
    let snap = snapshot_of_size(ActorSnapshot::new(a.clone(), 3, json!({})), max_snap);
    store.save_snapshot(snap).await.unwrap();
    let after = observe(&js, &store, &a).await;
    assert_eq!(after.stream.0, before.stream.0 + 1);
    assert_eq!((after.latest_version, after.latest_snapshot), (3, Some(3)));
    let replay = store.events_with_errors(&a, 3).await.unwrap();
    assert!(replay.errors.is_empty());
    assert_eq!(replay.events.len(), 1);
    assert_eq!(replay.events[0].encoded_len(), max);
    drop(server);
}

/// Publishes `payload` with a forged `Aether-Version` header, as a foreign or buggy client could.
async fn publish_with_version_header(
    js: &jetstream::Context,
    subject: &str,
    version: &str,
    payload: &[u8],
) -> u64 {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(aether_nats::VERSION_HEADER, version);
    publish_raw(js, subject, Some(headers), payload).await
}

/// A foreign record that carries an `Aether-Version` header but is no event (garbage payload)
/// is never taken as the actor's version, and the store fails closed on it: it neither reports
/// a current version nor writes over it (issue 14), since it cannot tell what the record holds.
///
/// Regression: the head lookup used to trust the header without decoding the record, so a
/// forged `Aether-Version: 1` on top of v3 rolled `latest_version` back to 1 and let a second
/// event be stored at v2 (replay: 1, 2, 3, 2), and a forged `Aether-Version: 99` made
/// `latest_version` 99 and accepted a snapshot at v50 that no event backs. Then it fell back to
/// the last decodable event, which let a second v4 be written over an unreadable v4.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_records_with_a_version_header_are_garbage_too() {
    let server = start_server();
    let url = server.url();
    let (_client, js) = raw_client(&url).await;
    let store = open(&url, "forged.header").await;
    let ns = store.namespace().clone();
    let acct = actor("acct.1");
    let subject = naming::actor_subject(&ns, &acct);
    for v in 1..=3 {
        store.save_event(tagged(&acct, v, "ok")).await.unwrap();
    }

    for forged in ["1", "99"] {
        let seq = publish_with_version_header(&js, &subject, forged, b"garbage").await;
        let refused = |what: &str, err: Option<StoreError>| match err {
            Some(StoreError::UndecodableRecord {
                position,
                claimed_version,
                ..
            }) if position == seq && claimed_version == forged.parse().ok() => {}
            other => {
                panic!("{what} over forged {forged}: expected UndecodableRecord, got {other:?}")
            }
        };
        refused("latest_version", store.latest_version(&acct).await.err());
        let fresh = open(&url, "forged.header").await;
        refused(
            "save v2",
            fresh.save_event(tagged(&acct, 2, "twice")).await.err(),
        );
        refused(
            "save v4",
            store.save_event(tagged(&acct, 4, "ok")).await.err(),
        );
        refused(
            "snapshot",
            store
                .save_snapshot(ActorSnapshot::new(acct.clone(), 50, json!({})))
                .await
                .err(),
        );
    }

    let replay = store.events_with_errors(&acct, 0).await.unwrap();
    let versions: Vec<Version> = replay.events.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        [1, 2, 3],
        "nothing was written over the forged records"
    );
    assert_eq!(replay.errors.len(), 2);
    drop(server);
}
