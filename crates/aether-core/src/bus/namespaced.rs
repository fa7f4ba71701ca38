//! [`NamespacedBus`]: a handle on any [`Bus`] confined to one namespace, for tenant code.

use super::{Bus, Delivery, DurableBus, EventBus, SubscribeOptions, Subscription};
use crate::{Event, Namespace, SubscriptionFilter};

/// A handle on a bus that can only publish to, and subscribe (exactly) to, one namespace. This
/// is what application code for a tenant should receive: it has no way to reach another
/// namespace, and no way to get the unrestricted bus back.
///
/// One type for every bus: `NamespacedBus` (that is, `NamespacedBus<EventBus>`) on the local
/// bus, `NamespacedBus<NatsEventBus>` on the NATS bus, made by [`Bus::namespace`]. On a
/// [`DurableBus`] it also offers durable mode, with durable subscription names scoped to the
/// namespace: two tenants using the same name get two separate subscriptions.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventBus, Namespace};
///
/// let bus = EventBus::new();
/// let tenant_a = bus.namespace(Namespace::new("prod.tenant-a")?);
/// let tenant_b = bus.namespace(Namespace::new("prod.tenant-b")?);
///
/// let mut a_events = tenant_a.subscribe();
/// tenant_b.try_publish(Event::new(ActorId::new("cart-1")?, "ItemAdded", 1));
/// assert!(a_events.try_recv().is_none(), "tenant A never sees tenant B's events");
/// # Ok::<(), aether_core::InvalidName>(())
/// ```
#[derive(Clone)]
pub struct NamespacedBus<B = EventBus> {
    bus: B,
    namespace: Namespace,
}

impl<B: Bus> NamespacedBus<B> {
    pub(super) fn new(bus: B, namespace: Namespace) -> Self {
        Self { bus, namespace }
    }

    /// The namespace this handle is confined to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Publishes `event` in this namespace; see [`Bus::publish`].
    pub async fn publish(&self, event: Event) -> Delivery {
        self.bus.publish(&self.namespace, event).await
    }

    /// Publishes `event` in this namespace without ever waiting; see [`Bus::try_publish`].
    pub fn try_publish(&self, event: Event) -> Delivery {
        self.bus.try_publish(&self.namespace, event)
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

    /// Waits until this bus's subscriptions and events have taken effect; see [`Bus::flush`].
    ///
    /// # Errors
    ///
    /// As [`Bus::flush`].
    pub async fn flush(&self) -> Result<(), B::Error> {
        self.bus.flush().await
    }
}

impl<B: DurableBus> NamespacedBus<B> {
    /// Stores and publishes `event` in this namespace; see [`DurableBus::publish_durable`].
    ///
    /// # Errors
    ///
    /// As [`DurableBus::publish_durable`].
    pub async fn publish_durable(&self, event: Event) -> Result<Delivery, B::Error> {
        self.bus.publish_durable(&self.namespace, event).await
    }

    /// Opens this namespace's durable subscription `name`, creating it if it does not exist;
    /// see [`DurableBus::subscribe_namespace_durable`].
    ///
    /// # Errors
    ///
    /// As [`DurableBus::subscribe_namespace_durable`].
    pub async fn subscribe_durable(
        &self,
        name: &str,
        options: B::DurableOptions,
    ) -> Result<B::DurableSubscription, B::Error> {
        self.bus
            .subscribe_namespace_durable(&self.namespace, name, options)
            .await
    }

    /// Deletes this namespace's durable subscription `name`; `Ok(false)` if there was none.
    ///
    /// # Errors
    ///
    /// As [`DurableBus::delete_namespace_durable`].
    pub async fn delete_durable(&self, name: &str) -> Result<bool, B::Error> {
        self.bus
            .delete_namespace_durable(&self.namespace, name)
            .await
    }
}

impl<B> std::fmt::Debug for NamespacedBus<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespacedBus")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}
