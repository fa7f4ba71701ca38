//! The store contract: [`EventStore`] and [`SnapshotStore`], their outcomes and errors, the
//! input limits every store enforces, and the [`InMemoryEventStore`].
//!
//! Every store keeps the same promises, checked by the conformance suite
//! (`aether_core::testing`, feature `testing`):
//!
//! - an event is stored iff its version is greater than the actor's current version; otherwise the
//!   save fails with [`StoreError::VersionConflict`] carrying the current version, and nothing is
//!   written;
//! - a batch of one actor's events is stored all or nothing;
//! - saving an event that is already stored (same id, actor and version) succeeds as
//!   [`SaveOutcome::Duplicate`] and stores nothing; reusing an id for another event fails with
//!   [`StoreError::EventIdReused`] (an engine may bound how long it remembers ids: the
//!   JetStream store detects reuse within its deduplication window, see ADR 0004);
//! - invalid input is rejected with a typed error before anything is written;
//! - events are append-only: there is no update or delete.
//!
//! Stores that also implement [`FencedEventStore`] (both stores here) stamp writes with the
//! writer's ownership epoch and let a new owner fence older ones out of an actor's stream.
//!
//! Stores that also implement [`EventFeed`] (both stores here) offer every stored event of the
//! namespace in commit order after a caller-kept checkpoint: the at-least-once path for
//! subscribers that must not miss an event (see its docs and the feed properties of the suite).

mod epoch;
mod error;
mod feed;
mod fenced;
mod limits;
mod memory;
mod metrics;

use std::future::Future;
use std::sync::Arc;

use crate::{ActorId, ActorSnapshot, Event, Version};

pub use epoch::OwnerEpoch;
pub use error::{BoxError, ErrorKind, InvalidEvent, InvalidSnapshot, StoreError};
pub use feed::{EventFeed, FeedEvent, FeedPage, FeedPosition};
pub use fenced::FencedEventStore;
pub use limits::EventLimits;
pub use memory::InMemoryEventStore;
pub use metrics::{ReadOp, StoreMetrics};

/// What a successful save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaveOutcome {
    /// The event (or batch) was new and is now stored.
    Saved,
    /// An event with the same id, actor and version was already stored (payloads are not
    /// compared), so nothing was written. Typical after a retry whose first attempt did land.
    Duplicate,
}

impl SaveOutcome {
    /// True for [`SaveOutcome::Duplicate`].
    pub fn is_duplicate(self) -> bool {
        self == Self::Duplicate
    }
}

/// What a successful [`SnapshotStore::save_snapshot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotOutcome {
    /// The snapshot is now the actor's latest.
    Saved,
    /// A snapshot of a higher version was already stored and was kept: an older snapshot never
    /// replaces a newer one.
    KeptNewer {
        /// Version of the snapshot that was kept.
        stored_version: Version,
    },
}

/// The result of a replay that also reports records it could not decode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayResult {
    /// The decoded events, in version order.
    pub events: Vec<Event>,
    /// Records on the actor's stream that are not valid events (for example written by another
    /// client), in stream order.
    pub errors: Vec<ReplayError>,
}

/// An actor as the actor runtime activates it: its latest snapshot, the events after it, and
/// the records after it that could not be decoded (see [`SnapshotStore::load`]).
///
/// A non-empty `errors` means the history has holes: rebuilding state from `snapshot` and
/// `events` alone would silently skip them, so the caller must decide (refuse to activate,
/// alert, or skip knowingly).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedActor {
    /// The latest snapshot, if any.
    pub snapshot: Option<ActorSnapshot>,
    /// The events after the snapshot (all events without one), in version order.
    pub events: Vec<Event>,
    /// The records after the snapshot that are not valid events, in stream order.
    pub errors: Vec<ReplayError>,
}

/// A record on an actor's stream that could not be decoded as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError {
    /// Where the record sits in the store (for JetStream the stream sequence; for the in-memory
    /// store its 1-based position in the actor's log).
    pub position: u64,
    /// The record exactly as stored.
    pub raw: Vec<u8>,
    /// Why it could not be decoded.
    pub error: String,
}

