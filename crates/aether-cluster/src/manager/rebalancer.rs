//! The rebalancer: while this node leads, steps the shard map toward the assignment for the
//! live members (see the [module docs](super) for the rules).

mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aether_core::{Member, NodeId, ShardCount, ShardMap, assign_shards};
use tokio::sync::watch;
use tokio::time::Instant;

use super::topology::Shared;
use crate::lease::{LeaderElector, LeaseFence};
use crate::membership::{MemberInfo, MembershipHealth};
use crate::placement::{Handoff, Incarnate, Placement};
use crate::release::{self, Asked};
use crate::shard_map_store::{ShardMapStore, StoredShardMap};
use crate::{ClusterConfig, ClusterError, Revision};

use plan::{Plan, plan};

/// Pause before retrying after a lost CAS (someone wrote between our read and our write).
const CONFLICT_RETRY: Duration = Duration::from_millis(100);
/// Pause before retrying after NATS did not answer or refused.
const ERROR_RETRY: Duration = Duration::from_millis(500);
/// Pause between asks of the nodes shards are moving from, while any shard moves.
const HANDOFF_POLL: Duration = Duration::from_millis(20);

/// The member set as the rebalancer sees it: (id, weight, incarnation), sorted by id. A new
/// incarnation of an owner needs a new placement (ADR 0009), though not new owners.
type MemberKey = Vec<(NodeId, u32, u64)>;

fn member_key(members: &[MemberInfo]) -> MemberKey {
    let mut key: MemberKey = members
        .iter()
        .map(|m| (m.id.clone(), m.metadata.weight, m.incarnation))
        .collect();
    key.sort();
    key
}

/// The rebalancer task's inputs.
pub(super) struct Rebalancer {
    elector: Arc<LeaderElector>,
    leader: watch::Receiver<crate::lease::LeaderState>,
    members: watch::Receiver<Vec<MemberInfo>>,
    health: watch::Receiver<MembershipHealth>,
    store: ShardMapStore,
    shared: Arc<Shared>,
    shards: ShardCount,
    stabilization: Duration,
    max_moves: usize,
    move_interval: Duration,
    /// For asking nodes what they released (ADR 0009).
    client: async_nats::Client,
    cluster_name: String,
    request_timeout: Duration,
}

/// How a leader session ended.
enum End {
    /// The fence is invalid (or was refused): wait for a new one.
    FenceGone,
    /// Membership stopped: the manager is shutting down.
    Closed,
}

/// What a step asks for next.
enum Next {
    /// Nothing to do until the member set changes.
    Idle,
    /// Step again after this long.
    After(Duration),
    /// Frozen or not synchronised: step again when the health changes.
    Blocked,
    /// Not (or no longer) allowed to write under this fence.
    Lost,
}

/// The target for one member set, computed once.
struct Target {
    members: MemberKey,
    map: ShardMap,
}

