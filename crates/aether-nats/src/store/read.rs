//! Reading an actor: its head (one round trip), a record by version (binary search over the
//! stream sequence, which orders versions), and replay through an ordered consumer that stops at
//! the head read before it started — never a partial history that looks complete.

use aether_core::{ActorId, Event, ReplayError, ReplayResult, StoreError, Version};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{
    DirectGetError, DirectGetErrorKind, RawMessageError, RawMessageErrorKind,
};
use futures::StreamExt;

use super::codec::{RecordHeader, decode};
use super::failure::unavailable;
use super::{Inner, LoadedActor};

/// The last message on an actor's subject, as far as the version check is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Stream sequence of the subject's last message (0: none): the next append's expected
    /// sequence.
    pub seq: u64,
    /// Version of the last valid event (0: none).
    pub version: Version,
    /// The head's record, if it is a valid Aether record (not a foreign one).
    pub record: Option<RecordHeader>,
}

/// A replay with stream sequences kept, for the store's own use.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub events: Vec<(u64, Event)>,
    pub errors: Vec<ReplayError>,
}

impl Inner {
    /// The subject's last message: Direct Get on a single replica, a leader read otherwise
    /// (a follower may lag behind an acknowledged write).
    pub(crate) async fn last_message(
        &self,
        subject: &str,
    ) -> Result<Option<StreamMessage>, StoreError> {
        let what = || format!("read the head of {subject}");
        if self.direct_reads {
            let found = self.stream.direct_get_last_for_subject(subject).await;
            self.direct(found, what)
        } else {
            let request = self.stream.raw_message_builder().last_by_subject(subject);
            self.leader(request.send().await, what)
        }
    }

    /// The first message on `subject` at or after stream sequence `from` (Direct Get on a
    /// single replica, a leader read otherwise, as for heads).
    pub(crate) async fn next_message(
        &self,
        subject: &str,
        from: u64,
    ) -> Result<Option<StreamMessage>, StoreError> {
        let from = from.max(1);
        let what = || format!("read {subject} from sequence {from}");
        if self.direct_reads {
            let found = self
                .stream
                .direct_get_next_for_subject(subject, Some(from))
                .await;
            self.direct(found, what)
        } else {
            let request = self
                .stream
                .raw_message_builder()
                .sequence(from)
                .next_by_subject(subject);
            self.leader(request.send().await, what)
        }
    }

    /// A Direct Get's answer: the message, none, or the server unavailable.
    fn direct(
        &self,
        found: Result<StreamMessage, DirectGetError>,
        what: impl FnOnce() -> String,
    ) -> Result<Option<StreamMessage>, StoreError> {
        match found {
            Ok(message) => Ok(Some(message)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(&self.url, &what(), e)),
        }
    }

