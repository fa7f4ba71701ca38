//! Metrics of an actor runtime: `metrics` handles registered once per runtime (labels
//! `namespace` and `actor_type`), and the same counts kept in atomics for
//! [`Actors::stats`](crate::Actors::stats).
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `aether_actor_active` | gauge | actors active now |
//! | `aether_actor_activations_total` | counter | activations that succeeded |
//! | `aether_actor_activation_failures_total` | counter | activations that failed |
//! | `aether_actor_activation_seconds` | histogram | time to load and replay an actor |
//! | `aether_actor_mailbox_depth` | histogram | messages waiting when an actor takes one |
//! | `aether_actor_commands_total` | counter | commands decided (accepted, rejected or failed) |
//! | `aether_actor_rejections_total` | counter | commands rejected by the actor |
//! | `aether_actor_conflicts_total` | counter | version conflicts met on append |
//! | `aether_actor_duplicates_total` | counter | retried commands answered from the index |
//! | `aether_actor_passivations_total` | counter | actors passivated (idle, limit, shutdown) |
//! | `aether_actor_tell_failures_total` | counter | `tell`s lost or failed (each counted once) |
//! | `aether_actor_snapshots_total` | counter | snapshots saved |
//! | `aether_actor_snapshot_failures_total` | counter | snapshot saves that failed |
//! | `aether_actor_effects_total` | counter | effects run (tells, asks, timers, reminders set) |
//! | `aether_actor_effect_failures_total` | counter | effects that failed (each also logged) |
//! | `aether_actor_timers_fired_total` | counter | plain timers whose command was handled |
//! | `aether_actor_reminders_fired_total` | counter | reminders whose `remind` was called |
//! | `aether_actor_events_published_total` | counter | stored events handed to the bus |
//! | `aether_actor_publish_failures_total` | counter | stored events not published within `publish_timeout` |
//! | `aether_actor_publish_drops_total` | counter | deliveries the bus dropped (a subscriber's queue full) |
//! | `aether_actor_queries_total` | counter | queries answered or failed |
//! | `aether_actor_overloaded_total` | counter | messages refused because a mailbox was full |
//! | `aether_actor_command_seconds` | histogram | time an actor took to decide and store a command |
//! | `aether_actor_query_seconds` | histogram | time an actor took to answer a query |
//!
//! With a cluster (feature `cluster`), per node: `aether_actor_route_moved_total`,
//! `aether_actor_route_retries_total`, `aether_actor_route_remote_seconds`,
//! `aether_actor_requests_served_total` and `aether_actor_fenced_total` (see
//! `docs/metrics.md`, which lists every metric of every crate).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aether_core::Namespace;
use metrics::{Counter, Gauge, Histogram};

/// Counts of one runtime since it started, from [`Actors::stats`](crate::Actors::stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ActorStats {
    /// Actors active now.
    pub active: u64,
    /// Successful activations.
    pub activations: u64,
    /// Failed activations.
    pub activation_failures: u64,
    /// Commands decided.
    pub commands: u64,
    /// Commands rejected.
    pub rejections: u64,
    /// Version conflicts met.
    pub conflicts: u64,
    /// Retries answered from the command index.
    pub duplicates: u64,
    /// Passivations.
    pub passivations: u64,
    /// `tell`s lost or failed.
    pub tell_failures: u64,
    /// Snapshots saved.
    pub snapshots: u64,
    /// Snapshot saves that failed.
    pub snapshot_failures: u64,
    /// Effects run.
    pub effects: u64,
    /// Effects that failed.
    pub effect_failures: u64,
    /// Plain timers fired.
    pub timers_fired: u64,
    /// Reminders fired.
    pub reminders_fired: u64,
    /// Stored events handed to the bus (runtimes with a bus).
    pub published: u64,
    /// Stored events not published within [`ActorConfig::publish_timeout`](crate::ActorConfig::publish_timeout).
    pub publish_failures: u64,
    /// Deliveries the bus dropped because a subscriber's queue was full.
    pub publish_drops: u64,
    /// Queries answered or failed.
    pub queries: u64,
    /// Messages refused because the actor's mailbox was full.
    pub overloaded: u64,
}

