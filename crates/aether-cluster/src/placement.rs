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
//! of the node appeared. Absence from a membership view that has not caught up is no proof:
//! views lag, and a new leader's starts empty. A shard moved back to the node it was moving
//! from stops moving.

use std::collections::BTreeMap;

use aether_core::{NodeId, ShardCount, ShardId, ShardMap};
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

/// What a stored shard map carries for actors' handoff besides its owners: each owner's
/// incarnation and the shards still moving (ADR 0009). Empty in maps written before it existed:
/// their owners read as incarnation 0, and nothing is moving.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// The incarnation of each node that owns a shard.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub incarnations: BTreeMap<NodeId, u64>,
    /// Shard number → the earlier owner it is still moving from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub moving: BTreeMap<u32, Incarnate>,
}

impl Handoff {
    /// Whether it carries nothing (a map written before actors' handoff, or without owners).
    pub fn is_empty(&self) -> bool {
        self.incarnations.is_empty() && self.moving.is_empty()
    }
}

impl Placement {
    /// The placement a stored map describes: its owners (from `map`, with their incarnations
    /// from `handoff`) and its moving shards.
    pub fn of(version: MapVersion, map: &ShardMap, handoff: &Handoff) -> Self {
        let shards = map
            .iter()
            .map(|(shard, owner)| ShardSlot {
                owner: owner.map(|node| Incarnate {
                    node: node.clone(),
                    incarnation: handoff.incarnations.get(node).copied().unwrap_or(0),
                }),
                moving_from: handoff.moving.get(&shard.get()).cloned(),
            })
            .collect();
        Self { version, shards }
    }

    /// What a stored map carries of this placement besides its owners.
    pub fn handoff(&self) -> Handoff {
        let mut handoff = Handoff::default();
        for (i, slot) in self.shards.iter().enumerate() {
            if let Some(owner) = &slot.owner {
                handoff
                    .incarnations
                    .insert(owner.node.clone(), owner.incarnation);
            }
            if let (Some(from), Ok(shard)) = (&slot.moving_from, u32::try_from(i)) {
                handoff.moving.insert(shard, from.clone());
            }
        }
        handoff
    }

    /// Whether any shard is moving.
    pub fn is_moving(&self) -> bool {
        self.shards.iter().any(|s| s.moving_from.is_some())
    }

    /// The earlier owners shards are moving from, each once.
    pub fn moving_from(&self) -> Vec<Incarnate> {
        let mut from: Vec<Incarnate> = self
            .shards
            .iter()
            .filter_map(|s| s.moving_from.clone())
            .collect();
        from.sort();
        from.dedup();
        from
    }
}

fn shard_id(index: usize) -> Option<ShardId> {
    u32::try_from(index).ok().map(ShardId::new)
}

fn index(shard: ShardId) -> usize {
    shard.get() as usize
}
