//! [`LeaderElector`]: the lease protocol as a background task, with its state on a watch
//! channel.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aether_core::NodeId;
use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Acquired, LeaderLease, Lease, LeaseFence, LeaseHolder};
use crate::kv::{ClusterStore, LEASE_KEY};
use crate::{ClusterConfig, ClusterError, Epoch, Revision};

/// Who leads the cluster, as one node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderState {
    /// The node holding the lease, as last seen: `None` while nobody holds it (released,
    /// expired, or this node just lost it). While NATS is unreachable a follower keeps
    /// reporting the last holder it saw; the holder itself stops claiming the lead at its
    /// deadline.
    pub leader: Option<NodeId>,
    /// The epoch of `leader`'s lease; while there is no leader, the last epoch seen (0 if none
    /// yet), so it never goes backwards on one node.
    pub epoch: Epoch,
    /// Whether this node holds a valid lease. Turns `false` at the holder's own deadline at the
    /// latest, before any other node can acquire the lease.
    pub this_node_leads: bool,
}

/// What the task shares with the handle besides the state channel.
#[derive(Debug, Default)]
struct Shared {
    fence: Mutex<Option<LeaseFence>>,
    renewed_at: Mutex<Option<Instant>>,
}

impl Shared {
    fn set_fence(&self, fence: Option<LeaseFence>) {
        *self.fence.lock().unwrap_or_else(PoisonError::into_inner) = fence;
    }

    fn set_renewed_at(&self, at: Instant) {
        *self
            .renewed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(at);
    }
}

/// Runs the leader-lease protocol for one node in a background task:
///
/// 1. try to acquire the lease;
/// 2. if another node holds it, watch the key (and re-read it every `lease_ttl / 3` in case the
///    watch is stalled) and try again as soon as it is deleted (released) or purged (expired);
/// 3. once leader, renew every `lease_ttl / 3`; a renewal that fails is retried every
///    `lease_ttl / 24`, and one left unanswered for `lease_ttl / 6` is sent again at once;
///    stop leading the moment a renewal is refused or the lease's deadline passes, then go
///    back to 1;
/// 4. on [`shutdown`](Self::shutdown), release the lease so another node takes over at once.
///
/// Every change is published as a [`LeaderState`] ([`subscribe`](Self::subscribe)); the code
/// that acts as leader takes a [`fence`](Self::fence) and checks it before each action.
///
/// A node whose previous incarnation still holds the lease (it crashed and restarted within
/// the TTL) does not adopt it: it reports that node as leader, not itself, and waits for the
/// expiry like everyone else.
///
/// Dropping the elector (or [`abort`](Self::abort)) stops the task without releasing, as a
/// crash would: the lease expires after the TTL.
#[derive(Debug)]
pub struct LeaderElector {
    node: NodeId,
    state: watch::Receiver<LeaderState>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), ClusterError>>>,
}

