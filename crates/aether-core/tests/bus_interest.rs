//! The local bus's hooks for transports, without any network:
//!
//! - [`EventBus::with_interest_listener`]: a pattern's listener hears one gain when its first
//!   subscriber arrives and one loss when its last leaves — whichever way the subscriptions are
//!   made (`subscribe`, filters, tenant handles, `subscribe_across_namespaces` with an exact or
//!   a wildcard pattern) or ended (drop, `unsubscribe`). Checked by hand, under concurrent
//!   subscribe/drop from several threads, and as a property over random sequences (the
//!   listener's view must equal the set of patterns with live subscribers after every step).
//!   A transport holds a NATS subscription exactly while the listener says "interested", so an
//!   extra or missing notice is a leaked or lost remote subscription.
//! - [`EventBus::deliver_to_pattern`] / [`EventBus::try_deliver_to_pattern`]: a remote event
//!   reaches the subscribers of the named pattern only (each once), filters and overflow
//!   policies apply, an exact pattern with another namespace delivers nothing, and the bus
//!   counts the deliveries and drops but never a publish.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_core::{
    ActorId, BusConfig, Delivery, Event, EventBus, InterestListener, Namespace, Overflow, Pattern,
    SubscribeOptions, Subscription, SubscriptionFilter,
};
use proptest::prelude::*;

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap_or_else(|e| panic!("{e}"))
}

fn pattern(text: &str) -> Pattern {
    Pattern::new(text).unwrap_or_else(|e| panic!("{e}"))
}

fn event(actor: &str, event_type: &str, version: u64) -> Arc<Event> {
    Arc::new(Event::new(
        ActorId::new(actor).unwrap_or_else(|e| panic!("{e}")),
        event_type,
        version,
    ))
}

/// Records every notice, in the order the bus gave them.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<(String, bool)>>,
}

impl InterestListener for Recorder {
    fn interest_changed(&self, pattern: &Pattern, interested: bool) {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((pattern.as_str().to_owned(), interested));
    }
}

impl Recorder {
    fn log(&self) -> Vec<(String, bool)> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The patterns the listener currently believes have subscribers. Panics if the notices of
    /// a pattern do not alternate gain, loss, gain, … starting with a gain.
    fn view(&self) -> BTreeSet<String> {
        let mut state: BTreeMap<String, bool> = BTreeMap::new();
        for (i, (pattern, interested)) in self.log().into_iter().enumerate() {
            let before = state.get(&pattern).copied().unwrap_or(false);
            assert_ne!(
                before,
                interested,
                "notice #{i} for {pattern:?} repeats the previous state ({interested}); log: {:?}",
                self.log()
            );
            state.insert(pattern, interested);
        }
        state
            .into_iter()
            .filter_map(|(pattern, interested)| interested.then_some(pattern))
            .collect()
    }
}

fn listened_bus() -> (EventBus, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let bus = EventBus::with_interest_listener(BusConfig::default(), recorder.clone());
    (bus, recorder)
}

fn notices(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|&(p, i)| (p.to_owned(), i)).collect()
}

#[test]
fn one_gain_per_pattern_and_one_loss_when_the_last_subscriber_leaves() {
    let (bus, recorder) = listened_bus();
    let orders = ns("prod.orders");
    let tenant = bus.namespace(orders.clone());

    // Five ways to subscribe to the exact pattern `prod.orders`: one gain only.
    let plain = bus.subscribe(&orders);
    let filtered =
        bus.subscribe_with_filter(&orders, SubscriptionFilter::new().event_types(["Placed"]));
    let with_options = bus.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(3));
    let via_tenant = tenant.subscribe();
    let across_exact =
        bus.subscribe_across_namespaces(&pattern("prod.orders"), SubscribeOptions::new());
    assert_eq!(recorder.log(), notices(&[("prod.orders", true)]));

    // Wildcards are patterns of their own, one gain each, however many subscribers.
    let star_1 = bus.subscribe_across_namespaces(&pattern("prod.*"), SubscribeOptions::new());
    let star_2 = bus.subscribe_across_namespaces(
        &pattern("prod.*"),
        SubscriptionFilter::new().event_types(["X"]).into(),
    );
    let all = bus.subscribe_across_namespaces(&pattern(">"), SubscribeOptions::new());
    let prod_rest = bus.subscribe_across_namespaces(&pattern("prod.>"), SubscribeOptions::new());
    assert_eq!(
        recorder.log(),
        notices(&[
            ("prod.orders", true),
            ("prod.*", true),
            (">", true),
            ("prod.>", true)
        ])
    );
    assert_eq!(bus.subscriber_count(), 9);

    // Leaving one by one: nothing until the last of a pattern goes, whatever the order or
    // the way (drop or unsubscribe).
    drop(filtered);
    via_tenant.unsubscribe();
    drop(plain);
    across_exact.unsubscribe();
    star_1.unsubscribe();
    drop(all);
    assert_eq!(recorder.log().len(), 5, "{:?}", recorder.log());
    assert_eq!(recorder.log()[4], (">".to_owned(), false));
    drop(with_options);
    drop(star_2);
    drop(prod_rest);
    assert_eq!(
        recorder.log()[4..],
        notices(&[
            (">", false),
            ("prod.orders", false),
            ("prod.*", false),
            ("prod.>", false)
        ])
    );
    assert!(recorder.view().is_empty());
    assert_eq!(bus.subscriber_count(), 0);

    // A pattern can come back: a fresh gain, then a fresh loss.
    let again = tenant.subscribe();
    assert_eq!(recorder.view(), BTreeSet::from(["prod.orders".to_owned()]));
    drop(again);
    assert_eq!(recorder.log().len(), 10);
    assert!(recorder.view().is_empty());
}

