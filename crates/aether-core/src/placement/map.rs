//! [`ShardMap`]: which node owns each shard.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ActorId, NodeId};

use super::{PlacementError, ShardCount, ShardId, ShardMove, shard_for};

/// The owner of every shard: the output of [`assign_shards`](crate::assign_shards) and the value
/// the cluster's leader publishes (versioning and fencing belong to the cluster, not to the map).
///
/// A map is normally *complete* (every shard has an owner); it is empty only when there is no
/// member to own anything ([`ShardMap::unassigned`]), and partial only if moves that unassign
/// shards were applied to it.
///
/// Lookups are O(1): [`owner`](Self::owner) is two vector reads, [`owner_of`](Self::owner_of)
/// adds one hash of the actor id.
///
/// # Serialization
///
/// Compact JSON: a sorted table of the nodes that own shards, and one index into that table per
/// shard (`null` for an unassigned shard), about 4 bytes per shard. Deserialization checks every
/// invariant (owner vector as long as the shard count, indices in range, table sorted without
/// duplicates, every listed node owning a shard), so a map read back is as valid as one computed.
///
/// ```
/// use aether_core::{Member, NodeId, ShardCount, ShardMap, assign_shards};
///
/// let members = ["a", "b"].map(|id| Member::new(NodeId::new(id).unwrap()));
/// let map = assign_shards(None, &members, ShardCount::new(4)?)?;
/// let json = serde_json::to_string(&map).unwrap();
/// assert_eq!(json, r#"{"shards":4,"nodes":["a","b"],"owners":[1,1,0,0]}"#);
/// assert_eq!(serde_json::from_str::<ShardMap>(&json).unwrap(), map);
/// # Ok::<(), aether_core::PlacementError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ShardMap {
    shards: ShardCount,
    /// Nodes owning at least one shard, sorted by id: a canonical form, so equal maps compare
    /// and serialize equal.
    nodes: Vec<NodeId>,
    /// Per shard, an index into `nodes`.
    owners: Vec<Option<u32>>,
    /// Per entry of `nodes`, how many shards it owns (derived; not serialized).
    counts: Vec<u32>,
}

impl ShardMap {
    /// A map of `shards` shards in which no shard has an owner: what a cluster without members
    /// has.
    ///
    /// ```
    /// use aether_core::{ActorId, ShardCount, ShardMap};
    ///
    /// let map = ShardMap::unassigned(ShardCount::DEFAULT);
    /// assert!(!map.is_complete());
    /// assert_eq!(map.owner_of(&ActorId::new("a")?), None);
    /// assert_eq!(map.unassigned_shards().count(), 1024);
    /// # Ok::<(), aether_core::InvalidName>(())
    /// ```
    pub fn unassigned(shards: ShardCount) -> Self {
        Self {
            shards,
            nodes: Vec::new(),
            owners: vec![None; shards.len()],
            counts: Vec::new(),
        }
    }

    /// Builds the canonical map from per-shard indices into `table` (sorted, no duplicates),
    /// dropping the table entries that own nothing.
    pub(crate) fn from_indexed(
        shards: ShardCount,
        table: &[&NodeId],
        mut owners: Vec<Option<u32>>,
    ) -> Self {
        let mut counts = vec![0u32; table.len()];
        for owner in owners.iter().flatten() {
            counts[*owner as usize] += 1;
        }
        let mut renumber = vec![0u32; table.len()];
        let mut nodes = Vec::new();
        for (i, node) in table.iter().enumerate() {
            if counts[i] > 0 {
                // At most `shards` ≤ 65 536 nodes own a shard, so the index fits.
                renumber[i] = nodes.len() as u32;
                nodes.push((*node).clone());
            }
        }
        for owner in owners.iter_mut().flatten() {
            *owner = renumber[*owner as usize];
        }
        counts.retain(|&c| c > 0);
        Self {
            shards,
            nodes,
            owners,
            counts,
        }
    }

    /// The number of shards the map covers.
    pub fn shard_count(&self) -> ShardCount {
        self.shards
    }

    /// The node that owns `shard`; `None` if it is unassigned or out of range.
    pub fn owner(&self, shard: ShardId) -> Option<&NodeId> {
        let index = (*self.owners.get(shard.index())?)?;
        Some(&self.nodes[index as usize])
    }

