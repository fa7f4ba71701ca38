//! Events delivered in wire form: [`EventBus::deliver_encoded_to_pattern`] with an
//! [`EncodedEvent`] whose `decode` counts its calls and records the thread it ran on.
//!
//! - Laziness and sharing: nothing is decoded at delivery for unfiltered subscribers; the first
//!   subscriber to take the event decodes it, once for all of them, and they all get the same
//!   `Arc<Event>` (also when several threads take it at the same moment). An event no one takes
//!   (no subscriber, subscription dropped, queue full) is never decoded.
//! - Undecodable payloads: every way of taking events (`recv`, `try_recv`, the `Stream`,
//!   `with_namespaces`, `recv_with_namespace`) skips them, keeps the order of the others, and
//!   counts each in `undecodable` when skipped (they were counted in `delivered`).
//! - Filters: a filtered subscriber makes routing decode (on the delivering thread); it gets
//!   only matching events, never garbage (neither delivered nor undecodable), and shares the
//!   decoded `Arc` with the unfiltered subscribers of the same delivery.
//! - Wildcard patterns carry the namespace of each event.
//! - Overflow: `Block` waits for room (nothing lost) or times out / is cancelled (dropped and
//!   counted, never decoded); `DropNewest` drops and counts without decoding.
//! - Decoding runs on the subscriber's thread when the subscriber takes the event.
//! - A property over random sequences of local publishes, good and garbage encoded events and
//!   takes: each subscriber gets exactly the decodable events that pass its filter, in order,
//!   the undecodable counts are exact, and every encoded event is decoded at most once, exactly
//!   when the model says it must have been.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use aether_core::{
    ActorId, Delivery, EncodedEvent, Event, EventBus, Namespace, Overflow, Pattern,
    SubscribeOptions, Subscription, SubscriptionFilter,
};
use futures::StreamExt;
use futures::executor::block_on;
use proptest::prelude::*;

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap_or_else(|e| panic!("{e}"))
}

fn pattern(text: &str) -> Pattern {
    Pattern::new(text).unwrap_or_else(|e| panic!("{e}"))
}

fn event(actor: &str, event_type: &str, version: u64) -> Event {
    Event::new(
        ActorId::new(actor).unwrap_or_else(|e| panic!("{e}")),
        event_type,
        version,
    )
}

fn counts(delivery: Delivery) -> (usize, usize) {
    (delivery.delivered, delivery.dropped)
}

/// What the `decode` calls of a family of [`Wire`] events did: how many there were and on
/// which threads they ran.
#[derive(Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
    threads: Arc<Mutex<Vec<ThreadId>>>,
    /// Makes each decode take this long, to widen races.
    delay: Option<Duration>,
}

impl Probe {
    fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }

    fn threads(&self) -> Vec<ThreadId> {
        self.threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `event` in wire form (JSON).
    fn good(&self, event: &Event) -> Wire {
        Wire {
            bytes: serde_json::to_vec(event).unwrap_or_else(|e| panic!("{e}")),
            probe: self.clone(),
        }
    }

    /// Bytes that are not an event.
    fn garbage(&self) -> Wire {
        Wire {
            bytes: b"{\"not\": \"an event\"}".to_vec(),
            probe: self.clone(),
        }
    }
}

/// An event as a transport would deliver it: JSON bytes, decoded on demand.
struct Wire {
    bytes: Vec<u8>,
    probe: Probe,
}

impl EncodedEvent for Wire {
    fn decode(&self) -> Option<Event> {
        self.probe.calls.fetch_add(1, SeqCst);
        self.probe
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(std::thread::current().id());
        if let Some(delay) = self.probe.delay {
            std::thread::sleep(delay);
        }
        serde_json::from_slice(&self.bytes).ok()
    }
}

/// The undecodable and delivered counts of a subscription.
/// A subscription to `namespace` with a one-event queue that makes deliveries wait up to
/// `timeout` for room.
fn one_slot_blocking(bus: &EventBus, namespace: &Namespace, timeout: Duration) -> Subscription {
    bus.subscribe_with(
        namespace,
        SubscribeOptions::new()
            .queue_capacity(1)
            .overflow(Overflow::Block { timeout }),
    )
}