impl Rebalancer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        client: async_nats::Client,
        elector: Arc<LeaderElector>,
        members: watch::Receiver<Vec<MemberInfo>>,
        health: watch::Receiver<MembershipHealth>,
        store: ShardMapStore,
        shared: Arc<Shared>,
        config: &ClusterConfig,
    ) -> Self {
        Self {
            leader: elector.subscribe(),
            elector,
            members,
            health,
            store,
            shared,
            shards: config.shard_count,
            stabilization: config.stabilization_delay,
            max_moves: config.max_moves_per_step.max(1),
            move_interval: config.move_interval,
            client,
            cluster_name: config.cluster_name.clone(),
            request_timeout: config.request_timeout,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            self.leader.borrow_and_update();
            let Some(fence) = self.elector.fence() else {
                if self.leader.changed().await.is_err() {
                    return;
                }
                continue;
            };
            tracing::debug!(epoch = %fence.epoch(), "rebalancer: leading");
            match self.lead(&fence).await {
                End::Closed => return,
                End::FenceGone => fence.invalidated().await,
            }
        }
    }

    /// Rebalances under `fence` until it is invalid or refused.
    async fn lead(&mut self, fence: &LeaseFence) -> End {
        let mut target: Option<Target> = None;
        let mut members = member_key(&self.members.borrow_and_update());
        self.health.borrow_and_update();
        let mut wake = Some(Instant::now() + self.stabilization);
        let mut blocked = false;
        loop {
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = fence.invalidated() => return End::FenceGone,
                changed = self.members.changed() => {
                    if changed.is_err() {
                        return End::Closed;
                    }
                    let now = member_key(&self.members.borrow_and_update());
                    if now != members {
                        members = now;
                        target = None;
                        blocked = false;
                        wake = Some(Instant::now() + self.stabilization);
                    }
                }
                changed = self.health.changed() => {
                    if changed.is_err() {
                        return End::Closed;
                    }
                    let health = self.health.borrow_and_update().clone();
                    if blocked && health.synced && !health.frozen {
                        blocked = false;
                        wake = Some(Instant::now());
                    }
                }
                () = sleep => {
                    wake = None;
                    match self.step(fence, &mut target).await {
                        Next::Idle => {}
                        Next::After(delay) => wake = Some(Instant::now() + delay),
                        Next::Blocked => blocked = true,
                        Next::Lost => return End::FenceGone,
                    }
                }
            }
        }
    }

    /// Writes the next map toward the target, if there is anything to do.
    #[tracing::instrument(
        level = "debug",
        name = "aether.cluster.rebalance",
        skip_all,
        fields(epoch = %fence.epoch(), node = %fence.node())
    )]
    async fn step(&self, fence: &LeaseFence, target: &mut Option<Target>) -> Next {
        let health = self.health.borrow().clone();
        if health.frozen || !health.synced {
            tracing::info!(
                frozen = health.frozen,
                synced = health.synced,
                "rebalancer: membership not trustworthy; not writing the shard map"
            );
            return Next::Blocked;
        }
        if !fence.is_valid() {
            return Next::Lost;
        }
        let (current, revision) = match self.store.load().await {
            Ok(Some((stored, revision))) => (Some(stored), revision),
            Ok(None) => (None, Revision::default()),
            Err(error) => {
                tracing::warn!(%error, "rebalancer: cannot read the shard map");
                return Next::After(ERROR_RETRY);
            }
        };
        let infos = self.members.borrow().clone();
        // Moves first settle, once their earlier owners released them or are gone.
        if let Some(stored) = &current
            && stored.placement().is_moving()
            && let Some(next) = self.step_settle(fence, stored, revision, &infos).await
        {
            return next;
        }
        // Owners that came back as a new incarnation own nothing until a placement names it.
        if let Some(stored) = &current {
            let placement = stored.placement();
            let renewed = |slot: &crate::placement::ShardSlot| {
                slot.owner.as_ref().is_some_and(|o| {
                    infos
                        .iter()
                        .any(|m| m.id == o.node && m.incarnation != o.incarnation)
                })
            };
            if placement.shards.iter().any(renewed) {
                let owners: Vec<Option<Incarnate>> = stored
                    .map
                    .iter()
                    .map(|(_, owner)| owner.map(|node| incarnate(node, &infos, &placement)))
                    .collect();
                let handoff = placement.next(&owners, |p| gone(p, &infos)).handoff();
                let reason = "new incarnation of an owner";
                return match self
                    .write(fence, stored.map.clone(), handoff, reason, revision)
                    .await
                {
                    Ok(()) => Next::After(Duration::ZERO),
                    Err(next) => next,
                };
            }
        }
        let key = member_key(&infos);
        let live: BTreeSet<NodeId> = infos.iter().map(|m| m.id.clone()).collect();
        let placement: Vec<Member> = infos.iter().map(MemberInfo::as_member).collect();
        let base = current
            .as_ref()
            .map_or_else(|| ShardMap::unassigned(self.shards), |s| s.map.clone());
        if target.as_ref().is_none_or(|t| t.members != key) {
            match assign_shards(current.as_ref().map(|s| &s.map), &placement, self.shards) {
                Ok(map) => {
                    *target = Some(Target { members: key, map });
                }
                Err(error) => {
                    tracing::error!(%error, "rebalancer: cannot compute the shard map");
                    return Next::Idle;
                }
            }
        }
        let Some(goal) = target.as_ref() else {
            return Next::Idle;
        };
        let initial = current.is_none();
        // Shards still moving are asked about again, even when nothing else is to be done.
        let idle = if current
            .as_ref()
            .is_some_and(|stored| stored.placement().is_moving())
        {
            Next::After(HANDOFF_POLL)
        } else {
            Next::Idle
        };
        let Some(Plan {
            moves: step,
            remaining,
            reason,
        }) = plan(&base, &goal.map, &live, initial, self.max_moves)
        else {
            return idle;
        };
        let next = match base.apply_moves(&step) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(%error, "rebalancer: moves do not apply to the map");
                *target = None;
                return Next::After(CONFLICT_RETRY);
            }
        };
        let previous = current
            .as_ref()
            .map_or_else(|| Placement::empty(self.shards), StoredShardMap::placement);
        let owners: Vec<Option<Incarnate>> = next
            .iter()
            .map(|(_, owner)| owner.map(|node| incarnate(node, &infos, &previous)))
            .collect();
        let handoff = previous.next(&owners, |p| gone(p, &infos)).handoff();
        let moving = !handoff.moving.is_empty();
        match self.write(fence, next, handoff, &reason, revision).await {
            Ok(()) if moving => Next::After(HANDOFF_POLL),
            Ok(()) if remaining > 0 => Next::After(self.move_interval),
            Ok(()) => Next::Idle,
            Err(next) => {
                if matches!(next, Next::After(CONFLICT_RETRY)) {
                    *target = None;
                }
                next
            }
        }
    }

    /// Settles the moves of `stored` whose earlier owners released them or are gone: writes
    /// the settled map and returns what to do next, or `None` if nothing settles yet (the
    /// caller goes on planning; moving shards are asked again after [`HANDOFF_POLL`]).
    async fn step_settle(
        &self,
        fence: &LeaseFence,
        stored: &StoredShardMap,
        revision: Revision,
        infos: &[MemberInfo],
    ) -> Option<Next> {
        let placement = stored.placement();
        // All at once: one node that does not answer (paused, not yet declared failed) must
        // not hold up the others' moves by a request timeout each.
        let asking: Vec<Incarnate> = placement
            .moving_from()
            .into_iter()
            .filter(|from| !gone(from, infos))
            .collect();
        let asked = futures::future::join_all(asking.iter().map(|from| {
            release::ask(
                &self.client,
                &self.cluster_name,
                &from.node,
                self.request_timeout,
            )
        }))
        .await;
        let answers: BTreeMap<Incarnate, Asked> = asking.into_iter().zip(asked).collect();
        // A node answering with another incarnation restarted: the earlier one is gone.
        let superseded = |p: &Incarnate| matches!(answers.get(p), Some(Asked::Answer(a)) if a.incarnation != p.incarnation);
        let settled = placement.settle(
            |p, shard| {
                matches!(answers.get(p), Some(Asked::Answer(a)) if a.released(p, shard, placement.version))
            },
            |p| gone(p, infos) || superseded(p),
        )?;
        let handoff = settled.handoff();
        let still_moving = !handoff.moving.is_empty();
        metrics::counter!("aether_cluster_handoffs_settled_total").increment(1);
        tracing::info!(
            version = %placement.version,
            still_moving,
            "rebalancer: settling moved shards"
        );
        let reason = "handoff: moved shards released";
        Some(
            match self
                .write(fence, stored.map.clone(), handoff, reason, revision)
                .await
            {
                Ok(()) => Next::After(Duration::ZERO),
                Err(next) => next,
            },
        )
    }

    /// Writes the next map; `Err` says what to do after a failure.
    async fn write(
        &self,
        fence: &LeaseFence,
        map: ShardMap,
        handoff: Handoff,
        reason: &str,
        revision: Revision,
    ) -> Result<(), Next> {
        match self
            .store
            .write_placement(fence, map, handoff, reason, revision)
            .await
        {
            Ok(written) => {
                self.shared.adopt(written.stored);
                Ok(())
            }
            Err(ClusterError::Conflict { .. }) => {
                metrics::counter!("aether_cluster_rebalance_conflicts_total").increment(1);
                tracing::info!("rebalancer: the shard map changed meanwhile; recomputing");
                Err(Next::After(CONFLICT_RETRY))
            }
            Err(ClusterError::NotLeader | ClusterError::Fenced { .. }) => Err(Next::Lost),
            Err(error) => {
                tracing::warn!(%error, "rebalancer: cannot write the shard map");
                Err(Next::After(ERROR_RETRY))
            }
        }
    }
}

/// `node` with its incarnation: the live member's, else the one `previous` recorded, else 0.
fn incarnate(node: &NodeId, infos: &[MemberInfo], previous: &Placement) -> Incarnate {
    let incarnation = infos
        .iter()
        .find(|m| &m.id == node)
        .map(|m| m.incarnation)
        .or_else(|| {
            previous
                .shards
                .iter()
                .filter_map(|s| s.owner.as_ref())
                .find(|o| &o.node == node)
                .map(|o| o.incarnation)
        })
        .unwrap_or(0);
    Incarnate {
        node: node.clone(),
        incarnation,
    }
}

/// Whether `who` is gone for good by the synchronised member set `infos` (the rebalancer
/// steps only while membership is synchronised): not a member, or a member with another
/// incarnation. A member's key expires only after its TTL, and a node's own membership check
/// lapses before that (its deadline runs from the renewal it sent), so a node absent from a
/// synchronised view serves nothing any more; a graceful leave drains first.
fn gone(who: &Incarnate, infos: &[MemberInfo]) -> bool {
    !infos
        .iter()
        .any(|m| m.id == who.node && m.incarnation == who.incarnation)
}
