//! The namespace's feed ([`EventFeed`]): its stream read in stream-sequence order from a
//! checkpoint, through an ordered consumer over the namespace's actor subjects. The stream
//! sequence is the feed position: the server assigns it when it stores a message (an atomic
//! batch gets consecutive ones), so a consumer never sees a lower sequence after a higher one.

use aether_core::{Event, FeedEvent, FeedPage, FeedPosition, ReplayError, StoreError};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;

use super::Inner;
use super::codec::{RecordHeader, decode};
use super::failure::unavailable;
use crate::naming::{actor_of_subject, stream_subjects};

impl Inner {
    /// Up to `max` records with stream sequence above `after`, decoded.
    pub(crate) async fn read_feed(
        &self,
        after: FeedPosition,
        max: usize,
    ) -> Result<FeedPage, StoreError> {
        let what = || format!("read the feed of {} after {after}", self.stream_name);
        let mut page = FeedPage {
            next: after,
            ..FeedPage::default()
        };
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| unavailable(&self.url, &what(), e))?;
        let last = info.state.last_sequence;
        if last <= after.get() || info.state.messages == 0 {
            return Ok(page);
        }
        let end = last.min(after.get().saturating_add(max as u64));
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: stream_subjects(&self.namespace),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after.get() + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&self.url, &what(), e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(&self.url, &what(), e))?;
        loop {
            let next = tokio::time::timeout(self.config.request_timeout, messages.next())
                .await
                .map_err(|e| unavailable(&self.url, &format!("{} (stalled)", what()), e))?;
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(unavailable(&self.url, &what(), e)),
                None => {
                    return Err(StoreError::Unavailable {
                        message: format!("NATS at {}: {}: ended early", self.url, what()),
                        source: None,
                    });
                }
            };
            let (seq, pending) = message
                .info()
                .map(|info| (info.stream_sequence, info.pending))
                .map_err(|e| {
                    unavailable(&self.url, &what(), std::io::Error::other(e.to_string()))
                })?;
            if seq <= after.get() {
                // An ordered consumer that restarts before delivering anything starts over
                // from the stream's first message (async-nats 0.51 recreates it with
                // `DeliverPolicy::All`, seen on R3 streams): skip what precedes the checkpoint.
                continue;
            }
            if seq > end {
                break;
            }
            match self.feed_record(seq, &message) {
                Ok(event) => page.events.push(FeedEvent {
                    position: FeedPosition::new(seq),
                    event,
                }),
                Err(error) => page.errors.push(ReplayError {
                    position: seq,
                    raw: message.payload.to_vec(),
                    error,
                }),
            }
            page.next = FeedPosition::new(seq);
            if seq == end || pending == 0 {
                break;
            }
        }
        Ok(page)
    }

    /// The event a feed message holds, or why it is not one.
    fn feed_record(
        &self,
        seq: u64,
        message: &async_nats::jetstream::Message,
    ) -> Result<Event, String> {
        let subject = message.subject.as_str();
        let actor_id = actor_of_subject(&self.namespace, subject).ok_or_else(|| {
            format!(
                "{subject:?} is not an actor subject of namespace {}",
                self.namespace
            )
        })?;
        let record = RecordHeader::without_id(seq, message.headers.as_ref());
        decode(&actor_id, &record, &message.payload)
    }
}
