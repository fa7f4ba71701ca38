//! Appending: single events and atomic batches, guarded by the server's expected-sequence check,
//! with every uncertain outcome settled before it is reported.

use std::collections::HashSet;
use std::time::Duration;

use aether_core::{ActorId, Event, OwnerEpoch, SaveOutcome, StoreError, Version};
use async_nats::HeaderMap;
use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL, NATS_BATCH_ID, NATS_BATCH_SEQUENCE,
};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use super::Inner;
use super::codec::{self, IdMatch, RecordHeader};
use super::failure::{PublishFailure, classify, publish_error, unavailable};
use super::read::Head;
use crate::naming::{actor_of_subject, stream_subjects};

/// First pause between retries of an uncertain write; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The stored record holding one of a refused batch's ids.
struct Holder {
    /// Which event of the batch.
    index: usize,
    subject: String,
    record: RecordHeader,
}

/// Where to start looking for the holder of a reused id: `window` before the stream's last
/// message, on the server's clock (`None`: from the start).
fn holder_scan_start(
    last_message: time::OffsetDateTime,
    window: Duration,
) -> Option<time::OffsetDateTime> {
    time::Duration::try_from(window)
        .ok()
        .and_then(|w| last_message.checked_sub(w))
}

/// `now + after`, or a far-off instant if that overflows (`Duration::MAX` means "no limit").
pub(crate) fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Progress of one save through retries.
struct Attempts {
    deadline: Instant,
    backoff: Duration,
    /// An earlier attempt of this call may have landed: a stored copy found now counts as
    /// `Saved`, not `Duplicate`.
    uncertain: bool,
}

impl Attempts {
    fn new(inner: &Inner) -> Self {
        Self {
            deadline: deadline_after(inner.config.retry_timeout),
            backoff: FIRST_BACKOFF,
            uncertain: false,
        }
    }

    /// True once the retry budget is spent.
    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn found_stored(&self) -> SaveOutcome {
        if self.uncertain {
            SaveOutcome::Saved
        } else {
            SaveOutcome::Duplicate
        }
    }

    /// Waits before the next try, or gives up past the deadline.
    async fn pause(
        &mut self,
        url: &str,
        subject: &str,
        cause: &(dyn std::fmt::Display + Sync),
    ) -> Result<(), StoreError> {
        if Instant::now()
            .checked_add(self.backoff)
            .is_none_or(|t| t > self.deadline)
        {
            return Err(StoreError::Unavailable {
                message: format!(
                    "NATS at {url}: the write to {subject} could not be confirmed ({cause}); \
                     its outcome is unknown: save the same event again to settle it"
                ),
                source: None,
            });
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }
}

impl Inner {
    /// Saves one event, stamped with `epoch` if given (`None`: a plain save, epoch 0 without
    /// a header). The paths off the common one (reads, settling, back-off) are boxed where
    /// they are awaited: inline, their futures would make every write's future several
    /// kilobytes, which callers that box or pool write futures (the actor runtime) pay for on
    /// every write.
    pub(crate) async fn save_one(
        &self,
        event: Event,
        epoch: Option<OwnerEpoch>,
    ) -> Result<SaveOutcome, StoreError> {
        self.limits.check_event(&event)?;
        let subject = self.subject(&event.actor_id);
        let writer = epoch.unwrap_or_default();
        let mut attempts = Attempts::new(self);
        let (mut head, mut fresh) = self.hinted_head(&event.actor_id, &subject).await?;
        loop {
            // The fence check, on every head this loop acts on: the hint, and each fresh read
            // after a lost race. A head of a newer owner ends the save: never re-send past it.
            if head.epoch > writer {
                let events = std::slice::from_ref(&event);
                return Box::pin(self.fenced(&subject, &head, fresh, events, writer, &attempts))
                    .await;
            }
            if event.version <= head.version {
                if !fresh {
                    // Never report a conflict from a hint: read the real head first.
                    (head, fresh) = (
                        Box::pin(self.fresh_head(&event.actor_id, &subject)).await?,
                        true,
                    );
                    continue;
                }
                return Box::pin(self.settle_stale(
                    &subject,
                    &head,
                    std::slice::from_ref(&event),
                    &attempts,
                ))
                .await;
            }
            let (headers, payload) = codec::encode(&event, Some(head.seq), epoch)?;
            let failure = match self.publish(&subject, headers, payload).await? {
                Ok(ack) if !ack.duplicate => {
                    self.remember(&event, ack.sequence, Some(head.seq), writer);
                    return Ok(SaveOutcome::Saved);
                }
                Ok(ack) => {
                    return Box::pin(self.settle_duplicate_ack(
                        &event,
                        &subject,
                        ack.sequence,
                        &attempts,
                    ))
                    .await;
                }
                Err(e) => e,
            };
            match classify(&failure) {
                PublishFailure::Conflict => {
                    // No slot check needed: if this event (ours or an earlier copy) is stored,
                    // the fresh head is at or past its version, and `settle_stale` finds it by
                    // version. A lost race thus costs two requests, not three.
                    let tried = head.seq;
                    (head, fresh) = (
                        Box::pin(self.fresh_head(&event.actor_id, &subject)).await?,
                        true,
                    );
                    if head.seq == tried {
                        // 10164: another write to this subject is still in flight (perhaps our
                        // own timed-out one); wait for it rather than spin.
                        Box::pin(attempts.pause(&self.url, &subject, &failure)).await?;
                    }
                }
                PublishFailure::Busy => {
                    Box::pin(attempts.pause(&self.url, &subject, &failure)).await?
                }
                PublishFailure::Uncertain => {
                    attempts.uncertain = true;
                    Box::pin(attempts.pause(&self.url, &subject, &failure)).await?;
                    // An empty or unreadable slot means resend: with the same expected sequence,
                    // the original and the resend cannot both land.
                    if let Ok(true) = Box::pin(self.slot_holds(&subject, head.seq, &event)).await {
                        return Ok(SaveOutcome::Saved);
                    }
                }
                PublishFailure::DuplicateIdInBatch | PublishFailure::Fatal => {
                    return Err(publish_error(&self.stream_name, &subject, failure));
                }
            }
        }
    }

