//! The NATS event bus in live mode, across "nodes": two or three [`NatsEventBus`] instances, each
//! on its own connection, on one real `nats-server`.
//!
//! - Routing: exact, wildcard (`prod.*`, `>`, `prod.>`) and filtered subscribers on remote
//!   nodes receive exactly their events — checked against hand-written expectations, not the
//!   library's own matching — in publish order per publisher, with the right namespace, and
//!   nothing else.
//! - Isolation: tenant handles on one node never see another namespace's events from another
//!   node, including look-alikes (`a.b`, `a_b`, `a-b`, `A.b`, …), even with a `>` reader on the
//!   same node.
//! - Exactly once: with overlapping subscriptions on one node (exact twice, `prod.*`, `>`,
//!   `prod.>`), every subscription gets each event once, on the publishing node (own events are
//!   not taken back from NATS) and on the remote one.
//! - Interest: a raw client's request to `aether.events.<ns>` times out while the bus has a
//!   matching subscription (someone listens, nobody replies) and gets `NoResponders` once the
//!   last one is gone — so the NATS subscription is created by the first local subscriber and
//!   removed by the last; remote events stop after unsubscribing and resume after subscribing.
//! - Flush: right after `subscribe` + `flush` a foreign client's event arrives, and right after
//!   the last unsubscribe + `flush` the server reports no responders — every time, over many
//!   rounds (the other tests rely on this to publish without sleeping first).
//! - Metrics: exact `published`/`sent`/`received`/`delivered` figures for a known traffic
//!   pattern, with own events never counted as received.
//! - Garbage: undecodable messages are counted (once per NATS subscription, when a subscriber
//!   takes them) and returned to no one; a foreign publisher's valid event (no Aether headers)
//!   is delivered.
//! - Forged numbers: an `Aether-Seq` jump to `u64::MAX` is ignored, so `lost` neither wraps
//!   nor swallows the sender's later genuine gaps.
//! - Loss accounting: a flooded subscriber with a tiny client buffer loses events, and every
//!   one is accounted for: `received + lost` equals what the sender sent (once a last event has
//!   revealed the gap at the end: a gap is seen when the next event arrives).
//! - Outgoing order: one caller mixing `publish` and `try_publish` (with a tiny outgoing queue
//!   that sometimes drops) is received in call order with no false gaps; eight racing
//!   publishers, a third of whose publishes are cancelled, keep per-publisher order and gaps
//!   at zero.
//!
//! Absence is checked by flushing the publishers (their events are then on the server), then
//! waiting [`QUIET`]: on loopback a stray event reaches the subscriber within milliseconds.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aether_core::{
    ActorId, Event, Namespace, Overflow, Pattern, SubscribeOptions, Subscription,
    SubscriptionFilter,
};
use aether_nats::{NatsBusConfig, NatsBusMetrics, NatsEventBus, wire};
use aether_testkit::nats_server::NatsServer;
use async_nats::{HeaderMap, RequestErrorKind};
use serde_json::json;

/// Longest wait for anything that should happen.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long an absence is watched for, after the publishers flushed.
const QUIET: Duration = Duration::from_millis(200);

fn start_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap_or_else(|e| panic!("{e}"))
}

fn pattern(text: &str) -> Pattern {
    Pattern::new(text).unwrap_or_else(|e| panic!("{e}"))
}

fn actor(id: &str) -> ActorId {
    ActorId::new(id).unwrap_or_else(|e| panic!("{e}"))
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?}: {what}"))
}

async fn node(url: &str) -> NatsEventBus {
    node_with(url, NatsBusConfig::default()).await
}

async fn node_with(url: &str, config: NatsBusConfig) -> NatsEventBus {
    within("connect", NatsEventBus::connect_with(url, config))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

async fn flush(buses: &[&NatsEventBus]) {
    for bus in buses {
        within("flush", bus.flush())
            .await
            .unwrap_or_else(|e| panic!("flush: {e}"));
    }
}

/// Polls `condition` until it holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < PATIENCE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next `n` events of `sub`, with their namespaces.
async fn take(sub: &mut Subscription, n: usize, what: &str) -> Vec<(Namespace, Arc<Event>)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let next = tokio::time::timeout(PATIENCE, sub.recv_with_namespace())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: got {} of {n} events in {PATIENCE:?}: {:?}",
                    got.len(),
                    got.iter()
                        .map(|(n, e): &(Namespace, Arc<Event>)| format!("{n}/{}", e.event_type))
                        .collect::<Vec<_>>()
                )
            })
            .unwrap_or_else(|| panic!("{what}: the subscription ended"));
        got.push(next);
    }
    got
}

/// Flushes the publishers, waits [`QUIET`], and checks nothing more arrived.
async fn assert_quiet(publishers: &[&NatsEventBus], subs: &mut [(&str, &mut Subscription)]) {
    flush(publishers).await;
    tokio::time::sleep(QUIET).await;
    for (name, sub) in subs.iter_mut() {
        let extra: Vec<String> = std::iter::from_fn(|| sub.try_recv())
            .map(|e| format!("{} {} {}", e.event_type, e.actor_id, e.id))
            .collect();
        assert!(
            extra.is_empty(),
            "{name} received more than expected: {extra:?}"
        );
    }
}

