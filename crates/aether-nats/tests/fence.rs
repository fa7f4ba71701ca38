//! The storage fence on JetStream, seen on the wire: what a fence record and an epoch-stamped
//! write store, that a stale writer never writes past a newer owner's fence (the regression
//! test of the "never re-send past a higher-epoch head" check), that a fence at the head is
//! read in one request, and that the store fails closed on fence headers it cannot read.

#[path = "support/spy.rs"]
mod spy;
use spy::spy;

use std::time::Duration;

use aether_core::{
    ActorId, ErrorKind, Event, EventId, EventStore, FencedEventStore, Namespace, OwnerEpoch,
    StoreError,
};
use aether_nats::naming::{actor_subject, stream_name};
use aether_nats::{
    FENCE_HEADER, FENCE_VERSION_HEADER, JetStreamEventStore, OWNER_EPOCH_HEADER, VERSION_HEADER,
};
use aether_testkit::nats_server::NatsServer;
use async_nats::jetstream;
use async_nats::jetstream::message::StreamMessage;
use futures::StreamExt as _;

fn namespace() -> Namespace {
    Namespace::new(format!("fence-{}", uuid::Uuid::now_v7().simple())).expect("namespace")
}

async fn open(url: &str, namespace: &Namespace) -> JetStreamEventStore {
    JetStreamEventStore::connect(url, namespace.clone())
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"))
}

fn epoch(n: u64) -> OwnerEpoch {
    OwnerEpoch::new(n)
}

/// Every message stored on `actor`'s subject, in stream order, read raw (no store code).
async fn raw_records(url: &str, ns: &Namespace, actor: &ActorId) -> Vec<StreamMessage> {
    let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
    let stream = js.get_stream(stream_name(ns)).await.expect("stream");
    let subject = actor_subject(ns, actor);
    let mut records = Vec::new();
    let mut from = 1;
    while let Ok(message) = stream
        .direct_get_next_for_subject(&subject, Some(from))
        .await
    {
        from = message.sequence + 1;
        records.push(message);
    }
    records
}

fn header<'a>(message: &'a StreamMessage, name: &str) -> Option<&'a str> {
    message.headers.get(name).map(|v| v.as_str())
}

fn is_fence(message: &StreamMessage) -> bool {
    header(message, FENCE_HEADER).is_some()
}

