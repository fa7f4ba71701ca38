//! [`NatsBusMetrics`]: the local bus's totals plus what happened on the network path, where
//! every loss is counted rather than silent.
//!
//! Also emitted through the `metrics` crate: `aether_bus_nats_sent_total`,
//! `aether_bus_nats_send_failed_total`, `aether_bus_nats_send_dropped_total`,
//! `aether_bus_nats_received_total`, `aether_bus_nats_lost_total`,
//! `aether_bus_nats_undecodable_total`, `aether_bus_nats_slow_consumer_total`,
//! `aether_bus_nats_disconnects_total`, `aether_bus_nats_durable_published_total`,
//! `aether_bus_nats_durable_duplicates_total`.
//! (`aether_bus_nats_undecodable_total` counts bad subjects; bad payloads are counted by the
//! local bus, in `aether_bus_undecodable_total`; [`NatsBusMetrics::undecodable`] is the sum.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use aether_core::BusMetrics;

/// Totals of one [`NatsEventBus`](super::NatsEventBus).
///
/// `published`, `delivered` and `dropped` mean what they mean on the local bus (`delivered` and
/// `dropped` include events that came from other nodes). The rest describe the network path.
/// **Losses** show in `send_dropped`, `send_failed` (this node's events that did not leave it),
/// `lost` (other nodes' events that never arrived: gaps in a sender's sequence),
/// `slow_consumer` and `disconnects` (the client's own notices of moments when events may
/// have been lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NatsBusMetrics {
    /// Events published on this bus.
    pub published: u64,
    /// Deliveries into local subscriber queues, local and remote events alike.
    pub delivered: u64,
    /// Deliveries dropped because a local subscriber's queue was full.
    pub dropped: u64,
    /// Events handed to the NATS client for other nodes.
    pub sent: u64,
    /// Events the NATS client refused to send (connection closed, or its buffer full while
    /// disconnected).
    pub send_failed: u64,
    /// Events dropped before reaching the client because the outgoing queue was full
    /// ([`try_publish`](super::NatsEventBus::try_publish) only).
    pub send_dropped: u64,
    /// Events received from other nodes (once per local pattern they matched), counted on
    /// arrival. Payloads are decoded later, by the first local subscriber that takes them, so
    /// this also counts messages that turn out not to be events (see `undecodable`).
    pub received: u64,
    /// Events of other nodes that never arrived: gaps in a sender's sequence for a namespace,
    /// as seen by one of this node's NATS subscriptions. The numbers come from message headers:
    /// a jump of more than 2³² in one sender's numbers is taken for a forged or corrupted
    /// header and ignored, and the total saturates at `u64::MAX` rather than wrapping.
    pub lost: u64,
    /// Received messages that were not events of a valid namespace, ignored: a bad subject is
    /// counted on arrival (and not in `received`), a payload that is not an event when a local
    /// subscriber takes it or a subscriber's filter looks at it (once, however many local
    /// subscribers it reached; never, if none takes it).
    pub undecodable: u64,
    /// Slow-consumer notices from the client: a NATS subscription's buffer overflowed and
    /// messages were dropped (they also show in `lost`).
    pub slow_consumer: u64,
    /// Times the connection was lost (events sent meanwhile by others may be lost; they show in
    /// `lost` once the sender's next event arrives).
    pub disconnects: u64,
    /// Events stored in the bus stream by [`publish_durable`](super::NatsEventBus::publish_durable).
    pub durable_published: u64,
    /// Durable publishes the bus stream acknowledged as duplicates: an event with the same id
    /// was already stored **in the same namespace** within the stream's duplicate window (a
    /// retry), so it was not stored again and other nodes did not receive it again. Not
    /// counted in `durable_published`.
    pub durable_duplicates: u64,
}

impl NatsBusMetrics {
    pub(crate) fn with_local(mut self, local: BusMetrics) -> Self {
        self.published = local.published;
        self.delivered = local.delivered;
        self.dropped = local.dropped;
        // Bad subjects are counted on arrival, bad payloads by the local bus when taken.
        self.undecodable += local.undecodable;
        self
    }
}

/// One counter, readable through the API and mirrored to the `metrics` crate.
pub(crate) struct Counter {
    value: AtomicU64,
    metric: metrics::Counter,
}