    /// The node that owns `actor`'s shard ([`shard_for`] with this map's shard count); `None`
    /// if that shard is unassigned.
    ///
    /// ```
    /// use aether_core::{ActorId, Member, NodeId, ShardCount, assign_shards};
    ///
    /// let members = [Member::new(NodeId::new("node-1")?)];
    /// let map = assign_shards(None, &members, ShardCount::DEFAULT)?;
    /// assert_eq!(map.owner_of(&ActorId::new("account-42")?).unwrap(), "node-1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn owner_of(&self, actor: &ActorId) -> Option<&NodeId> {
        self.owner(shard_for(actor, self.shards))
    }

    /// True if every shard has an owner.
    pub fn is_complete(&self) -> bool {
        self.owners.iter().all(Option::is_some)
    }

    /// The shards without an owner, in index order.
    pub fn unassigned_shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.shards
            .shards()
            .filter(|shard| self.owners[shard.index()].is_none())
    }

    /// Every shard with its owner, in shard order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (ShardId, Option<&NodeId>)> + '_ {
        self.owners.iter().enumerate().map(|(shard, owner)| {
            let node = owner.map(|i| &self.nodes[i as usize]);
            (ShardId::new(shard as u32), node)
        })
    }

    /// The nodes that own at least one shard, sorted by id, each with its number of shards.
    ///
    /// ```
    /// use aether_core::{Member, NodeId, ShardCount, assign_shards};
    ///
    /// let members = ["a", "b", "c"].map(|id| Member::new(NodeId::new(id).unwrap()));
    /// let map = assign_shards(None, &members, ShardCount::new(100)?)?;
    /// let counts: Vec<u32> = map.nodes().map(|(_, count)| count).collect();
    /// assert_eq!(counts.iter().sum::<u32>(), 100);
    /// assert!(counts.iter().all(|&c| c == 33 || c == 34));
    /// # Ok::<(), aether_core::PlacementError>(())
    /// ```
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = (&NodeId, u32)> + '_ {
        self.nodes.iter().zip(self.counts.iter().copied())
    }

    /// How many shards `node` owns (0 for a node that is not in the map).
    pub fn count_of(&self, node: &NodeId) -> u32 {
        self.node_index(node).map_or(0, |i| self.counts[i])
    }

    /// The shards `node` owns, in index order (none for a node that is not in the map).
    pub fn shards_of(&self, node: &NodeId) -> impl Iterator<Item = ShardId> + '_ {
        let index = self.node_index(node).map(|i| i as u32);
        self.owners
            .iter()
            .enumerate()
            .filter(move |(_, owner)| index.is_some() && **owner == index)
            .map(|(shard, _)| ShardId::new(shard as u32))
    }

    /// This map with `moves` applied in order: each moved shard gets the move's `to` owner.
    /// Use it to step towards a target map a few moves at a time (throttled rebalancing).
    ///
    /// ```
    /// use aether_core::{Member, NodeId, ShardCount, assign_shards, shard_moves};
    ///
    /// let node = |id: &str| Member::new(NodeId::new(id).unwrap());
    /// let shards = ShardCount::new(12)?;
    /// let before = assign_shards(None, &[node("a"), node("b")], shards)?;
    /// let after = assign_shards(Some(&before), &[node("a"), node("b"), node("c")], shards)?;
    /// let moves = shard_moves(&before, &after);
    /// assert_eq!(moves.len(), 4, "c's fair share, and nothing else");
    ///
    /// let halfway = before.apply_moves(&moves[..2])?;
    /// assert_eq!(halfway.count_of(&NodeId::new("c").unwrap()), 2);
    /// assert_eq!(halfway.apply_moves(&moves[2..])?, after);
    /// # Ok::<(), aether_core::PlacementError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`PlacementError::ShardOutOfRange`] if a move names a shard this map does not have;
    /// - [`PlacementError::StaleMove`] if a move's `from` is not the shard's owner at that point
    ///   (the moves were computed against another map).
    ///
    /// On error the map is left as it was (it is never modified in place).
    pub fn apply_moves<'m>(
        &self,
        moves: impl IntoIterator<Item = &'m ShardMove>,
    ) -> Result<Self, PlacementError> {
        let mut owners: Vec<Option<&NodeId>> = self.iter().map(|(_, owner)| owner).collect();
        for mv in moves {
            let Some(slot) = owners.get_mut(mv.shard.index()) else {
                return Err(PlacementError::ShardOutOfRange {
                    shard: mv.shard,
                    shards: self.shards,
                });
            };
            if *slot != mv.from.as_ref() {
                return Err(PlacementError::StaleMove {
                    shard: mv.shard,
                    expected: mv.from.clone(),
                    actual: slot.cloned(),
                });
            }
            *slot = mv.to.as_ref();
        }
        let mut table: BTreeMap<&NodeId, u32> = owners.iter().flatten().map(|n| (*n, 0)).collect();
        for (i, index) in table.values_mut().enumerate() {
            *index = i as u32;
        }
        let indexed = owners.iter().map(|o| o.map(|n| table[n])).collect();
        let nodes: Vec<&NodeId> = table.into_keys().collect();
        Ok(Self::from_indexed(self.shards, &nodes, indexed))
    }

    fn node_index(&self, node: &NodeId) -> Option<usize> {
        self.nodes.binary_search(node).ok()
    }

    /// The owner index of each shard, for placement.
    pub(crate) fn owner_indices(&self) -> &[Option<u32>] {
        &self.owners
    }

    /// The node table that [`owner_indices`](Self::owner_indices) index into.
    pub(crate) fn node_table(&self) -> &[NodeId] {
        &self.nodes
    }
}

