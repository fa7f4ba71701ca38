//! [`NatsNamespacedBus`]: a [`NatsEventBus`] handle confined to one namespace, for tenant
//! code — the NATS counterpart of [`NamespacedBus`](aether_core::NamespacedBus).

use aether_core::SubscriptionFilter;
use aether_core::{Delivery, Event, Namespace, Pattern, SubscribeOptions, Subscription};

use super::{BusError, DurableOptions, DurableSubscription, NatsEventBus};

/// A handle on a [`NatsEventBus`] that can only publish to, and subscribe (exactly) to, one
/// namespace, on every node. Its durable subscriptions are scoped to the namespace too: two
/// tenants using the same durable name get two separate subscriptions.
///
/// # Examples
///
/// ```no_run
/// use aether_core::{ActorId, Event, Namespace};
/// use aether_nats::NatsEventBus;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = NatsEventBus::connect("nats://127.0.0.1:4222").await?;
/// let tenant_a = bus.namespace(Namespace::new("prod.tenant-a")?);
/// let mut carts = tenant_a.subscribe();
/// tenant_a.publish(Event::new(ActorId::new("cart-1")?, "ItemAdded", 1)).await;
/// assert!(carts.recv().await.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsNamespacedBus {
    bus: NatsEventBus,
    namespace: Namespace,
}

impl NatsNamespacedBus {
    pub(super) fn new(bus: NatsEventBus, namespace: Namespace) -> Self {
        Self { bus, namespace }
    }

    /// The namespace this handle is confined to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Publishes `event` in this namespace; see [`NatsEventBus::publish`].
    pub async fn publish(&self, event: Event) -> Delivery {
        self.bus.publish(&self.namespace, event).await
    }

    /// Publishes `event` in this namespace without ever waiting; see
    /// [`NatsEventBus::try_publish`].
    pub fn try_publish(&self, event: Event) -> Delivery {
        self.bus.try_publish(&self.namespace, event)
    }

    /// Stores and publishes `event` in this namespace; see [`NatsEventBus::publish_durable`].
    ///
    /// # Errors
    ///
    /// As [`NatsEventBus::publish_durable`].
    pub async fn publish_durable(&self, event: Event) -> Result<Delivery, BusError> {
        self.bus.publish_durable(&self.namespace, event).await
    }

    /// Subscribes to every event of this namespace.
    pub fn subscribe(&self) -> Subscription {
        self.bus.subscribe(&self.namespace)
    }

    /// Subscribes to this namespace's events that pass `filter`.
    pub fn subscribe_with_filter(&self, filter: SubscriptionFilter) -> Subscription {
        self.bus.subscribe_with_filter(&self.namespace, filter)
    }

    /// Subscribes to this namespace with explicit options.
    pub fn subscribe_with(&self, options: SubscribeOptions) -> Subscription {
        self.bus.subscribe_with(&self.namespace, options)
    }

    /// Opens this namespace's durable subscription `name`; see
    /// [`NatsEventBus::subscribe_durable`].
    ///
    /// # Errors
    ///
    /// As [`NatsEventBus::subscribe_durable`].
    pub async fn subscribe_durable(
        &self,
        name: &str,
        options: DurableOptions,
    ) -> Result<DurableSubscription, BusError> {
        let pattern = Pattern::exact(&self.namespace);
        self.bus
            .open_durable(Some(&self.namespace), name, pattern, options)
            .await
    }

    /// Deletes this namespace's durable subscription `name`; `Ok(false)` if there was none.
    ///
    /// # Errors
    ///
    /// As [`NatsEventBus::delete_durable`].
    pub async fn delete_durable(&self, name: &str) -> Result<bool, BusError> {
        self.bus
            .delete_durable_in(Some(&self.namespace), name)
            .await
    }

    /// Waits until this bus's subscriptions and events are known to NATS; see
    /// [`NatsEventBus::flush`].
    ///
    /// # Errors
    ///
    /// As [`NatsEventBus::flush`].
    pub async fn flush(&self) -> Result<(), BusError> {
        self.bus.flush().await
    }
}

impl std::fmt::Debug for NatsNamespacedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsNamespacedBus")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}
