//! Throughput of the local [`EventBus`] against the simplest thing one could build from the same
//! parts, side by side in each criterion group. Every figure is events published per second
//! (`Throughput::Elements`), so ours and the baseline read off directly.
//!
//! 1. `publish_1_exact_subscriber`: one thread publishes 10_000 events with
//!    `EventBus::try_publish` to a namespace with exactly one (exact) subscriber, whose queue holds
//!    the whole batch, then drains it with `Subscription::try_recv`: publish + enqueue + dequeue.
//!    Baseline `tokio_mpsc`: a raw `tokio::sync::mpsc::channel::<Arc<Event>>(10_000)`, `try_send`
//!    of `Arc::new(event)` (the bus wraps each event in an `Arc` too) then `try_recv`.
//!    Target: ours >= 0.7x the baseline.
//! 2. `fan_out_100_subscribers`: each of 1_000 publishes is delivered to 100 exact subscribers
//!    of the namespace, drained after the batch. Baseline `tokio_broadcast`: a
//!    `tokio::sync::broadcast::channel::<Arc<Event>>` with 100 receivers, `send` then `try_recv`
//!    on each. No target: broadcast writes one slot that every receiver reads, the bus writes one
//!    queue per subscriber (so each subscriber keeps its own capacity and overflow policy).
//! 3. `routing_10k_subscriptions`: 10_000 subscriptions (DropNewest, queues of 16): 9_000 exact
//!    `tenant-{i}.orders`, 600 `tenant-{i}.*`, 360 `tenant-{i}.>`, 38 `region-{k}.>` and
//!    `*.orders`, `*.payments` (these two with queues of 1_000). Batches of 1_000 publishes go to
//!    distinct tenants, scattered over all 9_000; each publish matches 1 exact and 1 to 3 wildcard
//!    subscriptions (2.1 on average). Queues are drained between batches, outside the timing.
//!    Baseline `linear_scan`: what a bus without a trie does, a scan of a
//!    `Vec<(Pattern, mpsc::Sender)>` of the same 10_000 subscriptions with `Pattern::matches` and
//!    `try_send` to the matching ones (same matcher, same queues, same `(Namespace, Arc<Event>)`
//!    items as the bus). Targets: ours >= 10x the baseline, and >= 1 M events/s.
//! 4. `subject_trie_match`: the routing structure alone, without queues:
//!    `SubjectTrie::for_each_match` over the same 10_000 patterns and subjects against a linear
//!    scan of a `Vec<Pattern>` with `Pattern::matches`.
//!
//! Events are built before the timed region and the last references to them are dropped after it
//! (`iter_custom`), so the figures are the routing and queueing work only. The baselines of
//! groups 3 and 4 take over 100 ms per iteration, hence flat sampling and 4 s of measurement
//! there.
//!
//! Run: `cargo bench -p aether-core --bench event_bus`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_core::{
    ActorId, Event, EventBus, Namespace, Overflow, Pattern, SubjectTrie, SubscribeOptions,
    Subscription, Version,
};
use aether_testkit::fixtures::small_event;
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use tokio::sync::{broadcast, mpsc};

const OURS: &str = "EventBus";

/// Events per iteration of `publish_1_exact_subscriber` (and its queue capacity).
const SINGLE_BATCH: usize = 10_000;
/// Subscribers of `fan_out_100_subscribers`.
const FAN_OUT: usize = 100;
/// Events per iteration of `fan_out_100_subscribers` (and each queue's capacity).
const FAN_OUT_BATCH: usize = 1_000;
/// Tenants of the routing groups; each has an exact subscription to `tenant-{i}.orders`.
const TENANTS: usize = 9_000;
/// Subscriptions (patterns) of the routing groups.
const SUBSCRIPTIONS: usize = 10_000;
/// Publishes (subjects) per iteration of the routing groups; divides [`TENANTS`].
const ROUTING_BATCH: usize = 1_000;
/// Queue capacity of the per-tenant subscriptions of `routing_10k_subscriptions` (each gets at
/// most 3 events per batch: one per matching pattern).
const ROUTING_QUEUE: usize = 16;
/// Step through the tenants, coprime with [`TENANTS`]: consecutive publishes go to scattered
/// tenants, and one batch never hits a tenant twice.
const STRIDE: usize = 7_919;