/// A subscription's `(delivered, dropped, undecodable)`.
fn subscription_figures(subscription: &Subscription) -> (u64, u64, u64) {
    let metrics = subscription.metrics();
    (metrics.delivered, metrics.dropped, metrics.undecodable)
}

/// A bus's `(published, delivered, dropped)`.
fn bus_figures(bus: &EventBus) -> (u64, u64, u64) {
    let metrics = bus.metrics();
    (metrics.published, metrics.delivered, metrics.dropped)
}

fn undecodable_delivered(subscription: &Subscription) -> (u64, u64) {
    let metrics = subscription.metrics();
    (metrics.undecodable, metrics.delivered)
}

#[tokio::test]
async fn one_decode_shared_by_every_unfiltered_subscriber_and_only_when_taken() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let mut first = bus.subscribe(&orders);
    let mut second = bus.subscribe(&orders);
    let mut third = bus.namespace(orders.clone()).subscribe();
    let probe = Probe::default();
    let original = event("order-1", "OrderPlaced", 1);

    let delivery = bus
        .deliver_encoded_to_pattern(&exact, &orders, probe.good(&original))
        .await;
    assert_eq!(counts(delivery), (3, 0));
    assert_eq!(
        probe.calls(),
        0,
        "nothing is decoded before a subscriber takes it"
    );
    assert_eq!((first.queued(), second.queued(), third.queued()), (1, 1, 1));

    let a = first.recv().await.expect("first subscriber's event");
    assert_eq!(*a, original);
    assert_eq!(probe.calls(), 1, "the first take decodes");
    let b = second.try_recv().expect("second subscriber's event");
    let c = third.next().await.expect("third subscriber's event");
    assert_eq!((*b == original, *c == original), (true, true));
    assert!(
        Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c),
        "all three share one decoded event"
    );
    assert_eq!(probe.calls(), 1, "decoded once for all three");

    for sub in [&first, &second, &third] {
        assert_eq!(subscription_figures(sub), (1, 0, 0));
    }
    assert_eq!(bus_figures(&bus), (0, 3, 0), "a delivery, not a publish");

    // Each delivery is its own decode, even of the same bytes.
    bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(&original))
        .await;
    let again = first.recv().await.expect("second delivery");
    assert_eq!(*again, original);
    assert!(!Arc::ptr_eq(&again, &a));
    assert_eq!(probe.calls(), 2);
}

#[tokio::test]
async fn garbage_is_decoded_once_and_counted_by_every_subscriber_that_skips_it() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let mut subs: Vec<Subscription> = (0..3).map(|_| bus.subscribe(&orders)).collect();
    let probe = Probe::default();
    let delivery = bus
        .deliver_encoded_to_pattern(&Pattern::exact(&orders), &orders, probe.garbage())
        .await;
    assert_eq!(counts(delivery), (3, 0));
    assert_eq!(probe.calls(), 0);
    for sub in &mut subs {
        assert!(sub.try_recv().is_none());
        assert_eq!(undecodable_delivered(sub), (1, 1));
    }
    assert_eq!(probe.calls(), 1, "a failed decode is remembered too");
    assert_eq!(bus.metrics().undecodable, 1, "the bus counts it once");
}

#[tokio::test]
async fn events_no_one_takes_are_never_decoded() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let probe = Probe::default();

    // No subscriber at all.
    let delivery = bus
        .deliver_encoded_to_pattern(&exact, &orders, probe.good(&event("a", "E", 1)))
        .await;
    assert_eq!(counts(delivery), (0, 0));

    // Subscribers of another pattern or namespace only.
    let mut other = bus.subscribe(&ns("users"));
    let mut star = bus.subscribe_across_namespaces(&pattern("*"), SubscribeOptions::new());
    let delivery = bus
        .deliver_encoded_to_pattern(&exact, &orders, probe.good(&event("a", "E", 2)))
        .await;
    assert_eq!(counts(delivery), (0, 0));
    assert!(other.try_recv().is_none() && star.try_recv().is_none());

    // A subscription dropped with the event still queued.
    let sub = bus.subscribe(&orders);
    let delivery = bus
        .deliver_encoded_to_pattern(&exact, &orders, probe.good(&event("a", "E", 3)))
        .await;
    assert_eq!(counts(delivery), (1, 0));
    drop(sub);
    assert_eq!(probe.calls(), 0);
}

