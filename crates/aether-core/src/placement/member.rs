//! [`Member`]: a live node as placement sees it.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A live node that can own shards, with its relative capacity.
///
/// A node's share of the shards is `weight / Σ weights`. Weight 0 is allowed and means "alive
/// but owns nothing": use it to drain a node before stopping it (its shards move while it still
/// answers "moved" for them), or for nodes that only route requests.
///
/// # Examples
///
/// ```
/// use aether_core::{Member, NodeId};
///
/// let member = Member::new(NodeId::new("node-1")?);
/// assert_eq!(member.weight, 1);
/// let big = Member::new(NodeId::new("node-2")?).with_weight(2);
/// assert_eq!(big.weight, 2);
/// # Ok::<(), aether_core::InvalidName>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The node.
    pub id: NodeId,
    /// Relative capacity; 0 receives no shards. Defaults to 1 (also when absent in JSON).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

impl Member {
    /// The weight of a member that does not say otherwise.
    pub const DEFAULT_WEIGHT: u32 = 1;

    /// A member with weight [`Member::DEFAULT_WEIGHT`].
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            weight: Self::DEFAULT_WEIGHT,
        }
    }

    /// The same member with another weight.
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

fn default_weight() -> u32 {
    Member::DEFAULT_WEIGHT
}
