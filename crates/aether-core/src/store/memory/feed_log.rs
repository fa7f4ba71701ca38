//! [`FeedLog`]: the in-memory store's order of records across actors, for
//! [`EventFeed`](crate::EventFeed).
//!
//! The records themselves stay in their actors' logs; the feed keeps, per record, which actor
//! (a dense number, 4 bytes) and where in its log (4 bytes). A record is pushed here while its
//! actor's write lock is held, *after* it is in the actor's log, and its position is its index
//! here + 1, taken under this log's lock: so positions follow commit order (a record with a
//! lower position is never committed later), one actor's records are in version order, and a
//! batch's records are contiguous. Readers copy the references out under the lock, then read
//! the actors' logs under their read locks (this lock is never held while taking another).

use std::sync::{Mutex, PoisonError};

use crate::ActorId;
use crate::store::StoreError;

/// Which record: an event or an undecodable record, of which actor, at which index of its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordRef {
    Event {
        actor: u32,
        index: u32,
    },
    /// Only foreign writes are undecodable; the store writes them for the suite (`testing`).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Undecodable {
        actor: u32,
        index: u32,
    },
}

impl RecordRef {
    fn actor(self) -> u32 {
        match self {
            Self::Event { actor, .. } | Self::Undecodable { actor, .. } => actor,
        }
    }
}

#[derive(Default)]
struct Entries {
    /// Actor ids by their feed number.
    actors: Vec<ActorId>,
    /// Records in feed order: position `p` is `records[p - 1]`.
    records: Vec<RecordRef>,
}

#[derive(Default)]
pub(super) struct FeedLog {
    entries: Mutex<Entries>,
}

/// The in-memory store numbers actors and log indexes with `u32` to keep the feed small.
fn too_many(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!("the in-memory store holds at most {} {what}", u32::MAX),
        source: None,
    }
}

impl FeedLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The feed number of `actor_id`, given the one its log remembers (`known`); numbers it if
    /// it has none yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] past `u32::MAX` actors.
    pub(super) fn actor_number(
        &self,
        known: Option<u32>,
        actor_id: &ActorId,
    ) -> Result<u32, StoreError> {
        if let Some(number) = known {
            return Ok(number);
        }
        let mut entries = self.lock();
        let number = u32::try_from(entries.actors.len()).map_err(|_| too_many("actors"))?;
        entries.actors.push(actor_id.clone());
        Ok(number)
    }

    /// Appends `records` to the feed, contiguously.
    pub(super) fn push(&self, records: impl IntoIterator<Item = RecordRef>) {
        self.lock().records.extend(records);
    }

    /// The records after position `after`, at most `max`, with their positions and actors.
    pub(super) fn read(&self, after: u64, max: usize) -> Vec<(u64, ActorId, RecordRef)> {
        let entries = self.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        let Some(page) = entries.records.get(start..) else {
            return Vec::new();
        };
        page.iter()
            .take(max)
            .zip(after + 1..)
            .map(|(&record, position)| {
                let actor = entries.actors[record.actor() as usize].clone();
                (position, actor, record)
            })
            .collect()
    }
}

/// The log index `index` as a feed index.
///
/// # Errors
///
/// [`StoreError::Backend`] past `u32::MAX` records of one actor.
pub(super) fn log_index(index: usize) -> Result<u32, StoreError> {
    u32::try_from(index).map_err(|_| too_many("records per actor"))
}
