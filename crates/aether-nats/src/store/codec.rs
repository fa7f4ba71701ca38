//! How an event sits in a JetStream message: the event's JSON as payload, and the version, type
//! and id in headers so that head lookups never parse the payload; the writer's ownership epoch
//! in a header when it wrote with one; and how a fence record (no payload, headers only) marks
//! the point after which no older owner may write.

use aether_core::{ActorId, Event, OwnerEpoch, StoreError, Version};
use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::message::StreamMessage;
use bytes::Bytes;

/// Header carrying the event's version (ASCII decimal).
pub const VERSION_HEADER: &str = "Aether-Version";
/// Header carrying the event's type.
pub const TYPE_HEADER: &str = "Aether-Type";
/// Header carrying the writer's ownership epoch (ASCII decimal), on every record written with
/// one (`FencedEventStore::save_events_as`) and on fence records. A record without it has
/// epoch 0.
pub const OWNER_EPOCH_HEADER: &str = "Aether-Owner-Epoch";
/// Header that marks a **fence record**; its value is the fence's epoch (ASCII decimal). A fence
/// record is no event (its payload is empty): readers skip every message that carries this
/// header.
pub const FENCE_HEADER: &str = "Aether-Fence";
/// Header of a fence record: the actor's version it was written at (ASCII decimal, 0 for an
/// actor without events), which is the version of the last event before it.
pub const FENCE_VERSION_HEADER: &str = "Aether-Fence-Version";

/// The start of every fence record's `Nats-Msg-Id`. It holds spaces, which an event id never
/// does, so a fence's id cannot collide with an event's.
const FENCE_ID_PREFIX: &str = "Aether fence ";

/// Redirects `Nats-Expected-Last-Subject-Sequence` to another subject (ADR-50/2.12).
const EXPECTED_SUBJECT_HEADER: &str = "Nats-Expected-Last-Subject-Sequence-Subject";

/// The headers and payload of `event`, guarded by `expected` (the stream sequence of the
/// actor's head the write is based on), or unguarded for later messages of an atomic batch;
/// stamped with `epoch` if the writer has one.
pub(crate) fn encode(
    event: &Event,
    expected: Option<u64>,
    epoch: Option<OwnerEpoch>,
) -> Result<(HeaderMap, Bytes), StoreError> {
    let payload = serde_json::to_vec(event).map_err(|e| StoreError::Backend {
        message: format!("could not encode event {}: {e}", event.id),
        source: Some(Box::new(e)),
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, event.id.as_str());
    headers.insert(VERSION_HEADER, event.version.to_string());
    headers.insert(TYPE_HEADER, event.event_type.as_str());
    if let Some(expected) = expected {
        headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string());
    }
    if let Some(epoch) = epoch {
        headers.insert(OWNER_EPOCH_HEADER, epoch.to_string());
    }
    Ok((headers, Bytes::from(payload)))
}

/// The headers of a fence record at `epoch` on top of the head at stream sequence `expected`,
/// whose version is `version`; `id` is the fence's `Nats-Msg-Id` (see [`fence_id`]). The
/// payload is empty.
pub(crate) fn encode_fence(
    epoch: OwnerEpoch,
    version: Version,
    expected: u64,
    id: &str,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, id);
    headers.insert(FENCE_HEADER, epoch.to_string());
    headers.insert(OWNER_EPOCH_HEADER, epoch.to_string());
    headers.insert(FENCE_VERSION_HEADER, version.to_string());
    headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string());
    headers
}

/// A new fence record id, unique and never an event id.
pub(crate) fn fence_id() -> String {
    format!("{FENCE_ID_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// What a record is, as far as its headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mark {
    /// An event (or a foreign record), written at this epoch (0 without the header).
    Event { epoch: OwnerEpoch },
    /// A fence record: its epoch, and the actor's version it was written at.
    Fence { epoch: OwnerEpoch, version: Version },
    /// An epoch or fence header that does not parse, or a fence whose headers disagree: the
    /// record cannot be trusted (the store fails closed on it).
    Bad(String),
}

impl Mark {
    fn from_headers(headers: Option<&HeaderMap>) -> Self {
        let Some(headers) = headers else {
            return Self::Event {
                epoch: OwnerEpoch::UNOWNED,
            };
        };
        let number = |name: &str| -> Result<Option<u64>, String> {
            headers
                .get(name)
                .map(|v| {
                    v.as_str()
                        .parse()
                        .map_err(|_| format!("header {name}: {:?} is not a number", v.as_str()))
                })
                .transpose()
        };
        let parsed = (|| {
            let owner = number(OWNER_EPOCH_HEADER)?.map(OwnerEpoch::new);
            let Some(fence) = number(FENCE_HEADER)?.map(OwnerEpoch::new) else {
                return Ok(Self::Event {
                    epoch: owner.unwrap_or_default(),
                });
            };
            if owner.is_some_and(|owner| owner != fence) {
                return Err(format!(
                    "a fence record whose {FENCE_HEADER} and {OWNER_EPOCH_HEADER} disagree"
                ));
            }
            let version = number(FENCE_VERSION_HEADER)?
                .ok_or_else(|| format!("a fence record without {FENCE_VERSION_HEADER}"))?;
            Ok(Self::Fence {
                epoch: fence,
                version,
            })
        })();
        parsed.unwrap_or_else(Self::Bad)
    }
}

/// What the headers of a stored message say, without looking at its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    /// Stream sequence of the message.
    pub seq: u64,
    /// `Aether-Version`, if present and a number ≥ 1 (absent: a foreign record).
    pub version: Option<Version>,
    /// `Nats-Msg-Id`, if present and read.
    pub id: Option<String>,
    /// When `id` is not kept (records in the head cache's chain keep no text), the digest of
    /// `Nats-Msg-Id`: enough to tell that an id differs, not that it is the same.
    pub id_digest: Option<u64>,
    /// The stream sequence of the subject's previous message (0: none), if the record carried
    /// `Nats-Expected-Last-Subject-Sequence` for its own subject: the server checked it when
    /// it stored the record, so it is a fact, whoever wrote the record.
    pub prev: Option<u64>,
    /// An event or a fence, and its epoch.
    pub mark: Mark,
}

