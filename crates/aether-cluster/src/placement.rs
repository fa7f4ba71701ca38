//! [`Placement`]: the shard map as the leader writes it for actors across the cluster
//! (ADR 0009, "Handoff"): each shard's owner with its incarnation, and whether the shard is
//! still moving from an earlier owner that may serve it. Pure functions: the leader computes
//! the next placement with [`Placement::next`] and settles moves with [`Placement::settle`];
//! each node's side of the protocol is `aether_actor::cluster::Ownership`.
//!
//! The leader writes a move as *moving from the owner that may serve it*: its previous owner,
//! or, if the shard was already moving, the node it was moving from (the owners in between
//! never served it). It settles the move — writes the shard as not moving — once that owner
//! has released it (asked by incarnation) or is known to be gone for good: membership declared
//! that incarnation failed (only after its own check lapsed), it left, or a newer incarnation
//! of the node appeared. Absence from a membership view is no proof: views lag, and a new
//! leader's starts empty. A shard moved back to the node it was moving from stops moving.

use aether_core::{NodeId, ShardCount, ShardId};
use serde::{Deserialize, Serialize};

use crate::MapVersion;

/// One incarnation of a node: a restart, or a renewal after a lapse, makes a new one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnate {
    /// The node.
    pub node: NodeId,
    /// Which start of it (membership's `MemberInfo::incarnation`).
    pub incarnation: u64,
}

/// One shard in a [`Placement`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardSlot {
    /// Its owner; `None`: unassigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Incarnate>,
    /// Set while an earlier owner may still serve the shard: nobody serves it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_from: Option<Incarnate>,
}

impl ShardSlot {
    /// Whether `me` serves the shard under this slot: it is the owner, and the shard is not
    /// moving.
    pub fn served_by(&self, me: &Incarnate) -> bool {
        self.moving_from.is_none() && self.owner.as_ref() == Some(me)
    }
}

/// A shard map as the leader writes it (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The map's version.
    pub version: MapVersion,
    /// Per shard, by shard number.
    pub shards: Vec<ShardSlot>,
}

impl Placement {
    /// Version 0: `shards` shards, all unassigned.
    pub fn empty(shards: ShardCount) -> Self {
        Self {
            version: MapVersion::new(0),
            shards: vec![ShardSlot::default(); shards.get() as usize],
        }
    }

    /// The slot of `shard` (`None` out of range).
    pub fn slot(&self, shard: ShardId) -> Option<&ShardSlot> {
        self.shards.get(index(shard))
    }

    /// The next placement, giving each shard to `owners[shard]` (shards beyond `owners` are
    /// unassigned). A shard that changes owner is moving from the one that may serve it: its
    /// previous owner, or, if it was already moving, the node it was moving from — unless
    /// that one is `gone` (known failed, left, or superseded by a newer incarnation).
    #[must_use]
    pub fn next(&self, owners: &[Option<Incarnate>], gone: impl Fn(&Incarnate) -> bool) -> Self {
        let shards = self
            .shards
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let owner = owners.get(i).cloned().flatten();
                let may_serve = slot
                    .moving_from
                    .clone()
                    .or_else(|| slot.owner.clone())
                    .filter(|p| !gone(p));
                let moving_from = if owner == slot.owner {
                    slot.moving_from.clone().filter(|p| !gone(p))
                } else {
                    // Back to the node it was moving from: that node keeps serving it.
                    may_serve.filter(|p| Some(p) != owner.as_ref())
                };
                ShardSlot { owner, moving_from }
            })
            .collect();
        Self {
            version: self.version.next(),
            shards,
        }
    }

    /// The next placement settling every moving shard whose earlier owner has `released` it
    /// (answered for this placement's version) or is `gone`; `None` if none can be settled.
    #[must_use]
    pub fn settle(
        &self,
        released: impl Fn(&Incarnate, ShardId) -> bool,
        gone: impl Fn(&Incarnate) -> bool,
    ) -> Option<Self> {
        let mut next = self.clone();
        let mut settled = false;
        for (i, slot) in next.shards.iter_mut().enumerate() {
            let Some(from) = &slot.moving_from else {
                continue;
            };
            let Some(shard) = shard_id(i) else { continue };
            if gone(from) || released(from, shard) {
                slot.moving_from = None;
                settled = true;
            }
        }
        settled.then(|| Self {
            version: self.version.next(),
            ..next
        })
    }
}

fn shard_id(index: usize) -> Option<ShardId> {
    u32::try_from(index).ok().map(ShardId::new)
}

fn index(shard: ShardId) -> usize {
    shard.get() as usize
}
