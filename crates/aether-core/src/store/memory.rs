//! [`InMemoryEventStore`]: the complete store contract in process memory, for tests, examples
//! and single-process services that do not need durability.
//!
//! Layout, chosen so that saves and reads of different actors never wait for each other:
//!
//! ```text
//! actors:    sharded map  ActorId -> RwLock<ActorLog>   (one lock per actor)
//! event_ids: sharded map  EventId -> (ActorId, Version)  (the deduplication index)
//! snapshots: sharded map  ActorId -> ActorSnapshot
//! feed:      Mutex<(actor number, log index) per record>  (the EventFeed order, 12 B/record)
//! ```
//!
//! A save holds its actor's write lock while it checks the version and claims the event ids, so
//! the version check and the append are one atomic step. Locks are always taken in the order
//! actor shard → actor log → id shard, and actor log → feed, never the other way round, so
//! there is no deadlock. The feed's lock is held only to number an actor, to push a save's
//! records (after they are in the actor's log) and to copy references out for a reader.
//!
//! Every operation completes before its future is first polled (the futures are
//! `std::future::Ready`): nothing here ever waits, and moving the event into a future state
//! machine would only cost copies.

mod actor_log;
mod feed_log;

use std::future::{Future, ready};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, PoisonError, RwLock};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use foldhash::fast::RandomState;

use super::{
    EventFeed, EventLimits, EventStore, FeedEvent, FeedPage, FeedPosition, FencedEventStore,
    InvalidSnapshot, LoadedActor, OwnerEpoch, ReplayError, ReplayResult, SaveOutcome,
    SnapshotOutcome, SnapshotStore, StoreError, StoreMetrics, metrics::ReadOp,
};
use crate::{ActorId, ActorSnapshot, Event, EventId, Version};
use actor_log::ActorLog;
use feed_log::{FeedLog, RecordRef, log_index};

/// Enough shards that two threads rarely meet on one, few enough to stay small.
const SHARDS: usize = 64;

/// An [`EventStore`] and [`SnapshotStore`] in memory.
///
/// Thread-safe and cheap to clone (clones share the same data). There is no global lock: each
/// actor has its own, and the maps of actors and event ids are sharded.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventStore, InMemoryEventStore};
///
/// # futures::executor::block_on(async {
/// let store = InMemoryEventStore::new();
/// let order = ActorId::new("order-17")?;
/// for (version, kind) in [(1, "Placed"), (2, "Paid"), (5, "Shipped")] {
///     store.save_event(Event::new(order.clone(), kind, version)).await?;
/// }
/// assert_eq!(store.latest_version(&order).await?, 5); // gaps are allowed
/// let tail = store.events(&order, 2).await?;
/// assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct InMemoryEventStore {
    inner: Arc<Inner>,
}

struct Inner {
    limits: EventLimits,
    actors: DashMap<ActorId, RwLock<ActorLog>, RandomState>,
    event_ids: DashMap<IdKey, Slot, BuildHasherDefault<PassThrough>>,
    id_hasher: RandomState,
    snapshots: DashMap<ActorId, ActorSnapshot, RandomState>,
    feed: FeedLog,
    metrics: StoreMetrics,
}

/// An event id with its hash computed once, so that growing the index never rehashes ids.
#[derive(Clone, PartialEq, Eq)]
struct IdKey {
    hash: u64,
    id: EventId,
}

impl Hash for IdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hands the precomputed hash of an [`IdKey`] through unchanged.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `IdKey` is hashed with this hasher, and it writes a single u64.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// Where an event id is stored.
#[derive(Clone, PartialEq, Eq)]
struct Slot {
    actor_id: ActorId,
    version: Version,
}

impl Slot {
    fn of(event: &Event) -> Self {
        Self {
            actor_id: event.actor_id.clone(),
            version: event.version,
        }
    }

    fn reused_by(&self, id: &EventId) -> StoreError {
        StoreError::EventIdReused {
            id: id.clone(),
            existing_actor: self.actor_id.clone(),
            existing_version: self.version,
        }
    }
}

impl Default for Inner {
    fn default() -> Self {
        Self::new(EventLimits::default())
    }
}

