//! Delivery counters of the bus and of each subscription: readable through the API, and
//! emitted through the `metrics` crate.
//!
//! Metric names: `aether_bus_published_total`, `aether_bus_delivered_total`,
//! `aether_bus_dropped_total`, `aether_bus_undecodable_total` (per bus); `aether_bus_subscription_delivered_total`,
//! `aether_bus_subscription_dropped_total`, `aether_bus_subscription_undecodable_total` and the gauge `aether_bus_subscription_queue_high_water`,
//! labelled with the subscription's `pattern` (per subscription). Handles are registered when the
//! bus or subscription is created, so install your `metrics` recorder before that.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Totals of one bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BusMetrics {
    /// Events published.
    pub published: u64,
    /// Deliveries into subscriber queues (one event to three subscribers counts three).
    pub delivered: u64,
    /// Deliveries dropped because a subscriber's queue was full.
    pub dropped: u64,
    /// Events delivered in a transport's wire form
    /// ([`deliver_encoded_to_pattern`](super::EventBus::deliver_encoded_to_pattern)) that did
    /// not decode when first taken or filtered: once per event, however many subscribers it
    /// reached.
    pub undecodable: u64,
}

/// Counters of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscriptionMetrics {
    /// Events put into this subscription's queue.
    pub delivered: u64,
    /// Events that matched but were dropped because the queue was full.
    pub dropped: u64,
    /// Events from another node that arrived encoded and did not decode when taken: delivered
    /// (counted in `delivered`) but skipped. Events published locally always decode.
    pub undecodable: u64,
    /// Largest number of events ever waiting in the queue.
    pub queue_high_water: u64,
}

pub(super) struct BusCounters {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    undecodable: AtomicU64,
    published_metric: metrics::Counter,
    delivered_metric: metrics::Counter,
    dropped_metric: metrics::Counter,
    undecodable_metric: metrics::Counter,
}

impl BusCounters {
    pub(super) fn new() -> Self {
        Self {
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            published_metric: metrics::counter!("aether_bus_published_total"),
            delivered_metric: metrics::counter!("aether_bus_delivered_total"),
            dropped_metric: metrics::counter!("aether_bus_dropped_total"),
            undecodable_metric: metrics::counter!("aether_bus_undecodable_total"),
        }
    }

    /// Counts one publish with what routing settled at once.
    pub(super) fn record(&self, delivered: u64, dropped: u64) {
        self.published.fetch_add(1, Relaxed);
        self.published_metric.increment(1);
        self.add_delivered(delivered);
        self.add_dropped(dropped);
    }

    /// Counts deliveries settled after routing (waits for room).
    pub(super) fn add_delivered(&self, n: u64) {
        if n > 0 {
            self.delivered.fetch_add(n, Relaxed);
            self.delivered_metric.increment(n);
        }
    }

    /// Counts drops settled after routing (waits that timed out or were cancelled).
    pub(super) fn add_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Relaxed);
            self.dropped_metric.increment(n);
        }
    }

    /// Counts one encoded event that did not decode.
    pub(super) fn add_undecodable(&self) {
        self.undecodable.fetch_add(1, Relaxed);
        self.undecodable_metric.increment(1);
    }

    pub(super) fn read(&self) -> BusMetrics {
        BusMetrics {
            published: self.published.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
        }
    }
}

pub(super) struct SubscriptionCounters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    undecodable: AtomicU64,
    high_water: AtomicU64,
    delivered_metric: metrics::Counter,
    dropped_metric: metrics::Counter,
    undecodable_metric: metrics::Counter,
    high_water_metric: metrics::Gauge,
}

impl SubscriptionCounters {
    pub(super) fn new(pattern: &str) -> Self {
        let label = ("pattern", pattern.to_owned());
        Self {
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            high_water: AtomicU64::new(0),
            delivered_metric: metrics::counter!(
                "aether_bus_subscription_delivered_total",
                std::slice::from_ref(&label)
            ),
            dropped_metric: metrics::counter!(
                "aether_bus_subscription_dropped_total",
                std::slice::from_ref(&label)
            ),
            undecodable_metric: metrics::counter!(
                "aether_bus_subscription_undecodable_total",
                std::slice::from_ref(&label)
            ),
            high_water_metric: metrics::gauge!(
                "aether_bus_subscription_queue_high_water",
                &[label]
            ),
        }
    }

    pub(super) fn delivered(&self, queue_len: u64) {
        self.delivered.fetch_add(1, Relaxed);
        self.delivered_metric.increment(1);
        if queue_len > self.high_water.load(Relaxed) {
            let before = self.high_water.fetch_max(queue_len, Relaxed);
            if queue_len > before {
                self.high_water_metric.set(queue_len as f64);
            }
        }
    }

    pub(super) fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
        self.dropped_metric.increment(1);
    }

    pub(super) fn undecodable(&self) {
        self.undecodable.fetch_add(1, Relaxed);
        self.undecodable_metric.increment(1);
    }

    pub(super) fn read(&self) -> SubscriptionMetrics {
        SubscriptionMetrics {
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            queue_high_water: self.high_water.load(Relaxed),
        }
    }
}

/// Registers the description and unit of every metric of the local bus with the installed
/// recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    let counters = [
        ("aether_bus_published_total", "Events published on the bus."),
        (
            "aether_bus_delivered_total",
            "Deliveries into subscriber queues (one event to three subscribers counts three).",
        ),
        (
            "aether_bus_dropped_total",
            "Deliveries dropped because a subscriber's queue was full.",
        ),
        (
            "aether_bus_undecodable_total",
            "Events from another node that did not decode (once per event).",
        ),
        (
            "aether_bus_subscription_delivered_total",
            "Events put into one subscription's queue (label pattern).",
        ),
        (
            "aether_bus_subscription_dropped_total",
            "Events one subscription dropped because its queue was full (label pattern).",
        ),
        (
            "aether_bus_subscription_undecodable_total",
            "Events from another node one subscription skipped as undecodable (label pattern).",
        ),
    ];
    for (name, what) in counters {
        describe_counter!(name, Unit::Count, what);
    }
    describe_gauge!(
        "aether_bus_subscription_queue_high_water",
        Unit::Count,
        "Largest number of events ever waiting in one subscription's queue (label pattern)."
    );
}
