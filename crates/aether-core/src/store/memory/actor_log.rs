//! [`ActorLog`]: one actor's records in the in-memory store.

use crate::store::{OwnerEpoch, ReplayError, ReplayResult};
use crate::{Event, Version};

/// One actor's history: its events in version order, plus any undecodable records written by
/// foreign clients (kept apart so the hot path never looks at them).
#[derive(Default)]
pub(super) struct ActorLog {
    events: Vec<Event>,
    undecodable: Vec<Undecodable>,
    /// The actor's number in the store's feed, once it has a record.
    pub(super) feed_number: Option<u32>,
    /// The ownership epoch of the actor's head: of its last event or of a later fence.
    /// Epochs never decrease along a log, so this is also the highest epoch of any record (a
    /// fence is kept as nothing more: it is no event and holds no version of its own).
    pub(super) epoch: OwnerEpoch,
}

struct Undecodable {
    /// How many events preceded this record: replay from event `i` reports the records with
    /// `events_before >= i`.
    events_before: usize,
    error: ReplayError,
}

impl ActorLog {
    pub(super) fn latest_version(&self) -> Version {
        self.events.last().map_or(0, |e| e.version)
    }

    /// How many events the log holds (the index the next one gets).
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// The event at `index` (in append order).
    pub(super) fn event_at(&self, index: usize) -> Option<&Event> {
        self.events.get(index)
    }

    /// The undecodable record at `index` (in append order).
    pub(super) fn undecodable_at(&self, index: usize) -> Option<&ReplayError> {
        self.undecodable.get(index).map(|u| &u.error)
    }

    /// Appends an event whose version the caller has checked against `latest_version`.
    pub(super) fn append(&mut self, event: Event) {
        debug_assert!(event.version > self.latest_version());
        self.events.push(event);
    }

    /// Appends an undecodable record; returns its index among them.
    #[cfg(feature = "testing")]
    pub(super) fn append_undecodable(&mut self, raw: Vec<u8>, error: String) -> usize {
        let position = (self.events.len() + self.undecodable.len() + 1) as u64;
        self.undecodable.push(Undecodable {
            events_before: self.events.len(),
            error: ReplayError {
                position,
                raw,
                error,
            },
        });
        self.undecodable.len() - 1
    }

    /// Index of the first event with `version >= from` (versions are sorted).
    fn start(&self, from: Version) -> usize {
        self.events.partition_point(|e| e.version < from)
    }

    pub(super) fn events_from(&self, from: Version) -> &[Event] {
        &self.events[self.start(from)..]
    }

    pub(super) fn replay_from(&self, from: Version) -> ReplayResult {
        let start = self.start(from);
        ReplayResult {
            events: self.events[start..].to_vec(),
            errors: self
                .undecodable
                .iter()
                .filter(|u| u.events_before >= start)
                .map(|u| u.error.clone())
                .collect(),
        }
    }
}