/// Durable, append-only storage of actor event streams with optimistic concurrency.
///
/// Versions are supplied by the caller and must be strictly greater than the actor's current
/// version (gaps allowed). The store never retries on the caller's behalf: on a conflict it reports
/// the current version and the caller decides what to do.
///
/// A store may carry out an operation before its future is first polled (the in-memory store
/// completes every call at once): dropping an un-awaited `save_event` future does not mean the
/// event was not saved. Await what you start; resend the same event if unsure (a duplicate is
/// recognised).
///
/// The traits return `impl Future`, so there is no `dyn EventStore`; to choose a store at run
/// time, wrap the candidates in an enum of your own or stay generic.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventStore, InMemoryEventStore, SaveOutcome, StoreError};
///
/// # futures::executor::block_on(async {
/// let store = InMemoryEventStore::new();
/// let account = ActorId::new("account-1")?;
///
/// store.save_event(Event::new(account.clone(), "Opened", 1)).await?;
/// // A second writer that also read version 0 loses:
/// let err = store.save_event(Event::new(account.clone(), "Opened", 1)).await.unwrap_err();
/// assert!(matches!(err, StoreError::VersionConflict { current_version: 1, .. }));
///
/// assert_eq!(store.latest_version(&account).await?, 1);
/// assert_eq!(store.events(&account, 0).await?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait EventStore: Send + Sync {
    /// Stores `event` iff its version is greater than its actor's current version.
    ///
    /// # Errors
    ///
    /// - [`StoreError::VersionConflict`] if `event.version <= current`; nothing is written;
    /// - [`StoreError::EventIdReused`] if `event.id` already identifies a different event;
    /// - [`StoreError::InvalidEvent`] for bad input (empty or malformed type, version 0, too
    ///   large); nothing is written;
    /// - [`StoreError::Fenced`] in a [`FencedEventStore`] if the actor's head carries an
    ///   ownership epoch (a write without one is epoch 0); nothing is written;
    /// - infrastructure errors ([`ErrorKind::Infrastructure`]).
    fn save_event(
        &self,
        event: Event,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send;

    /// Stores several events of one actor atomically: all of them or none.
    ///
    /// Versions must strictly increase within the batch and the first must be greater than the
    /// actor's current version. A batch that is already stored exactly is a
    /// [`SaveOutcome::Duplicate`].
    ///
    /// # Errors
    ///
    /// As [`save_event`](Self::save_event), plus [`InvalidEvent`] variants for an empty batch,
    /// mixed actors, non-increasing versions and repeated ids.
    fn save_events(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send;

    /// The highest stored version of `actor_id`, or 0 if it has no events.
    ///
    /// # Errors
    ///
    /// Infrastructure errors only.
    fn latest_version(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// The events of `actor_id` with `version >= from_version`, in version order; empty for an
    /// unknown actor. Records that cannot be decoded are skipped (see
    /// [`events_with_errors`](Self::events_with_errors)).
    ///
    /// # Errors
    ///
    /// Infrastructure errors only; a partial history is never returned as if complete.
    fn events(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        async move {
            Ok(self
                .events_with_errors(actor_id, from_version)
                .await?
                .events)
        }
    }

    /// Like [`events`](Self::events), but also returns the records that could not be decoded,
    /// with their position, raw bytes and the decoding error.
    ///
    /// # Errors
    ///
    /// Infrastructure errors only.
    fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> impl Future<Output = Result<ReplayResult, StoreError>> + Send;
}

/// Storage of the latest [`ActorSnapshot`] per actor, next to the actor's events, and loading
/// an actor from both.
///
/// A snapshot only means something relative to the events it covers (a snapshot may not be
/// ahead of them, and loading replays what follows it), so every snapshot store is also an
/// [`EventStore`], and [`load`](Self::load), the one read the actor runtime uses, belongs here.
pub trait SnapshotStore: EventStore {
    /// Stores `snapshot` as the actor's latest, unless a newer one is already stored.
    ///
    /// # Errors
    ///
    /// - [`StoreError::InvalidSnapshot`] for version 0, a version beyond the actor's stored
    ///   events, or a state above the size limit; nothing is written;
    /// - infrastructure errors.
    fn save_snapshot(
        &self,
        snapshot: ActorSnapshot,
    ) -> impl Future<Output = Result<SnapshotOutcome, StoreError>> + Send;

    /// The actor's latest snapshot, if any.
    ///
    /// # Errors
    ///
    /// Infrastructure errors only.
    fn latest_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Option<ActorSnapshot>, StoreError>> + Send;

    /// Loads `actor_id` for activation: its latest snapshot, the events after it, and the
    /// records after it that could not be decoded (never skipped silently).
    ///
    /// The default reads the latest snapshot, then
    /// [`events_with_errors`](EventStore::events_with_errors) from the version after it. A
    /// store must not answer by scanning the actor's whole history when a snapshot covers part
    /// of it (the JetStream store replays from the stream sequence the snapshot recorded).
    ///
    /// # Errors
    ///
    /// Infrastructure errors; a snapshot that claims to cover events the store does not hold
    /// is an error, not a load; never a partial tail.
    fn load(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<LoadedActor, StoreError>> + Send {
        async move {
            let snapshot = self.latest_snapshot(actor_id).await?;
            let from = snapshot.as_ref().map_or(0, |s| s.version.saturating_add(1));
            let replay = self.events_with_errors(actor_id, from).await?;
            Ok(LoadedActor {
                snapshot,
                events: replay.events,
                errors: replay.errors,
            })
        }
    }
}

impl<S: EventStore + ?Sized> EventStore for Arc<S> {
    fn save_event(
        &self,
        event: Event,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        (**self).save_event(event)
    }

    fn save_events(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        (**self).save_events(events)
    }

    fn latest_version(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send {
        (**self).latest_version(actor_id)
    }

    fn events(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        (**self).events(actor_id, from_version)
    }

    fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> impl Future<Output = Result<ReplayResult, StoreError>> + Send {
        (**self).events_with_errors(actor_id, from_version)
    }
}

impl<S: SnapshotStore + ?Sized> SnapshotStore for Arc<S> {
    fn save_snapshot(
        &self,
        snapshot: ActorSnapshot,
    ) -> impl Future<Output = Result<SnapshotOutcome, StoreError>> + Send {
        (**self).save_snapshot(snapshot)
    }

    fn latest_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Option<ActorSnapshot>, StoreError>> + Send {
        (**self).latest_snapshot(actor_id)
    }

    fn load(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<LoadedActor, StoreError>> + Send {
        (**self).load(actor_id)
    }
}