    /// Saves a batch of one actor's events atomically, every message stamped with `epoch` if
    /// given, as [`save_one`](Self::save_one).
    pub(crate) async fn save_batch(
        &self,
        events: Vec<Event>,
        epoch: Option<OwnerEpoch>,
    ) -> Result<SaveOutcome, StoreError> {
        self.limits.check_batch(&events)?;
        if events.len() == 1 {
            return self
                .save_one(events.into_iter().next().expect("one event"), epoch)
                .await;
        }
        let actor_id = events[0].actor_id.clone();
        let subject = self.subject(&actor_id);
        let writer = epoch.unwrap_or_default();
        let mut attempts = Attempts::new(self);
        let (mut head, mut fresh) = self.hinted_head(&actor_id, &subject).await?;
        loop {
            // The fence check, as for single events: never re-send past a newer owner's head.
            if head.epoch > writer {
                return Box::pin(self.fenced(&subject, &head, fresh, &events, writer, &attempts))
                    .await;
            }
            if events[0].version <= head.version {
                if !fresh {
                    (head, fresh) = (Box::pin(self.fresh_head(&actor_id, &subject)).await?, true);
                    continue;
                }
                return Box::pin(self.settle_stale(&subject, &head, &events, &attempts)).await;
            }
            let failure = match self
                .publish_batch(&subject, &events, head.seq, epoch)
                .await?
            {
                Ok(ack) => {
                    // Only the first message of a batch names its predecessor.
                    let last = events.last().expect("checked batch");
                    self.remember(last, ack.sequence, None, writer);
                    return Ok(SaveOutcome::Saved);
                }
                Err(e) => e,
            };
            match classify(&failure) {
                PublishFailure::Conflict => {
                    // As for single events: a stored copy is found by version after the read.
                    let tried = head.seq;
                    (head, fresh) = (Box::pin(self.fresh_head(&actor_id, &subject)).await?, true);
                    if head.seq == tried {
                        Box::pin(attempts.pause(&self.url, &subject, &failure)).await?;
                    }
                }
                PublishFailure::DuplicateIdInBatch => {
                    // Some id of the batch is stored. If the batch is at or below the real head,
                    // `settle_stale` compares every event (a duplicate or a conflict); only
                    // otherwise does another event hold one of its ids.
                    (head, fresh) = (Box::pin(self.fresh_head(&actor_id, &subject)).await?, true);
                    if events[0].version <= head.version {
                        continue;
                    }
                    let holder = Box::pin(self.find_holder(&events)).await?;
                    let event = &events[holder.index];
                    if holder.subject == subject && holder.record.version == Some(event.version) {
                        continue; // a copy of this batch landed meanwhile: settle on the next turn
                    }
                    return Err(self.reused(event, &holder.subject, &holder.record));
                }
                PublishFailure::Busy => {
                    Box::pin(attempts.pause(&self.url, &subject, &failure)).await?
                }
                PublishFailure::Uncertain => {
                    attempts.uncertain = true;
                    Box::pin(attempts.pause(&self.url, &subject, &failure)).await?;
                    // Settle by reading: if the batch landed, the head is at or past its first
                    // version and `settle_stale` finds every event. Otherwise resending against
                    // the fresh head is safe: a delayed original expecting the old sequence can
                    // no longer land once the head moved, and both cannot land if it did not.
                    if let Ok(fresh_head) = Box::pin(self.fresh_head(&actor_id, &subject)).await {
                        (head, fresh) = (fresh_head, true);
                    }
                }
                PublishFailure::Fatal => {
                    return Err(publish_error(&self.stream_name, &subject, failure));
                }
            }
        }
    }

