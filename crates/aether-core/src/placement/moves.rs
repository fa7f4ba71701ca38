//! [`ShardMove`] and [`shard_moves`]: the difference between two shard maps.

use serde::{Deserialize, Serialize};

use crate::NodeId;

use super::{ShardId, ShardMap};

/// One shard changing owner between two maps.
///
/// `from` is `None` for a shard that had no owner (the first map of a cluster), `to` is `None`
/// for a shard that is left without one (the last member left).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardMove {
    /// The shard.
    pub shard: ShardId,
    /// Its owner before.
    pub from: Option<NodeId>,
    /// Its owner after.
    pub to: Option<NodeId>,
}

/// The shards whose owner differs between `from` and `to`, in shard order.
///
/// Applying the result to `from` with [`ShardMap::apply_moves`] gives `to`. If the maps have
/// different shard counts, a shard that exists in only one of them counts as unassigned in the
/// other.
///
/// # Examples
///
/// ```
/// use aether_core::{Member, NodeId, ShardCount, ShardMap, assign_shards, shard_moves};
///
/// let shards = ShardCount::new(100)?;
/// let nodes: Vec<Member> = (1..=3).map(|i| Member::new(NodeId::new(format!("n{i}")).unwrap())).collect();
/// let three = assign_shards(None, &nodes, shards)?;
/// assert_eq!(shard_moves(&ShardMap::unassigned(shards), &three).len(), 100);
///
/// // n3 leaves: exactly its shards move, nothing else.
/// let two = assign_shards(Some(&three), &nodes[..2], shards)?;
/// let moves = shard_moves(&three, &two);
/// let n3 = NodeId::new("n3").unwrap();
/// assert_eq!(moves.len() as u32, three.count_of(&n3));
/// assert!(moves.iter().all(|m| m.from.as_ref() == Some(&n3)));
/// # Ok::<(), aether_core::PlacementError>(())
/// ```
pub fn shard_moves(from: &ShardMap, to: &ShardMap) -> Vec<ShardMove> {
    let len = from.shard_count().get().max(to.shard_count().get());
    (0..len)
        .map(ShardId::new)
        .filter_map(|shard| {
            let (before, after) = (from.owner(shard), to.owner(shard));
            (before != after).then(|| ShardMove {
                shard,
                from: before.cloned(),
                to: after.cloned(),
            })
        })
        .collect()
}