/// The regression test of the fence check: handle A caches the head (v1, epoch 1); handle B
/// fences the actor at epoch 2; A's next write at epoch 1 goes out against its stale hint,
/// loses the expected-sequence race, re-reads the head — the fence — and must answer
/// `Fenced` instead of re-sending on top of it. Without the check, A re-sends (v2 is above the
/// fence's version 1) and v2 lands after the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_never_resends_past_a_newer_owners_fence() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = namespace();
    let a = open(&url, &ns).await;
    let b = open(&url, &ns).await;
    let actor = ActorId::new("account-1").expect("actor");
    a.save_events_as(vec![Event::new(actor.clone(), "Opened", 1)], epoch(1))
        .await
        .expect("v1 at epoch 1");
    assert_eq!(b.fence(&actor, epoch(2)).await.expect("fence"), 1);

    let single = a
        .save_events_as(vec![Event::new(actor.clone(), "Deposited", 2)], epoch(1))
        .await;
    assert!(
        matches!(
            single,
            Err(StoreError::Fenced { epoch: e, fenced_by: f, .. }) if e == epoch(1) && f == epoch(2)
        ),
        "a stale single write must be Fenced, got {single:?}"
    );
    let batch = a
        .save_events_as(
            vec![
                Event::new(actor.clone(), "Deposited", 2),
                Event::new(actor.clone(), "Deposited", 3),
            ],
            epoch(1),
        )
        .await;
    assert!(
        matches!(batch, Err(StoreError::Fenced { .. })),
        "a stale batch must be Fenced, got {batch:?}"
    );
    let records = raw_records(&url, &ns, &actor).await;
    let fence_at = records
        .iter()
        .position(is_fence)
        .expect("the fence record is stored");
    assert!(
        records[fence_at + 1..].is_empty(),
        "no record may be stored after the fence, found {:?}",
        records[fence_at + 1..]
            .iter()
            .map(|m| (
                m.sequence,
                header(m, VERSION_HEADER),
                header(m, OWNER_EPOCH_HEADER)
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(records.len(), 2, "v1 and the fence");
    assert_eq!(a.latest_version(&actor).await.expect("latest"), 1);
    assert_eq!(a.latest_epoch(&actor).await.expect("epoch"), epoch(2));
}

/// The record format other clients rely on: a fence is an empty message with `Aether-Fence`,
/// `Aether-Owner-Epoch`, `Aether-Fence-Version`, the expected sequence of the head it fenced,
/// and a `Nats-Msg-Id` no event can have; every message of an epoch-stamped write (an atomic
/// batch too) carries `Aether-Owner-Epoch`; plain writes carry none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_and_epoch_records_on_the_wire() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = namespace();
    let store = open(&url, &ns).await;
    let actor = ActorId::new("order-7").expect("actor");
    store
        .save_event(Event::new(actor.clone(), "Placed", 1))
        .await
        .expect("plain v1");
    assert_eq!(store.fence(&actor, epoch(3)).await.expect("fence"), 1);
    store
        .save_events_as(
            vec![
                Event::new(actor.clone(), "Paid", 2),
                Event::new(actor.clone(), "Packed", 3),
            ],
            epoch(3),
        )
        .await
        .expect("a batch at epoch 3");
    store
        .save_events_as(vec![Event::new(actor.clone(), "Shipped", 4)], epoch(4))
        .await
        .expect("v4 at epoch 4");

    let records = raw_records(&url, &ns, &actor).await;
    assert_eq!(records.len(), 5, "v1, the fence, v2, v3, v4");
    let [plain, fence, v2, v3, v4] = &records[..] else {
        unreachable!()
    };
    assert_eq!(
        header(plain, OWNER_EPOCH_HEADER),
        None,
        "a plain write has no epoch"
    );
    assert_eq!(header(fence, FENCE_HEADER), Some("3"));
    assert_eq!(header(fence, OWNER_EPOCH_HEADER), Some("3"));
    assert_eq!(header(fence, FENCE_VERSION_HEADER), Some("1"));
    assert_eq!(
        header(fence, VERSION_HEADER),
        None,
        "a fence claims no version"
    );
    let expected = plain.sequence.to_string();
    assert_eq!(
        header(fence, "Nats-Expected-Last-Subject-Sequence"),
        Some(expected.as_str()),
        "the fence was written on the head it read"
    );
    assert!(fence.payload.is_empty());
    let id = header(fence, "Nats-Msg-Id").expect("a fence has an id");
    assert!(EventId::new(id).is_err(), "{id:?} could be an event id");
    for (message, version, epoch) in [(v2, "2", "3"), (v3, "3", "3"), (v4, "4", "4")] {
        assert_eq!(header(message, VERSION_HEADER), Some(version));
        assert_eq!(
            header(message, OWNER_EPOCH_HEADER),
            Some(epoch),
            "v{version}"
        );
        assert!(!is_fence(message));
    }
    assert!(
        header(v3, "Nats-Batch-Id").is_some(),
        "v2 and v3 went as one atomic batch"
    );
    // A fence at the epoch of the head writes nothing.
    assert_eq!(store.fence(&actor, epoch(4)).await.expect("fence"), 4);
    assert_eq!(raw_records(&url, &ns, &actor).await.len(), 5);
}

/// A fence at the head is read in one request: the version comes from `Aether-Fence-Version`,
/// not from a scan of the actor's history (which a head without `Aether-Version` would cost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_at_the_head_is_read_in_one_request() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = namespace();
    let writer = open(&url, &ns).await;
    let actor = ActorId::new("fenced-head").expect("actor");
    for version in 1..=3 {
        writer
            .save_event(Event::new(actor.clone(), "Added", version))
            .await
            .expect("seed");
    }
    writer.fence(&actor, epoch(1)).await.expect("fence");
    let reader = open(&url, &ns).await;
    let marker = ActorId::new("marker-actor").expect("actor");

    let mut api = spy(&url, "$JS.API.>", "$JS.API.DIRECT.GET.aether-spy-probe").await;
    assert_eq!(reader.latest_version(&actor).await.expect("latest"), 3);
    assert_eq!(reader.latest_epoch(&actor).await.expect("epoch"), epoch(1));
    // Sent after, on the same connection: the server delivers it after the reads above.
    reader.latest_version(&marker).await.expect("marker read");
    let mut requests = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), api.next())
            .await
            .expect("the marker's read reaches the spy")
            .expect("spy subscription open");
        if message.subject.as_str().contains(marker.as_str()) {
            break;
        }
        requests.push(message.subject.to_string());
    }
    assert_eq!(
        requests.len(),
        2,
        "one head read each for latest_version and latest_epoch, no scan: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|s| s.starts_with("$JS.API.DIRECT.GET.")),
        "{requests:?}"
    );
}

