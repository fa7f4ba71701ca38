//! The local, in-process [`EventBus`]: publish events to a namespace, subscribe to a namespace
//! or (for trusted components) to a pattern across namespaces, with filters, bounded queues
//! and delivery metrics.
//!
//! ```text
//! publish(ns, event) ─► exact map / wildcard trie ─► filter? ─► subscriber queue (bounded)
//!                                                          └─ full: drop + count, or wait
//! ```
//!
//! Exact subscriptions are found with one hash lookup of the namespace and wildcard ones through
//! a [`SubjectTrie`](crate::SubjectTrie), so a publish costs in proportion to the subscriptions
//! it matches, not to all subscriptions. Events are shared as `Arc<Event>`: a
//! fan-out to a hundred subscribers copies a pointer a hundred times, not the event.

mod metrics;
mod namespaced;
mod options;
mod routes;
mod subscription;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::mpsc;

use crate::{Event, Namespace, Pattern, SubscriptionFilter};
use routes::Routes;
use subscription::{Delivered, Offer, Subscriber, SubscriberState};

pub use metrics::{BusMetrics, SubscriptionMetrics};
pub use namespaced::NamespacedBus;
pub use options::{BusConfig, Overflow, SubscribeOptions};
pub use subscription::{Subscription, WithNamespaces};

/// What one publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Delivery {
    /// Subscriptions whose queue received the event.
    pub delivered: usize,
    /// Subscriptions that matched but whose queue was full, so the event was dropped for them
    /// (and counted in their metrics).
    pub dropped: usize,
}

/// An in-process event bus. Cheap to clone; clones share subscriptions and metrics.
///
/// - [`subscribe`](Self::subscribe) / [`subscribe_with_filter`](Self::subscribe_with_filter)
///   receive every event of one namespace (narrowed by a filter);
/// - [`subscribe_across_namespaces`](Self::subscribe_across_namespaces) receives from every
///   namespace matching a pattern — deliberately a separate call, for trusted components only;
/// - [`namespace`](Self::namespace) gives a [`NamespacedBus`] confined to one namespace, for
///   tenant code.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventBus, Namespace, Pattern, SubscribeOptions, SubscriptionFilter};
///
/// let bus = EventBus::new();
/// let orders = Namespace::new("prod.orders")?;
/// let mut all_orders = bus.subscribe(&orders);
/// let mut placed = bus.subscribe_with_filter(&orders, SubscriptionFilter::new().event_types(["OrderPlaced"]));
/// let mut audit = bus.subscribe_across_namespaces(&Pattern::new("prod.>")?, SubscribeOptions::new());
///
/// let order = ActorId::new("order-1")?;
/// bus.try_publish(&orders, Event::new(order.clone(), "OrderPlaced", 1));
/// bus.try_publish(&orders, Event::new(order.clone(), "OrderShipped", 2));
///
/// assert_eq!(all_orders.queued(), 2);
/// assert_eq!(placed.queued(), 1);
/// assert_eq!(audit.queued(), 2);
/// assert_eq!(bus.metrics().delivered, 5);
/// # Ok::<(), aether_core::InvalidName>(())
/// ```
#[derive(Clone, Default)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: BusConfig,
    routes: RwLock<Routes>,
    next_key: AtomicU64,
    counters: metrics::BusCounters,
}

impl Default for Inner {
    fn default() -> Self {
        Self::new(BusConfig::default())
    }
}

impl Inner {
    fn new(config: BusConfig) -> Self {
        Self {
            config,
            routes: RwLock::new(Routes::default()),
            next_key: AtomicU64::new(0),
            counters: metrics::BusCounters::new(),
        }
    }

    fn remove(&self, pattern: &Pattern, key: u64) {
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(pattern, key);
    }
}

impl EventBus {
    /// A bus with the default [`BusConfig`] (queues of 1024, drop-newest).
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus with `config` as the default for its subscriptions.
    pub fn with_config(config: BusConfig) -> Self {
        Self {
            inner: Arc::new(Inner::new(config)),
        }
    }

    /// Publishes `event` in `namespace` without ever waiting: a subscriber whose queue is full
    /// loses this event (counted), whatever its overflow policy.
    pub fn try_publish(&self, namespace: &Namespace, event: Event) -> Delivery {
        let (delivery, waiting) = self.route(namespace, event, false);
        debug_assert!(
            waiting.is_empty(),
            "route only defers drops when it may wait"
        );
        delivery
    }

    /// Publishes `event` in `namespace`.
    ///
    /// Never fails and never waits for a slow subscriber with [`Overflow::DropNewest`] (the
    /// default): that subscriber loses the event and the loss is counted. For subscribers with
    /// [`Overflow::Block`] whose queue is full it waits — for all of them at once, so at most the
    /// longest of their timeouts — then drops and counts. Waiting needs a tokio runtime with time
    /// enabled.
    ///
    /// Cancel-safe: if the returned future is dropped while waiting, the events still waiting
    /// are counted as dropped, never lost silently.
    pub async fn publish(&self, namespace: &Namespace, event: Event) -> Delivery {
        let (mut delivery, waiting) = self.route(namespace, event, true);
        if waiting.is_empty() {
            return delivery;
        }
        let waits = waiting.into_iter().map(|(subscriber, item)| {
            let pending = PendingDelivery {
                subscriber,
                bus: &self.inner,
                resolved: false,
            };
            pending.wait(item)
        });
        for outcome in futures::future::join_all(waits).await {
            match outcome {
                WaitOutcome::Delivered => delivery.delivered += 1,
                WaitOutcome::Dropped => delivery.dropped += 1,
                WaitOutcome::Closed => {}
            }
        }
        delivery
    }

