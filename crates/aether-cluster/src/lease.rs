//! The leader lease: one key in the coordination bucket, held by at most one node at a time.
//!
//! | step | KV operation | result |
//! |---|---|---|
//! | acquire | create with TTL (CAS on "no live value") | the revision = the **epoch** (fencing token) |
//! | renew, every `lease_ttl / 3` | CAS on the last revision with a fresh TTL | a new revision, same epoch |
//! | release | delete expecting the last revision | others take over at once |
//!
//! The holder's own **deadline** is *send time of the last successful acquisition or renewal +
//! `lease_ttl` − `lease_margin`* on the monotonic clock. The server starts the TTL when it
//! *receives* the write, so the server-side expiry is never earlier than that: a holder that
//! checks [`Lease::is_valid`] (or its [`LeaseFence`]) before acting can never act while another
//! node holds the lease. A lease is lost for good — never renewed again — when its deadline
//! passes or a renewal's CAS fails; every later call answers [`ClusterError::NotLeader`].
//!
//! [`LeaderLease`] holds the operations for one node; [`LeaderElector`] runs the whole protocol
//! in a background task (acquire, watch the holder, take over on release or expiry, renew,
//! release on shutdown) and publishes [`LeaderState`] on a `tokio::sync::watch` channel.
//!
//! # Why acquisition is hand-rolled
//!
//! async-nats 0.51's `kv::Store::create_with_ttl` re-creates a key whose last entry is a
//! delete or purge marker with a plain `update`, **without** the TTL. Every lease after the
//! first release or expiry would then live forever if its holder crashed. [`LeaderLease`]
//! therefore reads the key and writes with [`ClusterStore::put_with_ttl`] itself, expecting
//! the marker's revision (or nothing when the key never existed).

mod elector;

use aether_core::BackendError;
use std::sync::Arc;
use std::time::Duration;

use aether_core::NodeId;
use async_nats::header::NATS_MARKER_REASON;
use async_nats::jetstream::kv;
use async_nats::jetstream::message::StreamMessage;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::kv::{ClusterStore, Expect, LEASE_KEY, is_update_conflict, put_with_ttl};
use crate::{ClusterConfig, ClusterError, Epoch, Revision};

pub use elector::{LeaderElector, LeaderState};

/// How often an acquisition whose CAS lost (someone wrote between our read and our write) is
/// retried before answering "held by someone else".
const ACQUIRE_ATTEMPTS: usize = 3;

/// The value stored under [`LEASE_KEY`] (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct LeaseValue {
    node: NodeId,
    /// Absent on the acquiring write, whose own revision is the epoch; present on renewals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<Epoch>,
}

/// Who holds the lease, as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseHolder {
    /// The holding node.
    pub node: NodeId,
    /// The holder's epoch: the revision of its acquiring write.
    pub epoch: Epoch,
    /// The revision of the key's last write (the acquisition or the last renewal).
    pub revision: Revision,
}

impl LeaseHolder {
    /// The holder named by a KV entry; `None` for a delete or purge marker (nobody holds it).
    fn from_entry(entry: &kv::Entry) -> Result<Option<Self>, ClusterError> {
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        Self::decode(&entry.value, Revision::new(entry.revision)).map(Some)
    }

    /// The holder named by the lease key's last message as read from the stream; `None` for a
    /// delete or purge marker (a `KV-Operation` or `Nats-Marker-Reason` header).
    pub(crate) fn from_message(message: &StreamMessage) -> Result<Option<Self>, ClusterError> {
        let marker = message.headers.get("KV-Operation").is_some()
            || message.headers.get(NATS_MARKER_REASON).is_some();
        if marker {
            return Ok(None);
        }
        Self::decode(&message.payload, Revision::new(message.sequence)).map(Some)
    }

    fn decode(value: &[u8], revision: Revision) -> Result<Self, ClusterError> {
        let value: LeaseValue = serde_json::from_slice(value).map_err(|e| {
            ClusterError::backend(
                format!("the lease value at revision {revision} is not valid"),
                e,
            )
        })?;
        Ok(Self {
            node: value.node,
            epoch: value.epoch.unwrap_or(Epoch::of(revision)),
            revision,
        })
    }
}

/// The leader-lease operations of one node: [`try_acquire`](Self::try_acquire) and
/// [`current`](Self::current). Cheap to clone.
///
/// ```no_run
/// # async fn example(store: aether_cluster::kv::ClusterStore, config: aether_cluster::ClusterConfig)
/// # -> Result<(), aether_cluster::ClusterError> {
/// use aether_cluster::lease::LeaderLease;
///
/// let lease = LeaderLease::new(store, &config)?;
/// if let Some(mut held) = lease.try_acquire().await? {
///     // ... act as leader while `held.is_valid()`, calling `held.renew()` every TTL/3 ...
///     held.renew().await?;
///     held.release().await?;
/// } else if let Some(holder) = lease.current().await? {
///     println!("{} leads with epoch {}", holder.node, holder.epoch);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeaderLease {
    /// Shared: the store's handles are large, and every [`Lease`] keeps one.
    store: Arc<ClusterStore>,
    node: NodeId,
    ttl: Duration,
    margin: Duration,
}

