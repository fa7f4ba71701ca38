//! The live path of publication: once an append succeeded, the actor hands the stored events
//! to the runtime's bus (any [`Bus`]), in version order, before it replies and before its next
//! message. Best effort, at most once: a publish that times out is counted, never retried and
//! never fails the command; a crash between the append and the publish loses the publication
//! (not the events: subscribers that need every event read the store's
//! [`EventFeed`](aether_core::EventFeed) from a checkpoint).

use std::time::Duration;

use aether_core::{Bus, Delivery, Event, Namespace};
use futures::future::BoxFuture;

use crate::metrics::Counters;

/// A [`Bus`] behind a pointer: the runtime's types do not carry the bus's type.
pub(crate) trait Publish: Send + Sync + 'static {
    fn publish<'a>(&'a self, namespace: &'a Namespace, event: Event) -> BoxFuture<'a, Delivery>;
}

impl<B: Bus> Publish for B {
    fn publish<'a>(&'a self, namespace: &'a Namespace, event: Event) -> BoxFuture<'a, Delivery> {
        Box::pin(Bus::publish(self, namespace, event))
    }
}

/// Publishes `events` (stored, in version order) in `namespace`, one after the other, within
/// `timeout` for all of them; counts what was published, dropped by full subscriber queues,
/// and not published in time.
pub(crate) async fn publish_stored(
    bus: &dyn Publish,
    namespace: &Namespace,
    events: Vec<Event>,
    timeout: Duration,
    counters: &Counters,
) {
    let total = events.len() as u64;
    let mut done = 0;
    let publishing = async {
        for event in events {
            let delivery = bus.publish(namespace, event).await;
            counters.published.inc();
            counters.publish_drops.add(delivery.dropped as u64);
            done += 1;
        }
    };
    if tokio::time::timeout(timeout, publishing).await.is_err() {
        let missed = total - done;
        counters.publish_failures.add(missed);
        tracing::warn!(
            %namespace,
            missed,
            ?timeout,
            "stored events not published in time (the live bus is best effort; the store's feed has them)"
        );
    }
}
