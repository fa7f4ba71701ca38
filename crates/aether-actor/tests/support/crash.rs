//! A store that dies between storing and answering (so its actor never publishes), and a
//! checkpointed feed reader: the two sides of the crash tests of publication.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aether_core::{
    ActorId, ActorSnapshot, Event, EventFeed, EventStore, FeedPosition, LoadedActor, ReplayResult,
    SaveOutcome, SnapshotOutcome, SnapshotStore, StoreError, Version,
};
use tokio::sync::Notify;

/// A store that, once armed, stores the next append and then never answers: the actor is
/// stuck between storing and publishing, where a crash can catch it.
#[derive(Clone)]
pub(crate) struct DiesAfterStoring<S> {
    pub(crate) inner: S,
    pub(crate) armed: Arc<AtomicBool>,
    pub(crate) stored: Arc<Notify>,
}

impl<S: SnapshotStore> DiesAfterStoring<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            armed: Arc::default(),
            stored: Arc::default(),
        }
    }

    async fn then_hang(
        &self,
        saved: Result<SaveOutcome, StoreError>,
    ) -> Result<SaveOutcome, StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            assert!(saved.is_ok(), "the armed append is stored: {saved:?}");
            self.stored.notify_one();
            std::future::pending::<()>().await;
        }
        saved
    }
}

impl<S: SnapshotStore> EventStore for DiesAfterStoring<S> {
    async fn save_event(&self, event: Event) -> Result<SaveOutcome, StoreError> {
        let saved = self.inner.save_event(event).await;
        self.then_hang(saved).await
    }

    async fn save_events(&self, events: Vec<Event>) -> Result<SaveOutcome, StoreError> {
        let saved = self.inner.save_events(events).await;
        self.then_hang(saved).await
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

impl<S: SnapshotStore> SnapshotStore for DiesAfterStoring<S> {
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

/// A feed subscriber: processes pages of the feed, keeping its checkpoint (here in memory; a
/// real one stores it with its results).
pub(crate) struct FeedReader {
    pub(crate) checkpoint: FeedPosition,
    pub(crate) processed: Vec<Event>,
}

impl FeedReader {
    /// Reads and processes everything after the checkpoint, in pages of 2, checkpointing after
    /// each page; returns what this call processed.
    pub(crate) async fn catch_up<S: EventFeed>(&mut self, store: &S) -> Vec<Event> {
        let mut got = Vec::new();
        loop {
            let page = store
                .read_feed(self.checkpoint, NonZeroUsize::new(2).unwrap())
                .await
                .unwrap();
            assert!(page.errors.is_empty(), "{:?}", page.errors);
            if page.is_empty() {
                return got;
            }
            got.extend(page.events.into_iter().map(|e| e.event));
            self.checkpoint = page.next;
        }
    }
}

impl FeedReader {
    pub(crate) fn new() -> Self {
        Self {
            checkpoint: FeedPosition::START,
            processed: Vec::new(),
        }
    }
}

impl<S> DiesAfterStoring<S> {
    /// The next append is stored, then never answered.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}
