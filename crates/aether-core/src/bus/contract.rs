//! The bus contract: [`Bus`], what every event bus offers (publish, subscribe with filters and
//! options, the namespace handle, flush, metrics), and [`DurableBus`], what a bus that also
//! stores events adds. [`EventBus`] implements `Bus`; the NATS bus (`aether-nats`) implements
//! both, so application code and the actor runtime written against these traits run on one
//! process or many unchanged.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;

use super::{BusMetrics, Delivery, EventBus, NamespacedBus, SubscribeOptions, Subscription};
use crate::{Event, Namespace, Pattern, SubscriptionFilter};

/// An event bus: publish events to a namespace, subscribe to one namespace (with a filter and
/// queue options) or, for trusted components, to a pattern across namespaces; hand tenant code a
/// [`NamespacedBus`] confined to its namespace.
///
/// Every bus keeps the promises of the local [`EventBus`]: exact subscribers of a namespace get
/// every event published in it that passes their filter; a publish never fails, and what
/// cannot be delivered is counted, never lost silently; one namespace's subscribers never see
/// another's events. A bus that reaches other processes adds its own guarantees (see its docs).
///
/// Like the store traits, the async methods return `impl Future + Send`, so there is no
/// `dyn Bus`: be generic (`B: Bus`), or wrap the candidates in an enum of your own.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Bus, BusMetrics, Event, EventBus, Namespace};
///
/// /// Application code that runs on any bus, local or across nodes.
/// async fn place_order<B: Bus>(bus: &B, tenant: Namespace) -> usize {
///     let orders = bus.namespace(tenant);
///     let mut confirmations = orders.subscribe();
///     bus.flush().await.expect("flush");
///     let order = ActorId::new("order-1").unwrap();
///     orders.publish(Event::new(order, "OrderPlaced", 1)).await;
///     let totals: BusMetrics = bus.metrics().into();
///     assert_eq!(totals.published, 1);
///     confirmations.queued()
/// }
///
/// # futures::executor::block_on(async {
/// let queued = place_order(&EventBus::new(), Namespace::new("prod.shop")?).await;
/// assert_eq!(queued, 1);
/// # Ok::<(), aether_core::InvalidName>(())
/// # }).unwrap();
/// ```
pub trait Bus: Clone + Send + Sync + 'static {
    /// What [`flush`](Self::flush) and a [`DurableBus`]'s operations fail with
    /// ([`Infallible`] for the local bus).
    type Error: std::error::Error + Send + Sync + 'static;
    /// The bus's totals; at least the figures of [`BusMetrics`], into which they convert.
    type Metrics: Into<BusMetrics> + Copy + fmt::Debug + Send + Sync + 'static;

    /// Publishes `event` in `namespace` to every matching subscriber, waiting (up to each
    /// one's timeout) only for subscribers that chose [`Overflow::Block`](super::Overflow)
    /// and whose queue is full. Never fails: what cannot be delivered is counted.
    fn publish(&self, namespace: &Namespace, event: Event)
    -> impl Future<Output = Delivery> + Send;

    /// Publishes `event` in `namespace` without ever waiting: a full queue loses the event
    /// (counted), whatever its overflow policy.
    fn try_publish(&self, namespace: &Namespace, event: Event) -> Delivery;

    /// Subscribes to `namespace` (exactly that namespace) with explicit options: filter, queue
    /// size, overflow policy.
    fn subscribe_with(&self, namespace: &Namespace, options: SubscribeOptions) -> Subscription;

    /// Subscribes to every event published in `namespace`.
    fn subscribe(&self, namespace: &Namespace) -> Subscription {
        self.subscribe_with(namespace, SubscribeOptions::new())
    }

    /// Subscribes to the events of `namespace` that pass `filter`.
    fn subscribe_with_filter(
        &self,
        namespace: &Namespace,
        filter: SubscriptionFilter,
    ) -> Subscription {
        self.subscribe_with(namespace, SubscribeOptions::new().filter(filter))
    }

    /// Subscribes to every namespace matching `pattern`. **Crosses namespace boundaries**: for
    /// trusted components only (audit, monitoring); tenant code gets a [`NamespacedBus`],
    /// which cannot make this call.
    fn subscribe_across_namespaces(
        &self,
        pattern: &Pattern,
        options: SubscribeOptions,
    ) -> Subscription;

    /// A handle confined to `namespace`: what tenant code should receive.
    fn namespace(&self, namespace: Namespace) -> NamespacedBus<Self> {
        NamespacedBus::new(self.clone(), namespace)
    }

    /// Waits until every subscription made and every event published on this bus so far has
    /// taken effect wherever the bus delivers: after it, events published anywhere reach
    /// this bus's subscriptions. Immediate for the local bus.
    ///
    /// # Errors
    ///
    /// When the bus could not confirm it (a transport's connection is gone, for example).
    fn flush(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The bus's totals.
    fn metrics(&self) -> Self::Metrics;
}

/// A [`Bus`] that can also store events, for named subscriptions that get what they missed
/// while away (at-least-once, in order). The methods here are the ones a
/// [`NamespacedBus`] needs to offer durable mode to tenant code; the bus itself may offer more
/// (subscriptions across namespaces, for instance).
pub trait DurableBus: Bus {
    /// Options of a durable subscription (filter, where a new one starts).
    type DurableOptions: Default + Send;
    /// A durable subscription.
    type DurableSubscription: Send;

    /// Stores `event` in `namespace`, then delivers it as [`publish`](Bus::publish) does.
    /// Publishing the same event (same id) again in the same namespace stores it once; the
    /// same id in another namespace is another event.
    ///
    /// # Errors
    ///
    /// When the event could not be encoded or stored; then no local subscriber has it.
    fn publish_durable(
        &self,
        namespace: &Namespace,
        event: Event,
    ) -> impl Future<Output = Result<Delivery, Self::Error>> + Send;

    /// Opens `namespace`'s own durable subscription `name` (to exactly that namespace),
    /// creating it if it does not exist. Names are scoped by namespace: two namespaces using
    /// one name get two subscriptions.
    ///
    /// # Errors
    ///
    /// For a bad name, or when the subscription cannot be opened.
    fn subscribe_namespace_durable(
        &self,
        namespace: &Namespace,
        name: &str,
        options: Self::DurableOptions,
    ) -> impl Future<Output = Result<Self::DurableSubscription, Self::Error>> + Send;

    /// Deletes `namespace`'s own durable subscription `name`; `Ok(false)` if there was none.
    ///
    /// # Errors
    ///
    /// For a bad name, or when the bus refused.
    fn delete_namespace_durable(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

impl Bus for EventBus {
    type Error = Infallible;
    type Metrics = BusMetrics;

    fn publish(
        &self,
        namespace: &Namespace,
        event: Event,
    ) -> impl Future<Output = Delivery> + Send {
        Self::publish(self, namespace, event)
    }

    fn try_publish(&self, namespace: &Namespace, event: Event) -> Delivery {
        Self::try_publish(self, namespace, event)
    }

    fn subscribe_with(&self, namespace: &Namespace, options: SubscribeOptions) -> Subscription {
        Self::subscribe_with(self, namespace, options)
    }

    fn subscribe_across_namespaces(
        &self,
        pattern: &Pattern,
        options: SubscribeOptions,
    ) -> Subscription {
        Self::subscribe_across_namespaces(self, pattern, options)
    }

    fn flush(&self) -> impl Future<Output = Result<(), Infallible>> + Send {
        std::future::ready(Ok(()))
    }

    fn metrics(&self) -> BusMetrics {
        Self::metrics(self)
    }
}