macro_rules! counters {
    ($($field:ident => $name:literal),* $(,)?) => {
        pub(crate) struct Counters {
            $(pub(crate) $field: Count,)*
            active: AtomicU64,
            active_gauge: Gauge,
            activation_seconds: Histogram,
            mailbox_depth: Histogram,
            pub(crate) command_seconds: Histogram,
            pub(crate) query_seconds: Histogram,
        }

        impl Counters {
            pub(crate) fn new(namespace: &Namespace, actor_type: &'static str) -> Self {
                let labels = [
                    ("namespace", namespace.to_string()),
                    ("actor_type", actor_type.to_owned()),
                ];
                Self {
                    $($field: Count::new(metrics::counter!($name, &labels)),)*
                    active: AtomicU64::new(0),
                    active_gauge: metrics::gauge!("aether_actor_active", &labels),
                    activation_seconds: metrics::histogram!("aether_actor_activation_seconds", &labels),
                    mailbox_depth: metrics::histogram!("aether_actor_mailbox_depth", &labels),
                    command_seconds: metrics::histogram!("aether_actor_command_seconds", &labels),
                    query_seconds: metrics::histogram!("aether_actor_query_seconds", &labels),
                }
            }

            pub(crate) fn stats(&self) -> ActorStats {
                ActorStats {
                    active: self.active.load(Ordering::Relaxed),
                    $($field: self.$field.get(),)*
                }
            }
        }
    };
}

counters! {
    activations => "aether_actor_activations_total",
    activation_failures => "aether_actor_activation_failures_total",
    commands => "aether_actor_commands_total",
    rejections => "aether_actor_rejections_total",
    conflicts => "aether_actor_conflicts_total",
    duplicates => "aether_actor_duplicates_total",
    passivations => "aether_actor_passivations_total",
    tell_failures => "aether_actor_tell_failures_total",
    snapshots => "aether_actor_snapshots_total",
    snapshot_failures => "aether_actor_snapshot_failures_total",
    effects => "aether_actor_effects_total",
    effect_failures => "aether_actor_effect_failures_total",
    timers_fired => "aether_actor_timers_fired_total",
    reminders_fired => "aether_actor_reminders_fired_total",
    published => "aether_actor_events_published_total",
    publish_failures => "aether_actor_publish_failures_total",
    publish_drops => "aether_actor_publish_drops_total",
    queries => "aether_actor_queries_total",
    overloaded => "aether_actor_overloaded_total",
}

impl Counters {
    pub(crate) fn actor_started(&self) {
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.active_gauge.set(now as f64);
    }

    pub(crate) fn actor_stopped(&self) {
        let now = self
            .active
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.active_gauge.set(now as f64);
    }

    pub(crate) fn activated_in(&self, took: Duration) {
        self.activation_seconds.record(took.as_secs_f64());
    }

    pub(crate) fn mailbox_depth(&self, depth: usize) {
        self.mailbox_depth.record(depth as f64);
    }
}

/// Registers the description and unit of every Aether metric this build can emit (stores,
/// buses, actors; with the `cluster` feature the NATS bus and the cluster too) with the
/// installed recorder. [`serve_metrics`](crate::prometheus::serve_metrics) calls it.
pub fn describe_all() {
    aether_core::StoreMetrics::describe();
    aether_core::describe_bus_metrics();
    describe();
    #[cfg(feature = "cluster")]
    {
        aether_nats::describe_nats_bus_metrics();
        aether_cluster::metrics::describe();
    }
}

