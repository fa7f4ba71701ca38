//! The outgoing path: events for other nodes are numbered per namespace (`Aether-Seq`, so
//! receivers can count gaps) and handed to the client under one lock, so that the numbers follow
//! the order in which the client sends (the order NATS delivers).
//!
//! [`publish`](super::NatsEventBus::publish) does this on the caller's task: no hop through
//! another task, which on a busy node costs more than the send itself.
//! [`try_publish`](super::NatsEventBus::try_publish) does the same when the lock is free and
//! the client has room; as it cannot wait for either, it otherwise queues the event for a task
//! that sends it. While anything is queued, both queue, so that one caller's events leave in
//! the order it published them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aether_core::Namespace;
use async_nats::{Client, HeaderValue, Subject};
use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::metrics::NetworkCounters;
use super::wire;

/// What the outgoing task takes from its queue.
pub(crate) enum Queued {
    Event {
        namespace: Namespace,
        payload: Bytes,
        trace: Option<HeaderValue>,
    },
    /// Answered once everything queued before it was handed to the client and flushed.
    Flush(oneshot::Sender<()>),
}

/// Per namespace: its subject (built once) and the last number sent.
struct Numbering {
    subject: Subject,
    last: u64,
}

/// What the bus's publishers and the outgoing task share.
pub(crate) struct Sender {
    client: Client,
    origin: HeaderValue,
    numbering: Mutex<HashMap<Namespace, Numbering>>,
    /// Events in the queue not yet handed to the client.
    queued: AtomicUsize,
    counters: Arc<NetworkCounters>,
}

impl Sender {
    pub(crate) fn new(client: Client, origin: HeaderValue, counters: Arc<NetworkCounters>) -> Self {
        Self {
            client,
            origin,
            numbering: Mutex::new(HashMap::new()),
            queued: AtomicUsize::new(0),
            counters,
        }
    }

    /// Sends `payload` on `namespace`'s subject from the caller's task, or through `queue`
    /// if queued events must leave first (waiting for room there).
    pub(crate) async fn send(
        &self,
        queue: &mpsc::Sender<Queued>,
        namespace: &Namespace,
        payload: Bytes,
        trace: Option<HeaderValue>,
    ) {
        if self.queued.load(Ordering::Acquire) == 0 {
            let mut numbering = self.numbering.lock().await;
            self.send_numbered(&mut numbering, namespace, payload, trace.as_ref())
                .await;
            return;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let event = Queued::Event {
            namespace: namespace.clone(),
            payload,
            trace,
        };
        if queue.send(event).await.is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.counters.send_failed.incr();
        }
    }

    /// Sends `payload` without waiting: at once if nothing is queued, the lock is free and the
    /// client has room; otherwise through the outgoing task's queue, and a full queue drops it
    /// (counted).
    pub(crate) fn try_send(
        &self,
        queue: &mpsc::Sender<Queued>,
        namespace: &Namespace,
        payload: Bytes,
        trace: Option<HeaderValue>,
    ) {
        if self.queued.load(Ordering::Acquire) == 0
            && let Ok(mut numbering) = self.numbering.try_lock()
        {
            // Polled once: a client without room leaves it pending, and dropping it then sends
            // nothing and uses up no number.
            let send =
                self.send_numbered(&mut numbering, namespace, payload.clone(), trace.as_ref());
            if send.now_or_never().is_some() {
                return;
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let event = Queued::Event {
            namespace: namespace.clone(),
            payload,
            trace,
        };
        if let Err(error) = queue.try_send(event) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            match error {
                mpsc::error::TrySendError::Full(_) => self.counters.send_dropped.incr(),
                mpsc::error::TrySendError::Closed(_) => self.counters.send_failed.incr(),
            }
        }
    }

    /// Numbers and sends one event; the caller holds the numbering lock. The number is used up
    /// only once the client took the event, so a refused or cancelled send leaves no gap.
    async fn send_numbered(
        &self,
        numbering: &mut HashMap<Namespace, Numbering>,
        namespace: &Namespace,
        payload: Bytes,
        trace: Option<&HeaderValue>,
    ) {
        let entry = match numbering.get_mut(namespace) {
            Some(entry) => entry,
            None => numbering.entry(namespace.clone()).or_insert(Numbering {
                subject: wire::subject(namespace),
                last: 0,
            }),
        };
        let number = entry.last + 1;
        let headers = wire::live_headers(&self.origin, number, trace);
        match self
            .client
            .publish_with_headers(entry.subject.clone(), headers, payload)
            .await
        {
            Ok(()) => {
                entry.last = number;
                self.counters.sent.incr();
            }
            Err(error) => {
                self.counters.send_failed.incr();
                tracing::warn!(%error, "event bus: NATS refused an outgoing event");
            }
        }
    }
}

/// The outgoing task: sends what [`Sender::try_send`] (and `send`, while the queue is not
/// empty) queued, in order. Ends when every queue sender is gone.
pub(crate) async fn run(sender: Arc<Sender>, mut queue: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, 256).await > 0 {
        let mut numbering = sender.numbering.lock().await;
        for item in batch.drain(..) {
            match item {
                Queued::Event {
                    namespace,
                    payload,
                    trace,
                } => {
                    sender
                        .send_numbered(&mut numbering, &namespace, payload, trace.as_ref())
                        .await;
                    sender.queued.fetch_sub(1, Ordering::AcqRel);
                }
                Queued::Flush(done) => {
                    if let Err(error) = sender.client.flush().await {
                        tracing::debug!(%error, "event bus: flush failed");
                    }
                    let _ = done.send(());
                }
            }
        }
    }
}
