//! Reading an actor: its head (one round trip), a record by version (binary search over the
//! stream sequence, which orders versions), and replay through an ordered consumer that stops at
//! the head read before it started — never a partial history that looks complete.

use aether_core::{
    ActorId, Event, LoadedActor, OwnerEpoch, ReplayError, ReplayResult, StoreError, Version,
};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{
    DirectGetError, DirectGetErrorKind, RawMessageError, RawMessageErrorKind,
};

use super::Inner;
use super::codec::{Mark, RecordHeader, decode};
use super::failure::unavailable;
use super::ordered::Delivered;

/// The last message on an actor's subject, as far as the version check is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Stream sequence of the subject's last message (0: none): the next append's expected
    /// sequence.
    pub seq: u64,
    /// Version of the last valid event (0: none); under a fence record, the version it
    /// records, which is the same.
    pub version: Version,
    /// The ownership epoch of the subject's last Aether record (an event or a fence; 0:
    /// none, or written without one). Epochs never decrease along a subject.
    pub epoch: OwnerEpoch,
    /// The head's record, if it is a valid Aether record (an event or a fence, not a foreign
    /// record).
    pub record: Option<RecordHeader>,
}

impl Head {
    /// The head of a subject without messages.
    pub(crate) const EMPTY: Self = Self {
        seq: 0,
        version: 0,
        epoch: OwnerEpoch::UNOWNED,
        record: None,
    };

    /// The head a subject's last message makes without a read, if it is a valid event
    /// (`decoded`) or a valid fence record.
    pub(crate) fn of_record(record: RecordHeader, decoded: bool) -> Option<Self> {
        let (epoch, version) = match record.mark {
            Mark::Fence { epoch, version } => (epoch, version),
            Mark::Event { epoch } if decoded => (epoch, record.version?),
            _ => return None,
        };
        Some(Self {
            seq: record.seq,
            version,
            epoch,
            record: Some(record),
        })
    }
}

/// How many records a floor lookup reads walking back from the actor's known chain before it
/// falls back to a binary search.
const WALK_LIMIT: usize = 8;

/// A replay with stream sequences kept, for the store's own use.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub events: Vec<(u64, Event)>,
    pub errors: Vec<ReplayError>,
    /// The last record that claims a version (decodable or not), or whose epoch or fence
    /// headers do not parse.
    pub last_claim: Option<Claim>,
    /// The epoch of the last valid record (an event or a fence; 0: none).
    pub epoch: OwnerEpoch,
}

/// A record with a parseable `Aether-Version` header, or with epoch or fence headers that do
/// not parse.
#[derive(Debug)]
pub(crate) struct Claim {
    pub seq: u64,
    pub version: Option<Version>,
    /// Why it does not decode, if it does not.
    pub error: Option<String>,
}