impl Counter {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            value: AtomicU64::new(0),
            metric: metrics::counter!(name),
        }
    }

    pub(crate) fn add(&self, n: u64) {
        if n > 0 {
            self.value.fetch_add(n, Relaxed);
            self.metric.increment(n);
        }
    }

    /// Adds `n`, stopping at `u64::MAX` instead of wrapping: for counts fed by numbers from
    /// the network (see the gap counter).
    pub(crate) fn add_saturating(&self, n: u64) {
        if n > 0 {
            let _ = self
                .value
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_add(n)));
            self.metric.increment(n);
        }
    }

    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

pub(crate) struct NetworkCounters {
    pub(crate) sent: Counter,
    pub(crate) send_failed: Counter,
    pub(crate) send_dropped: Counter,
    pub(crate) received: Counter,
    pub(crate) lost: Counter,
    pub(crate) undecodable: Counter,
    pub(crate) slow_consumer: Counter,
    pub(crate) disconnects: Counter,
    pub(crate) durable_published: Counter,
    pub(crate) durable_duplicates: Counter,
}

impl NetworkCounters {
    pub(crate) fn new() -> Self {
        Self {
            sent: Counter::new("aether_bus_nats_sent_total"),
            send_failed: Counter::new("aether_bus_nats_send_failed_total"),
            send_dropped: Counter::new("aether_bus_nats_send_dropped_total"),
            received: Counter::new("aether_bus_nats_received_total"),
            lost: Counter::new("aether_bus_nats_lost_total"),
            undecodable: Counter::new("aether_bus_nats_undecodable_total"),
            slow_consumer: Counter::new("aether_bus_nats_slow_consumer_total"),
            disconnects: Counter::new("aether_bus_nats_disconnects_total"),
            durable_published: Counter::new("aether_bus_nats_durable_published_total"),
            durable_duplicates: Counter::new("aether_bus_nats_durable_duplicates_total"),
        }
    }

    pub(crate) fn read(&self) -> NatsBusMetrics {
        NatsBusMetrics {
            sent: self.sent.get(),
            send_failed: self.send_failed.get(),
            send_dropped: self.send_dropped.get(),
            received: self.received.get(),
            lost: self.lost.get(),
            undecodable: self.undecodable.get(),
            slow_consumer: self.slow_consumer.get(),
            disconnects: self.disconnects.get(),
            durable_published: self.durable_published.get(),
            durable_duplicates: self.durable_duplicates.get(),
            ..NatsBusMetrics::default()
        }
    }
}

/// Registers the description and unit of every metric of the NATS bus's network path with
/// the installed recorder (the local bus's: [`aether_core::describe_bus_metrics`]).
pub fn describe() {
    use metrics::{Unit, describe_counter};
    let counters = [
        (
            "aether_bus_nats_sent_total",
            "Events handed to the NATS client for other nodes.",
        ),
        (
            "aether_bus_nats_send_failed_total",
            "Events the NATS client refused to send (connection closed, buffer full).",
        ),
        (
            "aether_bus_nats_send_dropped_total",
            "Events dropped before the client because the outgoing queue was full (try_publish).",
        ),
        (
            "aether_bus_nats_received_total",
            "Events received from other nodes (once per local pattern they matched).",
        ),
        (
            "aether_bus_nats_lost_total",
            "Events of other nodes that never arrived (gaps in a sender's sequence).",
        ),
        (
            "aether_bus_nats_undecodable_total",
            "Received messages on a subject that is not a valid namespace's.",
        ),
        (
            "aether_bus_nats_slow_consumer_total",
            "Slow-consumer notices: a NATS subscription's buffer overflowed.",
        ),
        (
            "aether_bus_nats_disconnects_total",
            "Times the connection was lost.",
        ),
        (
            "aether_bus_nats_durable_published_total",
            "Events stored in the bus stream by publish_durable.",
        ),
        (
            "aether_bus_nats_durable_duplicates_total",
            "Durable publishes the bus stream acknowledged as duplicates.",
        ),
    ];
    let durable = [
        (
            "aether_bus_durable_received_total",
            "Events handed to durable subscribers (redeliveries included).",
        ),
        (
            "aether_bus_durable_redelivered_total",
            "Events durable subscriptions received again (not acknowledged in time).",
        ),
        (
            "aether_bus_durable_acknowledged_total",
            "Acknowledgements durable subscriptions sent.",
        ),
        (
            "aether_bus_durable_filtered_total",
            "Events durable subscriptions skipped by their filter (acknowledged, not handed over).",
        ),
        (
            "aether_bus_durable_undecodable_total",
            "Stored messages that were not events of a valid namespace (terminated, not redelivered).",
        ),
    ];
    for (name, what) in counters.into_iter().chain(durable) {
        describe_counter!(name, Unit::Count, what);
    }
}
