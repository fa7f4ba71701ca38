//! [`ShardId`] and [`ShardCount`]: the fixed set of shards that actors hash to.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::PlacementError;

/// One shard: an index in `0..shard_count`.
///
/// Actors hash to shards with [`shard_for`](crate::shard_for); a
/// [`ShardMap`](crate::ShardMap) assigns each shard to a node.
///
/// # Examples
///
/// ```
/// use aether_core::ShardId;
///
/// let shard = ShardId::new(17);
/// assert_eq!(shard.get(), 17);
/// assert_eq!(shard.to_string(), "17");
/// assert_eq!(serde_json::to_string(&shard)?, "17");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(u32);

impl ShardId {
    /// The shard with this index.
    pub const fn new(index: u32) -> Self {
        Self(index)
    }

    /// The shard's index.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The shard's index as a `usize`, for indexing.
    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many shards a cluster has: between [`ShardCount::MIN`] and [`ShardCount::MAX`], by
/// default [`ShardCount::DEFAULT`] (1024).
///
/// The count is fixed for the lifetime of a cluster: every actor's shard depends on it. Choose
/// it well above the largest number of nodes you expect (a node can own no fewer than one
/// shard, and balance is only as fine as one shard in `count / nodes`).
///
/// # Examples
///
/// ```
/// use aether_core::ShardCount;
///
/// assert_eq!(ShardCount::default().get(), 1024);
/// assert_eq!(ShardCount::new(100)?.get(), 100);
/// assert!(ShardCount::new(0).is_err());
/// assert!(ShardCount::new(ShardCount::MAX + 1).is_err());
/// assert_eq!(ShardCount::new(3)?.shards().map(|s| s.get()).collect::<Vec<_>>(), [0, 1, 2]);
/// # Ok::<(), aether_core::PlacementError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ShardCount(u32);

impl ShardCount {
    /// The smallest shard count.
    pub const MIN: u32 = 1;
    /// The largest shard count. A shard map of this size is about 0.5 MB of JSON, well inside a
    /// NATS KV value.
    pub const MAX: u32 = 65_536;
    /// The default: 1024 shards. Node loads differ by at most one shard, i.e. by at most
    /// `nodes / 1024` of the mean load: under 1 % up to 10 nodes, under 10 % up to 100.
    pub const DEFAULT: Self = Self(1024);

    /// Checks that `count` is in `MIN..=MAX`.
    ///
    /// # Errors
    ///
    /// [`PlacementError::ShardCountOutOfRange`] when it is not.
    pub fn new(count: u32) -> Result<Self, PlacementError> {
        if (Self::MIN..=Self::MAX).contains(&count) {
            Ok(Self(count))
        } else {
            Err(PlacementError::ShardCountOutOfRange {
                requested: count,
                min: Self::MIN,
                max: Self::MAX,
            })
        }
    }

    /// The number of shards.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// True if `shard` is one of these shards (its index is below the count).
    pub const fn contains(self, shard: ShardId) -> bool {
        shard.0 < self.0
    }

    /// Every shard, in index order.
    pub fn shards(self) -> impl ExactSizeIterator<Item = ShardId> + Clone {
        (0..self.0).map(ShardId)
    }

    /// The count as a `usize`, for sizing vectors.
    pub(crate) const fn len(self) -> usize {
        self.0 as usize
    }
}

impl Default for ShardCount {
    /// [`ShardCount::DEFAULT`]: 1024 shards.
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for ShardCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<u32> for ShardCount {
    type Error = PlacementError;
    fn try_from(count: u32) -> Result<Self, PlacementError> {
        Self::new(count)
    }
}

impl From<ShardCount> for u32 {
    fn from(count: ShardCount) -> Self {
        count.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        assert!(ShardCount::new(1).is_ok());
        assert!(ShardCount::new(65_536).is_ok());
        assert_eq!(
            ShardCount::new(65_537),
            Err(PlacementError::ShardCountOutOfRange {
                requested: 65_537,
                min: 1,
                max: 65_536
            })
        );
    }

    #[test]
    fn serde_validates() {
        let count: ShardCount = serde_json::from_str("100").unwrap();
        assert_eq!(count.get(), 100);
        assert_eq!(serde_json::to_string(&count).unwrap(), "100");
        assert!(serde_json::from_str::<ShardCount>("0").is_err());
        assert!(serde_json::from_str::<ShardCount>("70000").is_err());
    }
}