#[test]
fn similar_namespaces_are_separate_patterns() {
    let (bus, recorder) = listened_bus();
    let names = ["a.b", "a_b", "a-b", "A.b", "a.b.c", "a"];
    let subs: Vec<Subscription> = names.iter().map(|n| bus.subscribe(&ns(n))).collect();
    let expected: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(recorder.view(), expected);
    assert_eq!(recorder.log().len(), names.len());
    drop(subs);
    assert!(recorder.view().is_empty());
    assert_eq!(recorder.log().len(), 2 * names.len());
}

#[test]
fn subscriptions_outliving_their_bus_neither_notify_nor_panic() {
    let (bus, recorder) = listened_bus();
    let mut sub = bus.subscribe(&ns("late"));
    drop(bus);
    assert_eq!(recorder.log(), notices(&[("late", true)]));
    assert!(sub.try_recv().is_none());
    drop(sub);
    assert_eq!(
        recorder.log(),
        notices(&[("late", true)]),
        "the bus is gone: there is no interest left to withdraw"
    );
}

/// A tiny deterministic generator, so each thread's sequence is reproducible.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

const PATTERNS: [&str; 5] = ["p.x", "p.y", "p.*", "p.>", ">"];

fn subscribe_to(bus: &EventBus, text: &str) -> Subscription {
    let p = pattern(text);
    if p.is_wildcard() {
        bus.subscribe_across_namespaces(&p, SubscribeOptions::new())
    } else {
        bus.subscribe(&ns(text))
    }
}

#[test]
fn concurrent_subscribe_and_drop_end_balanced() {
    let (bus, recorder) = listened_bus();
    let threads: Vec<_> = (0..4u64)
        .map(|seed| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                let mut rng = Lcg(seed * 7919 + 1);
                let mut held: Vec<Subscription> = Vec::new();
                for _ in 0..3000 {
                    if held.is_empty() || rng.below(2) == 0 {
                        held.push(subscribe_to(&bus, PATTERNS[rng.below(PATTERNS.len())]));
                    } else {
                        let index = rng.below(held.len());
                        held.swap_remove(index);
                    }
                }
                // Keep at most one subscription per thread alive past the join.
                held.truncate(1);
                held
            })
        })
        .collect();
    let kept: Vec<Subscription> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    let live: BTreeSet<String> = kept
        .iter()
        .map(|s| s.pattern().as_str().to_owned())
        .collect();
    assert_eq!(recorder.view(), live, "listener's view after the threads");
    assert_eq!(bus.subscriber_count(), kept.len());
    assert!(
        recorder.log().len() > 10,
        "the threads should have gained and lost interest many times: {}",
        recorder.log().len()
    );
    drop(kept);
    assert!(
        recorder.view().is_empty(),
        "every gain was followed by its loss"
    );
    let log = recorder.log();
    for p in PATTERNS {
        let gains = log.iter().filter(|(q, i)| q == p && *i).count();
        let losses = log.iter().filter(|(q, i)| q == p && !*i).count();
        assert_eq!(gains, losses, "{p}: {gains} gains, {losses} losses");
    }
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// Subscribe to `PATTERNS[pattern]`, the `how`-th way that applies to it.
    Subscribe { pattern: usize, how: usize },
    /// End the `index`-th live subscription (modulo their number), by drop or `unsubscribe`.
    End { index: usize, explicit: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PATTERNS.len(), 0..4usize).prop_map(|(pattern, how)| Op::Subscribe { pattern, how }),
        (0..64usize, any::<bool>()).prop_map(|(index, explicit)| Op::End { index, explicit }),
    ]
}

