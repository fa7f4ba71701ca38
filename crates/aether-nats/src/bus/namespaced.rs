//! [`NatsNamespacedBus`]: the tenant handle of a [`NatsEventBus`], which is the one
//! [`NamespacedBus`] of every bus, here with durable mode (the bus is a [`DurableBus`]).
//!
//! [`DurableBus`]: aether_core::DurableBus

use aether_core::NamespacedBus;

use super::NatsEventBus;

/// A [`NatsEventBus`] handle confined to one namespace, on every node: the generic
/// [`NamespacedBus`] (not another type), named for convenience. Its durable subscriptions are
/// scoped to the namespace: two tenants using the same durable name get two separate
/// subscriptions.
///
/// # Examples
///
/// ```no_run
/// use aether_core::{ActorId, Event, Namespace};
/// use aether_nats::{DurableOptions, NatsEventBus, NatsNamespacedBus};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = NatsEventBus::connect("nats://127.0.0.1:4222").await?;
/// let tenant_a: NatsNamespacedBus = bus.namespace(Namespace::new("prod.tenant-a")?);
/// let mut carts = tenant_a.subscribe();
/// let mut audit = tenant_a.subscribe_durable("audit", DurableOptions::new()).await?;
/// tenant_a.publish_durable(Event::new(ActorId::new("cart-1")?, "ItemAdded", 1)).await?;
/// assert!(carts.recv().await.is_some());
/// assert!(audit.recv().await?.is_some());
/// # Ok(()) }
/// ```
pub type NatsNamespacedBus = NamespacedBus<NatsEventBus>;
