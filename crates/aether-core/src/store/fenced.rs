//! [`FencedEventStore`]: writes stamped with the writer's ownership epoch, and fences that keep
//! every older owner out of an actor's stream.

use std::future::Future;
use std::sync::Arc;

use super::{EventStore, OwnerEpoch, SaveOutcome, StoreError};
use crate::{ActorId, Event, Version};

/// An [`EventStore`] whose writes carry the writer's [`OwnerEpoch`], so that a node that
/// wrongly believes it still owns an actor (paused past its lease, cut off, slow) cannot append
/// to the actor once a newer owner has fenced it.
///
/// The rule: **no record with a lower epoch is ever stored after a record with a higher one.**
/// Every record of an actor carries an epoch (0 when written without one). A write is refused
/// with [`StoreError::Fenced`] when the actor's head (its last record) carries a higher epoch
/// than the writer's; the store's own check that the head did not move (for JetStream the
/// server's expected-sequence check) makes "head read, then write" one atomic step, and after a
/// lost race the store re-reads the head and never re-sends past a higher epoch.
///
/// A new owner takes an actor over with [`fence`](Self::fence): it appends a **fence record**
/// with its epoch after the actor's head, so from then on every write of an older epoch fails,
/// whatever that writer cached. A fence record is not an event: `events`,
/// `events_with_errors`, [`SnapshotStore::load`](crate::SnapshotStore::load),
/// [`EventFeed::read_feed`](crate::EventFeed::read_feed) and every other read skip it
/// (the feed's checkpoint still moves past it), and
/// [`latest_version`](EventStore::latest_version) reports the version the fence was written
/// at, which is the version of the last event before it.
///
/// Plain [`save_event`](EventStore::save_event) and [`save_events`](EventStore::save_events)
/// write at epoch 0, so on an actor whose head carries an epoch above 0 they fail with
/// `Fenced`: a node that does not own an actor must not write to it. Actors that are never
/// fenced nor written with an epoch behave exactly as in a plain [`EventStore`].
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventStore, FencedEventStore, InMemoryEventStore, OwnerEpoch};
///
/// # futures::executor::block_on(async {
/// let store = InMemoryEventStore::new();
/// let account = ActorId::new("account-1")?;
/// let (old, new) = (OwnerEpoch::new(1), OwnerEpoch::new(2));
///
/// store.save_events_as(vec![Event::new(account.clone(), "Opened", 1)], old).await?;
/// // The new owner takes the actor over at version 1 ...
/// assert_eq!(store.fence(&account, new).await?, 1);
/// // ... so the old owner can no longer write to it,
/// let err = store
///     .save_events_as(vec![Event::new(account.clone(), "Deposited", 2)], old)
///     .await
///     .unwrap_err();
/// assert!(err.is_fenced());
/// // while the new owner can.
/// store.save_events_as(vec![Event::new(account.clone(), "Deposited", 2)], new).await?;
/// assert_eq!(store.latest_epoch(&account).await?, new);
/// assert_eq!(store.events(&account, 0).await?.len(), 2); // the fence is no event
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait FencedEventStore: EventStore {
    /// Appends a fence record with `epoch` after the actor's current head, so that no write
    /// with a lower epoch can be stored after it. Returns the actor's version at the fence.
    ///
    /// If the head already carries `epoch`, nothing is written (the head fences lower epochs
    /// already) and the current version is returned. A fence has no version of its own, so a
    /// lost race with another writer is retried against the new head, within the store's
    /// usual retry limits.
    ///
    /// # Errors
    ///
    /// - [`StoreError::Fenced`] if the head carries a higher epoch; nothing is written;
    /// - [`StoreError::UndecodableRecord`] if the head cannot be read (as for
    ///   [`latest_version`](EventStore::latest_version));
    /// - infrastructure errors ([`ErrorKind::Infrastructure`](crate::ErrorKind)).
    fn fence(
        &self,
        actor_id: &ActorId,
        epoch: OwnerEpoch,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// Stores one event, or an atomic batch of one actor's events, as
    /// [`save_events`](EventStore::save_events) does, every record stamped with `epoch`.
    ///
    /// Events that are stored already (saved before a fence) are a
    /// [`SaveOutcome::Duplicate`], whatever the epoch, as for any save: nothing lands after a
    /// fence, so a stored copy is one from before it.
    ///
    /// # Errors
    ///
    /// - [`StoreError::Fenced`] if the actor's head carries a higher epoch than `epoch`, as
    ///   read before the write or after a lost race (the store never re-sends past it);
    ///   nothing is written;
    /// - otherwise those of [`save_events`](EventStore::save_events).
    fn save_events_as(
        &self,
        events: Vec<Event>,
        epoch: OwnerEpoch,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send;

    /// The epoch of the actor's head record (an event or a fence), or
    /// [`OwnerEpoch::UNOWNED`] for an actor without records or whose head carries none.
    ///
    /// # Errors
    ///
    /// As [`latest_version`](EventStore::latest_version).
    fn latest_epoch(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<OwnerEpoch, StoreError>> + Send;
}

impl<S: FencedEventStore + ?Sized> FencedEventStore for Arc<S> {
    fn fence(
        &self,
        actor_id: &ActorId,
        epoch: OwnerEpoch,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send {
        (**self).fence(actor_id, epoch)
    }

    fn save_events_as(
        &self,
        events: Vec<Event>,
        epoch: OwnerEpoch,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        (**self).save_events_as(events, epoch)
    }

    fn latest_epoch(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<OwnerEpoch, StoreError>> + Send {
        (**self).latest_epoch(actor_id)
    }
}