    /// Offers the event to every matching subscriber. Returns what happened and, when
    /// `may_wait`, the full queues of [`Overflow::Block`] subscribers still to be waited for.
    fn route(
        &self,
        namespace: &Namespace,
        event: Event,
        may_wait: bool,
    ) -> (Delivery, Vec<(Arc<Subscriber>, Delivered)>) {
        let event = Arc::new(event);
        let mut delivery = Delivery::default();
        let mut full = Vec::new();
        let routes = self
            .inner
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        routes.for_each_match(namespace.as_str(), |subscriber| {
            if !subscriber.filter.matches(&event) {
                return;
            }
            let sent_namespace = subscriber.wants_namespace.then(|| namespace.clone());
            match subscriber.offer((sent_namespace, event.clone())) {
                Offer::Delivered => delivery.delivered += 1,
                Offer::Closed => {}
                Offer::Full(item) => match subscriber.overflow {
                    Overflow::Block { .. } if may_wait => full.push((subscriber.clone(), item)),
                    _ => {
                        subscriber.counters.dropped();
                        delivery.dropped += 1;
                    }
                },
            }
        });
        drop(routes);
        self.inner
            .counters
            .record(delivery.delivered as u64, delivery.dropped as u64);
        (delivery, full)
    }

    /// Subscribes to every event published in `namespace` (exactly that namespace).
    pub fn subscribe(&self, namespace: &Namespace) -> Subscription {
        self.subscribe_with(namespace, SubscribeOptions::new())
    }

    /// Subscribes to the events of `namespace` that pass `filter`.
    pub fn subscribe_with_filter(
        &self,
        namespace: &Namespace,
        filter: SubscriptionFilter,
    ) -> Subscription {
        self.subscribe_with(namespace, SubscribeOptions::new().filter(filter))
    }

    /// Subscribes to `namespace` with explicit options (filter, queue size, overflow policy).
    pub fn subscribe_with(&self, namespace: &Namespace, options: SubscribeOptions) -> Subscription {
        self.add_subscriber(Pattern::exact(namespace), Some(namespace.clone()), options)
    }

    /// Subscribes to every namespace matching `pattern` (`*` one token, `>` the rest).
    ///
    /// **This crosses namespace boundaries**: a subscription to `>` sees every tenant's events.
    /// It exists for trusted components — audit, logging, monitoring — and is deliberately a
    /// separate call from [`subscribe`](Self::subscribe) so that it is never chosen by accident.
    /// Hand tenant code a [`NamespacedBus`] instead, which cannot make this call.
    pub fn subscribe_across_namespaces(
        &self,
        pattern: &Pattern,
        options: SubscribeOptions,
    ) -> Subscription {
        self.add_subscriber(pattern.clone(), None, options)
    }

    fn add_subscriber(
        &self,
        pattern: Pattern,
        exact_namespace: Option<Namespace>,
        options: SubscribeOptions,
    ) -> Subscription {
        // tokio's bounded channel panics above its semaphore's limit; clamp instead.
        let capacity = options
            .queue_capacity
            .unwrap_or(self.inner.config.queue_capacity)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let (sender, receiver) = mpsc::channel(capacity);
        let key = self.inner.next_key.fetch_add(1, Relaxed);
        let state = Arc::new(SubscriberState {
            key,
            exact: exact_namespace,
            counters: metrics::SubscriptionCounters::new(pattern.as_str()),
            pattern,
            filter: options.filter,
            overflow: options.overflow.unwrap_or(self.inner.config.overflow),
            capacity,
        });
        let subscriber = Arc::new(Subscriber {
            wants_namespace: state.exact.is_none(),
            filter: state.filter.clone(),
            overflow: state.overflow,
            capacity,
            state: state.clone(),
            sender,
        });
        self.inner
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(&state.pattern, key, subscriber);
        Subscription::new(receiver, state, Arc::downgrade(&self.inner))
    }

    /// A handle confined to `namespace`: what tenant code should receive.
    pub fn namespace(&self, namespace: Namespace) -> NamespacedBus {
        NamespacedBus::new(self.clone(), namespace)
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.inner
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The bus's totals.
    pub fn metrics(&self) -> BusMetrics {
        self.inner.counters.read()
    }
}

/// How one wait for room in a [`Overflow::Block`] subscriber's queue ended.
enum WaitOutcome {
    Delivered,
    Dropped,
    Closed,
}

/// An event waiting for room in one subscriber's queue. Unless the wait resolves, dropping it
/// (timeout, or the publish future itself being dropped) counts the event as dropped.
struct PendingDelivery<'a> {
    subscriber: Arc<Subscriber>,
    bus: &'a Inner,
    resolved: bool,
}

impl PendingDelivery<'_> {
    async fn wait(mut self, item: Delivered) -> WaitOutcome {
        let Overflow::Block { timeout } = self.subscriber.overflow else {
            unreachable!("only blocking subscribers wait");
        };
        match tokio::time::timeout(timeout, self.subscriber.sender.send(item)).await {
            Ok(Ok(())) => {
                self.resolved = true;
                self.subscriber.delivered();
                self.bus.counters.add_delivered(1);
                WaitOutcome::Delivered
            }
            Ok(Err(_closed)) => {
                self.resolved = true;
                WaitOutcome::Closed
            }
            Err(_elapsed) => WaitOutcome::Dropped,
        }
    }
}

impl Drop for PendingDelivery<'_> {
    fn drop(&mut self) {
        if !self.resolved {
            self.subscriber.counters.dropped();
            self.bus.counters.add_dropped(1);
        }
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("config", &self.inner.config)
            .field("subscribers", &self.subscriber_count())
            .field("metrics", &self.metrics())
            .finish()
    }
}