/// What the bus puts in a subscriber's queue; the linear-scan baseline queues the same.
type Delivered = (Namespace, Arc<Event>);

fn group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

/// Runs `iters` batches on `state`: `setup` (untimed), `run` (timed), then `check` (untimed,
/// where the last references to the batch's events are dropped). Returns the time in `run`.
fn timed<S>(
    iters: u64,
    state: &mut S,
    mut setup: impl FnMut(&mut S),
    mut run: impl FnMut(&mut S),
    mut check: impl FnMut(&mut S),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        setup(state);
        let start = Instant::now();
        run(black_box(&mut *state));
        total += start.elapsed();
        check(state);
    }
    total
}

fn namespace(name: &str) -> Namespace {
    Namespace::new(name).expect("valid namespace")
}

/// Refills `events` with `count` small events of `actor_id`.
fn refill(events: &mut Vec<Event>, actor_id: &ActorId, count: usize) {
    events.clear();
    events.extend((1..=count as Version).map(|version| small_event(actor_id, version)));
}

/// State of one batch of the single-queue and fan-out groups: the events to publish, the
/// events received, and how many deliveries the publisher saw.
struct Batch {
    events: Vec<Event>,
    received: Vec<Arc<Event>>,
    delivered: usize,
}

impl Batch {
    fn new(events: usize) -> Self {
        Self {
            events: Vec::with_capacity(events),
            received: Vec::with_capacity(events),
            delivered: 0,
        }
    }

    fn refill(&mut self, actor_id: &ActorId, count: usize) {
        refill(&mut self.events, actor_id, count);
        self.received.clear();
        self.delivered = 0;
    }
}

/// 1. One publisher, one exact subscriber, batches of 10_000.
fn publish_1_exact_subscriber(c: &mut Criterion) {
    let ns = namespace("bench.orders");
    let actor_id = ActorId::new("order-1").expect("valid id");
    let mut group = group(c, "publish_1_exact_subscriber");
    group.throughput(Throughput::Elements(SINGLE_BATCH as u64));

    let bus = EventBus::new();
    let mut subscription =
        bus.subscribe_with(&ns, SubscribeOptions::new().queue_capacity(SINGLE_BATCH));
    let mut batch = Batch::new(SINGLE_BATCH);
    group.bench_function(OURS, |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &mut batch,
                |batch| batch.refill(&actor_id, SINGLE_BATCH),
                |batch| {
                    for event in batch.events.drain(..) {
                        batch.delivered += bus.try_publish(&ns, event).delivered;
                    }
                    while let Some(event) = subscription.try_recv() {
                        batch.received.push(event);
                    }
                },
                |batch| {
                    assert_eq!(
                        (batch.delivered, batch.received.len()),
                        (SINGLE_BATCH, SINGLE_BATCH)
                    )
                },
            )
        });
    });

    let (sender, mut receiver) = mpsc::channel::<Arc<Event>>(SINGLE_BATCH);
    group.bench_function("tokio_mpsc", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &mut batch,
                |batch| batch.refill(&actor_id, SINGLE_BATCH),
                |batch| {
                    for event in batch.events.drain(..) {
                        if sender.try_send(Arc::new(event)).is_ok() {
                            batch.delivered += 1;
                        }
                    }
                    while let Ok(event) = receiver.try_recv() {
                        batch.received.push(event);
                    }
                },
                |batch| {
                    assert_eq!(
                        (batch.delivered, batch.received.len()),
                        (SINGLE_BATCH, SINGLE_BATCH)
                    )
                },
            )
        });
    });
    group.finish();
}

