//! NATS interest follows local interest, per pattern: the bus's
//! [`InterestListener`] sends each gain or loss to one task, which opens a NATS subscription on
//! `aether.events.<pattern>` for the first local subscriber of a pattern and closes it after
//! the last. Each NATS subscription has a reader task that hands what arrives to the local
//! subscribers of **its** pattern only (NATS delivers a message once per matching subscription,
//! so overlapping patterns each get their copy, and no subscriber gets two).
//!
//! The reader does not decode: events travel to the local queues in their wire form
//! ([`WireEvent`]) and are decoded by the first subscriber that takes them, on its own task.
//! That keeps the reader light enough to keep up with the network (decoding is the most
//! expensive step of receiving), spreads decoding over the subscribers' tasks, and frees each
//! event on the thread that made it.

use std::collections::HashMap;
use std::sync::Arc;

use aether_core::{EncodedEvent, Event, EventBus, InterestListener, Namespace, Pattern};
use async_nats::Client;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::gaps::GapCounter;
use super::metrics::NetworkCounters;
use super::wire;

pub(crate) enum Command {
    Interest {
        pattern: Pattern,
        interested: bool,
    },
    /// Answered once every change sent before it is known to the server.
    Flush(oneshot::Sender<()>),
}

/// The bus's listener: forwards changes to the interest task, in order.
pub(crate) struct Relay(pub(crate) mpsc::UnboundedSender<Command>);

impl InterestListener for Relay {
    fn interest_changed(&self, pattern: &Pattern, interested: bool) {
        // Fails only once the bus is shutting down, when interest no longer matters.
        let _ = self.0.send(Command::Interest {
            pattern: pattern.clone(),
            interested,
        });
    }
}

/// What the readers need to share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) bus: EventBus,
    pub(crate) origin: Arc<str>,
    pub(crate) counters: Arc<NetworkCounters>,
}

/// One pattern's NATS subscription and its reader.
struct Reader {
    stop: oneshot::Sender<()>,
    task: AbortOnDrop,
}

/// A task that is aborted when its handle goes away (so a stopped bus leaves no readers).
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) async fn run(shared: Shared, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut readers: HashMap<Pattern, Reader> = HashMap::new();
    while let Some(command) = commands.recv().await {
        match command {
            Command::Interest {
                pattern,
                interested: true,
            } => {
                if readers.contains_key(&pattern) {
                    continue;
                }
                let subject = wire::subject_filter(&pattern);
                match shared.client.subscribe(subject).await {
                    Ok(subscriber) => {
                        let (stop, stopped) = oneshot::channel();
                        let task = tokio::spawn(read(
                            shared.clone(),
                            pattern.clone(),
                            subscriber,
                            stopped,
                        ));
                        readers.insert(
                            pattern,
                            Reader {
                                stop,
                                task: AbortOnDrop(task),
                            },
                        );
                    }
                    // Only a closed client refuses to subscribe; the bus is going away.
                    Err(error) => tracing::warn!(%error, %pattern, "event bus: cannot subscribe"),
                }
            }
            Command::Interest {
                pattern,
                interested: false,
            } => {
                if let Some(reader) = readers.remove(&pattern) {
                    let _ = reader.stop.send(());
                    // Wait for the reader's unsubscribe to be queued, so a later flush covers it.
                    let mut task = reader.task;
                    let _ = (&mut task.0).await;
                }
            }
            Command::Flush(done) => {
                if let Err(error) = shared.client.flush().await {
                    tracing::debug!(%error, "event bus: flush failed");
                }
                let _ = done.send(());
            }
        }
    }
}

/// Reads one pattern's NATS subscription until told to stop. Takes whatever the client has
/// buffered at once (one wake-up per batch, not per message) and remembers the last subject's
/// namespace, since consecutive messages mostly share one.
async fn read(
    shared: Shared,
    pattern: Pattern,
    mut subscriber: async_nats::Subscriber,
    mut stop: oneshot::Receiver<()>,
) {
    let mut gaps = GapCounter::default();
    let mut last_namespace: Option<(async_nats::Subject, Namespace)> = None;
    let mut batches = (&mut subscriber).ready_chunks(256);
    loop {
        let batch = tokio::select! {
            biased;
            _ = &mut stop => break,
            batch = batches.next() => match batch {
                Some(batch) => batch,
                None => break,
            },
        };
        for message in batch {
            let provenance = wire::provenance(message.headers.as_ref());
            if provenance.origin == Some(&*shared.origin) {
                continue; // our own event: local subscribers already have it
            }
            let namespace = match &last_namespace {
                Some((subject, namespace)) if *subject == message.subject => {
                    Some(namespace.clone())
                }
                _ => wire::namespace_of(message.subject.as_str()).inspect(|namespace| {
                    last_namespace = Some((message.subject.clone(), namespace.clone()));
                }),
            };
            let Some(namespace) = namespace else {
                shared.counters.undecodable.incr();
                continue;
            };
            if let (Some(origin), Some(sequence)) = (provenance.origin, provenance.sequence) {
                shared.counters.lost.add_saturating(gaps.observe(
                    origin,
                    namespace.as_str(),
                    sequence,
                ));
            }
            shared.counters.received.incr();
            // Only a traced event gets a span: the hot path stays without one.
            let span = match wire::received_trace(message.headers.as_ref()) {
                Some(parent) => receive_span(&namespace, &parent),
                None => tracing::Span::none(),
            };
            let event = WireEvent(message.payload);
            shared
                .bus
                .deliver_encoded_to_pattern(&pattern, &namespace, event)
                .instrument(span)
                .await;
        }
    }
    drop(batches);
    if let Err(error) = subscriber.unsubscribe().await {
        tracing::debug!(%error, %pattern, "event bus: unsubscribe failed");
    }
}

/// The span of handing a received traced event to local subscribers (`aether.bus.receive`,
/// level debug): a child of the publisher's context.
fn receive_span(namespace: &Namespace, parent: &aether_core::TraceContext) -> tracing::Span {
    let own = parent.child();
    tracing::debug_span!(
        "aether.bus.receive",
        namespace = %namespace,
        trace_id = %own.trace_id_hex(),
        span_id = %own.span_id_hex(),
        parent_span_id = %parent.span_id_hex(),
    )
}

/// A received event's payload, decoded by the first local subscriber that takes it (a failure
/// is counted by the local bus, in its `undecodable`). Only the payload: a pointer to shared
/// counters here would be one more reference count touched by two threads per event.
struct WireEvent(bytes::Bytes);

impl EncodedEvent for WireEvent {
    fn decode(&self) -> Option<Event> {
        wire::decode(&self.0)
    }
}