/// The sequence used by the skipping tests: good events 0, 1, 2 with garbage around them, the
/// last item garbage. Returns the good events in order.
async fn deliver_mixed(bus: &EventBus, namespace: &Namespace, probe: &Probe) -> Vec<Event> {
    let goods: Vec<Event> = (0..3)
        .map(|i| event(&format!("actor-{i}"), "E", i + 1))
        .collect();
    let exact = Pattern::exact(namespace);
    let wires = [
        probe.good(&goods[0]),
        probe.garbage(),
        probe.good(&goods[1]),
        probe.garbage(),
        probe.garbage(),
        probe.good(&goods[2]),
        probe.garbage(),
    ];
    for wire in wires {
        let delivery = bus
            .deliver_encoded_to_pattern(&exact, namespace, wire)
            .await;
        assert_eq!(counts(delivery), (1, 0));
    }
    goods
}

const MIXED_LEN: u64 = 7;
const MIXED_GARBAGE: u64 = 4;

#[tokio::test]
async fn recv_skips_undecodable_events_in_order_and_counts_them_when_skipped() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let mut sub = bus.subscribe(&orders);
    let probe = Probe::default();
    let goods = deliver_mixed(&bus, &orders, &probe).await;
    assert_eq!(undecodable_delivered(&sub), (0, MIXED_LEN));
    assert_eq!(probe.calls(), 0);

    assert_eq!(*sub.recv().await.expect("good 0"), goods[0]);
    assert_eq!(undecodable_delivered(&sub), (0, MIXED_LEN));
    assert_eq!(probe.calls(), 1, "only what was taken so far is decoded");
    assert_eq!(*sub.recv().await.expect("good 1"), goods[1]);
    assert_eq!(undecodable_delivered(&sub), (1, MIXED_LEN));
    assert_eq!(*sub.recv().await.expect("good 2"), goods[2]);
    assert_eq!(undecodable_delivered(&sub), (3, MIXED_LEN));
    assert_eq!(probe.calls(), 6);

    // The trailing garbage is skipped once the bus is gone and the stream ends.
    drop(bus);
    assert!(sub.recv().await.is_none());
    assert_eq!(undecodable_delivered(&sub), (MIXED_GARBAGE, MIXED_LEN));
    assert_eq!(probe.calls(), MIXED_LEN as usize);
}

#[tokio::test]
async fn try_recv_skips_undecodable_events_in_order() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let mut sub = bus.subscribe(&orders);
    let probe = Probe::default();
    let goods = deliver_mixed(&bus, &orders, &probe).await;

    let got: Vec<Event> = std::iter::from_fn(|| sub.try_recv())
        .map(|e| (*e).clone())
        .collect();
    assert_eq!(got, goods);
    assert_eq!(sub.queued(), 0, "the trailing garbage was consumed");
    assert_eq!(undecodable_delivered(&sub), (MIXED_GARBAGE, MIXED_LEN));
    assert_eq!(probe.calls(), MIXED_LEN as usize);
    assert!(sub.try_recv().is_none());
    assert_eq!(undecodable_delivered(&sub), (MIXED_GARBAGE, MIXED_LEN));
}

#[tokio::test]
async fn the_stream_skips_undecodable_events_in_order() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let mut sub = bus.subscribe(&orders);
    let probe = Probe::default();
    let goods = deliver_mixed(&bus, &orders, &probe).await;

    assert_eq!(*sub.next().await.expect("good 0"), goods[0]);
    drop(bus);
    let rest: Vec<Event> = (&mut sub).map(|e| (*e).clone()).collect().await;
    assert_eq!(rest, goods[1..]);
    assert_eq!(undecodable_delivered(&sub), (MIXED_GARBAGE, MIXED_LEN));
    assert_eq!(probe.calls(), MIXED_LEN as usize);
}