/// 2. One publisher, 100 exact subscribers, batches of 1_000.
fn fan_out_100_subscribers(c: &mut Criterion) {
    let ns = namespace("bench.orders");
    let actor_id = ActorId::new("order-1").expect("valid id");
    let mut group = group(c, "fan_out_100_subscribers");
    group.throughput(Throughput::Elements(FAN_OUT_BATCH as u64));
    // Every subscriber but the last drops what it receives; the last keeps it, so the events
    // are freed after the timed region.
    let deliveries = FAN_OUT * FAN_OUT_BATCH;

    let bus = EventBus::new();
    let mut subscriptions: Vec<Subscription> = (0..FAN_OUT)
        .map(|_| bus.subscribe_with(&ns, SubscribeOptions::new().queue_capacity(FAN_OUT_BATCH)))
        .collect();
    let mut batch = Batch::new(FAN_OUT_BATCH);
    group.bench_function(OURS, |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &mut batch,
                |batch| batch.refill(&actor_id, FAN_OUT_BATCH),
                |batch| {
                    for event in batch.events.drain(..) {
                        batch.delivered += bus.try_publish(&ns, event).delivered;
                    }
                    let (last, others) = subscriptions.split_last_mut().expect("subscribers");
                    for subscription in others {
                        while subscription.try_recv().is_some() {}
                    }
                    while let Some(event) = last.try_recv() {
                        batch.received.push(event);
                    }
                },
                |batch| {
                    assert_eq!(
                        (batch.delivered, batch.received.len()),
                        (deliveries, FAN_OUT_BATCH)
                    );
                },
            )
        });
    });

    let (sender, _) = broadcast::channel::<Arc<Event>>(FAN_OUT_BATCH);
    let mut receivers: Vec<_> = (0..FAN_OUT).map(|_| sender.subscribe()).collect();
    group.bench_function("tokio_broadcast", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &mut batch,
                |batch| batch.refill(&actor_id, FAN_OUT_BATCH),
                |batch| {
                    for event in batch.events.drain(..) {
                        batch.delivered += sender.send(Arc::new(event)).unwrap_or(0);
                    }
                    let (last, others) = receivers.split_last_mut().expect("receivers");
                    for receiver in others {
                        while receiver.try_recv().is_ok() {}
                    }
                    while let Ok(event) = last.try_recv() {
                        batch.received.push(event);
                    }
                },
                |batch| {
                    assert_eq!(
                        (batch.delivered, batch.received.len()),
                        (deliveries, FAN_OUT_BATCH)
                    );
                },
            )
        });
    });
    group.finish();
}

/// The 10_000 subscriptions of the routing groups and the subjects published to.
struct Routing {
    /// Exact patterns first (`tenant-{i}.orders` at index `i`), then the wildcards.
    patterns: Vec<Pattern>,
    /// `tenant-{i}.orders` in publishing order: every tenant once, [`STRIDE`] apart, so that
    /// each window of [`ROUTING_BATCH`] holds distinct, scattered tenants.
    subjects: Vec<Namespace>,
}

impl Routing {
    fn new() -> Self {
        let pattern = |p: String| Pattern::new(p).expect("valid pattern");
        let mut patterns: Vec<Pattern> = (0..TENANTS)
            .map(|i| pattern(format!("tenant-{i}.orders")))
            .collect();
        patterns.extend(
            (0..TENANTS)
                .step_by(15)
                .map(|i| pattern(format!("tenant-{i}.*"))),
        );
        patterns.extend(
            (0..TENANTS)
                .step_by(25)
                .map(|i| pattern(format!("tenant-{i}.>"))),
        );
        patterns.extend((0..38).map(|k| pattern(format!("region-{k}.>"))));
        patterns.extend(["*.orders", "*.payments"].map(|p| pattern(p.to_owned())));
        assert_eq!(patterns.len(), SUBSCRIPTIONS);
        let subjects = (0..TENANTS)
            .map(|j| namespace(patterns[j * STRIDE % TENANTS].as_str()))
            .collect();
        Self { patterns, subjects }
    }

