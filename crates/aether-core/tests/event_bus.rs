//! The local event bus: every success condition of capability 8 and the local half of
//! capability 4 (namespace isolation).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aether_core::{
    ActorId, BusConfig, Event, EventBus, NameRule, Namespace, Overflow, Pattern, SubscribeOptions,
    Subscription, SubscriptionFilter,
};
use futures::StreamExt;

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

fn event(actor: &str, event_type: &str, version: u64) -> Event {
    Event::new(ActorId::new(actor).unwrap(), event_type, version)
}

/// Everything queued right now, without waiting.
fn drain(subscription: &mut Subscription) -> Vec<Arc<Event>> {
    std::iter::from_fn(|| subscription.try_recv()).collect()
}

fn types(events: &[Arc<Event>]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[test]
fn exact_subscriber_gets_its_namespace_only() {
    let bus = EventBus::new();
    let mut orders = bus.subscribe(&ns("orders"));
    for (i, name) in [
        "orders",
        "orders.eu",
        "order",
        "ordersx",
        "eu.orders",
        "orders",
    ]
    .iter()
    .enumerate()
    {
        bus.try_publish(&ns(name), event("o-1", &format!("E{i}"), 1));
    }
    assert_eq!(types(&drain(&mut orders)), ["E0", "E5"]);
}

#[test]
fn tenants_are_isolated_and_wildcards_cross_namespaces_deliberately() {
    let bus = EventBus::new();
    let (a, b) = (ns("prod.tenant-a"), ns("prod.tenant-b"));
    let mut sub_a = bus.subscribe(&a);
    let mut sub_b = bus.subscribe(&b);
    let mut prod_star =
        bus.subscribe_across_namespaces(&Pattern::new("prod.*").unwrap(), SubscribeOptions::new());
    let mut everything =
        bus.subscribe_across_namespaces(&Pattern::new(">").unwrap(), SubscribeOptions::new());
    let mut staging = bus
        .subscribe_across_namespaces(&Pattern::new("staging.>").unwrap(), SubscribeOptions::new());

    bus.try_publish(&a, event("cart-1", "A", 1));
    bus.try_publish(&b, event("cart-1", "B", 1));
    bus.try_publish(&ns("prod.tenant-a.eu"), event("cart-1", "A-EU", 1));

    assert_eq!(types(&drain(&mut sub_a)), ["A"]);
    assert_eq!(types(&drain(&mut sub_b)), ["B"]);
    assert_eq!(
        types(&drain(&mut prod_star)),
        ["A", "B"],
        "`*` is exactly one token"
    );
    assert_eq!(types(&drain(&mut everything)), ["A", "B", "A-EU"]);
    assert!(drain(&mut staging).is_empty());
}

#[test]
fn namespaced_handle_is_confined_to_its_namespace() {
    let bus = EventBus::new();
    let tenant_a = bus.namespace(ns("prod.tenant-a"));
    let tenant_b = bus.namespace(ns("prod.tenant-b"));
    let mut a_sub = tenant_a.subscribe();
    let mut b_sub = tenant_b.subscribe_with_filter(SubscriptionFilter::new().event_types(["Paid"]));
    tenant_a.try_publish(event("x", "Placed", 1));
    tenant_b.try_publish(event("x", "Placed", 1));
    tenant_b.try_publish(event("x", "Paid", 2));
    assert_eq!(types(&drain(&mut a_sub)), ["Placed"]);
    assert_eq!(types(&drain(&mut b_sub)), ["Paid"]);
    assert_eq!(tenant_a.namespace().as_str(), "prod.tenant-a");
}

#[test]
fn filters_deliver_iff_they_match() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let by_type = SubscriptionFilter::new().event_types(["Placed", "Cancelled"]);
    let by_actor = SubscriptionFilter::new().actor_pattern(Pattern::new("order.eu.*").unwrap());
    let both = by_type
        .clone()
        .actor_pattern(Pattern::new("order.>").unwrap());
    let mut subs = [
        (
            bus.subscribe_with_filter(&orders, by_type),
            vec!["Placed@order.eu.1", "Cancelled@order.us.2", "Placed@order"],
        ),
        (
            bus.subscribe_with_filter(&orders, by_actor),
            vec!["Placed@order.eu.1", "Shipped@order.eu.3"],
        ),
        (
            bus.subscribe_with_filter(&orders, both),
            vec!["Placed@order.eu.1", "Cancelled@order.us.2"],
        ),
        (
            bus.subscribe_with_filter(&orders, SubscriptionFilter::new()),
            vec![
                "Placed@order.eu.1",
                "Shipped@order.eu.3",
                "Cancelled@order.us.2",
                "Shipped@order.eu.1.x",
                "Placed@order",
            ],
        ),
    ];
    for (t, a) in [
        ("Placed", "order.eu.1"),
        ("Shipped", "order.eu.3"),
        ("Cancelled", "order.us.2"),
        ("Shipped", "order.eu.1.x"),
        ("Placed", "order"),
    ] {
        bus.try_publish(&orders, event(a, t, 1));
    }
    for (i, (sub, expected)) in subs.iter_mut().enumerate() {
        let got: Vec<String> = drain(sub)
            .iter()
            .map(|e| format!("{}@{}", e.event_type, e.actor_id))
            .collect();
        assert_eq!(got, *expected, "subscription {i}");
    }
}