    /// The cached head if there is one (`false`: a hint), else a fresh read (`true`).
    async fn hinted_head(
        &self,
        actor_id: &ActorId,
        subject: &str,
    ) -> Result<(Head, bool), StoreError> {
        match self.heads.get(actor_id) {
            Some(hint) => Ok((hint, false)),
            // Boxed: a read's future is large, and writes that know their head never need it.
            None => Ok((Box::pin(self.fresh_head(actor_id, subject)).await?, true)),
        }
    }

    async fn fresh_head(&self, actor_id: &ActorId, subject: &str) -> Result<Head, StoreError> {
        let head = self.head(actor_id, subject).await?;
        self.heads.put(actor_id, head.clone());
        Ok(head)
    }

    /// After a write of `event` (the last of its batch) at `epoch` landed at `seq`, right
    /// after the subject's message at `prev` if known.
    fn remember(&self, event: &Event, seq: u64, prev: Option<u64>, epoch: OwnerEpoch) {
        // The chain keeps the id's digest only: no text to copy and keep for every save.
        let record = RecordHeader {
            seq,
            version: Some(event.version),
            id: None,
            id_digest: Some(codec::id_digest(event.id.as_str())),
            prev,
            mark: codec::Mark::Event { epoch },
        };
        self.heads.put(
            &event.actor_id,
            Head {
                seq,
                version: event.version,
                epoch,
                record: Some(record),
            },
        );
    }

    /// `head` carries a newer epoch than the writer's: [`StoreError::Fenced`], unless these
    /// events are stored already (saved before the fence, by an earlier call or an earlier
    /// attempt of this one: nothing lands after a fence), which is a duplicate as on every
    /// store.
    async fn fenced(
        &self,
        subject: &str,
        head: &Head,
        fresh: bool,
        events: &[Event],
        epoch: OwnerEpoch,
        attempts: &Attempts,
    ) -> Result<SaveOutcome, StoreError> {
        // At or below the head, these events may be stored (saved before the fence, perhaps
        // by an earlier attempt of this call): a stored copy is a duplicate, fenced writer or
        // not, as on every store. The check needs the real head.
        let settled = if events[0].version <= head.version {
            let fresh_head;
            let head = if fresh {
                head
            } else {
                fresh_head = Box::pin(self.fresh_head(&events[0].actor_id, subject)).await?;
                &fresh_head
            };
            Some(self.settle_stale(subject, head, events, attempts).await)
        } else {
            None
        };
        let actor_id = &events[0].actor_id;
        let fenced = StoreError::Fenced {
            actor_id: actor_id.clone(),
            epoch,
            fenced_by: head.epoch,
        };
        let answer = fenced_answer(settled, fenced);
        if answer.as_ref().is_err_and(StoreError::is_fenced) {
            tracing::debug!(actor = %actor_id, %epoch, fenced_by = %head.epoch, "write fenced by a newer owner");
        }
        answer
    }

    /// The error of a fence whose retries ran out: it may or may not have been stored.
    fn fence_unconfirmed(&self, subject: &str, cause: &dyn std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            message: format!(
                "NATS at {}: the fence of {subject} could not be confirmed within {:?} \
                 ({cause}); it may or may not be stored: fence again with the same epoch to \
                 settle it",
                self.url, self.config.retry_timeout
            ),
            source: None,
        }
    }

