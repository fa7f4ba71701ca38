//! [`ClusterManager`]: one node's whole part in the cluster — membership, the leader lease, the
//! shard map it follows and, while it leads, the rebalancer that writes that map (ADR 0006,
//! "Rebalancing").
//!
//! ```text
//!  Membership ──events──► topology task ──► TopologyEvent (broadcast)
//!  LeaderElector ─state─┘        ▲
//!        │ fence                 │ ShardsMoved
//!        ▼                       │
//!  rebalancer (leader only) ──write──► coord KV `map` ──watch──► map task ──► watch of the map
//! ```
//!
//! The rebalancer runs only while this node holds a valid lease and stamps every write with the
//! lease's fence. On becoming leader and after every change of the member set it waits for the
//! stabilisation delay (restarted by each further change), then computes **one** target map for
//! that member set with [`aether_core::assign_shards`] and steps toward it:
//!
//! - shards without a live owner (a failed or departed node, or no map yet) are reassigned at
//!   once, in one write;
//! - moves between live nodes are throttled: at most `max_moves_per_step` per write, one write
//!   per `move_interval`;
//! - while [`MembershipHealth::frozen`] (a mass disappearance) or while this node's membership
//!   view is not synchronised, nothing is written.
//!
//! Every write is a [`ShardMapStore::write`] (CAS on the map's revision, fenced by the lease on the
//! NATS server, ADR 0007); on a conflict the rebalancer re-reads the map and recomputes, and on
//! [`ClusterError::Fenced`] it stops as on a lost lease.

mod rebalancer;
#[cfg(test)]
mod tests;
mod topology;

use std::sync::{Arc, Weak};
use std::time::Duration;

use aether_core::{ActorId, BackendError, NodeId, ShardMove};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::kv::ClusterStore;
use crate::lease::{LeaderElector, LeaderState};
use crate::membership::{MemberInfo, Membership, MembershipHealth, OwnMembership};
use crate::placement::Placement;
use crate::release::{Holders, ShardHolder};
use crate::shard_map_store::{ShardMapStore, StoredShardMap};
use crate::{ClusterConfig, ClusterError, Epoch, MapVersion, task};

use topology::Shared;

/// Capacity of the topology event channel; a receiver that falls further behind gets
/// [`broadcast::error::RecvError::Lagged`] and should re-read the manager's state.
pub const TOPOLOGY_EVENT_CAPACITY: usize = 1024;

/// A change of the cluster's topology, as this node observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopologyEvent {
    /// A node announced itself (a new node, or a known node restarted).
    NodeJoined(MemberInfo),
    /// A node left gracefully.
    NodeLeft(NodeId),
    /// A node's key expired and it did not answer a probe: removed.
    NodeFailed(NodeId),
    /// A node acquired the leader lease.
    LeaderElected {
        /// The new leader.
        node: NodeId,
        /// Its epoch (fencing token).
        epoch: Epoch,
    },
    /// A new shard-map version was adopted by this node.
    ShardsMoved {
        /// The new version.
        version: MapVersion,
        /// The epoch it was written under.
        epoch: Epoch,
        /// The shards whose owner differs from the map this node held before (for the first
        /// map this node sees: every assigned shard, from no owner).
        moved: Vec<ShardMove>,
    },
}

