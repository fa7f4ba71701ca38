//! [`OwnedStore`]: the store as one node's actors see it in a cluster (ADR 0009, "Storage
//! fence"). It is an ordinary [`SnapshotStore`], so the actor runtime is the same on one node
//! and across nodes; what it adds is the ownership epoch:
//!
//! - every write is stamped with the epoch under which this node serves the actor's shard
//!   ([`FencedEventStore::save_events_as`]): once a newer owner fenced the actor, the write is
//!   refused with [`StoreError::Fenced`] and nothing is stored;
//! - every load (an activation) fences the actor with that epoch after reading it, and reads
//!   again if the fence found another version than the one read (an earlier owner wrote in
//!   between): from then on no earlier owner can write;
//! - a shard this node does not serve has no epoch: loads and writes of its actors are refused
//!   with [`StoreError::Fenced`] (epochs [`OwnerEpoch::UNOWNED`]), so nothing activates or
//!   writes an actor of a shard the node does not serve, whatever path the request took.
//!
//! Shards are computed over the actor's *stream id* (`<actor type>.<actor id>`, the id its
//! events are stored under), with [`shard_for`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, FencedEventStore, LoadedActor, Namespace, NodeId,
    OwnerEpoch, ReplayResult, SaveOutcome, ShardCount, ShardId, SnapshotOutcome, SnapshotStore,
    StoreError, Version, shard_for,
};

/// The epoch under which this node serves each shard, or none: written by the node as its
/// ownership changes, read by [`OwnedStore`] on every load and write.
#[derive(Debug)]
pub struct ShardEpochs {
    shards: ShardCount,
    /// Per shard; 0 (= [`OwnerEpoch::UNOWNED`]): not served.
    epochs: Box<[AtomicU64]>,
    /// Loads and writes refused with `Fenced`.
    fenced: AtomicU64,
    /// The same, as `aether_actor_fenced_total`.
    fenced_metric: metrics::Counter,
}

impl ShardEpochs {
    /// `shards` shards, none served.
    pub fn new(shards: ShardCount) -> Self {
        Self {
            shards,
            epochs: (0..shards.get()).map(|_| AtomicU64::new(0)).collect(),
            fenced: AtomicU64::new(0),
            fenced_metric: metrics::Counter::noop(),
        }
    }

    /// As [`new`](Self::new), counting refusals in `aether_actor_fenced_total` too.
    pub(crate) fn counted(
        shards: ShardCount,
        namespace: &Namespace,
        actor_type: &'static str,
    ) -> Self {
        let labels = [
            ("namespace", namespace.to_string()),
            ("actor_type", actor_type.to_owned()),
        ];
        Self {
            fenced_metric: metrics::counter!("aether_actor_fenced_total", &labels),
            ..Self::new(shards)
        }
    }

    /// How many shards.
    pub fn shard_count(&self) -> ShardCount {
        self.shards
    }

    /// The shard of the actor stored under `stream`.
    pub fn shard_of(&self, stream: &ActorId) -> ShardId {
        shard_for(stream, self.shards)
    }

    /// The shard of the actor `actor_id` of type `A`, stored under `<type>.<id>`, without
    /// building that id.
    ///
    /// # Errors
    ///
    /// [`ActorError::InvalidActorId`](crate::ActorError::InvalidActorId) if `<type>.<id>` is
    /// not a valid id (too long).
    pub(crate) fn shard_of_actor<A: crate::Actor>(
        &self,
        actor_id: &ActorId,
    ) -> Result<ShardId, crate::ActorError> {
        crate::runtime::check_stream_id::<A>(actor_id)?;
        Ok(aether_core::shard_for_prefixed(
            A::ACTOR_TYPE,
            actor_id,
            self.shards,
        ))
    }

    /// Serves `shard` under `epoch` (`None`: no longer served).
    pub fn set(&self, shard: ShardId, epoch: Option<OwnerEpoch>) {
        if let Some(slot) = self.epochs.get(shard.get() as usize) {
            slot.store(epoch.map_or(0, OwnerEpoch::get), Ordering::Release);
        }
    }

    /// Serves no shard any more.
    pub fn clear(&self) {
        for slot in &self.epochs {
            slot.store(0, Ordering::Release);
        }
    }

    /// The epoch under which `shard` is served, if it is.
    pub fn get(&self, shard: ShardId) -> Option<OwnerEpoch> {
        self.epochs
            .get(shard.get() as usize)
            .map(|slot| slot.load(Ordering::Acquire))
            .filter(|&e| e != 0)
            .map(OwnerEpoch::new)
    }

    /// How many loads and writes were refused with `Fenced` (a newer owner fenced the actor,
    /// or its shard is not served here).
    pub fn fenced(&self) -> u64 {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Counts `result` if it is `Fenced`.
    fn count<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.as_ref().is_err_and(StoreError::is_fenced) {
            self.fenced.fetch_add(1, Ordering::Relaxed);
            self.fenced_metric.increment(1);
        }
        result
    }

    /// The epoch for writing the actor stored under `stream`, or `Fenced` if its shard is
    /// not served here.
    fn for_stream(&self, stream: &ActorId) -> Result<OwnerEpoch, StoreError> {
        self.get(self.shard_of(stream))
            .ok_or_else(|| StoreError::Fenced {
                actor_id: stream.clone(),
                epoch: OwnerEpoch::UNOWNED,
                fenced_by: OwnerEpoch::UNOWNED,
            })
    }
}

