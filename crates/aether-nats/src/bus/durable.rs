//! Durable mode: events published with
//! [`publish_durable`](super::NatsEventBus::publish_durable) are stored in the bus stream
//! (subjects `aether.durable.>`, each stored event republished on its live subject; see
//! `docs/adr/0005-nats-event-bus.md`), and a
//! [`DurableSubscription`] is a named durable pull consumer on it, filtered to a namespace or a
//! namespace pattern. At-least-once and in stream order (a subscription reopened after its
//! subscriber died gets that subscriber's unacknowledged events again first); an event is acknowledged once the
//! subscriber is done with it (it asks for the next one, or calls
//! [`ack`](DurableSubscription::ack)), so a subscriber that dies mid-event gets it again.
//! There are no drops: at most `max_ack_pending` events are out at once, and the server holds
//! the rest until the subscriber catches up.

mod name;
mod stream;

use aether_core::BackendError;
use std::sync::Arc;

use aether_core::{Event, Namespace, Pattern, SubscriptionFilter};
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;

use super::metrics::Counter;
use super::{BusError, wire};

pub use name::DurableName;
pub(crate) use stream::{BusStream, Stored};

/// Where a durable subscription that does not exist yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DurableStart {
    /// With events published after it was created. The default.
    #[default]
    NewEvents,
    /// With the oldest event the bus stream still holds for its pattern.
    Retained,
}

/// Options of a durable subscription: which events it wants and, when it is created, where it
/// starts. A subscription that already exists resumes where it left off.
///
/// # Examples
///
/// ```
/// use aether_core::SubscriptionFilter;
/// use aether_nats::{DurableOptions, DurableStart};
///
/// let options = DurableOptions::new()
///     .filter(SubscriptionFilter::new().event_types(["OrderPlaced"]))
///     .start(DurableStart::Retained);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableOptions {
    pub(crate) filter: SubscriptionFilter,
    pub(crate) start: DurableStart,
}

impl DurableOptions {
    /// Every event of the subscription's pattern, starting with new events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only events that pass `filter`; the others are acknowledged and skipped.
    pub fn filter(mut self, filter: SubscriptionFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Where the subscription starts if it does not exist yet.
    pub fn start(mut self, start: DurableStart) -> Self {
        self.start = start;
        self
    }
}

/// Counters of one durable subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DurableMetrics {
    /// Events handed to the subscriber.
    pub received: u64,
    /// Of those, events the server had delivered before (not acknowledged in time, or the
    /// subscriber went away before finishing them).
    pub redelivered: u64,
    /// Acknowledgements sent.
    pub acknowledged: u64,
    /// Events skipped by the subscription's filter (acknowledged, not handed over).
    pub filtered: u64,
    /// Stored messages that were not events of a valid namespace (terminated, not redelivered).
    pub undecodable: u64,
}

/// Where a durable subscription stands on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableBacklog {
    /// Events in the stream for this subscription that it has not been given yet.
    pub waiting: u64,
    /// Events given out and not acknowledged yet.
    pub unacknowledged: u64,
    /// Events waiting for redelivery.
    pub redelivering: u64,
}

/// A named durable subscription, opened with
/// [`NatsEventBus::subscribe_durable`](super::NatsEventBus::subscribe_durable): a JetStream
/// durable consumer on the bus stream. At-least-once and in stream order; each event is
/// acknowledged when the subscriber is done with it (asks for the next, or calls
/// [`ack`](Self::ack)), so an event being processed when the subscriber dies comes again; no
/// drops — at most `max_ack_pending` events are out, the server holds the rest.
///
/// One subscriber per name at a time: two subscriptions open under the same name share its
/// events between them (each event goes to one), like a work queue.
pub struct DurableSubscription {
    name: DurableName,
    pattern: Pattern,
    filter: SubscriptionFilter,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    messages: pull::Stream,
    /// The event last handed over, acknowledged when the subscriber asks for the next one.
    taken: Option<jetstream::Message>,
    /// Stream sequences up to this one were delivered before (to an earlier subscriber, or to
    /// this one): seen again, they are redeliveries even when the server's delivery count says
    /// otherwise (it restarts when a consumer is rewound, and can roll back when a server is
    /// killed before persisting it).
    redelivery_horizon: u64,
    /// The last subject's namespace: consecutive events mostly share one, and parsing a
    /// namespace costs more than comparing a subject.
    last_namespace: Option<(async_nats::Subject, Namespace)>,
    counters: Arc<DurableCounters>,
}