#[tokio::test]
async fn with_namespaces_skips_undecodable_events_in_order() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let sub = bus.subscribe(&orders);
    let probe = Probe::default();
    let goods = deliver_mixed(&bus, &orders, &probe).await;

    let mut stream = sub.with_namespaces();
    let (namespace, head) = stream.next().await.expect("good 0");
    assert_eq!(
        (namespace, (*head).clone()),
        (orders.clone(), goods[0].clone())
    );
    drop(bus);
    let rest: Vec<(Namespace, Event)> = (&mut stream)
        .map(|(n, e)| (n, (*e).clone()))
        .collect()
        .await;
    let expected: Vec<(Namespace, Event)> = goods[1..]
        .iter()
        .map(|e| (orders.clone(), e.clone()))
        .collect();
    assert_eq!(rest, expected);
    assert_eq!(
        undecodable_delivered(stream.subscription()),
        (MIXED_GARBAGE, MIXED_LEN)
    );
    assert_eq!(probe.calls(), MIXED_LEN as usize);
}

#[tokio::test]
async fn recv_with_namespace_skips_undecodable_events_in_order() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let mut sub = bus.subscribe(&orders);
    let probe = Probe::default();
    let goods = deliver_mixed(&bus, &orders, &probe).await;

    for good in &goods {
        let (namespace, got) = sub.recv_with_namespace().await.expect("a good event");
        assert_eq!(namespace, orders);
        assert_eq!(*got, *good);
    }
    drop(bus);
    assert!(sub.recv_with_namespace().await.is_none());
    assert_eq!(undecodable_delivered(&sub), (MIXED_GARBAGE, MIXED_LEN));
    assert_eq!(probe.calls(), MIXED_LEN as usize);
}

#[tokio::test]
async fn a_waiting_recv_skips_garbage_that_arrives_and_wakes_for_the_next_good_event() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let mut sub = bus.subscribe(&orders);
    let probe = Probe::default();
    let good = event("a", "E", 1);

    let receiver = tokio::spawn(async move {
        let got = sub.recv().await;
        (got, sub)
    });
    tokio::task::yield_now().await;
    bus.deliver_encoded_to_pattern(&exact, &orders, probe.garbage())
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!receiver.is_finished(), "garbage must not end the wait");
    bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(&good))
        .await;
    let (got, sub) = tokio::time::timeout(Duration::from_secs(5), receiver)
        .await
        .expect("the receiver woke for the good event")
        .expect("task");
    assert_eq!(*got.expect("the good event"), good);
    assert_eq!(undecodable_delivered(&sub), (1, 2));
}

#[tokio::test]
async fn a_filtered_subscriber_decodes_during_routing_and_never_sees_garbage() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let mut placed = bus.subscribe_with_filter(
        &orders,
        SubscriptionFilter::new().event_types(["OrderPlaced"]),
    );
    let mut all = bus.subscribe(&orders);
    let probe = Probe::default();

    // Matching: decoded during delivery, shared with the unfiltered subscriber.
    let order_placed = event("order-1", "OrderPlaced", 1);
    let delivery = bus
        .deliver_encoded_to_pattern(&exact, &orders, probe.good(&order_placed))
        .await;
    assert_eq!(counts(delivery), (2, 0));
    assert_eq!(probe.calls(), 1, "the filter had to see the event");
    assert_eq!(
        probe.threads(),
        [std::thread::current().id()],
        "routing decodes on the delivering thread"
    );
    let from_filtered = placed.try_recv().expect("matching event");
    let from_all = all.try_recv().expect("unfiltered copy");
    assert_eq!(*from_filtered, order_placed);
    assert!(
        Arc::ptr_eq(&from_filtered, &from_all),
        "one decode, shared by the filter and the unfiltered subscriber"
    );
    assert_eq!(probe.calls(), 1, "taking it decodes nothing more");

    // Not matching: decoded for the filter, delivered to the unfiltered subscriber only.
    let shipped = event("order-1", "OrderShipped", 2);
    let delivery = bus
        .deliver_encoded_to_pattern(&exact, &orders, probe.good(&shipped))
        .await;
    assert_eq!(counts(delivery), (1, 0));
    assert_eq!(probe.calls(), 2);
    assert!(placed.try_recv().is_none());
    assert_eq!(*all.try_recv().expect("unfiltered copy"), shipped);
    assert_eq!(probe.calls(), 2);

    // Garbage: decoded (and failed) during routing, never delivered to the filtered
    // subscriber; the unfiltered one gets it, skips it and counts it.
    let delivery = bus
        .deliver_encoded_to_pattern(&exact, &orders, probe.garbage())
        .await;
    assert_eq!(counts(delivery), (1, 0));
    assert_eq!(probe.calls(), 3);
    assert_eq!(placed.queued(), 0);
    assert_eq!(all.queued(), 1);
    assert!(all.try_recv().is_none());
    assert_eq!(probe.calls(), 3, "the failure was remembered");

    assert_eq!(subscription_figures(&placed), (1, 0, 0));
    assert_eq!(subscription_figures(&all), (3, 0, 1));
    assert_eq!(bus_figures(&bus), (0, 4, 0));
    assert_eq!(
        bus.metrics().undecodable,
        1,
        "the garbage is counted once: by the filter that decoded it, not again by the taker"
    );
}

