//! The permissions layout of `docs/permissions.md`, on a real nats-server configured with
//! `docs/nats-permissions.conf` verbatim (users `node`, `tenant-a`, `tenant-b`, `audit`,
//! `cli`, with the placeholder passwords that file documents):
//!
//! - the file holds exactly the blocks [`Permissions`] generates;
//! - a tenant's client uses its own namespace through the library (store, snapshots, live and
//!   durable bus), on streams a node created;
//! - it cannot open, read or write another tenant's event stream, snapshots, bus stream, bus
//!   subjects or actor requests, and the library says so at once: `PermissionDenied` naming
//!   the subject, not a timeout after retries;
//! - the auditor reads every namespace and writes none.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::time::Duration;

use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, Namespace, SnapshotStore, StoreError,
};
use aether_nats::permissions::{self, Permissions, tenant_inbox_prefix};
use aether_nats::{
    BusError, DurableOptions, DurableStart, JetStreamConfig, JetStreamEventStore, NatsBusConfig,
    NatsEventBus,
};
use aether_testkit::nats_server::{NatsServer, ServerOptions};
use async_nats::ConnectOptions;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// The example configuration, used as it is.
const CONF: &str = include_str!("../../../docs/nats-permissions.conf");
/// Longest wait for something that happens at once on a healthy server (a slow, shared
/// machine may take seconds).
const WAIT: Duration = Duration::from_secs(20);
/// The library's timeouts, well above `WAIT`: a refusal reported within `WAIT` came from the
/// server's permission error, not from a timeout.
const SLOW: Duration = Duration::from_secs(60);

fn ns(name: &str) -> Namespace {
    Namespace::new(name).expect("namespace")
}

fn tenant_a() -> Namespace {
    ns("tenant-a")
}

fn tenant_b() -> Namespace {
    ns("tenant-b")
}

/// The user's password, as the configuration documents it: `<user>-secret`.
fn options(user: &str) -> ConnectOptions {
    let options = ConnectOptions::with_user_and_password(user.to_owned(), format!("{user}-secret"));
    match user {
        "tenant-a" => options.custom_inbox_prefix(tenant_inbox_prefix(&tenant_a())),
        "tenant-b" => options.custom_inbox_prefix(tenant_inbox_prefix(&tenant_b())),
        "audit" => options.custom_inbox_prefix(permissions::AUDIT_INBOX_PREFIX),
        "cli" => options.custom_inbox_prefix(permissions::CLI_INBOX_PREFIX),
        _ => options,
    }
}

fn store_config() -> JetStreamConfig {
    JetStreamConfig {
        request_timeout: SLOW,
        retry_timeout: SLOW,
        ..JetStreamConfig::default()
    }
}

fn bus_config() -> NatsBusConfig {
    let mut config = NatsBusConfig::default();
    config.durable.request_timeout = SLOW;
    config
}

