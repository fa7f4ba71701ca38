//! One application, two buses: the same generic functions, written against
//! [`Bus`] / [`DurableBus`] and the one [`NamespacedBus`] type, run on the local
//! [`EventBus`] and on the [`NatsEventBus`] (two nodes on a real `nats-server`), and must see
//! the same thing:
//!
//! - tenant handles publish and subscribe in their namespace only (exact, filtered and
//!   option subscriptions), a trusted pattern subscription sees both tenants, and the totals
//!   read through `Bus::metrics` agree;
//! - a subscriber on one "node" receives what another publishes (for the local bus, both
//!   nodes are clones of one bus);
//! - on a durable bus, tenant handles publish durably and open namespace-scoped durable
//!   subscriptions through the same generic type.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::sync::Arc;
use std::time::Duration;

use aether_core::{
    ActorId, Bus, BusMetrics, DurableBus, Event, EventBus, Namespace, NamespacedBus, Pattern,
    SubscribeOptions, Subscription, SubscriptionFilter,
};
use aether_nats::{DurableSubscription, NatsEventBus};
use aether_testkit::nats_server::NatsServer;
use tokio::time::timeout;

/// Longest wait for one event or a server reply.
const WAIT: Duration = Duration::from_secs(10);
/// How long an absence is watched for, after the publishers flushed.
const QUIET: Duration = Duration::from_millis(300);

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap_or_else(|e| panic!("{e}"))
}

fn event(actor: &str, event_type: &str, version: u64) -> Event {
    Event::new(
        ActorId::new(actor).unwrap_or_else(|e| panic!("{e}")),
        event_type,
        version,
    )
}

async fn recv(sub: &mut Subscription, what: &str) -> Arc<Event> {
    timeout(WAIT, sub.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{what}: subscription ended"))
}

async fn flush<B: Bus>(bus: &B) {
    timeout(WAIT, bus.flush())
        .await
        .expect("flush within the wait")
        .unwrap_or_else(|e| panic!("flush: {e}"));
}

/// Tenants on `subscriber`'s node, publishers on `publisher`'s: isolation, filters, the
/// trusted pattern subscription and the totals, whatever the bus.
async fn tenants_are_isolated<B: Bus>(publisher: B, subscriber: B, prefix: &str) {
    let (a, b) = (ns(&format!("{prefix}.a")), ns(&format!("{prefix}.b")));
    let on_a: NamespacedBus<B> = subscriber.namespace(a.clone());
    let mut all_a = on_a.subscribe();
    let mut placed_a =
        on_a.subscribe_with_filter(SubscriptionFilter::new().event_types(["Placed"]));
    let mut small_a = on_a.subscribe_with(SubscribeOptions::new().queue_capacity(16));
    let mut all_b = subscriber.subscribe(&b);
    let mut audit = subscriber.subscribe_across_namespaces(
        &Pattern::new(format!("{prefix}.>")).expect("pattern"),
        SubscribeOptions::new(),
    );
    flush(&subscriber).await;

    let tenant_a = publisher.namespace(a.clone());
    let tenant_b = publisher.namespace(b.clone());
    tenant_a.publish(event("order-1", "Placed", 1)).await;
    tenant_b.publish(event("order-2", "Placed", 1)).await;
    tenant_a.try_publish(event("order-1", "Shipped", 2));
    flush(&publisher).await;

    for (what, sub) in [("all of a", &mut all_a), ("a, options", &mut small_a)] {
        let got = [recv(sub, what).await, recv(sub, what).await];
        assert_eq!(
            got.map(|e| (e.actor_id.to_string(), e.version)),
            [("order-1".to_owned(), 1), ("order-1".to_owned(), 2)],
            "{what}"
        );
    }
    assert_eq!(
        recv(&mut placed_a, "a, filtered").await.event_type,
        "Placed"
    );
    assert_eq!(
        recv(&mut all_b, "all of b").await.actor_id.as_str(),
        "order-2"
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (namespace, event) = timeout(WAIT, audit.recv_with_namespace())
            .await
            .expect("audit within the wait")
            .expect("audit subscription open");
        seen.push((namespace.to_string(), event.version));
    }
    seen.sort();
    assert_eq!(
        seen,
        [(a.to_string(), 1), (a.to_string(), 2), (b.to_string(), 1),],
        "the trusted pattern subscription sees both tenants"
    );
    tokio::time::sleep(QUIET).await;
    for (what, sub) in [
        ("all of a", &mut all_a),
        ("a, filtered", &mut placed_a),
        ("a, options", &mut small_a),
        ("all of b", &mut all_b),
        ("audit", &mut audit),
    ] {
        assert!(sub.try_recv().is_none(), "{what}: nothing else");
    }
    let published: BusMetrics = publisher.metrics().into();
    assert_eq!(published.published, 3, "{published:?}");
    let received: BusMetrics = subscriber.metrics().into();
    // 2 + 1 + 2 to tenant a's subscriptions, 1 to b's, 3 to the audit.
    assert_eq!(
        (received.delivered, received.dropped, received.undecodable),
        (9, 0, 0),
        "{received:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_on_the_local_bus() {
    let bus = EventBus::new();
    tenants_are_isolated(bus.clone(), bus, "local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_on_the_nats_bus() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let publisher = NatsEventBus::connect(&server.url()).await.expect("connect");
    let subscriber = NatsEventBus::connect(&server.url()).await.expect("connect");
    tenants_are_isolated(publisher, subscriber, "nats").await;
}

/// Durable mode through the generic tenant handle: published durably in one tenant, received
/// by that tenant's durable subscription only.
async fn tenant_durables_are_scoped<B>(bus: B, prefix: &str)
where
    B: DurableBus<DurableSubscription = DurableSubscription>,
{
    let tenant_a = bus.namespace(ns(&format!("{prefix}.a")));
    let tenant_b = bus.namespace(ns(&format!("{prefix}.b")));
    let mut sub_a = tenant_a
        .subscribe_durable("audit", B::DurableOptions::default())
        .await
        .unwrap_or_else(|e| panic!("a: {e}"));
    let mut sub_b = tenant_b
        .subscribe_durable("audit", B::DurableOptions::default())
        .await
        .unwrap_or_else(|e| panic!("b: {e}"));
    let placed = event("order-1", "Placed", 1);
    tenant_a
        .publish_durable(placed.clone())
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    let got = timeout(WAIT, sub_a.recv())
        .await
        .expect("a within the wait")
        .expect("a receives")
        .expect("a open");
    assert_eq!(got.id, placed.id);
    sub_b.ack().await.expect("ack");
    assert!(
        timeout(QUIET, sub_b.recv()).await.is_err(),
        "tenant b's durable of the same name gets nothing"
    );
    assert!(tenant_a.delete_durable("audit").await.expect("delete"));
    assert!(tenant_b.delete_durable("audit").await.expect("delete"));
    assert!(!tenant_b.delete_durable("audit").await.expect("delete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_durables_are_scoped_through_the_generic_handle() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let bus = NatsEventBus::connect(&server.url()).await.expect("connect");
    tenant_durables_are_scoped(bus, "durable").await;
}