impl Inner {
    fn new(limits: EventLimits) -> Self {
        Self {
            limits,
            actors: DashMap::with_hasher_and_shard_amount(RandomState::default(), SHARDS),
            event_ids: DashMap::with_hasher_and_shard_amount(BuildHasherDefault::default(), SHARDS),
            id_hasher: RandomState::default(),
            snapshots: DashMap::with_hasher_and_shard_amount(RandomState::default(), SHARDS),
            feed: FeedLog::default(),
            metrics: StoreMetrics::new("memory", ""),
        }
    }

    fn id_key(&self, id: &EventId) -> IdKey {
        IdKey {
            hash: self.id_hasher.hash_one(id.as_str()),
            id: id.clone(),
        }
    }
}

impl std::fmt::Debug for InMemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryEventStore")
            .field("actors", &self.inner.actors.len())
            .field("events", &self.inner.event_ids.len())
            .field("limits", &self.inner.limits)
            .finish()
    }
}

fn write_lock(log: &RwLock<ActorLog>) -> std::sync::RwLockWriteGuard<'_, ActorLog> {
    log.write().unwrap_or_else(PoisonError::into_inner)
}

impl InMemoryEventStore {
    /// An empty store with the default [`EventLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that enforces `limits`.
    pub fn with_limits(limits: EventLimits) -> Self {
        Self {
            inner: Arc::new(Inner::new(limits)),
        }
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> EventLimits {
        self.inner.limits
    }

    /// Runs `f` on the actor's log under its write lock, creating the log if needed.
    fn with_log_mut<R>(&self, actor_id: &ActorId, f: impl FnOnce(&mut ActorLog) -> R) -> R {
        // Fast path: the actor exists; only a shared lock on its shard is taken.
        if let Some(log) = self.inner.actors.get(actor_id) {
            return f(&mut write_lock(&log));
        }
        let log = self
            .inner
            .actors
            .entry(actor_id.clone())
            .or_default()
            .downgrade();
        f(&mut write_lock(&log))
    }

    /// Runs `f` on the actor's log under its read lock; `None` for an unknown actor.
    fn with_log<R>(&self, actor_id: &ActorId, f: impl FnOnce(&ActorLog) -> R) -> Option<R> {
        let log = self.inner.actors.get(actor_id)?;
        Some(f(&log.read().unwrap_or_else(PoisonError::into_inner)))
    }

    fn save_one(&self, event: Event, epoch: OwnerEpoch) -> Result<SaveOutcome, StoreError> {
        let metrics = &self.inner.metrics;
        let _span = metrics
            .save_span(&event.actor_id, event.version, 1)
            .entered();
        let started = std::time::Instant::now();
        let outcome = self.save_one_unmetered(event, epoch);
        metrics.saved(started, &outcome, 1);
        outcome
    }

    fn save_one_unmetered(
        &self,
        event: Event,
        epoch: OwnerEpoch,
    ) -> Result<SaveOutcome, StoreError> {
        self.inner.limits.check_event(&event)?;
        // The lookup borrows the map, not the event, so the event can be moved in afterwards.
        match self.inner.actors.get(&event.actor_id) {
            Some(log) => self.append_one(&mut write_lock(&log), event, epoch),
            None => {
                let log = self
                    .inner
                    .actors
                    .entry(event.actor_id.clone())
                    .or_default()
                    .downgrade();
                self.append_one(&mut write_lock(&log), event, epoch)
            }
        }
    }

    /// The epoch check, version check, deduplication and append of one event, under its
    /// actor's lock.
    fn append_one(
        &self,
        log: &mut ActorLog,
        event: Event,
        epoch: OwnerEpoch,
    ) -> Result<SaveOutcome, StoreError> {
        let current = log.latest_version();
        let key = self.inner.id_key(&event.id);
        if event.version <= current {
            // A stored copy is a duplicate whoever asks, fenced or not (it was saved before
            // any fence: nothing lands after one); anything else, from a fenced writer, is
            // refused as fenced.
            return match self.inner.event_ids.get(&key) {
                Some(slot) if *slot == Slot::of(&event) => Ok(SaveOutcome::Duplicate),
                stored => {
                    check_epoch(log, &event.actor_id, epoch)?;
                    Err(match stored {
                        Some(slot) => slot.reused_by(&event.id),
                        None => conflict(&event, current),
                    })
                }
            };
        }
        check_epoch(log, &event.actor_id, epoch)?;
        let (actor, index) = self.feed_slots(log, &event.actor_id, 1)?;
        match self.inner.event_ids.entry(key) {
            // The slot (actor, version) is free, so an existing id names another event.
            Entry::Occupied(slot) => return Err(slot.get().reused_by(&event.id)),
            Entry::Vacant(free) => {
                free.insert(Slot::of(&event));
            }
        }
        log.append(event);
        log.epoch = epoch;
        self.inner.feed.push([RecordRef::Event { actor, index }]);
        Ok(SaveOutcome::Saved)
    }

    /// The feed number of the log's actor and the feed index of the log's next event, checked
    /// to leave room for `count` events.
    fn feed_slots(
        &self,
        log: &mut ActorLog,
        actor_id: &ActorId,
        count: usize,
    ) -> Result<(u32, u32), StoreError> {
        let index = log_index(log.len())?;
        log_index(log.len() + count)?;
        let actor = self.inner.feed.actor_number(log.feed_number, actor_id)?;
        log.feed_number = Some(actor);
        Ok((actor, index))
    }

    fn save_batch(&self, events: Vec<Event>, epoch: OwnerEpoch) -> Result<SaveOutcome, StoreError> {
        let metrics = &self.inner.metrics;
        let len = events.len();
        let _span = match events.first() {
            Some(first) => metrics.save_span(&first.actor_id, first.version, len),
            None => tracing::Span::none(),
        }
        .entered();
        let started = std::time::Instant::now();
        let outcome = self
            .inner
            .limits
            .check_batch(&events)
            .map_err(StoreError::from)
            .and_then(|()| {
                let actor_id = events[0].actor_id.clone();
                self.with_log_mut(&actor_id, |log| self.append_batch(log, events, epoch))
            });
        metrics.saved(started, &outcome, len);
        outcome
    }

    fn append_batch(
        &self,
        log: &mut ActorLog,
        events: Vec<Event>,
        epoch: OwnerEpoch,
    ) -> Result<SaveOutcome, StoreError> {
        let current = log.latest_version();
        if events[0].version <= current {
            // As for one event: a stored copy is a duplicate, fenced writer or not.
            return match self.stale_batch_error(&events, current) {
                Some(err) => {
                    check_epoch(log, &events[0].actor_id, epoch)?;
                    Err(err)
                }
                None => Ok(SaveOutcome::Duplicate),
            };
        }
        check_epoch(log, &events[0].actor_id, epoch)?;
        let (actor, first) = self.feed_slots(log, &events[0].actor_id, events.len())?;
        let keys: Vec<IdKey> = events.iter().map(|e| self.inner.id_key(&e.id)).collect();
        // Check every id before claiming any, so that a batch refused for a stored id never
        // holds ids it gives back (another writer could otherwise see them for a moment). Only
        // two writers racing for the same new id can still make a claim roll back.
        for (event, key) in events.iter().zip(&keys) {
            if let Some(slot) = self.inner.event_ids.get(key) {
                return Err(slot.reused_by(&event.id));
            }
        }
        for (claimed, (event, key)) in events.iter().zip(&keys).enumerate() {
            match self.inner.event_ids.entry(key.clone()) {
                Entry::Occupied(slot) => {
                    let err = slot.get().reused_by(&event.id);
                    drop(slot);
                    // All or nothing: release the ids this batch already claimed.
                    for earlier in &keys[..claimed] {
                        self.inner.event_ids.remove(earlier);
                    }
                    return Err(err);
                }
                Entry::Vacant(free) => {
                    free.insert(Slot::of(event));
                }
            }
        }
        let count = events.len() as u32;
        for event in events {
            log.append(event);
        }
        log.epoch = epoch;
        // `feed_slots` checked that `first + count` fits.
        self.inner
            .feed
            .push((first..first + count).map(|index| RecordRef::Event { actor, index }));
        Ok(SaveOutcome::Saved)
    }

    /// For a batch whose first version is not above `current`: the error to report, or `None`
    /// if the whole batch is already stored exactly (a duplicate).
    fn stale_batch_error(&self, events: &[Event], current: Version) -> Option<StoreError> {
        let mut all_stored = true;
        for event in events {
            match self.inner.event_ids.get(&self.inner.id_key(&event.id)) {
                Some(slot) if *slot == Slot::of(event) => {}
                Some(slot) => return Some(slot.reused_by(&event.id)),
                None => all_stored = false,
            }
        }
        (!all_stored).then(|| conflict(&events[0], current))
    }

    fn save_snapshot_now(&self, snapshot: ActorSnapshot) -> Result<SnapshotOutcome, StoreError> {
        self.inner.limits.check_snapshot(&snapshot)?;
        let latest = self
            .with_log(&snapshot.actor_id, ActorLog::latest_version)
            .unwrap_or(0);
        if snapshot.version > latest {
            return Err(InvalidSnapshot::AheadOfEvents {
                actor_id: snapshot.actor_id,
                version: snapshot.version,
                latest,
            }
            .into());
        }
        match self.inner.snapshots.entry(snapshot.actor_id.clone()) {
            Entry::Occupied(stored) if stored.get().version > snapshot.version => {
                Ok(SnapshotOutcome::KeptNewer {
                    stored_version: stored.get().version,
                })
            }
            Entry::Occupied(mut stored) => {
                stored.insert(snapshot);
                Ok(SnapshotOutcome::Saved)
            }
            Entry::Vacant(free) => {
                free.insert(snapshot);
                Ok(SnapshotOutcome::Saved)
            }
        }
    }

    /// Records `raw` on the actor's log as a foreign client could write it.
    ///
    /// If `raw` decodes as an event of this actor it is saved through the normal path (version
    /// check included); otherwise it is kept as an undecodable record that
    /// [`EventStore::events_with_errors`] reports and [`EventStore::events`] skips. The
    /// conformance suite uses this to check how stores treat corrupt data.
    ///
    /// # Errors
    ///
    /// Those of [`EventStore::save_event`] when `raw` is a valid event.
    #[cfg(feature = "testing")]
    pub fn write_raw_record(&self, actor_id: &ActorId, raw: Vec<u8>) -> Result<(), StoreError> {
        match serde_json::from_slice::<Event>(&raw) {
            Ok(event) if event.actor_id == *actor_id => {
                self.save_one(event, OwnerEpoch::UNOWNED).map(drop)
            }
            Ok(event) => Err(StoreError::Backend {
                message: format!(
                    "record for actor {} written to the log of {actor_id}",
                    event.actor_id
                ),
                source: None,
            }),
            Err(error) => self.with_log_mut(actor_id, |log| {
                let actor = self.inner.feed.actor_number(log.feed_number, actor_id)?;
                log.feed_number = Some(actor);
                let index = log_index(log.append_undecodable(raw, error.to_string()))?;
                self.inner
                    .feed
                    .push([RecordRef::Undecodable { actor, index }]);
                Ok(())
            }),
        }
    }
}

impl InMemoryEventStore {
    fn read_feed_now(&self, after: FeedPosition, max: usize) -> FeedPage {
        let mut page = FeedPage {
            next: after,
            ..FeedPage::default()
        };
        for (position, actor_id, record) in self.inner.feed.read(after.get(), max) {
            // Every record in the feed is in its actor's log (pushed after it, never removed).
            let Some(found) = self.with_log(&actor_id, |log| match record {
                RecordRef::Event { index, .. } => {
                    log.event_at(index as usize).map(|event| Ok(event.clone()))
                }
                RecordRef::Undecodable { index, .. } => {
                    log.undecodable_at(index as usize).map(|e| Err(e.clone()))
                }
            }) else {
                break;
            };
            let position = FeedPosition::new(position);
            match found {
                Some(Ok(event)) => page.events.push(FeedEvent { position, event }),
                Some(Err(error)) => page.errors.push(ReplayError {
                    position: position.get(),
                    ..error
                }),
                None => break,
            }
            page.next = position;
        }
        page
    }
}

/// Refuses a write at `epoch` on a log whose head carries a higher one.
fn check_epoch(log: &ActorLog, actor_id: &ActorId, epoch: OwnerEpoch) -> Result<(), StoreError> {
    if log.epoch > epoch {
        return Err(fenced(actor_id, epoch, log.epoch));
    }
    Ok(())
}

fn fenced(actor_id: &ActorId, epoch: OwnerEpoch, fenced_by: OwnerEpoch) -> StoreError {
    tracing::debug!(actor = %actor_id, %epoch, %fenced_by, "write fenced by a newer owner");
    StoreError::Fenced {
        actor_id: actor_id.clone(),
        epoch,
        fenced_by,
    }
}

fn conflict(event: &Event, current: Version) -> StoreError {
    tracing::debug!(actor = %event.actor_id, attempted = event.version, current, "version conflict");
    StoreError::VersionConflict {
        actor_id: event.actor_id.clone(),
        attempted_version: event.version,
        current_version: current,
    }
}

impl EventStore for InMemoryEventStore {
    fn save_event(
        &self,
        event: Event,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        ready(self.save_one(event, OwnerEpoch::UNOWNED))
    }

