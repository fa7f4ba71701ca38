//! [`NamespacedBus`]: a bus handle confined to one namespace, for tenant code.

use super::{Delivery, EventBus, SubscribeOptions, Subscription};
use crate::{Event, Namespace, SubscriptionFilter};

/// A handle on an [`EventBus`] that can only publish to, and subscribe (exactly) to, one
/// namespace. This is what application code for a tenant should receive: it has no way to
/// reach another namespace, and no way to get the unrestricted bus back.
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
pub struct NamespacedBus {
    bus: EventBus,
    namespace: Namespace,
}

impl NamespacedBus {
    pub(super) fn new(bus: EventBus, namespace: Namespace) -> Self {
        Self { bus, namespace }
    }

    /// The namespace this handle is confined to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Publishes `event` in this namespace; see [`EventBus::publish`].
    pub async fn publish(&self, event: Event) -> Delivery {
        self.bus.publish(&self.namespace, event).await
    }

    /// Publishes `event` in this namespace without ever waiting; see [`EventBus::try_publish`].
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
}

impl std::fmt::Debug for NamespacedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespacedBus")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}
