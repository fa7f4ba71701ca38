//! [`ActorSnapshot`]: an actor's state at a version, so that loading it replays only the tail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ActorId, Version};

/// An actor's state as of `version`: everything up to and including `version` is folded into
/// `state`, so rebuilding the actor only needs the events after it.
///
/// Snapshots are optional and stored apart from events; they are a cache, never the source of
/// truth: deleting every snapshot loses nothing.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, ActorSnapshot};
/// use serde_json::json;
///
/// let snapshot = ActorSnapshot::new(ActorId::new("account-1")?, 40, json!({ "balance": 1200 }));
/// assert_eq!(snapshot.version, 40);
/// # Ok::<(), aether_core::InvalidName>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorSnapshot {
    /// The actor whose state this is.
    pub actor_id: ActorId,
    /// The last event version folded into `state`.
    pub version: Version,
    /// The actor's state, in whatever JSON shape the application chooses.
    pub state: serde_json::Value,
    /// When the snapshot was taken (UTC).
    pub timestamp: DateTime<Utc>,
}

impl ActorSnapshot {
    /// A snapshot of `state` at `version`, taken now.
    pub fn new(actor_id: ActorId, version: Version, state: serde_json::Value) -> Self {
        Self {
            actor_id,
            version,
            state,
            timestamp: Utc::now(),
        }
    }

    /// Size of this snapshot encoded as JSON, in bytes.
    pub fn encoded_len(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }
}