impl LeaderLease {
    /// The lease operations for `config.node_id`, with `config.lease_ttl` and
    /// `config.lease_margin`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for timings [`ClusterConfig::validate`] refuses, or if
    /// `lease_margin` is not below two thirds of `lease_ttl`:
    /// a holder renews every third of the TTL, so at least one renewal must fit before its
    /// deadline.
    pub fn new(store: ClusterStore, config: &ClusterConfig) -> Result<Self, ClusterError> {
        config.validate_timings()?;
        let (ttl, margin) = (config.lease_ttl, config.lease_margin);
        if ttl.is_zero() || margin >= ttl * 2 / 3 {
            return Err(ClusterError::InvalidConfig(format!(
                "lease_margin ({margin:?}) must be below two thirds of lease_ttl ({ttl:?}): \
                 the leader renews every third of the TTL and needs a renewal to land before \
                 its deadline (TTL − margin)"
            )));
        }
        Ok(Self {
            store: Arc::new(store),
            node: config.node_id.clone(),
            ttl,
            margin,
        })
    }

    /// The node this lease is for.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The lease's TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Tries to become the leader: creates the lease key with the TTL if nobody holds it.
    /// `Ok(None)` if another node (or an earlier incarnation of this one) holds it; see
    /// [`current`](Self::current) for who.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if NATS does not answer; [`ClusterError::Backend`] if it
    /// refuses. An acquisition whose answer was lost may still have succeeded on the server;
    /// that lease is never renewed and expires after the TTL.
    pub async fn try_acquire(&self) -> Result<Option<Lease>, ClusterError> {
        Ok(match self.acquire_or_holder().await? {
            Acquired::Lease(lease) => Some(lease),
            Acquired::Held(_) => None,
        })
    }

    /// Who holds the lease now; `None` if nobody does (never acquired, released or expired).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if NATS does not answer; [`ClusterError::Backend`] if it
    /// refuses or the stored value is not a lease.
    pub async fn current(&self) -> Result<Option<LeaseHolder>, ClusterError> {
        match self.entry().await? {
            Some(entry) => LeaseHolder::from_entry(&entry),
            None => Ok(None),
        }
    }

    /// Acquires the lease, or says who holds it (as read just before giving up).
    async fn acquire_or_holder(&self) -> Result<Acquired, ClusterError> {
        let value = encode(&LeaseValue {
            node: self.node.clone(),
            epoch: None,
        })?;
        let mut holder = None;
        for _ in 0..ACQUIRE_ATTEMPTS {
            let expected = match self.entry().await? {
                None => Expect::Nothing,
                Some(entry) => match LeaseHolder::from_entry(&entry)? {
                    None => Expect::Revision(Revision::new(entry.revision)),
                    Some(current) => return Ok(Acquired::Held(Some(current))),
                },
            };
            let sent = Instant::now();
            match put_with_ttl(
                &self.store.js,
                self.store.coord_bucket(),
                LEASE_KEY,
                value.clone(),
                expected,
                self.ttl,
            )
            .await
            {
                Ok(revision) => {
                    metrics::counter!("aether_cluster_lease_acquired_total").increment(1);
                    tracing::debug!(node = %self.node, epoch = %revision, "leader lease acquired");
                    return Ok(Acquired::Lease(Lease::new(
                        self.clone(),
                        Epoch::of(revision),
                        sent,
                    )));
                }
                // Someone wrote between our read and our write: read again.
                Err(ClusterError::Conflict { .. }) => holder = self.current().await?,
                Err(other) => return Err(other),
            }
            if holder.is_some() {
                break;
            }
        }
        Ok(Acquired::Held(holder))
    }

    async fn entry(&self) -> Result<Option<kv::Entry>, ClusterError> {
        lease_entry(&self.store).await
    }
}

/// The lease key's last entry.
async fn lease_entry(store: &ClusterStore) -> Result<Option<kv::Entry>, ClusterError> {
    store
        .coord
        .entry(LEASE_KEY)
        .await
        .map_err(|e| match e.kind() {
            kv::EntryErrorKind::TimedOut => ClusterError::Unavailable {
                message: "no answer reading the leader lease".to_owned(),
                source: Some(Box::new(e)),
            },
            _ => ClusterError::backend("cannot read the leader lease", e),
        })
}

