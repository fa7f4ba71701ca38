//! [`JetStreamEventStore`]: the event store and snapshot store on NATS JetStream.
//!
//! One handle serves one namespace: its events live in one stream (named by an injective
//! encoding of the namespace, see [`naming`](crate::naming)), one subject per actor, and its
//! snapshots in one KV bucket. Every append carries
//! `Nats-Expected-Last-Subject-Sequence` = the stream sequence of the actor's head it was based
//! on, so **the server** decides every race; a lost race (error 10071, or 10164 in clusters)
//! becomes [`StoreError::VersionConflict`] with the actor's current version. Outcomes the
//! client cannot know (a timeout, a reconnect, a duplicate) are settled by reading the first
//! message after that sequence (the "slot check"): a write that landed is never reported as a
//! conflict. See `docs/adr/0004-jetstream-store.md` for the decisions behind it.

mod append;
mod codec;
mod config;
mod connect;
mod existing;
mod failure;
mod feed;
mod head_cache;
mod ordered;
mod read;
mod snapshots;

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use std::num::NonZeroUsize;

use aether_core::{
    ActorId, ActorSnapshot, Event, EventFeed, EventLimits, EventStore, FeedPage, FeedPosition,
    FencedEventStore, LoadedActor, Namespace, OwnerEpoch, ReadOp, ReplayResult, SaveOutcome,
    SnapshotOutcome, SnapshotStore, StoreError, Version,
};
use async_nats::jetstream;

pub use codec::{
    FENCE_HEADER, FENCE_VERSION_HEADER, OWNER_EPOCH_HEADER, TYPE_HEADER, VERSION_HEADER,
};
pub use config::JetStreamConfig;
pub use existing::OpenExistingError;

/// Room left under the server's `max_payload` for an event's headers (id, version, type,
/// expected sequence, batch headers) and a snapshot's wrapper.
const HEADER_ALLOWANCE: usize = 4096;

/// The event store and snapshot store of one namespace, on NATS JetStream.
///
/// Cloning is cheap and shares the connection. [`for_namespace`](Self::for_namespace) opens
/// another namespace on the same connection.
///
/// # What an acknowledged save survives
///
/// A save returns once JetStream acknowledged the write; what that survives depends on the
/// server, not on this store:
///
/// - **R1 (one replica, the default) with the server's default `sync_interval` (2 minutes):**
///   the write is in the server's page cache, not yet on disk. A crash of the `nats-server`
///   process loses nothing (the OS still writes it out); a power loss or kernel crash of that
///   machine can lose the saves acknowledged since the last sync.
/// - **R1 with `jetstream { sync_interval: always }`** in the server's configuration: the server
///   fsyncs every write before acknowledging it, so an acknowledged save survives a power loss
///   of its disk, at a large cost in throughput (see `BENCHMARKS.md`: several times fewer saves
///   per second, most of all with many concurrent actors).
/// - **R3 (`JetStreamConfig::replicas = 3`, three servers):** a write is acknowledged once a
///   majority of replicas hold it, so it survives the loss of any one server (its process, its
///   machine or its disk), with the default sync interval. This is what to run in production;
///   add `sync_interval: always` only if all three machines can lose power at once.
///
/// # Examples
///
/// ```no_run
/// use aether_core::{ActorId, Event, EventStore, Namespace};
/// use aether_nats::JetStreamEventStore;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = JetStreamEventStore::connect("nats://127.0.0.1:4222", Namespace::new("prod")?).await?;
/// let account = ActorId::new("account-1")?;
/// store.save_event(Event::new(account.clone(), "Opened", 1)).await?;
/// assert_eq!(store.latest_version(&account).await?, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct JetStreamEventStore {
    inner: Arc<Inner>,
}

/// Everything a store handle needs; shared by its clones.
#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    snapshots: jetstream::kv::Store,
    namespace: Namespace,
    stream_name: String,
    config: JetStreamConfig,
    limits: EventLimits,
    /// Where the store connected, for error messages.
    url: String,
    /// Head lookups through Direct Get (any replica) are only read-your-writes on one replica;
    /// replicated streams read heads from the leader.
    direct_reads: bool,
    /// Heads seen by this handle: a first-try hint for appends, never an answer.
    heads: head_cache::HeadCache,
    metrics: aether_core::StoreMetrics,
    /// Permission violations the server reported on the connection (fed only on connections
    /// the store made itself).
    violations: crate::permissions::violations::Violations,
}

impl JetStreamEventStore {
    /// The namespace this handle serves.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    /// The JetStream stream holding this namespace's events.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream_name
    }

    /// The limits this store enforces: the defaults, with event and snapshot sizes capped to
    /// what fits in the server's `max_payload` next to the headers.
    pub fn limits(&self) -> EventLimits {
        self.inner.limits
    }

    /// The underlying NATS connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }
}

impl EventStore for JetStreamEventStore {
    async fn save_event(&self, event: Event) -> Result<SaveOutcome, StoreError> {
        let metrics = &self.inner.metrics;
        let span = metrics.save_span(&event.actor_id, event.version, 1);
        let started = Instant::now();
        let outcome = self.inner.save_one(event, None).instrument(span).await;
        metrics.saved(started, &outcome, 1);
        outcome
    }