impl RecordHeader {
    pub(crate) fn of(message: &StreamMessage) -> Self {
        Self::from_headers(message.sequence, Some(&message.headers))
    }

    pub(crate) fn from_headers(seq: u64, headers: Option<&HeaderMap>) -> Self {
        Self {
            id: headers
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned()),
            ..Self::without_id(seq, headers)
        }
    }

    /// Sequence and version only: replay checks versions and takes ids from payloads, so it
    /// skips copying the id header.
    pub(crate) fn without_id(seq: u64, headers: Option<&HeaderMap>) -> Self {
        Self {
            seq,
            version: headers
                .and_then(|h| h.get(VERSION_HEADER))
                .and_then(|v| v.as_str().parse().ok())
                .filter(|&v| v >= 1),
            id: None,
            id_digest: None,
            prev: headers
                // With this header the expected sequence was checked on another subject.
                .filter(|h| h.get(EXPECTED_SUBJECT_HEADER).is_none())
                .and_then(|h| h.get(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE))
                .and_then(|v| v.as_str().parse().ok())
                .filter(|&p| p < seq),
            mark: Mark::from_headers(headers),
        }
    }

    /// The record's epoch, unless its headers cannot be trusted.
    pub(crate) fn epoch(&self) -> Option<OwnerEpoch> {
        match self.mark {
            Mark::Event { epoch } | Mark::Fence { epoch, .. } => Some(epoch),
            Mark::Bad(_) => None,
        }
    }

    /// The fence's epoch and version, if this is a valid fence record.
    pub(crate) fn fence(&self) -> Option<(OwnerEpoch, Version)> {
        match self.mark {
            Mark::Fence { epoch, version } => Some((epoch, version)),
            _ => None,
        }
    }
}

/// Whether a record's id is a given one, as far as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdMatch {
    Same,
    Different,
    /// Only the digest is known, and it matches: read the record to be sure.
    Unsure,
}

impl RecordHeader {
    /// Whether this record's `Nats-Msg-Id` is `id`.
    pub(crate) fn id_match(&self, id: &str) -> IdMatch {
        match (&self.id, self.id_digest) {
            (Some(text), _) if text == id => IdMatch::Same,
            (Some(_), _) | (None, None) => IdMatch::Different,
            (None, Some(digest)) if digest == id_digest(id) => IdMatch::Unsure,
            (None, Some(_)) => IdMatch::Different,
        }
    }

    /// The digest of the record's id, from its text or as kept.
    pub(crate) fn digest(&self) -> Option<u64> {
        self.id.as_deref().map(id_digest).or(self.id_digest)
    }
}