#[tokio::test]
async fn an_actor_pattern_filter_applies_to_encoded_events() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let mut eu = bus.subscribe_with(
        &orders,
        SubscribeOptions::new().filter(SubscriptionFilter::new().actor_pattern(pattern("eu.*"))),
    );
    let probe = Probe::default();
    let events = [
        event("eu.1", "A", 1),
        event("us.1", "A", 1),
        event("eu.2", "B", 1),
        event("eu.1.x", "A", 2),
    ];
    for e in &events {
        bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(e))
            .await;
    }
    bus.deliver_encoded_to_pattern(&exact, &orders, probe.garbage())
        .await;
    assert_eq!(probe.calls(), 5);
    let got: Vec<Event> = std::iter::from_fn(|| eu.try_recv())
        .map(|e| (*e).clone())
        .collect();
    assert_eq!(got, [events[0].clone(), events[2].clone()]);
    assert_eq!(undecodable_delivered(&eu), (0, 2));
}

#[tokio::test]
async fn a_wildcard_subscription_gets_the_namespace_of_each_encoded_event() {
    let bus = EventBus::new();
    let orders = ns("prod.orders");
    let users = ns("prod.users");
    let star = pattern("prod.*");
    let mut audit = bus.subscribe_across_namespaces(&star, SubscribeOptions::new());
    let audit_a =
        bus.subscribe_across_namespaces(&star, SubscriptionFilter::new().event_types(["A"]).into());
    let mut exact_orders = bus.subscribe(&orders);
    let mut everything = bus.subscribe_across_namespaces(&pattern(">"), SubscribeOptions::new());
    let probe = Probe::default();

    let sent = [
        (orders.clone(), Some(event("o-1", "A", 1))),
        (users.clone(), Some(event("u-1", "B", 1))),
        (users.clone(), None),
        (orders.clone(), Some(event("o-1", "B", 2))),
        (orders.clone(), None),
        (users.clone(), Some(event("u-1", "A", 2))),
    ];
    for (namespace, maybe) in &sent {
        let wire = match maybe {
            Some(e) => probe.good(e),
            None => probe.garbage(),
        };
        bus.deliver_encoded_to_pattern(&star, namespace, wire).await;
    }
    let good: Vec<(Namespace, Event)> = sent
        .iter()
        .filter_map(|(n, e)| e.clone().map(|e| (n.clone(), e)))
        .collect();

    let mut got = Vec::new();
    for _ in 0..good.len() {
        let (namespace, e) = audit.recv_with_namespace().await.expect("event");
        got.push((namespace, (*e).clone()));
    }
    assert_eq!(got, good);
    assert!(audit.try_recv().is_none());
    assert_eq!(undecodable_delivered(&audit), (2, 6));

    let stream = audit_a.with_namespaces();
    drop(bus);
    let got: Vec<(Namespace, Event)> = stream.map(|(n, e)| (n, (*e).clone())).collect().await;
    let expected: Vec<(Namespace, Event)> = good
        .iter()
        .filter(|(_, e)| e.event_type == "A")
        .cloned()
        .collect();
    assert_eq!(got, expected);

    assert!(
        exact_orders.try_recv().is_none() && everything.try_recv().is_none(),
        "delivered to the named pattern only"
    );
    assert_eq!(probe.calls(), sent.len(), "each delivery decoded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_subscriber_makes_delivery_wait_for_room_and_loses_nothing() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let mut sub = one_slot_blocking(&bus, &orders, Duration::from_secs(10));
    let probe = Probe::default();
    let events: Vec<Event> = (1..=20).map(|v| event("a", "E", v)).collect();

    let expected = events.len();
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < expected {
            tokio::time::sleep(Duration::from_millis(1)).await;
            got.push((*sub.recv().await.expect("event")).clone());
        }
        (got, sub)
    });
    for (i, e) in events.iter().enumerate() {
        let delivery = bus
            .deliver_encoded_to_pattern(&exact, &orders, probe.good(e))
            .await;
        assert_eq!(counts(delivery), (1, 0), "event {i}");
        if i % 5 == 0 {
            bus.deliver_encoded_to_pattern(&exact, &orders, probe.garbage())
                .await;
        }
    }
    let (got, sub) = tokio::time::timeout(Duration::from_secs(10), consumer)
        .await
        .expect("consumer finished")
        .expect("task");
    assert_eq!(got, events);
    assert_eq!(subscription_figures(&sub), (24, 0, 4));
    assert_eq!(sub.metrics().queue_high_water, 1);
    assert_eq!(probe.calls(), 24);
    assert_eq!(bus_figures(&bus), (0, 24, 0));
}

