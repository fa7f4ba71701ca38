//! [`PlacementError`]: what can go wrong when building or changing a shard map.

use crate::NodeId;

use super::{ShardCount, ShardId};

/// Why a shard count, a shard map or a placement request was refused.
///
/// Every variant is a caller or configuration mistake; none is transient, so retrying the same
/// call gives the same error.
///
/// # Examples
///
/// ```
/// use aether_core::{PlacementError, ShardCount};
///
/// let err = ShardCount::new(0).unwrap_err();
/// assert!(matches!(err, PlacementError::ShardCountOutOfRange { requested: 0, .. }));
/// assert_eq!(
///     err.to_string(),
///     "shard count 0 is out of range: it must be between 1 and 65536"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// A shard count below [`ShardCount::MIN`] or above [`ShardCount::MAX`].
    #[error("shard count {requested} is out of range: it must be between {min} and {max}")]
    ShardCountOutOfRange {
        /// The count that was asked for.
        requested: u32,
        /// The smallest allowed count.
        min: u32,
        /// The largest allowed count.
        max: u32,
    },
    /// The same node appears more than once in the member list.
    #[error("node {node} appears more than once among the members; list each node once")]
    DuplicateMember {
        /// The repeated node.
        node: NodeId,
    },
    /// The previous map was built for another shard count. The shard count of a cluster is fixed
    /// for its lifetime: changing it would move almost every actor.
    #[error(
        "the previous shard map has {previous} shards but {requested} were requested; \
         a cluster's shard count is fixed"
    )]
    ShardCountMismatch {
        /// The previous map's shard count.
        previous: ShardCount,
        /// The shard count of the request.
        requested: ShardCount,
    },
    /// A shard index at or beyond the map's shard count.
    #[error("shard {shard} does not exist in a map of {shards} shards")]
    ShardOutOfRange {
        /// The shard asked for.
        shard: ShardId,
        /// The map's shard count.
        shards: ShardCount,
    },
    /// A move that expects another current owner than the map has: it was computed against a
    /// different map.
    #[error(
        "the move of shard {shard} expects owner {} but the map says {}; \
         recompute the moves against this map",
        owner_name(.expected),
        owner_name(.actual)
    )]
    StaleMove {
        /// The shard being moved.
        shard: ShardId,
        /// The owner the move expected (`None`: unassigned).
        expected: Option<NodeId>,
        /// The owner the map actually has.
        actual: Option<NodeId>,
    },
    /// A serialized shard map that breaks the map's invariants.
    #[error("invalid shard map: {reason}")]
    InvalidShardMap {
        /// Which invariant was broken.
        reason: String,
    },
}

/// A possibly absent owner, for messages.
fn owner_name(owner: &Option<NodeId>) -> &str {
    owner.as_ref().map_or("(unassigned)", NodeId::as_str)
}
