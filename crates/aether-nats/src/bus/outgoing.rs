//! The outgoing path: one task per bus takes encoded events from a bounded queue, numbers them
//! per namespace (`Aether-Seq`, so receivers can count gaps) and hands them to the client.
//! A single task keeps each namespace's numbering in the order the client sends, which is the
//! order NATS delivers.

use std::collections::HashMap;
use std::sync::Arc;

use aether_core::Namespace;
use async_nats::{Client, HeaderValue, Subject};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::metrics::NetworkCounters;
use super::wire;

pub(crate) enum Outgoing {
    Event {
        namespace: Namespace,
        payload: Bytes,
    },
    /// Answered once everything queued before it was handed to the client and flushed.
    Flush(oneshot::Sender<()>),
}

/// Per namespace: its subject (built once) and the last number used.
struct Numbering {
    subject: Subject,
    last: u64,
}

pub(crate) async fn run(
    client: Client,
    origin: HeaderValue,
    mut queue: mpsc::Receiver<Outgoing>,
    counters: Arc<NetworkCounters>,
) {
    let mut numbering: HashMap<Namespace, Numbering> = HashMap::new();
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, 256).await > 0 {
        for item in batch.drain(..) {
            match item {
                Outgoing::Event { namespace, payload } => {
                    let entry = numbering
                        .entry(namespace)
                        .or_insert_with_key(|ns| Numbering {
                            subject: wire::subject(ns),
                            last: 0,
                        });
                    entry.last += 1;
                    let headers = wire::live_headers(&origin, entry.last);
                    match client
                        .publish_with_headers(entry.subject.clone(), headers, payload)
                        .await
                    {
                        Ok(()) => counters.sent.incr(),
                        Err(error) => {
                            counters.send_failed.incr();
                            tracing::warn!(%error, "event bus: NATS refused an outgoing event");
                        }
                    }
                }
                Outgoing::Flush(done) => {
                    if let Err(error) = client.flush().await {
                        tracing::debug!(%error, "event bus: flush failed");
                    }
                    let _ = done.send(());
                }
            }
        }
    }
}