/// One node's membership, leader election, shard map and (while leading) rebalancing.
///
/// Dropping it (or [`abort`](Self::abort)) stops everything as a crash would: the member key
/// and the lease expire after their TTLs. [`shutdown`](Self::shutdown) leaves gracefully.
///
/// ```no_run
/// use aether_cluster::{ClusterConfig, ClusterManager, TopologyEvent};
/// use aether_core::{ActorId, NodeId};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let manager = ClusterManager::start(client, ClusterConfig::new(NodeId::new("node-1")?)).await?;
/// let mut events = manager.subscribe();
/// if let Ok(TopologyEvent::ShardsMoved { version, moved, .. }) = events.recv().await {
///     println!("map v{version}: {} shards moved", moved.len());
/// }
/// println!("account-42 lives on {:?}", manager.owner_of(&ActorId::new("account-42")?));
/// manager.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ClusterManager {
    node: NodeId,
    membership: Option<Membership>,
    elector: Option<Arc<LeaderElector>>,
    leader: watch::Receiver<LeaderState>,
    map: watch::Receiver<Option<Arc<StoredShardMap>>>,
    shared: Arc<Shared>,
    map_store: ShardMapStore,
    rebalancer: Option<JoinHandle<()>>,
    /// The topology and shard-map tasks, named for error reports.
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    /// What this node's actor hosts hold, for the leader's release requests.
    holders: Holders,
    member_ttl: Duration,
}

impl ClusterManager {
    /// Opens the cluster's buckets, announces this node, starts the leader election, reads the
    /// current shard map and starts following it (and rebalancing while this node leads).
    ///
    /// # Errors
    ///
    /// - [`ClusterError::InvalidConfig`] for settings that cannot work (see
    ///   [`ClusterConfig::validate`], checked before anything is opened, and
    ///   [`LeaderElector::start`]) or when a live node already uses this node id;
    /// - [`ClusterError::SettingsMismatch`] / [`ClusterError::OldLayout`] if the cluster's
    ///   buckets exist with other settings or in an older layout (see [`ClusterStore::open`]);
    /// - [`ClusterError::Unavailable`] / [`ClusterError::Backend`] if NATS cannot be reached or
    ///   refuses. Nothing keeps running after an error (a started membership is withdrawn).
    pub async fn start(
        client: async_nats::Client,
        config: ClusterConfig,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        let store = ClusterStore::open(client, &config).await?;
        let map_store = ShardMapStore::new(store.clone(), &config);
        // Not fatal: a freshly created (e.g. R3) bucket may not answer yet; the map task reads
        // the map again every few heartbeats and watches it.
        let initial = match map_store.load().await {
            Ok(initial) => initial,
            Err(error) => {
                tracing::warn!(%error, "cluster manager: cannot read the shard map yet");
                None
            }
        };
        // Subscribed before this node is announced: no placement can name it before it
        // answers what it released.
        let client = store.js.client();
        let release_subject =
            crate::release::release_subject(&config.cluster_name, &config.node_id);
        let release_requests = client
            .subscribe(release_subject)
            .await
            .map_err(|e| ClusterError::backend("cannot subscribe to the release subject", e))?;
        let membership = Membership::start(&store, &config).await?;
        let elector = match LeaderElector::start(store, &config) {
            Ok(elector) => Arc::new(elector),
            Err(error) => {
                let _ = membership.leave().await;
                return Err(error);
            }
        };
        let (events, _) = broadcast::channel(TOPOLOGY_EVENT_CAPACITY);
        let (map_tx, map) = watch::channel(None);
        let shared = Arc::new(Shared::new(map_tx, events));
        if let Some((stored, _)) = initial {
            shared.adopt(stored);
        }
        let leader = elector.subscribe();
        let poll_every = config.heartbeat.max(Duration::from_millis(500)) * 2;
        let mut tasks = vec![
            (
                "topology",
                tokio::spawn(topology::forward(
                    membership.subscribe(),
                    leader.clone(),
                    Arc::clone(&shared),
                )),
            ),
            (
                "shard-map follower",
                tokio::spawn(topology::follow_map(
                    map_store.clone(),
                    Arc::clone(&shared),
                    poll_every,
                )),
            ),
        ];
        let holders = Holders::default();
        tasks.push((
            "release responder",
            tokio::spawn(crate::release::answer(
                client.clone(),
                release_requests,
                membership.watch_local(),
                holders.clone(),
            )),
        ));
        let rebalancer = rebalancer::Rebalancer::new(
            client,
            Arc::clone(&elector),
            membership.watch_members(),
            membership.watch_health(),
            map_store.clone(),
            Arc::clone(&shared),
            &config,
        );
        Ok(Self {
            node: config.node_id,
            membership: Some(membership),
            elector: Some(elector),
            leader,
            map,
            shared,
            map_store,
            rebalancer: Some(tokio::spawn(rebalancer.run())),
            tasks,
            holders,
            member_ttl: config.member_ttl,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.node
    }

    /// The current members, this node included, sorted by id.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.membership
            .as_ref()
            .map(Membership::members)
            .unwrap_or_default()
    }

    /// The member set as a [`watch`] channel.
    pub fn watch_members(&self) -> Option<watch::Receiver<Vec<MemberInfo>>> {
        self.membership.as_ref().map(Membership::watch_members)
    }

    /// Whether this node's membership view is synchronised and whether the map is frozen.
    pub fn health(&self) -> MembershipHealth {
        self.membership
            .as_ref()
            .map(Membership::health)
            .unwrap_or_default()
    }

    /// The leader as this node sees it; `None` while nobody holds the lease.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader.borrow().leader.clone()
    }