/// The fail-closed error for a record at `seq` of `actor_id` that does not decode.
pub(crate) fn undecodable(
    actor_id: &ActorId,
    seq: u64,
    claimed_version: Option<Version>,
    reason: String,
) -> StoreError {
    StoreError::UndecodableRecord {
        actor_id: actor_id.clone(),
        position: seq,
        claimed_version,
        reason,
    }
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

    /// The actor's head. Fails closed: if the last record that claims a version (a parseable
    /// `Aether-Version` header) does not decode, or carries epoch or fence headers that do not
    /// parse, the head is unknown and this is [`StoreError::UndecodableRecord`]. A fence record
    /// on top gives the version it records (one round trip, as for an event). If a foreign
    /// record without that header sits on top, the version and epoch come from a scan of the
    /// actor's history (the only case where a head lookup is not one round trip).
    pub(crate) async fn head(&self, actor_id: &ActorId, subject: &str) -> Result<Head, StoreError> {
        let Some(last) = self.last_message(subject).await? else {
            return Ok(Head::EMPTY);
        };
        let record = RecordHeader::of(&last);
        if let Mark::Bad(reason) = &record.mark {
            let reason = reason.clone();
            return Err(undecodable(actor_id, record.seq, record.version, reason));
        }
        if record.fence().is_some() {
            // A valid fence record: its headers say all.
            return Ok(Head::of_record(record, false).expect("a valid fence"));
        }
        // The header is trusted only on a record that is a valid event: a foreign client could
        // forge `Aether-Version` on garbage. One parse, no extra round trip.
        if let Some(version) = record.version {
            return match decode(actor_id, &record, &last.payload) {
                Ok(_) => Ok(Head::of_record(record, true).expect("a decoded event")),
                Err(reason) => Err(undecodable(actor_id, record.seq, Some(version), reason)),
            };
        }
        let scan = self.scan(actor_id, subject, 1, record.seq).await?;
        if let Some(claim) = scan.last_claim
            && let Some(reason) = claim.error
        {
            return Err(undecodable(actor_id, claim.seq, claim.version, reason));
        }
        Ok(Head {
            seq: record.seq,
            version: scan.events.last().map_or(0, |(_, e)| e.version),
            epoch: scan.epoch,
            record: None,
        })
    }

    /// The last valid record with a version ≤ `version` (`head` just read from the server).
    ///
    /// The cost is bounded by the actor, not by the stream: first the actor's known chain of
    /// recent records (see [`head_cache`](super::head_cache)), then a walk back from the
    /// chain's oldest record through the predecessor each record names, at most
    /// [`WALK_LIMIT`] reads; only past that, a binary search over the stream sequences between
    /// the actor's first record and the walk's end (versions grow with the sequence on a
    /// subject).
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
        let fenced = head_record.fence().is_some();
        if head.version <= version && !fenced {
            return Ok(Some(head_record.clone()));
        }
        // The chain of events ends at the head, or under fence records at the event they were
        // written on: fences are links of the walk, never a floor.
        let top = if fenced {
            head_record.prev
        } else {
            Some(head.seq)
        };
        let mut chain = top.map_or_else(Vec::new, |seq| self.heads.chain(actor_id, seq));
        if chain.is_empty() && !fenced {
            chain.push(head_record.clone());
        }
        // The record the walk reads next (Some(0): the subject has nothing further back), and
        // the lowest stream sequence seen so far.
        let mut cursor = chain.first().map_or(top, |r| r.prev);
        let mut lowest = chain.first().map_or(head.seq, |r| r.seq);
        let mut walked = 0;
        let answer = loop {
            if let Some(answer) = floor_in_chain(&chain, version) {
                break Some(answer);
            }
            if cursor == Some(0) {
                break Some(None); // every event is above `version`
            }
            let Some(prev) = cursor.filter(|_| walked < WALK_LIMIT) else {
                break None;
            };
            match self.message_at(prev).await? {
                Some(m) if m.subject.as_str() == subject => {
                    let record = RecordHeader::of(&m);
                    let is_event = record.fence().is_none();
                    if is_event
                        && (record.version.is_none()
                            || decode(actor_id, &record, &m.payload).is_err())
                    {
                        break None;
                    }
                    walked += 1;
                    lowest = record.seq;
                    cursor = record.prev;
                    if is_event {
                        chain.insert(0, record);
                    }
                }
                _ => break None,
            }
        };
        if walked > 0 {
            self.heads.set_chain(actor_id, &chain);
        }
        match answer {
            Some(found) => Ok(found),
            None => {
                self.floor_by_search(actor_id, subject, head, lowest, version)
                    .await
            }
        }
    }

    /// Binary search for the floor of `version` among the subject's records before stream
    /// sequence `below`, starting at the actor's first record.
    async fn floor_by_search(
        &self,
        actor_id: &ActorId,
        subject: &str,
        head: &Head,
        below: u64,
        version: Version,
    ) -> Result<Option<RecordHeader>, StoreError> {
        let Some(first) = self.next_message(subject, 1).await? else {
            return Ok(None);
        };
        let (mut lo, mut hi, mut best) = (first.sequence, below.saturating_sub(1), None);
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
                // A foreign record breaks the ordering the search relies on; a fence record
                // holds no event to answer with. Both are rare this far back.
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
                id_digest: None,
                prev: None,
                mark: Mark::Event {
                    epoch: OwnerEpoch::UNOWNED, // not used by floor lookups
                },
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
        let mut read = self.ordered_read(subject.to_owned(), first, what).await?;
        loop {
            let Delivered { seq, message, .. } = read.next().await?;
            if seq > last {
                break;
            }
            let record = RecordHeader::without_id(seq, message.headers.as_ref());
            if let Some((epoch, _)) = record.fence() {
                // A fence record is no event: skipped, only its epoch counts.
                scan.epoch = epoch;
            } else {
                let decoded = decode(actor_id, &record, &message.payload);
                if record.version.is_some() || matches!(record.mark, Mark::Bad(_)) {
                    scan.last_claim = Some(Claim {
                        seq,
                        version: record.version,
                        error: decoded.as_ref().err().cloned(),
                    });
                }
                match decoded {
                    Ok(event) => {
                        scan.epoch = record.epoch().unwrap_or_default();
                        scan.events.push((seq, event));
                    }
                    Err(error) => scan.errors.push(ReplayError {
                        position: seq,
                        raw: message.payload.to_vec(),
                        error,
                    }),
                }
            }
            if seq == last {
                break;
            }
        }
        Ok(scan)
    }

    /// The records of `actor_id` from `from_version` on. The replay starts after the last
    /// event below `from_version` (found as a floor, see [`floor_record`](Self::floor_record)),
    /// not at the actor's first record.
    pub(crate) async fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> Result<ReplayResult, StoreError> {
        let subject = self.subject(actor_id);
        let Some(last) = self.last_message(&subject).await? else {
            return Ok(ReplayResult::default());
        };
        let record = RecordHeader::of(&last);
        let decoded = decode(actor_id, &record, &last.payload).is_ok();
        let first = match Head::of_record(record, decoded) {
            Some(head) if from_version > 1 => self
                .floor_record(actor_id, &subject, &head, from_version - 1)
                .await?
                .map_or(1, |floor| floor.seq + 1),
            // From the start, or an unreadable record on top: replay everything (and report it).
            _ => 1,
        };
        let scan = self.scan(actor_id, &subject, first, last.sequence).await?;
        Ok(from_version_on(scan, from_version))
    }

    /// The actor's latest snapshot and the records after the stream sequence it covers.
    ///
    /// The head it read is kept as the actor's head hint, as [`head`](Self::head) would keep
    /// it: a load is usually an activation, and the write that follows it then needs no read.
    pub(crate) async fn load(&self, actor_id: &ActorId) -> Result<LoadedActor, StoreError> {
        let subject = self.subject(actor_id);
        let stored = self.stored_snapshot(actor_id).await?;
        let Some(last) = self.last_message(&subject).await? else {
            if let Some(s) = stored {
                return Err(snapshot_ahead(actor_id, s.stream_sequence, 0));
            }
            self.heads.put(actor_id, Head::EMPTY);
            return Ok(LoadedActor::default());
        };
        let (first, snapshot) = match stored {
            Some(s) if s.stream_sequence > last.sequence => {
                return Err(snapshot_ahead(actor_id, s.stream_sequence, last.sequence));
            }
            Some(s) => (s.stream_sequence + 1, Some(s.snapshot)),
            None => (1, None),
        };
        let covered = snapshot.as_ref().map_or(0, |s| s.version);
        let scan = self.scan(actor_id, &subject, first, last.sequence).await?;
        // The last record decoded as an event with the version its header claims, or a valid
        // fence: the head that `head` would read (anything else is left to it).
        let record = RecordHeader::of(&last);
        let decoded = scan.events.last().is_some_and(|(seq, event)| {
            *seq == last.sequence && record.version == Some(event.version)
        });
        if let Some(head) = Head::of_record(record, decoded) {
            self.heads.put(actor_id, head);
        }
        Ok(LoadedActor {
            snapshot,
            events: scan
                .events
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e.version > covered)
                .collect(),
            errors: scan.errors,
        })
    }
}

/// A stored snapshot that claims to cover more of the stream than the actor has.
fn snapshot_ahead(actor_id: &ActorId, covered: u64, last: u64) -> StoreError {
    StoreError::Backend {
        message: format!(
            "the snapshot of {actor_id} claims to cover stream sequence {covered}, beyond the \
             actor's last message at {last}: it was not written by this store"
        ),
        source: None,
    }
}

/// The floor of `version` in `chain` (consecutive valid records, oldest first): `Some(record)`,
/// `Some(None)` if the chain starts at the subject's first record and above `version`, `None` if
/// the chain does not reach far enough back to tell.
fn floor_in_chain(chain: &[RecordHeader], version: Version) -> Option<Option<RecordHeader>> {
    let oldest = chain.first()?;
    if oldest.version.is_some_and(|v| v <= version) {
        return Some(
            chain
                .iter()
                .rev()
                .find(|r| r.version.is_some_and(|v| v <= version))
                .cloned(),
        );
    }
    (oldest.prev == Some(0)).then_some(None)
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
