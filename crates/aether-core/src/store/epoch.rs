//! [`OwnerEpoch`]: the ownership epoch a writer stamps on the records it stores, so that a newer
//! owner can fence an older one out of an actor's stream.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The ownership epoch of an actor's writer: the shard-map version under which the writing
/// node owns the actor's shard. Higher is newer.
///
/// A write without an epoch ([`EventStore::save_event`](crate::EventStore::save_event),
/// [`save_events`](crate::EventStore::save_events)) counts as epoch 0, the epoch of an actor
/// nobody owns. See [`FencedEventStore`](crate::FencedEventStore) for how epochs fence writers.
///
/// # Examples
///
/// ```
/// use aether_core::OwnerEpoch;
///
/// let old = OwnerEpoch::new(3);
/// let new = OwnerEpoch::new(4);
/// assert!(new > old);
/// assert_eq!(OwnerEpoch::default(), OwnerEpoch::UNOWNED);
/// assert_eq!(new.to_string(), "4");
/// assert_eq!(serde_json::to_string(&new)?, "4");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct OwnerEpoch(u64);

impl OwnerEpoch {
    /// Epoch 0: the epoch of writes that carry none.
    pub const UNOWNED: Self = Self(0);

    /// The epoch with this number.
    pub const fn new(epoch: u64) -> Self {
        Self(epoch)
    }

    /// The epoch's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for OwnerEpoch {
    fn from(epoch: u64) -> Self {
        Self(epoch)
    }
}

impl fmt::Display for OwnerEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