/// The outcome of an acquisition attempt.
#[derive(Debug)]
enum Acquired {
    /// This node now holds the lease.
    Lease(Lease),
    /// Someone else holds it (`None`: it changed hands too fast to say who).
    Held(Option<LeaseHolder>),
}

/// What the holder and every [`LeaseFence`] see.
#[derive(Debug, Clone, Copy)]
struct FenceState {
    /// The holder must stop acting at this instant.
    deadline: Instant,
    /// Lost for good (a renewal failed its CAS, the deadline passed, released or dropped).
    lost: bool,
    /// The revision of the lease's last write (acquisition or renewal).
    revision: Revision,
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// The deadline passed (the key may still hold our last revision).
    Expired,
    /// A CAS failed: the key holds someone else's write.
    Taken,
}

/// A held leader lease. Not `Clone`: exactly one owner renews it; hand out
/// [`fence`](Self::fence)s to the code that acts as leader.
///
/// Dropping it without [`release`](Self::release) leaves the key to expire after the TTL (as
/// a crash would), and invalidates its fences at once.
#[derive(Debug)]
pub struct Lease {
    lease: LeaderLease,
    epoch: Epoch,
    revision: Revision,
    renewed_at: Instant,
    lost: Option<Lost>,
    state: watch::Sender<FenceState>,
    fence: LeaseFence,
}

impl Lease {
    fn new(lease: LeaderLease, epoch: Epoch, sent: Instant) -> Self {
        let state = FenceState {
            deadline: sent + lease.ttl - lease.margin,
            lost: false,
            revision: Revision::new(epoch.get()),
        };
        let (tx, rx) = watch::channel(state);
        let fence = LeaseFence {
            node: lease.node.clone(),
            epoch,
            acquired_at: sent,
            state: rx,
        };
        Self {
            lease,
            epoch,
            revision: Revision::new(epoch.get()),
            renewed_at: sent,
            lost: None,
            state: tx,
            fence,
        }
    }

    /// The holding node.
    pub fn node(&self) -> &NodeId {
        &self.lease.node
    }

    /// The epoch (fencing token): the revision of the acquiring write. Strictly greater than
    /// the epoch of every earlier lease of this bucket.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The revision of the last successful write (acquisition or renewal): what the next
    /// renewal's CAS expects.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// When the acquiring write was sent (monotonic clock).
    pub fn acquired_at(&self) -> Instant {
        self.fence.acquired_at
    }

    /// When the last successful acquisition or renewal was *sent* (monotonic clock).
    pub fn renewed_at(&self) -> Instant {
        self.renewed_at
    }

    /// The instant this holder must stop acting as leader unless it renews first.
    pub fn deadline(&self) -> Instant {
        self.state.borrow().deadline
    }

    /// Whether this node may act as leader now: not lost, and before the deadline. Needs no
    /// network.
    pub fn is_valid(&self) -> bool {
        self.fence.is_valid()
    }

    /// A cloneable, read-only view of this lease for the code acting as leader: it follows
    /// every renewal and turns invalid when the lease is lost, released or dropped.
    pub fn fence(&self) -> LeaseFence {
        self.fence.clone()
    }

    /// Renews the lease: a CAS on [`revision`](Self::revision) with a fresh TTL. On success
    /// the deadline moves to *send time + TTL − margin*.
    ///
    /// If the CAS fails because an earlier renewal of this very lease reached the server but
    /// its answer was lost, the renewal is retried on that revision (the value names this node
    /// and epoch, which no other lease can write).
    ///
    /// # Errors
    ///
    /// - [`ClusterError::NotLeader`] if the lease is lost: the deadline had passed (before
    ///   sending, or before the answer came), or the key holds someone else's write. The lease
    ///   is then never renewed again.
    /// - [`ClusterError::Unavailable`] / [`ClusterError::Backend`]: NATS did not answer or
    ///   refused; the lease stays valid until its deadline and may be renewed again.
    pub async fn renew(&mut self) -> Result<(), ClusterError> {
        let value = encode(&LeaseValue {
            node: self.lease.node.clone(),
            epoch: Some(self.epoch),
        })?;
        for _ in 0..2 {
            if self.lost.is_some() {
                return Err(ClusterError::NotLeader);
            }
            let deadline = self.deadline();
            let sent = Instant::now();
            if sent >= deadline {
                return Err(self.lose(Lost::Expired));
            }
            let outcome = put_with_ttl(
                &self.lease.store.js,
                self.lease.store.coord_bucket(),
                LEASE_KEY,
                value.clone(),
                Expect::Revision(self.revision),
                self.lease.ttl,
            )
            .await;
            match outcome {
                Ok(revision) => {
                    self.set_revision(revision);
                    if Instant::now() >= deadline {
                        // We stopped acting at the deadline; a lease never comes back.
                        return Err(self.lose(Lost::Expired));
                    }
                    self.renewed_at = sent;
                    let deadline = sent + self.lease.ttl - self.lease.margin;
                    self.state.send_modify(|state| state.deadline = deadline);
                    return Ok(());
                }
                Err(ClusterError::Conflict { .. }) => match self.lease.current().await {
                    Ok(Some(holder))
                        if holder.node == self.lease.node
                            && holder.epoch == self.epoch
                            && holder.revision > self.revision =>
                    {
                        self.set_revision(holder.revision);
                    }
                    _ => return Err(self.lose(Lost::Taken)),
                },
                Err(other) => return Err(other),
            }
        }
        Err(self.lose(Lost::Taken))
    }