#[test]
fn stuck_subscriber_loses_only_its_own_events_and_counts_them() {
    const N: usize = 1_000;
    const B: usize = 16;
    let bus = EventBus::new();
    let orders = ns("orders");
    let stuck = bus.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(B));
    let mut healthy = bus.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(N));
    let mut delivered_per_publish = Vec::new();
    for v in 1..=N as u64 {
        delivered_per_publish.push(bus.try_publish(&orders, event("o-1", "E", v)));
    }
    let mut stuck = stuck;
    let received = drain(&mut stuck);
    assert_eq!(received.len(), B);
    assert_eq!(
        received.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=B as u64).collect::<Vec<_>>(),
        "drop-newest keeps the oldest"
    );
    let m = stuck.metrics();
    assert_eq!(
        (m.delivered, m.dropped, m.queue_high_water),
        (B as u64, (N - B) as u64, B as u64)
    );
    assert_eq!(drain(&mut healthy).len(), N);
    assert_eq!(healthy.metrics().dropped, 0);
    let bus_metrics = bus.metrics();
    assert_eq!(bus_metrics.published, N as u64);
    assert_eq!(bus_metrics.delivered, (N + B) as u64);
    assert_eq!(bus_metrics.dropped, (N - B) as u64);
    assert_eq!(
        delivered_per_publish
            .iter()
            .map(|d| d.dropped)
            .sum::<usize>(),
        N - B
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_while_publishing_neither_panics_nor_leaks() {
    let bus = EventBus::with_config(BusConfig {
        queue_capacity: 8,
        ..BusConfig::default()
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let (bus, stop) = (bus.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    bus.try_publish(
                        &ns(&format!("t.{}", n % 3)),
                        event(&format!("p-{p}"), "E", n),
                    );
                    if n.is_multiple_of(64) {
                        tokio::task::yield_now().await;
                    }
                }
                n
            })
        })
        .collect();
    for round in 0..300u32 {
        let mut subs = vec![
            bus.subscribe(&ns("t.1")),
            bus.subscribe_across_namespaces(&Pattern::new("t.*").unwrap(), SubscribeOptions::new()),
            bus.subscribe_with_filter(&ns("t.2"), SubscriptionFilter::new().event_types(["E"])),
        ];
        tokio::task::yield_now().await;
        if round.is_multiple_of(2) {
            subs.pop().unwrap().unsubscribe();
        }
        drop(subs);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut published = 0;
    for p in publishers {
        published += p.await.expect("publisher panicked");
    }
    assert_eq!(
        bus.subscriber_count(),
        0,
        "every subscription removed itself"
    );
    assert_eq!(bus.metrics().published, published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_per_publisher_per_subscriber() {
    const PER_PUBLISHER: u64 = 2_000;
    let bus = EventBus::new();
    let orders = ns("orders");
    let subs: Vec<_> = (0..3)
        .map(|_| {
            bus.subscribe_with(
                &orders,
                SubscribeOptions::new().queue_capacity(4 * PER_PUBLISHER as usize),
            )
        })
        .collect();
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let (bus, orders) = (bus.clone(), orders.clone());
            tokio::spawn(async move {
                for v in 1..=PER_PUBLISHER {
                    bus.publish(&orders, event(&format!("publisher-{p}"), "E", v))
                        .await;
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    for mut sub in subs {
        let mut last: HashMap<String, u64> = HashMap::new();
        let events = drain(&mut sub);
        assert_eq!(events.len(), 4 * PER_PUBLISHER as usize);
        for e in events {
            let previous = last.insert(e.actor_id.to_string(), e.version).unwrap_or(0);
            assert_eq!(
                e.version,
                previous + 1,
                "publisher {} out of order",
                e.actor_id
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn blocking_subscriber_applies_backpressure_then_drops_after_timeout() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let options = SubscribeOptions::new()
        .queue_capacity(1)
        .overflow(Overflow::Block {
            timeout: Duration::from_millis(100),
        });
    let mut slow = bus.subscribe_with(&orders, options);

    assert_eq!(bus.publish(&orders, event("o", "E", 1)).await.delivered, 1);
    // The queue is full: the publisher waits; a consumer that frees room lets it through.
    let consumer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = slow.recv().await.unwrap();
        (first, slow)
    });
    let delivery = bus.publish(&orders, event("o", "E", 2)).await;
    assert_eq!((delivery.delivered, delivery.dropped), (1, 0));
    let (first, mut slow) = consumer.await.unwrap();
    assert_eq!(first.version, 1);

    // Nobody consumes: after the timeout the event is dropped and counted.
    let started = tokio::time::Instant::now();
    let delivery = bus.publish(&orders, event("o", "E", 3)).await;
    assert_eq!((delivery.delivered, delivery.dropped), (0, 1));
    assert!(started.elapsed() >= Duration::from_millis(100));
    // try_publish never waits, whatever the policy.
    assert_eq!(bus.try_publish(&orders, event("o", "E", 4)).dropped, 1);
    assert_eq!(slow.metrics().dropped, 2);
    assert_eq!(slow.recv().await.unwrap().version, 2);
}

#[tokio::test]
async fn subscription_is_a_stream_that_ends_with_the_bus() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let sub = bus.subscribe(&orders);
    let audit = bus
        .subscribe_across_namespaces(&Pattern::new(">").unwrap(), SubscribeOptions::new())
        .with_namespaces();
    for v in 1..=3 {
        bus.publish(&orders, event("o", "E", v)).await;
    }
    drop(bus);
    let versions: Vec<u64> = sub.map(|e| e.version).collect().await;
    assert_eq!(versions, [1, 2, 3]);
    let namespaces: Vec<String> = audit.map(|(n, _)| n.to_string()).collect().await;
    assert_eq!(namespaces, ["orders"; 3]);
}

#[test]
fn bad_patterns_are_typed_errors() {
    for (pattern, rule) in [
        ("a.>.b", NameRule::FullWildcardNotLast { index: 1 }),
        ("", NameRule::Empty),
        ("a..b", NameRule::EmptyToken { index: 1 }),
        ("prod.", NameRule::EmptyToken { index: 1 }),
    ] {
        assert_eq!(
            Pattern::new(pattern).unwrap_err().rule(),
            &rule,
            "{pattern:?}"
        );
    }
    assert!(matches!(
        Pattern::new("a b").unwrap_err().rule(),
        NameRule::ForbiddenChar { .. }
    ));
}

#[test]
fn metrics_are_emitted_through_the_metrics_crate() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let bus = EventBus::new();
        let orders = ns("orders");
        let _full = bus.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(1));
        for v in 1..=3 {
            bus.try_publish(&orders, event("o", "E", v));
        }
    });
    let values: HashMap<String, DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    assert_eq!(values["aether_bus_published_total"], DebugValue::Counter(3));
    assert_eq!(values["aether_bus_delivered_total"], DebugValue::Counter(1));
    assert_eq!(values["aether_bus_dropped_total"], DebugValue::Counter(2));
    assert_eq!(
        values["aether_bus_subscription_dropped_total"],
        DebugValue::Counter(2)
    );
}

mod routing_property {
    use super::*;
    use proptest::prelude::*;

    fn token() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just("c")]
    }

    fn namespace() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..4).prop_map(|t| t.join("."))
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop::collection::vec(prop_oneof![3 => token(), 1 => Just("*")], 1..4)
            .prop_flat_map(|tokens| (Just(tokens), any::<bool>()))
            .prop_map(|(mut tokens, rest)| {
                if rest {
                    tokens.push(">");
                }
                tokens.join(".")
            })
    }

    proptest! {
        /// Exact subscriptions (hash map) and wildcard ones (trie) together deliver exactly what
        /// `Pattern::matches` says, whatever subscriptions come and go.
        #[test]
        fn each_subscription_gets_exactly_its_matches(
            exact in prop::collection::vec(namespace(), 0..6),
            wildcard in prop::collection::vec(pattern(), 0..6),
            dropped in prop::collection::vec(any::<bool>(), 12),
            published in prop::collection::vec(namespace(), 1..20),
        ) {
            let bus = EventBus::new();
            let mut subs: Vec<(Pattern, Subscription)> = exact
                .iter()
                .map(|n| (Pattern::new(n).unwrap(), bus.subscribe(&ns(n))))
                .chain(wildcard.iter().map(|p| {
                    let p = Pattern::new(p).unwrap();
                    let s = bus.subscribe_across_namespaces(&p, SubscribeOptions::new());
                    (p, s)
                }))
                .collect();
            let mut keep = dropped.iter();
            subs.retain(|_| !keep.next().copied().unwrap_or(false));
            prop_assert_eq!(bus.subscriber_count(), subs.len());
            for (i, n) in published.iter().enumerate() {
                bus.try_publish(&ns(n), event("a", "E", i as u64 + 1));
            }
            for (pattern, sub) in &mut subs {
                let expected: Vec<u64> = published
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| pattern.matches(n))
                    .map(|(i, _)| i as u64 + 1)
                    .collect();
                let got: Vec<u64> = drain(sub).iter().map(|e| e.version).collect();
                prop_assert_eq!(got, expected, "pattern {}", pattern);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_publish_counts_what_it_was_waiting_to_deliver() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let block = SubscribeOptions::new()
        .queue_capacity(1)
        .overflow(Overflow::Block {
            timeout: Duration::from_secs(5),
        });
    let blocked = bus.subscribe_with(&orders, block);
    let mut normal = bus.subscribe(&orders);
    bus.publish(&orders, event("o", "E", 1)).await;
    // The blocked queue is full; give up on the publish after 20 ms.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(20),
        bus.publish(&orders, event("o", "E", 2)),
    )
    .await;
    assert!(gave_up.is_err(), "the publish was still waiting");
    assert_eq!(
        blocked.metrics().dropped,
        1,
        "the abandoned delivery is counted"
    );
    assert_eq!(drain(&mut normal).len(), 2, "the other subscriber got both");
    let m = bus.metrics();
    assert_eq!((m.published, m.delivered, m.dropped), (2, 3, 1));
    let per_subscription = blocked.metrics().delivered + normal.metrics().delivered;
    assert_eq!(
        m.delivered, per_subscription,
        "bus and subscription counters agree"
    );
}

