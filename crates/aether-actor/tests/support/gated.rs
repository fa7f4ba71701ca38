//! A store that holds every append until the test opens its gate: to make an actor busy, a
//! reply late, or a mailbox fill up, without timing luck.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, InMemoryEventStore, LoadedActor, ReplayResult,
    SaveOutcome, SnapshotOutcome, SnapshotStore, StoreError, Version,
};
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct GatedStore {
    pub(crate) inner: InMemoryEventStore,
    open: watch::Sender<bool>,
    /// Appends waiting at the gate.
    waiting: watch::Sender<usize>,
    /// The next append is stored, but answered with `Unavailable` (a lost ack).
    lose_next_ack: Arc<AtomicBool>,
    /// Every append fails with `Unavailable`, storing nothing.
    failing: Arc<AtomicBool>,
}

impl GatedStore {
    pub(crate) fn closed() -> Self {
        Self {
            inner: InMemoryEventStore::new(),
            open: watch::Sender::new(false),
            waiting: watch::Sender::new(0),
            lose_next_ack: Arc::default(),
            failing: Arc::default(),
        }
    }

    /// While `on`, every append fails with `Unavailable` and stores nothing.
    pub(crate) fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    fn refuse(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                message: "the store is failing (test)".into(),
                source: None,
            });
        }
        Ok(())
    }

    /// An open store whose next append is stored but answered with an error.
    pub(crate) fn losing_next_ack() -> Self {
        let store = Self::closed();
        store.open();
        store.lose_next_ack.store(true, Ordering::SeqCst);
        store
    }

    fn ack(&self, result: Result<SaveOutcome, StoreError>) -> Result<SaveOutcome, StoreError> {
        if result.is_ok() && self.lose_next_ack.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                message: "the ack was lost (test)".into(),
                source: None,
            });
        }
        result
    }

    pub(crate) fn open(&self) {
        self.open.send_replace(true);
    }

    /// Waits until `n` appends wait at the gate.
    pub(crate) async fn until_waiting(&self, n: usize) {
        let mut rx = self.waiting.subscribe();
        rx.wait_for(|w| *w >= n).await.expect("sender alive");
    }

    async fn gate(&self) {
        self.waiting.send_modify(|w| *w += 1);
        let mut rx = self.open.subscribe();
        rx.wait_for(|o| *o).await.expect("sender alive");
        self.waiting.send_modify(|w| *w -= 1);
    }
}

impl EventStore for GatedStore {
    async fn save_event(&self, event: Event) -> Result<SaveOutcome, StoreError> {
        self.gate().await;
        self.refuse()?;
        self.ack(self.inner.save_event(event).await)
    }

    async fn save_events(&self, events: Vec<Event>) -> Result<SaveOutcome, StoreError> {
        self.gate().await;
        self.refuse()?;
        self.ack(self.inner.save_events(events).await)
    }

    fn latest_version(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send {
        self.inner.latest_version(actor_id)
    }

    fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> impl Future<Output = Result<ReplayResult, StoreError>> + Send {
        self.inner.events_with_errors(actor_id, from_version)
    }
}

impl SnapshotStore for GatedStore {
    fn save_snapshot(
        &self,
        snapshot: ActorSnapshot,
    ) -> impl Future<Output = Result<SnapshotOutcome, StoreError>> + Send {
        self.inner.save_snapshot(snapshot)
    }

    fn latest_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Option<ActorSnapshot>, StoreError>> + Send {
        self.inner.latest_snapshot(actor_id)
    }

    fn load(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<LoadedActor, StoreError>> + Send {
        self.inner.load(actor_id)
    }
}
