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
//!
//! The [`Bus`] trait is what every bus offers (this one and the NATS bus of `aether-nats`),
//! and [`NamespacedBus`] the one tenant handle for all of them; code generic over `B: Bus`
//! runs on either.

mod contract;
mod encoded;
mod interest;
mod metrics;
mod namespaced;
mod options;
mod routes;
mod subscription;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::mpsc;

use crate::{Event, Namespace, Pattern, SubscriptionFilter};
use encoded::{Decoded, Payload};
use routes::Routes;
use subscription::{Delivered, Offer, Subscriber, SubscriberState};

pub use contract::{Bus, DurableBus};
pub use encoded::EncodedEvent;
pub use interest::InterestListener;
pub use metrics::{BusMetrics, SubscriptionMetrics, describe as describe_bus_metrics};
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

/// An in-process event bus. Cheap to clone; clones share subscriptions and metrics. Implements
/// [`Bus`] (its inherent methods are the same, so no import is needed to use it directly).
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
    listener: Option<Arc<dyn InterestListener>>,
    routes: RwLock<Routes>,
    next_key: AtomicU64,
    counters: metrics::BusCounters,
}

impl Default for Inner {
    fn default() -> Self {
        Self::new(BusConfig::default(), None)
    }
}

impl Inner {
    fn new(config: BusConfig, listener: Option<Arc<dyn InterestListener>>) -> Self {
        Self {
            config,
            listener,
            routes: RwLock::new(Routes::default()),
            next_key: AtomicU64::new(0),
            counters: metrics::BusCounters::new(),
        }
    }

    fn remove(&self, pattern: &Pattern, key: u64) {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if routes.remove(pattern, key)
            && let Some(listener) = &self.listener
        {
            // Under the lock, so that listeners see gains and losses in the order they happened.
            listener.interest_changed(pattern, false);
        }
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
            inner: Arc::new(Inner::new(config, None)),
        }
    }

    /// A bus that tells `listener` whenever a namespace pattern gains its first subscriber or
    /// loses its last one: the hook a transport uses to hold interest elsewhere (a NATS
    /// subscription per pattern) exactly while someone here listens.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use aether_core::{BusConfig, EventBus, InterestListener, Namespace, Pattern};
    ///
    /// #[derive(Default)]
    /// struct Log(Mutex<Vec<String>>);
    /// impl InterestListener for Log {
    ///     fn interest_changed(&self, pattern: &Pattern, interested: bool) {
    ///         self.0.lock().unwrap().push(format!("{pattern} {interested}"));
    ///     }
    /// }
    ///
    /// let log = Arc::new(Log::default());
    /// let bus = EventBus::with_interest_listener(BusConfig::default(), log.clone());
    /// let orders = Namespace::new("orders")?;
    /// let first = bus.subscribe(&orders);
    /// let second = bus.subscribe(&orders);
    /// drop(first);
    /// drop(second);
    /// assert_eq!(*log.0.lock().unwrap(), ["orders true", "orders false"]);
    /// # Ok::<(), aether_core::InvalidName>(())
    /// ```
    pub fn with_interest_listener(config: BusConfig, listener: Arc<dyn InterestListener>) -> Self {
        Self {
            inner: Arc::new(Inner::new(config, Some(listener))),
        }
    }

    /// Publishes `event` in `namespace` without ever waiting: a subscriber whose queue is full
    /// loses this event (counted), whatever its overflow policy.
    pub fn try_publish(&self, namespace: &Namespace, event: Event) -> Delivery {
        let (delivery, waiting) =
            self.route(namespace, Payload::Event(Arc::new(event)), None, false);
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
        let (delivery, waiting) =
            self.route(namespace, Payload::Event(Arc::new(event)), None, true);
        self.settle(delivery, waiting).await
    }

    /// Delivers `event`, published in `namespace` somewhere else, to the subscribers of
    /// `pattern` only — not to every matching subscriber. For transports: when each pattern
    /// has its own remote subscription, a remote event arrives once per matching pattern and
    /// must reach each pattern's subscribers once. Filters and overflow policies apply as for
    /// [`publish`](Self::publish) (waits for room for [`Overflow::Block`] subscribers); counted
    /// in `delivered`/`dropped`, not in `published`.
    pub async fn deliver_to_pattern(
        &self,
        pattern: &Pattern,
        namespace: &Namespace,
        event: Arc<Event>,
    ) -> Delivery {
        let (delivery, waiting) = self.route(namespace, Payload::Event(event), Some(pattern), true);
        self.settle(delivery, waiting).await
    }

    /// [`deliver_to_pattern`](Self::deliver_to_pattern) for an event still in its wire form:
    /// it is decoded only when a subscriber takes it (on that subscriber's task, once for all
    /// of them), or during routing if a subscriber's filter must see it. Subscribers skip an
    /// event that does not decode and count it as `undecodable`, as does the bus (once).
    pub async fn deliver_encoded_to_pattern(
        &self,
        pattern: &Pattern,
        namespace: &Namespace,
        encoded: impl EncodedEvent,
    ) -> Delivery {
        let payload = Payload::encoded(encoded);
        let (delivery, waiting) = self.route(namespace, payload, Some(pattern), true);
        self.settle(delivery, waiting).await
    }

    /// [`deliver_to_pattern`](Self::deliver_to_pattern) without ever waiting: a full queue
    /// loses the event (counted) whatever its overflow policy.
    pub fn try_deliver_to_pattern(
        &self,
        pattern: &Pattern,
        namespace: &Namespace,
        event: Arc<Event>,
    ) -> Delivery {
        self.route(namespace, Payload::Event(event), Some(pattern), false)
            .0
    }

    /// Waits for room for the events routing could not place at once.
    async fn settle(
        &self,
        mut delivery: Delivery,
        waiting: Vec<(Arc<Subscriber>, Delivered)>,
    ) -> Delivery {
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

    /// Offers the event to every matching subscriber (of `only`, if given). Returns what
    /// happened and, when `may_wait`, the full queues of [`Overflow::Block`] subscribers still
    /// to be waited for. A publish (`only` = `None`) is counted as published.
    fn route(
        &self,
        namespace: &Namespace,
        payload: Payload,
        only: Option<&Pattern>,
        may_wait: bool,
    ) -> (Delivery, Vec<(Arc<Subscriber>, Delivered)>) {
        let mut delivery = Delivery::default();
        let mut full = Vec::new();
        let routes = self
            .inner
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        routes.for_each_match(namespace.as_str(), only, |subscriber| {
            // An encoded event is decoded here only for a filter that must see it.
            if !subscriber.filter.is_empty() {
                let passes = match payload.decoded() {
                    Decoded::Event(event) => subscriber.filter.matches(event),
                    Decoded::Undecodable { first } => {
                        if first {
                            self.inner.counters.add_undecodable();
                        }
                        false
                    }
                };
                if !passes {
                    return;
                }
            }
            let sent_namespace = subscriber.wants_namespace.then(|| namespace.clone());
            match subscriber.offer((sent_namespace, payload.clone())) {
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
        let counters = &self.inner.counters;
        if only.is_none() {
            counters.record(delivery.delivered as u64, delivery.dropped as u64);
        } else {
            counters.add_delivered(delivery.delivered as u64);
            counters.add_dropped(delivery.dropped as u64);
        }
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
        let mut routes = self
            .inner
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if routes.insert(&state.pattern, key, subscriber)
            && let Some(listener) = &self.inner.listener
        {
            listener.interest_changed(&state.pattern, true);
        }
        drop(routes);
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
