//! The namespace's feed ([`EventFeed`]): its stream read in stream-sequence order from a
//! checkpoint, through an ordered consumer over the namespace's actor subjects. The stream
//! sequence is the feed position: the server assigns it when it stores a message (an atomic
//! batch gets consecutive ones), so a consumer never sees a lower sequence after a higher one.

use aether_core::{Event, FeedEvent, FeedPage, FeedPosition, ReplayError, StoreError};

use super::Inner;
use super::codec::{RecordHeader, decode};
use super::failure::unavailable;
use super::ordered::Delivered;
use crate::naming::{actor_of_subject, stream_subjects};

impl Inner {
    /// Up to `max` records with stream sequence above `after`, decoded. Fence records are
    /// skipped and take no room in the page (a page of fences only would look like the end of
    /// the feed); `next` moves past the ones read.
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
        let mut read = self
            .ordered_read(stream_subjects(&self.namespace), after.get() + 1, what)
            .await?;
        loop {
            let Delivered {
                seq,
                pending,
                message,
            } = read.next().await?;
            if seq > last {
                break;
            }
            let record = RecordHeader::without_id(seq, message.headers.as_ref());
            if record.fence().is_none() {
                match self.feed_record(&record, &message) {
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
            }
            page.next = FeedPosition::new(seq);
            if page.events.len() + page.errors.len() == max || seq == last || pending == 0 {
                break;
            }
        }
        Ok(page)
    }

    /// The event a feed message holds, or why it is not one.
    fn feed_record(
        &self,
        record: &RecordHeader,
        message: &async_nats::jetstream::Message,
    ) -> Result<Event, String> {
        let subject = message.subject.as_str();
        let actor_id = actor_of_subject(&self.namespace, subject).ok_or_else(|| {
            format!(
                "{subject:?} is not an actor subject of namespace {}",
                self.namespace
            )
        })?;
        decode(&actor_id, record, &message.payload)
    }
}
