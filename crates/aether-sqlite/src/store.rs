//! [`SqliteEventStore`]: the store contract (events, snapshots, the event feed, ownership
//! fences) over one namespace of a [`SqliteDatabase`](crate::SqliteDatabase).

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;

use aether_core::{
    ActorId, ActorSnapshot, Event, EventFeed, EventStore, FeedPage, FeedPosition, FencedEventStore,
    LoadedActor, Namespace, OwnerEpoch, ReplayResult, SaveOutcome, SnapshotOutcome, SnapshotStore,
    StoreError, Version,
};

use std::time::Instant;

use aether_core::{ReadOp, StoreMetrics};
use tracing::Instrument;

use crate::database::read;
use crate::database::{Db, Op};

/// Which input check a save runs first: `save_event`'s or a batch's.
#[derive(Clone, Copy)]
enum Check {
    Event,
    Batch,
}

/// The events and snapshots of one namespace in a data directory: [`EventStore`],
/// [`SnapshotStore`], [`EventFeed`] and [`FencedEventStore`], durable on disk.
///
/// Get one from [`SqliteDatabase::store`](crate::SqliteDatabase::store), or
/// [`open`](Self::open) a directory for one namespace. Cloning is cheap; clones share the
/// directory's writer and readers.
///
/// Saves are queued for the directory's one writer connection: the caller that finds it free
/// leads, committing the saves waiting together in one transaction (each in its own
/// savepoint: atomic and checked on its own) and answering them after the commit — so with
/// [`Durability::Full`](crate::Durability::Full) an acknowledged save is on disk, and saves
/// that arrive while a commit syncs share the next one. Reads run on a pool of reader
/// connections. A commit or a read blocks its thread: on a multi-threaded tokio runtime it
/// runs in [`block_in_place`](tokio::task::block_in_place) (the worker's other tasks move on),
/// on a current-thread runtime on a blocking thread; the store must be used inside a tokio
/// runtime.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventStore, Namespace};
/// use aether_sqlite::{SqliteConfig, SqliteEventStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("aether-doc-store-{}", std::process::id()));
/// let store = SqliteEventStore::open(&dir, Namespace::new("bank")?, SqliteConfig::default())?;
/// let account = ActorId::new("acct-1")?;
/// store.save_event(Event::new(account.clone(), "Opened", 1)).await?;
/// drop(store); // closes the directory
///
/// // Reopened: the event is still there.
/// let store = SqliteEventStore::open(&dir, Namespace::new("bank")?, SqliteConfig::default())?;
/// assert_eq!(store.latest_version(&account).await?, 1);
/// # drop(store);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteEventStore {
    db: Arc<Db>,
    namespace: Namespace,
    ns: i64,
    metrics: Arc<StoreMetrics>,
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEventStore")
            .field("file", &self.db.file)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl SqliteEventStore {
    pub(crate) fn new(db: Arc<Db>, namespace: Namespace, ns: i64) -> Self {
        let metrics = Arc::new(StoreMetrics::new("sqlite", namespace.as_str()));
        Self {
            db,
            namespace,
            ns,
            metrics,
        }
    }

    /// Opens the data directory `dir` for `namespace` alone (see
    /// [`SqliteDatabase::open`](crate::SqliteDatabase::open) to use several namespaces).
    ///
    /// # Errors
    ///
    /// As [`SqliteDatabase::open`](crate::SqliteDatabase::open); a namespace that cannot be
    /// registered is [`OpenError::Namespace`](crate::OpenError::Namespace).
    pub fn open(
        dir: impl AsRef<std::path::Path>,
        namespace: Namespace,
        config: crate::SqliteConfig,
    ) -> Result<Self, crate::OpenError> {
        let database = crate::SqliteDatabase::open(dir, config)?;
        database
            .store(namespace)
            .map_err(crate::OpenError::Namespace)
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The database file, for the `sqlite3` tool.
    pub fn file(&self) -> &std::path::Path {
        &self.db.file
    }

    /// Checks and saves `events`, counted and traced whatever the outcome.
    async fn save(
        &self,
        events: Vec<Event>,
        epoch: OwnerEpoch,
        check: Check,
    ) -> Result<SaveOutcome, StoreError> {
        let count = events.len();
        let span = match events.first() {
            Some(first) => self
                .metrics
                .save_span(&first.actor_id, first.version, count),
            None => tracing::Span::none(),
        };
        let started = Instant::now();
        let outcome = self
            .save_unmetered(events, epoch, check)
            .instrument(span)
            .await;
        self.metrics.saved(started, &outcome, count);
        outcome
    }

    async fn save_unmetered(
        &self,
        events: Vec<Event>,
        epoch: OwnerEpoch,
        check: Check,
    ) -> Result<SaveOutcome, StoreError> {
        let limits = &self.db.config.limits;
        match check {
            Check::Event => limits.check_event(&events[0])?,
            Check::Batch => limits.check_batch(&events)?,
        }
        let ns = self.ns;
        self.db
            .write(|reply| Op::Save {
                ns,
                events,
                epoch,
                reply,
            })
            .await
    }

    /// Times and counts a read, in its span.
    fn metered<T, F>(
        &self,
        op: ReadOp,
        actor_id: Option<&ActorId>,
        read: F,
        events: fn(&T) -> usize,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + use<T, F>
    where
        F: Future<Output = Result<T, StoreError>> + Send,
        T: Send,
    {
        let span = self.metrics.read_span(op, actor_id);
        let metrics = self.metrics.clone();
        let started = Instant::now();
        async move {
            let result = read.await;
            metrics.read(op, started, &result, events);
            result
        }
        .instrument(span)
    }

    /// Writes `raw` as a record of `actor_id`, as another tool could (conformance suite).
    #[cfg(feature = "testing")]
    pub async fn write_raw_record(
        &self,
        actor_id: &ActorId,
        raw: Vec<u8>,
    ) -> Result<(), StoreError> {
        let (ns, actor_id) = (self.ns, actor_id.clone());
        self.db
            .write(|reply| Op::Raw {
                ns,
                actor_id,
                raw,
                reply,
            })
            .await
    }

    /// The limits the store checks.
    pub fn limits(&self) -> aether_core::EventLimits {
        self.db.config.limits
    }
}

impl EventStore for SqliteEventStore {
    async fn save_event(&self, event: Event) -> Result<SaveOutcome, StoreError> {
        self.save(vec![event], OwnerEpoch::UNOWNED, Check::Event)
            .await
    }

    async fn save_events(&self, events: Vec<Event>) -> Result<SaveOutcome, StoreError> {
        self.save(events, OwnerEpoch::UNOWNED, Check::Batch).await
    }

    fn latest_version(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send {
        let (ns, actor_id) = (self.ns, actor_id.clone());
        self.db
            .read(move |conn| read::latest_version(conn, ns, &actor_id))
    }

    fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> impl Future<Output = Result<ReplayResult, StoreError>> + Send {
        let (ns, id) = (self.ns, actor_id.clone());
        let read = self
            .db
            .read(move |conn| read::replay(conn, ns, &id, from_version));
        self.metered(ReadOp::Replay, Some(actor_id), read, |r| r.events.len())
    }
}

impl SnapshotStore for SqliteEventStore {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> Result<SnapshotOutcome, StoreError> {
        self.db.config.limits.check_snapshot(&snapshot)?;
        let bytes = snapshot.encoded_len();
        let ns = self.ns;
        let outcome = self
            .db
            .write(|reply| Op::Snapshot {
                ns,
                snapshot,
                reply,
            })
            .await;
        self.metrics.snapshot_saved(&outcome, bytes);
        outcome
    }

    fn latest_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<Option<ActorSnapshot>, StoreError>> + Send {
        let (ns, actor_id) = (self.ns, actor_id.clone());
        self.db
            .read(move |conn| read::snapshot(conn, ns, &actor_id))
    }

    fn load(
        &self,
        actor_id: &ActorId,
    ) -> impl Future<Output = Result<LoadedActor, StoreError>> + Send {
        let (ns, id) = (self.ns, actor_id.clone());
        let read = self.db.read(move |conn| read::load(conn, ns, &id));
        self.metered(ReadOp::Load, Some(actor_id), read, |l| l.events.len())
    }
}

impl EventFeed for SqliteEventStore {
    fn read_feed(
        &self,
        after: FeedPosition,
        max: NonZeroUsize,
    ) -> impl Future<Output = Result<FeedPage, StoreError>> + Send {
        let ns = self.ns;
        let read = self
            .db
            .read(move |conn| read::feed(conn, ns, after, max.get()));
        self.metered(ReadOp::Feed, None, read, |p| p.events.len())
    }
}

impl FencedEventStore for SqliteEventStore {
    async fn fence(&self, actor_id: &ActorId, epoch: OwnerEpoch) -> Result<Version, StoreError> {
        let (ns, actor_id) = (self.ns, actor_id.clone());
        let outcome = self
            .db
            .write(|reply| Op::Fence {
                ns,
                actor_id,
                epoch,
                reply,
            })
            .await;
        self.metrics.fenced_actor(&outcome);
        outcome
    }

    async fn save_events_as(
        &self,
        events: Vec<Event>,
        epoch: OwnerEpoch,
    ) -> Result<SaveOutcome, StoreError> {
        self.save(events, epoch, Check::Batch).await
    }

    async fn latest_epoch(&self, actor_id: &ActorId) -> Result<OwnerEpoch, StoreError> {
        let (ns, actor_id) = (self.ns, actor_id.clone());
        self.db
            .read(move |conn| read::latest_epoch(conn, ns, &actor_id))
            .await
            .map(OwnerEpoch::new)
    }
}

#[cfg(feature = "testing")]
mod conformance_hooks {
    use aether_core::testing::conformance::{ConformanceTarget, FenceTarget};

    use super::*;

    impl ConformanceTarget for SqliteEventStore {
        fn limits(&self) -> aether_core::EventLimits {
            Self::limits(self)
        }

        async fn write_raw_record(
            &self,
            actor_id: &ActorId,
            raw: Vec<u8>,
        ) -> Result<(), StoreError> {
            Self::write_raw_record(self, actor_id, raw).await
        }
    }

    impl FenceTarget for SqliteEventStore {
        /// Another handle on the same namespace: this store keeps no cache.
        async fn another_handle(&self) -> Self {
            self.clone()
        }
    }
}
