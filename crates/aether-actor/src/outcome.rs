//! [`Outcome`]: what an accepted command did — the versions written and the reply.

use aether_core::Version;

use crate::CommandId;

/// The versions one command's events were stored at: `first..=last`, contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct VersionRange {
    /// The first event's version.
    pub first: Version,
    /// The last event's version.
    pub last: Version,
}

impl VersionRange {
    /// How many events (0 if `last < first`, which the runtime never produces).
    pub fn len(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.last - self.first + 1
        }
    }

    /// True only for a malformed range (`last < first`).
    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }

    /// The versions, in order.
    pub fn iter(&self) -> std::ops::RangeInclusive<Version> {
        self.first..=self.last
    }
}

/// What an accepted command did.
///
/// A retried command (same [`CommandId`]) that was already applied answers the same outcome
/// with [`duplicate`](Self::duplicate) set, without deciding again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome<R> {
    /// The command's id (given or generated).
    pub command_id: CommandId,
    /// Where its events were stored; `None` if the decision stored no events.
    pub written: Option<VersionRange>,
    /// The actor's version right after the command.
    pub version: Version,
    /// The reply of the decision.
    pub reply: R,
    /// True if this answers a retry of a command that was already applied.
    pub duplicate: bool,
}
