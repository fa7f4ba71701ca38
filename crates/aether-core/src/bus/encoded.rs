//! [`EncodedEvent`]: an event that reaches the bus still in its wire form (from another node)
//! and is decoded only when a subscriber takes it — on the subscriber's own task, once, however
//! many subscribers share it.
//!
//! Why: a transport's reader that decoded every event itself would do the most expensive step
//! of receiving (parsing) on one task for all subscribers, and hand a freshly allocated event
//! across threads. Deferring it lets subscribers decode in parallel, keeps the reader fast enough
//! not to fall behind the network, and never decodes events no one takes.

use std::sync::{Arc, OnceLock};

use crate::Event;

/// An event in a transport's wire form, delivered with
/// [`EventBus::deliver_encoded_to_pattern`](super::EventBus::deliver_encoded_to_pattern).
///
/// The bus calls [`decode`](Self::decode) at most once per delivery: when the first subscriber
/// takes the event, or during routing if a subscriber's filter must look at it. Subscribers
/// skip an event that does not decode, counted in their `undecodable` metric and, once per
/// event, in the bus's.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, EncodedEvent, Event, EventBus, Namespace, Pattern};
///
/// struct Json(Vec<u8>);
/// impl EncodedEvent for Json {
///     fn decode(&self) -> Option<Event> {
///         serde_json::from_slice(&self.0).ok()
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let bus = EventBus::new();
/// let orders = Namespace::new("orders")?;
/// let mut subscription = bus.subscribe(&orders);
/// let event = Event::new(ActorId::new("order-1")?, "OrderPlaced", 1);
/// let wire = Json(serde_json::to_vec(&event)?);
/// bus.deliver_encoded_to_pattern(&Pattern::exact(&orders), &orders, wire).await;
/// bus.deliver_encoded_to_pattern(&Pattern::exact(&orders), &orders, Json(b"garbage".to_vec())).await;
///
/// assert_eq!(*subscription.recv().await.expect("decoded on receipt"), event);
/// assert!(subscription.try_recv().is_none(), "the garbage is skipped");
/// assert_eq!(subscription.metrics().undecodable, 1);
/// assert_eq!(bus.metrics().undecodable, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait EncodedEvent: Send + Sync + 'static {
    /// The event, or `None` if these bytes are not one.
    fn decode(&self) -> Option<Event>;
}

/// What a subscriber's queue carries: an event, or one still to be decoded.
#[derive(Clone)]
pub(super) enum Payload {
    Event(Arc<Event>),
    Encoded(Arc<dyn Pending>),
}

impl Payload {
    pub(super) fn encoded(encoded: impl EncodedEvent) -> Self {
        Self::Encoded(Arc::new(Lazy {
            encoded,
            event: OnceLock::new(),
        }))
    }

    /// The event, decoding it if this is the first look.
    pub(super) fn decoded(&self) -> Decoded<'_> {
        match self {
            Self::Event(event) => Decoded::Event(event),
            Self::Encoded(pending) => pending.decoded(),
        }
    }

    /// The event, decoding it if this is the first look; `None` if it does not decode.
    #[cfg(test)]
    fn event(&self) -> Option<&Arc<Event>> {
        match self.decoded() {
            Decoded::Event(event) => Some(event),
            Decoded::Undecodable { .. } => None,
        }
    }
}

/// What a look at a [`Payload`] found.
pub(super) enum Decoded<'a> {
    Event(&'a Arc<Event>),
    /// Not an event; `first` if this look decoded it (so it is counted once per event).
    Undecodable {
        first: bool,
    },
}

/// An encoded event and, once someone looked, its decoded form (shared by every subscriber it
/// was delivered to).
pub(super) trait Pending: Send + Sync {
    fn decoded(&self) -> Decoded<'_>;
}

struct Lazy<E> {
    encoded: E,
    event: OnceLock<Option<Arc<Event>>>,
}

impl<E: EncodedEvent> Pending for Lazy<E> {
    fn decoded(&self) -> Decoded<'_> {
        let mut first = false;
        let event = self.event.get_or_init(|| {
            first = true;
            self.encoded.decode().map(Arc::new)
        });
        match event {
            Some(event) => Decoded::Event(event),
            None => Decoded::Undecodable { first },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use super::*;
    use crate::ActorId;

    struct Counted(Arc<AtomicUsize>, Option<Event>);
    impl EncodedEvent for Counted {
        fn decode(&self) -> Option<Event> {
            self.0.fetch_add(1, Relaxed);
            self.1.clone()
        }
    }

    #[test]
    fn an_encoded_event_is_decoded_once_however_often_it_is_looked_at() {
        let calls = Arc::new(AtomicUsize::new(0));
        let event = Event::new(ActorId::new("a").unwrap(), "T", 1);
        let payload = Payload::encoded(Counted(calls.clone(), Some(event.clone())));
        let copy = payload.clone();
        assert_eq!(calls.load(Relaxed), 0, "nothing decoded before a look");
        assert_eq!(**payload.event().unwrap(), event);
        assert_eq!(**copy.event().unwrap(), event);
        assert!(Arc::ptr_eq(payload.event().unwrap(), copy.event().unwrap()));
        assert_eq!(calls.load(Relaxed), 1);

        let garbage = Payload::encoded(Counted(calls.clone(), None));
        let copy = garbage.clone();
        assert!(garbage.event().is_none());
        assert!(copy.event().is_none());
        assert_eq!(calls.load(Relaxed), 2, "a failure is remembered too");
    }
}