    /// Releases the lease (delete expecting the last revision), so the next leader takes over
    /// without waiting for the TTL. Invalidates the fences first. Also worth calling on a lease
    /// lost by its deadline: the key may still hold this lease's last write.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotLeader`] if the key no longer holds this lease (nothing is deleted);
    /// [`ClusterError::Unavailable`] / [`ClusterError::Backend`] if NATS did not answer or
    /// refused (the key then expires after the TTL).
    pub async fn release(self) -> Result<(), ClusterError> {
        self.invalidate();
        if self.lost == Some(Lost::Taken) {
            return Err(ClusterError::NotLeader);
        }
        let outcome = self
            .lease
            .store
            .coord
            .delete_expect_revision(LEASE_KEY, Some(self.revision.get()))
            .await;
        match outcome {
            Ok(()) => {
                tracing::debug!(node = %self.lease.node, epoch = %self.epoch, "leader lease released");
                Ok(())
            }
            Err(e) => Err(match e.kind() {
                _ if is_update_conflict(&e) => ClusterError::NotLeader,
                kv::UpdateErrorKind::TimedOut => ClusterError::Unavailable {
                    message: "no answer releasing the leader lease".to_owned(),
                    source: Some(Box::new(e)),
                },
                _ => ClusterError::backend("cannot release the leader lease", e),
            }),
        }
    }

    fn set_revision(&mut self, revision: Revision) {
        self.revision = revision;
        self.state.send_modify(|state| state.revision = revision);
    }

    /// Marks the lease lost (for good) and returns [`ClusterError::NotLeader`].
    fn lose(&mut self, why: Lost) -> ClusterError {
        if self.lost.is_none() {
            self.lost = Some(why);
            metrics::counter!("aether_cluster_lease_lost_total").increment(1);
            tracing::debug!(node = %self.lease.node, epoch = %self.epoch, ?why, "leader lease lost");
        }
        self.invalidate();
        ClusterError::NotLeader
    }

    fn invalidate(&self) {
        self.state.send_modify(|state| state.lost = true);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.invalidate();
    }
}

/// A read-only view of a [`Lease`] for the code that acts as leader: the epoch to stamp on
/// writes, and whether acting is still allowed. Follows the lease's renewals; invalid for good
/// once the lease is lost, released or dropped. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LeaseFence {
    node: NodeId,
    epoch: Epoch,
    acquired_at: Instant,
    state: watch::Receiver<FenceState>,
}

impl LeaseFence {
    /// The holding node.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The lease's epoch (fencing token).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The revision of the lease's last write as this holder knows it (the acquisition, then
    /// each renewal): what a server-fenced write requires the lease key's last revision to be.
    pub fn revision(&self) -> Revision {
        self.state.borrow().revision
    }

    /// When the acquiring write was sent (monotonic clock): no other holder's deadline can be
    /// later than this.
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// The instant the holder must stop acting unless the lease is renewed first.
    pub fn deadline(&self) -> Instant {
        self.state.borrow().deadline
    }

    /// Whether the holder may act now (not lost, before the deadline). Needs no network.
    pub fn is_valid(&self) -> bool {
        let state = *self.state.borrow();
        !state.lost && Instant::now() < state.deadline
    }

    /// `Ok` if [`is_valid`](Self::is_valid).
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotLeader`] otherwise.
    pub fn check(&self) -> Result<(), ClusterError> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(ClusterError::NotLeader)
        }
    }

    /// Resolves as soon as the lease stops being valid (at once if it already is not): select
    /// on it to stop leader work the moment the lease is lost.
    pub async fn invalidated(&self) {
        let mut state = self.state.clone();
        loop {
            let current = *state.borrow_and_update();
            if current.lost || Instant::now() >= current.deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(current.deadline) => {}
                changed = state.changed() => if changed.is_err() { return },
            }
        }
    }
}

impl AsRef<LeaseFence> for Lease {
    fn as_ref(&self) -> &LeaseFence {
        &self.fence
    }
}

impl AsRef<Self> for LeaseFence {
    fn as_ref(&self) -> &Self {
        self
    }
}

fn encode(value: &LeaseValue) -> Result<Bytes, ClusterError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ClusterError::backend("cannot encode the lease value", e))
}