#[tokio::test(start_paused = true)]
async fn a_blocking_subscriber_that_stays_full_loses_the_event_undecoded() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let mut sub = one_slot_blocking(&bus, &orders, Duration::from_millis(50));
    let probe = Probe::default();
    let first = event("a", "E", 1);
    bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(&first))
        .await;

    // Times out.
    let started = tokio::time::Instant::now();
    let delivery = bus
        .deliver_encoded_to_pattern(&exact, &orders, probe.good(&event("a", "E", 2)))
        .await;
    assert_eq!(counts(delivery), (0, 1));
    assert!(started.elapsed() >= Duration::from_millis(50));

    // Cancelled while waiting.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(10),
        bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(&event("a", "E", 3))),
    )
    .await;
    assert!(cancelled.is_err());

    assert_eq!(probe.calls(), 0, "the lost events were never decoded");
    assert_eq!(*sub.try_recv().expect("first"), first);
    assert!(sub.try_recv().is_none());
    assert_eq!(probe.calls(), 1);
    assert_eq!(subscription_figures(&sub), (1, 2, 0));
    assert_eq!(bus_figures(&bus), (0, 1, 2));
}

#[tokio::test]
async fn a_full_drop_newest_queue_drops_the_encoded_event_undecoded() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let mut sub = bus.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(1));
    let probe = Probe::default();
    let first = event("a", "E", 1);
    assert_eq!(
        counts(
            bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(&first))
                .await
        ),
        (1, 0)
    );
    assert_eq!(
        counts(
            bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(&event("a", "E", 2)))
                .await
        ),
        (0, 1)
    );
    assert_eq!(
        counts(
            bus.deliver_encoded_to_pattern(&exact, &orders, probe.garbage())
                .await
        ),
        (0, 1)
    );
    assert_eq!(probe.calls(), 0);
    assert_eq!(*sub.recv().await.expect("first"), first);
    assert!(sub.try_recv().is_none());
    assert_eq!(probe.calls(), 1, "only the kept event was decoded");
    assert_eq!(subscription_figures(&sub), (1, 2, 0));
    assert_eq!(bus_figures(&bus), (0, 1, 2));
}

#[test]
fn decoding_runs_on_the_thread_of_the_subscriber_that_takes_the_event() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let mut sub = bus.subscribe(&orders);
    let probe = Probe::default();
    let original = event("a", "E", 1);

    // The subscriber waits on its own thread before anything is delivered.
    let receiver = std::thread::spawn(move || {
        let got = block_on(sub.recv()).expect("event");
        (got, std::thread::current().id())
    });
    std::thread::sleep(Duration::from_millis(20));
    let delivery = block_on(bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(&original)));
    assert_eq!(counts(delivery), (1, 0));
    let (got, receiver_thread) = receiver.join().expect("receiver thread");
    assert_eq!(*got, original);
    assert_ne!(receiver_thread, std::thread::current().id());
    assert_eq!(
        probe.threads(),
        [receiver_thread],
        "decoded once, by the subscriber, not by the deliverer"
    );
}