/// Registers the description and unit of every actor metric with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    let counters: [(&'static str, &'static str); 24] = [
        (
            "aether_actor_activations_total",
            "Actor activations that succeeded.",
        ),
        (
            "aether_actor_activation_failures_total",
            "Actor activations that failed.",
        ),
        (
            "aether_actor_commands_total",
            "Commands decided (accepted, rejected or failed).",
        ),
        (
            "aether_actor_rejections_total",
            "Commands the actor rejected.",
        ),
        (
            "aether_actor_conflicts_total",
            "Version conflicts met when storing a decision.",
        ),
        (
            "aether_actor_duplicates_total",
            "Retried commands answered from the command index.",
        ),
        (
            "aether_actor_passivations_total",
            "Actors passivated (idle, limit, shutdown, fenced).",
        ),
        ("aether_actor_tell_failures_total", "Tells lost or failed."),
        ("aether_actor_snapshots_total", "Snapshots saved."),
        (
            "aether_actor_snapshot_failures_total",
            "Snapshot saves that failed.",
        ),
        ("aether_actor_effects_total", "Effects run."),
        ("aether_actor_effect_failures_total", "Effects that failed."),
        (
            "aether_actor_timers_fired_total",
            "Plain timers whose command was handled.",
        ),
        (
            "aether_actor_reminders_fired_total",
            "Reminders whose remind was called.",
        ),
        (
            "aether_actor_events_published_total",
            "Stored events handed to the bus.",
        ),
        (
            "aether_actor_publish_failures_total",
            "Stored events not published within publish_timeout.",
        ),
        (
            "aether_actor_publish_drops_total",
            "Deliveries the bus dropped (a subscriber's queue full).",
        ),
        ("aether_actor_queries_total", "Queries answered or failed."),
        (
            "aether_actor_overloaded_total",
            "Messages refused because an actor's mailbox was full.",
        ),
        (
            "aether_actor_route_moved_total",
            "Requests this node answered moved (the shard is served elsewhere).",
        ),
        (
            "aether_actor_route_retries_total",
            "Attempts of this node's calls that were retried (moved, no responders, no owner).",
        ),
        (
            "aether_actor_requests_served_total",
            "Requests from other nodes this node answered.",
        ),
        (
            "aether_actor_fenced_total",
            "Loads and writes refused as fenced (a newer owner, or a shard not served here).",
        ),
        (
            "aether_actor_remote_calls_total",
            "Requests this node sent to the owner on another node.",
        ),
    ];
    for (name, what) in counters {
        describe_counter!(name, Unit::Count, what);
    }
    describe_gauge!("aether_actor_active", Unit::Count, "Actors active now.");
    describe_histogram!(
        "aether_actor_activation_seconds",
        Unit::Seconds,
        "Time to load and replay an actor."
    );
    describe_histogram!(
        "aether_actor_mailbox_depth",
        Unit::Count,
        "Messages waiting when an actor takes one."
    );
    describe_histogram!(
        "aether_actor_command_seconds",
        Unit::Seconds,
        "Time an actor took to decide and store a command (from taking it to its outcome)."
    );
    describe_histogram!(
        "aether_actor_query_seconds",
        Unit::Seconds,
        "Time an actor took to answer a query."
    );
    describe_histogram!(
        "aether_actor_route_remote_seconds",
        Unit::Seconds,
        "Time of one request to another node, until its reply."
    );
}

/// The routing metrics of one node's actor host (feature `cluster`).
#[cfg(feature = "cluster")]
pub(crate) struct RouteCounters {
    pub(crate) moved: Count,
    pub(crate) retries: Count,
    pub(crate) served: Count,
    pub(crate) remote: Count,
    pub(crate) remote_seconds: Histogram,
}

#[cfg(feature = "cluster")]
impl RouteCounters {
    pub(crate) fn new(namespace: &Namespace, actor_type: &'static str) -> Self {
        let labels = [
            ("namespace", namespace.to_string()),
            ("actor_type", actor_type.to_owned()),
        ];
        Self {
            moved: Count::new(metrics::counter!("aether_actor_route_moved_total", &labels)),
            retries: Count::new(metrics::counter!(
                "aether_actor_route_retries_total",
                &labels
            )),
            served: Count::new(metrics::counter!(
                "aether_actor_requests_served_total",
                &labels
            )),
            remote: Count::new(metrics::counter!(
                "aether_actor_remote_calls_total",
                &labels
            )),
            remote_seconds: metrics::histogram!("aether_actor_route_remote_seconds", &labels),
        }
    }
}

/// A `metrics` counter and its local count.
pub(crate) struct Count {
    local: AtomicU64,
    counter: Counter,
}

impl Count {
    pub(crate) fn new(counter: Counter) -> Self {
        Self {
            local: AtomicU64::new(0),
            counter,
        }
    }

    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, n: u64) {
        if n > 0 {
            self.local.fetch_add(n, Ordering::Relaxed);
            self.counter.increment(n);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}