    /// Appends a fence record at `epoch` after the actor's head (see
    /// [`FencedEventStore::fence`](aether_core::FencedEventStore::fence)): always against a
    /// head read from the server, never a hint, since a head at the same epoch means there is
    /// nothing to write.
    pub(crate) async fn fence(
        &self,
        actor_id: &ActorId,
        epoch: OwnerEpoch,
    ) -> Result<Version, StoreError> {
        let subject = self.subject(actor_id);
        let mut attempts = Attempts::new(self);
        // One id for every attempt: a copy the server deduplicates is this fence.
        let id = codec::fence_id();
        let mut head = self.fresh_head(actor_id, &subject).await?;
        loop {
            if head.epoch > epoch {
                return Err(StoreError::Fenced {
                    actor_id: actor_id.clone(),
                    epoch,
                    fenced_by: head.epoch,
                });
            }
            if head.epoch == epoch {
                // Our own fence (landed on an earlier attempt), or a record of this epoch: it
                // fences every lower epoch already.
                return Ok(head.version);
            }
            let headers = codec::encode_fence(epoch, head.version, head.seq, &id);
            let failure = match self.publish(&subject, headers, Bytes::new()).await? {
                Ok(ack) if !ack.duplicate => {
                    let fenced = Head {
                        seq: ack.sequence,
                        version: head.version,
                        epoch,
                        record: None,
                    };
                    self.heads.put(actor_id, fenced);
                    return Ok(head.version);
                }
                Ok(_) => {
                    // An earlier attempt landed: the head says where (our epoch or a newer).
                    if attempts.expired() {
                        let cause = "the server keeps answering with a duplicate";
                        return Err(self.fence_unconfirmed(&subject, &cause));
                    }
                    head = self.fresh_head(actor_id, &subject).await?;
                    continue;
                }
                Err(e) => e,
            };
            match classify(&failure) {
                PublishFailure::Conflict => {
                    // A fence has no version of its own: re-read and fence the new head.
                    let tried = head.seq;
                    head = self.fresh_head(actor_id, &subject).await?;
                    if head.seq == tried {
                        attempts
                            .pause(&self.url, &subject, &failure)
                            .await
                            .map_err(|_| self.fence_unconfirmed(&subject, &failure))?;
                    } else if attempts.expired() {
                        return Err(StoreError::Unavailable {
                            message: format!(
                                "NATS at {}: could not fence {subject}: other writers kept \
                                 moving its head for {:?}; fence it again",
                                self.url, self.config.retry_timeout
                            ),
                            source: None,
                        });
                    }
                }
                PublishFailure::Busy => attempts
                    .pause(&self.url, &subject, &failure)
                    .await
                    .map_err(|_| self.fence_unconfirmed(&subject, &failure))?,
                PublishFailure::Uncertain => {
                    attempts
                        .pause(&self.url, &subject, &failure)
                        .await
                        .map_err(|_| self.fence_unconfirmed(&subject, &failure))?;
                    // If it landed, the head is this fence (same epoch: done); otherwise a
                    // resend against the same or a newer head is safe.
                    if let Ok(fresh) = self.fresh_head(actor_id, &subject).await {
                        head = fresh;
                    }
                }
                PublishFailure::DuplicateIdInBatch | PublishFailure::Fatal => {
                    return Err(publish_error(&self.stream_name, &subject, failure));
                }
            }
        }
    }

