//! Reading a range of a stream in order through an ordered consumer: every wait bounded by the
//! request timeout, and messages before the start skipped.
//!
//! The skip matters: an ordered consumer that restarts before it delivered anything starts
//! over from the stream's first message (async-nats 0.51 recreates it with
//! `DeliverPolicy::All`; seen on R3 streams), so a reader that trusted the start sequence would
//! return records from before it.

use aether_core::StoreError;
use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;

use super::Inner;
use super::failure::unavailable;

/// The messages of one ordered read, from its start on.
pub(crate) struct OrderedRead<'a, W: Fn() -> String> {
    inner: &'a Inner,
    messages: pull::Ordered,
    first: u64,
    /// What the read is for, in errors.
    what: W,
}

/// One message of an ordered read.
pub(crate) struct Delivered {
    pub seq: u64,
    /// Messages left on the consumer's filter after this one.
    pub pending: u64,
    pub message: Message,
}

impl Inner {
    /// An ordered read of the messages on `filter_subject` from stream sequence `first` (at
    /// least 1) on; `what` names it in errors.
    pub(crate) async fn ordered_read<W: Fn() -> String>(
        &self,
        filter_subject: String,
        first: u64,
        what: W,
    ) -> Result<OrderedRead<'_, W>, StoreError> {
        let first = first.max(1);
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject,
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: first,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&self.url, &what(), e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(&self.url, &what(), e))?;
        Ok(OrderedRead {
            inner: self,
            messages,
            first,
            what,
        })
    }
}

impl<W: Fn() -> String> OrderedRead<'_, W> {
    /// The next message at or after the start. A consumer that ends, fails or stalls for a
    /// request timeout is an error: a read never returns fewer records than exist.
    pub(crate) async fn next(&mut self) -> Result<Delivered, StoreError> {
        let url = &self.inner.url;
        loop {
            let next =
                tokio::time::timeout(self.inner.config.request_timeout, self.messages.next())
                    .await
                    .map_err(|e| unavailable(url, &format!("{} (stalled)", (self.what)()), e))?;
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(unavailable(url, &(self.what)(), e)),
                None => {
                    return Err(StoreError::Unavailable {
                        message: format!("NATS at {url}: {}: ended early", (self.what)()),
                        source: None,
                    });
                }
            };
            let (seq, pending) = message
                .info()
                .map(|info| (info.stream_sequence, info.pending))
                .map_err(|e| {
                    unavailable(url, &(self.what)(), std::io::Error::other(e.to_string()))
                })?;
            if seq >= self.first {
                return Ok(Delivered {
                    seq,
                    pending,
                    message,
                });
            }
        }
    }
}