fn subscribe_how(bus: &EventBus, text: &str, how: usize) -> Subscription {
    let p = pattern(text);
    let filter = SubscriptionFilter::new().event_types(["Only"]);
    if p.is_wildcard() {
        let options = if how.is_multiple_of(2) {
            SubscribeOptions::new()
        } else {
            filter.into()
        };
        return bus.subscribe_across_namespaces(&p, options);
    }
    let namespace = ns(text);
    match how {
        0 => bus.subscribe(&namespace),
        1 => bus.subscribe_with_filter(&namespace, filter),
        2 => bus.namespace(namespace).subscribe(),
        _ => bus.subscribe_across_namespaces(&p, SubscribeOptions::new()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn listener_view_equals_patterns_with_live_subscribers(ops in prop::collection::vec(op(), 1..80)) {
        let (bus, recorder) = listened_bus();
        let mut live: Vec<Subscription> = Vec::new();
        let mut transitions = 0usize;
        for op in ops {
            let before: BTreeSet<String> =
                live.iter().map(|s| s.pattern().as_str().to_owned()).collect();
            match op {
                Op::Subscribe { pattern, how } => live.push(subscribe_how(&bus, PATTERNS[pattern], how)),
                Op::End { index, explicit } => {
                    if live.is_empty() {
                        continue;
                    }
                    let sub = live.remove(index % live.len());
                    if explicit { sub.unsubscribe() } else { drop(sub) }
                }
            }
            let after: BTreeSet<String> =
                live.iter().map(|s| s.pattern().as_str().to_owned()).collect();
            transitions += before.symmetric_difference(&after).count();
            prop_assert_eq!(recorder.view(), after);
            prop_assert_eq!(recorder.log().len(), transitions, "no notice without a change");
            prop_assert_eq!(bus.subscriber_count(), live.len());
        }
        drop(live);
        prop_assert!(recorder.view().is_empty());
    }
}

/// Everything queued on `sub` right now, with namespaces.
async fn drain(sub: &mut Subscription) -> Vec<(Namespace, Arc<Event>)> {
    let mut out = Vec::new();
    while sub.queued() > 0 {
        out.push(sub.recv_with_namespace().await.expect("queued event"));
    }
    out
}

fn delivery(delivered: usize, dropped: usize) -> Delivery {
    let mut d = Delivery::default();
    d.delivered = delivered;
    d.dropped = dropped;
    d
}

#[tokio::test]
async fn deliver_to_pattern_reaches_that_patterns_subscribers_only() {
    let bus = EventBus::new();
    let orders = ns("prod.orders");
    let users = ns("prod.users");
    let mut exact = bus.subscribe(&orders);
    let mut exact_placed =
        bus.subscribe_with_filter(&orders, SubscriptionFilter::new().event_types(["Placed"]));
    let mut other_exact = bus.subscribe(&users);
    let mut star = bus.subscribe_across_namespaces(&pattern("prod.*"), SubscribeOptions::new());
    let mut star_eu = bus.subscribe_across_namespaces(
        &pattern("prod.*"),
        SubscriptionFilter::new()
            .actor_pattern(pattern("eu.*"))
            .into(),
    );
    let mut all = bus.subscribe_across_namespaces(&pattern(">"), SubscribeOptions::new());

    // The exact pattern: both exact subscribers of the namespace (filter applied), no one else.
    let placed = event("eu.1", "Placed", 1);
    let shipped = event("us.1", "Shipped", 2);
    let exact_pattern = Pattern::exact(&orders);
    assert_eq!(
        bus.deliver_to_pattern(&exact_pattern, &orders, placed.clone())
            .await,
        delivery(2, 0)
    );
    assert_eq!(
        bus.try_deliver_to_pattern(&exact_pattern, &orders, shipped.clone()),
        delivery(1, 0)
    );
    let got = drain(&mut exact).await;
    assert_eq!(got.len(), 2);
    assert!(Arc::ptr_eq(&got[0].1, &placed) && Arc::ptr_eq(&got[1].1, &shipped));
    assert!(got.iter().all(|(n, _)| *n == orders));
    let got = drain(&mut exact_placed).await;
    assert_eq!(got.len(), 1);
    assert!(Arc::ptr_eq(&got[0].1, &placed));
    for sub in [&mut other_exact, &mut star, &mut star_eu, &mut all] {
        assert_eq!(
            sub.queued(),
            0,
            "{:?} got an event of another pattern",
            sub.pattern()
        );
    }

    // The wildcard pattern: its subscribers only (filter applied), with the namespace.
    let star_pattern = pattern("prod.*");
    assert_eq!(
        bus.deliver_to_pattern(&star_pattern, &users, placed.clone())
            .await,
        delivery(2, 0)
    );
    assert_eq!(
        bus.try_deliver_to_pattern(&star_pattern, &orders, shipped.clone()),
        delivery(1, 0)
    );
    let got = drain(&mut star).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        (&got[0].0, got[0].1.id.as_str()),
        (&users, placed.id.as_str())
    );
    assert_eq!(
        (&got[1].0, got[1].1.id.as_str()),
        (&orders, shipped.id.as_str())
    );
    let got = drain(&mut star_eu).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, users);
    for sub in [&mut exact, &mut exact_placed, &mut other_exact, &mut all] {
        assert_eq!(
            sub.queued(),
            0,
            "{:?} got an event of another pattern",
            sub.pattern()
        );
    }

    // Nothing for: an exact pattern with another namespace, a wildcard that does not match
    // the namespace, a pattern nobody here subscribes to.
    let staging = ns("staging.orders");
    for (p, n) in [
        (Pattern::exact(&orders), &users),
        (Pattern::exact(&users), &orders),
        (pattern("prod.*"), &staging),
        (pattern("prod.*"), &ns("prod.orders.eu")),
        (pattern("prod.>"), &orders),
        (pattern("staging.*"), &staging),
    ] {
        assert_eq!(
            bus.deliver_to_pattern(&p, n, placed.clone()).await,
            delivery(0, 0),
            "{p:?} in {n}"
        );
        assert_eq!(
            bus.try_deliver_to_pattern(&p, n, placed.clone()),
            delivery(0, 0),
            "{p:?} in {n}"
        );
    }
    for sub in [
        &mut exact,
        &mut exact_placed,
        &mut other_exact,
        &mut star,
        &mut star_eu,
        &mut all,
    ] {
        assert_eq!(sub.queued(), 0, "{:?}", sub.pattern());
    }

    // `>` gets its own copy when asked for it, once.
    assert_eq!(
        bus.try_deliver_to_pattern(&pattern(">"), &staging, shipped.clone()),
        delivery(1, 0)
    );
    let got = drain(&mut all).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, staging);

    // Counted as deliveries, never as publishes.
    let metrics = bus.metrics();
    assert_eq!(
        (metrics.published, metrics.delivered, metrics.dropped),
        (0, 7, 0)
    );
    // A real publish reaches every matching subscriber (filters applied) and is counted.
    bus.try_publish(&orders, (*placed).clone());
    let metrics = bus.metrics();
    assert_eq!(
        (metrics.published, metrics.delivered, metrics.dropped),
        (1, 7 + 5, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn full_queues_drop_and_count_as_for_publish() {
    let bus = EventBus::new();
    let orders = ns("prod.orders");
    let exact_pattern = Pattern::exact(&orders);
    let mut dropping = bus.subscribe_with(&orders, SubscribeOptions::new().queue_capacity(1));
    let mut blocking = bus.subscribe_with(
        &orders,
        SubscribeOptions::new()
            .queue_capacity(1)
            .overflow(Overflow::Block {
                timeout: Duration::from_millis(50),
            }),
    );
    let first = event("a", "E", 1);
    assert_eq!(
        bus.try_deliver_to_pattern(&exact_pattern, &orders, first.clone()),
        delivery(2, 0)
    );

    // try_: full queues lose the event at once, whatever the policy.
    let second = event("a", "E", 2);
    assert_eq!(
        bus.try_deliver_to_pattern(&exact_pattern, &orders, second.clone()),
        delivery(0, 2)
    );

    // Waiting: the dropping subscriber loses at once; the blocking one waits its timeout
    // (virtual time), then loses it.
    let started = tokio::time::Instant::now();
    assert_eq!(
        bus.deliver_to_pattern(&exact_pattern, &orders, second.clone())
            .await,
        delivery(0, 2)
    );
    assert!(started.elapsed() >= Duration::from_millis(50));

    // Room made while waiting: the blocking subscriber gets it.
    let third = event("a", "E", 3);
    let waiter = {
        let bus = bus.clone();
        let third = third.clone();
        let exact_pattern = exact_pattern.clone();
        let orders = orders.clone();
        tokio::spawn(async move { bus.deliver_to_pattern(&exact_pattern, &orders, third).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let head = blocking.recv().await.expect("first event");
    assert!(Arc::ptr_eq(&head, &first));
    assert_eq!(waiter.await.expect("task"), delivery(1, 1));
    let next = blocking.try_recv().expect("third event");
    assert!(Arc::ptr_eq(&next, &third));
    let head = dropping.try_recv().expect("first event");
    assert!(Arc::ptr_eq(&head, &first));
    assert!(dropping.try_recv().is_none() && blocking.try_recv().is_none());

    assert_eq!(
        (dropping.metrics().delivered, dropping.metrics().dropped),
        (1, 3)
    );
    assert_eq!(
        (blocking.metrics().delivered, blocking.metrics().dropped),
        (2, 2)
    );
    let metrics = bus.metrics();
    assert_eq!(
        (metrics.published, metrics.delivered, metrics.dropped),
        (0, 3, 5)
    );
}