    /// Queue size of the subscription to `pattern`: room for a whole batch for the `*.x`
    /// patterns that see every tenant, a small queue for the others.
    fn queue_capacity(pattern: &Pattern) -> usize {
        if pattern.as_str().starts_with("*.") {
            ROUTING_BATCH
        } else {
            ROUTING_QUEUE
        }
    }

    /// The `window`-th batch of subjects (cycling through all tenants).
    fn window(&self, window: usize) -> &[Namespace] {
        let start = window % (TENANTS / ROUTING_BATCH) * ROUTING_BATCH;
        &self.subjects[start..start + ROUTING_BATCH]
    }

    /// Matching subscriptions per publish over all subjects: (total, min, max). Counted with
    /// the trie, after checking it against a linear scan on one window.
    fn match_counts(&self, trie: &SubjectTrie<()>) -> (usize, usize, usize) {
        let count = |subject: &Namespace| {
            let mut n = 0;
            trie.for_each_match(subject.as_str(), |_, ()| n += 1);
            n
        };
        for subject in self.window(0) {
            let scanned = self.patterns.iter().filter(|p| p.matches(subject.as_str()));
            assert_eq!(count(subject), scanned.count(), "{subject}");
        }
        self.subjects
            .iter()
            .map(count)
            .fold((0, usize::MAX, 0), |(total, min, max), n| {
                (total + n, min.min(n), max.max(n))
            })
    }

    /// The patterns in a [`SubjectTrie`], keyed by index.
    fn trie(&self) -> SubjectTrie<()> {
        let mut trie = SubjectTrie::new();
        for (key, pattern) in self.patterns.iter().enumerate() {
            trie.insert(pattern, key as u64, ());
        }
        trie
    }
}

/// The baseline of `routing_10k_subscriptions`: a bus without a trie, which scans every
/// subscription on each publish.
struct LinearScanBus {
    routes: Vec<(Pattern, mpsc::Sender<Delivered>)>,
}