/// The figures a test states exactly, by name (so a mismatch says which).
fn figures(m: &NatsBusMetrics) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("published", m.published),
        ("delivered", m.delivered),
        ("dropped", m.dropped),
        ("sent", m.sent),
        ("send_failed", m.send_failed),
        ("send_dropped", m.send_dropped),
        ("received", m.received),
        ("lost", m.lost),
        ("undecodable", m.undecodable),
        ("slow_consumer", m.slow_consumer),
        ("disconnects", m.disconnects),
        ("durable_published", m.durable_published),
    ])
}

fn expect_figures(list: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    let mut all = figures(&NatsBusMetrics::default());
    for &(name, value) in list {
        assert!(all.insert(name, value).is_some(), "unknown figure {name}");
    }
    all
}

/// One published event, as the test remembers it.
#[derive(Debug, Clone)]
struct Sent {
    publisher: &'static str,
    namespace: Namespace,
    event: Event,
}

/// Checks `got` is exactly the events of `sent` that `wanted` selects: each once, in publish
/// order per publisher, with the namespace they were published in.
fn assert_exactly(
    what: &str,
    got: &[(Namespace, Arc<Event>)],
    sent: &[Sent],
    wanted: impl Fn(&Sent) -> bool,
) {
    let by_id: HashMap<&str, &Sent> = sent.iter().map(|s| (s.event.id.as_str(), s)).collect();
    let mut per_publisher: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (namespace, event) in got {
        let Some(origin) = by_id.get(event.id.as_str()) else {
            panic!("{what}: an event nobody in this test sent: {event:?}");
        };
        assert_eq!(
            namespace, &origin.namespace,
            "{what}: wrong namespace for {}",
            event.id
        );
        assert_eq!(
            **event, origin.event,
            "{what}: the event changed on the way"
        );
        per_publisher
            .entry(origin.publisher)
            .or_default()
            .push(event.id.as_str());
    }
    let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in sent.iter().filter(|s| wanted(s)) {
        expected
            .entry(s.publisher)
            .or_default()
            .push(s.event.id.as_str());
    }
    assert_eq!(
        per_publisher, expected,
        "{what}: not exactly its events in publish order per publisher"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Routing to exact, wildcard and filtered subscribers on remote nodes.
// ---------------------------------------------------------------------------------------------

type Wanted = fn(&str, &str, &str) -> bool;

/// The same subscriptions on any node: what each is, and (by hand) which events it wants,
/// given (namespace, event type, actor id).
fn routing_subscriptions(bus: &NatsEventBus) -> Vec<(&'static str, Subscription, Wanted)> {
    let across = |p: &str, filter: SubscriptionFilter| {
        bus.subscribe_across_namespaces(&pattern(p), SubscribeOptions::new().filter(filter))
    };
    let none = SubscriptionFilter::new;
    vec![
        (
            "exact prod.orders",
            bus.subscribe(&ns("prod.orders")),
            |n, _, _| n == "prod.orders",
        ),
        ("exact prod", bus.subscribe(&ns("prod")), |n, _, _| {
            n == "prod"
        }),
        ("prod.*", across("prod.*", none()), |n, _, _| {
            n == "prod.orders" || n == "prod.users"
        }),
        (">", across(">", none()), |_, _, _| true),
        ("prod.>", across("prod.>", none()), |n, _, _| {
            n == "prod.orders" || n == "prod.users" || n == "prod.eu.orders"
        }),
        (
            "exact prod.orders, Placed|Cancelled",
            bus.subscribe_with_filter(
                &ns("prod.orders"),
                none().event_types(["Placed", "Cancelled"]),
            ),
            |n, t, _| n == "prod.orders" && (t == "Placed" || t == "Cancelled"),
        ),
        (
            "prod.>, actor order.eu.*",
            across("prod.>", none().actor_pattern(pattern("order.eu.*"))),
            |n, _, a| n.starts_with("prod.") && a == "order.eu.1",
        ),
        (
            ">, Shipped by order.>",
            across(
                ">",
                none()
                    .event_types(["Shipped"])
                    .actor_pattern(pattern("order.>")),
            ),
            |_, t, a| t == "Shipped" && a.starts_with("order."),
        ),
        (
            "tenant staging.orders",
            bus.namespace(ns("staging.orders")).subscribe(),
            |n, _, _| n == "staging.orders",
        ),
    ]
}

const ROUTING_NAMESPACES: [&str; 6] = [
    "prod",
    "prod.orders",
    "prod.users",
    "prod.eu.orders",
    "staging.orders",
    "prodx.orders",
];
const TYPES: [&str; 3] = ["Placed", "Shipped", "Cancelled"];
const ACTORS: [&str; 4] = ["order.eu.1", "order.us.2", "order.eu.3.x", "user.7"];

/// Every combination of namespace, type and actor once (6 × 3 × 4 = 72 events).
fn routing_traffic(publisher: &'static str) -> Vec<Sent> {
    (0..ROUTING_NAMESPACES.len() * TYPES.len() * ACTORS.len())
        .map(|i| Sent {
            publisher,
            namespace: ns(ROUTING_NAMESPACES[i % ROUTING_NAMESPACES.len()]),
            event: Event::builder(
                actor(ACTORS[i / (ROUTING_NAMESPACES.len() * TYPES.len())]),
                TYPES[(i / ROUTING_NAMESPACES.len()) % TYPES.len()],
            )
            .version(i as u64 + 1)
            .data(&json!({ "publisher": publisher, "index": i }))
            .expect("json")
            .build(),
        })
        .collect()
}

async fn publish_all(bus: NatsEventBus, traffic: Vec<Sent>) {
    for s in traffic {
        bus.publish(&s.namespace, s.event).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_subscribers_get_exactly_their_events_in_order() {
    let server = start_server();
    let a = node(&server.url()).await;
    let b = node(&server.url()).await;
    let c = node(&server.url()).await;
    let mut on_b = routing_subscriptions(&b);
    let mut on_c = routing_subscriptions(&c);
    flush(&[&a, &b, &c]).await;

    // A and B publish at the same time; B's subscribers get B's events locally, A's remotely.
    let from_a = routing_traffic("A");
    let from_b = routing_traffic("B");
    let sent: Vec<Sent> = from_a.iter().chain(&from_b).cloned().collect();
    let (ra, rb) = tokio::join!(
        tokio::spawn(publish_all(a.clone(), from_a)),
        tokio::spawn(publish_all(b.clone(), from_b)),
    );
    ra.expect("publisher A");
    rb.expect("publisher B");

    for (node_name, subs) in [("B", &mut on_b), ("C", &mut on_c)] {
        for (name, sub, wanted) in subs.iter_mut() {
            let what = format!("{name} on {node_name}");
            let select = |s: &Sent| {
                wanted(
                    s.namespace.as_str(),
                    &s.event.event_type,
                    s.event.actor_id.as_str(),
                )
            };
            let count = sent.iter().filter(|s| select(s)).count();
            assert!(count > 0, "{what}: the traffic should include its events");
            let got = take(sub, count, &what).await;
            assert_exactly(&what, &got, &sent, select);
        }
    }
    let mut all: Vec<(&str, &mut Subscription)> = on_b
        .iter_mut()
        .chain(on_c.iter_mut())
        .map(|(name, sub, _)| (*name, sub))
        .collect();
    assert_quiet(&[&a, &b], &mut all).await;
    for (name, bus) in [("B", &b), ("C", &c)] {
        let m = bus.metrics();
        assert_eq!(
            (m.lost, m.undecodable, m.dropped),
            (0, 0, 0),
            "{name}: {m:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Namespace isolation across nodes.
// ---------------------------------------------------------------------------------------------

const LOOKALIKES: [&str; 8] = ["a.b", "a_b", "a-b", "A.b", "a.B", "a.b.c", "a", "b.a"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_other_namespaces_across_nodes() {
    let server = start_server();
    let one = node(&server.url()).await;
    let two = node(&server.url()).await;
    let tenants_one: Vec<_> = LOOKALIKES.iter().map(|n| one.namespace(ns(n))).collect();
    let tenants_two: Vec<_> = LOOKALIKES.iter().map(|n| two.namespace(ns(n))).collect();
    let mut subs_one: Vec<Subscription> = tenants_one.iter().map(|t| t.subscribe()).collect();
    let mut subs_two: Vec<Subscription> = tenants_two.iter().map(|t| t.subscribe()).collect();
    // A trusted reader of everything on node one: its NATS subscription overlaps all the
    // tenants', and must not leak into theirs.
    let mut everything = one.subscribe_across_namespaces(&pattern(">"), SubscribeOptions::new());
    tenants_one[0].flush().await.expect("flush");
    tenants_two[0].flush().await.expect("flush");

    let rounds = 4;
    let mut sent = Vec::new();
    for round in 0..rounds {
        for (publisher, tenants) in [("one", &tenants_one), ("two", &tenants_two)] {
            for tenant in tenants {
                let event = Event::builder(actor("cart-1"), "ItemAdded")
                    .version(round + 1)
                    .data(&json!({ "ns": tenant.namespace().as_str(), "by": publisher }))
                    .expect("json")
                    .build();
                tenant.publish(event.clone()).await;
                sent.push(Sent {
                    publisher,
                    namespace: tenant.namespace().clone(),
                    event,
                });
            }
        }
    }

    for (node_name, subs) in [("one", &mut subs_one), ("two", &mut subs_two)] {
        for (name, sub) in LOOKALIKES.iter().zip(subs.iter_mut()) {
            let what = format!("tenant {name} on node {node_name}");
            // Its own namespace's events from both nodes, 2 × rounds of them.
            let got = take(sub, 2 * rounds as usize, &what).await;
            assert_exactly(&what, &got, &sent, |s| s.namespace.as_str() == *name);
            for (_, event) in &got {
                assert_eq!(event.data["ns"], json!(name), "{what}");
            }
        }
    }
    let got = take(&mut everything, sent.len(), "> on node one").await;
    assert_exactly("> on node one", &got, &sent, |_| true);

    let mut all: Vec<(&str, &mut Subscription)> = LOOKALIKES
        .iter()
        .zip(subs_one.iter_mut())
        .chain(LOOKALIKES.iter().zip(subs_two.iter_mut()))
        .map(|(name, sub)| (*name, sub))
        .collect();
    all.push((">", &mut everything));
    assert_quiet(&[&one, &two], &mut all).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Each subscription gets each event once, local and remote, with overlapping patterns.
// ---------------------------------------------------------------------------------------------

fn overlapping_subscriptions(bus: &NatsEventBus) -> Vec<(&'static str, Subscription, Wanted)> {
    let across = |p: &str| bus.subscribe_across_namespaces(&pattern(p), SubscribeOptions::new());
    vec![
        ("exact #1", bus.subscribe(&ns("prod.orders")), |n, _, _| {
            n == "prod.orders"
        }),
        ("exact #2", bus.subscribe(&ns("prod.orders")), |n, _, _| {
            n == "prod.orders"
        }),
        ("prod.*", across("prod.*"), |_, _, _| true),
        (">", across(">"), |_, _, _| true),
        ("prod.>", across("prod.>"), |_, _, _| true),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_get_each_event_once_locally_and_remotely() {
    let server = start_server();
    let a = node(&server.url()).await;
    let b = node(&server.url()).await;
    let mut on_a = overlapping_subscriptions(&a);
    let mut on_b = overlapping_subscriptions(&b);
    flush(&[&a, &b]).await;

    let mut sent = Vec::new();
    for (publisher, bus, namespace, count) in [
        ("A", &a, "prod.orders", 20),
        ("A", &a, "prod.users", 10),
        ("B", &b, "prod.orders", 10),
    ] {
        for i in 0..count {
            let event = Event::new(actor("o-1"), "Changed", i + 1);
            bus.publish(&ns(namespace), event.clone()).await;
            sent.push(Sent {
                publisher,
                namespace: ns(namespace),
                event,
            });
        }
    }

    for (node_name, subs) in [("A", &mut on_a), ("B", &mut on_b)] {
        for (name, sub, wanted) in subs.iter_mut() {
            let what = format!("{name} on {node_name}");
            let select = |s: &Sent| wanted(s.namespace.as_str(), "", "");
            let count = sent.iter().filter(|s| select(s)).count();
            let got = take(sub, count, &what).await;
            assert_exactly(&what, &got, &sent, select);
        }
    }
    let mut all: Vec<(&str, &mut Subscription)> = on_a
        .iter_mut()
        .chain(on_b.iter_mut())
        .map(|(name, sub, _)| (*name, sub))
        .collect();
    assert_quiet(&[&a, &b], &mut all).await;

    // Received from NATS: once per local pattern that matches (the two exact subscriptions
    // share one NATS subscription), and never one's own events.
    // A has 4 patterns; B's 10 prod.orders events match all 4.
    assert_eq!(a.metrics().received, 10 * 4, "{:?}", a.metrics());
    // B: A's 20 prod.orders events match 4 patterns, its 10 prod.users events 3.
    assert_eq!(b.metrics().received, 20 * 4 + 10 * 3, "{:?}", b.metrics());
}

// ---------------------------------------------------------------------------------------------
// 4. NATS interest follows local subscriptions.
// ---------------------------------------------------------------------------------------------

/// What NATS says about interest in `subject`, seen by a foreign client's request.
#[derive(Debug, PartialEq, Eq)]
enum Interest {
    /// Someone is subscribed (the bus never replies, so the request times out).
    Listening,
    /// No subscription matches: NATS answers "no responders" at once.
    Nobody,
}

const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

async fn probe(client: &async_nats::Client, subject: &str) -> Interest {
    let request = async_nats::Request::new()
        .payload(bytes::Bytes::new())
        .timeout(Some(PROBE_TIMEOUT));
    let started = Instant::now();
    match client.send_request(subject.to_owned(), request).await {
        Ok(reply) => panic!("{subject}: nobody should reply to a bus subject: {reply:?}"),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
            assert!(
                started.elapsed() < PROBE_TIMEOUT,
                "no-responders should be immediate"
            );
            Interest::Nobody
        }
        Err(e) if e.kind() == RequestErrorKind::TimedOut => Interest::Listening,
        Err(e) => panic!("{subject}: unexpected request error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_interest_exists_exactly_while_someone_subscribes() {
    let server = start_server();
    let bus = node(&server.url()).await;
    // A foreign client; no bus stream exists on this server (it would answer requests).
    let raw = async_nats::connect(server.url())
        .await
        .expect("raw connect");
    let orders = ns("int.orders");
    let orders_subject = "aether.events.int.orders";
    let users_subject = "aether.events.int.users";
    let mut listening_probes = 0;
    let mut check = async |subject: &str, interest: Interest, what: &str| {
        within("flush", bus.flush()).await.expect("flush");
        assert_eq!(probe(&raw, subject).await, interest, "{what}");
        if interest == Interest::Listening {
            listening_probes += 1;
        }
    };

    check(orders_subject, Interest::Nobody, "no subscription yet").await;

    let first = bus.subscribe(&orders);
    check(orders_subject, Interest::Listening, "first subscriber").await;
    let second = bus.namespace(orders.clone()).subscribe();
    drop(first);
    check(orders_subject, Interest::Listening, "one of two left").await;
    drop(second);
    check(orders_subject, Interest::Nobody, "last subscriber gone").await;

    let star = bus.subscribe_across_namespaces(&pattern("int.*"), SubscribeOptions::new());
    check(users_subject, Interest::Listening, "int.* covers int.users").await;
    let star_too = bus.subscribe_across_namespaces(
        &pattern("int.*"),
        SubscriptionFilter::new().event_types(["X"]).into(),
    );
    star.unsubscribe();
    check(users_subject, Interest::Listening, "one int.* left").await;
    drop(star_too);
    check(users_subject, Interest::Nobody, "no int.* left").await;

    let all = bus.subscribe_across_namespaces(&pattern(">"), SubscribeOptions::new());
    check(orders_subject, Interest::Listening, "> covers everything").await;
    drop(all);
    check(orders_subject, Interest::Nobody, "> gone").await;

    // Each listening probe reached exactly one NATS subscription of the bus (one per
    // pattern, however many local subscribers) and was counted there on arrival. Payloads are
    // decoded only when taken or filtered: no subscriber took a probe, and one probe ("one
    // int.* left") met a filter, which found it undecodable.
    eventually("the probes are read", || {
        bus.metrics().received >= listening_probes
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(bus.metrics().received, listening_probes);
    assert_eq!(bus.metrics().undecodable, 1);
    assert_eq!(bus.subscriber_count(), 0);
}

/// `flush` promises that after it "events published anywhere reach this bus's subscriptions":
/// the server must have *processed* the subscription, not merely received the bytes. Checked
/// many times in a row, since a race shows only sometimes: right after `subscribe` + `flush`, a
/// foreign client's event must arrive; right after dropping it + `flush`, the server must
/// report no responders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_means_the_server_has_processed_interest_changes() {
    const ROUNDS: usize = 200;
    let server = start_server();
    let bus = node(&server.url()).await;
    let raw = async_nats::connect(server.url())
        .await
        .expect("raw connect");
    let (mut missed, mut stale) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let namespace = ns(&format!("flush.n{round}"));
        let subject = format!("aether.events.{namespace}");
        let mut sub = bus.subscribe(&namespace);
        flush(&[&bus]).await;
        let event = Event::new(actor("o-1"), "Probe", round as u64 + 1);
        raw.publish(
            subject.clone(),
            serde_json::to_vec(&event).expect("json").into(),
        )
        .await
        .expect("raw publish");
        match tokio::time::timeout(Duration::from_secs(1), sub.recv()).await {
            Ok(Some(got)) => assert_eq!(got.id, event.id),
            Ok(None) => panic!("subscription ended"),
            Err(_) => missed.push(round),
        }
        drop(sub);
        flush(&[&bus]).await;
        if probe(&raw, &subject).await == Interest::Listening {
            stale.push(round);
        }
    }
    assert!(
        missed.is_empty() && stale.is_empty(),
        "of {ROUNDS} rounds, events missed right after subscribe + flush: {missed:?}; \
         interest still held right after unsubscribe + flush: {stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_events_stop_after_unsubscribe_and_resume_after_subscribe() {
    let server = start_server();
    let a = node(&server.url()).await;
    let b = node(&server.url()).await;
    let orders = ns("int.orders");
    let mut exact = b.subscribe(&orders);
    // Stays subscribed throughout: proves each event did reach node B.
    let mut control = b.subscribe_across_namespaces(&pattern("int.>"), SubscribeOptions::new());
    flush(&[&b]).await;

    let first = Event::new(actor("o-1"), "First", 1);
    a.publish(&orders, first.clone()).await;
    assert_eq!(take(&mut exact, 1, "exact").await[0].1.id, first.id);
    assert_eq!(take(&mut control, 1, "control").await[0].1.id, first.id);
    assert_eq!(b.metrics().received, 2);

    drop(exact);
    flush(&[&b]).await;
    let second = Event::new(actor("o-1"), "Second", 2);
    a.publish(&orders, second.clone()).await;
    assert_eq!(take(&mut control, 1, "control").await[0].1.id, second.id);
    assert_quiet(&[&a], &mut [("control", &mut control)]).await;
    assert_eq!(
        b.metrics().received,
        3,
        "after unsubscribing, only the control's NATS subscription receives"
    );

    let mut again = b.subscribe(&orders);
    flush(&[&b]).await;
    let third = Event::new(actor("o-1"), "Third", 3);
    a.publish(&orders, third.clone()).await;
    assert_eq!(
        take(&mut again, 1, "new subscription").await[0].1.id,
        third.id,
        "the new subscription starts with the next event, not the one it missed"
    );
    assert_eq!(take(&mut control, 1, "control").await[0].1.id, third.id);
    assert_quiet(
        &[&a],
        &mut [("again", &mut again), ("control", &mut control)],
    )
    .await;
    assert_eq!(b.metrics().received, 5);
    assert_eq!(
        b.metrics().lost,
        0,
        "a gap in what a subscription never asked for is no loss"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Exact metrics for a known traffic pattern.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exact_and_own_events_are_never_received() {
    let server = start_server();
    let a = node(&server.url()).await;
    let b = node(&server.url()).await;
    let c = node(&server.url()).await; // connected, subscribed to nothing
    let one = ns("m.one");
    let two = ns("m.two");
    let mut x1 = b.subscribe(&one);
    let mut x2 = b.subscribe(&one);
    let mut keep = b.subscribe_across_namespaces(
        &pattern("m.*"),
        SubscriptionFilter::new().event_types(["Keep"]).into(),
    );
    let mut all = b.subscribe_across_namespaces(&pattern(">"), SubscribeOptions::new());
    let mut on_a = a.subscribe(&one);
    flush(&[&a, &b, &c]).await;

    // A: 10 events in m.one (5 Keep), 5 in m.two (2 Keep).
    for i in 0..10u64 {
        let kind = if i % 2 == 0 { "Keep" } else { "Skip" };
        a.publish(&one, Event::new(actor("o-1"), kind, i + 1)).await;
    }
    for i in 0..5u64 {
        let kind = if i < 2 { "Keep" } else { "Skip" };
        a.publish(&two, Event::new(actor("o-2"), kind, i + 1)).await;
    }
    // B: 3 Keep events in m.one. Its own NATS subscriptions (m.one, m.*, >) get them back from
    // the server, and must ignore them.
    for i in 0..3u64 {
        b.publish(&one, Event::new(actor("o-3"), "Keep", i + 1))
            .await;
    }
    flush(&[&b]).await;
    // A marker from A, after B's echoes reached the server: when B's subscriptions have it,
    // they have seen everything before it.
    a.publish(&one, Event::new(actor("o-1"), "Keep", 11)).await;

    take(&mut x1, 10 + 3 + 1, "x1").await;
    take(&mut x2, 10 + 3 + 1, "x2").await;
    take(&mut keep, 5 + 2 + 3 + 1, "keep").await;
    take(&mut all, 15 + 3 + 1, "all").await;
    take(&mut on_a, 10 + 3 + 1, "on A").await;
    assert_quiet(
        &[&a, &b, &c],
        &mut [
            ("x1", &mut x1),
            ("x2", &mut x2),
            ("keep", &mut keep),
            ("all", &mut all),
            ("on A", &mut on_a),
        ],
    )
    .await;

    assert_eq!(
        figures(&a.metrics()),
        expect_figures(&[
            ("published", 16),
            ("sent", 16),
            // on_a: 11 of its own, 3 of B's.
            ("delivered", 14),
            // B's 3, through A's one NATS subscription (m.one).
            ("received", 3),
        ]),
        "A"
    );
    assert_eq!(
        figures(&b.metrics()),
        expect_figures(&[
            ("published", 3),
            ("sent", 3),
            ("delivered", 14 + 14 + 11 + 19),
            // A's 16 events: 11 through m.one, 16 through m.*, 16 through >.
            ("received", 11 + 16 + 16),
        ]),
        "B"
    );
    assert_eq!(figures(&c.metrics()), expect_figures(&[]), "C");
}

// ---------------------------------------------------------------------------------------------
// 6. Garbage and foreign publishers.
// ---------------------------------------------------------------------------------------------

fn headers(origin: &str, sequence: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(wire::ORIGIN_HEADER, origin);
    h.insert(wire::SEQUENCE_HEADER, sequence);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_foreign_events_are_delivered() {
    let subscription_valid = |name: &str| if name == "exact" { 3 } else { 4 };
    let server = start_server();
    let b = node(&server.url()).await;
    let orders = ns("g.orders");
    let users = ns("g.users");
    let mut exact = b.subscribe(&orders);
    let mut star = b.subscribe_across_namespaces(&pattern("g.*"), SubscribeOptions::new());
    flush(&[&b]).await;
    let raw = async_nats::connect(server.url())
        .await
        .expect("raw connect");

    let valid = Event::new(actor("o-1"), "Foreign", 1);
    let mut valid_json = serde_json::to_value(&valid).expect("json");
    let mut bad_actor = valid_json.clone();
    bad_actor["actorId"] = json!("a b");
    let mut no_time = valid_json.clone();
    no_time.as_object_mut().expect("object").remove("timestamp");
    let garbage: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        Vec::new(),
        b"{}".to_vec(),
        b"[1,2,3]".to_vec(),
        b"\"a string\"".to_vec(),
        serde_json::to_vec(&bad_actor).expect("json"),
        serde_json::to_vec(&no_time).expect("json"),
        vec![0xff, 0xfe, 0x00],
    ];
    for payload in &garbage {
        raw.publish("aether.events.g.orders", payload.clone().into())
            .await
            .expect("raw publish");
    }
    // A valid event on a subject that is not a valid namespace (`$`): only g.* matches it.
    raw.publish(
        "aether.events.g.t$x",
        serde_json::to_vec(&valid_json).expect("json").into(),
    )
    .await
    .expect("raw publish");

    // A foreign publisher (no Aether headers) is welcome.
    raw.publish(
        "aether.events.g.orders",
        serde_json::to_vec(&valid_json).expect("json").into(),
    )
    .await
    .expect("raw publish");
    let other = Event::new(actor("u-1"), "Foreign", 1);
    raw.publish(
        "aether.events.g.users",
        serde_json::to_vec(&other).expect("json").into(),
    )
    .await
    .expect("raw publish");
    // One that numbers its events: a jump from 1 to 4 is 2 lost, seen by each subscription.
    for (sequence, version) in [("1", 2), ("4", 3)] {
        valid_json["version"] = json!(version);
        valid_json["id"] = json!(format!("numbered-{version}"));
        raw.publish_with_headers(
            "aether.events.g.orders",
            headers("foreign-node", sequence),
            serde_json::to_vec(&valid_json).expect("json").into(),
        )
        .await
        .expect("raw publish");
    }
    raw.flush().await.expect("raw flush");

    let got_exact = take(&mut exact, 3, "exact").await;
    assert_eq!(got_exact[0].1.id, valid.id);
    assert_eq!(*got_exact[0].1, valid, "delivered as published");
    assert_eq!(got_exact[1].1.id.as_str(), "numbered-2");
    assert_eq!(got_exact[2].1.id.as_str(), "numbered-3");
    let got_star = take(&mut star, 4, "g.*").await;
    let seen: Vec<(&str, &str)> = got_star
        .iter()
        .map(|(n, e)| (n.as_str(), e.id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("g.orders", valid.id.as_str()),
            ("g.users", other.id.as_str()),
            ("g.orders", "numbered-2"),
            ("g.orders", "numbered-3"),
        ]
    );
    assert_eq!(got_star[1].0, users);
    tokio::time::sleep(QUIET).await;
    assert!(exact.try_recv().is_none() && star.try_recv().is_none());
    for (name, subscription) in [("exact", &exact), ("g.*", &star)] {
        let m = subscription.metrics();
        assert_eq!(
            (m.delivered, m.undecodable),
            (
                subscription_valid(name) + garbage.len() as u64,
                garbage.len() as u64
            ),
            "{name}: garbage is delivered undecoded and skipped when taken"
        );
    }

    assert_eq!(
        figures(&b.metrics()),
        expect_figures(&[
            // Each garbage message reached both NATS subscriptions, was delivered to their
            // subscribers undecoded and found undecodable when taken; the bad subject only
            // reached g.* and was refused on arrival.
            ("undecodable", 2 * garbage.len() as u64 + 1),
            ("received", 3 + 4 + 2 * garbage.len() as u64),
            ("delivered", 3 + 4 + 2 * garbage.len() as u64),
            ("lost", 2 * 2),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sequence_numbers_cannot_wrap_lost() {
    let server = start_server();
    let b = node(&server.url()).await;
    let orders = ns("forged.orders");
    let mut exact = b.subscribe(&orders);
    flush(&[&b]).await;
    let raw = async_nats::connect(server.url())
        .await
        .expect("raw connect");
    // Two forgers each jump from 1 to u64::MAX, then send 3: the absurd jump is ignored and
    // only the genuine gap (1 → 3: one event) is counted.
    let max = u64::MAX.to_string();
    let mut sent = 0;
    for origin in ["forger-1", "forger-2"] {
        for sequence in ["1", max.as_str(), "3"] {
            sent += 1;
            let event = Event::new(actor("o-1"), "Forged", sent);
            raw.publish_with_headers(
                "aether.events.forged.orders",
                headers(origin, sequence),
                serde_json::to_vec(&event).expect("json").into(),
            )
            .await
            .expect("raw publish");
        }
    }
    raw.flush().await.expect("raw flush");
    let got = take(&mut exact, sent as usize, "exact").await;
    assert_eq!(got.len() as u64, sent, "forged numbers are still delivered");
    let m = b.metrics();
    assert_eq!(
        (m.received, m.lost),
        (sent, 2),
        "one genuine gap per forger, absurd jumps ignored: {m:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Loss accounting under a flood.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_a_flood_is_received_or_counted_lost() {
    const FLOOD: u64 = 3000;
    let server = start_server();
    let a = node(&server.url()).await;
    let mut config = NatsBusConfig::default();
    config.subscription_capacity = 4;
    let b = node_with(&server.url(), config).await;
    let flood = ns("flood.orders");
    // Back-pressure instead of local drops: the reader waits for the slow consumer, so the
    // client's 4-message buffer overflows and NATS-side losses are what we measure.
    let mut sub = b.subscribe_with(
        &flood,
        SubscribeOptions::new()
            .queue_capacity(1)
            .overflow(Overflow::Block {
                timeout: Duration::from_secs(10),
            }),
    );
    flush(&[&b]).await;

    let consumed = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let consumed = consumed.clone();
        tokio::spawn(async move {
            let mut versions = Vec::new();
            while let Some(event) = sub.recv().await {
                versions.push(event.version);
                consumed.fetch_add(1, Ordering::SeqCst);
                if event.event_type == "Probe" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (versions, sub.metrics())
        })
    };

    let started = Instant::now();
    for version in 1..=FLOOD {
        a.publish(&flood, Event::new(actor("o-1"), "Flood", version))
            .await;
    }
    flush(&[&a]).await;

    // Wait until B is idle: everything its reader took has been consumed, for a while.
    let mut last = (u64::MAX, u64::MAX);
    loop {
        assert!(
            started.elapsed() < PATIENCE,
            "B never settled: {:?}",
            b.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let m = b.metrics();
        let now = (m.received, m.lost);
        if now == last && consumed.load(Ordering::SeqCst) as u64 == m.received {
            break;
        }
        last = now;
    }
    let before = b.metrics();
    assert!(
        before.received + before.lost <= FLOOD,
        "more accounted for than sent: {before:?}"
    );
    let unseen_tail = FLOOD - before.received - before.lost;

    // A last event reveals losses at the end of the flood (a gap is seen when the next event
    // arrives).
    a.publish(&flood, Event::new(actor("o-1"), "Probe", FLOOD + 1))
        .await;
    let (versions, sub_metrics) = within("the probe reaches the consumer", consumer)
        .await
        .expect("consumer");
    let after = b.metrics();
    let sent = a.metrics().sent;
    println!(
        "flood of {FLOOD}: received {} lost {} (unseen before the probe: {unseen_tail}), \
         slow_consumer notices {}, in {:?}",
        after.received,
        after.lost,
        after.slow_consumer,
        started.elapsed()
    );

    assert_eq!(sent, FLOOD + 1);
    assert_eq!(
        versions.first(),
        Some(&1),
        "the flood's first event should find B's subscription in place (B flushed before); \
         events before the first one seen are not counted as lost"
    );
    assert!(
        after.slow_consumer > 0,
        "the flood should overflow B: {after:?}"
    );
    assert!(after.lost > 0, "{after:?}");
    assert_eq!(
        after.received + after.lost,
        sent,
        "every event sent is received or counted lost: {after:?}"
    );
    // What the consumer saw agrees: increasing versions, the probe last, the gaps are `lost`.
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(versions.last(), Some(&(FLOOD + 1)));
    assert_eq!(versions.len() as u64, after.received);
    assert_eq!(FLOOD + 1 - versions.len() as u64, after.lost);
    // No local drops: the losses are all on the network side.
    assert_eq!(
        (sub_metrics.delivered, sub_metrics.dropped),
        (after.received, 0)
    );
    assert_eq!((after.delivered, after.dropped), (after.received, 0));
    let a_metrics = a.metrics();
    assert_eq!(
        (
            a_metrics.send_failed,
            a_metrics.send_dropped,
            a_metrics.lost
        ),
        (0, 0, 0)
    );
}

// ---------------------------------------------------------------------------------------------
// 8. The outgoing path: order and numbering across publish, try_publish and cancelled publishes.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_publish_and_try_publish_arrive_in_call_order_without_false_gaps() {
    const EVENTS: u64 = 3000;
    let server = start_server();
    let mut config = NatsBusConfig::default();
    // Small enough that try_publish bursts sometimes find it full (counted, never sent).
    config.outgoing_queue = 16;
    let a = node_with(&server.url(), config).await;
    let b = node(&server.url()).await;
    let orders = ns("mixed.orders");
    let mut remote = b.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(4096));
    flush(&[&b]).await;

    // Runs of try_publish (queued for the outgoing task) alternate with runs of publish (sent
    // from this task, or queued behind what try_publish left): one caller, so one order.
    let mut sent_versions = Vec::new();
    let mut version = 0;
    let mut run = 0;
    while version < EVENTS {
        run += 1;
        for _ in 0..(run % 7 + 1).min(EVENTS - version) {
            version += 1;
            let dropped_before = a.metrics().send_dropped;
            if run % 2 == 0 {
                a.try_publish(&orders, Event::new(actor("o-1"), "Mixed", version));
            } else {
                a.publish(&orders, Event::new(actor("o-1"), "Mixed", version))
                    .await;
            }
            if a.metrics().send_dropped == dropped_before {
                sent_versions.push(version);
            }
        }
        if run % 5 == 0 {
            tokio::task::yield_now().await;
        }
    }
    flush(&[&a]).await;

    let got = take(&mut remote, sent_versions.len(), "remote").await;
    let got_versions: Vec<u64> = got.iter().map(|(_, e)| e.version).collect();
    assert_eq!(got_versions, sent_versions, "in call order, nothing extra");
    assert_quiet(&[&a], &mut [("remote", &mut remote)]).await;
    let (ma, mb) = (a.metrics(), b.metrics());
    assert_eq!(ma.sent, sent_versions.len() as u64, "{ma:?}");
    assert_eq!(ma.sent + ma.send_dropped, EVENTS, "{ma:?}");
    assert_eq!(
        (mb.received, mb.lost),
        (ma.sent, 0),
        "a dropped try_publish is never numbered, so it is no gap: {mb:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_publishes_leave_no_false_gaps() {
    let server = start_server();
    let a = node(&server.url()).await;
    let b = node(&server.url()).await;
    let orders = ns("cancel.orders");
    let mut remote = b.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(8192));
    flush(&[&b]).await;

    // Many publishers race on one bus; a third of the publishes are cancelled at a random point
    // (often while another holds the numbering lock). Whatever reaches the client is numbered
    // without holes, so the receiver counts no loss and gets exactly what was sent.
    let publishers: Vec<_> = (0..8u64)
        .map(|p| {
            let a = a.clone();
            let orders = orders.clone();
            tokio::spawn(async move {
                for i in 0..500u64 {
                    let event = Event::new(actor(&format!("o-{p}")), "Raced", i + 1);
                    let publish = a.publish(&orders, event);
                    if i % 3 == 0 {
                        // Poll once, then drop: cancelled wherever it was.
                        let _ = futures::FutureExt::now_or_never(publish);
                    } else {
                        publish.await;
                    }
                }
            })
        })
        .collect();
    for publisher in publishers {
        within("publisher", publisher).await.expect("publisher");
    }
    flush(&[&a]).await;
    let sent = a.metrics().sent;
    assert!(
        sent >= 8 * 333,
        "at least the awaited publishes were sent: {sent}"
    );
    let got = take(&mut remote, sent as usize, "remote").await;
    // Per publisher, in order.
    let mut last: HashMap<String, u64> = HashMap::new();
    for (_, event) in &got {
        let previous = last.insert(event.actor_id.to_string(), event.version);
        assert!(
            previous.is_none_or(|p| p < event.version),
            "{event:?} after {previous:?}"
        );
    }
    assert_quiet(&[&a], &mut [("remote", &mut remote)]).await;
    let mb = b.metrics();
    assert_eq!((mb.received, mb.lost), (sent, 0), "{mb:?}");
}
