//! [`NatsEventBus`] as a [`Bus`] and a [`DurableBus`]: the same operations as its inherent
//! methods, so code generic over the bus runs on one node or many.

use std::future::Future;

use aether_core::{
    Bus, BusMetrics, Delivery, DurableBus, Event, Namespace, Pattern, SubscribeOptions,
    Subscription,
};

use super::{BusError, DurableOptions, DurableSubscription, NatsBusMetrics, NatsEventBus};

impl Bus for NatsEventBus {
    type Error = BusError;
    type Metrics = NatsBusMetrics;

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

    fn flush(&self) -> impl Future<Output = Result<(), BusError>> + Send {
        Self::flush(self)
    }

    fn metrics(&self) -> NatsBusMetrics {
        Self::metrics(self)
    }
}

impl DurableBus for NatsEventBus {
    type DurableOptions = DurableOptions;
    type DurableSubscription = DurableSubscription;

    fn publish_durable(
        &self,
        namespace: &Namespace,
        event: Event,
    ) -> impl Future<Output = Result<Delivery, BusError>> + Send {
        Self::publish_durable(self, namespace, event)
    }

    fn subscribe_namespace_durable(
        &self,
        namespace: &Namespace,
        name: &str,
        options: DurableOptions,
    ) -> impl Future<Output = Result<DurableSubscription, BusError>> + Send {
        self.open_durable(Some(namespace), name, Pattern::exact(namespace), options)
    }

    fn delete_namespace_durable(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> impl Future<Output = Result<bool, BusError>> + Send {
        self.delete_durable_in(Some(namespace), name)
    }
}

/// The figures every bus has: the local totals, with `undecodable` covering bad subjects and
/// bad payloads alike.
impl From<NatsBusMetrics> for BusMetrics {
    fn from(m: NatsBusMetrics) -> Self {
        let mut totals = Self::default();
        totals.published = m.published;
        totals.delivered = m.delivered;
        totals.dropped = m.dropped;
        totals.undecodable = m.undecodable;
        totals
    }
}