#[test]
fn concurrent_takers_share_one_decode() {
    const TAKERS: usize = 8;
    let bus = EventBus::new();
    let orders = ns("orders");
    let exact = Pattern::exact(&orders);
    let subs: Vec<Subscription> = (0..TAKERS).map(|_| bus.subscribe(&orders)).collect();
    let probe = Probe {
        delay: Some(Duration::from_millis(20)),
        ..Probe::default()
    };
    let original = event("a", "E", 1);
    let delivery = block_on(bus.deliver_encoded_to_pattern(&exact, &orders, probe.good(&original)));
    assert_eq!(counts(delivery), (TAKERS, 0));
    assert_eq!(probe.calls(), 0);

    let barrier = Arc::new(Barrier::new(TAKERS));
    let takers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                sub.try_recv().expect("event")
            })
        })
        .collect();
    let got: Vec<Arc<Event>> = takers
        .into_iter()
        .map(|t| t.join().expect("taker thread"))
        .collect();
    assert_eq!(
        probe.calls(),
        1,
        "decoded once however many took it at once"
    );
    assert_eq!(*got[0], original);
    assert!(got.iter().all(|e| Arc::ptr_eq(e, &got[0])));
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// `try_publish` an event of type `TYPES[ty]`.
    Local { ty: usize },
    /// Deliver an event of type `TYPES[ty]` encoded.
    Good { ty: usize },
    /// Deliver bytes that do not decode.
    Garbage,
    /// `try_recv` on the unfiltered subscriber.
    TakeAll,
    /// `try_recv` on the filtered subscriber.
    TakeFiltered,
}

const TYPES: [&str; 3] = ["A", "B", "C"];
/// What the filtered subscriber passes.
const FILTERED_TYPE: &str = "A";

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..TYPES.len()).prop_map(|ty| Op::Local { ty }),
        3 => (0..TYPES.len()).prop_map(|ty| Op::Good { ty }),
        2 => Just(Op::Garbage),
        2 => Just(Op::TakeAll),
        1 => Just(Op::TakeFiltered),
    ]
}

/// What the model thinks is queued for a subscriber.
#[derive(Debug, Clone)]
enum Queued {
    Local(Event),
    /// The `usize` is the encoded item's index (its probe in `probes`).
    Encoded(usize, Option<Event>),
}