/// A [`SnapshotStore`] whose writes carry this node's ownership epoch and whose loads fence
/// the actor (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use aether_actor::cluster::{OwnedStore, ShardEpochs};
/// use aether_core::{ActorId, Event, EventStore, FencedEventStore, InMemoryEventStore,
///     OwnerEpoch, ShardCount, SnapshotStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let shared = InMemoryEventStore::new();
/// let epochs = Arc::new(ShardEpochs::new(ShardCount::new(1)?));
/// let node = OwnedStore::new(shared.clone(), epochs.clone());
/// let actor = ActorId::new("account.a-1")?;
///
/// // Shard not served here: refused.
/// assert!(node.load(&actor).await.unwrap_err().is_fenced());
///
/// epochs.set(epochs.shard_of(&actor), Some(OwnerEpoch::new(3)));
/// node.load(&actor).await?; // fences the actor with epoch 3
/// node.save_event(Event::new(actor.clone(), "Opened", 1)).await?;
/// assert_eq!(shared.latest_epoch(&actor).await?, OwnerEpoch::new(3));
///
/// // A newer owner (epoch 5) activates the actor: this node's writes are fenced.
/// shared.fence(&actor, OwnerEpoch::new(5)).await?;
/// let refused = node.save_event(Event::new(actor.clone(), "Closed", 2)).await;
/// assert!(refused.unwrap_err().is_fenced());
/// assert_eq!(shared.latest_version(&actor).await?, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct OwnedStore<S> {
    inner: S,
    epochs: Arc<ShardEpochs>,
    /// The node that writes, recorded on every event under [`WRITER_KEY`].
    writer: Option<NodeId>,
}

/// The metadata key under which an [`OwnedStore`] with a writer records, on every event, the
/// node that wrote it (with the ownership epoch in the record's `Aether-Owner-Epoch` header,
/// what a history checker needs to tell who wrote what).
pub const WRITER_KEY: &str = "aetherWriter";

impl<S> OwnedStore<S> {
    /// `inner`, written under the epochs in `epochs`.
    pub fn new(inner: S, epochs: Arc<ShardEpochs>) -> Self {
        Self {
            inner,
            epochs,
            writer: None,
        }
    }

    /// Records `node` on every event it writes, under [`WRITER_KEY`].
    #[must_use]
    pub fn with_writer(mut self, node: NodeId) -> Self {
        self.writer = Some(node);
        self
    }

    fn stamp(&self, event: &mut Event) {
        if let Some(node) = &self.writer {
            event
                .metadata
                .insert(WRITER_KEY.to_owned(), node.as_str().to_owned());
        }
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The epochs it writes under.
    pub fn epochs(&self) -> &Arc<ShardEpochs> {
        &self.epochs
    }
}

/// The version a load ends at: its last event's, or its snapshot's.
fn loaded_version(loaded: &LoadedActor) -> Version {
    loaded
        .events
        .last()
        .map(|e| e.version)
        .or_else(|| loaded.snapshot.as_ref().map(|s| s.version))
        .unwrap_or(0)
}

impl<S: FencedEventStore + SnapshotStore> EventStore for OwnedStore<S> {
    async fn save_event(&self, mut event: Event) -> Result<SaveOutcome, StoreError> {
        let epoch = self.epochs.count(self.epochs.for_stream(&event.actor_id))?;
        self.stamp(&mut event);
        self.epochs
            .count(self.inner.save_events_as(vec![event], epoch).await)
    }

    async fn save_events(&self, mut events: Vec<Event>) -> Result<SaveOutcome, StoreError> {
        let Some(first) = events.first() else {
            // Let the store refuse the empty batch with its own typed error.
            return self.inner.save_events(events).await;
        };
        let epoch = self.epochs.count(self.epochs.for_stream(&first.actor_id))?;
        for event in &mut events {
            self.stamp(event);
        }
        self.epochs
            .count(self.inner.save_events_as(events, epoch).await)
    }

    async fn latest_version(&self, actor_id: &ActorId) -> Result<Version, StoreError> {
        self.inner.latest_version(actor_id).await
    }

    async fn events(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events(actor_id, from_version).await
    }

    async fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> Result<ReplayResult, StoreError> {
        self.inner.events_with_errors(actor_id, from_version).await
    }
}

impl<S: FencedEventStore + SnapshotStore> SnapshotStore for OwnedStore<S> {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> Result<SnapshotOutcome, StoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn latest_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        self.inner.latest_snapshot(actor_id).await
    }

    /// Loads the actor, fences it with this node's epoch, and loads again if the fence found
    /// another version than the one loaded (an earlier owner wrote in between).
    async fn load(&self, actor_id: &ActorId) -> Result<LoadedActor, StoreError> {
        self.epochs.count(self.load_fenced(actor_id).await)
    }
}

impl<S: FencedEventStore + SnapshotStore> OwnedStore<S> {
    async fn load_fenced(&self, actor_id: &ActorId) -> Result<LoadedActor, StoreError> {
        let epoch = self.epochs.for_stream(actor_id)?;
        let loaded = self.inner.load(actor_id).await?;
        if !loaded.errors.is_empty() {
            // Activation fails on it; no fence for a state that cannot be served.
            return Ok(loaded);
        }
        let at_fence = self.inner.fence(actor_id, epoch).await?;
        if at_fence == loaded_version(&loaded) {
            return Ok(loaded);
        }
        // Nothing with a lower epoch lands after the fence: this read is the state to serve.
        self.inner.load(actor_id).await
    }
}