fn server() -> NatsServer {
    NatsServer::start_with(&ServerOptions::new().extra_config(CONF))
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn store(
    server: &NatsServer,
    user: &str,
    namespace: Namespace,
) -> Result<JetStreamEventStore, StoreError> {
    timeout(
        WAIT,
        JetStreamEventStore::connect_with_options(
            &server.url(),
            options(user),
            namespace,
            store_config(),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("{user}: opening a store took longer than {WAIT:?}"))
}

async fn bus(server: &NatsServer, user: &str) -> NatsEventBus {
    NatsEventBus::connect_with_options(&server.url(), options(user), bus_config())
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"))
}

/// A node creates both tenants' namespaces: event streams, snapshot buckets, bus streams.
async fn provision(server: &NatsServer) -> NatsEventBus {
    for namespace in [tenant_a(), tenant_b()] {
        store(server, "node", namespace.clone())
            .await
            .unwrap_or_else(|e| panic!("node opens {namespace}: {e}"));
    }
    let node = bus(server, "node").await;
    for namespace in [tenant_a(), tenant_b()] {
        node.provision_namespace(&namespace)
            .await
            .unwrap_or_else(|e| panic!("node provisions {namespace}'s bus: {e}"));
    }
    node
}

fn event(actor: &str, version: u64) -> Event {
    Event::new(ActorId::new(actor).expect("actor"), "Happened", version)
}

#[track_caller]
fn assert_store_denied(result: Result<impl std::fmt::Debug, StoreError>, subject_part: &str) {
    match result {
        Err(e @ StoreError::PermissionDenied { .. }) => {
            let StoreError::PermissionDenied { subject, .. } = &e else {
                unreachable!()
            };
            assert!(subject.contains(subject_part), "{e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with("permission denied") && shown.contains(subject.as_str()),
                "{shown}"
            );
            assert!(!format!("{e:?}").contains("secret"), "{e:?}");
        }
        other => {
            panic!("expected PermissionDenied on a subject with {subject_part:?}, got {other:?}")
        }
    }
}

#[track_caller]
fn assert_bus_denied(
    result: Result<impl std::fmt::Debug, BusError>,
    action: &str,
    subject_part: &str,
) {
    match result {
        Err(e @ BusError::PermissionDenied { .. }) => {
            let BusError::PermissionDenied { action: a, subject } = &e else {
                unreachable!()
            };
            assert_eq!(a, action, "{e}");
            assert!(subject.contains(subject_part), "{e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with("permission denied") && shown.contains(subject.as_str()),
                "{shown}"
            );
            assert!(
                !shown.contains("secret") && !format!("{e:?}").contains("secret"),
                "{e:?}"
            );
        }
        other => panic!("expected PermissionDenied to {action} {subject_part:?}, got {other:?}"),
    }
}

/// Flushes until the bus reports the refusal the server sent (it arrives on the connection's
/// event callback, which may run just after the flush's round trip).
async fn flush_reports(bus: &NatsEventBus) -> Result<(), BusError> {
    timeout(WAIT, async {
        loop {
            match bus.flush().await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
                refused => return refused,
            }
        }
    })
    .await
    .unwrap_or(Ok(()))
}

/// A raw client as `user`, with the server's error messages (permission violations) collected.
async fn raw(
    server: &NatsServer,
    user: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = options(user)
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"));
    (client, rx)
}

async fn expect_violation(errors: &mut mpsc::UnboundedReceiver<String>, subject: &str) {
    let said = timeout(WAIT, errors.recv())
        .await
        .unwrap_or_else(|_| panic!("no permission violation for {subject} within {WAIT:?}"))
        .expect("errors channel open");
    assert!(
        said.contains("Permissions Violation") && said.contains(subject),
        "expected a violation for {subject}, got {said:?}"
    );
}

#[test]
fn the_example_config_holds_the_generated_permissions() {
    let normalized = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let conf = normalized(CONF);
    for (user, wanted) in [
        ("node", Permissions::node()),
        ("tenant-a", Permissions::tenant(&tenant_a())),
        ("tenant-b", Permissions::tenant(&tenant_b())),
        ("audit", Permissions::audit()),
        ("cli", Permissions::cli()),
    ] {
        let entry = normalized(&format!(
            "user: \"{user}\" password: \"{user}-secret\" {}",
            wanted.to_conf()
        ));
        assert!(
            conf.contains(&entry),
            "docs/nats-permissions.conf lacks {user}'s generated block:\n{}",
            wanted.to_conf()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_uses_its_own_namespace() {
    let server = server();
    let node = provision(&server).await;

    let store = store(&server, "tenant-a", tenant_a())
        .await
        .unwrap_or_else(|e| panic!("tenant-a store: {e}"));
    store.save_event(event("order-1", 1)).await.expect("save");
    assert_eq!(
        store
            .events(&ActorId::new("order-1").unwrap(), 1)
            .await
            .expect("read")
            .len(),
        1
    );
    let snapshot = ActorSnapshot::new(
        ActorId::new("order-1").unwrap(),
        1,
        serde_json::json!({"n": 1}),
    );
    store.save_snapshot(snapshot).await.expect("save snapshot");
    assert!(
        store
            .latest_snapshot(&ActorId::new("order-1").unwrap())
            .await
            .expect("snapshot")
            .is_some()
    );

    let bus = bus(&server, "tenant-a").await;
    let tenant = bus.namespace(tenant_a());
    let mut live = tenant.subscribe();
    let mut durable = tenant
        .subscribe_durable(
            "projector",
            DurableOptions::new().start(DurableStart::Retained),
        )
        .await
        .unwrap_or_else(|e| panic!("tenant-a durable: {e}"));
    bus.flush()
        .await
        .expect("tenant-a's own subscriptions are allowed");
    node.publish(&tenant_a(), event("from-node", 1)).await;
    let got = timeout(WAIT, live.recv())
        .await
        .expect("live within the wait")
        .expect("open");
    assert_eq!(got.actor_id.as_str(), "from-node");
    let mine = event("order-1", 2);
    tenant
        .publish_durable(mine.clone())
        .await
        .unwrap_or_else(|e| panic!("tenant-a durable publish: {e}"));
    let got = timeout(WAIT, durable.recv())
        .await
        .expect("durable within the wait")
        .expect("recv")
        .expect("open");
    assert_eq!(got.id, mine.id);
    durable.ack().await.expect("ack");
    bus.flush().await.expect("nothing was refused");
}

/// Actor requests (`aether.actor.<enc(ns)>.<type>.<node>`, answered by the node that owns the
/// actor): a tenant's client may call its own namespace's actors and gets the node's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_calls_its_own_actors_through_a_node() {
    let server = server();
    let (node, _) = raw(&server, "node").await;
    let mut serving = node
        .subscribe("aether.actor.tenant-a.account.n1")
        .await
        .expect("node serves");
    node.flush().await.expect("flush");
    let answering = tokio::spawn(async move {
        use futures::StreamExt;
        let request = serving.next().await.expect("a request");
        let reply = request.reply.expect("a reply subject");
        node.publish(reply, r#"{"ok":null}"#.into())
            .await
            .expect("answer");
        node.flush().await.expect("flush");
    });
    let (client, _) = raw(&server, "tenant-a").await;
    let answer = timeout(
        WAIT,
        client.request(
            "aether.actor.tenant-a.account.n1",
            r#"{"op":"query","actorId":"acct-42","body":null}"#.into(),
        ),
    )
    .await
    .expect("answered within the wait")
    .expect("answered");
    assert_eq!(&answer.payload[..], br#"{"ok":null}"#);
    answering.await.expect("node task");
}

/// A tenant may create consumers on its own streams, and JetStream lets a push consumer
/// deliver to any subject: aimed at another tenant's bus subjects, the copies reach no Aether
/// subscriber (they carry the tenant's own stream subject, which no bus reader accepts) and no
/// bus stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_push_consumer_cannot_forge_another_tenants_bus_events() {
    let server = server();
    let node = provision(&server).await;
    let mut live = node.subscribe(&tenant_b());
    node.flush().await.expect("flush");
    let (client, _) = raw(&server, "tenant-a").await;
    let js = async_nats::jetstream::new(client);
    let forged = serde_json::to_vec(&event("forged", 1)).expect("json");
    js.publish("ae.tenant-a.forged", forged.into())
        .await
        .expect("publish")
        .await
        .expect("stored in tenant-a's own stream");
    let stream = js
        .get_stream("aether-ev-tenant-a")
        .await
        .expect("own stream");
    for (i, target) in ["aether.events.tenant-b", "aether.durable.tenant-b"]
        .iter()
        .enumerate()
    {
        let config = async_nats::jetstream::consumer::push::Config {
            deliver_subject: (*target).to_owned(),
            durable_name: Some(format!("aimed-{i}")),
            ..Default::default()
        };
        stream
            .create_consumer(config)
            .await
            .expect("the server allows it");
    }
    // The node's reader got the copy, and refused it as not an event of tenant-b.
    timeout(WAIT, async {
        while node.metrics().undecodable == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the copy reaches the node's reader");
    assert!(
        live.try_recv().is_none(),
        "a forged event reached tenant-b's subscriber"
    );
    let mut shared = async_nats::jetstream::new(node.client().clone())
        .get_stream("aether-bus")
        .await
        .expect("shared bus stream");
    let stored = shared.info().await.expect("info").state.messages;
    assert_eq!(stored, 0, "the shared bus stream captured a forged copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_open_another_tenants_store() {
    let server = server();
    provision(&server).await;
    // Regression: refused at once with the subject, not a timeout after retries.
    assert_store_denied(
        store(&server, "tenant-a", tenant_b()).await,
        "aether-ev-tenant-b",
    );
    let own = store(&server, "tenant-a", tenant_a())
        .await
        .expect("own store");
    let other = timeout(WAIT, own.for_namespace(tenant_b()))
        .await
        .expect("refused within the wait");
    assert_store_denied(other, "aether-ev-tenant-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_reach_another_tenants_streams_subjects_or_actors() {
    let server = server();
    provision(&server).await;
    let (client, mut errors) = raw(&server, "tenant-a").await;
    let js = async_nats::jetstream::new(client.clone());
    let probes: [(&str, &str); 8] = [
        (
            "$JS.API.STREAM.INFO.aether-ev-tenant-b",
            "event stream info",
        ),
        ("$JS.API.DIRECT.GET.aether-ev-tenant-b", "event direct get"),
        (
            "$JS.API.STREAM.MSG.GET.aether-ev-tenant-b",
            "event message get",
        ),
        (
            "$JS.API.STREAM.INFO.KV_aether-snap-tenant-b",
            "snapshot bucket",
        ),
        (
            "$JS.API.DIRECT.GET.KV_aether-snap-tenant-b.$KV.aether-snap-tenant-b.x",
            "snapshot get",
        ),
        (
            "$JS.API.DIRECT.GET.aether-bus-tenant-b",
            "bus stream direct get",
        ),
        (
            "$JS.API.DIRECT.GET.aether-bus",
            "shared bus stream direct get",
        ),
        (
            "$JS.API.STREAM.CREATE.aether-bus-tenant-a",
            "creating (re-sourcing) its own bus stream",
        ),
    ];
    for (subject, what) in probes {
        let request = client.publish_with_reply(subject, client.new_inbox(), "{}".into());
        request.await.unwrap_or_else(|e| panic!("{what}: {e}"));
        expect_violation(&mut errors, subject).await;
    }
    for subject in [
        "ae.tenant-b.order-1",
        "$KV.aether-snap-tenant-b.order-1",
        "aether.actor.tenant-b.account.n1",
    ] {
        client.publish(subject, "x".into()).await.expect("sent");
        expect_violation(&mut errors, subject).await;
    }
    drop(js);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_use_another_tenants_bus() {
    let server = server();
    let node = provision(&server).await;
    let bus = bus(&server, "tenant-a").await;
    let other = bus.namespace(tenant_b());

    // Durable: opening a subscription and publishing are refused at once, naming the subject.
    let opened = timeout(
        WAIT,
        other.subscribe_durable("spy", DurableOptions::new().start(DurableStart::Retained)),
    )
    .await
    .expect("refused within the wait");
    assert_bus_denied(opened, "publish to", "aether-bus-tenant-b");
    let published = timeout(WAIT, bus.publish_durable(&tenant_b(), event("forged", 1)))
        .await
        .expect("refused within the wait");
    assert_bus_denied(published, "publish to", "aether-bus-tenant-b");
    // Nor through the shared stream a tenant's subscription does not use.
    let across = timeout(
        WAIT,
        bus.subscribe_durable("spy", &tenant_b(), DurableOptions::new()),
    )
    .await
    .expect("refused within the wait");
    assert_bus_denied(across, "publish to", "aether-bus");

    // Live: the server drops a refused subscription or publish; the next flush reports it.
    let mut spy = other.subscribe();
    assert_bus_denied(
        flush_reports(&bus).await,
        "subscribe to",
        "aether.events.tenant-b",
    );
    let b = bus_tenant_b(&server).await;
    let mut on_b = b.namespace(tenant_b()).subscribe();
    b.flush().await.expect("tenant-b's own subscription");
    bus.publish(&tenant_b(), event("forged", 1)).await;
    assert_bus_denied(
        flush_reports(&bus).await,
        "publish to",
        "aether.events.tenant-b",
    );
    // The server processed the forged publish before answering the flush: a later event from
    // the node reaches tenant-b first, so the forged one was never delivered.
    node.publish(&tenant_b(), event("genuine", 1)).await;
    let got = timeout(WAIT, on_b.recv())
        .await
        .expect("tenant-b receives")
        .expect("open");
    assert_eq!(got.actor_id.as_str(), "genuine");
    // Only its own (local) publish reached the spy; tenant-b's event never reached tenant-a.
    let _ = bus.flush().await;
    let mut seen = Vec::new();
    while let Some(event) = spy.try_recv() {
        seen.push(event.actor_id.to_string());
    }
    assert_eq!(seen, ["forged"], "tenant-a's spy subscription to tenant-b");
}

async fn bus_tenant_b(server: &NatsServer) -> NatsEventBus {
    bus(server, "tenant-b").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_reads_every_namespace_and_writes_none() {
    let server = server();
    let node = provision(&server).await;
    for namespace in [tenant_a(), tenant_b()] {
        let writer = store(&server, "node", namespace.clone())
            .await
            .expect("node store");
        writer
            .save_event(event("acct-1", 1))
            .await
            .expect("node writes");
        let audit = store(&server, "audit", namespace.clone())
            .await
            .unwrap_or_else(|e| panic!("audit opens {namespace}: {e}"));
        let read = audit
            .events(&ActorId::new("acct-1").unwrap(), 1)
            .await
            .expect("audit reads");
        assert_eq!(read.len(), 1, "{namespace}");
        let write = timeout(WAIT, audit.save_event(event("acct-1", 2)))
            .await
            .expect("refused within the wait");
        assert_store_denied(write, "ae.");
    }
    let audit = bus(&server, "audit").await;
    let mut everything = audit
        .subscribe_across_namespaces(&aether_core::Pattern::new(">").unwrap(), Default::default());
    audit
        .flush()
        .await
        .expect("the auditor may follow every namespace");
    node.publish(&tenant_b(), event("seen", 1)).await;
    let (namespace, got) = timeout(WAIT, everything.recv_with_namespace())
        .await
        .expect("audit receives")
        .expect("open");
    assert_eq!((namespace, got.actor_id.as_str()), (tenant_b(), "seen"));
    audit.publish(&tenant_a(), event("forged", 1)).await;
    assert_bus_denied(
        flush_reports(&audit).await,
        "publish to",
        "aether.events.tenant-a",
    );
}

/// The CLI's user reads what its commands show — the streams, a namespace's events, the
/// cluster's buckets — and writes none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_streams_and_the_cluster_and_writes_nothing() {
    let server = server();
    provision(&server).await;
    let (node, _) = raw(&server, "node").await;
    let coord = async_nats::jetstream::new(node)
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "aether-coord".to_owned(),
            ..Default::default()
        })
        .await
        .expect("node creates the cluster's bucket");
    coord.put("leader", "n1".into()).await.expect("node writes");

    let (client, mut errors) = raw(&server, "cli").await;
    let js = async_nats::jetstream::new(client.clone());
    let names: Vec<String> = futures::TryStreamExt::try_collect(js.stream_names())
        .await
        .expect("the CLI lists streams");
    for wanted in [
        "aether-ev-tenant-a",
        "aether-bus-tenant-b",
        "KV_aether-coord",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} not in {names:?}"
        );
    }
    let bucket = js
        .get_key_value("aether-coord")
        .await
        .expect("the CLI opens the bucket");
    let leader = bucket
        .get("leader")
        .await
        .expect("the CLI reads the bucket");
    assert_eq!(leader.as_deref(), Some(&b"n1"[..]));
    let store = store(&server, "cli", tenant_a())
        .await
        .expect("the CLI opens a namespace");
    assert!(
        store
            .events(&ActorId::new("nobody").unwrap(), 1)
            .await
            .expect("reads")
            .is_empty()
    );
    client
        .publish("$KV.aether-coord.leader", "cli".into())
        .await
        .expect("sent");
    expect_violation(&mut errors, "$KV.aether-coord.leader").await;
    let write = timeout(WAIT, store.save_event(event("acct-1", 1)))
        .await
        .expect("refused within the wait");
    assert_store_denied(write, "ae.tenant-a.");
}