    /// The epoch of the current leader's lease (the last one seen while there is none; 0 before
    /// any).
    pub fn epoch(&self) -> Epoch {
        self.leader.borrow().epoch
    }

    /// Whether this node holds a valid leader lease.
    pub fn is_leader(&self) -> bool {
        self.leader.borrow().this_node_leads
    }

    /// When this node last acquired or renewed the leader lease (send time, monotonic clock);
    /// `None` if it never held it. For diagnostics and failover measurements.
    pub fn lease_renewed_at(&self) -> Option<tokio::time::Instant> {
        self.elector.as_ref().and_then(|e| e.renewed_at())
    }

    /// The leader state as a [`watch`] channel (leader, epoch, whether this node leads).
    pub fn watch_leader(&self) -> watch::Receiver<LeaderState> {
        self.leader.clone()
    }

    /// The newest shard map this node has seen; `None` before the first map is written.
    pub fn shard_map(&self) -> Option<Arc<StoredShardMap>> {
        self.map.borrow().clone()
    }

    /// The shard map as a [`watch`] channel: changed on every new version this node adopts.
    pub fn watch_shard_map(&self) -> watch::Receiver<Option<Arc<StoredShardMap>>> {
        self.map.clone()
    }

    /// This node's incarnation (its membership's): what placements name it by. A lapse of
    /// its membership makes a new one.
    pub fn incarnation(&self) -> u64 {
        self.membership
            .as_ref()
            .map_or(0, |m| m.local().incarnation)
    }

    /// This node's own membership as actor hosts check it (current or lapsed, incarnation);
    /// `None` once the manager has shut down.
    pub fn own_membership(&self) -> Option<OwnMembership> {
        self.membership
            .as_ref()
            .map(|m| OwnMembership::new(m, self.member_ttl))
    }