    async fn save_events(&self, events: Vec<Event>) -> Result<SaveOutcome, StoreError> {
        self.save_metered(events, None).await
    }

    async fn latest_version(&self, actor_id: &ActorId) -> Result<Version, StoreError> {
        let subject = self.inner.subject(actor_id);
        Ok(self.inner.head(actor_id, &subject).await?.version)
    }

    async fn events_with_errors(
        &self,
        actor_id: &ActorId,
        from_version: Version,
    ) -> Result<ReplayResult, StoreError> {
        let metrics = &self.inner.metrics;
        let span = metrics.read_span(ReadOp::Replay, Some(actor_id));
        let started = Instant::now();
        let result = self
            .inner
            .events_with_errors(actor_id, from_version)
            .instrument(span)
            .await;
        metrics.read(ReadOp::Replay, started, &result, |r| r.events.len());
        result
    }
}

/// Epochs in the `Aether-Owner-Epoch` header of every record written with one; fences as fence
/// records (see `docs/adr/0004-jetstream-store.md` §8 for their format). The server's
/// expected-sequence check makes "the head's epoch is not above mine" and the write one atomic
/// step.
impl FencedEventStore for JetStreamEventStore {
    async fn fence(&self, actor_id: &ActorId, epoch: OwnerEpoch) -> Result<Version, StoreError> {
        let outcome = self.inner.fence(actor_id, epoch).await;
        self.inner.metrics.fenced_actor(&outcome);
        outcome
    }

    async fn save_events_as(
        &self,
        events: Vec<Event>,
        epoch: OwnerEpoch,
    ) -> Result<SaveOutcome, StoreError> {
        self.save_metered(events, Some(epoch)).await
    }

    async fn latest_epoch(&self, actor_id: &ActorId) -> Result<OwnerEpoch, StoreError> {
        let subject = self.inner.subject(actor_id);
        Ok(self.inner.head(actor_id, &subject).await?.epoch)
    }
}

/// The namespace's stream in stream-sequence order: the feed position is the stream sequence,
/// so a checkpoint stays valid across handles, restarts and server failovers.
impl EventFeed for JetStreamEventStore {
    async fn read_feed(
        &self,
        after: FeedPosition,
        max: NonZeroUsize,
    ) -> Result<FeedPage, StoreError> {
        let metrics = &self.inner.metrics;
        let span = metrics.read_span(ReadOp::Feed, None);
        let started = Instant::now();
        let result = self
            .inner
            .read_feed(after, max.get())
            .instrument(span)
            .await;
        metrics.read(ReadOp::Feed, started, &result, |p| p.events.len());
        result
    }
}

impl SnapshotStore for JetStreamEventStore {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> Result<SnapshotOutcome, StoreError> {
        let bytes = snapshot.encoded_len();
        let outcome = self.inner.save_snapshot(snapshot).await;
        self.inner.metrics.snapshot_saved(&outcome, bytes);
        outcome
    }

    async fn latest_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        Ok(self
            .inner
            .stored_snapshot(actor_id)
            .await?
            .map(|stored| stored.snapshot))
    }

    /// Replays from the stream sequence the snapshot recorded, so the cost is the tail, not
    /// the history.
    async fn load(&self, actor_id: &ActorId) -> Result<LoadedActor, StoreError> {
        let metrics = &self.inner.metrics;
        let span = metrics.read_span(ReadOp::Load, Some(actor_id));
        let started = Instant::now();
        let result = self.inner.load(actor_id).instrument(span).await;
        metrics.read(ReadOp::Load, started, &result, |l| l.events.len());
        result
    }
}

impl JetStreamEventStore {
    async fn save_metered(
        &self,
        events: Vec<Event>,
        epoch: Option<OwnerEpoch>,
    ) -> Result<SaveOutcome, StoreError> {
        let metrics = &self.inner.metrics;
        let len = events.len();
        let span = match events.first() {
            Some(first) => metrics.save_span(&first.actor_id, first.version, len),
            None => tracing::Span::none(),
        };
        let started = Instant::now();
        let outcome = self.inner.save_batch(events, epoch).instrument(span).await;
        metrics.saved(started, &outcome, len);
        outcome
    }
}

impl Inner {
    fn subject(&self, actor_id: &ActorId) -> String {
        crate::naming::actor_subject(&self.namespace, actor_id)
    }
}

impl JetStreamEventStore {
    /// Publishes `raw` on `actor_id`'s subject with no Aether headers, as a foreign client
    /// could (the conformance suite's hook; not part of the public API, since an event store
    /// should not offer a way to write garbage into it).
    #[cfg(feature = "testing")]
    pub(crate) async fn publish_raw(
        &self,
        actor_id: &ActorId,
        raw: Vec<u8>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let subject = inner.subject(actor_id);
        let ack = inner
            .js
            .publish(subject.clone(), raw.into())
            .await
            .map_err(|e| failure::publish_error(&inner.stream_name, &subject, e))?;
        ack.await
            .map(drop)
            .map_err(|e| failure::publish_error(&inner.stream_name, &subject, e))
    }
}