/// The model's take: pops until a decodable item, marking every encoded item popped as decoded
/// and counting the undecodable ones.
fn model_take(
    queue: &mut VecDeque<Queued>,
    decoded: &mut HashSet<usize>,
    undecodable: &mut u64,
) -> Option<Event> {
    while let Some(item) = queue.pop_front() {
        match item {
            Queued::Local(e) => return Some(e),
            Queued::Encoded(i, maybe) => {
                decoded.insert(i);
                match maybe {
                    Some(e) => return Some(e),
                    None => *undecodable += 1,
                }
            }
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn subscribers_get_exactly_the_decodable_events_they_match_decoded_at_most_once(
        ops in prop::collection::vec(op(), 1..80),
        with_filtered in any::<bool>(),
    ) {
        let bus = EventBus::new();
        let orders = ns("orders");
        let exact = Pattern::exact(&orders);
        let mut all = bus.subscribe(&orders);
        let mut filtered = with_filtered.then(|| {
            bus.subscribe_with_filter(&orders, SubscriptionFilter::new().event_types([FILTERED_TYPE]))
        });

        let mut probes: Vec<Probe> = Vec::new();
        let mut decoded: HashSet<usize> = HashSet::new();
        let mut queue_all: VecDeque<Queued> = VecDeque::new();
        let mut queue_filtered: VecDeque<Queued> = VecDeque::new();
        let (mut undecodable_all, mut undecodable_filtered) = (0u64, 0u64);
        let (mut delivered_all, mut delivered_filtered) = (0u64, 0u64);
        // Every event taken, by id, to check that both subscribers share one `Arc`.
        let mut taken: HashMap<String, Arc<Event>> = HashMap::new();
        let mut version = 0u64;
        let mut garbage_sent = 0u64;

        for op in ops {
            match op {
                Op::Local { ty } | Op::Good { ty } => {
                    version += 1;
                    let e = event("actor", TYPES[ty], version);
                    let item = if matches!(op, Op::Local { .. }) {
                        let delivery = bus.try_publish(&orders, e.clone());
                        prop_assert_eq!(delivery.dropped, 0);
                        Queued::Local(e.clone())
                    } else {
                        let probe = Probe::default();
                        let wire = probe.good(&e);
                        probes.push(probe);
                        let index = probes.len() - 1;
                        block_on(bus.deliver_encoded_to_pattern(&exact, &orders, wire));
                        if with_filtered {
                            decoded.insert(index);
                        }
                        Queued::Encoded(index, Some(e.clone()))
                    };
                    queue_all.push_back(item.clone());
                    delivered_all += 1;
                    if with_filtered && e.event_type == FILTERED_TYPE {
                        queue_filtered.push_back(item);
                        delivered_filtered += 1;
                    }
                }
                Op::Garbage => {
                    garbage_sent += 1;
                    let probe = Probe::default();
                    let wire = probe.garbage();
                    probes.push(probe);
                    let index = probes.len() - 1;
                    let delivery = block_on(bus.deliver_encoded_to_pattern(&exact, &orders, wire));
                    prop_assert_eq!(counts(delivery), (1, 0));
                    if with_filtered {
                        decoded.insert(index);
                    }
                    queue_all.push_back(Queued::Encoded(index, None));
                    delivered_all += 1;
                }
                Op::TakeAll => {
                    let expected = model_take(&mut queue_all, &mut decoded, &mut undecodable_all);
                    let got = all.try_recv();
                    prop_assert_eq!(got.as_deref(), expected.as_ref());
                    if let Some(got) = got {
                        let shared = taken.entry(got.id.to_string()).or_insert_with(|| got.clone());
                        prop_assert!(Arc::ptr_eq(shared, &got), "one Arc per delivery");
                    }
                }
                Op::TakeFiltered => {
                    let Some(sub) = filtered.as_mut() else { continue };
                    let expected =
                        model_take(&mut queue_filtered, &mut decoded, &mut undecodable_filtered);
                    let got = sub.try_recv();
                    prop_assert_eq!(got.as_deref(), expected.as_ref());
                    if let Some(got) = got {
                        let shared = taken.entry(got.id.to_string()).or_insert_with(|| got.clone());
                        prop_assert!(Arc::ptr_eq(shared, &got), "one Arc per delivery");
                    }
                }
            }
            // After every step: each encoded item decoded at most once, and exactly those the
            // model says were looked at.
            for (i, probe) in probes.iter().enumerate() {
                let expected = usize::from(decoded.contains(&i));
                prop_assert_eq!(probe.calls(), expected, "encoded item {}", i);
            }
            prop_assert_eq!(undecodable_delivered(&all), (undecodable_all, delivered_all));
            if let Some(sub) = &filtered {
                prop_assert_eq!(
                    undecodable_delivered(sub),
                    (undecodable_filtered, delivered_filtered)
                );
            }
        }

        // Drain both: the rest, in order.
        let rest: Vec<Event> = std::iter::from_fn(|| all.try_recv()).map(|e| (*e).clone()).collect();
        let mut expected = Vec::new();
        while let Some(e) = model_take(&mut queue_all, &mut decoded, &mut undecodable_all) {
            expected.push(e);
        }
        prop_assert_eq!(rest, expected);
        prop_assert_eq!(
            undecodable_delivered(&all),
            (garbage_sent, delivered_all),
            "every garbage item skipped and counted once"
        );
        if let Some(sub) = filtered.as_mut() {
            let rest: Vec<Event> =
                std::iter::from_fn(|| sub.try_recv()).map(|e| (*e).clone()).collect();
            let mut expected = Vec::new();
            while let Some(e) =
                model_take(&mut queue_filtered, &mut decoded, &mut undecodable_filtered)
            {
                expected.push(e);
            }
            prop_assert_eq!(rest, expected);
            prop_assert_eq!(sub.metrics().undecodable, 0, "garbage never reaches a filter");
        }
        let total: usize = probes.iter().map(Probe::calls).sum();
        prop_assert_eq!(total, probes.len(), "each encoded item decoded exactly once in total");
    }
}