    fn save_events(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        ready(self.save_batch(events, OwnerEpoch::UNOWNED))
    }

    fn latest_version(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send {
        ready(Ok(self
            .with_log(actor_id, ActorLog::latest_version)
            .unwrap_or(0)))
    }

    fn events(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        let metrics = &self.inner.metrics;
        let _span = metrics.read_span(ReadOp::Replay, Some(actor_id)).entered();
        let started = std::time::Instant::now();
        let events = self.with_log(actor_id, |log| log.events_from(from_version).to_vec());
        let result = Ok(events.unwrap_or_default());
        metrics.read(ReadOp::Replay, started, &result, Vec::len);
        ready(result)
    }

    fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> impl Future<Output = Result<ReplayResult, StoreError>> + Send {
        let metrics = &self.inner.metrics;
        let _span = metrics.read_span(ReadOp::Replay, Some(actor_id)).entered();
        let started = std::time::Instant::now();
        let result = Ok(self
            .with_log(actor_id, |log| log.replay_from(from_version))
            .unwrap_or_default());
        metrics.read(ReadOp::Replay, started, &result, |r: &ReplayResult| {
            r.events.len()
        });
        ready(result)
    }
}

/// A fence is no record here: it raises the epoch of the actor's head, under the actor's lock,
/// which is all a fence record does in a store with a log of records. It is thus invisible to
/// every read, including the feed, by construction.
impl FencedEventStore for InMemoryEventStore {
    fn fence(
        &self,
        actor_id: &ActorId,
        epoch: OwnerEpoch,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send {
        let outcome = self.with_log_mut(actor_id, |log| {
            check_epoch(log, actor_id, epoch)?;
            log.epoch = epoch;
            Ok(log.latest_version())
        });
        self.inner.metrics.fenced_actor(&outcome);
        ready(outcome)
    }

    fn save_events_as(
        &self,
        events: Vec<Event>,
        epoch: OwnerEpoch,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        ready(self.save_batch(events, epoch))
    }

    fn latest_epoch(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<OwnerEpoch, StoreError>> + Send {
        ready(Ok(self
            .with_log(actor_id, |log| log.epoch)
            .unwrap_or_default()))
    }
}

impl EventFeed for InMemoryEventStore {
    fn read_feed(
        &self,
        after: FeedPosition,
        max: NonZeroUsize,
    ) -> impl Future<Output = Result<FeedPage, StoreError>> + Send {
        let metrics = &self.inner.metrics;
        let _span = metrics.read_span(ReadOp::Feed, None).entered();
        let started = std::time::Instant::now();
        let result = Ok(self.read_feed_now(after, max.get()));
        metrics.read(ReadOp::Feed, started, &result, |page: &FeedPage| {
            page.events.len()
        });
        ready(result)
    }
}

impl SnapshotStore for InMemoryEventStore {
    fn save_snapshot(
        &self,
        snapshot: ActorSnapshot,
    ) -> impl Future<Output = Result<SnapshotOutcome, StoreError>> + Send {
        let bytes = snapshot.encoded_len();
        let outcome = self.save_snapshot_now(snapshot);
        self.inner.metrics.snapshot_saved(&outcome, bytes);
        ready(outcome)
    }

    fn latest_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Option<ActorSnapshot>, StoreError>> + Send {
        ready(Ok(self.inner.snapshots.get(actor_id).map(|s| s.clone())))
    }

    fn load(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<LoadedActor, StoreError>> + Send {
        let metrics = &self.inner.metrics;
        let _span = metrics.read_span(ReadOp::Load, Some(actor_id)).entered();
        let started = std::time::Instant::now();
        let snapshot = self.inner.snapshots.get(actor_id).map(|s| s.clone());
        let from = snapshot.as_ref().map_or(0, |s| s.version.saturating_add(1));
        let replay = self
            .with_log(actor_id, |log| log.replay_from(from))
            .unwrap_or_default();
        let result = Ok(LoadedActor {
            snapshot,
            events: replay.events,
            errors: replay.errors,
        });
        metrics.read(ReadOp::Load, started, &result, |l: &LoadedActor| {
            l.events.len()
        });
        ready(result)
    }
}
