//! [`Subscription`]: the receiving end of the bus, a stream of events with its own bounded queue.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use super::Inner;
use super::encoded::{Decoded, Payload};
use super::metrics::{SubscriptionCounters, SubscriptionMetrics};
use super::options::Overflow;
use crate::{Event, Namespace, Pattern, SubscriptionFilter};

/// What travels through a subscriber's queue: the event (perhaps still encoded), and the
/// namespace it was published in for wildcard subscriptions (an exact subscription knows its
/// namespace, so none is sent and no reference count is touched per delivery).
pub(super) type Delivered = (Option<Namespace>, Payload);

/// What the bus and the [`Subscription`] share about one subscription.
pub(super) struct SubscriberState {
    pub(super) key: u64,
    pub(super) pattern: Pattern,
    /// The namespace of an exact subscription; `None` for a wildcard one.
    pub(super) exact: Option<Namespace>,
    pub(super) filter: SubscriptionFilter,
    pub(super) overflow: Overflow,
    pub(super) capacity: usize,
    pub(super) counters: SubscriptionCounters,
}

/// The bus's side of a subscription: the sending end of its queue, with copies of the fields
/// routing reads on every publish (one pointer away rather than two). Only the bus holds it, so
/// the queue closes (and the stream ends) when the bus goes away.
pub(super) struct Subscriber {
    /// True if deliveries must carry their namespace (wildcard subscriptions).
    pub(super) wants_namespace: bool,
    pub(super) filter: SubscriptionFilter,
    pub(super) overflow: Overflow,
    pub(super) capacity: usize,
    pub(super) sender: mpsc::Sender<Delivered>,
    pub(super) state: Arc<SubscriberState>,
}

impl std::ops::Deref for Subscriber {
    type Target = SubscriberState;
    fn deref(&self) -> &SubscriberState {
        &self.state
    }
}

pub(super) enum Offer {
    Delivered,
    Full(Delivered),
    /// The subscription is being dropped; not a loss.
    Closed,
}

impl Subscriber {
    pub(super) fn offer(&self, item: Delivered) -> Offer {
        match self.sender.try_send(item) {
            Ok(()) => {
                self.delivered();
                Offer::Delivered
            }
            Err(mpsc::error::TrySendError::Full(item)) => Offer::Full(item),
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    pub(super) fn delivered(&self) {
        let queued = self.capacity.saturating_sub(self.sender.capacity());
        self.counters.delivered(queued as u64);
    }
}

/// A live subscription: a [`Stream`] of the events it matches, in publish order per publisher.
///
/// Each subscription has its own bounded queue, so a slow consumer only ever loses its own
/// events (counted in [`metrics`](Self::metrics)), never slows the publisher or other
/// subscribers. Dropping the subscription (or calling [`unsubscribe`](Self::unsubscribe))
/// removes it from the bus.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventBus, Namespace};
/// use futures::StreamExt;
///
/// # futures::executor::block_on(async {
/// let bus = EventBus::new();
/// let orders = Namespace::new("orders")?;
/// let mut subscription = bus.subscribe(&orders);
/// bus.try_publish(&orders, Event::new(ActorId::new("order-1")?, "OrderPlaced", 1));
/// let event = subscription.next().await.expect("one event");
/// assert_eq!(event.event_type, "OrderPlaced");
/// assert_eq!(subscription.metrics().delivered, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Subscription {
    receiver: mpsc::Receiver<Delivered>,
    subscriber: Arc<SubscriberState>,
    bus: Weak<Inner>,
}

impl Subscription {
    pub(super) fn new(
        receiver: mpsc::Receiver<Delivered>,
        subscriber: Arc<SubscriberState>,
        bus: Weak<Inner>,
    ) -> Self {
        Self {
            receiver,
            subscriber,
            bus,
        }
    }

    /// The next event, waiting if none is queued; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        std::future::poll_fn(|cx| self.poll_take(cx))
            .await
            .map(|(_, event)| event)
    }

    /// The next event and the namespace it was published in. Useful on cross-namespace
    /// subscriptions, where the namespace is not implied.
    pub async fn recv_with_namespace(&mut self) -> Option<(Namespace, Arc<Event>)> {
        let (namespace, event) = std::future::poll_fn(|cx| self.poll_take(cx)).await?;
        Some((self.namespace_of(namespace), event))
    }

    fn namespace_of(&self, sent: Option<Namespace>) -> Namespace {
        sent.or_else(|| self.subscriber.exact.clone())
            .expect("wildcard deliveries carry their namespace; exact subscriptions know theirs")
    }

    /// The next queued event, without waiting; `None` if the queue is empty.
    pub fn try_recv(&mut self) -> Option<Arc<Event>> {
        while let Ok(delivered) = self.receiver.try_recv() {
            if let Some((_, event)) = self.open(delivered) {
                return Some(event);
            }
        }
        None
    }

    /// Polls for the next event, decoding it if it arrived encoded and skipping (and counting)
    /// any that do not decode.
    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<(Option<Namespace>, Arc<Event>)>> {
        loop {
            let Some(delivered) = std::task::ready!(self.receiver.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            if let Some(taken) = self.open(delivered) {
                return Poll::Ready(Some(taken));
            }
        }
    }

    fn open(&self, (namespace, payload): Delivered) -> Option<(Option<Namespace>, Arc<Event>)> {
        match payload.decoded() {
            Decoded::Event(event) => Some((namespace, event.clone())),
            Decoded::Undecodable { first } => {
                self.subscriber.counters.undecodable();
                if first && let Some(bus) = self.bus.upgrade() {
                    bus.counters.add_undecodable();
                }
                None
            }
        }
    }

    /// Number of events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.receiver.len()
    }

    /// This subscription's delivery counters.
    pub fn metrics(&self) -> SubscriptionMetrics {
        self.subscriber.counters.read()
    }

    /// The namespace pattern this subscription matches (exact for namespace subscriptions).
    pub fn pattern(&self) -> &Pattern {
        &self.subscriber.pattern
    }

    /// Removes the subscription from the bus (the same as dropping it).
    pub fn unsubscribe(self) {}

    /// Turns the subscription into a stream of `(namespace, event)` pairs.
    pub fn with_namespaces(self) -> WithNamespaces {
        WithNamespaces(self)
    }
}

impl Stream for Subscription {
    type Item = Arc<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_take(cx).map(|item| item.map(|(_, event)| event))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.remove(&self.subscriber.pattern, self.subscriber.key);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.subscriber.pattern)
            .field("filter", &self.subscriber.filter)
            .field("overflow", &self.subscriber.overflow)
            .field("capacity", &self.subscriber.capacity)
            .field("queued", &self.queued())
            .finish()
    }
}

/// A [`Subscription`] as a stream of `(namespace, event)` pairs; see
/// [`Subscription::with_namespaces`].
#[derive(Debug)]
pub struct WithNamespaces(Subscription);

impl WithNamespaces {
    /// The underlying subscription (for its metrics).
    pub fn subscription(&self) -> &Subscription {
        &self.0
    }
}

impl Stream for WithNamespaces {
    type Item = (Namespace, Arc<Event>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.0.poll_take(cx);
        polled.map(|item| item.map(|(namespace, event)| (self.0.namespace_of(namespace), event)))
    }
}