/// A digest of an event id (the same in every process of one build). Not collision-proof: an
/// equal digest only says "maybe the same id".
pub(crate) fn id_digest(id: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// Decodes a stored message of `actor_id`'s subject as an event, or says why it is not one.
///
/// A record is an event only if its payload is a valid event of this actor and its
/// `Aether-Version` header agrees with the payload: the header is what head lookups trust.
pub(crate) fn decode(
    actor_id: &ActorId,
    header: &RecordHeader,
    payload: &[u8],
) -> Result<Event, String> {
    match &header.mark {
        Mark::Event { .. } => {}
        Mark::Fence { .. } => return Err("a fence record, not an event".to_owned()),
        Mark::Bad(reason) => return Err(reason.clone()),
    }
    let event = Event::from_json(payload).map_err(|e| format!("not an event: {e}"))?;
    if &event.actor_id != actor_id {
        return Err(format!(
            "event of actor {} on the subject of actor {actor_id}",
            event.actor_id
        ));
    }
    match header.version {
        Some(v) if v == event.version => Ok(event),
        Some(v) => Err(format!(
            "header {VERSION_HEADER}: {v} disagrees with the payload's version {}",
            event.version
        )),
        None => Err(format!(
            "no valid {VERSION_HEADER} header: not written by an Aether store"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_known_by_its_digest_only_is_unsure_when_it_matches_and_different_otherwise() {
        let full = RecordHeader {
            seq: 1,
            version: Some(1),
            id: Some("e-1".to_owned()),
            id_digest: None,
            prev: None,
            mark: Mark::Event {
                epoch: OwnerEpoch::UNOWNED,
            },
        };
        assert_eq!(full.id_match("e-1"), IdMatch::Same);
        assert_eq!(full.id_match("e-2"), IdMatch::Different);
        let digest_only = RecordHeader {
            id: None,
            id_digest: full.digest(),
            ..full.clone()
        };
        assert_eq!(digest_only.id_match("e-1"), IdMatch::Unsure);
        assert_eq!(digest_only.id_match("e-2"), IdMatch::Different);
        let no_id = RecordHeader {
            id: None,
            id_digest: None,
            ..full
        };
        assert_eq!(no_id.id_match("e-1"), IdMatch::Different);
    }

    #[test]
    fn round_trip_through_headers_and_payload() {
        let actor = ActorId::new("a.b").unwrap();
        let event = Event::new(actor.clone(), "Opened", 7);
        let (headers, payload) = encode(&event, Some(3), None).unwrap();
        let header = RecordHeader::from_headers(11, Some(&headers));
        assert_eq!(header.version, Some(7));
        assert_eq!(header.id.as_deref(), Some(event.id.as_str()));
        assert_eq!(header.prev, Some(3));
        assert_eq!(header.epoch(), Some(OwnerEpoch::UNOWNED));
        assert_eq!(decode(&actor, &header, &payload).unwrap(), event);
        let (headers, payload) = encode(&event, Some(3), Some(OwnerEpoch::new(9))).unwrap();
        let header = RecordHeader::from_headers(11, Some(&headers));
        assert_eq!(header.epoch(), Some(OwnerEpoch::new(9)));
        assert_eq!(header.fence(), None);
        assert_eq!(decode(&actor, &header, &payload).unwrap(), event);
    }

    #[test]
    fn a_fence_record_is_known_by_its_headers_and_is_no_event() {
        let actor = ActorId::new("a").unwrap();
        let id = fence_id();
        assert!(
            aether_core::EventId::new(&id).is_err(),
            "a fence id can never be an event id"
        );
        let headers = encode_fence(OwnerEpoch::new(4), 7, 12, &id);
        let header = RecordHeader::from_headers(13, Some(&headers));
        assert_eq!(header.fence(), Some((OwnerEpoch::new(4), 7)));
        assert_eq!(header.epoch(), Some(OwnerEpoch::new(4)));
        assert_eq!(header.version, None, "a fence claims no event version");
        assert_eq!(header.prev, Some(12));
        assert_eq!(header.id.as_deref(), Some(id.as_str()));
        assert!(decode(&actor, &header, b"").unwrap_err().contains("fence"));
    }

    #[test]
    fn unreadable_epoch_and_fence_headers_make_a_bad_record() {
        let actor = ActorId::new("a").unwrap();
        let event = Event::new(actor.clone(), "Opened", 1);
        let bad = |edit: &dyn Fn(&mut HeaderMap)| {
            let (mut headers, payload) = encode(&event, None, Some(OwnerEpoch::new(2))).unwrap();
            edit(&mut headers);
            let header = RecordHeader::from_headers(1, Some(&headers));
            assert_eq!(header.epoch(), None, "{headers:?}");
            assert!(decode(&actor, &header, &payload).is_err());
        };
        bad(&|h| h.insert(OWNER_EPOCH_HEADER, "two"));
        bad(&|h| h.insert(FENCE_HEADER, "x"));
        bad(&|h| h.insert(FENCE_HEADER, "3")); // disagrees with Aether-Owner-Epoch: 2
        bad(&|h| h.insert(FENCE_HEADER, "2")); // no Aether-Fence-Version
        let mut fence = encode_fence(OwnerEpoch::new(2), 1, 1, &fence_id());
        fence.insert(FENCE_VERSION_HEADER, "-1");
        assert_eq!(RecordHeader::from_headers(2, Some(&fence)).epoch(), None);
    }

    #[test]
    fn foreign_and_inconsistent_records_are_errors() {
        let actor = ActorId::new("a").unwrap();
        let event = Event::new(actor.clone(), "Opened", 7);
        let (mut headers, payload) = encode(&event, None, None).unwrap();
        let other = ActorId::new("b").unwrap();
        let header = RecordHeader::from_headers(1, Some(&headers));
        assert!(
            decode(&other, &header, &payload)
                .unwrap_err()
                .contains("actor")
        );
        assert!(decode(&actor, &RecordHeader::from_headers(1, None), &payload).is_err());
        headers.insert(VERSION_HEADER, "8");
        let header = RecordHeader::from_headers(1, Some(&headers));
        assert!(
            decode(&actor, &header, &payload)
                .unwrap_err()
                .contains("disagrees")
        );
        headers.insert(VERSION_HEADER, "0");
        assert_eq!(RecordHeader::from_headers(1, Some(&headers)).version, None);
        assert!(
            decode(&actor, &header, b"\x00garbage")
                .unwrap_err()
                .starts_with("not an event")
        );
    }
}