impl fmt::Debug for ShardMap {
    /// Counts, not the whole owner vector: `ShardMap { shards: 100, nodes: {"a": 50, "b": 50},
    /// unassigned: 0 }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: BTreeMap<&str, u32> = self.nodes().map(|(n, c)| (n.as_str(), c)).collect();
        f.debug_struct("ShardMap")
            .field("shards", &self.shards.get())
            .field("nodes", &nodes)
            .field("unassigned", &self.unassigned_shards().count())
            .finish()
    }
}

/// The serialized form, borrowed for writing.
#[derive(Serialize)]
struct ReprRef<'a> {
    shards: ShardCount,
    nodes: &'a [NodeId],
    owners: &'a [Option<u32>],
}

/// The serialized form, owned for reading; validated by `TryFrom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Repr {
    shards: ShardCount,
    nodes: Vec<NodeId>,
    owners: Vec<Option<u32>>,
}

impl Serialize for ShardMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ReprRef {
            shards: self.shards,
            nodes: &self.nodes,
            owners: &self.owners,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShardMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::try_from(Repr::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<Repr> for ShardMap {
    type Error = PlacementError;

    fn try_from(repr: Repr) -> Result<Self, PlacementError> {
        let invalid = |reason: String| Err(PlacementError::InvalidShardMap { reason });
        let Repr {
            shards,
            nodes,
            owners,
        } = repr;
        if owners.len() != shards.len() {
            return invalid(format!(
                "{} owners listed for {shards} shards; list one per shard",
                owners.len()
            ));
        }
        if let Some(pair) = nodes.windows(2).find(|pair| pair[0] >= pair[1]) {
            return invalid(format!(
                "the node table must be sorted without duplicates, but {} comes before {}",
                pair[0], pair[1]
            ));
        }
        let mut counts = vec![0u32; nodes.len()];
        for (shard, owner) in owners.iter().enumerate() {
            if let Some(index) = *owner {
                let Some(count) = counts.get_mut(index as usize) else {
                    return invalid(format!(
                        "shard {shard} names node {index}, but the table has {} nodes",
                        nodes.len()
                    ));
                };
                *count += 1;
            }
        }
        if let Some(i) = counts.iter().position(|&c| c == 0) {
            return invalid(format!("node {} owns no shard; list only owners", nodes[i]));
        }
        Ok(Self {
            shards,
            nodes,
            owners,
            counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ShardMap, String> {
        serde_json::from_str::<ShardMap>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn deserialization_checks_every_invariant() {
        assert!(parse(r#"{"shards":2,"nodes":["a"],"owners":[0,null]}"#).is_ok());
        let cases = [
            (r#"{"shards":2,"nodes":["a"],"owners":[0]}"#, "1 owners"),
            (r#"{"shards":2,"nodes":["b","a"],"owners":[0,1]}"#, "sorted"),
            (r#"{"shards":2,"nodes":["a","a"],"owners":[0,1]}"#, "sorted"),
            (
                r#"{"shards":2,"nodes":["a"],"owners":[0,1]}"#,
                "names node 1",
            ),
            (
                r#"{"shards":2,"nodes":["a","b"],"owners":[0,0]}"#,
                "owns no shard",
            ),
            (r#"{"shards":0,"nodes":[],"owners":[]}"#, "out of range"),
            (
                r#"{"shards":1,"nodes":["a.b"],"owners":[0]}"#,
                "invalid node id",
            ),
            (
                r#"{"shards":1,"nodes":["a"],"owners":[0],"x":1}"#,
                "unknown field",
            ),
        ];
        for (json, expected) in cases {
            let err = parse(json).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn debug_shows_counts() {
        let map = parse(r#"{"shards":3,"nodes":["a","b"],"owners":[0,1,null]}"#).unwrap();
        assert_eq!(
            format!("{map:?}"),
            r#"ShardMap { shards: 3, nodes: {"a": 1, "b": 1}, unassigned: 1 }"#
        );
    }
}