#[tokio::test(start_paused = true)]
async fn blocked_subscribers_are_waited_for_together() {
    let bus = EventBus::new();
    let orders = ns("orders");
    let block = || {
        SubscribeOptions::new()
            .queue_capacity(1)
            .overflow(Overflow::Block {
                timeout: Duration::from_millis(100),
            })
    };
    let (_a, _b, _c) = (
        bus.subscribe_with(&orders, block()),
        bus.subscribe_with(&orders, block()),
        bus.subscribe_with(&orders, block()),
    );
    bus.publish(&orders, event("o", "E", 1)).await;
    let started = tokio::time::Instant::now();
    let delivery = bus.publish(&orders, event("o", "E", 2)).await;
    assert_eq!((delivery.delivered, delivery.dropped), (0, 3));
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "one timeout, not three: {:?}",
        started.elapsed()
    );
}

#[test]
fn huge_queue_sizes_are_clamped_not_a_panic() {
    let bus = EventBus::with_config(BusConfig {
        queue_capacity: usize::MAX,
        ..BusConfig::default()
    });
    let orders = ns("orders");
    let mut sub = bus.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(usize::MAX));
    let _default = bus.subscribe(&orders);
    bus.try_publish(&orders, event("o", "E", 1));
    assert!(sub.try_recv().is_some());
}