    /// A leader read's answer: the message, none, or the server unavailable.
    fn leader(
        &self,
        found: Result<StreamMessage, RawMessageError>,
        what: impl FnOnce() -> String,
    ) -> Result<Option<StreamMessage>, StoreError> {
        match found {
            Ok(message) => Ok(Some(message)),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(&self.url, &what(), e)),
        }
    }

    /// The message at stream sequence `seq` (a leader read).
    pub(crate) async fn message_at(&self, seq: u64) -> Result<Option<StreamMessage>, StoreError> {
        let found = self.stream.get_raw_message(seq).await;
        self.leader(found, || format!("read sequence {seq}"))
    }

    /// The actor's head. If a foreign record sits on top, the version comes from a scan of the
    /// actor's history (the only case where a head lookup is not one round trip).
    pub(crate) async fn head(&self, actor_id: &ActorId, subject: &str) -> Result<Head, StoreError> {
        let Some(last) = self.last_message(subject).await? else {
            return Ok(Head {
                seq: 0,
                version: 0,
                record: None,
            });
        };
        let record = RecordHeader::of(&last);
        // The header is trusted only on a record that is a valid event: a foreign client could
        // forge `Aether-Version` on garbage. One parse, no extra round trip.
        if let Some(version) = record.version
            && decode(actor_id, &record, &last.payload).is_ok()
        {
            return Ok(Head {
                seq: record.seq,
                version,
                record: Some(record),
            });
        }
        let scan = self.scan(actor_id, subject, 1, record.seq).await?;
        Ok(Head {
            seq: record.seq,
            version: scan.events.last().map_or(0, |(_, e)| e.version),
            record: None,
        })
    }

    /// The last valid record with a version ≤ `version`, found by binary search over the stream
    /// sequence (versions grow with it on a subject): O(log n) reads instead of a replay.
    pub(crate) async fn floor_record(
        &self,
        actor_id: &ActorId,
        subject: &str,
        head: &Head,
        version: Version,
    ) -> Result<Option<RecordHeader>, StoreError> {
        let Some(head_record) = &head.record else {
            return self.floor_by_scan(actor_id, subject, head, version).await;
        };
        if head.version <= version {
            return Ok(Some(head_record.clone()));
        }
        let (mut lo, mut hi, mut best) = (1, head.seq - 1, None);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let found = self.next_message(subject, mid).await?;
            let Some(message) = found.filter(|m| m.sequence <= hi) else {
                hi = mid - 1;
                continue;
            };
            let record = RecordHeader::of(&message);
            let valid = decode(actor_id, &record, &message.payload).is_ok();
            match record.version.filter(|_| valid) {
                Some(v) if v <= version => {
                    lo = record.seq + 1;
                    best = Some(record);
                }
                Some(_) => hi = mid - 1,
                // A foreign record breaks the ordering the search relies on.
                None => return self.floor_by_scan(actor_id, subject, head, version).await,
            }
        }
        Ok(best)
    }

    async fn floor_by_scan(
        &self,
        actor_id: &ActorId,
        subject: &str,
        head: &Head,
        version: Version,
    ) -> Result<Option<RecordHeader>, StoreError> {
        let scan = self.scan(actor_id, subject, 1, head.seq).await?;
        Ok(scan
            .events
            .iter()
            .rev()
            .find(|(_, e)| e.version <= version)
            .map(|(seq, e)| RecordHeader {
                seq: *seq,
                version: Some(e.version),
                id: Some(e.id.to_string()),
            }))
    }

    /// Every record on `subject` with stream sequence in `first..=last`, decoded, through an
    /// ordered consumer. Fails rather than return fewer records than exist in that range.
    pub(crate) async fn scan(
        &self,
        actor_id: &ActorId,
        subject: &str,
        first: u64,
        last: u64,
    ) -> Result<Scan, StoreError> {
        let mut scan = Scan::default();
        if last < first.max(1) {
            return Ok(scan);
        }
        let what = || format!("replay {subject} up to sequence {last}");
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.to_owned(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: first.max(1),
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
            let seq = message
                .info()
                .map_err(|e| unavailable(&self.url, &what(), std::io::Error::other(e.to_string())))?
                .stream_sequence;
            if seq > last {
                break;
            }
            let record = RecordHeader::without_id(seq, message.headers.as_ref());
            match decode(actor_id, &record, &message.payload) {
                Ok(event) => scan.events.push((seq, event)),
                Err(error) => scan.errors.push(ReplayError {
                    position: seq,
                    raw: message.payload.to_vec(),
                    error,
                }),
            }
            if seq == last {
                break;
            }
        }
        Ok(scan)
    }

    pub(crate) async fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> Result<ReplayResult, StoreError> {
        let subject = self.subject(actor_id);
        let Some(last) = self.last_message(&subject).await? else {
            return Ok(ReplayResult::default());
        };
        let scan = self.scan(actor_id, &subject, 1, last.sequence).await?;
        Ok(from_version_on(scan, from_version))
    }

    pub(crate) async fn load_actor(&self, actor_id: &ActorId) -> Result<LoadedActor, StoreError> {
        let subject = self.subject(actor_id);
        let stored = self.stored_snapshot(actor_id).await?;
        let Some(last) = self.last_message(&subject).await? else {
            return Ok(LoadedActor {
                snapshot: stored.map(|s| s.snapshot),
                events: Vec::new(),
            });
        };
        let (first, snapshot) = match stored {
            Some(s) if s.stream_sequence > last.sequence => {
                return Err(StoreError::Backend {
                    message: format!(
                        "the snapshot of {actor_id} claims to cover stream sequence {}, beyond \
                         the actor's last message at {}: it was not written by this store",
                        s.stream_sequence, last.sequence
                    ),
                    source: None,
                });
            }
            Some(s) => (s.stream_sequence + 1, Some(s.snapshot)),
            None => (1, None),
        };
        let covered = snapshot.as_ref().map_or(0, |s| s.version);
        let scan = self.scan(actor_id, &subject, first, last.sequence).await?;
        Ok(LoadedActor {
            snapshot,
            events: scan
                .events
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e.version > covered)
                .collect(),
        })
    }
}

/// The events with `version >= from_version`, and the bad records after the last event below
/// it.
fn from_version_on(scan: Scan, from_version: Version) -> ReplayResult {
    let cutoff = scan
        .events
        .iter()
        .filter(|(_, e)| e.version < from_version)
        .map(|(seq, _)| *seq)
        .max()
        .unwrap_or(0);
    ReplayResult {
        events: scan
            .events
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.version >= from_version)
            .collect(),
        errors: scan
            .errors
            .into_iter()
            .filter(|e| e.position > cutoff)
            .collect(),
    }
}