    async fn publish(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Result<PublishAck, PublishError>, StoreError> {
        let message = PublishMessage::build().payload(payload).headers(headers);
        let publishing = async {
            self.js
                .send_publish(subject.to_owned(), message)
                .await?
                .await
        };
        // A refused publish is dropped without an answer: fail at once, not after retries.
        self.violations
            .guard(|v| v.subject == subject, Box::pin(publishing))
            .await
            .map_err(super::failure::permission_denied)
    }

    /// Publishes `events` as one ADR-50 atomic batch whose first message carries the expected
    /// sequence, every message stamped with `epoch` if given. The outer error is a dead
    /// connection; the inner one is the server's answer.
    async fn publish_batch(
        &self,
        subject: &str,
        events: &[Event],
        expected: u64,
        epoch: Option<OwnerEpoch>,
    ) -> Result<Result<PublishAck, PublishError>, StoreError> {
        let batch_id = uuid::Uuid::now_v7().simple().to_string();
        let last = events.len() - 1;
        for (i, event) in events.iter().enumerate() {
            let (mut headers, payload) = codec::encode(event, (i == 0).then_some(expected), epoch)?;
            headers.insert(NATS_BATCH_ID, batch_id.as_str());
            headers.insert(NATS_BATCH_SEQUENCE, (i + 1).to_string());
            if i < last {
                // Staged messages need no reply: the commit's ack speaks for the batch.
                self.client
                    .publish_with_headers(subject.to_owned(), headers, payload)
                    .await
                    .map_err(|e| unavailable(&self.url, "stage a batch message", e))?;
            } else {
                headers.insert(NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL);
                return self.publish(subject, headers, payload).await;
            }
        }
        unreachable!("a checked batch is not empty")
    }

    /// The slot check: a write that carried expected sequence `after` can only be the first
    /// message on the subject after it. True if that message is `event` (same id and version).
    async fn slot_holds(
        &self,
        subject: &str,
        after: u64,
        event: &Event,
    ) -> Result<bool, StoreError> {
        Ok(self
            .next_message(subject, after.saturating_add(1))
            .await?
            .is_some_and(|m| {
                let record = RecordHeader::of(&m);
                record.id.as_deref() == Some(event.id.as_str())
                    && record.version == Some(event.version)
            }))
    }

    /// Every event's version is at or below the head: either all of them are stored exactly
    /// (a duplicate) or this is a version conflict.
    async fn settle_stale(
        &self,
        subject: &str,
        head: &Head,
        events: &[Event],
        attempts: &Attempts,
    ) -> Result<SaveOutcome, StoreError> {
        let actor_id = &events[0].actor_id;
        for event in events {
            let stored = self
                .floor_record(actor_id, subject, head, event.version)
                .await?;
            let id = event.id.as_str();
            let same = match stored {
                Some(r) if r.version == Some(event.version) => match r.id_match(id) {
                    IdMatch::Same => true,
                    IdMatch::Different => false,
                    // Only a digest was known: the stored record says.
                    IdMatch::Unsure => self.message_at(r.seq).await?.is_some_and(|m| {
                        m.subject.as_str() == subject
                            && RecordHeader::of(&m).id_match(id) == IdMatch::Same
                    }),
                },
                _ => false,
            };
            if !same {
                return Err(StoreError::VersionConflict {
                    actor_id: actor_id.clone(),
                    attempted_version: events[0].version,
                    current_version: head.version,
                });
            }
        }
        Ok(attempts.found_stored())
    }

    /// JetStream recognised `event.id` and pointed at the original at `seq`: the same event
    /// (a duplicate) or another one (a reused id).
    async fn settle_duplicate_ack(
        &self,
        event: &Event,
        subject: &str,
        seq: u64,
        attempts: &Attempts,
    ) -> Result<SaveOutcome, StoreError> {
        let original = self.message_at(seq).await?.ok_or_else(|| StoreError::Backend {
            message: format!(
                "JetStream reported event id {} as a duplicate of sequence {seq}, which cannot be read",
                event.id
            ),
            source: None,
        })?;
        let record = RecordHeader::of(&original);
        if original.subject.as_str() == subject && record.version == Some(event.version) {
            return Ok(attempts.found_stored());
        }
        Err(self.reused(event, &original.subject, &record))
    }

    fn reused(&self, event: &Event, subject: &str, record: &RecordHeader) -> StoreError {
        match (actor_of_subject(&self.namespace, subject), record.version) {
            (Some(existing_actor), Some(existing_version)) => StoreError::EventIdReused {
                id: event.id.clone(),
                existing_actor,
                existing_version,
            },
            _ => StoreError::Backend {
                message: format!(
                    "event id {} is already used by a foreign record at sequence {} on {subject}",
                    event.id, record.seq
                ),
                source: None,
            },
        }
    }

    /// An atomic batch was refused because one of its ids is stored (10201), which does not
    /// say which. JetStream only deduplicates within its window, so the holder was written
    /// within it: scan the window's headers for the batch's ids.
    ///
    /// The window is measured on the server's clock, not this process's: it ends at the
    /// stream's last message (the server's timestamp), which is at or after the holder, so a
    /// client clock that runs ahead cannot skip the holder.
    async fn find_holder(&self, events: &[Event]) -> Result<Holder, StoreError> {
        let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let window = self
            .config
            .duplicate_window
            .saturating_add(Duration::from_secs(5));
        let what = "find the stored event whose id a batch reuses";
        let mut stream = self.stream.clone();
        let state = &stream
            .info()
            .await
            .map_err(|e| unavailable(&self.url, what, e))?
            .state;
        let last = state.last_sequence;
        let deliver_policy = match holder_scan_start(state.last_timestamp, window) {
            Some(start_time) => DeliverPolicy::ByStartTime { start_time },
            None => DeliverPolicy::All,
        };
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: stream_subjects(&self.namespace),
                deliver_policy,
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&self.url, what, e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(&self.url, what, e))?;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(self.config.request_timeout, messages.next()).await
        {
            let Ok(info) = message.info() else { break };
            let record = RecordHeader::from_headers(info.stream_sequence, message.headers.as_ref());
            if let Some(index) = record
                .id
                .as_deref()
                .filter(|id| ids.contains(id))
                .and_then(|id| events.iter().position(|e| e.id.as_str() == id))
            {
                return Ok(Holder {
                    index,
                    subject: message.subject.to_string(),
                    record,
                });
            }
            if info.stream_sequence >= last {
                break;
            }
        }
        Err(StoreError::Backend {
            message: format!(
                "JetStream refused a batch for {}: one of its event ids is already stored, but \
                 no stored event with one of its ids was found in the last {window:?}",
                events[0].actor_id
            ),
            source: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The holder search starts `window` before the stream's last message (a server time),
    /// whatever this process's clock says; an unrepresentable window means "from the start".
    #[test]
    fn the_holder_search_starts_from_the_servers_last_message() {
        let last = time::OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        assert_eq!(
            holder_scan_start(last, Duration::from_secs(125)),
            Some(time::OffsetDateTime::from_unix_timestamp(1_000_000 - 125).unwrap())
        );
        assert_eq!(holder_scan_start(last, Duration::MAX), None);
    }
}

/// What a save that found a newer owner's head answers, given what checking for a stored
/// copy of its events found: `None` when there was nothing to check (its versions are above
/// the head). [`StoreError::Fenced`] promises that nothing was written, so it is the answer
/// only when that is known: no copy can be stored, or the versions hold other events. If the
/// check itself failed (a read that timed out, an unreadable record), a copy may be stored:
/// the check's error is the answer, never `Fenced`.
fn fenced_answer(
    settled: Option<Result<SaveOutcome, StoreError>>,
    fenced: StoreError,
) -> Result<SaveOutcome, StoreError> {
    match settled {
        Some(Ok(outcome)) => Ok(outcome),
        None | Some(Err(StoreError::VersionConflict { .. })) => Err(fenced),
        Some(Err(unknown)) => Err(unknown),
    }
}

#[cfg(test)]
mod fenced_answer_tests {
    use aether_core::{ActorId, OwnerEpoch, SaveOutcome, StoreError};

    use super::fenced_answer;

    fn fenced() -> StoreError {
        StoreError::Fenced {
            actor_id: ActorId::new("a").expect("actor"),
            epoch: OwnerEpoch::new(1),
            fenced_by: OwnerEpoch::new(2),
        }
    }

    /// Review finding: a failed check of an earlier attempt was answered `Fenced` ("nothing
    /// written") although that attempt may have landed before the fence.
    #[test]
    fn a_failed_check_of_an_uncertain_attempt_is_not_reported_as_fenced() {
        let unavailable = StoreError::Unavailable {
            message: "read timed out".into(),
            source: None,
        };
        let answer = fenced_answer(Some(Err(unavailable)), fenced());
        assert!(
            matches!(answer, Err(StoreError::Unavailable { .. })),
            "{answer:?}"
        );
    }

    #[test]
    fn fenced_only_when_nothing_of_ours_can_be_stored() {
        assert!(fenced_answer(None, fenced()).is_err_and(|e| e.is_fenced()));
        let conflict = StoreError::VersionConflict {
            actor_id: ActorId::new("a").expect("actor"),
            attempted_version: 5,
            current_version: 6,
        };
        assert!(fenced_answer(Some(Err(conflict)), fenced()).is_err_and(|e| e.is_fenced()));
        assert_eq!(
            fenced_answer(Some(Ok(SaveOutcome::Saved)), fenced()).ok(),
            Some(SaveOutcome::Saved)
        );
    }
}