impl LinearScanBus {
    /// Offers `event` to every route whose pattern matches `namespace`; returns the deliveries
    /// and the drops (full queues).
    fn try_publish(&self, namespace: &Namespace, event: Event) -> (usize, usize) {
        let event = Arc::new(event);
        let (mut delivered, mut dropped) = (0, 0);
        for (pattern, sender) in &self.routes {
            if pattern.matches(namespace.as_str()) {
                match sender.try_send((namespace.clone(), event.clone())) {
                    Ok(()) => delivered += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        (delivered, dropped)
    }
}

/// State of one batch of `routing_10k_subscriptions`.
struct RoutingBatch<'r> {
    window: usize,
    events: Vec<(&'r Namespace, Event)>,
    delivered: usize,
    dropped: usize,
}

impl<'r> RoutingBatch<'r> {
    fn new() -> Self {
        Self {
            window: 0,
            events: Vec::with_capacity(ROUTING_BATCH),
            delivered: 0,
            dropped: 0,
        }
    }

    /// The next window of subjects, one event each.
    fn refill(&mut self, routing: &'r Routing, actor_id: &ActorId) {
        self.events.clear();
        self.events.extend(
            routing
                .window(self.window)
                .iter()
                .map(|ns| (ns, small_event(actor_id, 1))),
        );
        self.window += 1;
        self.delivered = 0;
        self.dropped = 0;
    }
}

/// 3. 10_000 subscriptions, each publish matching 2 to 4 of them.
fn routing_10k_subscriptions(c: &mut Criterion) {
    let routing = Routing::new();
    let (total, min, max) = routing.match_counts(&routing.trie());
    eprintln!(
        "routing_10k_subscriptions: {SUBSCRIPTIONS} subscriptions, {:.3} matches per publish \
         (min {min}, max {max})",
        total as f64 / TENANTS as f64
    );
    let actor_id = ActorId::new("order-1").expect("valid id");
    let mut group = group(c, "routing_10k_subscriptions");
    // The linear scan takes ~170 ms per iteration: flat sampling, and time for 20 of them.
    group
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(ROUTING_BATCH as u64));

    let bus = EventBus::new();
    let mut subscriptions: Vec<Subscription> = routing
        .patterns
        .iter()
        .map(|pattern| {
            let options = SubscribeOptions::new()
                .queue_capacity(Routing::queue_capacity(pattern))
                .overflow(Overflow::DropNewest);
            if pattern.is_wildcard() {
                bus.subscribe_across_namespaces(pattern, options)
            } else {
                bus.subscribe_with(&namespace(pattern.as_str()), options)
            }
        })
        .collect();
    let mut batch = RoutingBatch::new();
    group.bench_function(OURS, |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &mut batch,
                |batch| batch.refill(&routing, &actor_id),
                |batch| {
                    for (ns, event) in batch.events.drain(..) {
                        let delivery = bus.try_publish(ns, event);
                        batch.delivered += delivery.delivered;
                        batch.dropped += delivery.dropped;
                    }
                },
                |batch| {
                    let mut drained = 0;
                    for subscription in &mut subscriptions {
                        while subscription.try_recv().is_some() {
                            drained += 1;
                        }
                    }
                    assert_eq!((batch.dropped, drained), (0, batch.delivered));
                },
            )
        });
    });

    let (routes, mut receivers): (Vec<_>, Vec<_>) = routing
        .patterns
        .iter()
        .map(|pattern| {
            let (sender, receiver) = mpsc::channel(Routing::queue_capacity(pattern));
            ((pattern.clone(), sender), receiver)
        })
        .unzip();
    let linear = LinearScanBus { routes };
    let mut batch = RoutingBatch::new();
    group.bench_function("linear_scan", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &mut batch,
                |batch| batch.refill(&routing, &actor_id),
                |batch| {
                    for (ns, event) in batch.events.drain(..) {
                        let (delivered, dropped) = linear.try_publish(ns, event);
                        batch.delivered += delivered;
                        batch.dropped += dropped;
                    }
                },
                |batch| {
                    let mut drained = 0;
                    for receiver in &mut receivers {
                        while receiver.try_recv().is_ok() {
                            drained += 1;
                        }
                    }
                    assert_eq!((batch.dropped, drained), (0, batch.delivered));
                },
            )
        });
    });
    group.finish();
}

/// 4. Matching alone: the trie against a linear scan of the same 10_000 patterns.
fn subject_trie_match(c: &mut Criterion) {
    let routing = Routing::new();
    let trie = routing.trie();
    let trie_hits = |subjects: &[Namespace]| {
        let mut hits = 0;
        for subject in subjects {
            trie.for_each_match(subject.as_str(), |key, ()| {
                black_box(key);
                hits += 1;
            });
        }
        hits
    };
    let scan_hits = |subjects: &[Namespace]| {
        let mut hits = 0;
        for subject in subjects {
            for pattern in &routing.patterns {
                if pattern.matches(subject.as_str()) {
                    black_box(pattern);
                    hits += 1;
                }
            }
        }
        hits
    };
    let first = routing.window(0);
    assert_eq!(trie_hits(first), scan_hits(first));

    let mut group = group(c, "subject_trie_match");
    // As in `routing_10k_subscriptions`: the linear scan needs ~160 ms per iteration.
    group
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(ROUTING_BATCH as u64));
    let mut window = 0;
    group.bench_function("SubjectTrie", |b| {
        b.iter(|| {
            window += 1;
            trie_hits(routing.window(window))
        });
    });
    group.bench_function("linear_scan", |b| {
        b.iter(|| {
            window += 1;
            scan_hits(routing.window(window))
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    publish_1_exact_subscriber,
    fan_out_100_subscribers,
    routing_10k_subscriptions,
    subject_trie_match
);
criterion_main!(benches);