impl LeaderElector {
    /// Starts the elector for `config.node_id` on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for lease timings that cannot work (see
    /// [`LeaderLease::new`]).
    pub fn start(store: ClusterStore, config: &ClusterConfig) -> Result<Self, ClusterError> {
        let lease = LeaderLease::new(store, config)?;
        let (state_tx, state) = watch::channel(LeaderState::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let renew_every = config.lease_ttl / 3;
        let run = Run {
            lease,
            state: state_tx,
            shared: Arc::clone(&shared),
            shutdown: shutdown_rx,
            renew_every,
            // A failed renewal is retried soon: while the lease stream elects a new leader
            // (seconds, after its server died) every attempt fails at once, and the sooner
            // one lands after the election the more of the lease's window is left.
            retry: (renew_every / 8).max(Duration::from_millis(50)),
            // One attempt never takes more than half the renewal interval: a request lost
            // with its connection (the node's server died) would otherwise hold the renewal
            // for the whole request timeout, and the lease's deadline could pass meanwhile.
            attempt_timeout: (renew_every / 2).max(Duration::from_millis(50)),
            release_timeout: config.request_timeout.min(config.lease_ttl),
        };
        Ok(Self {
            node: config.node_id.clone(),
            state,
            shared,
            shutdown,
            task: Some(tokio::spawn(run.run())),
        })
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The state now.
    pub fn state(&self) -> LeaderState {
        self.state.borrow().clone()
    }

    /// A receiver of every state change (starts with the current state).
    pub fn subscribe(&self) -> watch::Receiver<LeaderState> {
        self.state.clone()
    }

    /// The fence of the lease this node holds, if it leads: check it before every leader
    /// action and stamp its epoch on what you write.
    pub fn fence(&self) -> Option<LeaseFence> {
        let fence = self
            .shared
            .fence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        fence.filter(LeaseFence::is_valid)
    }

    /// When this node last acquired or renewed its lease (send time, monotonic clock); `None`
    /// if it never held one. For diagnostics and failover measurements.
    pub fn renewed_at(&self) -> Option<Instant> {
        *self
            .shared
            .renewed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the elector, releasing the lease if this node holds it, and waits for the task.
    ///
    /// # Errors
    ///
    /// The release's error if it failed ([`ClusterError::NotLeader`]: the lease had been lost
    /// meanwhile; [`ClusterError::Unavailable`]: NATS did not answer, the lease expires after
    /// the TTL).
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        self.shutdown.send_replace(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(result) => result,
            Err(join) => Err(ClusterError::Backend {
                message: "the leader elector task failed".to_owned(),
                source: Some(Box::new(join)),
            }),
        }
    }

    /// Stops the task at once without releasing the lease, as a crash would, and waits until
    /// it has stopped: another node takes over when the lease expires. The fence of a held
    /// lease turns invalid at once.
    pub async fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for LeaderElector {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The background task.
struct Run {
    lease: LeaderLease,
    state: watch::Sender<LeaderState>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    renew_every: Duration,
    retry: Duration,
    attempt_timeout: Duration,
    release_timeout: Duration,
}

/// Why the follower phase ended.
enum FollowEnd {
    TryAcquire,
    Shutdown,
}

impl Run {
    async fn run(self) -> Result<(), ClusterError> {
        loop {
            if *self.shutdown.borrow() {
                return Ok(());
            }
            // Not raced with shutdown: an acquisition dropped mid-flight could leave a lease
            // nobody knows about; this one is bounded by the request timeout.
            match self.lease.acquire_or_holder().await {
                Ok(Acquired::Lease(lease)) => {
                    if let Some(result) = self.lead(lease).await {
                        return result;
                    }
                }
                Ok(Acquired::Held(holder)) => {
                    if let FollowEnd::Shutdown = self.follow(holder).await {
                        return Ok(());
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, node = %self.lease.node, "leader election: cannot read or acquire the lease");
                    self.publish_holder(None);
                    if self.sleep_or_shutdown(self.retry).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Leads until the lease is lost (`None`) or shutdown (`Some(release result)`).
    async fn lead(&self, mut lease: Lease) -> Option<Result<(), ClusterError>> {
        let epoch = lease.epoch();
        self.shared.set_fence(Some(lease.fence()));
        self.shared.set_renewed_at(lease.renewed_at());
        self.publish(LeaderState {
            leader: Some(self.lease.node.clone()),
            epoch,
            this_node_leads: true,
        });
        tracing::info!(node = %self.lease.node, %epoch, "elected leader");
        if *self.shutdown.borrow() {
            return Some(self.step_down_and_release(lease).await);
        }
        let mut next = Instant::now() + self.renew_every;
        loop {
            let deadline = lease.deadline();
            tokio::select! {
                biased;
                () = self.stopping() => {
                    return Some(self.step_down_and_release(lease).await);
                }
                () = tokio::time::sleep_until(deadline) => break,
                () = tokio::time::sleep_until(next) => {}
            }
            // Dropping an attempt is safe: `renew` changes nothing until its answer came, and
            // a write that landed unanswered is recognised by the next attempt's CAS.
            let attempt_until = deadline.min(Instant::now() + self.attempt_timeout);
            match tokio::time::timeout_at(attempt_until, lease.renew()).await {
                Ok(Ok(())) => {
                    self.shared.set_renewed_at(lease.renewed_at());
                    next = Instant::now() + self.renew_every;
                }
                Ok(Err(ClusterError::NotLeader)) => break,
                Err(_) if Instant::now() >= deadline => break,
                Err(_) => {
                    tracing::debug!(%epoch, "leader lease renewal unanswered; retrying until the deadline");
                    next = Instant::now();
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, %epoch, "leader lease renewal failed; retrying until the deadline");
                    next = Instant::now() + self.retry;
                }
            }
        }
        // Lost: the fence is already invalid (deadline passed or CAS refused).
        self.shared.set_fence(None);
        self.publish_holder(None);
        tracing::warn!(node = %self.lease.node, %epoch, "lost the leader lease; stopped leading");
        // The key may still hold our last write (an answer that came after the deadline):
        // releasing it lets the next leader in without waiting for the TTL.
        let _ = tokio::time::timeout(self.release_timeout, lease.release()).await;
        None
    }

    async fn step_down_and_release(&self, lease: Lease) -> Result<(), ClusterError> {
        self.shared.set_fence(None);
        self.publish_holder(None);
        let epoch = lease.epoch();
        let result = match tokio::time::timeout(self.release_timeout, lease.release()).await {
            Ok(result) => result,
            Err(elapsed) => Err(ClusterError::Unavailable {
                message: "no answer releasing the leader lease".to_owned(),
                source: Some(Box::new(elapsed)),
            }),
        };
        tracing::info!(node = %self.lease.node, %epoch, ok = result.is_ok(), "released the leader lease");
        result
    }

    /// Follows another holder until the lease is free again (or shutdown).
    async fn follow(&self, holder: Option<LeaseHolder>) -> FollowEnd {
        let seen_free = holder.is_none();
        self.publish_holder(holder.as_ref());
        // The watch and the poll interleave: never go back to an older write.
        let mut newest = holder.as_ref().map_or(Revision::default(), |h| h.revision);
        if seen_free {
            // It changed hands while we tried: try again shortly, not at once.
            return if self.sleep_or_shutdown(self.retry).await {
                FollowEnd::Shutdown
            } else {
                FollowEnd::TryAcquire
            };
        }
        // LastPerSubject: the current entry first, then every change.
        let mut watch = match self.lease.store.coord.watch_with_history(LEASE_KEY).await {
            Ok(watch) => Some(watch),
            Err(error) => {
                tracing::debug!(%error, "leader election: cannot watch the lease; polling");
                None
            }
        };
        let mut poll =
            tokio::time::interval_at(Instant::now() + self.renew_every, self.renew_every);
        loop {
            let next_entry = async {
                match watch.as_mut() {
                    Some(watch) => watch.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.stopping() => return FollowEnd::Shutdown,
                entry = next_entry => match entry {
                    Some(Ok(entry)) => {
                        if entry.operation != kv::Operation::Put {
                            return FollowEnd::TryAcquire;
                        }
                        if let Ok(Some(holder)) = LeaseHolder::from_entry(&entry)
                            && holder.revision >= newest
                        {
                            newest = holder.revision;
                            self.publish_holder(Some(&holder));
                        }
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "leader election: lease watch failed; re-reading");
                        return FollowEnd::TryAcquire;
                    }
                    None => return FollowEnd::TryAcquire,
                },
                _ = poll.tick() => match self.lease.current().await {
                    Ok(None) => return FollowEnd::TryAcquire,
                    Ok(Some(holder)) => if holder.revision >= newest {
                        newest = holder.revision;
                        self.publish_holder(Some(&holder));
                    },
                    Err(error) => tracing::debug!(%error, "leader election: cannot read the lease"),
                },
            }
        }
    }

    /// Publishes `holder` as the leader (this node does not lead).
    fn publish_holder(&self, holder: Option<&LeaseHolder>) {
        let epoch = holder.map_or(self.state.borrow().epoch, |h| h.epoch);
        self.publish(LeaderState {
            leader: holder.map(|h| h.node.clone()),
            epoch,
            this_node_leads: false,
        });
    }

    fn publish(&self, next: LeaderState) {
        self.state.send_if_modified(|state| {
            if *state == next {
                false
            } else {
                *state = next;
                true
            }
        });
    }

    /// Resolves once shutdown is asked (or the handle is gone).
    fn stopping(&self) -> impl Future<Output = ()> + use<> {
        let mut shutdown = self.shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
    }

    /// Sleeps for `delay`; `true` if shutdown was asked meanwhile.
    async fn sleep_or_shutdown(&self, delay: Duration) -> bool {
        tokio::select! {
            () = self.stopping() => true,
            () = tokio::time::sleep(delay) => false,
        }
    }
}