/// Fail closed: a foreign record on top of a fence does not hide the fence's epoch (the head
/// scan finds it), and a fence record whose headers do not parse blocks writes and reads of
/// the head as an undecodable record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_broken_records_do_not_lift_a_fence() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = namespace();
    let store = open(&url, &ns).await;
    let js = jetstream::new(async_nats::connect(&url).await.expect("connect"));
    let actor = ActorId::new("guarded").expect("actor");
    store
        .save_events_as(vec![Event::new(actor.clone(), "Opened", 1)], epoch(1))
        .await
        .expect("v1");
    store.fence(&actor, epoch(2)).await.expect("fence");
    js.publish(actor_subject(&ns, &actor), "foreign bytes".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert_eq!(store.latest_epoch(&actor).await.expect("epoch"), epoch(2));
    assert_eq!(store.latest_version(&actor).await.expect("latest"), 1);
    let stale = store
        .save_events_as(vec![Event::new(actor.clone(), "Deposited", 2)], epoch(1))
        .await;
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");

    let broken = ActorId::new("broken-fence").expect("actor");
    store
        .save_event(Event::new(broken.clone(), "Opened", 1))
        .await
        .expect("v1");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(FENCE_HEADER, "not-a-number");
    js.publish_with_headers(actor_subject(&ns, &broken), headers, "".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let write = store
        .save_events_as(vec![Event::new(broken.clone(), "Deposited", 2)], epoch(9))
        .await;
    assert!(
        matches!(write, Err(StoreError::UndecodableRecord { .. })),
        "{write:?}"
    );
    let err = store.latest_epoch(&broken).await.expect_err("fails closed");
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    assert!(err.to_string().contains(FENCE_HEADER), "{err}");
}

/// Lookups by version walk through fences: a handle that has cached nothing settles a resent
/// event under two fences as a duplicate, another event at that version as a conflict, replays
/// from a version, and saves and loads a snapshot below the fences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_by_version_walk_through_fences() {
    use aether_core::{ActorSnapshot, SaveOutcome, SnapshotStore};

    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = namespace();
    let writer = open(&url, &ns).await;
    let actor = ActorId::new("walked").expect("actor");
    let events: Vec<Event> = (1..=4)
        .map(|v| Event::new(actor.clone(), "Added", v))
        .collect();
    writer
        .save_events_as(events[..3].to_vec(), epoch(1))
        .await
        .expect("v1-v3");
    writer.fence(&actor, epoch(2)).await.expect("fence");
    writer
        .save_events_as(vec![events[3].clone()], epoch(2))
        .await
        .expect("v4");
    writer.fence(&actor, epoch(3)).await.expect("fence");

    let cold = open(&url, &ns).await;
    let again = cold.save_events_as(vec![events[1].clone()], epoch(3)).await;
    assert!(matches!(again, Ok(SaveOutcome::Duplicate)), "{again:?}");
    let other = cold
        .save_events_as(vec![Event::new(actor.clone(), "Other", 4)], epoch(3))
        .await;
    assert!(
        matches!(
            other,
            Err(StoreError::VersionConflict {
                current_version: 4,
                ..
            })
        ),
        "{other:?}"
    );
    let cold = open(&url, &ns).await;
    assert_eq!(
        cold.events(&actor, 2).await.expect("replay"),
        events[1..].to_vec()
    );
    let cold = open(&url, &ns).await;
    let snapshot = ActorSnapshot::new(actor.clone(), 2, serde_json::json!({ "n": 2 }));
    cold.save_snapshot(snapshot.clone())
        .await
        .expect("snapshot");
    let loaded = cold.load(&actor).await.expect("load");
    assert_eq!(loaded.snapshot, Some(snapshot));
    assert_eq!(loaded.events, events[2..].to_vec());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
}