pub(crate) struct DurableCounters {
    received: Counter,
    redelivered: Counter,
    acknowledged: Counter,
    filtered: Counter,
    undecodable: Counter,
}

impl DurableCounters {
    fn new() -> Self {
        Self {
            received: Counter::new("aether_bus_durable_received_total"),
            redelivered: Counter::new("aether_bus_durable_redelivered_total"),
            acknowledged: Counter::new("aether_bus_durable_acknowledged_total"),
            filtered: Counter::new("aether_bus_durable_filtered_total"),
            undecodable: Counter::new("aether_bus_durable_undecodable_total"),
        }
    }
}

impl DurableSubscription {
    pub(crate) async fn open(
        stream: &BusStream,
        name: DurableName,
        consumer_name: &str,
        pattern: Pattern,
        options: DurableOptions,
    ) -> Result<Self, BusError> {
        let mut consumer = stream
            .consumer(consumer_name, &name, &pattern, options.start)
            .await?;
        let redelivery_horizon = stream.rewind_abandoned(&mut consumer, &name).await?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| BusError::backend(format!("cannot read durable {name}"), e))?;
        Ok(Self {
            name,
            pattern,
            filter: options.filter,
            consumer,
            messages,
            taken: None,
            redelivery_horizon,
            last_namespace: None,
            counters: Arc::new(DurableCounters::new()),
        })
    }

    /// Acknowledges the previous event (the subscriber is done with it), then waits for the
    /// next one. `Ok(None)` if the subscription was deleted on the server.
    ///
    /// # Errors
    ///
    /// [`BusError::Unavailable`] or [`BusError::Backend`] if the server could not be reached
    /// or failed a request (while NATS reconnects, for example). The subscription stays
    /// usable: call `recv` again; an event whose acknowledgement failed is delivered again.
    pub async fn recv(&mut self) -> Result<Option<Arc<Event>>, BusError> {
        Ok(self.recv_with_namespace().await?.map(|(_, event)| event))
    }

    /// As [`recv`](Self::recv), with the namespace the event was published in.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub async fn recv_with_namespace(
        &mut self,
    ) -> Result<Option<(Namespace, Arc<Event>)>, BusError> {
        // Cleared only once acknowledged, so a cancelled call acknowledges it next time.
        if let Some(done) = &self.taken {
            self.acknowledge(done, false).await?;
            self.taken = None;
        }
        loop {
            let message = match self.messages.next().await {
                None => return Ok(None),
                Some(Err(error)) => {
                    return Err(BusError::Unavailable {
                        url: self.name.to_string(),
                        message: format!("durable subscription {} could not pull", self.name),
                        source: Some(Box::new(error)),
                    });
                }
                Some(Ok(message)) => message,
            };
            let decoded = self
                .namespace_of(&message.subject)
                .zip(wire::decode(&message.payload));
            let Some((namespace, event)) = decoded else {
                self.counters.undecodable.incr();
                message
                    .ack_with(AckKind::Term)
                    .await
                    .map_err(|e| BusError::Backend {
                        message: "cannot terminate an undecodable message".to_owned(),
                        source: Some(e),
                    })?;
                continue;
            };
            if !self.filter.matches(&event) {
                self.counters.filtered.incr();
                self.acknowledge(&message, false).await?;
                continue;
            }
            if let Ok(info) = message.info() {
                if info.delivered > 1 || info.stream_sequence <= self.redelivery_horizon {
                    self.counters.redelivered.incr();
                }
                self.redelivery_horizon = self.redelivery_horizon.max(info.stream_sequence);
            }
            self.counters.received.incr();
            self.taken = Some(message);
            return Ok(Some((namespace, Arc::new(event))));
        }
    }

    fn namespace_of(&mut self, subject: &async_nats::Subject) -> Option<Namespace> {
        if let Some((last, namespace)) = &self.last_namespace
            && last == subject
        {
            return Some(namespace.clone());
        }
        let namespace = wire::durable_namespace_of(subject.as_str())?;
        self.last_namespace = Some((subject.clone(), namespace.clone()));
        Some(namespace)
    }

    /// Acknowledges the event last handed over now, and waits for the server to confirm it:
    /// after `Ok`, that event is never delivered to this subscription again. Nothing to do if
    /// it was already acknowledged.
    ///
    /// # Errors
    ///
    /// [`BusError::Backend`] if the server did not confirm; the event may be delivered again.
    pub async fn ack(&mut self) -> Result<(), BusError> {
        match self.taken.take() {
            Some(done) => self.acknowledge(&done, true).await,
            None => Ok(()),
        }
    }

    async fn acknowledge(
        &self,
        message: &jetstream::Message,
        confirmed: bool,
    ) -> Result<(), BusError> {
        let result = if confirmed {
            message.double_ack().await
        } else {
            message.ack().await
        };
        result.map_err(|e| BusError::Backend {
            message: format!("durable subscription {}: acknowledgement failed", self.name),
            source: Some(e),
        })?;
        self.counters.acknowledged.incr();
        Ok(())
    }

    /// What the server holds for this subscription: events not yet delivered, delivered but
    /// unacknowledged, and waiting for redelivery.
    ///
    /// # Errors
    ///
    /// [`BusError::Backend`] if the server did not answer.
    pub async fn backlog(&mut self) -> Result<DurableBacklog, BusError> {
        let info = self
            .consumer
            .info()
            .await
            .map_err(|e| BusError::backend(format!("cannot read durable {}", self.name), e))?;
        Ok(DurableBacklog {
            waiting: info.num_pending,
            unacknowledged: info.num_ack_pending as u64,
            redelivering: info.num_redelivered as u64,
        })
    }

    /// Leaves the subscription cleanly: stops pulling and makes sure the server has forgotten
    /// this subscriber's outstanding pull request before returning, so no event published
    /// afterwards is handed to a subscriber that is gone (merely dropping the subscription
    /// leaves that request on the server until it expires or is next checked, and an event
    /// given to it comes back only after `ack_wait`). The event last handed over is **not**
    /// acknowledged — call [`ack`](Self::ack) first if it was processed — and is delivered
    /// again to whoever opens the name next.
    ///
    /// # Errors
    ///
    /// [`BusError::Backend`] if the server did not answer; the subscription is closed anyway.
    pub async fn close(self) -> Result<(), BusError> {
        let Self {
            name,
            mut consumer,
            messages,
            ..
        } = self;
        // Dropping the stream unsubscribes its inbox; a consumer-info request on the same
        // connection comes after that, and the server drops pull requests nobody listens to
        // when it answers one.
        drop(messages);
        consumer.info().await.map_err(|e| {
            BusError::backend(format!("cannot close durable subscription {name}"), e)
        })?;
        Ok(())
    }

    /// The subscription's name.
    pub fn name(&self) -> &DurableName {
        &self.name
    }

    /// The namespace pattern it follows.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Its counters.
    pub fn metrics(&self) -> DurableMetrics {
        let c = &self.counters;
        DurableMetrics {
            received: c.received.get(),
            redelivered: c.redelivered.get(),
            acknowledged: c.acknowledged.get(),
            filtered: c.filtered.get(),
            undecodable: c.undecodable.get(),
        }
    }
}

impl std::fmt::Debug for DurableSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSubscription")
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("filter", &self.filter)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}