    /// The newest placement this node has seen (owners with incarnations, moving shards; ADR
    /// 0009) as a [`watch`] channel: what actor hosts follow. Version 0 with every shard
    /// unassigned before the first map.
    pub fn watch_placement(&self) -> watch::Receiver<Placement> {
        let mut maps = self.map.clone();
        let shards = self.map_store.shard_count();
        let placement_of = move |stored: &Option<Arc<StoredShardMap>>| {
            stored
                .as_ref()
                .map_or_else(|| Placement::empty(shards), |s| s.placement())
        };
        let (tx, rx) = watch::channel(placement_of(&maps.borrow_and_update()));
        tokio::spawn(async move {
            while maps.changed().await.is_ok() {
                let next = placement_of(&maps.borrow_and_update());
                if tx.send(next).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Registers an actor host of this node: the leader's release requests report what it
    /// holds (held weakly: dropping it unregisters it).
    pub fn register_holder(&self, holder: Weak<dyn ShardHolder>) {
        self.holders.register(holder);
    }

    /// The node that owns `actor`'s shard in the current map; `None` without a map (or if the
    /// shard has no owner).
    pub fn owner_of(&self, actor: &ActorId) -> Option<NodeId> {
        self.map
            .borrow()
            .as_ref()
            .and_then(|stored| stored.map.owner_of(actor).cloned())
    }

    /// Topology events from now on. Subscribe, then read the current state, so that nothing is
    /// missed.
    pub fn subscribe(&self) -> broadcast::Receiver<TopologyEvent> {
        self.shared.subscribe()
    }

    /// The shard-map store (for reading the map's history).
    pub fn map_store(&self) -> &ShardMapStore {
        &self.map_store
    }

    /// Leaves gracefully: stops rebalancing, deletes this node's member key (the others see it
    /// leave at once) and releases the lease if this node holds it (another node takes over
    /// without waiting for the TTL). Every step runs even if an earlier one failed.
    ///
    /// # Errors
    ///
    /// The first of these, in this order (the others are logged):
    /// - [`ClusterError::TaskPanicked`] if the rebalancer panicked;
    /// - the error of leaving ([`ClusterError::Unavailable`] if NATS did not answer: the key
    ///   then expires after its TTL; [`ClusterError::TaskPanicked`] for a membership task);
    /// - the error of releasing the lease (the same; [`ClusterError::Backend`] if the elector's
    ///   task failed or the lease could not be released because the elector was still shared);
    /// - [`ClusterError::TaskPanicked`] if the topology or shard-map task panicked.
    ///
    /// Everything is stopped anyway.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        let mut results = Vec::new();
        if let Some(mut rebalancer) = self.rebalancer.take() {
            results.push(task::stop("rebalancer", &mut rebalancer).await);
        }
        if let Some(membership) = self.membership.take() {
            results.push(membership.leave().await);
        }
        if let Some(elector) = self.elector.take() {
            results.push(match Arc::try_unwrap(elector) {
                Ok(elector) => elector.shutdown().await,
                // The rebalancer held the only other reference and has stopped; should that
                // ever change, say so instead of skipping the release.
                Err(shared) => Err(ClusterError::Backend {
                    message: format!(
                        "the leader lease was not released: {} other references to the elector \
                         remain; it expires after its TTL",
                        Arc::strong_count(&shared) - 1
                    ),
                    source: None,
                }),
            });
        }
        for (name, mut handle) in self.tasks.drain(..) {
            results.push(task::stop(name, &mut handle).await);
        }
        let mut errors = results.into_iter().filter_map(Result::err);
        let first = errors.next();
        for error in errors {
            tracing::warn!(%error, node = %self.node, "cluster manager: shutdown");
        }
        first.map_or(Ok(()), Err)
    }

    /// Stops everything at once without leaving or releasing, as a crash would: the member key
    /// and the lease expire after their TTLs. A task that had panicked is logged.
    pub async fn abort(mut self) {
        let mut results = Vec::new();
        if let Some(mut rebalancer) = self.rebalancer.take() {
            results.push(task::stop("rebalancer", &mut rebalancer).await);
        }
        if let Some(Ok(elector)) = self.elector.take().map(Arc::try_unwrap) {
            elector.abort().await;
        }
        drop(self.membership.take());
        for (name, mut handle) in self.tasks.drain(..) {
            results.push(task::stop(name, &mut handle).await);
        }
        for error in results.into_iter().filter_map(Result::err) {
            tracing::error!(%error, node = %self.node, "cluster manager: abort");
        }
    }
}

impl Drop for ClusterManager {
    fn drop(&mut self) {
        if let Some(rebalancer) = self.rebalancer.take() {
            rebalancer.abort();
        }
        for (_, task) in self.tasks.drain(..) {
            task.abort();
        }
    }
}
